//! Writes results as they are measured: `<dir>/<suite>.csv` gets one row appended (and flushed)
//! per finished case, so an interrupted run keeps its rows; `<dir>/<suite>.json` is rewritten
//! after each row with the run's full metadata and all rows so far.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::row::ResultRow;

/// Everything about a run that is the same for all its rows.
#[derive(Debug, Clone, Serialize)]
pub struct RunMetadata {
    /// The run's folder name under `<results>/<gpu>/runs/` (see [`RunFolder`]); empty outside
    /// a run.
    pub run_id: String,
    pub tool: String,
    pub commit: String,
    pub command: String,
    pub started: String,
    pub host: String,
    pub gpu: Option<crate::gpu::DeviceInfo>,
    pub clocks_at_start: Option<crate::gpu::ClockSnapshot>,
    pub power_limit_w: Option<f64>,
    pub measure: Option<crate::measure::MeasureConfig>,
    /// The spec entry the GPU matched (or its derived spec).
    pub spec: Option<crate::roofline::GpuSpec>,
    /// When the measured ceilings in use were calibrated (None: spec ceilings only).
    pub calibrated_at: Option<String>,
    pub nvcc: Option<String>,
    pub kernel_targets: Vec<String>,
}

impl RunMetadata {
    /// Metadata of this process (command line, commit, time), without device facts.
    pub fn this_run() -> RunMetadata {
        let mut targets: Vec<String> = crate::gpu::MODULES
            .iter()
            .flat_map(|m| m.targets.iter().map(|t| t.to_string()))
            .collect();
        targets.sort();
        targets.dedup();
        RunMetadata {
            run_id: String::new(),
            tool: format!("roofbench {}", env!("CARGO_PKG_VERSION")),
            commit: crate::gpu::embedded::GIT_COMMIT.to_string(),
            command: command_line(),
            started: now(),
            host: std::fs::read_to_string("/etc/hostname")
                .unwrap_or_default()
                .trim()
                .to_string(),
            gpu: None,
            clocks_at_start: None,
            power_limit_w: None,
            measure: None,
            spec: None,
            calibrated_at: None,
            nvcc: crate::gpu::embedded::NVCC_VERSION.map(str::to_string),
            kernel_targets: targets,
        }
    }
}

/// Where one `roofbench run` on one GPU writes: `<results>/<gpu-slug>/runs/<run_id>/`, a new
/// folder per run, so no run overwrites an earlier one's rows (or a committed file). The GPU's
/// `ceilings.json` stays in `<results>/<gpu-slug>/`, shared by its runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFolder {
    /// The UTC start time, `20261203T101500Z` (with `-2`, `-3`.. when two runs start in one
    /// second): sorting the names sorts the runs.
    pub id: String,
    pub dir: PathBuf,
}

impl RunFolder {
    /// Creates a fresh run folder for a GPU under `results_dir`.
    pub fn create(results_dir: &Path, gpu_slug: &str) -> Result<RunFolder> {
        let runs = results_dir.join(gpu_slug).join(RUNS);
        std::fs::create_dir_all(&runs)
            .with_context(|| format!("cannot create {}", runs.display()))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        for n in 1.. {
            let id = if n == 1 {
                stamp.clone()
            } else {
                format!("{stamp}-{n}")
            };
            let dir = runs.join(&id);
            // `create_dir` fails on an existing folder: two runs never share one.
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(RunFolder { id, dir }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", dir.display()))
                }
            }
        }
        unreachable!("an unbounded range")
    }
}

/// The folder of a GPU's runs, inside its results folder.
pub const RUNS: &str = "runs";

/// RFC 3339 UTC timestamp.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[derive(Serialize)]
struct JsonResults<'a> {
    metadata: &'a RunMetadata,
    rows: &'a [ResultRow],
}

pub struct ResultsWriter {
    csv: csv::Writer<File>,
    csv_path: PathBuf,
    json_path: PathBuf,
    metadata: RunMetadata,
    rows: Vec<ResultRow>,
}

impl ResultsWriter {
    /// Starts `<dir>/<suite>.csv` and `.json` afresh (a run's files describe that run only).
    pub fn create(dir: &Path, suite: &str, metadata: RunMetadata) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let csv_path = dir.join(format!("{suite}.csv"));
        let file = File::create(&csv_path)
            .with_context(|| format!("cannot write {}", csv_path.display()))?;
        Ok(ResultsWriter {
            csv: csv::Writer::from_writer(file),
            csv_path,
            json_path: dir.join(format!("{suite}.json")),
            metadata,
            rows: Vec::new(),
        })
    }

    pub fn append(&mut self, row: ResultRow) -> Result<()> {
        self.csv
            .serialize(&row)
            .and_then(|()| Ok(self.csv.flush()?))
            .with_context(|| format!("writing a result row to {}", self.csv_path.display()))?;
        self.rows.push(row);
        let json = serde_json::to_string_pretty(&JsonResults {
            metadata: &self.metadata,
            rows: &self.rows,
        })?;
        // Write-then-rename: an interrupted run never leaves half a JSON file.
        let tmp = self.json_path.with_extension("json.tmp");
        File::create(&tmp)
            .and_then(|mut f| f.write_all(json.as_bytes()))
            .and_then(|_| std::fs::rename(&tmp, &self.json_path))
            .with_context(|| format!("cannot write {}", self.json_path.display()))
    }

    /// Replaces every row written so far (a suite's annotations after its last case), rewriting
    /// both files.
    pub fn replace_rows(&mut self, rows: Vec<ResultRow>) -> Result<()> {
        let file = File::create(&self.csv_path)
            .with_context(|| format!("cannot write {}", self.csv_path.display()))?;
        self.csv = csv::Writer::from_writer(file);
        self.rows.clear();
        for row in rows {
            self.append(row)?;
        }
        Ok(())
    }

    pub fn csv_path(&self) -> &Path {
        &self.csv_path
    }

    pub fn rows(&self) -> &[ResultRow] {
        &self.rows
    }
}

/// Reads a results CSV back.
pub fn read_csv(path: &Path) -> Result<Vec<ResultRow>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    reader
        .deserialize()
        .collect::<Result<Vec<ResultRow>, _>>()
        .with_context(|| format!("{} does not match the results schema", path.display()))
}

/// Any serializable rows as CSV with a header (the accuracy reports' tables).
pub fn write_rows_csv<T: serde::Serialize>(rows: &[T], path: &Path) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    rows.iter()
        .try_for_each(|r| w.serialize(r))
        .and_then(|()| Ok(w.flush()?))
        .with_context(|| format!("writing {} rows to {}", rows.len(), path.display()))
}

/// The command line that produced a file, for its metadata (lossy where an argument is not
/// UTF-8, so a non-UTF-8 path never stops a result from being written).
pub fn command_line() -> String {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An accuracy report's rows with what produced them, as `<dir>/<name>.json` (the CSV beside it
/// is for spreadsheets). Returns the path written.
pub fn write_accuracy_json<T: serde::Serialize>(
    dir: &Path,
    name: &str,
    rows: &[T],
) -> Result<PathBuf> {
    let path = dir.join(format!("{name}.json"));
    let document = serde_json::json!({
        "computed_on": "cpu (f64 references; no GPU involved)",
        "commit": crate::gpu::embedded::GIT_COMMIT,
        "command": command_line(),
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "rows": rows,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Mode;
    use crate::report::{Provider, Status};

    fn row(case: &str, median: Option<f64>) -> ResultRow {
        ResultRow {
            suite: "stream".into(),
            case: case.into(),
            kernel: "stream_copy_u32x4".into(),
            provider: Some(Provider::Roofbench),
            dtype: "u32".into(),
            params: "elements=262144".into(),
            mode: Some(Mode::Cold),
            status: Status::Ok,
            samples: 12,
            median_us: median,
            bytes: 2 << 20,
            verified: true,
            max_rel_err: Some(0.0),
            note: "a note, with a comma".into(),
            ..Default::default()
        }
    }

    #[test]
    fn enum_columns_are_written_as_the_strings_they_always_were() {
        let skipped = ResultRow {
            case: "copy/4GiB".into(),
            kernel: "-".into(),
            ..Default::default()
        };
        let driver = ResultRow {
            provider: Some(Provider::Driver),
            mode: Some(Mode::Graph),
            status: Status::Failed,
            ..row("copy/1MiB", Some(1.0))
        };
        let lt = ResultRow {
            provider: Some(Provider::CublasLt),
            mode: Some(Mode::Hot),
            ..row("copy/1MiB", Some(1.0))
        };
        let rows = [row("copy/1MiB", Some(1.0)), skipped, driver, lt];
        let columns = ["provider", "mode", "status"];
        let want = [
            ["roofbench", "cold", "ok"],
            ["-", "", "skipped"],
            ["driver", "graph", "failed"],
            ["cublaslt", "hot", "ok"],
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        write_rows_csv(&rows, &path).unwrap();
        let mut csv = csv::Reader::from_path(&path).unwrap();
        let header = csv.headers().unwrap().clone();
        let at = |name: &str| header.iter().position(|h| h == name).unwrap();
        for (record, want) in csv.records().zip(want) {
            let record = record.unwrap();
            let got: Vec<&str> = columns.iter().map(|c| &record[at(c)]).collect();
            assert_eq!(got, want);
        }
        for (row, want) in rows.iter().zip(want) {
            let json = serde_json::to_value(row).unwrap();
            let got: Vec<&str> = columns.iter().map(|c| json[c].as_str().unwrap()).collect();
            assert_eq!(got, want);
        }
        assert_eq!(read_csv(&path).unwrap(), rows, "and they read back");
    }

    #[test]
    fn every_run_gets_its_own_folder() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunFolder::create(dir.path(), "h100").unwrap();
        let second = RunFolder::create(dir.path(), "h100").unwrap();
        assert_ne!(first.dir, second.dir, "a second run in the same second");
        assert!(second.id.starts_with(&first.id) && first.dir.is_dir() && second.dir.is_dir());
        assert_eq!(first.dir, dir.path().join("h100/runs").join(&first.id));
    }

    #[test]
    fn rows_round_trip_through_csv_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResultsWriter::create(dir.path(), "stream", RunMetadata::this_run()).unwrap();
        w.append(row("copy/1MiB", Some(1.25))).unwrap();
        // The first row is on disk before the second is measured.
        assert_eq!(read_csv(w.csv_path()).unwrap().len(), 1);
        w.append(row("copy/4MiB", None)).unwrap();
        let back = read_csv(&dir.path().join("stream.csv")).unwrap();
        assert_eq!(
            back,
            vec![row("copy/1MiB", Some(1.25)), row("copy/4MiB", None)]
        );

        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("stream.json")).unwrap())
                .unwrap();
        assert_eq!(json["rows"].as_array().unwrap().len(), 2);
        assert!(json["metadata"]["commit"]
            .as_str()
            .is_some_and(|c| !c.is_empty()));
    }

    #[test]
    fn baseline_scripts_write_the_same_columns() {
        // scripts/baselines/*.py write rows for the same CSV: common.py's COLUMNS must be this header.
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResultsWriter::create(dir.path(), "s", RunMetadata::this_run()).unwrap();
        w.append(row("c", Some(1.0))).unwrap();
        let text = std::fs::read_to_string(dir.path().join("s.csv")).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let script = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/baselines/common.py"
        ))
        .unwrap();
        let list = script
            .split("COLUMNS = [")
            .nth(1)
            .unwrap()
            .split(']')
            .next()
            .unwrap();
        let columns: Vec<&str> = list
            .split(',')
            .filter_map(|c| c.split('"').nth(1))
            .collect();
        assert_eq!(columns, header);
    }

    #[test]
    fn csv_header_has_the_documented_columns() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResultsWriter::create(dir.path(), "s", RunMetadata::this_run()).unwrap();
        w.append(row("c", Some(1.0))).unwrap();
        let text = std::fs::read_to_string(dir.path().join("s.csv")).unwrap();
        let header = text.lines().next().unwrap();
        for column in [
            "suite",
            "case",
            "kernel",
            "provider",
            "dtype",
            "params",
            "samples",
            "median_us",
            "p10_us",
            "p90_us",
            "rel_ci",
            "bytes",
            "flops",
            "gbps",
            "tflops",
            "ceiling",
            "pct_of_ceiling",
            "verified",
            "max_rel_err",
            "gpu",
            "sm_clock_mhz",
            "mem_clock_mhz",
            "driver",
            "cuda",
            "commit",
            "timestamp",
        ] {
            assert!(
                header.split(',').any(|h| h == column),
                "missing column {column}"
            );
        }
    }
}
