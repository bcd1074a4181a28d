//! GPU tests of paged decode attention against the f64 CPU reference (run with `-- --ignored`):
//! every axis of the kernels on fresh random data and on index-revealing data, NaN-poisoned
//! outputs, plus graph capture of the decode + merge pair.

use super::common;

use roofbench::attention::{AttentionConfig, AttentionSuite};
use roofbench::suite::Suite;

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_attention_kernel_matches_the_cpu_reference() {
    common::assert_all_verify(
        &common::gpu(),
        &AttentionSuite,
        AttentionSuite.verify_cases(),
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn decode_is_graph_capturable_and_repeatable() {
    // The same inputs through a captured graph give the same, verified result.
    let case = AttentionConfig::parse("b=4,ctx=3000,heads=32/8,d=128,splits=5").unwrap();
    common::assert_graph_replays(&common::gpu(), &case);
}
