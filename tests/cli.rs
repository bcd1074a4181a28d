//! The command line on a machine without a GPU (this machine, CI): clear messages and exit codes,
//! never a panic. On a GPU machine these cases do not apply and return early.

use std::process::Command;

use roofbench::gpu::{Gpu, GpuError};

fn roofbench(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_roofbench"))
        .args(args)
        .output()
        .expect("runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains("panicked"),
        "roofbench {args:?} panicked:\n{text}"
    );
    (out.status.code().unwrap_or(-1), text)
}

fn no_gpu_here() -> bool {
    matches!(
        Gpu::open(0),
        Err(GpuError::NoDriver | GpuError::NoDevice(_))
    )
}

#[test]
fn devices_without_gpu_exits_3_with_a_reason() {
    if !no_gpu_here() {
        return;
    }
    let (code, text) = roofbench(&["devices"]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("no CUDA driver") || text.contains("no CUDA device"),
        "{text}"
    );
}

#[test]
fn run_without_gpu_explains_and_shows_the_kernel_table() {
    if !no_gpu_here() {
        return;
    }
    let (code, text) = roofbench(&["run", "--quick"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("no GPU measurement"), "{text}");
    // One screen of kernels (not a row per kernel) before the predictions, a summary after.
    let before = text.split("PREDICTED").next().unwrap();
    assert!(before.lines().count() < 25, "{before}");
    if roofbench::gpu::embedded::BUILT_WITHOUT_KERNELS.is_none() {
        assert!(before.contains("most registers on sm_90a"), "{before}");
    }
    let summary = text.rsplit("summary:").next().unwrap();
    assert!(
        summary.contains("nothing was measured") && summary.contains("PREDICTED"),
        "{text}"
    );
    let (code, _) = roofbench(&["run", "--quick", "--require-gpu"]);
    assert_eq!(code, 3, "no GPU: its own code, not a usage error's 2");
    // A GPU whose spec values are unconfirmed: the marks come with their explanation.
    let (code, text) = roofbench(&["run", "stream", "--quick", "--predict-gpu", "GH200"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains('*') && text.contains("marks unconfirmed"),
        "{text}"
    );
}

#[test]
fn the_main_job_writes_no_committed_file() {
    // scripts/main.sh: `run` writes a fresh run folder; the accuracy step gets `--quick` when the
    // job does and an untracked folder (results/local/, ignored), never results/accuracy/.
    let root = env!("CARGO_MANIFEST_DIR");
    let script = std::fs::read_to_string(format!("{root}/scripts/main.sh")).unwrap();
    let accuracy: Vec<&str> = script
        .lines()
        .filter(|l| l.contains("\"$bin\" accuracy"))
        .collect();
    assert_eq!(accuracy.len(), 1, "{script}");
    assert!(
        accuracy[0].contains("--out \"$local_dir\"") && accuracy[0].contains("quick"),
        "{}",
        accuracy[0]
    );
    assert!(script.contains("local_dir=\"results/local/"), "{script}");
    let ignore = std::fs::read_to_string(format!("{root}/.gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "/results/local/"), "{ignore}");
}

#[test]
fn verify_without_gpu_fails() {
    if !no_gpu_here() {
        return;
    }
    let (code, text) = roofbench(&["verify", "stream", "--case", "copy:1MiB"]);
    assert_eq!(code, 3, "{text}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let (code, text) = roofbench(&["run", "warp-drive"]);
    assert_eq!(code, 2);
    assert!(text.contains("unknown suite `warp-drive`"), "{text}");
    let (code, text) = roofbench(&["verify", "stream", "--case", "copy:7"]);
    assert_eq!(code, 2);
    assert!(
        text.contains("multiple of 4") && text.contains("OP:SIZE"),
        "{text}"
    );
    let (code, text) = roofbench(&["run", "--case", "copy:1GiB"]);
    assert_eq!(code, 2);
    assert!(text.contains("exactly one suite"), "{text}");
}

#[test]
fn kernels_lists_the_embedded_table() {
    let (code, text) = roofbench(&["kernels"]);
    assert_eq!(code, 0);
    if roofbench::gpu::embedded::BUILT_WITHOUT_KERNELS.is_none() {
        assert!(
            text.contains("stream_copy_u32x4") && text.contains("sm_90a"),
            "{text}"
        );
    }
}

#[test]
fn calibrate_without_gpu_exits_3() {
    if !no_gpu_here() {
        return;
    }
    let (code, text) = roofbench(&["calibrate", "--quick"]);
    assert_eq!(code, 3, "{text}");
}

#[test]
fn predictions_work_without_a_gpu_and_say_so() {
    let (code, text) = roofbench(&["predict", "--gpu", "h200", "stream", "--case", "copy:1GiB"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("PREDICTED for H200 SXM") && text.contains("copy/1GiB"),
        "{text}"
    );
    let (code, text) = roofbench(&["predict", "--gpu", "voodoo5"]);
    assert_eq!(code, 2);
    assert!(
        text.contains("unknown GPU `voodoo5`") && text.contains("H100 SXM"),
        "{text}"
    );
}

#[test]
fn compare_gpus_writes_tables_and_an_svg() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = roofbench(&[
        "compare-gpus",
        "H100 SXM",
        "B200",
        "--base",
        "b200",
        "--quick",
        "--format",
        "csv",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    // stdout is the CSV alone: its header first, the base in its own column.
    assert!(text.starts_with("kind,gpu,suite,case"), "{text}");
    assert!(
        text.contains(",B200,") && text.contains("speedup_vs_base"),
        "{text}"
    );
    for file in ["compare-gpus.csv", "compare-gpus.md", "compare-gpus.svg"] {
        let path = dir.path().join(file);
        assert!(
            text.contains(&format!("written: {}", path.display())),
            "{text}"
        );
        assert!(path.is_file(), "{file}");
    }
    assert!(std::fs::read_to_string(dir.path().join("compare-gpus.svg"))
        .unwrap()
        .contains("PREDICTED rooflines"));
    let (code, text) = roofbench(&["compare-gpus", "H100 SXM", "B200", "--base", "L4"]);
    assert_eq!(code, 1);
    assert!(text.contains("not one of the GPUs compared"), "{text}");
}

#[test]
fn user_gpu_file_is_used_and_bad_ones_are_explained() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/my-gpus.toml");
    let (code, text) = roofbench(&["--gpus", example, "gpus"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("H100 SXM (lab, 1755 MHz)"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[gpu]]\nname = 7\n").unwrap();
    let (code, text) = roofbench(&["--gpus", bad.to_str().unwrap(), "gpus"]);
    assert_eq!(code, 1);
    assert!(text.contains("bad.toml"), "{text}");
}

#[test]
fn accuracy_runs_on_the_cpu_and_writes_its_table_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let (code, text) = roofbench(&[
        "accuracy", "kv_evict", "--len", "256", "--policy", "h2o", "--policy", "recent",
        "--budget", "10%", "--out", out,
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("heavy-hitters") && text.contains("h2o") && text.contains("no GPU"),
        "{text}"
    );
    let csv = std::fs::read_to_string(dir.path().join("accuracy/kv_evict.csv")).unwrap();
    // 4 synthetic kinds x 2 policies x 1 budget, plus the header.
    assert_eq!(csv.lines().count(), 1 + 4 * 2, "{csv}");
    assert!(dir
        .path()
        .join("accuracy/kv_evict-error-vs-budget.svg")
        .exists());
    let (code, text) = roofbench(&["accuracy", "kv_evict", "--policy", "lru", "--out", out]);
    assert_eq!(code, 2);
    assert!(text.contains("lru") && text.contains("h2o"), "{text}");
    let (code, text) = roofbench(&[
        "accuracy",
        "--data",
        "/nonexistent.safetensors",
        "--out",
        out,
    ]);
    assert_eq!(code, 1);
    assert!(text.contains("nonexistent"), "{text}");
}

#[test]
fn every_built_in_case_parses() {
    // The built-in grids are built from specs: a bad one would panic at run time on a GPU node.
    for suite in roofbench::suites() {
        assert!(!suite.default_cases(false).is_empty(), "{}", suite.name());
        assert!(!suite.default_cases(true).is_empty(), "{}", suite.name());
        assert!(!suite.verify_cases().is_empty(), "{}", suite.name());
    }
}

#[test]
fn gemm_accuracy_runs_on_the_cpu_for_user_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let (code, text) = roofbench(&["accuracy", "gemm", "--shape", "7x200x130", "--out", out]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("per-tensor") && text.contains("block128"),
        "{text}"
    );
    let json = std::fs::read_to_string(dir.path().join("accuracy/gemm.json")).unwrap();
    assert!(
        json.contains("\"commit\"") && json.contains("7x200x130"),
        "{json}"
    );
    assert!(dir.path().join("accuracy/gemm-sqnr.svg").exists());
    let (code, text) = roofbench(&["accuracy", "fft", "--out", out]);
    assert_eq!(code, 2);
    assert!(text.contains("kv_evict, gemm"), "{text}");
}

#[test]
fn results_readme_documents_every_column() {
    // The header of each CSV a user gets: the results rows and both accuracy reports.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let (code, text) = roofbench(&[
        "accuracy", "--len", "64", "--policy", "recent", "--budget", "10%", "--shape", "1x16x16",
        "--out", out,
    ]);
    assert_eq!(code, 0, "{text}");
    let mut headers: Vec<String> = ["kv_evict", "gemm"]
        .iter()
        .map(|r| {
            let csv = std::fs::read_to_string(dir.path().join(format!("accuracy/{r}.csv")));
            csv.unwrap().lines().next().unwrap().to_string()
        })
        .collect();
    let baselines = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/baselines/common.py"
    ))
    .unwrap();
    // common.py's COLUMNS is the results header (a unit test in report/writer.rs checks it).
    let list = baselines.split("COLUMNS = [").nth(1).unwrap();
    let list = list.split(']').next().unwrap();
    headers.push(
        list.split(',')
            .filter_map(|c| c.split('"').nth(1))
            .collect::<Vec<_>>()
            .join(","),
    );
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/results/README.md")).unwrap();
    let missing: Vec<&str> = headers
        .iter()
        .flat_map(|h| h.split(','))
        .filter(|c| !readme.contains(&format!("`{c}`")))
        .collect();
    assert!(missing.is_empty(), "results/README.md lacks {missing:?}");
}
