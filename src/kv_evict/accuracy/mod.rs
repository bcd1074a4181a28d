//! What each eviction policy costs in accuracy, on the CPU: the report needs no GPU.
//!
//! One-shot compression of one captured sequence. A [`KvCapture`] holds one query per position
//! and the keys and values of `len` positions. The LAST position's query is the evaluation query
//! and no policy sees it: the policies compress the cache of the first `len - 1` tokens, scored
//! by earlier queries ([`attention_mass`]):
//! - H2O: the mass of the last `h2o_history` (64) queries before the evaluation query, summed.
//!   H2O proper accumulates step by step and evicted tokens stop collecting; here every token is
//!   present until the one decision;
//! - TOVA: the mass of the query at `len - 2`, the newest it has seen;
//! - SnapKV: the mass of the `window` queries before the evaluation query (pooled by the
//!   priority, see [`super::policy`]);
//! - StreamingLLM, Recent, Random: no scores.
//!
//! Then, per q head, the evaluation query attends (scale `1/sqrt(dim)`, f64) over all cached
//! tokens and over the kept ones:
//! - `rel_error`: `||o_kept - o_full|| / ||o_full||`, `o_kept` the softmax renormalised over the
//!   kept tokens (an output of zeros, error 1, when nothing is kept);
//! - `mass_recall`: the full softmax mass of the kept tokens;
//! - `needle_recall`: the share of planted needles ([`KvCapture::needles`]) kept.
//!
//! Rows average these over q heads (and give the worst head).

mod command;
mod load;
mod output;
pub mod synthetic;

use std::ops::Range;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;

pub use crate::report::write_rows_csv as write_csv;
pub use command::KvEvictAccuracy;
pub use load::load_capture;
pub use output::{error_vs_budget_svg, render_table};
pub use synthetic::{synthetic, Synthetic};

use super::config::{check_observation, check_pool};
use super::policy::{attention_mass, plan_kept, sum_in_row_order, Budget, Policy, PolicyParams};

/// One sequence's attention inputs: queries of every position and its cache.
#[derive(Debug, Clone, PartialEq)]
pub struct KvCapture {
    pub q_heads: usize,
    pub kv_heads: usize,
    pub dim: usize,
    pub len: usize,
    /// `[len][q_heads][dim]`: one query per position.
    pub q: Vec<f32>,
    /// `[len][kv_heads][dim]`.
    pub k: Vec<f32>,
    /// `[len][kv_heads][dim]`.
    pub v: Vec<f32>,
    /// Planted `(kv head, token)` pairs the evaluation query needs (synthetic data only).
    pub needles: Vec<(usize, usize)>,
}

/// The shape rules every capture follows, whether generated or loaded.
fn check_shape(q_heads: usize, kv_heads: usize, dim: usize, len: usize) -> Result<()> {
    if q_heads == 0 || kv_heads == 0 || dim == 0 {
        bail!("capture: heads ({q_heads} q, {kv_heads} kv) and dim ({dim}) must be non-zero");
    }
    if q_heads % kv_heads != 0 {
        bail!("capture: {q_heads} q heads are not a multiple of {kv_heads} kv heads");
    }
    if len < 2 {
        bail!("capture: {len} positions; at least 2 (a cache and the evaluation query)");
    }
    Ok(())
}

impl KvCapture {
    /// q heads per kv head.
    pub fn group(&self) -> usize {
        self.q_heads / self.kv_heads
    }

    /// Tokens the policies compress: all but the evaluation query's position.
    pub fn cache_len(&self) -> usize {
        self.len - 1
    }

    /// Whether the fields agree with each other (they are public, so anyone may build one).
    pub fn check(&self) -> Result<()> {
        check_shape(self.q_heads, self.kv_heads, self.dim, self.len)?;
        let (q, kv) = (
            self.len * self.q_heads * self.dim,
            self.len * self.kv_heads * self.dim,
        );
        if self.q.len() != q || self.k.len() != kv || self.v.len() != kv {
            bail!(
                "capture: q, k, v hold {}, {}, {} values; the shape needs {q}, {kv}, {kv}",
                self.q.len(),
                self.k.len(),
                self.v.len()
            );
        }
        if let Some(n) = self
            .needles
            .iter()
            .find(|&&(h, t)| h >= self.kv_heads || t >= self.cache_len())
        {
            bail!("capture: needle {n:?} lies outside the cache");
        }
        // A NaN or an infinity poisons every softmax it enters: the report would be a table of
        // NaN that looks like a result.
        for (name, values) in [("q", &self.q), ("k", &self.k), ("v", &self.v)] {
            if let Some(i) = values.iter().position(|x| !x.is_finite()) {
                bail!(
                    "capture: tensor `{name}` holds {} at flat index {i}: every value must be finite",
                    values[i]
                );
            }
        }
        Ok(())
    }

    /// `[positions][width]` gathered from a `[len][stride]` tensor at `offset` in each position:
    /// one head's keys, or one group's queries, contiguous for [`attention_mass`].
    fn gather(
        data: &[f32],
        stride: usize,
        offset: usize,
        width: usize,
        positions: Range<usize>,
    ) -> Vec<f32> {
        positions
            .flat_map(|p| &data[p * stride + offset..][..width])
            .copied()
            .collect()
    }

    /// `[cache_len][dim]` keys of kv head `g`.
    fn keys(&self, g: usize) -> Vec<f32> {
        let d = self.dim;
        Self::gather(&self.k, self.kv_heads * d, g * d, d, 0..self.cache_len())
    }

    /// `[positions][group][dim]` queries of the q heads of kv head `g`.
    fn group_queries(&self, g: usize, positions: Range<usize>) -> Vec<f32> {
        let width = self.group() * self.dim;
        Self::gather(
            &self.q,
            self.q_heads * self.dim,
            g * width,
            width,
            positions,
        )
    }

    fn value(&self, t: usize, g: usize) -> &[f32] {
        &self.v[(t * self.kv_heads + g) * self.dim..][..self.dim]
    }

    fn scale(&self) -> f64 {
        1.0 / (self.dim as f64).sqrt()
    }
}

/// H2O's history when not overridden: enough queries for a stable sum, few enough to stay fast.
pub const DEFAULT_H2O_HISTORY: usize = 64;

/// Changes to every policy's [`PolicyParams::defaults`] and to H2O's history (`None`: default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub sinks: Option<usize>,
    pub recent: Option<usize>,
    pub pool_kernel: Option<usize>,
    pub window: Option<usize>,
    pub seed: Option<u64>,
    /// Queries before the evaluation query whose attention H2O sums.
    pub h2o_history: Option<usize>,
}

impl Overrides {
    /// The rules a case's `pool=` and `obs=` follow ([`check_pool`], [`check_observation`]).
    pub fn validate(&self) -> Result<()> {
        if let Some(width) = self.pool_kernel {
            check_pool(width).context("--pool")?;
        }
        if let Some(window) = self.window {
            check_observation(window).context("--window")?;
        }
        if self.h2o_history == Some(0) {
            bail!("--h2o-history 0: H2O needs at least one query to score by");
        }
        Ok(())
    }

    /// `policy`'s parameters for a budget of `budget_tokens`, with the overrides applied.
    pub fn params(&self, policy: Policy, budget_tokens: usize) -> PolicyParams {
        let defaults = PolicyParams::defaults(policy, budget_tokens);
        let p = self.window.map_or(defaults, |w| defaults.with_window(w));
        PolicyParams {
            sinks: self.sinks.unwrap_or(p.sinks),
            recent: self.recent.unwrap_or(p.recent),
            pool_kernel: self.pool_kernel.unwrap_or(p.pool_kernel),
            seed: self.seed.unwrap_or(p.seed),
            ..p
        }
    }

    /// How many queries right before the evaluation query score `policy` (None: no scores).
    fn score_queries(&self, policy: Policy) -> Option<usize> {
        match policy {
            Policy::H2o => Some(self.h2o_history.unwrap_or(DEFAULT_H2O_HISTORY)),
            Policy::Tova => Some(1),
            // The window does not depend on the budget.
            Policy::SnapKv => Some(self.params(policy, 0).window),
            Policy::StreamingLlm | Policy::Random | Policy::Recent => None,
        }
    }
}

/// One line of the report: a policy at a budget on one capture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccuracyRow {
    pub data: String,
    pub policy: String,
    pub budget: String,
    /// Tokens the policies compress (the capture's length less the evaluation query).
    pub cache_tokens: usize,
    pub kept_tokens: usize,
    pub rel_error_mean: f64,
    pub rel_error_max: f64,
    pub mass_recall_mean: f64,
    pub mass_recall_min: f64,
    /// `None` when the data has no planted needles.
    pub needle_recall: Option<f64>,
}

/// The evaluation query's full-cache attention, per q head.
struct FullAttention {
    /// Softmax over the cache.
    probs: Vec<Vec<f64>>,
    outputs: Vec<Vec<f64>>,
}

/// `(Σ p_t v_t / Σ p_t, Σ p_t)` over `kept` (ascending) of kv head `g`: the output renormalised
/// over the kept tokens and the mass it keeps. The full output uses the same sums in the same
/// order, so keeping everything gives exactly the full output.
fn kept_output(
    c: &KvCapture,
    g: usize,
    probs: &[f64],
    kept: impl Iterator<Item = usize>,
) -> (Vec<f64>, f64) {
    let mut out = vec![0f64; c.dim];
    let mut mass = 0f64;
    for t in kept {
        mass += probs[t];
        for (o, &v) in out.iter_mut().zip(c.value(t, g)) {
            *o += probs[t] * f64::from(v);
        }
    }
    if mass > 0.0 {
        out.iter_mut().for_each(|o| *o /= mass);
    }
    (out, mass)
}

impl FullAttention {
    fn new(c: &KvCapture, keys: &[Vec<f32>]) -> FullAttention {
        let (cache, d) = (c.cache_len(), c.dim);
        let (probs, outputs) = (0..c.q_heads)
            .into_par_iter()
            .map(|h| {
                let g = h / c.group();
                let q = &c.q[(cache * c.q_heads + h) * d..][..d];
                let probs = attention_mass(q, 1, &[cache], &keys[g], cache, d, c.scale());
                let (out, _) = kept_output(c, g, &probs, 0..cache);
                (probs, out)
            })
            .unzip();
        FullAttention { probs, outputs }
    }
}

fn norm(x: impl Iterator<Item = f64>) -> f64 {
    x.map(|v| v * v).sum::<f64>().sqrt()
}

/// `||kept - full|| / ||full||` (the absolute difference when `full` is 0).
fn relative_error(kept: &[f64], full: &[f64]) -> f64 {
    let diff = norm(kept.iter().zip(full).map(|(a, b)| a - b));
    let full_norm = norm(full.iter().copied());
    if full_norm > 0.0 {
        diff / full_norm
    } else {
        diff
    }
}

/// The mean of per-head values and their worst (`f64::max` or `f64::min`).
fn mean_and_worst(values: &[f64], worst: fn(f64, f64) -> f64) -> (f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (
        mean,
        values.iter().copied().reduce(worst).unwrap_or(f64::NAN),
    )
}

/// The report row of `policy` at `budget`, from the tokens it kept per kv head.
fn accuracy_row(
    c: &KvCapture,
    full: &FullAttention,
    kept: &[Vec<u32>],
    data: &str,
    policy: Policy,
    budget: Budget,
) -> AccuracyRow {
    let (errors, recalls): (Vec<f64>, Vec<f64>) = (0..c.q_heads)
        .into_par_iter()
        .map(|h| {
            let g = h / c.group();
            let tokens = kept[g].iter().map(|&t| t as usize);
            let (out, mass) = kept_output(c, g, &full.probs[h], tokens);
            (relative_error(&out, &full.outputs[h]), mass)
        })
        .unzip();
    let (rel_error_mean, rel_error_max) = mean_and_worst(&errors, f64::max);
    let (mass_recall_mean, mass_recall_min) = mean_and_worst(&recalls, f64::min);
    let needle_kept = |&(g, t): &(usize, usize)| kept[g].binary_search(&(t as u32)).is_ok();
    let needle_recall = (!c.needles.is_empty()).then(|| {
        c.needles.iter().filter(|n| needle_kept(n)).count() as f64 / c.needles.len() as f64
    });
    AccuracyRow {
        data: data.to_string(),
        policy: policy.name().to_string(),
        budget: budget.to_string(),
        cache_tokens: c.cache_len(),
        kept_tokens: kept.first().map_or(0, Vec::len),
        rel_error_mean,
        rel_error_max,
        mass_recall_mean,
        mass_recall_min,
        needle_recall,
    }
}

/// The scores of kv head `g`'s tokens for policies scored by the last `queries[i]` queries
/// before the evaluation query (None: no scores). The sets are suffixes of one history, so each
/// query's mass is computed once and each policy sums its suffix in row order: the same result
/// as [`attention_mass`] over its queries.
fn head_scores(
    c: &KvCapture,
    keys: &[f32],
    g: usize,
    queries: &[Option<usize>],
) -> Vec<Option<Vec<f32>>> {
    let cache = c.cache_len();
    let longest = queries
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .min(cache);
    let rows: Vec<Vec<f64>> = (cache - longest..cache)
        .into_par_iter()
        .map(|p| {
            let q = c.group_queries(g, p..p + 1);
            attention_mass(&q, c.group(), &[p], keys, cache, c.dim, c.scale())
        })
        .collect();
    let suffix_scores = |n: usize| {
        let mass = sum_in_row_order(&rows[longest - n.min(cache)..], cache);
        mass.into_iter().map(|m| m as f32).collect()
    };
    queries.iter().map(|n| n.map(suffix_scores)).collect()
}

/// Every policy at every budget on `capture` (labelled `data` in the rows), in that order.
pub fn evaluate(
    capture: &KvCapture,
    data: &str,
    policies: &[Policy],
    budgets: &[Budget],
    overrides: &Overrides,
) -> Result<Vec<AccuracyRow>> {
    capture.check()?;
    let cache = capture.cache_len();
    let keys: Vec<Vec<f32>> = (0..capture.kv_heads)
        .into_par_iter()
        .map(|g| capture.keys(g))
        .collect();
    let full = FullAttention::new(capture, &keys);
    let queries: Vec<Option<usize>> = policies
        .iter()
        .map(|&p| overrides.score_queries(p))
        .collect();
    // [kv head][policy]. One head at a time (its queries in parallel) bounds the memory of the
    // per-query masses.
    let scores: Vec<Vec<Option<Vec<f32>>>> = keys
        .iter()
        .enumerate()
        .map(|(g, k)| head_scores(capture, k, g, &queries))
        .collect();
    let mut rows = Vec::with_capacity(policies.len() * budgets.len());
    for (i, &policy) in policies.iter().enumerate() {
        for &budget in budgets {
            let tokens = budget.tokens(cache);
            let params = overrides.params(policy, tokens);
            let kept: Vec<Vec<u32>> = scores
                .par_iter()
                .enumerate()
                .map(|(g, s)| plan_kept(&params, s[i].as_deref(), cache, 0, g as u32, tokens))
                .collect();
            rows.push(accuracy_row(capture, &full, &kept, data, policy, budget));
        }
    }
    Ok(rows)
}

/// The budgets of the default report.
pub const DEFAULT_BUDGETS: [Budget; 3] = [
    Budget::Fraction(0.10),
    Budget::Fraction(0.25),
    Budget::Fraction(0.50),
];

/// Every synthetic kind (each from its own seed) × every policy × `budgets` (for the tests).
#[cfg(test)]
fn synthetic_rows(
    q_heads: usize,
    kv_heads: usize,
    dim: usize,
    len: usize,
    budgets: &[Budget],
) -> Vec<AccuracyRow> {
    let options = ReportOptions {
        budgets: budgets.to_vec(),
        ..ReportOptions::default()
    };
    synthetic_report(q_heads, kv_heads, dim, len, &options).expect("a valid shape")
}

fn synthetic_report(
    q_heads: usize,
    kv_heads: usize,
    dim: usize,
    len: usize,
    o: &ReportOptions,
) -> Result<Vec<AccuracyRow>> {
    let mut rows = Vec::new();
    for (&kind, seed) in Synthetic::ALL.iter().zip(1u64..) {
        let capture = synthetic(kind, q_heads, kv_heads, dim, len, seed)?;
        rows.extend(evaluate(
            &capture,
            kind.name(),
            &o.policies,
            &o.budgets,
            &o.overrides,
        )?);
    }
    Ok(rows)
}

/// What `roofbench accuracy` evaluates.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Captured Q/K/V files ([`load_capture`]); none: every synthetic kind.
    pub captures: Vec<std::path::PathBuf>,
    pub policies: Vec<Policy>,
    pub budgets: Vec<Budget>,
    pub overrides: Overrides,
    /// Synthetic data of 1024 tokens instead of 4096.
    pub quick: bool,
    /// Synthetic data of this many tokens (overrides `quick`).
    pub synthetic_len: Option<usize>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            captures: Vec::new(),
            policies: Policy::ALL.to_vec(),
            budgets: DEFAULT_BUDGETS.to_vec(),
            overrides: Overrides::default(),
            quick: false,
            synthetic_len: None,
        }
    }
}

/// The longest synthetic capture: its one query per position alone takes 32 heads x 128 x 4 B per
/// token (512 MiB at this length), the most a report on a laptop should hold.
pub const MAX_SYNTHETIC_LEN: usize = 32_768;

/// The captures' rows (labelled by file name), or, with none, every synthetic kind at a
/// Llama-3-8B-like shape (32 q heads over 8 kv heads, dim 128) and 4096 tokens (`quick`: 1024).
pub fn report(o: &ReportOptions) -> Result<Vec<AccuracyRow>> {
    o.overrides.validate()?;
    if o.captures.is_empty() {
        let len = o.synthetic_len.unwrap_or(if o.quick { 1024 } else { 4096 });
        if !(2..=MAX_SYNTHETIC_LEN).contains(&len) {
            bail!("synthetic data of {len} tokens: it must be 2..={MAX_SYNTHETIC_LEN}");
        }
        return synthetic_report(32, 8, 128, len, o);
    }
    let mut rows = Vec::new();
    for path in &o.captures {
        let capture = load_capture(path)?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        rows.extend(evaluate(
            &capture,
            &name,
            &o.policies,
            &o.budgets,
            &o.overrides,
        )?);
    }
    Ok(rows)
}

/// Every synthetic kind × every policy × [`DEFAULT_BUDGETS`] (see [`report`]).
pub fn default_report(quick: bool) -> Vec<AccuracyRow> {
    report(&ReportOptions {
        quick,
        ..ReportOptions::default()
    })
    .expect("the synthetic shapes are valid")
}

#[cfg(test)]
mod tests;
