//! scripts/gpu-check.sh, the one command of a GPU session, run here with the real CLI: without a
//! GPU it must stop at `devices` with the CLI's no-GPU exit code, and its deadline logic must
//! refuse to start steps it has no time for and say so in the summary.

use std::path::Path;
use std::process::Command;

fn gpu_check(out: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu-check.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .env("ROOFBENCH_BIN", env!("CARGO_BIN_EXE_roofbench"))
        .env("ROOFBENCH_TESTS", out.join("no-tests"))
        .env("OUT", out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("bash runs");
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default();
    (output.status.code().unwrap_or(-1), summary)
}

fn no_gpu_here() -> bool {
    let devices = Command::new(env!("CARGO_BIN_EXE_roofbench"))
        .arg("devices")
        .output()
        .unwrap();
    !devices.status.success()
}

#[test]
fn without_a_gpu_it_stops_at_devices_with_the_no_gpu_code() {
    if !no_gpu_here() {
        eprintln!("skipping: this machine has a GPU");
        return;
    }
    let devices_code = Command::new(env!("CARGO_BIN_EXE_roofbench"))
        .arg("devices")
        .status()
        .unwrap()
        .code();
    let out = tempfile::tempdir().unwrap();
    let (code, summary) = gpu_check(out.path(), &[]);
    assert_eq!(Some(code), devices_code, "{summary}");
    assert!(summary.contains("no usable GPU"), "{summary}");
    assert!(
        !summary.contains("verify: ok"),
        "nothing after devices ran: {summary}"
    );
    assert!(out.path().join("estimate.txt").is_file());
}

#[test]
fn steps_without_time_left_are_not_started_and_the_check_fails() {
    let out = tempfile::tempdir().unwrap();
    let (code, summary) = gpu_check(
        out.path(),
        &[
            ("ROOFBENCH_DEADLINE_S", "0"),
            ("ROOFBENCH_PHASES", "verify calibrate run"),
        ],
    );
    assert_eq!(code, 1, "{summary}");
    for step in ["verify", "calibrate", "goals", "rest"] {
        assert!(
            summary.contains(&format!("{step}: not started")),
            "{step} missing from: {summary}"
        );
    }
    assert!(
        !summary.contains("tests:"),
        "unselected steps stay silent: {summary}"
    );
}
