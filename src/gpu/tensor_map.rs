//! TMA tensor maps (`CUtensorMap`): the descriptors from which Hopper's tensor memory
//! accelerator copies boxes of a global tensor into shared memory (`cp.async.bulk.tensor`).
//!
//! A map is encoded on the host by the driver (`cuTensorMapEncodeTiled`) and passed to a kernel
//! by value, as a `const __grid_constant__ CUtensorMap` parameter: [`TensorMap`] has the layout
//! of `CUtensorMap` (128 opaque bytes) and implements [`DeviceRepr`], so [`super::Launch::value`]
//! takes it. The map embeds the tensor's device address: re-encode it when the buffer changes.

use cudarc::driver::sys;

use super::{ensure_driver, DeviceRepr, GpuError, GpuResult};

/// Element types of the tensors roofbench describes with maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorMapElement {
    /// One byte (FP8 codes and INT8 as raw bytes: TMA only copies them).
    U8,
    Bf16,
}

impl TensorMapElement {
    pub fn bytes(self) -> u64 {
        match self {
            TensorMapElement::U8 => 1,
            TensorMapElement::Bf16 => 2,
        }
    }

    fn driver_type(self) -> sys::CUtensorMapDataType {
        match self {
            TensorMapElement::U8 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT8,
            TensorMapElement::Bf16 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
        }
    }
}

/// How TMA lays a box out in shared memory. With a swizzle of S bytes, the inner box
/// dimension spans at most S bytes, and 16-byte chunk c of box row r lands at chunk
/// `c ^ (r % (S / 16))` (within each S-byte row), which the kernel's reads (e.g. wgmma
/// descriptors) must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swizzle {
    None,
    B32,
    B64,
    B128,
}

impl Swizzle {
    /// The largest inner box extent in bytes the swizzle allows (None: no limit).
    pub fn span_bytes(self) -> Option<u64> {
        match self {
            Swizzle::None => None,
            Swizzle::B32 => Some(32),
            Swizzle::B64 => Some(64),
            Swizzle::B128 => Some(128),
        }
    }

    fn driver_swizzle(self) -> sys::CUtensorMapSwizzle {
        match self {
            Swizzle::None => sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_NONE,
            Swizzle::B32 => sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_32B,
            Swizzle::B64 => sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_64B,
            Swizzle::B128 => sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
        }
    }
}

/// A row-major 2-D tensor `[rows][cols]` read in `box_rows x box_cols` boxes. Boxes that reach
/// past the tensor's edge are filled with zeros (the map uses no out-of-bounds NaN fill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiled2d {
    pub element: TensorMapElement,
    pub rows: u64,
    pub cols: u64,
    /// Bytes from one row to the next (at least `cols * element bytes`).
    pub row_stride_bytes: u64,
    pub box_rows: u32,
    pub box_cols: u32,
    pub swizzle: Swizzle,
}

impl Tiled2d {
    /// The constraints `cuTensorMapEncodeTiled` documents, checked here so that a violation is
    /// reported by name instead of as CUDA_ERROR_INVALID_VALUE.
    pub fn validate(&self, address: u64) -> Result<(), String> {
        let bytes = self.element.bytes();
        if address % 16 != 0 {
            return Err(format!(
                "the tensor's address {address:#x} is not 16-byte aligned"
            ));
        }
        if self.rows == 0 || self.cols == 0 {
            return Err(format!(
                "an empty {}x{} tensor has no map (every dimension must be at least 1)",
                self.rows, self.cols
            ));
        }
        if self.rows > 1 << 32 || self.cols > 1 << 32 {
            return Err(format!(
                "{}x{}: dimensions are limited to 2^32",
                self.rows, self.cols
            ));
        }
        if self.row_stride_bytes % 16 != 0 || self.row_stride_bytes >= 1 << 40 {
            return Err(format!(
                "the row stride must be a multiple of 16 bytes below 2^40; got {} bytes",
                self.row_stride_bytes
            ));
        }
        if self.row_stride_bytes < self.cols * bytes {
            return Err(format!(
                "the row stride ({} bytes) is shorter than a row ({} bytes)",
                self.row_stride_bytes,
                self.cols * bytes
            ));
        }
        for (what, extent) in [("rows", self.box_rows), ("columns", self.box_cols)] {
            if extent == 0 || extent > 256 {
                return Err(format!("box {what} must be in 1..=256; got {extent}"));
            }
        }
        let box_row_bytes = u64::from(self.box_cols) * bytes;
        if box_row_bytes % 16 != 0 {
            return Err(format!(
                "a box row must be a multiple of 16 bytes; got {box_row_bytes}"
            ));
        }
        if let Some(span) = self.swizzle.span_bytes() {
            if box_row_bytes > span {
                return Err(format!(
                    "a box row of {box_row_bytes} bytes exceeds the {span}-byte swizzle span"
                ));
            }
        }
        Ok(())
    }

    /// Encodes the map of this tensor at device address `address`.
    pub fn encode(&self, address: u64) -> GpuResult<TensorMap> {
        self.validate(address)
            .map_err(|why| GpuError::InvalidArgument(format!("TMA tensor map: {why}")))?;
        ensure_driver()?;
        let global_dim = [self.cols, self.rows];
        let global_strides = [self.row_stride_bytes];
        let box_dim = [self.box_cols, self.box_rows];
        let element_strides = [1u32, 1];
        let mut map = TensorMap { opaque: [0; 16] };
        // SAFETY: `map` is a writable, suitably aligned CUtensorMap (same size and alignment);
        // the arrays hold `rank` (2) entries each, `rank - 1` for the strides. The address is only
        // recorded in the map, not dereferenced here.
        unsafe {
            sys::cuTensorMapEncodeTiled(
                (&mut map as *mut TensorMap).cast::<sys::CUtensorMap>(),
                self.element.driver_type(),
                2,
                address as *mut std::ffi::c_void,
                global_dim.as_ptr(),
                global_strides.as_ptr(),
                box_dim.as_ptr(),
                element_strides.as_ptr(),
                sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                self.swizzle.driver_swizzle(),
                sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        }
        .result()
        .map_err(|source| GpuError::Driver {
            call: "cuTensorMapEncodeTiled",
            source,
        })?;
        Ok(map)
    }
}

/// An encoded `CUtensorMap`, passed to kernels by value (`const __grid_constant__ CUtensorMap`).
/// CUDA 13's `cuda.h` declares the type 128-byte aligned (CUDA 12's: 64); the driver reads the
/// 128 bytes through the launch's parameter pointer, and the kernel's parameter layout is fixed
/// by the compiler, so only the size has to match.
#[repr(C, align(128))]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TensorMap {
    opaque: [u64; 16],
}

// SAFETY: plain bytes with the size (and alignment) of CUtensorMap, the kernel parameter type.
unsafe impl DeviceRepr for TensorMap {}

impl std::fmt::Debug for TensorMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TensorMap(..)")
    }
}

const _: () = assert!(std::mem::size_of::<TensorMap>() == std::mem::size_of::<sys::CUtensorMap>());
const _: () =
    assert!(std::mem::align_of::<TensorMap>() >= std::mem::align_of::<sys::CUtensorMap>());

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> Tiled2d {
        Tiled2d {
            element: TensorMapElement::U8,
            rows: 7,
            cols: 80,
            row_stride_bytes: 80,
            box_rows: 128,
            box_cols: 128,
            swizzle: Swizzle::B128,
        }
    }

    #[test]
    fn accepts_boxes_larger_than_the_tensor() {
        // M = 7 rows, K = 80: the box reaches past both edges; TMA fills zeros.
        assert_eq!(map().validate(0x1000), Ok(()));
        let bf16 = Tiled2d {
            element: TensorMapElement::Bf16,
            box_cols: 64,
            row_stride_bytes: 160,
            ..map()
        };
        assert_eq!(bf16.validate(0x1000), Ok(()));
    }

    #[test]
    fn rejects_what_the_driver_would() {
        let err = |m: Tiled2d, address| m.validate(address).unwrap_err();
        assert!(err(map(), 0x1008).contains("16-byte aligned"));
        assert!(err(
            Tiled2d {
                row_stride_bytes: 88,
                cols: 88,
                ..map()
            },
            0
        )
        .contains("multiple of 16 bytes"));
        assert!(err(Tiled2d { rows: 0, ..map() }, 0).contains("at least 1"));
        assert!(err(
            Tiled2d {
                box_rows: 257,
                ..map()
            },
            0
        )
        .contains("1..=256"));
        let wide = Tiled2d {
            element: TensorMapElement::Bf16,
            row_stride_bytes: 160,
            ..map()
        };
        assert!(err(wide, 0).contains("128-byte swizzle span"));
        assert!(err(
            Tiled2d {
                row_stride_bytes: 64,
                ..map()
            },
            0
        )
        .contains("shorter than a row"));
    }

    #[test]
    fn layout_matches_cu_tensor_map() {
        assert_eq!(std::mem::size_of::<TensorMap>(), 128);
    }
}
