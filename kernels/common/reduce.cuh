// Warp- and block-wide reductions.
#pragma once

namespace rb {

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block; the result is valid in thread 0. Any block size up to 1024 threads.
__device__ __forceinline__ unsigned long long block_sum(unsigned long long v) {
  __shared__ unsigned long long warp_partials[32];
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  if (lane == 0) warp_partials[warp] = v;
  __syncthreads();
  const unsigned warps = (blockDim.x + 31) / 32;
  v = (threadIdx.x < warps) ? warp_partials[threadIdx.x] : 0ull;
  if (warp == 0) v = warp_sum(v);
  return v;
}

// Max over the warp, returned to every lane (max is exact, so the order of the steps is free).
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Max over the block, returned to every thread. Any block size up to 1024 threads; every thread
// must call it (two barriers). Back-to-back calls are safe: a thread can only write `partials`
// again after the second barrier, which every reader of the previous call has passed.
__device__ __forceinline__ float block_max(float v) {
  __shared__ float partials[32];
  __shared__ float result;
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_max(v);
  if (lane == 0) partials[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const unsigned warps = (blockDim.x + 31) / 32;
    v = warp_max(lane < warps ? partials[lane] : -__int_as_float(0x7f800000));
    if (lane == 0) result = v;
  }
  __syncthreads();
  return result;
}

}  // namespace rb
