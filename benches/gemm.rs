//! `cargo bench --bench gemm`: the quick GEMM grid (4096³ and 8192³ in BF16, FP8 per-tensor and
//! block-scaled, INT8; a decode-size M = 16 GEMM; a quantizer), our kernels and cuBLASLt, timed
//! with CUDA events. Without a GPU it says why and exits 0. `roofbench run gemm` is the full,
//! cold, results-writing version with accuracy deltas and goals.

use roofbench::gemm::GemmSuite;
use roofbench::suite::Suite;

fn main() {
    roofbench::suite::bench_cases("gemm", GemmSuite.default_cases(true));
}
