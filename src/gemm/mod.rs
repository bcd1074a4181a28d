//! Quantized GEMM (issue 7): `Y[M,N] = X[M,K] · W[N,K]ᵀ` with FP8 (E4M3, E5M2) or INT8 inputs
//! and BF16 output, as in transformer linear layers.
//!
//! - [`quant`]: the formats, the scaling schemes (per-tensor; per-token × per-channel; 1×128
//!   activation and 128×128 weight blocks) and the CPU quantizer, whose arithmetic the GPU one
//!   reproduces bit for bit; [`quant::gpu`], the launches of `kernels/gemm/quantize.cu` (BF16 in,
//!   codes and f32 scales out); `quant/case.rs`, a quantizer timed as a case of the suite;
//! - [`paths`]: the GEMM kernels of `kernels/gemm/`, one module per family (wgmma, mma.sync,
//!   small-M streaming, CUDA-core fallback) behind one interface;
//! - [`config`], [`suite`], [`goals`]: the `gemm` suite: cases, our kernels beside cuBLASLt,
//!   verification against f64 CPU references with accuracy deltas, the goals;
//! - [`accuracy`]: what quantization costs in accuracy, per real model shape, scheme and format,
//!   computed on the CPU.

pub mod accuracy;
pub mod config;
pub mod goals;
pub mod paths;
mod prepared;
pub mod quant;
pub mod suite;

pub use config::GemmConfig;
pub use quant::{quantize, Operand, QuantFormat, Quantized, Scheme};
pub use suite::GemmSuite;

/// Every kernel of the family, for the embedded-kernel checks.
pub fn kernel_names() -> Vec<String> {
    let mut names = quant::gpu::kernel_names();
    names.extend(paths::kernel_names());
    names
}
