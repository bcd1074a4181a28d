// Pieces shared by the tensor-core calibration kernels (kernels/roofline/calibrate*.cu).
//
// Why the loops accumulate in chunks: those kernels check their result exactly, but a tensor
// core's accumulator is not always as wide as its fp32 output. On Ada and Hopper the fp8 path
// keeps about 14 significant bits (e8m13, truncating: the limit DeepSeek-V3 reports for H800, and
// why cuBLAS and CUTLASS offer a promoting "slow accumulation" mode for fp8), and in the published
// models of these units each product is aligned to the largest exponent, the accumulator's, and
// truncated there. A single accumulator fed 2^-6 products can then stall at 256, and it could
// never hold the 2^17..2^19 in steps of 0.5 that the calibration counts need. So every loop runs
// at most a fixed number of iterations on fresh accumulators, then adds them into a total on the
// CUDA cores. Chunks are sized so an fp8 accumulator ends at 64 or less: until then a 2^-6
// product sits at most 11 bits below its leading bit, two bits inside e8m13. All types share the
// structure, so their timings stay comparable; the flush is one add per accumulator per chunk.
#pragma once
#include <cstdint>

#include "common/grid.cuh"

namespace rb {

// A 32-bit fragment register holding one 16-bit (8-bit) element pattern in every lane.
__host__ __device__ constexpr uint32_t repeat16(uint32_t bits) { return bits * 0x00010001u; }
__host__ __device__ constexpr uint32_t repeat8(uint32_t bits) { return bits * 0x01010101u; }

// Sum of N values (N a power of two) as a balanced tree. The calibration accumulators of a thread
// all hold the same value v, so every partial sum is 2^k * v and exact whenever the total is; a
// left-to-right sum would form e.g. 31 * v, which can need more significant bits than a float has.
// Recursion rather than a loop over levels: nvcc leaves such loops partly rolled, and a rolled
// level indexes the accumulators dynamically, through local memory.
template <int N, typename T> __device__ __forceinline__ T pairwise_sum(const T* v) {
  static_assert(N > 0 && (N & (N - 1)) == 0, "N must be a power of two");
  if constexpr (N == 1) {
    return v[0];
  } else {
    return pairwise_sum<N / 2>(v) + pairwise_sum<N / 2>(v + N / 2);
  }
}

// Runs `body(n)` for consecutive chunks of n <= CHUNK iterations covering [0, iters); no counter
// can overflow, whatever iters is.
template <uint32_t CHUNK, typename Body>
__device__ __forceinline__ void for_each_chunk(uint32_t iters, Body body) {
  for (uint32_t left = iters; left > 0;) {
    const uint32_t n = left < CHUNK ? left : CHUNK;
    left -= n;
    body(n);
  }
}

// mma.sync calibration (calibrate.cu, calibrate_sm89.cu): each warp keeps kMmaChains independent
// accumulator fragments, enough to cover the mma latency, and issues one mma per chain per
// iteration with constant A and B fragments (every element of A is the element whose bits are
// repeated in `a_word`, likewise B). out[global thread] = sum of the thread's accumulators.
constexpr int kMmaChains = 8;
// 128 iterations put 128 * 32 * 2^-6 = 64 into an fp8 accumulator (see the top).
constexpr uint32_t kMmaChunk = 128;

template <typename Op>
__device__ __forceinline__ void mma_chains(typename Op::Acc* out, uint32_t iters, uint32_t a_word,
                                           uint32_t b_word) {
  using Acc = typename Op::Acc;
  const uint32_t a[4] = {a_word, a_word, a_word, a_word};
  const uint32_t b[2] = {b_word, b_word};
  Acc total = 0;
  for_each_chunk<kMmaChunk>(iters, [&](uint32_t n) {
    Acc c[kMmaChains * 4] = {};
    // 4 x 8 mmas per trip: the loop counter is noise next to the mma issue slots.
#pragma unroll 4
    for (uint32_t i = 0; i < n; ++i) {
#pragma unroll
      for (int j = 0; j < kMmaChains; ++j) Op::mma(c + 4 * j, a, b);
    }
    total += pairwise_sum<kMmaChains * 4>(c);
  });
  out[global_thread()] = total;
}

}  // namespace rb
