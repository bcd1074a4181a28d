//! GPU timing with CUDA events, in nvbench's two modes.
//!
//! - *cold*: before every sample the L2 is flushed (see [`L2Flush`]), then one launch sits
//!   between the event pair: what a kernel costs when its inputs come from DRAM.
//! - *hot*: a batch of back-to-back launches between one event pair (per-launch time = elapsed /
//!   batch), optionally replayed from a CUDA graph so launch overhead does not count: what a kernel
//!   costs in steady state, with L2-resident inputs staying resident.
//!
//! Warm-up first, then samples until the [`StopRule`] is met; clocks and throttle reasons are read
//! after warm-up and after sampling.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::stats::{summarize, Summary};
use super::stop::{StopReason, StopRule};
use crate::gpu::{kernels, Buffer, ClockSnapshot, Gpu, GpuError, GpuResult, Kernel, KernelName};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// L2 flushed before each sample, one launch per sample.
    Cold,
    /// Back-to-back launches between one event pair.
    Hot,
    /// Back-to-back launches replayed from a CUDA graph (no launch overhead).
    Graph,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Cold => "cold",
            Mode::Hot => "hot",
            Mode::Graph => "graph",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MeasureConfig {
    pub stop: StopRule,
    /// Warm-up: at least this many launches and this much wall time.
    pub warmup_launches: usize,
    pub warmup: Duration,
    /// Hot/graph modes batch launches until one sample takes about this long, so event
    /// resolution (about 0.5 µs) and launch jitter stay far below the measured time.
    pub hot_sample_us: f64,
    pub max_batch: usize,
    /// A case whose SM clock fell by more than this fraction during sampling is flagged.
    pub clock_drop_tolerance: f64,
}

impl Default for MeasureConfig {
    fn default() -> Self {
        MeasureConfig {
            stop: StopRule::default(),
            warmup_launches: 3,
            warmup: Duration::from_millis(50),
            hot_sample_us: 500.0,
            max_batch: 1000,
            clock_drop_tolerance: 0.03,
        }
    }
}

impl MeasureConfig {
    /// For `--quick`: looser precision and a smaller budget.
    pub fn quick() -> Self {
        let mut cfg = MeasureConfig::default();
        cfg.stop.target_rel_ci = 0.02;
        cfg.stop.budget = Duration::from_millis(500);
        cfg.stop.max_samples = 300;
        cfg.warmup = Duration::from_millis(10);
        cfg
    }
}

/// The timing of one (case, kernel, mode).
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub mode: Mode,
    pub launches_per_sample: usize,
    /// Microseconds per launch, one per sample, in sampling order.
    pub samples_us: Vec<f64>,
    pub summary: Summary,
    pub stop_reason: StopReason,
    pub clocks_before: Option<ClockSnapshot>,
    pub clocks_after: Option<ClockSnapshot>,
}

impl Timing {
    /// The SM clock dropped during sampling, or a throttle reason was active.
    pub fn clock_warning(&self, tolerance: f64) -> Option<String> {
        let (before, after) = (self.clocks_before.as_ref()?, self.clocks_after.as_ref()?);
        let mut why = Vec::new();
        if f64::from(after.sm_clock_mhz) < f64::from(before.sm_clock_mhz) * (1.0 - tolerance) {
            why.push(format!(
                "sm clock {}->{} MHz",
                before.sm_clock_mhz, after.sm_clock_mhz
            ));
        }
        for r in before
            .throttle_reasons
            .iter()
            .chain(&after.throttle_reasons)
        {
            if !why.contains(r) {
                why.push(r.clone());
            }
        }
        (!why.is_empty()).then(|| why.join(" "))
    }
}

/// Evicts the L2 between cold samples: writes a buffer of 2x L2 (the driver's memset), then reads
/// it back with the harness's own kernel (kernels/measure/l2_flush.cu). The read leaves only
/// *clean* lines behind; a write alone would leave dirty lines whose write-back then lands inside
/// the next timed launch. Without the read kernel there is no flush: [`L2Flush::new`] fails rather
/// than time cold samples that are not cold.
pub struct L2Flush {
    buffer: Buffer<u32>,
    read: Kernel,
    partials: Buffer<u64>,
    grid: u32,
    generation: u32,
}

/// Public for the embedded-kernel test.
pub const FLUSH_READ_KERNEL: KernelName = kernels::L2_FLUSH_READ;
const FLUSH_BLOCK: u32 = 256;

impl L2Flush {
    pub fn new(gpu: &Gpu) -> GpuResult<L2Flush> {
        let bytes = (2 * gpu.info().l2_bytes).max(8 << 20).next_multiple_of(16);
        let buffer = gpu.alloc::<u32>((bytes / 4) as usize)?;
        let read = gpu
            .kernel(FLUSH_READ_KERNEL)
            .map_err(|e| GpuError::NoL2Flush(Box::new(e)))?;
        let grid = read.resident_grid(FLUSH_BLOCK, 0)?;
        Ok(L2Flush {
            buffer,
            read,
            partials: gpu.alloc::<u64>(grid as usize)?,
            grid,
            generation: 0,
        })
    }

    pub fn bytes(&self) -> u64 {
        self.buffer.bytes()
    }

    pub fn run(&mut self, gpu: &Gpu) -> GpuResult<()> {
        self.generation = self.generation.wrapping_add(1);
        gpu.memset_u32(&mut self.buffer, self.generation)?;
        let vectors = self.buffer.len() as u64 / 4;
        // SAFETY: l2_flush_read(buffer: uint4*[vectors], n: size_t, partials: u64*[grid]); the
        // buffer holds a multiple of 16 bytes (2x L2 or 8 MiB) and partials one slot per block.
        unsafe {
            gpu.launch(&self.read)
                .buffer(&self.buffer)
                .value(&vectors)
                .buffer(&self.partials)
                .run(self.grid, FLUSH_BLOCK, 0)?;
        }
        Ok(())
    }
}

/// Times launches on one device.
pub struct Harness<'g> {
    gpu: &'g Gpu,
    flush: L2Flush,
    pub config: MeasureConfig,
}

impl<'g> Harness<'g> {
    pub fn new(gpu: &'g Gpu, config: MeasureConfig) -> GpuResult<Self> {
        Ok(Harness {
            gpu,
            flush: L2Flush::new(gpu)?,
            config,
        })
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Times `launch` (which enqueues one execution on the device stream) in `mode`.
    pub fn measure(
        &mut self,
        mode: Mode,
        launch: &mut dyn FnMut() -> GpuResult<()>,
    ) -> GpuResult<Timing> {
        let gpu = self.gpu;
        let (start, end) = (gpu.event()?, gpu.event()?);
        let time_once = |flush: Option<&mut L2Flush>, launch: &mut dyn FnMut() -> GpuResult<()>| {
            if let Some(f) = flush {
                f.run(gpu)?;
            }
            gpu.record(&start)?;
            launch()?;
            gpu.record(&end)?;
            Ok::<f64, crate::gpu::GpuError>(start.elapsed_ms(&end)? * 1e3)
        };

        // Warm-up: module load, clocks ramping up, caches of the driver.
        let warm_start = Instant::now();
        let mut single_us = f64::INFINITY;
        let mut n = 0;
        while n < self.config.warmup_launches || warm_start.elapsed() < self.config.warmup {
            let flush = (mode == Mode::Cold).then_some(&mut self.flush);
            single_us = single_us.min(time_once(flush, launch)?);
            n += 1;
            if n >= 10_000 {
                break;
            }
        }
        gpu.synchronize()?;

        let batch = match mode {
            Mode::Cold => 1,
            Mode::Hot | Mode::Graph => ((self.config.hot_sample_us / single_us.max(0.5)).ceil()
                as usize)
                .clamp(1, self.config.max_batch),
        };
        let graph = if mode == Mode::Graph {
            Some(gpu.capture(&mut || (0..batch).try_for_each(|_| launch()))?)
        } else {
            None
        };

        let clocks_before = gpu.telemetry().and_then(|t| t.snapshot());
        let mut samples = Vec::new();
        let sampling_start = Instant::now();
        let stop_reason = loop {
            let us = match (mode, &graph) {
                (Mode::Cold, _) => time_once(Some(&mut self.flush), launch)?,
                (_, Some(g)) => time_once(None, &mut || g.launch())? / batch as f64,
                _ => time_once(None, &mut || (0..batch).try_for_each(|_| launch()))? / batch as f64,
            };
            samples.push(us);
            if let Some(reason) = self.config.stop.check(&samples, sampling_start.elapsed()) {
                break reason;
            }
        };
        gpu.synchronize()?;
        let clocks_after = gpu.telemetry().and_then(|t| t.snapshot());
        Ok(Timing {
            mode,
            launches_per_sample: batch,
            summary: summarize(&samples, self.config.stop.confidence),
            samples_us: samples,
            stop_reason,
            clocks_before,
            clocks_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(sm: u32, reasons: &[&str]) -> ClockSnapshot {
        ClockSnapshot {
            sm_clock_mhz: sm,
            mem_clock_mhz: 2619,
            throttle_reasons: reasons.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn timing(before: ClockSnapshot, after: ClockSnapshot) -> Timing {
        Timing {
            mode: Mode::Cold,
            launches_per_sample: 1,
            samples_us: vec![1.0],
            summary: summarize(&[1.0], 0.95),
            stop_reason: StopReason::Converged,
            clocks_before: Some(before),
            clocks_after: Some(after),
        }
    }

    #[test]
    fn clock_drop_and_throttling_are_flagged() {
        let steady = timing(snapshot(1980, &[]), snapshot(1965, &[]));
        assert_eq!(steady.clock_warning(0.03), None);
        let dropped = timing(snapshot(1980, &[]), snapshot(1600, &[]));
        assert_eq!(
            dropped.clock_warning(0.03).as_deref(),
            Some("sm clock 1980->1600 MHz")
        );
        let capped = timing(snapshot(1980, &[]), snapshot(1980, &["sw_power_cap"]));
        assert_eq!(capped.clock_warning(0.03).as_deref(), Some("sw_power_cap"));
    }
}
