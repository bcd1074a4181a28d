// The `simt` GEMM path: the correctness fallback for shapes and alignments the tensor-core paths
// reject. Simple on purpose; speed is secondary. Launcher: src/gemm/paths/simt.rs.
//
//   Y[m][n] = bf16_rn( sum_k X[m][k] W[n][k] * scales + bias[n] ), X [M][K], W [N][K] row-major.
//
// Kernels (all: x, w, y, scale_x, scale_w, bias, m, n, k, scale_mode):
//   gemm_simt_bf16, gemm_simt_e4m3, gemm_simt_e5m2, gemm_simt_s8
//       X and W in the same format; scale_mode 0 (bf16) or 1, 2, 3 (scale_x and scale_w).
//   gemm_simt_we4m3_abf16, gemm_simt_we5m2_abf16, gemm_simt_ws8_abf16
//       weight-only: X bf16, W codes; scale_mode 1, 2, 3 with W's scales only (scale_x unused).
//
// Design: a 64 x 64 output tile per CTA of 256 threads, each thread 4 x 4 outputs (rows
// ty + 16 i, columns tx + 16 j). K advances 16 at a time: both operand tiles are read element by
// element (byte loads: no alignment assumed for any M, N, K or base address), decoded exactly to
// f32 and stored in shared memory K-major, then 16 FMAs per k per thread.
// Every 128 K (the block-128 scale groups) the partial sums are added into the f32 totals, times
// the block's scales in scale_mode 3, times 1 otherwise. INT8 x INT8 partials are exact in f32:
// at most 128 products of |value| <= 127 * 127 sum to < 2^24, so every partial sum is an integer
// f32 represents exactly: the same number int32 accumulation gives.
// A grid-stride loop over tiles (a 1-D grid of any size), so no grid limit binds.
#include <cstdint>

#include <cuda_bf16.h>

namespace {

constexpr int kTile = 64;
constexpr int kBK = 16;
constexpr int kThreads = 256;
constexpr int kScaleBlock = 128;
static_assert(kScaleBlock % kBK == 0, "promotion happens at the end of a K step");

enum class Format { Bf16, E4m3, E5m2, S8 };

// 2^e as an f32, for e in the normal range [-126, 127] (exact).
__device__ float pow2(int e) { return __int_as_float((e + 127) << 23); }

// Exact value of one FP8 code. e4m3: 1 sign, 4 exponent (bias 7), 3 mantissa bits, no
// infinities, S.1111.111 is NaN. e5m2: 1, 5 (bias 15), 2, IEEE-like. Every value is an f32, and
// the products below are exact (a small integer times a power of two).
__device__ float decode_e4m3(uint32_t code) {
  const int e = (code >> 3) & 15, mant = code & 7;
  float mag;
  if (e == 15 && mant == 7) {
    mag = __int_as_float(0x7fc00000);
  } else if (e == 0) {
    mag = float(mant) * pow2(-9);  // subnormal: (mant / 8) * 2^(1 - 7)
  } else {
    mag = float(8 + mant) * pow2(e - 10);  // (1 + mant / 8) * 2^(e - 7)
  }
  return (code & 0x80) ? -mag : mag;
}

__device__ float decode_e5m2(uint32_t code) {
  const int e = (code >> 2) & 31, mant = code & 3;
  float mag;
  if (e == 31) {
    mag = mant == 0 ? __int_as_float(0x7f800000) : __int_as_float(0x7fc00000);
  } else if (e == 0) {
    mag = float(mant) * pow2(-16);  // subnormal: (mant / 4) * 2^(1 - 15)
  } else {
    mag = float(4 + mant) * pow2(e - 17);  // (1 + mant / 4) * 2^(e - 15)
  }
  return (code & 0x80) ? -mag : mag;
}

// Element `index` of a matrix of format F, read byte by byte.
template <Format F> __device__ float load_element(const uint8_t* base, size_t index) {
  if constexpr (F == Format::Bf16) {
    const uint32_t bits = uint32_t(base[2 * index]) | (uint32_t(base[2 * index + 1]) << 8);
    return __uint_as_float(bits << 16);  // bf16 is the top half of an f32
  } else if constexpr (F == Format::E4m3) {
    return decode_e4m3(base[index]);
  } else if constexpr (F == Format::E5m2) {
    return decode_e5m2(base[index]);
  } else {
    return float(int8_t(base[index]));
  }
}

// Copies rows [row0, row0 + 64) x K [k0, k0 + 16) of a [rows][k] matrix into tile[kk][r], zero
// past the edges. 1024 elements, 4 per thread; consecutive threads read consecutive k.
template <Format F>
__device__ void load_tile(float (&tile)[kBK][kTile + 1], const uint8_t* base, int rows, int k,
                          int row0, int k0) {
#pragma unroll
  for (int i = 0; i < kTile * kBK / kThreads; ++i) {
    const int e = threadIdx.x + i * kThreads;
    const int r = e / kBK, kk = e % kBK;
    const int row = row0 + r, col = k0 + kk;
    tile[kk][r] = row < rows && col < k ? load_element<F>(base, size_t(row) * k + col) : 0.f;
  }
}

// FX: X's format; FW: W's. Weight-only exactly when X is bf16 and W is not.
template <Format FX, Format FW>
__device__ void simt_gemm(const void* x_ptr, const void* w_ptr, __nv_bfloat16* y,
                          const float* scale_x, const float* scale_w, const __nv_bfloat16* bias,
                          int m, int n, int k, int scale_mode) {
  constexpr bool kWeightOnly = FX == Format::Bf16 && FW != Format::Bf16;
  __shared__ float xs[kBK][kTile + 1];
  __shared__ float ws[kBK][kTile + 1];
  if (m <= 0 || n <= 0) return;

  const uint8_t* x = static_cast<const uint8_t*>(x_ptr);
  const uint8_t* w = static_cast<const uint8_t*>(w_ptr);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const long long tiles_n = (n + kTile - 1) / kTile;
  const long long tiles = (long long)((m + kTile - 1) / kTile) * tiles_n;
  const int k_blocks = (k + kScaleBlock - 1) / kScaleBlock;

  for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int m0 = int(tile / tiles_n) * kTile, n0 = int(tile % tiles_n) * kTile;
    float total[4][4] = {}, part[4][4] = {};

#pragma unroll 1
    for (int k0 = 0; k0 < k; k0 += kBK) {
      load_tile<FX>(xs, x, m, k, m0, k0);
      load_tile<FW>(ws, w, n, k, n0, k0);
      __syncthreads();
#pragma unroll 4
      for (int kk = 0; kk < kBK; ++kk) {
        float a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = xs[kk][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; ++j) b[j] = ws[kk][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) part[i][j] = fmaf(a[i], b[j], part[i][j]);
      }
      __syncthreads();  // the next step overwrites the tiles

      const int k_end = k0 + kBK;
      if (k_end % kScaleBlock == 0 || k_end >= k) {  // the end of scale block kb: promote
        const int kb = k0 / kScaleBlock;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int row = m0 + ty + 16 * i;
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int col = n0 + tx + 16 * j;
            float s = 1.f;
            if (scale_mode == 3 && row < m && col < n) {
              s = scale_w[size_t(col / kScaleBlock) * k_blocks + kb];
              if (!kWeightOnly) s = scale_x[size_t(row) * k_blocks + kb] * s;
            }
            total[i][j] = fmaf(part[i][j], s, total[i][j]);
            part[i][j] = 0.f;
          }
        }
      }
    }

#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = m0 + ty + 16 * i;
      if (row >= m) continue;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = n0 + tx + 16 * j;
        if (col >= n) continue;
        float s = 1.f;
        if (scale_mode == 1) {
          s = kWeightOnly ? scale_w[0] : scale_x[0] * scale_w[0];
        } else if (scale_mode == 2) {
          s = kWeightOnly ? scale_w[col] : scale_x[row] * scale_w[col];
        }
        float v = total[i][j] * s;
        if (bias != nullptr) v += __bfloat162float(bias[col]);
        y[size_t(row) * n + col] = __float2bfloat16_rn(v);
      }
    }
  }
}

}  // namespace

#define RB_GEMM_SIMT_KERNEL(NAME, FX, FW)                                                         \
  extern "C" __global__ void __launch_bounds__(kThreads)                                        \
      NAME(const void* x, const void* w, __nv_bfloat16* y, const float* scale_x,                  \
           const float* scale_w, const __nv_bfloat16* bias, int m, int n, int k,                  \
           int scale_mode) {                                                                      \
    simt_gemm<Format::FX, Format::FW>(x, w, y, scale_x, scale_w, bias, m, n, k, scale_mode);      \
  }

RB_GEMM_SIMT_KERNEL(gemm_simt_bf16, Bf16, Bf16)
RB_GEMM_SIMT_KERNEL(gemm_simt_e4m3, E4m3, E4m3)
RB_GEMM_SIMT_KERNEL(gemm_simt_e5m2, E5m2, E5m2)
RB_GEMM_SIMT_KERNEL(gemm_simt_s8, S8, S8)
RB_GEMM_SIMT_KERNEL(gemm_simt_we4m3_abf16, Bf16, E4m3)
RB_GEMM_SIMT_KERNEL(gemm_simt_we5m2_abf16, Bf16, E5m2)
RB_GEMM_SIMT_KERNEL(gemm_simt_ws8_abf16, Bf16, S8)
