// The `mma` GEMM path (mma.sync + cp.async + ldmatrix, sm_80 and newer) for BF16 and INT8
// inputs; the design is in gemm/mma_gemm.cuh, the launcher in src/gemm/paths/mma.rs.
//
// Kernels (all: x, w, y, scale_x, scale_w, bias, m, n, k, scale_mode; 256 threads, a 1-D grid
// of ceil(M/128) * ceil(N/128) CTAs, dynamic shared memory rb::gemm_mma::smem_bytes(stages)):
//   gemm_mma_bf16           bf16 x bf16, f32 accumulators, scale_mode 0   3 stages, 48 KB
//   gemm_mma_s8             int8 x int8, s32 accumulators, scale_mode 1/2 3 stages, 48 KB
//   gemm_mma_s8_block128    int8 x int8, s32 per 128 K promoted to f32,
//                           scale_mode 3                                  4 stages, 64 KB
// FP8 kernels (sm_89+) are in gemm/mma_fp8.cu.
#include "gemm/mma_gemm.cuh"

RB_GEMM_MMA_KERNEL(gemm_mma_bf16, rb::MmaBf16, false, 3, 2)
RB_GEMM_MMA_KERNEL(gemm_mma_s8, rb::MmaS8, false, 3, 2)
RB_GEMM_MMA_KERNEL(gemm_mma_s8_block128, rb::MmaS8, true, 4, 1)
