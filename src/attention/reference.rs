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
    /// Σ_j |v_jd| per element: what an absolute error in each p_j (a subnormal P) scales by.
    pub abs_sum: Vec<f64>,
    /// The largest |score| of the row (scaled q·k after soft-cap): exp's error grows with it.
    pub max_abs_score: f64,
    /// The largest Σ_d |q_d k_jd| · softmax_scale of the row: a relative error in q (rounded
    /// to the compute type) or in the f32 dot product moves a score by at most u times this.
    pub max_abs_dot: f64,
}

/// What one output row is asked to compute, spelled out so that a test can change it: a fault
/// injected into the reference (a key dropped, a wrong scale, ...) or the kernel's roundings
/// emulated. [`RowSpec::of`] is the case's own definition.
#[derive(Debug, Clone)]
pub struct RowSpec {
    /// The keys summed over; a key listed twice counts twice.
    pub keys: Vec<usize>,
    /// Added to each key's score (natural log; empty: none). A split merge that weighs one
    /// split by w instead of 1 is ln w added to that split's keys.
    pub bias: Vec<f64>,
    pub softmax_scale: f64,
    /// 0: none.
    pub softcap: f64,
    /// Emulated roundings: q to this format before Q K^T, exp(s - max) to this format before
    /// P V (the row sum keeps the unrounded values, as the kernel does). `None`: exact.
    pub round_q: Option<Element>,
    pub round_p: Option<Element>,
}

impl RowSpec {
    /// Query `i` of a sequence of `ctx` tokens, as the case defines it.
    pub fn of(c: &AttentionConfig, ctx: usize, i: usize) -> RowSpec {
        RowSpec {
            keys: c.allowed_keys(ctx, i).collect(),
            bias: Vec::new(),
            softmax_scale: f64::from(c.softmax_scale()),
            softcap: f64::from(c.softcap),
            round_q: None,
            round_p: None,
        }
    }
}

/// The reference of the output rows `rows` (row r = (b * q_len + i) * q_heads + h).
pub fn decode_reference(
    c: &AttentionConfig,
    layout: &PagedLayout,
    x: &HostInputs,
    rows: &[usize],
) -> Vec<RowReference> {
    decode_reference_with(c, layout, x, rows, |_, _| {})
}

/// [`decode_reference`] with each row's [`RowSpec`] passed through `adjust(row, spec)` first.
pub fn decode_reference_with(
    c: &AttentionConfig,
    layout: &PagedLayout,
    x: &HostInputs,
    rows: &[usize],
    adjust: impl Fn(usize, &mut RowSpec) + Sync,
) -> Vec<RowReference> {
    let (qh, d, group) = (c.q_heads, c.head_dim, c.group());
    let (e, eb) = (x.kv_format, x.kv_format.bytes());
    // Key j's K or V row of head `kvh` into `row` (HND pages keep it contiguous), scaled. Plain
    // loops: the unoptimised test build runs this over every verify case.
    let load = |pool: &[u8], b: usize, j: usize, kvh: usize, scale: f64, row: &mut [f64]| {
        let at = layout.index(b, j, kvh, c.kv_heads, d, 0) * eb;
        for (v, bytes) in row.iter_mut().zip(pool[at..at + d * eb].chunks_exact(eb)) {
            *v = f64::from(e.decode(bytes)) * scale;
        }
    };
    rows.par_iter()
        .map(|&r| {
            let (b, i, h) = (r / (qh * c.q_len), (r / qh) % c.q_len, r % qh);
            let kvh = h / group;
            let ctx = layout.context_lens[b] as usize;
            let mut spec = RowSpec::of(c, ctx, i);
            adjust(r, &mut spec);
            let q: Vec<f64> = x.q[((b * c.q_len + i) * qh + h) * d..][..d]
                .iter()
                .map(|&v| f64::from(spec.round_q.map_or(v, |f| f.round(v))))
                .collect();
            let (ks, vs) = (f64::from(x.k_scales[kvh]), f64::from(x.v_scales[kvh]));
            let mut row = vec![0f64; d];
            let mut max_abs_dot = 0f64;
            let mut scores = Vec::with_capacity(spec.keys.len());
            for (n, &j) in spec.keys.iter().enumerate() {
                load(&x.k_pool, b, j, kvh, ks, &mut row);
                let (mut dot, mut abs) = (0f64, 0f64);
                for dd in 0..d {
                    let t = q[dd] * row[dd];
                    dot += t;
                    abs += t.abs();
                }
                max_abs_dot = max_abs_dot.max(abs * spec.softmax_scale);
                let s = dot * spec.softmax_scale;
                let capped = if spec.softcap > 0.0 {
                    spec.softcap * (s / spec.softcap).tanh()
                } else {
                    s
                };
                scores.push(capped + spec.bias.get(n).copied().unwrap_or(0.0));
            }
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = weights.iter().sum();
            let mut out = vec![0f64; d];
            let mut abs_weighted = vec![0f64; d];
            let mut abs_sum = vec![0f64; d];
            for (&w, &j) in weights.iter().zip(&spec.keys) {
                let p = w / sum;
                let p_used = spec.round_p.map_or(w, |f| f64::from(f.round(w as f32))) / sum;
                load(&x.v_pool, b, j, kvh, vs, &mut row);
                for dd in 0..d {
                    out[dd] += p_used * row[dd];
                    abs_weighted[dd] += p * row[dd].abs();
                    abs_sum[dd] += row[dd].abs();
                }
            }
            RowReference {
                out,
                abs_weighted,
                abs_sum,
                max_abs_score: scores.iter().fold(0f64, |m, s| m.max(s.abs())),
                max_abs_dot,
            }
        })
        .collect()
}

/// What the decode kernel's arithmetic is (kernels/attention/paged_decode.cuh), for its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Arithmetic {
    /// The output's (q type's) unit roundoff.
    pub u_out: f64,
    /// The unit roundoff of CT, the 16-bit type both products read: P is rounded to it.
    pub u_ct: f64,
    /// Half CT's subnormal spacing: P below CT's smallest normal is rounded with this absolute
    /// error, not u_ct relative (fp16: 2^-25; bf16's range makes it nil).
    pub tiny_ct: f64,
    /// q's rounding to CT: CT's unit roundoff when q is the other 16-bit type than a 16-bit
    /// cache; 0 when q is CT already (a same-type 16-bit cache, or any FP8 cache, whose K and V
    /// widen into q's type exactly).
    pub u_q: f64,
    pub head_dim: usize,
    /// The most keys one split (one CTA) of a row sums over, and the splits merged.
    pub keys_per_split: usize,
    pub splits: usize,
    pub softcap: f64,
}

impl Arithmetic {
    /// The kernel's arithmetic for case `c` run with `splits` splits.
    pub fn of(c: &AttentionConfig, splits: usize) -> Arithmetic {
        let u_out = c.q_dtype.unit_roundoff();
        let ct = Arithmetic::compute_type(c);
        let u_ct = ct.unit_roundoff();
        let ctx = c.max_context();
        let splits = splits.max(1);
        Arithmetic {
            u_out,
            u_ct,
            tiny_ct: match ct {
                Element::Fp16 => 2f64.powi(-25),
                _ => 2f64.powi(-134),
            },
            u_q: if ct == c.q_dtype { 0.0 } else { u_ct },
            head_dim: c.head_dim,
            keys_per_split: c.split_keys(ctx, splits, 0).len().max(1),
            splits,
            softcap: f64::from(c.softcap),
        }
    }

    /// The compute type the kernel rounds q and P to (for emulating it).
    pub fn compute_type(c: &AttentionConfig) -> Element {
        match c.kv_dtype {
            Element::Bf16 | Element::Fp16 => c.kv_dtype,
            _ => c.q_dtype,
        }
    }
}

/// The largest error the GPU result may have in element `dd` of `row`, term by term from what
/// the kernel does (u: a format's unit roundoff; S = Σ_j p_j |v_jd|, the row's `abs_weighted`):
/// - **output** rounded to the q type: u_out |out|.
/// - **P rounded to CT** before P·V, while the row sum l keeps the f32 values: each p_j in the
///   numerator is off by a factor (1 ± u_ct), nothing in l compensates: u_ct S. (V is exact in
///   CT: a 16-bit cache is CT, FP8 widens exactly; v_scale is applied in f32 at the end.) A p_j
///   below CT's smallest normal (fp16: 2^-14; peaked rows have many) is off by up to tiny_ct
///   absolute instead; p is relative to a running max that only grows, so l ≥ 1 in the same
///   units: tiny_ct Σ_j |v_jd|.
/// - **Score errors** δ (natural-log units, per key) change each normalised p_j by a factor
///   within e^{±2δ} (numerator and l both move), so the output by at most (e^{2δ} - 1) S:
///   - q rounded to CT, only when the kernel does it (`u_q`): |Δs| ≤ u_q Σ|q k| scale;
///   - the f32 dot product in mma (products of 16-bit operands are exact in f32; d / 16
///     accumulating steps, each off by up to 2 2^-23 of the magnitudes summed, as tensor cores
///     may truncate): 2 (d/16 + 1) 2^-23 Σ|q k| scale;
///   - f32 scaling by softmax_scale · k_scale · log2(e) (folded, three roundings), s - max, and
///     ex2.approx (2^-22 relative): 2^-21 (1 + |s|max);
///   - soft-cap as 1 - 2 / (1 + 2^y) (absolute error about 1e-7 of the cap): 2^-20 cap;
///   - split merge: each split's lse (max + log2 l, f32 and __log2f) and exp(lse - lse_max)
///     are off by 2^-20 (2 + |s|max + ln keys) at most.
/// - **f32 sums**: per split, l and O gather about keys/16 tile terms (and a rescale per tile),
///   each add off by 2^-23 relative at worst (mma may truncate), and the merge adds splits:
///   (4 (keys/16) + splits + 16) 2^-23 S.
///
/// None of these is charged twice: the old bound charged the rounding of q and K to a common
/// type for every case (≈10x too loose for same-type and FP8 caches) and u_ct twice.
pub fn tolerance(row: &RowReference, dd: usize, a: &Arithmetic) -> f64 {
    let f32_dot = 2.0 * (a.head_dim as f64 / 16.0 + 1.0) * 2f64.powi(-23);
    let keys = (a.keys_per_split * a.splits) as f64;
    let delta = (a.u_q + f32_dot) * row.max_abs_dot
        + 2f64.powi(-21) * (1.0 + row.max_abs_score)
        + 2f64.powi(-20) * a.softcap
        + 2f64.powi(-20) * (2.0 + row.max_abs_score + keys.ln());
    let tiles = a.keys_per_split.div_ceil(16) as f64;
    let f32_sums = (4.0 * tiles + a.splits as f64 + 16.0) * 2f64.powi(-23);
    a.u_out * row.out[dd].abs()
        + (a.u_ct + (2.0 * delta).exp_m1() + f32_sums) * row.abs_weighted[dd]
        + a.tiny_ct * row.abs_sum[dd]
}

/// How a kernel's output compares with the reference rows, element by element.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Elements outside [`tolerance`] (NaN, an unwritten element, is outside any bound).
    pub failures: usize,
    /// The first of them, described.
    pub first: Option<String>,
    /// ‖got - ref‖ / ‖ref‖ over the elements compared.
    pub rel_err: f64,
}

/// Compares `got(n, dd)` (element dd of the n-th row of `rows`) with each reference row: what
/// the GPU verification and the fault-injection test both judge by.
pub fn compare(
    rows: &[usize],
    refs: &[RowReference],
    a: &Arithmetic,
    got: impl Fn(usize, usize) -> f64,
) -> Comparison {
    let (mut err2, mut ref2, mut failures, mut first) = (0f64, 0f64, 0usize, None);
    for (n, (&r, row)) in rows.iter().zip(refs).enumerate() {
        for (dd, &want) in row.out.iter().enumerate() {
            let g = got(n, dd);
            let err = (g - want).abs();
            err2 += err * err;
            ref2 += want * want;
            let bound = tolerance(row, dd, a);
            let within = err <= bound;
            if !within {
                failures += 1;
                first.get_or_insert_with(|| {
                    format!("row {r} element {dd}: got {g}, want {want} (bound {bound:.2e})")
                });
            }
        }
    }
    Comparison {
        failures,
        first,
        rel_err: (err2 / ref2.max(f64::MIN_POSITIVE)).sqrt(),
    }
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
    fn unwritten_elements_fail_the_comparison() {
        let row = RowReference {
            out: vec![0.25, -0.5],
            abs_weighted: vec![0.5, 0.5],
            abs_sum: vec![1.0, 1.0],
            max_abs_score: 1.0,
            max_abs_dot: 1.0,
        };
        let c = AttentionConfig::parse("ctx=100").unwrap();
        let a = Arithmetic::of(&c, 1);
        let exact = compare(&[7], std::slice::from_ref(&row), &a, |_, dd| row.out[dd]);
        assert_eq!((exact.failures, exact.rel_err), (0, 0.0));
        let nan = compare(&[7], std::slice::from_ref(&row), &a, |_, _| f64::NAN);
        assert_eq!(nan.failures, 2);
        assert!(nan.first.unwrap().starts_with("row 7 element 0"));
    }

    #[test]
    fn tolerance_charges_q_rounding_only_where_the_kernel_rounds_q() {
        let row = RowReference {
            out: vec![0.1],
            abs_weighted: vec![0.5],
            abs_sum: vec![100.0],
            max_abs_score: 1.0,
            max_abs_dot: 3.0,
        };
        let case = |kv: &str, q: &str| {
            let c = AttentionConfig::parse(&format!("ctx=700,heads=8/2,kv={kv},q={q}")).unwrap();
            tolerance(&row, 0, &Arithmetic::of(&c, 3))
        };
        let same = case("bf16", "bf16");
        // Same type: output rounding, P rounding and f32 terms only (u = 2^-8).
        let u = 2f64.powi(-8);
        assert!(same < 1.1 * (u * 0.1 + u * 0.5), "{same}");
        // FP8 K widens exactly into q's type: no more than the same-type case.
        assert_eq!(case("e4m3", "bf16"), same);
        // bf16 queries on an fp16 cache are rounded to fp16: a score moves by up to
        // 2^-11 * 3, which is charged.
        let converted = case("fp16", "bf16");
        let fp16 = case("fp16", "fp16");
        assert!(
            converted > fp16 + 0.5 * 2f64.powi(-11) * 2.0 * 3.0 * 0.5,
            "{converted} {fp16}"
        );
        assert!(same > fp16 && fp16 > 0.0);
    }
}
