// Tensor memory accelerator (TMA) loads and the shared-memory mbarriers they complete on (sm_90).
//
// A TMA load copies one box of a tensor, described by a `CUtensorMap` the host encodes
// (src/gpu/tensor_map.rs), from global into shared memory; out-of-bounds elements of the box
// are written as zeros, and the copy counts its bytes against the transaction count of an
// mbarrier. A consumer waits for the barrier's phase to complete, i.e. for every expected byte
// to have landed.
//
// mbarrier phases: a barrier starts in phase 0; the phase completes when the pending arrival
// count reaches zero and the transaction count is zero, then the barrier moves to the next
// phase. `mbarrier_wait(bar, parity)` returns once the phase with that parity has completed.
// On a fresh barrier, waiting for parity 1 returns at once (the phase "before" phase 0 counts as
// completed): that is how a producer passes its first round of empty-slot waits.
#pragma once
#include <cstdint>

#include <cuda.h>

namespace rb {

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Initialises a barrier expecting `count` arrivals per phase. One thread initialises; then
// `fence_mbarrier_init` and a CTA barrier make the initialised state visible to every thread
// and to the async proxy (TMA) before first use.
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)),
               "r"(count)
               : "memory");
}

__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// One arrival that also raises the transaction count of the current phase by `bytes`: the
// producer's announcement of the TMA bytes about to land on `bar`.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(
                   shared_address(bar)),
               "r"(bytes)
               : "memory");
}

// A plain arrival (release semantics: this thread's earlier shared-memory reads, and those of the
// warp it has synchronised with, happen before the phase completes).
__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(shared_address(bar))
               : "memory");
}

__device__ __forceinline__ bool mbarrier_try_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  asm volatile("{\n.reg .pred p;\n"
               "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
               "selp.u32 %0, 1, 0, p;\n}\n"
               : "=r"(done)
               : "r"(bar), "r"(parity)
               : "memory");
  return done != 0;
}

// Waits (acquire) until the phase of `bar` with parity `parity` has completed. try_wait itself
// suspends the thread for a hardware-chosen time before it reports "not yet", so the loop does
// not spin hot.
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  const uint32_t address = shared_address(bar);
  while (!mbarrier_try_wait(address, parity)) {
  }
}

// Brings the tensor map (a __grid_constant__ kernel parameter) into the descriptor cache before
// the first load that uses it.
__device__ __forceinline__ void tma_prefetch_descriptor(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// Loads the box at coordinates (c0 = innermost, in elements; c1 = row) of a 2-D tensor into
// `dst` (aligned as the map's swizzle requires: 1024 bytes for 128B), completing on `bar`.
// `map` must point at a __grid_constant__ parameter (or global/const memory).
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, uint64_t* bar,
                                            int32_t c0, int32_t c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4}], [%2];\n" ::"r"(shared_address(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(shared_address(bar)), "r"(c0), "r"(c1)
      : "memory");
}

// Named barrier `id` (1..15; 0 is __syncthreads) over `threads` threads (a multiple of 32):
// synchronises a subset of the CTA, e.g. one warpgroup.
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Register budget changes of warp-specialised kernels (sm_90a): every thread of the warpgroup
// executes the same one. Takes effect only under a register cap at entry
// (`__launch_bounds__(threads, 1)`).
template <uint32_t REGS> __device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGS));
}
template <uint32_t REGS> __device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGS));
}

}  // namespace rb
