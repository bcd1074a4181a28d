//! Synthetic GEMM inputs, seeded and rounded to BF16 (the values a model's tensors hold):
//! - [`gaussian`]: iid N(0, 1) activations;
//! - [`outliers`]: LLM-like activations: iid N(0, 1) except a few channels (columns of X: 1% of
//!   K, at least one, at seeded positions) scaled by a factor uniform in [50, 100] each, in every
//!   token, as the systematic outlier features of LLM hidden states (LLM.int8(), SmoothQuant);
//! - [`weights`]: iid N(0, 1/K), so an output is about as large as an input activation.
//!
//! Generation is parallel over fixed chunks, each with its own generator, so a seed gives the
//! same matrix on any number of threads.

use anyhow::{bail, Result};
use rand::rngs::SmallRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::gemm::quant::round_bf16;
use crate::numeric::splitmix64;

/// Share of the columns of X that [`outliers`] scales (at least one column).
pub const OUTLIER_SHARE: f64 = 0.01;
/// Range of the outlier channels' scale factors.
pub const OUTLIER_FACTOR: (f32, f32) = (50.0, 100.0);

/// The activations a report row is computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    Gaussian,
    Outliers,
}

impl DataKind {
    pub const ALL: [DataKind; 2] = [DataKind::Gaussian, DataKind::Outliers];

    pub fn name(self) -> &'static str {
        match self {
            DataKind::Gaussian => "gaussian",
            DataKind::Outliers => "outliers",
        }
    }

    pub fn parse(s: &str) -> Result<DataKind> {
        let lower = s.trim().to_ascii_lowercase();
        match DataKind::ALL.into_iter().find(|d| d.name() == lower) {
            Some(d) => Ok(d),
            None => bail!("unknown data `{s}`: one of gaussian, outliers"),
        }
    }

    /// `[rows][cols]` activations of this kind.
    pub fn activations(self, rows: usize, cols: usize, seed: u64) -> Vec<f32> {
        match self {
            DataKind::Gaussian => gaussian(rows, cols, seed),
            DataKind::Outliers => outliers(rows, cols, seed),
        }
    }
}

/// `n` values `std * z`, z ~ N(0, 1), then `scale(i, value)`, rounded to BF16.
fn normal_bf16(n: usize, seed: u64, std: f32, scale: impl Fn(usize) -> f32 + Sync) -> Vec<f32> {
    const CHUNK: usize = 1 << 16;
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let mut rng = SmallRng::seed_from_u64(splitmix64(seed ^ splitmix64(c as u64)));
            for (j, v) in chunk.iter_mut().enumerate() {
                let z: f32 = rng.sample(StandardNormal);
                *v = round_bf16(std * z * scale(c * CHUNK + j));
            }
        });
    out
}

/// `[rows][cols]` iid N(0, 1), BF16.
pub fn gaussian(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    normal_bf16(rows * cols, seed, 1.0, |_| 1.0)
}

/// The outlier columns of [`outliers`] for `cols` columns: `(column, factor)`, by column.
pub fn outlier_channels(cols: usize, seed: u64) -> Vec<(usize, f32)> {
    if cols == 0 {
        return Vec::new();
    }
    let count = ((cols as f64 * OUTLIER_SHARE).round() as usize).clamp(1, cols);
    let mut rng = SmallRng::seed_from_u64(splitmix64(!seed));
    let mut channels: Vec<(usize, f32)> = sample(&mut rng, cols, count)
        .into_iter()
        .map(|c| (c, rng.random_range(OUTLIER_FACTOR.0..=OUTLIER_FACTOR.1)))
        .collect();
    channels.sort_by_key(|&(c, _)| c);
    channels
}

/// `[rows][cols]` N(0, 1) with the columns of [`outlier_channels`] scaled by their factor, BF16.
pub fn outliers(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut factor = vec![1f32; cols];
    for (c, f) in outlier_channels(cols, seed) {
        factor[c] = f;
    }
    normal_bf16(rows * cols, seed, 1.0, |i| factor[i % cols])
}

/// `[n][k]` iid N(0, 1/k), BF16.
pub fn weights(n: usize, k: usize, seed: u64) -> Vec<f32> {
    normal_bf16(n * k, seed, 1.0 / (k.max(1) as f32).sqrt(), |_| 1.0)
}
