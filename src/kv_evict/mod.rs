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

use crate::gpu::{DeviceInfo, Gpu};
use crate::measure::{Mode, Workload};
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
            Box::new(page_moves::PreparedPageMoves::new(gpu, self)?)
        } else {
            Box::new(prepared::PreparedEviction::new(gpu, self)?)
        })
    }
}

pub struct KvEvictSuite;

/// A case from a spec: decode steps are attention cases (the same kernels and rows as
/// `roofbench run attention`), everything else an eviction case.
fn parse(spec: &str) -> Result<Box<dyn Case>> {
    let c = EvictConfig::parse(spec)?;
    Ok(match c.decode_case() {
        Some(decode) => Box::new(decode),
        None => Box::new(c),
    })
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

    fn case_syntax(&self) -> &'static str {
        "key=value,... with op=score|select|compact|evict|swap-out|swap-in|cow|decode|decode-compacted \
         policy=h2o|tova|snapkv|streaming-llm|recent|random budget=25%|0.25|TOKENS obs=N (SnapKV window) \
         sinks=N recent=N pool=ODD blocks=N scores=random|equal|ties, and the attention cache keys \
         b= ctx=|lens= heads=Q/KV d= p= kv= q= scale=, e.g. op=evict,policy=snapkv,budget=10%,b=8,ctx=32768"
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
            specs.push(format!(
                "{base},op=select,policy=h2o,budget=65536,b=2,ctx=131072"
            ));
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
