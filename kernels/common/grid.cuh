// Grid-stride iteration shared by the memory-bound kernels.
#pragma once
#include <cstddef>

namespace rb {

__device__ __forceinline__ size_t global_thread() {
  return size_t(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ size_t grid_threads() { return size_t(gridDim.x) * blockDim.x; }

// Visits items [0, n) with a grid-stride loop, UNROLL items per thread per trip. All UNROLL loads
// are issued before the first consume, so each thread keeps UNROLL independent requests in flight:
// that, not more threads, is what hides DRAM latency in a persistent (SMs x occupancy) grid.
// `load(i)` returns item i; `consume(i, value)` uses it.
template <int UNROLL, typename Load, typename Consume>
__device__ __forceinline__ void for_each_unrolled(size_t n, Load load, Consume consume) {
  using Item = decltype(load(size_t(0)));
  const size_t stride = grid_threads();
  size_t i = global_thread();
  for (; i + (UNROLL - 1) * stride < n; i += UNROLL * stride) {
    Item items[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) items[u] = load(i + u * stride);
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) consume(i + u * stride, items[u]);
  }
  for (; i < n; i += stride) consume(i, load(i));
}

// Visits items [begin, end) once each across the grid: the scalar tail a vectorized kernel leaves
// when the element count is not a multiple of the vector width.
template <typename Body>
__device__ __forceinline__ void for_each_tail(size_t begin, size_t end, Body body) {
  for (size_t i = begin + global_thread(); i < end; i += grid_threads()) body(i);
}

}  // namespace rb
