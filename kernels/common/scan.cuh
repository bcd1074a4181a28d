// Block-wide prefix sums and reductions of small integers (the selection kernels' counts).
#pragma once

namespace rb {

// Inclusive prefix sum of `v` over the block in thread order, and the block total in `total`.
// Any block size up to 1024 threads; every thread must call it (it holds two barriers). `scratch`
// is 33 ints of shared memory owned by the call.
__device__ __forceinline__ int block_inclusive_scan(int v, int& total, int* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warps = (blockDim.x + 31) / 32;
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const int up = __shfl_up_sync(0xffffffffu, v, offset);
    if (lane >= offset) v += up;
  }
  if (lane == 31) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    int w = lane < warps ? scratch[lane] : 0;
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
      const int up = __shfl_up_sync(0xffffffffu, w, offset);
      if (lane >= offset) w += up;
    }
    scratch[lane] = w;  // inclusive sums of the warp totals
  }
  __syncthreads();
  total = scratch[warps - 1];
  const int before = warp > 0 ? scratch[warp - 1] : 0;
  __syncthreads();  // scratch is free again when the call returns
  return v + before;
}

}  // namespace rb
