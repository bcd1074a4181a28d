//! `cargo bench --bench kv_evict`: eviction steps (score, select, compact, swaps) on the quick
//! grid, timed with CUDA events. Without a GPU it says why and exits 0. `roofbench run kv_evict`
//! is the full, cold, results-writing version.

use roofbench::kv_evict::KvEvictSuite;
use roofbench::suite::Suite;

fn main() {
    roofbench::suite::bench_cases("kv_evict", KvEvictSuite.default_cases(true));
}
