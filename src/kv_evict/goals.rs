//! Issue 6's goals as ratios of one run's rows: an eviction step against a decode step, the
//! compaction and swap bandwidths against their ceilings, and decode after compaction against
//! the ideal budget share of the full-cache time.

use super::config::EvictConfig;
use crate::measure::Mode;
use crate::report::{Provider, ResultRow, Status};
use crate::suite::Goal;

/// The goal shape of the issue: B = 32, context 4096 (32/8 heads, d128, bf16, page 16).
const SHAPE: &str = "b=32,ctx=4096";

fn name_of(spec: &str) -> String {
    EvictConfig::parse(&format!("{SHAPE},{spec}"))
        .expect("a built-in spec")
        .name()
}

/// A cold, verified row of our kernels.
fn cold_ok(r: &ResultRow) -> bool {
    r.mode == Some(Mode::Cold) && r.status == Status::Ok && r.provider == Some(Provider::Roofbench)
}

/// The median of the cold, verified, roofbench row of a case.
fn median(rows: &[ResultRow], case: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.case == case && cold_ok(r))
        .and_then(|r| r.median_us)
}

pub fn goals(rows: &[ResultRow]) -> Vec<Goal> {
    let mut out = Vec::new();
    let decode = name_of("op=decode");
    if let Some(step) = median(rows, &decode) {
        for policy in ["h2o", "tova", "snapkv", "streaming-llm"] {
            let evict = name_of(&format!("op=evict,policy={policy}"));
            if let Some(t) = median(rows, &evict) {
                out.push(Goal::new(
                    format!("{evict} / one decode step"),
                    t / step,
                    "<= 0.10",
                    t / step <= 0.10,
                    format!("{t:.1} µs / {step:.1} µs ({decode})"),
                ));
            }
        }
        for budget in [0.10, 0.25, 0.50] {
            let spec = format!("op=decode-compacted,budget={budget}");
            let compacted = name_of(&spec);
            if let Some(t) = median(rows, &compacted) {
                // The ideal share is the kept tokens' share (budgets round up to whole tokens).
                let c = EvictConfig::parse(&format!("{SHAPE},{spec}")).expect("a built-in spec");
                let share = c.budgets()[0] as f64 / c.context_lens()[0] as f64;
                let ideal = share * step;
                out.push(Goal::new(
                    format!("{compacted} / ({budget} x full decode)"),
                    t / ideal,
                    "<= 1.10",
                    t / ideal <= 1.10,
                    format!("{t:.1} µs vs ideal {ideal:.1} µs"),
                ));
            }
        }
    }
    for r in rows.iter().filter(|r| cold_ok(r)) {
        if r.case.starts_with("compact/") {
            if let Some(pct) = r.pct_of_copy {
                out.push(Goal::new(
                    format!("{} % of copy bandwidth", r.case),
                    pct,
                    ">= 85",
                    pct >= 85.0,
                    format!("{:.0} GB/s", r.gbps.unwrap_or(f64::NAN)),
                ));
            }
        }
        let swap = r.case.starts_with("swap-");
        if swap && r.ceiling_source.starts_with("measured:pcie") {
            if let Some(pct) = r.pct_of_ceiling {
                out.push(Goal::new(
                    format!("{} % of pinned PCIe", r.case),
                    pct,
                    ">= 90",
                    pct >= 90.0,
                    format!(
                        "{:.1} GB/s of {:.1} ({})",
                        r.gbps.unwrap_or(f64::NAN),
                        r.ceiling_value.unwrap_or(f64::NAN),
                        r.ceiling_source
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(case: &str, median_us: f64) -> ResultRow {
        ResultRow {
            case: case.into(),
            mode: Some(Mode::Cold),
            status: Status::Ok,
            provider: Some(Provider::Roofbench),
            median_us: Some(median_us),
            ..ResultRow::default()
        }
    }

    #[test]
    fn ratios_come_from_the_rows_of_the_goal_shape() {
        let decode = name_of("op=decode");
        assert_eq!(decode, "decode/b32-ctx4096-h32/8-d128-p16-kvbf16");
        let rows = vec![
            row(&decode, 200.0),
            row(&name_of("op=evict,policy=h2o"), 220.0),
            row(&name_of("op=decode-compacted,budget=0.25"), 52.0),
        ];
        let g = goals(&rows);
        assert_eq!(g.len(), 2, "{g:#?}");
        assert!((g[0].value - 1.1).abs() < 1e-12 && !g[0].met);
        assert!(
            (g[1].value - 52.0 / 50.0).abs() < 1e-12 && g[1].met,
            "1024 of 4096 tokens"
        );
        assert!(goals(&rows[1..]).is_empty(), "no decode row, no ratio");
    }
}
