//! One decode-attention problem: batch, heads, head dim, page size, dtypes, query length,
//! context lengths and options. Parsed from `--case key=value,...`, named for result rows, and
//! checked against what the kernels support (an unsupported case is an error saying why).

use anyhow::{bail, Context, Result};

use crate::numeric::Element;
use crate::roofline::Precision;
use crate::roofline::Workload;
use crate::suite::spec::{Absent, Grammar, Key, Spec, Value};

pub const MAX_CONTEXT: usize = 131_072;
pub const MAX_GROUP: usize = 16;
pub const MAX_Q_LEN: usize = 8;
pub const MAX_HEAD_DIM: usize = 256;
/// Head dims with compiled instances; other multiples of 16 (of 8 on 16-bit caches) use the
/// generic path.
pub const FAST_HEAD_DIMS: [usize; 5] = [64, 96, 128, 192, 256];
pub const MAX_SPLITS: usize = 64;
/// Batch and kv heads are grid dimensions (z and y), which CUDA caps at 65535.
pub const MAX_BATCH: usize = 65_535;
pub const MAX_KV_HEADS: usize = 65_535;
/// Bound on Σ context x q_len x q heads x head dim x 16 (see `validate`): 2^60, a thousand times
/// a 128k-context batch of 256 at 128 q heads of 256.
const MAX_WORK: u64 = 1 << 60;
/// The context of a sequence when neither `ctx=` nor `lens=` is given.
const DEFAULT_CONTEXT: usize = 4096;

/// The scale of an FP8 cache when none is given: a power of two, so dequantisation is exact.
pub const DEFAULT_FP8_SCALE: f32 = 0.125;

/// Test data of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// q, K and V uniform in [-1, 1): scores of about ±0.3, a nearly flat softmax.
    Random,
    /// Index-revealing: q = 0 and V one-hot in token % head_dim, so each output element counts
    /// the allowed keys of one residue: a key read twice, skipped or wrongly masked moves it by
    /// 1/n, far above the rounding bound. (q = 0 never exercises Q K^T.)
    Index,
    /// q scaled by [`PEAKED_Q_SCALE`]: scores with a standard deviation of about 6, so a few
    /// keys dominate each row's softmax and scores reach well past a soft-cap of 5-30. A wrong
    /// scale, a missing cap or a lost dominant key moves the output by much more than rounding.
    Peaked,
}

/// q's magnitude for `data=peaked`: q, k uniform in [-a, a] and [-1, 1) give scores
/// (q·k / sqrt(d)) of standard deviation a / 3; a = 18 gives 6.
pub const PEAKED_Q_SCALE: f32 = 18.0;

/// How context lengths are spread over the batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Lengths {
    /// Every sequence has this context.
    Uniform(usize),
    /// Zipf(1) over the batch with this mean: the same total KV as Uniform(mean), skewed.
    Zipf(usize),
    /// One length per sequence.
    Explicit(Vec<usize>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttentionConfig {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub page_size: usize,
    pub q_dtype: Element,
    pub kv_dtype: Element,
    pub q_len: usize,
    pub lengths: Lengths,
    /// Keys within this distance of the query (0: no window).
    pub window: usize,
    /// Logits soft-cap (0: off).
    pub softcap: f32,
    /// FP8 scales per kv head instead of one per tensor.
    pub per_head_scales: bool,
    /// FP8 K and V scales as given (`kscale=`, `vscale=`): one value, or one per kv head; empty
    /// for the defaults (see [`AttentionConfig::fp8_scales`]).
    pub k_scale: Vec<f32>,
    pub v_scale: Vec<f32>,
    /// Tokens at the start of every sequence that are the same prefix: its whole pages are one
    /// set of physical pages that every block table points to (prefix caching shares full pages
    /// only; the partial page past them is each sequence's own).
    pub prefix: usize,
    /// The same kernel on one page per sequence (the cost of paging, measured).
    pub contiguous: bool,
    /// Split-K factor; `None`: the heuristic.
    pub splits: Option<usize>,
    /// Test data (random, index-revealing or peaked).
    pub data: Data,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig {
            batch: 1,
            q_heads: 32,
            kv_heads: 8,
            head_dim: 128,
            page_size: 16,
            q_dtype: Element::Bf16,
            kv_dtype: Element::Bf16,
            q_len: 1,
            lengths: Lengths::Uniform(DEFAULT_CONTEXT),
            window: 0,
            softcap: 0.0,
            per_head_scales: false,
            k_scale: Vec::new(),
            v_scale: Vec::new(),
            prefix: 0,
            contiguous: false,
            splits: None,
            data: Data::Random,
        }
    }
}

impl AttentionConfig {
    pub fn group(&self) -> usize {
        self.q_heads / self.kv_heads
    }

    pub fn softmax_scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    /// The FP8 K and V scales of each kv head (1 for 16-bit caches): `kscale=`/`vscale=` as
    /// given (one value for every head, or one per head), else [`DEFAULT_FP8_SCALE`], and with
    /// `scale=head` alone the default per-head pattern 1/8, 1/16, 1/32, 1/8, ...
    pub fn fp8_scales(&self) -> (Vec<f32>, Vec<f32>) {
        let of = |given: &[f32]| -> Vec<f32> {
            (0..self.kv_heads)
                .map(|h| {
                    if !is_fp8(self.kv_dtype) {
                        1.0
                    } else if let Some(&s) = given.get(h).or(given.first()) {
                        s
                    } else if self.per_head_scales {
                        DEFAULT_FP8_SCALE * 2f32.powi(-((h % 3) as i32))
                    } else {
                        DEFAULT_FP8_SCALE
                    }
                })
                .collect()
        };
        (of(&self.k_scale), of(&self.v_scale))
    }

    /// Tokens of every sequence in the shared prefix pages (whole pages of `prefix`).
    pub fn shared_tokens(&self) -> usize {
        if self.contiguous {
            0
        } else {
            self.prefix / self.page_size * self.page_size
        }
    }

    /// The context length of every sequence (deterministic: predictions and runs agree).
    pub fn context_lens(&self) -> Vec<usize> {
        match &self.lengths {
            Lengths::Uniform(n) => vec![*n; self.batch],
            Lengths::Explicit(v) => v.clone(),
            Lengths::Zipf(mean) => zipf_lengths(self.batch, *mean, self.q_len),
        }
    }

    pub fn max_context(&self) -> usize {
        self.context_lens().into_iter().max().unwrap_or(0)
    }

    /// Keys query `i` (0-based among the q_len new tokens) of a sequence with `ctx` may attend:
    /// causal up to its own position, limited by the window. The window is vLLM's
    /// `sliding_window`: the last `window` keys *including* the query's own token.
    pub fn allowed_keys(&self, ctx: usize, i: usize) -> std::ops::Range<usize> {
        let position = ctx - self.q_len + i;
        let start = if self.window > 0 {
            (position + 1).saturating_sub(self.window)
        } else {
            0
        };
        start..position + 1
    }

    /// What splits are rounded to: the case's page size for both layouts (a contiguous cache has
    /// one page per sequence, and rounding to that would leave it unsplit).
    pub fn split_align(&self) -> usize {
        self.page_size
    }

    /// Keys `[begin, end)` of split `split` of a sequence of `context` tokens, as the decode kernel
    /// cuts them (`split_keys` in kernels/common/attention.cuh).
    pub fn split_keys(
        &self,
        context: usize,
        num_splits: usize,
        split: usize,
    ) -> std::ops::Range<usize> {
        let align = self.split_align();
        let chunk = context.div_ceil(num_splits).div_ceil(align) * align;
        let begin = (split * chunk).min(context);
        begin..(begin + chunk).min(context)
    }

    /// Split-K factor: enough CTAs (batch x kv heads x splits) to fill the GPU twice over, each
    /// split at least 256 keys; overridable with `splits=`.
    pub fn num_splits(&self, sms: u32) -> usize {
        if let Some(s) = self.splits {
            return s;
        }
        let ctas = self.batch * self.kv_heads;
        let wanted = (2 * sms as usize).div_ceil(ctas.max(1));
        let by_length = self.max_context().div_ceil(256);
        wanted.min(by_length).clamp(1, MAX_SPLITS)
    }

    /// Minimum bytes (K and V of every context once, q in, output out) and FLOPs (q·k and p·v
    /// over the allowed keys).
    pub fn workload(&self) -> Workload {
        let lens = self.context_lens();
        // Only the keys some query may see: with a sliding window, the last `window` keys of the
        // first new token up to the newest one, not the whole context. Shared prefix pages hold
        // one copy of their keys for the whole batch: read once, from the earliest key any
        // sequence sees in them.
        let shared = self.shared_tokens();
        let first_seen: Vec<usize> = lens
            .iter()
            .map(|&c| self.allowed_keys(c, 0).start)
            .collect();
        let own_keys: usize = lens
            .iter()
            .zip(&first_seen)
            .map(|(&c, &start)| c - start.max(shared))
            .sum();
        let shared_keys = first_seen
            .iter()
            .map(|&start| shared.saturating_sub(start))
            .max()
            .unwrap_or(0);
        let needed_keys = own_keys + shared_keys;
        let kv_bytes = needed_keys * self.kv_heads * self.head_dim * 2 * self.kv_dtype.bytes();
        let q_and_out =
            2 * self.batch * self.q_len * self.q_heads * self.head_dim * self.q_dtype.bytes();
        let keys: usize = lens
            .iter()
            .map(|&c| {
                (0..self.q_len)
                    .map(|i| self.allowed_keys(c, i).len())
                    .sum::<usize>()
            })
            .sum();
        let flops = 4 * keys * self.q_heads * self.head_dim;
        let precision = if self.q_dtype == Element::Fp16 {
            Precision::Fp16
        } else {
            Precision::Bf16
        };
        Workload {
            bytes: (kv_bytes + q_and_out) as u64,
            flops: flops as u64,
            precision: Some(precision),
            path: Default::default(),
        }
    }

    /// What the kernels support; the error says what is not.
    pub fn validate(&self) -> Result<()> {
        let c = self;
        if c.batch == 0 || c.kv_heads == 0 || c.q_heads == 0 {
            bail!("batch and head counts must be positive");
        }
        // Before anything sized by them is built (the lengths, the page geometry).
        if c.batch > MAX_BATCH || c.kv_heads > MAX_KV_HEADS {
            bail!(
                "batch {} and kv heads {} must be at most {MAX_BATCH} (grid dimensions)",
                c.batch,
                c.kv_heads
            );
        }
        if c.q_heads % c.kv_heads != 0 {
            bail!(
                "q heads ({}) must be a multiple of kv heads ({})",
                c.q_heads,
                c.kv_heads
            );
        }
        if c.group() > MAX_GROUP {
            bail!(
                "{} q heads per kv head: at most {MAX_GROUP} are supported",
                c.group()
            );
        }
        if c.head_dim == 0 || c.head_dim % 8 != 0 || c.head_dim > MAX_HEAD_DIM {
            bail!(
                "head dim {} must be a multiple of 8 (16 for an fp8 cache) up to {MAX_HEAD_DIM}",
                c.head_dim
            );
        }
        // 120 and other odd multiples of 8 run on 16-bit caches with zero-padded columns; an
        // fp8 row of them is neither 16-byte aligned nor whole 16-value chunks, which is what
        // cp.async copies and the widening pass converts.
        if c.head_dim % 16 != 0 && is_fp8(c.kv_dtype) {
            bail!(
                "head dim {} with an fp8 cache: fp8 rows are copied and widened in 16-value \
                 (16-byte) chunks, so the head dim must be a multiple of 16",
                c.head_dim
            );
        }
        if !(1..=MAX_Q_LEN).contains(&c.q_len) {
            bail!("query length {} must be 1..={MAX_Q_LEN}", c.q_len);
        }
        if c.page_size == 0 || c.page_size > MAX_CONTEXT {
            bail!("page size must be 1..={MAX_CONTEXT}");
        }
        // The kernels take it as an i32; one longer than any context has no effect anyway.
        if c.window > MAX_CONTEXT {
            bail!("window {} must be 0 (none) or 1..={MAX_CONTEXT}", c.window);
        }
        if !matches!(c.q_dtype, Element::Bf16 | Element::Fp16) {
            bail!("queries are bf16 or fp16, not {}", c.q_dtype);
        }
        if c.kv_dtype == Element::F32 {
            bail!("the KV cache is bf16, fp16, e4m3 or e5m2, not f32");
        }
        let lens = c.context_lens();
        if lens.len() != c.batch {
            bail!("{} context lengths for a batch of {}", lens.len(), c.batch);
        }
        if let Some(&bad) = lens.iter().find(|&&l| l < c.q_len || l > MAX_CONTEXT) {
            bail!(
                "context length {bad} must be between the query length {} and {MAX_CONTEXT}",
                c.q_len
            );
        }
        // Every count the case derives (bytes, FLOPs, device memory) is a product of these; one
        // bound on the largest keeps them all far from wrapping around 2^64.
        let work = lens
            .iter()
            .try_fold(0u64, |sum, &l| sum.checked_add(l as u64))
            .and_then(|t| t.checked_mul((c.q_len * c.q_heads * c.head_dim * 16) as u64));
        if work.is_none_or(|w| w > MAX_WORK) {
            bail!(
                "{} sequences of up to {MAX_CONTEXT} tokens with {} q heads: far beyond any GPU",
                c.batch,
                c.q_heads
            );
        }
        if let Some(s) = c.splits {
            if !(1..=MAX_SPLITS).contains(&s) {
                bail!("splits must be 1..={MAX_SPLITS}");
            }
        }
        if c.softcap < 0.0 || !c.softcap.is_finite() {
            bail!("softcap must be >= 0");
        }
        for (key, given) in [("kscale", &c.k_scale), ("vscale", &c.v_scale)] {
            if given.is_empty() {
                continue;
            }
            if !is_fp8(c.kv_dtype) {
                bail!(
                    "{key}= scales an fp8 cache (e4m3, e5m2), not {}",
                    c.kv_dtype
                );
            }
            if given.len() != 1 && given.len() != c.kv_heads {
                bail!(
                    "{key}= takes one scale or one per kv head ({}), not {}",
                    c.kv_heads,
                    given.len()
                );
            }
            if let Some(bad) = given.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                bail!("{key}= scales must be positive and finite, not {bad}");
            }
        }
        if c.prefix > 0 {
            if c.contiguous {
                bail!("prefix= shares pages between sequences: not with layout=contiguous");
            }
            // The new tokens are written into their pages: never into a page others share.
            let room = lens.iter().min().map_or(0, |&l| l - c.q_len);
            if c.prefix > room {
                bail!(
                    "prefix {} must leave the {} new token(s) of the shortest context ({}) outside it",
                    c.prefix,
                    c.q_len,
                    room + c.q_len
                );
            }
        }
        Ok(())
    }

    /// A short unique name, e.g. `b32-ctx4096-h32/8-d128-p16-kvbf16`.
    pub fn name(&self) -> String {
        let lens = match &self.lengths {
            Lengths::Uniform(n) => format!("ctx{n}"),
            Lengths::Zipf(n) => format!("ctx{n}zipf"),
            Lengths::Explicit(v) => format!("ctx{}", join(v, ":")),
        };
        let mut name = format!(
            "b{}-{lens}-h{}/{}-d{}-p{}-kv{}",
            self.batch, self.q_heads, self.kv_heads, self.head_dim, self.page_size, self.kv_dtype
        );
        if self.q_dtype != Element::Bf16 {
            name += &format!("-q{}", self.q_dtype);
        }
        if self.q_len > 1 {
            name += &format!("-ql{}", self.q_len);
        }
        if self.window > 0 {
            name += &format!("-w{}", self.window);
        }
        if self.softcap > 0.0 {
            name += &format!("-cap{}", self.softcap);
        }
        if self.per_head_scales {
            name += "-headscale";
        }
        for (tag, given) in [("ks", &self.k_scale), ("vs", &self.v_scale)] {
            if !given.is_empty() {
                name += &format!("-{tag}{}", join(given, ":"));
            }
        }
        if self.prefix > 0 {
            name += &format!("-prefix{}", self.prefix);
        }
        if self.contiguous {
            name += "-contig";
        }
        if let Some(s) = self.splits {
            name += &format!("-s{s}");
        }
        match self.data {
            Data::Random => {}
            Data::Index => name += "-indexdata",
            Data::Peaked => name += "-peaked",
        }
        name
    }

    /// The parameters past the fixed ones of `Case::params`, only where given (so that the
    /// rows of earlier cases keep their text).
    pub fn optional_params(&self) -> String {
        let mut out = String::new();
        for (key, given) in [("k_scale", &self.k_scale), ("v_scale", &self.v_scale)] {
            if !given.is_empty() {
                out += &format!(" {key}={}", join(given, ":"));
            }
        }
        if self.prefix > 0 {
            out += &format!(" prefix={}", self.prefix);
        }
        out
    }

    /// Parses `key=value` pairs separated by commas (see [`keys`]); keys not given keep their
    /// defaults.
    pub fn parse(spec: &str) -> Result<AttentionConfig> {
        let grammar = grammar();
        AttentionConfig::from_spec(&grammar.parse(spec)?, AttentionConfig::default())
    }

    /// The case of a parsed spec, `defaults` for the keys it does not give (the kv_evict suite
    /// reads its cache with a larger default batch).
    pub fn from_spec(spec: &Spec, defaults: AttentionConfig) -> Result<AttentionConfig> {
        let mut c = defaults;
        let batch = spec.int("b")?;
        c.batch = batch.unwrap_or(c.batch);
        if let Some((q, kv)) = spec.parse("heads", parse_heads)? {
            (c.q_heads, c.kv_heads) = (q, kv);
        }
        c.head_dim = spec.int("d")?.unwrap_or(c.head_dim);
        c.page_size = spec.int("p")?.unwrap_or(c.page_size);
        let element = |key: &str, expected: &'static str| {
            spec.parse(key, |v| Element::parse(v).context(expected))
        };
        c.kv_dtype = element("kv", "bf16, fp16, e4m3 or e5m2")?.unwrap_or(c.kv_dtype);
        c.q_dtype = element("q", "bf16 or fp16")?.unwrap_or(c.q_dtype);
        c.q_len = spec.int("qlen")?.unwrap_or(c.q_len);
        c.window = spec.int("window")?.unwrap_or(c.window);
        // f32 directly (not through f64): the value names the case.
        c.softcap = spec
            .parse("softcap", |v| Ok(v.parse::<f32>()?))?
            .unwrap_or(c.softcap);
        if let Some(scale) = spec.one_of("scale")? {
            c.per_head_scales = scale == "head";
        }
        if let Some(layout) = spec.one_of("layout")? {
            c.contiguous = layout == "contiguous";
        }
        if let Some(splits) = spec.parse("splits", |v| match v {
            "auto" => Ok(None),
            n => Ok(Some(n.parse::<usize>().context("auto or a whole number")?)),
        })? {
            c.splits = splits;
        }
        if let Some(data) = spec.one_of("data")? {
            c.data = match data {
                "index" => Data::Index,
                "peaked" => Data::Peaked,
                _ => Data::Random,
            };
        }
        for (key, scales) in [("kscale", &mut c.k_scale), ("vscale", &mut c.v_scale)] {
            if let Some(given) = spec.parse(key, parse_scales)? {
                *scales = given;
            }
        }
        // A list per head is per-head scaling whether or not scale=head says so.
        c.per_head_scales |= c.k_scale.len() > 1 || c.v_scale.len() > 1;
        c.prefix = spec.int("prefix")?.unwrap_or(c.prefix);
        let ctx = spec.int("ctx")?;
        let lens = match spec.get("lens") {
            None | Some("uniform") => None,
            Some("zipf") => Some(Lengths::Zipf(ctx.unwrap_or(DEFAULT_CONTEXT))),
            Some(_) => spec.list("lens")?.map(Lengths::Explicit),
        };
        match (lens, ctx) {
            (Some(Lengths::Explicit(_)), Some(_)) => {
                bail!("give either ctx= or lens=L1:L2:..., not both")
            }
            (Some(Lengths::Explicit(v)), None) => {
                // `lens=` sets the batch; a `b=` that disagrees is a mistake, not a smaller batch.
                if let Some(b) = batch.filter(|&b| b != v.len()) {
                    bail!(
                        "b={b} but lens= lists {} lengths: give one per sequence",
                        v.len()
                    );
                }
                c.batch = v.len();
                c.lengths = Lengths::Explicit(v);
            }
            (Some(zipf), _) => c.lengths = zipf,
            (None, Some(n)) => c.lengths = Lengths::Uniform(n),
            (None, None) => {}
        }
        c.validate()?;
        Ok(c)
    }
}

pub fn is_fp8(e: Element) -> bool {
    matches!(e, Element::E4m3 | Element::E5m2)
}

/// `X` or `X1:X2:...`.
fn parse_scales(value: &str) -> Result<Vec<f32>> {
    value
        .split(':')
        .map(|s| {
            s.trim()
                .parse::<f32>()
                .context("a number or numbers separated by `:`")
        })
        .collect()
}

fn join<T: std::fmt::Display>(values: &[T], sep: &str) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

/// `Q/KV` head counts.
fn parse_heads(value: &str) -> Result<(usize, usize)> {
    let (q, kv) = value.split_once('/').context("expected Q/KV, e.g. 32/8")?;
    Ok((q.trim().parse()?, kv.trim().parse()?))
}

/// The keys of an attention case; the kv_evict suite's cache takes the same.
pub fn keys() -> Vec<Key> {
    vec![
        Key::new("b", Value::Int, Absent::Value("1"), "sequences in the batch").aliases(&["batch"]),
        Key::new("ctx", Value::Int, Absent::Value("4096"), "context length of each sequence"),
        Key::new(
            "lens",
            Value::Text("uniform|zipf|L1:L2:.."),
            Absent::Value("uniform"),
            "every sequence ctx long, Zipf-skewed with mean ctx, or one length per sequence, which sets b",
        ),
        Key::new("heads", Value::Text("Q/KV"), Absent::Value("32/8"), "query heads / kv heads"),
        Key::new("d", Value::Int, Absent::Value("128"), "head dim").aliases(&["head_dim"]),
        Key::new("p", Value::Int, Absent::Value("16"), "page size in tokens").aliases(&["page"]),
        Key::new(
            "kv",
            Value::Text("bf16|fp16|e4m3|e5m2"),
            Absent::Value("bf16"),
            "KV-cache type",
        ),
        Key::new("q", Value::Text("bf16|fp16"), Absent::Value("bf16"), "query and output type"),
        Key::new("qlen", Value::Int, Absent::Value("1"), "new tokens per sequence, 1..=8"),
        Key::new("window", Value::Int, Absent::Value("0"), "sliding window: the last N keys including the current token (vLLM's sliding_window), 0 for none"),
        Key::new("softcap", Value::Real, Absent::Value("0"), "logit soft-cap, 0 for none"),
        Key::new(
            "scale",
            Value::OneOf(&["tensor", "head"]),
            Absent::Value("tensor"),
            "FP8 scales per tensor or per kv head",
        ),
        Key::new(
            "kscale",
            Value::Text("X|X1:X2:.."),
            Absent::Note("1/8; with scale=head 1/8, 1/16, 1/32 by kv head"),
            "FP8 K scale (stored = value / scale): one, or one per kv head",
        ),
        Key::new(
            "vscale",
            Value::Text("X|X1:X2:.."),
            Absent::Note("as kscale"),
            "FP8 V scale: one, or one per kv head",
        ),
        Key::new(
            "prefix",
            Value::Int,
            Absent::Value("0"),
            "tokens every sequence shares: its whole pages are one set of physical pages in every block table",
        ),
        Key::new(
            "layout",
            Value::OneOf(&["paged", "contiguous"]),
            Absent::Value("paged"),
            "shuffled pages, or one page per sequence: what paging costs",
        ),
        Key::new("splits", Value::Text("auto|N"), Absent::Value("auto"), "split-K factor"),
        Key::new(
            "data",
            Value::OneOf(&["random", "index", "peaked"]),
            Absent::Value("random"),
            "random; index-revealing (q = 0, V one-hot); or peaked (scores of std ~6: a few keys dominate, past any soft-cap)",
        ),
    ]
}

pub fn grammar() -> Grammar {
    Grammar {
        keys: keys(),
        example: "b=32,ctx=8192,heads=64/8,d=128,kv=e4m3",
        shorthand: None,
    }
}

/// Zipf(1) lengths with the given mean: sequence r (0-based) gets a share proportional to
/// 1/(r+1); every length is at least `min` and the total is exactly batch x mean (the last
/// sequence takes the rounding).
pub fn zipf_lengths(batch: usize, mean: usize, min: usize) -> Vec<usize> {
    // Saturating: a mean past the longest context is clamped below, not an overflow.
    let total = batch.saturating_mul(mean);
    let harmonic: f64 = (1..=batch).map(|r| 1.0 / r as f64).sum();
    let mut lens: Vec<usize> = (1..=batch)
        .map(|r| ((total as f64 / harmonic / r as f64).round() as usize).clamp(min, MAX_CONTEXT))
        .collect();
    let assigned: usize = lens[..batch - 1].iter().sum();
    lens[batch - 1] = total.saturating_sub(assigned).clamp(min, MAX_CONTEXT);
    lens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_name_and_defaults() {
        let c =
            AttentionConfig::parse("b=8,ctx=32768,heads=64/8,d=128,kv=e4m3,scale=head").unwrap();
        assert_eq!((c.batch, c.q_heads, c.kv_heads, c.group()), (8, 64, 8, 8));
        assert_eq!(c.kv_dtype, Element::E4m3);
        assert_eq!(c.name(), "b8-ctx32768-h64/8-d128-p16-kve4m3-headscale");
        let explicit = AttentionConfig::parse("lens=1:17:4000,qlen=1,heads=8/1,d=80,p=1").unwrap();
        assert_eq!(explicit.batch, 3);
        assert_eq!(explicit.context_lens(), vec![1, 17, 4000]);
    }

    #[test]
    fn unsupported_cases_say_why() {
        let err = |s: &str| format!("{:#}", AttentionConfig::parse(s).unwrap_err());
        assert!(err("heads=32/5").contains("multiple of kv heads"));
        assert!(err("heads=64/2").contains("at most 16"));
        assert!(err("d=100").contains("multiple of 8"));
        // vLLM's 120: 16-bit caches only.
        assert!(AttentionConfig::parse("d=120,kv=fp16,q=bf16").is_ok());
        assert!(err("d=120,kv=e4m3").contains("16-value (16-byte) chunks"));
        assert!(AttentionConfig::parse("d=112,data=peaked")
            .unwrap()
            .name()
            .ends_with("-d112-p16-kvbf16-peaked"));
        assert!(err("qlen=9").contains("1..=8"));
        assert!(err("ctx=200000").contains("131072"));
        assert!(err("kv=f32").contains("not f32"));
        assert!(err("colour=blue").contains("unknown key"));
        assert!(err("lens=1:2,qlen=2").contains("context length 1"));
        // Grid limits, checked before anything is sized by them.
        assert!(err("b=70000,lens=zipf").contains("65535"));
        assert!(err("p=200000").contains("page size"));
        assert!(err("ctx=100,lens=1:2").contains("not both"));
        assert!(err("b=2,batch=3").contains("`b` is given twice"));
        assert!(err("lens=1:x").starts_with("lens=1:x: "));
        // `b=` and `lens=` must agree: this once ran a batch of 2.
        assert!(err("b=4,lens=100:200").contains("b=4 but lens= lists 2"));
        assert!(AttentionConfig::parse("b=2,lens=100:200").is_ok());
        // Within every per-key limit, but the products would pass 2^64.
        assert!(err("b=65535,ctx=131072,heads=1048560/65535,d=256").contains("far beyond"));
    }

    #[test]
    fn fp8_scales_of_any_value_per_tensor_or_per_head() {
        let scales = |spec: &str| AttentionConfig::parse(spec).unwrap().fp8_scales();
        let default = scales("heads=8/4,kv=e4m3");
        assert_eq!(default, (vec![0.125; 4], vec![0.125; 4]));
        let head = scales("heads=8/4,kv=e4m3,scale=head");
        assert_eq!(head.0, vec![0.125, 0.0625, 0.03125, 0.125]);
        let given =
            AttentionConfig::parse("heads=8/2,kv=e5m2,kscale=0.02,vscale=0.5:0.01").unwrap();
        assert_eq!(given.fp8_scales(), (vec![0.02, 0.02], vec![0.5, 0.01]));
        assert!(given.per_head_scales, "a list per head is per-head scaling");
        assert_eq!(
            given.name(),
            "b1-ctx4096-h8/2-d128-p16-kve5m2-headscale-ks0.02-vs0.5:0.01"
        );
        assert_eq!(
            scales("kv=bf16").0,
            vec![1.0; 8],
            "16-bit caches are unscaled"
        );
        let err = |s: &str| format!("{:#}", AttentionConfig::parse(s).unwrap_err());
        assert!(err("kv=bf16,kscale=0.5").contains("fp8 cache"));
        assert!(err("heads=8/2,kv=e4m3,kscale=1:2:3").contains("one per kv head (2)"));
        assert!(err("kv=e4m3,vscale=0").contains("positive"));
        assert!(err("kv=e4m3,vscale=x").contains("vscale=x"));
    }

    #[test]
    fn a_shared_prefix_is_read_once() {
        let c = AttentionConfig::parse("lens=300:333:2049,heads=8/2,d=64,prefix=290").unwrap();
        // Whole pages only: 18 pages of 16 = 288 tokens shared.
        assert_eq!(c.shared_tokens(), 288);
        let per_key = 2 * 64 * 2 * 2;
        let qo = 2 * 3 * 8 * 64 * 2;
        let distinct = 288 + (300 - 288) + (333 - 288) + (2049 - 288);
        assert_eq!(c.workload().bytes, (distinct * per_key + qo) as u64);
        assert_eq!(c.name(), "b3-ctx300:333:2049-h8/2-d64-p16-kvbf16-prefix290");
        // A window that starts inside the prefix reads the shared keys from its earliest start.
        let w =
            AttentionConfig::parse("lens=300:2049,heads=8/2,d=64,prefix=288,window=100").unwrap();
        assert_eq!(
            w.workload().bytes,
            ((100 + 100) * per_key + 2 * 2 * 8 * 64 * 2) as u64
        );
        let err = |s: &str| format!("{:#}", AttentionConfig::parse(s).unwrap_err());
        assert!(err("lens=300:100,prefix=100").contains("new token"));
        assert!(err("ctx=300,prefix=16,layout=contiguous").contains("contiguous"));
    }

    #[test]
    fn contiguous_and_paged_caches_split_alike() {
        for spec in [
            "b=1,ctx=4096,p=16",
            "b=1,ctx=1000,p=7",
            "b=2,ctx=300,p=64,splits=5",
        ] {
            let paged = AttentionConfig::parse(spec).unwrap();
            let contiguous = AttentionConfig::parse(&format!("{spec},layout=contiguous")).unwrap();
            let ctx = paged.max_context();
            let splits = paged.num_splits(132);
            assert_eq!(splits, contiguous.num_splits(132));
            let cut = |c: &AttentionConfig| -> Vec<_> {
                (0..splits).map(|s| c.split_keys(ctx, splits, s)).collect()
            };
            assert_eq!(cut(&paged), cut(&contiguous), "{spec}");
            let busy = cut(&contiguous).iter().filter(|r| !r.is_empty()).count();
            assert!(
                busy > 1 || splits == 1,
                "{spec}: {busy} of {splits} splits work"
            );
            // Every key in exactly one split, in order.
            let keys: Vec<usize> = cut(&paged).into_iter().flatten().collect();
            assert_eq!(keys, (0..ctx).collect::<Vec<_>>(), "{spec}");
        }
    }

    #[test]
    fn a_sliding_window_counts_only_the_keys_it_sees() {
        let c = AttentionConfig::parse("b=1,ctx=70000,window=4096,heads=32/8,d=128").unwrap();
        let per_key = 8 * 128 * 2 * 2;
        let qo = 2 * 32 * 128 * 2;
        assert_eq!(c.workload().bytes, (4096 * per_key + qo) as u64);
        // Four new tokens see 4096 keys each, 4099 distinct ones together.
        let q4 =
            AttentionConfig::parse("b=1,ctx=70000,window=4096,qlen=4,heads=32/8,d=128").unwrap();
        assert_eq!(q4.workload().bytes, (4099 * per_key + 4 * qo) as u64);
        assert_eq!(q4.allowed_keys(70000, 3), 70000 - 4096..70000);
        // A window longer than the context changes nothing; one past any context is refused.
        let wide = AttentionConfig::parse("b=1,ctx=1000,window=5000").unwrap();
        let none = AttentionConfig::parse("b=1,ctx=1000").unwrap();
        assert_eq!(wide.workload(), none.workload());
        assert!(AttentionConfig::parse("window=4294967297").is_err());
    }

    #[test]
    fn workload_counts_kv_once_plus_q_and_out() {
        let c = AttentionConfig::parse("b=2,ctx=1000,heads=32/8,d=128,kv=bf16").unwrap();
        let w = c.workload();
        let kv = 2 * 1000 * 8 * 128 * 2 * 2;
        let qo = 2 * 2 * 32 * 128 * 2;
        assert_eq!(w.bytes, (kv + qo) as u64);
        assert_eq!(w.flops, (4 * 2 * 1000 * 32 * 128) as u64);
        let fp8 = AttentionConfig {
            kv_dtype: Element::E4m3,
            ..c.clone()
        };
        assert_eq!(
            fp8.workload().bytes,
            (kv / 2 + qo) as u64,
            "fp8 halves the KV bytes"
        );
    }

    #[test]
    fn masks_are_causal_and_windowed() {
        let c = AttentionConfig {
            q_len: 4,
            window: 3,
            ..Default::default()
        };
        assert_eq!(c.allowed_keys(10, 0), 4..7);
        assert_eq!(c.allowed_keys(10, 3), 7..10);
        let no_window = AttentionConfig {
            q_len: 4,
            ..Default::default()
        };
        assert_eq!(no_window.allowed_keys(10, 0), 0..7);
    }

    #[test]
    fn zipf_keeps_the_total_and_skews() {
        let l = zipf_lengths(32, 4096, 1);
        assert_eq!(l.iter().sum::<usize>(), 32 * 4096);
        assert!(l[0] > 4 * l[31], "{l:?}");
    }

    #[test]
    fn split_heuristic_fills_the_gpu() {
        let one = AttentionConfig {
            batch: 1,
            kv_heads: 8,
            lengths: Lengths::Uniform(32768),
            ..Default::default()
        };
        assert_eq!(one.num_splits(132), 33, "264 CTAs / 8");
        let many = AttentionConfig {
            batch: 256,
            ..Default::default()
        };
        assert_eq!(many.num_splits(132), 1);
        let short = AttentionConfig {
            batch: 1,
            lengths: Lengths::Uniform(300),
            ..Default::default()
        };
        assert_eq!(short.num_splits(132), 2, "at least 256 keys per split");
    }
}
