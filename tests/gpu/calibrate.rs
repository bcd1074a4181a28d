//! GPU tests of `roofbench calibrate` and of the model against it (run with `-- --ignored`).

use roofbench::calibrate::{self, CalibrateOptions};
use roofbench::gpu::Gpu;
use roofbench::measure::{Harness, MeasureConfig, Mode};
use roofbench::roofline::{
    beats_measured_ceiling, Catalog, CeilingKind, MeasuredCeilings, Precision, Roofs,
};
use roofbench::stream::StreamSuite;
use roofbench::suite::Suite;

fn calibrated(gpu: &Gpu) -> MeasuredCeilings {
    let opts = CalibrateOptions {
        quick: true,
        measure: calibrate::quick_measure(),
    };
    calibrate::calibrate(gpu, &opts).expect("calibration runs")
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn calibration_kernels_verify_and_are_plausible() {
    let gpu = Gpu::open(0).expect("a CUDA GPU");
    let c = calibrated(&gpu);
    let unverified: Vec<_> = c
        .entries
        .iter()
        .filter(|e| e.skipped.is_none() && !e.verified)
        .map(|e| &e.name)
        .collect();
    assert!(
        unverified.is_empty(),
        "calibrations that computed the wrong result: {unverified:?}"
    );
    for name in [
        "hbm_read",
        "hbm_copy",
        "memcpy_dtod",
        "l2_read",
        "smem_read",
        "fp32_fma",
        "mma_bf16",
        "launch",
    ] {
        let e = c
            .entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(e.usable(), "{name} not measured: {:?}", e.skipped);
    }
    if gpu.info().compute_capability == (9, 0) {
        for name in ["wgmma_bf16", "wgmma_fp8", "wgmma_int8"] {
            assert!(
                c.entries.iter().any(|e| e.name == name && e.usable()),
                "{name} on Hopper"
            );
        }
    }
    // Plausibility against the spec sheet: no ceiling above 1.1x the datasheet, L2 above DRAM.
    let spec = Catalog::embedded().match_device(gpu.info());
    let dram = c.best(CeilingKind::Dram).unwrap().value;
    assert!(
        dram < spec.memory_bandwidth_gbps.value * 1.1,
        "{dram} GB/s beats the datasheet"
    );
    assert!(
        c.best(CeilingKind::L2).unwrap().value > dram,
        "L2 slower than DRAM"
    );
    for p in [Precision::Bf16, Precision::Fp8] {
        if let (Some(m), Some(s)) = (c.best(CeilingKind::Compute(p)), spec.peak_tflops(p)) {
            assert!(
                m.value < s * 1.1,
                "{p}: {} beats the datasheet {s}",
                m.value
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn no_kernel_beats_a_measured_ceiling() {
    // A measured ceiling is an upper bound: the stream kernels, re-timed after calibration,
    // must not exceed it (beyond the run-to-run tolerance).
    let gpu = Gpu::open(0).expect("a CUDA GPU");
    let c = calibrated(&gpu);
    let roofs = Roofs::new(&Catalog::embedded().match_device(gpu.info()), Some(&c));
    let mut harness = Harness::new(&gpu, MeasureConfig::quick()).unwrap();
    let mut beaten = Vec::new();
    for case in StreamSuite.default_cases(true) {
        let mut prepared = case.prepare(&gpu).unwrap();
        for (i, v) in prepared.variants().to_vec().iter().enumerate() {
            let t = harness
                .measure(Mode::Cold, &mut || prepared.launch(&gpu, i))
                .unwrap();
            let bound = roofs.primary.bound(&case.workload(), false).unwrap();
            if let Some(why) =
                beats_measured_ceiling(bound.percent(t.summary.median), &bound.limit.source)
            {
                beaten.push(format!("{} {}: {why}", case.name(), v.kernel));
            }
        }
    }
    assert!(beaten.is_empty(), "{beaten:#?}");
}
