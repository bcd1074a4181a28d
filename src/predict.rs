//! Predictions for GPUs you do not own: the roofline bound of every case of the suites on any GPU
//! in the spec table, and side-by-side comparisons for hardware evaluation. Everything here is
//! *predicted* from spec-sheet figures; nothing is measured.

use comfy_table::Table;

use crate::report::table;
use crate::roofline::{GpuSpec, Precision, Roof};
use crate::suite::Plan;

pub use crate::report::{Prediction, PREDICTED};

/// Predicts every case on `spec` (DRAM roof: a cold run; L2-resident effects are not modelled).
pub fn predict(spec: &GpuSpec, plans: &[Plan<'_>]) -> Vec<Prediction> {
    let roof = Roof::from_spec(spec);
    let mut out = Vec::new();
    for (suite, cases) in plans {
        for case in cases {
            let w = case.workload();
            let mut p = Prediction {
                kind: PREDICTED,
                gpu: spec.name.clone(),
                suite: suite.name().into(),
                case: case.name(),
                dtype: case.dtype(),
                bytes: w.bytes,
                flops: w.flops,
                intensity: w.intensity(),
                bound_us: f64::NAN,
                gbps: f64::NAN,
                tflops: None,
                limit: String::new(),
                limit_value: f64::NAN,
                ridge: None,
                note: String::new(),
            };
            match roof.bound(&w, false) {
                Ok(b) => {
                    p.bound_us = b.time_us;
                    p.gbps = w.gbps(b.time_us);
                    p.tflops = (w.flops > 0).then(|| w.tflops(b.time_us));
                    p.limit = b.limit.name;
                    p.limit_value = b.limit.value;
                    p.ridge = b.ridge;
                }
                Err(why) => p.note = why,
            }
            if (case.device_bytes() as f64) > spec.memory_gb.value * 1e9 {
                p.note = format!("does not fit in {} GB {}", spec.memory_gb.value, p.note)
                    .trim()
                    .into();
            }
            out.push(p);
        }
    }
    out
}

fn fmt(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".into()
    }
}

/// Terminal table of predictions.
pub fn prediction_table(predictions: &[Prediction]) -> Table {
    let mut t = table([
        "suite",
        "case",
        "dtype",
        "FLOP/B",
        "bound µs",
        "GB/s",
        "TFLOPS",
        "limit",
        "note",
    ]);
    for p in predictions {
        t.add_row(vec![
            p.suite.clone(),
            p.case.clone(),
            p.dtype.clone(),
            fmt(p.intensity, 2),
            fmt(p.bound_us, 2),
            fmt(p.gbps, 0),
            p.tflops.map_or("-".into(), |t| fmt(t, 1)),
            p.limit.clone(),
            p.note.clone(),
        ]);
    }
    t
}

/// The limits of each GPU side by side: bandwidth, dense peaks, and (`ridges`) ridge points.
pub fn gpu_summary(specs: &[&GpuSpec], ridges: bool) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["".to_string()];
    header.extend(specs.iter().map(|s| s.name.clone()));
    let mut rows = vec![
        row("memory GB/s", specs, |s| {
            Some(s.memory_bandwidth_gbps.value)
        }),
        row("memory GB", specs, |s| Some(s.memory_gb.value)),
        row("L2 MB", specs, |s| Some(s.l2_mb.value)),
        row("SMs", specs, |s| Some(s.sms.value)),
        row("TDP W", specs, |s| s.tdp_w.as_ref().map(|t| t.value)),
    ];
    for p in Precision::ALL {
        if specs.iter().any(|s| s.peak_tflops(p).is_some()) {
            rows.push(row(&format!("{p} dense {}", p.unit()), specs, |s| {
                s.peak_tflops(p)
            }));
            if ridges {
                rows.push(row(&format!("{p} ridge FLOP/B"), specs, |s| {
                    Roof::from_spec(s).ridge(p)
                }));
            }
        }
    }
    (header, rows)
}

fn row(label: &str, specs: &[&GpuSpec], value: impl Fn(&GpuSpec) -> Option<f64>) -> Vec<String> {
    std::iter::once(label.to_string())
        .chain(
            specs
                .iter()
                .map(|s| value(s).map_or("-".into(), trim_number)),
        )
        .collect()
}

fn trim_number(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Per case: the bound on each GPU and its limit (the columns of `compare-gpus`).
pub fn comparison(specs: &[&GpuSpec], plans: &[Plan<'_>]) -> (Vec<String>, Vec<Vec<String>>) {
    let per_gpu: Vec<Vec<Prediction>> = specs.iter().map(|s| predict(s, plans)).collect();
    let mut header = vec![
        "suite".to_string(),
        "case".to_string(),
        "FLOP/B".to_string(),
    ];
    header.extend(specs.iter().map(|s| format!("{} µs (limit)", s.name)));
    header.extend(
        specs
            .iter()
            .skip(1)
            .map(|s| format!("{} speedup vs {}", s.name, specs[0].name)),
    );
    let rows = (0..per_gpu.first().map_or(0, Vec::len))
        .map(|i| {
            let first = &per_gpu[0][i];
            let mut r = vec![
                first.suite.clone(),
                first.case.clone(),
                fmt(first.intensity, 2),
            ];
            r.extend(per_gpu.iter().map(|preds| {
                let p = &preds[i];
                if p.bound_us.is_finite() {
                    format!("{} ({})", fmt(p.bound_us, 2), p.limit)
                } else {
                    p.note.clone()
                }
            }));
            r.extend(
                per_gpu
                    .iter()
                    .skip(1)
                    .map(|preds| fmt(per_gpu[0][i].bound_us / preds[i].bound_us, 2)),
            );
            r
        })
        .collect();
    (header, rows)
}

/// A header and rows as a terminal table, Markdown, or CSV.
pub fn render(header: &[String], rows: &[Vec<String>], format: Format) -> String {
    match format {
        Format::Table => {
            let mut t = table(header.iter().map(String::as_str));
            for r in rows {
                t.add_row(r.clone());
            }
            t.to_string()
        }
        Format::Markdown => {
            let line = |cells: &[String]| {
                format!(
                    "| {} |",
                    cells
                        .iter()
                        .map(|c| c.replace('|', "\\|"))
                        .collect::<Vec<_>>()
                        .join(" | ")
                )
            };
            let mut out = vec![line(header), format!("|{}", "---|".repeat(header.len()))];
            out.extend(rows.iter().map(|r| line(r)));
            out.join("\n")
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let _ = w.write_record(header);
            for r in rows {
                let _ = w.write_record(r);
            }
            String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Csv,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roofline::Catalog;
    use crate::stream::{StreamCase, StreamOp, StreamSuite};
    use crate::suite::Case;

    fn plans() -> Vec<Plan<'static>> {
        let cases: Vec<Box<dyn Case>> = vec![
            Box::new(StreamCase::new(StreamOp::Copy, 1 << 30).unwrap()),
            Box::new(StreamCase::new(StreamOp::Triad, 1 << 30).unwrap()),
        ];
        vec![(&StreamSuite, cases)]
    }

    #[test]
    fn predictions_are_labelled_and_computed_by_hand() {
        let catalog = Catalog::embedded();
        let p = predict(catalog.get("H100 SXM").unwrap(), &plans());
        assert!(p.iter().all(|p| p.kind == "predicted"));
        // copy 1 GiB: 2 GiB at 3350 GB/s = 641.04 µs.
        assert!((p[0].bound_us - 641.04).abs() < 0.01);
        assert_eq!(p[0].limit, "dram_bw");
        assert!((p[0].gbps - 3350.0).abs() < 1e-6);
        // triad is memory bound too (1/6 FLOP/B, far left of the fp32 ridge).
        assert_eq!(p[1].limit, "dram_bw");
        assert!((p[1].intensity - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn comparison_shows_each_gpu_and_the_speedup() {
        let catalog = Catalog::embedded();
        let specs = [
            catalog.get("H100 SXM").unwrap(),
            catalog.get("H200").unwrap(),
        ];
        let (header, rows) = comparison(&specs, &plans());
        assert_eq!(header.len(), 3 + 2 + 1);
        let speedup: f64 = rows[0].last().unwrap().parse().unwrap();
        let expected = specs[1].memory_bandwidth_gbps.value / specs[0].memory_bandwidth_gbps.value;
        assert!((speedup - expected).abs() < 0.01, "{speedup} vs {expected}");
        let md = render(&header, &rows, Format::Markdown);
        assert!(md.lines().nth(1).unwrap().starts_with("|---|"));
        let csv = render(&header, &rows, Format::Csv);
        assert_eq!(csv.lines().count(), 3);
        let (h, summary) = gpu_summary(&specs, true);
        assert_eq!(h.len(), 3);
        assert!(summary.iter().any(|r| r[0] == "bf16 ridge FLOP/B"));
    }

    #[test]
    fn cases_too_big_for_a_gpu_say_so() {
        let catalog = Catalog::embedded();
        let huge: Vec<Box<dyn Case>> = vec![Box::new(
            StreamCase::new(StreamOp::Triad, 12 << 30).unwrap(),
        )];
        let p = predict(catalog.get("L4").unwrap(), &[(&StreamSuite, huge)]);
        assert!(p[0].note.contains("does not fit"), "{}", p[0].note);
    }
}
