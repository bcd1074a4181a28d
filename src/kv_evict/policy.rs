//! Token-level KV-cache eviction: which tokens of one sequence's cache (per kv head) survive a
//! budget, and the CPU reference of the attention scores that score-based policies rank by.
//!
//! The GPU score / select / compact kernels must match this file bit-for-bit in selection, so
//! the semantics below are a contract, not a sketch.
//!
//! # Priority
//! Token `t` of a cache of `L` tokens gets an f32 priority, always >= 0 and never NaN:
//! 1. `t < sinks`: `+inf` (attention sinks are kept before anything else);
//! 2. else `t >= L.saturating_sub(recent)`: `f32::MAX` (the recent window, kept next);
//! 3. else the policy's [`Base`]:
//!    - `Recency`: `t as f32`;
//!    - `Random`: [`random_priority`]`(seed, seq, kv_head, t)`, in `[0, 1)`;
//!    - `Score`: the pooled score `max(score[t'])` over `t' in [t - p, t + p] ∩ [0, L)`,
//!      `p = pool_kernel / 2` (an odd kernel; 1 = no pooling, an even one acts as the next odd
//!      one). The max starts at `0.0` and uses IEEE maxNum (`f32::max`, CUDA's `fmaxf`), so a
//!      negative or NaN score counts as 0 and the priority stays a non-negative number.
//!
//! Neighbours of `t` inside the sinks or the recent window still feed its pooled score: pooling
//! reads the raw scores, not the priorities.
//!
//! # Selection
//! [`select_kept`] keeps the `budget` tokens largest by (priority descending, then index
//! descending) and returns them in ascending index order. Priorities compare as floats (`-0 ==
//! +0`). Ties go to the more recent token: recency is the better prior when scores say nothing
//! (all-equal scores keep the newest tokens; past 2^24 tokens `t as f32` rounds, and the tie rule
//! still orders them by index). Consequences: when sinks and the recent window together exceed
//! the budget, all sinks come first, then the newest tokens of the window; a budget >= L keeps
//! everything, 0 keeps nothing.
//!
//! # Policies ([`PolicyParams::defaults`])
//! | policy        | sinks | recent      | base                                      | pool |
//! |---------------|-------|-------------|-------------------------------------------|------|
//! | streaming-llm | 4     | 0           | recency (keeps the newest anyway)         | -    |
//! | recent        | 0     | 0           | recency                                   | -    |
//! | random        | 0     | 0           | random                                    | -    |
//! | h2o           | 0     | budget / 2  | score: mass accumulated over past queries | 1    |
//! | tova          | 0     | 0           | score: mass of the current query          | 1    |
//! | snapkv        | 0     | window (32) | score: mass of the window's queries       | 7    |
//!
//! The scores are [`attention_mass`] of the queries each policy looks at; the caller picks them
//! (H2O sums the calls of past decode steps, TOVA passes one row, SnapKV the last `window`
//! prompt queries).

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use crate::numeric::splitmix64_mix;

/// The eviction policies of the literature that the kernels implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// StreamingLLM (Xiao et al. 2023): attention sinks plus a window of the newest tokens.
    StreamingLlm,
    /// H2O (Zhang et al. 2023): heavy hitters by accumulated attention, half the budget recent.
    H2o,
    /// SnapKV (Li et al. 2024): pooled attention of an observation window at the prompt's end.
    SnapKv,
    /// TOVA (Oren et al. 2024): the current query's attention alone.
    Tova,
    /// A baseline with no information: uniformly random tokens.
    Random,
    /// A baseline: the newest tokens only.
    Recent,
}

/// What ranks the tokens outside the sinks and the recent window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Recency,
    Random,
    Score,
}

/// SnapKV's observation window (the paper's default).
pub const DEFAULT_WINDOW: usize = 32;

impl Policy {
    pub const ALL: [Policy; 6] = [
        Policy::StreamingLlm,
        Policy::H2o,
        Policy::SnapKv,
        Policy::Tova,
        Policy::Random,
        Policy::Recent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::StreamingLlm => "streaming-llm",
            Policy::H2o => "h2o",
            Policy::SnapKv => "snapkv",
            Policy::Tova => "tova",
            Policy::Random => "random",
            Policy::Recent => "recent",
        }
    }

    /// A policy by name, case-insensitive; StreamingLLM also answers to "streamingllm" and
    /// "streaming".
    pub fn parse(s: &str) -> Result<Policy> {
        let s = s.to_ascii_lowercase();
        if s == "streamingllm" || s == "streaming" {
            return Ok(Policy::StreamingLlm);
        }
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .with_context(|| {
                let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
                format!("unknown policy `{s}`: one of {}", names.join(", "))
            })
    }

    pub fn base(self) -> Base {
        match self {
            Policy::StreamingLlm | Policy::Recent => Base::Recency,
            Policy::Random => Base::Random,
            Policy::H2o | Policy::SnapKv | Policy::Tova => Base::Score,
        }
    }
}

/// How much of a cache to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// A share of the tokens, in `[0, 1]`.
    Fraction(f64),
    Tokens(usize),
}

impl Budget {
    /// `"25%"` or `"0.25"` (a fraction), `"1024"` (tokens).
    pub fn parse(s: &str) -> Result<Budget> {
        let s = s.trim();
        let fraction = if let Some(percent) = s.strip_suffix('%') {
            percent.trim().parse::<f64>().map(|p| p / 100.0)
        } else if let Ok(tokens) = s.parse::<usize>() {
            return Ok(Budget::Tokens(tokens));
        } else {
            s.parse::<f64>()
        }
        .with_context(|| {
            format!("budget `{s}`: a percentage (25%), a fraction (0.25) or tokens")
        })?;
        if !(0.0..=1.0).contains(&fraction) {
            bail!("budget `{s}`: a share of the cache must lie in [0%, 100%]");
        }
        Ok(Budget::Fraction(fraction))
    }

    /// Tokens kept of a cache of `len`: a fraction rounds up (`ceil(f * len)`, so any non-zero
    /// share keeps a token), never more than `len`.
    pub fn tokens(self, len: usize) -> usize {
        match self {
            // Rounded up, but not past a product that is whole up to rounding (7% of 100 is
            // 7.000000000000001 in f64: 7 tokens, not 8).
            Budget::Fraction(f) => (((f * len as f64) * (1.0 - 1e-12)).ceil() as usize).min(len),
            Budget::Tokens(n) => n.min(len),
        }
    }
}

/// The label of tables and plots: "25%" or "1024".
impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Budget::Fraction(x) => {
                // Four decimals at most: 0.07 * 100 is 7.000000000000001.
                let percent = format!("{:.4}", x * 100.0);
                write!(
                    f,
                    "{}%",
                    percent.trim_end_matches('0').trim_end_matches('.')
                )
            }
            Budget::Tokens(n) => write!(f, "{n}"),
        }
    }
}

/// Everything [`priorities`] needs besides the scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyParams {
    pub policy: Policy,
    /// The first tokens, always kept.
    pub sinks: usize,
    /// The newest tokens, kept after the sinks.
    pub recent: usize,
    /// Width of the max pooling of the scores (odd; 1 = none).
    pub pool_kernel: usize,
    /// SnapKV's observation window: the queries whose attention is its score.
    pub window: usize,
    /// Seed of the random policy.
    pub seed: u64,
}

impl PolicyParams {
    /// Each policy as its paper configures it (see the module header), for a budget of
    /// `budget_tokens`: H2O splits it between heavy hitters and recent tokens.
    pub fn defaults(policy: Policy, budget_tokens: usize) -> PolicyParams {
        let base = PolicyParams {
            policy,
            sinks: 0,
            recent: 0,
            pool_kernel: 1,
            window: DEFAULT_WINDOW,
            seed: 0,
        };
        match policy {
            Policy::StreamingLlm => PolicyParams { sinks: 4, ..base },
            Policy::H2o => PolicyParams {
                recent: budget_tokens / 2,
                ..base
            },
            Policy::SnapKv => PolicyParams {
                pool_kernel: 7,
                ..base
            }
            .with_window(DEFAULT_WINDOW),
            Policy::Tova | Policy::Random | Policy::Recent => base,
        }
    }

    /// Another observation window; SnapKV always keeps its window's tokens, so its recent
    /// window follows.
    pub fn with_window(self, window: usize) -> PolicyParams {
        let recent = if self.policy == Policy::SnapKv {
            window
        } else {
            self.recent
        };
        PolicyParams {
            window,
            recent,
            ..self
        }
    }
}

/// The random policy's priority of token `t`: a splitmix64 finaliser of
/// `x = seed + ((seq << 42) | (kv_head << 32) | t)` (wrapping; distinct for seq < 2^22,
/// kv_head < 2^10):
/// ```text
/// x ^= x >> 30; x *= 0xbf58476d1ce4e5b9; x ^= x >> 27; x *= 0x94d049bb133111eb; x ^= x >> 31;
/// return (x >> 40) as f32 / 16777216.0;   // 24 bits: exact in f32, in [0, 1)
/// ```
/// A hash rather than a generator: each GPU thread computes its token's value on its own, and
/// the kernel and this reference agree without sharing a stream of numbers.
pub fn random_priority(seed: u64, seq: u32, kv_head: u32, t: u32) -> f32 {
    let x = seed.wrapping_add((u64::from(seq) << 42) | (u64::from(kv_head) << 32) | u64::from(t));
    (splitmix64_mix(x) >> 40) as f32 / 16_777_216.0
}

/// `max(0, scores[t - half..=t + half])` per token (maxNum: NaN and negatives count as 0).
fn pooled(scores: &[f32], half: usize) -> Vec<f32> {
    (0..scores.len())
        .map(|t| {
            let end = (t + half + 1).min(scores.len());
            scores[t.saturating_sub(half)..end]
                .iter()
                .fold(0.0f32, |m, &s| m.max(s))
        })
        .collect()
}

/// The priority of every token of a cache of `len` (see the module header). `scores` (one per
/// token) are needed by score-based policies only; `seq` and `kv_head` seed the random one.
///
/// # Panics
/// When a score-based policy gets no scores, or scores of another length.
pub fn priorities(
    params: &PolicyParams,
    scores: Option<&[f32]>,
    len: usize,
    seq: u32,
    kv_head: u32,
) -> Vec<f32> {
    let base = match params.policy.base() {
        Base::Recency => (0..len).map(|t| t as f32).collect(),
        Base::Random => (0..len)
            .map(|t| random_priority(params.seed, seq, kv_head, t as u32))
            .collect(),
        Base::Score => {
            let scores = scores.unwrap_or_else(|| panic!("{} needs scores", params.policy.name()));
            assert_eq!(scores.len(), len, "one score per token");
            pooled(scores, params.pool_kernel / 2)
        }
    };
    let recent_start = len.saturating_sub(params.recent);
    base.into_iter()
        .enumerate()
        .map(|(t, b)| match t {
            t if t < params.sinks => f32::INFINITY,
            t if t >= recent_start => f32::MAX,
            _ => b,
        })
        .collect()
}

/// The `budget` tokens largest by (priority descending, index descending), in ascending index
/// order: ties go to the more recent token. O(L) selection plus a sort of the kept tokens.
///
/// # Panics
/// On a NaN priority ([`priorities`] never makes one).
pub fn select_kept(priorities: &[f32], budget: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..priorities.len() as u32).collect();
    if budget < order.len() {
        order.select_nth_unstable_by(budget, |&a, &b| {
            let (pa, pb) = (priorities[a as usize], priorities[b as usize]);
            pb.partial_cmp(&pa)
                .expect("priorities are never NaN")
                .then(b.cmp(&a))
        });
        order.truncate(budget);
    }
    order.sort_unstable();
    order
}

/// The tokens `params` keeps of one (sequence, kv head) cache of `len` within `budget` tokens.
pub fn plan_kept(
    params: &PolicyParams,
    scores: Option<&[f32]>,
    len: usize,
    seq: u32,
    kv_head: u32,
    budget: usize,
) -> Vec<u32> {
    select_kept(&priorities(params, scores, len, seq, kv_head), budget)
}

/// `a · b` in f64 with eight independent partial sums: one serial chain of adds would be
/// latency-bound, eight vectorise, and the order stays fixed (no dependence on threads).
fn dot(a: &[f32], b: &[f32]) -> f64 {
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    let mut lanes = [0f64; 8];
    for (x, y) in a8.zip(b8) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += f64::from(x) * f64::from(y);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Softmax probabilities of the keys `k[..visible]`, summed over the heads of one query row.
fn row_mass(q_row: &[f32], k: &[f32], visible: usize, dim: usize, scale: f64) -> Vec<f64> {
    let mut mass = vec![0f64; visible];
    for q in q_row.chunks_exact(dim) {
        let logits: Vec<f64> = k[..visible * dim]
            .chunks_exact(dim)
            .map(|kt| scale * dot(q, kt))
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = weights.iter().sum();
        for (m, w) in mass.iter_mut().zip(&weights) {
            *m += w / sum;
        }
    }
    mass
}

/// Attention mass per key: the CPU reference of the scores of H2O, TOVA and SnapKV.
///
/// `q` is `[rows][group][dim]`: a row is one query position, `group` the q heads that share
/// this kv head; row `r` sits at `q_positions[r]` and sees the keys `t <= q_positions[r]`
/// (causal; a position past the cache sees all of it). `k` is `[len][dim]`, one kv head. Each
/// (row, head) contributes its softmax of `scale * q·k_t` over the keys it sees (no soft-cap),
/// so the result sums to `rows * group`; a key no row sees gets 0.
///
/// f64 throughout, rows in parallel, summed in row order: the result does not depend on the
/// number of threads.
pub fn attention_mass(
    q: &[f32],
    group: usize,
    q_positions: &[usize],
    k: &[f32],
    len: usize,
    dim: usize,
    scale: f64,
) -> Vec<f64> {
    assert_eq!(
        q.len(),
        q_positions.len() * group * dim,
        "q is [rows][group][dim]"
    );
    assert_eq!(k.len(), len * dim, "k is [len][dim]");
    let rows: Vec<Vec<f64>> = q
        .par_chunks_exact(group * dim)
        .zip(q_positions)
        .map(|(q_row, &pos)| row_mass(q_row, k, (pos + 1).min(len), dim, scale))
        .collect();
    sum_in_row_order(&rows, len)
}

/// The sum of per-row masses, oldest row first: [`attention_mass`] of some rows equals this sum
/// of its single-row results, so a caller may compute rows once and sum several subsets.
pub fn sum_in_row_order(rows: &[Vec<f64>], len: usize) -> Vec<f64> {
    let mut mass = vec![0f64; len];
    for row in rows {
        for (m, r) in mass.iter_mut().zip(row) {
            *m += r;
        }
    }
    mass
}

#[cfg(test)]
mod tests;
