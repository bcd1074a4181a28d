//! A GEMM case of the `gemm` suite, parsed from `key=value,...`: the shape, the input formats and
//! scaling scheme, the kernels to run, and the minimum work it declares to the roofline.
//!
//! Two operations share the syntax: the GEMM `Y = X·Wᵀ` (`op=gemm`, the default) and the
//! quantization of one of its BF16 operands (`op=quantize-x` / `op=quantize-w`), which a real
//! pipeline pays before every quantized GEMM of activations and is timed as its own case.

use anyhow::{bail, ensure, Result};

use super::accuracy::{DataKind, GemmShape, OutlierPattern, DEFAULT_TOKENS};
use super::paths::{Inputs, Problem};
use super::quant::{scales_shape, Operand, QuantFormat, Scheme};
use crate::roofline::Precision;
use crate::roofline::Workload;
use crate::suite::spec::{Absent, Grammar, Key, Value};

/// Which roofbench kernels a case runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathChoice {
    /// The path roofbench would pick for this problem on this GPU (see [`super::paths::auto`]).
    Auto,
    /// Every path that supports the problem, each as its own variant (what `verify` runs).
    All,
    /// One named path (`wgmma`, `mma`, `small_m`, `simt`, ...).
    Named(String),
}

/// What a case times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gemm,
    /// BF16 → codes + scales of one operand (`X` is `[M][K]`, `W` is `[N][K]`).
    Quantize(Operand),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GemmConfig {
    pub shape: GemmShape,
    pub inputs: Inputs,
    /// None exactly for BF16 inputs.
    pub scheme: Option<Scheme>,
    pub bias: bool,
    pub data: DataKind,
    /// The outlier channels of `data=outliers` (default pattern otherwise).
    pub outliers: OutlierPattern,
    pub path: PathChoice,
    /// Also run cuBLASLt where it has the operation.
    pub cublaslt: bool,
    pub op: Op,
}

/// The keys of a GEMM case.
pub fn keys() -> Vec<Key> {
    vec![
        Key::new(
            "shape",
            Value::Text("MxNxK|<model shape>"),
            Absent::Required,
            "the GEMM Y[M][N] = X[M][K]·W[N][K]ᵀ, or a model projection such as llama3-70b-qkv",
        ),
        Key::new(
            "m",
            Value::Int,
            Absent::Note("128 with a model shape"),
            "tokens (M) of a model shape",
        ),
        Key::new(
            "fmt",
            Value::Names(|| {
                std::iter::once("bf16")
                    .chain(QuantFormat::ALL.iter().map(|f| f.name()))
                    .collect()
            }),
            Absent::Value("e4m3"),
            "input format",
        ),
        Key::new(
            "scale",
            Value::Text("tensor|token|block128"),
            Absent::Note("tensor; token for weight-only"),
            "scaling of quantized inputs",
        ),
        Key::new(
            "act",
            Value::OneOf(&["quantized", "bf16"]),
            Absent::Value("quantized"),
            "activations quantized like W, or BF16: a weight-only GEMM",
        ),
        Key::new(
            "bias",
            Value::Flag,
            Absent::Value("0"),
            "a BF16 bias added to Y",
        ),
        Key::new(
            "data",
            Value::Names(|| DataKind::ALL.iter().map(|d| d.name()).collect()),
            Absent::Value("gaussian"),
            "activations",
        ),
        Key::new(
            "outliers",
            Value::Int,
            Absent::Note("1% of K, at least 1"),
            "outlier channels of data=outliers",
        ),
        Key::new(
            "outlier_scale",
            Value::Real,
            Absent::Note("50..100, drawn per channel"),
            "every outlier channel's factor, for data=outliers (e.g. 200)",
        ),
        Key::new(
            "path",
            Value::Names(|| {
                ["auto", "all"]
                    .into_iter()
                    .chain(super::paths::all().iter().map(|p| p.name()))
                    .collect()
            }),
            Absent::Value("auto"),
            "roofbench's pick for this GPU, every path that takes the case, or one",
        ),
        Key::new(
            "lt",
            Value::Flag,
            Absent::Value("1"),
            "cuBLASLt beside our kernels",
        )
        .aliases(&["cublaslt"]),
        Key::new(
            "op",
            Value::OneOf(&["gemm", "quantize-x", "quantize-w"]),
            Absent::Value("gemm"),
            "the GEMM, or the quantizer of X or W alone",
        ),
    ]
}

pub fn grammar() -> Grammar {
    Grammar {
        keys: keys(),
        example: "shape=llama3-70b-qkv,m=2048,fmt=e4m3,scale=block128",
        shorthand: None,
    }
}

impl GemmConfig {
    /// Parses `key=value,...` (see [`keys`]).
    pub fn parse(spec: &str) -> Result<GemmConfig> {
        let grammar = grammar();
        let spec = grammar.parse(spec)?;
        let shape = spec.get("shape");
        let m = spec.int("m")?;
        ensure!(m != Some(0), "`m` must be positive");
        let format = spec
            .parse("fmt", |v| match v.to_ascii_lowercase().as_str() {
                "bf16" => Ok(None),
                other => QuantFormat::parse(other).map(Some),
            })?
            .unwrap_or(Some(QuantFormat::E4m3));
        let scheme = spec.parse("scale", Scheme::parse)?;
        let weight_only = spec
            .parse("act", |v| match v.to_ascii_lowercase().as_str() {
                "bf16" => Ok(true),
                "quantized" | "same" => Ok(false),
                _ => bail!("`bf16` (weight-only GEMM) or `quantized`"),
            })?
            .unwrap_or(false);
        let bias = spec.flag("bias")?.unwrap_or(false);
        let data = spec
            .parse("data", DataKind::parse)?
            .unwrap_or(DataKind::Gaussian);
        let (count, scale) = (spec.int("outliers")?, spec.real("outlier_scale")?);
        if data != DataKind::Outliers && (count.is_some() || scale.is_some()) {
            bail!("`outliers` and `outlier_scale` shape the outlier channels: give data=outliers");
        }
        let outliers = OutlierPattern::new(count, scale)?;
        let path = spec
            .parse("path", |v| match v {
                "auto" => Ok(PathChoice::Auto),
                "all" => Ok(PathChoice::All),
                name => {
                    super::paths::by_name(name)?;
                    Ok(PathChoice::Named(name.to_string()))
                }
            })?
            .unwrap_or(PathChoice::Auto);
        let cublaslt = spec.flag("lt")?.unwrap_or(true);
        let op = match spec.one_of("op")? {
            Some("quantize-x") => Op::Quantize(Operand::Activation),
            Some("quantize-w") => Op::Quantize(Operand::Weight),
            _ => Op::Gemm,
        };
        let Some(shape) = shape else {
            bail!("a GEMM case needs `shape=MxNxK` or `shape=<model shape>` (e.g. llama3-70b-qkv)")
        };
        // `MxNxK` is three numbers; anything else names a model shape (names may contain an x).
        let named = !shape
            .split(['x', 'X'])
            .map(|d| d.trim().parse::<usize>().is_ok())
            .eq([true, true, true]);
        let mut shape = GemmShape::parse(shape, m.unwrap_or(DEFAULT_TOKENS))?;
        if let (false, Some(m)) = (named, m) {
            bail!(
                "`m={m}` applies to a named shape; `shape={}` already gives M",
                shape.name
            );
        }
        if named {
            shape.name = format!("{}@{}", shape.name, shape.m);
        }
        let (inputs, scheme) = match (format, weight_only) {
            (None, true) => bail!("`act=bf16` makes a weight-only GEMM: give the weights' `fmt`"),
            (None, false) => {
                if let Some(s) = scheme {
                    bail!("`scale={s}` needs a quantized `fmt` (e4m3, e5m2, int8), not bf16");
                }
                (Inputs::Bf16, None)
            }
            (Some(f), true) => (
                Inputs::WeightOnly(f),
                Some(scheme.unwrap_or(Scheme::PerTokenPerChannel)),
            ),
            (Some(f), false) => (
                Inputs::Quantized(f),
                Some(scheme.unwrap_or(Scheme::PerTensor)),
            ),
        };
        let config = GemmConfig {
            shape,
            inputs,
            scheme,
            bias,
            data,
            outliers,
            path,
            cublaslt,
            op,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let GemmShape { m, n, k, .. } = self.shape;
        for (dim, v) in [("M", m), ("N", n), ("K", k)] {
            ensure!(
                v <= i32::MAX as usize,
                "{dim} = {v} exceeds the kernels' 32-bit sizes"
            );
        }
        ensure!(
            m.checked_mul(n).is_some_and(|e| e <= 1 << 34)
                && m.checked_mul(k).is_some_and(|e| e <= 1 << 34)
                && n.checked_mul(k).is_some_and(|e| e <= 1 << 34),
            "{}: an operand over 2^34 elements does not fit a GPU",
            self.shape.name
        );
        if let Some(count) = self.outliers.count {
            ensure!(
                count <= k,
                "`outliers={count}` channels: X has only K = {k} columns"
            );
        }
        if let Op::Quantize(role) = self.op {
            ensure!(
                matches!(self.inputs, Inputs::Quantized(_))
                    || (role == Operand::Weight && matches!(self.inputs, Inputs::WeightOnly(_))),
                "`op=quantize-{}` needs a quantized `fmt` for that operand",
                if role == Operand::Activation {
                    "x"
                } else {
                    "w"
                }
            );
        }
        Ok(())
    }

    /// The problem as the kernels see it.
    pub fn problem(&self) -> Problem {
        Problem {
            m: self.shape.m,
            n: self.shape.n,
            k: self.shape.k,
            inputs: self.inputs,
            scheme: self.scheme,
            bias: self.bias,
        }
    }

    /// `bf16`, `e4m3/block128`, `we4m3-abf16/channel`, ...
    pub fn dtype(&self) -> String {
        match self.scheme {
            None => self.inputs.to_string(),
            Some(s) => format!("{}/{s}", self.inputs),
        }
    }

    pub fn name(&self) -> String {
        let extras = [
            (self.bias, "+bias".to_string()),
            (
                self.data != DataKind::Gaussian,
                format!("+{}", self.data.label(&self.outliers)),
            ),
            (
                self.path != PathChoice::Auto,
                format!(
                    "+{}",
                    match &self.path {
                        PathChoice::All => "all",
                        PathChoice::Named(n) => n,
                        PathChoice::Auto => "",
                    }
                ),
            ),
        ];
        let extras: String = extras
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, s)| s)
            .collect();
        match self.op {
            Op::Gemm => format!("{}/{}{extras}", self.shape.name, self.dtype()),
            Op::Quantize(role) => format!(
                "quantize-{}/{}/{}",
                if role == Operand::Activation {
                    "x"
                } else {
                    "w"
                },
                self.shape.name,
                self.dtype()
            ),
        }
    }

    /// `(rows, cols)` of the quantized operand of an `op=quantize-*` case.
    pub fn quantized_operand(&self, role: Operand) -> (usize, usize) {
        match role {
            Operand::Activation => (self.shape.m, self.shape.k),
            Operand::Weight => (self.shape.n, self.shape.k),
        }
    }

    /// Bytes of one operand's scales (0 when it has none).
    pub fn scale_bytes(&self, role: Operand) -> u64 {
        let (rows, cols) = self.quantized_operand(role);
        let quantized = matches!(
            (self.inputs, role),
            (Inputs::Quantized(_), _) | (Inputs::WeightOnly(_), Operand::Weight)
        );
        match (quantized, self.scheme) {
            (true, Some(s)) => {
                let (down, across) = scales_shape(s, role, rows, cols);
                (down * across * 4) as u64
            }
            _ => 0,
        }
    }

    /// Minimum bytes and operations: each input (with its scales) read once, Y written once.
    /// FLOPs are `2·M·N·K` in the precision of the tensor-core instruction the inputs need.
    pub fn workload(&self) -> Workload {
        let GemmShape { m, n, k, .. } = self.shape;
        let (xb, wb) = self.inputs.element_bytes();
        match self.op {
            Op::Gemm => {
                let bytes = (m * k * xb + n * k * wb + m * n * 2) as u64
                    + self.scale_bytes(Operand::Activation)
                    + self.scale_bytes(Operand::Weight)
                    + if self.bias { 2 * n as u64 } else { 0 };
                Workload {
                    bytes,
                    flops: 2 * (m as u64) * (n as u64) * (k as u64),
                    precision: Some(self.precision()),
                    ..Workload::bytes(0)
                }
            }
            Op::Quantize(role) => {
                let (rows, cols) = self.quantized_operand(role);
                Workload::bytes((rows * cols * 3) as u64 + self.scale_bytes(role))
            }
        }
    }

    /// The tensor-core arithmetic of the GEMM: weight-only inputs are widened to BF16.
    pub fn precision(&self) -> Precision {
        match self.inputs {
            Inputs::Bf16 | Inputs::WeightOnly(_) => Precision::Bf16,
            Inputs::Quantized(QuantFormat::Int8) => Precision::Int8,
            Inputs::Quantized(_) => Precision::Fp8,
        }
    }

    /// Bytes of W (what a small-M GEMM must stream), for the bandwidth goal.
    pub fn weight_bytes(&self) -> u64 {
        (self.shape.n * self.shape.k * self.inputs.element_bytes().1) as u64
            + self.scale_bytes(Operand::Weight)
    }

    pub fn params(&self) -> String {
        let GemmShape { m, n, k, .. } = self.shape;
        format!(
            "m={m} n={n} k={k} inputs={} scale={} bias={} data={}{} path={} op={}",
            self.inputs,
            self.scheme.map_or("none".into(), |s| s.to_string()),
            self.bias,
            self.data.name(),
            self.outliers.params(),
            match &self.path {
                PathChoice::Auto => "auto",
                PathChoice::All => "all",
                PathChoice::Named(n) => n,
            },
            match self.op {
                Op::Gemm => "gemm",
                Op::Quantize(Operand::Activation) => "quantize-x",
                Op::Quantize(Operand::Weight) => "quantize-w",
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_names() {
        let c = GemmConfig::parse("shape=8192x8192x8192").unwrap();
        assert_eq!(c.inputs, Inputs::Quantized(QuantFormat::E4m3));
        assert_eq!(c.scheme, Some(Scheme::PerTensor));
        assert_eq!(c.name(), "8192x8192x8192/e4m3/per-tensor");
        assert_eq!(c.path, PathChoice::Auto);
        assert!(c.cublaslt && !c.bias);

        let c = GemmConfig::parse("shape=llama3-70b-qkv,m=16,fmt=e4m3,act=bf16").unwrap();
        assert_eq!((c.shape.m, c.shape.n, c.shape.k), (16, 10240, 8192));
        assert_eq!(c.inputs, Inputs::WeightOnly(QuantFormat::E4m3));
        assert_eq!(c.scheme, Some(Scheme::PerTokenPerChannel));
        assert!(c.name().starts_with("llama3-70b-qkv@16/"), "{}", c.name());

        let c = GemmConfig::parse("shape=7x200x80,fmt=bf16,bias=1,path=all").unwrap();
        assert_eq!(c.name(), "7x200x80/bf16+bias+all");
        assert_eq!(c.scheme, None);
    }

    #[test]
    fn outlier_patterns_are_case_keys() {
        let c = GemmConfig::parse("shape=16x64x256,data=outliers,outlier_scale=200,outliers=1")
            .unwrap();
        assert_eq!(
            c.outliers,
            OutlierPattern {
                count: Some(1),
                scale: Some(200.0)
            }
        );
        assert_eq!(c.name(), "16x64x256/e4m3/per-tensor+outliers-1ch-x200");
        assert!(
            c.params()
                .contains("data=outliers outliers=1 outlier_scale=200 path="),
            "{}",
            c.params()
        );
        // The generator follows the pattern: one column at exactly 200 x N(0, 1).
        let x = c.data.activations(16, 256, 5, &c.outliers);
        let column_rms = |j: usize| {
            ((0..16)
                .map(|r| f64::from(x[r * 256 + j]).powi(2))
                .sum::<f64>()
                / 16.0)
                .sqrt()
        };
        let big: Vec<usize> = (0..256).filter(|&j| column_rms(j) > 20.0).collect();
        assert_eq!(big.len(), 1, "one outlier channel");
        let (j, f) = crate::gemm::accuracy::outlier_channels(256, 5, &c.outliers)[0];
        assert_eq!((big[0], f), (j, 200.0));
        // Only the scale: the default count (1% of K = 3 of 256), each at 12.5.
        let c = GemmConfig::parse("shape=16x64x256,data=outliers,outlier_scale=12.5").unwrap();
        assert_eq!(c.name(), "16x64x256/e4m3/per-tensor+outliers-x12.5");
        let channels = crate::gemm::accuracy::outlier_channels(256, 5, &c.outliers);
        assert!(channels.len() == 3 && channels.iter().all(|&(_, f)| f == 12.5));

        let err = |spec: &str| format!("{:#}", GemmConfig::parse(spec).unwrap_err());
        assert!(err("shape=8x8x16,outliers=1").contains("give data=outliers"));
        assert!(err("shape=8x8x16,data=outliers,outliers=0").contains("at least 1"));
        assert!(err("shape=8x8x16,data=outliers,outliers=17").contains("K = 16"));
        for scale in ["0", "-3", "nan", "inf", "1e7"] {
            let e = err(&format!("shape=8x8x16,data=outliers,outlier_scale={scale}"));
            assert!(e.contains("outlier scale"), "{scale}: {e}");
        }
    }

    #[test]
    fn workload_counts_the_minimum() {
        let c = GemmConfig::parse("shape=64x128x256,fmt=int8,scale=token").unwrap();
        let w = c.workload();
        assert_eq!(w.flops, 2 * 64 * 128 * 256);
        // X and W one byte each, Y bf16, one f32 scale per token and per channel.
        assert_eq!(
            w.bytes,
            (64 * 256 + 128 * 256 + 64 * 128 * 2 + (64 + 128) * 4) as u64
        );
        assert_eq!(w.precision, Some(Precision::Int8));

        let c =
            GemmConfig::parse("shape=4x256x384,fmt=e4m3,scale=block128,act=bf16,bias=1").unwrap();
        // X bf16 without scales; W in 2 x 3 blocks of 128 x 128.
        let expected = 4 * 384 * 2 + 256 * 384 + 4 * 256 * 2 + 6 * 4 + 256 * 2;
        assert_eq!(c.workload().bytes, expected as u64);
        assert_eq!(c.workload().precision, Some(Precision::Bf16));
        assert_eq!(c.weight_bytes(), (256 * 384 + 24) as u64);

        let q = GemmConfig::parse("shape=100x1x300,fmt=e5m2,scale=block128,op=quantize-x").unwrap();
        // Read bf16, write codes, 100 x 3 scales.
        assert_eq!(q.workload().bytes, (100 * 300 * 3 + 300 * 4) as u64);
        assert_eq!(q.workload().flops, 0);
    }

    #[test]
    fn bad_cases_say_why() {
        let err = |spec: &str| format!("{:#}", GemmConfig::parse(spec).unwrap_err());
        assert!(err("fmt=e4m3").contains("needs `shape="));
        assert!(err("shape=1x2").contains("unknown shape"));
        assert!(err("shape=8x8x8,fmt=bf16,scale=token").contains("needs a quantized `fmt`"));
        assert!(err("shape=8x8x8,fmt=bf16,act=bf16").contains("weight-only"));
        assert!(err("shape=8x8x8,m=4").contains("applies to a named shape"));
        assert!(err("shape=8x8x8,fmt=fp4").contains("fp4"));
        assert!(err("shape=8x8x8,colour=red").contains("unknown key `colour`"));
        assert!(err("shape=8x8x8,path=magic").contains("magic"));
        assert!(err("shape=8x8x8,fmt=bf16,op=quantize-x").contains("quantized `fmt`"));
        assert!(err("shape=8x8x3000000000").contains("32-bit"));
        assert!(err("shape=8x8x8,bias=maybe").contains("expected 1 or 0"));
    }
}
