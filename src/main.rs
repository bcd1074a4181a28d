//! The `roofbench` command line: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use roofbench::gpu::{self, Gpu, GpuError};
use roofbench::measure::{MeasureConfig, Mode};
use roofbench::predict::{self, Format};
use roofbench::report::{table, ResultRow, Status};
use roofbench::roofline::calibrate::{self, CalibrateOptions};
use roofbench::roofline::Catalog;
use roofbench::suite::{self, Case, Plan, RunOptions, Suite, VerifyOutcome};

/// Exit code when there is no usable GPU (no driver, no device, or no kernels in the binary).
const EXIT_NO_GPU: u8 = 2;

#[derive(Parser)]
#[command(
    name = "roofbench",
    version,
    about = "LLM inference kernels vs the roofline of your GPU"
)]
struct Cli {
    /// Extra or overriding GPU specs (TOML, format of examples/my-gpus.toml); also ROOFBENCH_GPUS.
    #[arg(long, global = true, value_name = "FILE")]
    gpus: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Facts about each CUDA device (exit code 2 when there is none).
    Devices,
    /// The kernels embedded in this binary: targets, registers, shared memory, spills.
    Kernels {
        /// Print the raw `ptxas -v` report too.
        #[arg(long)]
        ptxas: bool,
    },
    /// The suites and the syntax of their `--case` arguments.
    Suites,
    /// The cases a selection would run, one JSON object per line (for scripts/baselines/).
    Cases {
        #[command(flatten)]
        select: Selection,
    },
    /// Verify, then time, suites and write results/<gpu>/<suite>.csv|json.
    Run {
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
        /// Results directory (a folder per GPU is made inside).
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Stop sampling a case when the median's 95% CI is within this fraction.
        #[arg(long)]
        target_ci: Option<f64>,
        /// Sampling budget per case and mode, in seconds.
        #[arg(long)]
        budget_s: Option<f64>,
        /// Exit with code 2 instead of 0 when there is no GPU.
        #[arg(long)]
        require_gpu: bool,
        /// Without a GPU, the predictions shown are for this GPU of the spec table.
        #[arg(long, default_value = DEFAULT_PREDICT_GPU)]
        predict_gpu: String,
    },
    /// Every GPU correctness check against the CPU references; non-zero exit on any failure.
    Verify {
        #[command(flatten)]
        select: Selection,
    },
    /// Measure this GPU's ceilings (HBM, L2, shared memory, FP32, mma/wgmma, cuBLASLt, PCIe,
    /// launch) and store them in <out>/<gpu>/ceilings.json for later runs.
    Calibrate {
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
    },
    /// Accuracy deltas on the CPU (no GPU needed), a table and <out>/accuracy/<report>.csv|json|svg.
    /// kv_evict: relative error of the attention output, attention-mass recall and needle recall
    /// of each eviction policy and budget against the full cache. gemm: SQNR, relative Frobenius
    /// error, cosine and max abs error of FP8/INT8 quantization schemes on real model shapes.
    Accuracy {
        /// Which reports: kv_evict, gemm (default: both).
        reports: Vec<String>,
        /// gemm: a shape (repeatable): MxNxK, or a model shape name (e.g. llama3-70b-o) with M = --tokens.
        #[arg(long = "shape")]
        shapes: Vec<String>,
        /// gemm: tokens (M) of the shapes given with --shape.
        #[arg(long, default_value_t = 128)]
        tokens: usize,
        /// A Q/K/V capture of your model (repeatable): .safetensors with tensors q, k, v, or .npz,
        /// or a folder / path prefix with q.npy, k.npy, v.npy; shapes [len, heads, dim]. Default:
        /// synthetic attention (heavy hitters, recency, needles, gaussian).
        #[arg(long = "data", value_name = "FILE")]
        data: Vec<PathBuf>,
        /// Policies to evaluate (repeatable; default all): h2o, tova, snapkv, streaming-llm,
        /// recent, random.
        #[arg(long = "policy")]
        policies: Vec<String>,
        /// Budgets per kv head (repeatable; default 10%, 25%, 50%): 25%, 0.25 or a token count.
        #[arg(long = "budget")]
        budgets: Vec<String>,
        /// Always-kept first tokens (overrides each policy's default).
        #[arg(long)]
        sinks: Option<usize>,
        /// Always-kept newest tokens (overrides each policy's default).
        #[arg(long)]
        recent: Option<usize>,
        /// SnapKV's max-pool width (odd).
        #[arg(long)]
        pool: Option<usize>,
        /// SnapKV's observation window (queries).
        #[arg(long)]
        window: Option<usize>,
        /// Queries whose attention H2O accumulates.
        #[arg(long)]
        h2o_history: Option<usize>,
        /// Synthetic data of 1024 tokens instead of 4096.
        #[arg(long)]
        quick: bool,
        /// Synthetic data of this many tokens.
        #[arg(long)]
        len: Option<usize>,
        /// Results directory (an accuracy/ folder is made inside).
        #[arg(long, default_value = "results")]
        out: PathBuf,
    },
    /// SVG plots of measured results: roofline.svg and <suite>-pct.svg in each GPU's folder.
    Plot {
        /// Results directory (as given to `run --out`).
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Only this GPU's folder (its slug, e.g. h100-80gb-hbm3).
        #[arg(long)]
        gpu: Option<String>,
    },
    /// The GPU spec table (dense peaks, bandwidth, sources); no GPU needed.
    Gpus {
        /// Show one GPU with the source of every value.
        name: Option<String>,
    },
    /// PREDICTED roofline-bound time, GB/s and TFLOPS of every case on a GPU of the spec table.
    Predict {
        /// A GPU of the spec table (`roofbench gpus`).
        #[arg(long, default_value = DEFAULT_PREDICT_GPU)]
        gpu: String,
        #[command(flatten)]
        select: Selection,
        /// Also write the predictions as CSV.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
    },
    /// PREDICTED side-by-side comparison of GPUs: limits, ridge points, the bound of every case.
    CompareGpus {
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
    },
}

/// An accuracy report's rows with what produced them, as `<dir>/<name>.json` (the CSV is for
/// spreadsheets).
fn write_accuracy_json(
    dir: &std::path::Path,
    name: &str,
    rows: &impl serde::Serialize,
) -> Result<()> {
    let path = dir.join(format!("{name}.json"));
    let document = serde_json::json!({
        "computed_on": "cpu (f64 references; no GPU involved)",
        "commit": roofbench::gpu::embedded::GIT_COMMIT,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "rows": rows,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Each suite's goals on this run's rows: a table, and `<dir>/<suite>-goals.json`.
fn print_goals(plans: &[Plan<'_>], rows: &[ResultRow], dir: &std::path::Path) -> Result<()> {
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

/// The GPU predictions are shown for when none is named (and the main job shows without a GPU).
const DEFAULT_PREDICT_GPU: &str = "H100 SXM";

#[derive(Args)]
struct Selection {
    /// Suites to run (default: all). See `roofbench suites`.
    suites: Vec<String>,
    /// A case of your own instead of the built-in grid (repeatable; needs exactly one suite).
    #[arg(long = "case", value_name = "SPEC")]
    cases: Vec<String>,
    /// A small representative grid.
    #[arg(long)]
    quick: bool,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
}

impl Selection {
    /// The suites and cases to run; unknown suites and bad case specs are errors.
    fn plans(
        &self,
        default_cases: impl Fn(&dyn Suite) -> Vec<Box<dyn Case>>,
    ) -> Result<Vec<Plan<'static>>> {
        let suites: Vec<&'static dyn Suite> = if self.suites.is_empty() {
            roofbench::suites()
        } else {
            self.suites
                .iter()
                .map(|name| {
                    roofbench::find_suite(name).ok_or_else(|| {
                        let known: Vec<_> = roofbench::suites().iter().map(|s| s.name()).collect();
                        anyhow::anyhow!("unknown suite `{name}` (known: {})", known.join(", "))
                    })
                })
                .collect::<Result<_>>()?
        };
        if !self.cases.is_empty() {
            let ([suite], [_]) = (suites.as_slice(), self.suites.as_slice()) else {
                bail!("--case needs exactly one suite named before it, e.g. `roofbench run stream --case copy:1GiB`");
            };
            let cases = self
                .cases
                .iter()
                .map(|spec| suite.parse_case(spec))
                .collect::<Result<Vec<_>>>()
                .map_err(|e| {
                    anyhow::anyhow!("{e:#}\n  {} cases: {}", suite.name(), suite.case_syntax())
                })?;
            return Ok(vec![(*suite, cases)]);
        }
        Ok(suites.into_iter().map(|s| (s, default_cases(s))).collect())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command, cli.gpus) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command, gpus_file: Option<PathBuf>) -> Result<ExitCode> {
    let catalog = || Catalog::load(gpus_file.as_deref());
    match command {
        Command::Devices => devices(),
        Command::Kernels { ptxas } => {
            print_kernels(ptxas);
            Ok(ExitCode::SUCCESS)
        }
        Command::Cases { select } => {
            for (suite, cases) in select.plans(|s| s.default_cases(select.quick))? {
                for case in cases {
                    let mut json = case.describe();
                    json["suite"] = suite.name().into();
                    println!("{json}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Suites => {
            for s in roofbench::suites() {
                println!(
                    "{:<10} {}\n{:<10} --case {}",
                    s.name(),
                    s.about(),
                    "",
                    s.case_syntax()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            select,
            cold,
            hot,
            graph,
            out,
            target_ci,
            budget_s,
            require_gpu,
            predict_gpu,
        } => {
            let plans = select.plans(|s| s.default_cases(select.quick))?;
            let gpu = match open_gpu(select.device) {
                Ok(gpu) => gpu,
                Err(e) => {
                    eprintln!("no GPU measurement: {e}\n");
                    print_kernels(false);
                    let catalog = catalog()?;
                    let spec = catalog.get(&predict_gpu)?;
                    println!("\nPREDICTED (roofline bounds from the {} spec sheet; nothing measured here):", spec.name);
                    println!(
                        "{}",
                        predict::prediction_table(&predict::predict(spec, &plans))
                    );
                    return Ok(if require_gpu {
                        ExitCode::from(EXIT_NO_GPU)
                    } else {
                        ExitCode::SUCCESS
                    });
                }
            };
            let mut measure = if select.quick {
                MeasureConfig::quick()
            } else {
                MeasureConfig::default()
            };
            if let Some(ci) = target_ci {
                measure.stop.target_rel_ci = ci;
            }
            if let Some(s) = budget_s {
                measure.stop.budget = std::time::Duration::from_secs_f64(s);
            }
            let modes = [(cold, Mode::Cold), (hot, Mode::Hot), (graph, Mode::Graph)]
                .into_iter()
                .filter_map(|(on, m)| on.then_some(m))
                .collect::<Vec<_>>();
            let opts = RunOptions {
                modes: (!modes.is_empty()).then_some(modes),
                out_dir: out,
                measure,
                catalog: catalog()?,
            };
            print_device_line(&gpu);
            let rows = suite::run(&gpu, &plans, &opts)?;
            println!("{}", roofbench::report::results_table(&rows));
            let slug = gpu.info().slug();
            print_goals(&plans, &rows, &opts.out_dir.join(&slug))?;
            for path in roofbench::report::plot::plot_results_dir(
                &opts.out_dir,
                Some(&slug),
                &opts.catalog,
            )? {
                eprintln!("plot: {}", path.display());
            }
            let failed = rows.iter().filter(|r| r.status == Status::Failed).count();
            if failed > 0 {
                eprintln!("{failed} result(s) failed verification: see the `note` column");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Calibrate {
            quick,
            out,
            device,
            if_missing,
        } => {
            let gpu = match open_gpu(device) {
                Ok(gpu) => gpu,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_NO_GPU));
                }
            };
            print_device_line(&gpu);
            let existing = roofbench::roofline::MeasuredCeilings::path(&out, &gpu.info().slug());
            if if_missing && existing.is_file() {
                eprintln!(
                    "{} exists: not recalibrating (run without --if-missing to re-measure)",
                    existing.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let catalog = catalog()?;
            let opts = CalibrateOptions {
                quick,
                measure: if quick {
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
            let path = ceilings.save(&out, &gpu.info().slug())?;
            eprintln!(
                "ceilings written to {} (later runs on this GPU use them)",
                path.display()
            );
            let failed = ceilings
                .entries
                .iter()
                .filter(|c| c.skipped.is_none() && !c.verified)
                .count();
            Ok(if failed > 0 {
                eprintln!(
                    "{failed} calibration(s) failed verification: they are stored but not used"
                );
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Accuracy {
            reports,
            shapes,
            tokens,
            data,
            policies,
            budgets,
            sinks,
            recent,
            pool,
            window,
            h2o_history,
            quick,
            len,
            out,
        } => {
            let known = ["kv_evict", "gemm"];
            if let Some(bad) = reports.iter().find(|r| !known.contains(&r.as_str())) {
                bail!(
                    "unknown accuracy report `{bad}` (known: {})",
                    known.join(", ")
                );
            }
            let wants = |r: &str| reports.is_empty() || reports.iter().any(|x| x == r);
            let dir = out.join("accuracy");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            if wants("kv_evict") {
                use roofbench::kv_evict::accuracy;
                use roofbench::kv_evict::policy::{Budget, Policy};
                let mut options = accuracy::ReportOptions {
                    captures: data,
                    overrides: accuracy::Overrides {
                        sinks,
                        recent,
                        pool_kernel: pool,
                        window,
                        seed: None,
                        h2o_history,
                    },
                    quick,
                    synthetic_len: len,
                    ..Default::default()
                };
                if !policies.is_empty() {
                    options.policies = policies
                        .iter()
                        .map(|p| Policy::parse(p))
                        .collect::<Result<_>>()?;
                }
                if !budgets.is_empty() {
                    options.budgets = budgets
                        .iter()
                        .map(|b| Budget::parse(b))
                        .collect::<Result<_>>()?;
                }
                let rows = accuracy::report(&options)?;
                println!(
                    "KV-cache eviction policies vs the full cache:\n{}",
                    accuracy::render_table(&rows)
                );
                let svg = dir.join("kv_evict-error-vs-budget.svg");
                accuracy::write_csv(&rows, &dir.join("kv_evict.csv"))?;
                accuracy::error_vs_budget_svg(&rows, &svg)?;
                write_accuracy_json(&dir, "kv_evict", &rows)?;
            }
            if wants("gemm") {
                use roofbench::gemm::accuracy;
                let options = accuracy::ReportOptions {
                    shapes: shapes
                        .iter()
                        .map(|s| accuracy::GemmShape::parse(s, tokens))
                        .collect::<Result<_>>()?,
                    quick,
                    ..Default::default()
                };
                let rows = accuracy::report(&options)?;
                println!(
                    "Quantized GEMM (FP8/INT8 schemes vs BF16):\n{}",
                    accuracy::render_table(&rows)
                );
                accuracy::write_csv(&rows, &dir.join("gemm.csv"))?;
                accuracy::sqnr_svg(&rows, &dir.join("gemm-sqnr.svg"))?;
                write_accuracy_json(&dir, "gemm", &rows)?;
            }
            println!(
                "wrote {} (CPU, f64 references: no GPU involved)",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Plot { results, gpu } => {
            let written =
                roofbench::report::plot::plot_results_dir(&results, gpu.as_deref(), &catalog()?)?;
            if written.is_empty() {
                bail!(
                    "no results with metadata under {}: run `roofbench run` first",
                    results.display()
                );
            }
            for path in written {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gpus { name } => {
            let catalog = catalog()?;
            match name {
                Some(name) => print_gpu_sources(&catalog, catalog.get(&name)?),
                None => {
                    let specs: Vec<_> = catalog.gpus.iter().collect();
                    let (header, rows) = predict::gpu_summary(&specs, false);
                    // Transposed: one GPU per row reads better for the whole table.
                    let mut t =
                        table(std::iter::once("GPU").chain(rows.iter().map(|r| r[0].as_str())));
                    for (i, gpu) in header.iter().enumerate().skip(1) {
                        t.add_row(
                            std::iter::once(gpu.clone()).chain(rows.iter().map(|r| r[i].clone())),
                        );
                    }
                    println!("{t}\nDense figures (sparse ones are 2x). `roofbench gpus NAME` shows the source of each value.");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Predict { gpu, select, csv } => {
            let catalog = catalog()?;
            let spec = catalog.get(&gpu)?;
            let plans = select.plans(|s| s.default_cases(select.quick))?;
            let predictions = predict::predict(spec, &plans);
            println!(
                "PREDICTED for {} ({} figures; nothing measured):",
                spec.name,
                origin_word(spec)
            );
            println!("{}", predict::prediction_table(&predictions));
            if let Some(path) = csv {
                let mut w = csv::Writer::from_path(&path)?;
                for p in &predictions {
                    w.serialize(p)?;
                }
                w.flush()?;
                eprintln!("predictions written to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CompareGpus {
            names,
            suites,
            format,
            svg,
            quick,
        } => {
            let catalog = catalog()?;
            let specs = names
                .iter()
                .map(|n| catalog.get(n))
                .collect::<Result<Vec<_>>>()?;
            let select = Selection {
                suites,
                cases: vec![],
                quick,
                device: 0,
            };
            let plans = select.plans(|s| s.default_cases(quick))?;
            println!("PREDICTED from spec sheets (dense figures); nothing measured.\n");
            let (header, rows) = predict::gpu_summary(&specs, true);
            println!("{}\n", predict::render(&header, &rows, format));
            let (header, rows) = predict::comparison(&specs, &plans);
            println!("{}", predict::render(&header, &rows, format));
            let roofs: Vec<_> = specs
                .iter()
                .map(|s| roofbench::roofline::Roof::from_spec(s))
                .collect();
            let points = predict::predict(specs[0], &plans);
            roofbench::report::plot::compare_svg(&svg, &roofs, &points)?;
            eprintln!("roofline of these GPUs: {}", svg.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { select } => {
            let plans = select.plans(|s| {
                if select.quick {
                    s.default_cases(true)
                } else {
                    s.verify_cases()
                }
            })?;
            let gpu = match open_gpu(select.device) {
                Ok(gpu) => gpu,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_NO_GPU));
                }
            };
            print_device_line(&gpu);
            let rows = suite::verify(&gpu, &plans);
            let t = roofbench::report::verify_table(&rows);
            println!("{t}");
            let count = |o| rows.iter().filter(|r| r.outcome == o).count();
            let (pass, fail, skip) = (
                count(VerifyOutcome::Pass),
                count(VerifyOutcome::Fail),
                count(VerifyOutcome::Skipped),
            );
            println!("verify: {pass} passed, {fail} failed, {skip} skipped");
            Ok(if fail > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// Opens a device, refusing early when the binary has no kernels.
fn open_gpu(ordinal: usize) -> Result<Gpu, GpuError> {
    if let Some(why) = gpu::embedded::BUILT_WITHOUT_KERNELS {
        return Err(GpuError::BuiltWithoutKernels(why));
    }
    Gpu::open(ordinal)
}

fn print_device_line(gpu: &Gpu) {
    let i = gpu.info();
    eprintln!(
        "device {}: {} (sm_{}{}, {} SMs, {} MiB L2, driver {}, CUDA {})",
        i.ordinal,
        i.name,
        i.compute_capability.0,
        i.compute_capability.1,
        i.sms,
        i.l2_bytes >> 20,
        i.driver,
        i.cuda_driver_api
    );
}

fn devices() -> Result<ExitCode> {
    let count = match Gpu::count() {
        Ok(0) => Err(GpuError::NoDevice("the driver reports 0 devices".into())),
        other => other,
    };
    let count = match count {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_NO_GPU));
        }
    };
    let mut t = table([
        "#",
        "name",
        "cc",
        "SMs",
        "L2 MiB",
        "memory GiB",
        "bus bits",
        "mem MHz",
        "DRAM GB/s",
        "SM MHz",
        "driver",
        "CUDA",
        "clocks now",
    ]);
    for ordinal in 0..count {
        let gpu = Gpu::open(ordinal)?;
        let i = gpu.info();
        let now = gpu
            .telemetry()
            .and_then(|t| t.snapshot())
            .map_or("no NVML".into(), |c| {
                format!(
                    "sm {} / mem {} MHz, {:.0} W",
                    c.sm_clock_mhz, c.mem_clock_mhz, c.power_w
                )
            });
        t.add_row(vec![
            ordinal.to_string(),
            i.name.clone(),
            format!("{}.{}", i.compute_capability.0, i.compute_capability.1),
            i.sms.to_string(),
            (i.l2_bytes >> 20).to_string(),
            format!("{:.1}", i.memory_bytes as f64 / (1u64 << 30) as f64),
            i.memory_bus_width_bits.to_string(),
            i.memory_clock_mhz.to_string(),
            format!("{:.0}", i.dram_gbps()),
            i.sm_clock_mhz.to_string(),
            i.driver.clone(),
            i.cuda_driver_api.clone(),
            now,
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

fn print_kernels(ptxas: bool) {
    if let Some(why) = gpu::embedded::BUILT_WITHOUT_KERNELS {
        println!("built without kernels: {why}");
        return;
    }
    let kernel_count: usize = gpu::MODULES.iter().map(|m| m.kernel_names().len()).sum();
    println!(
        "{kernel_count} kernels in {} modules, nvcc {}",
        gpu::MODULES.len(),
        gpu::embedded::NVCC_VERSION.unwrap_or("?")
    );
    // One row per kernel, one column per machine-code target: registers, shared memory, spills.
    let mut targets: Vec<&str> = gpu::MODULES
        .iter()
        .flat_map(|m| m.kernels.iter().map(|k| k.target))
        .collect();
    targets.sort_by_key(|t| gpu::embedded::Target::parse(t).map(|t| (t.major, t.minor)));
    targets.dedup();
    let mut t = table(
        ["module", "kernel"]
            .into_iter()
            .chain(targets.iter().copied()),
    );
    for m in gpu::MODULES {
        println!(
            "{}: {} (targets: {})",
            m.name,
            m.source,
            m.targets.join(" ")
        );
        for name in m.kernel_names() {
            let cells = targets.iter().map(|target| {
                let entry = m
                    .kernels
                    .iter()
                    .find(|k| k.kernel == name && k.target == *target);
                entry.map_or("-".into(), resource_cell)
            });
            t.add_row(
                [m.name.to_string(), name.to_string()]
                    .into_iter()
                    .chain(cells),
            );
        }
    }
    println!("{t}");
    if ptxas {
        for m in gpu::MODULES {
            println!("--- ptxas -v: {} ---\n{}", m.source, m.ptxas_report);
        }
    }
}

fn resource_cell(k: &gpu::KernelResources) -> String {
    let mut cell = format!("{} regs", k.registers);
    if k.shared_bytes > 0 {
        cell += &format!(", {} B smem", k.shared_bytes);
    }
    if k.spills() || k.stack_bytes > 0 {
        cell += &format!(
            ", SPILLS {}/{} B, stack {} B",
            k.spill_store_bytes, k.spill_load_bytes, k.stack_bytes
        );
    }
    cell
}

fn origin_word(spec: &roofbench::roofline::GpuSpec) -> &'static str {
    match spec.origin {
        roofbench::roofline::spec::Origin::Spec => "spec-sheet",
        roofbench::roofline::spec::Origin::User => "user-file",
        roofbench::roofline::spec::Origin::Derived => "derived",
    }
}

/// One GPU with the document behind every value.
fn print_gpu_sources(catalog: &Catalog, spec: &roofbench::roofline::GpuSpec) {
    println!(
        "{} ({}, sm_{}{}, {} figures)",
        spec.name,
        spec.architecture,
        spec.compute_capability[0],
        spec.compute_capability[1],
        origin_word(spec)
    );
    let mut t = table(["field", "value", "source", "note"]);
    let mut add = |field: String, v: &roofbench::roofline::spec::Sourced| {
        let source = catalog
            .sources
            .get(&v.source)
            .map_or(v.source.clone(), |s| format!("{} <{}>", s.title, s.url));
        t.add_row(vec![
            field,
            format!("{}", v.value),
            source,
            v.note.clone().unwrap_or_default(),
        ]);
    };
    add("SMs".into(), &spec.sms);
    add("boost clock MHz".into(), &spec.boost_clock_mhz);
    add("memory GB".into(), &spec.memory_gb);
    add("memory GB/s".into(), &spec.memory_bandwidth_gbps);
    add("L2 MB".into(), &spec.l2_mb);
    for (field, v) in [
        ("TDP W", &spec.tdp_w),
        ("PCIe GB/s", &spec.pcie_gbps),
        ("NVLink GB/s", &spec.nvlink_gbps),
    ] {
        if let Some(v) = v {
            add(field.into(), v);
        }
    }
    for (p, v) in &spec.dense_tflops {
        add(format!("{p} dense {}", p.unit()), v);
    }
    println!("{t}");
}
