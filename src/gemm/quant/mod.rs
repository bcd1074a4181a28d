//! Quantization of GEMM operands to FP8 (E4M3, E5M2) or INT8 with f32 scales: the CPU reference
//! that `kernels/gemm/quantize.cu` (arithmetic in `kernels/common/quant.cuh`) reproduces bit for
//! bit, and the dequantization the accuracy reports compare against.
//!
//! # The arithmetic
//!
//! An operand is a row-major `[rows][cols]` matrix of values that come from BF16 (the model's).
//! It is cut into scaling groups (tiles of `group_rows x group_cols`, see [`Scheme::group`]), and
//! each group is quantized on its own:
//!
//! - `amax` = max |x| over the group, in f32 (exact, so the order of the reduction is free);
//! - `scale` = `amax / FMAX` (one IEEE f32 division, round to nearest even; CUDA `__fdiv_rn`),
//!   with `FMAX` = 448 (E4M3), 57344 (E5M2) or 127 (INT8); `scale` = 1 when `amax` == 0;
//! - each element: `y = x / scale` (IEEE f32 division, `__fdiv_rn`, not a multiply by `1/scale`),
//!   then
//!   - FP8: `y` rounded to nearest even, saturating to the largest finite value (`±FMAX`,
//!     never NaN; [`Element::encode_to`], CUDA `cvt.rn.satfinite`); a negative `y` that rounds
//!     to 0 keeps its sign (code 0x80);
//!   - INT8: `y` rounded half to even (`round_ties_even`, CUDA `__float2int_rn`), clamped to
//!     [-127, 127] (symmetric: -128 never appears), stored as its two's-complement byte.
//!
//! The stored value stands for `decode(code) * scale`. Inputs are BF16 values (any f32 works, but
//! the GPU kernels read BF16): finite ones give a positive, finite scale, subnormal for tiny
//! groups (the smallest nonzero BF16 amax, 2^-133, still gives a nonzero scale; neither side
//! flushes subnormals). A NaN or infinity in a group makes its codes meaningless on both sides.
//!
//! # Layouts
//!
//! `data` is `[rows][cols]`, one byte per element. `scales` is
//! `[ceil(rows / group_rows)][ceil(cols / group_cols)]`, row-major: the scale of element `(r, c)`
//! is `scales[(r / group_rows) * groups_across + c / group_cols]`. When `rows` or `cols` is not a
//! multiple of the group, the last groups along that edge are partial (fewer rows or columns):
//! their amax runs over the elements that exist. So:
//! - per-tensor: one scale;
//! - per-token × per-channel: one scale per row, for X `[M][K]` per token, for W `[N][K]` per
//!   output channel;
//! - block-128 (DeepSeek-V3): X in 1×128 groups, `[M][ceil(K/128)]` scales; W in 128×128 groups,
//!   `[ceil(N/128)][ceil(K/128)]` scales.
//!
//! The GPU side sits beside it: [`gpu`] launches `kernels/gemm/quantize.cu`, and `case.rs` times
//! one quantization as a case of the gemm suite and checks it against this reference.

pub(super) mod case;
pub mod gpu;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::numeric::Element;

/// The 8-bit formats of quantized GEMM inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantFormat {
    /// FP8 E4M3 (largest finite 448, no infinities).
    E4m3,
    /// FP8 E5M2 (largest finite 57344).
    E5m2,
    /// Signed 8-bit integers, symmetric range [-127, 127].
    Int8,
}

impl QuantFormat {
    pub const ALL: [QuantFormat; 3] = [QuantFormat::E4m3, QuantFormat::E5m2, QuantFormat::Int8];

    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::E4m3 => "e4m3",
            QuantFormat::E5m2 => "e5m2",
            QuantFormat::Int8 => "int8",
        }
    }

    pub fn parse(s: &str) -> Result<QuantFormat> {
        let lower = s.trim().to_ascii_lowercase();
        QuantFormat::ALL
            .into_iter()
            .find(|f| f.name() == lower || (lower == "s8" && *f == QuantFormat::Int8))
            .with_context(|| format!("unknown quantized format `{s}`: one of e4m3, e5m2, int8"))
    }

    /// `FMAX`: the largest finite value, to which a group's amax is scaled.
    pub fn max_value(self) -> f32 {
        match self {
            QuantFormat::E4m3 => 448.0,
            QuantFormat::E5m2 => 57344.0,
            QuantFormat::Int8 => 127.0,
        }
    }

    /// The FP8 element format (None for INT8).
    pub fn fp8(self) -> Option<Element> {
        match self {
            QuantFormat::E4m3 => Some(Element::E4m3),
            QuantFormat::E5m2 => Some(Element::E5m2),
            QuantFormat::Int8 => None,
        }
    }

    /// The code of `y` (a value already divided by its scale): see the module header.
    pub fn encode(self, y: f32) -> u8 {
        match self.fp8() {
            Some(e) => {
                let mut code = [0u8];
                e.encode_to(y, &mut code);
                code[0]
            }
            // `as i32` saturates (as __float2int_rn does); the clamp makes the range symmetric.
            None => (round_half_even(y) as i32).clamp(-127, 127) as i8 as u8,
        }
    }

    /// The value of `code`, before scaling.
    pub fn decode(self, code: u8) -> f32 {
        match self.fp8() {
            Some(e) => e.decode(&[code]),
            None => f32::from(code as i8),
        }
    }

    /// [`QuantFormat::decode`] of every code.
    pub fn decode_table(self) -> [f32; 256] {
        std::array::from_fn(|c| self.decode(c as u8))
    }
}

impl std::fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which GEMM input a matrix is: `Y[M,N] = X[M,K] · W[N,K]ᵀ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operand {
    /// X `[M][K]`: a row per token.
    Activation,
    /// W `[N][K]`: a row per output channel.
    Weight,
}

impl Operand {
    pub fn name(self) -> &'static str {
        match self {
            Operand::Activation => "activation",
            Operand::Weight => "weight",
        }
    }
}

/// The block edge of [`Scheme::Block128`].
pub const BLOCK: usize = 128;

/// How scales are shared (the groups each scale covers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scheme {
    /// One scale per matrix.
    #[serde(rename = "per-tensor")]
    PerTensor,
    /// One scale per row: per token for X, per output channel for W.
    #[serde(rename = "per-token-channel")]
    PerTokenPerChannel,
    /// X in 1×128 groups along K, W in 128×128 blocks (DeepSeek-V3).
    #[serde(rename = "block128")]
    Block128,
}

impl Scheme {
    pub const ALL: [Scheme; 3] = [
        Scheme::PerTensor,
        Scheme::PerTokenPerChannel,
        Scheme::Block128,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scheme::PerTensor => "per-tensor",
            Scheme::PerTokenPerChannel => "per-token-channel",
            Scheme::Block128 => "block128",
        }
    }

    /// The names, or `tensor`, `token`/`channel`/`row`, `block`.
    pub fn parse(s: &str) -> Result<Scheme> {
        let lower = s.trim().to_ascii_lowercase();
        let alias = match lower.as_str() {
            "tensor" => Some(Scheme::PerTensor),
            "token" | "per-token" | "channel" | "per-channel" | "row" | "rowwise" => {
                Some(Scheme::PerTokenPerChannel)
            }
            "block" | "block-128" => Some(Scheme::Block128),
            _ => None,
        };
        alias
            .or_else(|| Scheme::ALL.into_iter().find(|x| x.name() == lower))
            .with_context(|| {
                format!(
                    "unknown scaling scheme `{s}`: one of per-tensor, per-token-channel, block128"
                )
            })
    }

    /// `(group_rows, group_cols)` of the scaling groups of a `rows x cols` operand.
    pub fn group(self, role: Operand, rows: usize, cols: usize) -> (usize, usize) {
        match (self, role) {
            (Scheme::PerTensor, _) => (rows.max(1), cols.max(1)),
            (Scheme::PerTokenPerChannel, _) => (1, cols.max(1)),
            (Scheme::Block128, Operand::Activation) => (1, BLOCK),
            (Scheme::Block128, Operand::Weight) => (BLOCK, BLOCK),
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A quantized operand (layouts in the module header).
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    pub format: QuantFormat,
    pub scheme: Scheme,
    pub role: Operand,
    pub rows: usize,
    pub cols: usize,
    /// `[rows][cols]` codes (INT8 as its two's-complement byte).
    pub data: Vec<u8>,
    /// `[ceil(rows / group_rows)][ceil(cols / group_cols)]`, row-major.
    pub scales: Vec<f32>,
}

impl Quantized {
    /// `(group_rows, group_cols)`, see [`Scheme::group`].
    pub fn group(&self) -> (usize, usize) {
        self.scheme.group(self.role, self.rows, self.cols)
    }

    /// `(groups down, groups across)`: the shape of `scales`.
    pub fn scales_shape(&self) -> (usize, usize) {
        scales_shape(self.scheme, self.role, self.rows, self.cols)
    }

    /// The scale of element `(r, c)`.
    pub fn scale_at(&self, r: usize, c: usize) -> f32 {
        let (gr, gc) = self.group();
        self.scales[(r / gr) * self.scales_shape().1 + c / gc]
    }

    /// `decode(code) * scale` per element, in f32 (one rounding of the product: what a kernel
    /// that dequantizes into f32 registers holds).
    pub fn dequantize(&self) -> Vec<f32> {
        let values = self.format.decode_table();
        self.dequantize_with(|code, scale| values[usize::from(code)] * scale)
    }

    /// `decode(code) * scale` per element, exact (an 8-bit code times an f32 fits in an f64):
    /// the operand an exact GEMM of the quantized inputs sees.
    pub fn dequantize_f64(&self) -> Vec<f64> {
        let values = self.format.decode_table();
        self.dequantize_with(|code, scale| f64::from(values[usize::from(code)]) * f64::from(scale))
    }

    fn dequantize_with<T: Send + Default + Clone>(
        &self,
        f: impl Fn(u8, f32) -> T + Sync,
    ) -> Vec<T> {
        let mut out = vec![T::default(); self.data.len()];
        if self.cols == 0 {
            return out;
        }
        let (gr, gc) = self.group();
        let across = self.scales_shape().1;
        out.par_chunks_mut(self.cols)
            .zip(self.data.par_chunks(self.cols))
            .enumerate()
            .for_each(|(r, (out, codes))| {
                let band = &self.scales[(r / gr) * across..][..across];
                for ((out, codes), &scale) in out.chunks_mut(gc).zip(codes.chunks(gc)).zip(band) {
                    for (o, &code) in out.iter_mut().zip(codes) {
                        *o = f(code, scale);
                    }
                }
            });
        out
    }
}

/// The shape of the scales of a `rows x cols` operand.
pub fn scales_shape(scheme: Scheme, role: Operand, rows: usize, cols: usize) -> (usize, usize) {
    if scheme == Scheme::PerTensor {
        return (1, 1);
    }
    let (gr, gc) = scheme.group(role, rows, cols);
    (rows.div_ceil(gr), cols.div_ceil(gc))
}

/// `y` rounded to an integer, ties to even: `f32::round_ties_even`, which without SSE4.1 is a
/// call into libm. Below 2^23, `|y| + 2^23` lies in [2^23, 2^24), where f32's spacing is 1, so
/// the addition rounds |y| to an integer (nearest even); from 2^23 on every f32 is an integer.
fn round_half_even(y: f32) -> f32 {
    const TWO_23: f32 = 8_388_608.0;
    let a = y.abs();
    if a < TWO_23 {
        ((a + TWO_23) - TWO_23).copysign(y)
    } else {
        y
    }
}

/// The scale of a group whose largest magnitude is `amax`.
pub fn group_scale(amax: f32, format: QuantFormat) -> f32 {
    if amax > 0.0 {
        amax / format.max_value()
    } else {
        1.0
    }
}

/// The code of `x` under `scale`.
pub fn quantize_value(x: f32, scale: f32, format: QuantFormat) -> u8 {
    format.encode(x / scale)
}

/// Quantizes the row-major `[rows][cols]` matrix `x` (see the module header).
///
/// # Panics
/// If `x` does not hold `rows * cols` values.
pub fn quantize(
    x: &[f32],
    rows: usize,
    cols: usize,
    role: Operand,
    format: QuantFormat,
    scheme: Scheme,
) -> Quantized {
    assert_eq!(
        x.len(),
        rows * cols,
        "quantize: {rows}x{cols} needs {} values",
        rows * cols
    );
    let (gr, gc) = scheme.group(role, rows, cols);
    let (down, across) = scales_shape(scheme, role, rows, cols);
    // amax per group: the bands of `gr` rows in parallel, each band's rows in order.
    let mut amax = vec![0f32; down * across];
    if cols > 0 {
        amax.par_chunks_mut(across)
            .enumerate()
            .for_each(|(band, maxima)| {
                let band_rows = band * gr..((band + 1) * gr).min(rows);
                for row in x[band_rows.start * cols..band_rows.end * cols].chunks(cols) {
                    for (m, group) in maxima.iter_mut().zip(row.chunks(gc)) {
                        *m = group.iter().fold(*m, |a, v| a.max(v.abs()));
                    }
                }
            });
    }
    let scales: Vec<f32> = amax.iter().map(|&a| group_scale(a, format)).collect();
    let mut data = vec![0u8; x.len()];
    if cols > 0 {
        data.par_chunks_mut(cols)
            .zip(x.par_chunks(cols))
            .enumerate()
            .for_each(|(r, (codes, row))| {
                let band = &scales[(r / gr) * across..][..across];
                for ((codes, group), &scale) in codes.chunks_mut(gc).zip(row.chunks(gc)).zip(band) {
                    for (code, &v) in codes.iter_mut().zip(group) {
                        *code = quantize_value(v, scale, format);
                    }
                }
            });
    }
    Quantized {
        format,
        scheme,
        role,
        rows,
        cols,
        data,
        scales,
    }
}

/// `v` rounded to BF16 (nearest even), as f32: what a BF16 tensor holds.
pub fn round_bf16(v: f32) -> f32 {
    half::bf16::from_f32(v).to_f32()
}

/// `v` rounded once to BF16 (nearest even, overflow to ±inf), as f64: an exact value's BF16
/// output. Not `half::bf16::from_f64`, which drops the low 32 bits of the f64 before rounding
/// (a tie in the kept bits then ignores the dropped ones), nor a detour through f32 (two
/// roundings).
pub fn round_bf16_f64(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    // The quantum at v: 2^(e - 7) for 8 significant bits, e the binary exponent of |v|, never
    // below the subnormal quantum 2^-133. Dividing by a power of two is exact here.
    let e = ((v.abs().to_bits() >> 52) as i32 - 1023).max(-126);
    let quantum = 2f64.powi(e - 7);
    let rounded = (v / quantum).round_ties_even() * quantum;
    // Largest finite bf16: (2 - 2^-7) * 2^127; beyond it RNE overflows.
    let max = (2.0 - 2f64.powi(-7)) * 2f64.powi(127);
    if rounded.abs() > max {
        f64::INFINITY.copysign(v)
    } else {
        rounded
    }
}

#[cfg(test)]
mod tests;
