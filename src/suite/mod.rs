//! What a benchmark suite is, and the runner that measures and verifies any suite.
//!
//! A [`Suite`] lists [`Case`]s (its built-in grid, or cases parsed from the command line). A case
//! declares its minimum work and prepares device inputs; the [`Prepared`] case offers
//! [`Variant`]s (our kernels and vendor providers), each carrying its name, provider, launch and
//! verification against a CPU reference. The runner owns timing, verification order, results and progress, so a suite
//! contains only its problem, its kernels and its reference.

pub mod accuracy;
mod bench;
mod runner;
pub mod size;
pub mod spec;

use anyhow::Result;

use crate::gpu::{DeviceInfo, Gpu, GpuError, GpuResult};
use crate::measure::Mode;
pub use crate::report::Provider;
use crate::roofline::Workload;

pub use crate::report::{VerifyOutcome, VerifyRow};
pub use accuracy::AccuracyReport;
pub use bench::bench_cases;
pub use runner::{run, verify, RunOptions};

/// A mistake in what the user asked for (an unknown suite or report, a bad case or option value),
/// as opposed to a check that failed or a file that could not be written: the binary exits with
/// [`EXIT_USAGE`] for these, the code clap uses for its own usage errors, so a script can tell a
/// typo from a failed run.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct UsageError(pub anyhow::Error);

/// Marks an error as the user's input being wrong (see [`UsageError`]).
pub fn usage(error: impl Into<anyhow::Error>) -> anyhow::Error {
    UsageError(error.into()).into()
}

/// Whether anything in `error`'s chain is a [`UsageError`].
pub fn is_usage(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<UsageError>())
}

/// The binary's exit codes (README "Exit codes", `roofbench --help`).
pub const EXIT_CHECK_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
/// No usable GPU (no driver, no device, or no kernels in the binary) where one is required.
pub const EXIT_NO_GPU: u8 = 3;

/// A suite and the cases to run from it.
pub type Plan<'a> = (&'a dyn Suite, Vec<Box<dyn Case>>);

pub trait Suite: Sync {
    fn name(&self) -> &'static str;
    fn about(&self) -> &'static str;
    /// Every embedded kernel this suite may launch (checked against the build in the tests).
    fn kernel_names(&self) -> Vec<String>;
    /// The keys of a user-given case for `--case`.
    fn grammar(&self) -> spec::Grammar;
    /// Syntax of a user-given case for `--case`, with an example: generated from [`Self::grammar`].
    fn case_syntax(&self) -> String {
        self.grammar().syntax()
    }
    /// The built-in grid (`quick`: a small representative subset).
    fn default_cases(&self, quick: bool) -> Vec<Box<dyn Case>>;
    /// A user-given case; an unsupported one is an error that says what is supported.
    fn parse_case(&self, spec: &str) -> Result<Box<dyn Case>>;
    /// What `roofbench verify` checks by default: the quick grid plus awkward sizes (odd element
    /// counts, tails shorter than a vector) that the timing grid does not need.
    fn verify_cases(&self) -> Vec<Box<dyn Case>> {
        self.default_cases(true)
    }
    /// The suite's goals, as ratios of the rows of one run (empty where the run lacks the rows
    /// a goal compares).
    fn goals(&self, _rows: &[crate::report::ResultRow]) -> Vec<Goal> {
        Vec::new()
    }
    /// Fills columns that compare rows of one run (e.g. speedups over a baseline case); called
    /// once the suite's cases are measured. Returns whether it changed anything.
    fn annotate(&self, _rows: &mut [crate::report::ResultRow]) -> bool {
        false
    }
}

/// One goal of a suite, evaluated on measured rows of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Goal {
    /// What is compared, e.g. `evict/h2o-25% vs one decode step`.
    pub name: String,
    /// The measured ratio or percentage.
    pub value: f64,
    /// The target, e.g. `<= 0.10`.
    pub target: String,
    pub met: bool,
    /// The rows it comes from.
    pub detail: String,
}

impl Goal {
    pub fn new(name: String, value: f64, target: &str, met: bool, detail: String) -> Goal {
        Goal {
            name,
            value,
            target: target.into(),
            met,
            detail,
        }
    }
}

pub trait Case {
    /// Short unique name within the suite, e.g. `copy/1GiB`.
    fn name(&self) -> String;
    fn dtype(&self) -> String;
    /// Every parameter, `key=value` separated by spaces.
    fn params(&self) -> String;
    /// Minimum bytes and FLOPs the operation needs.
    fn workload(&self) -> Workload;
    /// Device memory the prepared case allocates.
    fn device_bytes(&self) -> u64;
    /// Modes to time when the user names none.
    fn default_modes(&self, device: &DeviceInfo) -> Vec<Mode>;
    /// Whether a hot measurement of this case keeps its working set in L2.
    fn l2_resident(&self, device: &DeviceInfo) -> bool {
        self.device_bytes() * 2 <= device.l2_bytes
    }
    /// The case for other tools (e.g. scripts/baselines/): name, params, minimum bytes and FLOPs;
    /// suites add structured fields.
    fn describe(&self) -> serde_json::Value {
        let w = self.workload();
        serde_json::json!({ "name": self.name(), "dtype": self.dtype(), "params": self.params(), "bytes": w.bytes, "flops": w.flops })
    }
    /// Tokens one launch produces (decode suites), for a tokens/s column.
    fn tokens_per_launch(&self) -> Option<u64> {
        None
    }
    /// Allocates and fills inputs with fresh random data.
    fn prepare(&self, gpu: &Gpu) -> Result<Box<dyn Prepared>>;
}

/// What the runner and the tables show of a variant.
#[derive(Debug, Clone)]
pub struct VariantInfo {
    /// The kernel (or library call) as result rows name it.
    pub kernel: String,
    pub provider: Provider,
    /// Why it cannot run here (e.g. needs sm_90a), if so.
    pub unavailable: Option<String>,
}

/// Enqueues one execution of a variant on the device stream (no synchronisation).
pub type LaunchFn<S> = Box<dyn FnMut(&mut S, &Gpu) -> GpuResult<()>>;
/// Poisons the outputs, runs the variant once through the launch it is given, and compares with
/// the CPU reference.
pub type VerifyFn<S> = Box<dyn FnMut(&mut S, &Gpu, &mut LaunchFn<S>) -> Result<Check>>;

/// One way to compute a prepared case whose inputs, outputs and reference data are `S`: its
/// name and provider, and how it launches and verifies. An unavailable variant has neither.
pub struct Variant<S> {
    info: VariantInfo,
    run: Option<(LaunchFn<S>, VerifyFn<S>)>,
}

impl<S> Variant<S> {
    pub fn new(
        kernel: impl Into<String>,
        provider: Provider,
        launch: impl FnMut(&mut S, &Gpu) -> GpuResult<()> + 'static,
        verify: impl FnMut(&mut S, &Gpu, &mut LaunchFn<S>) -> Result<Check> + 'static,
    ) -> Variant<S> {
        Variant {
            info: VariantInfo {
                kernel: kernel.into(),
                provider,
                unavailable: None,
            },
            run: Some((Box::new(launch), Box::new(verify))),
        }
    }

    /// A variant that cannot run here, and why (a row says so instead of a measurement).
    pub fn unavailable(kernel: impl Into<String>, provider: Provider, why: String) -> Variant<S> {
        Variant {
            info: VariantInfo {
                kernel: kernel.into(),
                provider,
                unavailable: Some(why),
            },
            run: None,
        }
    }

    pub fn info(&self) -> &VariantInfo {
        &self.info
    }
}

/// A prepared case: the state its variants share, and the variants. Every suite's cases prepare
/// into one of these; the runner sees it as a [`Prepared`].
pub struct Variants<S> {
    state: S,
    variants: Vec<Variant<S>>,
}

impl<S> Variants<S> {
    pub fn new(state: S, variants: Vec<Variant<S>>) -> Variants<S> {
        Variants { state, variants }
    }
}

/// The result of comparing one GPU output with the CPU reference.
#[derive(Debug, Clone)]
pub struct Check {
    pub passed: bool,
    /// Largest |gpu - reference| / |reference| over the output (0 for exact operations).
    pub max_rel_err: f64,
    /// What was compared, and the first mismatch if any.
    pub detail: String,
    /// For quantized operations: the output's accuracy against full-precision references.
    pub accuracy: Option<AccuracyDelta>,
}

/// What a quantized kernel's output loses, measured on the verified elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccuracyDelta {
    /// SQNR (dB) and relative Frobenius error against the f64 GEMM of the original (BF16)
    /// inputs: quantization and kernel together.
    pub sqnr_db: f64,
    pub rel_fro: f64,
    /// The same against the f64 GEMM of the dequantized inputs: the kernel's own error.
    pub kernel_sqnr_db: f64,
    pub kernel_rel_fro: f64,
}

/// What the runner sees of a prepared case: its variants, each launched and verified by its
/// position in [`Prepared::variants`].
pub trait Prepared {
    fn variants(&self) -> Vec<VariantInfo>;
    /// Enqueues one execution of `variant` on the device stream (no synchronisation).
    fn launch(&mut self, gpu: &Gpu, variant: usize) -> GpuResult<()>;
    /// Poisons the output, runs `variant` once and compares with the CPU reference.
    fn verify(&mut self, gpu: &Gpu, variant: usize) -> Result<Check>;
}

impl<S> Variants<S> {
    /// The launch and verify of a variant that can run here; the error says why it cannot.
    fn runnable(
        &mut self,
        variant: usize,
    ) -> Result<(&mut S, &mut LaunchFn<S>, &mut VerifyFn<S>), String> {
        let v = self
            .variants
            .get_mut(variant)
            .ok_or_else(|| format!("no variant {variant}"))?;
        match &mut v.run {
            Some((launch, verify)) => Ok((&mut self.state, launch, verify)),
            None => Err(format!(
                "{} cannot run here: {}",
                v.info.kernel,
                v.info.unavailable.as_deref().unwrap_or("unavailable")
            )),
        }
    }
}

impl<S> Prepared for Variants<S> {
    fn variants(&self) -> Vec<VariantInfo> {
        self.variants.iter().map(|v| v.info.clone()).collect()
    }

    fn launch(&mut self, gpu: &Gpu, variant: usize) -> GpuResult<()> {
        let (state, launch, _) = self.runnable(variant).map_err(GpuError::InvalidArgument)?;
        launch(state, gpu)
    }

    fn verify(&mut self, gpu: &Gpu, variant: usize) -> Result<Check> {
        let (state, launch, verify) = self.runnable(variant).map_err(anyhow::Error::msg)?;
        verify(state, gpu, launch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_carry_their_names_and_availability_in_order() {
        let prepared = Variants::new(
            0u32,
            vec![
                Variant::new(
                    "ours",
                    Provider::Roofbench,
                    |_: &mut u32, _: &Gpu| Ok(()),
                    |_, _, _| unreachable!("not verified here: no GPU"),
                ),
                Variant::unavailable("cublasLt", Provider::CublasLt, "needs sm_90a".into()),
            ],
        );
        let infos = Prepared::variants(&prepared);
        let seen: Vec<_> = infos
            .iter()
            .map(|v| (v.kernel.as_str(), v.provider, v.unavailable.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                ("ours", Provider::Roofbench, None),
                ("cublasLt", Provider::CublasLt, Some("needs sm_90a")),
            ]
        );
    }
}
