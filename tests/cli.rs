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
fn devices_without_gpu_exits_2_with_a_reason() {
    if !no_gpu_here() {
        return;
    }
    let (code, text) = roofbench(&["devices"]);
    assert_eq!(code, 2, "{text}");
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
    let (code, _) = roofbench(&["run", "--quick", "--require-gpu"]);
    assert_eq!(code, 2);
}

#[test]
fn verify_without_gpu_fails() {
    if !no_gpu_here() {
        return;
    }
    let (code, text) = roofbench(&["verify", "stream", "--case", "copy:1MiB"]);
    assert_eq!(code, 2, "{text}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let (code, text) = roofbench(&["run", "warp-drive"]);
    assert_eq!(code, 1);
    assert!(text.contains("unknown suite `warp-drive`"), "{text}");
    let (code, text) = roofbench(&["verify", "stream", "--case", "copy:7"]);
    assert_eq!(code, 1);
    assert!(
        text.contains("multiple of 4") && text.contains("OP:BYTES_PER_ARRAY"),
        "{text}"
    );
    let (code, text) = roofbench(&["run", "--case", "copy:1GiB"]);
    assert_eq!(code, 1);
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
