//! Vendor ceilings: cuBLASLt BF16, FP8 (E4M3, per-tensor scales) and INT8 GEMMs, each checked
//! on sampled outputs.

use anyhow::Result;
use rayon::prelude::*;

use super::{rate, skipped};
use crate::gpu::cublaslt::{LtGemm, LtPrecision};
use crate::measure::{Harness, Mode};
use crate::roofline::{CeilingKind, MeasuredCeiling, Precision};

/// cuBLASLt GEMMs at `n`^3 in BF16, FP8 and INT8, each checked on sampled outputs.
pub(super) fn cublaslt_ceilings(harness: &mut Harness<'_>, n: usize) -> Vec<MeasuredCeiling> {
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
pub(super) fn gemm_operand(p: LtPrecision, bytes: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
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
pub(super) fn check_gemm_samples(
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
