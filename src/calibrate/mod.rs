//! `roofbench calibrate`: the ceilings of the machine itself, each verified, stored in
//! `results/<gpu-slug>/ceilings.json` for later runs on that GPU.
//!
//! - DRAM: the stream suite's read/write/copy kernels at 1 GiB (cold), and the driver's
//!   cuMemcpyDtoD / cuMemsetD32 in the same run; L2: a hot read of a quarter of the L2.
//! - On-chip: shared-memory bandwidth, FP32 FMA, `mma.sync` (BF16, FP16, INT8; FP8 on sm_89+)
//!   and `wgmma` (BF16, FP8, INT8; sm_90a) loops with no memory traffic (kernels/roofline/).
//! - Vendor: cuBLASLt BF16, FP8 (E4M3, per-tensor scales) and INT8 GEMMs at large squares.
//! - Host link: pinned and pageable copies both ways; launch overhead (plain and graph).
//!
//! A step that cannot run here (no wgmma on this GPU, no cuBLASLt) is recorded as skipped with
//! its reason; the others go on.

use std::time::Duration;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::gpu::{kernels, Gpu, KernelName};
use crate::measure::{Harness, MeasureConfig, Mode, Timing};
use crate::report::now;
use crate::roofline::{CeilingKind, MeasuredCeiling, MeasuredCeilings};
use crate::stream::StreamOp;
use host::{launch_ceilings, pcie_ceilings};
use memory::stream_ceilings;
use onchip::{kernel_ceiling, kernel_ceilings};
use vendor::cublaslt_ceilings;

mod host;
mod memory;
mod onchip;
mod table;
mod vendor;

pub use onchip::{fma_chains, smem_sum};
pub use table::ceilings_table;

/// Every calibration kernel (the embedded-kernel test checks they are all built).
pub const KERNELS: [KernelName; 10] = [
    kernels::CALIB_FP32_FMA,
    kernels::CALIB_SMEM_READ,
    kernels::CALIB_MMA_BF16,
    kernels::CALIB_MMA_FP16,
    kernels::CALIB_MMA_INT8,
    kernels::CALIB_MMA_FP8,
    kernels::CALIB_WGMMA_BF16,
    kernels::CALIB_WGMMA_FP8,
    kernels::CALIB_WGMMA_INT8,
    kernels::CALIB_EMPTY,
];

const BLOCK: u32 = 256;
/// Launch size the iteration count is scaled to: long enough that launch overhead and clock
/// ramps vanish, short enough for quick runs.
const TARGET_KERNEL_US: f64 = 2000.0;

pub struct CalibrateOptions {
    pub quick: bool,
    pub measure: MeasureConfig,
}

pub(super) fn unit(kind: CeilingKind) -> &'static str {
    match kind {
        CeilingKind::Compute(p) => p.unit(),
        CeilingKind::Launch => "µs",
        _ => "GB/s",
    }
}

pub(super) fn skipped(
    name: &str,
    kind: CeilingKind,
    provider: &str,
    why: String,
) -> MeasuredCeiling {
    MeasuredCeiling {
        name: name.into(),
        kind,
        value: 0.0,
        unit: unit(kind).into(),
        provider: provider.into(),
        method: String::new(),
        verified: false,
        rel_ci: 0.0,
        skipped: Some(why),
    }
}

/// A rate ceiling from a timing: `work` (bytes or FLOPs per launch) / median.
pub(super) fn rate(
    name: &str,
    kind: CeilingKind,
    provider: &str,
    method: String,
    work: f64,
    timing: &Timing,
    verified: bool,
) -> MeasuredCeiling {
    let seconds = timing.summary.median * 1e-6;
    let scale = if matches!(kind, CeilingKind::Compute(_)) {
        1e12
    } else {
        1e9
    };
    MeasuredCeiling {
        name: name.into(),
        kind,
        value: work / seconds / scale,
        unit: unit(kind).into(),
        provider: provider.into(),
        method,
        verified,
        rel_ci: timing.summary.rel_ci,
        skipped: None,
    }
}

/// Runs every calibration on `gpu`.
pub fn calibrate(gpu: &Gpu, opts: &CalibrateOptions) -> Result<MeasuredCeilings> {
    let mut harness = Harness::new(gpu, opts.measure.clone())?;
    let steps = 5 + kernel_ceilings().len() + 3;
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} calibrations [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut entries = Vec::new();
    let mut step = |msg: &str, found: Vec<MeasuredCeiling>| {
        bar.set_message(msg.to_string());
        entries.extend(found);
        bar.inc(1);
    };

    let dram_bytes: u64 = if opts.quick { 256 << 20 } else { 1 << 30 };
    for op in [StreamOp::Read, StreamOp::Write, StreamOp::Copy] {
        step(
            op.name(),
            stream_ceilings(&mut harness, op, dram_bytes, Mode::Cold, CeilingKind::Dram)?,
        );
    }
    // A quarter of the L2 keeps the whole working set resident in a hot loop.
    let l2_bytes = (gpu.info().l2_bytes / 4).max(1 << 20) & !15;
    step(
        "l2",
        stream_ceilings(
            &mut harness,
            StreamOp::Read,
            l2_bytes,
            Mode::Graph,
            CeilingKind::L2,
        )?,
    );
    for k in kernel_ceilings() {
        let found = kernel_ceiling(&mut harness, &k)
            .unwrap_or_else(|e| skipped(k.name, k.kind, "roofbench", e.to_string()));
        step(k.name, vec![found]);
    }
    step("launch", launch_ceilings(&mut harness));
    step(
        "pcie",
        pcie_ceilings(&mut harness, if opts.quick { 64 << 20 } else { 256 << 20 }),
    );
    let gemm_n = if opts.quick { 4096 } else { 8192 };
    step("cublaslt", cublaslt_ceilings(&mut harness, gemm_n));
    bar.finish_and_clear();

    let clocks = gpu.telemetry().and_then(|t| t.snapshot());
    Ok(MeasuredCeilings {
        gpu: gpu.info().name.clone(),
        measured_at: now(),
        commit: crate::gpu::embedded::GIT_COMMIT.into(),
        command: crate::report::command_line(),
        sm_clock_mhz: clocks.as_ref().map(|c| c.sm_clock_mhz),
        mem_clock_mhz: clocks.as_ref().map(|c| c.mem_clock_mhz),
        entries,
    })
}

/// A calibration where nothing verified is an error, not a ceilings file.
pub fn ensure_any_usable(c: &MeasuredCeilings) -> Result<()> {
    if c.entries.iter().any(MeasuredCeiling::usable) {
        Ok(())
    } else {
        bail!("no calibration produced a verified ceiling")
    }
}

/// Default for `--quick`.
pub fn quick_measure() -> MeasureConfig {
    let mut m = MeasureConfig::quick();
    m.stop.budget = Duration::from_millis(300);
    m
}

#[cfg(test)]
mod tests {
    use super::onchip::*;
    use super::vendor::*;
    use super::*;
    use crate::gpu::cublaslt::LtPrecision;

    #[test]
    fn fp32_replay_is_deterministic_and_bounded() {
        let x = fma_chains(5, 1000);
        assert_eq!(
            x.to_bits(),
            fma_chains(1029, 1000).to_bits(),
            "depends on t % 1024 only"
        );
        assert!(
            x.is_finite() && x > 7.0 && x < 9.0,
            "8 chains converging to 1: {x}"
        );
        assert_ne!(fma_chains(5, 1000).to_bits(), fma_chains(6, 1000).to_bits());
    }

    #[test]
    fn smem_replay_matches_the_direct_loop() {
        let direct = |tid: usize, iters: u32| -> u32 {
            let mut acc = 0u32;
            for i in 0..iters as usize {
                let v = (tid + i * 256) % 2048;
                for lane in 0..4 {
                    acc = acc.wrapping_add(((4 * v + lane) as u32).wrapping_mul(2_654_435_761));
                }
            }
            acc
        };
        for (tid, iters) in [(0, 0), (3, 7), (255, 8), (17, 1001)] {
            assert_eq!(
                smem_sum(tid, iters),
                direct(tid, iters),
                "tid {tid} iters {iters}"
            );
        }
    }

    #[test]
    fn output_checks_catch_unwritten_threads() {
        let iters = 1000;
        let good = vec![(0.5f32 * iters as f32).to_bits(); 512];
        assert!(check_output(&good, iters, Expected::F32Linear(0.5)).is_none());
        let mut bad = good.clone();
        bad[300] = 0xffff_ffff;
        assert!(check_output(&bad, iters, Expected::F32Linear(0.5))
            .unwrap()
            .contains("thread 300"));
        let ints = vec![(1024 * iters as i32) as u32; 64];
        assert!(check_output(&ints, iters, Expected::I32Linear(1024)).is_none());
    }

    #[test]
    fn fp8_operands_are_exact() {
        let (bytes, values) = gemm_operand(LtPrecision::Fp8E4m3, 4096, 3);
        let decoded = crate::numeric::Element::E4m3.decode_all(&bytes);
        assert_eq!(decoded, values, "every operand value is exact in e4m3");
    }

    #[test]
    fn gemm_sample_check_accepts_exact_and_rejects_wrong() {
        let (m, n, k) = (8, 4, 16);
        let (a_bytes, a) = gemm_operand(LtPrecision::Int8, m * k, 1);
        let (_, b) = gemm_operand(LtPrecision::Int8, k * n, 2);
        assert_eq!(a_bytes.len(), m * k);
        let mut d = vec![0u8; 4 * m * n];
        for j in 0..n {
            for i in 0..m {
                let v: f32 = (0..k).map(|kk| a[i * k + kk] * b[j * k + kk]).sum();
                d[4 * (j * m + i)..4 * (j * m + i) + 4].copy_from_slice(&(v as i32).to_le_bytes());
            }
        }
        assert!(check_gemm_samples(LtPrecision::Int8, &a, &b, &d, (m, n, k)).is_ok());
        d[0] ^= 1;
        assert!(check_gemm_samples(LtPrecision::Int8, &a, &b, &d, (m, n, k)).is_err());
    }

    #[test]
    fn every_kernel_ceiling_is_in_the_kernel_list() {
        for k in kernel_ceilings() {
            assert!(KERNELS.contains(&k.kernel), "{}", k.kernel);
        }
    }
}
