//! The attention suite: paged decode attention (flash-decoding split-K + merge) against the
//! memory-bandwidth roofline, for MHA/GQA/MQA, head dims up to 256, page sizes 1..any, BF16/FP16
//! queries and BF16/FP16/FP8 KV caches, query lengths up to 8, sliding windows and soft-caps; the
//! same kernel on a contiguous cache measures what paging costs. The append kernel that writes new
//! tokens into their pages is verified and timed beside it.

pub mod config;
#[cfg(test)]
mod faults;
pub mod inputs;
pub mod layout;
mod prepared;
pub mod reference;

use anyhow::Result;

pub use config::{AttentionConfig, Lengths};

use crate::gpu::{DeviceInfo, Gpu};
use crate::measure::Mode;
use crate::roofline::Workload;
use crate::suite::spec::Grammar;
use crate::suite::{Case, Prepared, Suite};

impl Case for AttentionConfig {
    fn name(&self) -> String {
        AttentionConfig::name(self)
    }

    fn dtype(&self) -> String {
        format!("q{}-kv{}", self.q_dtype, self.kv_dtype)
    }

    fn params(&self) -> String {
        format!(
            "batch={} q_heads={} kv_heads={} head_dim={} page_size={} q_len={} lens={:?} window={} softcap={} per_head_scales={} contiguous={} splits={}",
            self.batch,
            self.q_heads,
            self.kv_heads,
            self.head_dim,
            self.page_size,
            self.q_len,
            self.lengths,
            self.window,
            self.softcap,
            self.per_head_scales,
            self.contiguous,
            self.splits.map_or("auto".into(), |s| s.to_string())
        ) + &self.optional_params()
    }

    fn workload(&self) -> Workload {
        AttentionConfig::workload(self)
    }

    fn device_bytes(&self) -> u64 {
        prepared::device_bytes(self)
    }

    /// Cold: a decode step reads a KV cache far larger than L2.
    fn default_modes(&self, _device: &DeviceInfo) -> Vec<Mode> {
        vec![Mode::Cold]
    }

    fn l2_resident(&self, _device: &DeviceInfo) -> bool {
        false
    }

    fn describe(&self) -> serde_json::Value {
        let w = AttentionConfig::workload(self);
        serde_json::json!({
            "name": AttentionConfig::name(self),
            "dtype": self.dtype(),
            "params": self.params(),
            "bytes": w.bytes,
            "flops": w.flops,
            "batch": self.batch,
            "q_heads": self.q_heads,
            "kv_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "page_size": self.page_size,
            "q_dtype": self.q_dtype,
            "kv_dtype": self.kv_dtype,
            "q_len": self.q_len,
            "context_lens": self.context_lens(),
            "window": self.window,
            "softcap": self.softcap,
            "softmax_scale": self.softmax_scale(),
            "contiguous": self.contiguous,
        })
    }

    fn tokens_per_launch(&self) -> Option<u64> {
        Some((self.batch * self.q_len) as u64)
    }

    fn prepare(&self, gpu: &Gpu) -> Result<Box<dyn Prepared>> {
        Ok(Box::new(prepared::PreparedAttention::prepare(gpu, self)?))
    }
}

pub struct AttentionSuite;

/// The verify set: every axis of the kernels on small problems with awkward sizes, and data
/// that makes a wrong key, scale, cap or merge weight show above the rounding bound (a CPU test,
/// `tests::faults_injected_into_the_reference_fail_the_verify_set`, shows each one does).
pub fn verify_specs() -> Vec<String> {
    let mut specs: Vec<String> = Vec::new();
    let mixed = "lens=1:15:16:17:300:2049";
    for kv in ["bf16", "fp16", "e4m3", "e5m2"] {
        for q in ["bf16", "fp16"] {
            specs.push(format!("{mixed},heads=8/2,d=128,kv={kv},q={q}"));
        }
    }
    // vLLM's head dims: the fast instances and the generic path (80, 112, 16, and 120 with its
    // zero-padded last k16 step, also with converted queries and peaked scores).
    for d in [64, 80, 96, 112, 120, 192, 256, 16] {
        specs.push(format!("lens=33:700,heads=4/1,d={d}"));
    }
    specs.push("lens=1:15:16:17:300:2049,heads=8/2,d=120,kv=fp16,q=bf16".into());
    specs.push("lens=17:300:2049,heads=8/2,d=120,kv=fp16,q=fp16,data=peaked,softcap=10".into());
    // FP8 at the largest head dims (the fast instances' widening pass) and on the generic path.
    for (d, kv) in [
        (192, "e4m3"),
        (256, "e5m2"),
        (80, "e4m3"),
        (112, "e5m2,q=fp16"),
    ] {
        specs.push(format!("lens=33:700,heads=4/1,d={d},kv={kv}"));
    }
    for heads in ["4/4", "32/8", "16/1", "28/4", "40/40"] {
        specs.push(format!("lens=5:513,heads={heads},d=64"));
    }
    for p in [1, 7, 32, 64] {
        specs.push(format!("{mixed},heads=8/2,d=64,p={p}"));
    }
    for extra in [
        "window=100",
        "window=5000",
        "softcap=30",
        "kv=e4m3,scale=head",
        "kv=e4m3,kscale=0.02:0.0035,vscale=0.011",
        "kv=e5m2,kscale=3.5,vscale=0.3:0.07",
        "layout=contiguous",
        "splits=1",
        "splits=17",
    ] {
        specs.push(format!("{mixed},heads=8/2,d=64,{extra}"));
    }
    // Several new tokens per sequence (speculative verification): contexts of at least q_len.
    for extra in [
        "qlen=3",
        "qlen=8,window=5",
        "softcap=5,qlen=2",
        "qlen=8,p=1",
    ] {
        specs.push(format!("lens=8:15:16:17:300:2049,heads=8/2,d=64,{extra}"));
    }
    specs.push("b=6,ctx=700,lens=zipf,heads=8/2,d=64".into());
    specs.push("lens=131072,heads=8/1,d=128,kv=e4m3".into());
    // A shared prefix (whole pages shared by every sequence, partial last pages their own).
    for extra in ["p=16", "p=7,qlen=3", "p=32,kv=e4m3"] {
        specs.push(format!(
            "lens=300:333:2049:1000,heads=8/2,d=64,prefix=290,{extra}"
        ));
    }
    // Index-revealing data: a skipped, doubled or wrongly masked key shows far above rounding.
    for extra in [
        "",
        ",kv=e5m2",
        ",window=300",
        ",qlen=4,p=1",
        ",splits=7,p=32",
        ",layout=contiguous",
    ] {
        specs.push(format!(
            "lens=9:16:17:1000:4000,heads=8/2,d=64,data=index{extra}"
        ));
    }
    specs.push("lens=1000:1017:4000,heads=8/2,d=64,data=index,prefix=990".into());
    // Peaked scores (a few keys dominate, past the cap): a wrong scale, a missing soft-cap or a
    // lost dominant key shows; same-type and FP8 caches, where the bound is tightest.
    for extra in [
        "",
        ",softcap=10",
        ",softcap=30,q=fp16,kv=fp16",
        ",kv=e4m3,scale=head,softcap=20",
        ",window=200,qlen=2",
        ",splits=9",
    ] {
        specs.push(format!(
            "lens=17:300:2049,heads=8/2,d=128,data=peaked{extra}"
        ));
    }
    specs
}

fn case(spec: &str) -> Box<dyn Case> {
    Box::new(
        AttentionConfig::parse(spec).unwrap_or_else(|e| panic!("built-in case `{spec}`: {e:#}")),
    )
}

impl Suite for AttentionSuite {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn about(&self) -> &'static str {
        "paged decode attention (split-K + merge) vs the KV-cache read bandwidth; contiguous KV, FP8 KV, append"
    }

    fn kernel_names(&self) -> Vec<String> {
        prepared::all_kernel_names()
    }

    fn grammar(&self) -> Grammar {
        config::grammar()
    }

    fn default_cases(&self, quick: bool) -> Vec<Box<dyn Case>> {
        let mut specs: Vec<String> = Vec::new();
        let (batches, contexts): (&[usize], &[usize]) = if quick {
            (&[1, 32], &[4096])
        } else {
            (&[1, 8, 32, 64, 128, 256], &[512, 2048, 8192, 32768])
        };
        for &b in batches {
            for &ctx in contexts {
                specs.push(format!("b={b},ctx={ctx}"));
            }
        }
        specs.push(if quick {
            "b=1,ctx=16384".into()
        } else {
            "b=1,ctx=131072".into()
        });
        // One axis at a time around B=32, ctx 4096, 32/8 heads, d128, page 16, bf16 KV.
        let base = "b=32,ctx=4096";
        let sweeps: &[&str] = if quick {
            &["heads=32/32", "kv=e4m3", "layout=contiguous", "lens=zipf"]
        } else {
            &[
                "heads=32/32",
                "heads=64/8",
                "heads=8/1",
                "d=64",
                "d=256",
                "p=1",
                "p=64",
                "kv=e4m3",
                "kv=fp16,q=fp16",
                "lens=zipf",
                "layout=contiguous",
                "qlen=4",
            ]
        };
        specs.extend(sweeps.iter().map(|s| format!("{base},{s}")));
        specs.iter().map(|s| case(s)).collect()
    }

    /// Every axis of the kernels on small problems with awkward sizes.
    fn verify_cases(&self) -> Vec<Box<dyn Case>> {
        verify_specs().iter().map(|s| case(s)).collect()
    }

    fn parse_case(&self, spec: &str) -> Result<Box<dyn Case>> {
        Ok(Box::new(AttentionConfig::parse(spec)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_case_grammar_holds() {
        crate::suite::spec::testing::check_grammar(&AttentionSuite);
    }

    #[test]
    fn specs_make_the_cases_they_made_before_the_grammar() {
        crate::suite::spec::testing::assert_same_cases(
            &AttentionSuite,
            &[
            ("", "b1-ctx4096-h32/8-d128-p16-kvbf16", "batch=1 q_heads=32 kv_heads=8 head_dim=128 page_size=16 q_len=1 lens=Uniform(4096) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("b=8,ctx=32768,heads=64/8,d=128,kv=e4m3,scale=head", "b8-ctx32768-h64/8-d128-p16-kve4m3-headscale", "batch=8 q_heads=64 kv_heads=8 head_dim=128 page_size=16 q_len=1 lens=Uniform(32768) window=0 softcap=0 per_head_scales=true contiguous=false splits=auto"),
            ("batch=4,head_dim=64,page=32,ctx=1000", "b4-ctx1000-h32/8-d64-p32-kvbf16", "batch=4 q_heads=32 kv_heads=8 head_dim=64 page_size=32 q_len=1 lens=Uniform(1000) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("lens=1:17:4000,qlen=1,heads=8/1,d=80,p=1", "b3-ctx1:17:4000-h8/1-d80-p1-kvbf16", "batch=3 q_heads=8 kv_heads=1 head_dim=80 page_size=1 q_len=1 lens=Explicit([1, 17, 4000]) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("lens=zipf,b=6,ctx=700,heads=8/2,d=64", "b6-ctx700zipf-h8/2-d64-p16-kvbf16", "batch=6 q_heads=8 kv_heads=2 head_dim=64 page_size=16 q_len=1 lens=Zipf(700) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("lens=zipf", "b1-ctx4096zipf-h32/8-d128-p16-kvbf16", "batch=1 q_heads=32 kv_heads=8 head_dim=128 page_size=16 q_len=1 lens=Zipf(4096) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("lens=uniform,ctx=300", "b1-ctx300-h32/8-d128-p16-kvbf16", "batch=1 q_heads=32 kv_heads=8 head_dim=128 page_size=16 q_len=1 lens=Uniform(300) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("kv=fp16,q=fp16", "b1-ctx4096-h32/8-d128-p16-kvfp16-qfp16", "batch=1 q_heads=32 kv_heads=8 head_dim=128 page_size=16 q_len=1 lens=Uniform(4096) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("kv=F16,q=f16,d=96", "b1-ctx4096-h32/8-d96-p16-kvfp16-qfp16", "batch=1 q_heads=32 kv_heads=8 head_dim=96 page_size=16 q_len=1 lens=Uniform(4096) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("kv=E5M2", "b1-ctx4096-h32/8-d128-p16-kve5m2", "batch=1 q_heads=32 kv_heads=8 head_dim=128 page_size=16 q_len=1 lens=Uniform(4096) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("qlen=4,window=100,softcap=30,layout=contiguous,splits=7,data=index", "b1-ctx4096-h32/8-d128-p16-kvbf16-ql4-w100-cap30-contig-s7-indexdata", "batch=1 q_heads=32 kv_heads=8 head_dim=128 page_size=16 q_len=4 lens=Uniform(4096) window=100 softcap=30 per_head_scales=false contiguous=true splits=7"),
            ("splits=auto,layout=paged,scale=tensor,data=random", "b1-ctx4096-h32/8-d128-p16-kvbf16", "batch=1 q_heads=32 kv_heads=8 head_dim=128 page_size=16 q_len=1 lens=Uniform(4096) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            (" b=2 , ctx=100 ", "b2-ctx100-h32/8-d128-p16-kvbf16", "batch=2 q_heads=32 kv_heads=8 head_dim=128 page_size=16 q_len=1 lens=Uniform(100) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("b=2,,ctx=100,", "b2-ctx100-h32/8-d128-p16-kvbf16", "batch=2 q_heads=32 kv_heads=8 head_dim=128 page_size=16 q_len=1 lens=Uniform(100) window=0 softcap=0 per_head_scales=false contiguous=false splits=auto"),
            ("softcap=5.5,lens=8:15:16:17:300:2049,heads=8/2,d=64,qlen=2", "b6-ctx8:15:16:17:300:2049-h8/2-d64-p16-kvbf16-ql2-cap5.5", "batch=6 q_heads=8 kv_heads=2 head_dim=64 page_size=16 q_len=2 lens=Explicit([8, 15, 16, 17, 300, 2049]) window=0 softcap=5.5 per_head_scales=false contiguous=false splits=auto"),
            ],
        );
    }

    #[test]
    fn built_in_cases_are_valid_and_unique() {
        for quick in [true, false] {
            let cases = AttentionSuite.default_cases(quick);
            let mut names: Vec<String> = cases.iter().map(|c| c.name()).collect();
            let n = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), n, "duplicate case names");
        }
        let verify = AttentionSuite.verify_cases();
        assert!(verify.len() > 30);
        assert!(verify.iter().any(|c| c.name().contains("kve5m2-qfp16")));
    }
}
