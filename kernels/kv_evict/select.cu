// Per-(sequence, kv head) top-k selection of the tokens an eviction policy keeps.
//
// kv_select_topk
//   scores f32 [batch][num_kv_heads][stride] (read only when base == kBaseScore), context_lens
//   int32 [batch], budgets int32 [batch] (tokens kept per kv head), kept int32 [batch]
//   [num_kv_heads][kept_stride]: entries [0, min(budget, context_len)) are written, ascending;
//   the rest is left untouched. priority u32 [batch][num_kv_heads][stride]: scratch.
//   recents int32 [batch]: the protected recent window of each sequence (H2O's follows its
//   budget); sinks, pool_kernel, base and seed are the same for every sequence.
//   block 1024 threads (KV_SELECT_BLOCK = 1024), grid (num_kv_heads, batch), no dynamic smem.
//
// Which tokens (src/kv_evict/policy.rs is the reference and must agree bit for bit):
//   priority(t) = +inf for t < sinks; FLT_MAX for t >= len - recent; otherwise by base:
//   recency: float(t); random: random_priority(seed, seq, kv_head, t); score: the maximum of
//   scores[t - pool/2 .. t + pool/2] (clipped to [0, len)). All priorities are >= 0, so their
//   bit patterns order like the values. The kept set is the `budget` largest (priority, t)
//   pairs: ties go to the later token.
//
// How: the budget-th largest priority P is found by an 8-bit radix select over the bit patterns
// (four histogram passes over the row, which stays in L2); every token above P is kept, and of
// those equal to P the latest ones, found by one backward pass. A last forward pass writes the
// kept indices in order with a block-wide prefix sum. One CTA per row: a row is at most a few
// hundred KB, and rows are independent.
#include <cstdint>
#include <cfloat>

#include "common/scan.cuh"

namespace {

constexpr int kThreads = 1024;
constexpr int kBaseRecency = 0, kBaseRandom = 1, kBaseScore = 2;

// splitmix64's finaliser over (seed + (seq << 42 | kv_head << 32 | t)): 24 random bits as a
// float in [0, 1).
__device__ __forceinline__ float random_priority(unsigned long long seed, int seq, int kv_head,
                                                 int t) {
  unsigned long long x = seed + ((static_cast<unsigned long long>(seq) << 42) |
                                 (static_cast<unsigned long long>(kv_head) << 32) |
                                 static_cast<unsigned long long>(t));
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return static_cast<float>(x >> 40) / 16777216.0f;
}

struct SelectParams {
  int base, sinks, recent, pool_kernel;
  unsigned long long seed;
};

__device__ __forceinline__ float priority_of(const SelectParams& p, const float* scores, int len,
                                             int seq, int kv_head, int t) {
  if (t < p.sinks) return __int_as_float(0x7f800000);  // +inf
  if (t >= len - p.recent) return FLT_MAX;
  if (p.base == kBaseRecency) return static_cast<float>(t);
  if (p.base == kBaseRandom) return random_priority(p.seed, seq, kv_head, t);
  if (p.base != kBaseScore) __trap();
  const int half = p.pool_kernel / 2;
  float m = 0.f;  // scores are >= 0
  for (int u = max(0, t - half); u <= min(len - 1, t + half); ++u) m = fmaxf(m, scores[u]);
  return m;
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads)
    kv_select_topk(const float* scores, const int* context_lens, const int* budgets, int* kept,
                   unsigned* priority, int stride, int kept_stride, int base, int sinks,
                   const int* recents, int pool_kernel, unsigned long long seed) {
  __shared__ int histogram[256];
  __shared__ int scan_scratch[33];
  __shared__ int found[2];
  const int kv_head = blockIdx.x, seq = blockIdx.y;
  const int64_t row = int64_t(seq) * gridDim.x + kv_head;
  const int len = context_lens[seq];
  const int budget = min(budgets[seq], len);
  int* out = kept + row * kept_stride;
  if (budget <= 0) return;
  if (budget == len) {  // everything stays
    for (int t = threadIdx.x; t < len; t += kThreads) out[t] = t;
    return;
  }
  const SelectParams params{base, sinks, recents[seq], pool_kernel, seed};
  unsigned* prio = priority + row * stride;
  for (int t = threadIdx.x; t < len; t += kThreads)
    prio[t] = __float_as_uint(priority_of(params, scores + row * stride, len, seq, kv_head, t));
  __syncthreads();

  // Radix select, most significant byte first: after the pass at `shift`, `prefix` holds the top
  // bits of P and `need` how many of the tokens matching them must still be taken.
  unsigned prefix = 0, mask = 0;
  int need = budget;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) histogram[b] = 0;
    __syncthreads();
    for (int t = threadIdx.x; t < len; t += kThreads) {
      const unsigned v = prio[t];
      if ((v & mask) == prefix) atomicAdd(&histogram[(v >> shift) & 0xFF], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int above = 0, bin = 255;
      while (above + histogram[bin] < need) above += histogram[bin--];
      found[0] = bin;
      found[1] = need - above;
    }
    __syncthreads();
    prefix |= unsigned(found[0]) << shift;
    mask |= 0xFFu << shift;
    need = found[1];
    __syncthreads();  // `found` is rewritten by the next pass
  }
  const unsigned threshold = prefix;

  // Of the tokens equal to P, keep the `need` latest: find the earliest kept one, walking
  // blocks of kThreads tokens from the end.
  int first_tie = 0, taken = 0;
  for (int end = len; end > 0; end -= kThreads) {
    const int t = end - kThreads + int(threadIdx.x);  // thread order = token order
    const int tie = (t >= 0 && prio[t] == threshold) ? 1 : 0;
    int in_block;
    // Ties at or after t within the block = in_block - (inclusive prefix) + tie.
    const int upto = rb::block_inclusive_scan(tie, in_block, scan_scratch);
    if (taken + in_block >= need) {
      if (tie && taken + (in_block - upto + tie) == need) found[0] = t;
      __syncthreads();
      first_tie = found[0];
      break;
    }
    taken += in_block;
  }

  // Write the kept indices in token order.
  int written = 0;
  for (int begin = 0; begin < len; begin += kThreads) {
    const int t = begin + int(threadIdx.x);
    int keep = 0;
    if (t < len) {
      const unsigned v = prio[t];
      keep = (v > threshold || (v == threshold && t >= first_tie)) ? 1 : 0;
    }
    int in_block;
    const int upto = rb::block_inclusive_scan(keep, in_block, scan_scratch);
    if (keep) out[written + upto - 1] = t;
    written += in_block;
  }
}
