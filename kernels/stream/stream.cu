// Memory streaming kernels: the HBM and L2 bandwidth a simple kernel can reach. Each operation
// exists with 4-byte accesses (`_u32`, `_f32`) and 16-byte accesses (`_u32x4`, `_f32x4`); the
// 16-byte variants process the last n % 4 elements with scalar accesses, so any n works.
// Launch with a grid-stride grid (SMs x resident blocks); any block size up to 1024.
#include <cstddef>
#include <cstdint>

#include "common/grid.cuh"
#include "common/reduce.cuh"
#include "common/vec.cuh"

namespace {

// Four independent 16-byte loads per thread per trip keep enough bytes in flight on H100 without
// raising register pressure; measured choices belong in results/, not here.
constexpr int kUnroll = 4;

template <typename V> __device__ __forceinline__ size_t vector_count(size_t n) {
  return n / rb::lanes<V>::value;
}

// Sum of all 32-bit words (exact, order-independent integer arithmetic, so the CPU check is exact).
// One partial per block: no atomics and nothing to zero between launches.
template <typename V>
__device__ void read_sum(const uint32_t* __restrict__ src, size_t n,
                         unsigned long long* __restrict__ block_partials) {
  const V* vsrc = reinterpret_cast<const V*>(src);
  const size_t nv = vector_count<V>(n);
  unsigned long long acc = 0;
  rb::for_each_unrolled<kUnroll>(
      nv, [&](size_t i) { return vsrc[i]; }, [&](size_t, V v) { acc += rb::lane_sum(v); });
  rb::for_each_tail(nv * rb::lanes<V>::value, n, [&](size_t i) { acc += src[i]; });
  acc = rb::block_sum(acc);
  if (threadIdx.x == 0) block_partials[blockIdx.x] = acc;
}

template <typename V> __device__ void fill(uint32_t* __restrict__ dst, size_t n, uint32_t value) {
  V* vdst = reinterpret_cast<V*>(dst);
  const size_t nv = vector_count<V>(n);
  const V item = rb::splat<V>(value);
  rb::for_each_unrolled<kUnroll>(
      nv, [&](size_t) { return item; }, [&](size_t i, V v) { vdst[i] = v; });
  rb::for_each_tail(nv * rb::lanes<V>::value, n, [&](size_t i) { dst[i] = value; });
}

template <typename V>
__device__ void copy(const uint32_t* __restrict__ src, uint32_t* __restrict__ dst, size_t n) {
  const V* vsrc = reinterpret_cast<const V*>(src);
  V* vdst = reinterpret_cast<V*>(dst);
  const size_t nv = vector_count<V>(n);
  rb::for_each_unrolled<kUnroll>(
      nv, [&](size_t i) { return vsrc[i]; }, [&](size_t i, V v) { vdst[i] = v; });
  rb::for_each_tail(nv * rb::lanes<V>::value, n, [&](size_t i) { dst[i] = src[i]; });
}

template <typename V> struct Pair { V b, c; };

template <typename V>
__device__ void triad(float* __restrict__ a, const float* __restrict__ b,
                      const float* __restrict__ c, float s, size_t n) {
  V* va = reinterpret_cast<V*>(a);
  const V* vb = reinterpret_cast<const V*>(b);
  const V* vc = reinterpret_cast<const V*>(c);
  const size_t nv = vector_count<V>(n);
  rb::for_each_unrolled<kUnroll>(
      nv, [&](size_t i) { return Pair<V>{vb[i], vc[i]}; },
      [&](size_t i, Pair<V> p) { va[i] = rb::triad(p.b, p.c, s); });
  rb::for_each_tail(nv * rb::lanes<V>::value, n,
                    [&](size_t i) { a[i] = rb::triad(b[i], c[i], s); });
}

}  // namespace

// One entry point per operation and access width; the Rust side names them in src/stream/.
#define ROOFBENCH_STREAM_KERNELS(WORD_SUFFIX, FLOAT_SUFFIX, UINT_VEC, FLOAT_VEC)                  \
  extern "C" __global__ void stream_read_##WORD_SUFFIX(const uint32_t* src, size_t n,            \
                                                       unsigned long long* block_partials) {     \
    read_sum<UINT_VEC>(src, n, block_partials);                                                  \
  }                                                                                              \
  extern "C" __global__ void stream_write_##WORD_SUFFIX(uint32_t* dst, size_t n, uint32_t value) { \
    fill<UINT_VEC>(dst, n, value);                                                               \
  }                                                                                              \
  extern "C" __global__ void stream_copy_##WORD_SUFFIX(const uint32_t* src, uint32_t* dst,       \
                                                       size_t n) {                               \
    copy<UINT_VEC>(src, dst, n);                                                                 \
  }                                                                                              \
  extern "C" __global__ void stream_triad_##FLOAT_SUFFIX(float* a, const float* b, const float* c, \
                                                         float s, size_t n) {                    \
    triad<FLOAT_VEC>(a, b, c, s, n);                                                             \
  }

ROOFBENCH_STREAM_KERNELS(u32, f32, uint32_t, float)
ROOFBENCH_STREAM_KERNELS(u32x4, f32x4, uint4, float4)
