//! `roofbench accuracy [REPORT…]`: the CPU accuracy reports registered in the library
//! (`roofbench::accuracy_reports()`); each brings its own options, added to this command here.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{value_parser, Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use indicatif::{ProgressBar, ProgressStyle};

use roofbench::suite::accuracy::CommonOptions;
use roofbench::suite::{usage, AccuracyReport};

/// The command's options: the shared ones, and every report's own, kept as parsed.
pub struct AccuracyArgs {
    matches: ArgMatches,
}

impl FromArgMatches for AccuracyArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(AccuracyArgs {
            matches: matches.clone(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.matches = matches.clone();
        Ok(())
    }
}

impl Args for AccuracyArgs {
    fn augment_args(cmd: Command) -> Command {
        let reports = roofbench::accuracy_reports();
        let list: Vec<String> = reports
            .iter()
            .map(|r| format!("  {:<10} {}", r.name(), r.about()))
            .collect();
        let cmd = cmd
            .arg(
                Arg::new("reports")
                    .value_name("REPORT")
                    .num_args(0..)
                    .help(format!(
                        "Which reports (default: all): {}",
                        reports
                            .iter()
                            .map(|r| r.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
            )
            .arg(
                Arg::new("quick")
                    .long("quick")
                    .action(ArgAction::SetTrue)
                    .help("A smaller, representative report (kv_evict: 1024 tokens, not 4096)"),
            )
            .arg(
                Arg::new("out")
                    .long("out")
                    .value_name("DIR")
                    .value_parser(value_parser!(PathBuf))
                    .default_value("results")
                    .help("Results directory (an accuracy/ folder is made inside)"),
            )
            .after_help(format!("Reports:\n{}", list.join("\n")));
        reports
            .iter()
            .flat_map(|r| r.args())
            .fold(cmd, |cmd, arg| cmd.arg(arg))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// The reports named (all when none is); an unknown name is an error listing the known ones.
fn selected(names: &[String]) -> Result<Vec<&'static dyn AccuracyReport>> {
    let all = roofbench::accuracy_reports();
    if let Some(bad) = names.iter().find(|n| !all.iter().any(|r| r.name() == *n)) {
        let known: Vec<_> = all.iter().map(|r| r.name()).collect();
        bail!(
            "unknown accuracy report `{bad}` (known: {})",
            known.join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|r| names.is_empty() || names.iter().any(|n| n == r.name()))
        .collect())
}

pub fn run(args: AccuracyArgs) -> Result<()> {
    let m = &args.matches;
    let names: Vec<String> = m
        .get_many::<String>("reports")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    let reports = selected(&names).map_err(usage)?;
    let common = CommonOptions {
        quick: m.get_flag("quick"),
    };
    let out = m
        .get_one::<PathBuf>("out")
        .cloned()
        .unwrap_or_else(|| PathBuf::from("results"));
    let dir = out.join("accuracy");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // The full reports take a minute or two on two cores: show which one is running (on a
    // terminal only; indicatif draws nothing into a pipe or a log).
    let bar = ProgressBar::new(reports.len() as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} {pos}/{len} accuracy reports [{elapsed_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    for report in reports {
        bar.set_message(report.name());
        report.run(m, common, &dir)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "wrote {} (CPU, f64 references: no GPU involved)",
        dir.display()
    );
    Ok(())
}
