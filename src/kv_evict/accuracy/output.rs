//! The accuracy report as a terminal table, a CSV file and an error-vs-budget SVG.

use std::path::Path;

use anyhow::Result;
use comfy_table::{Cell, CellAlignment};
use plotters::prelude::*;

use super::AccuracyRow;
use crate::kv_evict::policy::Policy;
use crate::report::plot::{distinct, svg_error};
use crate::report::table;

/// One line per row, in order.
pub fn render_table(rows: &[AccuracyRow]) -> String {
    let mut t = table([
        "data",
        "policy",
        "budget",
        "kept",
        "rel err mean",
        "rel err max",
        "mass recall mean",
        "mass recall min",
        "needles kept",
    ]);
    let number = |text: String| Cell::new(text).set_alignment(CellAlignment::Right);
    for r in rows {
        t.add_row(vec![
            Cell::new(&r.data),
            Cell::new(&r.policy),
            Cell::new(&r.budget),
            number(format!("{}/{}", r.kept_tokens, r.cache_tokens)),
            number(format!("{:.2e}", r.rel_error_mean)),
            number(format!("{:.2e}", r.rel_error_max)),
            number(format!("{:.4}", r.mass_recall_mean)),
            number(format!("{:.4}", r.mass_recall_min)),
            number(
                r.needle_recall
                    .map_or("-".into(), |n| format!("{:.0}%", n * 100.0)),
            ),
        ]);
    }
    t.to_string()
}

/// Errors below this are drawn at it: the log axis has no 0 (a full budget is exact).
const ERROR_FLOOR: f64 = 1e-6;

/// `(kept share of the cache, mean relative error)` of `policy` on `data`, by budget.
fn curve(rows: &[AccuracyRow], data: &str, policy: &str) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.data == data && r.policy == policy)
        .map(|r| {
            let share = r.kept_tokens as f64 / r.cache_tokens as f64;
            (share, r.rel_error_mean.max(ERROR_FLOOR))
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// A policy's colour in every panel: the score-based policies in strong colours, the
/// baselines (Recent, Random) in greys so the policies under study stand out.
fn policy_colour(policy: &str) -> RGBColor {
    match Policy::parse(policy) {
        Ok(Policy::StreamingLlm) => RGBColor(148, 103, 189),
        Ok(Policy::H2o) => RGBColor(44, 160, 44),
        Ok(Policy::SnapKv) => RGBColor(255, 127, 14),
        Ok(Policy::Tova) => RGBColor(31, 119, 180),
        Ok(Policy::Random) => RGBColor(150, 150, 150),
        Ok(Policy::Recent) => RGBColor(60, 60, 60),
        Err(_) => RGBColor(214, 39, 40),
    }
}

/// One panel per data set (two columns), one line per policy: the kept share of the cache
/// against the mean relative error of the attention output, log y (errors below 1e-6, such as
/// the exact 0 of a full budget, are drawn at 1e-6).
pub fn error_vs_budget_svg(rows: &[AccuracyRow], path: &Path) -> Result<()> {
    let data_sets = distinct(rows.iter().map(|r| r.data.as_str()));
    let policies = distinct(rows.iter().map(|r| r.policy.as_str()));
    let cols = data_sets.len().clamp(1, 2);
    let grid = (data_sets.len().div_ceil(cols).max(1), cols);
    let size = (560 * grid.1 as u32, 420 * grid.0 as u32);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let errors = rows.iter().map(|r| r.rel_error_mean.max(ERROR_FLOOR));
    let (min, max) = errors.fold((1.0, 1.0), |(lo, hi), e| (f64::min(lo, e), f64::max(hi, e)));
    for (panel, data) in root.split_evenly(grid).iter().zip(&data_sets) {
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{data}: attention output error vs KV budget"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, (min / 2.0..max * 2.0).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("kept share of the cache")
            .y_desc("relative error (mean over heads)")
            .x_label_formatter(&|x| format!("{:.0}%", x * 100.0))
            .draw()?;
        for policy in &policies {
            let style = policy_colour(policy).stroke_width(2);
            let points = curve(rows, data, policy);
            chart
                .draw_series(LineSeries::new(points.clone(), style))?
                .label(*policy)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            let dots = points
                .into_iter()
                .map(|p| Circle::new(p, 3, style.filled()));
            chart.draw_series(dots)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present().map_err(|e| svg_error(path, e))?;
    Ok(())
}
