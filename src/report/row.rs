//! The rows roofbench reports: a measured [`ResultRow`] per (suite, case, kernel, provider, mode),
//! a [`VerifyRow`] per check and a [`Prediction`] per predicted case. The CSV columns of a result
//! row are its fields in this order; `results/README.md` documents them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::measure::Mode;

/// Who provides a variant's kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

    /// `-` where there is none (a case that could not be prepared has no variant).
    pub fn or_dash(provider: Option<Provider>) -> &'static str {
        provider.map_or("-", Provider::as_str)
    }
}

/// What became of a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Verified and timed.
    Ok,
    /// Verification failed (the row is still timed).
    Failed,
    /// Not timed; `note` says why. A row is skipped until it is measured.
    #[default]
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// An optional enum column holds the string it always held where there is no value (`-` for
/// provider, empty for mode), so the files read the same and old files still load.
macro_rules! optional_column {
    ($module:ident, $none:literal) => {
        mod $module {
            use super::*;

            pub fn serialize<T: Serialize, S: Serializer>(
                value: &Option<T>,
                s: S,
            ) -> Result<S::Ok, S::Error> {
                match value {
                    Some(v) => v.serialize(s),
                    None => s.serialize_str($none),
                }
            }

            pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
                d: D,
            ) -> Result<Option<T>, D::Error> {
                use serde::de::{Error, IntoDeserializer};
                let text = String::deserialize(d)?;
                if text == $none {
                    return Ok(None);
                }
                T::deserialize(text.into_deserializer())
                    .map(Some)
                    .map_err(|e: serde::de::value::Error| D::Error::custom(e))
            }
        }
    };
}
optional_column!(dash_if_none, "-");
optional_column!(empty_if_none, "");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    pub suite: String,
    pub case: String,
    pub kernel: String,
    /// `roofbench` (our kernels), `driver` (cuMemcpy/cuMemset), `cublaslt`; `-` without a variant.
    #[serde(with = "dash_if_none")]
    pub provider: Option<Provider>,
    pub dtype: String,
    pub params: String,
    /// `cold`, `hot` or `graph` (see `measure::Mode`); empty when not timed.
    #[serde(with = "empty_if_none")]
    pub mode: Option<Mode>,
    /// `ok`, `failed` (verification failed; still timed) or `skipped` (see `note`).
    pub status: Status,
    pub samples: usize,
    pub median_us: Option<f64>,
    pub p10_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub mean_us: Option<f64>,
    pub stdev_us: Option<f64>,
    /// Relative half-width of the 95% confidence interval of the median.
    pub rel_ci: Option<f64>,
    pub launches_per_sample: usize,
    /// Minimum bytes / FLOPs the operation needs (declared by the suite, not what the kernel moved).
    pub bytes: u64,
    pub flops: u64,
    pub gbps: Option<f64>,
    pub tflops: Option<f64>,
    /// The binding limit (`dram_bw`, ...), or why none applies.
    pub ceiling: String,
    /// `spec`, `user`, `derived` or `measured:<calibration>`.
    pub ceiling_source: String,
    pub ceiling_value: Option<f64>,
    pub pct_of_ceiling: Option<f64>,
    /// The roofline bound (fastest possible time) against that ceiling, µs.
    pub bound_us: Option<f64>,
    /// Percent of the bound computed from the spec sheet (or derived) figures alone.
    pub pct_of_spec: Option<f64>,
    /// GB/s as a percentage of the measured device-to-device copy bandwidth (calibrated GPUs).
    pub pct_of_copy: Option<f64>,
    /// Tokens per second for decode suites (tokens one launch produces / median).
    pub tokens_per_s: Option<f64>,
    pub verified: bool,
    pub max_rel_err: Option<f64>,
    /// Quantized outputs: SQNR (dB) against the f64 result of the original full-precision
    /// inputs (what quantization costs), and against the dequantized inputs (the kernel's own
    /// error), on the verified elements.
    pub sqnr_db: Option<f64>,
    pub kernel_sqnr_db: Option<f64>,
    /// GEMMs: the BF16 GEMM of the same shape in the same run (our kernel; cuBLASLt's) divided
    /// by this row's median: the speedup a quantized format buys.
    pub speedup_vs_bf16: Option<f64>,
    pub speedup_vs_cublaslt_bf16: Option<f64>,
    /// Set when the SM clock dropped or a throttle reason was active during sampling.
    pub clock_warning: String,
    pub gpu: String,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub driver: String,
    pub cuda: String,
    pub commit: String,
    pub timestamp: String,
    pub note: String,
}

/// The outcome of one correctness check (`roofbench verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    Pass,
    Fail,
    Skipped,
}

/// One line of `roofbench verify`: a (case, kernel) and its check.
#[derive(Debug, Clone)]
pub struct VerifyRow {
    pub suite: String,
    pub case: String,
    pub kernel: String,
    /// None: the case could not be prepared.
    pub provider: Option<Provider>,
    pub outcome: VerifyOutcome,
    pub max_rel_err: Option<f64>,
    pub detail: String,
}

/// The label every prediction carries.
pub const PREDICTED: &str = "predicted";

/// One case's *predicted* roofline bound on a GPU of the spec table (`roofbench predict`, and
/// the rows of `compare-gpus --format csv`): one rectangular row, numbers in numeric cells,
/// empty where there is none (`note` says why).
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub kind: &'static str,
    pub gpu: String,
    pub suite: String,
    pub case: String,
    pub dtype: String,
    pub bytes: u64,
    pub flops: u64,
    /// FLOPs per byte.
    pub intensity: f64,
    /// Roofline-bound time (cold: DRAM roof), µs.
    pub bound_us: Option<f64>,
    pub gbps: Option<f64>,
    pub tflops: Option<f64>,
    /// The term that sets the bound: `bytes`, `flops` or `floor` (launch + one DRAM round trip).
    pub binds: String,
    /// The binding limit (`dram_bw`, `bf16_peak`, `floor`, ...), its value (GB/s, TFLOPS or µs)
    /// and where the value comes from.
    pub limit: String,
    pub limit_value: Option<f64>,
    pub limit_source: String,
    /// The binding value is marked unconfirmed in the spec table (`roofbench gpus NAME`).
    pub unconfirmed: bool,
    pub ridge: Option<f64>,
    /// `compare-gpus`: the GPU speedups are relative to, and this row's speedup over it
    /// (its bound / this bound).
    pub base: String,
    pub speedup_vs_base: Option<f64>,
    pub note: String,
}
