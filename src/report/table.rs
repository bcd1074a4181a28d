//! Terminal tables.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use super::row::{Provider, ResultRow, Status, VerifyOutcome, VerifyRow};

/// An empty table in the house style.
pub fn table<'a>(header: impl IntoIterator<Item = &'a str>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header);
    t
}

/// The `roofbench verify` table: one line per (case, kernel).
pub fn verify_table(rows: &[VerifyRow]) -> Table {
    let mut t = table([
        "suite",
        "case",
        "kernel",
        "provider",
        "result",
        "max rel err",
        "detail",
    ]);
    for r in rows {
        let result = match r.outcome {
            VerifyOutcome::Pass => "pass",
            VerifyOutcome::Fail => "FAIL",
            VerifyOutcome::Skipped => "skipped",
        };
        let err = r.max_rel_err.map_or("-".into(), |e| format!("{e:.2e}"));
        t.add_row(vec![
            &r.suite,
            &r.case,
            &r.kernel,
            Provider::or_dash(r.provider),
            result,
            &err,
            &r.detail,
        ]);
    }
    t
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// The end-of-run table: one line per row.
pub fn results_table(rows: &[ResultRow]) -> Table {
    let mut t = table([
        "suite",
        "case",
        "kernel",
        "provider",
        "mode",
        "median µs",
        "±ci %",
        "GB/s",
        "TFLOPS",
        "tok/s",
        "% ceiling",
        "verified",
        "note",
    ]);
    for r in rows {
        let pct = match (r.pct_of_ceiling, r.ceiling.as_str()) {
            (Some(p), c) => format!("{p:.1} {c}"),
            (None, _) => "-".into(),
        };
        let verified = match (r.status, r.verified) {
            (Status::Skipped, _) => "skipped",
            (_, true) => "pass",
            (_, false) => "FAIL",
        };
        let note = if r.clock_warning.is_empty() {
            r.note.clone()
        } else {
            format!("clocks: {} {}", r.clock_warning, r.note)
        };
        t.add_row(vec![
            Cell::new(&r.suite),
            Cell::new(&r.case),
            Cell::new(&r.kernel),
            Cell::new(Provider::or_dash(r.provider)),
            Cell::new(r.mode.map_or("", |m| m.as_str())),
            Cell::new(opt(r.median_us, 2)).set_alignment(CellAlignment::Right),
            Cell::new(opt(r.rel_ci.map(|c| c * 100.0), 2)).set_alignment(CellAlignment::Right),
            Cell::new(opt(r.gbps, 1)).set_alignment(CellAlignment::Right),
            Cell::new(opt(r.tflops, 1)).set_alignment(CellAlignment::Right),
            Cell::new(opt(r.tokens_per_s, 0)).set_alignment(CellAlignment::Right),
            Cell::new(pct),
            Cell::new(verified),
            Cell::new(note),
        ]);
    }
    t
}
