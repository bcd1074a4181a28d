//! Runs suites: verification first, then timing in each mode, one result row per (case, variant,
//! mode) written as soon as it is measured.

use std::path::PathBuf;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use super::{Case, Check, Plan, Prepared, VariantInfo};
use crate::gpu::Gpu;
use crate::measure::{Harness, MeasureConfig, Mode, Timing};
use crate::report::{
    now, ResultRow, ResultsWriter, RunFolder, RunMetadata, Status, VerifyOutcome, VerifyRow,
};
use crate::roofline::{beats_measured_ceiling, Catalog, MeasuredCeilings, Roofs};

pub struct RunOptions {
    /// Modes forced by the user; `None`: each case's defaults.
    pub modes: Option<Vec<Mode>>,
    /// The results folder: the GPU's measured ceilings are read from
    /// `<out_dir>/<gpu-slug>/ceilings.json`.
    pub out_dir: PathBuf,
    /// This run's folder (`<out_dir>/<gpu-slug>/runs/<id>/`): `<suite>.csv|json` go there.
    pub run: RunFolder,
    pub measure: MeasureConfig,
    /// GPU specs (embedded table plus the user's file) for the spec roof.
    pub catalog: Catalog,
}

fn progress(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} cases [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// A row with everything but the measurement filled in.
fn base_row(gpu: &Gpu, suite: &str, case: &dyn Case, variant: Option<&VariantInfo>) -> ResultRow {
    let info = gpu.info();
    let w = case.workload();
    ResultRow {
        suite: suite.to_string(),
        case: case.name(),
        kernel: variant.map_or("-".into(), |v| v.kernel.clone()),
        provider: variant.map(|v| v.provider),
        dtype: case.dtype(),
        params: case.params(),
        bytes: w.bytes,
        flops: w.flops,
        gpu: info.name.clone(),
        driver: info.driver.clone(),
        cuda: info.cuda_driver_api.clone(),
        commit: crate::gpu::embedded::GIT_COMMIT.to_string(),
        timestamp: now(),
        ..Default::default()
    }
}

fn skipped(mut row: ResultRow, why: String) -> ResultRow {
    row.status = Status::Skipped;
    row.note = why;
    row
}

fn measured_row(
    mut row: ResultRow,
    gpu: &Gpu,
    case: &dyn Case,
    check: &Result<Check>,
    timing: &Timing,
    roofs: &Roofs,
    clock_tolerance: f64,
) -> ResultRow {
    let s = &timing.summary;
    let w = case.workload();
    row.mode = Some(timing.mode);
    row.samples = s.samples;
    row.median_us = Some(s.median);
    row.p10_us = Some(s.p10);
    row.p90_us = Some(s.p90);
    row.mean_us = Some(s.mean);
    row.stdev_us = Some(s.stdev);
    row.rel_ci = Some(s.rel_ci);
    row.launches_per_sample = timing.launches_per_sample;
    row.gbps = (w.bytes > 0).then(|| w.gbps(s.median));
    row.tflops = (w.flops > 0).then(|| w.tflops(s.median));
    let l2_resident = timing.mode != Mode::Cold && case.l2_resident(gpu.info());
    match roofs.primary.bound(&w, l2_resident) {
        Ok(bound) => {
            let pct = bound.percent(s.median);
            row.bound_us = Some(bound.time_us);
            row.pct_of_ceiling = Some(pct);
            row.ceiling = bound.limit.name;
            row.ceiling_value = Some(bound.limit.value);
            if let Some(why) = beats_measured_ceiling(pct, &bound.limit.source) {
                row.note = why;
            }
            row.ceiling_source = bound.limit.source;
        }
        Err(why) => row.ceiling = why,
    }
    row.pct_of_spec = roofs
        .spec
        .bound(&w, l2_resident)
        .ok()
        .map(|b| b.percent(s.median));
    if let Some(c) = &timing.clocks_after {
        row.sm_clock_mhz = Some(c.sm_clock_mhz);
        row.mem_clock_mhz = Some(c.mem_clock_mhz);
    }
    row.clock_warning = timing.clock_warning(clock_tolerance).unwrap_or_default();
    match check {
        Ok(c) => {
            row.verified = c.passed;
            row.max_rel_err = Some(c.max_rel_err);
            if let Some(a) = &c.accuracy {
                row.sqnr_db = Some(a.sqnr_db);
                row.kernel_sqnr_db = Some(a.kernel_sqnr_db);
            }
            row.status = if c.passed { Status::Ok } else { Status::Failed };
            if !c.passed {
                row.note = format!("{} {}", c.detail, row.note).trim().to_string();
            }
        }
        Err(e) => {
            row.status = Status::Failed;
            row.note = format!("verification error: {e:#}");
        }
    }
    if timing.stop_reason != crate::measure::StopReason::Converged && row.note.is_empty() {
        row.note = format!("stopped: {:?}", timing.stop_reason).to_lowercase();
    }
    row
}

/// Measures every case of every plan; returns all rows (also written under `out_dir`).
pub fn run(gpu: &Gpu, plans: &[Plan<'_>], opts: &RunOptions) -> Result<Vec<ResultRow>> {
    let mut harness = Harness::new(gpu, opts.measure.clone())?;
    let mut metadata = RunMetadata::this_run();
    metadata.gpu = Some(gpu.info().clone());
    metadata.clocks_at_start = gpu.telemetry().and_then(|t| t.snapshot());
    metadata.power_limit_w = gpu.telemetry().and_then(|t| t.power_limit_w());
    metadata.measure = Some(opts.measure.clone());
    metadata.run_id = opts.run.id.clone();
    let slug = gpu.info().slug();
    let dir = &opts.run.dir;
    let spec = opts.catalog.match_device(gpu.info());
    let measured = MeasuredCeilings::load(&opts.out_dir, &slug)?;
    let roofs = Roofs::new(&spec, measured.as_ref());
    eprintln!(
        "roofline: {} ({:?} figures); {}",
        spec.name,
        spec.origin,
        measured.as_ref().map_or(
            "no measured ceilings yet: run `roofbench calibrate` (spec ceilings used)".into(),
            |m| {
                format!(
                    "measured ceilings from {} ({})",
                    m.measured_at,
                    MeasuredCeilings::path(&opts.out_dir, &slug).display()
                )
            }
        )
    );
    metadata.spec = Some(spec);
    metadata.calibrated_at = measured.map(|m| m.measured_at);
    let bar = progress(plans.iter().map(|(_, c)| c.len()).sum());
    let mut all = Vec::new();

    for (suite, cases) in plans {
        let mut writer = ResultsWriter::create(dir, suite.name(), metadata.clone())?;
        for case in cases {
            bar.set_message(format!("{}/{}", suite.name(), case.name()));
            let base = base_row(gpu, suite.name(), case.as_ref(), None);
            let mut prepared = match prepare(gpu, case.as_ref()) {
                Ok(p) => p,
                Err(why) => {
                    writer.append(skipped(base, why))?;
                    bar.inc(1);
                    continue;
                }
            };
            let modes = opts
                .modes
                .clone()
                .unwrap_or_else(|| case.default_modes(gpu.info()));
            for (i, variant) in prepared.variants().iter().enumerate() {
                let base = base_row(gpu, suite.name(), case.as_ref(), Some(variant));
                if let Some(why) = &variant.unavailable {
                    writer.append(skipped(base, why.clone()))?;
                    continue;
                }
                bar.set_message(format!(
                    "{}/{} {}",
                    suite.name(),
                    case.name(),
                    variant.kernel
                ));
                let check = prepared.verify(gpu, i);
                for &mode in &modes {
                    let timing = harness.measure(mode, &mut || prepared.launch(gpu, i));
                    let row = match timing {
                        Ok(t) => measured_row(
                            base.clone(),
                            gpu,
                            case.as_ref(),
                            &check,
                            &t,
                            &roofs,
                            opts.measure.clock_drop_tolerance,
                        ),
                        Err(e) => skipped(base.clone(), format!("timing failed: {e}")),
                    };
                    writer.append(row)?;
                }
            }
            bar.inc(1);
        }
        let mut rows = writer.rows().to_vec();
        if suite.annotate(&mut rows) {
            writer.replace_rows(rows)?;
        }
        all.extend_from_slice(writer.rows());
        bar.println(format!(
            "{}: results in {}",
            suite.name(),
            writer.csv_path().display()
        ));
    }
    bar.finish_and_clear();
    Ok(all)
}

/// Checks memory, then prepares; the error says why the case is skipped.
fn prepare(gpu: &Gpu, case: &dyn Case) -> Result<Box<dyn Prepared>, String> {
    gpu.ensure_free(&case.name(), case.device_bytes())
        .map_err(|e| e.to_string())?;
    case.prepare(gpu).map_err(|e| format!("{e:#}"))
}

/// Runs every correctness check of the plans (no timing).
pub fn verify(gpu: &Gpu, plans: &[Plan<'_>]) -> Vec<VerifyRow> {
    let bar = progress(plans.iter().map(|(_, c)| c.len()).sum());
    let mut rows = Vec::new();
    for (suite, cases) in plans {
        for case in cases {
            bar.set_message(format!("{}/{}", suite.name(), case.name()));
            let row = |variant: Option<&VariantInfo>, outcome, max_rel_err, detail| VerifyRow {
                suite: suite.name().into(),
                case: case.name(),
                kernel: variant.map_or("-".into(), |v| v.kernel.clone()),
                provider: variant.map(|v| v.provider),
                outcome,
                max_rel_err,
                detail,
            };
            match prepare(gpu, case.as_ref()) {
                Err(why) => rows.push(row(None, VerifyOutcome::Skipped, None, why)),
                Ok(mut prepared) => {
                    for (i, v) in prepared.variants().iter().enumerate() {
                        if let Some(why) = &v.unavailable {
                            rows.push(row(Some(v), VerifyOutcome::Skipped, None, why.clone()));
                            continue;
                        }
                        rows.push(match prepared.verify(gpu, i) {
                            Ok(c) => {
                                let outcome = if c.passed {
                                    VerifyOutcome::Pass
                                } else {
                                    VerifyOutcome::Fail
                                };
                                row(Some(v), outcome, Some(c.max_rel_err), c.detail)
                            }
                            Err(e) => row(Some(v), VerifyOutcome::Fail, None, format!("{e:#}")),
                        });
                    }
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    rows
}
