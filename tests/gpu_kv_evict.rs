//! GPU tests of the eviction kernels against their CPU references (run with `-- --ignored`):
//! scores within the f32 bound, selections and compactions exact, block swaps and copies byte for
//! byte, on fresh random data with poisoned outputs; plus graph capture of a whole eviction step.

use roofbench::gpu::Gpu;
use roofbench::kv_evict::{EvictConfig, KvEvictSuite};
use roofbench::measure::{Harness, MeasureConfig, Mode};
use roofbench::suite::{self, Case, Suite, VerifyOutcome};

fn gpu() -> Gpu {
    Gpu::open(0).expect("these tests need a CUDA GPU")
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_eviction_kernel_matches_the_cpu_reference() {
    let gpu = gpu();
    let rows = suite::verify(&gpu, &[(&KvEvictSuite, KvEvictSuite.verify_cases())]);
    let bad: Vec<_> = rows
        .iter()
        .filter(|r| r.outcome != VerifyOutcome::Pass)
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn an_eviction_step_is_graph_capturable_and_repeatable() {
    let gpu = gpu();
    let case = EvictConfig::parse("op=evict,policy=snapkv,obs=16,b=4,ctx=3000,heads=32/8").unwrap();
    let mut prepared = case.prepare(&gpu).unwrap();
    let mut harness = Harness::new(&gpu, MeasureConfig::quick()).unwrap();
    let timing = harness
        .measure(Mode::Graph, &mut || prepared.launch(&gpu, 0))
        .unwrap();
    assert!(timing.summary.median > 0.0);
    let check = prepared.verify(&gpu, 0).unwrap();
    assert!(check.passed, "{}", check.detail);
}
