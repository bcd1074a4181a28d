//! The pure rules of cuBLASLt's FP8 scale modes: which precision, scale mode, GPU and library
//! version cuBLASLt runs, how many scales each operand takes in roofbench's layouts, and their
//! conversion to the layouts cuBLASLt reads (VEC128_32F, BLK128x128_32F). Nothing here touches
//! the device or the library, so every rule is testable on a machine without a GPU; the parent
//! module ([`super`]) checks them before it plans a GEMM.

use super::LtPrecision;

/// How cuBLASLt scales FP8 operands (ignored for Bf16; Int8 supports only LtScaling::None).
///
/// The scales multiply: an FP8 code `q` of A stands for `q * scale_a` (roofbench's
/// `decode(code) * scale`), so `D = sum_k (a * scale_a) * (b * scale_b)`, with the block modes
/// applying the product of the two scales to each 128-wide K block's partial sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LtScaling {
    /// No scale pointers (Bf16, Int8). An FP8 plan with `None` gets per-tensor scales of 1.0,
    /// which cuBLASLt's FP8 kernels expect to be set.
    None,
    /// One f32 per operand (CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F).
    PerTensor,
    /// A: one f32 per row of op(A) (lt_m values), B: one per column (lt_n values)
    /// (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F).
    Outer,
    /// DeepSeek-style: B (activations) in 1x128 groups along k (VEC128_32F), A (weights) in 128x128 blocks (BLK128x128_32F).
    Block128,
}

/// The K (and, for A's blocks, M) extent of one [`LtScaling::Block128`] scale.
pub const LT_SCALE_BLOCK: usize = 128;

/// The oldest cuBLASLt (as `cublasLtGetVersion` reports it, `major * 10000 + minor * 100 +
/// patch`) with the outer-vector and 128-block FP8 scale modes: CUDA 12.9.
pub const LT_MIN_VERSION_VECTOR_SCALES: usize = 120_900;

impl LtScaling {
    pub const ALL: [LtScaling; 4] = [
        LtScaling::None,
        LtScaling::PerTensor,
        LtScaling::Outer,
        LtScaling::Block128,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LtScaling::None => "none",
            LtScaling::PerTensor => "per-tensor",
            LtScaling::Outer => "outer",
            LtScaling::Block128 => "block128",
        }
    }

    /// The number of f32 scales [`CublasLt::plan_scaled`](super::CublasLt::plan_scaled) takes on the host for A and B, in
    /// roofbench's layouts, for a GEMM of `lt_m x lt_n x k`: None: `(0, 0)`; PerTensor: `(1, 1)`;
    /// Outer: `(lt_m, lt_n)`; Block128: A `ceil(lt_m/128) * ceil(k/128)` (W's blocks), B
    /// `lt_n * ceil(k/128)` (X's groups).
    pub fn host_scale_lens(self, m: usize, n: usize, k: usize) -> (usize, usize) {
        let k_blocks = k.div_ceil(LT_SCALE_BLOCK);
        match self {
            LtScaling::None => (0, 0),
            LtScaling::PerTensor => (1, 1),
            LtScaling::Outer => (m, n),
            LtScaling::Block128 => (m.div_ceil(LT_SCALE_BLOCK) * k_blocks, n * k_blocks),
        }
    }
}

impl std::fmt::Display for LtScaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Host scales for [`CublasLt::plan_scaled`](super::CublasLt::plan_scaled), in roofbench's layouts (see
/// [`LtScaling::host_scale_lens`]): `a` for A (= W in the GEMM suite), `b` for B (= X).
#[derive(Debug, Clone, Copy)]
pub struct LtScales<'a> {
    pub a: &'a [f32],
    pub b: &'a [f32],
}

/// Whether cuBLASLt can run `precision` with `scaling` on a GPU of compute capability `arch`,
/// as far as NVIDIA documents it; `Err` says why not. Pure, so the rules are testable without a
/// GPU; [`CublasLt::plan_scaled`](super::CublasLt::plan_scaled) checks it (and the library version, see
/// [`lt_version_supports`]) before asking the heuristic, which remains the final word.
///
/// - FP8 needs sm_89 (Ada) or newer (cuBLAS docs, `cublasLtMatmul` FP8 type table).
/// - Outer-vector scales need cuBLASLt 12.9 on sm_90 or newer (the CUDA 12.9 release notes and
///   NVIDIA's "cuBLAS 12.9" blog announce them for Hopper; PyTorch's `_scaled_mm` routes row-wise
///   scales to cuBLASLt only on sm_90 with cuBLAS >= 12.9 and keeps CUTLASS on sm_100, so on
///   Blackwell the heuristic may still refuse them).
/// - 128-block scales run on Hopper (sm_90) only, from cuBLASLt 12.9 (NVIDIA's answer in
///   NVIDIA/CUDALibrarySamples issue #310; Blackwell's block scaling uses the MX formats).
/// - INT8 (IMMA) has no scale modes, so it takes only [`LtScaling::None`]; BF16 ignores
///   `scaling`.
pub fn lt_supports(
    precision: LtPrecision,
    scaling: LtScaling,
    arch: (u32, u32),
) -> Result<(), String> {
    let (major, minor) = arch;
    match precision {
        LtPrecision::Bf16 => Ok(()),
        LtPrecision::Int8 if scaling == LtScaling::None => Ok(()),
        LtPrecision::Int8 => Err(format!(
            "INT8 GEMMs take no scales ({scaling} requested): cuBLASLt's scale modes are for FP8 \
             operands; use LtScaling::None"
        )),
        LtPrecision::Fp8E4m3 if arch < (8, 9) => Err(format!(
            "FP8 GEMMs need sm_89 (Ada) or newer; this GPU is sm_{major}{minor}"
        )),
        LtPrecision::Fp8E4m3 => match scaling {
            LtScaling::None | LtScaling::PerTensor => Ok(()),
            LtScaling::Outer if major >= 9 => Ok(()),
            LtScaling::Outer => Err(format!(
                "outer-vector FP8 scales (OUTER_VEC_32F) need Hopper (sm_90) or newer and \
                 cuBLASLt 12.9+; this GPU is sm_{major}{minor}"
            )),
            LtScaling::Block128 if major == 9 => Ok(()),
            LtScaling::Block128 => Err(format!(
                "128-block FP8 scales (VEC128_32F / BLK128x128_32F) run on Hopper (sm_90) only, \
                 with cuBLASLt 12.9+; this GPU is sm_{major}{minor}"
            )),
        },
    }
}

/// Whether a cuBLASLt of `version` (`cublasLtGetVersion`, e.g. 120900 for 12.9.0) knows the scale
/// modes of `scaling` for FP8; pure, like [`lt_supports`].
pub fn lt_version_supports(scaling: LtScaling, version: usize) -> Result<(), String> {
    match scaling {
        LtScaling::Outer | LtScaling::Block128 if version < LT_MIN_VERSION_VECTOR_SCALES => {
            Err(format!(
                "{scaling} FP8 scales need cuBLASLt 12.9 or newer; the loaded libcublasLt is {}.{}.{}",
                version / 10_000,
                version / 100 % 100,
                version % 100
            ))
        }
        _ => Ok(()),
    }
}

/// [`LtScaling::Block128`]'s B (activation) scales: roofbench's row-major
/// `[outer][ceil(k/128)]` (one scale per row of X and 128-wide group of K) to cuBLASLt's
/// VEC128_32F layout, which is "outer-dim-major": the `outer` scales of one K group are
/// contiguous, `[ceil(k/128)][outer]`, with no padding. `outer` is lt_n for B (lt_m for A).
///
/// Sources: PyTorch `aten/src/ATen/native/cuda/Blas.cpp` (`is_blockwise_1x128_scaling`: scale
/// shape `(outer, ceil(K/128))` with strides `(1, outer)`, passed to cuBLASLt unchanged) and
/// NVIDIA CUDALibrarySamples `cuBLASLt/Common/helpers.h` (`getScaleTensorSize`: VEC128_32F holds
/// `ceil(inner/128) * outer` floats); cuBLAS docs, `cublasLtMatmulMatrixScale_t`.
///
/// Panics unless `host.len() == outer * ceil(k/128)` ([`lt_scale_arrays`] checks it first).
pub fn vec128_scales_to_lt(host: &[f32], outer: usize, k: usize) -> Vec<f32> {
    let k_blocks = k.div_ceil(LT_SCALE_BLOCK);
    assert_eq!(
        host.len(),
        outer * k_blocks,
        "VEC128 scales: [outer][ceil(k/128)]"
    );
    let mut lt = vec![0.0f32; host.len()];
    for (row, groups) in host.chunks_exact(k_blocks.max(1)).enumerate() {
        for (group, &scale) in groups.iter().enumerate() {
            lt[group * outer + row] = scale;
        }
    }
    lt
}

/// [`LtScaling::Block128`]'s A (weight) scales: roofbench's row-major
/// `[ceil(outer/128)][ceil(k/128)]` to cuBLASLt's BLK128x128_32F layout, which keeps the K
/// blocks of one row of blocks contiguous but pads each such row to a multiple of 4 floats (16
/// bytes): `[ceil(outer/128)][round_up(ceil(k/128), 4)]`, padding zero (never read).
///
/// Sources: PyTorch `Blas.cpp` (`is_blockwise_128x128_scaling`: strides
/// `(round_up(ceil(K/128), 4), 1)`, "near-inner-dim-major (with 16-byte aligned strides)") and
/// CUDALibrarySamples `helpers.h` (`getScaleTensorSize`: BLK128x128_32F holds
/// `round_up(ceil(inner/128), 4) * ceil(outer/128)` floats).
///
/// Panics unless `host.len() == ceil(outer/128) * ceil(k/128)`.
pub fn blk128_scales_to_lt(host: &[f32], outer: usize, k: usize) -> Vec<f32> {
    let k_blocks = k.div_ceil(LT_SCALE_BLOCK);
    let outer_blocks = outer.div_ceil(LT_SCALE_BLOCK);
    assert_eq!(
        host.len(),
        outer_blocks * k_blocks,
        "BLK128x128 scales: [ceil(outer/128)][ceil(k/128)]"
    );
    let ld = k_blocks.next_multiple_of(4);
    let mut lt = vec![0.0f32; outer_blocks * ld];
    if k_blocks > 0 {
        for (dst, src) in lt.chunks_exact_mut(ld).zip(host.chunks_exact(k_blocks)) {
            dst[..k_blocks].copy_from_slice(src);
        }
    }
    lt
}

/// The A and B scales of an FP8 GEMM in the layouts cuBLASLt reads (what
/// [`CublasLt::plan_scaled`](super::CublasLt::plan_scaled) uploads).
#[derive(Debug, Clone, PartialEq)]
pub struct LtScaleArrays {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// The A and B scale arrays of a `lt_m x lt_n x k` FP8 GEMM with `scaling`, in the layouts
/// cuBLASLt reads, from `scales` in roofbench's layouts ([`LtScaling::host_scale_lens`]);
/// `scales: None` means every scale is 1.0. `Ok(None)` for [`LtScaling::None`] (no scale
/// pointers). Pure; `Err` names the operand and the expected length.
pub fn lt_scale_arrays(
    scaling: LtScaling,
    m: usize,
    n: usize,
    k: usize,
    scales: Option<LtScales<'_>>,
) -> Result<Option<LtScaleArrays>, String> {
    if scaling == LtScaling::None {
        return match scales {
            None => Ok(None),
            Some(_) => Err("scales given for LtScaling::None".into()),
        };
    }
    let (a_len, b_len) = scaling.host_scale_lens(m, n, k);
    let (a, b) = match scales {
        None => (vec![1.0f32; a_len], vec![1.0f32; b_len]),
        Some(LtScales { a, b }) => {
            for (operand, actual, expected) in [("A", a.len(), a_len), ("B", b.len(), b_len)] {
                if actual != expected {
                    return Err(format!(
                        "{scaling} scales for m={m} n={n} k={k}: {operand} has {actual} values, \
                         expected {expected}"
                    ));
                }
            }
            (a.to_vec(), b.to_vec())
        }
    };
    Ok(Some(match scaling {
        LtScaling::Block128 => LtScaleArrays {
            a: blk128_scales_to_lt(&a, m, k),
            b: vec128_scales_to_lt(&b, n, k),
        },
        // One scalar each, or one value per row of op(A) / column of B: already contiguous.
        _ => LtScaleArrays { a, b },
    }))
}
