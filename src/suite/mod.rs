//! What a benchmark suite is, and the runner that measures and verifies any suite.
//!
//! A [`Suite`] lists [`Case`]s (its built-in grid, or cases parsed from the command line). A case
//! declares its minimum work and prepares device inputs; the [`Prepared`] case offers
//! [`Variant`]s (our kernels and vendor providers) that can each be launched and verified against
//! a CPU reference. The runner owns timing, verification order, results and progress, so a suite
//! contains only its problem, its kernels and its reference.

mod runner;
pub mod size;
pub mod spec;

use anyhow::Result;

use crate::gpu::{DeviceInfo, Gpu, GpuResult};
use crate::measure::{Mode, Workload};

pub use runner::{run, verify, RunOptions, VerifyOutcome, VerifyRow};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// A roofbench kernel.
    Roofbench,
    /// The CUDA driver's own operation (cuMemcpyDtoDAsync, cuMemsetD32Async).
    Driver,
    /// NVIDIA's cuBLASLt library.
    CublasLt,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Roofbench => "roofbench",
            Provider::Driver => "driver",
            Provider::CublasLt => "cublaslt",
        }
    }
}

/// One way to compute a prepared case.
#[derive(Debug, Clone)]
pub struct Variant {
    pub kernel: String,
    pub provider: Provider,
    /// Why it cannot run here (e.g. needs sm_90a), if so.
    pub unavailable: Option<String>,
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

pub trait Prepared {
    fn variants(&self) -> &[Variant];
    /// Enqueues one execution of `variant` on the device stream (no synchronisation).
    fn launch(&mut self, gpu: &Gpu, variant: usize) -> GpuResult<()>;
    /// Poisons the output, runs `variant` once and compares with the CPU reference.
    fn verify(&mut self, gpu: &Gpu, variant: usize) -> Result<Check>;
}
