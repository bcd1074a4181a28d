//! GPU tests of paged decode attention against the f64 CPU reference (run with `-- --ignored`):
//! every axis of the kernels on fresh random data and on index-revealing data, NaN-poisoned
//! outputs, plus graph capture of the decode + merge pair.

use roofbench::attention::{AttentionConfig, AttentionSuite};
use roofbench::gpu::Gpu;
use roofbench::measure::{Harness, MeasureConfig, Mode};
use roofbench::suite::{Case, Suite};

fn gpu() -> Gpu {
    Gpu::open(0).expect("these tests need a CUDA GPU")
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_attention_kernel_matches_the_cpu_reference() {
    let gpu = gpu();
    let mut failures = Vec::new();
    for case in AttentionSuite.verify_cases() {
        let mut prepared = case.prepare(&gpu).expect("prepare");
        for (i, v) in prepared.variants().to_vec().iter().enumerate() {
            assert!(v.unavailable.is_none(), "{}: {:?}", v.kernel, v.unavailable);
            let check = prepared.verify(&gpu, i).expect("verify");
            if !check.passed {
                failures.push(format!("{} {}: {}", case.name(), v.kernel, check.detail));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
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
