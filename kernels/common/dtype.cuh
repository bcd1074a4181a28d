// Element formats of the attention and GEMM kernels: 16-bit floats (queries, outputs, bf16/fp16
// caches) packed two per 32-bit word as the mma fragments hold them, fp8 caches (e4m3, e5m2)
// with their exact widening to 16 bits and saturating narrowing from f32, and the exact
// conversion of small int32 partial sums to f32.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "common/mma.cuh"

namespace rb {

template <typename To, typename From> __device__ __forceinline__ To bits_as(From v) {
  static_assert(sizeof(To) == sizeof(From), "same size only");
  To r;
  memcpy(&r, &v, sizeof(r));
  return r;
}

// A 16-bit float type: the tensor-core MMA that takes it and f32 <-> word conversions, element 0
// in the low half of the word (lower address, fragment element 2i).
template <typename T> struct Half16;

template <> struct Half16<__nv_bfloat16> {
  using Mma = MmaBf16;
  using Pair = __nv_bfloat162;
  __device__ __forceinline__ static uint32_t pack(float lo, float hi) {
    return bits_as<uint32_t>(__floats2bfloat162_rn(lo, hi));
  }
  __device__ __forceinline__ static float2 unpack(uint32_t w) {
    return __bfloat1622float2(bits_as<__nv_bfloat162>(w));
  }
  __device__ __forceinline__ static uint32_t mul(uint32_t a, uint32_t b) {
    return bits_as<uint32_t>(__hmul2(bits_as<Pair>(a), bits_as<Pair>(b)));
  }
  static constexpr int kExponentBits = 8;
  static constexpr int kBias = 127;
  static constexpr int kMantissaBits = 7;
};

template <> struct Half16<__half> {
  using Mma = MmaF16;
  using Pair = __half2;
  __device__ __forceinline__ static uint32_t pack(float lo, float hi) {
    return bits_as<uint32_t>(__floats2half2_rn(lo, hi));
  }
  __device__ __forceinline__ static float2 unpack(uint32_t w) {
    return __half22float2(bits_as<__half2>(w));
  }
  __device__ __forceinline__ static uint32_t mul(uint32_t a, uint32_t b) {
    return bits_as<uint32_t>(__hmul2(bits_as<Pair>(a), bits_as<Pair>(b)));
  }
  static constexpr int kExponentBits = 5;
  static constexpr int kBias = 15;
  static constexpr int kMantissaBits = 10;
};

// fp8 formats, as tags: a pool of them holds one byte per element (__nv_fp8_storage_t).
struct E4m3 {
  static constexpr __nv_fp8_interpretation_t kKind = __NV_E4M3;
  static constexpr int kExponentBits = 4;
  static constexpr int kBias = 7;
};
struct E5m2 {
  static constexpr __nv_fp8_interpretation_t kKind = __NV_E5M2;
  static constexpr int kExponentBits = 5;
  static constexpr int kBias = 15;
};

// What a KV-cache element type is in memory: KV is __nv_bfloat16, __half, E4m3 or E5m2.
template <typename KV> struct KvFormat {
  using Storage = KV;
  static constexpr bool kFp8 = false;
  static constexpr int kBytes = 2;
};
template <> struct KvFormat<E4m3> {
  using Storage = __nv_fp8_storage_t;
  static constexpr bool kFp8 = true;
  static constexpr int kBytes = 1;
};
template <> struct KvFormat<E5m2> {
  using Storage = __nv_fp8_storage_t;
  static constexpr bool kFp8 = true;
  static constexpr int kBytes = 1;
};

// An int32 of magnitude at most 2^22, converted to f32 exactly with an integer add and a float
// subtract instead of I2F, which Hopper runs at a quarter of the FP32 rate (16 per clock and SM
// against 64 integer adds and 128 float adds). Why it is exact: kMagicBits is the float
// 1.5 * 2^23 = 12582912; adding p to its bits keeps the exponent of 2^23 for every |p| <= 2^22
// (the bits stay within [0x4B000000, 0x4B800000], the floats 2^23 .. 2^24, one ulp apart), so
// the bits are the float 12582912 + p exactly; subtracting 12582912 is exact by Sterbenz's
// lemma (both operands within a factor 2 of each other). Callers must guarantee the bound:
// the block-128 INT8 GEMMs convert one 128-wide K block's partial sum, |p| <= 128 * 128^2 =
// 2^21. scripts/sim/wgmma_sim.py checks every p in [-2^22, 2^22].
constexpr int32_t kMagicBits = 0x4B400000;
constexpr float kMagicFloat = 12582912.0f;
constexpr int32_t kMagicExactBound = 1 << 22;
__device__ __forceinline__ float small_s32_to_f32(int32_t p) {
  return __int_as_float(kMagicBits + p) - kMagicFloat;
}

// One 128-wide K block's partial sum (a GEMM accumulator: int32 for INT8, f32 otherwise) as f32.
// An INT8 block holds 128 products of codes in [-127, 127] (|p| <= 128 * 127^2 < 2^21), within
// small_s32_to_f32's exact range; a 64-accumulator thread would otherwise spend more issue slots
// on I2F per block than on its MMAs.
template <typename Acc> __device__ __forceinline__ float block_partial_to_float(Acc v) {
  if constexpr (std::is_same_v<Acc, int32_t>) {
    static_assert(128 * 128 * 128 <= kMagicExactBound, "an int8 k-block's partial sum");
    return small_s32_to_f32(v);
  } else {
    return static_cast<float>(v);
  }
}

// 2^e as a pair of 16-bit floats of type T (e within T's normal range).
template <typename T> __host__ __device__ constexpr uint32_t pow2_pair(int e) {
  return (uint32_t(e + Half16<T>::kBias) << Half16<T>::kMantissaBits) * 0x00010001u;
}

// Four fp8 values (the bytes of `w`, lowest first) widened exactly to four 16-bit floats of type
// T, two per word, lowest first. Every e4m3 and e5m2 value is exact in fp16 and in bf16.
//
// Why bits and one multiply rather than a conversion instruction: sm_90 converts e4m3/e5m2 only
// to fp16 (one cvt per pair), not to bf16, and sm_80/86 not at all (cuda_fp8.h emulates it with
// a loop per element). Placing the fp8 sign, exponent and mantissa fields at their positions in
// T gives the value times 2^-(bias(T) - bias(fp8)) for normal and subnormal inputs alike; one
// packed multiply by the power of two (exact, T's multiplies keep subnormal inputs) restores it.
// The field shift is the difference in exponent widths. fp8 NaN codes come out as finite values
// (a cache holds none). On sm_89 and newer fp16 takes the native cvt instead.
template <typename Fp8, typename T> __device__ __forceinline__ uint2 widen_fp8x4(uint32_t w) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  if constexpr (std::is_same_v<T, __half>) {
    const __half2_raw lo = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(w & 0xFFFFu), Fp8::kKind);
    const __half2_raw hi = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(w >> 16), Fp8::kKind);
    return make_uint2(bits_as<uint32_t>(lo), bits_as<uint32_t>(hi));
  }
#endif
  constexpr int kShift = Half16<T>::kExponentBits - Fp8::kExponentBits;
  constexpr uint32_t kField = (0x7F00u >> kShift) * 0x00010001u;
  constexpr uint32_t kSign = 0x80008000u;
  // Each fp8 byte in the high byte of its 16-bit lane: sign already at bit 15.
  const uint32_t lo = __byte_perm(w, 0, 0x1404), hi = __byte_perm(w, 0, 0x3424);
  uint32_t a = ((lo >> kShift) & kField) | (lo & kSign);
  uint32_t b = ((hi >> kShift) & kField) | (hi & kSign);
  if constexpr (Half16<T>::kBias != Fp8::kBias) {
    constexpr uint32_t kScale = pow2_pair<T>(Half16<T>::kBias - Fp8::kBias);
    a = Half16<T>::mul(a, kScale);
    b = Half16<T>::mul(b, kScale);
  }
  return make_uint2(a, b);
}

// Two f32 values narrowed to fp8 (round to nearest even, saturating to the largest finite
// value), first value in the low byte.
template <typename Fp8> __device__ __forceinline__ uint16_t narrow_fp8x2(float lo, float hi) {
  return __nv_cvt_float2_to_fp8x2(make_float2(lo, hi), __NV_SATFINITE, Fp8::kKind);
}

// The int8 weight format, as a tag beside E4m3 and E5m2 (two's complement codes, one byte each).
struct S8 {};

// Four int8 values (two's complement, bytes of w, lowest first) widened exactly to four bf16,
// two per word, lowest first: byte b ^ 0x80 = v + 128 is placed in the mantissa of 2^23 (f32
// 2^23 + v + 128, exact) and 2^23 + 128 subtracted; |v| <= 128 is exact in bf16.
__device__ __forceinline__ uint2 widen_s8x4_bf16(uint32_t w) {
  const uint32_t u = w ^ 0x80808080u;
  float f[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[i] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440u | i)) - 8388736.0f;
  }
  return make_uint2(Half16<__nv_bfloat16>::pack(f[0], f[1]),
                    Half16<__nv_bfloat16>::pack(f[2], f[3]));
}

// 16 fp8 codes (a 16-byte vector) as 8 words of 16-bit floats of type T, element order kept.
template <typename Fp8, typename T>
__device__ __forceinline__ void widen_fp8x16(const uint4& v, uint32_t (&o)[8]) {
  const uint32_t in[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint2 r = widen_fp8x4<Fp8, T>(in[i]);
    o[2 * i] = r.x;
    o[2 * i + 1] = r.y;
  }
}

// 16 weight codes of format F (S8, E4m3, E5m2) widened exactly to 8 words of bf16 pairs, element
// order kept: how weight-only GEMMs feed 8-bit weights to a bf16 mma.
template <typename F> struct WidenToBf16 {
  __device__ __forceinline__ static void run(const uint4& v, uint32_t (&o)[8]) {
    widen_fp8x16<F, __nv_bfloat16>(v, o);
  }
};
template <> struct WidenToBf16<S8> {
  __device__ __forceinline__ static void run(const uint4& v, uint32_t (&o)[8]) {
    const uint32_t in[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint2 r = widen_s8x4_bf16(in[i]);
      o[2 * i] = r.x;
      o[2 * i + 1] = r.y;
    }
  }
};

}  // namespace rb
