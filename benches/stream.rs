//! `cargo bench --bench stream`: the stream kernels and the driver's copy/fill under Criterion,
//! timed with CUDA events (hot: back-to-back launches, L2 not flushed). Without a GPU it says why
//! and exits 0. `roofbench run stream` is the full, cold-and-hot, results-writing version.

use roofbench::stream::{StreamCase, StreamOp};
use roofbench::suite::Case;

fn main() {
    let cases: Vec<Box<dyn Case>> = [64u64 << 20, 1 << 30]
        .into_iter()
        .flat_map(|bytes| StreamOp::ALL.map(|op| StreamCase::new(op, bytes).expect("valid size")))
        .map(|c| Box::new(c) as Box<dyn Case>)
        .collect();
    roofbench::suite::bench_cases("stream", cases);
}
