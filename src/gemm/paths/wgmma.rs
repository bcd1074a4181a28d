//! The Hopper path (`kernels/gemm/wgmma.cu`, sm_90a): TMA loads into a multi-stage mbarrier
//! pipeline, warp-specialised warpgroup MMA (one producer warpgroup, two consumer warpgroups of
//! 64 rows each), a persistent grid walking 128xBN tiles in a grouped order, and an epilogue
//! staged through shared memory. The kernel file's header has the design.
//!
//! Two paths share the kernels:
//! - [`WgmmaPath::STANDARD`] (`wgmma`): BF16, and E4M3/E5M2/INT8 with any scheme; the per-tensor
//!   and per-token schemes run 128x256 tiles with the whole K sum in the tensor-core
//!   accumulators, block-128 runs 128x128 tiles that promote each 128-wide K block's scaled
//!   partial sum into f32 registers;
//! - [`WgmmaPath::PROMOTED`] (`wgmma-promoted`): E4M3 with per-tensor or per-token scales,
//!   promoting every 128 of K into f32 registers like block-128 does (128x128 tiles), to measure
//!   what the FP8 accumulator's precision costs and what promotion costs in speed.
//!
//! Constraints (TMA): X and W rows must be 16-byte multiples (`K * bytes % 16 == 0`) and start
//! 16-byte aligned; the device must be sm_90 (wgmma does not exist on sm_100). INT8 without
//! block scales accumulates all of K in int32, so K is limited to `mma::MAX_K_INT32`; INT8 with
//! block scales converts each 128-wide k-block's int32 partial to f32 with an integer add and a
//! float subtract, exact while the partial is within [`super::MAGIC_EXACT_BOUND`].

use anyhow::Result;

use super::{Arch, GemmLaunch, GemmPath, Inputs, Operands, Problem, ScaleMode};
use crate::gemm::quant::{QuantFormat, BLOCK};
use crate::gpu::tensor_map::{Swizzle, TensorMapElement, Tiled2d};
use crate::gpu::{Gpu, GpuResult, Kernel, TensorMap};

/// Threads per CTA: a producer warpgroup and two consumer warpgroups.
pub const THREADS: u32 = 384;
/// Rows of X per tile.
pub const BM: u32 = 128;
/// Bytes of K per pipeline stage and row: one 128-byte swizzle row (64 BF16 or 128 8-bit).
const ROW_BYTES: u32 = 128;
/// One consumer's epilogue staging buffer: 64 rows of 64 BF16 plus 16 bytes of padding.
const EPILOGUE_BYTES: u32 = 64 * (64 * 2 + 16);

/// A kernel's tile configuration: mirrors `Config<In, BN>` of `kernels/gemm/wgmma.cu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// Columns of W (outputs) per tile: 256, or 128 for the promoting kernels.
    pub bn: u32,
    pub stages: u32,
    /// Bytes per element of X and W.
    pub element_bytes: u32,
}

impl Tile {
    pub fn new(bn: u32, element_bytes: u32) -> Tile {
        Tile {
            bn,
            // 4 x 48 KiB or 6 x 32 KiB of stages: as many as fit beside the epilogue buffers.
            stages: if bn == 256 { 4 } else { 6 },
            element_bytes,
        }
    }

    /// K elements per stage.
    pub fn bk(&self) -> u32 {
        ROW_BYTES / self.element_bytes
    }

    /// Dynamic shared memory: the stages' X and W boxes, two epilogue buffers, a full and an
    /// empty mbarrier per stage, and 1024 bytes of slack for aligning the base.
    pub fn shared_bytes(&self) -> u32 {
        self.stages * (BM + self.bn) * ROW_BYTES + 2 * EPILOGUE_BYTES + 2 * self.stages * 8 + 1024
    }

    /// Output tiles of an `m x n` problem.
    pub fn tiles(&self, m: usize, n: usize) -> usize {
        m.div_ceil(BM as usize) * n.div_ceil(self.bn as usize)
    }

    /// The persistent grid: one CTA per SM, fewer when there are fewer tiles.
    pub fn grid(&self, m: usize, n: usize, sms: u32) -> u32 {
        self.tiles(m, n).min(sms as usize) as u32
    }
}

/// The kernel, and its tile, that computes a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub kernel: String,
    pub tile: Tile,
}

/// The kernels' name for a format.
fn format_tag(format: QuantFormat) -> &'static str {
    match format {
        QuantFormat::E4m3 => "e4m3",
        QuantFormat::E5m2 => "e5m2",
        QuantFormat::Int8 => "s8",
    }
}

/// Every kernel of `kernels/gemm/wgmma.cu` (both paths), for the embedded-kernel checks.
pub fn kernel_names() -> Vec<String> {
    let mut names = vec!["gemm_wgmma_bf16".to_string()];
    for format in QuantFormat::ALL {
        names.push(format!("gemm_wgmma_{}", format_tag(format)));
        names.push(format!("gemm_wgmma_{}_block128", format_tag(format)));
    }
    names.push("gemm_wgmma_e4m3_promoted".to_string());
    names
}

/// The wgmma GEMM path; see the module documentation for the two instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WgmmaPath {
    promoted: bool,
}

impl WgmmaPath {
    /// `wgmma`: every input but weight-only.
    pub const STANDARD: WgmmaPath = WgmmaPath { promoted: false };
    /// `wgmma-promoted`: E4M3, per-tensor or per-token scales, f32 promotion every 128 of K.
    pub const PROMOTED: WgmmaPath = WgmmaPath { promoted: true };

    /// The kernel for `problem`, or why the path cannot run it (without the arch check).
    pub fn variant(&self, problem: &Problem) -> std::result::Result<Variant, String> {
        let (m, n, k) = (problem.m, problem.n, problem.k);
        let format = match problem.inputs {
            Inputs::WeightOnly(_) => {
                return Err("weight-only GEMMs run on the small_m (M <= 64) and mma paths".into());
            }
            Inputs::Bf16 => None,
            Inputs::Quantized(format) => Some(format),
        };
        let mode = problem.scale_mode();
        if self.promoted
            && !(format == Some(QuantFormat::E4m3)
                && matches!(mode, ScaleMode::PerTensor | ScaleMode::PerTokenPerChannel))
        {
            return Err(format!(
                "the promoted path runs e4m3 inputs with per-tensor or per-token scales; got {} \
                 with scale mode {mode:?}",
                problem.inputs
            ));
        }
        let limit = i32::MAX as usize;
        if m > limit || n > limit || k > limit {
            return Err(format!(
                "M, N and K must fit in 32 bits (at most {limit}); got M = {m}, N = {n}, K = {k}"
            ));
        }
        if k == 0 {
            return Err("K must be at least 1 (TMA cannot describe an empty row)".into());
        }
        let bytes = problem.inputs.element_bytes().0;
        if (k * bytes) % 16 != 0 {
            return Err(format!(
                "K must be a multiple of {} for {} inputs (TMA needs 16-byte row strides); got \
                 K = {k}",
                16 / bytes,
                problem.inputs
            ));
        }
        // The kernels without block scales keep all of K in the wgmma accumulators (int32 for
        // INT8); the block-128 ones convert each k-block's int32 partial exactly.
        super::check_int8_accumulation(problem)?;
        let (kernel, tile) = match (format, mode) {
            (None, _) => ("gemm_wgmma_bf16".to_string(), Tile::new(256, 2)),
            (Some(f), ScaleMode::Block128) => (
                format!("gemm_wgmma_{}_block128", format_tag(f)),
                Tile::new(BLOCK as u32, 1),
            ),
            (Some(f), _) if self.promoted => (
                format!("gemm_wgmma_{}_promoted", format_tag(f)),
                Tile::new(128, 1),
            ),
            (Some(f), _) => (format!("gemm_wgmma_{}", format_tag(f)), Tile::new(256, 1)),
        };
        if tile.tiles(m, n) > limit {
            return Err(format!(
                "{m}x{n} has more than {limit} tiles of {BM}x{}",
                tile.bn
            ));
        }
        Ok(Variant { kernel, tile })
    }
}

impl GemmPath for WgmmaPath {
    fn name(&self) -> &'static str {
        if self.promoted {
            "wgmma-promoted"
        } else {
            "wgmma"
        }
    }

    fn kernel_names(&self) -> Vec<String> {
        if self.promoted {
            vec!["gemm_wgmma_e4m3_promoted".to_string()]
        } else {
            kernel_names()
                .into_iter()
                .filter(|name| !name.ends_with("_promoted"))
                .collect()
        }
    }

    fn supports(&self, problem: &Problem, arch: Arch) -> std::result::Result<(), String> {
        if arch != (9, 0) {
            return Err(format!(
                "needs sm_90a (Hopper); this device is sm_{}{}",
                arch.0, arch.1
            ));
        }
        self.variant(problem).map(|_| ())
    }

    fn prepare(&self, gpu: &Gpu, problem: &Problem) -> Result<Box<dyn GemmLaunch>> {
        self.supports(problem, gpu.info().compute_capability)
            .map_err(|why| anyhow::anyhow!("{} cannot run {problem:?}: {why}", self.name()))?;
        let variant = self.variant(problem).map_err(anyhow::Error::msg)?;
        let kernel = gpu.kernel_by_name(&variant.kernel)?;
        let shared = variant.tile.shared_bytes();
        kernel.allow_dynamic_shared(shared)?;
        let grid = variant.tile.grid(problem.m, problem.n, gpu.info().sms);
        Ok(Box::new(WgmmaLaunch {
            problem: *problem,
            tile: variant.tile,
            kernel,
            grid,
            shared,
            maps: None,
        }))
    }
}

/// Tensor maps of X and W, with the addresses they were encoded for.
struct Maps {
    x_address: u64,
    w_address: u64,
    x: TensorMap,
    w: TensorMap,
}

/// One prepared wgmma GEMM.
pub struct WgmmaLaunch {
    problem: Problem,
    tile: Tile,
    kernel: Kernel,
    grid: u32,
    shared: u32,
    maps: Option<Maps>,
}

impl WgmmaLaunch {
    /// The maps of a `rows x K` operand at `address`, read in `box_rows`-row boxes.
    fn operand_map(&self, address: u64, rows: usize, box_rows: u32) -> GpuResult<TensorMap> {
        let element = if self.tile.element_bytes == 2 {
            TensorMapElement::Bf16
        } else {
            TensorMapElement::U8
        };
        Tiled2d {
            element,
            rows: rows as u64,
            cols: self.problem.k as u64,
            row_stride_bytes: (self.problem.k * self.tile.element_bytes as usize) as u64,
            box_rows,
            box_cols: self.tile.bk(),
            swizzle: Swizzle::B128,
        }
        .encode(address)
    }
}

/// A null pointer argument.
const NULL: u64 = 0;

impl GemmLaunch for WgmmaLaunch {
    fn enqueue(&mut self, gpu: &Gpu, operands: &Operands) -> GpuResult<()> {
        if self.grid == 0 {
            return Ok(()); // M or N is 0: no output to write
        }
        self.problem.check_operands(operands)?;
        let (x_address, w_address) = (
            operands.x.device_address(gpu),
            operands.w.device_address(gpu),
        );
        let stale = self
            .maps
            .as_ref()
            .is_none_or(|m| m.x_address != x_address || m.w_address != w_address);
        if stale {
            self.maps = Some(Maps {
                x_address,
                w_address,
                x: self.operand_map(x_address, self.problem.m, BM)?,
                w: self.operand_map(w_address, self.problem.n, self.tile.bn)?,
            });
        }
        let maps = self.maps.as_ref().expect("encoded above");
        let p = &self.problem;
        let (m, n, k) = (p.m as i32, p.n as i32, p.k as i32);
        let mode = p.scale_mode() as i32;
        let mut launch = gpu.launch(&self.kernel);
        launch.value(&maps.x).value(&maps.w).buffer(operands.y);
        for scale in [operands.scale_x, operands.scale_w] {
            match scale {
                Some(b) if p.scale_mode() != ScaleMode::None => launch.buffer(b),
                _ => launch.value(&NULL),
            };
        }
        match operands.bias {
            Some(b) if p.bias => launch.buffer(b),
            _ => launch.value(&NULL),
        };
        launch.value(&m).value(&n).value(&k).value(&mode);
        // SAFETY: gemm_wgmma_*(tmap_x, tmap_w, y, scale_x, scale_w, bias, m, n, k, scale_mode):
        // the maps describe X [M][K] and W [N][K] inside their buffers, Y holds M x N, the
        // scales and bias what the scale mode reads (all checked above); the kernel writes only
        // Y[0..M][0..N]. Block 384 and `shared` bytes are the kernel's geometry (Tile).
        unsafe { launch.run(self.grid, THREADS, self.shared) }
    }

    fn describe(&self) -> String {
        format!(
            "wgmma {BM}x{}x{} {} stages, {} CTAs persistent ({})",
            self.tile.bn,
            self.tile.bk(),
            self.tile.stages,
            self.grid,
            self.kernel.name()
        )
    }

    fn accumulation(&self) -> super::Accumulation {
        kernel_accumulation(self.kernel.name())
    }
}

/// How the kernel `name` of this file accumulates: the FP8 kernels without promotion keep the
/// whole K sum in the wgmma accumulator; the others sum in f32 (or exactly, in int32).
pub fn kernel_accumulation(name: &str) -> super::Accumulation {
    let fp8 = name.contains("_e4m3") || name.contains("_e5m2");
    if fp8 && !name.ends_with("_promoted") && !name.ends_with("_block128") {
        super::Accumulation::HOPPER_FP8
    } else {
        super::Accumulation::F32
    }
}

#[cfg(test)]
mod tests;
