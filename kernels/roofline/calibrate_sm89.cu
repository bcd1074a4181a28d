// roofbench-targets: sm_89
// FP8 tensor-core calibration with warp-level mma.sync: the mma.sync kernels of calibrate.cu for
// e4m3 inputs. Built for sm_89 (Ada) only, see below; on other GPUs it is reported unavailable.
// Same launch and loop structure (common/calib.cuh):
// grid = SMs x resident blocks per SM, no dynamic shared memory, t = global thread index.
//
// kernel          block  work per iteration                 out[t]             iters
// calib_mma_fp8   256    8 * 2*16*8*32 = 65536 FLOP / warp  16.0f * iters      <= 2^20
//
// A = 1.0 (e4m3 0x38) and B = 2^-6 (e4m3 0x08) in every element; each iteration adds
// 32 * 2^-6 = 0.5 to each of the thread's 8 x 4 accumulators.
//
// Only sm_89 has fp8 mma.sync in hardware (QMMA.16832). For sm_90a and sm_100a ptxas emulates it (F2FP unpack to f16, HMMA.16816 on a zero accumulator, FADD into the real
// ones), and with this kernel's constant fragments it computes one product per unrolled trip and
// shares it among all 32 mmas: there the kernel still returns 16 * iters but times FADDs, not a
// tensor core, so it would be no ceiling there: Hopper's fp8 ceiling is calib_wgmma_fp8.
#include <cstdint>

#include "common/calib.cuh"
#include "common/mma.cuh"

extern "C" __global__ void __launch_bounds__(256) calib_mma_fp8(float* out, uint32_t iters) {
  rb::mma_chains<rb::MmaE4m3>(out, iters, rb::repeat8(0x38), rb::repeat8(0x08));
}
