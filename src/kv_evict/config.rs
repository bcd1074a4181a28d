//! One eviction problem: which step (score, select, compact, the three together, swapping or
//! copying blocks, or a decode step before and after compaction), on which cache, under which
//! policy and budget. Parsed from `--case key=value,...`; the cache keys are the attention
//! suite's (`b`, `ctx`/`lens`, `heads`, `d`, `p`, `kv`, `q`, `scale`).

use anyhow::{bail, Context, Result};

use super::policy::{Budget, Policy, PolicyParams};
use crate::attention::{AttentionConfig, Lengths};
use crate::numeric::Element;
use crate::roofline::Precision;
use crate::roofline::{DataPath, Workload};
use crate::suite::spec::{Absent, Grammar, Key, Value};

/// Query rows of a score pass: rows x group must fit the score kernels' 1024 staged rows.
pub const MAX_OBSERVATION: usize = 64;
/// Largest budget the select kernel is specified for (tokens per sequence and kv head).
pub const MAX_BUDGET: usize = 65_536;
/// SnapKV's observation window, in a case (`obs=`) and in the accuracy report (`--window`): one
/// rule, so a window accepted in one place is never refused in the other.
pub fn check_observation(window: usize) -> Result<()> {
    if !(1..=MAX_OBSERVATION).contains(&window) {
        bail!("an observation window of {window} queries: it must be 1..={MAX_OBSERVATION}");
    }
    Ok(())
}

/// SnapKV's max-pool width, in a case (`pool=`) and in the accuracy report (`--pool`).
pub fn check_pool(width: usize) -> Result<()> {
    if width % 2 == 0 {
        bail!("a max-pool width of {width}: it must be odd (a window centred on the token)");
    }
    Ok(())
}

/// The most device memory a page-move case may describe (1 PiB: past every GPU, so predictions
/// of large cases still say "does not fit").
const MAX_MOVE_BYTES: u64 = 1 << 50;
/// The batch of an eviction case's cache when `b=` is not given.
const DEFAULT_BATCH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Attention-mass scores of the policy's queries over the cache.
    Score,
    /// Top-budget selection per (sequence, kv head) from given scores.
    Select,
    /// Gathering the kept tokens into fresh pages.
    Compact,
    /// Score, select and compact, as one eviction step.
    Evict,
    /// Scattered blocks to pinned host memory.
    SwapOut,
    /// Pinned host memory back into scattered blocks.
    SwapIn,
    /// Whole-block copies (copy-on-write of shared blocks).
    CopyOnWrite,
    /// A decode step on the full cache (the reference cost).
    Decode,
    /// A decode step on the cache compacted to the budget.
    DecodeCompacted,
}

impl Op {
    pub const ALL: [Op; 9] = [
        Op::Score,
        Op::Select,
        Op::Compact,
        Op::Evict,
        Op::SwapOut,
        Op::SwapIn,
        Op::CopyOnWrite,
        Op::Decode,
        Op::DecodeCompacted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Score => "score",
            Op::Select => "select",
            Op::Compact => "compact",
            Op::Evict => "evict",
            Op::SwapOut => "swap-out",
            Op::SwapIn => "swap-in",
            Op::CopyOnWrite => "cow",
            Op::Decode => "decode",
            Op::DecodeCompacted => "decode-compacted",
        }
    }

    pub fn parse(s: &str) -> Result<Op> {
        Op::ALL
            .into_iter()
            .find(|o| o.name() == s)
            .with_context(|| {
                let names: Vec<_> = Op::ALL.iter().map(|o| o.name()).collect();
                format!("op={s}: one of {}", names.join(", "))
            })
    }

    /// Block moves: the cache's contents do not matter, only its page geometry.
    pub fn moves_blocks(self) -> bool {
        matches!(self, Op::SwapOut | Op::SwapIn | Op::CopyOnWrite)
    }
}

/// The scores a stand-alone `select` case feeds the selection: random, all equal, or a few
/// distinct values (many ties: the tie rule decides most of the kept set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreData {
    Random,
    Equal,
    Ties,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvictConfig {
    pub op: Op,
    /// The cache: batch, heads, head dim, page size, dtypes, context lengths, FP8 scales.
    pub cache: AttentionConfig,
    pub policy: Policy,
    pub budget: Budget,
    /// SnapKV's observation window: the query rows of its score pass.
    pub observation: usize,
    /// Blocks moved by swap and copy-on-write cases.
    pub blocks: usize,
    pub sinks: Option<usize>,
    pub recent: Option<usize>,
    pub pool_kernel: Option<usize>,
    pub scores: ScoreData,
}

impl Default for EvictConfig {
    fn default() -> Self {
        EvictConfig {
            op: Op::Evict,
            cache: AttentionConfig {
                batch: DEFAULT_BATCH,
                ..AttentionConfig::default()
            },
            policy: Policy::H2o,
            budget: Budget::Fraction(0.25),
            observation: 32,
            blocks: 1024,
            sinks: None,
            recent: None,
            pool_kernel: None,
            scores: ScoreData::Random,
        }
    }
}

impl EvictConfig {
    pub fn context_lens(&self) -> Vec<usize> {
        self.cache.context_lens()
    }

    /// Tokens kept per kv head of each sequence.
    pub fn budgets(&self) -> Vec<usize> {
        self.context_lens()
            .iter()
            .map(|&len| self.budget.tokens(len))
            .collect()
    }

    /// Whether the policy ranks tokens by attention mass (and so needs a score pass).
    pub fn needs_scores(&self) -> bool {
        matches!(self.policy, Policy::H2o | Policy::Tova | Policy::SnapKv)
    }

    /// Query rows of the score pass: the current query (H2O, TOVA) or SnapKV's window.
    pub fn score_rows(&self) -> usize {
        match self.policy {
            Policy::SnapKv => self.observation,
            _ => 1,
        }
    }

    /// H2O adds each step's mass to the running total; the others rank by one pass.
    pub fn accumulates(&self) -> bool {
        self.policy == Policy::H2o
    }

    /// The policy's parameters for a sequence kept to `budget` tokens, with the case's overrides.
    pub fn policy_params(&self, budget: usize) -> PolicyParams {
        let mut p = PolicyParams::defaults(self.policy, budget).with_window(self.observation);
        p.sinks = self.sinks.unwrap_or(p.sinks);
        p.recent = self.recent.unwrap_or(p.recent);
        p.pool_kernel = self.pool_kernel.unwrap_or(p.pool_kernel);
        p
    }

    /// Bytes of one page of one pool (K or V): every kv head's `page_size` rows.
    pub fn page_bytes(&self) -> usize {
        let c = &self.cache;
        c.kv_heads * c.page_size * c.head_dim * c.kv_dtype.bytes()
    }

    /// Bytes of one token's row of one kv head in one pool.
    fn row_bytes(&self) -> usize {
        self.cache.head_dim * self.cache.kv_dtype.bytes()
    }

    fn score_workload(&self) -> Workload {
        let c = &self.cache;
        let lens = self.context_lens();
        let tokens: usize = lens.iter().sum();
        let rows = self.score_rows();
        let k_bytes = tokens * c.kv_heads * self.row_bytes();
        let q_bytes = c.batch * rows * c.q_heads * c.head_dim * c.q_dtype.bytes();
        let score_passes = if self.accumulates() { 2 } else { 1 };
        let score_bytes = score_passes * tokens * c.kv_heads * 4;
        // Row i of `rows` sees the keys up to its position len - rows + i.
        let visible: usize = lens
            .iter()
            .map(|&len| {
                (0..rows)
                    .map(|i| (len + i + 1).saturating_sub(rows))
                    .sum::<usize>()
            })
            .sum();
        // The roof is the inputs' tensor-core precision, as for decode attention: q·K can run
        // there (the kernel's own choice of CUDA cores shows as a lower % of the bound).
        let precision = if c.q_dtype == Element::Fp16 {
            Precision::Fp16
        } else {
            Precision::Bf16
        };
        Workload {
            bytes: (k_bytes + q_bytes + score_bytes) as u64,
            flops: (2 * visible * c.q_heads * c.head_dim) as u64,
            precision: Some(precision),
            path: DataPath::Device,
        }
    }

    fn select_bytes(&self) -> usize {
        let kv = self.cache.kv_heads;
        let scores = if self.needs_scores() {
            self.context_lens().iter().sum::<usize>() * kv * 4
        } else {
            0
        };
        scores + self.budgets().iter().sum::<usize>() * kv * 4
    }

    /// K and V rows of every kept token read once and written once, plus the kept list.
    fn compact_bytes(&self) -> usize {
        let kept: usize = self.budgets().iter().sum::<usize>() * self.cache.kv_heads;
        kept * (4 * self.row_bytes() + 4)
    }

    /// Minimum bytes and FLOPs; a step's inputs and outputs (scores, kept lists) count as the
    /// interface between steps, so `evict` is the sum of its three steps.
    pub fn workload(&self) -> Workload {
        let blocks = (self.blocks * 2 * self.page_bytes()) as u64;
        match self.op {
            Op::Score => self.score_workload(),
            Op::Select => Workload::bytes(self.select_bytes() as u64),
            Op::Compact => Workload::bytes(self.compact_bytes() as u64),
            Op::Evict => {
                let score = if self.needs_scores() {
                    self.score_workload()
                } else {
                    Workload::default()
                };
                Workload {
                    bytes: score.bytes + (self.select_bytes() + self.compact_bytes()) as u64,
                    ..score
                }
            }
            Op::SwapOut => Workload::host_link(blocks, DataPath::DeviceToHost),
            Op::SwapIn => Workload::host_link(blocks, DataPath::HostToDevice),
            Op::CopyOnWrite => Workload::bytes(2 * blocks),
            Op::Decode => self.cache.workload(),
            Op::DecodeCompacted => self.compacted_cache().workload(),
        }
    }

    /// The cache after compaction to the budget (a decode step on it is the payoff).
    pub fn compacted_cache(&self) -> AttentionConfig {
        let lens: Vec<usize> = self.budgets().into_iter().map(|b| b.max(1)).collect();
        let lengths = if lens.windows(2).all(|w| w[0] == w[1]) {
            Lengths::Uniform(lens[0])
        } else {
            Lengths::Explicit(lens)
        };
        AttentionConfig {
            lengths,
            ..self.cache.clone()
        }
    }

    /// The decode case an `op=decode` or `op=decode-compacted` spec stands for.
    pub fn decode_case(&self) -> Option<AttentionConfig> {
        match self.op {
            Op::Decode => Some(self.cache.clone()),
            Op::DecodeCompacted => Some(self.compacted_cache()),
            _ => None,
        }
    }

    /// e.g. `evict/h2o-25%/b32-ctx4096-h32/8-d128-p16-kvbf16`, `swap-out/1024blk/p16-h8-d128-kvbf16`.
    pub fn name(&self) -> String {
        let c = &self.cache;
        if self.op == Op::Decode {
            return format!("decode/{}", c.name());
        }
        if self.op.moves_blocks() {
            return format!(
                "{}/{}blk/p{}-kvh{}-d{}-kv{}",
                self.op.name(),
                self.blocks,
                c.page_size,
                c.kv_heads,
                c.head_dim,
                c.kv_dtype
            );
        }
        let mut policy = format!("{}-{}", self.policy.name(), self.budget);
        if self.policy == Policy::SnapKv && self.observation != 32 {
            policy += &format!("-obs{}", self.observation);
        }
        for (key, value) in [
            ("sinks", self.sinks),
            ("recent", self.recent),
            ("pool", self.pool_kernel),
        ] {
            if let Some(v) = value {
                policy += &format!("-{key}{v}");
            }
        }
        match self.scores {
            ScoreData::Random => {}
            ScoreData::Equal => policy += "-equal",
            ScoreData::Ties => policy += "-ties",
        }
        // A compacted decode is named by the cache it reads (the budget's lengths), after the
        // op, policy and budget that made it: two budgets never share a row name.
        let cache = match self.op {
            Op::DecodeCompacted => self.compacted_cache().name(),
            _ => c.name(),
        };
        format!("{}/{policy}/{cache}", self.op.name())
    }

    pub fn validate(&self) -> Result<()> {
        self.cache.validate()?;
        if self.cache.q_len != 1 {
            bail!(
                "eviction cases take the decode cache (qlen=1); the score pass's rows are `obs=`"
            );
        }
        let c = &self.cache;
        // The eviction kernels read one scale per head for K and V, from an unshared cache.
        let custom_scales = !c.k_scale.is_empty() || !c.v_scale.is_empty();
        if c.window > 0 || c.softcap > 0.0 || c.contiguous || c.prefix > 0 || custom_scales {
            bail!(
                "window=, softcap=, layout=, prefix=, kscale= and vscale= are attention options, not eviction ones"
            );
        }
        if c.head_dim % 16 != 0 {
            bail!(
                "head dim {}: the eviction score kernel takes multiples of 16",
                c.head_dim
            );
        }
        let needs_scores = self.needs_scores();
        if self.op == Op::Score && !needs_scores {
            bail!(
                "op=score: policy {} ranks tokens without attention scores (h2o, tova or snapkv do)",
                self.policy.name()
            );
        }
        check_observation(self.observation).context("obs=")?;
        let scoring = matches!(self.op, Op::Score | Op::Evict) && needs_scores;
        let too_short = self
            .context_lens()
            .into_iter()
            .find(|&l| l < self.score_rows());
        if let Some(too_short) = too_short.filter(|_| scoring) {
            bail!(
                "a context of {too_short} tokens is shorter than the {} query rows of the score pass",
                self.score_rows()
            );
        }
        if let Some(&big) = self.budgets().iter().find(|&&b| b > MAX_BUDGET) {
            bail!("a budget of {big} tokens: at most {MAX_BUDGET} per sequence and kv head");
        }
        if let Some(width) = self.pool_kernel {
            check_pool(width).context("pool=")?;
        }
        if self.op.moves_blocks() && self.blocks == 0 {
            bail!("blocks= must be positive");
        }
        // The pools of a page-move case hold 2 x blocks (+32) pages of K and of V: checked, so a
        // huge blocks= is this error rather than a wrapped size or an aborted allocation.
        let move_bytes = (self.blocks.checked_mul(2))
            .and_then(|pages| (pages as u64 + 32).checked_mul(2 * self.page_bytes() as u64));
        if move_bytes.is_none_or(|b| b > MAX_MOVE_BYTES) {
            bail!(
                "blocks={}: {} pages of {} bytes are far beyond any GPU's memory",
                self.blocks,
                self.blocks.saturating_mul(2),
                self.page_bytes()
            );
        }
        if (self.page_bytes() / self.cache.kv_heads) % 16 != 0 {
            bail!(
                "a page row of {} bytes is not a multiple of 16",
                self.row_bytes()
            );
        }
        Ok(())
    }

    /// Parses `key=value` pairs (see [`keys`]): the eviction keys, and the attention suite's
    /// keys for the cache.
    pub fn parse(spec: &str) -> Result<EvictConfig> {
        let grammar = grammar();
        let spec = grammar.parse(spec)?;
        let d = EvictConfig::default();
        let c = EvictConfig {
            op: spec.one_of("op")?.map_or(Ok(d.op), Op::parse)?,
            policy: spec.parse("policy", Policy::parse)?.unwrap_or(d.policy),
            budget: spec.parse("budget", Budget::parse)?.unwrap_or(d.budget),
            observation: spec.int("obs")?.unwrap_or(d.observation),
            blocks: spec.int("blocks")?.unwrap_or(d.blocks),
            sinks: spec.int("sinks")?,
            recent: spec.int("recent")?,
            pool_kernel: spec.int("pool")?,
            scores: match spec.one_of("scores")? {
                Some("equal") => ScoreData::Equal,
                Some("ties") => ScoreData::Ties,
                _ => d.scores,
            },
            cache: AttentionConfig::from_spec(&spec, d.cache)?,
        };
        c.validate()?;
        Ok(c)
    }
}

/// The eviction keys, then the attention suite's cache keys (with this suite's larger default
/// batch).
pub fn keys() -> Vec<Key> {
    let mut keys = vec![
        Key::new(
            "op",
            Value::Names(|| Op::ALL.iter().map(|o| o.name()).collect()),
            Absent::Value("evict"),
            "the step timed; decode ops are attention cases on the full or the compacted cache",
        ),
        Key::new(
            "policy",
            Value::Names(|| Policy::ALL.iter().map(|p| p.name()).collect()),
            Absent::Value("h2o"),
            "what decides the kept tokens",
        ),
        Key::new(
            "budget",
            Value::Text("25%|0.25|TOKENS"),
            Absent::Value("25%"),
            "tokens kept per sequence and kv head",
        ),
        Key::new(
            "obs",
            Value::Int,
            Absent::Value("32"),
            "SnapKV's observation window: the query rows scored",
        ),
        Key::new(
            "blocks",
            Value::Int,
            Absent::Value("1024"),
            "blocks moved by swap-out, swap-in, cow",
        ),
        Key::new(
            "sinks",
            Value::Int,
            Absent::Note("the policy's"),
            "first tokens always kept",
        ),
        Key::new(
            "recent",
            Value::Int,
            Absent::Note("the policy's"),
            "newest tokens always kept",
        ),
        Key::new(
            "pool",
            Value::Int,
            Absent::Note("the policy's"),
            "SnapKV's max-pool width, odd",
        ),
        Key::new(
            "scores",
            Value::OneOf(&["random", "equal", "ties"]),
            Absent::Value("random"),
            "the scores a stand-alone select ranks",
        ),
    ];
    keys.extend(
        crate::attention::config::keys()
            .into_iter()
            .map(|k| match k.name {
                "b" => k.absent(Absent::Value("32")),
                _ => k,
            }),
    );
    keys
}

pub fn grammar() -> Grammar {
    Grammar {
        keys: keys(),
        example: "op=evict,policy=snapkv,budget=10%,b=8,ctx=32768",
        shorthand: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_splits_eviction_and_cache_keys() {
        let c = EvictConfig::parse("op=score,policy=snapkv,obs=16,b=4,ctx=1000,kv=e4m3").unwrap();
        assert_eq!(
            (c.op, c.policy, c.observation),
            (Op::Score, Policy::SnapKv, 16)
        );
        assert_eq!((c.cache.batch, c.cache.kv_dtype), (4, Element::E4m3));
        assert_eq!(c.score_rows(), 16);
        assert_eq!(
            c.name(),
            "score/snapkv-25%-obs16/b4-ctx1000-h32/8-d128-p16-kve4m3"
        );
        let d = EvictConfig::parse("").unwrap();
        assert_eq!(d.name(), "evict/h2o-25%/b32-ctx4096-h32/8-d128-p16-kvbf16");
    }

    #[test]
    fn unsupported_cases_say_why() {
        let err = |s: &str| format!("{:#}", EvictConfig::parse(s).unwrap_err());
        assert!(err("op=score,policy=recent").contains("without attention scores"));
        assert!(err("op=fly").contains("one of score"));
        assert!(err("policy=lru").contains("one of"));
        assert!(err("policy=snapkv,obs=65").contains("1..=64"));
        assert!(err("policy=snapkv,lens=8:100").contains("shorter than the 32"));
        assert!(err("pool=4").contains("odd"));
        assert!(err("op=swap-out,blocks=1000000000000").contains("far beyond"));
        assert!(err("obs=0").contains("1..=64"));
        assert!(err("qlen=2").contains("qlen=1"));
        assert!(err("heads=32/5").contains("multiple of kv heads"));
        assert!(err("d=120").contains("multiples of 16"));
        assert!(err("kv=e4m3,kscale=0.5").contains("attention options"));
        assert!(err("budget=150%").to_lowercase().contains("budget"));
    }

    #[test]
    fn workloads_count_the_minimum_bytes() {
        let c = EvictConfig::parse("op=compact,b=2,ctx=1000,heads=8/2,d=64,budget=25%").unwrap();
        assert_eq!(c.budgets(), vec![250, 250]);
        // 500 kept tokens x 2 kv heads x (K and V, read and written: 4 rows of 128 B + 4 B index).
        assert_eq!(c.workload().bytes, 500 * 2 * (4 * 128 + 4));
        let score = EvictConfig {
            op: Op::Score,
            policy: Policy::Tova,
            ..c.clone()
        };
        let w = score.workload();
        // K of 2000 tokens x 2 heads x 128 B, q 2 x 8 x 64 x 2 B, scores 2000 x 2 x 4 B.
        assert_eq!(w.bytes, 2000 * 2 * 128 + 2 * 8 * 128 + 2000 * 2 * 4);
        assert_eq!(w.flops, 2 * 2000 * 8 * 64);
        let h2o = EvictConfig {
            policy: Policy::H2o,
            ..score
        };
        assert_eq!(
            h2o.workload().bytes,
            w.bytes + 2000 * 2 * 4,
            "H2O reads the running scores too"
        );
        let swap = EvictConfig::parse("op=swap-out,blocks=10,heads=8/2,d=64,p=16").unwrap();
        let w = swap.workload();
        assert_eq!(
            (w.bytes, w.path),
            (10 * 2 * 2 * 16 * 64 * 2, DataPath::DeviceToHost)
        );
    }

    #[test]
    fn decode_after_compaction_is_a_shorter_cache() {
        let c = EvictConfig::parse("op=decode-compacted,lens=100:7,budget=10%").unwrap();
        let d = c.decode_case().unwrap();
        assert_eq!(d.context_lens(), vec![10, 1]);
        let uniform = EvictConfig::parse("op=decode-compacted,b=4,ctx=4096").unwrap();
        assert_eq!(
            uniform.decode_case().unwrap().lengths,
            Lengths::Uniform(1024)
        );
    }
}
