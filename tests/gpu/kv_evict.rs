//! GPU tests of the eviction kernels against their CPU references (run with `-- --ignored`):
//! scores within the f32 bound, selections and compactions exact, block swaps and copies byte for
//! byte, on fresh random data with poisoned outputs; plus graph capture of a whole eviction step.

use super::common;

use roofbench::kv_evict::{EvictConfig, KvEvictSuite};
use roofbench::suite::Suite;

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_eviction_kernel_matches_the_cpu_reference() {
    common::assert_all_verify(&common::gpu(), &KvEvictSuite, KvEvictSuite.verify_cases());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn an_eviction_step_is_graph_capturable_and_repeatable() {
    let case = EvictConfig::parse("op=evict,policy=snapkv,obs=16,b=4,ctx=3000,heads=32/8").unwrap();
    common::assert_graph_replays(&common::gpu(), &case);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn swaps_replay_from_a_graph() {
    let case = EvictConfig::parse("op=swap-out,blocks=64").unwrap();
    common::assert_graph_replays(&common::gpu(), &case);
}
