// Calibration kernels: the FP32, shared-memory, tensor-core (mma.sync) and launch ceilings that
// the roofline is drawn against. Every kernel writes a value the host checks exactly, so nothing
// can be optimised away and a broken kernel is caught. Launch: grid = SMs x resident blocks per
// SM, no dynamic shared memory; t = global thread index, tid = thread index in the block.
//
// kernel           block  work per iteration                        out[t]                iters
// calib_fp32_fma   256    16 FLOP / thread (8 fma chains)           see below             any
// calib_smem_read  256    16 B / thread (one 16-byte shared load)   see below             any
// calib_mma_bf16   256    8 * 2*16*8*16 = 32768 FLOP / warp         0.5f * iters          <= 2^20
// calib_mma_fp16   256    8 * 2*16*8*16 = 32768 FLOP / warp         0.5f * iters          <= 2^20
// calib_mma_int8   256    8 * 2*16*8*32 = 65536 OP / warp           1024 * iters (int32)  <= 2^20
// calib_empty      any    nothing: launch latency                   -                     -
//
// calib_fp32_fma: x_j = 0.5f + 0.0625f*j + 2^-20 * (float)(t % 1024) for j = 0..7, then iters
//   times x_j = fmaf(x_j, a, b) for each j, then out[t] = ((((((x0+x1)+x2)+x3)+x4)+x5)+x6)+x7,
//   all in f32 with one rounding per fma (the host replays it with f32::mul_add).
// calib_smem_read: 32 KiB of shared memory, word w = w * 2654435761 (u32 wrapping); iteration i
//   loads uint4 number (tid + i*256) % 2048 and adds its 4 words to a u32 sum (wrapping, from 0);
//   out[t] = that sum. A warp's 32 consecutive uint4 are conflict-free.
// calib_mma_*: A = 1.0 (int8: 1) and B = 2^-10 (int8: 1) in every element; see common/calib.cuh.
#include <cstdint>

#include "common/calib.cuh"
#include "common/grid.cuh"
#include "common/mma.cuh"

namespace {

constexpr int kBlock = 256;
constexpr int kFmaChains = 8;
// 32 x 8 fmas per trip: the FP32 pipe issues one warp instruction per cycle, so every loop-counter
// instruction costs an fma slot; at 256 fmas per trip that is about 1%.
constexpr int kFmaUnroll = 32;

constexpr int kSmemVectors = 2048;  // 32 KiB as uint4

// One 16-byte shared load that is issued every time: volatile at both levels, because the address
// repeats every 8 iterations and an ordinary load would be hoisted out of an unrolled loop.
__device__ __forceinline__ uint4 load_shared_volatile(uint32_t shared_address) {
  uint4 v;
  asm volatile("ld.volatile.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(shared_address)
               : "memory");
  return v;
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kBlock)
    calib_fp32_fma(float* out, uint32_t iters, float a, float b) {
  const size_t t = rb::global_thread();
  const float offset = ldexpf(1.0f, -20) * (float)(t % 1024);
  float x[kFmaChains];
#pragma unroll
  for (int j = 0; j < kFmaChains; ++j) x[j] = 0.5f + 0.0625f * j + offset;
#pragma unroll kFmaUnroll
  for (uint32_t i = 0; i < iters; ++i) {
#pragma unroll
    for (int j = 0; j < kFmaChains; ++j) x[j] = fmaf(x[j], a, b);
  }
  float sum = x[0];  // left to right, as the host does
#pragma unroll
  for (int j = 1; j < kFmaChains; ++j) sum += x[j];
  out[t] = sum;
}

extern "C" __global__ void __launch_bounds__(kBlock)
    calib_smem_read(uint32_t* out, uint32_t iters) {
  __shared__ uint4 words[kSmemVectors];
  for (uint32_t v = threadIdx.x; v < kSmemVectors; v += blockDim.x) {
    const uint32_t w = 4 * v;
    words[v] = make_uint4(w * 2654435761u, (w + 1) * 2654435761u, (w + 2) * 2654435761u,
                          (w + 3) * 2654435761u);
  }
  __syncthreads();
  const uint32_t base = (uint32_t)__cvta_generic_to_shared(words);
  uint32_t acc = 0;
  // 8 loads in flight per trip, and a multiple of the 8-iteration address period.
#pragma unroll 8
  for (uint32_t i = 0; i < iters; ++i) {
    const uint4 v = load_shared_volatile(base + ((threadIdx.x + i * kBlock) % kSmemVectors) * 16);
    acc += v.x + v.y + v.z + v.w;
  }
  out[rb::global_thread()] = acc;
}

#define RB_CALIB_MMA(NAME, OP, ACC, A_WORD, B_WORD)                                              \
  extern "C" __global__ void __launch_bounds__(kBlock) NAME(ACC* out, uint32_t iters) {          \
    rb::mma_chains<OP>(out, iters, A_WORD, B_WORD);                                              \
  }

// A = 1.0, B = 2^-10 (bf16 0x3F80 / 0x3A80, fp16 0x3C00 / 0x1400); int8 A = B = 1.
RB_CALIB_MMA(calib_mma_bf16, rb::MmaBf16, float, rb::repeat16(0x3F80), rb::repeat16(0x3A80))
RB_CALIB_MMA(calib_mma_fp16, rb::MmaF16, float, rb::repeat16(0x3C00), rb::repeat16(0x1400))
RB_CALIB_MMA(calib_mma_int8, rb::MmaS8, int32_t, rb::repeat8(0x01), rb::repeat8(0x01))

extern "C" __global__ void calib_empty() {}
