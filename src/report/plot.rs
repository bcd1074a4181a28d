//! SVG plots (plotters, SVG backend only: no system fonts needed, text is laid out by the viewer).
//!
//! - a log-log roofline: for each precision, the memory slope up to the ridge, then the peak;
//!   spec ceilings dashed, measured ones solid; each kernel with FLOPs a labelled point;
//! - a bar chart of % of roofline per suite, one bar per result row.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::series::DashedLineSeries;

use super::row::{Prediction, ResultRow, Status};
use crate::roofline::{Precision, Roof};

/// A labelled point on the roofline: (FLOPs per byte, TFLOPS).
#[derive(Debug, Clone)]
pub struct Point {
    pub label: String,
    pub intensity: f64,
    pub tflops: f64,
}

/// How a roof is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Spec sheet or derived figures.
    Dashed,
    /// Spec figures too, for the second eight GPUs of a comparison (colours repeat after eight).
    Dotted,
    /// Measured on the machine.
    Solid,
}

const X_RANGE: (f64, f64) = (1.0 / 64.0, 8192.0);
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
];

/// The style of roof `index` of a comparison: eight colours, dashed then dotted, so up to 16
/// GPUs (the whole table) are told apart.
pub fn comparison_style(index: usize) -> (RGBColor, Line) {
    let line = if index / PALETTE.len() % 2 == 0 {
        Line::Dashed
    } else {
        Line::Dotted
    };
    (PALETTE[index % PALETTE.len()], line)
}

/// Pixel offsets (dx, dy) for labels of `width_px` x `LABEL_H` next to points at pixel
/// positions `at`, so that no two labels overlap: each label tries right of its point, then
/// steps down and up in rows until it fits.
fn place_labels(at: &[(i32, i32)], widths: &[i32]) -> Vec<(i32, i32)> {
    let mut placed: Vec<(i32, i32, i32, i32)> = Vec::new();
    let overlaps = |r: (i32, i32, i32, i32), placed: &[(i32, i32, i32, i32)]| {
        placed
            .iter()
            .any(|q| r.0 < q.2 && q.0 < r.2 && r.1 < q.3 && q.1 < r.3)
    };
    at.iter()
        .zip(widths)
        .map(|(&(x, y), &w)| {
            let offsets = (0..200).map(|k| {
                let step = (k + 1) / 2 * LABEL_H;
                if k % 2 == 0 {
                    step
                } else {
                    -step
                }
            });
            let mut chosen = (6, -LABEL_H);
            for dy in offsets.map(|d| d - LABEL_H) {
                let rect = (x + 6, y + dy, x + 6 + w, y + dy + LABEL_H);
                if !overlaps(rect, &placed) {
                    chosen = (6, dy);
                    break;
                }
            }
            placed.push((
                x + chosen.0,
                y + chosen.1,
                x + chosen.0 + w,
                y + chosen.1 + LABEL_H,
            ));
            chosen
        })
        .collect()
}

/// Height of a point label, px (12 px text plus spacing), and the width of one character.
const LABEL_H: i32 = 14;
const CHAR_W: i32 = 7;

/// A plotting error as users read it: the file and the cause (plotters' Debug text,
/// `BackendError(DrawingError(Os {..}))`, named neither).
pub fn svg_error<E: std::fmt::Display>(path: &Path, e: E) -> anyhow::Error {
    anyhow::anyhow!("writing the plot {}: {e}", path.display())
}

/// The roofline of `precision` on `roof`: the memory slope up to the ridge, then the peak.
fn roof_polyline(roof: &Roof, precision: Precision) -> Option<Vec<(f64, f64)>> {
    let peak = roof.compute.get(&precision)?.value;
    let ridge = roof.ridge(precision)?;
    let at = |x: f64| (roof.dram.value * x / 1e3).min(peak);
    let (lo, hi) = X_RANGE;
    Some(vec![
        (lo, at(lo)),
        (ridge.clamp(lo, hi), at(ridge.clamp(lo, hi))),
        (hi, peak),
    ])
}

/// Precisions drawn on roofline plots (more would bury the picture; INT8 equals FP8 on most chips).
const PLOTTED: [Precision; 4] = [
    Precision::Fp32,
    Precision::Bf16,
    Precision::Fp8,
    Precision::Fp4,
];

/// Points at the same spot are drawn once, labelled with the first name and a count.
fn merge_points(points: &[Point]) -> Vec<Point> {
    let mut merged: Vec<(Point, usize)> = Vec::new();
    for p in points {
        let near = |q: &Point| {
            (q.intensity / p.intensity - 1.0).abs() < 0.02
                && (q.tflops / p.tflops - 1.0).abs() < 0.02
        };
        match merged.iter_mut().find(|(q, _)| near(q)) {
            Some((_, n)) => *n += 1,
            None => merged.push((p.clone(), 1)),
        }
    }
    merged
        .into_iter()
        .map(|(mut p, n)| {
            if n > 1 {
                p.label = format!("{} (+{})", p.label, n - 1);
            }
            p
        })
        .collect()
}

/// A log-log roofline: each roof in its own colour (`Line` says spec or measured), its plateaus
/// labelled with the precision and peak; `points` are kernels (or predicted cases) with FLOPs.
pub fn roofline_svg(
    path: &Path,
    title: &str,
    roofs: &[(&Roof, Line)],
    points: &[Point],
) -> Result<()> {
    let plotted = |r: &Roof| {
        PLOTTED
            .into_iter()
            .filter_map(|p| r.compute.get(&p).map(|l| (p, l.value)))
            .collect::<Vec<_>>()
    };
    let max_peak = roofs
        .iter()
        .flat_map(|(r, _)| plotted(r))
        .map(|(_, v)| v)
        .fold(1.0, f64::max);
    let min_y = roofs
        .iter()
        .map(|(r, _)| r.dram.value * X_RANGE.0 / 1e3)
        .chain(points.iter().map(|p| p.tflops))
        .fold(f64::INFINITY, f64::min)
        .max(1e-3);
    let root = SVGBackend::new(path, (1100, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| svg_error(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (X_RANGE.0..X_RANGE.1).log_scale(),
            (min_y * 0.8..max_peak * 2.0).log_scale(),
        )
        .map_err(|e| svg_error(path, e))?;
    chart
        .configure_mesh()
        .x_desc("arithmetic intensity (FLOPs / byte, minimum bytes)")
        .y_desc("TFLOPS / TOPS")
        .draw()
        .map_err(|e| svg_error(path, e))?;

    // More roofs than two (a comparison): plateau labels would overprint, so each roof's
    // peaks go into its legend entry instead.
    let label_plateaus = roofs.len() <= 2;
    for (index, (roof, line)) in roofs.iter().enumerate() {
        let colour = if label_plateaus {
            PALETTE[index % PALETTE.len()]
        } else {
            comparison_style(index).0
        };
        let style = colour.stroke_width(2);
        let kind = if *line == Line::Solid {
            "measured"
        } else {
            "spec"
        };
        let legend = if label_plateaus {
            format!("{} ({kind})", roof.gpu)
        } else {
            let peaks: Vec<String> = plotted(roof)
                .into_iter()
                .map(|(p, v)| format!("{p} {v:.0}"))
                .collect();
            format!(
                "{}: {:.0} GB/s, {}",
                roof.gpu,
                roof.dram.value,
                peaks.join(", ")
            )
        };
        let line = *line;
        for (i, (p, peak)) in plotted(roof).into_iter().enumerate() {
            let Some(poly) = roof_polyline(roof, p) else {
                continue;
            };
            let series = match line {
                Line::Solid => chart.draw_series(LineSeries::new(poly, style)),
                Line::Dashed => chart.draw_series(DashedLineSeries::new(poly, 8, 5, style)),
                Line::Dotted => chart.draw_series(DashedLineSeries::new(poly, 2, 4, style)),
            }
            .map_err(|e| svg_error(path, e))?;
            if i == 0 {
                // Three segments drawn the way the roof is: contiguous, dashed or dotted.
                let segments: [(i32, i32); 3] = match line {
                    Line::Solid => [(0, 7), (7, 14), (14, 20)],
                    Line::Dashed => [(0, 6), (9, 15), (18, 20)],
                    Line::Dotted => [(0, 2), (7, 9), (14, 16)],
                };
                series.label(legend.clone()).legend(move |(x, y)| {
                    let seg = |(a, b): (i32, i32)| {
                        PathElement::new(vec![(a, 0), (b, 0)], colour.stroke_width(2))
                    };
                    EmptyElement::at((x, y))
                        + seg(segments[0])
                        + seg(segments[1])
                        + seg(segments[2])
                });
            }
            if !label_plateaus {
                continue;
            }
            // Plateau label, staggered per roof so labels of equal peaks do not overprint.
            let x = X_RANGE.1 / 4f64.powi(index as i32 + 1);
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{p} {peak:.0}"),
                    (x, peak * 1.25),
                    ("sans-serif", 12).into_font().color(&colour),
                )))
                .map_err(|e| svg_error(path, e))?;
        }
    }
    let merged = merge_points(points);
    let at: Vec<(i32, i32)> = merged
        .iter()
        .map(|p| chart.backend_coord(&(p.intensity, p.tflops)))
        .collect();
    let widths: Vec<i32> = merged
        .iter()
        .map(|p| CHAR_W * p.label.chars().count() as i32)
        .collect();
    let offsets = place_labels(&at, &widths);
    chart
        .draw_series(merged.into_iter().zip(offsets).map(|(p, (dx, dy))| {
            EmptyElement::at((p.intensity, p.tflops))
                + Circle::new((0, 0), 4, BLACK.filled())
                + Text::new(p.label, (dx, dy), ("sans-serif", 12))
        }))
        .map_err(|e| svg_error(path, e))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| svg_error(path, e))?;
    root.present().map_err(|e| svg_error(path, e))?;
    Ok(())
}

/// Horizontal bars, one per (label, percent), with a line at 100%.
pub fn percent_bars_svg(path: &Path, title: &str, bars: &[(String, f64)]) -> Result<()> {
    let height = 120 + 18 * bars.len().max(1) as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| svg_error(path, e))?;
    let max_x = bars.iter().map(|b| b.1).fold(100.0, f64::max) * 1.05;
    let n = bars.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(420)
        .build_cartesian_2d(0.0..max_x, (0..n).into_segmented())
        .map_err(|e| svg_error(path, e))?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("% of the binding roofline limit")
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| svg_error(path, e))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, pct))| {
            let colour = if *pct > 100.0 { PALETTE[1] } else { PALETTE[0] };
            Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (*pct, SegmentValue::Exact(i + 1)),
                ],
                colour.mix(0.8).filled(),
            )
        }))
        .map_err(|e| svg_error(path, e))?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![
                (100.0, SegmentValue::Exact(0)),
                (100.0, SegmentValue::Exact(n)),
            ],
            BLACK.stroke_width(1),
        )))
        .map_err(|e| svg_error(path, e))?;
    root.present().map_err(|e| svg_error(path, e))?;
    Ok(())
}

/// `compare-gpus`: each GPU's spec roofline (a colour per GPU) and the cases that do FLOPs.
pub fn compare_svg(path: &Path, roofs: &[Roof], cases: &[Prediction]) -> Result<()> {
    let styled: Vec<(&Roof, Line)> = roofs
        .iter()
        .enumerate()
        .map(|(i, r)| (r, comparison_style(i).1))
        .collect();
    let points: Vec<Point> = cases
        .iter()
        .filter_map(|p| {
            Some(Point {
                label: p.case.clone(),
                intensity: p.intensity,
                tflops: p.tflops?.max(1e-3),
            })
        })
        .collect();
    let names: Vec<&str> = roofs.iter().map(|r| r.gpu.as_str()).collect();
    roofline_svg(
        path,
        &format!("PREDICTED rooflines: {}", names.join(" vs ")),
        &styled,
        &points,
    )
}

/// The plots of one GPU's results folder: `roofline.svg` (spec dashed, measured solid, kernels
/// as points) and `<suite>-pct.svg` per suite. Returns the files written.
pub fn plot_results(
    dir: &Path,
    spec_roof: &Roof,
    measured_roof: Option<&Roof>,
    rows: &[ResultRow],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let mut roofs = vec![(spec_roof, Line::Dashed)];
    if let Some(m) = measured_roof {
        roofs.push((m, Line::Solid));
    }
    let points: Vec<Point> = rows
        .iter()
        .filter(|r| r.flops > 0 && r.bytes > 0 && r.status != Status::Skipped)
        .filter_map(|r| {
            Some(Point {
                label: format!("{} {}", r.kernel, r.case),
                intensity: r.flops as f64 / r.bytes as f64,
                tflops: r.tflops?,
            })
        })
        .collect();
    let path = dir.join("roofline.svg");
    roofline_svg(
        &path,
        &format!(
            "{}: roofline (dashed: spec sheet, solid: measured) and kernels",
            spec_roof.gpu
        ),
        &roofs,
        &points,
    )?;
    written.push(path);

    let mut suites: Vec<&str> = rows.iter().map(|r| r.suite.as_str()).collect();
    suites.dedup();
    for suite in suites {
        let bars: Vec<(String, f64)> = rows
            .iter()
            .filter(|r| r.suite == suite)
            .filter_map(|r| {
                Some((
                    format!(
                        "{} {} {}",
                        r.case,
                        r.kernel,
                        r.mode.map_or("", |m| m.as_str())
                    ),
                    r.pct_of_ceiling?,
                ))
            })
            .collect();
        let path = dir.join(format!("{suite}-pct.svg"));
        percent_bars_svg(
            &path,
            &format!("{suite}: % of roofline ({})", spec_roof.gpu),
            &bars,
        )?;
        written.push(path);
    }
    Ok(written)
}

/// Plots every GPU folder under `results_dir` (or only `gpu_slug`): each run folder
/// (`<gpu>/runs/<id>/`) and results written straight into the GPU's folder (older runs, the
/// baseline scripts' CSVs) are plotted where they lie, with the GPU's `ceilings.json`.
pub fn plot_results_dir(
    results_dir: &Path,
    gpu_slug: Option<&str>,
    catalog: &crate::roofline::Catalog,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for dir in subfolders(results_dir)? {
        let slug = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if gpu_slug.is_some_and(|s| s != slug) {
            continue;
        }
        let runs = dir.join(super::RUNS);
        let run_dirs = if runs.is_dir() {
            subfolders(&runs)?
        } else {
            Vec::new()
        };
        for folder in std::iter::once(dir).chain(run_dirs) {
            written.extend(plot_run(&folder, results_dir, &slug, catalog)?);
        }
    }
    Ok(written)
}

/// The folders in `dir`, sorted.
fn subfolders(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Plots one folder of results (a run's, or a GPU folder's own) of the GPU `gpu_slug`, whose
/// `ceilings.json` lies under `results_dir`. Nothing (and no error) for a folder whose results do
/// not name their GPU: `accuracy/`, a user's notes.
pub fn plot_run(
    folder: &Path,
    results_dir: &Path,
    gpu_slug: &str,
    catalog: &crate::roofline::Catalog,
) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("cannot read {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let csvs: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    let Some(device) = csvs
        .iter()
        .find_map(|csv| run_device(&csv.with_extension("json")))
    else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    for csv in csvs {
        rows.extend(super::read_csv(csv)?);
    }
    let spec = catalog.match_device(&device);
    let measured = crate::roofline::MeasuredCeilings::load(results_dir, gpu_slug)?;
    let roofs = crate::roofline::Roofs::new(&spec, measured.as_ref());
    let measured_roof = measured.is_some().then_some(&roofs.primary);
    plot_results(folder, &roofs.spec, measured_roof, &rows)
}

/// The GPU a results JSON's run metadata names (None: not a results file of a GPU run).
fn run_device(json: &Path) -> Option<crate::gpu::DeviceInfo> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).ok()?).ok()?;
    serde_json::from_value(meta["metadata"]["gpu"].clone()).ok()
}

/// Distinct values in first-seen order.
pub fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for v in values {
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roofline::Catalog;

    #[test]
    fn roofline_and_bars_are_written_with_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::embedded();
        let h100 = Roof::from_spec(catalog.get("H100 SXM").unwrap());
        let mut measured = h100.clone();
        measured.dram.value = 3000.0;
        let rows = vec![
            ResultRow {
                suite: "stream".into(),
                case: "triad/1GiB".into(),
                kernel: "stream_triad_f32x4".into(),
                mode: Some(crate::measure::Mode::Cold),
                status: Status::Ok,
                bytes: 3 << 30,
                flops: 2 << 28,
                tflops: Some(0.45),
                pct_of_ceiling: Some(91.5),
                ..Default::default()
            },
            ResultRow {
                suite: "stream".into(),
                case: "copy/1GiB".into(),
                kernel: "stream_copy_u32x4".into(),
                mode: Some(crate::measure::Mode::Cold),
                status: Status::Ok,
                bytes: 2 << 30,
                pct_of_ceiling: Some(96.0),
                ..Default::default()
            },
        ];
        let files = plot_results(dir.path(), &h100, Some(&measured), &rows).unwrap();
        assert_eq!(files.len(), 2);
        let roofline = std::fs::read_to_string(&files[0]).unwrap();
        assert!(roofline.contains("<svg") && roofline.contains("solid: measured"));
        assert!(
            roofline.contains("arithmetic intensity"),
            "axis label present"
        );
        assert!(
            roofline.contains("stream_triad_f32x4 triad/1GiB"),
            "kernel point labelled"
        );
        assert!(roofline.contains("H100 SXM (measured)") && roofline.contains("H100 SXM (spec)"));
        assert!(
            roofline.contains("bf16 989"),
            "plateau labelled with its peak"
        );
        let bars = std::fs::read_to_string(dir.path().join("stream-pct.svg")).unwrap();
        assert!(bars.contains("copy/1GiB stream_copy_u32x4 cold"));
    }

    #[test]
    fn results_folder_is_plotted_from_its_files() {
        use crate::report::{ResultsWriter, RunMetadata};
        let dir = tempfile::tempdir().unwrap();
        let info = crate::gpu::h100_example();
        let mut meta = RunMetadata::this_run();
        meta.gpu = Some(info.clone());
        let mut w = ResultsWriter::create(&dir.path().join(info.slug()), "stream", meta).unwrap();
        w.append(ResultRow {
            suite: "stream".into(),
            case: "copy/1GiB".into(),
            kernel: "k".into(),
            bytes: 2 << 30,
            pct_of_ceiling: Some(90.0),
            ..Default::default()
        })
        .unwrap();
        let written = plot_results_dir(dir.path(), None, &Catalog::embedded()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into())
            .collect();
        assert_eq!(names, vec!["roofline.svg", "stream-pct.svg"]);
        let roofline = std::fs::read_to_string(&written[0]).unwrap();
        assert!(roofline.contains("H100 SXM"), "matched to its spec entry");
        assert!(
            plot_results_dir(dir.path(), Some("a100"), &Catalog::embedded())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn run_folders_are_plotted_and_other_folders_skipped() {
        use crate::report::{ResultsWriter, RunFolder, RunMetadata};
        let dir = tempfile::tempdir().unwrap();
        let info = crate::gpu::h100_example();
        let mut meta = RunMetadata::this_run();
        meta.gpu = Some(info.clone());
        let runs: Vec<RunFolder> = (0..2)
            .map(|_| RunFolder::create(dir.path(), &info.slug()).unwrap())
            .collect();
        for run in &runs {
            let mut w = ResultsWriter::create(&run.dir, "stream", meta.clone()).unwrap();
            w.append(ResultRow {
                suite: "stream".into(),
                case: "copy/1GiB".into(),
                pct_of_ceiling: Some(90.0),
                ..Default::default()
            })
            .unwrap();
        }
        // The accuracy reports' folder (another CSV schema, no GPU) once failed `roofbench plot`.
        let accuracy = dir.path().join("accuracy");
        std::fs::create_dir(&accuracy).unwrap();
        std::fs::write(accuracy.join("gemm.csv"), "shape,m\nx,1\n").unwrap();
        std::fs::write(accuracy.join("gemm.json"), "{\"rows\": []}").unwrap();
        let written = plot_results_dir(dir.path(), None, &Catalog::embedded()).unwrap();
        assert_eq!(
            written.len(),
            4,
            "two plots in each run folder: {written:?}"
        );
        for run in &runs {
            assert!(run.dir.join("roofline.svg").is_file());
        }
    }

    #[test]
    fn polyline_bends_at_the_ridge() {
        let catalog = Catalog::embedded();
        let h100 = Roof::from_spec(catalog.get("H100 SXM").unwrap());
        let poly = roof_polyline(&h100, Precision::Bf16).unwrap();
        let ridge = h100.ridge(Precision::Bf16).unwrap();
        assert!((poly[1].0 - ridge).abs() < 1e-9);
        let peak = h100.compute[&Precision::Bf16].value;
        assert!((poly[1].1 - peak).abs() < 1e-6 && (poly[2].1 - peak).abs() < 1e-9);
    }

    #[test]
    fn sixteen_gpus_get_distinct_styles() {
        let styles: Vec<_> = (0..16).map(comparison_style).collect();
        for (i, a) in styles.iter().enumerate() {
            for b in &styles[..i] {
                assert!(a != b, "{a:?} repeats");
            }
        }
    }

    #[test]
    fn point_labels_never_overlap() {
        // Twenty points on top of each other and a row of close neighbours.
        let at: Vec<(i32, i32)> = (0..20)
            .map(|_| (500, 300))
            .chain((0..20).map(|i| (100 + 5 * i, 200)))
            .collect();
        let widths = vec![120; at.len()];
        let offsets = place_labels(&at, &widths);
        let rects: Vec<_> = at
            .iter()
            .zip(&offsets)
            .zip(&widths)
            .map(|((&(x, y), &(dx, dy)), &w)| (x + dx, y + dy, x + dx + w, y + dy + LABEL_H))
            .collect();
        for (i, r) in rects.iter().enumerate() {
            for q in &rects[..i] {
                let overlap = r.0 < q.2 && q.0 < r.2 && r.1 < q.3 && q.1 < r.3;
                assert!(!overlap, "{r:?} overlaps {q:?}");
            }
        }
    }
}
