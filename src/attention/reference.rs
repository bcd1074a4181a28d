//! CPU reference of paged decode attention: f64 accumulation over the values the GPU reads
//! (stored q, K, V decoded from their formats, FP8 scales applied), rayon over rows.

use rayon::prelude::*;

use super::config::AttentionConfig;
use super::layout::PagedLayout;
use crate::numeric::Element;

/// Host copies of the device inputs: q decoded, the pools as stored bytes (decoded when read:
/// the largest cases hold tens of GB of KV, and only sampled rows are checked).
pub struct HostInputs {
    /// `[batch][q_len][q_heads][head_dim]`.
    pub q: Vec<f32>,
    pub kv_format: Element,
    pub k_pool: Vec<u8>,
    pub v_pool: Vec<u8>,
    /// One per kv head (per-tensor scales repeat the same value).
    pub k_scales: Vec<f32>,
    pub v_scales: Vec<f32>,
}

/// One output row's reference and the data-dependent scale of its rounding errors.
#[derive(Debug, Clone)]
pub struct RowReference {
    pub out: Vec<f64>,
    /// Σ_j p_j |v_jd| per element: the magnitude a relative error in the p_j scales by.
    pub abs_weighted: Vec<f64>,
    /// The largest |score| of the row (scaled q·k after soft-cap): exp's error grows with it.
    pub max_abs_score: f64,
    /// The largest Σ_d |q_d k_jd| · softmax_scale of the row: a relative error in q or k (from
    /// rounding operands for the tensor cores) moves a score by at most u times this.
    pub max_abs_dot: f64,
}

/// The reference of the output rows `rows` (row r = (b * q_len + i) * q_heads + h).
pub fn decode_reference(
    c: &AttentionConfig,
    layout: &PagedLayout,
    x: &HostInputs,
    rows: &[usize],
) -> Vec<RowReference> {
    let (qh, d, group) = (c.q_heads, c.head_dim, c.group());
    let k_at = |i| x.kv_format.decode_at(&x.k_pool, i);
    let v_at = |i| x.kv_format.decode_at(&x.v_pool, i);
    rows.par_iter()
        .map(|&r| {
            let (b, i, h) = (r / (qh * c.q_len), (r / qh) % c.q_len, r % qh);
            let kvh = h / group;
            let ctx = layout.context_lens[b] as usize;
            let q = &x.q[((b * c.q_len + i) * qh + h) * d..][..d];
            let keys = c.allowed_keys(ctx, i);
            let (ks, vs) = (f64::from(x.k_scales[kvh]), f64::from(x.v_scales[kvh]));
            let scale = f64::from(c.softmax_scale());
            let mut max_abs_dot = 0f64;
            let scores: Vec<f64> = keys
                .clone()
                .map(|j| {
                    let (mut dot, mut abs) = (0f64, 0f64);
                    for (dd, &qd) in q.iter().enumerate() {
                        let k = f64::from(k_at(layout.index(b, j, kvh, c.kv_heads, d, dd))) * ks;
                        dot += f64::from(qd) * k;
                        abs += (f64::from(qd) * k).abs();
                    }
                    max_abs_dot = max_abs_dot.max(abs * scale);
                    let s = dot * scale;
                    if c.softcap > 0.0 {
                        let cap = f64::from(c.softcap);
                        cap * (s / cap).tanh()
                    } else {
                        s
                    }
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = weights.iter().sum();
            let mut out = vec![0f64; d];
            let mut abs_weighted = vec![0f64; d];
            for (w, j) in weights.iter().zip(keys) {
                let p = w / sum;
                for dd in 0..d {
                    let v = f64::from(v_at(layout.index(b, j, kvh, c.kv_heads, d, dd))) * vs;
                    out[dd] += p * v;
                    abs_weighted[dd] += p * v.abs();
                }
            }
            RowReference {
                out,
                abs_weighted,
                max_abs_score: scores.iter().fold(0f64, |m, s| m.max(s.abs())),
                max_abs_dot,
            }
        })
        .collect()
}

/// The largest error the GPU result may have, per element, from the formats involved:
/// - the output is rounded to the q type: u_out |out|;
/// - operands may be rounded to the q type for the tensor cores (K and V dequantised, P before
///   P·V): a relative error u_c in P is u_c Σ p|v|; in K, a score moves by u_c · Σ|q k| · scale,
///   which changes each p by a factor within e^{±2δ};
/// - f32 arithmetic (exp2 with a folded log2 e, sums over up to 128k keys): 2^-20 relative to
///   Σ p|v| covers it with room to spare.
pub fn tolerance(row: &RowReference, dd: usize, u_out: f64, u_compute: f64) -> f64 {
    let score_shift = u_compute * row.max_abs_dot;
    let p_relative = (2.0 * score_shift).exp() - 1.0 + u_compute;
    u_out * row.out[dd].abs() + (p_relative + u_compute + 2f64.powi(-20)) * row.abs_weighted[dd]
}

#[cfg(test)]
mod tests {
    use super::super::config::Lengths;
    use super::*;

    fn inputs(
        c: &AttentionConfig,
        layout: &PagedLayout,
        v_of_token: impl Fn(usize, usize) -> f32,
    ) -> HostInputs {
        let n = layout.pool_elements(c.kv_heads, c.head_dim);
        let mut v_pool = vec![0f32; n];
        for b in 0..c.batch {
            for t in 0..layout.context_lens[b] as usize {
                for h in 0..c.kv_heads {
                    for d in 0..c.head_dim {
                        v_pool[layout.index(b, t, h, c.kv_heads, c.head_dim, d)] = v_of_token(t, d);
                    }
                }
            }
        }
        HostInputs {
            q: vec![0.0; c.batch * c.q_len * c.q_heads * c.head_dim],
            kv_format: Element::F32,
            k_pool: Element::F32.encode(&vec![0.5; n]),
            v_pool: Element::F32.encode(&v_pool),
            k_scales: vec![1.0; c.kv_heads],
            v_scales: vec![2.0; c.kv_heads],
        }
    }

    #[test]
    fn zero_queries_average_the_allowed_values() {
        // q = 0: every allowed key weighs the same, so out = mean of v over the mask.
        let c = AttentionConfig {
            batch: 2,
            q_heads: 4,
            kv_heads: 2,
            head_dim: 16,
            q_len: 3,
            window: 5,
            lengths: Lengths::Explicit(vec![3, 20]),
            ..Default::default()
        };
        let layout = PagedLayout::paged(&c.context_lens(), 4, 3);
        let x = inputs(&c, &layout, |t, _| t as f32);
        let all: Vec<usize> = (0..c.batch * c.q_len * c.q_heads).collect();
        let rows = decode_reference(&c, &layout, &x, &all);
        // Sequence 1 (ctx 20), query 2 at position 19, window 5: keys 15..=19, mean 17, x2 scale.
        let r = &rows[(c.q_len + 2) * c.q_heads];
        assert!((r.out[0] - 34.0).abs() < 1e-12, "{}", r.out[0]);
        // Sequence 0 (ctx 3), query 0 at position 0: only key 0.
        assert_eq!(rows[0].out[3], 0.0);
    }

    #[test]
    fn softcap_bounds_scores() {
        let c = AttentionConfig {
            batch: 1,
            q_heads: 1,
            kv_heads: 1,
            head_dim: 16,
            softcap: 2.0,
            lengths: Lengths::Uniform(4),
            ..Default::default()
        };
        let layout = PagedLayout::paged(&c.context_lens(), 16, 1);
        let mut x = inputs(&c, &layout, |t, _| t as f32);
        x.q = vec![50.0; 16];
        let rows = decode_reference(&c, &layout, &x, &[0]);
        assert!(rows[0].max_abs_score <= 2.0);
        // Capped scores 2·tanh(·) all near 2: nearly uniform weights.
        assert!((rows[0].out[0] - 3.0).abs() < 0.1);
    }

    #[test]
    fn tolerance_grows_with_the_formats() {
        let row = RowReference {
            out: vec![0.1],
            abs_weighted: vec![0.5],
            max_abs_score: 3.0,
            max_abs_dot: 4.0,
        };
        let bf16 = tolerance(&row, 0, 2f64.powi(-8), 2f64.powi(-8));
        let fp16 = tolerance(&row, 0, 2f64.powi(-11), 2f64.powi(-11));
        assert!(bf16 > fp16 && fp16 > 0.0);
        assert!(bf16 < 0.05, "{bf16}");
    }
}
