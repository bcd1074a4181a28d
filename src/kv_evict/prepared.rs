//! An eviction case on the device: a random cache in shuffled pages, the policy's queries, and
//! the score -> select -> compact launches of kernels/kv_evict/; each step verified against the
//! CPU reference of src/kv_evict/policy.rs (scores within a bound derived from f32, selection
//! and compaction exactly).

use anyhow::{anyhow, ensure, Result};
use rand::seq::index::sample;
use rand::Rng;
use rayon::prelude::*;

use super::block_manager::{BlockManager, SeqId};
use super::config::{EvictConfig, Op, ScoreData};
use super::plans::{
    check_compact_args, compact_args, compaction_pool_pages, compaction_state, plan_compaction,
    table_rows,
};
use super::policy::{attention_mass, plan_kept, Policy, PolicyParams};
use crate::attention::layout::PagedLayout;
use crate::gpu::{Buffer, Gpu, GpuResult, Kernel};
use crate::numeric::{random_encoded, Element};
use crate::suite::{Check, LaunchFn, Provider, Variant, Variants};

// Launch shapes, from the headers of kernels/kv_evict/score.cu, select.cu and copy.cu.
const LOGITS_BLOCK: u32 = 128;
const LSE_BLOCK: u32 = 128;
const ACCUMULATE_BLOCK: u32 = 256;
/// Tokens per kv_score_accumulate CTA (256 threads x 4).
const ACCUMULATE_TOKENS: usize = 1024;
const SELECT_BLOCK: u32 = 1024;
const COMPACT_BLOCK: u32 = 256;
/// The select kernel's `base` argument: how unprotected tokens are ranked.
const BASE_RECENCY: i32 = 0;
const BASE_RANDOM: i32 = 1;
const BASE_SCORE: i32 = 2;
/// Bytes that are NaN in every cache format (bf16, fp16, e4m3, e5m2): unwritten slots fail.
const POISON_BYTE: u8 = 0xFF;
/// Kept-list entries past the budget must stay as they were.
const POISON_INDEX: i32 = i32::MIN;

const KV_TYPES: [Element; 4] = [Element::Bf16, Element::Fp16, Element::E4m3, Element::E5m2];
const Q_TYPES: [Element; 2] = [Element::Bf16, Element::Fp16];

fn logits_kernel_name(c: &EvictConfig) -> String {
    format!("kv_score_logits_{}_{}", c.cache.kv_dtype, c.cache.q_dtype)
}

/// Every kernel of the family, for the embedded-kernel checks.
pub fn all_kernel_names() -> Vec<String> {
    let mut names: Vec<String> = KV_TYPES
        .iter()
        .flat_map(|kv| {
            Q_TYPES
                .iter()
                .map(move |q| format!("kv_score_logits_{kv}_{q}"))
        })
        .collect();
    names.extend(
        [
            "kv_score_lse",
            "kv_score_accumulate",
            "kv_select_topk",
            "kv_compact",
            "kv_copy_pages",
        ]
        .map(String::from),
    );
    names
}

fn select_base(policy: Policy) -> i32 {
    match policy {
        Policy::StreamingLlm | Policy::Recent => BASE_RECENCY,
        Policy::Random => BASE_RANDOM,
        Policy::H2o | Policy::Tova | Policy::SnapKv => BASE_SCORE,
    }
}

/// Device memory of a prepared case (pools with room for the compacted pages, score scratch).
/// From the case's parameters alone, never by building the block manager's state (a prediction
/// of a case far too large for any GPU must not allocate what it would).
pub fn device_bytes(c: &EvictConfig) -> u64 {
    let (stride, kept_stride) = strides(c);
    let pools = 2 * compaction_pool_pages(c) * c.page_bytes();
    let heads = c.cache.batch * c.cache.kv_heads;
    let rows = c.score_rows() * c.cache.group();
    let scratch = if c.needs_scores() {
        heads * stride * (rows + 2) * 4 + heads * rows * (stride / 32 + 2) * 8
    } else {
        heads * stride * 8
    };
    (pools + scratch + heads * kept_stride * 4) as u64
}

/// Entries per (sequence, kv head) of the scores (the longest context) and of the kept lists
/// (the largest budget).
fn strides(c: &EvictConfig) -> (usize, usize) {
    let longest = |v: Vec<usize>| v.into_iter().max().unwrap_or(1).max(1);
    (longest(c.context_lens()), longest(c.budgets()))
}

/// Where tokens live before and after compaction, as the block manager plans it: the batch's
/// block tables on a state with a shared system prompt and forked beams
/// (`plans::compaction_state`), then the fresh pages of the manager's compaction plans, planned
/// for the whole batch as one step (no sequence's fresh page is another's old page), with the
/// same table stride.
struct Geometry {
    /// Every page of the pool is addressable (`num_pages` is the pool's).
    old: PagedLayout,
    /// The plans' new tables (zeros until [`Geometry::plan`]).
    new_tables: Vec<i32>,
    budgets: Vec<usize>,
    pool_pages: usize,
    /// Scores and priorities per (sequence, kv head): the longest context.
    stride: usize,
    /// Kept-list entries per (sequence, kv head): the largest budget.
    kept_stride: usize,
    manager: BlockManager,
    ids: Vec<SeqId>,
}

impl Geometry {
    fn new(c: &EvictConfig, seed: u64) -> Geometry {
        let lens = c.context_lens();
        let ps = c.cache.page_size;
        let (manager, ids) = compaction_state(c, seed);
        let max_pages = lens
            .iter()
            .map(|l| l.div_ceil(ps))
            .max()
            .unwrap_or(1)
            .max(1);
        let tables = ids
            .iter()
            .map(|&id| manager.block_table(id).expect("on the device"));
        let pool_pages = compaction_pool_pages(c);
        let old = PagedLayout {
            page_size: ps,
            num_pages: pool_pages,
            max_pages_per_seq: max_pages,
            block_tables: table_rows(tables, max_pages),
            context_lens: lens.iter().map(|&l| l as i32).collect(),
        };
        let (stride, kept_stride) = strides(c);
        Geometry {
            pool_pages,
            stride,
            kept_stride,
            budgets: c.budgets(),
            new_tables: vec![0; old.block_tables.len()],
            old,
            manager,
            ids,
        }
    }

    /// Plans the batch's compaction to the kept lists `[batch][kv_heads][kept_stride]` and
    /// takes the kernel's tables from the plans, once they are checked to say what the plans
    /// say. Returns the fresh pages.
    fn plan(&mut self, kept: &[i32]) -> Result<Vec<u32>> {
        let lens: Vec<usize> = self.old.context_lens.iter().map(|&l| l as usize).collect();
        let counts: Vec<usize> = lens
            .iter()
            .zip(&self.budgets)
            .map(|(&l, &b)| l.min(b))
            .collect();
        let plans = plan_compaction(
            &mut self.manager,
            &self.ids,
            kept,
            self.kept_stride,
            &counts,
        );
        let args = compact_args(&plans, self.old.max_pages_per_seq);
        let ps = self.old.page_size;
        check_compact_args(&plans, &args, &lens, ps, self.pool_pages)
            .map_err(|e| anyhow!("compaction plans: {e}"))?;
        ensure!(
            args.old_tables == self.old.block_tables,
            "the plans' old tables are not the cache's"
        );
        self.new_tables = args.new_tables;
        Ok(plans.into_iter().flat_map(|p| p.new_table).collect())
    }

    /// Byte offset in a pool of token `t` of kv head `h` of sequence `b`, at page `page`.
    fn row_offset(&self, c: &EvictConfig, page: i32, h: usize, t: usize) -> usize {
        let ps = self.old.page_size;
        ((page as usize * c.cache.kv_heads + h) * ps + t % ps)
            * c.cache.head_dim
            * c.cache.kv_dtype.bytes()
    }
}

struct ScoreKernels {
    logits: Kernel,
    lse: Kernel,
    accumulate: Kernel,
}

pub struct PreparedEviction {
    c: EvictConfig,
    g: Geometry,
    params: Vec<PolicyParams>,
    /// Host copies for the references: the pools' bytes (old pages), queries decoded, scales.
    k_host: Vec<u8>,
    v_host: Vec<u8>,
    q_host: Vec<f32>,
    k_scales_host: Vec<f32>,
    /// Scores before the launch: H2O's running totals, or the scores a select case ranks.
    scores_before: Vec<f32>,
    /// The CPU's kept lists (compact cases compact exactly these).
    kept_host: Vec<i32>,
    q: Buffer<u8>,
    k_pool: Buffer<u8>,
    v_pool: Buffer<u8>,
    old_tables: Buffer<i32>,
    new_tables: Buffer<i32>,
    context_lens: Buffer<i32>,
    budgets: Buffer<i32>,
    recents: Buffer<i32>,
    k_scales: Buffer<f32>,
    logits: Buffer<f32>,
    partials: Buffer<f32>,
    lse: Buffer<f32>,
    scores: Buffer<f32>,
    priority: Buffer<u32>,
    kept: Buffer<i32>,
    score_kernels: Option<ScoreKernels>,
    select: Option<Kernel>,
    compact: Option<Kernel>,
}

/// Scores a select or compact case ranks by (no score pass runs there).
fn given_scores(data: ScoreData, n: usize, rng: &mut impl Rng) -> Vec<f32> {
    match data {
        ScoreData::Random => (0..n).map(|_| rng.random::<f32>()).collect(),
        ScoreData::Equal => vec![0.5; n],
        ScoreData::Ties => (0..n)
            .map(|_| f32::from(rng.random_range(0u8..4)) / 4.0)
            .collect(),
    }
}

impl PreparedEviction {
    /// The cache, the scores and kept lists a step reads, and one variant: the step's kernels.
    pub fn prepare(gpu: &Gpu, c: &EvictConfig) -> Result<Variants<PreparedEviction>> {
        c.validate()?;
        let mut rng = rand::rng();
        let g = Geometry::new(c, rng.random());
        let cache = &c.cache;
        let (kvh, d, e) = (cache.kv_heads, cache.head_dim, cache.kv_dtype);
        let (k_scales, _) = cache.fp8_scales();
        let head_of = |i: usize| (i / (g.old.page_size * d)) % kvh;
        let pool_elements = g.old.pool_elements(kvh, d);
        let k_host = random_encoded(rng.random(), pool_elements, e, |i| k_scales[head_of(i)]);
        let v_host = random_encoded(rng.random(), pool_elements, e, |i| k_scales[head_of(i)]);
        let rows = c.score_rows();
        let q_bytes = random_encoded(
            rng.random(),
            cache.batch * rows * cache.q_heads * d,
            cache.q_dtype,
            |_| 1.0,
        );
        let seed: u64 = rng.random();
        let params: Vec<PolicyParams> = g
            .budgets
            .iter()
            .map(|&b| PolicyParams {
                seed,
                ..c.policy_params(b)
            })
            .collect();
        let heads = cache.batch * kvh;
        let score_len = heads * g.stride;
        let scores_before = match (c.op, c.accumulates()) {
            (Op::Select | Op::Compact, _) => given_scores(c.scores, score_len, &mut rng),
            // H2O's running totals from earlier steps: this step adds to them.
            (_, true) => (0..score_len).map(|_| 4.0 * rng.random::<f32>()).collect(),
            (_, false) => vec![f32::NAN; score_len],
        };
        let mut prepared = PreparedEviction {
            q: gpu.upload(&q_bytes)?,
            k_pool: gpu.upload(&k_host)?,
            v_pool: gpu.upload(&v_host)?,
            old_tables: gpu.upload(&g.old.block_tables)?,
            new_tables: gpu.upload(&g.new_tables)?,
            context_lens: gpu.upload(&g.old.context_lens)?,
            budgets: gpu.upload(&g.budgets.iter().map(|&b| b as i32).collect::<Vec<_>>())?,
            recents: gpu.upload(&params.iter().map(|p| p.recent as i32).collect::<Vec<_>>())?,
            k_scales: gpu.upload(&k_scales)?,
            logits: gpu.alloc(if c.needs_scores() {
                score_len * rows * cache.group()
            } else {
                1
            })?,
            partials: gpu.alloc(if c.needs_scores() {
                2 * heads * rows * cache.group() * g.stride.div_ceil(32)
            } else {
                1
            })?,
            lse: gpu.alloc(heads * rows * cache.group())?,
            scores: gpu.upload(&scores_before)?,
            priority: gpu.alloc(score_len)?,
            kept: gpu.alloc(heads * g.kept_stride)?,
            q_host: cache.q_dtype.decode_all(&q_bytes),
            k_scales_host: k_scales,
            kept_host: Vec::new(),
            scores_before,
            k_host,
            v_host,
            params,
            score_kernels: None,
            select: None,
            compact: None,
            c: c.clone(),
            g,
        };
        prepared.kept_host = prepared.cpu_kept(&prepared.scores_before.clone());
        if c.op == Op::Compact {
            gpu.write(&mut prepared.kept, &prepared.kept_host)?;
        }
        // The fresh pages are poisoned in the host copies too, which the references read only
        // at old pages: `verify` restores the pools from them.
        let fresh = prepared.g.plan(&prepared.kept_host)?;
        let pb = c.page_bytes();
        for &p in &fresh {
            let range = p as usize * pb..(p as usize + 1) * pb;
            prepared.k_host[range.clone()].fill(POISON_BYTE);
            prepared.v_host[range].fill(POISON_BYTE);
        }
        gpu.write(&mut prepared.k_pool, &prepared.k_host)?;
        gpu.write(&mut prepared.v_pool, &prepared.v_host)?;
        gpu.write(&mut prepared.new_tables, &prepared.g.new_tables)?;
        let variant = prepared.load_kernels(gpu);
        gpu.synchronize()?;
        Ok(Variants::new(prepared, vec![variant]))
    }

    /// Loads what the case's steps launch; one variant, unavailable if any kernel is missing.
    fn load_kernels(&mut self, gpu: &Gpu) -> Variant<PreparedEviction> {
        let c = &self.c;
        let scoring = matches!(c.op, Op::Score | Op::Evict) && c.needs_scores();
        let selecting = matches!(c.op, Op::Select | Op::Evict);
        let compacting = matches!(c.op, Op::Compact | Op::Evict);
        let mut names = Vec::new();
        let mut missing = None;
        let mut load = |name: String| {
            let kernel = gpu.kernel_by_name(&name);
            if let Err(e) = &kernel {
                missing.get_or_insert(e.to_string());
            }
            names.push(name);
            kernel.ok()
        };
        if scoring {
            let (logits, lse, accumulate) = (
                load(logits_kernel_name(c)),
                load("kv_score_lse".into()),
                load("kv_score_accumulate".into()),
            );
            if let (Some(logits), Some(lse), Some(accumulate)) = (logits, lse, accumulate) {
                self.score_kernels = Some(ScoreKernels {
                    logits,
                    lse,
                    accumulate,
                });
            }
        }
        if selecting {
            self.select = load("kv_select_topk".into());
        }
        if compacting {
            self.compact = load("kv_compact".into());
        }
        let name = names.join("+");
        match missing {
            None => Variant::new(
                name,
                Provider::Roofbench,
                |s: &mut PreparedEviction, gpu| s.launch_steps(gpu),
                PreparedEviction::verify_steps,
            ),
            Some(why) => Variant::unavailable(name, Provider::Roofbench, why),
        }
    }

    /// The CPU's kept lists `[batch][kv_heads][kept_stride]` for the given scores (padding
    /// entries hold POISON_INDEX).
    fn cpu_kept(&self, scores: &[f32]) -> Vec<i32> {
        let (kvh, stride, kept_stride) = (self.c.cache.kv_heads, self.g.stride, self.g.kept_stride);
        let lens = &self.g.old.context_lens;
        let mut kept = vec![POISON_INDEX; lens.len() * kvh * kept_stride];
        kept.par_chunks_mut(kept_stride)
            .enumerate()
            .for_each(|(row, out)| {
                let (b, h) = (row / kvh, row % kvh);
                let len = lens[b] as usize;
                let row_scores = &scores[row * stride..][..len];
                let keep = plan_kept(
                    &self.params[b],
                    Some(row_scores),
                    len,
                    b as u32,
                    h as u32,
                    self.g.budgets[b],
                );
                for (slot, &t) in out.iter_mut().zip(&keep) {
                    *slot = t as i32;
                }
            });
        kept
    }

    fn launch_score(&self, gpu: &Gpu) -> GpuResult<()> {
        let Some(k) = &self.score_kernels else {
            unreachable!("unavailable variants are not launched")
        };
        let cache = &self.c.cache;
        let (rows, group) = (self.c.score_rows(), cache.group());
        let (batch, kvh) = (cache.batch as u32, cache.kv_heads as u32);
        let ints = [
            self.g.old.max_pages_per_seq as i32,
            i32::from(cache.per_head_scales),
            rows as i32,
            cache.q_heads as i32,
            cache.kv_heads as i32,
            cache.head_dim as i32,
            cache.page_size as i32,
            self.g.stride as i32,
            (rows * group) as i32,
            i32::from(self.c.accumulates()),
        ];
        let [max_pages, scale_stride, rows_i, q_heads, kv_heads, head_dim, page_size, stride, rows_total, accumulate] =
            &ints;
        let softmax_scale = cache.softmax_scale();
        let mut launch = gpu.launch(&k.logits);
        launch
            .buffer(&self.q)
            .buffer(&self.k_pool)
            .buffer(&self.old_tables)
            .value(max_pages)
            .buffer(&self.context_lens)
            .buffer(&self.k_scales)
            .value(scale_stride)
            .buffer(&self.logits)
            .buffer(&self.partials)
            .value(rows_i)
            .value(q_heads)
            .value(kv_heads)
            .value(head_dim)
            .value(page_size)
            .value(stride)
            .value(&softmax_scale);
        let key_blocks = self.g.stride.div_ceil(LOGITS_BLOCK as usize) as u32;
        // SAFETY: kv_score_logits signature; buffers sized in `new` for these maxima.
        unsafe { launch.run_3d((key_blocks, kvh, batch), LOGITS_BLOCK, 0)? };
        let mut launch = gpu.launch(&k.lse);
        launch
            .buffer(&self.partials)
            .buffer(&self.context_lens)
            .buffer(&self.lse)
            .value(stride);
        // SAFETY: kv_score_lse signature; grid (rows, kv heads, batch).
        unsafe { launch.run_3d(((rows * group) as u32, kvh, batch), LSE_BLOCK, 0)? };
        let mut launch = gpu.launch(&k.accumulate);
        launch
            .buffer(&self.logits)
            .buffer(&self.lse)
            .buffer(&self.context_lens)
            .buffer(&self.scores)
            .value(rows_total)
            .value(stride)
            .value(accumulate);
        let token_blocks = self.g.stride.div_ceil(ACCUMULATE_TOKENS) as u32;
        // SAFETY: kv_score_accumulate signature; grid (token blocks, kv heads, batch).
        unsafe { launch.run_3d((token_blocks, kvh, batch), ACCUMULATE_BLOCK, 0) }
    }

    fn launch_select(&self, gpu: &Gpu) -> GpuResult<()> {
        let Some(select) = &self.select else {
            unreachable!("unavailable variants are not launched")
        };
        // Every sequence shares the policy's shape; only `recent` follows the budget (H2O).
        let p = &self.params[0];
        let ints = [
            self.g.stride as i32,
            self.g.kept_stride as i32,
            select_base(self.c.policy),
            p.sinks as i32,
            p.pool_kernel as i32,
        ];
        let [stride, kept_stride, base, sinks, pool] = &ints;
        let mut launch = gpu.launch(select);
        launch
            .buffer(&self.scores)
            .buffer(&self.context_lens)
            .buffer(&self.budgets)
            .buffer(&self.kept)
            .buffer(&self.priority)
            .value(stride)
            .value(kept_stride)
            .value(base)
            .value(sinks)
            .buffer(&self.recents)
            .value(pool)
            .value(&p.seed);
        let cache = &self.c.cache;
        // SAFETY: kv_select_topk signature; grid (kv heads, batch).
        unsafe {
            launch.run_3d(
                (cache.kv_heads as u32, cache.batch as u32, 1),
                SELECT_BLOCK,
                0,
            )
        }
    }

    fn launch_compact(&self, gpu: &Gpu) -> GpuResult<()> {
        let Some(compact) = &self.compact else {
            unreachable!("unavailable variants are not launched")
        };
        let cache = &self.c.cache;
        let row_vectors = cache.head_dim * cache.kv_dtype.bytes() / 16;
        let ints = [
            self.g.old.max_pages_per_seq as i32,
            self.g.kept_stride as i32,
            cache.kv_heads as i32,
            cache.page_size as i32,
            row_vectors as i32,
        ];
        let [max_pages, kept_stride, kv_heads, page_size, row_vectors_i] = &ints;
        let mut launch = gpu.launch(compact);
        launch
            .buffer(&self.k_pool)
            .buffer(&self.v_pool)
            .buffer(&self.old_tables)
            .buffer(&self.new_tables)
            .value(max_pages)
            .buffer(&self.kept)
            .value(kept_stride)
            .buffer(&self.budgets)
            .buffer(&self.context_lens)
            .value(kv_heads)
            .value(page_size)
            .value(row_vectors_i);
        let vectors = cache.kv_heads * self.g.kept_stride * row_vectors;
        let blocks = vectors.div_ceil(COMPACT_BLOCK as usize) as u32;
        // SAFETY: kv_compact signature; grid (vector blocks, batch).
        unsafe { launch.run_3d((blocks, cache.batch as u32, 1), COMPACT_BLOCK, 0) }
    }

    /// The (sequence, kv head) rows whose scores are checked: all while the f64 reference stays
    /// cheap, else 64 random ones plus the first and the last.
    fn score_rows_to_check(&self) -> Vec<usize> {
        let cache = &self.c.cache;
        let heads = cache.batch * cache.kv_heads;
        let rows = self.c.score_rows() * cache.group();
        let work: usize =
            self.c.context_lens().iter().sum::<usize>() * cache.kv_heads * rows * cache.head_dim;
        if work <= 1 << 31 {
            return (0..heads).collect();
        }
        let mut picked = sample(&mut rand::rng(), heads, 64.min(heads)).into_vec();
        picked.extend([0, heads - 1]);
        picked.sort_unstable();
        picked.dedup();
        picked
    }

    /// One (sequence, kv head)'s keys `[len][dim]` as the GPU reads them (scale applied) and the
    /// queries of its group `[rows][group][dim]`.
    fn head_inputs(&self, b: usize, h: usize) -> (Vec<f32>, Vec<f32>) {
        let cache = &self.c.cache;
        let (kvh, d, group, e) = (
            cache.kv_heads,
            cache.head_dim,
            cache.group(),
            cache.kv_dtype,
        );
        let len = self.g.old.context_lens[b] as usize;
        let scale = self.k_scales_host[h];
        let mut k = Vec::with_capacity(len * d);
        for t in 0..len {
            let base = self.g.old.index(b, t, h, kvh, d, 0);
            k.extend((0..d).map(|dd| e.decode_at(&self.k_host, base + dd) * scale));
        }
        let rows = self.c.score_rows();
        let mut q = Vec::with_capacity(rows * group * d);
        for i in 0..rows {
            for g in 0..group {
                let head = h * group + g;
                q.extend_from_slice(
                    &self.q_host[((b * rows + i) * cache.q_heads + head) * d..][..d],
                );
            }
        }
        (k, q)
    }

    /// Compares the scores with the f64 reference within a bound from f32 arithmetic: a score
    /// q·k summed over head_dim terms is off by at most (dim + 2) u |q|·|k| (times the softmax
    /// scale); each probability then by its size times twice that (its own score and the row's
    /// log-sum-exp) plus exp's error, which grows with |s - lse|; summing rows adds u per row.
    fn check_scores(&self, got: &[f32]) -> (usize, usize, f64, Option<String>) {
        let cache = &self.c.cache;
        let (kvh, d) = (cache.kv_heads, cache.head_dim);
        let rows = self.c.score_rows();
        let group = cache.group();
        let u = Element::F32.unit_roundoff();
        let scale = f64::from(cache.softmax_scale());
        let checked = self.score_rows_to_check();
        let results: Vec<(usize, f64, f64, Option<String>)> = checked
            .par_iter()
            .map(|&row| {
                let (b, h) = (row / kvh, row % kvh);
                let len = self.g.old.context_lens[b] as usize;
                let (k, q) = self.head_inputs(b, h);
                let positions: Vec<usize> = (0..rows).map(|i| len - rows + i).collect();
                let mass = attention_mass(&q, group, &positions, &k, len, d, scale);
                let max_k = k.iter().fold(0f64, |m, &x| m.max(f64::from(x).abs()));
                let max_q1 = q
                    .chunks(d)
                    .map(|r| r.iter().map(|&x| f64::from(x).abs()).sum::<f64>())
                    .fold(0f64, f64::max);
                let max_abs_score = scale * max_q1 * max_k;
                let score_err = scale * (d + 2) as f64 * u * max_q1 * max_k;
                let exp_err = (2.0 * max_abs_score + (len as f64).ln() + 16.0) * 2.0 * u;
                let per_mass = 2.0 * score_err + exp_err + (rows * group) as f64 * u;
                let (mut failures, mut err2, mut ref2, mut first) = (0, 0f64, 0f64, None);
                for (t, &m) in mass.iter().enumerate() {
                    let before = if self.c.accumulates() {
                        f64::from(self.scores_before[row * self.g.stride + t])
                    } else {
                        0.0
                    };
                    let want = before + m;
                    let g = f64::from(got[row * self.g.stride + t]);
                    let err = (g - want).abs();
                    err2 += err * err;
                    ref2 += want * want;
                    let bound = m * per_mass + 2.0 * u * want.abs() + f64::MIN_POSITIVE;
                    // A NaN (an unwritten score) is within no bound.
                    let within = err <= bound;
                    if !within {
                        failures += 1;
                        first.get_or_insert(format!(
                            "seq {b} kv head {h} token {t}: got {g}, want {want}"
                        ));
                    }
                }
                (failures, err2, ref2, first)
            })
            .collect();
        let failures = results.iter().map(|r| r.0).sum();
        let err2: f64 = results.iter().map(|r| r.1).sum();
        let ref2: f64 = results.iter().map(|r| r.2).sum();
        let first = results.into_iter().find_map(|r| r.3);
        (
            checked.len(),
            failures,
            (err2 / ref2.max(f64::MIN_POSITIVE)).sqrt(),
            first,
        )
    }

    /// Compares the kept lists with the CPU's for the same scores: exact, and untouched past
    /// each budget.
    fn check_kept(&self, got: &[i32], want: &[i32]) -> Option<String> {
        let ks = self.g.kept_stride;
        got.chunks(ks)
            .zip(want.chunks(ks))
            .enumerate()
            .find_map(|(row, (g, w))| {
                let (b, h) = (row / self.c.cache.kv_heads, row % self.c.cache.kv_heads);
                (g != w).then(|| {
                    let j = g.iter().zip(w).position(|(a, b)| a != b).unwrap_or(0);
                    format!("seq {b} kv head {h} entry {j}: got {}, want {}", g[j], w[j])
                })
            })
    }

    /// Compares every kept row in the fresh pages, K and V, byte for byte with the token it came
    /// from.
    fn check_compacted(&self, gpu: &Gpu, kept: &[i32]) -> Result<Option<String>> {
        let (k_pool, v_pool) = (gpu.download(&self.k_pool)?, gpu.download(&self.v_pool)?);
        let cache = &self.c.cache;
        let (kvh, ps) = (cache.kv_heads, cache.page_size);
        let row_bytes = cache.head_dim * cache.kv_dtype.bytes();
        let mp = self.g.old.max_pages_per_seq;
        for (b, &budget) in self.g.budgets.iter().enumerate() {
            let budget = budget.min(self.g.old.context_lens[b] as usize);
            for h in 0..kvh {
                let list = &kept[(b * kvh + h) * self.g.kept_stride..][..budget];
                for (j, &src) in list.iter().enumerate() {
                    let src = src as usize;
                    let from = self.g.row_offset(
                        &self.c,
                        self.g.old.block_tables[b * mp + src / ps],
                        h,
                        src,
                    );
                    let to = self
                        .g
                        .row_offset(&self.c, self.g.new_tables[b * mp + j / ps], h, j);
                    for (pool, host, name) in
                        [(&k_pool, &self.k_host, "K"), (&v_pool, &self.v_host, "V")]
                    {
                        if pool[to..to + row_bytes] != host[from..from + row_bytes] {
                            return Ok(Some(format!(
                                "{name} of seq {b} kv head {h} slot {j} (token {src}) differs"
                            )));
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    fn verify_steps(&mut self, gpu: &Gpu, launch: &mut LaunchFn<Self>) -> Result<Check> {
        let c = self.c.clone();
        // Poison what the launch must write, restore what it reads.
        gpu.write(&mut self.scores, &self.scores_before)?;
        if c.op != Op::Compact {
            let poison = vec![POISON_INDEX; self.kept.len()];
            gpu.write(&mut self.kept, &poison)?;
        }
        if matches!(c.op, Op::Compact | Op::Evict) {
            gpu.write(&mut self.k_pool, &self.k_host)?;
            gpu.write(&mut self.v_pool, &self.v_host)?;
        }
        launch(self, gpu)?;
        gpu.synchronize()?;

        let mut details = Vec::new();
        let mut max_rel_err = 0.0;
        let scores = if matches!(c.op, Op::Score | Op::Evict) && c.needs_scores() {
            let got = gpu.download(&self.scores)?;
            let (rows, failures, rel, first) = self.check_scores(&got);
            max_rel_err = rel;
            if let Some(f) = first {
                return Ok(failed(format!(
                    "{failures} scores outside the bound; first {f}"
                )));
            }
            details.push(format!("scores of {rows} (seq, kv head) rows within the f32 bound (‖err‖/‖ref‖ = {rel:.1e})"));
            got
        } else {
            self.scores_before.clone()
        };
        let kept = if matches!(c.op, Op::Select | Op::Evict) {
            // The kept set follows from the GPU's own scores: near-ties may order differently
            // from the f64 reference's, and the selection is what is being checked here.
            let want = self.cpu_kept(&scores);
            let got = gpu.download(&self.kept)?;
            if let Some(f) = self.check_kept(&got, &want) {
                return Ok(failed(format!("kept lists differ: {f}")));
            }
            details.push("kept lists exact".into());
            got
        } else {
            self.kept_host.clone()
        };
        if matches!(c.op, Op::Compact | Op::Evict) {
            if let Some(f) = self.check_compacted(gpu, &kept)? {
                return Ok(failed(format!("compaction: {f}")));
            }
            details.push("compacted K/V rows exact".into());
        }
        Ok(Check {
            passed: true,
            max_rel_err,
            detail: details.join("; "),
            accuracy: None,
        })
    }
}

fn failed(detail: String) -> Check {
    Check {
        passed: false,
        max_rel_err: 1.0,
        detail,
        accuracy: None,
    }
}

impl PreparedEviction {
    /// The case's steps, back to back.
    fn launch_steps(&self, gpu: &Gpu) -> GpuResult<()> {
        let op = self.c.op;
        if matches!(op, Op::Score | Op::Evict) && self.c.needs_scores() {
            self.launch_score(gpu)?;
        }
        if matches!(op, Op::Select | Op::Evict) {
            self.launch_select(gpu)?;
        }
        if matches!(op, Op::Compact | Op::Evict) {
            self.launch_compact(gpu)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_tables_are_the_plans_and_the_fresh_pages_hold_each_budget() {
        let c =
            EvictConfig::parse("op=compact,policy=random,lens=100:7:33,p=16,budget=50%").unwrap();
        let mut g = Geometry::new(&c, 3);
        assert_eq!(g.budgets, vec![50, 4, 17]);
        assert_eq!(g.pool_pages, 7 + 1 + 3 + 4 + 1 + 2);
        let kvh = c.cache.kv_heads;
        let mut kept = vec![POISON_INDEX; 3 * kvh * g.kept_stride];
        for (b, &len) in [100usize, 7, 33].iter().enumerate() {
            let n = g.budgets[b].min(len);
            for h in 0..kvh {
                let p = c.policy_params(g.budgets[b]);
                let list = plan_kept(&p, None, len, b as u32, h as u32, n);
                for (j, &t) in list.iter().enumerate() {
                    kept[(b * kvh + h) * g.kept_stride + j] = t as i32;
                }
            }
        }
        let old = g.old.block_tables.clone();
        let mut fresh = g.plan(&kept).unwrap();
        let mp = g.old.max_pages_per_seq;
        let rows: Vec<i32> = (0..3)
            .flat_map(|b| g.new_tables[b * mp..][..g.budgets[b].div_ceil(16)].to_vec())
            .collect();
        assert_eq!(rows, fresh.iter().map(|&p| p as i32).collect::<Vec<_>>());
        fresh.sort_unstable();
        fresh.dedup();
        assert_eq!(fresh.len(), 4 + 1 + 2, "each fresh page once");
        assert!(
            fresh.iter().all(|&p| !old.contains(&(p as i32))),
            "none old"
        );
    }

    #[test]
    fn kernel_names_cover_every_type_pair() {
        let names = all_kernel_names();
        assert_eq!(names.len(), 8 + 5);
        let c = EvictConfig::parse("kv=e5m2,q=fp16").unwrap();
        assert!(names.contains(&logits_kernel_name(&c)));
    }
}
