// The paged KV-cache layout shared by the attention kernels (kernels/attention/).
//
// k_pool, v_pool: [num_pages][num_kv_heads][page_size][head_dim] ("HND" per page), so that the
// tokens of one kv head in one page are page_size * head_dim contiguous elements.
// block_tables: int32 [batch][max_pages_per_seq]; entry p of sequence b is the page holding its
// tokens [p * page_size, (p + 1) * page_size). context_lens: int32 [batch], tokens per sequence
// including the q_len new ones, whose positions are context_len - q_len + i.
#pragma once
#include <cstdint>

namespace rb {

// Element offset of token `slot_offset` of page `page` for kv head `kv_head`. 64-bit: a pool
// can exceed 2^31 elements.
__device__ __forceinline__ int64_t paged_token_offset(int page, int kv_head, int num_kv_heads,
                                                      int page_size, int slot_offset,
                                                      int head_dim) {
  return ((int64_t(page) * num_kv_heads + kv_head) * page_size + slot_offset) * head_dim;
}

// Keys [begin, end) of split `split` of a sequence of `context` tokens: splits are whole
// multiples of `align` (chunk = ceil(ceil(context / num_splits) / align) * align). A paged cache
// aligns to its page size, so no page is shared by two CTAs; a contiguous cache (one page per
// sequence) aligns to the page size of the paged cache it is compared with, so both split the
// same way. Trailing splits may be empty (begin >= end). src/attention/config.rs mirrors it.
struct KeyRange {
  int begin, end;
};

__device__ __forceinline__ KeyRange split_keys(int context, int num_splits, int align,
                                               int split) {
  const int per_split = (context + num_splits - 1) / num_splits;
  const int chunk = (per_split + align - 1) / align * align;
  const int64_t begin = int64_t(split) * chunk;
  if (begin >= context) return {context, context};
  return {int(begin), int(begin + chunk < context ? begin + chunk : context)};
}

}  // namespace rb
