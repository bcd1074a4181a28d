//! The commands of the `roofbench` binary, one file each; `main.rs` only parses arguments and
//! calls `<command>::run`. Everything they compute lives in the library.

pub mod accuracy;
pub mod calibrate;
pub mod devices;
pub mod gpus;
pub mod kernels;
pub mod plot;
pub mod predict;
pub mod run;
pub mod selection;
pub mod suites;
pub mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use roofbench::gpu::{self, Gpu, GpuError};
use roofbench::roofline::{Catalog, GpuSpec};
use roofbench::suite::usage;

pub use roofbench::suite::EXIT_NO_GPU;

/// The GPU predictions are shown for when none is named (and the main job shows without a GPU).
pub const DEFAULT_PREDICT_GPU: &str = "H100 SXM";

/// What every command may need from the global options.
pub struct Context {
    /// `--gpus FILE` (or ROOFBENCH_GPUS): GPUs added to or overriding the spec table.
    pub gpus_file: Option<PathBuf>,
}

impl Context {
    /// The spec table with the user's file applied.
    pub fn catalog(&self) -> Result<Catalog> {
        Catalog::load(self.gpus_file.as_deref())
    }
}

/// A clap value parser for a finite real number in `min..=max` (`min` itself excluded when
/// `open_min`): NaN, infinities and out-of-range values are usage errors when parsing, before any
/// of them reaches a `Duration` or a stop rule.
pub fn real_in(
    min: f64,
    open_min: bool,
    max: f64,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |text| {
        let v: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a number"))?;
        let low_ok = if open_min { v > min } else { v >= min };
        if v.is_finite() && low_ok && v <= max {
            Ok(v)
        } else {
            let low = if open_min { "above" } else { "at least" };
            Err(format!("{text} must be {low} {min} and at most {max}"))
        }
    }
}

/// The spec of a GPU the user named (an unknown name is a usage error listing the known ones).
pub fn named_gpu<'a>(catalog: &'a Catalog, name: &str) -> Result<&'a GpuSpec> {
    catalog.get(name).map_err(usage)
}

/// Opens a device, refusing early when the binary has no kernels.
pub fn open_gpu(ordinal: usize) -> Result<Gpu, GpuError> {
    if let Some(why) = gpu::embedded::BUILT_WITHOUT_KERNELS {
        return Err(GpuError::BuiltWithoutKernels(why));
    }
    Gpu::open(ordinal)
}

/// Opens a device for a command that cannot work without one: the reason and [`EXIT_NO_GPU`]
/// when there is none.
pub fn require_gpu(ordinal: usize) -> Result<Gpu, ExitCode> {
    open_gpu(ordinal).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_NO_GPU)
    })
}

pub fn print_device_line(gpu: &Gpu) {
    let i = gpu.info();
    eprintln!(
        "device {}: {} (sm_{}{}, {} SMs, {} MiB L2, driver {}, CUDA {})",
        i.ordinal,
        i.name,
        i.compute_capability.0,
        i.compute_capability.1,
        i.sms,
        i.l2_bytes >> 20,
        i.driver,
        i.cuda_driver_api
    );
}

/// Success, or a failed check when `failed` checks failed (after saying so).
pub fn exit_for_failures(failed: usize, what: &str) -> ExitCode {
    if failed > 0 {
        eprintln!("{failed} {what}");
        ExitCode::from(roofbench::suite::EXIT_CHECK_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
