//! `roofbench run`: verify, then time, suites; results under `<out>/<gpu>/`. Without a GPU: the
//! *predicted* bounds of the same cases.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

use super::selection::Selection;
use super::{
    exit_for_failures, open_gpu, print_device_line, real_in, Context, DEFAULT_PREDICT_GPU,
    EXIT_NO_GPU,
};
use roofbench::measure::{MeasureConfig, Mode};
use roofbench::predict;
use roofbench::report::{self, table, ResultRow, RunFolder, Status};
use roofbench::suite::{self, Plan, RunOptions};

/// The longest sampling budget per case: an hour, far past any useful one, and a bound that keeps
/// `Duration::from_secs_f64` from ever seeing an overflowing value.
const MAX_BUDGET_S: f64 = 3600.0;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    select: Selection,
    /// Only L2-flushed single launches.
    #[arg(long, conflicts_with_all = ["hot", "graph"])]
    cold: bool,
    /// Only back-to-back launches (L2-resident data stays resident).
    #[arg(long, conflicts_with = "graph")]
    hot: bool,
    /// Only back-to-back launches replayed from a CUDA graph.
    #[arg(long)]
    graph: bool,
    /// Results directory: each run writes a new folder `<gpu>/runs/<UTC start time>/` inside.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Stop sampling a case when the median's 95% CI is within this fraction (0 < f <= 1).
    #[arg(long, value_parser = real_in(0.0, true, 1.0))]
    target_ci: Option<f64>,
    /// Sampling budget per case and mode, in seconds (0 < s <= 3600).
    #[arg(long, value_parser = real_in(0.0, true, MAX_BUDGET_S))]
    budget_s: Option<f64>,
    /// Exit with code 3 instead of 0 when there is no GPU.
    #[arg(long)]
    require_gpu: bool,
    /// Without a GPU, the predictions shown are for this GPU of the spec table.
    #[arg(long, default_value = DEFAULT_PREDICT_GPU)]
    predict_gpu: String,
}

impl RunArgs {
    fn measure_config(&self) -> MeasureConfig {
        let mut measure = if self.select.quick {
            MeasureConfig::quick()
        } else {
            MeasureConfig::default()
        };
        if let Some(ci) = self.target_ci {
            measure.stop.target_rel_ci = ci;
        }
        if let Some(s) = self.budget_s {
            measure.stop.budget = Duration::from_secs_f64(s);
        }
        measure
    }

    /// The modes the user forced; `None`: each case's defaults.
    fn modes(&self) -> Option<Vec<Mode>> {
        let modes: Vec<Mode> = [
            (self.cold, Mode::Cold),
            (self.hot, Mode::Hot),
            (self.graph, Mode::Graph),
        ]
        .into_iter()
        .filter_map(|(on, m)| on.then_some(m))
        .collect();
        (!modes.is_empty()).then_some(modes)
    }
}

pub fn run(args: RunArgs, ctx: &Context) -> Result<ExitCode> {
    let plans = args.select.grid_plans()?;
    let gpu = match open_gpu(args.select.device) {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("no GPU measurement: {e}\n");
            super::kernels::print_kernel_summary();
            let catalog = ctx.catalog()?;
            let spec = super::named_gpu(&catalog, &args.predict_gpu)?;
            println!(
                "\nPREDICTED (roofline bounds from the {} spec sheet; nothing measured here):",
                spec.name
            );
            println!(
                "{}",
                predict::render_predictions(&predict::predict(spec, &plans))
            );
            eprintln!(
                "\nsummary: no GPU, so nothing was measured; the table above is PREDICTED from \
                 the {} spec sheet (`--predict-gpu NAME` for another, `roofbench predict --csv \
                 FILE` to save it). On a GPU the same command verifies and measures every case \
                 into {}/<gpu>/runs/<start time>/.",
                spec.name,
                args.out.display()
            );
            return Ok(if args.require_gpu {
                ExitCode::from(EXIT_NO_GPU)
            } else {
                ExitCode::SUCCESS
            });
        }
    };
    let slug = gpu.info().slug();
    let opts = RunOptions {
        modes: args.modes(),
        measure: args.measure_config(),
        run: RunFolder::create(&args.out, &slug)?,
        out_dir: args.out,
        catalog: ctx.catalog()?,
    };
    print_device_line(&gpu);
    let rows = suite::run(&gpu, &plans, &opts)?;
    println!("{}", report::results_table(&rows));
    let dir = &opts.run.dir;
    print_goals(&plans, &rows, dir)?;
    let plots = report::plot::plot_run(dir, &opts.out_dir, &slug, &opts.catalog)?;
    for path in plots {
        eprintln!("plot: {}", path.display());
    }
    let failed = rows.iter().filter(|r| r.status == Status::Failed).count();
    eprintln!(
        "\nsummary: {} rows measured on {} ({failed} failed verification); results in {} \
         (earlier runs are kept beside it). Next: `roofbench plot`, `roofbench accuracy`, \
         `roofbench compare-gpus`.",
        rows.len(),
        gpu.info().name,
        dir.display()
    );
    Ok(exit_for_failures(
        failed,
        "result(s) failed verification: see the `note` column",
    ))
}

/// Each suite's goals on this run's rows: a table, and `<dir>/<suite>-goals.json`.
fn print_goals(plans: &[Plan<'_>], rows: &[ResultRow], dir: &Path) -> Result<()> {
    for (suite, _) in plans {
        let suite_rows: Vec<ResultRow> = rows
            .iter()
            .filter(|r| r.suite == suite.name())
            .cloned()
            .collect();
        let goals = suite.goals(&suite_rows);
        if goals.is_empty() {
            continue;
        }
        let mut t = table(["goal", "value", "target", "met", "from"]);
        for g in &goals {
            t.add_row([
                g.name.clone(),
                format!("{:.3}", g.value),
                g.target.clone(),
                if g.met { "yes" } else { "NO" }.to_string(),
                g.detail.clone(),
            ]);
        }
        println!("{} goals (ratios of this run's rows):\n{t}", suite.name());
        let path = dir.join(format!("{}-goals.json", suite.name()));
        std::fs::write(&path, serde_json::to_string_pretty(&goals)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
