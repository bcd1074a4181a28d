//! GPU tests of the stream suite and the harness (run on a GPU: `cargo test -- --ignored`).
//! Each kernel runs on fresh random inputs, including odd sizes, into NaN/0xffffffff-poisoned
//! outputs, and is compared with its CPU reference.

use super::common;

use common::gpu;
use roofbench::gpu::GpuError;
use roofbench::measure::{Harness, MeasureConfig, Mode};
use roofbench::stream::{StreamCase, StreamOp, StreamSuite};
use roofbench::suite::{Case, Suite};

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_stream_kernel_matches_the_cpu_on_odd_and_large_sizes() {
    let gpu = gpu();
    let cases = || {
        let mut cases = StreamSuite.verify_cases();
        // Sizes around the vector tail and one grid-stride wrap: n % 4 in {1, 2, 3}, and a size
        // just above SMs x 2048 threads x 4 lanes x unroll 4.
        for elements in [1usize, 2, 5, 131, 1 << 22 | 3] {
            for op in StreamOp::ALL {
                cases.push(Box::new(StreamCase { op, elements }) as Box<dyn Case>);
            }
        }
        cases
    };
    // Twice, fresh inputs and poison each time: a race would show as a result that moves.
    for _ in 0..2 {
        common::assert_all_verify(&gpu, &StreamSuite, cases());
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn unknown_kernels_are_errors_not_panics() {
    let gpu = gpu();
    assert!(matches!(
        gpu.kernel_by_name("no_such_kernel"),
        Err(GpuError::UnknownKernel(_))
    ));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn harness_modes_time_a_copy_consistently() {
    let gpu = gpu();
    let case = StreamCase::new(StreamOp::Copy, 256 << 20).unwrap();
    let mut prepared = case.prepare(&gpu).unwrap();
    let mut harness = Harness::new(&gpu, MeasureConfig::quick()).unwrap();
    let mut time = |mode| {
        harness
            .measure(mode, &mut || prepared.launch(&gpu, 1))
            .unwrap()
    };
    let (cold, hot, graph) = (time(Mode::Cold), time(Mode::Hot), time(Mode::Graph));
    for t in [&cold, &hot, &graph] {
        assert!(t.summary.median > 0.0 && t.summary.samples >= 3);
        assert!(t.summary.p10 <= t.summary.median && t.summary.median <= t.summary.p90);
    }
    assert!(hot.launches_per_sample > 1 || hot.summary.median > 400.0);
    // 512 MB moved: far beyond L2, so all three modes see DRAM and agree within 15%.
    let ratio = cold.summary.median / graph.summary.median;
    assert!((0.85..1.3).contains(&ratio), "cold/graph = {ratio}");
    // Nothing moves data faster than the DRAM the driver describes (5% for clock reporting).
    let gbps = case.workload().gbps(cold.summary.median);
    assert!(
        gbps < gpu.info().dram_gbps() * 1.05,
        "{gbps} GB/s beats the DRAM ceiling"
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cold_mode_flushes_l2() {
    // A 4 MiB read fits in L2: hot it is served from L2, cold it must come from DRAM.
    let gpu = gpu();
    let case = StreamCase::new(StreamOp::Read, 4 << 20).unwrap();
    let mut prepared = case.prepare(&gpu).unwrap();
    let mut harness = Harness::new(&gpu, MeasureConfig::quick()).unwrap();
    let cold = harness
        .measure(Mode::Cold, &mut || prepared.launch(&gpu, 1))
        .unwrap();
    let hot = harness
        .measure(Mode::Graph, &mut || prepared.launch(&gpu, 1))
        .unwrap();
    assert!(
        cold.summary.median > hot.summary.median * 1.2,
        "cold {} µs vs hot {} µs: the flush did not evict L2",
        cold.summary.median,
        hot.summary.median
    );
}
