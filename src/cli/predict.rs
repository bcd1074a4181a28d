//! `roofbench predict` and `roofbench compare-gpus`: *predicted* roofline bounds from spec sheets,
//! for GPUs you may not have.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use super::gpus::origin_word;
use super::selection::Selection;
use super::{named_gpu, Context, DEFAULT_PREDICT_GPU};
use roofbench::predict::{self, Format};

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
    println!("{}", predict::render_predictions(&predictions));
    if let Some(path) = args.csv {
        roofbench::report::write_rows_csv(&predictions, &path)
            .with_context(|| format!("writing predictions to {}", path.display()))?;
        eprintln!("predictions written to {}", path.display());
    }
    Ok(())
}

#[derive(Args)]
pub struct CompareArgs {
    /// Two or more GPUs of the spec table.
    #[arg(required = true, num_args = 2..)]
    names: Vec<String>,
    /// The GPU speedups are relative to (default: the first).
    #[arg(long, value_name = "NAME")]
    base: Option<String>,
    /// Suites to compare on (default: all).
    #[arg(long = "suite")]
    suites: Vec<String>,
    /// What is printed: `table`, `markdown` (by regime, limits, cases) or `csv` (one row per
    /// case and GPU, nothing else). The same Markdown and CSV are also written under `--out`.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Folder the files go to (compare-gpus.csv, .md, .svg).
    #[arg(long, value_name = "DIR", default_value = "results/predicted")]
    out: PathBuf,
    /// Where to write the roofline SVG instead (default: `<out>/compare-gpus.svg`).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
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
    let base = match &args.base {
        None => 0,
        Some(name) => {
            let wanted = catalog.get(name)?;
            specs
                .iter()
                .position(|s| s.name == wanted.name)
                .with_context(|| format!("--base {name} is not one of the GPUs compared"))?
        }
    };
    let plans = Selection::of_suites(args.suites, args.quick).grid_plans()?;
    let comparison = predict::compare(&specs, base, &plans);
    let markdown = comparison.markdown(&specs);
    let csv = comparison.csv();
    match args.format {
        // Nothing but the table, so `> file.csv` is a clean spreadsheet.
        Format::Csv => print!("{csv}"),
        Format::Markdown => println!("{markdown}"),
        Format::Table => {
            println!("PREDICTED from spec sheets (dense figures); nothing measured.\n");
            for (header, rows) in [
                comparison.regimes(),
                predict::gpu_summary(&specs, true),
                comparison.cases(),
            ] {
                println!("{}\n", predict::render(&header, &rows, Format::Table));
            }
            if comparison.any_unconfirmed() {
                println!("{}", predict::UNCONFIRMED_FOOTNOTE);
            }
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let svg = args
        .svg
        .unwrap_or_else(|| args.out.join("compare-gpus.svg"));
    for (name, text) in [("compare-gpus.csv", &csv), ("compare-gpus.md", &markdown)] {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("written: {}", path.display());
    }
    let points = &comparison.per_gpu[base];
    roofbench::report::plot::compare_svg(&svg, &comparison.roofs, points)
        .with_context(|| format!("writing the roofline SVG {}", svg.display()))?;
    eprintln!("written: {}", svg.display());
    Ok(())
}
