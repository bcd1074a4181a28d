//! cuBLASLt GEMMs as the vendor ceiling: what NVIDIA's own library reaches on a large
//! `D = A·B` in BF16, FP8 E4M3 and INT8, to compare roofbench's kernels against.
//!
//! cudarc's safe `CudaBlasLT` only knows f32/f16/bf16 and panics when a descriptor fails to be
//! destroyed, so this module drives `cudarc::cublaslt::result`/`sys` directly, with the same calls
//! in the same order (matmul descriptor, transposes, matrix layouts, preference with a workspace
//! limit, heuristic, `cublasLtMatmul`), one code path parameterised by [`LtPrecision`].
//!
//! Everything that does not depend on the operands' addresses is decided once in
//! [`CublasLt::plan`]: descriptors, layouts, the heuristic's algorithm, the workspace and the FP8
//! scales. [`LtGemm::run`] then only enqueues `cublasLtMatmul`, so a timed loop (or a captured
//! CUDA graph) measures the GEMM and not cuBLASLt's algorithm search.
//!
//! Like [`Gpu::open`] with libcuda, this module checks that libcublasLt can be loaded before the
//! first cuBLASLt call: cudarc's dynamic loader panics on a missing library.
//!
//! [`CublasLt::plan_scaled`] adds what a quantized linear layer needs: FP8 scales per tensor, per
//! row/column ([`LtScaling::Outer`]) or in DeepSeek-style 128-blocks ([`LtScaling::Block128`]),
//! given on the host in roofbench's layouts (`src/gemm/quant/mod.rs`) and uploaded in cuBLASLt's,
//! and an optional BF16 bias fused into the epilogue ([`LtGemm::run_with_bias`]). The rules of
//! those scale modes (which GPU and library run them, how many scales, their layouts) are pure and
//! live in `scales.rs`; this file holds the handles, the FFI calls, the plans and the launches.

mod scales;
#[cfg(test)]
mod tests;

use std::ffi::{c_int, c_void};
use std::mem::{size_of, MaybeUninit};
use std::sync::Arc;

use cudarc::cublaslt::result::{self, CublasError};
use cudarc::cublaslt::sys;
use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut};

use super::{Buffer, DriverContext, Gpu, GpuError, GpuResult};
pub use scales::{
    blk128_scales_to_lt, lt_scale_arrays, lt_supports, lt_version_supports, vec128_scales_to_lt,
    LtScaleArrays, LtScales, LtScaling, LT_MIN_VERSION_VECTOR_SCALES, LT_SCALE_BLOCK,
};

/// Device workspace handed to cuBLASLt. 32 MiB is NVIDIA's recommendation for Hopper and newer
/// (cudarc uses it too); without workspace the heuristic cannot pick split-K or stream-K kernels,
/// and the ceiling would be a kernel choice artefact rather than the library's best.
pub const WORKSPACE_BYTES: usize = 32 << 20;

/// `cublasOperation_t` values (cudarc's cuBLASLt bindings do not export the enum; the attribute
/// is an `int32_t`).
const CUBLAS_OP_N: i32 = 0;
const CUBLAS_OP_T: i32 = 1;

/// The element types of a cuBLASLt GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LtPrecision {
    /// A, B, D bf16; f32 accumulation.
    Bf16,
    /// A, B fp8 e4m3 with f32 scales (per tensor, 1.0, unless planned with
    /// [`CublasLt::plan_scaled`]); D bf16; f32 accumulation.
    Fp8E4m3,
    /// A, B i8; D i32; i32 accumulation.
    Int8,
}

/// The cuBLASLt types of one precision: `(compute, scale, A/B, C/D)`.
#[derive(Debug, Clone, Copy)]
struct LtTypes {
    compute: sys::cublasComputeType_t,
    scale: sys::cudaDataType,
    ab: sys::cudaDataType,
    cd: sys::cudaDataType,
}

impl LtPrecision {
    pub const ALL: [LtPrecision; 3] = [LtPrecision::Bf16, LtPrecision::Fp8E4m3, LtPrecision::Int8];

    /// Bytes per element of A and B.
    pub fn input_bytes(self) -> usize {
        match self {
            LtPrecision::Bf16 => 2,
            LtPrecision::Fp8E4m3 | LtPrecision::Int8 => 1,
        }
    }

    /// Bytes per element of D.
    pub fn output_bytes(self) -> usize {
        match self {
            LtPrecision::Bf16 | LtPrecision::Fp8E4m3 => 2,
            LtPrecision::Int8 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LtPrecision::Bf16 => "bf16",
            LtPrecision::Fp8E4m3 => "fp8-e4m3",
            LtPrecision::Int8 => "int8",
        }
    }

    /// The multiple that `k` and every leading dimension (`lda = ldb = k`, `ldc = ldd = m`) must
    /// be. cuBLASLt's IMMA (INT8) kernels need multiples of 4 and its FP8 kernels multiples of 16
    /// (16-byte aligned rows); BF16 has a non-tensor-core fallback and takes any shape.
    pub fn dimension_multiple(self) -> usize {
        match self {
            LtPrecision::Bf16 => 1,
            LtPrecision::Fp8E4m3 => 16,
            LtPrecision::Int8 => 4,
        }
    }

    fn types(self) -> LtTypes {
        use sys::cublasComputeType_t::{CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32I};
        use sys::cudaDataType::{CUDA_R_16BF, CUDA_R_32F, CUDA_R_32I, CUDA_R_8F_E4M3, CUDA_R_8I};
        let (compute, scale, ab, cd) = match self {
            LtPrecision::Bf16 => (CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF),
            LtPrecision::Fp8E4m3 => (CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_8F_E4M3, CUDA_R_16BF),
            LtPrecision::Int8 => (CUBLAS_COMPUTE_32I, CUDA_R_32I, CUDA_R_8I, CUDA_R_32I),
        };
        LtTypes {
            compute,
            scale,
            ab,
            cd,
        }
    }

    /// alpha = 1 and beta = 0 in the scale type (cuBLASLt reads them through untyped pointers, so
    /// an f32 1.0 where it expects an i32 would be a huge alpha).
    fn alpha_beta(self) -> (Scalar, Scalar) {
        match self.types().scale {
            sys::cudaDataType::CUDA_R_32I => (Scalar::I32(1), Scalar::I32(0)),
            _ => (Scalar::F32(1.0), Scalar::F32(0.0)),
        }
    }
}

/// How an FP8 GEMM accumulates (`CUBLASLT_MATMUL_DESC_FAST_ACCUM`). Hopper's FP8 tensor cores
/// keep about 14 significant bits in their accumulator; the library's default promotes the
/// partial sums to f32 at intervals, fast accumulation leaves the whole K sum in the tensor core
/// (faster, less accurate: what roofbench's unpromoted `wgmma` kernels do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LtAccumulation {
    /// FAST_ACCUM = 0, the default: promoted to f32 (FP8); plain f32 or i32 (BF16, INT8).
    Default,
    /// FAST_ACCUM = 1: FP8 only.
    Fast,
}

impl LtAccumulation {
    /// What a variant's label adds (see [`variant_label`]).
    const FAST_TAG: &'static str = "fast-accum";

    fn flag(self) -> i8 {
        match self {
            LtAccumulation::Default => 0,
            LtAccumulation::Fast => 1,
        }
    }
}

impl LtPrecision {
    /// The accumulations cuBLASLt offers for this precision, the default first: both for FP8,
    /// the default alone otherwise (the flag means nothing there).
    pub fn accumulations(self) -> &'static [LtAccumulation] {
        match self {
            LtPrecision::Fp8E4m3 => &[LtAccumulation::Default, LtAccumulation::Fast],
            LtPrecision::Bf16 | LtPrecision::Int8 => &[LtAccumulation::Default],
        }
    }
}

/// The kernel label of a cuBLASLt result row: `cublasLt fp8-e4m3` (the default, the name rows
/// have always had) or `cublasLt fp8-e4m3 fast-accum`.
pub fn variant_label(precision: LtPrecision, accumulation: LtAccumulation) -> String {
    match accumulation {
        LtAccumulation::Default => format!("cublasLt {precision}"),
        LtAccumulation::Fast => format!("cublasLt {precision} {}", LtAccumulation::FAST_TAG),
    }
}

/// The accumulation of a label made by [`variant_label`].
pub fn label_accumulation(label: &str) -> LtAccumulation {
    if label
        .split_whitespace()
        .any(|w| w == LtAccumulation::FAST_TAG)
    {
        LtAccumulation::Fast
    } else {
        LtAccumulation::Default
    }
}

impl std::fmt::Display for LtPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl LtScaling {
    /// The `(A, B)` values of `CUBLASLT_MATMUL_DESC_{A,B}_SCALE_MODE`; `None` for the modes
    /// that leave the attribute at its default (SCALAR_32F), so that plans without vector scales
    /// also work with a cuBLASLt older than 12.8, which does not know the attribute.
    fn modes(
        self,
    ) -> Option<(
        sys::cublasLtMatmulMatrixScale_t,
        sys::cublasLtMatmulMatrixScale_t,
    )> {
        use sys::cublasLtMatmulMatrixScale_t::{
            CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F as BLK128X128,
            CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F as OUTER_VEC,
            CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F as VEC128,
        };
        match self {
            LtScaling::None | LtScaling::PerTensor => None,
            LtScaling::Outer => Some((OUTER_VEC, OUTER_VEC)),
            // A = W (weights) in 128x128 blocks, B = X (activations) in 1x128 groups along k.
            LtScaling::Block128 => Some((BLK128X128, VEC128)),
        }
    }
}

/// The label of a plan in errors: the precision, and the scale mode when it is a vector one.
fn plan_label(precision: LtPrecision, scaling: LtScaling) -> &'static str {
    match (precision, scaling) {
        (LtPrecision::Fp8E4m3, LtScaling::Outer) => "fp8-e4m3 (outer-vector scales)",
        (LtPrecision::Fp8E4m3, LtScaling::Block128) => "fp8-e4m3 (128-block scales)",
        (precision, _) => precision.name(),
    }
}

/// A host scalar in the GEMM's scale type (alpha, beta; host pointer mode, cuBLASLt's default).
#[derive(Debug, Clone, Copy)]
enum Scalar {
    F32(f32),
    I32(i32),
}

impl Scalar {
    fn as_ptr(&self) -> *const c_void {
        match self {
            Scalar::F32(v) => (v as *const f32).cast(),
            Scalar::I32(v) => (v as *const i32).cast(),
        }
    }
}

/// Byte sizes of the operands of one GEMM shape: A (`m x k`), B (`k x n`), D (`m x n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LtOperandBytes {
    pub a: usize,
    pub b: usize,
    pub d: usize,
}

/// Checks that cuBLASLt can run `precision` at this shape with the TN layout, and returns the
/// operand sizes. Pure (no device), so shape rules are testable without a GPU; [`CublasLt::plan`]
/// calls it first.
pub fn check_shape(
    precision: LtPrecision,
    m: usize,
    n: usize,
    k: usize,
) -> GpuResult<LtOperandBytes> {
    let unsupported = |reason: String| GpuError::LtUnsupported {
        precision: precision.name(),
        m,
        n,
        k,
        reason,
    };
    if m == 0 || n == 0 || k == 0 {
        return Err(unsupported("every dimension must be at least 1".into()));
    }
    let multiple = precision.dimension_multiple();
    for (dim, value, role) in [("k", k, "lda = ldb"), ("m", m, "ldc = ldd")] {
        if value % multiple != 0 {
            return Err(unsupported(format!(
                "{dim} ({role}) must be a multiple of {multiple} for {precision} \
                 tensor-core kernels"
            )));
        }
    }
    // cuBLASLt takes rows/cols as u64 and leading dimensions as i64.
    if [m, n, k].iter().any(|&d| i64::try_from(d).is_err()) {
        return Err(unsupported("a dimension does not fit in i64".into()));
    }
    let bytes = |rows: usize, cols: usize, elem: usize| {
        rows.checked_mul(cols)
            .and_then(|e| e.checked_mul(elem))
            .ok_or_else(|| unsupported("operand size overflows usize".into()))
    };
    Ok(LtOperandBytes {
        a: bytes(m, k, precision.input_bytes())?,
        b: bytes(k, n, precision.input_bytes())?,
        d: bytes(m, n, precision.output_bytes())?,
    })
}

/// Fails with [`GpuError::NoCublasLt`] unless libcublasLt can be loaded (cudarc panics on the
/// first cuBLASLt call otherwise).
pub fn ensure_cublaslt() -> GpuResult<()> {
    // SAFETY: only tries to dlopen libcublasLt; no cuBLASLt call is made.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(GpuError::NoCublasLt)
    }
}

/// Names the failing cuBLASLt call, as `.ctx(call)` does for driver errors.
impl<T> DriverContext<T> for Result<T, CublasError> {
    fn ctx(self, call: &'static str) -> GpuResult<T> {
        self.map_err(|source| GpuError::Cublas { call, source })
    }
}

/// A cuBLASLt object that must be destroyed exactly once.
trait LtObject: Copy {
    /// # Safety
    /// `self` was created by cuBLASLt and is not destroyed yet.
    unsafe fn destroy(self) -> Result<(), CublasError>;
}

impl LtObject for sys::cublasLtHandle_t {
    unsafe fn destroy(self) -> Result<(), CublasError> {
        result::destroy_handle(self)
    }
}

impl LtObject for sys::cublasLtMatmulDesc_t {
    unsafe fn destroy(self) -> Result<(), CublasError> {
        result::destroy_matmul_desc(self)
    }
}

impl LtObject for sys::cublasLtMatrixLayout_t {
    unsafe fn destroy(self) -> Result<(), CublasError> {
        result::destroy_matrix_layout(self)
    }
}

impl LtObject for sys::cublasLtMatmulPreference_t {
    unsafe fn destroy(self) -> Result<(), CublasError> {
        result::destroy_matmul_pref(self)
    }
}

/// Owns one cuBLASLt object and destroys it on drop, ignoring errors: a failed destroy leaks a
/// few host bytes, which is better than cudarc's panic inside `Drop`. Owning each object as soon
/// as it is created also cleans up after a `plan` that fails half-way.
struct Owned<H: LtObject>(H);

impl<H: LtObject> Drop for Owned<H> {
    fn drop(&mut self) {
        // SAFETY: `Owned` is only built from a freshly created object and never cloned.
        let _ = unsafe { self.0.destroy() };
    }
}

// SAFETY: cuBLASLt handles and descriptors are host-side objects with no thread affinity (cudarc's
// `CudaBlasLT` is Send + Sync for the same reason); `LtGemm::run` takes `&mut self`, so one plan
// is never used by two threads at once.
unsafe impl<H: LtObject> Send for Owned<H> {}
unsafe impl<H: LtObject> Sync for Owned<H> {}

/// Sets a matmul descriptor attribute to `value`, whose type must be the attribute's C type.
fn set_desc<T>(
    desc: &Owned<sys::cublasLtMatmulDesc_t>,
    attr: sys::cublasLtMatmulDescAttributes_t,
    value: &T,
) -> GpuResult<()> {
    // SAFETY: `desc` is live; cuBLASLt copies `size_of::<T>()` bytes from `value`.
    unsafe {
        result::set_matmul_desc_attribute(desc.0, attr, (value as *const T).cast(), size_of::<T>())
    }
    .ctx("cublasLtMatmulDescSetAttribute")
}

/// A column-major matrix layout of `rows x cols` with leading dimension `ld`.
fn layout(
    ty: sys::cudaDataType,
    rows: usize,
    cols: usize,
    ld: usize,
) -> GpuResult<Owned<sys::cublasLtMatrixLayout_t>> {
    // `check_shape` has verified that every dimension fits in i64 (and so in u64).
    let handle = result::create_matrix_layout(ty, rows as u64, cols as u64, ld as i64)
        .ctx("cublasLtMatrixLayoutCreate")?;
    Ok(Owned(handle))
}

/// A loaded cuBLASLt handle for one [`Gpu`].
pub struct CublasLt {
    handle: Arc<Owned<sys::cublasLtHandle_t>>,
    stream: Arc<CudaStream>,
}

impl Gpu {
    /// Loads cuBLASLt and creates a handle on this device; [`GpuError::NoCublasLt`] when the
    /// library is not installed.
    pub fn cublaslt(&self) -> GpuResult<CublasLt> {
        ensure_cublaslt()?;
        // cuBLASLt binds the handle to the thread's current context (the device it runs on).
        self.ctx.bind_to_thread().ctx("cuCtxSetCurrent")?;
        let handle = result::create_handle().ctx("cublasLtCreate")?;
        Ok(CublasLt {
            handle: Arc::new(Owned(handle)),
            stream: self.stream.clone(),
        })
    }
}

/// Rejects a `gpu` other than the one the cuBLASLt objects were made for: the handle, workspace
/// and scale pointers belong to that device's context.
fn same_gpu(gpu: &Gpu, stream: &Arc<CudaStream>, what: &str) -> GpuResult<()> {
    if Arc::ptr_eq(&gpu.stream, stream) {
        Ok(())
    } else {
        Err(GpuError::LtArgument(format!(
            "{what} was created for another Gpu"
        )))
    }
}

impl CublasLt {
    /// Plans `D = A·B` for `precision` at `m x n x k`: checks the shape, builds descriptors and
    /// layouts, allocates the workspace (and FP8 scales, all 1.0) and asks cuBLASLt's heuristic
    /// for its first algorithm. The same as [`CublasLt::plan_scaled`] with per-tensor scales of
    /// 1.0 for FP8, no scales otherwise, no bias and the default accumulation.
    ///
    /// The layout is "TN" (`transa = T`, `transb = N`), the only one cuBLASLt supports for FP8 on
    /// Ada/Hopper and for INT8 IMMA with ordinary column-major matrices; BF16 uses it too so the
    /// three precisions read the same operands the same way. With `A` stored as a `k x m`
    /// column-major matrix (that is, `A` row-major `m x k`) and `B` as `k x n` column-major, both
    /// operands are contiguous along `k`, which is what the tensor-core kernels want.
    pub fn plan(
        &self,
        gpu: &Gpu,
        precision: LtPrecision,
        m: usize,
        n: usize,
        k: usize,
    ) -> GpuResult<LtGemm> {
        let scaling = match precision {
            LtPrecision::Fp8E4m3 => LtScaling::PerTensor,
            LtPrecision::Bf16 | LtPrecision::Int8 => LtScaling::None,
        };
        self.plan_scaled(
            gpu,
            precision,
            m,
            n,
            k,
            scaling,
            None,
            false,
            LtAccumulation::Default,
        )
    }

    /// Like `plan` but with the scales' values given on the host in roofbench's layouts
    /// (src/gemm/quant/mod.rs header): Outer: a [lt_m], b [lt_n]; Block128: a = W blocks row-major
    /// [ceil(lt_m/128)][ceil(k/128)], b = X groups row-major [lt_n][ceil(k/128)].
    /// Uploads them in the layout cuBLASLt requires (convert/transpose/pad as its docs demand) and
    /// sets A/B_SCALE_MODE + A/B_SCALE_POINTER; D's type follows `precision` (bf16 for FP8).
    ///
    /// In detail:
    /// - `scaling` is ignored for Bf16 (and then so is `scales`); Int8 takes only
    ///   [`LtScaling::None`]; Fp8E4m3 with `None` gets per-tensor scales of 1.0. Unsupported
    ///   combinations fail with [`GpuError::LtUnsupported`] and [`lt_supports`]'s reason (or
    ///   [`lt_version_supports`]'s, for a cuBLASLt older than 12.9).
    /// - `scales: None` sets every scale to 1.0 (enough for timing); otherwise each slice must
    ///   have exactly [`LtScaling::host_scale_lens`] values ([`GpuError::LtArgument`]). The
    ///   conversion to cuBLASLt's layouts is [`lt_scale_arrays`]; the device copies live as long
    ///   as the plan.
    /// - `bias: true` adds a BF16 bias of `m` values to every column of D
    ///   (`CUBLASLT_EPILOGUE_BIAS`, bias type bf16), in f32 before D's rounding; the bias itself
    ///   is given to [`LtGemm::run_with_bias`]. Bf16 and Fp8E4m3 only (D is bf16); INT8's D is
    ///   i32.
    /// - `accumulation`: [`LtAccumulation::Fast`] sets `CUBLASLT_MATMUL_DESC_FAST_ACCUM` before
    ///   the heuristic runs (it may pick other kernels for it); Fp8E4m3 only.
    #[allow(clippy::too_many_arguments)]
    pub fn plan_scaled(
        &self,
        gpu: &Gpu,
        precision: LtPrecision,
        m: usize,
        n: usize,
        k: usize,
        scaling: LtScaling,
        scales: Option<LtScales<'_>>,
        bias: bool,
        accumulation: LtAccumulation,
    ) -> GpuResult<LtGemm> {
        use sys::cublasLtMatmulDescAttributes_t as Desc;

        let bytes = check_shape(precision, m, n, k)?;
        let (scaling, scales) = match (precision, scaling) {
            (LtPrecision::Bf16, _) => (LtScaling::None, None),
            (LtPrecision::Fp8E4m3, LtScaling::None) if scales.is_none() => {
                (LtScaling::PerTensor, None)
            }
            _ => (scaling, scales),
        };
        let unsupported = |reason: String| GpuError::LtUnsupported {
            precision: plan_label(precision, scaling),
            m,
            n,
            k,
            reason,
        };
        lt_supports(precision, scaling, gpu.info().compute_capability).map_err(unsupported)?;
        if precision == LtPrecision::Fp8E4m3 {
            // SAFETY: libcublasLt is loaded (`self` is a handle made by it); the call only
            // reads the library's version.
            let version = unsafe { sys::cublasLtGetVersion() };
            lt_version_supports(scaling, version).map_err(unsupported)?;
        }
        if !precision.accumulations().contains(&accumulation) {
            return Err(unsupported(format!(
                "{accumulation:?} accumulation: {precision} takes only {:?}",
                precision.accumulations()
            )));
        }
        if bias && precision == LtPrecision::Int8 {
            return Err(unsupported(
                "a bias needs a bf16 D (Bf16 or Fp8E4m3); INT8's D is i32".into(),
            ));
        }
        let scale_arrays =
            lt_scale_arrays(scaling, m, n, k, scales).map_err(GpuError::LtArgument)?;

        same_gpu(gpu, &self.stream, "this cuBLASLt handle")?;
        gpu.ctx.bind_to_thread().ctx("cuCtxSetCurrent")?;
        let types = precision.types();

        let desc = Owned(
            result::create_matmul_desc(types.compute, types.scale)
                .ctx("cublasLtMatmulDescCreate")?,
        );
        set_desc(&desc, Desc::CUBLASLT_MATMUL_DESC_TRANSA, &CUBLAS_OP_T)?;
        set_desc(&desc, Desc::CUBLASLT_MATMUL_DESC_TRANSB, &CUBLAS_OP_N)?;
        if accumulation != LtAccumulation::Default {
            // int8_t, per the cuBLASLt documentation of the attribute.
            set_desc(
                &desc,
                Desc::CUBLASLT_MATMUL_DESC_FAST_ACCUM,
                &accumulation.flag(),
            )?;
        }

        // FP8 GEMMs dequantise with f32 scales read from device memory when the kernel runs (so
        // a real pipeline can compute them on the GPU). Each operand gets its own allocation, so
        // both pointers have the allocator's 256-byte alignment whatever the lengths.
        let scales = match scale_arrays {
            Some(LtScaleArrays { a, b }) => {
                if let Some((a_mode, b_mode)) = scaling.modes() {
                    set_desc(&desc, Desc::CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &a_mode)?;
                    set_desc(&desc, Desc::CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &b_mode)?;
                }
                let (a, b) = (gpu.upload(&a)?, gpu.upload(&b)?);
                // The pointers stay valid while the buffers live (LtGemm owns them); the access
                // guards are no-ops because the Gpu disables cudarc's event tracking.
                let a_ptr = a.slice.device_ptr(&gpu.stream).0;
                let b_ptr = b.slice.device_ptr(&gpu.stream).0;
                set_desc(&desc, Desc::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_ptr)?;
                set_desc(&desc, Desc::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_ptr)?;
                Some((a, b))
            }
            None => None,
        };

        // The bias epilogue reads `m` bf16 values (one per row of D). `run_with_bias` points the
        // descriptor at the caller's bias each time; until then it points at zeros, so the
        // heuristic (which may check that the pointers it needs are set) sees a valid one.
        let bias_placeholder = if bias {
            set_desc(
                &desc,
                Desc::CUBLASLT_MATMUL_DESC_EPILOGUE,
                &sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
            )?;
            set_desc(
                &desc,
                Desc::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                &sys::cudaDataType::CUDA_R_16BF,
            )?;
            let zeros = gpu.upload(&vec![0u16; m])?;
            let ptr = zeros.slice.device_ptr(&gpu.stream).0;
            set_desc(&desc, Desc::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ptr)?;
            Some(zeros)
        } else {
            None
        };

        // A is op(A) = A^T of the stored k x m matrix; C and D share one m x n layout (beta = 0,
        // so C is never read, but cuBLASLt still wants its layout).
        let a_layout = layout(types.ab, k, m, k)?;
        let b_layout = layout(types.ab, k, n, k)?;
        let cd_layout = layout(types.cd, m, n, m)?;

        let workspace = gpu.alloc::<u8>(WORKSPACE_BYTES)?;
        let pref = Owned(result::create_matmul_pref().ctx("cublasLtMatmulPreferenceCreate")?);
        let max_workspace = WORKSPACE_BYTES as u64;
        // SAFETY: `pref` is live; the attribute is a uint64_t.
        unsafe {
            result::set_matmul_pref_attribute(
                pref.0,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&max_workspace as *const u64).cast(),
                size_of::<u64>(),
            )
        }
        .ctx("cublasLtMatmulPreferenceSetAttribute")?;

        // Called through `sys` rather than `result::get_matmul_algo_heuristic`, which reports "no
        // algorithm" as CUBLAS_STATUS_NOT_SUPPORTED, indistinguishable from a failed call.
        let mut heuristic = MaybeUninit::<sys::cublasLtMatmulHeuristicResult_t>::uninit();
        let mut found: c_int = 0;
        // SAFETY: every descriptor is live; cuBLASLt writes at most 1 result into `heuristic`.
        let status = unsafe {
            sys::cublasLtMatmulAlgoGetHeuristic(
                self.handle.0,
                desc.0,
                a_layout.0,
                b_layout.0,
                cd_layout.0,
                cd_layout.0,
                pref.0,
                1,
                heuristic.as_mut_ptr(),
                &mut found,
            )
        };
        let no_algorithm = |why: &str| {
            let info = gpu.info();
            let (major, minor) = info.compute_capability;
            unsupported(format!(
                "{why} on {} (sm_{major}{minor}) with a {} MiB workspace{}{}{}",
                info.name,
                WORKSPACE_BYTES >> 20,
                match precision {
                    LtPrecision::Fp8E4m3 => "; FP8 GEMMs need sm_89 or newer",
                    LtPrecision::Int8 => "; INT8 tensor-core GEMMs need sm_75 or newer",
                    LtPrecision::Bf16 => "",
                },
                match scaling {
                    LtScaling::Outer => "; outer-vector scales need cuBLASLt 12.9+ on sm_90+",
                    LtScaling::Block128 => "; 128-block scales need cuBLASLt 12.9+ on sm_90",
                    LtScaling::None | LtScaling::PerTensor => "",
                },
                if bias {
                    " (with a bf16 bias epilogue)"
                } else {
                    ""
                },
            ))
        };
        match status.result() {
            Err(CublasError(sys::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED)) => {
                return Err(no_algorithm(
                    "the heuristic reports the GEMM as not supported",
                ));
            }
            other => other.ctx("cublasLtMatmulAlgoGetHeuristic")?,
        }
        if found < 1 {
            return Err(no_algorithm("the heuristic found no algorithm"));
        }
        // SAFETY: `found >= 1`, so cuBLASLt wrote the first result.
        let heuristic = unsafe { heuristic.assume_init() };
        heuristic
            .state
            .result()
            .ctx("cublasLtMatmulAlgoGetHeuristic (algorithm state)")?;
        drop(pref);

        let (alpha, beta) = precision.alpha_beta();
        Ok(LtGemm {
            precision,
            scaling,
            accumulation,
            shape: (m, n, k),
            bytes,
            alpha,
            beta,
            algo: heuristic.algo,
            desc,
            a_layout,
            b_layout,
            cd_layout,
            workspace,
            _scales: scales,
            bias: bias_placeholder,
            stream: self.stream.clone(),
            handle: self.handle.clone(),
        })
    }
}

/// One planned `D = A·B` for a fixed precision and shape; [`LtGemm::run`] enqueues it.
pub struct LtGemm {
    precision: LtPrecision,
    scaling: LtScaling,
    accumulation: LtAccumulation,
    shape: (usize, usize, usize),
    bytes: LtOperandBytes,
    alpha: Scalar,
    beta: Scalar,
    algo: sys::cublasLtMatmulAlgo_t,
    desc: Owned<sys::cublasLtMatmulDesc_t>,
    a_layout: Owned<sys::cublasLtMatrixLayout_t>,
    b_layout: Owned<sys::cublasLtMatrixLayout_t>,
    cd_layout: Owned<sys::cublasLtMatrixLayout_t>,
    /// cuBLASLt's scratch; one per plan so plans never share it (`run` takes `&mut self`).
    workspace: Buffer<u8>,
    /// FP8 only: the A and B scales (device f32s, cuBLASLt's layouts) that `desc` points at;
    /// must outlive `desc`.
    _scales: Option<(Buffer<f32>, Buffer<f32>)>,
    /// Planned with a bias: the zeros `desc` points at until the first `run_with_bias`.
    bias: Option<Buffer<u16>>,
    stream: Arc<CudaStream>,
    /// Declared last so the handle outlives the descriptors (fields drop in order).
    handle: Arc<Owned<sys::cublasLtHandle_t>>,
}

impl LtGemm {
    pub fn precision(&self) -> LtPrecision {
        self.precision
    }

    pub fn accumulation(&self) -> LtAccumulation {
        self.accumulation
    }

    /// The scale mode the plan runs with: [`LtScaling::None`] for Bf16 and Int8, never `None`
    /// for Fp8E4m3 (an unscaled FP8 plan has per-tensor scales of 1.0).
    pub fn scaling(&self) -> LtScaling {
        self.scaling
    }

    /// Whether the plan adds a bias (then [`LtGemm::run_with_bias`] needs one).
    pub fn has_bias(&self) -> bool {
        self.bias.is_some()
    }

    /// `(m, n, k)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        self.shape
    }

    /// The exact byte sizes `run` requires of A, B and D.
    pub fn operand_bytes(&self) -> LtOperandBytes {
        self.bytes
    }

    /// Enqueues `D = A·B` on the Gpu's stream (no synchronisation; capturable in a CUDA graph,
    /// since the workspace is fixed at plan time). For a plan without a bias.
    ///
    /// `a` is `k x m` column-major (A row-major `m x k`), `b` is `k x n` column-major, `d` is
    /// `m x n` column-major. Elements: Bf16: a, b, d bf16; Fp8E4m3: a, b fp8 e4m3, d bf16;
    /// Int8: a, b i8, d i32. A and B must be exactly [`LtGemm::operand_bytes`] long, D at least.
    pub fn run(
        &mut self,
        gpu: &Gpu,
        a: &Buffer<u8>,
        b: &Buffer<u8>,
        d: &mut Buffer<u8>,
    ) -> GpuResult<()> {
        self.run_with_bias(gpu, a, b, d, None)
    }

    /// `run` plus an optional BF16 bias of lt_m values (CUBLASLT_EPILOGUE_BIAS with CUBLASLT_MATMUL_DESC_BIAS_POINTER / BIAS_DATA_TYPE bf16), required iff planned with bias=true.
    ///
    /// `D[i][j] = bf16(scales · sum_k A[i][k]·B[k][j] + bias[i])`: the bias is indexed by D's row
    /// (the GEMM suite's output channel) and added in f32 before the one rounding. The bias
    /// buffer only has to live until the GEMM has run (stream order); each call points the plan
    /// at the bias it is given.
    pub fn run_with_bias(
        &mut self,
        gpu: &Gpu,
        a: &Buffer<u8>,
        b: &Buffer<u8>,
        d: &mut Buffer<u8>,
        bias: Option<&Buffer<u16>>,
    ) -> GpuResult<()> {
        same_gpu(gpu, &self.stream, "this GEMM plan")?;
        let (m, n, k) = self.shape;
        let what = format!(
            "{} GEMM m={m} n={n} k={k}",
            plan_label(self.precision, self.scaling)
        );
        for (operand, actual, expected) in [
            ("A", a.len, self.bytes.a),
            ("B", b.len, self.bytes.b),
            ("D", d.len, self.bytes.d),
        ] {
            // D may be longer: callers keep a poisoned guard band after it to catch writes
            // past the end.
            if actual != expected && !(operand == "D" && actual > expected) {
                return Err(GpuError::LtArgument(format!(
                    "{what}: {operand} has {actual} bytes, expected {expected}"
                )));
            }
        }
        match (bias, self.has_bias()) {
            (None, false) => {}
            (Some(bias), true) if bias.len == m => {}
            (Some(bias), true) => {
                return Err(GpuError::LtArgument(format!(
                    "{what}: the bias has {} values, expected m = {m}",
                    bias.len
                )));
            }
            (None, true) => {
                return Err(GpuError::LtArgument(format!(
                    "{what} was planned with a bias: pass one to run_with_bias"
                )));
            }
            (Some(_), false) => {
                return Err(GpuError::LtArgument(format!(
                    "{what} was planned without a bias (plan_scaled with bias = true adds one)"
                )));
            }
        }
        gpu.ctx.bind_to_thread().ctx("cuCtxSetCurrent")?;
        let stream = &gpu.stream;
        let (bias_ptr, _gbias) = match bias {
            Some(bias) => {
                let (ptr, guard) = bias.slice.device_ptr(stream);
                (Some(ptr), Some(guard))
            }
            None => (None, None),
        };
        if let Some(ptr) = bias_ptr {
            set_desc(
                &self.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                &ptr,
            )?;
        }
        let (a_ptr, _ga) = a.slice.device_ptr(stream);
        let (b_ptr, _gb) = b.slice.device_ptr(stream);
        let (d_ptr, _gd) = d.slice.device_ptr_mut(stream);
        let (w_ptr, _gw) = self.workspace.slice.device_ptr_mut(stream);
        // SAFETY: the descriptors and algorithm were made together for this shape; A, B and D
        // have exactly the sizes their layouts address; the bias (if planned) has m bf16 values;
        // the workspace holds WORKSPACE_BYTES; the scale buffers live as long as `self`;
        // alpha/beta are in the descriptor's scale type.
        unsafe {
            result::matmul(
                self.handle.0,
                self.desc.0,
                self.alpha.as_ptr(),
                self.beta.as_ptr(),
                a_ptr as *const c_void,
                self.a_layout.0,
                b_ptr as *const c_void,
                self.b_layout.0,
                d_ptr as *const c_void,
                self.cd_layout.0,
                d_ptr as *mut c_void,
                self.cd_layout.0,
                &self.algo,
                w_ptr as *mut c_void,
                WORKSPACE_BYTES,
                stream.cu_stream() as sys::cudaStream_t,
            )
        }
        .ctx("cublasLtMatmul")
    }
}
