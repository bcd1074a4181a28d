//! GPU tests of paged decode attention against the f64 CPU reference (run with `-- --ignored`):
//! every axis of the kernels on fresh random data and on index-revealing data, NaN-poisoned
//! outputs, plus graph capture of the decode + merge pair.

use roofbench::attention::{AttentionConfig, AttentionSuite};
use roofbench::gpu::Gpu;
use roofbench::measure::{Harness, MeasureConfig, Mode};
use roofbench::suite::{self, Case, Suite, VerifyOutcome};

fn gpu() -> Gpu {
    Gpu::open(0).expect("these tests need a CUDA GPU")
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_attention_kernel_matches_the_cpu_reference() {
    let gpu = gpu();
    let rows = suite::verify(&gpu, &[(&AttentionSuite, AttentionSuite.verify_cases())]);
    let bad: Vec<_> = rows
        .iter()
        .filter(|r| r.outcome != VerifyOutcome::Pass)
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn decode_is_graph_capturable_and_repeatable() {
    // The same inputs through a captured graph give the same, verified result.
    let gpu = gpu();
    let case = AttentionConfig::parse("b=4,ctx=3000,heads=32/8,d=128,splits=5").unwrap();
    let mut prepared = case.prepare(&gpu).unwrap();
    let mut harness = Harness::new(&gpu, MeasureConfig::quick()).unwrap();
    let timing = harness
        .measure(Mode::Graph, &mut || prepared.launch(&gpu, 0))
        .unwrap();
    assert!(timing.summary.median > 0.0);
    assert!(prepared.verify(&gpu, 0).unwrap().passed);
}
