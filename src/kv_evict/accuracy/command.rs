//! `roofbench accuracy kv_evict`: the report's options and files.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{value_parser, Arg, ArgAction, ArgMatches};

use super::{
    error_vs_budget_svg, render_table, report, write_csv, Overrides, ReportOptions,
    MAX_SYNTHETIC_LEN,
};
use crate::attention::config::MAX_CONTEXT;
use crate::kv_evict::config::MAX_OBSERVATION;
use crate::kv_evict::policy::{Budget, Policy};
use crate::report::write_accuracy_json;
use crate::suite::accuracy::{optional, parsed, AccuracyReport, CommonOptions};
use crate::suite::usage;

pub struct KvEvictAccuracy;

/// A whole-number option, bounded when parsing (clap's usage error, exit code 2); the
/// report reads it back as a `usize`.
fn count(id: &'static str, range: RangeInclusive<u64>, help: &'static str) -> Arg {
    Arg::new(id)
        .long(id)
        .value_name("N")
        .value_parser(value_parser!(u64).range(range))
        .help(help)
}

/// A [`count`]'s value, when given.
fn count_value(o: &ArgMatches, id: &str) -> Option<usize> {
    optional::<u64>(o, id).map(|v| v as usize)
}

impl AccuracyReport for KvEvictAccuracy {
    fn name(&self) -> &'static str {
        "kv_evict"
    }

    fn about(&self) -> &'static str {
        "relative error of the attention output, attention-mass recall and needle recall of each \
         eviction policy and budget against the full cache"
    }

    fn args(&self) -> Vec<Arg> {
        vec![
            Arg::new("data")
                .long("data")
                .value_name("FILE")
                .action(ArgAction::Append)
                .value_parser(value_parser!(PathBuf))
                .help(
                    "kv_evict: a Q/K/V capture of your model (repeatable): .safetensors with \
                     tensors q, k, v, or .npz, or a folder / path prefix with q.npy, k.npy, v.npy; \
                     shapes [len, heads, dim]. Default: synthetic attention (heavy hitters, \
                     recency, needles, gaussian)",
                ),
            Arg::new("policy")
                .long("policy")
                .value_name("POLICY")
                .action(ArgAction::Append)
                .help(
                    "kv_evict: policies to evaluate (repeatable; default all): h2o, tova, snapkv, \
                     streaming-llm, recent, random",
                ),
            Arg::new("budget")
                .long("budget")
                .value_name("BUDGET")
                .action(ArgAction::Append)
                .help(
                    "kv_evict: budgets per kv head (repeatable; default 10%, 25%, 50%): 25%, 0.25 \
                     or a token count",
                ),
            count(
                "sinks",
                0..=MAX_CONTEXT as u64,
                "kv_evict: always-kept first tokens (overrides each policy's default)",
            ),
            count(
                "recent",
                0..=MAX_CONTEXT as u64,
                "kv_evict: always-kept newest tokens (overrides each policy's default)",
            ),
            // Odd: checked with the case's rule (`pool=`) when the report starts.
            count(
                "pool",
                1..=MAX_CONTEXT as u64,
                "kv_evict: SnapKV's max-pool width (odd)",
            ),
            count(
                "window",
                1..=MAX_OBSERVATION as u64,
                "kv_evict: SnapKV's observation window (queries, as a case's obs=)",
            ),
            count(
                "h2o-history",
                1..=MAX_CONTEXT as u64,
                "kv_evict: queries whose attention H2O accumulates",
            ),
            count(
                "len",
                2..=MAX_SYNTHETIC_LEN as u64,
                "kv_evict: synthetic data of this many tokens",
            ),
        ]
    }

    fn run(&self, o: &ArgMatches, common: CommonOptions, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut options = ReportOptions {
            captures: o
                .get_many::<PathBuf>("data")
                .map(|v| v.cloned().collect())
                .unwrap_or_default(),
            overrides: Overrides {
                sinks: count_value(o, "sinks"),
                recent: count_value(o, "recent"),
                pool_kernel: count_value(o, "pool"),
                window: count_value(o, "window"),
                seed: None,
                h2o_history: count_value(o, "h2o-history"),
            },
            quick: common.quick,
            synthetic_len: count_value(o, "len"),
            ..Default::default()
        };
        if let Some(policies) = parsed(o, "policy", Policy::parse).map_err(usage)? {
            options.policies = policies;
        }
        if let Some(budgets) = parsed(o, "budget", Budget::parse).map_err(usage)? {
            options.budgets = budgets;
        }
        options.overrides.validate().map_err(usage)?;
        let rows = report(&options)?;
        println!(
            "KV-cache eviction policies vs the full cache:\n{}",
            render_table(&rows)
        );
        let (csv, svg) = (
            dir.join("kv_evict.csv"),
            dir.join("kv_evict-error-vs-budget.svg"),
        );
        write_csv(&rows, &csv)?;
        error_vs_budget_svg(&rows, &svg)?;
        let json = write_accuracy_json(dir, "kv_evict", &rows)?;
        Ok(vec![csv, svg, json])
    }
}
