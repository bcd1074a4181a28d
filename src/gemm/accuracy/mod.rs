//! What quantizing a GEMM's inputs costs in accuracy, on the CPU: the report needs no GPU.
//!
//! For each shape `Y[M,N] = X[M,K] · W[N,K]ᵀ`, each data kind (X from [`DataKind`], W Gaussian,
//! all BF16 values) and each format × scheme, X and W are quantized by [`quantize`] (the
//! arithmetic the GPU quantizer reproduces bit for bit), and three f64 GEMMs are compared:
//! - `R` = X · Wᵀ of the original (BF16) inputs;
//! - `D` = X̃ · W̃ᵀ of the dequantized inputs (`code * scale`, exact in f64);
//! - `T` = round_bf16(`D`): the BF16 output of a kernel that accumulates exactly.
//!
//! Each row gives two sets of metrics ([`Metrics`]: SQNR in dB, relative Frobenius error, cosine
//! similarity, max abs error):
//! - `kernel_*`: `T` against `D`, the kernel's own error. For this ideal kernel it is the BF16
//!   output rounding alone (about 55.6 dB; never below 48.2 dB, as each element is off by at most
//!   2^-8 of itself): the floor. A real kernel's output (FP8 tensor-core accumulation, f32
//!   epilogue) is to be compared with the same `D`;
//! - `quant_*`: `T` against `R`: what quantization (and the output rounding) loses.
//!
//! A `bf16` row per shape and data (scheme `none`) is the unquantized baseline: BF16 inputs, an
//! exact accumulation, BF16 output, so `T` = round_bf16(`R`) in both sets.
//!
//! To keep the report on two cores well under a minute, only the first `n_evaluated` =
//! min(N, [`ReportOptions::max_n`]) output channels (rows of W) are computed. W's rows are iid,
//! so they are a sample of the full output; the per-tensor W scale is then the amax of those
//! rows (a full W's is a few percent larger: the maximum of more Gaussian samples).

mod command;
mod data;
mod output;
#[cfg(test)]
mod tests;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;

pub use crate::report::write_rows_csv as write_csv;
pub use command::GemmAccuracy;
pub use data::{
    gaussian, outlier_channels, outliers, weights, DataKind, OutlierPattern, OUTLIER_FACTOR,
    OUTLIER_SHARE,
};
pub use output::{render_table, sqnr_svg};

use super::quant::{quantize, round_bf16_f64, Operand, QuantFormat, Scheme};
use crate::numeric::splitmix64;

/// Linear layers of real models, `(name, N, K)`: W is `[N][K]` (output × input features).
/// Llama 3 8B: hidden 4096, 32 q / 8 kv heads of 128, MLP 14336; 70B: hidden 8192, 64 q / 8 kv
/// heads, MLP 28672 (q, k, v and gate, up fused). DeepSeek-V3: hidden 7168; MLA projections
/// (q_a 1536 fused with kv_a 512 + rope 64, q_b to 128 heads × 192, kv_b from 512 to 128 heads ×
/// 256, o from 128 × 128), and the dense MLP of its first three layers (18432).
pub const MODEL_SHAPES: [(&str, usize, usize); 14] = [
    ("llama3-8b-qkv", 6144, 4096),
    ("llama3-8b-o", 4096, 4096),
    ("llama3-8b-gateup", 28672, 4096),
    ("llama3-8b-down", 4096, 14336),
    ("llama3-70b-qkv", 10240, 8192),
    ("llama3-70b-o", 8192, 8192),
    ("llama3-70b-gateup", 57344, 8192),
    ("llama3-70b-down", 8192, 28672),
    ("deepseek-v3-qkv-a", 2112, 7168),
    ("deepseek-v3-q-b", 24576, 1536),
    ("deepseek-v3-kv-b", 32768, 512),
    ("deepseek-v3-o", 7168, 16384),
    ("deepseek-v3-gateup", 36864, 7168),
    ("deepseek-v3-down", 7168, 18432),
];

/// The shapes of the quick report.
pub const QUICK_SHAPES: [&str; 3] = ["llama3-8b-qkv", "llama3-8b-down", "deepseek-v3-kv-b"];
/// Tokens (M) of the named shapes: a prefill chunk (quick: a decode batch).
pub const DEFAULT_TOKENS: usize = 128;
pub const QUICK_TOKENS: usize = 32;
/// Most tokens (M) of a named shape (`--tokens`): a long prefill chunk.
pub const MAX_TOKENS: u64 = 65_536;
/// Most elements of X (`M x K`) the CPU report holds: 2^24, 16 Mi, so every data kind's X in f32
/// and f64 stays near 1 GiB together (Llama-3-70B's down projection takes 585 tokens).
pub const MAX_CPU_ELEMENTS: usize = 1 << 24;
/// Output channels evaluated per shape (see the module header).
pub const DEFAULT_MAX_N: usize = 512;
pub const QUICK_MAX_N: usize = 256;

/// One GEMM problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GemmShape {
    pub name: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl GemmShape {
    /// A shape of [`MODEL_SHAPES`] with `m` tokens.
    pub fn named(name: &str, m: usize) -> Result<GemmShape> {
        let Some(&(name, n, k)) = MODEL_SHAPES.iter().find(|s| s.0 == name) else {
            let names: Vec<&str> = MODEL_SHAPES.iter().map(|s| s.0).collect();
            bail!(
                "unknown shape `{name}`: one of {}, or MxNxK",
                names.join(", ")
            );
        };
        Ok(GemmShape {
            name: name.to_string(),
            m,
            n,
            k,
        })
    }

    /// Whether the CPU report can hold this shape: X (`M x K`, f32 and f64, per data kind) is
    /// the largest operand, as only the first output channels of W are evaluated. Checked from
    /// the sizes, before anything is allocated.
    pub fn check_cpu_size(&self) -> Result<()> {
        let x = self
            .m
            .checked_mul(self.k)
            .filter(|&e| e <= MAX_CPU_ELEMENTS);
        if self.m == 0 || x.is_none() {
            bail!(
                "shape {} ({}x{}x{}): the CPU report holds 1..={MAX_CPU_ELEMENTS} elements of \
                 X (M x K); use fewer tokens (--tokens) or a smaller K",
                self.name,
                self.m,
                self.n,
                self.k
            );
        }
        Ok(())
    }

    /// A model shape's name (with `m` tokens) or `MxNxK`.
    pub fn parse(spec: &str, m: usize) -> Result<GemmShape> {
        let spec = spec.trim();
        let dims: Vec<&str> = spec.split(['x', 'X']).collect();
        if dims.len() != 3 {
            return GemmShape::named(spec, m);
        }
        let dim = |s: &str| -> Result<usize> {
            let v: usize = s
                .trim()
                .parse()
                .with_context(|| format!("shape `{spec}`: `{s}` is not a size"))?;
            if v == 0 {
                bail!("shape `{spec}`: sizes must be positive");
            }
            Ok(v)
        };
        Ok(GemmShape {
            name: spec.to_string(),
            m: dim(dims[0])?,
            n: dim(dims[1])?,
            k: dim(dims[2])?,
        })
    }
}

/// The shapes of the default report.
pub fn default_shapes(quick: bool) -> Vec<GemmShape> {
    let (names, m): (Vec<&str>, usize) = if quick {
        (QUICK_SHAPES.to_vec(), QUICK_TOKENS)
    } else {
        (MODEL_SHAPES.iter().map(|s| s.0).collect(), DEFAULT_TOKENS)
    };
    names
        .into_iter()
        .map(|n| GemmShape::named(n, m).expect("listed shapes exist"))
        .collect()
}

/// How close an output is to a reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// `10 log10(Σ ref² / Σ (out - ref)²)`; +inf when they are equal.
    pub sqnr_db: f64,
    /// `‖out - ref‖ / ‖ref‖` (Frobenius).
    pub rel_fro: f64,
    /// `⟨out, ref⟩ / (‖out‖ ‖ref‖)`.
    pub cosine: f64,
    /// `max |out - ref|`.
    pub max_abs: f64,
}

/// The [`Metrics`] of `out` against `reference` (same length).
pub fn metrics(out: &[f64], reference: &[f64]) -> Metrics {
    assert_eq!(out.len(), reference.len(), "metrics of unequal lengths");
    let (mut signal, mut noise, mut dot, mut out_sq, mut max_abs) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (&o, &r) in out.iter().zip(reference) {
        let e = o - r;
        signal += r * r;
        noise += e * e;
        dot += o * r;
        out_sq += o * o;
        max_abs = max_abs.max(e.abs());
    }
    Metrics {
        sqnr_db: 10.0 * (signal / noise).log10(),
        rel_fro: (noise / signal).sqrt(),
        cosine: dot / (out_sq.sqrt() * signal.sqrt()),
        max_abs,
    }
}

/// `X[m][k] · W[n][k]ᵀ` in f64 (candle's CPU matmul), `[m][n]`. Takes the operands by value:
/// candle then owns them without a copy.
pub fn gemm_f64(x: Vec<f64>, w: Vec<f64>, m: usize, n: usize, k: usize) -> Result<Vec<f64>> {
    assert!(
        x.len() == m * k && w.len() == n * k,
        "gemm_f64: operands do not match {m}x{n}x{k}"
    );
    let cpu = Device::Cpu;
    let x = Tensor::from_vec(x, (m, k), &cpu)?;
    let w = Tensor::from_vec(w, (n, k), &cpu)?;
    Ok(x.matmul(&w.t()?)?.flatten_all()?.to_vec1::<f64>()?)
}

/// One line of the report: a shape, a data kind, and a format × scheme (or the BF16 baseline).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccuracyRow {
    pub shape: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Output channels computed: the first `n_evaluated` rows of W.
    pub n_evaluated: usize,
    pub data: String,
    /// The quantized format, or `bf16` for the unquantized baseline.
    pub format: String,
    /// The scaling scheme, or `none` for the baseline.
    pub scheme: String,
    /// RMS of the reference output `R`: the scale `max_abs` compares with.
    pub y_rms: f64,
    /// BF16 output against the f64 GEMM of the dequantized inputs: the kernel's own error.
    pub kernel_sqnr_db: f64,
    pub kernel_rel_fro: f64,
    pub kernel_cosine: f64,
    pub kernel_max_abs: f64,
    /// BF16 output against the f64 GEMM of the original inputs: the quantization error.
    pub quant_sqnr_db: f64,
    pub quant_rel_fro: f64,
    pub quant_cosine: f64,
    pub quant_max_abs: f64,
}

/// The baseline's format and scheme labels.
pub const BASELINE_FORMAT: &str = "bf16";
pub const BASELINE_SCHEME: &str = "none";

/// What [`report`] evaluates.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Empty: [`default_shapes`] (quick or full).
    pub shapes: Vec<GemmShape>,
    pub data: Vec<DataKind>,
    /// The outlier channels of [`DataKind::Outliers`] (default: 1% of K at 50-100×).
    pub outliers: OutlierPattern,
    pub formats: Vec<QuantFormat>,
    pub schemes: Vec<Scheme>,
    /// Most output channels computed per shape (None: [`DEFAULT_MAX_N`], quick
    /// [`QUICK_MAX_N`]; `usize::MAX` for all).
    pub max_n: Option<usize>,
    pub seed: u64,
    /// Fewer shapes, fewer tokens and output channels.
    pub quick: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            shapes: Vec::new(),
            data: DataKind::ALL.to_vec(),
            outliers: OutlierPattern::default(),
            formats: QuantFormat::ALL.to_vec(),
            schemes: Scheme::ALL.to_vec(),
            max_n: None,
            seed: 1,
            quick: false,
        }
    }
}

/// A seed for one input of one shape: the same whatever else the report holds.
fn input_seed(seed: u64, shape: &GemmShape, tag: &str) -> u64 {
    let text = format!("{}:{}x{}x{}:{tag}", shape.name, shape.m, shape.n, shape.k);
    text.bytes()
        .fold(splitmix64(seed), |h, b| splitmix64(h ^ u64::from(b)))
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn rms(v: &[f64]) -> f64 {
    (v.iter().map(|x| x * x).sum::<f64>() / v.len().max(1) as f64).sqrt()
}

/// The rows of one shape: per data kind, the baseline then every format × scheme.
pub fn evaluate_shape(shape: &GemmShape, o: &ReportOptions) -> Result<Vec<AccuracyRow>> {
    let max_n = o
        .max_n
        .unwrap_or(if o.quick { QUICK_MAX_N } else { DEFAULT_MAX_N });
    let (m, k, n) = (shape.m, shape.k, shape.n.min(max_n.max(1)));
    let w = weights(n, k, input_seed(o.seed, shape, "w"));
    // Per data kind: X and the reference R.
    // The activations of every data kind, stacked into one `[kinds * m][k]` operand: one GEMM
    // per W serves them all (and runs more efficiently than several short ones).
    let xs: Vec<Vec<f32>> = o
        .data
        .iter()
        .map(|d| d.activations(m, k, input_seed(o.seed, shape, d.name()), &o.outliers))
        .collect();
    let stacked = o.data.len() * m;
    let x64: Vec<f64> = xs.iter().flat_map(|x| widen(x)).collect();
    let reference = gemm_f64(x64, widen(&w), stacked, n, k)?;
    let row = |d: DataKind, format: &str, scheme: &str, r: &[f64], d_out: &[f64]| {
        let t: Vec<f64> = d_out.iter().map(|&v| round_bf16_f64(v)).collect();
        let (own, quant) = (metrics(&t, d_out), metrics(&t, r));
        AccuracyRow {
            shape: shape.name.clone(),
            m,
            n: shape.n,
            k,
            n_evaluated: n,
            data: d.label(&o.outliers),
            format: format.to_string(),
            scheme: scheme.to_string(),
            y_rms: rms(r),
            kernel_sqnr_db: own.sqnr_db,
            kernel_rel_fro: own.rel_fro,
            kernel_cosine: own.cosine,
            kernel_max_abs: own.max_abs,
            quant_sqnr_db: quant.sqnr_db,
            quant_rel_fro: quant.rel_fro,
            quant_cosine: quant.cosine,
            quant_max_abs: quant.max_abs,
        }
    };
    let (kinds, mn) = (&o.data, m * n);
    let mut per_data: Vec<Vec<AccuracyRow>> = kinds
        .iter()
        .zip(reference.chunks(mn))
        .map(|(&d, r)| vec![row(d, BASELINE_FORMAT, BASELINE_SCHEME, r, r)])
        .collect();
    for &format in &o.formats {
        for &scheme in &o.schemes {
            let qw = quantize(&w, n, k, Operand::Weight, format, scheme).dequantize_f64();
            let qx: Vec<f64> = xs
                .iter()
                .flat_map(|x| {
                    quantize(x, m, k, Operand::Activation, format, scheme).dequantize_f64()
                })
                .collect();
            let d_out = gemm_f64(qx, qw, stacked, n, k)?;
            let outputs = d_out.chunks(mn).zip(reference.chunks(mn));
            for ((&d, (d_out, r)), rows) in kinds.iter().zip(outputs).zip(&mut per_data) {
                rows.push(row(d, format.name(), scheme.name(), r, d_out));
            }
        }
    }
    Ok(per_data.into_iter().flatten().collect())
}

/// Every shape of `o` (or the defaults), in order.
pub fn report(o: &ReportOptions) -> Result<Vec<AccuracyRow>> {
    let shapes = if o.shapes.is_empty() {
        default_shapes(o.quick)
    } else {
        o.shapes.clone()
    };
    // Every shape before the first is evaluated: a shape too large is an error in a second, not
    // after minutes of the others (or an aborted allocation).
    for shape in &shapes {
        shape.check_cpu_size()?;
    }
    let mut rows = Vec::new();
    for shape in &shapes {
        rows.extend(evaluate_shape(shape, o)?);
    }
    Ok(rows)
}
