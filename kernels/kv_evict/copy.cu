// Moving KV-cache pages and tokens: compaction after token eviction, copy-on-write of shared
// blocks, and swapping blocks to pinned host memory and back. Every kernel copies bytes, so one
// instance serves every cache type; rows are 16-byte vectors (head_dim * element size is a
// multiple of 16 for every supported head dim and type).
//
// kv_compact
//   For sequence b and kv head h, kept token j (j < min(budgets[b], context_lens[b])) is token
//   kept[b][h][j] of the old pages and goes to slot j of the new pages: K and V rows both.
//   Pages (common/attention.cuh) are [page][kv_head][page_size][row]; old_tables and new_tables
//   are int32 [batch][max_pages_per_seq]; the new pages must not overlap the old ones.
//   block 256 threads (KV_COMPACT_BLOCK = 256), one 16-byte vector of K and one of V each;
//   grid (ceil(num_kv_heads * kept_stride * row_vectors / 256), batch).
// kv_copy_pages
//   Page pairs i < count: K and V page src_pages[i] -> dst_pages[i], where a null page list means
//   "densely packed": page i of a staging buffer (a pinned host buffer when swapping: the kernel
//   reads or writes host memory over PCIe directly, one launch for any number of scattered
//   blocks). Copy-on-write passes both lists. page_vectors = page bytes / 16.
//   block 256 threads (KV_COPY_PAGES_BLOCK = 256), grid (count, 2): y = 0 copies K, 1 copies V.
#include <cstdint>

namespace {

constexpr int kCompactThreads = 256;
constexpr int kCopyThreads = 256;
constexpr int kCopyUnroll = 4;  // vectors in flight per thread: PCIe latency is microseconds

}  // namespace

extern "C" __global__ void __launch_bounds__(kCompactThreads)
    kv_compact(uint4* k_pool, uint4* v_pool, const int* old_tables, const int* new_tables,
               int max_pages_per_seq, const int* kept, int kept_stride, const int* budgets,
               const int* context_lens, int num_kv_heads, int page_size, int row_vectors) {
  const int seq = blockIdx.y;
  const int64_t i = int64_t(blockIdx.x) * kCompactThreads + threadIdx.x;
  const int vec = int(i % row_vectors);
  const int64_t slot_row = i / row_vectors;
  const int j = int(slot_row % kept_stride), kv_head = int(slot_row / kept_stride);
  if (kv_head >= num_kv_heads || j >= min(budgets[seq], context_lens[seq])) return;
  const int src_token = kept[(int64_t(seq) * num_kv_heads + kv_head) * kept_stride + j];
  const int* old_row = old_tables + int64_t(seq) * max_pages_per_seq;
  const int* new_row = new_tables + int64_t(seq) * max_pages_per_seq;
  auto at = [&](int page, int slot) {
    return ((int64_t(page) * num_kv_heads + kv_head) * page_size + slot) * row_vectors + vec;
  };
  const int64_t src = at(old_row[src_token / page_size], src_token % page_size);
  const int64_t dst = at(new_row[j / page_size], j % page_size);
  const uint4 k = k_pool[src], v = v_pool[src];  // both loads in flight before either store
  k_pool[dst] = k;
  v_pool[dst] = v;
}

extern "C" __global__ void __launch_bounds__(kCopyThreads)
    kv_copy_pages(const uint4* src_k, const uint4* src_v, uint4* dst_k, uint4* dst_v,
                  const int* src_pages, const int* dst_pages, int count, int page_vectors) {
  const int pair = blockIdx.x;
  if (pair >= count) return;
  const uint4* src = blockIdx.y == 0 ? src_k : src_v;
  uint4* dst = blockIdx.y == 0 ? dst_k : dst_v;
  const int64_t from = int64_t(src_pages ? src_pages[pair] : pair) * page_vectors;
  const int64_t to = int64_t(dst_pages ? dst_pages[pair] : pair) * page_vectors;
  int v = threadIdx.x;
  for (; v + (kCopyUnroll - 1) * kCopyThreads < page_vectors; v += kCopyUnroll * kCopyThreads) {
    uint4 chunk[kCopyUnroll];
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u) chunk[u] = src[from + v + u * kCopyThreads];
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u) dst[to + v + u * kCopyThreads] = chunk[u];
  }
  for (; v < page_vectors; v += kCopyThreads) dst[to + v] = src[from + v];
}
