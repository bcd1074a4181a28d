// The `mma` GEMM path (sm_80+): the classic Ampere tensor-core GEMM, shared by kernels/gemm/mma.cu
// (bf16, int8, and weight-only: 8-bit W x bf16 X) and kernels/gemm/mma_fp8.cu (e4m3, e5m2;
// sm_89+), which only instantiate it.
//
//   Y[m][n] = bf16_rn( sum_k X[m][k] W[n][k] * scales + bias[n] ), X [M][K], W [N][K] row-major.
//
// Design
// - CTA tile 128 (M) x 128 (N), 256 threads = 8 warps as 2 (M) x 4 (N), warp tile 64 x 32:
//   4 m16 x 4 n8 mma tiles, 64 accumulators per thread (f32, or s32 for int8).
// - K is staged 64 BYTES per row at a time (32 bf16 or 64 8-bit elements): a stage is two
//   8 KB tiles (X rows, W rows). Everything below works in bytes, because the m16n8k16 (16-bit)
//   and m16n8k32 (8-bit) fragments are byte-for-byte the same shape: an A fragment register holds
//   4 consecutive K bytes of one row (row g or g+8, bytes 4t..4t+3 or 16+4t..), a B register 4
//   consecutive K bytes of one column n = g (g = lane / 4, t = lane % 4). So ldmatrix (b16,
//   non-transposed: thread l gets row l / 4, bytes 4 (l % 4)..+3 of each 8x8 b16 matrix) feeds
//   both; one mma k-step consumes 32 bytes of K, a stage two k-steps.
// - Pipeline: kStages-deep cp.async ring (16-byte copies, zero-filled past M, N and K), one
//   __syncthreads per stage. Non-block kernels use 3 stages (48 KB, 2 CTAs per SM even on
//   sm_86/89 with their 100 KB of shared memory; __launch_bounds__(256, 2) caps registers at
//   128); block-128 kernels hold a second set of 64 f32 accumulators, so run 1 CTA per SM and
//   take 4 stages (64 KB).
// - Shared layout: row r of a tile is 64 bytes = four 16-byte chunks; chunk c is stored at
//   position c ^ ((r >> 1) & 3). Why: ldmatrix reads one chunk column of 8 consecutive rows; with
//   a 64-byte row stride rows r and r + 2 fall on the same banks (4-way conflict). Rows r = 0..7
//   occupy the 8 distinct 16-byte bank groups (4 (r & 1) + (c ^ ((r >> 1) & 3))) mod 8 once
//   swizzled, so every ldmatrix phase is conflict free. The rows a lane addresses always have
//   r % 8 == lane % 8, so each lane's XOR is a constant.
// - Block-128 scaling (8-bit only): every 128 K elements (2 stages) the block's partial sums are
//   promoted: total += partial * scale_x[m][kb] * scale_w[n / 128][kb]. A 128-wide N tile starts
//   at a multiple of 128, so it meets exactly one W scale block. int8 partials are exact in s32
//   and in f32 (|partial| <= 128 * 127^2 < 2^21), and within rb::small_s32_to_f32's exact range
//   (|p| <= 2^22: an integer add and a float subtract instead of a quarter-rate I2F).
// - Epilogue: scales and bias in f32 registers, one rounding to bf16, staged through shared memory
//   (row stride 272 bytes: the fragment writes of a warp hit 32 distinct banks), then coalesced
//   16-byte stores where N % 8 == 0 and Y is 16-byte aligned, else element stores; every store is
//   predicated on m < M, n < N.
// - CTAs are rastered in groups of 8 tile rows (M) so consecutive CTAs share W tiles in L2.
// - Weight-only (WFmt = S8, E4m3 or E5m2; X bf16, bf16 mma): a stage holds 32 K elements, the
//   X tile as above (64 bytes per row) and the W codes in a plain 128 x 32-byte tile. After its
//   cp.async wait each thread widens the one 16-byte W chunk it copied (16 codes -> 16 bf16,
//   exact: every int8, e4m3 and e5m2 value is a bf16 value) into a separate bf16 W tile laid out
//   and swizzled like the X tile, then a barrier, then compute_stage runs the bf16 mma on it
//   unchanged. Why a tile and not per-fragment widening: the two M warps that share a W column
//   would widen it twice, and no ldmatrix of 8-bit rows lands the bytes a bf16 B fragment holds
//   (k = 2t, 2t+1 and 2t+8, 2t+9 of its column). The scales are W's only (scale_x is null):
//   per tensor or per channel in the epilogue, block-128 promoted every 4 stages.
//
// Constraints (checked by src/gemm/paths/mma.rs): K * element bytes % 16 == 0 for X and W
// (weight-only: K % 16 == 0) and X, W 16-byte aligned (cp.async of 16 bytes), M, N, K < 2^31; int8 without block scales accumulates all of K
// in s32 (K <= 133144 avoids overflow).
#pragma once
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>

#include "common/async.cuh"
#include "common/dtype.cuh"
#include "common/mma.cuh"

namespace rb::gemm_mma {

constexpr int kBM = 128;
constexpr int kBN = 128;
constexpr int kThreads = 256;
constexpr int kWarpsM = 2;
constexpr int kWarpTileM = kBM / kWarpsM;  // 64
constexpr int kWarpTileN = kBN / 4;        // 32
constexpr int kMi = kWarpTileM / 16;       // m16 tiles per warp
constexpr int kNi = kWarpTileN / 8;        // n8 tiles per warp
constexpr int kRowBytes = 64;              // K bytes per row per stage
constexpr int kKSteps = kRowBytes / 32;    // mma k-steps per stage (32 bytes of K each)
constexpr int kTileBytes = kBM * kRowBytes;  // one operand's tile per stage (kBM == kBN)
constexpr int kOutRowBytes = kBN * 2 + 16;  // bf16 output staging, padded
constexpr int kOutBytes = kBM * kOutRowBytes;
constexpr int kGroupM = 8;                  // tile rows per raster group
constexpr int kScaleBlock = 128;            // K (and N) extent of a block-128 scale

static_assert(kBM == kBN, "the loaders assume square tiles");
static_assert(kRowBytes == 64, "the swizzle assumes four 16-byte chunks per row");

// Shared memory per stage and the widened W tile, for same-format (kWeightOnly false) or
// weight-only inputs (W tiles of 32 code bytes per row, widened into one bf16 tile).
template <bool kWeightOnly> struct Layout {
  static constexpr int kWRowBytes = kWeightOnly ? kRowBytes / 2 : kRowBytes;  // W bytes a stage
  static constexpr int kWTileBytes = kBN * kWRowBytes;
  static constexpr int kStageBytes = kTileBytes + kWTileBytes;
  static constexpr int kWideBytes = kWeightOnly ? kTileBytes : 0;
};

__host__ __device__ constexpr int smem_bytes(int stages, bool weight_only) {
  const int used = weight_only
                       ? stages * Layout<true>::kStageBytes + Layout<true>::kWideBytes
                       : stages * Layout<false>::kStageBytes;
  return used > kOutBytes ? used : kOutBytes;
}

// Byte offset of 16-byte chunk `chunk` (0..3) of row `row` in a swizzled tile (see header).
__device__ __forceinline__ uint32_t swizzled(int row, int chunk) {
  return uint32_t(row * kRowBytes + ((chunk ^ ((row >> 1) & 3)) << 4));
}

// Bytes of one X or W element for an mma type.
template <class Mma> constexpr int kElementBytes = std::is_same_v<Mma, MmaBf16> ? 2 : 1;

// Issues the copies of stage `kt` of both operands into the stage at shared address `stage`:
// rows [m0, m0 + 128) of X and [n0, n0 + 128) of W, row-major with `x_bytes` and `w_bytes` bytes
// per row. Same-format inputs: K bytes [64 kt, 64 kt + 64) of both, 512 chunks per operand, 2 per
// thread, into swizzled 64-byte rows. Weight-only: X the same (32 bf16), W's 32 codes of those K
// a plain 32-byte row (only its copier reads it back: see widen_w_chunk), chunk tid. Chunks past
// M, N or the row bytes are zero-filled (row bytes are a multiple of 16, so a chunk is wholly
// inside or wholly past them).
template <bool kWeightOnly>
__device__ __forceinline__ void load_stage(uint32_t stage, const uint8_t* x, const uint8_t* w,
                                           int m0, int n0, int m, int n, long long x_bytes,
                                           long long w_bytes, int kt, int tid) {
#pragma unroll
  for (int i = 0; i < (kBM * kRowBytes / 16) / kThreads; ++i) {
    const int c = tid + i * kThreads;
    const int row = c >> 2, chunk = c & 3;
    const long long kb = (long long)kt * kRowBytes + chunk * 16;
    const bool k_in = kb < x_bytes;
    const uint32_t offset = swizzled(row, chunk);
    const bool x_in = k_in && m0 + row < m;
    // A skipped copy reads nothing; the base address stands in for an out-of-range one.
    cp_async_16(stage + offset, x_in ? x + (size_t)(m0 + row) * x_bytes + kb : x, x_in);
    if constexpr (!kWeightOnly) {
      const bool w_in = k_in && n0 + row < n;
      cp_async_16(stage + kTileBytes + offset, w_in ? w + (size_t)(n0 + row) * x_bytes + kb : w,
                  w_in);
    }
  }
  if constexpr (kWeightOnly) {
    constexpr int kWRow = Layout<true>::kWRowBytes;
    static_assert(kBN * kWRow / 16 == kThreads, "one W chunk per thread");
    const int row = tid / (kWRow / 16), chunk = tid % (kWRow / 16);
    const long long kb = (long long)kt * kWRow + chunk * 16;
    const bool w_in = kb < w_bytes && n0 + row < n;
    cp_async_16(stage + kTileBytes + row * kWRow + chunk * 16,
                w_in ? w + (size_t)(n0 + row) * w_bytes + kb : w, w_in);
  }
}

// Weight-only: the W chunk this thread copied into the stage's code tile (row tid / 2, chunk
// tid % 2, K elements 16 (tid % 2) ..) widened to bf16, which are chunks 2 (tid % 2) and
// 2 (tid % 2) + 1 of the same row of the swizzled bf16 tile at `wide`. Reading its own copy needs
// only this thread's cp.async wait; the bf16 tile needs a barrier before others read it.
template <class WFmt>
__device__ __forceinline__ void widen_w_chunk(const uint8_t* codes, uint8_t* wide, int tid) {
  constexpr int kChunks = Layout<true>::kWRowBytes / 16;
  const int row = tid / kChunks, chunk = tid % kChunks;
  const uint4 raw = *reinterpret_cast<const uint4*>(codes + row * Layout<true>::kWRowBytes + chunk * 16);
  uint32_t o[8];
  WidenToBf16<WFmt>::run(raw, o);
  *reinterpret_cast<uint4*>(wide + swizzled(row, 2 * chunk)) = make_uint4(o[0], o[1], o[2], o[3]);
  *reinterpret_cast<uint4*>(wide + swizzled(row, 2 * chunk + 1)) = make_uint4(o[4], o[5], o[6], o[7]);
}

// The fp8 tag of an 8-bit float mma (void for the others).
template <class Mma> struct Fp8Of { using type = void; };
template <> struct Fp8Of<MmaE4m3> { using type = E4m3; };
template <> struct Fp8Of<MmaE5m2> { using type = E5m2; };

// sm_90 and sm_100 have no fp8 mma.sync in hardware: ptxas emulates it per instruction and
// spills. Widening the fragments ourselves (exact: every e4m3/e5m2 value is an fp16 value; one
// cvt per pair on these targets) and issuing two f16 m16n8k16 per m16n8k32 converts each B
// fragment once per k-step instead of once per mma. sm_89 has the instruction.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr bool kFp8NeedsWidening = true;
#else
constexpr bool kFp8NeedsWidening = false;
#endif

// acc += the stage's X tile rows of this warp x W tile rows of this warp.
//
// ldmatrix.x4 takes lane l's address for row l % 8 of matrix l / 8 and returns matrix j in
// register j. A (rows = M, 16 x 32 bytes per m16 tile): matrices (rows 0-7, bytes 0-15),
// (rows 8-15, bytes 0-15), (rows 0-7, bytes 16-31), (rows 8-15, bytes 16-31) are exactly the
// fragment registers a[0..3]. B (rows = N, two n8 tiles per ldmatrix): (n 0-7, bytes 0-15),
// (n 0-7, bytes 16-31), (n 8-15, bytes 0-15), (n 8-15, bytes 16-31) = b[j][0], b[j][1],
// b[j+1][0], b[j+1][1].
template <class Mma>
__device__ __forceinline__ void compute_stage(typename Mma::Acc (&acc)[kMi][kNi][4],
                                              uint32_t a_base, uint32_t b_base, int warp_m,
                                              int warp_n, int lane) {
  using Fp8 = typename Fp8Of<Mma>::type;
  constexpr bool kWiden = kFp8NeedsWidening && !std::is_void_v<Fp8>;
  const int lane_xor = (lane >> 1) & 3;  // (row >> 1) & 3 of every row this lane addresses
  const int a_row = warp_m * kWarpTileM + (lane & 7) + ((lane >> 3) & 1) * 8;
  const int a_chunk = lane >> 4;
  const int b_row = warp_n * kWarpTileN + (lane & 7) + (lane >> 4) * 8;
  const int b_chunk = (lane >> 3) & 1;
#pragma unroll
  for (int ks = 0; ks < kKSteps; ++ks) {
    uint32_t a[kMi][4], b[kNi][2];
#pragma unroll
    for (int mi = 0; mi < kMi; ++mi) {
      const int row = a_row + mi * 16;
      ldmatrix_x4(a[mi], a_base + row * kRowBytes + (((ks * 2 + a_chunk) ^ lane_xor) << 4));
    }
#pragma unroll
    for (int nj = 0; nj < kNi / 2; ++nj) {
      const int row = b_row + nj * 16;
      uint32_t r[4];
      ldmatrix_x4(r, b_base + row * kRowBytes + (((ks * 2 + b_chunk) ^ lane_xor) << 4));
      b[2 * nj][0] = r[0];
      b[2 * nj][1] = r[1];
      b[2 * nj + 1][0] = r[2];
      b[2 * nj + 1][1] = r[3];
    }
    if constexpr (kWiden) {
      // One m16n8k32 over K bytes 0-31 = two m16n8k16 (f16) over K 0-15 and 16-31. A thread's
      // 8-bit register holds k = 4t..4t+3 (+16 for a[2], a[3], b[1]); widened, its low word
      // holds k = 4t, 4t+1 and its high word 4t+2, 4t+3. Give the f16 mma the low words where
      // it expects k = 2t, 2t+1 and the high words where it expects 2t+8, 2t+9, in A and B
      // alike: a bijection of k 0-15 (and of 16-31) applied to both operands, so the dot
      // products are unchanged.
      uint32_t bh[kNi][2][2];
#pragma unroll
      for (int ni = 0; ni < kNi; ++ni)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const uint2 v = widen_fp8x4<Fp8, __half>(b[ni][half]);
          bh[ni][half][0] = v.x;
          bh[ni][half][1] = v.y;
        }
#pragma unroll
      for (int mi = 0; mi < kMi; ++mi) {
        const uint2 lo_g = widen_fp8x4<Fp8, __half>(a[mi][0]);   // row g,     k 0-15
        const uint2 lo_g8 = widen_fp8x4<Fp8, __half>(a[mi][1]);  // row g + 8, k 0-15
        const uint2 hi_g = widen_fp8x4<Fp8, __half>(a[mi][2]);   // row g,     k 16-31
        const uint2 hi_g8 = widen_fp8x4<Fp8, __half>(a[mi][3]);  // row g + 8, k 16-31
        const uint32_t a_lo[4] = {lo_g.x, lo_g8.x, lo_g.y, lo_g8.y};
        const uint32_t a_hi[4] = {hi_g.x, hi_g8.x, hi_g.y, hi_g8.y};
#pragma unroll
        for (int ni = 0; ni < kNi; ++ni) {
          MmaF16::mma(acc[mi][ni], a_lo, bh[ni][0]);
          MmaF16::mma(acc[mi][ni], a_hi, bh[ni][1]);
        }
      }
    } else {
#pragma unroll
      for (int mi = 0; mi < kMi; ++mi) {
#pragma unroll
        for (int ni = 0; ni < kNi; ++ni) Mma::mma(acc[mi][ni], a[mi], b[ni]);
      }
    }
  }
}

// The whole GEMM for one CTA tile. Mma: MmaBf16, MmaS8, MmaE4m3, MmaE5m2. WFmt: void (W of X's
// format) or, with MmaBf16, the weight-only W format S8, E4m3, E5m2. kBlock128: scale_mode 3
// (promotion per 128 K); otherwise scale_mode 0, 1 or 2 in the epilogue.
template <class Mma, class WFmt, bool kBlock128, int kStages>
__device__ __forceinline__ void gemm(const void* x_ptr, const void* w_ptr, __nv_bfloat16* y,
                                     const float* scale_x, const float* scale_w,
                                     const __nv_bfloat16* bias, int m, int n, int k,
                                     int scale_mode) {
  using Acc = typename Mma::Acc;
  constexpr bool kWeightOnly = !std::is_void_v<WFmt>;
  using L = Layout<kWeightOnly>;
  constexpr int kElemBytes = kElementBytes<Mma>;  // of X (and of W unless weight-only)
  // Stages per 128-element scale block (2 for 8-bit inputs, 4 for weight-only's 32 K a stage).
  constexpr int kStagesPerBlock = kScaleBlock * kElemBytes / kRowBytes;
  static_assert(!kWeightOnly || std::is_same_v<Mma, MmaBf16>, "weight-only runs the bf16 mma");
  static_assert(!kBlock128 || kElemBytes == 1 || kWeightOnly,
                "block-128 scaling is for 8-bit weights");

  extern __shared__ __align__(128) uint8_t smem[];
  if (m <= 0 || n <= 0) return;

  // Raster: groups of kGroupM tile rows, column-major inside a group.
  const int tiles_m = (m + kBM - 1) / kBM, tiles_n = (n + kBN - 1) / kBN;
  const int pid = blockIdx.x;
  const int per_group = kGroupM * tiles_n;
  const int first_m = (pid / per_group) * kGroupM;
  const int group_rows = min(tiles_m - first_m, kGroupM);
  if (group_rows <= 0) return;
  const int tm = first_m + (pid % per_group) % group_rows;
  const int tn = (pid % per_group) / group_rows;
  const int m0 = tm * kBM, n0 = tn * kBN;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int warp_m = warp % kWarpsM, warp_n = warp / kWarpsM;
  const int g = lane >> 2, t = lane & 3;

  const uint8_t* x = static_cast<const uint8_t*>(x_ptr);
  const uint8_t* w = static_cast<const uint8_t*>(w_ptr);
  const long long k_bytes = (long long)k * kElemBytes;             // of an X row
  const long long w_bytes = kWeightOnly ? (long long)k : k_bytes;  // of a W row
  const int k_tiles = int((k_bytes + kRowBytes - 1) / kRowBytes);
  const uint32_t smem_base = smem_address(smem);
  uint8_t* const wide = smem + kStages * L::kStageBytes;  // weight-only: the bf16 W tile

  Acc acc[kMi][kNi][4];
#pragma unroll
  for (int mi = 0; mi < kMi; ++mi)
#pragma unroll
    for (int ni = 0; ni < kNi; ++ni)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[mi][ni][j] = Acc(0);

  // Block-128 only: the promoted sums, and the current block's scales (X per row, W one value).
  float total[kBlock128 ? kMi : 1][kNi][4];
  float block_sx[kMi][2];
  float block_sw = 0.f;
  const int k_blocks = (k + kScaleBlock - 1) / kScaleBlock;
  if constexpr (kBlock128) {
#pragma unroll
    for (int mi = 0; mi < kMi; ++mi)
#pragma unroll
      for (int ni = 0; ni < kNi; ++ni)
#pragma unroll
        for (int j = 0; j < 4; ++j) total[mi][ni][j] = 0.f;
  }

  // Prologue: stages 0 .. kStages-2 in flight, one commit group each (possibly empty).
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) {
      load_stage<kWeightOnly>(smem_base + s * L::kStageBytes, x, w, m0, n0, m, n, k_bytes, w_bytes,
                              s, tid);
    }
    cp_async_commit();
  }

  for (int kt = 0; kt < k_tiles; ++kt) {
    // Groups committed so far: kStages - 1 + kt; stage kt is the oldest kStages - 1 of them
    // ... so at most kStages - 2 may still be pending.
    cp_async_wait<kStages - 2>();
    // Stage kt visible to all; and every warp is done with stage kt - 1, which the copies
    // issued next overwrite.
    __syncthreads();
    const int next = kt + kStages - 1;
    if (next < k_tiles) {
      load_stage<kWeightOnly>(smem_base + (next % kStages) * L::kStageBytes, x, w, m0, n0, m, n,
                              k_bytes, w_bytes, next, tid);
    }
    cp_async_commit();

    const uint32_t stage = smem_base + (kt % kStages) * L::kStageBytes;
    uint32_t w_tile = stage + kTileBytes;
    if constexpr (kWeightOnly) {
      // The bf16 W tile of the previous stage is free: every warp passed the barrier above.
      widen_w_chunk<WFmt>(smem + (kt % kStages) * L::kStageBytes + kTileBytes, wide, tid);
      __syncthreads();  // the widened tile complete for every warp
      w_tile = smem_address(wide);
    }

    if constexpr (kBlock128) {
      if (kt % kStagesPerBlock == 0) {  // first stage of block kb: fetch its scales
        const int kb = kt / kStagesPerBlock;
#pragma unroll
        for (int mi = 0; mi < kMi; ++mi)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int row = m0 + warp_m * kWarpTileM + mi * 16 + g + 8 * h;
            block_sx[mi][h] = kWeightOnly ? 1.f : row < m ? scale_x[(size_t)row * k_blocks + kb] : 0.f;
          }
        block_sw = scale_w[(size_t)tn * k_blocks + kb];
      }
    }

    compute_stage<Mma>(acc, stage, w_tile, warp_m, warp_n, lane);

    if constexpr (kBlock128) {
      if ((kt + 1) % kStagesPerBlock == 0 || kt + 1 == k_tiles) {  // last stage of block kb
#pragma unroll
        for (int mi = 0; mi < kMi; ++mi)
#pragma unroll
          for (int ni = 0; ni < kNi; ++ni)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              const float s = block_sx[mi][j >> 1] * block_sw;
              total[mi][ni][j] = fmaf(block_partial_to_float(acc[mi][ni][j]), s, total[mi][ni][j]);
              acc[mi][ni][j] = Acc(0);
            }
      }
    }
  }
  // No copy may land in shared memory once it is reused for the output (the trailing groups are
  // empty, but wait anyway), and every warp must be done reading the last stage.
  cp_async_wait<0>();
  __syncthreads();

  // Epilogue: value = acc * row_scale * col_scale + bias, per fragment element (c0, c1: row g,
  // columns 2t, 2t+1; c2, c3: row g + 8).
  float row_scale[kMi][2], col_scale[kNi][2], col_bias[kNi][2];
  // Weight-only: X has no scales (scale_x is null), W's are per tensor or per channel.
  const float tensor_scale =
      (!kBlock128 && scale_mode == 1) ? (kWeightOnly ? 1.f : scale_x[0]) * scale_w[0] : 1.f;
  const bool per_row = !kBlock128 && scale_mode == 2;
#pragma unroll
  for (int mi = 0; mi < kMi; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = m0 + warp_m * kWarpTileM + mi * 16 + g + 8 * h;
      row_scale[mi][h] = per_row && !kWeightOnly && row < m ? scale_x[row] : tensor_scale;
    }
#pragma unroll
  for (int ni = 0; ni < kNi; ++ni)
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int col = n0 + warp_n * kWarpTileN + ni * 8 + 2 * t + c;
      col_scale[ni][c] = per_row && col < n ? scale_w[col] : 1.f;
      col_bias[ni][c] = bias != nullptr && col < n ? __bfloat162float(bias[col]) : 0.f;
    }

#pragma unroll
  for (int mi = 0; mi < kMi; ++mi)
#pragma unroll
    for (int ni = 0; ni < kNi; ++ni)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float v[2];
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int j = 2 * h + c;
          if constexpr (kBlock128) {
            v[c] = total[mi][ni][j] + col_bias[ni][c];
          } else {
            v[c] = float(acc[mi][ni][j]) * (row_scale[mi][h] * col_scale[ni][c]) +
                   col_bias[ni][c];
          }
        }
        const int row = warp_m * kWarpTileM + mi * 16 + g + 8 * h;
        const int col = warp_n * kWarpTileN + ni * 8 + 2 * t;
        __nv_bfloat162 pair = __floats2bfloat162_rn(v[0], v[1]);  // .x (low half) = column col
        *reinterpret_cast<__nv_bfloat162*>(smem + row * kOutRowBytes + col * 2) = pair;
      }
  __syncthreads();

  // Coalesced stores: 16 chunks of 8 columns per tile row.
  const bool vector_ok = n % 8 == 0 && (reinterpret_cast<uintptr_t>(y) & 15) == 0;
#pragma unroll
  for (int i = 0; i < kBM * (kBN / 8) / kThreads; ++i) {
    const int c = tid + i * kThreads;
    const int row = c / (kBN / 8), chunk = c % (kBN / 8);
    const int grow = m0 + row, gcol = n0 + chunk * 8;
    if (grow >= m || gcol >= n) continue;
    const uint4 v = *reinterpret_cast<const uint4*>(smem + row * kOutRowBytes + chunk * 16);
    __nv_bfloat16* dst = y + (size_t)grow * n + gcol;
    if (vector_ok && gcol + 8 <= n) {
      *reinterpret_cast<uint4*>(dst) = v;
    } else {
      const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        if (gcol + e < n) {
          reinterpret_cast<uint16_t*>(dst)[e] = uint16_t(words[e >> 1] >> (16 * (e & 1)));
        }
      }
    }
  }
}

}  // namespace rb::gemm_mma

// One extern "C" kernel: NAME(x, w, y, scale_x, scale_w, bias, m, n, k, scale_mode). WFMT: void,
// or the weight-only W format (S8, E4m3, E5m2) with MMA = MmaBf16.
#define RB_GEMM_MMA_KERNEL(NAME, MMA, WFMT, BLOCK128, STAGES, MIN_BLOCKS)                         \
  extern "C" __global__ void __launch_bounds__(rb::gemm_mma::kThreads, MIN_BLOCKS)              \
      NAME(const void* x, const void* w, __nv_bfloat16* y, const float* scale_x,                  \
           const float* scale_w, const __nv_bfloat16* bias, int m, int n, int k,                  \
           int scale_mode) {                                                                      \
    rb::gemm_mma::gemm<MMA, WFMT, BLOCK128, STAGES>(x, w, y, scale_x, scale_w, bias, m, n, k,     \
                                              scale_mode);                                        \
  }
