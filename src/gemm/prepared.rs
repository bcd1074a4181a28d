//! A GEMM case on the device: seeded BF16 inputs, quantized on the GPU by the quantizers of
//! [`super::quant::gpu`], our kernels (one variant per path) and cuBLASLt beside them, each
//! verified against an f64 CPU reference and scored for accuracy.
//!
//! Verification: Y is pre-filled with NaN (and a guard band after it), the variant runs once,
//! and then (1) every element of Y must be finite and the guard untouched, and (2) sampled
//! elements (all of them for small problems) must match the exact result of the *dequantized*
//! inputs, rounded once to BF16, within a bound derived from the accumulation's rounding (see
//! [`Accumulation`]) and the BF16 output. The same samples give the accuracy deltas: SQNR and
//! relative error against the dequantized inputs (the kernel's own error) and against the
//! original BF16 inputs (what quantization costs).

use anyhow::{Context, Result};
use rand::seq::index::sample;
use rand::Rng;
use rayon::prelude::*;

use super::accuracy::{metrics, weights};
use super::config::{GemmConfig, PathChoice};
use super::paths::{self, Accumulation, Inputs, Operands};
use super::quant::gpu::quantize_to_device;
use super::quant::{round_bf16_f64, Operand, QuantFormat, Quantized, Scheme};
use crate::gpu::cublaslt::{
    variant_label, LtAccumulation, LtGemm, LtPrecision, LtScales, LtScaling,
};
use crate::gpu::{Buffer, Gpu, GpuResult};
use crate::suite::{AccuracyDelta, Check, LaunchFn, Provider, Variant, Variants};

/// BF16 NaN in both halves of a word: the poison of Y.
const NAN_BF16_PAIR: u32 = 0x7fc0_7fc0;
/// Elements after Y that must stay NaN (a kernel writing past the end fails).
const GUARD: usize = 256;
/// Problems up to this many multiply-adds are checked in full; larger ones on samples.
const FULL_CHECK_MACS: usize = 1 << 27;
/// Rows and columns sampled from larger problems (plus the first and last of each).
const SAMPLE_ROWS: usize = 24;
const SAMPLE_COLS: usize = 256;

/// The host copies the reference needs.
struct HostOperands {
    /// The original BF16 values (as f32), `[M][K]` and `[N][K]`.
    x: Vec<f32>,
    w: Vec<f32>,
    /// The codes and scales the kernels read, brought back from the GPU quantizer.
    xq: Option<Quantized>,
    wq: Option<Quantized>,
    bias: Vec<f32>,
}

impl HostOperands {
    /// Row `r` of X as the kernels see it, exactly (a code times an f32 scale fits an f64).
    fn x_row(&self, r: usize, k: usize) -> Vec<f64> {
        dequantized_row(self.xq.as_ref(), &self.x, r, k)
    }

    fn w_row(&self, c: usize, k: usize) -> Vec<f64> {
        dequantized_row(self.wq.as_ref(), &self.w, c, k)
    }
}

fn dequantized_row(q: Option<&Quantized>, original: &[f32], r: usize, k: usize) -> Vec<f64> {
    match q {
        None => original[r * k..(r + 1) * k]
            .iter()
            .map(|&v| f64::from(v))
            .collect(),
        Some(q) => (0..k)
            .map(|c| f64::from(q.format.decode(q.data[r * k + c])) * f64::from(q.scale_at(r, c)))
            .collect(),
    }
}

/// Where a variant writes Y and how it rounds, for its verification.
#[derive(Debug, Clone, Copy)]
enum Output {
    /// Our kernels: Y in bf16, accumulated as the kernel says.
    Ours(Accumulation),
    /// cuBLASLt's D: bf16, or for INT8 the raw i32 dot products of the codes (no dequantizing
    /// epilogue); bf16 accumulated as the plan's accumulation allows.
    CublasLt {
        int32_out: bool,
        accumulation: Accumulation,
    },
}

/// The rounding a cuBLASLt plan's accumulation allows: fast FP8 accumulation keeps the sum in
/// the tensor core's accumulator, as our unpromoted wgmma kernels do.
fn lt_accumulation_bound(accumulation: LtAccumulation) -> Accumulation {
    match accumulation {
        LtAccumulation::Default => Accumulation::F32,
        LtAccumulation::Fast => Accumulation::HOPPER_FP8,
    }
}

pub struct PreparedGemm {
    config: GemmConfig,
    host: HostOperands,
    x: Buffer<u8>,
    w: Buffer<u8>,
    y: Buffer<u16>,
    scale_x: Option<Buffer<f32>>,
    scale_w: Option<Buffer<f32>>,
    bias: Option<Buffer<u16>>,
    /// cuBLASLt's D (bf16 or i32), with the guard band.
    lt_out: Option<Buffer<u8>>,
}

fn bf16_bits(v: &[f32]) -> Vec<u16> {
    v.par_iter()
        .map(|&x| half::bf16::from_f32(x).to_bits())
        .collect()
}

fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(&bf16_bits(v)).to_vec()
}

/// Device bytes of a prepared case (inputs in BF16 and quantized, Y, scales, cuBLASLt's D and
/// one workspace per cuBLASLt plan).
pub fn device_bytes(c: &GemmConfig) -> u64 {
    let (m, n, k) = (c.shape.m, c.shape.n, c.shape.k);
    let bf16_inputs = 2 * (m * k + n * k);
    let codes = m * k + n * k;
    let outputs = 2 * (m * n + GUARD) + 4 * (m * n + GUARD);
    (bf16_inputs + codes + outputs) as u64
        + c.scale_bytes(Operand::Activation)
        + c.scale_bytes(Operand::Weight)
        + (crate::gpu::cublaslt::WORKSPACE_BYTES * lt_plans(c)) as u64
}

/// cuBLASLt plans a case makes: one per accumulation of its precision (none without cuBLASLt).
fn lt_plans(c: &GemmConfig) -> usize {
    match cublaslt_mapping(c) {
        Ok((precision, _)) if c.cublaslt => precision.accumulations().len(),
        _ => 0,
    }
}

/// cuBLASLt's precision and scaling for a case, or why it has none.
fn cublaslt_mapping(c: &GemmConfig) -> std::result::Result<(LtPrecision, LtScaling), String> {
    match (c.inputs, c.scheme) {
        (Inputs::Bf16, _) => Ok((LtPrecision::Bf16, LtScaling::None)),
        (Inputs::WeightOnly(_), _) => {
            Err("cuBLASLt has no mixed BF16 x 8-bit (weight-only) GEMM".into())
        }
        (Inputs::Quantized(QuantFormat::E5m2), _) => {
            Err("cuBLASLt has no E5M2 x E5M2 GEMM (only mixed with E4M3)".into())
        }
        (Inputs::Quantized(QuantFormat::Int8), Some(Scheme::Block128)) => {
            Err("cuBLASLt INT8 has no block scales".into())
        }
        // The i32 result is checked against the codes' exact dot products and scaled on the
        // host for the accuracy delta: the scales cost a dequantizing pass it does not time.
        (Inputs::Quantized(QuantFormat::Int8), _) => Ok((LtPrecision::Int8, LtScaling::None)),
        (Inputs::Quantized(QuantFormat::E4m3), Some(Scheme::PerTensor)) => {
            Ok((LtPrecision::Fp8E4m3, LtScaling::PerTensor))
        }
        (Inputs::Quantized(QuantFormat::E4m3), Some(Scheme::PerTokenPerChannel)) => {
            Ok((LtPrecision::Fp8E4m3, LtScaling::Outer))
        }
        (Inputs::Quantized(QuantFormat::E4m3), Some(Scheme::Block128)) => {
            Ok((LtPrecision::Fp8E4m3, LtScaling::Block128))
        }
        (Inputs::Quantized(_), None) => Err("a quantized case without a scheme".into()),
    }
}

impl PreparedGemm {
    /// Inputs quantized on the GPU; our kernels (one variant per path chosen) and cuBLASLt.
    pub fn prepare(gpu: &Gpu, c: &GemmConfig) -> Result<Variants<PreparedGemm>> {
        let (m, n, k) = (c.shape.m, c.shape.n, c.shape.k);
        let mut rng = rand::rng();
        let x = c.data.activations(m, k, rng.random(), &c.outliers);
        let w = weights(n, k, rng.random());
        let bias: Vec<f32> = if c.bias {
            super::accuracy::gaussian(1, n, rng.random())
        } else {
            Vec::new()
        };
        let (xd, scale_x, xq) = match c.inputs {
            Inputs::Quantized(f) => {
                let (d, s, q) = quantize_to_device(
                    gpu,
                    &bf16_bits(&x),
                    m,
                    k,
                    Operand::Activation,
                    f,
                    c.scheme.context("scheme")?,
                )?;
                (d, Some(s), Some(q))
            }
            _ => (gpu.upload(&bf16_bytes(&x))?, None, None),
        };
        let (wd, scale_w, wq) = match c.inputs.format() {
            Some(f) => {
                let (d, s, q) = quantize_to_device(
                    gpu,
                    &bf16_bits(&w),
                    n,
                    k,
                    Operand::Weight,
                    f,
                    c.scheme.context("scheme")?,
                )?;
                (d, Some(s), Some(q))
            }
            None => (gpu.upload(&bf16_bytes(&w))?, None, None),
        };
        let bias_d = if c.bias {
            Some(gpu.upload(&bf16_bits(&bias))?)
        } else {
            None
        };
        // Even length: the NaN fill writes whole 32-bit words.
        let y = gpu.alloc::<u16>((m * n + GUARD).next_multiple_of(2))?;
        let host = HostOperands { x, w, xq, wq, bias };

        let mut variants: Vec<Variant<PreparedGemm>> = Vec::new();
        let arch = gpu.info().compute_capability;
        let problem = c.problem();
        // `all`: every path that takes the problem (one row with every reason if none does).
        let chosen: Vec<std::result::Result<&'static dyn paths::GemmPath, String>> = match &c.path {
            PathChoice::Auto => vec![paths::auto(&problem, arch)],
            PathChoice::All => {
                let fit: Vec<_> = paths::all()
                    .into_iter()
                    .filter(|p| p.supports(&problem, arch).is_ok())
                    .map(Ok)
                    .collect();
                if fit.is_empty() {
                    vec![paths::auto(&problem, arch)]
                } else {
                    fit
                }
            }
            PathChoice::Named(name) => vec![paths::by_name(name).map_err(|e| e.to_string())],
        };
        for choice in chosen {
            let name = choice.as_ref().map_or("roofbench", |p| p.name());
            let prepared = choice.and_then(|path| {
                path.supports(&problem, arch)
                    .map_err(|why| format!("{}: {why}", path.name()))?;
                path.prepare(gpu, &problem)
                    .map_err(|e| format!("{}: {e:#}", path.name()))
            });
            variants.push(match prepared {
                Ok(mut launch) => {
                    let output = Output::Ours(launch.accumulation());
                    Variant::new(
                        launch.describe(),
                        Provider::Roofbench,
                        move |s: &mut PreparedGemm, gpu| launch.enqueue(gpu, &s.operands()),
                        move |s, gpu, run| s.verify(gpu, run, output),
                    )
                }
                Err(why) => Variant::unavailable(name, Provider::Roofbench, why),
            });
        }

        // cuBLASLt once per accumulation it offers (FP8: promoted and fast), so that each of our
        // kernels has a vendor row that sums the same way; the variants share one D.
        let mut lt_out = None;
        match cublaslt_mapping(c) {
            _ if !c.cublaslt => {}
            Err(why) => variants.push(Variant::unavailable("cublasLt", Provider::CublasLt, why)),
            Ok((precision, scaling)) => {
                let int32_out = precision == LtPrecision::Int8;
                for &accumulation in precision.accumulations() {
                    let label = variant_label(precision, accumulation);
                    let scales = match (&host.xq, &host.wq) {
                        (Some(xq), Some(wq)) if scaling != LtScaling::None => Some(LtScales {
                            a: &wq.scales,
                            b: &xq.scales,
                        }),
                        _ => None,
                    };
                    // Y[M][N] row-major is cuBLASLt's D (N x M, column-major) of A = W, B = X.
                    let planned = gpu.cublaslt().and_then(|lt| {
                        lt.plan_scaled(
                            gpu,
                            precision,
                            n,
                            m,
                            k,
                            scaling,
                            scales,
                            c.bias,
                            accumulation,
                        )
                    });
                    variants.push(match planned {
                        Ok(mut gemm) => {
                            if lt_out.is_none() {
                                let elem = if int32_out { 4 } else { 2 };
                                let bytes = ((m * n + GUARD) * elem).next_multiple_of(4);
                                lt_out = Some(gpu.alloc::<u8>(bytes)?);
                            }
                            let output = Output::CublasLt {
                                int32_out,
                                accumulation: lt_accumulation_bound(accumulation),
                            };
                            Variant::new(
                                label,
                                Provider::CublasLt,
                                move |s: &mut PreparedGemm, gpu| s.run_cublaslt(gpu, &mut gemm),
                                move |s, gpu, run| s.verify(gpu, run, output),
                            )
                        }
                        Err(e) => Variant::unavailable(label, Provider::CublasLt, e.to_string()),
                    });
                }
            }
        }
        let state = PreparedGemm {
            config: c.clone(),
            host,
            x: xd,
            w: wd,
            y,
            scale_x,
            scale_w,
            bias: bias_d,
            lt_out,
        };
        Ok(Variants::new(state, variants))
    }

    /// What our kernels read and write.
    fn operands(&self) -> Operands<'_> {
        Operands {
            x: &self.x,
            w: &self.w,
            y: &self.y,
            scale_x: self.scale_x.as_ref(),
            scale_w: self.scale_w.as_ref(),
            bias: self.bias.as_ref(),
        }
    }

    fn run_cublaslt(&mut self, gpu: &Gpu, gemm: &mut LtGemm) -> GpuResult<()> {
        let out = self
            .lt_out
            .as_mut()
            .expect("cuBLASLt output allocated with its plan");
        gemm.run_with_bias(gpu, &self.w, &self.x, out, self.bias.as_ref())
    }

    /// Rows and columns of Y to check: all of a small problem; else the first and last, the
    /// last eight columns (a partial tile of any width up to 8), and random ones.
    fn sample(&self) -> (Vec<usize>, Vec<usize>) {
        let (m, n, k) = (
            self.config.shape.m,
            self.config.shape.n,
            self.config.shape.k,
        );
        if m * n * k <= FULL_CHECK_MACS {
            return ((0..m).collect(), (0..n).collect());
        }
        let mut rng = rand::rng();
        let pick = |len: usize, count: usize, rng: &mut rand::rngs::ThreadRng| {
            let mut v: Vec<usize> = sample(rng, len, count.min(len)).into_vec();
            v.extend([0, len - 1]);
            v.extend(len.saturating_sub(8)..len);
            v.sort_unstable();
            v.dedup();
            v
        };
        let rows = pick(m, SAMPLE_ROWS, &mut rng);
        let cols = pick(n, SAMPLE_COLS, &mut rng);
        (rows, cols)
    }
}

/// One checked element: the exact values and the bound of the kernel's error.
struct Expected {
    /// Σ dequantized products + bias, exact (f64).
    exact: f64,
    /// Σ original (BF16) products + bias: what an unquantized GEMM computes.
    original: f64,
    /// Σ |dequantized products| (for the accumulation bound).
    abs_sum: f64,
    /// The integer dot product of INT8 codes (cuBLASLt's i32 output).
    codes_dot: Option<i64>,
}

impl PreparedGemm {
    fn verify(&mut self, gpu: &Gpu, launch: &mut LaunchFn<Self>, output: Output) -> Result<Check> {
        let (m, n, k) = (
            self.config.shape.m,
            self.config.shape.n,
            self.config.shape.k,
        );
        let (accumulation, int32_out, lt) = match output {
            Output::Ours(accumulation) => (accumulation, false, false),
            Output::CublasLt {
                int32_out,
                accumulation,
            } => (accumulation, int32_out, true),
        };
        if lt {
            let out = self.lt_out.as_mut().context("cuBLASLt output")?;
            gpu.memset_u32(
                out,
                if int32_out {
                    0x7fc0_0000
                } else {
                    NAN_BF16_PAIR
                },
            )?;
        } else {
            gpu.memset_u32(&mut self.y, NAN_BF16_PAIR)?;
        }
        launch(self, gpu)?;
        gpu.synchronize()?;
        // Y as f64 values (i32 for cuBLASLt INT8), with the guard band.
        // Y as downloaded (bf16 bits, or cuBLASLt's bytes), read element by element: a Y of
        // 16384 x 28672 widened to f64 up front would take 3.7 GB of host memory.
        let bytes: Vec<u8> = if lt {
            gpu.download(self.lt_out.as_ref().context("cuBLASLt output")?)?
        } else {
            bytemuck::cast_slice(&gpu.download(&self.y)?).to_vec()
        };
        let got = |i: usize| -> f64 {
            if int32_out {
                let b = &bytes[4 * i..4 * i + 4];
                f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            } else {
                f64::from(half::bf16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32())
            }
        };
        // The NaN poison of i32 output is the bit pattern 0x7fc00000, an impossible dot product
        // at these sizes; as f64 it is 2143289344.
        let poison = |v: f64| {
            if int32_out {
                v == f64::from(0x7fc0_0000u32 as i32)
            } else {
                !v.is_finite()
            }
        };
        if let Some(i) = (0..m * n).into_par_iter().find_first(|&i| poison(got(i))) {
            return Ok(failed(format!(
                "Y[{}][{}] was not written (still NaN) or is not finite",
                i / n,
                i % n
            )));
        }
        if let Some(i) = (m * n..m * n + GUARD).find(|&i| !poison(got(i))) {
            return Ok(failed(format!(
                "wrote past the end of Y ({} elements after it)",
                i - m * n + 1
            )));
        }

        let (rows, cols) = self.sample();
        let host = &self.host;
        let w_rows: Vec<(Vec<f64>, &[f32])> = cols
            .par_iter()
            .map(|&c| (host.w_row(c, k), &host.w[c * k..(c + 1) * k]))
            .collect();
        let codes_dot = |r: usize, c: usize| -> Option<i64> {
            match (&host.xq, &host.wq) {
                (Some(xq), Some(wq)) if xq.format == QuantFormat::Int8 => Some(
                    (0..k)
                        .map(|j| {
                            i64::from(xq.data[r * k + j] as i8)
                                * i64::from(wq.data[c * k + j] as i8)
                        })
                        .sum(),
                ),
                _ => None,
            }
        };
        let expected: Vec<(usize, usize, Expected)> = rows
            .par_iter()
            .flat_map_iter(|&r| {
                let x_row = host.x_row(r, k);
                let x_orig = &host.x[r * k..(r + 1) * k];
                let w_rows = &w_rows;
                cols.iter().enumerate().map(move |(ci, &c)| {
                    let (w_row, w_orig) = &w_rows[ci];
                    let b = host.bias.get(c).map_or(0.0, |&v| f64::from(v));
                    let (mut exact, mut abs_sum, mut original) = (b, b.abs(), b);
                    for j in 0..k {
                        let p = x_row[j] * w_row[j];
                        exact += p;
                        abs_sum += p.abs();
                        original += f64::from(x_orig[j]) * f64::from(w_orig[j]);
                    }
                    (
                        r,
                        c,
                        Expected {
                            exact,
                            original,
                            abs_sum,
                            codes_dot: codes_dot(r, c),
                        },
                    )
                })
            })
            .collect();

        // cuBLASLt INT8 returns the codes' dot product: exact, then scaled here for accuracy.
        let int8_scale = |r: usize, c: usize| -> f64 {
            match (&host.xq, &host.wq) {
                (Some(xq), Some(wq)) => f64::from(xq.scale_at(r, 0)) * f64::from(wq.scale_at(c, 0)),
                _ => 1.0,
            }
        };
        let mut worst: Option<(f64, usize, usize, f64, f64)> = None;
        let mut max_rel = 0f64;
        let mut outputs = Vec::with_capacity(expected.len());
        let mut exacts = Vec::with_capacity(expected.len());
        let mut originals = Vec::with_capacity(expected.len());
        let scale = expected
            .iter()
            .map(|(_, _, e)| e.exact * e.exact)
            .sum::<f64>()
            .sqrt()
            / (expected.len().max(1) as f64).sqrt();
        for (r, c, e) in &expected {
            let g = got(r * n + c);
            let (value, want, tolerance) = match (int32_out, e.codes_dot) {
                (true, Some(dot)) => (g * int8_scale(*r, *c), dot as f64 * int8_scale(*r, *c), 0.0),
                _ => {
                    let want = round_bf16_f64(e.exact);
                    let err = accumulation.error_bound(k, e.abs_sum);
                    (g, want, err * (1.0 + 1.0 / 256.0) + e.exact.abs() / 128.0)
                }
            };
            let diff = if int32_out {
                (g - e.codes_dot.unwrap_or(0) as f64).abs()
            } else {
                (value - want).abs()
            };
            max_rel =
                max_rel.max((value - want).abs() / want.abs().max(scale).max(f64::MIN_POSITIVE));
            if diff > tolerance && worst.is_none_or(|w| diff - tolerance > w.0) {
                worst = Some((diff - tolerance, *r, *c, value, want));
            }
            outputs.push(value);
            exacts.push(e.exact);
            originals.push(e.original);
        }
        let kernel = metrics(&outputs, &exacts);
        let quant = metrics(&outputs, &originals);
        let accuracy = Some(AccuracyDelta {
            sqnr_db: quant.sqnr_db,
            rel_fro: quant.rel_fro,
            kernel_sqnr_db: kernel.sqnr_db,
            kernel_rel_fro: kernel.rel_fro,
        });
        let what = format!(
            "{} of {} elements against the f64 GEMM of the dequantized inputs",
            expected.len(),
            m * n
        );
        Ok(match worst {
            None => Check {
                passed: true,
                max_rel_err: max_rel,
                detail: what,
                accuracy,
            },
            Some((_, r, c, value, want)) => Check {
                passed: false,
                max_rel_err: max_rel,
                detail: format!("{what}: Y[{r}][{c}] = {value} but expected {want}"),
                accuracy,
            },
        })
    }
}

fn failed(detail: String) -> Check {
    Check {
        passed: false,
        max_rel_err: f64::NAN,
        detail,
        accuracy: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(spec: &str) -> std::result::Result<(LtPrecision, LtScaling), String> {
        cublaslt_mapping(&GemmConfig::parse(spec).unwrap())
    }

    #[test]
    fn cublaslt_runs_what_it_has() {
        assert_eq!(
            mapping("shape=8x8x16,fmt=e4m3,scale=token"),
            Ok((LtPrecision::Fp8E4m3, LtScaling::Outer))
        );
        assert_eq!(
            mapping("shape=8x8x16,fmt=e4m3,scale=block128"),
            Ok((LtPrecision::Fp8E4m3, LtScaling::Block128))
        );
        assert_eq!(
            mapping("shape=8x8x16,fmt=bf16"),
            Ok((LtPrecision::Bf16, LtScaling::None))
        );
        // INT8: the raw i32 product; the scales are applied on the host for the accuracy delta.
        assert_eq!(
            mapping("shape=8x8x16,fmt=int8,scale=token"),
            Ok((LtPrecision::Int8, LtScaling::None))
        );
        for (spec, why) in [
            ("shape=8x8x16,fmt=e5m2", "E5M2"),
            ("shape=8x8x16,fmt=e4m3,act=bf16", "weight-only"),
            ("shape=8x8x16,fmt=int8,scale=block128", "block scales"),
        ] {
            let err = mapping(spec).unwrap_err();
            assert!(err.contains(why), "{spec}: {err}");
        }
    }

    #[test]
    fn fp8_cases_plan_cublaslt_both_ways() {
        let plans = |spec: &str| lt_plans(&GemmConfig::parse(spec).unwrap());
        // E4M3: the default (promoted) and the fast-accumulation plan, each its own workspace.
        assert_eq!(plans("shape=64x64x64,fmt=e4m3,scale=block128"), 2);
        assert_eq!(plans("shape=64x64x64,fmt=bf16"), 1);
        assert_eq!(plans("shape=64x64x64,fmt=int8,scale=token"), 1);
        assert_eq!(plans("shape=64x64x64,fmt=e5m2"), 0);
        assert_eq!(plans("shape=64x64x64,fmt=e4m3,lt=0"), 0);
        let bytes = |spec: &str| device_bytes(&GemmConfig::parse(spec).unwrap());
        assert_eq!(
            bytes("shape=64x64x64,fmt=e4m3") - bytes("shape=64x64x64,fmt=e4m3,lt=0"),
            2 * crate::gpu::cublaslt::WORKSPACE_BYTES as u64
        );
        // Fast accumulation is verified with the bound of the FP8 accumulator, not f32's.
        assert_eq!(
            lt_accumulation_bound(LtAccumulation::Fast),
            Accumulation::HOPPER_FP8
        );
        assert_eq!(
            lt_accumulation_bound(LtAccumulation::Default),
            Accumulation::F32
        );
    }

    #[test]
    fn the_accumulation_bound_follows_the_roundoff() {
        // f32: γ_n = nu / (1 - nu) with nu = (K + 4) * 2^-23, relative to Σ|products|.
        let f32_bound = Accumulation::F32.error_bound(4096, 1.0);
        let nu = 4100.0 / 8_388_608.0;
        assert!((f32_bound - nu / (1.0 - nu)).abs() < 1e-15, "{f32_bound}");
        // Hopper FP8: one rounding at 2^-13 per k32 instruction (132 of them), far looser.
        let fp8 = Accumulation::HOPPER_FP8.error_bound(4096, 1.0);
        let nu = 132.0 / 8192.0;
        assert!(
            (fp8 - nu / (1.0 - nu)).abs() < 1e-15 && fp8 > 30.0 * f32_bound,
            "{fp8}"
        );
        // Never more than the sum itself.
        assert_eq!(Accumulation::HOPPER_FP8.error_bound(1 << 30, 3.0), 3.0);
    }
}
