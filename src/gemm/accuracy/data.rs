//! Synthetic GEMM inputs, seeded and rounded to BF16 (the values a model's tensors hold):
//! - [`gaussian`]: iid N(0, 1) activations;
//! - [`outliers`]: LLM-like activations: iid N(0, 1) except a few channels (columns of X: 1% of
//!   K, at least one, at seeded positions) scaled by a factor uniform in [50, 100] each, in every
//!   token, as the systematic outlier features of LLM hidden states (LLM.int8(), SmoothQuant);
//!   an [`OutlierPattern`] fixes their count or their factor instead (e.g. one channel at 200×);
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

/// Which outlier channels [`outliers`] makes: `None` fields take the defaults
/// ([`OUTLIER_SHARE`] of the columns, at least one; a factor per channel uniform in
/// [`OUTLIER_FACTOR`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OutlierPattern {
    /// Outlier channels (at most the number of columns: more are clamped to it).
    pub count: Option<usize>,
    /// Every outlier channel's factor.
    pub scale: Option<f32>,
}

impl OutlierPattern {
    /// Largest factor accepted: activations stay far inside BF16 and every quantizer's range.
    pub const MAX_SCALE: f64 = 1e6;

    /// Checks a pattern given by a user.
    pub fn new(count: Option<usize>, scale: Option<f64>) -> Result<OutlierPattern> {
        if count == Some(0) {
            bail!("the outlier count must be at least 1 (data=gaussian has none)");
        }
        if let Some(s) = scale {
            if !(s.is_finite() && s > 0.0 && s <= Self::MAX_SCALE) {
                bail!(
                    "the outlier scale must be a number in (0, {:e}]; got {s}",
                    Self::MAX_SCALE
                );
            }
        }
        Ok(OutlierPattern {
            count,
            scale: scale.map(|s| s as f32),
        })
    }

    pub fn is_default(&self) -> bool {
        *self == OutlierPattern::default()
    }

    /// `outliers`, or with what the pattern fixes: `outliers-1ch-x200`.
    pub fn label(&self) -> String {
        let mut s = String::from("outliers");
        if let Some(c) = self.count {
            s.push_str(&format!("-{c}ch"));
        }
        if let Some(f) = self.scale {
            s.push_str(&format!("-x{f}"));
        }
        s
    }

    /// `outliers=1 outlier_scale=200` (the keys given; empty for the default).
    pub fn params(&self) -> String {
        let count = self.count.map(|c| format!(" outliers={c}"));
        let scale = self.scale.map(|f| format!(" outlier_scale={f}"));
        count.into_iter().chain(scale).collect()
    }
}

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

    /// `[rows][cols]` activations of this kind (`pattern`: the outliers', if any).
    pub fn activations(
        self,
        rows: usize,
        cols: usize,
        seed: u64,
        pattern: &OutlierPattern,
    ) -> Vec<f32> {
        match self {
            DataKind::Gaussian => gaussian(rows, cols, seed),
            DataKind::Outliers => outliers(rows, cols, seed, pattern),
        }
    }

    /// The kind's name in rows and case names: `outliers` carries a non-default pattern.
    pub fn label(self, pattern: &OutlierPattern) -> String {
        match self {
            DataKind::Gaussian => self.name().to_string(),
            DataKind::Outliers => pattern.label(),
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
pub fn outlier_channels(cols: usize, seed: u64, pattern: &OutlierPattern) -> Vec<(usize, f32)> {
    if cols == 0 {
        return Vec::new();
    }
    let count = pattern
        .count
        .unwrap_or((cols as f64 * OUTLIER_SHARE).round() as usize)
        .clamp(1, cols);
    let mut rng = SmallRng::seed_from_u64(splitmix64(!seed));
    let mut channels: Vec<(usize, f32)> = sample(&mut rng, cols, count)
        .into_iter()
        .map(|c| {
            let drawn = || rng.random_range(OUTLIER_FACTOR.0..=OUTLIER_FACTOR.1);
            (c, pattern.scale.unwrap_or_else(drawn))
        })
        .collect();
    channels.sort_by_key(|&(c, _)| c);
    channels
}

/// `[rows][cols]` N(0, 1) with the columns of [`outlier_channels`] scaled by their factor, BF16.
pub fn outliers(rows: usize, cols: usize, seed: u64, pattern: &OutlierPattern) -> Vec<f32> {
    let mut factor = vec![1f32; cols];
    for (c, f) in outlier_channels(cols, seed, pattern) {
        factor[c] = f;
    }
    normal_bf16(rows * cols, seed, 1.0, |i| factor[i % cols])
}

/// `[n][k]` iid N(0, 1/k), BF16.
pub fn weights(n: usize, k: usize, seed: u64) -> Vec<f32> {
    normal_bf16(n * k, seed, 1.0 / (k.max(1) as f32).sqrt(), |_| 1.0)
}
