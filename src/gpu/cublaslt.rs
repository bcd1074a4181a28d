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

use std::ffi::{c_int, c_void};
use std::mem::{size_of, MaybeUninit};
use std::sync::Arc;

use cudarc::cublaslt::result::{self, CublasError};
use cudarc::cublaslt::sys;
use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut};

use super::{Buffer, DriverContext, Gpu, GpuError, GpuResult};

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
    /// A, B fp8 e4m3 with a per-tensor f32 scale each (1.0); D bf16; f32 accumulation.
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

impl std::fmt::Display for LtPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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
    /// layouts, allocates the workspace (and FP8 scales) and asks cuBLASLt's heuristic for its
    /// first algorithm.
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
        use sys::cublasLtMatmulDescAttributes_t as Desc;

        let bytes = check_shape(precision, m, n, k)?;
        same_gpu(gpu, &self.stream, "this cuBLASLt handle")?;
        gpu.ctx.bind_to_thread().ctx("cuCtxSetCurrent")?;
        let types = precision.types();

        let desc = Owned(
            result::create_matmul_desc(types.compute, types.scale)
                .ctx("cublasLtMatmulDescCreate")?,
        );
        set_desc(&desc, Desc::CUBLASLT_MATMUL_DESC_TRANSA, &CUBLAS_OP_T)?;
        set_desc(&desc, Desc::CUBLASLT_MATMUL_DESC_TRANSB, &CUBLAS_OP_N)?;

        // FP8 GEMMs dequantise with one f32 scale per input tensor, read from device memory when
        // the kernel runs (so a real pipeline can compute them on the GPU). cuBLASLt's FP8
        // kernels expect them to be set; 1.0 keeps the result the plain product.
        let scales = if precision == LtPrecision::Fp8E4m3 {
            let scales = gpu.upload(&[1.0f32, 1.0f32])?;
            // The pointer stays valid while `scales` lives (LtGemm owns it); the access guard is
            // a no-op because the Gpu disables cudarc's event tracking.
            let base = scales.slice.device_ptr(&gpu.stream).0;
            let a_scale = base;
            let b_scale = base + size_of::<f32>() as u64;
            set_desc(&desc, Desc::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale)?;
            set_desc(&desc, Desc::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale)?;
            Some(scales)
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
            GpuError::LtUnsupported {
                precision: precision.name(),
                m,
                n,
                k,
                reason: format!(
                    "{why} on {} (sm_{major}{minor}) with a {} MiB workspace{}",
                    info.name,
                    WORKSPACE_BYTES >> 20,
                    match precision {
                        LtPrecision::Fp8E4m3 => "; FP8 GEMMs need sm_89 or newer",
                        LtPrecision::Int8 => "; INT8 tensor-core GEMMs need sm_75 or newer",
                        LtPrecision::Bf16 => "",
                    }
                ),
            }
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
            stream: self.stream.clone(),
            handle: self.handle.clone(),
        })
    }
}

/// One planned `D = A·B` for a fixed precision and shape; [`LtGemm::run`] enqueues it.
pub struct LtGemm {
    precision: LtPrecision,
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
    /// FP8 only: the A and B scales (device f32s) that `desc` points at; must outlive `desc`.
    _scales: Option<Buffer<f32>>,
    stream: Arc<CudaStream>,
    /// Declared last so the handle outlives the descriptors (fields drop in order).
    handle: Arc<Owned<sys::cublasLtHandle_t>>,
}

impl LtGemm {
    pub fn precision(&self) -> LtPrecision {
        self.precision
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
    /// since the workspace is fixed at plan time).
    ///
    /// `a` is `k x m` column-major (A row-major `m x k`), `b` is `k x n` column-major, `d` is
    /// `m x n` column-major. Elements: Bf16: a, b, d bf16; Fp8E4m3: a, b fp8 e4m3, d bf16;
    /// Int8: a, b i8, d i32. Each buffer must be exactly [`LtGemm::operand_bytes`] long.
    pub fn run(
        &mut self,
        gpu: &Gpu,
        a: &Buffer<u8>,
        b: &Buffer<u8>,
        d: &mut Buffer<u8>,
    ) -> GpuResult<()> {
        same_gpu(gpu, &self.stream, "this GEMM plan")?;
        let (m, n, k) = self.shape;
        for (operand, actual, expected) in [
            ("A", a.len, self.bytes.a),
            ("B", b.len, self.bytes.b),
            ("D", d.len, self.bytes.d),
        ] {
            if actual != expected {
                return Err(GpuError::LtArgument(format!(
                    "{} GEMM m={m} n={n} k={k}: {operand} has {actual} bytes, expected {expected}",
                    self.precision
                )));
            }
        }
        gpu.ctx.bind_to_thread().ctx("cuCtxSetCurrent")?;
        let stream = &gpu.stream;
        let (a_ptr, _ga) = a.slice.device_ptr(stream);
        let (b_ptr, _gb) = b.slice.device_ptr(stream);
        let (d_ptr, _gd) = d.slice.device_ptr_mut(stream);
        let (w_ptr, _gw) = self.workspace.slice.device_ptr_mut(stream);
        // SAFETY: the descriptors and algorithm were made together for this shape; A, B and D
        // have exactly the sizes their layouts address; the workspace holds WORKSPACE_BYTES; the
        // scale buffers live as long as `self`; alpha/beta are in the descriptor's scale type.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_sizes() {
        use LtPrecision::*;
        assert_eq!(
            (Bf16.input_bytes(), Bf16.output_bytes()),
            (2, 2),
            "bf16 in, bf16 out"
        );
        assert_eq!((Fp8E4m3.input_bytes(), Fp8E4m3.output_bytes()), (1, 2));
        assert_eq!((Int8.input_bytes(), Int8.output_bytes()), (1, 4));
        let names: Vec<_> = LtPrecision::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["bf16", "fp8-e4m3", "int8"]);
    }

    #[test]
    fn operand_bytes_follow_the_shape() {
        let bytes = check_shape(LtPrecision::Int8, 8, 3, 12).unwrap();
        assert_eq!(
            bytes,
            LtOperandBytes {
                a: 96,
                b: 36,
                d: 96
            }
        );
        let bytes = check_shape(LtPrecision::Fp8E4m3, 16, 5, 32).unwrap();
        assert_eq!(
            bytes,
            LtOperandBytes {
                a: 512,
                b: 160,
                d: 160
            }
        );
        let bytes = check_shape(LtPrecision::Bf16, 3, 5, 7).unwrap();
        assert_eq!(
            bytes,
            LtOperandBytes {
                a: 42,
                b: 70,
                d: 30
            }
        );
    }

    #[test]
    fn shapes_cublaslt_cannot_run_are_rejected() {
        let rejected = |p, m, n, k| match check_shape(p, m, n, k) {
            Err(GpuError::LtUnsupported { reason, .. }) => reason,
            other => panic!("{p} {m}x{n}x{k} accepted: {other:?}"),
        };
        assert!(rejected(LtPrecision::Int8, 64, 64, 30)
            .contains("k (lda = ldb) must be a multiple of 4"));
        assert!(rejected(LtPrecision::Int8, 62, 64, 64)
            .contains("m (ldc = ldd) must be a multiple of 4"));
        assert!(rejected(LtPrecision::Fp8E4m3, 64, 64, 40).contains("multiple of 16"));
        assert!(rejected(LtPrecision::Fp8E4m3, 40, 64, 64).contains("multiple of 16"));
        assert!(rejected(LtPrecision::Bf16, 0, 64, 64).contains("at least 1"));
        assert!(rejected(LtPrecision::Bf16, usize::MAX / 2, 1, 4).contains("overflows"));
        // n is no leading dimension: any n is fine.
        assert!(check_shape(LtPrecision::Int8, 64, 7, 64).is_ok());
        assert!(check_shape(LtPrecision::Fp8E4m3, 64, 3, 64).is_ok());
        let err = check_shape(LtPrecision::Int8, 64, 64, 30)
            .unwrap_err()
            .to_string();
        assert!(err.contains("int8") && err.contains("k=30"), "{err}");
    }

    /// Without libcublasLt (or without a driver) every entry point reports it; nothing panics.
    #[test]
    fn missing_library_is_an_error_not_a_panic() {
        // SAFETY: only probes for the library.
        let present = unsafe { sys::is_culib_present() };
        match ensure_cublaslt() {
            Ok(()) => assert!(present),
            Err(err) => {
                assert!(!present && matches!(err, GpuError::NoCublasLt), "{err}");
                assert!(err.to_string().contains("libcublasLt"));
            }
        }
        if let Ok(gpu) = Gpu::open(0) {
            match gpu.cublaslt() {
                Err(err) => assert!(!present && matches!(err, GpuError::NoCublasLt), "{err}"),
                Ok(lt) => assert!(lt.plan(&gpu, LtPrecision::Int8, 64, 64, 30).is_err()),
            }
        }
    }

    /// Small integers are exact in bf16, fp8 e4m3 and i8, and so are their dot products over
    /// k = 64 (|sum| <= 256), so every precision must reproduce the host product exactly. m != n
    /// and asymmetric inputs make a transposed or swapped operand show as a mismatch; D is
    /// poisoned first (bf16 NaN pairs, an impossible i32) so a GEMM that writes nothing fails.
    #[test]
    #[ignore = "needs a CUDA GPU and libcublasLt"]
    fn small_gemms_match_the_host() {
        let gpu = Gpu::open(0).expect("this test needs a CUDA GPU");
        let lt = gpu.cublaslt().expect("this test needs libcublasLt");
        let (m, n, k) = (64usize, 48usize, 64usize);
        let value = |i: usize, salt: usize| ((i * 7 + salt * 3 + i / 5) % 5) as i32 - 2;
        let a: Vec<i32> = (0..m * k).map(|i| value(i, 1)).collect(); // row-major m x k
        let b: Vec<i32> = (0..k * n).map(|i| value(i, 2)).collect(); // column-major k x n
        let (major, minor) = gpu.info().compute_capability;
        for precision in LtPrecision::ALL {
            if precision == LtPrecision::Fp8E4m3 && (major, minor) < (8, 9) {
                continue;
            }
            let encode = |v: &[i32]| -> Vec<u8> {
                v.iter()
                    .flat_map(|&x| match precision {
                        LtPrecision::Bf16 => half::bf16::from_f32(x as f32).to_le_bytes().to_vec(),
                        // e4m3: sign, 4 exponent bits (bias 7), 3 mantissa bits: 1.0 = 0x38.
                        LtPrecision::Fp8E4m3 => {
                            let mag = [0x00u8, 0x38, 0x40][x.unsigned_abs() as usize];
                            vec![if x < 0 { mag | 0x80 } else { mag }]
                        }
                        LtPrecision::Int8 => vec![x as i8 as u8],
                    })
                    .collect()
            };
            let mut plan = lt.plan(&gpu, precision, m, n, k).expect("plan");
            let da = gpu.upload(&encode(&a)).unwrap();
            let db = gpu.upload(&encode(&b)).unwrap();
            let mut dd = gpu.alloc::<u8>(plan.operand_bytes().d).unwrap();
            gpu.memset_u32(&mut dd, 0x7fc0_7fc0).unwrap();
            plan.run(&gpu, &da, &db, &mut dd).expect("run");
            let out = gpu.download(&dd).unwrap();
            for j in 0..n {
                for i in 0..m {
                    let want: i32 = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
                    let at = i + j * m;
                    let got = match precision {
                        LtPrecision::Int8 => f64::from(i32::from_le_bytes(
                            out[4 * at..4 * at + 4].try_into().unwrap(),
                        )),
                        _ => f64::from(
                            half::bf16::from_le_bytes([out[2 * at], out[2 * at + 1]]).to_f32(),
                        ),
                    };
                    assert_eq!(got, f64::from(want), "{precision} D[{i},{j}]");
                }
            }
            let mut short = gpu.alloc::<u8>(plan.operand_bytes().d - 1).unwrap();
            assert!(matches!(
                plan.run(&gpu, &da, &db, &mut short),
                Err(GpuError::LtArgument(_))
            ));
        }
    }
}
