//! A quantization case on the device: one BF16 operand turned into codes and scales by
//! [`GpuQuantizer`], timed as its own case (a pipeline pays it before every quantized GEMM of
//! activations), and verified bit for bit against the CPU quantizer.

use anyhow::Result;
use rand::Rng;

use super::gpu::GpuQuantizer;
use super::{quantize, Operand};
use crate::gemm::accuracy::weights;
use crate::gemm::config::GemmConfig;
use crate::gpu::{Buffer, Gpu, GpuResult};
use crate::suite::{Check, LaunchFn, Provider, Variant, Variants};

pub struct PreparedQuantize {
    quantizer: GpuQuantizer,
    values: Vec<f32>,
    input: Buffer<u16>,
    data: Buffer<u8>,
    scales: Buffer<f32>,
    scratch: Buffer<f32>,
}

/// Device bytes of a quantization case.
pub fn device_bytes(c: &GemmConfig, role: Operand) -> u64 {
    let (rows, cols) = c.quantized_operand(role);
    (rows * cols * 3) as u64 + c.scale_bytes(role) + 4 * super::gpu::AMAX_MAX_GRID as u64
}

impl PreparedQuantize {
    /// One operand's BF16 values; one variant, the GPU quantizer's kernels.
    pub fn prepare(gpu: &Gpu, c: &GemmConfig, role: Operand) -> Result<Variants<PreparedQuantize>> {
        let (rows, cols) = c.quantized_operand(role);
        let format = c.inputs.format().expect("validated: a quantized format");
        let scheme = c.scheme.expect("validated: a scheme");
        let seed = rand::rng().random();
        let values = match role {
            Operand::Activation => c.data.activations(rows, cols, seed, &c.outliers),
            Operand::Weight => weights(rows, cols, seed),
        };
        let quantizer = GpuQuantizer::new(gpu, rows, cols, role, format, scheme)?;
        let bits: Vec<u16> = values
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect();
        let variant = Variant::new(
            quantizer.kernels().join(" + "),
            Provider::Roofbench,
            |s: &mut PreparedQuantize, gpu| s.launch(gpu),
            PreparedQuantize::verify,
        );
        let state = PreparedQuantize {
            input: gpu.upload(&bits)?,
            data: gpu.alloc(quantizer.data_len().max(1))?,
            scales: gpu.alloc(quantizer.scales_len().max(1))?,
            scratch: gpu.alloc(quantizer.scratch_len().max(1))?,
            quantizer,
            values,
        };
        Ok(Variants::new(state, vec![variant]))
    }

    fn launch(&mut self, gpu: &Gpu) -> GpuResult<()> {
        self.quantizer
            .enqueue(
                gpu,
                &self.input,
                &mut self.data,
                &mut self.scales,
                &mut self.scratch,
            )
            .map_err(|e| crate::gpu::GpuError::InvalidArgument(format!("{e:#}")))
    }

    /// Codes poisoned with 0xff (NaN in E4M3 and E5M2, -1 in INT8) and scales with NaN, so an
    /// unwritten element fails; then every code and scale must equal the CPU quantizer's.
    fn verify(&mut self, gpu: &Gpu, launch: &mut LaunchFn<Self>) -> Result<Check> {
        gpu.memset_u32(&mut self.data, 0xffff_ffff)?;
        gpu.memset_u32(&mut self.scales, 0x7fc0_0000)?;
        launch(self, gpu)?;
        gpu.synchronize()?;
        let q = &self.quantizer;
        let want = quantize(&self.values, q.rows, q.cols, q.role, q.format, q.scheme);
        let data = gpu.download(&self.data)?;
        let scales = gpu.download(&self.scales)?;
        let code = (0..want.data.len()).find(|&i| data[i] != want.data[i]);
        let scale =
            (0..want.scales.len()).find(|&i| scales[i].to_bits() != want.scales[i].to_bits());
        let detail = match (code, scale) {
            (None, None) => format!(
                "{} codes and {} scales bit-exact with the CPU quantizer",
                want.data.len(),
                want.scales.len()
            ),
            (Some(i), _) => format!(
                "code [{}][{}] = {:#04x}, CPU {:#04x}",
                i / q.cols,
                i % q.cols,
                data[i],
                want.data[i]
            ),
            (None, Some(i)) => format!("scale {i} = {}, CPU {}", scales[i], want.scales[i]),
        };
        Ok(Check {
            passed: code.is_none() && scale.is_none(),
            max_rel_err: 0.0,
            detail,
            accuracy: None,
        })
    }
}
