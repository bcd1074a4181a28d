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

use suite::{AccuracyReport, Suite};

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

/// Every CPU accuracy report, in the order `roofbench accuracy` runs them.
pub fn accuracy_reports() -> Vec<&'static dyn AccuracyReport> {
    vec![
        &kv_evict::accuracy::KvEvictAccuracy,
        &gemm::accuracy::GemmAccuracy,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_names_are_unique_and_report_options_do_not_collide() {
        let names: Vec<_> = suites().iter().map(|s| s.name()).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "suites: {names:?}");
        // clap's debug assertions reject duplicate argument ids and flags.
        let cmd = accuracy_reports()
            .iter()
            .flat_map(|r| r.args())
            .fold(clap::Command::new("accuracy"), |c, a| c.arg(a));
        cmd.debug_assert();
        assert!(find_suite("gemm").is_some() && find_suite("nope").is_none());
    }
}
