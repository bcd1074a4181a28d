//! Element formats of tensors on the device: their size, their encoding from and decoding to
//! f32 on the host (half and float8 crates: the same round-to-nearest-even, saturate-to-finite
//! conversions as CUDA's intrinsics), and their unit roundoff, from which test tolerances derive.

use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Element {
    F32,
    Bf16,
    Fp16,
    /// FP8 E4M3 (max 448, no infinities).
    E4m3,
    /// FP8 E5M2 (max 57344).
    E5m2,
}

impl Element {
    pub fn name(self) -> &'static str {
        match self {
            Element::F32 => "f32",
            Element::Bf16 => "bf16",
            Element::Fp16 => "fp16",
            Element::E4m3 => "e4m3",
            Element::E5m2 => "e5m2",
        }
    }

    pub fn parse(s: &str) -> Option<Element> {
        [
            Element::F32,
            Element::Bf16,
            Element::Fp16,
            Element::E4m3,
            Element::E5m2,
        ]
        .into_iter()
        .find(|e| {
            e.name() == s.to_ascii_lowercase()
                || (s.eq_ignore_ascii_case("f16") && *e == Element::Fp16)
        })
    }

    pub fn bytes(self) -> usize {
        match self {
            Element::F32 => 4,
            Element::Bf16 | Element::Fp16 => 2,
            Element::E4m3 | Element::E5m2 => 1,
        }
    }

    /// Unit roundoff u = 2^-p for p significand bits (half an ulp at 1.0, relative).
    pub fn unit_roundoff(self) -> f64 {
        let significand_bits = match self {
            Element::F32 => 24,
            Element::Bf16 => 8,
            Element::Fp16 => 11,
            Element::E4m3 => 4,
            Element::E5m2 => 3,
        };
        2f64.powi(-significand_bits)
    }

    /// Writes the encoding of `v` (rounded to nearest even, saturating FP8 to its finite range)
    /// into `dst`, exactly `self.bytes()` long.
    pub fn encode_to(self, v: f32, dst: &mut [u8]) {
        match self {
            Element::F32 => dst.copy_from_slice(&v.to_le_bytes()),
            Element::Bf16 => dst.copy_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
            Element::Fp16 => dst.copy_from_slice(&half::f16::from_f32(v).to_le_bytes()),
            Element::E4m3 => dst[0] = float8::F8E4M3::from_f32(v).to_bits(),
            Element::E5m2 => dst[0] = float8::F8E5M2::from_f32(v).to_bits(),
        }
    }

    /// Appends the encoding of `v`.
    pub fn encode_into(self, v: f32, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.bytes(), 0);
        self.encode_to(v, &mut out[start..]);
    }

    /// The value of element `i` of an encoded tensor.
    pub fn decode_at(self, bytes: &[u8], i: usize) -> f32 {
        self.decode(&bytes[i * self.bytes()..(i + 1) * self.bytes()])
    }

    /// Encodes every value.
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(values.len() * self.bytes());
        for &v in values {
            self.encode_into(v, &mut out);
        }
        out
    }

    /// The value stored in `bytes` (exactly `self.bytes()` long).
    pub fn decode(self, bytes: &[u8]) -> f32 {
        match self {
            Element::F32 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            Element::Bf16 => half::bf16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
            Element::Fp16 => half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(),
            Element::E4m3 => float8::F8E4M3::from_bits(bytes[0]).to_f32(),
            Element::E5m2 => float8::F8E5M2::from_bits(bytes[0]).to_f32(),
        }
    }

    /// Decodes a whole tensor.
    pub fn decode_all(self, bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(self.bytes())
            .map(|b| self.decode(b))
            .collect()
    }

    /// `v` rounded to this format (what storing and loading it gives).
    pub fn round(self, v: f32) -> f32 {
        let mut buf = [0u8; 4];
        let bytes = &mut buf[..self.bytes()];
        self.encode_to(v, bytes);
        self.decode(bytes)
    }
}

impl std::fmt::Display for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// SplitMix64's increment, 2^64 / φ: consecutive states differ by it, and it spreads small
/// indices across all 64 bits when used as a multiplier.
pub const SPLITMIX64_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijection of u64 that scatters nearby
/// inputs. Used bare as a hash where each GPU thread must compute its own value
/// (`kernels/kv_evict/select.cu` holds the device copy; the kv_evict suite's `policy=random`
/// verify cases check the two select the same tokens).
pub fn splitmix64_mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The SplitMix64 output from state `x`: the finaliser of `x + γ`, so 0 does not map to 0.
/// Seeds and per-chunk generators derive from it.
pub fn splitmix64(x: u64) -> u64 {
    splitmix64_mix(x.wrapping_add(SPLITMIX64_GAMMA))
}

/// `n` values uniform in [-1, 1), divided by `scale(i)` (FP8 stores value / scale) and encoded
/// in `e`. Parallel (chunks with their own seeded generator): the largest cases hold GBs of KV.
pub fn random_encoded(
    seed: u64,
    n: usize,
    e: Element,
    scale: impl Fn(usize) -> f32 + Sync,
) -> Vec<u8> {
    const CHUNK: usize = 1 << 16;
    let eb = e.bytes();
    let mut bytes = vec![0u8; n * eb];
    bytes
        .par_chunks_mut(CHUNK * eb)
        .enumerate()
        .for_each(|(c, chunk)| {
            let mut rng =
                rand::rngs::StdRng::seed_from_u64(seed ^ (c as u64).wrapping_mul(SPLITMIX64_GAMMA));
            for (k, dst) in chunk.chunks_exact_mut(eb).enumerate() {
                let v: f32 = rng.random_range(-1.0..1.0);
                e.encode_to(v / scale(c * CHUNK + k), dst);
            }
        });
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip_and_round_to_nearest() {
        for e in [
            Element::F32,
            Element::Bf16,
            Element::Fp16,
            Element::E4m3,
            Element::E5m2,
        ] {
            let v = [1.0f32, -0.375, 3.0, 0.0];
            let bytes = e.encode(&v);
            assert_eq!(bytes.len(), v.len() * e.bytes());
            assert_eq!(
                e.decode_all(&bytes),
                v,
                "{e}: exactly representable values survive"
            );
            let x = 1.0 + 0.3 * e.unit_roundoff() as f32;
            assert_eq!(e.round(x), 1.0, "{e}: under half an ulp rounds down");
        }
        assert_eq!(Element::E4m3.encode(&[1.0]), vec![0x38]);
        assert_eq!(
            Element::E4m3.round(1000.0),
            448.0,
            "e4m3 saturates to its largest finite value"
        );
        assert_eq!(Element::E5m2.round(1e6), 57344.0);
        assert_eq!(Element::parse("BF16"), Some(Element::Bf16));
        assert_eq!(Element::parse("f16"), Some(Element::Fp16));
        assert_eq!(Element::parse("int3"), None);
    }

    #[test]
    fn random_inputs_are_scaled_fresh_and_parallel_safe() {
        let a = random_encoded(1, 200_000, Element::E4m3, |_| 0.125);
        let stored = Element::E4m3.decode_all(&a);
        assert!(stored.iter().all(|v| v.abs() <= 8.0) && stored.iter().any(|v| v.abs() > 4.0));
        assert_eq!(
            a,
            random_encoded(1, 200_000, Element::E4m3, |_| 0.125),
            "seeded: reproducible"
        );
        assert_ne!(a, random_encoded(2, 200_000, Element::E4m3, |_| 0.125));
    }

    #[test]
    fn splitmix64_matches_the_reference_generator() {
        // The published SplitMix64 from state 0 outputs 0xe220a8397b1dcdaf, then 0x6e789e6aa1b965f4
        // (state advanced by γ); the bare finaliser fixes 0.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(SPLITMIX64_GAMMA), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(splitmix64_mix(0), 0);
        assert_eq!(splitmix64_mix(SPLITMIX64_GAMMA), splitmix64(0));
    }
}
