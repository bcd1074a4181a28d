//! `roofbench accuracy gemm`: the report's options and files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{value_parser, Arg, ArgAction, ArgMatches};

use super::{
    render_table, report, sqnr_svg, write_csv, GemmShape, OutlierPattern, ReportOptions, MAX_TOKENS,
};
use crate::report::write_accuracy_json;
use crate::suite::accuracy::{strings, AccuracyReport, CommonOptions};
use crate::suite::usage;

pub struct GemmAccuracy;

impl AccuracyReport for GemmAccuracy {
    fn name(&self) -> &'static str {
        "gemm"
    }

    fn about(&self) -> &'static str {
        "SQNR, relative Frobenius error, cosine and max abs error of FP8/INT8 quantization \
         schemes on real model shapes"
    }

    fn args(&self) -> Vec<Arg> {
        vec![
            Arg::new("shape")
                .long("shape")
                .action(ArgAction::Append)
                .help(
                    "gemm: a shape (repeatable): MxNxK, or a model shape name (e.g. llama3-70b-o) \
                 with M = --tokens",
                ),
            Arg::new("tokens")
                .long("tokens")
                .value_name("M")
                .value_parser(value_parser!(u64).range(1..=MAX_TOKENS))
                .default_value("128")
                .help("gemm: tokens (M) of the shapes given with --shape"),
            Arg::new("outliers")
                .long("outliers")
                .value_name("N")
                .value_parser(value_parser!(usize))
                .help("gemm: outlier channels of the outliers data (default: 1% of K)"),
            Arg::new("outlier-scale")
                .long("outlier-scale")
                .value_name("X")
                .value_parser(value_parser!(f64))
                .help("gemm: every outlier channel's factor (default: uniform in 50..100 each)"),
        ]
    }

    fn run(&self, o: &ArgMatches, common: CommonOptions, dir: &Path) -> Result<Vec<PathBuf>> {
        let tokens = *o
            .get_one::<u64>("tokens")
            .context("--tokens has a default")? as usize;
        let shapes: Vec<GemmShape> = strings(o, "shape")
            .iter()
            .map(|s| GemmShape::parse(s, tokens))
            .collect::<Result<_>>()
            .map_err(usage)?;
        for shape in &shapes {
            shape.check_cpu_size().map_err(usage)?;
        }
        let options = ReportOptions {
            shapes,
            outliers: OutlierPattern::new(
                o.get_one::<usize>("outliers").copied(),
                o.get_one::<f64>("outlier-scale").copied(),
            )?,
            quick: common.quick,
            ..Default::default()
        };
        let rows = report(&options)?;
        println!(
            "Quantized GEMM (FP8/INT8 schemes vs BF16):\n{}",
            render_table(&rows)
        );
        let (csv, svg) = (dir.join("gemm.csv"), dir.join("gemm-sqnr.svg"));
        write_csv(&rows, &csv)?;
        sqnr_svg(&rows, &svg)?;
        let json = write_accuracy_json(dir, "gemm", &rows)?;
        Ok(vec![csv, svg, json])
    }
}
