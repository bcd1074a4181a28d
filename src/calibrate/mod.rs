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
use rayon::prelude::*;

use crate::gpu::cublaslt::{LtGemm, LtPrecision};
use crate::gpu::{Buffer, Gpu, GpuResult, Kernel};
use crate::measure::{Harness, MeasureConfig, Mode, Timing};
use crate::report::now;
use crate::roofline::{CeilingKind, MeasuredCeiling, MeasuredCeilings, Precision};
use crate::stream::{StreamCase, StreamOp};
use crate::suite::{Case, Provider};

/// Every calibration kernel (the embedded-kernel test checks they are all built).
pub const KERNELS: [&str; 11] = [
    "calib_fp32_fma",
    "calib_smem_read",
    "calib_mma_bf16",
    "calib_mma_fp16",
    "calib_mma_int8",
    "calib_mma_fp8",
    "calib_wgmma_bf16",
    "calib_wgmma_fp8",
    "calib_wgmma_int8",
    "calib_empty",
    // The L2 flush of the harness reads with a stream kernel; listed for completeness.
    "stream_read_u32x4",
];

const BLOCK: u32 = 256;
/// Launch size the iteration count is scaled to: long enough that launch overhead and clock
/// ramps vanish, short enough for quick runs.
const TARGET_KERNEL_US: f64 = 2000.0;

pub struct CalibrateOptions {
    pub quick: bool,
    pub measure: MeasureConfig,
}

/// What one iteration of a calibration kernel does, for the whole launch.
#[derive(Clone, Copy)]
enum PerIteration {
    Thread(f64),
    Warp(f64),
    Warpgroup(f64),
}

/// What `out[t]` must hold after `iters` iterations.
#[derive(Clone, Copy)]
enum Expected {
    /// `coefficient * iters` in f32 (exact by construction of the kernel).
    F32Linear(f32),
    /// `coefficient * iters` in i32.
    I32Linear(i32),
    /// The FP32 FMA chains, replayed on the CPU.
    Fp32Fma,
    /// The shared-memory word sums, replayed on the CPU.
    SmemSum,
}

struct KernelCeiling {
    name: &'static str,
    kernel: &'static str,
    kind: CeilingKind,
    work: PerIteration,
    max_iters: u32,
    expected: Expected,
}

/// The on-chip calibrations (contract in the headers of kernels/roofline/*.cu).
fn kernel_ceilings() -> Vec<KernelCeiling> {
    use CeilingKind::{Compute, SharedMemory};
    use Expected::*;
    use Precision::*;
    let mma16 = 8.0 * 2.0 * 16.0 * 8.0 * 16.0;
    let mma32 = 8.0 * 2.0 * 16.0 * 8.0 * 32.0;
    let wgmma16 = 4.0 * 2.0 * 64.0 * 256.0 * 16.0;
    let wgmma32 = 4.0 * 2.0 * 64.0 * 256.0 * 32.0;
    let k = |name, kernel, kind, work, max_iters, expected| KernelCeiling {
        name,
        kernel,
        kind,
        work,
        max_iters,
        expected,
    };
    vec![
        k(
            "smem_read",
            "calib_smem_read",
            SharedMemory,
            PerIteration::Thread(16.0),
            u32::MAX,
            SmemSum,
        ),
        k(
            "fp32_fma",
            "calib_fp32_fma",
            Compute(Fp32),
            PerIteration::Thread(16.0),
            u32::MAX,
            Fp32Fma,
        ),
        k(
            "mma_bf16",
            "calib_mma_bf16",
            Compute(Bf16),
            PerIteration::Warp(mma16),
            1 << 20,
            F32Linear(0.5),
        ),
        k(
            "mma_fp16",
            "calib_mma_fp16",
            Compute(Fp16),
            PerIteration::Warp(mma16),
            1 << 20,
            F32Linear(0.5),
        ),
        k(
            "mma_int8",
            "calib_mma_int8",
            Compute(Int8),
            PerIteration::Warp(mma32),
            1 << 20,
            I32Linear(1024),
        ),
        k(
            "mma_fp8",
            "calib_mma_fp8",
            Compute(Fp8),
            PerIteration::Warp(mma32),
            1 << 20,
            F32Linear(16.0),
        ),
        k(
            "wgmma_bf16",
            "calib_wgmma_bf16",
            Compute(Bf16),
            PerIteration::Warpgroup(wgmma16),
            65536,
            F32Linear(8.0),
        ),
        k(
            "wgmma_fp8",
            "calib_wgmma_fp8",
            Compute(Fp8),
            PerIteration::Warpgroup(wgmma32),
            65536,
            F32Linear(256.0),
        ),
        k(
            "wgmma_int8",
            "calib_wgmma_int8",
            Compute(Int8),
            PerIteration::Warpgroup(wgmma32),
            65536,
            I32Linear(16384),
        ),
    ]
}

// Arguments of calib_fp32_fma: bounded chains (x -> 0.999x + 0.001 converges to 1).
const FMA_A: f32 = 0.999;
const FMA_B: f32 = 0.001;

fn unit(kind: CeilingKind) -> &'static str {
    match kind {
        CeilingKind::Compute(p) => p.unit(),
        CeilingKind::Launch => "µs",
        _ => "GB/s",
    }
}

fn skipped(name: &str, kind: CeilingKind, provider: &str, why: String) -> MeasuredCeiling {
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
fn rate(
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

/// The stream suite's kernels (best of the 4- and 16-byte variants, each verified) and the
/// driver's equivalent, on one size and mode.
fn stream_ceilings(
    harness: &mut Harness<'_>,
    op: StreamOp,
    bytes: u64,
    mode: Mode,
    kind: CeilingKind,
) -> Result<Vec<MeasuredCeiling>> {
    let gpu = harness.gpu();
    let prefix = if kind == CeilingKind::L2 { "l2" } else { "hbm" };
    let case = StreamCase::new(op, bytes)?;
    let name = format!("{prefix}_{}", op.name());
    if let Err(e) = gpu.ensure_free(&case.name(), case.device_bytes()) {
        return Ok(vec![skipped(&name, kind, "roofbench", e.to_string())]);
    }
    let mut prepared = case.prepare(gpu)?;
    let work = case.workload().bytes as f64;
    let mut ours: Option<MeasuredCeiling> = None;
    let mut found = Vec::new();
    for (i, v) in prepared.variants().to_vec().iter().enumerate() {
        if v.unavailable.is_some() {
            continue;
        }
        let verified = prepared.verify(gpu, i)?.passed;
        let timing = harness.measure(mode, &mut || prepared.launch(gpu, i))?;
        let method = format!("{} {} {}", v.kernel, case.name(), mode.as_str());
        match v.provider {
            Provider::Roofbench => {
                let c = rate(&name, kind, "roofbench", method, work, &timing, verified);
                if ours
                    .as_ref()
                    .is_none_or(|best| c.usable() && c.value > best.value)
                {
                    ours = Some(c);
                }
            }
            Provider::Driver => {
                let driver_name = if op == StreamOp::Copy {
                    "memcpy_dtod"
                } else {
                    "memset_d32"
                };
                found.push(rate(
                    driver_name,
                    kind,
                    "driver",
                    method,
                    work,
                    &timing,
                    verified,
                ));
            }
            // The stream suite has no library variants.
            Provider::CublasLt => {}
        }
    }
    found.insert(
        0,
        ours.unwrap_or_else(|| skipped(&name, kind, "roofbench", "no stream kernel ran".into())),
    );
    Ok(found)
}

/// One launch of a calibration kernel with `iters` iterations into `out`.
fn launch_calibration(
    gpu: &Gpu,
    kernel: &Kernel,
    grid: u32,
    out: &Buffer<u32>,
    iters: u32,
    expected: Expected,
) -> GpuResult<()> {
    let mut launch = gpu.launch(kernel);
    launch.buffer(out).value(&iters);
    if matches!(expected, Expected::Fp32Fma) {
        launch.value(&FMA_A).value(&FMA_B);
    }
    // SAFETY: (out, iters[, a, b]) per the kernel contract; `out` has one word per thread.
    unsafe { launch.run(grid, BLOCK, 0) }
}

fn kernel_ceiling(harness: &mut Harness<'_>, k: &KernelCeiling) -> Result<MeasuredCeiling> {
    let gpu = harness.gpu();
    let kernel = gpu.kernel(k.kernel)?;
    let grid = kernel.resident_grid(BLOCK, 0)?;
    let threads = u64::from(grid) * u64::from(BLOCK);
    // f32, i32 and u32 results are all 4-byte words; checked as their own type below.
    let out = gpu.alloc::<u32>(threads as usize)?;

    // Scale the iteration count so one launch takes about TARGET_KERNEL_US.
    let pilot = 256u32.min(k.max_iters);
    let (start, end) = (gpu.event()?, gpu.event()?);
    launch_calibration(gpu, &kernel, grid, &out, pilot, k.expected)?;
    gpu.record(&start)?;
    launch_calibration(gpu, &kernel, grid, &out, pilot, k.expected)?;
    gpu.record(&end)?;
    let pilot_us = start.elapsed_ms(&end)? * 1e3;
    let iters = ((f64::from(pilot) * TARGET_KERNEL_US / pilot_us.max(1.0)) as u64)
        .clamp(u64::from(pilot), u64::from(k.max_iters)) as u32;

    let mut out = out;
    gpu.memset_u32(&mut out, 0xffff_ffff)?;
    launch_calibration(gpu, &kernel, grid, &out, iters, k.expected)?;
    let words = gpu.download(&out)?;
    let mismatch = check_output(&words, iters, k.expected);

    let timing = harness.measure(Mode::Hot, &mut || {
        launch_calibration(gpu, &kernel, grid, &out, iters, k.expected)
    })?;
    let per_iter = match k.work {
        PerIteration::Thread(w) => w * threads as f64,
        PerIteration::Warp(w) => w * (threads / 32) as f64,
        PerIteration::Warpgroup(w) => w * (threads / 128) as f64,
    };
    let method = format!("{} grid {grid}x{BLOCK} iters {iters}", k.kernel);
    let mut c = rate(
        k.name,
        k.kind,
        "roofbench",
        method,
        per_iter * f64::from(iters),
        &timing,
        mismatch.is_none(),
    );
    if let Some(why) = mismatch {
        c.method = format!("{} (verification failed: {why})", c.method);
    }
    Ok(c)
}

/// `None` when every thread's word is what the kernel contract says.
fn check_output(words: &[u32], iters: u32, expected: Expected) -> Option<String> {
    let want: Box<dyn Fn(usize) -> u32 + Sync> = match expected {
        Expected::F32Linear(c) => {
            let v = (c * iters as f32).to_bits();
            Box::new(move |_| v)
        }
        Expected::I32Linear(c) => {
            let v = c.wrapping_mul(iters as i32) as u32;
            Box::new(move |_| v)
        }
        Expected::Fp32Fma => {
            let table: Vec<u32> = (0..1024)
                .into_par_iter()
                .map(|t| fma_chains(t, iters).to_bits())
                .collect();
            Box::new(move |t| table[t % 1024])
        }
        Expected::SmemSum => {
            let table: Vec<u32> = (0..BLOCK as usize)
                .map(|tid| smem_sum(tid, iters))
                .collect();
            Box::new(move |t| table[t % BLOCK as usize])
        }
    };
    let bad = words
        .par_iter()
        .enumerate()
        .find_first(|(t, &w)| w != want(*t))?;
    Some(format!(
        "thread {}: got {:#010x}, want {:#010x}",
        bad.0,
        bad.1,
        want(bad.0)
    ))
}

/// The CPU replay of calib_fp32_fma for global thread `t` (only `t % 1024` matters).
pub fn fma_chains(t: usize, iters: u32) -> f32 {
    let mut x: [f32; 8] =
        std::array::from_fn(|j| 0.5 + 0.0625 * j as f32 + (2f32).powi(-20) * (t % 1024) as f32);
    for _ in 0..iters {
        for xj in &mut x {
            *xj = xj.mul_add(FMA_A, FMA_B);
        }
    }
    x.iter().skip(1).fold(x[0], |acc, v| acc + v)
}

/// The CPU replay of calib_smem_read for thread `tid` of its block: the access pattern repeats
/// every 8 iterations, so it is 8 partial sums, not `iters` loads.
pub fn smem_sum(tid: usize, iters: u32) -> u32 {
    let vec_sum = |i: u32| -> u32 {
        let v = (tid + i as usize * BLOCK as usize) % 2048;
        (0..4).fold(0u32, |acc, lane| {
            acc.wrapping_add(((4 * v + lane) as u32).wrapping_mul(2_654_435_761))
        })
    };
    let cycle: u32 = (0..8).fold(0u32, |acc, i| acc.wrapping_add(vec_sum(i)));
    let partial: u32 = (0..iters % 8).fold(0u32, |acc, i| acc.wrapping_add(vec_sum(i)));
    cycle.wrapping_mul(iters / 8).wrapping_add(partial)
}

/// Launch overhead: µs per launch of an empty kernel, back to back, plain and from a graph.
fn launch_ceilings(harness: &mut Harness<'_>) -> Vec<MeasuredCeiling> {
    let gpu = harness.gpu();
    let mut found = Vec::new();
    for (name, mode) in [("launch", Mode::Hot), ("launch_graph", Mode::Graph)] {
        let result = gpu
            .kernel("calib_empty")
            .map_err(anyhow::Error::from)
            .and_then(|k| {
                let mut launch = || {
                    // SAFETY: calib_empty takes no arguments.
                    unsafe { gpu.launch(&k).run(1, 32, 0) }
                };
                Ok(harness.measure(mode, &mut launch)?)
            });
        found.push(match result {
            Ok(t) => MeasuredCeiling {
                name: name.into(),
                kind: CeilingKind::Launch,
                value: t.summary.median,
                unit: "µs".into(),
                provider: "roofbench".into(),
                method: format!(
                    "calib_empty <<<1, 32>>>, {} back-to-back per sample, {}",
                    t.launches_per_sample,
                    mode.as_str()
                ),
                verified: true,
                rel_ci: t.summary.rel_ci,
                skipped: None,
            },
            Err(e) => skipped(name, CeilingKind::Launch, "roofbench", e.to_string()),
        });
    }
    found
}

/// Host <-> device copies of `bytes`, pinned and pageable, each direction; verified by a round
/// trip of random data.
fn pcie_ceilings(harness: &mut Harness<'_>, bytes: usize) -> Vec<MeasuredCeiling> {
    let names = [
        "pcie_h2d_pinned",
        "pcie_d2h_pinned",
        "pcie_h2d_pageable",
        "pcie_d2h_pageable",
    ];
    match measure_pcie(harness, bytes) {
        Ok(found) => found,
        Err(e) => names
            .iter()
            .map(|n| skipped(n, CeilingKind::Pcie, "driver", e.to_string()))
            .collect(),
    }
}

fn measure_pcie(harness: &mut Harness<'_>, bytes: usize) -> Result<Vec<MeasuredCeiling>> {
    let gpu = harness.gpu();
    let words = bytes / 4;
    let data = crate::stream::reference::random_words(rand::random(), words);
    let mut pinned = gpu.alloc_pinned::<u32>(words)?;
    pinned.as_mut_slice()?.copy_from_slice(&data);
    let mut device = gpu.alloc::<u32>(words)?;
    let mut pageable = vec![0u32; words];

    // Round trip first: pinned -> device -> pageable must give the data back.
    gpu.copy_from_pinned(&pinned, &mut device)?;
    gpu.copy_to_pageable(&device, &mut pageable)?;
    let verified = pageable == data;

    let work = bytes as f64;
    let mut found = Vec::new();
    let mut time = |name: &str, launch: &mut dyn FnMut() -> GpuResult<()>| -> Result<()> {
        let timing = harness.measure(Mode::Hot, launch)?;
        found.push(rate(
            name,
            CeilingKind::Pcie,
            "driver",
            format!("{} MiB", bytes >> 20),
            work,
            &timing,
            verified,
        ));
        Ok(())
    };
    time("pcie_h2d_pinned", &mut || {
        gpu.copy_from_pinned(&pinned, &mut device)
    })?;
    let mut pinned_out = gpu.alloc_pinned::<u32>(words)?;
    time("pcie_d2h_pinned", &mut || {
        gpu.copy_to_pinned(&device, &mut pinned_out)
    })?;
    time("pcie_h2d_pageable", &mut || gpu.write(&mut device, &data))?;
    time("pcie_d2h_pageable", &mut || {
        gpu.copy_to_pageable(&device, &mut pageable)
    })?;
    Ok(found)
}

/// cuBLASLt GEMMs at `n`^3 in BF16, FP8 and INT8, each checked on sampled outputs.
fn cublaslt_ceilings(harness: &mut Harness<'_>, n: usize) -> Vec<MeasuredCeiling> {
    let plans = [
        (LtPrecision::Bf16, Precision::Bf16, "cublaslt_bf16"),
        (LtPrecision::Fp8E4m3, Precision::Fp8, "cublaslt_fp8"),
        (LtPrecision::Int8, Precision::Int8, "cublaslt_int8"),
    ];
    let lt = match harness.gpu().cublaslt() {
        Ok(lt) => lt,
        Err(e) => {
            return plans
                .iter()
                .map(|(_, p, name)| {
                    skipped(name, CeilingKind::Compute(*p), "cublaslt", e.to_string())
                })
                .collect();
        }
    };
    plans
        .iter()
        .map(|&(lp, p, name)| {
            let gemm = lt
                .plan(harness.gpu(), lp, n, n, n)
                .map_err(anyhow::Error::from);
            gemm.and_then(|g| cublaslt_ceiling(harness, g, p, name))
                .unwrap_or_else(|e| {
                    skipped(name, CeilingKind::Compute(p), "cublaslt", format!("{e:#}"))
                })
        })
        .collect()
}

fn cublaslt_ceiling(
    harness: &mut Harness<'_>,
    mut gemm: LtGemm,
    p: Precision,
    name: &str,
) -> Result<MeasuredCeiling> {
    let gpu = harness.gpu();
    let (m, n, k) = gemm.shape();
    let sizes = gemm.operand_bytes();
    let seed: u64 = rand::random();
    let (a_host, a_values) = gemm_operand(gemm.precision(), sizes.a, seed);
    let (b_host, b_values) = gemm_operand(gemm.precision(), sizes.b, seed ^ 0x5eed);
    let (a, b) = (gpu.upload(&a_host)?, gpu.upload(&b_host)?);
    let mut d = gpu.alloc::<u8>(sizes.d)?;
    gpu.memset_u32(&mut d, 0xffff_ffff)?;
    gemm.run(gpu, &a, &b, &mut d)?;
    let d_host = gpu.download(&d)?;
    let verified = check_gemm_samples(gemm.precision(), &a_values, &b_values, &d_host, (m, n, k));
    let timing = harness.measure(Mode::Hot, &mut || gemm.run(gpu, &a, &b, &mut d))?;
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    let method = format!("cublasLtMatmul {m}x{n}x{k} TN, {}", gemm.precision());
    let mut c = rate(
        name,
        CeilingKind::Compute(p),
        "cublaslt",
        method,
        flops,
        &timing,
        verified.is_ok(),
    );
    if let Err(why) = verified {
        c.method = format!("{} (verification failed: {why})", c.method);
    }
    Ok(c)
}

/// Random operand bytes for `p` and the values they encode: small integers and powers of two,
/// exact in every input format (no NaN encodings in FP8).
fn gemm_operand(p: LtPrecision, bytes: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
    let elements = bytes / p.input_bytes();
    let words = crate::stream::reference::random_words(seed, elements);
    let values: Vec<f32> = words
        .par_iter()
        .map(|w| ((w % 7) as f32 - 3.0) * if w & 8 != 0 { 0.5 } else { 1.0 })
        .collect();
    let encoded: Vec<u8> = match p {
        LtPrecision::Bf16 => values
            .par_iter()
            .flat_map_iter(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        LtPrecision::Fp8E4m3 => values
            .par_iter()
            .map(|v| float8::F8E4M3::from_f32(*v).to_bits())
            .collect(),
        LtPrecision::Int8 => values.par_iter().map(|v| (v.round() as i8) as u8).collect(),
    };
    let values = if p == LtPrecision::Int8 {
        values.iter().map(|v| v.round()).collect()
    } else {
        values
    };
    (encoded, values)
}

/// Checks 64 sampled outputs against f64 dot products. Operands are multiples of 0.5 up to 3, so
/// every product and partial sum is exact in f32 (|sum| <= 9k, far below 2^24 * 0.25): the only
/// error allowed is the final rounding to BF16, half an ulp of an 8-bit significand (2^-8
/// relative); INT8 is exact.
fn check_gemm_samples(
    p: LtPrecision,
    a: &[f32],
    b: &[f32],
    d: &[u8],
    (m, n, k): (usize, usize, usize),
) -> Result<(), String> {
    for s in 0..64usize {
        let (i, j) = ((s * 7919) % m, (s * 104_729) % n);
        // a is k x m column-major: A[i][kk] at i*k + kk; b is k x n column-major: B[kk][j] at j*k + kk.
        let want: f64 = (0..k)
            .map(|kk| f64::from(a[i * k + kk]) * f64::from(b[j * k + kk]))
            .sum();
        let idx = j * m + i; // d is m x n column-major
        let got = match p {
            LtPrecision::Int8 => f64::from(i32::from_le_bytes(
                d[4 * idx..4 * idx + 4].try_into().unwrap_or_default(),
            )),
            _ => f64::from(half::bf16::from_le_bytes([d[2 * idx], d[2 * idx + 1]]).to_f32()),
        };
        let tolerance = if p == LtPrecision::Int8 {
            0.0
        } else {
            want.abs() * 2f64.powi(-8)
        };
        if (got - want).abs() > tolerance || got.is_nan() {
            return Err(format!("D[{i}][{j}] = {got}, want {want}"));
        }
    }
    Ok(())
}

/// The calibration table: each ceiling, its spec counterpart and the ratio. Compute ceilings are
/// also compared with the spec peak scaled to the SM clock measured during calibration (the
/// datasheet peak assumes its own clock: SMs x FLOPs/clock/SM x clock).
pub fn ceilings_table(
    c: &MeasuredCeilings,
    spec: &crate::roofline::GpuSpec,
    device: &crate::gpu::DeviceInfo,
) -> comfy_table::Table {
    let mut t = crate::report::table([
        "ceiling",
        "provider",
        "value",
        "unit",
        "spec",
        "× spec",
        "× spec@clock",
        "±ci %",
        "verified",
        "method / why skipped",
    ]);
    let per_clock = crate::roofline::spec::flops_per_sm_per_clock(device.compute_capability);
    for e in &c.entries {
        let spec_value = match e.kind {
            CeilingKind::Dram => Some(spec.memory_bandwidth_gbps.value),
            CeilingKind::Pcie => spec.pcie_gbps.as_ref().map(|p| p.value / 2.0), // one direction
            CeilingKind::Compute(p) => spec.peak_tflops(p),
            _ => None,
        };
        let at_clock = match (e.kind, c.sm_clock_mhz) {
            (CeilingKind::Compute(p), Some(mhz)) => per_clock
                .iter()
                .find(|(q, _)| *q == p)
                .map(|(_, rate)| f64::from(device.sms) * rate * f64::from(mhz) * 1e6 / 1e12),
            _ => None,
        };
        let ratio = |s: Option<f64>| match (s, e.skipped.is_none()) {
            (Some(s), true) => format!("{:.3}", e.value / s),
            _ => "-".into(),
        };
        let value = if e.skipped.is_some() {
            "-".into()
        } else {
            format!("{:.1}", e.value)
        };
        t.add_row(vec![
            e.name.clone(),
            e.provider.clone(),
            value,
            e.unit.clone(),
            spec_value.map_or("-".into(), |s| format!("{s:.0}")),
            ratio(spec_value),
            ratio(at_clock),
            format!("{:.2}", e.rel_ci * 100.0),
            if e.skipped.is_some() {
                "skipped"
            } else if e.verified {
                "yes"
            } else {
                "NO"
            }
            .into(),
            e.skipped.clone().unwrap_or_else(|| e.method.clone()),
        ]);
    }
    t
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
    use super::*;

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
