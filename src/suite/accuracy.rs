//! What a CPU accuracy report is (`roofbench accuracy <name>`): a kernel family's accuracy deltas
//! computed in f64 on the CPU, no GPU involved. A report declares its own command-line options and
//! writes its files; the CLI builds the `accuracy` command from the list in `lib.rs`, so a new
//! report is one file that implements [`AccuracyReport`] plus one line in that list.

use std::path::{Path, PathBuf};

use anyhow::Result;

/// Options every report shares.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommonOptions {
    /// A smaller, representative report.
    pub quick: bool,
}

pub trait AccuracyReport: Sync {
    /// The name users give on the command line, e.g. `gemm`.
    fn name(&self) -> &'static str;
    /// One line for `roofbench accuracy --help`.
    fn about(&self) -> &'static str;
    /// Its own options (clap arguments; their ids must not collide with another report's).
    fn args(&self) -> Vec<clap::Arg>;
    /// Computes the report: prints its table and writes its files into `dir` (which exists);
    /// returns the paths written.
    fn run(
        &self,
        options: &clap::ArgMatches,
        common: CommonOptions,
        dir: &Path,
    ) -> Result<Vec<PathBuf>>;
}

/// The values of a repeatable string option (empty when not given).
pub fn strings(options: &clap::ArgMatches, id: &str) -> Vec<String> {
    options
        .get_many::<String>(id)
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

/// An optional typed value; `None` when not given.
pub fn optional<T: Clone + Send + Sync + 'static>(
    options: &clap::ArgMatches,
    id: &str,
) -> Option<T> {
    options.get_one::<T>(id).cloned()
}

/// A repeatable option parsed item by item; `None` when not given (the report's default applies).
pub fn parsed<T>(
    options: &clap::ArgMatches,
    id: &str,
    parse: impl Fn(&str) -> Result<T>,
) -> Result<Option<Vec<T>>> {
    let values = strings(options, id);
    if values.is_empty() {
        return Ok(None);
    }
    values
        .iter()
        .map(|v| parse(v))
        .collect::<Result<_>>()
        .map(Some)
}
