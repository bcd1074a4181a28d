// Element types seen as 16-byte vectors, so one kernel template serves 4-byte and 16-byte accesses.
#pragma once
#include <cstdint>

namespace rb {

template <typename V> struct lanes { static constexpr int value = 1; };
template <> struct lanes<uint4> { static constexpr int value = 4; };
template <> struct lanes<float4> { static constexpr int value = 4; };

__device__ __forceinline__ unsigned long long lane_sum(uint32_t v) { return v; }
__device__ __forceinline__ unsigned long long lane_sum(uint4 v) {
  return (unsigned long long)v.x + v.y + v.z + v.w;
}

template <typename V> __device__ __forceinline__ V splat(uint32_t v);
template <> __device__ __forceinline__ uint32_t splat<uint32_t>(uint32_t v) { return v; }
template <> __device__ __forceinline__ uint4 splat<uint4>(uint32_t v) { return make_uint4(v, v, v, v); }

// a = b + s * c with one rounding (fma), the same on the CPU reference via f32::mul_add.
__device__ __forceinline__ float triad(float b, float c, float s) { return fmaf(s, c, b); }
__device__ __forceinline__ float4 triad(float4 b, float4 c, float s) {
  return make_float4(fmaf(s, c.x, b.x), fmaf(s, c.y, b.y), fmaf(s, c.z, b.z), fmaf(s, c.w, b.w));
}

}  // namespace rb
