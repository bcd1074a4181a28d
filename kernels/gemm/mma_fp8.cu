// roofbench-targets: sm_89 sm_90a sm_100a
// The `mma` GEMM path for FP8 inputs: mma.sync with e4m3/e5m2 operands exists from sm_89, so
// this module is built for sm_89, sm_90a and sm_100a only (and, being restricted, carries no
// compute_80 PTX). The design is in gemm/mma_gemm.cuh, the launcher in src/gemm/paths/mma.rs.
//
// Kernels (all: x, w, y, scale_x, scale_w, bias, m, n, k, scale_mode; 256 threads, a 1-D grid
// of ceil(M/128) * ceil(N/128) CTAs, dynamic shared memory rb::gemm_mma::smem_bytes(stages, false)):
//   gemm_mma_e4m3, gemm_mma_e5m2                f32 accumulators, scale_mode 1/2  3 stages
//   gemm_mma_e4m3_block128, gemm_mma_e5m2_block128
//                                               f32 partials per 128 K promoted to
//                                               an f32 total, scale_mode 3        4 stages
#include "gemm/mma_gemm.cuh"

RB_GEMM_MMA_KERNEL(gemm_mma_e4m3, rb::MmaE4m3, void, false, 3, 2)
RB_GEMM_MMA_KERNEL(gemm_mma_e5m2, rb::MmaE5m2, void, false, 3, 2)
RB_GEMM_MMA_KERNEL(gemm_mma_e4m3_block128, rb::MmaE4m3, void, true, 4, 1)
RB_GEMM_MMA_KERNEL(gemm_mma_e5m2_block128, rb::MmaE5m2, void, true, 4, 1)
