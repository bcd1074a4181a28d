// roofbench-targets: sm_90a
// Warpgroup tensor-core (wgmma) calibration: the Hopper dense ceilings for bf16, fp8 and int8.
// Launch: grid = SMs x resident blocks per SM (1 at these register counts), block 256 = two
// warpgroups with independent accumulators, no dynamic shared memory (48 KiB static).
// t = global thread index.
//
// kernel            work per iteration and warpgroup            out[t]                iters
// calib_wgmma_bf16  4 * 2*64*256*16 = 2097152 FLOP (m64n256k16)  8.0f * iters          <= 65536
// calib_wgmma_fp8   4 * 2*64*256*32 = 4194304 FLOP (m64n256k32)  256.0f * iters        <= 65536
// calib_wgmma_int8  4 * 2*64*256*32 = 4194304 OP   (m64n256k32)  16384 * iters (int32) <= 65536
//
// Every element of A is 1.0 (int8: 1) and every element of B is 2^-10 (fp8: 2^-6, int8: 1), so
// each wgmma adds K * A * B to each of the thread's 128 accumulators and out[t] is their sum.
// Per iteration a warpgroup runs, as a CUTLASS mainloop does: wgmma.fence; 4 wgmmas over
// consecutive K slices into the same accumulators; commit_group; wait_group 1. Every 32 iterations
// it drains (wait_group 0) and adds its accumulators into a running total: see common/calib.cuh.
#include <cstdint>

#include "common/calib.cuh"
#include "common/grid.cuh"
#include "common/wgmma.cuh"

namespace {

constexpr int kBlock = 256;
constexpr int kWarpgroups = kBlock / 128;
constexpr int kKSteps = 4;  // wgmmas per commit group

// Shared memory holds one pipeline stage of a 128x256 CTA tile, 128 bytes of K deep: per
// warpgroup its own 64-row A slices, and the 256-row B slices both warpgroups read. Each K slice
// (32 bytes per row) is a separate compact no-swizzle K-major tile: 16-byte halves of a row group
// in adjacent core matrices (LBO 128 B), row groups back to back (SBO 256 B), so a slice of R rows
// spans exactly R * 32 bytes and no descriptor reaches outside it.
constexpr uint32_t kSliceRowBytes = 32;
constexpr uint32_t kASliceBytes = 64 * kSliceRowBytes;
constexpr uint32_t kBSliceBytes = 256 * kSliceRowBytes;
constexpr uint32_t kABytes = kWarpgroups * kKSteps * kASliceBytes;  // 16 KiB
constexpr uint32_t kSmemBytes = kABytes + kKSteps * kBSliceBytes;   // 48 KiB
constexpr uint32_t kLbo = 128, kSbo = 256;

// 32 iterations put 32 * 4 * 32 * 2^-6 = 64 into an fp8 accumulator (see common/calib.cuh).
constexpr uint32_t kChunk = 32;

template <typename Op>
__device__ __forceinline__ void wgmma_calibration(typename Op::Acc* out, uint32_t iters,
                                                  uint32_t a_word, uint32_t b_word) {
  using Acc = typename Op::Acc;
  __shared__ __align__(128) uint4 tiles[kSmemBytes / 16];
  for (uint32_t v = threadIdx.x; v < kSmemBytes / 16; v += blockDim.x) {
    const uint32_t w = v < kABytes / 16 ? a_word : b_word;
    tiles[v] = make_uint4(w, w, w, w);
  }
  rb::fence_proxy_async_shared();
  __syncthreads();

  const uint32_t base = (uint32_t)__cvta_generic_to_shared(tiles);
  // Broadcast from lane 0 so ptxas can prove it warp-uniform and keep the descriptors in uniform
  // registers, which is where wgmma reads them (as CUTLASS's canonical_warp_group_idx does).
  const uint32_t warpgroup = __shfl_sync(0xffffffffu, threadIdx.x / 128, 0);
  uint64_t a_desc[kKSteps], b_desc[kKSteps];
#pragma unroll
  for (int s = 0; s < kKSteps; ++s) {
    a_desc[s] = rb::wgmma_desc_k_major(base + (warpgroup * kKSteps + s) * kASliceBytes, kLbo, kSbo);
    b_desc[s] = rb::wgmma_desc_k_major(base + kABytes + s * kBSliceBytes, kLbo, kSbo);
  }

  Acc d[128] = {};  // never read: each chunk's first wgmma overwrites it (accumulate = 0)
  Acc total = 0;
  rb::for_each_chunk<kChunk>(iters, [&](uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) {
      rb::wgmma_fence();
#pragma unroll
      for (int s = 0; s < kKSteps; ++s) Op::mma(d, a_desc[s], b_desc[s], i > 0 || s > 0);
      rb::wgmma_commit_group();
      rb::wgmma_wait_group<1>();  // one group in flight while the next is issued
    }
    rb::wgmma_wait_group<0>();
    total += rb::pairwise_sum<128>(d);
  });
  out[rb::global_thread()] = total;
}

}  // namespace

#define RB_CALIB_WGMMA(NAME, OP, ACC, A_WORD, B_WORD)                                            \
  extern "C" __global__ void __launch_bounds__(kBlock, 1) NAME(ACC* out, uint32_t iters) {       \
    wgmma_calibration<OP>(out, iters, A_WORD, B_WORD);                                           \
  }

// bf16 1.0 = 0x3F80, 2^-10 = 0x3A80; e4m3 1.0 = 0x38, 2^-6 = 0x08.
RB_CALIB_WGMMA(calib_wgmma_bf16, rb::WgmmaBf16, float, rb::repeat16(0x3F80), rb::repeat16(0x3A80))
RB_CALIB_WGMMA(calib_wgmma_fp8, rb::WgmmaE4m3, float, rb::repeat8(0x38), rb::repeat8(0x08))
RB_CALIB_WGMMA(calib_wgmma_int8, rb::WgmmaS8, int32_t, rb::repeat8(0x01), rb::repeat8(0x01))
