//! The `gemm` suite: quantized and BF16 GEMMs of real model shapes, our kernels beside
//! cuBLASLt, each row with TFLOPS, % of the roofline, speedup over BF16 and the accuracy delta.

use anyhow::Result;

use super::config::{GemmConfig, Op, PathChoice};
use super::prepared::{self, PreparedGemm};
use super::quant::case::{self as quantize_case, PreparedQuantize};
use crate::gpu::{DeviceInfo, Gpu};
use crate::measure::Mode;
use crate::report::ResultRow;
use crate::roofline::Workload;
use crate::suite::spec::Grammar;
use crate::suite::{Case, Goal, Prepared, Suite};

impl Case for GemmConfig {
    fn name(&self) -> String {
        GemmConfig::name(self)
    }

    fn dtype(&self) -> String {
        GemmConfig::dtype(self)
    }

    fn params(&self) -> String {
        GemmConfig::params(self)
    }

    fn workload(&self) -> Workload {
        GemmConfig::workload(self)
    }

    fn device_bytes(&self) -> u64 {
        match self.op {
            Op::Gemm => prepared::device_bytes(self),
            Op::Quantize(role) => quantize_case::device_bytes(self, role),
        }
    }

    /// Cold: weights are read from DRAM in a real layer (each is used once per step).
    fn default_modes(&self, _device: &DeviceInfo) -> Vec<Mode> {
        vec![Mode::Cold]
    }

    fn describe(&self) -> serde_json::Value {
        let w = GemmConfig::workload(self);
        serde_json::json!({
            "name": GemmConfig::name(self),
            "dtype": GemmConfig::dtype(self),
            "params": GemmConfig::params(self),
            "bytes": w.bytes,
            "flops": w.flops,
            "m": self.shape.m,
            "n": self.shape.n,
            "k": self.shape.k,
            "inputs": self.inputs.to_string(),
            "scheme": self.scheme.map(|s| s.to_string()),
            "bias": self.bias,
        })
    }

    fn prepare(&self, gpu: &Gpu) -> Result<Box<dyn Prepared>> {
        Ok(match self.op {
            Op::Gemm => Box::new(PreparedGemm::prepare(gpu, self)?),
            Op::Quantize(role) => Box::new(PreparedQuantize::prepare(gpu, self, role)?),
        })
    }
}

pub struct GemmSuite;

fn case(spec: &str) -> Box<dyn Case> {
    Box::new(GemmConfig::parse(spec).unwrap_or_else(|e| panic!("built-in case `{spec}`: {e:#}")))
}

/// The formats every large shape runs: the BF16 baseline, FP8 per-tensor and block-scaled, INT8
/// per-token × per-channel.
const CORE_FORMATS: [&str; 4] = [
    "fmt=bf16",
    "fmt=e4m3,scale=tensor",
    "fmt=e4m3,scale=block128",
    "fmt=int8,scale=token",
];

/// The fixed N × K of the M sweep: one Llama-3-70B MLP projection (gate or up), the shape of
/// the decode anchors in `../shared/anchors.md`.
pub const SWEEP_NK: (usize, usize) = (28672, 8192);
pub const SWEEP_M: [usize; 15] = [
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
];
/// Tokens of the model-shape cases (a prefill chunk).
pub const MODEL_M: usize = 4096;

/// The built-in grid.
pub fn default_specs(quick: bool) -> Vec<String> {
    with_promoted_twins(grid_specs(quick))
}

/// `specs` with every FP8 per-tensor goal case also run on `wgmma-promoted` (without a second
/// pair of cuBLASLt rows): `path=auto` picks `wgmma`, which keeps the sum in the FP8 tensor-core
/// accumulator and is compared with cuBLASLt's fast accumulation; the twin is compared with
/// cuBLASLt's default, promoted one (see `goals`).
fn with_promoted_twins(specs: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let c =
            GemmConfig::parse(&spec).unwrap_or_else(|e| panic!("built-in case `{spec}`: {e:#}"));
        let twin = c.path == PathChoice::Auto
            && c.op == Op::Gemm
            && super::goals::fp8_goal_case(&c.name(), &c.dtype(), c.shape.m);
        let promoted = twin.then(|| format!("{spec},path=wgmma-promoted,lt=0"));
        out.push(spec);
        out.extend(promoted);
    }
    out
}

fn grid_specs(quick: bool) -> Vec<String> {
    let mut specs = Vec::new();
    let (n, k) = SWEEP_NK;
    if quick {
        for size in [4096, 8192] {
            for f in CORE_FORMATS {
                specs.push(format!("shape={size}x{size}x{size},{f}"));
            }
        }
        for f in CORE_FORMATS.iter().chain(&["fmt=e4m3,act=bf16"]) {
            specs.push(format!("shape=16x{n}x{k},{f}"));
        }
        specs.push("shape=8192x8192x8192,fmt=e4m3,scale=block128,op=quantize-x".into());
        return specs;
    }
    for size in [1024, 2048, 4096, 8192, 16384] {
        for f in CORE_FORMATS.iter().chain(&["fmt=e4m3,scale=token"]) {
            specs.push(format!("shape={size}x{size}x{size},{f}"));
        }
    }
    for (name, _, _) in super::accuracy::MODEL_SHAPES {
        let formats: &[&str] = if name.starts_with("llama3") {
            &CORE_FORMATS
        } else {
            &["fmt=bf16", "fmt=e4m3,scale=block128"]
        };
        for f in formats {
            specs.push(format!("shape={name},m={MODEL_M},{f}"));
        }
    }
    for m in SWEEP_M {
        // Weight-only at every M: the small_m path to 64, the mma path's tensor cores past it.
        for f in [
            "fmt=bf16",
            "fmt=e4m3,scale=tensor",
            "fmt=int8,scale=token",
            "fmt=e4m3,act=bf16",
            "fmt=int8,act=bf16",
        ] {
            specs.push(format!("shape={m}x{n}x{k},{f}"));
        }
    }
    // FP8 accumulation at growing K: every path (wgmma keeps the sum in the tensor core's
    // accumulator, wgmma-promoted moves it to f32 every 128 of K), speed and kernel_sqnr_db.
    for k in [4096, 16384, 65536] {
        specs.push(format!(
            "shape=2048x2048x{k},fmt=e4m3,scale=tensor,path=all"
        ));
    }
    // The remaining anchor shapes.
    for shape in [
        "1x4096x4096",
        "64x14336x4096",
        "128x4096x14336",
        "1024x14336x4096",
    ] {
        for f in ["fmt=bf16", "fmt=e4m3,scale=tensor"] {
            specs.push(format!("shape={shape},{f}"));
        }
    }
    for q in [
        "fmt=e4m3,scale=tensor",
        "fmt=e4m3,scale=token",
        "fmt=e4m3,scale=block128",
        "fmt=int8,scale=token",
    ] {
        specs.push(format!("shape=8192x8192x8192,{q},op=quantize-x"));
    }
    specs.push("shape=8192x8192x8192,fmt=e4m3,scale=block128,op=quantize-w".into());
    specs
}

/// What `verify` runs: every path on awkward sizes (M = 1, 7, 33; N and K off every tile;
/// K not a multiple of 16 bytes, which only the fallback takes), every input kind and scheme,
/// with and without bias, and the quantizers.
pub fn verify_specs() -> Vec<String> {
    let mut specs = Vec::new();
    let every_kind = [
        "fmt=bf16",
        "fmt=e4m3,scale=tensor",
        "fmt=e4m3,scale=token",
        "fmt=e4m3,scale=block128",
        "fmt=e5m2,scale=token",
        "fmt=int8,scale=tensor",
        "fmt=int8,scale=token",
        "fmt=int8,scale=block128",
        "fmt=e4m3,act=bf16,scale=token",
        "fmt=e5m2,act=bf16,scale=tensor",
        "fmt=int8,act=bf16,scale=block128",
    ];
    for shape in ["7x200x80", "33x136x272", "128x256x512", "1x520x4112"] {
        for f in every_kind {
            specs.push(format!("shape={shape},{f},path=all"));
        }
    }
    for extra in [
        "shape=64x384x1024,fmt=e4m3,scale=block128,bias=1,path=all",
        "shape=300x520x1000,fmt=bf16,bias=1,path=all",
        "shape=300x520x1000,fmt=int8,scale=token,path=all",
        "shape=5x7x9,fmt=e4m3,scale=tensor,path=all",
        "shape=5x7x9,fmt=int8,act=bf16,scale=token,path=all",
        "shape=257x384x4096,fmt=e4m3,scale=tensor,data=outliers,path=all",
        // One channel at 200x: INT8 per-tensor codes of the plain channels collapse to a few
        // levels, the accuracy columns show it; every path must still match its reference.
        "shape=64x256x1024,fmt=int8,scale=tensor,data=outliers,outliers=1,outlier_scale=200,path=all",
        "shape=16x1024x8192,fmt=e4m3,act=bf16,scale=block128,bias=1,path=all",
        // Weight-only past the small_m sizes: the mma path's widened W tiles, with N, M and K
        // tails (K = 1040: the last 128-block is 16 wide, the last stage half empty).
        "shape=200x136x1040,fmt=int8,act=bf16,scale=block128,bias=1,path=all",
        "shape=129x520x272,fmt=e5m2,act=bf16,scale=token,path=all",
        "shape=300x256x512,fmt=e4m3,act=bf16,scale=tensor,path=all",
    ] {
        specs.push(extra.into());
    }
    for q in [
        "shape=33x1x300,fmt=e4m3,scale=tensor,op=quantize-x",
        "shape=33x1x300,fmt=e5m2,scale=token,op=quantize-x",
        "shape=33x1x300,fmt=int8,scale=block128,op=quantize-x",
        "shape=1x200x300,fmt=e4m3,scale=block128,op=quantize-w",
    ] {
        specs.push(q.into());
    }
    specs
}

impl Suite for GemmSuite {
    fn name(&self) -> &'static str {
        "gemm"
    }

    fn about(&self) -> &'static str {
        "INT8/FP8/BF16 GEMMs (Y = X·Wᵀ) of real model shapes vs cuBLASLt and the compute roof, with accuracy deltas; quantizers"
    }

    fn kernel_names(&self) -> Vec<String> {
        let mut names = super::paths::kernel_names();
        names.extend(super::quant::gpu::kernel_names());
        names
    }

    fn grammar(&self) -> Grammar {
        super::config::grammar()
    }

    fn default_cases(&self, quick: bool) -> Vec<Box<dyn Case>> {
        default_specs(quick).iter().map(|s| case(s)).collect()
    }

    fn parse_case(&self, spec: &str) -> Result<Box<dyn Case>> {
        Ok(Box::new(GemmConfig::parse(spec)?))
    }

    fn verify_cases(&self) -> Vec<Box<dyn Case>> {
        verify_specs().iter().map(|s| case(s)).collect()
    }

    fn goals(&self, rows: &[ResultRow]) -> Vec<Goal> {
        super::goals::goals(rows)
    }

    fn annotate(&self, rows: &mut [ResultRow]) -> bool {
        super::goals::annotate_speedups(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_case_grammar_holds() {
        crate::suite::spec::testing::check_grammar(&GemmSuite);
    }

    #[test]
    fn specs_make_the_cases_they_made_before_the_grammar() {
        crate::suite::spec::testing::assert_same_cases(
            &GemmSuite,
            &[
            ("shape=8192x8192x8192", "8192x8192x8192/e4m3/per-tensor", "m=8192 n=8192 k=8192 inputs=e4m3 scale=per-tensor bias=false data=gaussian path=auto op=gemm"),
            ("shape=llama3-70b-qkv,m=16,fmt=e4m3,act=bf16", "llama3-70b-qkv@16/we4m3-abf16/per-token-channel", "m=16 n=10240 k=8192 inputs=we4m3-abf16 scale=per-token-channel bias=false data=gaussian path=auto op=gemm"),
            ("shape=llama3-8b-down", "llama3-8b-down@128/e4m3/per-tensor", "m=128 n=4096 k=14336 inputs=e4m3 scale=per-tensor bias=false data=gaussian path=auto op=gemm"),
            ("shape=7x200x80,fmt=bf16,bias=1,path=all", "7x200x80/bf16+bias+all", "m=7 n=200 k=80 inputs=bf16 scale=none bias=true data=gaussian path=all op=gemm"),
            ("shape=64x128x256,fmt=int8,scale=token", "64x128x256/int8/per-token-channel", "m=64 n=128 k=256 inputs=int8 scale=per-token-channel bias=false data=gaussian path=auto op=gemm"),
            ("shape=4x256x384,fmt=e4m3,scale=block128,act=bf16,bias=true", "4x256x384/we4m3-abf16/block128+bias", "m=4 n=256 k=384 inputs=we4m3-abf16 scale=block128 bias=true data=gaussian path=auto op=gemm"),
            ("shape=100x1x300,fmt=e5m2,scale=block128,op=quantize-x", "quantize-x/100x1x300/e5m2/block128", "m=100 n=1 k=300 inputs=e5m2 scale=block128 bias=false data=gaussian path=auto op=quantize-x"),
            ("shape=100x1x300,fmt=s8,scale=per-channel,op=quantize-w", "quantize-w/100x1x300/int8/per-token-channel", "m=100 n=1 k=300 inputs=int8 scale=per-token-channel bias=false data=gaussian path=auto op=quantize-w"),
            ("shape=16X4096X4096,fmt=INT8,act=BF16,data=outliers,lt=0,path=simt", "16X4096X4096/wint8-abf16/per-token-channel+outliers+simt", "m=16 n=4096 k=4096 inputs=wint8-abf16 scale=per-token-channel bias=false data=outliers path=simt op=gemm"),
            ("shape = 8x8x16 , fmt = bf16", "8x8x16/bf16", "m=8 n=8 k=16 inputs=bf16 scale=none bias=false data=gaussian path=auto op=gemm"),
            ("shape=8x8x16,act=quantized,cublaslt=no,bias=off", "8x8x16/e4m3/per-tensor", "m=8 n=8 k=16 inputs=e4m3 scale=per-tensor bias=false data=gaussian path=auto op=gemm"),
            ("shape=8x8x16,path=mma,scale=block", "8x8x16/e4m3/block128+mma", "m=8 n=8 k=16 inputs=e4m3 scale=block128 bias=false data=gaussian path=mma op=gemm"),
            ("shape=deepseek-v3-kv-b,m=1,fmt=e4m3,scale=block-128,data=Outliers", "deepseek-v3-kv-b@1/e4m3/block128+outliers", "m=1 n=32768 k=512 inputs=e4m3 scale=block128 bias=false data=outliers path=auto op=gemm"),
            ],
        );
    }

    #[test]
    fn every_built_in_case_parses_and_names_are_unique() {
        for quick in [true, false] {
            let mut names: Vec<String> = GemmSuite
                .default_cases(quick)
                .iter()
                .map(|c| c.name())
                .collect();
            let len = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), len, "duplicate case names (quick = {quick})");
        }
        let verify = GemmSuite.verify_cases();
        assert!(verify.len() > 40);
        // The verify grid reaches M = 1, 7, 33 and a K that no 16-byte path takes.
        let names: Vec<String> = verify.iter().map(|c| c.name()).collect();
        for needle in ["1x520x4112/", "7x200x80/", "33x136x272/", "300x520x1000/"] {
            assert!(names.iter().any(|n| n.starts_with(needle)), "{needle}");
        }
    }

    #[test]
    fn the_grid_covers_the_issue_shapes() {
        let specs = default_specs(false);
        for needle in [
            "shape=16384x16384x16384,fmt=e4m3,scale=block128",
            "shape=llama3-70b-qkv,m=4096,fmt=e4m3,scale=tensor",
            "shape=deepseek-v3-down,m=4096,fmt=e4m3,scale=block128",
            "shape=1x28672x8192,fmt=e4m3,act=bf16",
            "shape=16384x28672x8192,fmt=int8,scale=token",
            "shape=2048x2048x65536,fmt=e4m3,scale=tensor,path=all",
            // The FP8 goal cases' promoted twins, without a second cuBLASLt.
            "shape=8192x8192x8192,fmt=e4m3,scale=tensor,path=wgmma-promoted,lt=0",
            "shape=llama3-70b-qkv,m=4096,fmt=e4m3,scale=tensor,path=wgmma-promoted,lt=0",
        ] {
            assert!(specs.iter().any(|s| s == needle), "{needle}");
        }
        let twins = |quick| {
            default_specs(quick)
                .iter()
                .filter(|s| s.contains("path=wgmma-promoted"))
                .count()
        };
        // 8192^3 and the four Llama-3 70B projections; the quick grid's one 8192^3.
        assert_eq!((twins(false), twins(true)), (5, 1));
    }

    #[test]
    fn device_memory_is_declared() {
        let c = GemmConfig::parse("shape=8192x8192x8192,fmt=e4m3").unwrap();
        // BF16 and FP8 copies of both operands, Y as bf16 and i32, cuBLASLt's workspace.
        assert!(Case::device_bytes(&c) > 8192 * 8192 * (2 * 2 + 2 + 2 + 4));
    }
}
