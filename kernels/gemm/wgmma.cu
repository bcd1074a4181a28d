// roofbench-targets: sm_90a
// Hopper GEMM: Y[M][N] = bf16(epilogue(X[M][K] · W[N][K]ᵀ)), X and W K-major ("TN"), through
// TMA, an mbarrier pipeline and warpgroup MMA (wgmma). Host side: src/gemm/paths/wgmma.rs.
//
// Kernels (all take the same parameters, see RB_WGMMA_KERNEL at the end):
//   kernel                       inputs  tile (BMxBNxBK)  stages  scale modes
//   gemm_wgmma_bf16              bf16    128x256x64       4       0
//   gemm_wgmma_e4m3              e4m3    128x256x128      4       1, 2 (0: none)
//   gemm_wgmma_e5m2              e5m2    128x256x128      4       1, 2 (0: none)
//   gemm_wgmma_s8                int8    128x256x128      4       1, 2 (0: none)
//   gemm_wgmma_e4m3_promoted     e4m3    128x128x128      6       1, 2 (0: none), f32 promotion
//   gemm_wgmma_e4m3_block128     e4m3    128x128x128      6       3
//   gemm_wgmma_e5m2_block128     e5m2    128x128x128      6       3
//   gemm_wgmma_s8_block128       int8    128x128x128      6       3
// Parameters: (const __grid_constant__ CUtensorMap tmap_x, tmap_w, bf16* y, const float*
// scale_x, const float* scale_w, const bf16* bias, int m, int n, int k, int scale_mode).
// tmap_x: X as a 2-D tensor {K, M} (innermost first), row stride K * bytes, box {BK, 128};
// tmap_w: W {K, N}, box {BK, BN}; both CU_TENSOR_MAP_SWIZZLE_128B, out-of-bounds fill zero.
// BK * bytes = 128: one box row is exactly one 128-byte swizzle row.
// Launch: block 384 threads, grid min(SMs, tiles) (persistent), dynamic shared memory
// kSmemBytes of the variant (mirrored in src/gemm/paths/wgmma.rs; the kernel traps if given
// less).
//
// Design.
// - Warp specialisation: warpgroup 0 is the producer; one thread of it issues every TMA load,
//   the other 127 exit after `setmaxnreg.dec` hands their registers to the consumers.
//   Warpgroups 1 and 2 are consumers (`setmaxnreg.inc` to 232): consumer c computes rows
//   [64c, 64c + 64) of the 128-row tile with m64nBNk* wgmmas, A (its 64 rows of X) and B (all BN
//   rows of W) read straight from the swizzled stage buffers through descriptors.
// - Pipeline: kStages stage buffers, each holding the X box (128 rows x 128 B) and the W box
//   (BN rows x 128 B), each with a "full" barrier (1 arrival: the producer's expect_tx, plus the
//   TMA bytes) and an "empty" barrier (8 arrivals: lane 0 of each consumer warp once that warp's
//   wgmmas reading the stage have completed). The producer and both consumers walk the same
//   sequence of (tile, k-block) steps, so a running (stage, phase) pair, carried across tiles,
//   names each step's buffer and the barrier parity to wait for: step i uses stage i % kStages
//   in round r = i / kStages; its full barrier completes phase r (consumers wait for parity
//   r & 1), and its empty barrier completed phase r - 1 when the consumers freed the round
//   before (the producer waits for parity (r & 1) ^ 1, which passes at once on fresh barriers).
// - Persistent grouped raster: CTA b takes tiles b, b + grid, ...; tile t maps to (tm, tn) in
//   groups of kGroupM tile rows swept across N, so the CTAs running at once share X rows and W
//   columns in L2.
// - Main loop (no promotion): per k-block, wgmma.fence, 4 wgmmas (128 bytes of K), commit, then
//   wait_group 1: the previous k-block's group has completed, so its stage is released while
//   the newest group still runs. Promoted variants wait_group 0 each k-block (the partial sum is
//   needed at once) and add it, scaled in block mode, into separate f32 registers: the FP8
//   tensor-core accumulator carries fewer mantissa bits than f32, so this bounds the error at
//   large K, and it is how block-128 scales (one per 128 of K) are applied. The two consumer
//   warpgroups keep the tensor cores busy while one of them promotes.
// - Epilogue: each consumer scales, adds the bias, rounds to bf16 and stages its 64 rows in
//   64-column chunks in its own shared buffer (row pitch 144 B: the 4-byte fragment stores of a
//   warp hit 32 distinct banks), then writes each chunk with coalesced 16-byte stores (scalar
//   stores at an N tail or when rows are not 16-byte aligned); rows >= M and columns >= N are
//   never written. Meanwhile the producer is already loading the next tile's first stages.
// - Tails: TMA zero-fills the parts of a box beyond M, N or K (the transaction still counts the
//   full box), so partial tiles and a partial last k-block need no special case in the main
//   loop. TMA needs 16-byte aligned bases and row strides (K * bytes % 16 == 0), which the host
//   checks.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <cuda.h>
#include <cuda_bf16.h>

#include "common/dtype.cuh"
#include "common/tma.cuh"
#include "common/wgmma.cuh"

namespace {

constexpr int kBM = 128;              // rows of X per tile
constexpr int kRowBytes = 128;        // bytes of K per stage and row: one 128-byte swizzle row
constexpr int kStepBytes = 32;        // bytes of K per wgmma (k16 for 16-bit, k32 for 8-bit)
constexpr int kSteps = kRowBytes / kStepBytes;  // wgmmas per stage
constexpr int kThreads = 384;         // producer warpgroup + 2 consumer warpgroups
constexpr int kConsumerWarps = 8;     // arrivals per phase on an empty barrier
constexpr int kGroupM = 8;            // tile rows per raster group
constexpr int kEpiCols = 64;          // columns per epilogue chunk
constexpr int kEpiPitch = kEpiCols * 2 + 16;  // bytes per staged row (16 B pad: no conflicts)
constexpr int kEpiBytes = 64 * kEpiPitch;     // one consumer's staging buffer
constexpr uint32_t kProducerRegs = 40;
constexpr uint32_t kConsumerRegs = 232;
static_assert(kProducerRegs * 128 + kConsumerRegs * 256 <= 65536, "register file");

enum class Promote {
  None,   // the whole K sum in the wgmma accumulators
  Sum,    // per 128 of K, the wgmma partial added into f32 registers (then scale modes 0-2)
  Block,  // per 128 of K, partial * scale_x[m][kb] * scale_w[n / 128][kb] added (mode 3)
};

// Input types: the wgmma of each tile width, bytes per element.
struct Bf16In {
  using Mma256 = rb::WgmmaBf16;
  using Mma128 = rb::WgmmaBf16N128;
  static constexpr int kBytes = 2;
};
struct E4m3In {
  using Mma256 = rb::WgmmaE4m3;
  using Mma128 = rb::WgmmaE4m3N128;
  static constexpr int kBytes = 1;
};
struct E5m2In {
  using Mma256 = rb::WgmmaE5m2;
  using Mma128 = rb::WgmmaE5m2N128;
  static constexpr int kBytes = 1;
};
struct S8In {
  using Mma256 = rb::WgmmaS8;
  using Mma128 = rb::WgmmaS8N128;
  static constexpr int kBytes = 1;
};

template <typename In, int BN> struct Config {
  static_assert(BN == 128 || BN == 256, "wgmma tile widths");
  using Mma = typename std::conditional<BN == 256, typename In::Mma256, typename In::Mma128>::type;
  using Acc = typename Mma::Acc;
  static constexpr int kRegs = BN / 2;  // accumulators per consumer thread (m64nBN)
  static constexpr int kBK = kRowBytes / In::kBytes;  // K elements per stage
  static constexpr int kStages = BN == 256 ? 4 : 6;
  static constexpr uint32_t kStageA = kBM * kRowBytes;  // 16 KiB
  static constexpr uint32_t kStageB = BN * kRowBytes;   // 32 or 16 KiB
  // Layout from the 1024-aligned base: A stages, B stages, 2 epilogue buffers, full barriers,
  // empty barriers. 1024 more bytes let the kernel align the base itself.
  static constexpr uint32_t kOffB = kStages * kStageA;
  static constexpr uint32_t kOffEpi = kOffB + kStages * kStageB;
  static constexpr uint32_t kOffFull = kOffEpi + 2 * kEpiBytes;
  static constexpr uint32_t kOffEmpty = kOffFull + kStages * 8;
  static constexpr uint32_t kSmemBytes = kOffEmpty + kStages * 8 + 1024;
  static_assert(kSmemBytes <= 232448, "H100 shared memory per block");
  static_assert(kStageA % 1024 == 0 && kStageB % 1024 == 0, "swizzle atoms stay aligned");
};

__device__ __forceinline__ uint32_t dynamic_smem_size() {
  uint32_t bytes;
  asm volatile("mov.u32 %0, %%dynamic_smem_size;\n" : "=r"(bytes));
  return bytes;
}

// Tile t of the grouped raster: groups of kGroupM tile rows (fewer in the last group), each swept
// column by column, tile rows fastest.
__device__ __forceinline__ void tile_coords(int tile, int tiles_m, int tiles_n, int& tm, int& tn) {
  const int per_group = kGroupM * tiles_n;
  const int group = tile / per_group;
  const int first_m = group * kGroupM;
  const int rows = min(tiles_m - first_m, kGroupM);
  const int in_group = tile - group * per_group;
  tm = first_m + in_group % rows;
  tn = in_group / rows;
}

__device__ __forceinline__ void advance(int& stage, uint32_t& phase, int stages) {
  if (++stage == stages) {
    stage = 0;
    phase ^= 1;
  }
}

template <typename Acc> __device__ __forceinline__ float to_float(Acc v) {
  return static_cast<float>(v);
}


// Consumer part of the epilogue: this thread's fragment of rows [row0, row0 + 64) of the tile
// (values v[i] at fragment position i: row lane/4 + 8*((i/2)%2) + 16*warp, column
// (i/4)*8 + 2*(lane%4) + i%2, the m64nN D layout of the PTX ISA), through the staging buffer.
// `value(i)` yields the f32 sum before scales; scale modes 1 and 2 and the bias are applied here.
template <int BN, typename Value>
__device__ __forceinline__ void epilogue(Value value, uint8_t* stage_buf, uint32_t barrier_id,
                                         __nv_bfloat16* __restrict__ y,
                                         const float* __restrict__ scale_x,
                                         const float* __restrict__ scale_w,
                                         const __nv_bfloat16* __restrict__ bias, int m, int n,
                                         int row0, int col0, int scale_mode) {
  const int t = threadIdx.x % 128;
  const int warp = t / 32, lane = t % 32;
  const int frag_row = warp * 16 + lane / 4;  // and frag_row + 8
  const int frag_col = 2 * (lane % 4);        // and + 1, + 8j

  // Row factors of this thread's two rows (mode 1 folds both scales into them).
  float row_scale[2] = {1.0f, 1.0f};
  if (scale_mode == 1) {
    row_scale[0] = row_scale[1] = scale_x[0] * scale_w[0];
  } else if (scale_mode == 2) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = row0 + frag_row + 8 * h;
      row_scale[h] = r < m ? scale_x[r] : 0.0f;
    }
  }
  const bool vector_ok = (n % 8 == 0) && (reinterpret_cast<uintptr_t>(y) % 16 == 0);

#pragma unroll
  for (int chunk = 0; chunk < BN / kEpiCols; ++chunk) {
    // Fragment -> bf16 pairs in the staging buffer.
#pragma unroll
    for (int jj = 0; jj < kEpiCols / 8; ++jj) {
      const int j = chunk * (kEpiCols / 8) + jj;
      const int c = col0 + j * 8 + frag_col;  // global column of the pair's first element
      float col_scale[2] = {1.0f, 1.0f};
      float add[2] = {0.0f, 0.0f};
      if (scale_mode == 2) {
        col_scale[0] = c < n ? scale_w[c] : 0.0f;
        col_scale[1] = c + 1 < n ? scale_w[c + 1] : 0.0f;
      }
      if (bias != nullptr) {
        add[0] = c < n ? __bfloat162float(bias[c]) : 0.0f;
        add[1] = c + 1 < n ? __bfloat162float(bias[c + 1]) : 0.0f;
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int i = j * 4 + 2 * h;
        const float lo = value(i) * row_scale[h] * col_scale[0] + add[0];
        const float hi = value(i + 1) * row_scale[h] * col_scale[1] + add[1];
        const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
        uint32_t bits;
        memcpy(&bits, &pair, 4);
        const uint32_t offset = (frag_row + 8 * h) * kEpiPitch + (jj * 8 + frag_col) * 2;
        *reinterpret_cast<uint32_t*>(stage_buf + offset) = bits;
      }
    }
    rb::named_barrier_sync(barrier_id, 128);
    // Staging buffer -> global: 64 rows x 8 vectors of 16 bytes, a warp covering 4 whole rows.
#pragma unroll
    for (int q = 0; q < 64 * 8 / 128; ++q) {
      const int v = t + 128 * q;
      const int r = v / 8, cv = v % 8;
      const int grow = row0 + r;
      const int gcol = col0 + chunk * kEpiCols + cv * 8;
      if (grow < m && gcol < n) {
        const uint4 data = *reinterpret_cast<const uint4*>(stage_buf + r * kEpiPitch + cv * 16);
        __nv_bfloat16* dst = y + size_t(grow) * size_t(n) + gcol;
        if (vector_ok && gcol + 8 <= n) {
          *reinterpret_cast<uint4*>(dst) = data;
        } else {
          uint16_t halves[8];
          memcpy(halves, &data, 16);
          for (int e = 0; e < 8 && gcol + e < n; ++e) {
            reinterpret_cast<uint16_t*>(dst)[e] = halves[e];
          }
        }
      }
    }
    // The next chunk overwrites the buffer only after every thread has read this one.
    rb::named_barrier_sync(barrier_id, 128);
  }
}

template <typename In, int BN, Promote P>
__device__ __forceinline__ void gemm_wgmma(const CUtensorMap* tmap_x, const CUtensorMap* tmap_w,
                                           __nv_bfloat16* __restrict__ y,
                                           const float* __restrict__ scale_x,
                                           const float* __restrict__ scale_w,
                                           const __nv_bfloat16* __restrict__ bias, int m, int n,
                                           int k, int scale_mode) {
  using C = Config<In, BN>;
  using Mma = typename C::Mma;
  using Acc = typename C::Acc;
  static_assert(P != Promote::Block || (BN == 128 && In::kBytes == 1),
                "block-128 scaling: one W scale per tile and k-block (BN = 128, BK = 128)");
  static_assert(P == Promote::None || C::kBK == 128, "promotion every 128 of K = every stage");

  extern __shared__ uint8_t smem_raw[];
  if (dynamic_smem_size() < C::kSmemBytes) __trap();  // the host's geometry disagrees
  // 128B-swizzled TMA boxes and wgmma descriptors with base offset 0 need 1024-byte alignment.
  uint8_t* smem = smem_raw + ((1024 - (rb::shared_address(smem_raw) & 1023)) & 1023);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + C::kOffFull);
  uint64_t* empty = reinterpret_cast<uint64_t*>(smem + C::kOffEmpty);

  const int tiles_m = (m + kBM - 1) / kBM;
  const int tiles_n = (n + BN - 1) / BN;
  const int tiles = tiles_m * tiles_n;
  const int k_blocks = (k + C::kBK - 1) / C::kBK;

  if (threadIdx.x == 0) {
    for (int s = 0; s < C::kStages; ++s) {
      rb::mbarrier_init(&full[s], 1);
      rb::mbarrier_init(&empty[s], kConsumerWarps);
    }
    // Make the initialised barriers visible to the async proxy (TMA's complete_tx) as well.
    rb::fence_mbarrier_init();
    rb::fence_proxy_async_shared();
    rb::tma_prefetch_descriptor(tmap_x);
    rb::tma_prefetch_descriptor(tmap_w);
  }
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    // ---- Producer ----
    rb::setmaxnreg_dec<kProducerRegs>();
    if (threadIdx.x != 0) return;
    int stage = 0;
    uint32_t phase = 0;
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      int tm, tn;
      tile_coords(tile, tiles_m, tiles_n, tm, tn);
      for (int kb = 0; kb < k_blocks; ++kb) {
        rb::mbarrier_wait(&empty[stage], phase ^ 1);  // consumers freed this slot's last round
        rb::mbarrier_arrive_expect_tx(&full[stage], C::kStageA + C::kStageB);
        rb::tma_load_2d(smem + stage * C::kStageA, tmap_x, &full[stage], kb * C::kBK, tm * kBM);
        rb::tma_load_2d(smem + C::kOffB + stage * C::kStageB, tmap_w, &full[stage], kb * C::kBK,
                        tn * BN);
        advance(stage, phase, C::kStages);
      }
    }
    return;
  }

  // ---- Consumers ----
  rb::setmaxnreg_inc<kConsumerRegs>();
  // Broadcast from lane 0 so the compiler knows it is warp-uniform (uniform registers).
  const int consumer = __shfl_sync(0xffffffff, warpgroup - 1, 0);
  const int t = threadIdx.x % 128;
  const int warp = t / 32, lane = t % 32;
  uint8_t* stage_buf = smem + C::kOffEpi + consumer * kEpiBytes;
  const uint32_t barrier_id = 1 + consumer;
  // Descriptors of stage 0 (this consumer's 64 rows of A; all of B); a stage, and a 32-byte K
  // step inside the 128-byte rows, are start-address offsets (in 16-byte units).
  const uint64_t desc_a0 =
      rb::wgmma_desc_sw128(rb::shared_address(smem) + consumer * 64 * kRowBytes);
  const uint64_t desc_b0 = rb::wgmma_desc_sw128(rb::shared_address(smem + C::kOffB));

  Acc acc[C::kRegs];
  constexpr int kSums = P == Promote::None ? 1 : C::kRegs;
  float sum[kSums];  // promoted f32 sums (unused without promotion)

  int stage = 0;
  uint32_t phase = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    int tm, tn;
    tile_coords(tile, tiles_m, tiles_n, tm, tn);
    const int row0 = tm * kBM + consumer * 64;  // this consumer's first row
    const int col0 = tn * BN;
#pragma unroll
    for (int i = 0; i < kSums; ++i) sum[i] = 0.0f;

    if constexpr (P == Promote::None) {
      int previous = 0;
      for (int kb = 0; kb < k_blocks; ++kb) {
        rb::mbarrier_wait(&full[stage], phase);
        // Orders the epilogue's reads of the accumulators (previous tile) before the wgmmas that
        // overwrite them; cheap, so issued every stage.
        rb::wgmma_fence();
#pragma unroll
        for (int s = 0; s < kSteps; ++s) {
          const uint64_t k_off = (s * kStepBytes) >> 4;
          Mma::mma(acc, desc_a0 + ((stage * C::kStageA) >> 4) + k_off,
                   desc_b0 + ((stage * C::kStageB) >> 4) + k_off, (kb | s) != 0);
        }
        rb::wgmma_commit_group();
        // At most the group just committed is pending: the previous stage's wgmmas are done.
        rb::wgmma_wait_group<1>();
        if (kb > 0 && lane == 0) rb::mbarrier_arrive(&empty[previous]);
        previous = stage;
        advance(stage, phase, C::kStages);
      }
      rb::wgmma_wait_group<0>();
      rb::wgmma_fence_operands(acc);  // the epilogue's reads stay after the wait
      if (k_blocks > 0 && lane == 0) rb::mbarrier_arrive(&empty[previous]);
      if (k_blocks == 0) {
#pragma unroll
        for (int i = 0; i < C::kRegs; ++i) acc[i] = Acc(0);
      }
    } else {
      for (int kb = 0; kb < k_blocks; ++kb) {
        // Block scales of this k-block, loaded before the wait so their latency overlaps it:
        // this thread's two rows, and the tile's one W block (BN = 128 = the W block width).
        float block_scale[2] = {1.0f, 1.0f};
        if constexpr (P == Promote::Block) {
          const float sw = scale_w[size_t(tn) * k_blocks + kb];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int r = row0 + warp * 16 + lane / 4 + 8 * h;
            block_scale[h] = r < m ? scale_x[size_t(r) * k_blocks + kb] * sw : 0.0f;
          }
        }
        rb::mbarrier_wait(&full[stage], phase);
        rb::wgmma_fence();  // the previous k-block's promotion read the accumulators
#pragma unroll
        for (int s = 0; s < kSteps; ++s) {
          const uint64_t k_off = (s * kStepBytes) >> 4;
          Mma::mma(acc, desc_a0 + ((stage * C::kStageA) >> 4) + k_off,
                   desc_b0 + ((stage * C::kStageB) >> 4) + k_off, s != 0);
        }
        rb::wgmma_commit_group();
        rb::wgmma_wait_group<0>();
        rb::wgmma_fence_operands(acc);  // the promotion's reads stay after the wait
        if (lane == 0) rb::mbarrier_arrive(&empty[stage]);
        advance(stage, phase, C::kStages);
#pragma unroll
        for (int i = 0; i < C::kRegs; ++i) {
          // Fragment element i lies in row half (i / 2) % 2.
          if constexpr (P == Promote::Block) {
            sum[i] += rb::block_partial_to_float(acc[i]) * block_scale[(i / 2) % 2];
          } else {
            sum[i] += to_float(acc[i]);
          }
        }
      }
    }

    const int mode = P == Promote::Block ? 0 : scale_mode;  // block scales are already applied
    if constexpr (P == Promote::None) {
      epilogue<BN>([&](int i) { return to_float(acc[i]); }, stage_buf, barrier_id, y, scale_x,
                   scale_w, bias, m, n, row0, col0, mode);
    } else {
      epilogue<BN>([&](int i) { return sum[i]; }, stage_buf, barrier_id, y, scale_x, scale_w,
                   bias, m, n, row0, col0, mode);
    }
  }
}

}  // namespace

#define RB_WGMMA_KERNEL(NAME, IN, BN, PROMOTE)                                                   \
  extern "C" __global__ void __launch_bounds__(kThreads, 1)                                      \
      NAME(const __grid_constant__ CUtensorMap tmap_x, const __grid_constant__ CUtensorMap tmap_w, \
           __nv_bfloat16* y, const float* scale_x, const float* scale_w,                         \
           const __nv_bfloat16* bias, int m, int n, int k, int scale_mode) {                     \
    gemm_wgmma<IN, BN, PROMOTE>(&tmap_x, &tmap_w, y, scale_x, scale_w, bias, m, n, k,            \
                                scale_mode);                                                     \
  }

RB_WGMMA_KERNEL(gemm_wgmma_bf16, Bf16In, 256, Promote::None)
RB_WGMMA_KERNEL(gemm_wgmma_e4m3, E4m3In, 256, Promote::None)
RB_WGMMA_KERNEL(gemm_wgmma_e5m2, E5m2In, 256, Promote::None)
RB_WGMMA_KERNEL(gemm_wgmma_s8, S8In, 256, Promote::None)
RB_WGMMA_KERNEL(gemm_wgmma_e4m3_promoted, E4m3In, 128, Promote::Sum)
RB_WGMMA_KERNEL(gemm_wgmma_e4m3_block128, E4m3In, 128, Promote::Block)
RB_WGMMA_KERNEL(gemm_wgmma_e5m2_block128, E5m2In, 128, Promote::Block)
RB_WGMMA_KERNEL(gemm_wgmma_s8_block128, S8In, 128, Promote::Block)
