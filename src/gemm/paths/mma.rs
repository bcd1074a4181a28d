//! The `mma` path (`kernels/gemm/mma.cu`, `kernels/gemm/mma_fp8.cu`, design in
//! `kernels/gemm/mma_gemm.cuh`): the Ampere-style tensor-core GEMM, `mma.sync` fed by a
//! cp.async pipeline and swizzled `ldmatrix`, 128 x 128 CTA tiles of 8 warps. Runs on sm_80 and
//! newer (on sm_90/sm_100 as the fallback of the wgmma/TMA paths); FP8 from sm_89.
//!
//! Kernels: `gemm_mma_bf16`, `gemm_mma_s8`, `gemm_mma_e4m3`, `gemm_mma_e5m2` (scale modes 0-2,
//! 3 pipeline stages, 48 KB of shared memory, 2 CTAs per SM) and `gemm_mma_<fmt>_block128`
//! (block-128 scales promoted every 128 K, 4 stages, 64 KB, 1 CTA per SM). Weight-only inputs
//! (8-bit W, BF16 X: the tensor-core path of weight-only GEMMs past the small-M sizes) take
//! `gemm_mma_w<fmt>_abf16[_block128]`: stages of 32 K elements, each W tile widened to BF16 in
//! shared memory before the BF16 mma (3 stages, 44 KB; block-128: 4 stages, 56 KB).

use anyhow::{bail, Result};

use super::simt::{check_i32_dims, format_suffix, PointerArgs};
use super::{Arch, GemmLaunch, GemmPath, Inputs, Operands, Problem};
use crate::gemm::quant::{QuantFormat, Scheme};
use crate::gpu::{Gpu, GpuResult, Kernel};

/// CTA tile rows (M) and columns (N).
pub const TILE_M: usize = 128;
pub const TILE_N: usize = 128;
/// Threads per CTA (8 warps).
pub const THREADS: u32 = 256;
/// K bytes per row per pipeline stage (`kRowBytes`): of X and W, or of X alone for weight-only
/// inputs, whose W rows take half as many code bytes a stage (`Layout<true>::kWRowBytes`).
pub const STAGE_K_BYTES: usize = 64;
/// Raster group: CTAs walk `GROUP_M` tile rows before the next tile column (`kGroupM`).
pub const GROUP_M: usize = 8;
/// Largest K for INT8 without block scales: all of K accumulates in int32, and
/// `127 * 127 * K` must stay below 2^31.
pub const MAX_K_INT32: usize = (i32::MAX as usize) / (127 * 127);

/// The `mma` path.
pub struct MmaPath;

/// Which kernel computes a problem, and its pipeline depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub kernel: String,
    pub stages: u32,
    /// 8-bit W widened to BF16 in shared memory (its own stage layout).
    pub weight_only: bool,
}

impl Variant {
    /// The kernel for `problem`.
    pub fn of(problem: &Problem) -> Variant {
        let format = match problem.inputs {
            Inputs::Bf16 => "bf16".to_string(),
            Inputs::Quantized(f) => format_suffix(f).to_string(),
            Inputs::WeightOnly(f) => format!("w{}_abf16", format_suffix(f)),
        };
        let weight_only = matches!(problem.inputs, Inputs::WeightOnly(_));
        let block128 = problem.inputs != Inputs::Bf16 && problem.scheme == Some(Scheme::Block128);
        let (suffix, stages) = if block128 { ("_block128", 4) } else { ("", 3) };
        Variant {
            kernel: format!("gemm_mma_{format}{suffix}"),
            stages,
            weight_only,
        }
    }

    /// Dynamic shared memory (`rb::gemm_mma::smem_bytes`): the stages (X and W tiles of 128
    /// rows x 64 bytes each; weight-only: X's, W's 128 x 32 code bytes, and one BF16 W tile of
    /// 128 x 64 bytes they are widened into), or the epilogue's bf16 output tile (rows of
    /// 256 + 16 bytes) if larger.
    pub fn shared_bytes(&self) -> u32 {
        let tile = (TILE_M * STAGE_K_BYTES) as u32;
        let used = if self.weight_only {
            self.stages * (tile + tile / 2) + tile
        } else {
            self.stages * 2 * tile
        };
        let output = (TILE_M * (TILE_N * 2 + 16)) as u32;
        used.max(output)
    }
}

/// A problem of `inputs` and `scheme` whose size does not matter (kernel names).
fn problem_of(inputs: Inputs, scheme: Scheme) -> Problem {
    Problem {
        m: 1,
        n: 1,
        k: 16,
        inputs,
        scheme: Some(scheme),
        bias: false,
    }
}

/// CTAs: one per 128 x 128 output tile (a 1-D grid; the kernel derives the tile).
pub fn grid(problem: &Problem) -> usize {
    problem.m.div_ceil(TILE_M) * problem.n.div_ceil(TILE_N)
}

/// The tile `(row, column)` CTA `pid` computes: the kernel's grouped raster, mirrored for tests.
pub fn tile_of(pid: usize, m: usize, n: usize) -> (usize, usize) {
    let (tiles_m, tiles_n) = (m.div_ceil(TILE_M), n.div_ceil(TILE_N));
    let per_group = GROUP_M * tiles_n;
    let first_m = (pid / per_group) * GROUP_M;
    let group_rows = (tiles_m - first_m).min(GROUP_M);
    (
        first_m + (pid % per_group) % group_rows,
        (pid % per_group) / group_rows,
    )
}

impl GemmPath for MmaPath {
    fn name(&self) -> &'static str {
        "mma"
    }

    fn kernel_names(&self) -> Vec<String> {
        let mut names = vec!["gemm_mma_bf16".to_string()];
        for f in QuantFormat::ALL {
            for inputs in [Inputs::Quantized(f), Inputs::WeightOnly(f)] {
                for scheme in [Scheme::PerTensor, Scheme::Block128] {
                    names.push(Variant::of(&problem_of(inputs, scheme)).kernel);
                }
            }
        }
        names
    }

    fn supports(&self, problem: &Problem, arch: Arch) -> std::result::Result<(), String> {
        let sm = format!("sm_{}{}", arch.0, arch.1);
        if arch < (8, 0) {
            return Err(format!(
                "mma.sync with cp.async needs sm_80 or newer; got {sm}"
            ));
        }
        // Weight-only FP8 needs no FP8 instruction: its W is widened to BF16 by bit arithmetic.
        if let Inputs::Quantized(f) = problem.inputs {
            if f != QuantFormat::Int8 {
                if arch < (8, 9) {
                    return Err(format!("FP8 mma.sync needs sm_89 or newer; got {sm}"));
                }
                // mma_fp8.cu is machine code for exactly these (no PTX: compute_80 has no FP8).
                if ![(8, 9), (9, 0), (10, 0)].contains(&arch) {
                    return Err(format!(
                        "the FP8 mma kernels are built for sm_89, sm_90a and sm_100a only; got {sm}"
                    ));
                }
            }
        }
        check_i32_dims(problem)?;
        let (x_bytes, w_bytes) = problem.inputs.element_bytes();
        let bytes = x_bytes.min(w_bytes);
        if (problem.k * bytes) % 16 != 0 {
            return Err(format!(
                "K * element bytes must be a multiple of 16 (16-byte cp.async row loads); got \
                 K = {} ({} bytes per {} row)",
                problem.k,
                problem.k * bytes,
                if x_bytes == w_bytes { "X and W" } else { "W" }
            ));
        }
        super::check_int8_accumulation(problem)?;
        if grid(problem) > i32::MAX as usize {
            return Err(format!(
                "{} tiles of 128 x 128 exceed the grid limit of 2^31 - 1 CTAs",
                grid(problem)
            ));
        }
        Ok(())
    }

    fn prepare(&self, gpu: &Gpu, problem: &Problem) -> Result<Box<dyn GemmLaunch>> {
        let arch = gpu.info().compute_capability;
        if let Err(why) = self.supports(problem, arch) {
            bail!("mma: {why}");
        }
        let variant = Variant::of(problem);
        let kernel = gpu.kernel_by_name(&variant.kernel)?;
        let shared = variant.shared_bytes();
        kernel.allow_dynamic_shared(shared)?;
        Ok(Box::new(MmaLaunch {
            args: PointerArgs::new(problem)?,
            grid: grid(problem) as u32,
            shared,
            stages: variant.stages,
            kernel,
        }))
    }
}

struct MmaLaunch {
    kernel: Kernel,
    args: PointerArgs,
    grid: u32,
    shared: u32,
    stages: u32,
}

impl GemmLaunch for MmaLaunch {
    fn enqueue(&mut self, gpu: &Gpu, operands: &Operands) -> GpuResult<()> {
        // SAFETY: mma_gemm.cuh's kernels take (x, w, y, scale_x, scale_w, bias, m, n, k,
        // scale_mode) and, with grid = one CTA per 128 x 128 tile and `shared` bytes of dynamic
        // shared memory, read and write within the lengths PointerArgs::launch checks. X and W
        // are whole device allocations, so 16-byte aligned as cp.async needs.
        unsafe {
            self.args
                .launch(gpu, &self.kernel, operands, self.grid, THREADS, self.shared)
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} tile {TILE_M}x{TILE_N}x{STAGE_K_BYTES}B, {} stages, {THREADS} threads (2x4 warps \
             of 64x32), {} KB smem, grid {} (raster groups of {GROUP_M} tile rows)",
            self.kernel.name(),
            self.stages,
            self.shared / 1024,
            self.grid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(m: usize, n: usize, k: usize, inputs: Inputs, scheme: Option<Scheme>) -> Problem {
        Problem {
            m,
            n,
            k,
            inputs,
            scheme,
            bias: false,
        }
    }

    const E4M3: Inputs = Inputs::Quantized(QuantFormat::E4m3);
    const INT8: Inputs = Inputs::Quantized(QuantFormat::Int8);

    #[test]
    fn kernel_names_match_the_variants() {
        let names = MmaPath.kernel_names();
        assert_eq!(names.len(), 13);
        for inputs in [
            Inputs::Bf16,
            E4M3,
            INT8,
            Inputs::Quantized(QuantFormat::E5m2),
            Inputs::WeightOnly(QuantFormat::Int8),
            Inputs::WeightOnly(QuantFormat::E5m2),
        ] {
            for scheme in [None, Some(Scheme::PerTensor), Some(Scheme::Block128)] {
                let scheme = if inputs == Inputs::Bf16 { None } else { scheme };
                let v = Variant::of(&problem(1, 1, 16, inputs, scheme));
                assert!(names.contains(&v.kernel), "{} not listed", v.kernel);
            }
        }
        let v = Variant::of(&problem(1, 1, 16, INT8, Some(Scheme::Block128)));
        assert_eq!(v.kernel, "gemm_mma_s8_block128");
        assert_eq!(v.stages, 4);
        let v = Variant::of(&problem(1, 1, 16, Inputs::Bf16, None));
        assert_eq!(v.kernel, "gemm_mma_bf16");
        let wo = |scheme| {
            Variant::of(&problem(
                1,
                1,
                16,
                Inputs::WeightOnly(QuantFormat::E4m3),
                Some(scheme),
            ))
        };
        assert_eq!(
            wo(Scheme::PerTokenPerChannel).kernel,
            "gemm_mma_we4m3_abf16"
        );
        assert!(wo(Scheme::PerTensor).weight_only);
        let block = wo(Scheme::Block128);
        assert_eq!(
            (block.kernel.as_str(), block.stages),
            ("gemm_mma_we4m3_abf16_block128", 4)
        );
    }

    #[test]
    fn shared_memory_per_variant() {
        let bytes = |stages, weight_only| {
            Variant {
                kernel: String::new(),
                stages,
                weight_only,
            }
            .shared_bytes()
        };
        assert_eq!(bytes(3, false), 48 * 1024);
        assert_eq!(bytes(4, false), 64 * 1024);
        // 12 KB a stage (8 KB of X, 4 KB of W codes) and the 8 KB BF16 W tile.
        assert_eq!(bytes(3, true), 44 * 1024);
        assert_eq!(bytes(4, true), 56 * 1024);
    }

    #[test]
    fn accepts_aligned_k_and_odd_m_n() {
        for (m, n) in [(1, 200), (7, 1), (33, 4096), (4096, 129)] {
            let bf16 = problem(m, n, 80, Inputs::Bf16, None);
            assert_eq!(MmaPath.supports(&bf16, (8, 0)), Ok(()));
            let s8 = problem(m, n, 4096 + 16, INT8, Some(Scheme::Block128));
            assert_eq!(MmaPath.supports(&s8, (8, 6)), Ok(()));
            let fp8 = problem(m, n, 4096 + 16, E4M3, Some(Scheme::PerTokenPerChannel));
            assert_eq!(MmaPath.supports(&fp8, (8, 9)), Ok(()));
            assert_eq!(MmaPath.supports(&fp8, (9, 0)), Ok(()));
            // Weight-only: any 8-bit W format from sm_80 (fp8 is widened by bit arithmetic).
            for f in QuantFormat::ALL {
                let wo = problem(
                    m,
                    n,
                    4096 + 16,
                    Inputs::WeightOnly(f),
                    Some(Scheme::Block128),
                );
                assert_eq!(MmaPath.supports(&wo, (8, 0)), Ok(()));
            }
        }
    }

    #[test]
    fn rejects_with_the_constraint_named() {
        let why = MmaPath
            .supports(&problem(8, 8, 100, Inputs::Bf16, None), (8, 0))
            .unwrap_err();
        assert!(
            why.contains("multiple of 16") && why.contains("K = 100"),
            "{why}"
        );
        let why = MmaPath
            .supports(&problem(8, 8, 40, INT8, Some(Scheme::PerTensor)), (8, 0))
            .unwrap_err();
        assert!(why.contains("K = 40 (40 bytes"), "{why}");
        let why = MmaPath
            .supports(&problem(8, 8, 64, E4M3, Some(Scheme::PerTensor)), (8, 6))
            .unwrap_err();
        assert_eq!(why, "FP8 mma.sync needs sm_89 or newer; got sm_86");
        let why = MmaPath
            .supports(&problem(8, 8, 64, E4M3, Some(Scheme::PerTensor)), (12, 0))
            .unwrap_err();
        assert!(why.contains("sm_120"), "{why}");
        let why = MmaPath
            .supports(&problem(8, 8, 64, Inputs::Bf16, None), (7, 5))
            .unwrap_err();
        assert!(why.contains("sm_80") && why.contains("sm_75"), "{why}");
        // Weight-only W rows are K bytes: K = 40 is 80 bytes of X but 40 of W.
        let wo = problem(
            8,
            8,
            40,
            Inputs::WeightOnly(QuantFormat::Int8),
            Some(Scheme::PerTensor),
        );
        let why = MmaPath.supports(&wo, (9, 0)).unwrap_err();
        assert!(why.contains("K = 40 (40 bytes per W row)"), "{why}");
        let long_k = (MAX_K_INT32 / 16 + 1) * 16;
        let why = MmaPath
            .supports(
                &problem(8, 8, long_k, INT8, Some(Scheme::PerTensor)),
                (8, 0),
            )
            .unwrap_err();
        assert!(why.contains("int32"), "{why}");
        // Block scales promote every 128 K, so a long K is fine there.
        let block = problem(8, 8, long_k, INT8, Some(Scheme::Block128));
        assert_eq!(MmaPath.supports(&block, (8, 0)), Ok(()));
        let huge = problem(1, 1 << 31, 64, Inputs::Bf16, None);
        assert!(MmaPath
            .supports(&huge, (9, 0))
            .unwrap_err()
            .contains("N = 2147483648"));
    }

    #[test]
    fn grid_covers_every_tile_once() {
        for (m, n) in [
            (1, 1),
            (7, 200),
            (129, 4096),
            (33 * 128 + 5, 3 * 128),
            (2048, 5),
        ] {
            let ctas = grid(&problem(m, n, 16, Inputs::Bf16, None));
            let (tiles_m, tiles_n) = (m.div_ceil(TILE_M), n.div_ceil(TILE_N));
            assert_eq!(ctas, tiles_m * tiles_n);
            let mut seen = vec![false; ctas];
            for pid in 0..ctas {
                let (tm, tn) = tile_of(pid, m, n);
                assert!(
                    tm < tiles_m && tn < tiles_n,
                    "{m}x{n}: CTA {pid} -> ({tm}, {tn})"
                );
                assert!(!seen[tm * tiles_n + tn], "{m}x{n}: tile ({tm}, {tn}) twice");
                seen[tm * tiles_n + tn] = true;
            }
        }
    }

    #[test]
    fn int32_limit_is_the_overflow_bound() {
        assert!(127 * 127 * MAX_K_INT32 <= i32::MAX as usize);
        assert!(127 * 127 * (MAX_K_INT32 + 1) > i32::MAX as usize);
    }

    /// In a build with kernels: every kernel is embedded, and none spills on any target.
    #[test]
    fn embedded_kernels_exist_without_spills() {
        if crate::gpu::MODULES.is_empty() {
            return; // built without nvcc
        }
        for name in MmaPath.kernel_names() {
            let module = crate::gpu::embedded::module_of(&name)
                .unwrap_or_else(|| panic!("{name} is not embedded"));
            for r in module.kernels.iter().filter(|r| r.kernel == name) {
                assert!(!r.spills(), "{name} spills on {}: {r:?}", r.target);
            }
        }
    }
}
