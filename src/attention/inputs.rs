//! A case's inputs on the host: the page table and q, K, V (and the tokens the append kernel
//! writes) in their formats, made from a seed without a GPU, so that CPU tests see exactly the
//! data a GPU verification uploads.

use rand::{Rng, SeedableRng};

use super::config::{AttentionConfig, Data, PEAKED_Q_SCALE};
use super::layout::PagedLayout;
use super::reference::HostInputs;
use crate::numeric::random_encoded;

pub struct CaseInputs {
    pub layout: PagedLayout,
    /// q as stored, `[batch][q_len][q_heads][head_dim]` (decoded in `host.q`).
    pub q_bytes: Vec<u8>,
    pub host: HostInputs,
    /// The new tokens' K and V in the q type, `[batch][q_len][kv_heads][head_dim]`.
    pub k_new_bytes: Vec<u8>,
    pub v_new_bytes: Vec<u8>,
}

/// The page layout of a case (the contiguous one ignores the seed).
pub fn layout_of(c: &AttentionConfig, seed: u64) -> PagedLayout {
    if c.contiguous {
        PagedLayout::contiguous(&c.context_lens())
    } else {
        PagedLayout::paged_with_prefix(&c.context_lens(), c.page_size, c.shared_tokens(), seed)
    }
}

impl CaseInputs {
    /// Random inputs on a shuffled page table, by the case's `data=`; the same seed gives the
    /// same inputs.
    pub fn generate(c: &AttentionConfig, seed: u64) -> CaseInputs {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let layout = layout_of(c, rng.random());
        let mut seed = || -> u64 { rng.random() };
        let (kvh, d) = (c.kv_heads, c.head_dim);
        let pool = layout.pool_elements(kvh, d);
        let (k_scales, v_scales) = c.fp8_scales();
        // The kv head of pool element i: pools are [page][kv_head][page_size][dim].
        let head_of = |i: usize| (i / (layout.page_size * d)) % kvh;
        let k_bytes = random_encoded(seed(), pool, c.kv_dtype, |i| k_scales[head_of(i)]);
        let mut v_bytes = random_encoded(seed(), pool, c.kv_dtype, |i| v_scales[head_of(i)]);
        let rows = c.batch * c.q_len * c.q_heads;
        let q_scale = match c.data {
            Data::Peaked => 1.0 / PEAKED_Q_SCALE,
            _ => 1.0,
        };
        let mut q_bytes = random_encoded(seed(), rows * d, c.q_dtype, |_| q_scale);
        if c.data == Data::Index {
            q_bytes.fill(0); // +0.0 in bf16 and fp16
            let e = c.kv_dtype;
            for (b, &ctx) in layout.context_lens.iter().enumerate() {
                for t in 0..ctx as usize {
                    for (h, scale) in v_scales.iter().enumerate() {
                        for dd in 0..d {
                            let i = layout.index(b, t, h, kvh, d, dd);
                            let stored = if t % d == dd { 1.0 / scale } else { 0.0 };
                            e.encode_to(stored, &mut v_bytes[i * e.bytes()..(i + 1) * e.bytes()]);
                        }
                    }
                }
            }
        }
        let new_elements = c.batch * c.q_len * kvh * d;
        let k_new_bytes = random_encoded(seed(), new_elements, c.q_dtype, |_| 1.0);
        let v_new_bytes = random_encoded(seed(), new_elements, c.q_dtype, |_| 1.0);
        CaseInputs {
            host: HostInputs {
                q: c.q_dtype.decode_all(&q_bytes),
                kv_format: c.kv_dtype,
                k_pool: k_bytes,
                v_pool: v_bytes,
                k_scales,
                v_scales,
            },
            layout,
            q_bytes,
            k_new_bytes,
            v_new_bytes,
        }
    }
}
