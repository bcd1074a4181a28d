// Small-M GEMMs (M = 1..64, the decode case): Y = X · Wᵀ with the weights W streamed once from
// DRAM at copy bandwidth. Launched by src/gemm/paths/small_m.rs (path "small_m").
//
// Design ("swap AB"): the tensor cores compute Yᵀ = W · Xᵀ, so W rows are the mma A operand (16
// output channels per fragment) and the tokens are B (n8 = 8 tokens per fragment): an M of 1..64
// wastes at most 7 columns of a fragment instead of 15 of 16 rows.
//
// - CTA: 256 threads = 8 warps, 4 along N x 2 along K. The CTA owns 64 rows of W (16 per warp
//   column) and, per iteration, a chunk of K split between the two warp rows ("split-K inside the
//   CTA", summed through shared memory at the end). gridDim.y splits K across CTAs as well when
//   N / 64 CTAs cannot fill the device (see below).
// - W never touches shared memory: each lane loads its fragment data straight from global with
//   16-byte non-allocating loads (ld.global.nc.L1::no_allocate), kVpi vectors per row x 2 rows
//   (g and g+8) per iteration, and the loads of iteration i+1 are issued before iteration i is
//   computed (register double buffer), so 4-8 KB per warp stay in flight.
// - The K permutation. A dot product does not care in which order K is summed, as long as A and B
//   use the same order. Lane (g, t) (g = lane / 4, t = lane % 4) loads the kE = 16 / bytes(W)
//   consecutive elements k0 + kE·t .. +kE of rows g and g+8; the four lanes of a quad cover 64
//   contiguous bytes of each row ("a vector"). The mma fragments (PTX ISA, "Matrix Fragments for
//   mma.m16n8k16 / m16n8k32") give lane (g, t), per step, A registers {row g, row g+8, row g,
//   row g+8} each holding 2 (16-bit) or 4 (8-bit) elements, and B registers {col g, col g} with
//   the same k indices as A registers 0 and 2. We feed A register 0/1 the lane's word 2s of rows
//   g/g+8 and A register 2/3 its word 2s+1, and B registers 0/1 the words 2s and 2s+1 of X row
//   (token) g read from the same k positions. So the logical k of a fragment maps to
//   k0 + kE·t + (words per step)·s + j, one bijection on the 4·kE elements of the vector, the
//   same for A and B: the mma sums exactly the products W[n][k]·X[m][k] of the vector.
//     16-bit mma (k16): logical kl -> t = (kl % 8) / 2, j = (kl % 2) + 2·(kl / 8), phys 4s + j.
//     8-bit mma (k32):  logical kl -> t = (kl % 16) / 4, j = (kl % 4) + 4·(kl / 16), phys 8s + j.
//   Words are taken after widening when W is widened (16 fp8/int8 codes -> 8 words of 16-bit
//   floats -> 4 k16 steps), with X read as 16-bit words at the same element positions.
// - X (small) is staged per CTA iteration in shared memory with cp.async (double buffered, rows
//   >= M zeroed once), in its own element type, and read back as B fragments with 16-byte loads;
//   rows are padded so the 8 lanes of a quarter-warp hit distinct banks.
// - Input kinds (Traits below): BF16 x BF16 (bf16 mma); W8A8 int8 (s8 mma k32, exact s32);
//   W8A8 fp8 (the e4m3/e5m2 mma k32 on sm_89 only; elsewhere both operands widened exactly to f16
//   for the f16 mma, see RB_SMALL_M_FP8_WIDEN); weight-only W8A16 (W codes widened exactly to bf16, bf16 mma with X bf16).
// - Accumulation: each 128-wide K block is summed in fresh mma accumulators ("partials") and then
//   added to f32 registers: times scale_x[m][kb]·scale_w[n/128][kb] in block-128 mode (3), as is
//   ("promotion") otherwise. This keeps int8 sums exact in s32 within a block and bounds how many
//   fp8 products the tensor core accumulates in its own (reduced) precision. The per-tensor and
//   per-channel scales (modes 1, 2) and the bias are applied once, in the epilogue.
// - Split-K across CTAs (gridDim.y = S > 1): each CTA writes its 64 x M partial to a f32
//   workspace [S][M][N]; the last CTA of a column (an atomic counter per 64-row tile, reset by that
//   CTA for the next launch) sums the S partials in split order, so the result is deterministic.
//
// Tails: rows of W past N load as zero and their outputs are not stored; tokens past M are zero
// rows of X and are not stored; K past the end loads as zero (K · bytes(W) must be a multiple of
// 16, and X and W 16-byte aligned: the Rust side checks).
//
// Kernels (extern "C", listed at the end of this file; MB = M bucket = 8 x token fragments):
//   gemm_small_m_bf16_m{8,16,32,64}                     BF16 x BF16, mode 0
//   gemm_small_m_{e4m3,e5m2,s8}_m{8,16,32,64}           W8A8, modes 1-3
//   gemm_small_m_w{e4m3,e5m2,s8}_abf16_m{8,16,32,64}    W8 x A16 (weight-only), modes 1-3
// Arguments: (x, w, y, scale_x, scale_w, bias, m, n, k, scale_mode, workspace, counters): the
// common tail of src/gemm/paths/mod.rs plus the split-K workspace (f32 [gridDim.y][m][n]) and
// counters (u32 [gridDim.x], zero before the first launch); both may be null when gridDim.y == 1.
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>

#include "common/async.cuh"
#include "common/dtype.cuh"
#include "common/mma.cuh"

namespace rb {
namespace small_m {

constexpr int kThreads = 256;
constexpr int kWarpsN = 4;                // warps along N: 16 rows of W each
constexpr int kWarpsK = 2;                // warps along K (summed through shared memory)
constexpr int kRowsPerCta = 16 * kWarpsN;  // 64
constexpr int kBlock = 128;               // K block of the block-128 scales and of the partials
constexpr int kRedStride = kRowsPerCta + 4;  // f32 row stride of the reduction tile (banks)

// ---------------------------------------------------------------------------------------------
// mma instructions not in common/mma.cuh.
struct MmaE5m2 {
  using Acc = float;
  __device__ __forceinline__ static void mma(float* d, const uint32_t (&a)[4],
                                             const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.f32.e5m2.e5m2.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

// 16 bytes of W, streamed: read once, so kept out of L1 (no_allocate); the L2 prefetch hint
// brings in the whole 256-byte stretch of the row the quad reads over one iteration. Zero when
// !pred (rows past N, K past the end).
__device__ __forceinline__ uint4 ld_stream(const void* p, bool pred) {
  uint4 v;
  // volatile: issued where written, ahead of the barriers of the iteration that does not use it.
  asm volatile("{\n"
      "  .reg .pred p;\n"
      "  setp.ne.b32 p, %5, 0;\n"
      "  mov.b32 %0, 0;\n"
      "  mov.b32 %1, 0;\n"
      "  mov.b32 %2, 0;\n"
      "  mov.b32 %3, 0;\n"
      "  @p ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      "}\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p), "r"(int(pred)));
  return v;
}

__device__ __forceinline__ void words4(const uint4& v, uint32_t (&o)[4]) {
  o[0] = v.x;
  o[1] = v.y;
  o[2] = v.z;
  o[3] = v.w;
}

// ---------------------------------------------------------------------------------------------
// Input kinds. Each gives: element bytes of W and X; kSteps mma steps per 16-byte W vector and
// kWords = 2 kSteps words per row per vector; a_words (the W vector as mma words), b_words (the
// lane's X elements at the same k, read from shared memory, as mma words), the mma and its
// accumulator; kScaledX: X has scales (W8A8).
struct Bf16In {};
template <typename F> struct W8A8 {};
template <typename F> struct WOnly {};

template <typename Kind> struct Traits;

template <> struct Traits<Bf16In> {
  static constexpr int kWBytes = 2, kXBytes = 2, kSteps = 2;
  static constexpr bool kScaledX = false, kScaled = false;
  using Acc = float;
  __device__ __forceinline__ static void a_words(const uint4& v, uint32_t (&o)[4]) { words4(v, o); }
  __device__ __forceinline__ static void b_words(const uint8_t* p, uint32_t (&o)[4]) {
    words4(*reinterpret_cast<const uint4*>(p), o);
  }
  __device__ __forceinline__ static void mma(Acc* d, const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    MmaBf16::mma(d, a, b);
  }
};

template <> struct Traits<W8A8<S8>> {
  static constexpr int kWBytes = 1, kXBytes = 1, kSteps = 2;
  static constexpr bool kScaledX = true, kScaled = true;
  using Acc = int32_t;
  __device__ __forceinline__ static void a_words(const uint4& v, uint32_t (&o)[4]) { words4(v, o); }
  __device__ __forceinline__ static void b_words(const uint8_t* p, uint32_t (&o)[4]) {
    words4(*reinterpret_cast<const uint4*>(p), o);
  }
  __device__ __forceinline__ static void mma(Acc* d, const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    MmaS8::mma(d, a, b);
  }
};

// fp8 x fp8: the native fp8 mma (k32, same fragments as int8) where it exists, else both
// operands widened exactly to f16 (4 k16 steps per vector). Only sm_89 (Ada) has it in hardware:
// sm_80/86 lack the instruction, and on sm_90/sm_100 ptxas emulates it by converting both
// operands to f16 inside every mma (NVIDIA/cutlass#1986), which here would convert each W vector
// once per token fragment (up to 8 times) instead of once.
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ < 890 || __CUDA_ARCH__ >= 900)
#define RB_SMALL_M_FP8_WIDEN 1
#else
#define RB_SMALL_M_FP8_WIDEN 0
#endif

template <typename F> struct Fp8Mma;
template <> struct Fp8Mma<E4m3> { using Mma = MmaE4m3; };
template <> struct Fp8Mma<E5m2> { using Mma = MmaE5m2; };

template <typename F> struct Traits<W8A8<F>> {
  static constexpr int kWBytes = 1, kXBytes = 1;
  static constexpr bool kScaledX = true, kScaled = true;
  using Acc = float;
#if RB_SMALL_M_FP8_WIDEN
  static constexpr int kSteps = 4;
  __device__ __forceinline__ static void a_words(const uint4& v, uint32_t (&o)[8]) {
    widen_fp8x16<F, __half>(v, o);
  }
  __device__ __forceinline__ static void b_words(const uint8_t* p, uint32_t (&o)[8]) {
    widen_fp8x16<F, __half>(*reinterpret_cast<const uint4*>(p), o);
  }
  __device__ __forceinline__ static void mma(Acc* d, const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    MmaF16::mma(d, a, b);
  }
#else
  static constexpr int kSteps = 2;
  __device__ __forceinline__ static void a_words(const uint4& v, uint32_t (&o)[4]) { words4(v, o); }
  __device__ __forceinline__ static void b_words(const uint8_t* p, uint32_t (&o)[4]) {
    words4(*reinterpret_cast<const uint4*>(p), o);
  }
  __device__ __forceinline__ static void mma(Acc* d, const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    Fp8Mma<F>::Mma::mma(d, a, b);
  }
#endif
};

template <typename F> struct Traits<WOnly<F>> {
  static constexpr int kWBytes = 1, kXBytes = 2, kSteps = 4;
  static constexpr bool kScaledX = false, kScaled = true;
  using Acc = float;
  __device__ __forceinline__ static void a_words(const uint4& v, uint32_t (&o)[8]) {
    WidenToBf16<F>::run(v, o);
  }
  // 16 bf16 of X: 32 bytes, two 16-byte loads.
  __device__ __forceinline__ static void b_words(const uint8_t* p, uint32_t (&o)[8]) {
    const uint4 lo = reinterpret_cast<const uint4*>(p)[0];
    const uint4 hi = reinterpret_cast<const uint4*>(p)[1];
    o[0] = lo.x, o[1] = lo.y, o[2] = lo.z, o[3] = lo.w;
    o[4] = hi.x, o[5] = hi.y, o[6] = hi.z, o[7] = hi.w;
  }
  __device__ __forceinline__ static void mma(Acc* d, const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    MmaBf16::mma(d, a, b);
  }
};

// ---------------------------------------------------------------------------------------------
// Geometry of one (kind, bucket); mirrored by src/gemm/paths/small_m.rs (shared_bytes).
template <typename Kind, int MB> struct Geometry {
  using Tr = Traits<Kind>;
  static constexpr int kTiles = MB / 8;                 // token fragments (n8)
  static constexpr int kE = 16 / Tr::kWBytes;           // W elements per lane vector
  // Vectors per row per lane per iteration: 4 (4-8 KB per warp in flight), 2 for weight-only
  // at M 64, whose X chunk would otherwise take 130 KB of shared memory (over sm_86/89's 99 KB).
  static constexpr int kVpi = (Tr::kWBytes == 1 && Tr::kXBytes == 2 && MB == 64) ? 2 : 4;
  static constexpr int kKc = kVpi * 4 * kE;             // K per warp per iteration
  static constexpr int kKcta = kWarpsK * kKc;           // K per CTA per iteration
  static constexpr int kBlocks = kKc / kBlock;          // 128-blocks per warp iteration
  static constexpr int kVpb = kVpi / kBlocks;           // vectors per 128-block
  static constexpr int kXLane = kE * Tr::kXBytes;       // X bytes a lane reads per vector
  // Row stride of the staged X: 64 (mod 128) bytes when lanes read 16 bytes apart, 16 (mod 128)
  // when 32 apart, so a quarter-warp's 8 lanes (2 tokens x 4 quads) read distinct banks.
  static constexpr int kRowBytes = kKcta * Tr::kXBytes + (kXLane == 16 ? 64 : 16);
  static constexpr int kBufBytes = MB * kRowBytes;
  static constexpr int kSmemBytes = 2 * kBufBytes;
  static_assert(kKc % kBlock == 0 && kVpi % kBlocks == 0, "iterations are whole 128-blocks");
  static_assert(kRowBytes % 16 == 0, "16-byte rows");
  static_assert(kWarpsK * MB * kRedStride * 4 <= kSmemBytes, "reduction tile fits");
};

// CTAs per SM the kernel is compiled for: two (<= 128 registers) for the small buckets, except
// for fp8 x fp8 widened to f16 (every target but sm_89): more registers for the widened words,
// no spills.
template <typename Kind, int MB> constexpr int min_blocks() {
  return MB <= 16 && !(RB_SMALL_M_FP8_WIDEN && Traits<Kind>::kWBytes == 1 &&
                       Traits<Kind>::kXBytes == 1 && !std::is_same_v<Kind, W8A8<S8>>)
             ? 2
             : 1;
}

__device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

template <typename Kind, int MB>
__device__ __forceinline__ void gemm(const void* x_, const void* w_, __nv_bfloat16* y,
                                     const float* scale_x, const float* scale_w,
                                     const __nv_bfloat16* bias, int M, int N, int K,
                                     int scale_mode, float* workspace, unsigned int* counters) {
  using Tr = Traits<Kind>;
  using G = Geometry<Kind, MB>;
  using Acc = typename Tr::Acc;
  constexpr int kT = G::kTiles, kVpi = G::kVpi, kE = G::kE;
  constexpr int kWords = 2 * Tr::kSteps;
  constexpr int kWB = Tr::kWBytes, kXB = Tr::kXBytes;

  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ bool s_last;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;
  const int wn = warp % kWarpsN, wk = warp / kWarpsN;
  const int n_cta = blockIdx.x * kRowsPerCta;
  const int n0 = n_cta + wn * 16;  // the warp's first row of W
  const int splits = gridDim.y, z = blockIdx.y;
  const int iters = ceil_div(K, G::kKcta);
  const int it_begin = int((long long)iters * z / splits);
  const int it_end = int((long long)iters * (z + 1) / splits);
  const int k_blocks = ceil_div(K, kBlock);
  const int m_rows = min(M, MB);

  // --- W: rows g and g+8 of the warp's 16, this lane's first element of each vector.
  const uint8_t* W = static_cast<const uint8_t*>(w_);
  const size_t w_row = size_t(K) * kWB;
  const bool row_ok0 = n0 + g < N, row_ok1 = n0 + g + 8 < N;
  const int lane_k = wk * G::kKc + kE * t;  // element offset in a CTA iteration
  const uint8_t* w0 = W + (row_ok0 ? size_t(n0 + g) * w_row : 0) + size_t(lane_k) * kWB;
  const uint8_t* w1 = W + (row_ok1 ? size_t(n0 + g + 8) * w_row : 0) + size_t(lane_k) * kWB;

  auto load_w = [&](uint4 (&wv)[2][kVpi], int it) {
#pragma unroll
    for (int v = 0; v < kVpi; ++v) {
      const int k = it * G::kKcta + v * 4 * kE;  // relative to lane_k
      const bool in = k + lane_k < K;
      wv[0][v] = ld_stream(w0 + size_t(k) * kWB, in && row_ok0);
      wv[1][v] = ld_stream(w1 + size_t(k) * kWB, in && row_ok1);
    }
  };

  // --- X: rows [0, m_rows) of the CTA's chunk, by all threads, 16 bytes per cp.async.
  const uint8_t* X = static_cast<const uint8_t*>(x_);
  const size_t x_row = size_t(K) * kXB;
  constexpr int kOpsPerRow = G::kKcta * kXB / 16;
  auto stage_x = [&](int it, int buf) {
    uint8_t* dst = smem + buf * G::kBufBytes;
    const int k_base = it * G::kKcta;
    for (int op = tid; op < m_rows * kOpsPerRow; op += kThreads) {
      const int row = op / kOpsPerRow, c = op % kOpsPerRow;
      const int k = k_base + c * (16 / kXB);
      const bool in = k < K;
      const uint8_t* src = in ? X + size_t(row) * x_row + size_t(k) * kXB : X;
      cp_async_16(smem_address(dst + row * G::kRowBytes + c * 16), src, in);
    }
    cp_async_commit();
  };

  // Token rows past M stay zero in both buffers (cp.async never writes them).
  for (int i = m_rows * (G::kRowBytes / 16) + tid; i < MB * (G::kRowBytes / 16); i += kThreads) {
    reinterpret_cast<uint4*>(smem)[i] = make_uint4(0, 0, 0, 0);
    reinterpret_cast<uint4*>(smem + G::kBufBytes)[i] = make_uint4(0, 0, 0, 0);
  }

  float acc[kT][4];
#pragma unroll
  for (int i = 0; i < kT; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;

  // Block-128 scales of block kb for this lane's outputs: per tile, tokens 2t and 2t+1.
  const int sw_row = min(n0, N - 1) / kBlock;

  // One warp iteration: kBlocks 128-blocks of kVpb vectors each, with X from buffer buf.
  auto compute = [&](const uint4 (&wv)[2][kVpi], int buf, int it) {
    const uint8_t* xs = smem + buf * G::kBufBytes + g * G::kRowBytes + lane_k * kXB;
#pragma unroll
    for (int b = 0; b < G::kBlocks; ++b) {
      const int k_block = it * G::kKcta + wk * G::kKc + b * kBlock;  // first element
      if (k_block >= K) break;  // past the end: the partial would be zero (warp-uniform)
      const int kb = k_block / kBlock;
      // Scales first, so their latency hides behind the mma.
      float sx[kT][2], sw = 1.f;
#pragma unroll
      for (int i = 0; i < kT; ++i) sx[i][0] = sx[i][1] = 1.f;
      if constexpr (Tr::kScaled) {
        if (scale_mode == 3) {
          sw = n0 < N ? __ldg(scale_w + size_t(sw_row) * k_blocks + kb) : 0.f;
#pragma unroll
          for (int i = 0; i < kT; ++i) {
#pragma unroll
            for (int j = 0; j < 2; ++j) {
              const int m = i * 8 + 2 * t + j;
              sx[i][j] = !Tr::kScaledX ? 1.f
                         : m < M       ? __ldg(scale_x + size_t(m) * k_blocks + kb)
                                       : 0.f;
            }
          }
        }
      }
      Acc part[kT][4];
#pragma unroll
      for (int i = 0; i < kT; ++i) part[i][0] = part[i][1] = part[i][2] = part[i][3] = Acc(0);
#pragma unroll
      for (int vv = 0; vv < G::kVpb; ++vv) {
        const int v = b * G::kVpb + vv;
        uint32_t a0[kWords], a1[kWords];
        Tr::a_words(wv[0][v], a0);
        Tr::a_words(wv[1][v], a1);
#pragma unroll
        for (int i = 0; i < kT; ++i) {
          if (i * 8 >= M) break;  // an all-zero token fragment (warp-uniform)
          uint32_t bw[kWords];
          Tr::b_words(xs + i * 8 * G::kRowBytes + v * 4 * kE * kXB, bw);
#pragma unroll
          for (int s = 0; s < Tr::kSteps; ++s) {
            const uint32_t a[4] = {a0[2 * s], a1[2 * s], a0[2 * s + 1], a1[2 * s + 1]};
            const uint32_t bb[2] = {bw[2 * s], bw[2 * s + 1]};
            Tr::mma(part[i], a, bb);
          }
        }
      }
      // Fold the block's partial into the f32 accumulators. Fragment element e of tile i is
      // (row g + 8 (e / 2), token i·8 + 2t + e % 2).
      bool scaled = false;
      if constexpr (Tr::kScaled) scaled = scale_mode == 3;
      if (scaled) {
#pragma unroll
        for (int i = 0; i < kT; ++i) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            acc[i][e] = fmaf(float(part[i][e]), sx[i][e & 1] * sw, acc[i][e]);
          }
        }
      } else {
#pragma unroll
        for (int i = 0; i < kT; ++i) {
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[i][e] += float(part[i][e]);
        }
      }
    }
  };

  // --- Main loop: X(it+1) and W(it+1) are requested before iteration it is computed.
  uint4 wa[2][kVpi], wb[2][kVpi];
  if (it_begin < it_end) {
    stage_x(it_begin, 0);
    load_w(wa, it_begin);
  }
  auto step = [&](const uint4 (&cur)[2][kVpi], uint4 (&next)[2][kVpi], int it) {
    const int buf = (it - it_begin) & 1;
    if (it + 1 < it_end) {
      stage_x(it + 1, buf ^ 1);
      load_w(next, it + 1);
    } else {
      cp_async_commit();  // an empty group keeps the wait count uniform
    }
    cp_async_wait<1>();
    __syncthreads();  // X(it) visible to all warps
    compute(cur, buf, it);
    __syncthreads();  // every warp is done with buf before X(it + 2) overwrites it
  };
  for (int it = it_begin; it < it_end; it += 2) {
    step(wa, wb, it);
    if (it + 1 < it_end) step(wb, wa, it + 1);
  }
  cp_async_wait<0>();
  __syncthreads();

  // --- Sum the two K warps through shared memory: red[wk][token][row], rows of the CTA's 64.
  float* red = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int i = 0; i < kT; ++i) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int m = i * 8 + 2 * t + (e & 1), r = wn * 16 + g + 8 * (e >> 1);
      red[(wk * MB + m) * kRedStride + r] = acc[i][e];
    }
  }
  __syncthreads();

  // Element idx of the CTA's output tile: token idx / 64, row idx % 64 (rows contiguous in Y).
  auto tile_sum = [&](int m, int r) {
    return red[m * kRedStride + r] + red[(MB + m) * kRedStride + r];
  };
  auto store = [&](int m, int n, float v) {
    if constexpr (Tr::kScaled) {
      if (scale_mode == 1) {
        v *= (Tr::kScaledX ? scale_x[0] : 1.f) * scale_w[0];
      } else if (scale_mode == 2) {
        v *= (Tr::kScaledX ? scale_x[m] : 1.f) * scale_w[n];
      }
    }
    if (bias != nullptr) v += __bfloat162float(bias[n]);
    y[size_t(m) * N + n] = __float2bfloat16_rn(v);
  };
  const int n_rows = min(kRowsPerCta, N - n_cta);
  if (splits == 1) {
    for (int idx = tid; idx < m_rows * kRowsPerCta; idx += kThreads) {
      const int m = idx / kRowsPerCta, r = idx % kRowsPerCta;
      if (r < n_rows) store(m, n_cta + r, tile_sum(m, r));
    }
    return;
  }

  // --- Split-K across CTAs: partial to the workspace, the last CTA of the column sums them.
  for (int idx = tid; idx < m_rows * kRowsPerCta; idx += kThreads) {
    const int m = idx / kRowsPerCta, r = idx % kRowsPerCta;
    if (r < n_rows) workspace[(size_t(z) * M + m) * N + n_cta + r] = tile_sum(m, r);
  }
  __threadfence();  // the partial is visible device-wide before the counter says so
  __syncthreads();
  if (tid == 0) s_last = atomicAdd(counters + blockIdx.x, 1u) == unsigned(splits - 1);
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  for (int idx = tid; idx < m_rows * kRowsPerCta; idx += kThreads) {
    const int m = idx / kRowsPerCta, r = idx % kRowsPerCta;
    if (r < n_rows) {
      float v = 0.f;
      for (int s = 0; s < splits; ++s) v += __ldcg(workspace + (size_t(s) * M + m) * N + n_cta + r);
      store(m, n_cta + r, v);
    }
  }
  if (tid == 0) counters[blockIdx.x] = 0;  // ready for the next launch
}

}  // namespace small_m
}  // namespace rb

// ---------------------------------------------------------------------------------------------
// The kernels.
#define RB_SMALL_M_KERNEL(NAME, KIND, MB)                                                         \
  extern "C" __global__ void __launch_bounds__(rb::small_m::kThreads,                            \
                                                  (rb::small_m::min_blocks<KIND, MB>()))         \
      NAME(const void* x, const void* w, __nv_bfloat16* y, const float* scale_x,                \
           const float* scale_w, const __nv_bfloat16* bias, int m, int n, int k, int scale_mode, \
           float* workspace, unsigned int* counters) {                                           \
    rb::small_m::gemm<KIND, MB>(x, w, y, scale_x, scale_w, bias, m, n, k, scale_mode, workspace, \
                               counters);                                                        \
  }

#define RB_SMALL_M_BUCKETS(PREFIX, KIND)   \
  RB_SMALL_M_KERNEL(PREFIX##_m8, KIND, 8)   \
  RB_SMALL_M_KERNEL(PREFIX##_m16, KIND, 16) \
  RB_SMALL_M_KERNEL(PREFIX##_m32, KIND, 32) \
  RB_SMALL_M_KERNEL(PREFIX##_m64, KIND, 64)

RB_SMALL_M_BUCKETS(gemm_small_m_bf16, rb::small_m::Bf16In)
RB_SMALL_M_BUCKETS(gemm_small_m_e4m3, rb::small_m::W8A8<rb::E4m3>)
RB_SMALL_M_BUCKETS(gemm_small_m_e5m2, rb::small_m::W8A8<rb::E5m2>)
RB_SMALL_M_BUCKETS(gemm_small_m_s8, rb::small_m::W8A8<rb::S8>)
RB_SMALL_M_BUCKETS(gemm_small_m_we4m3_abf16, rb::small_m::WOnly<rb::E4m3>)
RB_SMALL_M_BUCKETS(gemm_small_m_we5m2_abf16, rb::small_m::WOnly<rb::E5m2>)
RB_SMALL_M_BUCKETS(gemm_small_m_ws8_abf16, rb::small_m::WOnly<rb::S8>)
