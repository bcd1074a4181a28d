//! `roofbench calibrate`: this GPU's measured ceilings into `<out>/<gpu>/ceilings.json`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::{exit_for_failures, print_device_line, require_gpu, Context};
use roofbench::calibrate::{self, CalibrateOptions};
use roofbench::measure::MeasureConfig;
use roofbench::roofline::MeasuredCeilings;

#[derive(Args)]
pub struct CalibrateArgs {
    /// Smaller sizes and budgets.
    #[arg(long)]
    quick: bool,
    /// Results directory (a folder per GPU is made inside).
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
    /// Do nothing when this GPU already has a ceilings file under --out.
    #[arg(long)]
    if_missing: bool,
}

pub fn run(args: CalibrateArgs, ctx: &Context) -> Result<ExitCode> {
    let gpu = match require_gpu(args.device) {
        Ok(gpu) => gpu,
        Err(code) => return Ok(code),
    };
    print_device_line(&gpu);
    let existing = MeasuredCeilings::path(&args.out, &gpu.info().slug());
    if args.if_missing && existing.is_file() {
        eprintln!(
            "{} exists: not recalibrating (run without --if-missing to re-measure)",
            existing.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let catalog = ctx.catalog()?;
    let opts = CalibrateOptions {
        quick: args.quick,
        measure: if args.quick {
            calibrate::quick_measure()
        } else {
            MeasureConfig::default()
        },
    };
    let ceilings = calibrate::calibrate(&gpu, &opts)?;
    calibrate::ensure_any_usable(&ceilings)?;
    let spec = catalog.match_device(gpu.info());
    println!(
        "{}",
        calibrate::ceilings_table(&ceilings, &spec, gpu.info())
    );
    let path = ceilings.save(&args.out, &gpu.info().slug())?;
    eprintln!(
        "ceilings written to {} (later runs on this GPU use them)",
        path.display()
    );
    let failed = ceilings
        .entries
        .iter()
        .filter(|c| c.skipped.is_none() && !c.verified)
        .count();
    Ok(exit_for_failures(
        failed,
        "calibration(s) failed verification: they are stored but not used",
    ))
}
