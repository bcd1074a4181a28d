// Quantization of bf16 GEMM operands to fp8 (e4m3, e5m2) or int8 with f32 scales, bit-exact with
// the CPU quantizer of src/gemm/quant/mod.rs (the arithmetic is in common/quant.cuh).
//
// x [rows][cols] bf16, row-major; out [rows][cols] one byte per element. A scaling group is a
// tile of tile_rows x tile_cols elements, the last ones along each edge partial; scales f32
// [ceil(rows / tile_rows)][ceil(cols / tile_cols)], row-major. <fmt> is e4m3, e5m2 or int8.
// Every kernel runs 256 threads per CTA (BLOCK_THREADS in src/gemm/quant/gpu.rs).
//
// gemm_amax_bf16 (per-tensor, first launch)
//   partials[blockIdx.x] = max |x| over the block's grid-stride share of x[0, n).
//   block 256; grid G <= 1024 (AMAX_MAX_GRID in src/gemm/quant/gpu.rs), one CTA per 4096
//   elements up to that.
// gemm_quantize_tensor_<fmt> (per-tensor, second launch: one group, the whole tensor)
//   every CTA reduces partials[0, G) to the amax (the same value in each: max is exact), CTA 0
//   writes scale[0]; then a grid-stride loop over 4-element chunks of x[0, n).
//   block 256; any grid (the host: one wave of resident CTAs, fewer for small tensors).
// gemm_quantize_tiles_<fmt> (one CTA per group: per-row groups 1 x cols, 128 x 128 blocks)
//   group g = blockIdx.x is tile (g / tiles_across, g % tiles_across).
//   block 256; grid = number of groups.
// gemm_quantize_1x128_<fmt> (one warp per 1 x 128 group: block-scaled activations)
//   block 256: 8 groups per CTA, in row-major group order; grid
//   ceil(rows * ceil(cols / 128) / 8).
//
// The amax and the quantization are two passes over a group: the scale needs every element
// first. The second pass re-reads the group, mostly from L1/L2 (a group is one row or a 32 KB
// block); only per-tensor scaling reads x from DRAM twice. Accesses are 4 elements wide
// (8-byte loads, 4-byte stores) when every row starts 8-byte aligned (cols % 4 == 0, or one row),
// else element by element.
#include <cstdint>

#include <cuda_bf16.h>

#include "common/grid.cuh"
#include "common/quant.cuh"
#include "common/reduce.cuh"

namespace {

constexpr int kThreads = 256;
// Chunks in flight per thread in the per-tensor grid-stride loops. The quantizing loop takes 2:
// at 4, the int8 instance spills on sm_90a (registers live across the slow-path calls of 16
// IEEE divisions).
constexpr int kAmaxUnroll = 4;
constexpr int kQuantizeUnroll = 2;

using bf16 = __nv_bfloat16;

// Quantizes the group x[r0, r1) x [c0, c1) of a matrix of `rows` x `cols` with `threads` threads
// (this one is `thread`), whose maxima `reduce_max` combines; the group's thread 0 writes its
// scale.
template <typename Q, typename ReduceMax>
__device__ __forceinline__ void quantize_group(const bf16* __restrict__ x, uint8_t* __restrict__ out,
                                               float* __restrict__ scale_out, int rows, int cols,
                                               int r0, int r1, int c0, int c1, int thread,
                                               int threads, ReduceMax reduce_max) {
  // Chunks start at r * cols + c0 + 4j: all 8-byte (bf16) and 4-byte (codes) aligned when rows
  // start aligned and c0 is a multiple of 4.
  const bool vec = (cols % 4 == 0 || rows == 1) && c0 % 4 == 0;
  const int per_row = (c1 - c0 + 3) / 4;
  const int chunks = (r1 - r0) * per_row;
  // Element offsets of chunk t and of the end of its row's part of the group.
  auto begin = [&](int t) { return int64_t(r0 + t / per_row) * cols + c0 + t % per_row * 4; };
  auto end = [&](int t) { return int64_t(r0 + t / per_row) * cols + c1; };
  float amax = 0.f;
  for (int t = thread; t < chunks; t += threads)
    amax = fmaxf(amax, rb::abs_max4(rb::load_bf16x4(x, begin(t), end(t), vec)));
  const float scale = rb::quant_scale<Q>(reduce_max(amax));
  if (thread == 0) *scale_out = scale;
  for (int t = thread; t < chunks; t += threads) {
    const float4 v = rb::load_bf16x4(x, begin(t), end(t), vec);
    rb::store_bytes4(out, begin(t), end(t), vec, rb::quantize4<Q>(v, scale));
  }
}

template <typename Q>
__device__ __forceinline__ void quantize_tensor(const bf16* __restrict__ x, int64_t n,
                                                const float* __restrict__ partials,
                                                int num_partials, uint8_t* __restrict__ out,
                                                float* __restrict__ scale_out) {
  float amax = 0.f;
  for (int i = threadIdx.x; i < num_partials; i += kThreads) amax = fmaxf(amax, partials[i]);
  const float scale = rb::quant_scale<Q>(rb::block_max(amax));
  if (blockIdx.x == 0 && threadIdx.x == 0) *scale_out = scale;
  rb::for_each_unrolled<kQuantizeUnroll>(
      size_t(n + 3) / 4,
      [&](size_t t) { return rb::load_bf16x4(x, int64_t(t) * 4, n, true); },
      [&](size_t t, float4 v) {
        rb::store_bytes4(out, int64_t(t) * 4, n, true, rb::quantize4<Q>(v, scale));
      });
}

template <typename Q>
__device__ __forceinline__ void quantize_tiles(const bf16* x, int rows, int cols, int tile_rows,
                                               int tile_cols, uint8_t* out, float* scales) {
  const int tiles_across = (cols + tile_cols - 1) / tile_cols;
  const int g = blockIdx.x, tr = g / tiles_across, tc = g % tiles_across;
  const int r0 = tr * tile_rows, c0 = tc * tile_cols;
  quantize_group<Q>(x, out, scales + g, rows, cols, r0, min(r0 + tile_rows, rows), c0,
                    min(c0 + tile_cols, cols), threadIdx.x, kThreads,
                    [](float v) { return rb::block_max(v); });
}

template <typename Q>
__device__ __forceinline__ void quantize_1x128(const bf16* x, int rows, int cols, uint8_t* out,
                                               float* scales) {
  const int groups_across = (cols + 127) / 128;
  const int64_t g = int64_t(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (g >= int64_t(rows) * groups_across) return;  // whole warps only: no barrier follows
  const int r = int(g / groups_across), c0 = int(g % groups_across) * 128;
  quantize_group<Q>(x, out, scales + g, rows, cols, r, r + 1, c0, min(c0 + 128, cols),
                    threadIdx.x % 32, 32, [](float v) { return rb::warp_max(v); });
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads)
    gemm_amax_bf16(const bf16* __restrict__ x, int64_t n, float* __restrict__ partials) {
  float amax = 0.f;
  rb::for_each_unrolled<kAmaxUnroll>(
      size_t(n + 3) / 4,
      [&](size_t t) { return rb::load_bf16x4(x, int64_t(t) * 4, n, true); },
      [&](size_t, float4 v) { amax = fmaxf(amax, rb::abs_max4(v)); });
  amax = rb::block_max(amax);
  if (threadIdx.x == 0) partials[blockIdx.x] = amax;
}

#define RB_GEMM_QUANTIZE(NAME, Q)                                                                 \
  extern "C" __global__ void __launch_bounds__(kThreads) gemm_quantize_tensor_##NAME(             \
      const bf16* x, int64_t n, const float* partials, int num_partials, uint8_t* out,            \
      float* scale) {                                                                             \
    quantize_tensor<Q>(x, n, partials, num_partials, out, scale);                                 \
  }                                                                                               \
  extern "C" __global__ void __launch_bounds__(kThreads) gemm_quantize_tiles_##NAME(              \
      const bf16* x, int rows, int cols, int tile_rows, int tile_cols, uint8_t* out,              \
      float* scales) {                                                                            \
    quantize_tiles<Q>(x, rows, cols, tile_rows, tile_cols, out, scales);                          \
  }                                                                                               \
  extern "C" __global__ void __launch_bounds__(kThreads) gemm_quantize_1x128_##NAME(              \
      const bf16* x, int rows, int cols, uint8_t* out, float* scales) {                           \
    quantize_1x128<Q>(x, rows, cols, out, scales);                                                \
  }

RB_GEMM_QUANTIZE(e4m3, rb::QuantE4m3)
RB_GEMM_QUANTIZE(e5m2, rb::QuantE5m2)
RB_GEMM_QUANTIZE(int8, rb::QuantInt8)
