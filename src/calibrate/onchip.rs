//! On-chip ceilings: FP32 FMA, shared memory, mma.sync and wgmma loops with no memory traffic
//! (kernels/roofline/), each output checked against a CPU replay of the kernel contract.

use anyhow::Result;
use rayon::prelude::*;

use super::{rate, BLOCK, TARGET_KERNEL_US};
use crate::gpu::{kernels, Buffer, Gpu, GpuResult, Kernel, KernelName};
use crate::measure::{Harness, Mode};
use crate::roofline::{CeilingKind, MeasuredCeiling, Precision};

/// What one iteration of a calibration kernel does, for the whole launch.
#[derive(Clone, Copy)]
enum PerIteration {
    Thread(f64),
    Warp(f64),
    Warpgroup(f64),
}

/// What `out[t]` must hold after `iters` iterations.
#[derive(Clone, Copy)]
pub(super) enum Expected {
    /// `coefficient * iters` in f32 (exact by construction of the kernel).
    F32Linear(f32),
    /// `coefficient * iters` in i32.
    I32Linear(i32),
    /// The FP32 FMA chains, replayed on the CPU.
    Fp32Fma,
    /// The shared-memory word sums, replayed on the CPU.
    SmemSum,
}

pub(super) struct KernelCeiling {
    pub(super) name: &'static str,
    pub(super) kernel: KernelName,
    pub(super) kind: CeilingKind,
    work: PerIteration,
    max_iters: u32,
    expected: Expected,
}

/// The on-chip calibrations (contract in the headers of kernels/roofline/*.cu).
pub(super) fn kernel_ceilings() -> Vec<KernelCeiling> {
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
            kernels::CALIB_SMEM_READ,
            SharedMemory,
            PerIteration::Thread(16.0),
            u32::MAX,
            SmemSum,
        ),
        k(
            "fp32_fma",
            kernels::CALIB_FP32_FMA,
            Compute(Fp32),
            PerIteration::Thread(16.0),
            u32::MAX,
            Fp32Fma,
        ),
        k(
            "mma_bf16",
            kernels::CALIB_MMA_BF16,
            Compute(Bf16),
            PerIteration::Warp(mma16),
            1 << 20,
            F32Linear(0.5),
        ),
        k(
            "mma_fp16",
            kernels::CALIB_MMA_FP16,
            Compute(Fp16),
            PerIteration::Warp(mma16),
            1 << 20,
            F32Linear(0.5),
        ),
        k(
            "mma_int8",
            kernels::CALIB_MMA_INT8,
            Compute(Int8),
            PerIteration::Warp(mma32),
            1 << 20,
            I32Linear(1024),
        ),
        k(
            "mma_fp8",
            kernels::CALIB_MMA_FP8,
            Compute(Fp8),
            PerIteration::Warp(mma32),
            1 << 20,
            F32Linear(16.0),
        ),
        k(
            "wgmma_bf16",
            kernels::CALIB_WGMMA_BF16,
            Compute(Bf16),
            PerIteration::Warpgroup(wgmma16),
            65536,
            F32Linear(8.0),
        ),
        k(
            "wgmma_fp8",
            kernels::CALIB_WGMMA_FP8,
            Compute(Fp8),
            PerIteration::Warpgroup(wgmma32),
            65536,
            F32Linear(256.0),
        ),
        k(
            "wgmma_int8",
            kernels::CALIB_WGMMA_INT8,
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

/// One launch of a calibration kernel with `iters` iterations into `out`.
pub(super) fn launch_calibration(
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

pub(super) fn kernel_ceiling(
    harness: &mut Harness<'_>,
    k: &KernelCeiling,
) -> Result<MeasuredCeiling> {
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
pub(super) fn check_output(words: &[u32], iters: u32, expected: Expected) -> Option<String> {
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
