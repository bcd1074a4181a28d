use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};

use super::synthetic::NEEDLES;
use super::*;

const BUDGETS: [Budget; 4] = [
    Budget::Fraction(0.10),
    Budget::Fraction(0.25),
    Budget::Fraction(0.50),
    Budget::Fraction(1.0),
];

/// The synthetic report at a shape a debug build evaluates in seconds, computed once for all
/// tests: the report's head dim (the noise of planted patterns falls as 1/sqrt(dim)), fewer heads
/// and 1024 tokens (10% is still three recency lengths).
///
/// The thresholds below leave wide margins over what seeds 1..=10 (20 for recency) give.
fn rows() -> &'static [AccuracyRow] {
    static ROWS: OnceLock<Vec<AccuracyRow>> = OnceLock::new();
    ROWS.get_or_init(|| synthetic_rows(4, 2, 128, 1024, &BUDGETS))
}

fn row(data: Synthetic, policy: Policy, budget: &str) -> &'static AccuracyRow {
    rows()
        .iter()
        .find(|r| r.data == data.name() && r.policy == policy.name() && r.budget == budget)
        .unwrap_or_else(|| panic!("no row {data:?} {policy:?} {budget}"))
}

const PARTIAL: [&str; 3] = ["10%", "25%", "50%"];

#[test]
fn score_policies_find_heavy_hitters_that_baselines_miss() {
    let recall = |p| row(Synthetic::HeavyHitters, p, "10%").mass_recall_mean;
    let baseline = recall(Policy::Recent).max(recall(Policy::Random));
    // Seeds 1..=10: the score policies keep at least 0.79, the baselines at most 0.21.
    for p in [Policy::H2o, Policy::Tova, Policy::SnapKv] {
        assert!(
            recall(p) > 0.7 && recall(p) > baseline + 0.4,
            "{p:?}: {} vs {baseline}",
            recall(p)
        );
    }
}

#[test]
fn recency_data_is_nearly_lossless_under_recency_policies() {
    // Seeds 1..=20: the worst head keeps 0.9994 of the mass, with an error of 6e-4.
    for p in [Policy::Recent, Policy::StreamingLlm] {
        for b in PARTIAL {
            let r = row(Synthetic::Recency, p, b);
            assert!(r.mass_recall_min > 0.99, "{r:?}");
            assert!(r.rel_error_max < 0.01, "{r:?}");
        }
    }
}

#[test]
fn random_improves_with_budget_on_unstructured_data() {
    // Only without structure: on planted data, whether Random hits a planted token dominates.
    // Seeds 1..=10: each step cuts the error to at most 0.65 of the previous one.
    let errors: Vec<f64> = PARTIAL
        .iter()
        .map(|b| row(Synthetic::Gaussian, Policy::Random, b).rel_error_mean)
        .collect();
    assert!(errors.windows(2).all(|w| w[0] > w[1]), "{errors:?}");
}

#[test]
fn a_full_budget_is_exact() {
    for r in rows().iter().filter(|r| r.budget == "100%") {
        assert_eq!(r.kept_tokens, r.cache_tokens);
        assert_eq!(r.rel_error_max, 0.0, "{r:?}");
        assert!((r.mass_recall_min - 1.0).abs() < 1e-12, "{r:?}");
        let expected = (r.data == "needle").then_some(1.0);
        assert_eq!(r.needle_recall, expected, "{r:?}");
    }
}

#[test]
fn needles_in_the_older_half_never_survive_recency_policies() {
    for p in [Policy::Recent, Policy::StreamingLlm] {
        for b in PARTIAL {
            let r = row(Synthetic::Needle, p, b);
            assert_eq!(r.needle_recall, Some(0.0), "{r:?}");
            // The needles hold most of the evaluation query's attention: losing them shows
            // (seeds 1..=10: recall at most 0.06, error at least 0.99).
            assert!(r.mass_recall_mean < 0.5 && r.rel_error_mean > 0.5, "{r:?}");
        }
    }
}

#[test]
fn needles_are_invisible_to_the_history_queries() {
    // H2O's score of a needle is that of an ordinary key of the same region: no policy that
    // scores by earlier queries can tell it apart.
    // Seeds 1..=10: needle / median between 0.82 and 1.43.
    let c = synthetic(Synthetic::Needle, 4, 2, 128, 1024, 9).unwrap();
    assert_eq!(c.needles.len(), 2 * NEEDLES);
    let history = Overrides::default().score_queries(Policy::H2o);
    for (g, t) in c.needles.clone() {
        assert!((c.len / 8..3 * c.len / 8).contains(&t));
        let scores = head_scores(&c, &c.keys(g), g, &[history])
            .remove(0)
            .unwrap();
        let mut region: Vec<f32> = scores[c.len / 8..3 * c.len / 8].to_vec();
        region.sort_by(f32::total_cmp);
        let median = region[region.len() / 2];
        assert!(
            (0.5..2.0).contains(&(scores[t] / median)),
            "{} vs {median}",
            scores[t]
        );
    }
}

#[test]
fn an_empty_budget_keeps_nothing() {
    let c = synthetic(Synthetic::Gaussian, 2, 1, 16, 64, 3).unwrap();
    let rows = evaluate(
        &c,
        "g",
        &[Policy::Tova],
        &[Budget::Tokens(0)],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(rows[0].kept_tokens, 0);
    assert_eq!(
        (rows[0].rel_error_max, rows[0].mass_recall_mean),
        (1.0, 0.0)
    );
}

#[test]
fn overrides_reach_the_policies() {
    let o = Overrides {
        window: Some(8),
        sinks: Some(2),
        h2o_history: Some(5),
        ..Default::default()
    };
    let snap = o.params(Policy::SnapKv, 100);
    assert_eq!((snap.window, snap.recent, snap.sinks), (8, 8, 2));
    assert_eq!(o.params(Policy::H2o, 100).recent, 50);
    assert_eq!(o.score_queries(Policy::H2o), Some(5));
    assert_eq!(o.score_queries(Policy::SnapKv), Some(8));
    assert_eq!(o.score_queries(Policy::Tova), Some(1));
    assert_eq!(o.score_queries(Policy::Random), None);
}

#[test]
fn inconsistent_captures_are_errors() {
    let mut c = synthetic(Synthetic::Gaussian, 2, 1, 16, 64, 3).unwrap();
    c.v.pop();
    let err = evaluate(&c, "g", &[Policy::Tova], &BUDGETS, &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("values"), "{err}");
    let err = synthetic(Synthetic::Gaussian, 3, 2, 16, 64, 3).unwrap_err();
    assert!(err.to_string().contains("not a multiple"), "{err}");
}

#[test]
fn table_csv_and_plot_show_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let table = render_table(rows());
    assert!(table.contains("mass recall min") && table.contains("streaming-llm"));
    let csv_path = dir.path().join("accuracy.csv");
    write_csv(rows(), &csv_path).unwrap();
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert!(csv.starts_with("data,policy,budget,cache_tokens,kept_tokens,rel_error_mean"));
    assert_eq!(csv.lines().count(), rows().len() + 1);
    let svg_path = dir.path().join("accuracy.svg");
    error_vs_budget_svg(rows(), &svg_path).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    for s in Synthetic::ALL {
        assert!(svg.contains(&format!("{}: attention output error", s.name())));
    }
    assert!(Policy::ALL.iter().all(|p| svg.contains(p.name())));
}

/// A small capture and its tensors `[len, heads, dim]` in `dtype`.
fn small_capture() -> KvCapture {
    synthetic(Synthetic::Gaussian, 4, 2, 8, 6, 11).unwrap()
}

fn tensor(values: &[f32], heads: usize, c: &KvCapture, dtype: DType) -> Tensor {
    Tensor::from_vec(values.to_vec(), (c.len, heads, c.dim), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn tensors(c: &KvCapture, dtype: DType) -> [Tensor; 3] {
    [
        tensor(&c.q, c.q_heads, c, dtype),
        // A leading batch of one, as frameworks dump it.
        tensor(&c.k, c.kv_heads, c, dtype).unsqueeze(0).unwrap(),
        tensor(&c.v, c.kv_heads, c, dtype),
    ]
}

fn save_safetensors(named: &[(&str, &Tensor)], path: &std::path::Path) {
    let map: HashMap<&str, Tensor> = named.iter().map(|(n, t)| (*n, (*t).clone())).collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

#[test]
fn captures_load_from_safetensors_npy_and_npz() {
    let dir = tempfile::tempdir().unwrap();
    let c = small_capture();
    // bf16 holds the bf16 capture exactly.
    let [q, k, v] = tensors(&c, DType::BF16);
    let path = dir.path().join("layer.safetensors");
    save_safetensors(&[("q", &q), ("k", &k), ("v", &v)], &path);
    assert_eq!(load_capture(&path).unwrap(), c);

    let [q, k, v] = tensors(&c, DType::F32);
    let folder = dir.path().join("npy");
    std::fs::create_dir(&folder).unwrap();
    for (name, t) in [("q", &q), ("k", &k), ("v", &v)] {
        t.write_npy(folder.join(format!("{name}.npy"))).unwrap();
        t.write_npy(dir.path().join(format!("l3_{name}.npy")))
            .unwrap();
    }
    assert_eq!(load_capture(&folder).unwrap(), c);
    assert_eq!(load_capture(&dir.path().join("l3_")).unwrap(), c);

    let [q, k, v] = tensors(&c, DType::F16);
    let npz = dir.path().join("layer.npz");
    Tensor::write_npz(&[("q", &q), ("k", &k), ("v", &v)], &npz).unwrap();
    let loaded = load_capture(&npz).unwrap();
    let f16 =
        |x: &[f32]| -> Vec<f32> { x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect() };
    assert_eq!(
        (loaded.q, loaded.k, loaded.v),
        (f16(&c.q), f16(&c.k), f16(&c.v))
    );
}

/// Loading q, k, v tensors of these shapes fails with a message that says `expected`.
fn assert_load_error(q: &[usize], k: &[usize], v: &[usize], dtype: DType, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let t = |dims: &[usize]| Tensor::zeros(dims, dtype, &Device::Cpu).unwrap();
    let path = dir.path().join("bad.safetensors");
    save_safetensors(&[("q", &t(q)), ("k", &t(k)), ("v", &t(v))], &path);
    let err = format!("{:#}", load_capture(&path).unwrap_err());
    assert!(err.contains(expected), "{err}");
}

#[test]
fn inconsistent_files_are_clear_errors() {
    let f = DType::F32;
    let heads = "3 q heads are not a multiple of 2";
    assert_load_error(&[8, 3, 4], &[8, 2, 4], &[8, 2, 4], f, heads);
    assert_load_error(&[8, 4, 4], &[8, 2, 8], &[8, 2, 8], f, "head dims differ");
    assert_load_error(&[8, 4, 4], &[7, 2, 4], &[7, 2, 4], f, "8, 7, 7 positions");
    assert_load_error(&[1, 4, 4], &[1, 2, 4], &[1, 2, 4], f, "at least 2");
    let rank = "expected [len, heads, dim]";
    assert_load_error(&[8, 16], &[8, 2, 4], &[8, 2, 4], f, rank);
    assert_load_error(&[8, 4, 4], &[8, 2, 4], &[8, 1, 4], f, "k has 2 heads, v 1");
    assert_load_error(&[8, 4, 4], &[8, 2, 4], &[8, 2, 4], DType::U32, "dtype U32");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.safetensors");
    let t = Tensor::zeros((8, 2, 4), f, &Device::Cpu).unwrap();
    save_safetensors(&[("q", &t), ("k", &t), ("value", &t)], &path);
    let err = load_capture(&path).unwrap_err().to_string();
    assert!(
        err.contains("no tensor `v`") && err.contains("value"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        load_capture(&dir.path().join("missing_")).unwrap_err()
    );
    assert!(err.contains("missing_q.npy"), "{err}");
}
