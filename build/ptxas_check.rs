//! Checks of `ptxas -v` output that `build.rs` applies to every compiled module, kept in their
//! own file so that `tests/build_checks.rs` can test them on captured lines (a build script's
//! own tests never run).
//!
//! ptxas reports a serialized wgmma pipeline as *info*, not a warning, so `-Werror all-warnings`
//! does not catch it:
//!
//! ```text
//! ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async instructions are
//! serialized due to non wgmma instructions defining accumulator registers of a wgmma between
//! start and end of the pipeline stage in the function 'gemm_wgmma_e4m3'
//! ```
//!
//! (one line in the report). Serialization makes every wgmma wait for the previous one: a
//! several-fold slowdown that nothing else in the build or the run would show.

/// The report lines saying ptxas serialized wgmma instructions (or any other "Potential
/// Performance Loss", the C75xx family ptxas uses for them), trimmed.
pub fn serialized_wgmma(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter(|line| {
            let lower = line.to_ascii_lowercase();
            lower.contains("potential performance loss")
                || (lower.contains("wgmma") && lower.contains("serialized"))
        })
        .map(str::trim)
        .collect()
}
