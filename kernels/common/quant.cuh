// Quantized GEMM operands (kernels/gemm/): the arithmetic that turns a group of bf16 values into
// 8-bit codes and one f32 scale. It is defined in src/gemm/quant/mod.rs, whose CPU quantizer these
// functions reproduce bit for bit:
//   scale = amax / kMax (IEEE division, round to nearest), or 1 when amax == 0;
//   y = x / scale (IEEE division), then
//   fp8: y rounded to nearest even, saturating to the largest finite value (cvt .satfinite);
//   int8: y rounded half to even, clamped to [-127, 127] (symmetric: -128 never appears).
// __fdiv_rn, not x * (1 / scale): the reciprocal rounds once more, and the two differ in the
// last bit of y often enough to change codes.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>

#include "common/dtype.cuh"

namespace rb {

template <typename Fp8, int kMaxValue> struct QuantFp8 {
  static constexpr float kMax = float(kMaxValue);
  // Four values, the first in the lowest byte.
  __device__ __forceinline__ static uint32_t encode4(float4 y) {
    return uint32_t(narrow_fp8x2<Fp8>(y.x, y.y)) | uint32_t(narrow_fp8x2<Fp8>(y.z, y.w)) << 16;
  }
};
using QuantE4m3 = QuantFp8<E4m3, 448>;
using QuantE5m2 = QuantFp8<E5m2, 57344>;

struct QuantInt8 {
  static constexpr float kMax = 127.f;
  __device__ __forceinline__ static uint32_t encode(float y) {
    // __float2int_rn rounds half to even (and saturates, though |y| stays near 127 here).
    return uint32_t(max(-127, min(127, __float2int_rn(y)))) & 0xFFu;
  }
  __device__ __forceinline__ static uint32_t encode4(float4 y) {
    return encode(y.x) | encode(y.y) << 8 | encode(y.z) << 16 | encode(y.w) << 24;
  }
};

// The scale of a group whose largest magnitude is `amax`.
template <typename Q> __device__ __forceinline__ float quant_scale(float amax) {
  return amax > 0.f ? __fdiv_rn(amax, Q::kMax) : 1.f;
}

// Four values divided by `scale` and encoded, the first in the lowest byte.
template <typename Q> __device__ __forceinline__ uint32_t quantize4(float4 x, float scale) {
  return Q::encode4(make_float4(__fdiv_rn(x.x, scale), __fdiv_rn(x.y, scale),
                                __fdiv_rn(x.z, scale), __fdiv_rn(x.w, scale)));
}

__device__ __forceinline__ float abs_max4(float4 v) {
  return fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
}

// Elements [i, i + 4) of x (bf16) as f32, 0 at and past `end`: one 8-byte load when `vec` (x + i
// is then 8-byte aligned) and the chunk is whole, else element by element.
__device__ __forceinline__ float4 load_bf16x4(const __nv_bfloat16* x, int64_t i, int64_t end,
                                              bool vec) {
  if (vec && i + 4 <= end) {
    const uint2 w = *reinterpret_cast<const uint2*>(x + i);
    const float2 lo = __bfloat1622float2(bits_as<__nv_bfloat162>(w.x));
    const float2 hi = __bfloat1622float2(bits_as<__nv_bfloat162>(w.y));
    return make_float4(lo.x, lo.y, hi.x, hi.y);
  }
  float v[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) v[j] = i + j < end ? __bfloat162float(x[i + j]) : 0.f;
  return make_float4(v[0], v[1], v[2], v[3]);
}

// Writes the bytes of `b` (lowest first) to out[i, min(i + 4, end)): one 4-byte store when `vec`
// (out + i is then 4-byte aligned) and the chunk is whole.
__device__ __forceinline__ void store_bytes4(uint8_t* out, int64_t i, int64_t end, bool vec,
                                             uint32_t b) {
  if (vec && i + 4 <= end) {
    *reinterpret_cast<uint32_t*>(out + i) = b;
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (i + j < end) out[i + j] = uint8_t(b >> (8 * j));
}

}  // namespace rb
