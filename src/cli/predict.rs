//! `roofbench predict` and `roofbench compare-gpus`: *predicted* roofline bounds from spec sheets,
//! for GPUs you may not have.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use super::gpus::origin_word;
use super::selection::Selection;
use super::{named_gpu, Context, DEFAULT_PREDICT_GPU};
use roofbench::predict::{self, Format};
use roofbench::roofline::Roof;

#[derive(Args)]
pub struct PredictArgs {
    /// A GPU of the spec table (`roofbench gpus`).
    #[arg(long, default_value = DEFAULT_PREDICT_GPU)]
    gpu: String,
    #[command(flatten)]
    select: Selection,
    /// Also write the predictions as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
}

pub fn run(args: PredictArgs, ctx: &Context) -> Result<()> {
    let catalog = ctx.catalog()?;
    let spec = named_gpu(&catalog, &args.gpu)?;
    let predictions = predict::predict(spec, &args.select.grid_plans()?);
    println!(
        "PREDICTED for {} ({} figures; nothing measured):",
        spec.name,
        origin_word(spec)
    );
    println!("{}", predict::prediction_table(&predictions));
    if let Some(path) = args.csv {
        roofbench::report::write_rows_csv(&predictions, &path)
            .with_context(|| format!("writing predictions to {}", path.display()))?;
        eprintln!("predictions written to {}", path.display());
    }
    Ok(())
}

#[derive(Args)]
pub struct CompareArgs {
    /// Two or more GPUs of the spec table; speedups are relative to the first.
    #[arg(required = true, num_args = 2..)]
    names: Vec<String>,
    /// Suites to compare on (default: all).
    #[arg(long = "suite")]
    suites: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Where to write the roofline SVG of these GPUs.
    #[arg(long, default_value = "compare-gpus.svg")]
    svg: PathBuf,
    /// A small representative grid.
    #[arg(long)]
    quick: bool,
}

pub fn compare(args: CompareArgs, ctx: &Context) -> Result<()> {
    let catalog = ctx.catalog()?;
    let specs = args
        .names
        .iter()
        .map(|n| named_gpu(&catalog, n))
        .collect::<Result<Vec<_>>>()?;
    let plans = Selection::of_suites(args.suites, args.quick).grid_plans()?;
    println!("PREDICTED from spec sheets (dense figures); nothing measured.\n");
    let (header, rows) = predict::gpu_summary(&specs, true);
    println!("{}\n", predict::render(&header, &rows, args.format));
    let (header, rows) = predict::comparison(&specs, &plans);
    println!("{}", predict::render(&header, &rows, args.format));
    let roofs: Vec<_> = specs.iter().map(|s| Roof::from_spec(s)).collect();
    let points = predict::predict(specs[0], &plans);
    roofbench::report::plot::compare_svg(&args.svg, &roofs, &points)?;
    eprintln!("roofline of these GPUs: {}", args.svg.display());
    Ok(())
}
