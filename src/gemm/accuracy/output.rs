//! The quantized-GEMM accuracy report as a terminal table, a CSV file and an SQNR bar chart.

use std::path::Path;

use anyhow::Result;
use comfy_table::{Cell, CellAlignment};
use plotters::prelude::*;

use super::{AccuracyRow, BASELINE_FORMAT};
use crate::gemm::quant::QuantFormat;
use crate::report::plot::{distinct, svg_error};
use crate::report::table;

fn db(v: f64) -> String {
    if v.is_infinite() {
        "inf".into()
    } else {
        format!("{v:.1}")
    }
}

/// One line per row, in order. Cosine similarity is shown as `1 - cos`.
pub fn render_table(rows: &[AccuracyRow]) -> String {
    let mut t = table([
        "shape",
        "M×N×K",
        "data",
        "format",
        "scheme",
        "SQNR dB",
        "rel fro",
        "1-cos",
        "max abs",
        "kernel SQNR dB",
        "kernel rel fro",
        "kernel 1-cos",
        "kernel max abs",
    ]);
    let number = |text: String| Cell::new(text).set_alignment(CellAlignment::Right);
    for r in rows {
        let dims = if r.n_evaluated < r.n {
            format!("{}×{} ({})×{}", r.m, r.n, r.n_evaluated, r.k)
        } else {
            format!("{}×{}×{}", r.m, r.n, r.k)
        };
        t.add_row(vec![
            Cell::new(&r.shape),
            Cell::new(dims),
            Cell::new(&r.data),
            Cell::new(&r.format),
            Cell::new(&r.scheme),
            number(db(r.quant_sqnr_db)),
            number(format!("{:.2e}", r.quant_rel_fro)),
            number(format!("{:.1e}", 1.0 - r.quant_cosine)),
            number(format!("{:.2e}", r.quant_max_abs)),
            number(db(r.kernel_sqnr_db)),
            number(format!("{:.2e}", r.kernel_rel_fro)),
            number(format!("{:.1e}", 1.0 - r.kernel_cosine)),
            number(format!("{:.2e}", r.kernel_max_abs)),
        ]);
    }
    t.to_string()
}

fn format_colour(format: &str) -> RGBColor {
    match QuantFormat::parse(format) {
        Ok(QuantFormat::E4m3) => RGBColor(31, 119, 180),
        Ok(QuantFormat::E5m2) => RGBColor(255, 127, 14),
        Ok(QuantFormat::Int8) => RGBColor(44, 160, 44),
        Err(_) => RGBColor(120, 120, 120),
    }
}

/// `(mean, min, max)` of the quantization SQNR of the rows that `keep` selects (over shapes).
fn spread(rows: &[AccuracyRow], keep: impl Fn(&AccuracyRow) -> bool) -> Option<(f64, f64, f64)> {
    let v: Vec<f64> = rows
        .iter()
        .filter(|r| keep(r) && r.quant_sqnr_db.is_finite())
        .map(|r| r.quant_sqnr_db)
        .collect();
    if v.is_empty() {
        return None;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    Some((mean, lo, hi))
}

/// One panel per data kind: for each scheme a group of bars, one per format, at the mean
/// quantization SQNR over the shapes (a whisker from the worst to the best shape); the dashed
/// line is the BF16 baseline (inputs unquantized, output rounded to BF16).
pub fn sqnr_svg(rows: &[AccuracyRow], path: &Path) -> Result<()> {
    let data_sets = distinct(rows.iter().map(|r| r.data.as_str()));
    let quantized = |r: &&AccuracyRow| r.format != BASELINE_FORMAT;
    let schemes = distinct(rows.iter().filter(quantized).map(|r| r.scheme.as_str()));
    let formats = distinct(rows.iter().filter(quantized).map(|r| r.format.as_str()));
    let top = rows
        .iter()
        .map(|r| r.quant_sqnr_db)
        .filter(|v| v.is_finite())
        .fold(10.0, f64::max);
    let root =
        SVGBackend::new(path, (620, 420 * data_sets.len().max(1) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((data_sets.len().max(1), 1));
    for (panel, data) in panels.iter().zip(&data_sets) {
        let groups = schemes.len().max(1) as f64;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{data}: GEMM output SQNR after quantizing X and W"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..groups, 0.0..(top * 1.45).ceil())?;
        let scheme_names = schemes.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(schemes.len().max(1) * 2 + 1)
            .x_label_formatter(&move |x| {
                let i = x.floor() as usize;
                let centred = (x - x.floor() - 0.5).abs() < 1e-6;
                match scheme_names.get(i) {
                    Some(s) if centred => s.to_string(),
                    _ => String::new(),
                }
            })
            .y_desc("SQNR dB (mean over shapes; whisker: worst..best)")
            .draw()?;
        let width = 0.8 / formats.len().max(1) as f64;
        for (fi, format) in formats.iter().enumerate() {
            let colour = format_colour(format);
            let mut bars = Vec::new();
            let mut whiskers = Vec::new();
            for (si, scheme) in schemes.iter().enumerate() {
                let keep =
                    |r: &AccuracyRow| r.data == *data && r.format == *format && r.scheme == *scheme;
                let Some((mean, lo, hi)) = spread(rows, keep) else {
                    continue;
                };
                let x0 = si as f64 + 0.1 + fi as f64 * width;
                bars.push(Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.9, mean)],
                    colour.filled(),
                ));
                let xc = x0 + width * 0.45;
                whiskers.push(PathElement::new(vec![(xc, lo), (xc, hi)], BLACK));
            }
            chart
                .draw_series(bars)?
                .label(*format)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
            chart.draw_series(whiskers)?;
        }
        let baseline = spread(rows, |r| r.data == *data && r.format == BASELINE_FORMAT);
        if let Some((mean, _, _)) = baseline {
            let style = RGBColor(90, 90, 90).stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(0.0, mean), (groups, mean)],
                    6,
                    4,
                    style,
                ))?
                .label("bf16 (no quantization)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
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
