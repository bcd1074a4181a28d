//! Issue 7's goals as ratios of one run's rows (our kernels against cuBLASLt, the block-scaled
//! FP8 throughput, the small-M weight bandwidth against the copy bandwidth), and the speedup
//! columns every GEMM row carries.
//!
//! Our kernels are compared with cuBLASLt like with like: an FP8 kernel that keeps the K sum in
//! the tensor core's accumulator (`wgmma`) with cuBLASLt's fast accumulation, one that promotes
//! to f32 (`wgmma-promoted`, the block-128 and mma kernels) with cuBLASLt's default; each goal's
//! detail gives both rows' `kernel_sqnr_db`, what the faster summation costs in accuracy.

use super::paths::{self, Accumulation};
use crate::gpu::cublaslt::{label_accumulation, LtAccumulation};
use crate::measure::Mode;
use crate::report::{Provider, ResultRow, Status};
use crate::suite::Goal;

/// `key=value` from a row's params.
fn param<'a>(row: &'a ResultRow, key: &str) -> Option<&'a str> {
    row.params
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn dims(row: &ResultRow) -> Option<(usize, usize, usize)> {
    Some((
        param(row, "m")?.parse().ok()?,
        param(row, "n")?.parse().ok()?,
        param(row, "k")?.parse().ok()?,
    ))
}

fn is_gemm(row: &ResultRow) -> bool {
    param(row, "op") == Some("gemm")
}

fn timed(row: &ResultRow) -> Option<f64> {
    (row.status == Status::Ok)
        .then_some(row.median_us)
        .flatten()
}

/// Rows that compute the same GEMM problem apart from the input format: same shape, bias and
/// timing mode.
fn same_problem(a: &ResultRow, b: &ResultRow) -> bool {
    is_gemm(a)
        && is_gemm(b)
        && dims(a) == dims(b)
        && param(a, "bias") == param(b, "bias")
        && a.mode == b.mode
}

/// Where a row's GEMM keeps its K sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sums {
    /// f32 registers (FP8 promoted from the tensor core at intervals, BF16) or exact int32.
    Wide,
    /// The FP8 tensor core's own accumulator (about 14 bits) across all of K.
    Fp8TensorCore,
}

impl Sums {
    fn label(self) -> &'static str {
        match self {
            Sums::Wide => "promoted",
            Sums::Fp8TensorCore => "fast accumulation",
        }
    }
}

/// How `row`'s GEMM sums, from its provider and kernel label.
pub fn sums(row: &ResultRow) -> Sums {
    let fast = match row.provider {
        Some(Provider::CublasLt) => label_accumulation(&row.kernel) == LtAccumulation::Fast,
        // Our labels end with the kernel's name in parentheses; only wgmma has FP8 kernels
        // that keep the sum in the tensor core.
        Some(Provider::Roofbench) => paths::wgmma::kernel_names().iter().any(|name| {
            row.kernel.contains(&format!("({name})"))
                && paths::wgmma::kernel_accumulation(name) == Accumulation::HOPPER_FP8
        }),
        _ => false,
    };
    if fast {
        Sums::Fp8TensorCore
    } else {
        Sums::Wide
    }
}

/// The FP8 per-tensor cases of the ">= 0.95 of cuBLASLt" goal: 8192^3 and the Llama-3
/// 70B projections at prefill sizes. The grid runs them on `wgmma-promoted` too.
pub fn fp8_goal_case(case: &str, dtype: &str, m: usize) -> bool {
    dtype == "e4m3/per-tensor"
        && (case.starts_with("8192x8192x8192/") || (case.starts_with("llama3-70b-") && m >= 2048))
}

/// A row's problem apart from the path that computed it: rows of `path=auto` and of a named
/// path of the same GEMM compare with each other.
fn problem_key(row: &ResultRow) -> String {
    row.params
        .split_whitespace()
        .filter(|kv| !kv.starts_with("path="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The fastest verified row of `provider` among `rows` matching `pick`.
fn fastest(
    rows: &[ResultRow],
    provider: Provider,
    pick: impl Fn(&ResultRow) -> bool,
) -> Option<&ResultRow> {
    rows.iter()
        .filter(|r| r.provider == Some(provider) && timed(r).is_some() && pick(r))
        .min_by(|a, b| {
            a.median_us
                .partial_cmp(&b.median_us)
                .expect("finite medians")
        })
}

/// Fills `speedup_vs_bf16` (our BF16 kernel's median / this row's) and
/// `speedup_vs_cublaslt_bf16` on every timed GEMM row that has BF16 rows of the same problem.
pub fn annotate_speedups(rows: &mut [ResultRow]) -> bool {
    let snapshot = rows.to_vec();
    let mut changed = false;
    for row in rows.iter_mut().filter(|r| is_gemm(r)) {
        let Some(t) = timed(row) else { continue };
        let baseline = |provider: Provider| {
            fastest(&snapshot, provider, |b| {
                same_problem(b, row) && param(b, "inputs") == Some("bf16")
            })
            .and_then(timed)
        };
        let (ours, lt) = (baseline(Provider::Roofbench), baseline(Provider::CublasLt));
        row.speedup_vs_bf16 = ours.map(|b| b / t);
        row.speedup_vs_cublaslt_bf16 = lt.map(|b| b / t);
        changed |= ours.is_some() || lt.is_some();
    }
    changed
}

/// For every problem matching `pick` and each way of summing, our fastest row against
/// cuBLASLt's fastest that sums the same way. FP8 goals name the summation; the others (BF16,
/// INT8) have only the wide one and keep their plain names.
fn versus_cublaslt(
    rows: &[ResultRow],
    pick: impl Fn(&ResultRow) -> bool,
    target: f64,
    what: &str,
    out: &mut Vec<Goal>,
) {
    let mut problems: Vec<String> = Vec::new();
    for key in rows.iter().filter(|r| pick(r)).map(problem_key) {
        if !problems.contains(&key) {
            problems.push(key);
        }
    }
    for key in &problems {
        for how in [Sums::Wide, Sums::Fp8TensorCore] {
            let of = |provider| {
                fastest(rows, provider, |r| {
                    pick(r) && problem_key(r) == *key && sums(r) == how
                })
            };
            let (Some(ours), Some(lt)) = (of(Provider::Roofbench), of(Provider::CublasLt)) else {
                continue;
            };
            let fp8 = ours.dtype.starts_with("e4m3") || ours.dtype.starts_with("e5m2");
            let name = if fp8 {
                format!("{}: {what}, {} / {}", lt.case, how.label(), lt.kernel)
            } else {
                format!("{}: {what} / cuBLASLt", lt.case)
            };
            let ratio = lt.median_us.unwrap_or(f64::NAN) / ours.median_us.unwrap_or(f64::NAN);
            out.push(Goal::new(
                name,
                ratio,
                &format!(">= {target:.2}"),
                ratio >= target,
                format!(
                    "{:.0} vs {:.0} TFLOPS ({}); kernel SQNR {} vs {} dB",
                    ours.tflops.unwrap_or(f64::NAN),
                    lt.tflops.unwrap_or(f64::NAN),
                    ours.kernel,
                    sqnr(ours),
                    sqnr(lt),
                ),
            ));
        }
    }
}

fn sqnr(row: &ResultRow) -> String {
    row.kernel_sqnr_db
        .map_or_else(|| "-".into(), |db| format!("{db:.1}"))
}

fn m_of(row: &ResultRow) -> usize {
    dims(row).map_or(0, |d| d.0)
}

pub fn goals(rows: &[ResultRow]) -> Vec<Goal> {
    let mut out = Vec::new();
    let gemm = |r: &ResultRow| is_gemm(r) && r.mode == Some(Mode::Cold);
    versus_cublaslt(
        rows,
        |r| gemm(r) && fp8_goal_case(&r.case, &r.dtype, m_of(r)),
        0.95,
        "FP8 per-tensor",
        &mut out,
    );
    if let Some(r) = fastest(rows, Provider::Roofbench, |r| {
        gemm(r) && r.case.starts_with("8192x8192x8192/") && r.dtype == "e4m3/block128"
    }) {
        let tflops = r.tflops.unwrap_or(f64::NAN);
        out.push(Goal::new(
            format!("{}: TFLOPS", r.case),
            tflops,
            ">= 1300",
            tflops >= 1300.0,
            r.kernel.clone(),
        ));
    }
    versus_cublaslt(
        rows,
        |r| gemm(r) && r.dtype.starts_with("int8/") && m_of(r) >= 2048,
        1.0,
        "INT8",
        &mut out,
    );
    versus_cublaslt(
        rows,
        |r| gemm(r) && r.dtype == "bf16" && m_of(r) >= 2048,
        0.9,
        "BF16",
        &mut out,
    );
    // Decode GEMMs stream the weights: their bytes over the time against the copy bandwidth.
    let mut small: Vec<&ResultRow> = rows
        .iter()
        .filter(|r| {
            gemm(r) && r.provider == Some(Provider::Roofbench) && (1..=16).contains(&m_of(r))
        })
        .filter(|r| timed(r).is_some() && r.pct_of_copy.is_some())
        .collect();
    small.sort_by(|a, b| a.case.cmp(&b.case));
    for r in small {
        let Some((_, n, k)) = dims(r) else { continue };
        let w_elem = if param(r, "inputs") == Some("bf16") {
            2
        } else {
            1
        };
        let median = timed(r).expect("filtered");
        let copy_gbps = r.gbps.unwrap_or(f64::NAN) / (r.pct_of_copy.unwrap_or(f64::NAN) / 100.0);
        let weight_gbps = (n * k * w_elem) as f64 / (median * 1e-6) / 1e9;
        let pct = 100.0 * weight_gbps / copy_gbps;
        out.push(Goal::new(
            format!("{}: weight bytes, % of copy bandwidth", r.case),
            pct,
            ">= 85",
            pct >= 85.0,
            format!(
                "{weight_gbps:.0} GB/s of weights vs {copy_gbps:.0} GB/s copy ({})",
                r.kernel
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::config::GemmConfig;
    use crate::suite::Case;

    fn row(spec: &str, provider: Provider, median_us: f64) -> ResultRow {
        let c = GemmConfig::parse(spec).unwrap();
        let w = c.workload();
        ResultRow {
            suite: "gemm".into(),
            case: Case::name(&c),
            kernel: format!("{} kernel", provider.as_str()),
            provider: Some(provider),
            dtype: Case::dtype(&c),
            params: Case::params(&c),
            mode: Some(Mode::Cold),
            status: Status::Ok,
            median_us: Some(median_us),
            tflops: Some(w.tflops(median_us)),
            gbps: Some(w.gbps(median_us)),
            pct_of_copy: Some(100.0 * w.gbps(median_us) / 3000.0),
            ..Default::default()
        }
    }

    #[test]
    fn speedups_compare_with_the_same_shape_in_bf16() {
        let mut rows = vec![
            row("shape=8192x8192x8192,fmt=bf16", Provider::Roofbench, 1500.0),
            row("shape=8192x8192x8192,fmt=bf16", Provider::CublasLt, 1440.0),
            row("shape=8192x8192x8192,fmt=e4m3", Provider::Roofbench, 800.0),
            row("shape=8192x8192x8192,fmt=e4m3", Provider::CublasLt, 820.0),
            // Another shape: no BF16 rows, no speedups.
            row("shape=4096x4096x4096,fmt=e4m3", Provider::Roofbench, 120.0),
        ];
        assert!(annotate_speedups(&mut rows));
        assert_eq!(rows[2].speedup_vs_bf16, Some(1500.0 / 800.0));
        assert_eq!(rows[2].speedup_vs_cublaslt_bf16, Some(1440.0 / 800.0));
        assert_eq!(rows[1].speedup_vs_bf16, Some(1500.0 / 1440.0));
        assert_eq!(rows[4].speedup_vs_bf16, None);
    }

    /// `row` with its kernel label set.
    fn labelled(spec: &str, provider: Provider, median_us: f64, kernel: &str) -> ResultRow {
        ResultRow {
            kernel: kernel.into(),
            ..row(spec, provider, median_us)
        }
    }

    #[test]
    fn fp8_goals_compare_like_with_like() {
        let spec = "shape=8192x8192x8192,fmt=e4m3";
        let wgmma = "wgmma 128x256x128 4 stages, 132 CTAs persistent (gemm_wgmma_e4m3)";
        let promoted = "wgmma 128x128x128 6 stages, 132 CTAs persistent (gemm_wgmma_e4m3_promoted)";
        let mut rows = vec![
            labelled(spec, Provider::Roofbench, 800.0, wgmma),
            labelled(
                &format!("{spec},path=wgmma-promoted,lt=0"),
                Provider::Roofbench,
                900.0,
                promoted,
            ),
            labelled(spec, Provider::CublasLt, 850.0, "cublasLt fp8-e4m3"),
            labelled(
                spec,
                Provider::CublasLt,
                780.0,
                "cublasLt fp8-e4m3 fast-accum",
            ),
        ];
        for (r, db) in rows.iter_mut().zip([30.5, 41.0, 41.2, 30.1]) {
            r.kernel_sqnr_db = Some(db);
        }
        assert_eq!(
            rows.iter().map(sums).collect::<Vec<_>>(),
            [
                Sums::Fp8TensorCore,
                Sums::Wide,
                Sums::Wide,
                Sums::Fp8TensorCore
            ]
        );
        let goals = goals(&rows);
        let fp8: Vec<&Goal> = goals
            .iter()
            .filter(|g| g.name.contains("FP8 per-tensor"))
            .collect();
        assert_eq!(fp8.len(), 2, "one goal per way of summing");
        let find = |s: &str| *fp8.iter().find(|g| g.name.contains(s)).unwrap();
        // wgmma (tensor-core sums) against cuBLASLt's fast accumulation, not its default.
        let fast = find("fast accumulation");
        assert!(
            fast.name.ends_with("/ cublasLt fp8-e4m3 fast-accum"),
            "{}",
            fast.name
        );
        assert!((fast.value - 780.0 / 800.0).abs() < 1e-12 && fast.met);
        assert!(fast.detail.contains("gemm_wgmma_e4m3)"), "{}", fast.detail);
        assert!(fast.detail.contains("30.5 vs 30.1 dB"), "{}", fast.detail);
        // wgmma-promoted against the default, promoted cuBLASLt.
        let wide = find("promoted /");
        assert!(wide.name.ends_with("/ cublasLt fp8-e4m3"), "{}", wide.name);
        assert!(
            wide.name.starts_with("8192x8192x8192/e4m3/per-tensor:"),
            "{}",
            wide.name
        );
        assert!((wide.value - 850.0 / 900.0).abs() < 1e-12 && !wide.met);
        assert!(wide.detail.contains("41.0 vs 41.2 dB"), "{}", wide.detail);
    }

    #[test]
    fn goals_are_ratios_of_the_run() {
        let rows = vec![
            row("shape=8192x8192x8192,fmt=e4m3", Provider::Roofbench, 800.0),
            row("shape=8192x8192x8192,fmt=e4m3", Provider::CublasLt, 820.0),
            row(
                "shape=8192x8192x8192,fmt=e4m3,scale=block128",
                Provider::Roofbench,
                820.0,
            ),
            row(
                "shape=8192x8192x8192,fmt=int8,scale=token",
                Provider::Roofbench,
                1300.0,
            ),
            row(
                "shape=8192x8192x8192,fmt=int8,scale=token",
                Provider::CublasLt,
                1265.0,
            ),
            row("shape=16x28672x8192,fmt=e4m3", Provider::Roofbench, 100.0),
        ];
        let goals = goals(&rows);
        let find = |s: &str| goals.iter().find(|g| g.name.contains(s)).unwrap();
        let fp8 = find("FP8 per-tensor");
        assert!((fp8.value - 820.0 / 800.0).abs() < 1e-12 && fp8.met);
        let block = find("TFLOPS");
        assert!((block.value - 2.0 * 8192f64.powi(3) / 820e-6 / 1e12).abs() < 1e-6);
        assert!(block.met, "{} TFLOPS", block.value);
        let int8 = find("INT8");
        assert!(!int8.met && int8.value < 1.0);
        let small = find("16x28672x8192");
        // 235 MB of FP8 weights in 100 µs is 2349 GB/s: 78% of a 3000 GB/s copy.
        assert!((small.value - 100.0 * 28672.0 * 8192.0 / 100e-6 / 1e9 / 3000.0).abs() < 1e-6);
        assert!(!small.met);
    }
}
