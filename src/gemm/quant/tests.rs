use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::*;

/// `n` BF16 values N(0, 1) times 10^U(-4, 3): a dynamic range that reaches FP8's subnormals
/// and INT8's zero, with a few exact ties.
fn wide_bf16(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let z: f32 = rng.sample(StandardNormal);
            round_bf16(z * 10f32.powf(rng.random_range(-4.0..3.0)))
        })
        .collect()
}

fn all_cases() -> impl Iterator<Item = (QuantFormat, Scheme, Operand)> {
    QuantFormat::ALL.into_iter().flat_map(|f| {
        Scheme::ALL.into_iter().flat_map(move |s| {
            [Operand::Activation, Operand::Weight]
                .into_iter()
                .map(move |r| (f, s, r))
        })
    })
}

/// The spacing of `format`'s values around |y| (below the normal range: the subnormal one).
fn spacing(format: QuantFormat, y: f32) -> f64 {
    let (min_exp, mantissa_bits) = match format {
        QuantFormat::E4m3 => (-6, 3),
        QuantFormat::E5m2 => (-14, 2),
        QuantFormat::Int8 => return 1.0,
    };
    let e = f64::from(y.abs()).log2().floor().max(f64::from(min_exp)) as i32;
    2f64.powi(e - mantissa_bits)
}

#[test]
fn round_trip_is_within_half_a_quantum() {
    let (rows, cols) = (150, 300); // partial groups along both edges
    let x = wide_bf16(rows * cols, 7);
    for (format, scheme, role) in all_cases() {
        let q = quantize(&x, rows, cols, role, format, scheme);
        let back = q.dequantize_f64();
        let mut worst = 0f64; // the largest error as a share of its bound
        for (i, (&v, &b)) in x.iter().zip(&back).enumerate() {
            let s = q.scale_at(i / cols, i % cols);
            // Rounding y to the format: half its spacing, times the scale; y = x / s itself
            // is rounded to f32 (2^-24 relative) and FP8 saturation may clip y a hair
            // above FMAX (covered by the same term).
            let bound = f64::from(s) * spacing(format, v / s) / 2.0 + f64::from(v.abs()) * 2e-7;
            let err = (f64::from(v) - b).abs();
            assert!(
                err <= bound,
                "{format} {scheme} {role:?}: {v} came back as {b} (scale {s}, bound {bound})"
            );
            worst = worst.max(err / bound);
        }
        // The bound is attained (nothing finer than the format is going on).
        assert!(worst > 0.9, "{format} {scheme} {role:?}: worst {worst}");
        // The f32 dequantization rounds the exact product once.
        for (d, e) in q.dequantize().iter().zip(&back) {
            assert!((f64::from(*d) - e).abs() <= e.abs() * 2f64.powi(-24));
        }
    }
}

#[test]
fn scales_by_hand_on_a_tiny_matrix() {
    let x = [1.0, -2.0, 0.5, 4.0, 0.0, -8.0];
    let q = |role, format, scheme| quantize(&x, 2, 3, role, format, scheme);
    let e4m3 = q(Operand::Activation, QuantFormat::E4m3, Scheme::PerTensor);
    assert_eq!(e4m3.scales, vec![8.0f32 / 448.0]);
    assert_eq!(e4m3.scales_shape(), (1, 1));
    // -8 / (8 / 448) = -448 exactly: the largest code; 1 / (1/56) = 56.
    assert_eq!(e4m3.dequantize()[5], -8.0);
    assert_eq!(QuantFormat::E4m3.decode(e4m3.data[0]), 56.0);
    let rows = q(
        Operand::Weight,
        QuantFormat::Int8,
        Scheme::PerTokenPerChannel,
    );
    assert_eq!(rows.scales, vec![2.0f32 / 127.0, 8.0f32 / 127.0]);
    // Row 0: 1 / (2/127) = 63.5 -> 64 (ties to even), -2 -> -127, 0.5 -> 31.75 -> 32.
    assert_eq!(rows.data[..3], [64, (-127i8) as u8, 32]);
    for role in [Operand::Activation, Operand::Weight] {
        let block = q(role, QuantFormat::E5m2, Scheme::Block128);
        let expected = match role {
            Operand::Activation => vec![2.0f32 / 57344.0, 8.0 / 57344.0],
            Operand::Weight => vec![8.0f32 / 57344.0],
        };
        assert_eq!(block.scales, expected, "{role:?}");
    }
    // 3 x 260 activations in 1x128 groups (the last 4 columns wide), 130 x 260 weights in
    // 128x128 blocks (2 x 3, the last row of blocks 2 rows high); one block all zeros.
    let (rows, cols) = (130, 260);
    let mut w = vec![0f32; rows * cols];
    for (bi, bj, amax) in [
        (0, 0, 3.0),
        (0, 1, 0.25),
        (0, 2, 6.0),
        (1, 0, 96.0),
        (1, 1, 1.5),
    ] {
        w[(bi * 128 + 1) * cols + bj * 128 + 2] = -amax;
        w[(bi * 128 + 1) * cols + bj * 128] = amax / 2.0;
    }
    let block = quantize(
        &w,
        rows,
        cols,
        Operand::Weight,
        QuantFormat::Int8,
        Scheme::Block128,
    );
    let s = |a: f32| a / 127.0;
    assert_eq!(block.scales_shape(), (2, 3));
    assert_eq!(
        block.scales,
        vec![s(3.0), s(0.25), s(6.0), s(96.0), s(1.5), 1.0]
    );
    let acts = quantize(
        &w[..3 * cols],
        3,
        cols,
        Operand::Activation,
        QuantFormat::Int8,
        Scheme::Block128,
    );
    assert_eq!(acts.scales_shape(), (3, 3));
    assert_eq!(acts.scales[3..6], [s(3.0), s(0.25), s(6.0)]);
    assert_eq!(acts.scales[..3], [1.0; 3]);
}

#[test]
fn partial_groups_take_the_amax_of_the_elements_they_hold() {
    for (rows, cols) in [(1, 1), (7, 127), (7, 128), (129, 130), (200, 257)] {
        let x = wide_bf16(rows * cols, (rows * cols) as u64);
        for (format, scheme, role) in all_cases() {
            let q = quantize(&x, rows, cols, role, format, scheme);
            let (gr, gc) = q.group();
            let (down, across) = q.scales_shape();
            assert_eq!(q.scales.len(), down * across);
            for (g, &scale) in q.scales.iter().enumerate() {
                let (r0, c0) = ((g / across) * gr, (g % across) * gc);
                let mut amax = 0f32;
                for r in r0..(r0 + gr).min(rows) {
                    for c in c0..(c0 + gc).min(cols) {
                        amax = amax.max(x[r * cols + c].abs());
                    }
                }
                assert_eq!(
                    scale,
                    amax / format.max_value(),
                    "{format} {scheme} {role:?} g{g}"
                );
            }
        }
    }
}

#[test]
fn int8_ties_round_to_even_and_minus_128_never_appears() {
    let x = [127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 126.5, -127.0];
    let q = quantize(
        &x,
        1,
        x.len(),
        Operand::Activation,
        QuantFormat::Int8,
        Scheme::PerTensor,
    );
    assert_eq!(q.scales, vec![1.0]);
    let codes: Vec<i8> = q.data.iter().map(|&b| b as i8).collect();
    assert_eq!(codes, [127, 0, 2, 2, 0, -2, -2, 4, 126, -127]);
    for y in [-127.5f32, -128.0, -1e9, f32::MIN] {
        assert_eq!(QuantFormat::Int8.encode(y) as i8, -127, "{y}");
    }
    assert_eq!(QuantFormat::Int8.encode(1e9) as i8, 127);
    let x = wide_bf16(64 * 300, 3);
    for scheme in Scheme::ALL {
        for role in [Operand::Activation, Operand::Weight] {
            let q = quantize(&x, 64, 300, role, QuantFormat::Int8, scheme);
            assert!(!q.data.contains(&0x80), "{scheme} {role:?}");
            let full_scale = q.data.iter().any(|&b| (b as i8).abs() == 127);
            assert!(full_scale, "{scheme} {role:?}: each amax maps to ±127");
        }
    }
}

#[test]
fn round_half_even_is_rusts_round_ties_even() {
    let mut rng = SmallRng::seed_from_u64(9);
    let halves = (-600..600).map(|i| i as f32 / 2.0);
    let edges = [
        4_194_303.5f32,
        4_194_304.5,
        8_388_607.5,
        8_388_608.0,
        8_388_609.0,
    ];
    let halves = halves.chain(edges).chain(edges.map(|e| -e));
    let randoms = (0..100_000).map(|_| f32::from_bits(rng.random::<u32>()));
    for y in halves.chain(randoms).filter(|y| y.is_finite()) {
        assert_eq!(round_half_even(y), y.round_ties_even(), "{y:e}");
    }
}

#[test]
fn all_zero_groups_get_scale_one_and_zero_codes() {
    let x = [0.0, -0.0, 0.0, 0.0, 0.0, -0.0];
    for (format, scheme, role) in all_cases() {
        let q = quantize(&x, 2, 3, role, format, scheme);
        assert!(q.scales.iter().all(|&s| s == 1.0), "{format} {scheme}");
        assert!(q.dequantize().iter().all(|&v| v == 0.0));
        // Zeros keep their sign in FP8 (0x80 is -0), as CUDA's conversion does.
        let expected: Vec<u8> = match format {
            QuantFormat::Int8 => vec![0; 6],
            _ => x
                .iter()
                .map(|v| if v.is_sign_negative() { 0x80 } else { 0 })
                .collect(),
        };
        assert_eq!(q.data, expected, "{format}");
    }
}

/// The code nearest to `y` among all finite codes, ties to the even code, saturating:
/// round to nearest even with .satfinite, from its definition.
fn nearest_code(format: QuantFormat, y: f32) -> u8 {
    let max = format.max_value();
    if y.abs() > max {
        return format.encode(max.copysign(y)); // only checked to be ±max below
    }
    let finite = (0..=255u8).filter(|&c| format.decode(c).is_finite());
    let mut best: Option<(u8, f64)> = None;
    for c in finite {
        let d = (f64::from(format.decode(c)) - f64::from(y)).abs();
        let better = match best {
            None => true,
            Some((b, bd)) => d < bd || (d == bd && c & 1 == 0 && b & 1 == 1),
        };
        if better {
            best = Some((c, d));
        }
    }
    let (code, _) = best.expect("there are finite codes");
    // Zero takes the sign of y, as every IEEE rounding does.
    if format.decode(code) == 0.0 {
        if y.is_sign_negative() {
            0x80
        } else {
            0
        }
    } else {
        code
    }
}

#[test]
fn fp8_codes_are_nearest_even_and_saturate_to_finite() {
    for format in [QuantFormat::E4m3, QuantFormat::E5m2] {
        let max = format.max_value();
        // Every BF16 value up to twice the range, and every midpoint between neighbouring
        // codes (exact ties) with the f32 values just beside it.
        let mut ys: Vec<f32> = (0..=u16::MAX)
            .map(|b| half::bf16::from_bits(b).to_f32())
            .filter(|v| v.is_finite() && v.abs() <= 2.0 * max)
            .collect();
        let mut values: Vec<f32> = (0..=255u8)
            .map(|c| format.decode(c))
            .filter(|v| v.is_finite() && *v >= 0.0)
            .collect();
        values.sort_by(f32::total_cmp);
        for pair in values.windows(2) {
            let mid = (pair[0] + pair[1]) / 2.0;
            for v in [mid, mid.next_up(), mid.next_down()] {
                ys.extend([v, -v]);
            }
        }
        for y in ys {
            let code = format.encode(y);
            if y.abs() > max {
                assert_eq!(
                    format.decode(code),
                    max.copysign(y),
                    "{format}: {y} saturates"
                );
            } else {
                assert_eq!(code, nearest_code(format, y), "{format}: {y}");
            }
        }
    }
}

#[test]
fn bf16_rounding_from_f64_is_single_and_nearest_even() {
    let mut rng = SmallRng::seed_from_u64(5);
    for _ in 0..100_000 {
        let v = f32::from_bits(rng.random::<u32>());
        if v.is_finite() {
            assert_eq!(
                round_bf16_f64(f64::from(v)),
                f64::from(round_bf16(v)),
                "{v:e}"
            );
        }
    }
    // Just above a tie in BF16's kept bits, by less than f32 can hold: rounds up. half's
    // from_f64 drops the low bits and rounds the "tie" to even (down).
    let v = 1.0 + 2f64.powi(-8) + 2f64.powi(-40);
    assert_eq!(round_bf16_f64(v), 1.0 + 2f64.powi(-7));
    assert_eq!(half::bf16::from_f64(v).to_f64(), 1.0);
    assert_eq!(round_bf16_f64(1.0 + 2f64.powi(-8)), 1.0);
    assert_eq!(round_bf16_f64(f64::MAX), f64::INFINITY);
    assert_eq!(round_bf16_f64(-3e38), f64::from(round_bf16(-3e38)));
}

#[test]
fn names_parse_back() {
    for f in QuantFormat::ALL {
        assert_eq!(QuantFormat::parse(f.name()).unwrap(), f);
    }
    for s in Scheme::ALL {
        assert_eq!(Scheme::parse(s.name()).unwrap(), s);
    }
    assert_eq!(Scheme::parse("token").unwrap(), Scheme::PerTokenPerChannel);
    assert_eq!(QuantFormat::parse("S8").unwrap(), QuantFormat::Int8);
    assert!(Scheme::parse("per-column").is_err());
    assert!(QuantFormat::parse("int4").is_err());
}
