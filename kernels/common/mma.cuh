// Warp-level tensor-core MMA (`mma.sync`) on register fragments, one struct per input type.
#pragma once
#include <cstdint>

namespace rb {

// Every shape below is m16n8kK with A row-major and B column-major, so every type has the same
// fragments per thread: A in 4 registers, B in 2, C = D in 4 accumulators (K = 16 for 16-bit
// inputs, 32 for 8-bit ones). `d` points at the thread's 4 accumulators; D = A * B + D.
#define RB_DEFINE_MMA_SYNC(NAME, ACC, CONSTRAINT, PTX)                                            \
  struct NAME {                                                                                  \
    using Acc = ACC;                                                                             \
    __device__ __forceinline__ static void mma(ACC* d, const uint32_t (&a)[4],                   \
                                               const uint32_t (&b)[2]) {                         \
      asm volatile(PTX " {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"      \
                   : CONSTRAINT(d[0]), CONSTRAINT(d[1]), CONSTRAINT(d[2]), CONSTRAINT(d[3])      \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));         \
    }                                                                                            \
  };

RB_DEFINE_MMA_SYNC(MmaBf16, float, "+f", "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32")
RB_DEFINE_MMA_SYNC(MmaF16, float, "+f", "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32")
RB_DEFINE_MMA_SYNC(MmaS8, int32_t, "+r", "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32")
// sm_89 and newer only: instantiate it only in a module built for those targets.
RB_DEFINE_MMA_SYNC(MmaE4m3, float, "+f", "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32")
RB_DEFINE_MMA_SYNC(MmaE5m2, float, "+f", "mma.sync.aligned.m16n8k32.row.col.f32.e5m2.e5m2.f32")

#undef RB_DEFINE_MMA_SYNC

}  // namespace rb
