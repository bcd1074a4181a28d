//! KV-cache eviction (issue 6): the block manager of a paged cache, token-level eviction policies
//! with their CPU references, the GPU score / select / compact / swap kernels, and the accuracy
//! each policy costs.
//!
//! The suite (`roofbench run kv_evict`) times each eviction step against the memory roofline
//! (swaps against the pinned PCIe bandwidth) and, in the same run, a decode step on the full
//! cache and on the cache compacted to the budget: what eviction costs next to what it saves.

pub mod accuracy;
pub mod block_manager;
pub mod config;
mod goals;
mod page_moves;
pub mod plans;
pub mod policy;
mod prepared;

use anyhow::Result;

pub use config::{EvictConfig, Op};

use crate::attention::AttentionConfig;

use crate::gpu::{DeviceInfo, Gpu};
use crate::measure::Mode;
use crate::roofline::Workload;
use crate::suite::spec::Grammar;
use crate::suite::{Case, Prepared, Suite};

impl Case for EvictConfig {
    fn name(&self) -> String {
        EvictConfig::name(self)
    }

    fn dtype(&self) -> String {
        format!("q{}-kv{}", self.cache.q_dtype, self.cache.kv_dtype)
    }

    fn params(&self) -> String {
        let c = &self.cache;
        format!(
            "op={} policy={} budget={} batch={} q_heads={} kv_heads={} head_dim={} page_size={} lens={:?} observation={} blocks={}",
            self.op.name(),
            self.policy.name(),
            self.budget,
            c.batch,
            c.q_heads,
            c.kv_heads,
            c.head_dim,
            c.page_size,
            c.lengths,
            self.observation,
            self.blocks
        )
    }

    fn workload(&self) -> Workload {
        EvictConfig::workload(self)
    }

    fn device_bytes(&self) -> u64 {
        if self.op.moves_blocks() {
            page_moves::device_bytes(self)
        } else {
            prepared::device_bytes(self)
        }
    }

    /// Cold: eviction runs on a cache far larger than L2, after other work.
    fn default_modes(&self, _device: &DeviceInfo) -> Vec<Mode> {
        vec![Mode::Cold]
    }

    fn l2_resident(&self, _device: &DeviceInfo) -> bool {
        false
    }

    fn prepare(&self, gpu: &Gpu) -> Result<Box<dyn Prepared>> {
        Ok(if self.op.moves_blocks() {
            Box::new(page_moves::PreparedPageMoves::prepare(gpu, self)?)
        } else {
            Box::new(prepared::PreparedEviction::prepare(gpu, self)?)
        })
    }
}

pub struct KvEvictSuite;

/// A case from a spec: decode steps are attention cases (the same kernels and rows as
/// `roofbench run attention`, named by the eviction case), everything else an eviction case.
fn parse(spec: &str) -> Result<Box<dyn Case>> {
    let c = EvictConfig::parse(spec)?;
    Ok(match c.decode_case() {
        Some(decode) => Box::new(DecodeStep {
            name: c.name(),
            decode,
        }),
        None => Box::new(c),
    })
}

/// A decode step of an eviction case: the attention case it stands for, under the eviction
/// case's name (op, policy, budget), so rows of different budgets are told apart.
struct DecodeStep {
    name: String,
    decode: AttentionConfig,
}

impl Case for DecodeStep {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn dtype(&self) -> String {
        Case::dtype(&self.decode)
    }

    fn params(&self) -> String {
        Case::params(&self.decode)
    }

    fn workload(&self) -> Workload {
        Case::workload(&self.decode)
    }

    fn device_bytes(&self) -> u64 {
        Case::device_bytes(&self.decode)
    }

    fn default_modes(&self, device: &DeviceInfo) -> Vec<Mode> {
        Case::default_modes(&self.decode, device)
    }

    fn l2_resident(&self, device: &DeviceInfo) -> bool {
        Case::l2_resident(&self.decode, device)
    }

    fn describe(&self) -> serde_json::Value {
        let mut json = Case::describe(&self.decode);
        json["name"] = self.name.clone().into();
        json
    }

    fn tokens_per_launch(&self) -> Option<u64> {
        Case::tokens_per_launch(&self.decode)
    }

    fn prepare(&self, gpu: &Gpu) -> Result<Box<dyn Prepared>> {
        Case::prepare(&self.decode, gpu)
    }
}

fn case(spec: &str) -> Box<dyn Case> {
    parse(spec).unwrap_or_else(|e| panic!("built-in case `{spec}`: {e:#}"))
}

impl Suite for KvEvictSuite {
    fn name(&self) -> &'static str {
        "kv_evict"
    }

    fn about(&self) -> &'static str {
        "KV-cache eviction: attention-mass scores, top-k selection, compaction into fresh pages, block swaps over PCIe, copy-on-write; decode before and after"
    }

    fn kernel_names(&self) -> Vec<String> {
        prepared::all_kernel_names()
    }

    fn grammar(&self) -> Grammar {
        config::grammar()
    }

    /// The goal shape (B=32, context 4096, 32/8 heads, d128, 25% budget) for every step and
    /// policy, decode before and after, and block moves; the full grid adds budgets, FP8, long
    /// contexts and page sizes.
    fn default_cases(&self, quick: bool) -> Vec<Box<dyn Case>> {
        let base = "b=32,ctx=4096";
        let mut specs: Vec<String> = vec![
            format!("{base},op=decode"),
            format!("{base},op=decode-compacted,budget=25%"),
            format!("{base},op=score,policy=h2o"),
            format!("{base},op=score,policy=snapkv"),
            format!("{base},op=select,policy=h2o"),
            format!("{base},op=compact,policy=h2o"),
        ];
        for policy in ["h2o", "tova", "snapkv", "streaming-llm"] {
            specs.push(format!("{base},op=evict,policy={policy}"));
        }
        specs.extend([
            "op=swap-out,blocks=1024".to_string(),
            "op=swap-in,blocks=1024".to_string(),
            "op=cow,blocks=1024".to_string(),
        ]);
        if !quick {
            for budget in ["10%", "50%"] {
                specs.push(format!("{base},op=evict,policy=h2o,budget={budget}"));
                specs.push(format!("{base},op=decode-compacted,budget={budget}"));
            }
            for extra in ["kv=e4m3", "p=1", "p=64", "heads=32/32", "heads=64/8,d=128"] {
                specs.push(format!("{base},op=evict,policy=h2o,{extra}"));
            }
            for shape in ["b=1,ctx=131072", "b=8,ctx=32768"] {
                specs.push(format!("{shape},op=evict,policy=h2o"));
                specs.push(format!("{shape},op=decode"));
            }
            specs.push("b=2,ctx=131072,op=select,policy=h2o,budget=65536".into());
            specs.push("op=swap-out,blocks=8192".into());
            specs.push("op=swap-in,blocks=8192".into());
        }
        specs.iter().map(|s| case(s)).collect()
    }

    /// Small awkward problems: odd lengths mixed in one batch, budgets of 0, 1 and everything,
    /// all-equal and tied scores, sinks + window covering the sequence, every cache type, head
    /// layout and page size, and block moves of odd counts.
    fn verify_cases(&self) -> Vec<Box<dyn Case>> {
        let mixed = "lens=1:15:16:17:300:2049,heads=8/2,d=64";
        let mut specs: Vec<String> = Vec::new();
        for policy in ["h2o", "tova", "streaming-llm", "recent", "random"] {
            specs.push(format!("{mixed},op=evict,policy={policy}"));
        }
        specs.push("lens=40:300:2049,heads=8/2,d=64,op=evict,policy=snapkv,obs=8".into());
        for kv in [
            "fp16,q=fp16",
            "e4m3",
            "e5m2",
            "e4m3,scale=head",
            "bf16,q=fp16",
        ] {
            specs.push(format!("{mixed},op=evict,policy=h2o,kv={kv}"));
        }
        for heads in [
            "4/4,d=128",
            "16/1,d=80",
            "28/4,d=256",
            "40/40,d=96",
            "8/1,d=16",
        ] {
            specs.push(format!("lens=33:700,heads={heads},op=evict,policy=tova"));
        }
        for p in [1, 7, 64] {
            specs.push(format!("{mixed},op=evict,policy=h2o,p={p}"));
        }
        for budget in ["0", "1", "100%", "16", "10%"] {
            specs.push(format!("{mixed},op=evict,policy=h2o,budget={budget}"));
        }
        for scores in ["equal", "ties"] {
            for policy in ["h2o", "snapkv,obs=4,pool=5", "tova"] {
                specs.push(format!("{mixed},op=select,policy={policy},scores={scores}"));
            }
        }
        specs.push(format!(
            "{mixed},op=select,policy=streaming-llm,sinks=20,budget=24"
        ));
        specs.push(format!(
            "{mixed},op=select,policy=h2o,budget=50%,recent=3000"
        ));
        specs.push("lens=5000:70000,heads=8/2,d=64,op=select,policy=h2o,budget=40000".into());
        specs.push(format!("{mixed},op=compact,policy=random,budget=37%"));
        specs.push("lens=40:300:2049,heads=8/2,d=64,op=score,policy=snapkv,obs=33".into());
        specs.push("lens=64:300,heads=64/4,d=128,op=score,policy=snapkv,obs=64".into());
        for op in ["swap-out", "swap-in", "cow"] {
            specs.push(format!("op={op},blocks=37,heads=8/2,d=64,p=16"));
            specs.push(format!("op={op},blocks=3,heads=8/1,d=128,p=1,kv=e4m3"));
        }
        specs.iter().map(|s| case(s)).collect()
    }

    fn parse_case(&self, spec: &str) -> Result<Box<dyn Case>> {
        parse(spec)
    }

    fn goals(&self, rows: &[crate::report::ResultRow]) -> Vec<crate::suite::Goal> {
        goals::goals(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_case_grammar_holds() {
        crate::suite::spec::testing::check_grammar(&KvEvictSuite);
    }

    #[test]
    fn decode_rows_are_named_by_their_eviction_case() {
        // The compacted cache alone once named these rows: two policies at one budget, or one
        // budget's rounding of another, shared a name.
        let names: Vec<String> = [
            "op=decode-compacted,budget=25%",
            "op=decode-compacted,budget=25%,policy=tova",
            "op=decode-compacted,budget=1024",
            "op=decode",
        ]
        .iter()
        .map(|s| parse(s).unwrap().name())
        .collect();
        assert_eq!(
            names[0],
            "decode-compacted/h2o-25%/b32-ctx1024-h32/8-d128-p16-kvbf16"
        );
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        let grid: Vec<String> = KvEvictSuite
            .default_cases(false)
            .iter()
            .map(|c| c.name())
            .collect();
        let mut unique = grid.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), grid.len(), "the full grid's names are unique");
    }

    #[test]
    fn specs_make_the_cases_they_made_before_the_grammar() {
        crate::suite::spec::testing::assert_same_cases(
            &KvEvictSuite,
            &[
            ("", "evict/h2o-25%/b32-ctx4096-h32/8-d128-p16-kvbf16", "op=evict policy=h2o budget=25% batch=32 q_heads=32 kv_heads=8 head_dim=128 page_size=16 lens=Uniform(4096) observation=32 blocks=1024"),
            ("op=score,policy=snapkv,obs=16,b=4,ctx=1000,kv=e4m3", "score/snapkv-25%-obs16/b4-ctx1000-h32/8-d128-p16-kve4m3", "op=score policy=snapkv budget=25% batch=4 q_heads=32 kv_heads=8 head_dim=128 page_size=16 lens=Uniform(1000) observation=16 blocks=1024"),
            ("op=select,policy=streaming-llm,sinks=20,budget=24,lens=1:15:16", "select/streaming-llm-24-sinks20/b3-ctx1:15:16-h32/8-d128-p16-kvbf16", "op=select policy=streaming-llm budget=24 batch=3 q_heads=32 kv_heads=8 head_dim=128 page_size=16 lens=Explicit([1, 15, 16]) observation=32 blocks=1024"),
            ("op=select,policy=StreamingLLM,budget=24,lens=1:15:16", "select/streaming-llm-24/b3-ctx1:15:16-h32/8-d128-p16-kvbf16", "op=select policy=streaming-llm budget=24 batch=3 q_heads=32 kv_heads=8 head_dim=128 page_size=16 lens=Explicit([1, 15, 16]) observation=32 blocks=1024"),
            ("op=select,policy=streaming,budget=24,lens=1:15:16", "select/streaming-llm-24/b3-ctx1:15:16-h32/8-d128-p16-kvbf16", "op=select policy=streaming-llm budget=24 batch=3 q_heads=32 kv_heads=8 head_dim=128 page_size=16 lens=Explicit([1, 15, 16]) observation=32 blocks=1024"),
            ("op=compact,policy=random,budget=0.37,b=2,ctx=1000,heads=8/2,d=64", "compact/random-37%/b2-ctx1000-h8/2-d64-p16-kvbf16", "op=compact policy=random budget=37% batch=2 q_heads=8 kv_heads=2 head_dim=64 page_size=16 lens=Uniform(1000) observation=32 blocks=1024"),
            ("op=evict,policy=h2o,budget=10%,recent=3000,pool=5", "evict/h2o-10%-recent3000-pool5/b32-ctx4096-h32/8-d128-p16-kvbf16", "op=evict policy=h2o budget=10% batch=32 q_heads=32 kv_heads=8 head_dim=128 page_size=16 lens=Uniform(4096) observation=32 blocks=1024"),
            ("op=swap-out,blocks=37,heads=8/2,d=64,p=16", "swap-out/37blk/p16-kvh2-d64-kvbf16", "op=swap-out policy=h2o budget=25% batch=32 q_heads=8 kv_heads=2 head_dim=64 page_size=16 lens=Uniform(4096) observation=32 blocks=37"),
            ("op=swap-in,blocks=3,heads=8/1,d=128,p=1,kv=e4m3", "swap-in/3blk/p1-kvh1-d128-kve4m3", "op=swap-in policy=h2o budget=25% batch=32 q_heads=8 kv_heads=1 head_dim=128 page_size=1 lens=Uniform(4096) observation=32 blocks=3"),
            ("op=cow,blocks=3,heads=8/1,d=128,p=1,kv=e4m3", "cow/3blk/p1-kvh1-d128-kve4m3", "op=cow policy=h2o budget=25% batch=32 q_heads=8 kv_heads=1 head_dim=128 page_size=1 lens=Uniform(4096) observation=32 blocks=3"),
            ("op=decode-compacted,lens=100:7,budget=10%", "decode-compacted/h2o-10%/b2-ctx10:1-h32/8-d128-p16-kvbf16", "batch=2 q_heads=32 kv_heads=8 head_dim=128 page_size=16 q_len=1 lens=Explicit([10, 1]) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("op=decode,b=8,ctx=32768", "decode/b8-ctx32768-h32/8-d128-p16-kvbf16", "batch=8 q_heads=32 kv_heads=8 head_dim=128 page_size=16 q_len=1 lens=Uniform(32768) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("op=select,scores=ties,policy=tova", "select/tova-25%-ties/b32-ctx4096-h32/8-d128-p16-kvbf16", "op=select policy=tova budget=25% batch=32 q_heads=32 kv_heads=8 head_dim=128 page_size=16 lens=Uniform(4096) observation=32 blocks=1024"),
            ("op=select,scores=equal,policy=snapkv,obs=4,pool=5,lens=1:15:16:17:300:2049,heads=8/2,d=64", "select/snapkv-25%-obs4-pool5-equal/b6-ctx1:15:16:17:300:2049-h8/2-d64-p16-kvbf16", "op=select policy=snapkv budget=25% batch=6 q_heads=8 kv_heads=2 head_dim=64 page_size=16 lens=Explicit([1, 15, 16, 17, 300, 2049]) observation=4 blocks=1024"),
            ("batch=4,op=evict,policy=tova,budget=100", "evict/tova-100/b4-ctx4096-h32/8-d128-p16-kvbf16", "op=evict policy=tova budget=100 batch=4 q_heads=32 kv_heads=8 head_dim=128 page_size=16 lens=Uniform(4096) observation=32 blocks=1024"),
            ("b=4,scale=head,kv=e4m3,q=fp16,page=32,head_dim=64", "evict/h2o-25%/b4-ctx4096-h32/8-d64-p32-kve4m3-qfp16-headscale", "op=evict policy=h2o budget=25% batch=4 q_heads=32 kv_heads=8 head_dim=64 page_size=32 lens=Uniform(4096) observation=32 blocks=1024"),
            ("op=decode,b=2,ctx=3000,splits=5,data=index", "decode/b2-ctx3000-h32/8-d128-p16-kvbf16-s5-indexdata", "batch=2 q_heads=32 kv_heads=8 head_dim=128 page_size=16 q_len=1 lens=Uniform(3000) window=0 softcap=0 per_head_scales=false contiguous=false splits=5"),
            ("op=evict,policy=TOVA,budget=50 %", "evict/tova-50%/b32-ctx4096-h32/8-d128-p16-kvbf16", "op=evict policy=tova budget=50% batch=32 q_heads=32 kv_heads=8 head_dim=128 page_size=16 lens=Uniform(4096) observation=32 blocks=1024"),
            ],
        );
    }
}
