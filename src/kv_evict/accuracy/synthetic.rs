//! Structured synthetic attention: Gaussian q, K, V with a planted pattern per kind, stored as
//! bf16 (rounded as a bf16 cache would hold them).
//!
//! Logits are `q·k / sqrt(dim)`: iid N(0, 1) entries give logits of about N(0, 1), and each
//! pattern adds a margin stated in logits, whatever the dim:
//! - `heavy-hitters`: per kv head a direction `u` that every query of the group carries
//!   (amplitude `a`) and [`HEAVY_HITTERS`] random keys of the cache (anywhere) carry too: they
//!   score `a² / sqrt(dim)` = [`HEAVY_LOGIT`] above the rest for every query, so every
//!   score-based policy sees them, and only chance or position keeps them under Recent or Random;
//! - `recency`: per kv head a slowly varying latent `c_t` (AR(1), correlation
//!   `exp(-|i - t| / L)`, `L` = [`RECENCY_LENGTH`]) added to the query and the key of each
//!   position: a query at `i` scores key `t` about `R · exp(-|i - t| / L)` above the noise
//!   (`R` = [`RECENCY_LOGIT`]), so nearly all its mass lies within a few `L` of it. The noise
//!   of that dot product grows as `R / sqrt(dim)`; a large `R` and iid parts scaled by
//!   [`RECENCY_NOISE`] keep the tail of far keys negligible;
//! - `needle`: per kv head [`NEEDLES`] random keys in `[len/8, 3·len/8)` turn towards a
//!   direction `w` (a share [`NEEDLE_KEY_SHARE`] of their length, which stays that of a plain
//!   key) that ONLY the evaluation query (the last position) carries: it scores them about
//!   [`NEEDLE_LOGIT`] above the rest, so they hold most of its attention. An earlier query sees a
//!   needle as any other key (same norm, isotropic queries), so every policy ranks it as an
//!   ordinary key and it survives by chance or by position. This is the case of a question that
//!   arrives after the cache was compressed (query-agnostic compression, a later turn): SnapKV's
//!   observation window holds no trace of it either. Lying in the older half of the cache, a
//!   needle never survives Recent or StreamingLLM at budgets up to 50%;
//! - `gaussian`: nothing planted.

use anyhow::{Context, Result};
use rand::rngs::SmallRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::{check_shape, KvCapture};
use crate::numeric::{splitmix64_mix, Element};

/// Planted heavy hitters per kv head.
pub const HEAVY_HITTERS: usize = 8;
/// Logit margin of a heavy hitter over plain keys.
pub const HEAVY_LOGIT: f64 = 7.0;
/// Logit margin of a key at distance 0 in `recency` data.
pub const RECENCY_LOGIT: f64 = 20.0;
/// Tokens over which the recency margin falls by e.
pub const RECENCY_LENGTH: f64 = 32.0;
/// Scale of the iid part of q and k in `recency` data. The latent's own dot-product noise
/// already grows as `RECENCY_LOGIT / sqrt(dim)`; full-size iid parts would add cross terms of the
/// same order and let far keys steal visible mass at dim 64.
pub const RECENCY_NOISE: f64 = 0.5;
/// Needles per kv head.
pub const NEEDLES: usize = 2;
/// Logit margin of a needle for the evaluation query.
pub const NEEDLE_LOGIT: f64 = 10.0;
/// Share of a needle key's length along the needle direction.
pub const NEEDLE_KEY_SHARE: f64 = 0.9;

/// The kinds of structure [`synthetic`] plants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Synthetic {
    HeavyHitters,
    Recency,
    Needle,
    Gaussian,
}

impl Synthetic {
    pub const ALL: [Synthetic; 4] = [
        Synthetic::HeavyHitters,
        Synthetic::Recency,
        Synthetic::Needle,
        Synthetic::Gaussian,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Synthetic::HeavyHitters => "heavy-hitters",
            Synthetic::Recency => "recency",
            Synthetic::Needle => "needle",
            Synthetic::Gaussian => "gaussian",
        }
    }

    pub fn parse(s: &str) -> Result<Synthetic> {
        Synthetic::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .with_context(|| {
                let names: Vec<&str> = Synthetic::ALL.iter().map(|k| k.name()).collect();
                format!("unknown synthetic data `{s}`: one of {}", names.join(", "))
            })
    }
}

/// Values per parallel chunk of the bulk passes.
const CHUNK: usize = 1 << 14;

/// What a capture's random streams draw.
#[derive(Clone, Copy)]
enum Stream {
    Q,
    K,
    V,
    Structure,
}

/// The generator of `chunk` of `stream` of the capture seeded by `seed`: every (seed, stream,
/// chunk) gets its own, so q, k and v share no numbers, nor do captures of neighbouring seeds.
/// Small generators: the noise of a 4096-token capture is tens of millions of values.
fn stream_rng(seed: u64, stream: Stream, chunk: usize) -> SmallRng {
    let tag = ((stream as u64) << 32) | chunk as u64;
    SmallRng::seed_from_u64(splitmix64_mix(seed ^ splitmix64_mix(tag)))
}

/// `n` iid N(0, 1) values of `stream`, in parallel chunks.
fn gaussian(seed: u64, stream: Stream, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let mut rng = stream_rng(seed, stream, c);
            chunk
                .iter_mut()
                .for_each(|x| *x = rng.sample(StandardNormal));
        });
    out
}

/// A uniformly random unit vector.
fn direction(rng: &mut impl Rng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// `y += a x`.
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

impl KvCapture {
    fn query_mut(&mut self, pos: usize, head: usize) -> &mut [f32] {
        let d = self.dim;
        &mut self.q[(pos * self.q_heads + head) * d..][..d]
    }

    fn key_mut(&mut self, pos: usize, g: usize) -> &mut [f32] {
        let d = self.dim;
        &mut self.k[(pos * self.kv_heads + g) * d..][..d]
    }

    /// Adds `a x` to the queries of kv head `g`'s q heads at `pos`.
    fn add_to_group_queries(&mut self, pos: usize, g: usize, a: f32, x: &[f32]) {
        for h in g * self.group()..(g + 1) * self.group() {
            axpy(self.query_mut(pos, h), a, x);
        }
    }
}

fn plant_heavy_hitters(c: &mut KvCapture, rng: &mut impl Rng) {
    let a = (HEAVY_LOGIT * (c.dim as f64).sqrt()).sqrt() as f32;
    for g in 0..c.kv_heads {
        let u = direction(rng, c.dim);
        for pos in 0..c.len {
            c.add_to_group_queries(pos, g, a, &u);
        }
        for t in sample(rng, c.cache_len(), HEAVY_HITTERS.min(c.cache_len())) {
            axpy(c.key_mut(t, g), a, &u);
        }
    }
}

fn add_recency(c: &mut KvCapture, rng: &mut impl Rng) {
    // q_i·k_t ≈ a² c_i·c_t ≈ a² dim ρ^|i-t|, and the logit divides by sqrt(dim).
    let a = (RECENCY_LOGIT / (c.dim as f64).sqrt()).sqrt() as f32;
    let rho = (-1.0 / RECENCY_LENGTH).exp() as f32;
    let innovation = (1.0 - rho * rho).sqrt();
    for x in c.q.iter_mut().chain(c.k.iter_mut()) {
        *x *= RECENCY_NOISE as f32;
    }
    for g in 0..c.kv_heads {
        let mut latent: Vec<f32> = (0..c.dim).map(|_| rng.sample(StandardNormal)).collect();
        for pos in 0..c.len {
            if pos > 0 {
                for x in latent.iter_mut() {
                    *x = rho * *x + innovation * rng.sample::<f32, _>(StandardNormal);
                }
            }
            axpy(c.key_mut(pos, g), a, &latent);
            c.add_to_group_queries(pos, g, a, &latent);
        }
    }
}

fn plant_needles(c: &mut KvCapture, rng: &mut impl Rng) {
    let share = NEEDLE_KEY_SHARE as f32;
    let along = share * (c.dim as f32).sqrt();
    let a = (NEEDLE_LOGIT / NEEDLE_KEY_SHARE) as f32;
    let (start, end) = (c.len / 8, (3 * c.len / 8).max(c.len / 8 + 1));
    for g in 0..c.kv_heads {
        let w = direction(rng, c.dim);
        c.add_to_group_queries(c.len - 1, g, a, &w);
        for t in sample(rng, end - start, NEEDLES.min(end - start)) {
            let key = c.key_mut(start + t, g);
            key.iter_mut()
                .for_each(|k| *k *= (1.0 - share * share).sqrt());
            axpy(key, along, &w);
            c.needles.push((g, start + t));
        }
    }
    c.needles.sort_unstable();
}

/// Rounds `values` to what a bf16 cache holds, in parallel.
fn round_to_bf16(values: &mut [f32]) {
    values.par_chunks_mut(CHUNK).for_each(|chunk| {
        let rounded = Element::Bf16.decode_all(&Element::Bf16.encode(chunk));
        chunk.copy_from_slice(&rounded);
    });
}

/// A capture of `kind` (see the module header), reproducible from `seed`.
pub fn synthetic(
    kind: Synthetic,
    q_heads: usize,
    kv_heads: usize,
    dim: usize,
    len: usize,
    seed: u64,
) -> Result<KvCapture> {
    check_shape(q_heads, kv_heads, dim, len)?;
    let mut c = KvCapture {
        q_heads,
        kv_heads,
        dim,
        len,
        q: gaussian(seed, Stream::Q, len * q_heads * dim),
        k: gaussian(seed, Stream::K, len * kv_heads * dim),
        v: gaussian(seed, Stream::V, len * kv_heads * dim),
        needles: Vec::new(),
    };
    let mut rng = stream_rng(seed, Stream::Structure, 0);
    match kind {
        Synthetic::HeavyHitters => plant_heavy_hitters(&mut c, &mut rng),
        Synthetic::Recency => add_recency(&mut c, &mut rng),
        Synthetic::Needle => plant_needles(&mut c, &mut rng),
        Synthetic::Gaussian => {}
    }
    for values in [&mut c.q, &mut c.k, &mut c.v] {
        round_to_bf16(values);
    }
    Ok(c)
}
