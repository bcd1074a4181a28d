//! The `small_m` path: small-M GEMMs (M = 1..64, decode) that read the weights once at memory
//! bandwidth, launched from `kernels/gemm/small_m.cu` (its header comment gives the design).
//!
//! - One kernel per input kind and M bucket (8, 16, 32 or 64 tokens: the smallest bucket ≥ M):
//!   `gemm_small_m_bf16_m*`, `gemm_small_m_{e4m3,e5m2,s8}_m*` (W8A8) and
//!   `gemm_small_m_w{e4m3,e5m2,s8}_abf16_m*` (weight-only).
//! - A CTA (256 threads) owns 64 rows of W; its two warp rows split each iteration's K chunk.
//!   `gridDim = (ceil(N / 64), S)`: when N / 64 CTAs do not fill the device, K is split across S
//!   CTAs too (see [`choose_splits`]), with a f32 workspace `[S][M][N]` and one counter per 64-row
//!   column that this launch allocates in `prepare()`.
//! - Arguments: the common tail of [`super`] plus `float* workspace, unsigned* counters` (null
//!   when S = 1).

use anyhow::{ensure, Result};

use super::{Arch, GemmLaunch, GemmPath, Inputs, Operands, Problem, ScaleMode};
use crate::gemm::quant::QuantFormat;
use crate::gpu::{Buffer, Gpu, GpuResult, Kernel};

/// Threads per CTA (8 warps: 4 along N x 2 along K).
pub const THREADS: u32 = 256;
/// Rows of W (output channels) per CTA.
pub const ROWS_PER_CTA: usize = 64;
/// Warps along K inside a CTA.
const WARPS_K: usize = 2;
/// The M buckets, one kernel each (multiples of the 8-token mma fragment).
pub const BUCKETS: [usize; 4] = [8, 16, 32, 64];
/// The largest M the path computes.
pub const MAX_M: usize = 64;
/// Least K iterations per split, so each CTA's pipeline (one iteration of loads ahead) is not all
/// prologue.
const MIN_ITERS_PER_SPLIT: usize = 2;
/// Most K splits across CTAs.
const MAX_SPLITS: usize = 16;

/// The kernel name prefix of an input kind (the format's code for the kernels: int8 is `s8`).
fn kind_name(inputs: Inputs) -> String {
    fn code(f: QuantFormat) -> &'static str {
        match f {
            QuantFormat::E4m3 => "e4m3",
            QuantFormat::E5m2 => "e5m2",
            QuantFormat::Int8 => "s8",
        }
    }
    match inputs {
        Inputs::Bf16 => "bf16".into(),
        Inputs::Quantized(f) => code(f).into(),
        Inputs::WeightOnly(f) => format!("w{}_abf16", code(f)),
    }
}

/// The kernel of `inputs` for bucket `mb`.
pub fn kernel_name(inputs: Inputs, mb: usize) -> String {
    format!("gemm_small_m_{}_m{mb}", kind_name(inputs))
}

/// The smallest bucket holding `m` tokens (None above [`MAX_M`]).
pub fn bucket(m: usize) -> Option<usize> {
    BUCKETS.iter().copied().find(|&b| b >= m)
}

/// Per-iteration geometry of one kernel, as `Geometry<Kind, MB>` in the kernel computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// M bucket.
    pub mb: usize,
    /// K elements one warp streams per iteration.
    pub k_per_warp: usize,
    /// K elements a CTA covers per iteration (both warp rows).
    pub k_per_cta: usize,
    /// Dynamic shared memory: two buffers of the staged X chunk.
    pub shared_bytes: usize,
}

impl Geometry {
    pub fn of(inputs: Inputs, mb: usize) -> Geometry {
        let (x_bytes, w_bytes) = inputs.element_bytes();
        let lane_elements = 16 / w_bytes; // W elements per 16-byte lane vector
                                          // Vectors per row per lane per iteration: 2 for weight-only at M 64 (shared memory).
        let vpi = if w_bytes == 1 && x_bytes == 2 && mb == 64 {
            2
        } else {
            4
        };
        let k_per_warp = vpi * 4 * lane_elements;
        let k_per_cta = WARPS_K * k_per_warp;
        let lane_x_bytes = lane_elements * x_bytes;
        let pad = if lane_x_bytes == 16 { 64 } else { 16 };
        let row_bytes = k_per_cta * x_bytes + pad;
        Geometry {
            mb,
            k_per_warp,
            k_per_cta,
            shared_bytes: 2 * mb * row_bytes,
        }
    }
}

/// Most dynamic shared memory per block on `arch` (sm_86/89/120 have 99 KB; the others more).
fn shared_limit(arch: Arch) -> usize {
    match arch {
        (8, 0) => 163 * 1024,
        (9, 0) | (10, _) => 227 * 1024,
        _ => 99 * 1024,
    }
}

/// The K split across CTAs for `ctas_n` CTAs along N, `iters` K iterations in all, on a device
/// with `slots` resident CTAs (SMs x CTAs per SM).
///
/// Every CTA does the same work, so time goes as the number of waves, `ceil(ctas / slots)`,
/// times the work of one CTA, `1 / S`; splitting adds a workspace round trip of `8 S M N`
/// bytes (written, read back) against the `N K w_bytes` bytes of W. We take the S in
/// `1..=min(MAX_SPLITS, iters / MIN_ITERS_PER_SPLIT)` that minimises
/// `ceil(ctas_n S / slots) / S x (1 + 8 S M / (K w_bytes))` (ties: the smallest S), then even
/// out the iterations so no split is empty. Examples (132 SMs, 2 CTAs per SM): N = 4096 (64
/// CTAs) splits 4 ways into one wave of 256; N = 28672 (448 CTAs, 1.7 waves unsplit) splits 4
/// ways for a 6.8-wave grid with a smaller tail.
pub fn choose_splits(
    ctas_n: usize,
    iters: usize,
    m: usize,
    k: usize,
    w_bytes: usize,
    slots: usize,
) -> usize {
    let slots = slots.max(1);
    let most = (iters / MIN_ITERS_PER_SPLIT).clamp(1, MAX_SPLITS);
    let w_row_bytes = (k * w_bytes).max(1) as f64;
    let cost = |s: usize| {
        let waves = (ctas_n * s).div_ceil(slots) as f64;
        waves / s as f64 * (1.0 + 8.0 * (s * m) as f64 / w_row_bytes)
    };
    let mut best = 1;
    for s in 2..=most {
        if cost(s) < cost(best) * (1.0 - 1e-9) {
            best = s;
        }
    }
    // Even out: the fewest splits with the same iterations per split.
    let per = iters.div_ceil(best).max(1);
    iters.div_ceil(per).max(1)
}

/// The launch geometry of one problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub geometry: Geometry,
    /// CTAs along N (`ceil(N / 64)`).
    pub ctas_n: usize,
    /// K splits across CTAs (gridDim.y).
    pub splits: usize,
    /// K iterations in all (`ceil(K / k_per_cta)`).
    pub iters: usize,
}

impl Plan {
    /// `problem` must be supported (M ≤ 64). `slots`: resident CTAs on the device.
    pub fn new(problem: &Problem, slots: usize) -> Plan {
        let mb = bucket(problem.m).unwrap_or(MAX_M);
        let geometry = Geometry::of(problem.inputs, mb);
        let ctas_n = problem.n.div_ceil(ROWS_PER_CTA);
        let iters = problem.k.div_ceil(geometry.k_per_cta);
        let (_, w_bytes) = problem.inputs.element_bytes();
        let splits = choose_splits(ctas_n, iters, problem.m, problem.k, w_bytes, slots);
        Plan {
            geometry,
            ctas_n,
            splits,
            iters,
        }
    }

    /// f32 workspace elements (`S x M x N`, none unsplit).
    pub fn workspace_len(&self, problem: &Problem) -> usize {
        if self.splits > 1 {
            self.splits * problem.m * problem.n
        } else {
            0
        }
    }
}

/// The `small_m` GEMM path.
pub struct SmallMPath;

impl GemmPath for SmallMPath {
    fn name(&self) -> &'static str {
        "small_m"
    }

    fn kernel_names(&self) -> Vec<String> {
        let mut kinds = vec![Inputs::Bf16];
        kinds.extend(QuantFormat::ALL.iter().map(|&f| Inputs::Quantized(f)));
        kinds.extend(QuantFormat::ALL.iter().map(|&f| Inputs::WeightOnly(f)));
        kinds
            .into_iter()
            .flat_map(|i| BUCKETS.iter().map(move |&mb| kernel_name(i, mb)))
            .collect()
    }

    fn supports(&self, problem: &Problem, arch: Arch) -> std::result::Result<(), String> {
        if arch < (8, 0) {
            return Err(format!(
                "the small_m path needs sm_80 or newer (mma.sync, cp.async); got sm_{}{}",
                arch.0, arch.1
            ));
        }
        if problem.m > MAX_M {
            return Err(format!(
                "the small_m path is for M ≤ {MAX_M} (decode); use wgmma/mma; got M = {}",
                problem.m
            ));
        }
        let (_, w_bytes) = problem.inputs.element_bytes();
        let multiple = 16 / w_bytes;
        if problem.k % multiple != 0 {
            return Err(format!(
                "K must be a multiple of {multiple} (rows of W are read in 16-byte vectors: \
                 K x {w_bytes} bytes must be a multiple of 16); got K = {}",
                problem.k
            ));
        }
        // The kernels compute element indices in int, up to one K iteration (≤ 512 elements)
        // past K and one 64-row CTA past N; byte offsets are 64-bit.
        let limit = i32::MAX as usize - 1024;
        if problem.k > limit || problem.n > limit {
            return Err(format!(
                "the small_m kernels index K and N with 32-bit ints: N and K must be at most \
                 {limit}; got N = {}, K = {}",
                problem.n, problem.k
            ));
        }
        if problem.inputs != Inputs::Bf16 && problem.scheme.is_none() {
            return Err(format!("{} inputs need a scaling scheme", problem.inputs));
        }
        let mb = bucket(problem.m).unwrap_or(MAX_M);
        let shared = Geometry::of(problem.inputs, mb).shared_bytes;
        if shared > shared_limit(arch) {
            return Err(format!(
                "{} needs {shared} bytes of shared memory per block, more than sm_{}{} has",
                kernel_name(problem.inputs, mb),
                arch.0,
                arch.1
            ));
        }
        Ok(())
    }

    fn prepare(&self, gpu: &Gpu, problem: &Problem) -> Result<Box<dyn GemmLaunch>> {
        let arch = gpu.info().compute_capability;
        self.supports(problem, arch)
            .map_err(|why| anyhow::anyhow!("small_m: {why}"))?;
        let mb = bucket(problem.m).unwrap_or(MAX_M);
        let kernel = gpu.kernel_by_name(&kernel_name(problem.inputs, mb))?;
        let shared = Geometry::of(problem.inputs, mb).shared_bytes as u32;
        kernel.allow_dynamic_shared(shared)?;
        let slots = kernel.resident_grid(THREADS, shared)? as usize;
        let plan = Plan::new(problem, slots);
        ensure!(
            plan.ctas_n <= i32::MAX as usize,
            "small_m: {} CTAs exceed the grid limit",
            plan.ctas_n
        );
        let (workspace, counters) = if plan.splits > 1 {
            let workspace = gpu.alloc::<f32>(plan.workspace_len(problem))?;
            let mut counters = gpu.alloc::<u32>(plan.ctas_n)?;
            gpu.memset_u32(&mut counters, 0)?;
            (Some(workspace), Some(counters))
        } else {
            (None, None)
        };
        Ok(Box::new(SmallMLaunch {
            problem: *problem,
            kernel,
            plan,
            slots,
            m: problem.m as i32,
            n: problem.n as i32,
            k: problem.k as i32,
            mode: problem.scale_mode() as i32,
            bias: problem.bias,
            workspace,
            counters,
            null: 0,
        }))
    }
}

/// The prepared launch of one problem.
pub struct SmallMLaunch {
    problem: Problem,
    kernel: Kernel,
    plan: Plan,
    slots: usize,
    m: i32,
    n: i32,
    k: i32,
    mode: i32,
    bias: bool,
    workspace: Option<Buffer<f32>>,
    counters: Option<Buffer<u32>>,
    /// A null pointer argument.
    null: u64,
}

impl GemmLaunch for SmallMLaunch {
    fn enqueue(&mut self, gpu: &Gpu, operands: &Operands) -> GpuResult<()> {
        if self.m == 0 || self.n == 0 {
            return Ok(()); // an empty Y
        }
        self.problem.check_operands(operands)?;
        let mut launch = gpu.launch(&self.kernel);
        launch
            .buffer(operands.x)
            .buffer(operands.w)
            .buffer(operands.y);
        let scaled = self.mode != ScaleMode::None as i32;
        match operands.scale_x {
            Some(s) if scaled => launch.buffer(s),
            _ => launch.value(&self.null),
        };
        match operands.scale_w {
            Some(s) if scaled => launch.buffer(s),
            _ => launch.value(&self.null),
        };
        match operands.bias {
            Some(b) if self.bias => launch.buffer(b),
            _ => launch.value(&self.null),
        };
        launch
            .value(&self.m)
            .value(&self.n)
            .value(&self.k)
            .value(&self.mode);
        match &self.workspace {
            Some(w) => launch.buffer(w),
            None => launch.value(&self.null),
        };
        match &self.counters {
            Some(c) => launch.buffer(c),
            None => launch.value(&self.null),
        };
        let grid = (self.plan.ctas_n as u32, self.plan.splits as u32, 1);
        // SAFETY: the kernel's parameters are (x, w, y, scale_x, scale_w, bias, m, n, k,
        // scale_mode, workspace, counters), pushed in that order. It reads X [m][k] and W [n][k]
        // (row-major, 16-byte aligned device allocations), writes Y [m][n] only in range, reads
        // the scales of `mode` in the layouts of gemm::quant and bias [n] when non-null; with
        // gridDim.y = splits > 1 it uses workspace [splits][m][n] and counters [gridDim.x],
        // both allocated with those lengths in prepare() (counters zeroed there, and reset to
        // zero by every launch).
        unsafe { launch.run_3d(grid, THREADS, self.plan.geometry.shared_bytes as u32) }
    }

    fn describe(&self) -> String {
        let p = &self.plan;
        let split = if p.splits > 1 {
            format!(" split-k {}", p.splits)
        } else {
            String::new()
        };
        format!(
            "small_m m{}{split}, {} CTAs of 256 ({} rows x {} K per iteration, {} slots)",
            p.geometry.mb,
            p.ctas_n * p.splits,
            ROWS_PER_CTA,
            p.geometry.k_per_cta,
            self.slots
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::quant::Scheme;

    fn problem(m: usize, n: usize, k: usize, inputs: Inputs) -> Problem {
        Problem {
            m,
            n,
            k,
            inputs,
            scheme: (inputs != Inputs::Bf16).then_some(Scheme::PerTokenPerChannel),
            bias: false,
        }
    }

    const H100: Arch = (9, 0);

    #[test]
    fn names_and_buckets() {
        let names = SmallMPath.kernel_names();
        assert_eq!(names.len(), 7 * 4);
        for name in [
            "gemm_small_m_bf16_m8",
            "gemm_small_m_e4m3_m16",
            "gemm_small_m_s8_m64",
            "gemm_small_m_we5m2_abf16_m32",
            "gemm_small_m_ws8_abf16_m8",
        ] {
            assert!(names.iter().any(|n| n == name), "{name}");
        }
        assert_eq!(bucket(1), Some(8));
        assert_eq!(bucket(8), Some(8));
        assert_eq!(bucket(9), Some(16));
        assert_eq!(bucket(33), Some(64));
        assert_eq!(bucket(64), Some(64));
        assert_eq!(bucket(65), None);
    }

    #[test]
    fn supports_accepts_decode_shapes_and_odd_tails() {
        for inputs in [
            Inputs::Bf16,
            Inputs::Quantized(QuantFormat::E4m3),
            Inputs::Quantized(QuantFormat::Int8),
            Inputs::WeightOnly(QuantFormat::E5m2),
        ] {
            for (m, n, k) in [
                (1, 200, 80),
                (7, 4096, 4112),
                (33, 200, 4096),
                (64, 28672, 8192),
            ] {
                assert_eq!(SmallMPath.supports(&problem(m, n, k, inputs), H100), Ok(()));
                assert_eq!(
                    SmallMPath.supports(&problem(m, n, k, inputs), (8, 6)),
                    Ok(())
                );
            }
        }
        // bf16 rows need K % 8 only.
        assert_eq!(
            SmallMPath.supports(&problem(1, 64, 72, Inputs::Bf16), H100),
            Ok(())
        );
    }

    #[test]
    fn supports_rejects_with_reasons() {
        let e = SmallMPath
            .supports(&problem(65, 4096, 4096, Inputs::Bf16), H100)
            .unwrap_err();
        assert!(e.contains("M ≤ 64") && e.contains("M = 65"), "{e}");
        let e = SmallMPath
            .supports(&problem(1, 4096, 4096, Inputs::Bf16), (7, 5))
            .unwrap_err();
        assert!(e.contains("sm_80") && e.contains("sm_75"), "{e}");
        let e = SmallMPath
            .supports(
                &problem(1, 4096, 72, Inputs::Quantized(QuantFormat::E4m3)),
                H100,
            )
            .unwrap_err();
        assert!(e.contains("multiple of 16") && e.contains("K = 72"), "{e}");
        let e = SmallMPath
            .supports(&problem(1, 4096, 100, Inputs::Bf16), H100)
            .unwrap_err();
        assert!(e.contains("multiple of 8") && e.contains("K = 100"), "{e}");
        let e = SmallMPath
            .supports(
                &problem(
                    1,
                    4096,
                    (1 << 31) - 16,
                    Inputs::Quantized(QuantFormat::Int8),
                ),
                H100,
            )
            .unwrap_err();
        assert!(e.contains("32-bit") && e.contains("K = 2147483632"), "{e}");
    }

    #[test]
    fn geometry_matches_the_kernel() {
        let bf16 = Geometry::of(Inputs::Bf16, 16);
        assert_eq!((bf16.k_per_warp, bf16.k_per_cta), (128, 256));
        assert_eq!(bf16.shared_bytes, 2 * 16 * (512 + 64));
        let w8a8 = Geometry::of(Inputs::Quantized(QuantFormat::Int8), 64);
        assert_eq!((w8a8.k_per_warp, w8a8.k_per_cta), (256, 512));
        assert_eq!(w8a8.shared_bytes, 2 * 64 * (512 + 64));
        let wo = Geometry::of(Inputs::WeightOnly(QuantFormat::E4m3), 32);
        assert_eq!((wo.k_per_warp, wo.k_per_cta), (256, 512));
        assert_eq!(wo.shared_bytes, 2 * 32 * (1024 + 16));
        let wo64 = Geometry::of(Inputs::WeightOnly(QuantFormat::E4m3), 64);
        assert_eq!((wo64.k_per_warp, wo64.k_per_cta), (128, 256));
        assert_eq!(wo64.shared_bytes, 2 * 64 * (512 + 16));
        // Every kernel fits the smallest opt-in limit (sm_86/89: 99 KB).
        for name_inputs in [
            Inputs::Bf16,
            Inputs::Quantized(QuantFormat::E5m2),
            Inputs::WeightOnly(QuantFormat::Int8),
        ] {
            for mb in BUCKETS {
                assert!(Geometry::of(name_inputs, mb).shared_bytes <= 99 * 1024);
            }
        }
    }

    #[test]
    fn splits_fill_the_device_without_a_tail() {
        let slots = 132 * 2;
        // N = 4096: 64 CTAs along N; 4 splits make one wave of 256.
        let p = Plan::new(&problem(16, 4096, 4096, Inputs::Bf16), slots);
        assert_eq!((p.ctas_n, p.iters, p.splits), (64, 16, 4));
        // Enough CTAs along N already for one full wave: no split.
        assert_eq!(choose_splits(264, 32, 16, 8192, 1, slots), 1);
        // Tiny K: at least MIN_ITERS_PER_SPLIT iterations per split.
        let p = Plan::new(&problem(1, 200, 80, Inputs::Bf16), slots);
        assert_eq!((p.ctas_n, p.iters, p.splits), (4, 1, 1));
        assert_eq!(p.workspace_len(&problem(1, 200, 80, Inputs::Bf16)), 0);
        // Small N, long K: capped at MAX_SPLITS.
        let p = Plan::new(&problem(1, 200, 65536, Inputs::Bf16), slots);
        assert_eq!(p.splits, MAX_SPLITS);
        // No split is ever empty.
        for iters in 1..64 {
            for ctas_n in [1, 3, 17, 64, 130] {
                let s = choose_splits(ctas_n, iters, 8, 4096, 1, slots);
                assert!((1..=iters.max(1)).contains(&s), "{iters} {ctas_n} {s}");
                let per = iters.div_ceil(s);
                assert!((s - 1) * per < iters, "empty split: {iters} {s}");
            }
        }
        // The workspace round trip limits splits at large M and short K.
        let long = choose_splits(8, 64, 64, 2048 * 4, 2, slots);
        let short = choose_splits(8, 64, 64, 512, 2, slots);
        assert!(short <= long, "{short} {long}");
    }
}
