//! `roofbench plot`: roofline.svg and <suite>-pct.svg for each GPU folder of results.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::Context;
use roofbench::report::plot::plot_results_dir;

#[derive(Args)]
pub struct PlotArgs {
    /// Results directory (as given to `run --out`).
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Only this GPU's folder (its slug, e.g. h100-80gb-hbm3).
    #[arg(long)]
    gpu: Option<String>,
}

pub fn run(args: PlotArgs, ctx: &Context) -> Result<()> {
    let written = plot_results_dir(&args.results, args.gpu.as_deref(), &ctx.catalog()?)?;
    if written.is_empty() {
        bail!(
            "no results with metadata under {}: run `roofbench run` first",
            args.results.display()
        );
    }
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
