//! Errors of the GPU runtime: every way a GPU command can fail without a panic.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GpuError {
    #[error(
        "no CUDA driver found (libcuda could not be loaded): this machine cannot run GPU work"
    )]
    NoDriver,
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    #[error(
        "this binary was built without GPU kernels ({0}); install nvcc with \
         scripts/install-cuda.sh and rebuild"
    )]
    BuiltWithoutKernels(&'static str),
    #[error("cold timing needs the harness's L2 flush kernel, and it cannot run: {0}")]
    NoL2Flush(Box<GpuError>),
    #[error("no embedded kernel named `{0}`")]
    UnknownKernel(String),
    #[error("kernel `{kernel}` is unavailable on {device} (sm_{major}{minor}): it is built for {built_for}")]
    KernelUnavailable {
        kernel: String,
        device: String,
        major: u32,
        minor: u32,
        built_for: String,
    },
    #[error("not enough GPU memory: {what} needs {needed} bytes, {free} bytes free")]
    OutOfMemory {
        what: String,
        needed: u64,
        free: u64,
    },
    #[error("launch of `{kernel}` failed: {source}")]
    Launch {
        kernel: String,
        #[source]
        source: cudarc::driver::DriverError,
    },
    #[error(
        "cuBLASLt is not available (libcublasLt could not be loaded): install the CUDA \
         toolkit's cuBLAS libraries to measure vendor GEMM ceilings"
    )]
    NoCublasLt,
    #[error("cuBLASLt error in {call}: {source}")]
    Cublas {
        call: &'static str,
        #[source]
        source: cudarc::cublaslt::result::CublasError,
    },
    #[error("cuBLASLt cannot run a {precision} GEMM with m={m} n={n} k={k}: {reason}")]
    LtUnsupported {
        precision: &'static str,
        m: usize,
        n: usize,
        k: usize,
        reason: String,
    },
    #[error("invalid cuBLASLt GEMM argument: {0}")]
    LtArgument(String),
    /// Arguments a launch or a driver object (e.g. a TMA tensor map) cannot be built from.
    #[error("invalid GPU argument: {0}")]
    InvalidArgument(String),
    #[error("CUDA driver error in {call}: {source}")]
    Driver {
        call: &'static str,
        #[source]
        source: cudarc::driver::DriverError,
    },
}

pub type GpuResult<T> = Result<T, GpuError>;

/// Attaches the name of the failing call to a driver error.
pub(crate) trait DriverContext<T> {
    fn ctx(self, call: &'static str) -> GpuResult<T>;
}

impl<T> DriverContext<T> for Result<T, cudarc::driver::DriverError> {
    fn ctx(self, call: &'static str) -> GpuResult<T> {
        self.map_err(|source| GpuError::Driver { call, source })
    }
}
