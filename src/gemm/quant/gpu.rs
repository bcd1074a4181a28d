//! The GPU quantizer: launches of `kernels/gemm/quantize.cu`, bit-exact with [`super`] (the CPU
//! quantizer).
//!
//! - per-tensor: `gemm_amax_bf16` (partial maxima, one per CTA) then
//!   `gemm_quantize_tensor_<fmt>` (every CTA reduces the partials to the scale);
//! - per-token × per-channel: `gemm_quantize_tiles_<fmt>`, one CTA per row;
//! - block-128: X with `gemm_quantize_1x128_<fmt>` (a warp per 1×128 group), W with
//!   `gemm_quantize_tiles_<fmt>` (a CTA per 128×128 block).

use anyhow::{ensure, Result};

use super::{scales_shape, Operand, QuantFormat, Quantized, Scheme, BLOCK};
use crate::gpu::{kernels, Buffer, Gpu, Kernel};

/// Threads per CTA of every quantization kernel.
pub const BLOCK_THREADS: u32 = 256;
/// Most partial maxima of a per-tensor amax (the amax kernel's grid).
pub const AMAX_MAX_GRID: usize = 1024;
/// Elements per thread below which the amax grid shrinks.
const AMAX_ELEMENTS_PER_THREAD: usize = 16;
/// 1×128 groups per CTA of `gemm_quantize_1x128_<fmt>` (a warp each).
const GROUPS_PER_1X128_CTA: usize = BLOCK_THREADS as usize / 32;

/// Every kernel of `kernels/gemm/quantize.cu`, for the embedded-kernel checks.
pub fn kernel_names() -> Vec<String> {
    let mut names = vec!["gemm_amax_bf16".to_string()];
    for kind in ["tensor", "tiles", "1x128"] {
        names.extend(
            QuantFormat::ALL
                .iter()
                .map(|f| format!("gemm_quantize_{kind}_{f}")),
        );
    }
    names
}

enum Plan {
    Tensor {
        amax: Kernel,
        amax_grid: u32,
        quantize: Kernel,
        grid: u32,
    },
    Tiles {
        kernel: Kernel,
        tile_rows: i32,
        tile_cols: i32,
        grid: u32,
    },
    Groups1x128 {
        kernel: Kernel,
        grid: u32,
    },
}

/// The launches that quantize one `rows x cols` bf16 operand on the device.
pub struct GpuQuantizer {
    pub rows: usize,
    pub cols: usize,
    pub role: Operand,
    pub format: QuantFormat,
    pub scheme: Scheme,
    plan: Plan,
}

fn grid(blocks: usize) -> Result<u32> {
    ensure!(
        blocks <= i32::MAX as usize,
        "quantize: {blocks} CTAs exceed the grid limit"
    );
    Ok(blocks.max(1) as u32)
}

impl GpuQuantizer {
    pub fn new(
        gpu: &Gpu,
        rows: usize,
        cols: usize,
        role: Operand,
        format: QuantFormat,
        scheme: Scheme,
    ) -> Result<GpuQuantizer> {
        ensure!(
            rows <= i32::MAX as usize && cols <= i32::MAX as usize,
            "quantize: {rows}x{cols} needs 32-bit row and column counts"
        );
        let n = rows * cols;
        let plan = match (scheme, role) {
            (Scheme::PerTensor, _) => {
                let quantize = gpu.kernel_by_name(&format!("gemm_quantize_tensor_{format}"))?;
                let chunks = n.div_ceil(4).div_ceil(BLOCK_THREADS as usize);
                let resident = quantize.resident_grid(BLOCK_THREADS, 0)? as usize;
                let per_cta = BLOCK_THREADS as usize * AMAX_ELEMENTS_PER_THREAD;
                Plan::Tensor {
                    amax: gpu.kernel(kernels::GEMM_AMAX_BF16)?,
                    amax_grid: grid(n.div_ceil(per_cta).clamp(1, AMAX_MAX_GRID))?,
                    grid: grid(chunks.min(resident))?,
                    quantize,
                }
            }
            (Scheme::Block128, Operand::Activation) => Plan::Groups1x128 {
                kernel: gpu.kernel_by_name(&format!("gemm_quantize_1x128_{format}"))?,
                grid: grid((rows * cols.div_ceil(BLOCK)).div_ceil(GROUPS_PER_1X128_CTA))?,
            },
            _ => {
                let (tile_rows, tile_cols) = scheme.group(role, rows, cols);
                let (down, across) = scales_shape(scheme, role, rows, cols);
                Plan::Tiles {
                    kernel: gpu.kernel_by_name(&format!("gemm_quantize_tiles_{format}"))?,
                    tile_rows: tile_rows as i32,
                    tile_cols: tile_cols as i32,
                    grid: grid(down * across)?,
                }
            }
        };
        Ok(GpuQuantizer {
            rows,
            cols,
            role,
            format,
            scheme,
            plan,
        })
    }

    /// Bytes of quantized data (one per element).
    pub fn data_len(&self) -> usize {
        self.rows * self.cols
    }

    /// f32 scales, in the layout of [`Quantized::scales`].
    pub fn scales_len(&self) -> usize {
        let (down, across) = scales_shape(self.scheme, self.role, self.rows, self.cols);
        down * across
    }

    /// f32 scratch the launches need (the per-tensor partial maxima; else none).
    pub fn scratch_len(&self) -> usize {
        match self.plan {
            Plan::Tensor { amax_grid, .. } => amax_grid as usize,
            _ => 0,
        }
    }

    /// The kernels [`GpuQuantizer::enqueue`] launches, in order.
    pub fn kernels(&self) -> Vec<&str> {
        match &self.plan {
            Plan::Tensor { amax, quantize, .. } => vec![amax.name(), quantize.name()],
            Plan::Tiles { kernel, .. } | Plan::Groups1x128 { kernel, .. } => vec![kernel.name()],
        }
    }

    /// Enqueues the quantization of `x` (`[rows][cols]` bf16 bit patterns) into `data` and
    /// `scales`, using `scratch`; each at least as long as its `*_len`.
    pub fn enqueue(
        &self,
        gpu: &Gpu,
        x: &Buffer<u16>,
        data: &mut Buffer<u8>,
        scales: &mut Buffer<f32>,
        scratch: &mut Buffer<f32>,
    ) -> Result<()> {
        ensure!(
            x.len() >= self.data_len()
                && data.len() >= self.data_len()
                && scales.len() >= self.scales_len()
                && scratch.len() >= self.scratch_len(),
            "quantize: buffers shorter than a {}x{} operand needs",
            self.rows,
            self.cols
        );
        if self.data_len() == 0 && self.scheme != Scheme::PerTensor {
            return Ok(()); // no groups, no scales
        }
        let (rows, cols) = (self.rows as i32, self.cols as i32);
        let (data, scales): (&Buffer<u8>, &Buffer<f32>) = (data, scales);
        match &self.plan {
            Plan::Tensor {
                amax,
                amax_grid,
                quantize,
                grid,
            } => {
                let n = self.data_len() as i64;
                let partials = *amax_grid as i32;
                // SAFETY: gemm_amax_bf16(x, n, partials[grid]): x holds n elements, scratch
                // amax_grid floats (checked above).
                unsafe {
                    gpu.launch(amax).buffer(x).value(&n).buffer(scratch).run(
                        *amax_grid,
                        BLOCK_THREADS,
                        0,
                    )?;
                }
                // SAFETY: gemm_quantize_tensor_<fmt>(x, n, partials, num_partials, out, scale):
                // n elements in and out, amax_grid partials, one scale (lengths checked above).
                unsafe {
                    gpu.launch(quantize)
                        .buffer(x)
                        .value(&n)
                        .buffer(scratch)
                        .value(&partials)
                        .buffer(data)
                        .buffer(scales)
                        .run(*grid, BLOCK_THREADS, 0)?;
                }
            }
            Plan::Tiles {
                kernel,
                tile_rows,
                tile_cols,
                grid,
            } => {
                // SAFETY: gemm_quantize_tiles_<fmt>(x, rows, cols, tile_rows, tile_cols, out,
                // scales): one CTA per group, grid = groups = scales_len (lengths checked above).
                unsafe {
                    gpu.launch(kernel)
                        .buffer(x)
                        .value(&rows)
                        .value(&cols)
                        .value(tile_rows)
                        .value(tile_cols)
                        .buffer(data)
                        .buffer(scales)
                        .run(*grid, BLOCK_THREADS, 0)?;
                }
            }
            Plan::Groups1x128 { kernel, grid } => {
                // SAFETY: gemm_quantize_1x128_<fmt>(x, rows, cols, out, scales): warps past the
                // last group return; scales holds rows * ceil(cols / 128) (checked above).
                unsafe {
                    gpu.launch(kernel)
                        .buffer(x)
                        .value(&rows)
                        .value(&cols)
                        .buffer(data)
                        .buffer(scales)
                        .run(*grid, BLOCK_THREADS, 0)?;
                }
            }
        }
        Ok(())
    }
}

/// Quantizes `x` (`[rows][cols]` bf16 bit patterns) on the device: the codes and scales stay
/// there (for kernels to read) and come back as a [`Quantized`] too (for references).
pub fn quantize_to_device(
    gpu: &Gpu,
    x: &[u16],
    rows: usize,
    cols: usize,
    role: Operand,
    format: QuantFormat,
    scheme: Scheme,
) -> Result<(Buffer<u8>, Buffer<f32>, Quantized)> {
    let q = GpuQuantizer::new(gpu, rows, cols, role, format, scheme)?;
    let x_d = gpu.upload(x)?;
    // At least one element each: a zero-sized allocation is an error, an unused byte is not.
    let mut data = gpu.alloc::<u8>(q.data_len().max(1))?;
    let mut scales = gpu.alloc::<f32>(q.scales_len().max(1))?;
    let mut scratch = gpu.alloc::<f32>(q.scratch_len().max(1))?;
    q.enqueue(gpu, &x_d, &mut data, &mut scales, &mut scratch)?;
    let mut codes = gpu.download(&data)?;
    codes.truncate(q.data_len());
    let mut host_scales = gpu.download(&scales)?;
    host_scales.truncate(q.scales_len());
    let quantized = Quantized {
        format,
        scheme,
        role,
        rows,
        cols,
        data: codes,
        scales: host_scales,
    };
    Ok((data, scales, quantized))
}

/// Quantizes `x` (`[rows][cols]`) on the device and brings the result back: the GPU twin of
/// [`super::quantize`] on `x` widened to f32.
pub fn quantize_on_gpu(
    gpu: &Gpu,
    x: &[half::bf16],
    rows: usize,
    cols: usize,
    role: Operand,
    format: QuantFormat,
    scheme: Scheme,
) -> Result<Quantized> {
    let bits: Vec<u16> = x.iter().map(|v| v.to_bits()).collect();
    Ok(quantize_to_device(gpu, &bits, rows, cols, role, format, scheme)?.2)
}
