//! `cargo bench --bench stream`: the stream kernels and the driver's copy/fill under Criterion,
//! timed with CUDA events (hot: back-to-back launches, L2 not flushed). Without a GPU it says why
//! and exits 0. `roofbench run stream` is the full, cold-and-hot, results-writing version.

use criterion::{BenchmarkId, Criterion, Throughput};
use roofbench::gpu::Gpu;
use roofbench::measure::criterion::GpuTime;
use roofbench::stream::{StreamCase, StreamOp};
use roofbench::suite::size::format_bytes;
use roofbench::suite::Case;

const SIZES: [u64; 2] = [64 << 20, 1 << 30];

fn main() {
    let gpu = match Gpu::open(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("stream bench skipped: {e}");
            return;
        }
    };
    let mut criterion = Criterion::default()
        .with_measurement(GpuTime::new(&gpu))
        .configure_from_args();
    for op in StreamOp::ALL {
        let mut group = criterion.benchmark_group(format!("stream/{}", op.name()));
        for bytes in SIZES {
            let case = StreamCase::new(op, bytes).expect("built-in sizes are valid");
            if let Err(e) = gpu.ensure_free(&case.name(), case.device_bytes()) {
                println!("{}: skipped: {e}", case.name());
                continue;
            }
            let mut prepared = case.prepare(&gpu).expect("preparing stream inputs");
            group.throughput(Throughput::Bytes(case.workload().bytes));
            for (i, variant) in prepared.variants().to_vec().iter().enumerate() {
                if let Some(why) = &variant.unavailable {
                    println!("{}: skipped: {why}", variant.kernel);
                    continue;
                }
                group.bench_function(
                    BenchmarkId::new(&variant.kernel, format_bytes(bytes)),
                    |b| b.iter(|| prepared.launch(&gpu, i).expect("launch failed")),
                );
            }
        }
        group.finish();
    }
    criterion.final_summary();
}
