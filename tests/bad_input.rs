//! Bad input of every kind is a clear error with the documented exit code (README "Exit codes"):
//! 2 for a usage error, 1 for a command that could not finish; never a panic (101) or an abort
//! (134, e.g. an allocation of what a huge case would need). Every command runs in a fresh
//! folder, so nothing a failing command might write lands in the checkout.

use std::path::Path;
use std::process::{Command, Stdio};

use proptest::prelude::*;

const USAGE: i32 = 2;
const FAILED: i32 = 1;

/// Runs roofbench in `dir`; the exit code (-1: killed by a signal) and stdout + stderr.
fn roofbench_in(dir: &Path, args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_roofbench"))
        .args(args)
        .current_dir(dir)
        .env_remove("ROOFBENCH_GPUS")
        .output()
        .expect("runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        ![101, 134, -1].contains(&code) && !text.contains("panicked"),
        "roofbench {args:?} crashed ({code}):\n{text}"
    );
    (code, text)
}

fn roofbench(dir: &Path, args: &[&str]) -> (i32, String) {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    roofbench_in(dir, &args)
}

const REPO_RESULTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/results");

/// `(arguments, exit code, a fragment of the message)`.
const BAD: &[(&[&str], i32, &str)] = &[
    // Accuracy options: bounded when parsing, before any allocation.
    (
        &[
            "accuracy",
            "gemm",
            "--shape",
            "llama3-8b-qkv",
            "--tokens",
            "0",
        ],
        USAGE,
        "1..=65536",
    ),
    (
        &["accuracy", "gemm", "--tokens", "1000000000"],
        USAGE,
        "1..=65536",
    ),
    (&["accuracy", "gemm", "--tokens=-3"], USAGE, "--tokens"),
    (
        &["accuracy", "gemm", "--shape", "100000x100000x100000"],
        USAGE,
        "CPU report holds",
    ),
    (
        &[
            "accuracy",
            "gemm",
            "--shape",
            "llama3-70b-down",
            "--tokens",
            "65536",
        ],
        USAGE,
        "fewer tokens",
    ),
    (
        &["accuracy", "gemm", "--shape", "0x16x16"],
        USAGE,
        "positive",
    ),
    (
        &["accuracy", "gemm", "--shape", "llama9-qkv"],
        USAGE,
        "unknown shape",
    ),
    (
        &["accuracy", "kv_evict", "--len", "1000000000000"],
        USAGE,
        "2..=32768",
    ),
    (&["accuracy", "kv_evict", "--len", "1"], USAGE, "2..=32768"),
    // The case's rules (pool=, obs=) on the command line too.
    (
        &["accuracy", "kv_evict", "--pool", "4"],
        USAGE,
        "must be odd",
    ),
    (&["accuracy", "kv_evict", "--window", "0"], USAGE, "1..=64"),
    (&["accuracy", "kv_evict", "--window", "65"], USAGE, "1..=64"),
    (
        &["accuracy", "kv_evict", "--h2o-history", "0"],
        USAGE,
        "--h2o-history",
    ),
    (&["accuracy", "kv_evict", "--policy", "lru"], USAGE, "lru"),
    (&["accuracy", "kv_evict", "--budget", "lots"], USAGE, "lots"),
    (&["accuracy", "fft"], USAGE, "unknown accuracy report `fft`"),
    // Measurement options: NaN, infinities and negatives never reach a Duration.
    (&["run", "stream", "--budget-s=-1"], USAGE, "--budget-s"),
    (
        &["run", "stream", "--budget-s", "nan"],
        USAGE,
        "must be above 0",
    ),
    (
        &["run", "stream", "--budget-s", "1e30"],
        USAGE,
        "at most 3600",
    ),
    (&["run", "stream", "--budget-s", "inf"], USAGE, "--budget-s"),
    (&["run", "stream", "--target-ci", "0"], USAGE, "--target-ci"),
    (&["run", "stream", "--target-ci", "2"], USAGE, "at most 1"),
    (&["run", "--device=-1"], USAGE, "--device"),
    // Suites and cases.
    (&["run", "warp-drive"], USAGE, "unknown suite `warp-drive`"),
    (&["run", "--case", "copy:1GiB"], USAGE, "exactly one suite"),
    (
        &["predict", "stream", "--case", "copy:9223372036854775808"],
        USAGE,
        "at most 1024GiB",
    ),
    (
        &["predict", "stream", "--case", "copy:99999999999999999999"],
        USAGE,
        "2^64",
    ),
    (
        &["predict", "stream", "--case", "copy:7"],
        USAGE,
        "multiple of 4",
    ),
    (
        &["predict", "stream", "--case", "copy:-4"],
        USAGE,
        "not a size",
    ),
    (
        &["predict", "stream", "--case", "copy:1e30"],
        USAGE,
        "unknown size unit",
    ),
    (
        &["predict", "attention", "--case", "b=1000000,ctx=131072"],
        USAGE,
        "65535",
    ),
    (
        &["predict", "attention", "--case", "b=4,lens=100:200"],
        USAGE,
        "b=4 but lens= lists 2",
    ),
    (
        &[
            "predict",
            "attention",
            "--case",
            "b=65535,ctx=131072,heads=1048560/65535,d=256",
        ],
        USAGE,
        "far beyond",
    ),
    (
        &["predict", "attention", "--case", "ctx=0"],
        USAGE,
        "context length 0",
    ),
    (
        &["predict", "attention", "--case", "d=100"],
        USAGE,
        "must be a multiple of 8",
    ),
    (
        &["predict", "attention", "--case", "d=120,kv=e4m3"],
        USAGE,
        "the head dim must be a multiple of 16",
    ),
    (
        &["predict", "attention", "--case", "window=-1"],
        USAGE,
        "window",
    ),
    (
        &["predict", "attention", "--case", "softcap=nan"],
        USAGE,
        "softcap",
    ),
    (
        &["predict", "kv_evict", "--case", "policy=snapkv,pool=4"],
        USAGE,
        "must be odd",
    ),
    (
        &["predict", "kv_evict", "--case", "policy=snapkv,obs=0"],
        USAGE,
        "1..=64",
    ),
    (
        &[
            "predict",
            "kv_evict",
            "--case",
            "op=swap-out,blocks=1000000000000",
        ],
        USAGE,
        "far beyond",
    ),
    (
        &["predict", "kv_evict", "--case", "op=teleport"],
        USAGE,
        "teleport",
    ),
    (
        &["predict", "kv_evict", "--case", "b=4,lens=100:200"],
        USAGE,
        "b=4 but lens= lists 2",
    ),
    (
        &[
            "predict",
            "gemm",
            "--case",
            "shape=100000000x100000000x100000000",
        ],
        USAGE,
        "over 2^34 elements",
    ),
    (
        &["predict", "gemm", "--case", "shape=0x16x16"],
        USAGE,
        "positive",
    ),
    (
        &["cases", "gemm", "--case", "fmt=e9m9,shape=16x16x16"],
        USAGE,
        "e9m9",
    ),
    // GPUs and commands.
    (
        &["predict", "--gpu", "voodoo5"],
        USAGE,
        "unknown GPU `voodoo5`",
    ),
    (
        &["run", "--predict-gpu", "voodoo5"],
        USAGE,
        "unknown GPU `voodoo5`",
    ),
    (
        &["compare-gpus", "H100 SXM", "voodoo5"],
        USAGE,
        "unknown GPU `voodoo5`",
    ),
    (&["compare-gpus", "H100 SXM"], USAGE, "NAMES"),
    (&["gpus", "voodoo5"], USAGE, "unknown GPU"),
    (&["frobnicate"], USAGE, "frobnicate"),
    (&["kernels", "--colour"], USAGE, "--colour"),
    // Files: the path and what was being done, exit 1.
    (
        &["plot", "--results", REPO_RESULTS],
        FAILED,
        "no results with metadata",
    ),
    (
        &["plot", "--results", "/nonexistent/results"],
        FAILED,
        "/nonexistent/results",
    ),
    (
        &[
            "predict",
            "--csv",
            "/nonexistent/dir/p.csv",
            "stream",
            "--case",
            "copy:1MiB",
        ],
        FAILED,
        "/nonexistent/dir/p.csv",
    ),
    (
        &["--gpus", "/nonexistent/gpus.toml", "gpus"],
        FAILED,
        "/nonexistent/gpus.toml",
    ),
    (
        &["accuracy", "kv_evict", "--data", "/nonexistent.safetensors"],
        FAILED,
        "nonexistent",
    ),
];

#[test]
fn every_bad_input_is_a_clear_error_with_its_exit_code() {
    assert!(BAD.len() >= 40, "{} bad inputs", BAD.len());
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = Vec::new();
    for &(args, want, fragment) in BAD {
        let (code, text) = roofbench(dir.path(), args);
        if code != want || !text.contains(fragment) {
            wrong.push(format!(
                "roofbench {args:?}: exit {code} (want {want}), message lacks `{fragment}`:\n{text}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn huge_cases_are_predicted_from_their_parameters() {
    // These once allocated what a run would (32 s and 3.2 GB for attention; an aborted 262 GB
    // allocation for kv_evict's block manager) to say "does not fit".
    let dir = tempfile::tempdir().unwrap();
    for suite in ["attention", "kv_evict"] {
        let started = std::time::Instant::now();
        let (code, text) = roofbench(
            dir.path(),
            &["predict", suite, "--case", "b=50000,ctx=131072"],
        );
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("does not fit"), "{text}");
        assert!(
            started.elapsed().as_secs() < 10,
            "{suite}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = roofbench(dir.path(), &["--help"]);
    assert_eq!(code, 0);
    for line in ["Exit codes:", "2  usage error", "3  no usable GPU"] {
        assert!(text.contains(line), "{text}");
    }
}

#[cfg(unix)]
#[test]
fn non_utf8_arguments_are_errors_or_paths_never_panics() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let out = dir.path().join(bad);
    fn args<'a>(v: &[&'a str]) -> Vec<&'a std::ffi::OsStr> {
        v.iter().map(|s| std::ffi::OsStr::new(*s)).collect()
    }
    // A non-UTF-8 suite name: clap's usage error.
    let (code, _) = roofbench_in(dir.path(), &[args(&["predict"]), vec![bad]].concat());
    assert_eq!(code, USAGE);
    // A non-UTF-8 output folder is just a path: the report and its JSON are written.
    let cmd = [
        args(&["accuracy", "gemm", "--shape", "1x16x16", "--out"]),
        vec![out.as_os_str()],
    ]
    .concat();
    let (code, text) = roofbench_in(dir.path(), &cmd);
    assert_eq!(code, 0, "{text}");
    let json = std::fs::read_to_string(out.join("accuracy/gemm.json")).unwrap();
    assert!(json.contains("\"command\""), "{json}");
}

#[test]
fn a_capture_with_nan_is_rejected_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    std::fs::create_dir(&capture).unwrap();
    let (len, heads, dim) = (8, 1, 16);
    for name in ["q", "k", "v"] {
        let mut values = vec![0.5f32; len * heads * dim];
        if name == "k" {
            values[37] = f32::NAN;
        }
        write_npy(
            &capture.join(format!("{name}.npy")),
            &[len, heads, dim],
            &values,
        );
    }
    let (code, text) = roofbench(
        dir.path(),
        &["accuracy", "kv_evict", "--data", capture.to_str().unwrap()],
    );
    assert_eq!(code, FAILED, "{text}");
    assert!(
        text.contains("capture") && text.contains("tensor `k`") && text.contains("NaN"),
        "{text}"
    );
}

/// A little-endian f32 `.npy` (format 1.0).
fn write_npy(path: &Path, shape: &[usize], values: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn write_failures_name_the_file_not_rust_debug_text() {
    let dir = tempfile::tempdir().unwrap();
    // The plot's path is taken by a folder: the write fails.
    std::fs::create_dir_all(dir.path().join("out/accuracy/gemm-sqnr.svg")).unwrap();
    let (code, text) = roofbench(
        dir.path(),
        &["accuracy", "gemm", "--shape", "1x16x16", "--out", "out"],
    );
    assert_eq!(code, FAILED, "{text}");
    assert!(
        text.contains("writing the plot out/accuracy/gemm-sqnr.svg") && !text.contains("Os {"),
        "{text}"
    );
    let svg = dir.path().join("cmp.svg");
    std::fs::create_dir(&svg).unwrap();
    let (code, text) = roofbench(
        dir.path(),
        &[
            "compare-gpus",
            "H100 SXM",
            "B200",
            "--quick",
            "--svg",
            "cmp.svg",
        ],
    );
    assert_eq!(code, FAILED, "{text}");
    assert!(
        text.contains("writing the plot cmp.svg") && !text.contains("BackendError"),
        "{text}"
    );
}

#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    // `roofbench cases | head -c 10`: far more output than a pipe buffers.
    let mut child = Command::new(env!("CARGO_BIN_EXE_roofbench"))
        .arg("cases")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.code() == Some(0) || out.status.signal() == Some(13),
        "{:?}: {stderr}",
        out.status
    );
}

/// Commands arbitrary arguments are appended to: the ones that cannot measure or run long
/// whatever follows (a GPU machine would run `run` and `verify` for real, so they are left out).
const PREFIXES: &[&[&str]] = &[
    &[],
    &["predict"],
    &["predict", "stream", "--case"],
    &["predict", "attention", "--case"],
    &["predict", "kv_evict", "--case"],
    &["predict", "gemm", "--case"],
    &["cases", "kv_evict", "--case"],
    &["suites"],
    &["gpus"],
    &["compare-gpus", "H100 SXM"],
    &["accuracy", "gemm", "--shape", "1x16x16", "--quick"],
    &[
        "accuracy", "kv_evict", "--len", "64", "--policy", "recent", "--budget", "10%",
    ],
];

fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        // Option-like and case-like text.
        "--?[a-z][a-z0-9-]{0,12}",
        "[a-z]{1,6}=[-0-9a-z.:%/]{0,12}(,[a-z]{1,6}=[-0-9a-z.:%/]{0,12}){0,3}",
        "[-+]?[0-9]{1,25}(\\.[0-9]{0,4})?(e[-+]?[0-9]{1,3})?",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 240, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_arguments_never_crash(
        prefix in 0..PREFIXES.len(),
        extra in proptest::collection::vec(argument(), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<&str> = PREFIXES[prefix].to_vec();
        args.extend(extra.iter().map(String::as_str));
        // The assertions (no panic, no abort, no signal) are in `roofbench`.
        let (code, _) = roofbench(dir.path(), &args);
        prop_assert!([0, FAILED, USAGE, 3].contains(&code), "exit {}", code);
    }
}
