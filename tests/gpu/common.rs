//! What the GPU test harnesses share: the device, "every case of a suite verifies", and "a case
//! replays from a CUDA graph and still verifies".

// Each test binary compiles this module and uses its own subset of it.
#![allow(dead_code)]

use roofbench::gpu::Gpu;
use roofbench::measure::{Harness, MeasureConfig, Mode};
use roofbench::suite::{self, Case, Provider, Suite, VerifyOutcome};

pub fn gpu() -> Gpu {
    Gpu::open(0).expect("these tests need a CUDA GPU")
}

/// Verifies `cases` of `suite` (what `roofbench verify` runs) and fails with every case that did
/// not pass.
pub fn assert_all_verify(gpu: &Gpu, suite: &dyn Suite, cases: Vec<Box<dyn Case>>) {
    let rows = suite::verify(gpu, &[(suite, cases)]);
    let bad: Vec<_> = rows
        .iter()
        .filter(|r| r.outcome != VerifyOutcome::Pass)
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

/// Times variant 0 of `case` replayed from a CUDA graph (no host sync inside its launches), then
/// checks that the same prepared inputs still verify.
pub fn assert_graph_replays(gpu: &Gpu, case: &dyn Case) {
    let mut prepared = case.prepare(gpu).unwrap();
    let mut harness = Harness::new(gpu, MeasureConfig::quick()).unwrap();
    let timing = harness
        .measure(Mode::Graph, &mut || prepared.launch(gpu, 0))
        .unwrap();
    assert!(timing.summary.median > 0.0);
    let check = prepared.verify(gpu, 0).unwrap();
    assert!(check.passed, "{}", check.detail);
}

/// Like [`assert_all_verify`] where a case may offer variants this GPU cannot run (another
/// architecture's kernels, a library without the operation): none may fail, and every case must
/// pass at least one roofbench variant.
pub fn assert_none_fail(gpu: &Gpu, suite: &dyn Suite, cases: Vec<Box<dyn Case>>) {
    let rows = suite::verify(gpu, &[(suite, cases)]);
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| r.outcome == VerifyOutcome::Fail)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let mut cases: Vec<&str> = rows.iter().map(|r| r.case.as_str()).collect();
    cases.dedup();
    for case in cases {
        assert!(
            rows.iter().any(|r| r.case == case
                && r.provider == Some(Provider::Roofbench)
                && r.outcome == VerifyOutcome::Pass),
            "{case}: no roofbench variant ran"
        );
    }
}
