// Paged-attention decode: flash-decoding split-K over a paged KV cache, and the split merge.
//
// LAYOUT (common/attention.cuh): k_pool, v_pool [num_pages][num_kv_heads][page_size][head_dim]
// of the KV type; block_tables int32 [batch][max_pages_per_seq]; context_lens int32 [batch]
// (including the q_len new tokens); q and out [batch][q_len][num_q_heads][head_dim] of QT. Query
// i of a sequence sits at p = context_len - q_len + i and sees keys j <= p (and p - j < window
// when window > 0). q head h reads kv head h / (num_q_heads / num_kv_heads).
//
// paged_decode_<kv>_<q>_d<D>, kv in {bf16, fp16, e4m3, e5m2}, q in {bf16, fp16},
// D in {64, 96, 128, 192, 256, any} ("dany": run-time head_dim up to 256, a multiple of 16, or
// of 8 for a 16-bit cache: 120 runs its last k16 step of Q K^T on zero-padded q and K columns)
//   block   256 threads (PAGED_DECODE_BLOCK = 256)
//   grid    (num_splits, num_kv_heads, batch); shape never depends on data (graph-capturable)
//   smem    98304 bytes of DYNAMIC shared memory for every instance (PAGED_DECODE_SMEM_BYTES =
//           98304): set CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES to it once per function
//           and pass it at launch. It does not depend on page_size, group or q_len. (Static
//           shared memory is capped at 48 KiB, which holds too few tiles in flight for one CTA
//           per SM; see "Pipeline" below.) A launch with less traps.
//   limits  group * q_len <= 128, head_dim == D (fixed instances), head_dim up to 256 and a
//           multiple of 16 (fp8: rows of 16-value, 16-byte cp.async chunks) or 8 (16-bit) in
//           dany: a launch outside them traps rather than touch memory out of bounds.
//   math    S = softmax_scale * k_scale * Q K^T (then softcap * tanh(S / softcap) if softcap > 0)
//           and P V in mma.sync m16n8k16 with f32 accumulation; operands in CT = the cache's type
//           for a bf16/fp16 cache (queries of the other 16-bit type are rounded to it), the
//           queries' type for an fp8 cache (widened to it exactly; v_scale applied at the end).
//           P is rounded to CT for P V, as in FlashAttention; row sums use the f32 values.
//   writes  o_partial f32 [batch][num_splits][q_len][num_q_heads][head_dim]: the split's
//           softmax-weighted average of V (normalised by the split's own sum, v_scale applied);
//           lse_partial f32 [batch][num_splits][q_len][num_q_heads]: natural-log sum of exp of
//           the split's (scaled, soft-capped) scores. A split with no visible key for a row
//           writes zeros and -INFINITY there.
//   Split s of a sequence covers keys [s*chunk, min((s+1)*chunk, ctx)) with
//   chunk = ceil(ceil(ctx / num_splits) / split_align) * split_align (common/attention.cuh);
//   split_align is the page size of a paged cache, and that of the paged case a contiguous
//   cache (page_size = the whole context) stands beside, so both split alike.
//
// paged_decode_merge_<q>, q in {bf16, fp16}
//   block 64 threads (PAGED_DECODE_MERGE_BLOCK = 64), grid (q_len * num_q_heads, batch), no
//   shared memory. out = sum_s w_s o_s / sum_s w_s with w_s = exp(lse_s - max_s lse_s).
//
// Design. One CTA = one (split, kv head, sequence) and ALL its query rows: row r = i * group + hq
// (query i, q head hq of the group), up to 128 rows = 8 m16 tiles, so each K/V element is read
// from global memory once per kv head. Keys go through shared memory in tiles of kKeys:
//  - Pipeline: each thread copies its 16-byte chunks of K and V rows with cp.async into a ring
//    of kStages tiles (kStages - 1 in flight while one is consumed; page ids for a tile are read
//    one tile before its copies are issued, so the block-table load never stalls a copy). Pages
//    are looked up per key row with a multiply-shift divider: any page_size works, including 1
//    and a whole context. fp8 tiles are widened (exactly) to CT by the threads that copied them.
//  - Warps: the 8 warps form wm_count x wn_count with wm_count = m tiles rounded up to a power
//    of two. Warp (wm, wn) owns output columns slice wn of m tile wm (f32 accumulators in
//    registers) and, if wn < s_warps, n-blocks of the tile's scores S = Q K^T (Q fragments in
//    registers). Both products are mma.sync m16n8k16 with f32 accumulators, for every row count:
//    rows are padded to 16, which costs tensor-core slots that a memory-bound kernel has spare.
//  - Softmax: online (running max and sum per row) in the log2 domain, with softmax_scale *
//    k_scale * log2(e) folded into one multiply (soft-capping: see soft_cap_log2). Score warps
//    publish per-row tile maxima in shared memory; every warp of the m tile derives the same new
//    max from them, so the rescale factors agree without another exchange. P goes to shared
//    memory as CT for the P V product of the column-slice owners.
//  Barriers per tile: ring ready, [fp8 widened], [maxima, when s_warps > 1], P ready.
#pragma once
// Included by one .cu per KV cache type (paged_decode_<kv>.cu), so that build.rs compiles the
// four groups of instances in parallel: all of them in one file take minutes on two cores.
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "common/async.cuh"
#include "common/attention.cuh"
#include "common/dtype.cuh"
#include "common/fastdiv.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxRows = 128;
constexpr int kSmemBytes = 96 * 1024;
constexpr int kMergeThreads = 64;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.69314718055994531f;

// Pointers untyped: one compiled body serves the instances that differ only in q_converts (a
// 16-bit cache read with queries of the other 16-bit type) or e5m2 (which fp8 format).
// Pointers first, then 4-byte fields: no padding. The struct is passed by value to the
// __noinline__ body, and past 128 bytes ptxas (nvcc 13.0, sm_90a) spills 36-116 bytes in the
// d64, d256 and dany bodies (seen when split_align made it 136 bytes with padding).
struct DecodeArgs {
  const void* q;
  const void* k_pool;
  const void* v_pool;
  const int* block_tables;
  const int* context_lens;
  const float* k_scales;
  const float* v_scales;
  float* o_partial;
  float* lse_partial;
  int max_pages_per_seq, scale_stride;
  int q_len, num_q_heads, num_kv_heads, head_dim, page_size, num_splits, split_align;
  float softmax_scale, softcap;
  int window;
  bool q_converts, e5m2;
};
static_assert(sizeof(DecodeArgs) <= 128, "a larger argument struct makes the bodies spill");

// Compile-time shape of one body; D == 0 is the run-time head_dim body, laid out for 256.
template <bool FP8, int D> struct DecodeConfig {
  static constexpr int kMaxD = D != 0 ? D : 256;
  static constexpr bool kFp8 = FP8;
  static constexpr int kKvBytes = FP8 ? 1 : 2;
  // Keys per tile: two score n-blocks per score warp and up to two score warps per m tile; more
  // would shorten the ring (D > 128) or multiply the unrolled per-score code.
  static constexpr int kKeys = kMaxD <= 128 ? 32 : 16;
  // A 16-bit key row padded by 16 bytes: its stride is an odd number of 16-byte units, so the 8
  // rows an ldmatrix reads fall in 8 different bank groups.
  static constexpr int kRow16 = 2 * kMaxD + 16;
  // A key row as copied from global memory (fp8 rows are only read back by their copier).
  static constexpr int kRowIn = kFp8 ? kMaxD : kRow16;
  static constexpr int kStageBytes = 2 * kKeys * kRowIn;          // K rows, then V rows
  static constexpr int kWideBytes = kFp8 ? 2 * kKeys * kRow16 : 0;  // fp8: the widened tile
  static constexpr int kPRow = 2 * kKeys + 16;                     // padded like kRow16
  static constexpr int kPBytes = kMaxRows * kPRow;
  static constexpr int kRedBytes = kWarps * 16 * 4;
  static constexpr int kFixedBytes = kWideBytes + kPBytes + kRedBytes;
  static constexpr int kStages =
      (kSmemBytes - kFixedBytes) / kStageBytes < 8 ? (kSmemBytes - kFixedBytes) / kStageBytes : 8;
  static constexpr int kWideOffset = kStages * kStageBytes;
  static constexpr int kPOffset = kWideOffset + kWideBytes;
  static constexpr int kRedOffset = kPOffset + kPBytes;
  static constexpr int kSmemUsed = kRedOffset + kRedBytes;
  static constexpr int kElemsPerChunk = 16 / kKvBytes;
  static constexpr int kLoads = (kKeys * kMaxD / kElemsPerChunk + kThreads - 1) / kThreads;
  static constexpr int kNBlocks = kKeys / 8;   // score n-blocks (8 keys) per tile
  static constexpr int kKSteps = kMaxD / 16;   // k16 steps of Q K^T
  static constexpr int kNTiles = kMaxD / 8;    // n8 column tiles of the output
  // D = 64 with a 16-bit cache fits 128 registers: two CTAs per SM then overlap each other's
  // barriers. (With fp8's widening pass sm_100a would need a stack frame at 128.)
  static constexpr int kMinBlocks = kMaxD <= 64 && !FP8 ? 2 : 1;
  static_assert(kStages >= 2, "the ring needs two tiles");
  static_assert(kSmemUsed <= kSmemBytes, "shared memory budget");
};

__device__ __forceinline__ uint32_t dynamic_smem_bytes() {
  uint32_t bytes;
  asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(bytes));
  return bytes;
}

// A pair of 16-bit values of the other 16-bit type than T, as T (round to nearest even).
template <typename T> __device__ __forceinline__ uint32_t from_other_half16(uint32_t w) {
  using Other = std::conditional_t<std::is_same_v<T, __half>, __nv_bfloat16, __half>;
  const float2 f = rb::Half16<Other>::unpack(w);
  return rb::Half16<T>::pack(f.x, f.y);
}

// 16 fp8 values (one 16-byte chunk) widened to 16 values of T (two 16-byte chunks).
template <typename Fp8, typename T> __device__ __forceinline__ void widen_chunk(uint4 raw,
                                                                             uint4 (&out)[2]) {
  const uint2 w0 = rb::widen_fp8x4<Fp8, T>(raw.x), w1 = rb::widen_fp8x4<Fp8, T>(raw.y);
  const uint2 w2 = rb::widen_fp8x4<Fp8, T>(raw.z), w3 = rb::widen_fp8x4<Fp8, T>(raw.w);
  out[0] = make_uint4(w0.x, w0.y, w1.x, w1.y);
  out[1] = make_uint4(w2.x, w2.y, w3.x, w3.y);
}

// softcap * tanh(y) in the log2 domain from e = 2^(2 y log2(e)), as 1 - 2 / (1 + e): absolute
// error ~1e-7 of the cap (libdevice's tanhf is accurate in relative terms, which logits do not
// need, and is ~10x the code in every unrolled score). e = inf gives 1, e = 0 gives -1.
__device__ __forceinline__ float soft_cap_log2(float e, float cap_log2) {
  return cap_log2 * (1.f - __fdividef(2.f, 1.f + e));
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// One online-softmax step for a row: folds the tile's maximum into the running one and returns
// the factor that rescales what was accumulated so far. Exponents are taken relative to `base`,
// which is 0 while the row has seen no visible key (so exp2(-inf - base) = 0, never NaN).
struct MaxStep {
  float alpha, base;
};

__device__ __forceinline__ MaxStep advance_max(float& running, float tile_max) {
  const float next = fmaxf(running, tile_max);
  const float base = next == -INFINITY ? 0.f : next;
  const float alpha = exp2f(running - base);
  running = next;
  return {alpha, base};
}

// Scales (and soft-caps) raw scores into the log2 domain and masks keys outside each row's
// visible range: key k is visible iff (unsigned)(k - lo) <= span (span >= 0; see key_lo).
// Returns the row maxima over this thread's scores.
template <int NB, typename Transform>
__device__ __forceinline__ void scores_to_log2(float (&s)[NB][4], int n_blocks, int key_base,
                                               const int (&key_lo)[2], const int (&span)[2],
                                               float (&row_max)[2], Transform transform) {
  const uint32_t from_lo[2] = {uint32_t(key_base - key_lo[0]), uint32_t(key_base - key_lo[1])};
#pragma unroll
  for (int i = 0; i < NB; ++i) {
    if (i < n_blocks) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e >> 1;
        const bool visible = from_lo[h] + uint32_t(8 * i + (e & 1)) <= uint32_t(span[h]);
        s[i][e] = visible ? transform(s[i][e]) : -INFINITY;
        row_max[h] = fmaxf(row_max[h], s[i][e]);
      }
    }
  }
}

// CT is the 16-bit type both products run in: the cache's own for a 16-bit cache (queries of
// the other 16-bit type are rounded to it once), the queries' for an fp8 cache (widened to it).
// Not inlined: each body is compiled once for the two or four entry points that share it.
template <bool FP8, typename CT, int D> __device__ __noinline__ void paged_decode(DecodeArgs a) {
  using Cfg = DecodeConfig<FP8, D>;
  using Kv = std::conditional_t<FP8, __nv_fp8_storage_t, CT>;
  const Kv* const k_pool = static_cast<const Kv*>(a.k_pool);
  const Kv* const v_pool = static_cast<const Kv*>(a.v_pool);
  using C16 = rb::Half16<CT>;
  using Mma = typename C16::Mma;
  constexpr int kKeys = Cfg::kKeys, kRow16 = Cfg::kRow16, kRowIn = Cfg::kRowIn;
  extern __shared__ __align__(16) unsigned char smem[];

  const int head_dim = D != 0 ? D : a.head_dim;
  const int group = a.num_q_heads / a.num_kv_heads;
  const int rows = group * a.q_len;
  // Launch errors that would otherwise read or write out of bounds.
  if (rows > kMaxRows || dynamic_smem_bytes() < uint32_t(Cfg::kSmemUsed) ||
      (D != 0 && a.head_dim != D) || head_dim % (Cfg::kFp8 ? 16 : 8) != 0 ||
      head_dim > Cfg::kMaxD) {
    __trap();
  }

  const int split = blockIdx.x, kv_head = blockIdx.y, seq = blockIdx.z;
  const int context = a.context_lens[seq];
  rb::KeyRange keys = rb::split_keys(context, a.num_splits, a.split_align, split);
  // Keys below the lowest row's window are never loaded.
  if (a.window > 0) keys.begin = max(keys.begin, context - a.q_len - a.window + 1);
  const int num_tiles = keys.end > keys.begin ? (keys.end - keys.begin + kKeys - 1) / kKeys : 0;

  // ---- roles ----
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;  // fragment row group and column pair
  const int m_tiles = (rows + 15) / 16;
  const int wm_count = m_tiles <= 1 ? 1 : m_tiles <= 2 ? 2 : m_tiles <= 4 ? 4 : 8;
  const int wn_count = kWarps / wm_count;
  const int wm = warp % wm_count, wn = warp / wm_count;
  const bool has_rows = wm < m_tiles;
  // Score warps per m tile; each takes >= 2 n-blocks so its mma chains interleave.
  const int s_warps = min(wn_count, Cfg::kNBlocks / 2);
  const bool s_warp = has_rows && wn < s_warps;
  const int nb_count = Cfg::kNBlocks / s_warps, nb0 = wn * nb_count;
  // Only the 16-bit dany body takes a head_dim of 8 mod 16 (its last k16 step half padding);
  // the others keep the exact division, which the fp8 dany body's registers depend on.
  constexpr bool kPad8 = !Cfg::kFp8 && D == 0;
  const int k_steps = kPad8 ? (head_dim + 15) / 16 : head_dim / 16, n_tiles = head_dim / 8;
  const int nt_per_warp = (n_tiles + wn_count - 1) / wn_count, nt0 = wn * nt_per_warp;
  const int nt_count = max(0, min(nt_per_warp, n_tiles - nt0));

  // Visible keys of this thread's two rows (16 wm + g and + 8; padded rows copy the last row):
  // [key_lo, key_lo + key_span]. An empty range becomes one no key reaches (keys < 2^30).
  int key_lo[2], key_span[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int i = min(16 * wm + g + 8 * h, rows - 1) / group;
    const int pos = context - a.q_len + i;
    const int hi = min(pos, keys.end - 1);
    key_lo[h] = a.window > 0 ? max(pos - a.window + 1, 0) : 0;
    key_span[h] = hi - key_lo[h];
    if (key_span[h] < 0) {
      key_lo[h] = 1 << 30;
      key_span[h] = 0;
    }
  }

  const float k_scale = Cfg::kFp8 ? a.k_scales[kv_head * a.scale_stride] : 1.f;
  const float v_scale = Cfg::kFp8 ? a.v_scales[kv_head * a.scale_stride] : 1.f;
  const float qk_scale = a.softmax_scale * k_scale;
  const bool softcap = a.softcap > 0.f;
  const float pre = softcap ? 2.f * kLog2e * qk_scale / a.softcap : qk_scale * kLog2e;
  const float post = softcap ? a.softcap * kLog2e : 1.f;

  unsigned char* const ring = smem;
  unsigned char* const wide = smem + Cfg::kWideOffset;
  unsigned char* const p_tile = smem + Cfg::kPOffset;
  float* const red = reinterpret_cast<float*>(smem + Cfg::kRedOffset);
  float* const red_mine = red + (wm * wn_count + wn) * 16;  // this warp's 16 row slots
  const float* const red_tile = red + wm * wn_count * 16;   // the m tile's score warps

  // ---- K/V copies: this thread's 16-byte chunks of a tile, the same for every tile ----
  const int chunks_per_row = head_dim / Cfg::kElemsPerChunk;
  int load_row[Cfg::kLoads], load_col[Cfg::kLoads];
  bool load_ok[Cfg::kLoads];
#pragma unroll
  for (int i = 0; i < Cfg::kLoads; ++i) {
    const int c = threadIdx.x + i * kThreads;
    load_ok[i] = c < kKeys * chunks_per_row;
    load_row[i] = c / chunks_per_row;
    load_col[i] = c % chunks_per_row;
  }
  const rb::FastDivmod page_div(a.page_size);
  // Element offsets: page * page_stride + slot * head_dim + chunk base (kv head and column).
  const int64_t page_stride = int64_t(a.num_kv_heads) * a.page_size * head_dim;
  const int64_t head_base = rb::paged_token_offset(0, kv_head, a.num_kv_heads, a.page_size, 0,
                                                   head_dim);
  const int* const table = a.block_tables + int64_t(seq) * a.max_pages_per_seq;

  // Page (or -1: past the split, zero-filled) and in-page slot of each chunk's key in a tile.
  struct Pages {
    int page[Cfg::kLoads], slot[Cfg::kLoads];
  };
  auto lookup = [&](int tile) {
    Pages p;
#pragma unroll
    for (int i = 0; i < Cfg::kLoads; ++i) {
      const int key = keys.begin + tile * kKeys + load_row[i];
      p.page[i] = -1;
      p.slot[i] = 0;
      if (load_ok[i] && key < keys.end) {
        uint32_t index, slot;
        page_div.divmod(uint32_t(key), index, slot);
        p.page[i] = __ldg(table + index);
        p.slot[i] = int(slot);
      }
    }
    return p;
  };
  auto issue = [&](int stage, const Pages& p) {
    const uint32_t base = rb::smem_address(ring + stage * Cfg::kStageBytes);
#pragma unroll
    for (int i = 0; i < Cfg::kLoads; ++i) {
      if (load_ok[i]) {
        const uint32_t dst = base + load_row[i] * kRowIn + load_col[i] * 16;
        const bool fill = p.page[i] >= 0;
        const int64_t src = fill ? p.page[i] * page_stride + head_base +
                                       (p.slot[i] * head_dim + load_col[i] * Cfg::kElemsPerChunk)
                                 : 0;
        rb::cp_async_16(dst, k_pool + src, fill);
        rb::cp_async_16(dst + kKeys * kRowIn, v_pool + src, fill);
      }
    }
  };
  // fp8: this thread widens the chunks it copied (visible to it after its cp.async wait).
  auto widen = [&](int stage) {
#pragma unroll
    for (int i = 0; i < Cfg::kLoads; ++i) {
      if constexpr (Cfg::kFp8) {
        if (!load_ok[i]) continue;
#pragma unroll
        for (int kv = 0; kv < 2; ++kv) {
          const uint4 raw = *reinterpret_cast<const uint4*>(
              ring + stage * Cfg::kStageBytes + (kv * kKeys + load_row[i]) * kRowIn +
              load_col[i] * 16);
          uint4 out[2];
          if (a.e5m2) {
            widen_chunk<rb::E5m2, CT>(raw, out);
          } else {
            widen_chunk<rb::E4m3, CT>(raw, out);
          }
          uint4* dst = reinterpret_cast<uint4*>(wide + (kv * kKeys + load_row[i]) * kRow16 +
                                                load_col[i] * 32);
          dst[0] = out[0];
          dst[1] = out[1];
        }
      }
    }
  };

  // head_dim = 8 mod 16 (dany, 16-bit cache): the last k16 step of Q K^T reads the 8 columns
  // after each K row. Copies never write them, so they are zeroed once in every ring slot (made
  // visible by the first tile's barrier): 0 q x 0 K, never 0 x a NaN left in shared memory.
  if constexpr (kPad8) {
    if (head_dim % 16 != 0) {
      for (int r = threadIdx.x; r < Cfg::kStages * kKeys; r += kThreads) {
        *reinterpret_cast<uint4*>(ring + (r / kKeys) * Cfg::kStageBytes + (r % kKeys) * kRowIn +
                                  2 * head_dim) = make_uint4(0u, 0u, 0u, 0u);
      }
    }
  }

  // ---- prologue: tiles 0 .. kStages-2 in flight (all their page ids read first) ----
  {
    Pages first[Cfg::kStages - 1];
#pragma unroll
    for (int s = 0; s < Cfg::kStages - 1; ++s) first[s] = lookup(s);
#pragma unroll
    for (int s = 0; s < Cfg::kStages - 1; ++s) {
      if (s < num_tiles) issue(s, first[s]);
      rb::cp_async_commit();
    }
  }
  Pages next = lookup(Cfg::kStages - 1);

  // Q as m16n8k16 A fragments of this warp's m tile (score warps only): register j of k-step ks
  // holds row g (j even) or g + 8 (j odd), columns 16 ks + 2t (+1), plus 8 for j >= 2.
  uint32_t qf[Cfg::kKSteps][4] = {};
  if (s_warp) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = 16 * wm + g + 8 * h;
      if (row < rows) {
        const int i = row / group, hq = row % group;
        const uint32_t* q_row = static_cast<const uint32_t*>(a.q) +
            ((int64_t(seq) * a.q_len + i) * a.num_q_heads + kv_head * group + hq) * head_dim / 2;
#pragma unroll
        for (int ks = 0; ks < Cfg::kKSteps; ++ks) {
          if (ks < k_steps) {
            qf[ks][h] = __ldg(q_row + 8 * ks + t);
            // Columns past a head_dim of 8 mod 16 stay 0.
            if (!kPad8 || 16 * ks + 8 < head_dim) qf[ks][h + 2] = __ldg(q_row + 8 * ks + 4 + t);
          }
        }
      }
    }
  }

  if (a.q_converts) {
#pragma unroll
    for (int ks = 0; ks < Cfg::kKSteps; ++ks) {
#pragma unroll
      for (int j = 0; j < 4; ++j) qf[ks][j] = from_other_half16<CT>(qf[ks][j]);
    }
  }

  float m_run[2] = {-INFINITY, -INFINITY};  // running row maxima (log2 domain), all warps
  float l_part[2] = {0.f, 0.f};             // score warps: sums over their own columns
  float o[Cfg::kNTiles][4] = {};            // output columns nt0 + j, rows g (0, 1), g + 8 (2, 3)

  const uint32_t p_addr = rb::smem_address(p_tile);
  // ldmatrix lanes: P as A (rows 16 wm + lane % 8 (+8 for lanes 8-15, 24-31), keys +8 for
  // lanes 16-31); K as B (key row lane % 8 of an n-block, 8 columns more per 8 lanes).
  const uint32_t p_lane =
      p_addr + (16 * wm + (lane & 7) + ((lane >> 3) & 1) * 8) * Cfg::kPRow + (lane >> 4) * 16;

  int stage = 0;  // ring slot of the current tile
  for (int tile = 0; tile < num_tiles; ++tile) {
    rb::cp_async_wait<Cfg::kStages - 2>();
    __syncthreads();  // tile ready for all; everyone is done with the previous one
    {
      const int fetch = tile + Cfg::kStages - 1;  // into the slot the previous tile freed
      if (fetch < num_tiles) issue(stage == 0 ? Cfg::kStages - 1 : stage - 1, next);
      rb::cp_async_commit();
      next = lookup(fetch + 1);
    }
    const unsigned char* kv_tile = ring + stage * Cfg::kStageBytes;
    if constexpr (Cfg::kFp8) {
      widen(stage);
      __syncthreads();
      kv_tile = wide;
    }
    const uint32_t k_addr = rb::smem_address(kv_tile);
    const uint32_t v_addr = k_addr + kKeys * kRow16;

    // ---- S = Q K^T for this warp's n-blocks, scaled and masked, and its row maxima ----
    float s[Cfg::kNBlocks][4];
    float row_max[2] = {-INFINITY, -INFINITY};
    if (s_warp) {
#pragma unroll
      for (int i = 0; i < Cfg::kNBlocks; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
      const uint32_t k_lane = k_addr + (8 * nb0 + (lane & 7)) * kRow16 + (lane >> 3) * 16;
#pragma unroll
      for (int kp = 0; kp < (Cfg::kKSteps + 1) / 2; ++kp) {
        if (2 * kp < k_steps) {
#pragma unroll
          for (int i = 0; i < Cfg::kNBlocks; ++i) {
            if (i < nb_count) {
              uint32_t b[4];  // k-steps 2 kp (b[0], b[1]) and 2 kp + 1 (b[2], b[3])
              rb::ldmatrix_x4(b, k_lane + i * 8 * kRow16 + kp * 64);
              const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
              Mma::mma(s[i], qf[2 * kp], b0);
              if (2 * kp + 1 < k_steps) Mma::mma(s[i], qf[2 * kp + 1], b1);
            }
          }
        }
      }
      const int key_base = keys.begin + tile * kKeys + 8 * nb0 + 2 * t;
      if (softcap) {
        scores_to_log2(s, nb_count, key_base, key_lo, key_span, row_max,
                       [&](float x) { return soft_cap_log2(exp2f(x * pre), post); });
      } else {
        scores_to_log2(s, nb_count, key_base, key_lo, key_span, row_max,
                       [&](float x) { return x * pre; });
      }
      row_max[0] = quad_max(row_max[0]);
      row_max[1] = quad_max(row_max[1]);
      if (t == 0) {
        red_mine[g] = row_max[0];
        red_mine[g + 8] = row_max[1];
      }
    }
    // The tile maximum of a row: over its score warps' maxima (only this warp's if it is alone).
    auto tile_row_max = [&](int h) {
      float m = -INFINITY;
#pragma unroll 1
      for (int j = 0; j < s_warps; ++j) m = fmaxf(m, red_tile[j * 16 + g + 8 * h]);
      return m;
    };

    // ---- P = exp2(S - max) to shared memory; running max and sums ----
    if (s_warps > 1) __syncthreads();  // all maxima of the tile published
    MaxStep step[2];
    if (s_warp) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        step[h] = advance_max(m_run[h], s_warps > 1 ? tile_row_max(h) : row_max[h]);
      }
      float row_sum[2] = {0.f, 0.f};
      uint32_t* p_row0 =
          reinterpret_cast<uint32_t*>(p_tile + (16 * wm + g) * Cfg::kPRow) + 4 * nb0 + t;
      uint32_t* p_row1 = p_row0 + 8 * Cfg::kPRow / 4;
#pragma unroll
      for (int i = 0; i < Cfg::kNBlocks; ++i) {
        if (i < nb_count) {
          float p[4];
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            p[e] = exp2f(s[i][e] - step[e >> 1].base);
            row_sum[e >> 1] += p[e];
          }
          p_row0[4 * i] = C16::pack(p[0], p[1]);
          p_row1[4 * i] = C16::pack(p[2], p[3]);
        }
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) l_part[h] = l_part[h] * step[h].alpha + row_sum[h];
    }
    __syncthreads();  // P ready
    if (has_rows && !s_warp) {
#pragma unroll
      for (int h = 0; h < 2; ++h) step[h] = advance_max(m_run[h], tile_row_max(h));
    }

    // ---- O = alpha O + P V over this warp's output columns ----
    if (has_rows) {
#pragma unroll
      for (int j = 0; j < Cfg::kNTiles; ++j) {
        if (j < nt_count) {
          o[j][0] *= step[0].alpha;
          o[j][1] *= step[0].alpha;
          o[j][2] *= step[1].alpha;
          o[j][3] *= step[1].alpha;
        }
      }
      if constexpr (kKeys == 16) {
        uint32_t pa[4];
        rb::ldmatrix_x4(pa, p_lane);
        const uint32_t v_lane = v_addr + (lane & 15) * kRow16 + nt0 * 16;
#pragma unroll
        for (int j = 0; j < Cfg::kNTiles; ++j) {
          if (j < nt_count) {
            uint32_t vb[2];  // keys 0-7 and 8-15 of column tile nt0 + j, transposed
            rb::ldmatrix_x2_trans(vb, v_lane + j * 16);
            Mma::mma(o[j], pa, vb);
          }
        }
      } else {
#pragma unroll
        for (int kp = 0; kp < kKeys / 32; ++kp) {
          uint32_t pa0[4], pa1[4];
          rb::ldmatrix_x4(pa0, p_lane + kp * 64);
          rb::ldmatrix_x4(pa1, p_lane + kp * 64 + 32);
          const uint32_t v_lane = v_addr + (32 * kp + lane) * kRow16 + nt0 * 16;
#pragma unroll
          for (int j = 0; j < Cfg::kNTiles; ++j) {
            if (j < nt_count) {
              uint32_t vb[4];  // keys 32 kp + 0-7, 8-15, 16-23, 24-31, transposed
              rb::ldmatrix_x4_trans(vb, v_lane + j * 16);
              const uint32_t vb0[2] = {vb[0], vb[1]}, vb1[2] = {vb[2], vb[3]};
              Mma::mma(o[j], pa0, vb0);
              Mma::mma(o[j], pa1, vb1);
            }
          }
        }
      }
    }
    stage = stage + 1 == Cfg::kStages ? 0 : stage + 1;
  }
  rb::cp_async_wait<0>();
  __syncthreads();  // all reads of `red` done

  // ---- epilogue: row sums across score warps, then o_partial and lse_partial ----
  if (s_warp) {
    const float l0 = quad_sum(l_part[0]), l1 = quad_sum(l_part[1]);
    if (t == 0) {
      red_mine[g] = l0;
      red_mine[g + 8] = l1;
    }
  }
  __syncthreads();
  if (!has_rows) return;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = 16 * wm + g + 8 * h;
    if (row >= rows) continue;
    float l = 0.f;
#pragma unroll 1
    for (int j = 0; j < s_warps; ++j) l += red_tile[j * 16 + g + 8 * h];
    const int i = row / group, hq = row % group;
    const int64_t out_row =
        ((int64_t(seq) * a.num_splits + split) * a.q_len + i) * a.num_q_heads + kv_head * group + hq;
    const float inv = l > 0.f ? v_scale / l : 0.f;
    float* const o_row = a.o_partial + out_row * head_dim + nt0 * 8 + 2 * t;
#pragma unroll
    for (int j = 0; j < Cfg::kNTiles; ++j) {
      if (j < nt_count) {
        *reinterpret_cast<float2*>(o_row + 8 * j) =
            make_float2(o[j][2 * h] * inv, o[j][2 * h + 1] * inv);
      }
    }
    if (wn == 0 && t == 0) {
      a.lse_partial[out_row] = l > 0.f ? (m_run[h] + __log2f(l)) * kLn2 : -INFINITY;
    }
  }
}

// One thread per 4 output columns of one (sequence, query, q head) row.
template <typename QT>
__device__ __forceinline__ void merge_splits(const float* o_partial, const float* lse_partial,
                                             QT* out, int batch, int q_len, int num_q_heads,
                                             int head_dim, int num_splits) {
  const int row = blockIdx.x, seq = blockIdx.y;
  const int rows = q_len * num_q_heads;
  const int d = 4 * threadIdx.x;
  if (seq >= batch || row >= rows || d >= head_dim) return;
  const float* lse = lse_partial + int64_t(seq) * num_splits * rows + row;
  float lse_max = -INFINITY;
  for (int s = 0; s < num_splits; ++s) lse_max = fmaxf(lse_max, lse[int64_t(s) * rows]);
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  float weight_sum = 0.f;
  if (lse_max > -INFINITY) {  // every row has a visible key; guard the impossible all-empty case
    const float* o = o_partial + (int64_t(seq) * num_splits * rows + row) * head_dim + d;
    for (int s = 0; s < num_splits; ++s) {
      const float w = expf(lse[int64_t(s) * rows] - lse_max);
      const float4 v = *reinterpret_cast<const float4*>(o + int64_t(s) * rows * head_dim);
      acc.x += w * v.x;
      acc.y += w * v.y;
      acc.z += w * v.z;
      acc.w += w * v.w;
      weight_sum += w;
    }
  }
  const float inv = weight_sum > 0.f ? 1.f / weight_sum : 0.f;
  using Q16 = rb::Half16<QT>;
  *reinterpret_cast<uint2*>(out + (int64_t(seq) * rows + row) * head_dim + d) =
      make_uint2(Q16::pack(acc.x * inv, acc.y * inv), Q16::pack(acc.z * inv, acc.w * inv));
}

}  // namespace

// FP8, CT, Q_CONVERTS, E5M2: which body an entry point runs (see paged_decode).
#define RB_PAGED_DECODE(KV_NAME, KV_STORAGE, Q_NAME, QT, D_NAME, D, FP8, CT, Q_CONVERTS, E5M2)  \
  extern "C" __global__ void __launch_bounds__(kThreads, DecodeConfig<FP8, D>::kMinBlocks)       \
      paged_decode_##KV_NAME##_##Q_NAME##_##D_NAME(                                              \
          const QT* q, const KV_STORAGE* k_pool, const KV_STORAGE* v_pool,                       \
          const int* block_tables, int max_pages_per_seq, const int* context_lens,               \
          const float* k_scales, const float* v_scales, int scale_stride, float* o_partial,      \
          float* lse_partial, int q_len, int num_q_heads, int num_kv_heads, int head_dim,        \
          int page_size, int num_splits, int split_align, float softmax_scale, float softcap,    \
          int window) {                                                                          \
    paged_decode<FP8, CT, D>({q, k_pool, v_pool, block_tables, context_lens, k_scales, v_scales, \
                              o_partial, lse_partial, max_pages_per_seq, scale_stride, q_len,    \
                              num_q_heads, num_kv_heads, head_dim, page_size, num_splits,        \
                              split_align, softmax_scale, softcap, window, Q_CONVERTS, E5M2});   \
  }

#define RB_PAGED_DECODE_HEAD_DIMS(KV_NAME, KV_STORAGE, Q_NAME, QT, FP8, CT, Q_CONVERTS, E5M2)   \
  RB_PAGED_DECODE(KV_NAME, KV_STORAGE, Q_NAME, QT, d64, 64, FP8, CT, Q_CONVERTS, E5M2)           \
  RB_PAGED_DECODE(KV_NAME, KV_STORAGE, Q_NAME, QT, d96, 96, FP8, CT, Q_CONVERTS, E5M2)           \
  RB_PAGED_DECODE(KV_NAME, KV_STORAGE, Q_NAME, QT, d128, 128, FP8, CT, Q_CONVERTS, E5M2)         \
  RB_PAGED_DECODE(KV_NAME, KV_STORAGE, Q_NAME, QT, d192, 192, FP8, CT, Q_CONVERTS, E5M2)         \
  RB_PAGED_DECODE(KV_NAME, KV_STORAGE, Q_NAME, QT, d256, 256, FP8, CT, Q_CONVERTS, E5M2)         \
  RB_PAGED_DECODE(KV_NAME, KV_STORAGE, Q_NAME, QT, dany, 0, FP8, CT, Q_CONVERTS, E5M2)

// 16-bit caches compute in the cache's type; fp8 caches in the queries' type.
#define RB_PAGED_DECODE_16BIT_CACHE(KV_NAME, KV, OTHER_NAME, OTHER)                              \
  RB_PAGED_DECODE_HEAD_DIMS(KV_NAME, KV, KV_NAME, KV, false, KV, false, false)                   \
  RB_PAGED_DECODE_HEAD_DIMS(KV_NAME, KV, OTHER_NAME, OTHER, false, KV, true, false)
#define RB_PAGED_DECODE_FP8_CACHE(KV_NAME, E5M2)                                                 \
  RB_PAGED_DECODE_HEAD_DIMS(KV_NAME, __nv_fp8_storage_t, bf16, __nv_bfloat16, true,              \
                            __nv_bfloat16, false, E5M2)                                          \
  RB_PAGED_DECODE_HEAD_DIMS(KV_NAME, __nv_fp8_storage_t, fp16, __half, true, __half, false, E5M2)

#define RB_PAGED_DECODE_MERGE(Q_NAME, QT)                                                        \
  extern "C" __global__ void __launch_bounds__(kMergeThreads) paged_decode_merge_##Q_NAME(       \
      const float* o_partial, const float* lse_partial, QT* out, int batch, int q_len,           \
      int num_q_heads, int head_dim, int num_splits) {                                           \
    merge_splits<QT>(o_partial, lse_partial, out, batch, q_len, num_q_heads, head_dim,           \
                     num_splits);                                                                \
  }
