//! The checks `build.rs` applies to ptxas reports (`build/ptxas_check.rs`), on captured lines.

#[path = "../build/ptxas_check.rs"]
mod ptxas_check;

use ptxas_check::serialized_wgmma;

/// Lines as ptxas 12.x prints them (C7515 and C7511 from public issue reports, e.g.
/// NVIDIA/cutlass#1840, sgl-project/sglang#6453): `info`, not `warning`.
const C7515: &str = "ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async \
    instructions are serialized due to non wgmma instructions defining accumulator registers of \
    a wgmma between start and end of the pipeline stage in the function 'gemm_wgmma_e4m3'";
const C7511: &str = "ptxas info    : (C7511) Potential Performance Loss: wgmma.mma_async \
    instructions are serialized due to insufficient register resources for the wgmma pipeline \
    in the function 'gemm_wgmma_bf16'";

/// A clean report of this repository's wgmma module (target/kernel-cache/gemm__wgmma-*.ptxas.txt).
const CLEAN: &str = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'gemm_wgmma_s8_block128' for 'sm_90a'
ptxas info    : Function properties for gemm_wgmma_s8_block128
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 168 registers, used 16 barriers
ptxas info    : Compile time = 690.691 ms
";

#[test]
fn a_serialized_wgmma_is_caught_though_ptxas_calls_it_info() {
    let report = format!("{CLEAN}{C7515}\n{CLEAN}");
    assert_eq!(serialized_wgmma(&report), [C7515]);
    assert!(
        !C7515.contains("warning"),
        "what -Werror all-warnings misses"
    );
    let both = format!("{C7511}\n{CLEAN}\n  {C7515}  \n");
    assert_eq!(serialized_wgmma(&both), [C7511, C7515]);
    // Case does not matter, nor the code or the wording after "serialized".
    assert_eq!(
        serialized_wgmma("ptxas WARNING: WGMMA.MMA_ASYNC instructions are SERIALIZED due to x")
            .len(),
        1
    );
}

#[test]
fn a_clean_report_passes() {
    assert!(serialized_wgmma(CLEAN).is_empty());
    assert!(serialized_wgmma("").is_empty());
    // The words apart do not trigger it.
    assert!(serialized_wgmma("wgmma fence\nserialized output\n").is_empty());
}
