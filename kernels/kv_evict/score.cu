// Attention-mass scores for token eviction (H2O, TOVA, SnapKV): the softmax probability that the
// given queries put on each cached key, summed over the q heads of a kv head's group and over the
// query rows. Three launches (graph-capturable: shapes depend only on maxima):
//
// kv_score_logits_<kv>_<q>, kv in {bf16, fp16, e4m3, e5m2}, q in {bf16, fp16}
//   q [batch][rows][num_q_heads][head_dim] of q; row i of a sequence sits at position
//   context_len - rows + i and sees keys t <= that position (the paged-decode convention).
//   K pages as in common/attention.cuh; k_scales[kv_head * scale_stride] (fp8 caches).
//   logits f32 [batch][num_kv_heads][rows * group][stride], row r = i * group + hq (q head
//   kv_head * group + hq): s = softmax_scale * k_scale * q.k, -INFINITY where masked; written for
//   t < context_len only.
//   partials float2 [batch][num_kv_heads][rows * group][ceil(stride / 32)]: (max, sum exp(s -
//   max)) over the keys [32 j, 32 j + 32) of a row; (-INFINITY, 0) when none is visible.
//   block 128 threads (KV_SCORE_LOGITS_BLOCK = 128), one key each; grid (ceil(stride / 128),
//   num_kv_heads, batch). head_dim a multiple of 16 up to 256; rows * group <= 1024.
// kv_score_lse: grid (rows * group, num_kv_heads, batch), block 128: lse f32 [batch][kv][rows *
//   group] = log sum_t exp(s) over the row's visible keys, merged from the partials (-INFINITY
//   for a row that sees nothing).
// kv_score_accumulate: grid (ceil(stride / 1024), num_kv_heads, batch), block 256: scores f32
//   [batch][num_kv_heads][stride] at t < context_len = (accumulate ? scores : 0) +
//   sum_r exp(s_r(t) - lse_r). H2O accumulates across decode steps; TOVA and SnapKV overwrite.
//
// Why a thread per key with the key row streamed from global memory: a decode step has few rows
// (group x 1), so the work per key byte is small and the kernel must run at DRAM speed; staging
// K through shared memory would make every row group re-read it there. The queries, reused by
// every key, are staged as f32 in shared memory and read as warp-wide broadcasts. Logits go
// through a scratch buffer (about 4 * rows * group / (2 * head_dim * kv_bytes) of the K bytes)
// because the normalisation needs every key of a row first.
#include <cstdint>
#include <math_constants.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "common/attention.cuh"
#include "common/dtype.cuh"

namespace {

constexpr int kLogitsThreads = 128;
constexpr int kLseThreads = 128;
constexpr int kAccumulateThreads = 256;
constexpr int kAccumulateTokens = 4;   // tokens per thread of kv_score_accumulate
constexpr int kRowsStaged = 32;        // q rows in shared memory at a time
constexpr int kRowsInRegisters = 8;    // rows whose dot products a thread accumulates at once
constexpr int kMaxRows = 1024;
constexpr int kMaxHeadDim = 256;

struct LogitsArgs {
  const void* q;
  const void* k_pool;
  const int* block_tables;
  int max_pages_per_seq;
  const int* context_lens;
  const float* k_scales;
  int scale_stride;
  float* logits;
  float2* partials;
  int rows, num_q_heads, num_kv_heads, head_dim, page_size, stride;
  float softmax_scale;
};

// Eight consecutive elements of a 16-bit row (one 16-byte load) as f32.
template <typename T> __device__ __forceinline__ void unpack8(uint4 raw, float* out) {
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = rb::Half16<T>::unpack(w[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// Sixteen fp8 elements (one 16-byte load) as f32, widened exactly through fp16.
template <typename Fp8> __device__ __forceinline__ void unpack16_fp8(uint4 raw, float* out) {
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint2 h = rb::widen_fp8x4<Fp8, __half>(w[i]);
    const float2 lo = rb::Half16<__half>::unpack(h.x), hi = rb::Half16<__half>::unpack(h.y);
    out[4 * i] = lo.x;
    out[4 * i + 1] = lo.y;
    out[4 * i + 2] = hi.x;
    out[4 * i + 3] = hi.y;
  }
}

template <typename KV> struct KeyChunk {
  static constexpr int kElems = 8;
  __device__ __forceinline__ static void load(uint4 raw, float* out) { unpack8<KV>(raw, out); }
};
template <> struct KeyChunk<rb::E4m3> {
  static constexpr int kElems = 16;
  __device__ __forceinline__ static void load(uint4 raw, float* out) {
    unpack16_fp8<rb::E4m3>(raw, out);
  }
};
template <> struct KeyChunk<rb::E5m2> {
  static constexpr int kElems = 16;
  __device__ __forceinline__ static void load(uint4 raw, float* out) {
    unpack16_fp8<rb::E5m2>(raw, out);
  }
};

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// exp(s - m) that is 0 for a masked score even when the whole set is masked (m = -inf).
__device__ __forceinline__ float exp_shifted(float s, float m) {
  return s == -CUDART_INF_F ? 0.f : __expf(s - m);
}

// Dot products of this thread's key with q rows [row0, row0 + J) of the staged block, J a
// compile-time count so the accumulators stay in registers.
template <typename KV, int J>
__device__ __forceinline__ void dot_rows(const uint4* key_row, const float* q_s, int row0,
                                         int head_dim, float* acc) {
  using Chunk = KeyChunk<KV>;
#pragma unroll
  for (int j = 0; j < J; ++j) acc[j] = 0.f;
  const int chunks = head_dim / Chunk::kElems;
#pragma unroll 2
  for (int c = 0; c < chunks; ++c) {
    float k[Chunk::kElems];
    Chunk::load(key_row[c], k);
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const float4* q = reinterpret_cast<const float4*>(q_s + (row0 + j) * head_dim) +
                        c * Chunk::kElems / 4;
#pragma unroll
      for (int e = 0; e < Chunk::kElems / 4; ++e) {
        const float4 qv = q[e];
        acc[j] = fmaf(qv.x, k[4 * e], acc[j]);
        acc[j] = fmaf(qv.y, k[4 * e + 1], acc[j]);
        acc[j] = fmaf(qv.z, k[4 * e + 2], acc[j]);
        acc[j] = fmaf(qv.w, k[4 * e + 3], acc[j]);
      }
    }
  }
}

template <typename KV, typename QT> __device__ void score_logits(const LogitsArgs& a) {
  __shared__ __align__(16) float q_s[kRowsStaged * kMaxHeadDim];
  const int seq = blockIdx.z, kv_head = blockIdx.y;
  const int ctx = a.context_lens[seq];
  const int t = blockIdx.x * kLogitsThreads + threadIdx.x;
  if (blockIdx.x * kLogitsThreads >= ctx) return;  // whole block past the end: uniform exit
  const int group = a.num_q_heads / a.num_kv_heads;
  const int total_rows = a.rows * group;
  if (a.head_dim % 16 != 0 || a.head_dim > kMaxHeadDim || total_rows > kMaxRows) __trap();
  const int D = a.head_dim;
  const bool live = t < ctx;
  // The key row this thread scores (a clamped, valid row for threads past the end).
  const int tk = live ? t : ctx - 1;
  const int page = a.block_tables[int64_t(seq) * a.max_pages_per_seq + tk / a.page_size];
  using Storage = typename rb::KvFormat<KV>::Storage;
  const uint4* key_row = reinterpret_cast<const uint4*>(
      static_cast<const Storage*>(a.k_pool) +
      rb::paged_token_offset(page, kv_head, a.num_kv_heads, a.page_size, tk % a.page_size, D));
  float scale = a.softmax_scale;
  if constexpr (rb::KvFormat<KV>::kFp8) scale *= a.k_scales[kv_head * a.scale_stride];
  const int64_t row_base = (int64_t(seq) * a.num_kv_heads + kv_head) * total_rows;
  const int partial_stride = (a.stride + 31) / 32;
  const QT* q = static_cast<const QT*>(a.q);

  for (int r0 = 0; r0 < total_rows; r0 += kRowsStaged) {
    const int staged = min(kRowsStaged, total_rows - r0);
    __syncthreads();  // the previous block of rows is no longer read
    for (int c = threadIdx.x; c < staged * D / 8; c += kLogitsThreads) {
      const int rr = c / (D / 8), d0 = c % (D / 8) * 8, r = r0 + rr;
      const int i = r / group, hq = kv_head * group + r % group;
      const uint4 raw = *reinterpret_cast<const uint4*>(
          q + ((int64_t(seq) * a.rows + i) * a.num_q_heads + hq) * D + d0);
      unpack8<QT>(raw, q_s + rr * D + d0);
    }
    __syncthreads();
    for (int j0 = 0; j0 < staged; j0 += kRowsInRegisters) {
      float acc[kRowsInRegisters];
      const int n = min(kRowsInRegisters, staged - j0);
      // Few rows is the decode case (group x 1): do not pay for eight.
      if (n == 1) dot_rows<KV, 1>(key_row, q_s, j0, D, acc);
      else if (n == 2) dot_rows<KV, 2>(key_row, q_s, j0, D, acc);
      else if (n <= 4) dot_rows<KV, 4>(key_row, q_s, j0, D, acc);
      else dot_rows<KV, 8>(key_row, q_s, j0, D, acc);
#pragma unroll
      for (int j = 0; j < kRowsInRegisters; ++j) {
        if (j >= n) break;  // n is block-uniform
        const int r = r0 + j0 + j;
        const int position = ctx - a.rows + r / group;
        const float s = live && t <= position ? scale * acc[j] : -CUDART_INF_F;
        if (live) a.logits[(row_base + r) * a.stride + t] = s;
        const float m = warp_max(s);
        const float l = warp_sum(exp_shifted(s, m));
        if (threadIdx.x % 32 == 0 && t < ctx)
          a.partials[(row_base + r) * partial_stride + t / 32] = make_float2(m, l);
      }
    }
  }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kLseThreads)
    kv_score_lse(const float2* partials, const int* context_lens, float* lse, int stride) {
  __shared__ float2 merged[kLseThreads / 32];
  const int row = blockIdx.x, rows = gridDim.x, kv_head = blockIdx.y, seq = blockIdx.z;
  const int64_t r = (int64_t(seq) * gridDim.y + kv_head) * rows + row;
  const int n = (context_lens[seq] + 31) / 32;
  const float2* p = partials + r * ((stride + 31) / 32);
  float m = -CUDART_INF_F, l = 0.f;
  for (int j = threadIdx.x; j < n; j += kLseThreads) {
    const float2 x = p[j];
    const float mm = fmaxf(m, x.x);
    if (mm != -CUDART_INF_F) l = l * __expf(m - mm) + x.y * __expf(x.x - mm);
    m = mm;
  }
  const float wm = warp_max(m);
  l = warp_sum(wm == -CUDART_INF_F ? 0.f : l * __expf(m - wm));
  if (threadIdx.x % 32 == 0) merged[threadIdx.x / 32] = make_float2(wm, l);
  __syncthreads();
  if (threadIdx.x == 0) {
    float bm = -CUDART_INF_F, bl = 0.f;
    for (int w = 0; w < kLseThreads / 32; ++w) bm = fmaxf(bm, merged[w].x);
    for (int w = 0; w < kLseThreads / 32; ++w)
      if (merged[w].x != -CUDART_INF_F) bl += merged[w].y * __expf(merged[w].x - bm);
    lse[r] = bl > 0.f ? bm + __logf(bl) : -CUDART_INF_F;
  }
}

extern "C" __global__ void __launch_bounds__(kAccumulateThreads)
    kv_score_accumulate(const float* logits, const float* lse, const int* context_lens,
                        float* scores, int rows_total, int stride, int accumulate) {
  __shared__ float lse_s[kMaxRows];
  const int kv_head = blockIdx.y, seq = blockIdx.z;
  const int ctx = context_lens[seq];
  const int64_t head = int64_t(seq) * gridDim.y + kv_head;
  if (rows_total > kMaxRows) __trap();
  for (int r = threadIdx.x; r < rows_total; r += kAccumulateThreads)
    lse_s[r] = lse[head * rows_total + r];
  __syncthreads();
  const int t0 = blockIdx.x * kAccumulateThreads * kAccumulateTokens + threadIdx.x;
#pragma unroll
  for (int k = 0; k < kAccumulateTokens; ++k) {
    const int t = t0 + k * kAccumulateThreads;
    if (t >= ctx) break;
    float sum = 0.f;
    for (int r = 0; r < rows_total; ++r) {
      const float s = logits[(head * rows_total + r) * stride + t];
      if (lse_s[r] != -CUDART_INF_F) sum += exp_shifted(s, lse_s[r]);
    }
    float* out = scores + head * stride + t;
    *out = accumulate ? *out + sum : sum;
  }
}

#define RB_KV_SCORE_LOGITS(KV_NAME, KV, Q_NAME, QT)                                              \
  extern "C" __global__ void __launch_bounds__(kLogitsThreads) kv_score_logits_##KV_NAME##_##Q_NAME( \
      const QT* q, const void* k_pool, const int* block_tables, int max_pages_per_seq,           \
      const int* context_lens, const float* k_scales, int scale_stride, float* logits,           \
      float2* partials, int rows, int num_q_heads, int num_kv_heads, int head_dim,               \
      int page_size, int stride, float softmax_scale) {                                          \
    score_logits<KV, QT>({q, k_pool, block_tables, max_pages_per_seq, context_lens, k_scales,    \
                          scale_stride, logits, partials, rows, num_q_heads, num_kv_heads,       \
                          head_dim, page_size, stride, softmax_scale});                          \
  }
#define RB_KV_SCORE_LOGITS_QUERY_TYPES(KV_NAME, KV)                                              \
  RB_KV_SCORE_LOGITS(KV_NAME, KV, bf16, __nv_bfloat16)                                           \
  RB_KV_SCORE_LOGITS(KV_NAME, KV, fp16, __half)

RB_KV_SCORE_LOGITS_QUERY_TYPES(bf16, __nv_bfloat16)
RB_KV_SCORE_LOGITS_QUERY_TYPES(fp16, __half)
RB_KV_SCORE_LOGITS_QUERY_TYPES(e4m3, rb::E4m3)
RB_KV_SCORE_LOGITS_QUERY_TYPES(e5m2, rb::E5m2)
