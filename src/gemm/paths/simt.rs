//! The `simt` path (`kernels/gemm/simt.cu`): a shared-memory-tiled CUDA-core GEMM, the
//! correctness fallback for every problem the tensor-core paths reject. Any M, N, K, any
//! alignment, every [`Inputs`] kind; speed is secondary.
//!
//! Also the launch plumbing shared by the paths whose kernels take X and W as pointers
//! ([`PointerArgs`]): the operand checks and the common argument tail.

use anyhow::Result;

use super::{Arch, GemmLaunch, GemmPath, Inputs, Operands, Problem};
use crate::gemm::quant::QuantFormat;
use crate::gpu::{Gpu, GpuResult, Kernel};

/// Output tile edge (rows and columns) of one CTA.
pub const TILE: usize = 64;
/// Threads per CTA.
pub const THREADS: u32 = 256;
/// K elements staged per step.
pub const STEP_K: usize = 16;

/// The `simt` path.
pub struct SimtPath;

/// The kernel-name suffix of an 8-bit format (`s8` for INT8, as in the kernels).
pub(super) fn format_suffix(format: QuantFormat) -> &'static str {
    match format {
        QuantFormat::E4m3 => "e4m3",
        QuantFormat::E5m2 => "e5m2",
        QuantFormat::Int8 => "s8",
    }
}

/// The kernel that computes `inputs`.
pub fn kernel_name(inputs: Inputs) -> String {
    match inputs {
        Inputs::Bf16 => "gemm_simt_bf16".into(),
        Inputs::Quantized(f) => format!("gemm_simt_{}", format_suffix(f)),
        Inputs::WeightOnly(f) => format!("gemm_simt_w{}_abf16", format_suffix(f)),
    }
}

/// Err naming the first of M, N, K that does not fit the kernels' `int` arguments.
pub(super) fn check_i32_dims(problem: &Problem) -> std::result::Result<(), String> {
    for (name, value) in [("M", problem.m), ("N", problem.n), ("K", problem.k)] {
        if value > i32::MAX as usize {
            return Err(format!(
                "{name} must be below 2^31 (32-bit kernel arguments); got {name} = {value}"
            ));
        }
    }
    Ok(())
}

/// CTAs of the simt grid: one per 64 x 64 tile, at most `i32::MAX` (the kernel loops over the
/// rest).
pub fn grid(problem: &Problem) -> u32 {
    let tiles = problem.m.div_ceil(TILE) * problem.n.div_ceil(TILE);
    tiles.min(i32::MAX as usize) as u32
}

impl GemmPath for SimtPath {
    fn name(&self) -> &'static str {
        "simt"
    }

    fn kernel_names(&self) -> Vec<String> {
        let mut names = vec![kernel_name(Inputs::Bf16)];
        for f in QuantFormat::ALL {
            names.push(kernel_name(Inputs::Quantized(f)));
            names.push(kernel_name(Inputs::WeightOnly(f)));
        }
        names
    }

    fn supports(&self, problem: &Problem, arch: Arch) -> std::result::Result<(), String> {
        if arch < (8, 0) {
            return Err(format!(
                "the simt kernels are built for sm_80 and newer; got sm_{}{}",
                arch.0, arch.1
            ));
        }
        check_i32_dims(problem)
    }

    fn prepare(&self, gpu: &Gpu, problem: &Problem) -> Result<Box<dyn GemmLaunch>> {
        let arch = gpu.info().compute_capability;
        if let Err(why) = self.supports(problem, arch) {
            anyhow::bail!("simt: {why}");
        }
        let kernel = gpu.kernel_by_name(&kernel_name(problem.inputs))?;
        Ok(Box::new(SimtLaunch {
            args: PointerArgs::new(problem)?,
            grid: grid(problem),
            kernel,
        }))
    }
}

struct SimtLaunch {
    kernel: Kernel,
    args: PointerArgs,
    grid: u32,
}

impl GemmLaunch for SimtLaunch {
    fn enqueue(&mut self, gpu: &Gpu, operands: &Operands) -> GpuResult<()> {
        // SAFETY: simt.cu's kernels take (x, w, y, scale_x, scale_w, bias, m, n, k, scale_mode)
        // and read/write within the lengths PointerArgs::launch checks; any grid is valid (a
        // grid-stride loop over tiles).
        unsafe {
            self.args
                .launch(gpu, &self.kernel, operands, self.grid, THREADS, 0)
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} tile {TILE}x{TILE}x{STEP_K}, {THREADS} threads, grid {}",
            self.kernel.name(),
            self.grid
        )
    }
}

/// A null pointer argument.
static NULL: u64 = 0;

/// The problem as the pointer-taking kernels see it: the argument tail
/// `(.., m, n, k, scale_mode)` and the buffer lengths a launch needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PointerArgs {
    problem: Problem,
    m: i32,
    n: i32,
    k: i32,
    scale_mode: i32,
}

impl PointerArgs {
    pub(super) fn new(problem: &Problem) -> Result<PointerArgs> {
        let fits = |v: usize| i32::try_from(v).ok();
        let (Some(m), Some(n), Some(k)) = (fits(problem.m), fits(problem.n), fits(problem.k))
        else {
            anyhow::bail!(
                "{}x{}x{} needs 32-bit M, N and K",
                problem.m,
                problem.n,
                problem.k
            );
        };
        Ok(PointerArgs {
            problem: *problem,
            m,
            n,
            k,
            scale_mode: problem.scale_mode() as i32,
        })
    }

    /// Launches `kernel(x, w, y, scale_x, scale_w, bias, m, n, k, scale_mode)`; nothing when
    /// M or N is 0 (no output). A scale the mode does not read, or an absent bias, goes as null.
    ///
    /// # Safety
    /// `kernel` must take exactly these arguments and stay within the buffers [`Problem::check_operands`]
    /// verifies for any grid of `grid` CTAs of `block` threads with `smem` dynamic bytes.
    pub(super) unsafe fn launch(
        &self,
        gpu: &Gpu,
        kernel: &Kernel,
        operands: &Operands,
        grid: u32,
        block: u32,
        smem: u32,
    ) -> GpuResult<()> {
        self.problem.check_operands(operands)?;
        if self.problem.m == 0 || self.problem.n == 0 {
            return Ok(());
        }
        let (sx, sw) = self.problem.scale_lens();
        let bias = if self.problem.bias {
            operands.bias
        } else {
            None
        };
        let mut launch = gpu.launch(kernel);
        launch
            .buffer(operands.x)
            .buffer(operands.w)
            .buffer(operands.y);
        match operands.scale_x.filter(|_| sx > 0) {
            Some(b) => launch.buffer(b),
            None => launch.value(&NULL),
        };
        match operands.scale_w.filter(|_| sw > 0) {
            Some(b) => launch.buffer(b),
            None => launch.value(&NULL),
        };
        match bias {
            Some(b) => launch.buffer(b),
            None => launch.value(&NULL),
        };
        launch
            .value(&self.m)
            .value(&self.n)
            .value(&self.k)
            .value(&self.scale_mode);
        launch.run(grid, block, smem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::quant::Scheme;

    fn problem(m: usize, n: usize, k: usize, inputs: Inputs) -> Problem {
        let scheme = match inputs {
            Inputs::Bf16 => None,
            _ => Some(Scheme::Block128),
        };
        Problem {
            m,
            n,
            k,
            inputs,
            scheme,
            bias: true,
        }
    }

    #[test]
    fn kernel_names_cover_every_input_kind() {
        let names = SimtPath.kernel_names();
        assert_eq!(names.len(), 7);
        for expected in [
            "gemm_simt_bf16",
            "gemm_simt_e4m3",
            "gemm_simt_e5m2",
            "gemm_simt_s8",
            "gemm_simt_we4m3_abf16",
            "gemm_simt_we5m2_abf16",
            "gemm_simt_ws8_abf16",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing");
        }
    }

    #[test]
    fn supports_any_shape_on_sm80_and_newer() {
        for inputs in [
            Inputs::Bf16,
            Inputs::Quantized(QuantFormat::E4m3),
            Inputs::WeightOnly(QuantFormat::Int8),
        ] {
            for (m, n, k) in [(1, 1, 1), (7, 200, 80), (33, 3, 4111), (0, 5, 0)] {
                let p = problem(m, n, k, inputs);
                assert_eq!(SimtPath.supports(&p, (8, 0)), Ok(()));
                assert_eq!(SimtPath.supports(&p, (10, 0)), Ok(()));
            }
        }
    }

    #[test]
    fn rejects_old_arch_and_huge_dims() {
        let p = problem(7, 8, 9, Inputs::Bf16);
        let why = SimtPath.supports(&p, (7, 5)).unwrap_err();
        assert!(why.contains("sm_80") && why.contains("sm_75"), "{why}");
        let big = problem(1, 1, 1 << 31, Inputs::Bf16);
        let why = SimtPath.supports(&big, (9, 0)).unwrap_err();
        assert!(why.contains("K = 2147483648"), "{why}");
    }

    #[test]
    fn grid_is_one_cta_per_tile() {
        assert_eq!(grid(&problem(1, 1, 16, Inputs::Bf16)), 1);
        assert_eq!(grid(&problem(65, 200, 16, Inputs::Bf16)), 2 * 4);
        assert_eq!(grid(&problem(0, 200, 16, Inputs::Bf16)), 0);
    }

    #[test]
    fn scale_lengths_follow_the_scheme() {
        let q = problem(33, 200, 4112, Inputs::Quantized(QuantFormat::Int8));
        let args = PointerArgs::new(&q).unwrap();
        // X [33][ceil(4112/128) = 33], W [ceil(200/128) = 2][33].
        assert_eq!(args.problem.scale_lens(), (33 * 33, 2 * 33));
        let wo = problem(7, 200, 80, Inputs::WeightOnly(QuantFormat::E5m2));
        assert_eq!(PointerArgs::new(&wo).unwrap().problem.scale_lens(), (0, 2));
        let per_row = Problem {
            scheme: Some(Scheme::PerTokenPerChannel),
            ..q
        };
        assert_eq!(
            PointerArgs::new(&per_row).unwrap().problem.scale_lens(),
            (33, 200)
        );
        let bf16 = problem(7, 200, 80, Inputs::Bf16);
        let args = PointerArgs::new(&bf16).unwrap();
        assert_eq!(args.problem.scale_lens(), (0, 0));
        assert_eq!(args.scale_mode, 0);
        // A scheme on BF16 inputs is ignored (scale mode 0): no scales read.
        let odd = Problem {
            scheme: Some(Scheme::PerTensor),
            ..bf16
        };
        assert_eq!(PointerArgs::new(&odd).unwrap().problem.scale_lens(), (0, 0));
    }

    #[test]
    fn kernel_name_per_inputs() {
        assert_eq!(
            kernel_name(Inputs::WeightOnly(QuantFormat::Int8)),
            "gemm_simt_ws8_abf16"
        );
        assert_eq!(
            kernel_name(Inputs::Quantized(QuantFormat::E5m2)),
            "gemm_simt_e5m2"
        );
    }

    /// In a build with kernels: every kernel is embedded, and none spills on any target.
    #[test]
    fn embedded_kernels_exist_without_spills() {
        if crate::gpu::MODULES.is_empty() {
            return; // built without nvcc
        }
        for name in SimtPath.kernel_names() {
            let module = crate::gpu::embedded::module_of(&name)
                .unwrap_or_else(|| panic!("{name} is not embedded"));
            for r in module.kernels.iter().filter(|r| r.kernel == name) {
                assert!(!r.spills(), "{name} spills on {}: {r:?}", r.target);
            }
        }
    }
}
