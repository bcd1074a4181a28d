// Paged KV-cache append: writes the q_len new tokens' K and V of every sequence into their pages
// (layout in common/attention.cuh), narrowing to fp8 with the per-tensor or per-kv-head scales
// where the cache is fp8 (stored = value / scale, rounded to nearest even, saturated to the
// format's largest finite value).
//
// paged_append_<kv>_<q>, kv in {bf16, fp16, e4m3, e5m2}, q (source type) in {bf16, fp16}
//   k_new, v_new [batch][q_len][num_kv_heads][head_dim] of q; token i of sequence b goes to
//   position context_lens[b] - q_len + i. head_dim: a multiple of 8, at most 256.
//   block 64 threads (PAGED_APPEND_BLOCK = 64): threads 0-31 copy K, 32-63 copy V, 8 elements
//   (one 16-byte load) each. grid (q_len * num_kv_heads, batch). No shared memory.
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "common/attention.cuh"
#include "common/dtype.cuh"

namespace {

constexpr int kThreads = 64;

// Eight source values (one uint4 of 16-bit pairs) as the cache stores them.
template <typename KV, typename QT> struct Narrow {
  using Out = uint4;
  __device__ __forceinline__ static uint4 apply(uint4 v, float) {
    if constexpr (std::is_same_v<KV, QT>) {
      return v;
    } else {
      auto convert = [](uint32_t w) {
        const float2 f = rb::Half16<QT>::unpack(w);
        return rb::Half16<KV>::pack(f.x, f.y);
      };
      return make_uint4(convert(v.x), convert(v.y), convert(v.z), convert(v.w));
    }
  }
};

template <typename QT, typename Fp8> struct NarrowFp8 {
  using Out = uint2;
  __device__ __forceinline__ static uint2 apply(uint4 v, float scale) {
    auto convert = [scale](uint32_t lo, uint32_t hi) {
      const float2 a = rb::Half16<QT>::unpack(lo), b = rb::Half16<QT>::unpack(hi);
      return uint32_t(rb::narrow_fp8x2<Fp8>(a.x / scale, a.y / scale)) |
             uint32_t(rb::narrow_fp8x2<Fp8>(b.x / scale, b.y / scale)) << 16;
    };
    return make_uint2(convert(v.x, v.y), convert(v.z, v.w));
  }
};
template <typename QT> struct Narrow<rb::E4m3, QT> : NarrowFp8<QT, rb::E4m3> {};
template <typename QT> struct Narrow<rb::E5m2, QT> : NarrowFp8<QT, rb::E5m2> {};

template <typename KV, typename QT>
__device__ __forceinline__ void paged_append(const QT* k_new, const QT* v_new,
                                             typename rb::KvFormat<KV>::Storage* k_pool,
                                             typename rb::KvFormat<KV>::Storage* v_pool,
                                             const int* block_tables, int max_pages_per_seq,
                                             const int* context_lens, const float* k_scales,
                                             const float* v_scales, int scale_stride, int q_len,
                                             int num_kv_heads, int head_dim, int page_size) {
  const int i = blockIdx.x / num_kv_heads, kv_head = blockIdx.x % num_kv_heads;
  const int seq = blockIdx.y;
  const bool is_v = threadIdx.x >= 32;
  const int d = 8 * (threadIdx.x % 32);
  const int pos = context_lens[seq] - q_len + i;
  if (d >= head_dim || pos < 0) return;
  const int page = block_tables[int64_t(seq) * max_pages_per_seq + pos / page_size];
  const int64_t dst = rb::paged_token_offset(page, kv_head, num_kv_heads, page_size,
                                             pos % page_size, head_dim) + d;
  const int64_t src = ((int64_t(seq) * q_len + i) * num_kv_heads + kv_head) * head_dim + d;
  const uint4 v = *reinterpret_cast<const uint4*>((is_v ? v_new : k_new) + src);
  float scale = 1.f;
  if constexpr (rb::KvFormat<KV>::kFp8) scale = (is_v ? v_scales : k_scales)[kv_head * scale_stride];
  using N = Narrow<KV, QT>;
  *reinterpret_cast<typename N::Out*>((is_v ? v_pool : k_pool) + dst) = N::apply(v, scale);
}

}  // namespace

#define RB_PAGED_APPEND(KV_NAME, KV, KV_STORAGE, Q_NAME, QT)                                     \
  extern "C" __global__ void __launch_bounds__(kThreads) paged_append_##KV_NAME##_##Q_NAME(      \
      const QT* k_new, const QT* v_new, KV_STORAGE* k_pool, KV_STORAGE* v_pool,                  \
      const int* block_tables, int max_pages_per_seq, const int* context_lens,                   \
      const float* k_scales, const float* v_scales, int scale_stride, int q_len,                 \
      int num_kv_heads, int head_dim, int page_size) {                                           \
    paged_append<KV, QT>(k_new, v_new, k_pool, v_pool, block_tables, max_pages_per_seq,          \
                         context_lens, k_scales, v_scales, scale_stride, q_len, num_kv_heads,    \
                         head_dim, page_size);                                                   \
  }

#define RB_PAGED_APPEND_QUERY_TYPES(KV_NAME, KV, KV_STORAGE)                                     \
  RB_PAGED_APPEND(KV_NAME, KV, KV_STORAGE, bf16, __nv_bfloat16)                                  \
  RB_PAGED_APPEND(KV_NAME, KV, KV_STORAGE, fp16, __half)

RB_PAGED_APPEND_QUERY_TYPES(bf16, __nv_bfloat16, __nv_bfloat16)
RB_PAGED_APPEND_QUERY_TYPES(fp16, __half, __half)
RB_PAGED_APPEND_QUERY_TYPES(e4m3, rb::E4m3, __nv_fp8_storage_t)
RB_PAGED_APPEND_QUERY_TYPES(e5m2, rb::E5m2, __nv_fp8_storage_t)
