//! The body of every `cargo bench` entry point (benches/*.rs): a suite's cases timed by Criterion
//! with the GPU-time measurement of [`crate::measure::criterion`].

use criterion::{BenchmarkId, Criterion, Throughput};

use super::Case;
use crate::gpu::Gpu;
use crate::measure::criterion::GpuTime;

/// The body of a `cargo bench` entry point: opens GPU 0 (or prints why the bench is skipped and
/// returns), then benchmarks every available variant of `cases` under `group`, with the case's
/// minimum bytes as throughput.
pub fn bench_cases(group_name: &str, cases: Vec<Box<dyn Case>>) {
    let gpu = match Gpu::open(0) {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("{group_name} bench skipped: {e}");
            return;
        }
    };
    let mut criterion = Criterion::default()
        .with_measurement(GpuTime::new(&gpu))
        .configure_from_args();
    let mut group = criterion.benchmark_group(group_name);
    for case in cases {
        if let Err(e) = gpu.ensure_free(&case.name(), case.device_bytes()) {
            println!("{}: skipped: {e}", case.name());
            continue;
        }
        let mut prepared = match case.prepare(&gpu) {
            Ok(p) => p,
            Err(e) => {
                println!("{}: skipped: {e:#}", case.name());
                continue;
            }
        };
        group.throughput(Throughput::Bytes(case.workload().bytes));
        for (i, variant) in prepared.variants().to_vec().iter().enumerate() {
            if let Some(why) = &variant.unavailable {
                println!("{} {}: skipped: {why}", case.name(), variant.kernel);
                continue;
            }
            group.bench_function(BenchmarkId::new(&variant.kernel, case.name()), |b| {
                b.iter(|| prepared.launch(&gpu, i).expect("launch failed"))
            });
        }
    }
    group.finish();
    criterion.final_summary();
}
