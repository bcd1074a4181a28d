//! The arithmetic a problem's FLOPs are done in: which compute roof applies.

use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// FP32 on the CUDA cores (FMA), not the tensor cores.
    Fp32,
    Tf32,
    /// FP16 inputs, FP32 accumulation (what roofbench's kernels and cuBLAS's defaults do).
    Fp16,
    /// FP16 inputs, FP16 accumulation: twice the FP16 rate on GeForce parts, which halve FP32
    /// accumulation; the same rate elsewhere. Kept apart so a kernel that accumulates in FP16
    /// (FlashInfer's RTX 4090 path) is measured against the peak it can reach.
    #[serde(rename = "fp16_acc16")]
    #[value(name = "fp16_acc16")]
    Fp16Acc16,
    Bf16,
    Fp8,
    Int8,
    Fp4,
}

impl Precision {
    pub const ALL: [Precision; 8] = [
        Precision::Fp32,
        Precision::Tf32,
        Precision::Fp16,
        Precision::Fp16Acc16,
        Precision::Bf16,
        Precision::Fp8,
        Precision::Int8,
        Precision::Fp4,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Fp16 => "fp16",
            Precision::Fp16Acc16 => "fp16_acc16",
            Precision::Bf16 => "bf16",
            Precision::Fp8 => "fp8",
            Precision::Int8 => "int8",
            Precision::Fp4 => "fp4",
        }
    }

    /// "TOPS" for integer math, "TFLOPS" otherwise.
    pub fn unit(self) -> &'static str {
        if self == Precision::Int8 {
            "TOPS"
        } else {
            "TFLOPS"
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
