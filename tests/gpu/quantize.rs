//! GPU tests of the quantization kernels (kernels/gemm/quantize.cu; run on a GPU:
//! `cargo test -- --ignored`). Every format × scheme × operand on odd and aligned shapes, on
//! Gaussian, outlier, tiny (subnormal scales), huge, tied and all-zero inputs, into outputs
//! pre-filled with poison (twice, with two patterns, so an unwritten byte cannot pass by
//! chance), followed by guard elements that must stay untouched. Codes and scales must equal the
//! CPU quantizer's (src/gemm/quant/mod.rs) bit for bit.

use half::bf16;
use roofbench::gemm::accuracy::{gaussian, outliers, weights};
use roofbench::gemm::quant::gpu::{kernel_names, quantize_on_gpu, GpuQuantizer};
use roofbench::gemm::quant::{quantize, round_bf16, Operand, QuantFormat, Scheme};
use roofbench::gpu::Gpu;

/// Elements after each output that no launch may touch.
const GUARD: usize = 64;
/// (data byte, scale bits): 0xFF is NaN in both FP8 formats and -1 in INT8; 0x80 is -0 in FP8
/// and -128 in INT8, which the quantizer never writes. The scale poisons are two NaNs.
const POISONS: [(u8, u32); 2] = [(0xFF, 0xFFFF_FFFF), (0x80, 0x7FC0_1234)];

fn gpu() -> Gpu {
    Gpu::open(0).expect("these tests need a CUDA GPU")
}

struct Input {
    name: String,
    rows: usize,
    cols: usize,
    x: Vec<f32>,
}

fn input(name: &str, rows: usize, cols: usize, x: Vec<f32>) -> Input {
    assert!(
        x.iter().all(|&v| v == round_bf16(v)),
        "{name}: BF16 values only"
    );
    Input {
        name: format!("{name} {rows}x{cols}"),
        rows,
        cols,
        x,
    }
}

/// Odd shapes (M = 1, 7, 33; K = 130, 257: the element-by-element path; N = 200, 129: partial
/// 128-row blocks) and aligned ones (K = 4096: 8-byte loads), on every kind of data.
fn inputs() -> Vec<Input> {
    let mut v = Vec::new();
    for (rows, cols) in [(1, 130), (7, 130), (33, 130), (7, 257), (33, 4096), (1, 4)] {
        v.push(input("gaussian", rows, cols, gaussian(rows, cols, 11)));
        v.push(input(
            "outliers",
            rows,
            cols,
            outliers(rows, cols, 12, &Default::default()),
        ));
    }
    for (rows, cols) in [(200, 130), (129, 257), (256, 512)] {
        v.push(input("weights", rows, cols, weights(rows, cols, 13)));
    }
    // Subnormal BF16 inputs give subnormal f32 scales (no flush to zero on either side); huge
    // ones scales near f32's top.
    let tiny: Vec<f32> = gaussian(7, 130, 14)
        .iter()
        .map(|z| round_bf16(z * 1e-39))
        .collect();
    v.push(input("tiny", 7, 130, tiny));
    let huge: Vec<f32> = gaussian(7, 130, 15)
        .iter()
        .map(|z| round_bf16(z * 1e37))
        .collect();
    v.push(input("huge", 7, 130, huge));
    // INT8 ties (scale 1 with amax 127), negative zeros, an all-zero row (scale 1).
    let mut ties = vec![
        127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 126.5, -127.0, -0.0,
    ];
    ties.resize(130, 0.0);
    ties.extend(std::iter::repeat_n(-0.0, 130));
    v.push(input("ties-and-zeros", 2, 130, ties));
    v.push(input("zeros", 3, 5, vec![0.0; 15]));
    v
}

/// The GPU's (codes, scale bits) for `input`, its outputs pre-filled with `poison`; panics if a
/// guard element changed.
fn run_gpu(
    gpu: &Gpu,
    i: &Input,
    role: Operand,
    format: QuantFormat,
    scheme: Scheme,
    (poison, poison_scale): (u8, u32),
) -> (Vec<u8>, Vec<u32>) {
    let q = GpuQuantizer::new(gpu, i.rows, i.cols, role, format, scheme).unwrap();
    let bits: Vec<u16> = i.x.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
    let x = gpu.upload(&bits).unwrap();
    let mut data = gpu.upload(&vec![poison; q.data_len() + GUARD]).unwrap();
    let scale_poison = f32::from_bits(poison_scale);
    let mut scales = gpu
        .upload(&vec![scale_poison; q.scales_len() + GUARD])
        .unwrap();
    let mut scratch = gpu.upload(&vec![f32::NAN; q.scratch_len()]).unwrap();
    q.enqueue(gpu, &x, &mut data, &mut scales, &mut scratch)
        .unwrap();
    let mut data = gpu.download(&data).unwrap();
    let mut scales: Vec<u32> = gpu
        .download(&scales)
        .unwrap()
        .iter()
        .map(|s| s.to_bits())
        .collect();
    let what = format!("{} {format} {scheme} {role:?}", i.name);
    assert!(
        data.split_off(q.data_len()).iter().all(|&b| b == poison),
        "{what}: wrote past the data"
    );
    assert!(
        scales
            .split_off(q.scales_len())
            .iter()
            .all(|&s| s == poison_scale),
        "{what}: wrote past the scales"
    );
    (data, scales)
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_quantizer_matches_the_cpu_bit_for_bit() {
    let gpu = gpu();
    let mut failures = Vec::new();
    for i in inputs() {
        for format in QuantFormat::ALL {
            for scheme in Scheme::ALL {
                for role in [Operand::Activation, Operand::Weight] {
                    let cpu = quantize(&i.x, i.rows, i.cols, role, format, scheme);
                    let cpu_scales: Vec<u32> = cpu.scales.iter().map(|s| s.to_bits()).collect();
                    for poison in POISONS {
                        let (data, scales) = run_gpu(&gpu, &i, role, format, scheme, poison);
                        let what = format!("{} {format} {scheme} {role:?}", i.name);
                        if let Some(e) = (0..data.len()).find(|&e| data[e] != cpu.data[e]) {
                            failures.push(format!(
                                "{what}: element {e} = {:#04x}, CPU {:#04x} (x = {})",
                                data[e], cpu.data[e], i.x[e]
                            ));
                        }
                        if let Some(g) = (0..scales.len()).find(|&g| scales[g] != cpu_scales[g]) {
                            failures.push(format!(
                                "{what}: scale {g} = {:e}, CPU {:e}",
                                f32::from_bits(scales[g]),
                                cpu.scales[g]
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A per-tensor amax over a grid of 1024 CTAs, each many elements: the maximum placed first,
/// last, or in the middle must be found wherever it is.
#[test]
#[ignore = "needs a CUDA GPU"]
fn per_tensor_amax_reduces_across_the_whole_grid() {
    let gpu = gpu();
    let (rows, cols) = (2048, 4096 + 4);
    let base = gaussian(rows, cols, 21);
    for at in [0, rows * cols / 2 + 3, rows * cols - 1] {
        let mut x = base.clone();
        x[at] = -1000.0;
        let bits: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        for format in QuantFormat::ALL {
            let role = Operand::Activation;
            let got =
                quantize_on_gpu(&gpu, &bits, rows, cols, role, format, Scheme::PerTensor).unwrap();
            let want = quantize(&x, rows, cols, role, format, Scheme::PerTensor);
            assert_eq!(
                got.scales,
                vec![1000.0 / format.max_value()],
                "{format}, max at {at}"
            );
            assert!(got == want, "{format}, max at {at}: codes differ");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_quantize_kernel_is_launched_by_some_plan() {
    let gpu = gpu();
    let mut launched: Vec<String> = Vec::new();
    for format in QuantFormat::ALL {
        for scheme in Scheme::ALL {
            for role in [Operand::Activation, Operand::Weight] {
                let q = GpuQuantizer::new(&gpu, 7, 130, role, format, scheme).unwrap();
                launched.extend(q.kernels().iter().map(|k| k.to_string()));
            }
        }
    }
    let mut all = kernel_names();
    all.sort();
    launched.sort();
    launched.dedup();
    assert_eq!(launched, all);
}
