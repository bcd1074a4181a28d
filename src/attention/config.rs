//! One decode-attention problem: batch, heads, head dim, page size, dtypes, query length,
//! context lengths and options. Parsed from `--case key=value,...`, named for result rows, and
//! checked against what the kernels support (an unsupported case is an error saying why).

use anyhow::{bail, Context, Result};

use crate::numeric::Element;
use crate::roofline::Precision;
use crate::roofline::Workload;

pub const MAX_CONTEXT: usize = 131_072;
pub const MAX_GROUP: usize = 16;
pub const MAX_Q_LEN: usize = 8;
pub const MAX_HEAD_DIM: usize = 256;
/// Head dims with compiled instances; other multiples of 16 use the generic path.
pub const FAST_HEAD_DIMS: [usize; 5] = [64, 96, 128, 192, 256];
pub const MAX_SPLITS: usize = 64;

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
    /// The same kernel on one page per sequence (the cost of paging, measured).
    pub contiguous: bool,
    /// Split-K factor; `None`: the heuristic.
    pub splits: Option<usize>,
    /// Test data: random, or "index-revealing" (q = 0 and V one-hot in token % head_dim, so
    /// each output element counts the allowed keys of one residue: a key read twice, skipped or
    /// wrongly masked moves it by 1/n, far above the rounding bound).
    pub index_data: bool,
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
            lengths: Lengths::Uniform(4096),
            window: 0,
            softcap: 0.0,
            per_head_scales: false,
            contiguous: false,
            splits: None,
            index_data: false,
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
    /// causal up to its own position, limited by the window.
    pub fn allowed_keys(&self, ctx: usize, i: usize) -> std::ops::Range<usize> {
        let position = ctx - self.q_len + i;
        let start = if self.window > 0 {
            (position + 1).saturating_sub(self.window)
        } else {
            0
        };
        start..position + 1
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
        let kv_bytes: usize =
            lens.iter().sum::<usize>() * self.kv_heads * self.head_dim * 2 * self.kv_dtype.bytes();
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
        if c.head_dim == 0 || c.head_dim % 16 != 0 || c.head_dim > MAX_HEAD_DIM {
            bail!(
                "head dim {} must be a multiple of 16 up to {MAX_HEAD_DIM}",
                c.head_dim
            );
        }
        if !(1..=MAX_Q_LEN).contains(&c.q_len) {
            bail!("query length {} must be 1..={MAX_Q_LEN}", c.q_len);
        }
        if c.page_size == 0 {
            bail!("page size must be positive");
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
        if let Some(s) = c.splits {
            if !(1..=MAX_SPLITS).contains(&s) {
                bail!("splits must be 1..={MAX_SPLITS}");
            }
        }
        if c.softcap < 0.0 || !c.softcap.is_finite() {
            bail!("softcap must be >= 0");
        }
        Ok(())
    }

    /// A short unique name, e.g. `b32-ctx4096-h32/8-d128-p16-kvbf16`.
    pub fn name(&self) -> String {
        let lens = match &self.lengths {
            Lengths::Uniform(n) => format!("ctx{n}"),
            Lengths::Zipf(n) => format!("ctx{n}zipf"),
            Lengths::Explicit(v) => format!(
                "ctx{}",
                v.iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ),
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
        if self.contiguous {
            name += "-contig";
        }
        if let Some(s) = self.splits {
            name += &format!("-s{s}");
        }
        if self.index_data {
            name += "-indexdata";
        }
        name
    }

    /// Parses `key=value` pairs separated by commas; unnamed keys keep their defaults.
    pub fn parse(spec: &str) -> Result<AttentionConfig> {
        let mut c = AttentionConfig::default();
        let mut zipf = false;
        let mut ctx: Option<usize> = None;
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("`{pair}` is not key=value"))?;
            let int = || {
                value
                    .parse::<usize>()
                    .with_context(|| format!("{key}={value}: not a whole number"))
            };
            match key {
                "b" | "batch" => c.batch = int()?,
                "ctx" => ctx = Some(int()?),
                "lens" => {
                    if value == "zipf" {
                        zipf = true;
                    } else if value != "uniform" {
                        let v = value
                            .split(':')
                            .map(|l| l.parse::<usize>())
                            .collect::<Result<Vec<_>, _>>();
                        c.lengths = Lengths::Explicit(v.with_context(|| {
                            format!("lens={value}: uniform, zipf or L1:L2:...")
                        })?);
                    }
                }
                "heads" => {
                    let (q, kv) = value
                        .split_once('/')
                        .with_context(|| format!("heads={value}: expected Q/KV, e.g. 32/8"))?;
                    c.q_heads = q.parse().with_context(|| format!("heads={value}"))?;
                    c.kv_heads = kv.parse().with_context(|| format!("heads={value}"))?;
                }
                "d" | "head_dim" => c.head_dim = int()?,
                "p" | "page" => c.page_size = int()?,
                "kv" => {
                    c.kv_dtype = Element::parse(value)
                        .with_context(|| format!("kv={value}: bf16, fp16, e4m3 or e5m2"))?
                }
                "q" => {
                    c.q_dtype =
                        Element::parse(value).with_context(|| format!("q={value}: bf16 or fp16"))?
                }
                "qlen" => c.q_len = int()?,
                "window" => c.window = int()?,
                "softcap" => {
                    c.softcap = value.parse().with_context(|| format!("softcap={value}"))?
                }
                "scale" => {
                    c.per_head_scales = match value {
                        "head" => true,
                        "tensor" => false,
                        _ => bail!("scale={value}: tensor or head"),
                    }
                }
                "layout" => {
                    c.contiguous = match value {
                        "contiguous" => true,
                        "paged" => false,
                        _ => bail!("layout={value}: paged or contiguous"),
                    }
                }
                "splits" => c.splits = if value == "auto" { None } else { Some(int()?) },
                "data" => {
                    c.index_data = match value {
                        "index" => true,
                        "random" => false,
                        _ => bail!("data={value}: random or index"),
                    }
                }
                _ => bail!("unknown key `{key}`"),
            }
        }
        match (ctx, zipf, &c.lengths) {
            (Some(_), _, Lengths::Explicit(_)) => {
                bail!("give either ctx= or lens=L1:L2:..., not both")
            }
            (Some(n), true, _) => c.lengths = Lengths::Zipf(n),
            (Some(n), false, _) => c.lengths = Lengths::Uniform(n),
            (None, true, _) => c.lengths = Lengths::Zipf(4096),
            (None, false, Lengths::Explicit(v)) => c.batch = v.len(),
            (None, false, _) => {}
        }
        c.validate()?;
        Ok(c)
    }
}

/// Zipf(1) lengths with the given mean: sequence r (0-based) gets a share proportional to
/// 1/(r+1); every length is at least `min` and the total is exactly batch x mean (the last
/// sequence takes the rounding).
pub fn zipf_lengths(batch: usize, mean: usize, min: usize) -> Vec<usize> {
    let total = batch * mean;
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
        assert!(err("d=100").contains("multiple of 16"));
        assert!(err("qlen=9").contains("1..=8"));
        assert!(err("ctx=200000").contains("131072"));
        assert!(err("kv=f32").contains("not f32"));
        assert!(err("colour=blue").contains("unknown key"));
        assert!(err("lens=1:2,qlen=2").contains("context length 1"));
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
