//! Predictions for GPUs you do not own: the roofline bound of every case of the suites on any GPU
//! in the spec table, and side-by-side comparisons for hardware evaluation. Everything here is
//! *predicted* from spec-sheet figures; nothing is measured. Every bound says which term of the
//! model sets it (bytes, FLOPs or the latency floor), and every figure resting on a value the
//! table marks unconfirmed carries the mark.

use comfy_table::Table;

use crate::report::table;
use crate::roofline::spec::Sourced;
use crate::roofline::{GpuSpec, Limit, Precision, Roof};
use crate::suite::Plan;

pub use crate::report::{Prediction, PREDICTED};

/// The mark of a figure resting on an unconfirmed value; [`UNCONFIRMED_FOOTNOTE`] explains it.
pub const UNCONFIRMED_MARK: &str = "*";
pub const UNCONFIRMED_FOOTNOTE: &str =
    "* rests on a value the spec table marks unconfirmed (`roofbench gpus NAME` says why)";

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
                bound_us: None,
                gbps: None,
                tflops: None,
                binds: String::new(),
                limit: String::new(),
                limit_value: None,
                limit_source: String::new(),
                unconfirmed: false,
                ridge: None,
                base: String::new(),
                speedup_vs_base: None,
                note: String::new(),
            };
            match roof.bound(&w, false) {
                Ok(b) => {
                    p.bound_us = Some(b.time_us);
                    p.gbps = Some(w.gbps(b.time_us));
                    p.tflops = (w.flops > 0).then(|| w.tflops(b.time_us));
                    p.binds = b.term.as_str().into();
                    p.limit = b.limit.name;
                    p.limit_value = Some(b.limit.value);
                    p.limit_source = b.limit.source;
                    p.unconfirmed = b.limit.unconfirmed;
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

fn fmt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "-".into(),
    }
}

fn mark(unconfirmed: bool) -> &'static str {
    if unconfirmed {
        UNCONFIRMED_MARK
    } else {
        ""
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
        "binds",
        "limit",
        "note",
    ]);
    for p in predictions {
        t.add_row(vec![
            p.suite.clone(),
            p.case.clone(),
            p.dtype.clone(),
            fmt(Some(p.intensity), 2),
            format!("{}{}", fmt(p.bound_us, 2), mark(p.unconfirmed)),
            fmt(p.gbps, 0),
            fmt(p.tflops, 1),
            p.binds.clone(),
            p.limit.clone(),
            p.note.clone(),
        ]);
    }
    t
}

/// The prediction table as printed, with the footnote when a figure rests on an unconfirmed value.
pub fn render_predictions(predictions: &[Prediction]) -> String {
    let mut text = prediction_table(predictions).to_string();
    if any_unconfirmed(predictions) {
        text = format!("{text}\n{UNCONFIRMED_FOOTNOTE}");
    }
    text
}

/// Whether any prediction rests on an unconfirmed value (then print [`UNCONFIRMED_FOOTNOTE`]).
pub fn any_unconfirmed(predictions: &[Prediction]) -> bool {
    predictions.iter().any(|p| p.unconfirmed)
}

/// The limits of each GPU side by side: bandwidth, dense peaks, the latency floor and
/// (`ridges`) ridge points; a value marked unconfirmed in the table carries [`UNCONFIRMED_MARK`].
pub fn gpu_summary(specs: &[&GpuSpec], ridges: bool) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["".to_string()];
    header.extend(specs.iter().map(|s| s.name.clone()));
    let sourced = |v: &Sourced| (v.value, v.is_unconfirmed());
    let mut rows = vec![
        row("memory GB/s", specs, |s| {
            Some(sourced(&s.memory_bandwidth_gbps))
        }),
        row("memory GB", specs, |s| Some(sourced(&s.memory_gb))),
        row("L2 MiB", specs, |s| Some(sourced(&s.l2_mib))),
        row("SMs", specs, |s| Some(sourced(&s.sms))),
        row("boost clock MHz", specs, |s| {
            Some(sourced(&s.boost_clock_mhz))
        }),
        row("tensor peak clock MHz", specs, |s| {
            Some(sourced(
                s.tensor_clock_mhz.as_ref().unwrap_or(&s.boost_clock_mhz),
            ))
        }),
        row("TDP W", specs, |s| s.tdp_w.as_ref().map(sourced)),
        row("floor µs", specs, |s| {
            Roof::from_spec(s)
                .floor(true)
                .map(|l| (l.value, l.unconfirmed))
        }),
    ];
    for p in Precision::ALL {
        if specs.iter().any(|s| s.peak_tflops(p).is_some()) {
            rows.push(row(&format!("{p} dense {}", p.unit()), specs, |s| {
                s.dense_tflops.get(&p).map(sourced)
            }));
            if ridges {
                rows.push(row(&format!("{p} ridge FLOP/B"), specs, |s| {
                    let roof = Roof::from_spec(s);
                    let unconfirmed = roof.dram.unconfirmed
                        || roof.compute.get(&p).is_some_and(|l| l.unconfirmed);
                    roof.ridge(p).map(|r| (r, unconfirmed))
                }));
            }
        }
    }
    (header, rows)
}

fn row(
    label: &str,
    specs: &[&GpuSpec],
    value: impl Fn(&GpuSpec) -> Option<(f64, bool)>,
) -> Vec<String> {
    std::iter::once(label.to_string())
        .chain(specs.iter().map(|s| {
            value(s).map_or("-".into(), |(v, unconfirmed)| {
                format!("{}{}", trim_number(v), mark(unconfirmed))
            })
        }))
        .collect()
}

fn trim_number(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Every case predicted on several GPUs, with speedups against a base the user chooses.
pub struct Comparison {
    pub roofs: Vec<Roof>,
    /// Index of the base GPU in `roofs`.
    pub base: usize,
    /// `per_gpu[g][i]`: case `i` on GPU `g`, with its speedup over the base.
    pub per_gpu: Vec<Vec<Prediction>>,
}

/// Predicts `plans` on each of `specs`; speedups are against `specs[base]`.
pub fn compare(specs: &[&GpuSpec], base: usize, plans: &[Plan<'_>]) -> Comparison {
    let mut per_gpu: Vec<Vec<Prediction>> = specs.iter().map(|s| predict(s, plans)).collect();
    let base_bounds: Vec<Option<f64>> = per_gpu[base].iter().map(|p| p.bound_us).collect();
    for preds in &mut per_gpu {
        for (p, base_us) in preds.iter_mut().zip(&base_bounds) {
            p.base = specs[base].name.clone();
            p.speedup_vs_base = base_us.zip(p.bound_us).map(|(b, t)| b / t);
        }
    }
    Comparison {
        roofs: specs.iter().map(|s| Roof::from_spec(s)).collect(),
        base,
        per_gpu,
    }
}

/// The limit of `roof` with `name` (as a bound names it), to show its value on every GPU.
fn named_limit(roof: &Roof, name: &str) -> Option<Limit> {
    match name {
        "dram_bw" => Some(roof.dram.clone()),
        "floor" => roof.floor(true),
        "pcie_h2d" => roof.host_to_device.clone(),
        "pcie_d2h" => roof.device_to_host.clone(),
        _ => roof.compute.values().find(|l| l.name == name).cloned(),
    }
}

/// A regime's title and its order in the summary: memory-bound first (decode, copies), then
/// compute-bound per precision (GEMM), then the host link and the latency floor.
fn regime(limit: &str) -> (usize, String) {
    match limit {
        "dram_bw" => (0, "memory-bound (DRAM GB/s)".into()),
        "floor" => (20, "latency floor (µs)".into()),
        "pcie_h2d" | "pcie_d2h" => (10, format!("host-link-bound ({limit} GB/s)")),
        peak => {
            let p = peak.trim_end_matches("_peak");
            let rank = Precision::ALL
                .iter()
                .position(|x| x.name() == p)
                .unwrap_or(8);
            (1 + rank, format!("compute-bound {p} (TFLOPS)"))
        }
    }
}

fn geomean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v.ln(), n + 1));
    (n > 0).then(|| (sum / n as f64).exp())
}

impl Comparison {
    fn names(&self) -> impl Iterator<Item = &str> {
        self.roofs.iter().map(|r| r.gpu.as_str())
    }

    fn base_name(&self) -> &str {
        &self.roofs[self.base].gpu
    }

    /// Per regime (by the limit that binds each case on the base GPU): its cases and suites,
    /// and on each GPU the limit's value and the geometric-mean speedup of those cases.
    pub fn regimes(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let mut header = vec!["regime".to_string(), "cases".to_string()];
        header.extend(
            self.names()
                .map(|n| format!("{n} (speedup vs {})", self.base_name())),
        );
        let base = &self.per_gpu[self.base];
        let mut limits: Vec<&str> = base
            .iter()
            .filter(|p| !p.limit.is_empty())
            .map(|p| p.limit.as_str())
            .collect();
        limits.sort_by_key(|l| regime(l));
        limits.dedup();
        let rows = limits
            .into_iter()
            .map(|limit| {
                let cases: Vec<usize> = (0..base.len())
                    .filter(|&i| base[i].limit == limit)
                    .collect();
                let mut suites: Vec<&str> = cases.iter().map(|&i| base[i].suite.as_str()).collect();
                suites.dedup();
                let mut r = vec![
                    regime(limit).1,
                    format!("{} ({})", cases.len(), suites.join(", ")),
                ];
                r.extend(self.roofs.iter().zip(&self.per_gpu).map(|(roof, preds)| {
                    let value = named_limit(roof, limit).map_or("-".into(), |l| {
                        format!("{}{}", trim_number(l.value), mark(l.unconfirmed))
                    });
                    let speedup = geomean(cases.iter().filter_map(|&i| preds[i].speedup_vs_base));
                    format!("{value} ({}x)", fmt(speedup, 2))
                }));
                r
            })
            .collect();
        (header, rows)
    }

    /// Per case: the bound on each GPU with the term that sets it, then the speedups.
    pub fn cases(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let mut header = vec![
            "suite".to_string(),
            "case".to_string(),
            "FLOP/B".to_string(),
        ];
        header.extend(self.names().map(|n| format!("{n} µs (binds)")));
        let others: Vec<usize> = (0..self.roofs.len()).filter(|&g| g != self.base).collect();
        header.extend(
            others
                .iter()
                .map(|&g| format!("{} speedup vs {}", self.roofs[g].gpu, self.base_name())),
        );
        let rows = (0..self.per_gpu[self.base].len())
            .map(|i| {
                let first = &self.per_gpu[self.base][i];
                let mut r = vec![
                    first.suite.clone(),
                    first.case.clone(),
                    fmt(Some(first.intensity), 2),
                ];
                r.extend(self.per_gpu.iter().map(|preds| {
                    let p = &preds[i];
                    match p.bound_us {
                        Some(us) if p.note.is_empty() => {
                            format!("{:.2}{} ({})", us, mark(p.unconfirmed), p.binds)
                        }
                        _ => p.note.clone(),
                    }
                }));
                r.extend(
                    others
                        .iter()
                        .map(|&g| fmt(self.per_gpu[g][i].speedup_vs_base, 2)),
                );
                r
            })
            .collect();
        (header, rows)
    }

    /// Whether any figure of the comparison rests on an unconfirmed value.
    pub fn any_unconfirmed(&self) -> bool {
        self.per_gpu.iter().any(|p| any_unconfirmed(p))
            || self
                .roofs
                .iter()
                .any(|r| r.dram.unconfirmed || r.compute.values().any(|l| l.unconfirmed))
    }

    /// One rectangular table: a row per (case, GPU), numbers only in numeric columns, the
    /// binding term and limit in their own columns, no banner (for spreadsheets).
    pub fn csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        for i in 0..self.per_gpu[self.base].len() {
            for preds in &self.per_gpu {
                w.serialize(&preds[i]).expect("a prediction serializes");
            }
        }
        String::from_utf8(w.into_inner().expect("writing to memory")).expect("CSV is UTF-8")
    }

    /// Markdown: the per-regime summary first, then each GPU's limits, then every case.
    pub fn markdown(&self, specs: &[&GpuSpec]) -> String {
        let mut out = vec![format!(
            "**PREDICTED** from spec sheets (dense figures; nothing measured). Speedups vs {}.",
            self.base_name()
        )];
        let (h, r) = self.regimes();
        out.push(format!(
            "\n### By regime\n\n{}",
            render(&h, &r, Format::Markdown)
        ));
        let (h, r) = gpu_summary(specs, true);
        out.push(format!(
            "\n### Limits\n\n{}",
            render(&h, &r, Format::Markdown)
        ));
        let (h, r) = self.cases();
        out.push(format!(
            "\n### Cases\n\n{}",
            render(&h, &r, Format::Markdown)
        ));
        if self.any_unconfirmed() {
            out.push(format!("\n{UNCONFIRMED_FOOTNOTE}"));
        }
        out.join("\n")
    }
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
            Box::new(StreamCase::new(StreamOp::Copy, 1 << 20).unwrap()),
        ];
        vec![(&StreamSuite, cases)]
    }

    #[test]
    fn predictions_are_labelled_and_computed_by_hand() {
        let catalog = Catalog::embedded();
        let p = predict(catalog.get("H100 SXM").unwrap(), &plans());
        assert!(p.iter().all(|p| p.kind == "predicted"));
        // copy 1 GiB: 2 GiB at 3350 GB/s = 641.04 µs.
        assert!((p[0].bound_us.unwrap() - 641.04).abs() < 0.01);
        assert_eq!(
            (p[0].limit.as_str(), p[0].binds.as_str()),
            ("dram_bw", "bytes")
        );
        assert!((p[0].gbps.unwrap() - 3350.0).abs() < 1e-6);
        // triad is memory bound too (1/6 FLOP/B, far left of the fp32 ridge).
        assert_eq!(p[1].limit, "dram_bw");
        assert!((p[1].intensity - 1.0 / 6.0).abs() < 1e-12);
        // A 1 MiB copy: the floor (launch + DRAM round trip), not 0.63 µs of bytes.
        assert_eq!(
            (p[2].limit.as_str(), p[2].binds.as_str()),
            ("floor", "floor")
        );
        assert!(p[2].bound_us.unwrap() > 1.0, "{:?}", p[2].bound_us);
        assert!(
            p[2].unconfirmed,
            "the floor's published parts are unconfirmed"
        );
    }

    #[test]
    fn no_prediction_exceeds_its_stated_peak_or_bandwidth() {
        let catalog = Catalog::embedded();
        // Every suite's quick grid (named here: the suite list lives in the crate root, above).
        let suites: [&'static dyn crate::suite::Suite; 4] = [
            &StreamSuite,
            &crate::attention::AttentionSuite,
            &crate::kv_evict::KvEvictSuite,
            &crate::gemm::GemmSuite,
        ];
        let plans = suites
            .into_iter()
            .map(|s| {
                let cases = s.default_cases(true);
                (s, cases)
            })
            .collect::<Vec<_>>();
        for spec in &catalog.gpus {
            let roof = Roof::from_spec(spec);
            for p in predict(spec, &plans) {
                let Some(us) = p.bound_us else { continue };
                assert!(
                    p.gbps.unwrap() <= roof.dram.value * (1.0 + 1e-9),
                    "{} {}",
                    spec.name,
                    p.case
                );
                if let (Some(tflops), Some(peak)) = (p.tflops, p.limit_value) {
                    if p.binds == "flops" {
                        assert!(
                            (tflops - peak).abs() <= peak * 1e-9,
                            "{} {}",
                            spec.name,
                            p.case
                        );
                    }
                    let max_peak = roof.compute.values().map(|l| l.value).fold(0.0, f64::max);
                    assert!(
                        tflops <= max_peak * (1.0 + 1e-9),
                        "{} {} {us}",
                        spec.name,
                        p.case
                    );
                }
            }
        }
    }

    fn h100_h200_gh200() -> Comparison {
        let catalog = Catalog::embedded();
        let specs = [
            catalog.get("H100 SXM").unwrap(),
            catalog.get("H200").unwrap(),
            catalog.get("GH200").unwrap(),
        ];
        compare(&specs, 1, &plans())
    }

    #[test]
    fn speedups_are_against_the_chosen_base() {
        let c = h100_h200_gh200();
        let (header, rows) = c.cases();
        assert_eq!(header.len(), 3 + 3 + 2);
        assert_eq!(header[6], "H100 SXM speedup vs H200 SXM");
        let speedup: f64 = rows[0][6].parse().unwrap();
        assert!((speedup - 3350.0 / 4800.0).abs() < 0.01, "{speedup}");
        assert!(c.per_gpu[1].iter().all(|p| p.speedup_vs_base == Some(1.0)));
    }

    #[test]
    fn csv_is_one_rectangular_numeric_table() {
        let c = h100_h200_gh200();
        let csv = c.csv();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let header = reader.headers().unwrap().clone();
        let records: Vec<_> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 3 * 3, "a row per case and GPU, no banner");
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        for r in &records {
            assert_eq!(r.len(), header.len());
            for numeric in [
                "bytes",
                "flops",
                "intensity",
                "bound_us",
                "gbps",
                "limit_value",
                "speedup_vs_base",
            ] {
                let cell = &r[col(numeric)];
                assert!(cell.parse::<f64>().is_ok(), "{numeric} = {cell:?}");
            }
            assert!(["bytes", "flops", "floor"].contains(&&r[col("binds")]));
        }
        // GH200's figures are all unconfirmed: the flag reaches its rows, and only its rows.
        for r in &records {
            let gh200 = &r[col("gpu")] == "GH200";
            let unconfirmed = &r[col("unconfirmed")] == "true";
            let floor = &r[col("binds")] == "floor";
            assert_eq!(unconfirmed, gh200 || floor, "{r:?}");
        }
    }

    #[test]
    fn markdown_starts_with_the_regimes_and_marks_unconfirmed_figures() {
        let c = h100_h200_gh200();
        let catalog = Catalog::embedded();
        let specs = [
            catalog.get("H100 SXM").unwrap(),
            catalog.get("H200").unwrap(),
            catalog.get("GH200").unwrap(),
        ];
        let md = c.markdown(&specs);
        let regimes = md.find("### By regime").unwrap();
        assert!(regimes < md.find("### Cases").unwrap());
        assert!(md.contains("memory-bound (DRAM GB/s)"), "{md}");
        assert!(md.contains("latency floor"), "{md}");
        // GH200's 4000 GB/s is unconfirmed, H200's 4800 is not.
        assert!(md.contains("4000*") && md.contains("4800 (1.00x)"), "{md}");
        assert!(md.contains(UNCONFIRMED_FOOTNOTE));
        let (_, summary) = gpu_summary(&specs, true);
        assert!(summary.iter().any(|r| r[0] == "bf16 ridge FLOP/B"));
        assert!(summary.iter().any(|r| r[0] == "floor µs"));
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
