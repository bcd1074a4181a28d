//! GPU tests of the GEMM kernels against their f64 CPU references (run with `-- --ignored`):
//! every path on odd shapes, every input kind and scheme, NaN-poisoned outputs with a guard band,
//! cuBLASLt beside them; the quantizers bit for bit; graph capture of a GEMM.

use super::common;

use roofbench::gemm::{GemmConfig, GemmSuite};
use roofbench::suite::Suite;

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_gemm_path_matches_the_cpu_reference() {
    common::assert_none_fail(&common::gpu(), &GemmSuite, GemmSuite.verify_cases());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_quantized_gemm_replays_from_a_graph() {
    // Variant 0 is our kernel on the path roofbench picks for this GPU.
    let case = GemmConfig::parse("shape=256x384x1024,fmt=e4m3,scale=block128,bias=1").unwrap();
    common::assert_graph_replays(&common::gpu(), &case);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_decode_gemm_replays_from_a_graph() {
    let case = GemmConfig::parse("shape=16x4096x4096,fmt=int8,act=bf16,scale=token").unwrap();
    common::assert_graph_replays(&common::gpu(), &case);
}
