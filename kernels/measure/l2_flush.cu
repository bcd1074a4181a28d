// The harness's L2 flush (src/measure/harness.rs, L2Flush): after the driver's memset has written
// a buffer of twice the L2, this kernel reads it back, so the L2 holds only *clean* lines of the
// flush buffer. A write alone would leave dirty lines whose write-back lands inside the next timed
// launch. The harness owns this kernel so that cold timing depends on no suite's kernels.
#include <cstddef>
#include <cstdint>

#include "../common/grid.cuh"
#include "../common/reduce.cuh"

// Grid-stride read of n 16-byte vectors, four loads in flight per thread; each block writes the
// sum of what it read so the loads cannot be dropped as dead code.
extern "C" __global__ void l2_flush_read(const uint4* buffer, size_t n,
                                         unsigned long long* block_partials) {
  unsigned long long sum = 0;
  rb::for_each_unrolled<4>(
      n, [&](size_t i) { return buffer[i]; },
      [&](size_t, uint4 v) { sum += v.x ^ v.y ^ v.z ^ v.w; });
  sum = rb::block_sum(sum);
  if (threadIdx.x == 0) block_partials[blockIdx.x] = sum;
}
