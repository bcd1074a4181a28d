use std::sync::OnceLock;

use super::*;
use crate::gemm::quant::{QuantFormat, Scheme};

#[test]
fn metrics_by_hand() {
    let m = metrics(&[1.0, 2.0, 3.0], &[1.0, 2.0, 2.0]);
    // Signal 1 + 4 + 4 = 9, noise 1.
    assert!((m.sqnr_db - 10.0 * 9f64.log10()).abs() < 1e-12);
    assert!((m.rel_fro - 1.0 / 3.0).abs() < 1e-15);
    assert!((m.cosine - 11.0 / (14f64.sqrt() * 3.0)).abs() < 1e-15);
    assert_eq!(m.max_abs, 1.0);
    let same = metrics(&[0.5, -2.0], &[0.5, -2.0]);
    assert_eq!(same.sqnr_db, f64::INFINITY);
    assert_eq!((same.rel_fro, same.max_abs), (0.0, 0.0));
    assert!((same.cosine - 1.0).abs() < 1e-15);
    let opposite = metrics(&[-1.0, 1.0], &[1.0, -1.0]);
    assert!((opposite.cosine + 1.0).abs() < 1e-15);
    assert!((opposite.rel_fro - 2.0).abs() < 1e-15);
}

#[test]
fn gemm_f64_multiplies_by_the_transpose() {
    // X [2][3] · W [2][3]ᵀ.
    let x = [1.0, 2.0, 3.0, -1.0, 0.5, 4.0];
    let w = [1.0, 0.0, 1.0, 2.0, -1.0, 0.25];
    let y = gemm_f64(x.to_vec(), w.to_vec(), 2, 2, 3).unwrap();
    assert_eq!(y, vec![4.0, 0.75, 3.0, -1.5]);
}

#[test]
fn generators_are_seeded_bf16_and_shaped_as_documented() {
    let (rows, cols) = (64, 1000);
    let g = gaussian(rows, cols, 3);
    assert_eq!(g, gaussian(rows, cols, 3));
    assert_ne!(g, gaussian(rows, cols, 4));
    let o = outliers(rows, cols, 3, &OutlierPattern::default());
    let w = weights(100, 400, 3);
    for v in g.iter().chain(&o).chain(&w) {
        assert_eq!(*v, crate::gemm::quant::round_bf16(*v), "BF16 values");
    }
    let default = OutlierPattern::default();
    let channels = outlier_channels(cols, 3, &default);
    assert_eq!(channels.len(), 10, "1% of the columns");
    assert_eq!(outlier_channels(40, 3, &default).len(), 1, "at least one");
    let rms_of_column = |x: &[f32], c: usize| {
        ((0..rows)
            .map(|r| f64::from(x[r * cols + c]).powi(2))
            .sum::<f64>()
            / rows as f64)
            .sqrt()
    };
    for &(c, factor) in &channels {
        assert!((50.0..=100.0).contains(&factor));
        // 64 samples: the RMS of N(0, factor²) is within 30% of factor (a 4-sigma margin).
        let ratio = rms_of_column(&o, c) / f64::from(factor);
        assert!((0.7..1.3).contains(&ratio), "channel {c}: {ratio}");
    }
    let plain = (0..cols)
        .find(|c| channels.iter().all(|o| o.0 != *c))
        .unwrap();
    assert!(rms_of_column(&o, plain) < 2.0);
    let w_rms = (w.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    assert!((w_rms * 20.0 - 1.0).abs() < 0.02, "N(0, 1/K): {w_rms}");
}

#[test]
fn shapes_parse_by_name_or_dimensions() {
    let s = GemmShape::parse("llama3-8b-gateup", 16).unwrap();
    assert_eq!((s.m, s.n, s.k), (16, 28672, 4096));
    let s = GemmShape::parse("3x200x130", 99).unwrap();
    assert_eq!((s.name.as_str(), s.m, s.n, s.k), ("3x200x130", 3, 200, 130));
    assert!(GemmShape::parse("llama9", 1).is_err());
    assert!(GemmShape::parse("3x0x5", 1).is_err());
    assert!(GemmShape::parse("3xax5", 1).is_err());
    assert_eq!(default_shapes(false).len(), MODEL_SHAPES.len());
    assert!(default_shapes(true).iter().all(|s| s.m == QUICK_TOKENS));
}

/// The report at a shape a debug build computes in a few seconds, once for all tests: K = 2048
/// (16 groups of 128; 20 outlier channels), M = 64 tokens, N = 64 output channels.
fn rows() -> &'static [AccuracyRow] {
    static ROWS: OnceLock<Vec<AccuracyRow>> = OnceLock::new();
    ROWS.get_or_init(|| {
        let o = ReportOptions {
            shapes: vec![GemmShape::parse("64x64x2048", 0).unwrap()],
            ..ReportOptions::default()
        };
        report(&o).unwrap()
    })
}

fn sqnr(data: DataKind, format: QuantFormat, scheme: Scheme) -> f64 {
    rows()
        .iter()
        .find(|r| r.data == data.name() && r.format == format.name() && r.scheme == scheme.name())
        .unwrap_or_else(|| panic!("no row {data:?} {format} {scheme}"))
        .quant_sqnr_db
}

#[test]
fn the_report_labels_an_outlier_pattern() {
    let o = ReportOptions {
        shapes: vec![GemmShape::parse("8x16x256", 0).unwrap()],
        formats: vec![QuantFormat::Int8],
        schemes: vec![Scheme::PerTensor],
        outliers: OutlierPattern::new(Some(1), Some(200.0)).unwrap(),
        ..ReportOptions::default()
    };
    let rows = report(&o).unwrap();
    let data: Vec<&str> = rows.iter().map(|r| r.data.as_str()).collect();
    assert_eq!(
        data,
        [
            "gaussian",
            "gaussian",
            "outliers-1ch-x200",
            "outliers-1ch-x200"
        ]
    );
    // One channel at 200x makes per-tensor INT8 lose far more than Gaussian data does.
    assert!(
        rows[3].quant_sqnr_db + 10.0 < rows[1].quant_sqnr_db,
        "{rows:?}"
    );
}

#[test]
fn report_rows_cover_every_case_in_order() {
    let rows = rows();
    assert_eq!(rows.len(), 2 * (1 + 9));
    assert_eq!(
        (rows[0].format.as_str(), rows[0].scheme.as_str()),
        ("bf16", "none")
    );
    assert_eq!(
        (rows[1].format.as_str(), rows[1].scheme.as_str()),
        ("e4m3", "per-tensor")
    );
    assert_eq!(rows[10].data, "outliers");
    for r in rows {
        assert_eq!((r.m, r.n, r.k, r.n_evaluated), (64, 64, 2048, 64));
        assert!(
            r.y_rms > 0.5,
            "outputs about as large as inputs: {}",
            r.y_rms
        );
    }
    // Only the first max_n output channels are computed, and the row says so.
    let o = ReportOptions {
        shapes: vec![GemmShape::parse("2x300x128", 0).unwrap()],
        formats: vec![QuantFormat::Int8],
        schemes: vec![Scheme::Block128],
        data: vec![DataKind::Gaussian],
        max_n: Some(130),
        ..ReportOptions::default()
    };
    let small = report(&o).unwrap();
    assert_eq!(small.len(), 2);
    assert_eq!((small[1].n, small[1].n_evaluated), (300, 130));
}

/// An exact kernel's own error is the BF16 rounding of its output: each element is off by at
/// most 2^-8 of itself (so the relative Frobenius error is at most 2^-8 and the SQNR at least
/// 48.2 dB), and about 55.7 dB on average, whatever the inputs; the baseline row's value.
#[test]
fn an_exact_kernel_is_at_the_bf16_output_floor() {
    let u = 2f64.powi(-8);
    for r in rows() {
        assert!(r.kernel_rel_fro <= u, "{r:?}");
        assert!(r.kernel_sqnr_db >= -20.0 * u.log10(), "{r:?}");
        assert!(1.0 - r.kernel_cosine <= u * u, "{r:?}");
        let baseline = rows()
            .iter()
            .find(|b| b.data == r.data && b.format == BASELINE_FORMAT)
            .unwrap();
        assert!(
            (r.kernel_sqnr_db - baseline.kernel_sqnr_db).abs() < 1.5,
            "{r:?}"
        );
        // The baseline loses nothing else; every quantized row loses far more.
        if r.format != BASELINE_FORMAT {
            assert!(r.quant_sqnr_db < baseline.quant_sqnr_db - 10.0, "{r:?}");
        }
    }
}

/// INT8 noise is about q²/12 per element, q = the group's amax / 127 (the uniform model holds
/// for q up to about 2σ of the plain channels). In `outliers` data (here 20 channels with factors
/// in [50, 100], 98% of X's energy) the amax is an outlier's:
/// - per-tensor: the largest of 64 × 20 outlier samples, about 100 × 2.6, so q ≈ 2 for every
///   plain element: they are mostly rounded to 0 or ±q;
/// - per-token: the largest of a row's 20 outlier samples, about 1.6× smaller: ~4 dB better;
/// - 1×128 groups: one or two outlier samples (|z| about 1, not 2.6), or in the 27% of groups
///   that hold no outlier channel a plain one: ~12 dB better.
///
/// The per-tensor INT8 output then sits ~17 dB below Gaussian data (the plain channels' noise
/// grows as q², ~35 dB, their share of the signal shrinks 17.6 dB). Asserted: half or less.
#[test]
fn int8_per_tensor_fails_on_outliers_and_finer_scales_pay() {
    use {DataKind::*, QuantFormat::Int8, Scheme::*};
    let tensor = sqnr(Outliers, Int8, PerTensor);
    assert!(sqnr(Outliers, Int8, PerTokenPerChannel) > tensor + 2.0);
    assert!(sqnr(Outliers, Int8, Block128) > tensor + 6.0);
    assert!(sqnr(Gaussian, Int8, PerTensor) > tensor + 10.0);
    // On Gaussian data the groups' amax differ only by the maximum of 128 vs 131072 N(0,1)
    // samples (about 2.7 vs 4.4: at most ~4 dB), all schemes are within it.
    let gaussian = Scheme::ALL.map(|s| sqnr(Gaussian, Int8, s));
    let spread = gaussian
        .iter()
        .fold(0f64, |m, a| m.max((a - gaussian[0]).abs()));
    assert!(spread < 4.5, "{gaussian:?}");
    let gain = |d| sqnr(d, Int8, Block128) - sqnr(d, Int8, PerTensor);
    assert!(gain(Outliers) > gain(Gaussian) + 4.0);
}

/// FP8's relative rounding error does not depend on the scale while values stay in its normal
/// range (even per-tensor on `outliers`, the plain values sit 2^5 above E4M3's smallest normal),
/// so per-tensor FP8 does not fail on outliers: within 1 dB of Gaussian data. Finer scales still
/// help there, by a smaller mechanism: each group's largest element is stored exactly (amax /
/// scale = FMAX), and outlier elements, often the largest of their 1×128 group, carry most of
/// the signal; on Gaussian data the largest of 128 carries little (within 1 dB).
#[test]
fn fp8_is_scale_invariant_and_gains_only_from_exact_group_maxima() {
    use {DataKind::*, Scheme::*};
    for format in [QuantFormat::E4m3, QuantFormat::E5m2] {
        let tensor = sqnr(Outliers, format, PerTensor);
        assert!(
            (tensor - sqnr(Gaussian, format, PerTensor)).abs() < 1.0,
            "{format}"
        );
        for scheme in Scheme::ALL {
            let g = sqnr(Gaussian, format, scheme);
            assert!(
                (g - sqnr(Gaussian, format, PerTensor)).abs() < 1.0,
                "{format} {scheme}"
            );
        }
        let block = sqnr(Outliers, format, Block128);
        assert!(
            block > tensor + 0.5 && block < tensor + 4.0,
            "{format}: {block} vs {tensor}"
        );
        // INT8 per-tensor collapses below FP8 per-tensor on outliers.
        assert!(
            sqnr(Outliers, QuantFormat::Int8, PerTensor) < tensor,
            "{format}"
        );
    }
}

#[test]
fn outputs_are_a_table_a_csv_and_an_svg() {
    let rows = rows();
    let table = render_table(rows);
    assert!(table.contains("per-token-channel") && table.contains("kernel SQNR dB"));
    assert_eq!(
        table.lines().filter(|l| l.contains("64x64x2048")).count(),
        rows.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("gemm-accuracy.csv");
    write_csv(rows, &csv_path).unwrap();
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert!(csv.starts_with("shape,m,n,k,n_evaluated,data,format,scheme,y_rms,kernel_sqnr_db"));
    assert_eq!(csv.lines().count(), rows.len() + 1);
    let svg_path = dir.path().join("gemm-accuracy.svg");
    sqnr_svg(rows, &svg_path).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    for text in [
        "outliers: GEMM output SQNR",
        "per-tensor",
        "block128",
        "int8",
        "bf16 (no",
    ] {
        assert!(svg.contains(text), "the SVG shows `{text}`");
    }
}
