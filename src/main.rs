//! The `roofbench` command line: parses arguments and hands each command to its file in
//! `src/cli/`. Exit codes: see [`EXIT_CODES`].

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use cli::selection::Selection;
use cli::{accuracy, calibrate, devices, gpus, kernels, plot, predict, run, suites, verify};
use roofbench::suite;

/// The exit codes, as `--help` shows them (README "Exit codes" says the same).
const EXIT_CODES: &str = "Exit codes:
  0  success
  1  a check failed (verification, calibration) or the command could not finish (e.g. a write)
  2  usage error: unknown command, option, suite or report; a bad case or option value
  3  no usable GPU (no driver, no device, no kernels) where the command needs one:
     devices, verify, calibrate, and run --require-gpu";

#[derive(Parser)]
#[command(
    name = "roofbench",
    version,
    about = "LLM inference kernels vs the roofline of your GPU",
    after_help = EXIT_CODES
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
    /// Facts about each CUDA device (exit code 3 when there is none).
    Devices,
    /// The kernels embedded in this binary: targets, registers, shared memory, spills.
    Kernels(kernels::KernelsArgs),
    /// The suites and the syntax of their `--case` arguments.
    Suites,
    /// The cases a selection would run, one JSON object per line (for scripts/baselines/).
    Cases(Selection),
    /// Verify, then time, suites and write results/<gpu>/<suite>.csv|json.
    Run(run::RunArgs),
    /// Every GPU correctness check against the CPU references; non-zero exit on any failure.
    Verify(verify::VerifyArgs),
    /// Measure this GPU's ceilings (HBM, L2, shared memory, FP32, mma/wgmma, cuBLASLt, PCIe,
    /// launch) and store them in <out>/<gpu>/ceilings.json for later runs.
    Calibrate(calibrate::CalibrateArgs),
    /// Accuracy deltas on the CPU (no GPU needed), a table and <out>/accuracy/<report>.csv|json|svg.
    Accuracy(accuracy::AccuracyArgs),
    /// SVG plots of measured results: roofline.svg and <suite>-pct.svg in each GPU's folder.
    Plot(plot::PlotArgs),
    /// The GPU spec table (dense peaks, bandwidth, sources); no GPU needed.
    Gpus(gpus::GpusArgs),
    /// PREDICTED roofline-bound time, GB/s and TFLOPS of every case on a GPU of the spec table.
    Predict(predict::PredictArgs),
    /// PREDICTED side-by-side comparison of GPUs: limits, ridge points, the bound of every case.
    CompareGpus(predict::CompareArgs),
}

fn main() -> ExitCode {
    #[cfg(unix)]
    // SAFETY: restoring the default action of one signal, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let ctx = cli::Context {
        gpus_file: cli.gpus,
    };
    match dispatch(cli.command, &ctx) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(if suite::is_usage(&e) {
                suite::EXIT_USAGE
            } else {
                suite::EXIT_CHECK_FAILED
            })
        }
    }
}

/// Runs a command; commands that only print or write succeed with exit code 0.
fn dispatch(command: Command, ctx: &cli::Context) -> Result<ExitCode> {
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match command {
        Command::Devices => devices::run(),
        Command::Kernels(args) => done(kernels::run(args)),
        Command::Suites => done(suites::list()),
        Command::Cases(select) => done(suites::cases(select)),
        Command::Run(args) => run::run(args, ctx),
        Command::Verify(args) => verify::run(args),
        Command::Calibrate(args) => calibrate::run(args, ctx),
        Command::Accuracy(args) => done(accuracy::run(args)),
        Command::Plot(args) => done(plot::run(args, ctx)),
        Command::Gpus(args) => done(gpus::run(args, ctx)),
        Command::Predict(args) => done(predict::run(args, ctx)),
        Command::CompareGpus(args) => done(predict::compare(args, ctx)),
    }
}
