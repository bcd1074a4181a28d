//! `cargo bench --bench attention`: paged decode attention (decode + merge) and the append
//! kernel on the quick grid, timed with CUDA events. Without a GPU it says why and exits 0.
//! `roofbench run attention` is the full, cold, results-writing version.

use roofbench::attention::AttentionSuite;
use roofbench::suite::Suite;

fn main() {
    roofbench::suite::bench_cases("attention", AttentionSuite.default_cases(true));
}
