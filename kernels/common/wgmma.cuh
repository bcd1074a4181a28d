// Warpgroup MMA (`wgmma.mma_async`, sm_90a): A and B from shared memory through matrix
// descriptors, D in registers, one struct per input type. Include only in sm_90a modules.
#pragma once
#include <cstdint>

namespace rb {

// Orders this thread's earlier generic-proxy writes to shared memory before later async-proxy
// reads of it (wgmma, TMA); the writers execute it, then a barrier publishes the writes.
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Must precede the first wgmma, and any wgmma whose accumulators other instructions touched since.
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void wgmma_commit_group() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

// Waits until at most PENDING committed groups of this warpgroup are still in flight.
template <int PENDING> __device__ __forceinline__ void wgmma_wait_group() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(PENDING) : "memory");
}

// Pins accumulator registers at this point of the program: an empty asm that "writes" each one,
// so the compiler cannot move reads of the accumulators above a preceding wgmma_wait_group (it
// does not know the wgmmas write them asynchronously) nor keep copies across it.
template <int N> __device__ __forceinline__ void wgmma_fence_operands(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
template <int N> __device__ __forceinline__ void wgmma_fence_operands(int32_t (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(d[i])::"memory");
}

// Descriptor of a K-major operand tile without swizzle, for a wgmma reading 32 bytes of K per row
// (16 16-bit or 32 8-bit elements). Such a tile is built from 8-row x 16-byte core matrices (128
// contiguous bytes); `lbo` is the byte distance between the two core matrices of a row group
// along K, `sbo` the distance between consecutive 8-row groups along M or N. Fields, in 16-byte
// units: start address bits 0-13, LBO bits 16-29, SBO bits 32-45; swizzle mode bits 62-63 = 0.
__device__ __forceinline__ uint64_t wgmma_desc_k_major(uint32_t shared_address, uint32_t lbo,
                                                       uint32_t sbo) {
  return uint64_t((shared_address & 0x3FFFF) >> 4) | uint64_t((lbo & 0x3FFFF) >> 4) << 16 |
         uint64_t((sbo & 0x3FFFF) >> 4) << 32;
}

// Descriptor of a K-major tile written by TMA with CU_TENSOR_MAP_SWIZZLE_128B: rows of exactly
// 128 bytes (64 16-bit or 128 8-bit elements of K), row r at byte r * 128 of a 1024-byte-aligned
// tile, its 16-byte chunk c stored at chunk c ^ (r % 8). Eight rows form one 1024-byte swizzle
// atom, so SBO (the distance between 8-row groups along M or N) is 1024; LBO is unused for
// swizzled K-major layouts whose K extent per wgmma (32 bytes) lies inside one 128-byte row
// (set to 1 by convention). Swizzle mode bits 62-63 = 1 (128B); base offset bits 49-51 = 0
// because the tile is 1024-byte aligned. The wgmma reading K bytes [32j, 32j + 32) of every row
// takes `shared_address` = tile + 32j: the hardware applies the XOR pattern to the full address,
// so advancing the start inside the atom selects the right (swizzled) chunks.
__device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t shared_address) {
  return uint64_t((shared_address & 0x3FFFF) >> 4) | uint64_t(1) << 16 |
         uint64_t(1024 >> 4) << 32 | uint64_t(1) << 62;
}

// M(X, n) for n = 1..127 (and 1..63), as decimal literals so that M can stringify them: the
// register lists of the m64n256 (128 accumulators per thread) and m64n128 (64) shapes are
// generated, not typed.
#define RB_SEQ10(M, X, t)                                                                        \
  M(X, t##0) M(X, t##1) M(X, t##2) M(X, t##3) M(X, t##4)                                         \
  M(X, t##5) M(X, t##6) M(X, t##7) M(X, t##8) M(X, t##9)
#define RB_FOR_1_TO_127(M, X)                                                                    \
  M(X, 1) M(X, 2) M(X, 3) M(X, 4) M(X, 5) M(X, 6) M(X, 7) M(X, 8) M(X, 9)                        \
  RB_SEQ10(M, X, 1) RB_SEQ10(M, X, 2) RB_SEQ10(M, X, 3) RB_SEQ10(M, X, 4) RB_SEQ10(M, X, 5)      \
  RB_SEQ10(M, X, 6) RB_SEQ10(M, X, 7) RB_SEQ10(M, X, 8) RB_SEQ10(M, X, 9) RB_SEQ10(M, X, 10)     \
  RB_SEQ10(M, X, 11)                                                                             \
  M(X, 120) M(X, 121) M(X, 122) M(X, 123) M(X, 124) M(X, 125) M(X, 126) M(X, 127)
#define RB_WGMMA_REG_NAME(X, n) ", %" #n
#define RB_WGMMA_ACC_OPERAND(CONSTRAINT, n) , CONSTRAINT(d[n])

#define RB_FOR_1_TO_63(M, X)                                                                     \
  M(X, 1) M(X, 2) M(X, 3) M(X, 4) M(X, 5) M(X, 6) M(X, 7) M(X, 8) M(X, 9)                        \
  RB_SEQ10(M, X, 1) RB_SEQ10(M, X, 2) RB_SEQ10(M, X, 3) RB_SEQ10(M, X, 4) RB_SEQ10(M, X, 5)      \
  M(X, 60) M(X, 61) M(X, 62) M(X, 63)

// D (+)= A * B for m64nN: `d` holds this thread's N/2 accumulators, `a` and `b` are descriptors
// of K-major tiles. `accumulate` == 0 overwrites D (wgmma's scale-d) instead of adding to it.
// REGS = N/2; FOR_REST lists accumulators 1..REGS-1; A_B and P are the operand numbers of a, b
// and accumulate ("%128, %129" and "%130" for REGS = 128). TAIL is the rest of the operand list
// after scale-d, which depends on the input type.
#define RB_DEFINE_WGMMA(NAME, REGS, FOR_REST, A_B, P, ACC, CONSTRAINT, PTX, TAIL)                \
  struct NAME {                                                                                  \
    using Acc = ACC;                                                                             \
    static constexpr int kRegs = REGS;                                                           \
    __device__ __forceinline__ static void mma(ACC (&d)[REGS], uint64_t a, uint64_t b,           \
                                               uint32_t accumulate) {                            \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " P ", 0;\n" PTX                            \
                   " {%0" FOR_REST(RB_WGMMA_REG_NAME, ~) "}, " A_B ", p" TAIL ";\n}\n"            \
                   : CONSTRAINT(d[0]) FOR_REST(RB_WGMMA_ACC_OPERAND, CONSTRAINT)                 \
                   : "l"(a), "l"(b), "r"(accumulate));                                           \
    }                                                                                            \
  };
#define RB_DEFINE_WGMMA_M64N256(NAME, ACC, CONSTRAINT, PTX, TAIL)                                \
  RB_DEFINE_WGMMA(NAME, 128, RB_FOR_1_TO_127, "%128, %129", "%130", ACC, CONSTRAINT, PTX, TAIL)
#define RB_DEFINE_WGMMA_M64N128(NAME, ACC, CONSTRAINT, PTX, TAIL)                                \
  RB_DEFINE_WGMMA(NAME, 64, RB_FOR_1_TO_63, "%64, %65", "%66", ACC, CONSTRAINT, PTX, TAIL)

// 16-bit inputs take sign (imm-scale-a/b = 1) and transpose (imm-trans-a/b = 0: K-major)
// immediates; fp8 only the signs; integers neither.
RB_DEFINE_WGMMA_M64N256(WgmmaBf16, float, "+f",
                        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16", ", 1, 1, 0, 0")
RB_DEFINE_WGMMA_M64N256(WgmmaE4m3, float, "+f",
                        "wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e4m3", ", 1, 1")
RB_DEFINE_WGMMA_M64N256(WgmmaE5m2, float, "+f",
                        "wgmma.mma_async.sync.aligned.m64n256k32.f32.e5m2.e5m2", ", 1, 1")
RB_DEFINE_WGMMA_M64N256(WgmmaS8, int32_t, "+r",
                        "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8", "")
RB_DEFINE_WGMMA_M64N128(WgmmaBf16N128, float, "+f",
                        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16", ", 1, 1, 0, 0")
RB_DEFINE_WGMMA_M64N128(WgmmaE4m3N128, float, "+f",
                        "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3", ", 1, 1")
RB_DEFINE_WGMMA_M64N128(WgmmaE5m2N128, float, "+f",
                        "wgmma.mma_async.sync.aligned.m64n128k32.f32.e5m2.e5m2", ", 1, 1")
RB_DEFINE_WGMMA_M64N128(WgmmaS8N128, int32_t, "+r",
                        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8", "")

#undef RB_DEFINE_WGMMA_M64N128
#undef RB_DEFINE_WGMMA
#undef RB_FOR_1_TO_63
#undef RB_DEFINE_WGMMA_M64N256
#undef RB_WGMMA_ACC_OPERAND
#undef RB_WGMMA_REG_NAME
#undef RB_FOR_1_TO_127
#undef RB_SEQ10

}  // namespace rb
