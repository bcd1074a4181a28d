// Division by a run-time constant with a multiply-high and a shift, for index arithmetic in
// inner loops where a hardware-less 32-bit division would cost ~20 instructions.
#pragma once
#include <cstdint>

namespace rb {

// Exact quotient and remainder for dividends 0 <= n < 2^31 and divisors d >= 1.
// With l = ceil(log2 d) and m = ceil(2^(31+l) / d): n * m / 2^(31+l) = n/d + n*e/(d*2^(31+l))
// where e = m*d - 2^(31+l) < d, so the error term is below n / 2^(31+l) < 1/d and cannot carry
// past the next integer. d = 1 has no such m < 2^32 and is special-cased.
struct FastDivmod {
  uint32_t divisor, multiplier, shift;

  __device__ explicit FastDivmod(uint32_t d) : divisor(d), multiplier(0), shift(0) {
    if (d > 1) {
      const uint32_t l = 32 - __clz(d - 1);
      multiplier = uint32_t(((uint64_t(1) << (31 + l)) + d - 1) / d);
      shift = l - 1;
    }
  }

  __device__ __forceinline__ uint32_t div(uint32_t n) const {
    return divisor == 1 ? n : __umulhi(n, multiplier) >> shift;
  }

  __device__ __forceinline__ void divmod(uint32_t n, uint32_t& q, uint32_t& r) const {
    q = div(n);
    r = n - q * divisor;
  }
};

}  // namespace rb
