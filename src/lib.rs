//! roofbench: hand-written CUDA kernels for LLM inference, benchmarked against roofline models of
//! the GPU. See README.md for the architecture; each module's header says what it owns.

pub mod attention;
pub mod calibrate;
pub mod gemm;
pub mod gpu;
pub mod kv_evict;
pub mod measure;
pub mod numeric;
pub mod predict;
pub mod report;
pub mod roofline;
pub mod stream;
pub mod suite;

use suite::Suite;

/// Every suite, in the order `roofbench run` runs them.
pub fn suites() -> Vec<&'static dyn Suite> {
    vec![
        &stream::StreamSuite,
        &attention::AttentionSuite,
        &kv_evict::KvEvictSuite,
        &gemm::GemmSuite,
    ]
}

pub fn find_suite(name: &str) -> Option<&'static dyn Suite> {
    suites().into_iter().find(|s| s.name() == name)
}
