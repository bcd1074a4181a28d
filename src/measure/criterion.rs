//! A Criterion [`Measurement`] that reads GPU time from CUDA events, so `cargo bench` reports
//! device time. Criterion calls `start`, runs the routine `iters` times (each call only enqueues a
//! launch), then `end`, which records the end event and waits for it: the value is the GPU time of
//! the whole batch, like the harness's *hot* mode. L2 is not flushed; use `roofbench run --cold`
//! for cold numbers. The suites' `cargo bench` body (`suite::bench_cases`) uses it.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;

use crate::gpu::{Event, Gpu};

pub struct GpuTime<'g> {
    gpu: &'g Gpu,
}

impl<'g> GpuTime<'g> {
    pub fn new(gpu: &'g Gpu) -> Self {
        GpuTime { gpu }
    }

    fn recorded_event(&self) -> Event {
        let event = self.gpu.event().expect("cannot create a CUDA event");
        self.gpu.record(&event).expect("cannot record a CUDA event");
        event
    }
}

impl Measurement for GpuTime<'_> {
    type Intermediate = Event;
    /// Nanoseconds of GPU time.
    type Value = f64;

    fn start(&self) -> Event {
        self.recorded_event()
    }

    fn end(&self, start: Event) -> f64 {
        let end = self.recorded_event();
        start.elapsed_ms(&end).expect("CUDA event timing failed") * 1e6
    }

    fn add(&self, a: &f64, b: &f64) -> f64 {
        a + b
    }

    fn zero(&self) -> f64 {
        0.0
    }

    fn to_f64(&self, value: &f64) -> f64 {
        *value
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &GpuTimeFormatter
    }
}

/// Times in ns/µs/ms; throughput in decimal GB/s (or G elements/s), as the results files use.
pub struct GpuTimeFormatter;

impl ValueFormatter for GpuTimeFormatter {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical_ns {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e-3, "µs"),
            t if t < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (per_iter, unit) = match *throughput {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => (b as f64, "GB/s"),
            Throughput::ElementsAndBytes { bytes, .. } => (bytes as f64, "GB/s"),
            Throughput::Bits(b) => (b as f64, "Gbit/s"),
            Throughput::Elements(e) => (e as f64, "Gelem/s"),
        };
        // value is ns per iteration: units per ns = G units per s.
        values.iter_mut().for_each(|ns| *ns = per_iter / *ns);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_gpu_times_and_bandwidth() {
        let f = GpuTimeFormatter;
        let mut v = [2_500.0];
        assert_eq!(f.scale_values(2_500.0, &mut v), "µs");
        assert!((v[0] - 2.5).abs() < 1e-12);
        // 3 GB in 1 ms = 3000 GB/s.
        let mut t = [1e6];
        assert_eq!(
            f.scale_throughputs(1e6, &Throughput::Bytes(3_000_000_000), &mut t),
            "GB/s"
        );
        assert!((t[0] - 3000.0).abs() < 1e-9);
    }
}
