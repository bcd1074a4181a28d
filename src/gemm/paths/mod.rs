//! The GEMM kernels ("paths") of `kernels/gemm/`, behind one interface: which problems a path
//! can compute, and the launches that compute one.
//!
//! Every path computes `Y[M,N] = epilogue(X[M,K] · W[N,K]ᵀ)` with X and W row-major (K
//! contiguous, the "TN" layout of linear layers) and Y row-major BF16. The epilogue multiplies by
//! the scales of [`Scheme`] (layouts in [`super::quant`]) and adds an optional BF16 bias `[N]`.
//!
//! Every kernel takes the same trailing arguments, in this order (a null pointer for an absent
//! scale or bias):
//! `bf16* y, const float* scale_x, const float* scale_w, const bf16* bias, int m, int n, int k,
//! int scale_mode` with `scale_mode` one of [`ScaleMode`]. Paths that read X and W through
//! pointers take `const void* x, const void* w` before them; the TMA path takes two
//! `CUtensorMap`s instead.

pub mod mma;
pub mod simt;
pub mod small_m;
pub mod wgmma;

use std::fmt;

use anyhow::Result;

use super::quant::{scales_shape, Operand, QuantFormat, Scheme};
use crate::gpu::{Buffer, Gpu, GpuResult};

/// What X and W hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inputs {
    /// Both BF16, unscaled (the baseline).
    Bf16,
    /// Both quantized to the same 8-bit format, each with the scheme's scales.
    Quantized(QuantFormat),
    /// W quantized (with the scheme's W scales), X BF16 unscaled: weight-only decode GEMMs.
    WeightOnly(QuantFormat),
}

impl Inputs {
    /// Bytes per element of X and of W.
    pub fn element_bytes(self) -> (usize, usize) {
        match self {
            Inputs::Bf16 => (2, 2),
            Inputs::Quantized(_) => (1, 1),
            Inputs::WeightOnly(_) => (2, 1),
        }
    }

    pub fn format(self) -> Option<QuantFormat> {
        match self {
            Inputs::Bf16 => None,
            Inputs::Quantized(f) | Inputs::WeightOnly(f) => Some(f),
        }
    }
}

impl fmt::Display for Inputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inputs::Bf16 => f.write_str("bf16"),
            Inputs::Quantized(q) => write!(f, "{q}"),
            Inputs::WeightOnly(q) => write!(f, "w{q}-abf16"),
        }
    }
}

/// The kernels' `int scale_mode` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ScaleMode {
    /// BF16 inputs: no scales (both pointers null).
    None = 0,
    /// `scale_x[0] * scale_w[0]` for every output.
    PerTensor = 1,
    /// `scale_x[m] * scale_w[n]`.
    PerTokenPerChannel = 2,
    /// Per K block `kb` of 128: `scale_x[m][kb] * scale_w[n / 128][kb]`, applied to each
    /// block's partial sum before it is added to the f32 accumulator (row-major,
    /// `ceil(K/128)` columns each).
    Block128 = 3,
}

impl ScaleMode {
    pub fn of(inputs: Inputs, scheme: Option<Scheme>) -> ScaleMode {
        match (inputs, scheme) {
            (Inputs::Bf16, _) | (_, None) => ScaleMode::None,
            (_, Some(Scheme::PerTensor)) => ScaleMode::PerTensor,
            (_, Some(Scheme::PerTokenPerChannel)) => ScaleMode::PerTokenPerChannel,
            (_, Some(Scheme::Block128)) => ScaleMode::Block128,
        }
    }
}

/// The largest |int32| that the kernels' integer-add, float-subtract conversion
/// (`rb::small_s32_to_f32`, `kernels/common/dtype.cuh`) turns into f32 exactly: the magic
/// constant 1.5 · 2^23 plus p keeps the exponent of 2^23 only while |p| <= 2^22
/// (`scripts/sim/wgmma_sim.py` checks every value of that range, and that it fails past it).
pub const MAGIC_EXACT_BOUND: u64 = 1 << 22;
/// The largest |code| an INT8 operand can hold (-128, although the quantizer emits [-127, 127]).
const INT8_MAX_ABS: u64 = 128;

/// Whether the int32 sums of `products` INT8 products stay within [`MAGIC_EXACT_BOUND`], where
/// the block-128 kernels convert each K block's partial sum to f32 without I2F.
pub fn int8_partials_convert_exactly(products: usize) -> std::result::Result<(), String> {
    let bound = (products as u64).saturating_mul(INT8_MAX_ABS * INT8_MAX_ABS);
    if bound <= MAGIC_EXACT_BOUND {
        Ok(())
    } else {
        Err(format!(
            "a partial sum of {products} INT8 products reaches {bound}, past the 2^22 that the              kernels convert to f32 exactly"
        ))
    }
}

/// What INT8 accumulation in int32 allows, for the paths that keep sums in int32 registers:
/// without block scales all of K is summed (no saturation: wraps once 127^2 K > 2^31 - 1);
/// with block scales each 128-wide K block's partial is converted to f32 by the exact
/// integer-add conversion, which needs it within [`MAGIC_EXACT_BOUND`].
pub fn check_int8_accumulation(problem: &Problem) -> std::result::Result<(), String> {
    if problem.inputs != Inputs::Quantized(QuantFormat::Int8) {
        return Ok(());
    }
    if problem.scheme == Some(Scheme::Block128) {
        return int8_partials_convert_exactly(problem.k.min(super::quant::BLOCK));
    }
    if problem.k > mma::MAX_K_INT32 {
        return Err(format!(
            "INT8 without block scales accumulates all of K in int32: K must be at most {} \
             (127^2 K < 2^31); got K = {}",
            mma::MAX_K_INT32,
            problem.k
        ));
    }
    Ok(())
}

/// One GEMM as the kernels see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub inputs: Inputs,
    /// None exactly when `inputs` is BF16. For weight-only inputs only W's scales exist
    /// (`scale_x` is null).
    pub scheme: Option<Scheme>,
    pub bias: bool,
}

impl Problem {
    pub fn scale_mode(&self) -> ScaleMode {
        ScaleMode::of(self.inputs, self.scheme)
    }

    /// Elements each scale buffer must hold, `(scale_x, scale_w)` (0: not read, may be absent).
    pub fn scale_lens(&self) -> (usize, usize) {
        let Some(scheme) = self.scheme.filter(|_| self.scale_mode() != ScaleMode::None) else {
            return (0, 0);
        };
        let count = |role, rows| {
            let (down, across) = scales_shape(scheme, role, rows, self.k);
            down * across
        };
        let x = match self.inputs {
            Inputs::Quantized(_) => count(Operand::Activation, self.m),
            Inputs::Bf16 | Inputs::WeightOnly(_) => 0,
        };
        (x, count(Operand::Weight, self.n))
    }

    /// Fails unless `operands` hold what every kernel of the problem reads and writes: a misuse
    /// that would otherwise be an out-of-bounds device access. Every path calls it before a
    /// launch.
    pub fn check_operands(&self, operands: &Operands) -> GpuResult<()> {
        let fail = |why: String| Err(crate::gpu::GpuError::InvalidArgument(why));
        let (bx, bw) = self.inputs.element_bytes();
        if operands.x.len() < self.m * self.k * bx || operands.w.len() < self.n * self.k * bw {
            return fail(format!(
                "gemm {}x{}x{} {}: X or W buffer too short",
                self.m, self.n, self.k, self.inputs
            ));
        }
        if operands.y.len() < self.m * self.n {
            return fail("gemm: Y buffer too short".into());
        }
        let (sx, sw) = self.scale_lens();
        let long_enough =
            |len: usize, buf: Option<&Buffer<f32>>| len == 0 || buf.is_some_and(|b| b.len() >= len);
        if !(long_enough(sx, operands.scale_x) && long_enough(sw, operands.scale_w)) {
            return fail(format!(
                "gemm {}: scale_x needs {sx} and scale_w {sw} floats",
                self.inputs
            ));
        }
        if self.bias && operands.bias.is_none_or(|b| b.len() < self.n) {
            return fail(format!(
                "gemm: the problem has a bias of N = {} elements; none or a shorter one given",
                self.n
            ));
        }
        Ok(())
    }
}

/// The device buffers of one problem. X and W are raw bytes (BF16 as its two bytes, INT8 as
/// two's complement); Y and bias are BF16 bits.
pub struct Operands<'a> {
    pub x: &'a Buffer<u8>,
    pub w: &'a Buffer<u8>,
    pub y: &'a Buffer<u16>,
    pub scale_x: Option<&'a Buffer<f32>>,
    pub scale_w: Option<&'a Buffer<f32>>,
    pub bias: Option<&'a Buffer<u16>>,
}

/// A device's architecture, as `(major, minor)` compute capability.
pub type Arch = (u32, u32);

/// One family of GEMM kernels.
pub trait GemmPath: Sync {
    /// Short name used on the command line and in result rows: `wgmma`, `mma`, `small_m`, `simt`.
    fn name(&self) -> &'static str;
    /// Every kernel this path may launch (checked against the embedded build by the tests).
    fn kernel_names(&self) -> Vec<String>;
    /// Ok, or why not, naming the constraint (e.g. "K must be a multiple of 16 (TMA needs
    /// 16-byte row strides); got K = 100").
    fn supports(&self, problem: &Problem, arch: Arch) -> std::result::Result<(), String>;
    /// Loads the kernels and decides the launch geometry (tile shape, grid, shared memory).
    fn prepare(&self, gpu: &Gpu, problem: &Problem) -> Result<Box<dyn GemmLaunch>>;
}

/// The prepared launches of one problem on one path.
pub trait GemmLaunch {
    /// Enqueues the GEMM on the device stream (no synchronisation). Must be callable repeatedly
    /// and inside CUDA graph capture; it may cache state derived from the operands' addresses.
    fn enqueue(&mut self, gpu: &Gpu, operands: &Operands) -> GpuResult<()>;
    /// A one-line description of the configuration (tile, stages, grid), for result rows.
    fn describe(&self) -> String;
    /// How the kernel accumulates, from which verification derives its tolerance.
    fn accumulation(&self) -> Accumulation {
        Accumulation::F32
    }
}

/// The rounding of a kernel's accumulation: each of `ceil(K / k_per_rounding)` additions into
/// the accumulator may err by `roundoff` relative to the running sum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accumulation {
    pub roundoff: f64,
    pub k_per_rounding: usize,
}

impl Accumulation {
    /// f32 accumulation: 2^-24 for round-to-nearest, doubled because tensor cores may truncate
    /// when they align addends; one rounding per product at worst.
    pub const F32: Accumulation = Accumulation {
        roundoff: 1.0 / (1u64 << 23) as f64,
        k_per_rounding: 1,
    };
    /// FP8 wgmma partial sums kept in Hopper's accumulator across K blocks: it keeps about 14
    /// significant bits (DeepSeek-V3 report, section 3.3.2), so 2^-13 per k32 instruction.
    pub const HOPPER_FP8: Accumulation = Accumulation {
        roundoff: 1.0 / (1u64 << 13) as f64,
        k_per_rounding: 32,
    };

    /// The classical bound `γ_n · Σ|x_k·w_k|` on the error of an `n`-term recursive sum, with
    /// four more roundings for the scales and the bias.
    pub fn error_bound(&self, k: usize, abs_sum: f64) -> f64 {
        let n = (k.div_ceil(self.k_per_rounding) + 4) as f64;
        let nu = n * self.roundoff;
        if nu >= 1.0 {
            abs_sum
        } else {
            nu / (1.0 - nu) * abs_sum
        }
    }
}

/// Every path, in the order [`auto`] prefers them: the small-M streaming kernels first (they
/// alone reach memory bandwidth at decode sizes), then Hopper's wgmma, the mma.sync path of
/// sm_80 and newer, and last the CUDA-core fallback that takes any shape.
pub fn all() -> Vec<&'static dyn GemmPath> {
    vec![
        &small_m::SmallMPath,
        &wgmma::WgmmaPath::STANDARD,
        &wgmma::WgmmaPath::PROMOTED,
        &mma::MmaPath,
        &simt::SimtPath,
    ]
}

/// The path named `name`.
pub fn by_name(name: &str) -> Result<&'static dyn GemmPath> {
    let paths = all();
    match paths.iter().find(|p| p.name() == name) {
        Some(p) => Ok(*p),
        None => {
            let names: Vec<&str> = paths.iter().map(|p| p.name()).collect();
            anyhow::bail!(
                "unknown GEMM path `{name}`: one of auto, all, {}",
                names.join(", ")
            )
        }
    }
}

/// The first path of [`all`] that supports `problem` on `arch`, or every path's reason.
pub fn auto(problem: &Problem, arch: Arch) -> std::result::Result<&'static dyn GemmPath, String> {
    let mut reasons = Vec::new();
    for path in all() {
        match path.supports(problem, arch) {
            Ok(()) => return Ok(path),
            Err(why) => reasons.push(format!("{}: {why}", path.name())),
        }
    }
    Err(format!("no GEMM path supports it ({})", reasons.join("; ")))
}

/// Every kernel of every path, for the embedded-kernel checks.
pub fn kernel_names() -> Vec<String> {
    all().iter().flat_map(|p| p.kernel_names()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_only_gemms_past_small_m_take_tensor_cores() {
        // Issue 13: M > 64 weight-only GEMMs fell to the CUDA-core simt path.
        for f in QuantFormat::ALL {
            for (m, want) in [(16, "small_m"), (64, "small_m"), (65, "mma"), (4096, "mma")] {
                let problem = Problem {
                    m,
                    n: 4096,
                    k: 4096,
                    inputs: Inputs::WeightOnly(f),
                    scheme: Some(Scheme::PerTokenPerChannel),
                    bias: false,
                };
                for arch in [(8, 0), (9, 0), (10, 0)] {
                    let path = auto(&problem, arch).unwrap();
                    assert_eq!(path.name(), want, "M = {m} {f:?} on {arch:?}");
                }
            }
        }
    }

    #[test]
    fn int8_block_partials_stay_within_the_exact_conversion() {
        // A 128-wide block of codes up to |128|: 2^21, half the bound; any K takes it.
        assert_eq!(
            int8_partials_convert_exactly(crate::gemm::quant::BLOCK),
            Ok(())
        );
        assert_eq!(
            int8_partials_convert_exactly(256),
            Ok(()),
            "2^22 is still exact"
        );
        // Blocks of 257 or more products could leave the exact range: refused, saying why.
        let e = int8_partials_convert_exactly(257).unwrap_err();
        assert!(e.contains("257 INT8 products") && e.contains("2^22"), "{e}");
        let block = |k| Problem {
            m: 64,
            n: 64,
            k,
            inputs: Inputs::Quantized(QuantFormat::Int8),
            scheme: Some(Scheme::Block128),
            bias: false,
        };
        for k in [16, 128, 4096, 1 << 20] {
            assert_eq!(check_int8_accumulation(&block(k)), Ok(()), "K = {k}");
        }
        // FP8 block partials are f32 sums: no integer bound.
        let fp8 = Problem {
            inputs: Inputs::Quantized(QuantFormat::E4m3),
            ..block(1 << 20)
        };
        assert_eq!(check_int8_accumulation(&fp8), Ok(()));
    }
}
