// The `mma` GEMM path (mma.sync + cp.async + ldmatrix, sm_80 and newer) for BF16, INT8 and
// weight-only (8-bit W x BF16 X) inputs; the design is in gemm/mma_gemm.cuh, the launcher in
// src/gemm/paths/mma.rs.
//
// Kernels (all: x, w, y, scale_x, scale_w, bias, m, n, k, scale_mode; 256 threads, a 1-D grid
// of ceil(M/128) * ceil(N/128) CTAs, dynamic shared memory
// rb::gemm_mma::smem_bytes(stages, weight_only)):
//   gemm_mma_bf16           bf16 x bf16, f32 accumulators, scale_mode 0   3 stages, 48 KB
//   gemm_mma_s8             int8 x int8, s32 accumulators, scale_mode 1/2 3 stages, 48 KB
//   gemm_mma_s8_block128    int8 x int8, s32 per 128 K promoted to f32,
//                           scale_mode 3                                  4 stages, 64 KB
//   gemm_mma_w{s8,e4m3,e5m2}_abf16
//                           8-bit W widened to bf16 x bf16 X, f32
//                           accumulators, scale_mode 1/2 (W scales only)  3 stages, 44 KB
//   gemm_mma_w{s8,e4m3,e5m2}_abf16_block128
//                           the same, f32 partials per 128 K promoted,
//                           scale_mode 3                                  4 stages, 56 KB
// (Widening fp8 to bf16 is bit arithmetic, so the weight-only fp8 kernels need no sm_89.)
// FP8 x FP8 kernels (sm_89+) are in gemm/mma_fp8.cu.
#include "gemm/mma_gemm.cuh"

RB_GEMM_MMA_KERNEL(gemm_mma_bf16, rb::MmaBf16, void, false, 3, 2)
RB_GEMM_MMA_KERNEL(gemm_mma_s8, rb::MmaS8, void, false, 3, 2)
RB_GEMM_MMA_KERNEL(gemm_mma_s8_block128, rb::MmaS8, void, true, 4, 1)
RB_GEMM_MMA_KERNEL(gemm_mma_ws8_abf16, rb::MmaBf16, rb::S8, false, 3, 2)
RB_GEMM_MMA_KERNEL(gemm_mma_we4m3_abf16, rb::MmaBf16, rb::E4m3, false, 3, 2)
RB_GEMM_MMA_KERNEL(gemm_mma_we5m2_abf16, rb::MmaBf16, rb::E5m2, false, 3, 2)
RB_GEMM_MMA_KERNEL(gemm_mma_ws8_abf16_block128, rb::MmaBf16, rb::S8, true, 4, 1)
RB_GEMM_MMA_KERNEL(gemm_mma_we4m3_abf16_block128, rb::MmaBf16, rb::E4m3, true, 4, 1)
RB_GEMM_MMA_KERNEL(gemm_mma_we5m2_abf16_block128, rb::MmaBf16, rb::E5m2, true, 4, 1)
