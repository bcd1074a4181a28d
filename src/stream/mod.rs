//! The stream suite: how close simple kernels come to the memory system's limits.
//!
//! Operations on 32-bit elements: `read` (sum of all words), `write` (fill), `copy`, `triad`
//! (a = b + s*c, f32), each with 4-byte and 16-byte accesses, from L2-resident sizes (1 MiB) to
//! 4 GiB per array. The driver's `cuMemcpyDtoDAsync` and `cuMemsetD32Async` run beside them as
//! the vendor ceiling of the same run.

mod prepared;
pub mod reference;

use anyhow::{bail, Context, Result};

use crate::gpu::{DeviceInfo, Gpu};
use crate::measure::Mode;
use crate::roofline::Precision;
use crate::roofline::Workload;
use crate::suite::size::{format_bytes, parse_bytes};
use crate::suite::spec::{Absent, Grammar, Key, Value};
use crate::suite::{Case, Prepared, Suite};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOp {
    Read,
    Write,
    Copy,
    Triad,
}

impl StreamOp {
    pub const ALL: [StreamOp; 4] = [
        StreamOp::Read,
        StreamOp::Write,
        StreamOp::Copy,
        StreamOp::Triad,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StreamOp::Read => "read",
            StreamOp::Write => "write",
            StreamOp::Copy => "copy",
            StreamOp::Triad => "triad",
        }
    }

    /// Arrays read and written per element: read 1+0, write 0+1, copy 1+1, triad 2+1.
    pub fn arrays(self) -> (u64, u64) {
        match self {
            StreamOp::Read => (1, 0),
            StreamOp::Write => (0, 1),
            StreamOp::Copy => (1, 1),
            StreamOp::Triad => (2, 1),
        }
    }

    fn dtype(self) -> &'static str {
        if self == StreamOp::Triad {
            "f32"
        } else {
            "u32"
        }
    }

    /// Our kernels for this operation: 4-byte and 16-byte accesses (see kernels/stream/stream.cu).
    pub fn kernels(self) -> [String; 2] {
        let word = if self == StreamOp::Triad {
            "f32"
        } else {
            "u32"
        };
        [
            format!("stream_{}_{word}", self.name()),
            format!("stream_{}_{word}x4", self.name()),
        ]
    }

    /// The driver operation that does the same work, if any.
    pub fn driver_equivalent(self) -> Option<&'static str> {
        match self {
            StreamOp::Copy => Some("cuMemcpyDtoDAsync"),
            StreamOp::Write => Some("cuMemsetD32Async"),
            _ => None,
        }
    }

    fn parse(s: &str) -> Result<StreamOp> {
        StreamOp::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .with_context(|| format!("unknown stream operation `{s}` (read, write, copy, triad)"))
    }
}

/// Bytes per element (u32 / f32).
const ELEMENT_BYTES: u64 = 4;
/// The largest array a case may ask for: 1 TiB is past every GPU's memory (so a prediction still
/// says "does not fit"), and three of them keep every derived byte count far from overflowing.
pub const MAX_ARRAY_BYTES: u64 = 1 << 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCase {
    pub op: StreamOp,
    pub elements: usize,
}

impl StreamCase {
    pub fn new(op: StreamOp, bytes_per_array: u64) -> Result<StreamCase> {
        if bytes_per_array == 0 || bytes_per_array % ELEMENT_BYTES != 0 {
            bail!("stream arrays hold 4-byte elements: {bytes_per_array} bytes is not a positive multiple of 4");
        }
        if bytes_per_array > MAX_ARRAY_BYTES {
            bail!(
                "{} per array: at most {} (past any GPU's memory)",
                format_bytes(bytes_per_array),
                format_bytes(MAX_ARRAY_BYTES)
            );
        }
        Ok(StreamCase {
            op,
            elements: (bytes_per_array / ELEMENT_BYTES) as usize,
        })
    }

    pub fn bytes_per_array(&self) -> u64 {
        self.elements as u64 * ELEMENT_BYTES
    }
}

impl Case for StreamCase {
    fn name(&self) -> String {
        format!(
            "{}/{}",
            self.op.name(),
            format_bytes(self.bytes_per_array())
        )
    }

    fn dtype(&self) -> String {
        self.op.dtype().into()
    }

    fn params(&self) -> String {
        format!(
            "op={} elements={} bytes_per_array={}",
            self.op.name(),
            self.elements,
            self.bytes_per_array()
        )
    }

    fn workload(&self) -> Workload {
        let (reads, writes) = self.op.arrays();
        let bytes = (reads + writes) * self.bytes_per_array();
        match self.op {
            // One multiply and one add per element (fused, but two FLOPs by convention).
            StreamOp::Triad => Workload {
                bytes,
                flops: 2 * self.elements as u64,
                precision: Some(Precision::Fp32),
                path: Default::default(),
            },
            _ => Workload::bytes(bytes),
        }
    }

    fn device_bytes(&self) -> u64 {
        let (reads, writes) = self.op.arrays();
        (reads + writes) * self.bytes_per_array()
    }

    /// Cold always; hot too where the working set fits in L2, which then shows L2 bandwidth.
    fn default_modes(&self, device: &DeviceInfo) -> Vec<Mode> {
        if self.l2_resident(device) {
            vec![Mode::Cold, Mode::Hot]
        } else {
            vec![Mode::Cold]
        }
    }

    fn prepare(&self, gpu: &Gpu) -> Result<Box<dyn Prepared>> {
        Ok(Box::new(prepared::PreparedStream::prepare(gpu, self)?))
    }
}

pub struct StreamSuite;

const FULL_SIZES: [u64; 7] = [
    1 << 20,
    4 << 20,
    16 << 20,
    64 << 20,
    256 << 20,
    1 << 30,
    4 << 30,
];
const QUICK_SIZES: [u64; 3] = [1 << 20, 64 << 20, 1 << 30];

impl Suite for StreamSuite {
    fn name(&self) -> &'static str {
        "stream"
    }

    fn about(&self) -> &'static str {
        "read / write / copy / triad over 1 MiB..4 GiB, 4- and 16-byte accesses, vs the driver's memcpy/memset"
    }

    fn kernel_names(&self) -> Vec<String> {
        StreamOp::ALL.iter().flat_map(|op| op.kernels()).collect()
    }

    fn grammar(&self) -> Grammar {
        Grammar {
            keys: vec![
                Key::new(
                    "op",
                    Value::Names(|| StreamOp::ALL.iter().map(|o| o.name()).collect()),
                    Absent::Required,
                    "the operation",
                ),
                Key::new("size", Value::Size, Absent::Required, "bytes per array"),
            ],
            example: "op=triad,size=48MiB",
            shorthand: Some("OP:SIZE (copy:1GiB)"),
        }
    }

    fn default_cases(&self, quick: bool) -> Vec<Box<dyn Case>> {
        let sizes: &[u64] = if quick { &QUICK_SIZES } else { &FULL_SIZES };
        sizes
            .iter()
            .flat_map(|&bytes| {
                StreamOp::ALL.map(|op| StreamCase {
                    op,
                    elements: (bytes / ELEMENT_BYTES) as usize,
                })
            })
            .map(|c| Box::new(c) as Box<dyn Case>)
            .collect()
    }

    fn verify_cases(&self) -> Vec<Box<dyn Case>> {
        // 3 elements (less than one vector), 4097 and 1000003 (odd: a 1..3 element scalar tail).
        let odd = [12u64, 16_388, 4_000_012];
        let mut cases = self.default_cases(true);
        for bytes in odd {
            for op in StreamOp::ALL {
                cases.push(Box::new(StreamCase {
                    op,
                    elements: (bytes / ELEMENT_BYTES) as usize,
                }));
            }
        }
        cases
    }

    /// `op=OP,size=SIZE`, or the shorthand `OP:SIZE`.
    fn parse_case(&self, text: &str) -> Result<Box<dyn Case>> {
        let (op, size) = match text.split_once(':') {
            Some((op, size)) if !text.contains('=') => {
                (StreamOp::parse(op.trim())?, parse_bytes(size)?)
            }
            _ => {
                let grammar = self.grammar();
                let spec = grammar.parse(text)?;
                let (Some(op), Some(size)) = (spec.one_of("op")?, spec.size("size")?) else {
                    bail!("a stream case needs op= and size= (or OP:SIZE, e.g. copy:1GiB)");
                };
                (StreamOp::parse(op)?, size)
            }
        };
        let case = StreamCase::new(op, size).with_context(|| format!("stream case `{text}`"))?;
        Ok(Box::new(case))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_case_grammar_holds() {
        crate::suite::spec::testing::check_grammar(&StreamSuite);
    }

    #[test]
    fn specs_make_the_cases_they_made_before_the_grammar() {
        crate::suite::spec::testing::assert_same_cases(
            &StreamSuite,
            &[
                (
                    "copy:1GiB",
                    "copy/1GiB",
                    "op=copy elements=268435456 bytes_per_array=1073741824",
                ),
                (
                    "triad:48MiB",
                    "triad/48MiB",
                    "op=triad elements=12582912 bytes_per_array=50331648",
                ),
                (
                    "read:4000012",
                    "read/4000012B",
                    "op=read elements=1000003 bytes_per_array=4000012",
                ),
                (
                    " write : 64KiB ",
                    "write/64KiB",
                    "op=write elements=16384 bytes_per_array=65536",
                ),
                (
                    "copy:1.5GB",
                    "copy/1500000000B",
                    "op=copy elements=375000000 bytes_per_array=1500000000",
                ),
            ],
        );
        let long = StreamSuite.parse_case("op=copy,size=1GiB").unwrap();
        let short = StreamSuite.parse_case("copy:1GiB").unwrap();
        assert_eq!((long.name(), long.params()), (short.name(), short.params()));
    }

    #[test]
    fn minimum_bytes_count_each_array_once() {
        let gib = 1u64 << 30;
        let bytes = |op| StreamCase::new(op, gib).unwrap().workload().bytes;
        assert_eq!(bytes(StreamOp::Read), gib);
        assert_eq!(bytes(StreamOp::Write), gib);
        assert_eq!(bytes(StreamOp::Copy), 2 * gib);
        assert_eq!(bytes(StreamOp::Triad), 3 * gib);
    }

    #[test]
    fn user_cases_parse_and_bad_ones_explain() {
        let s = StreamSuite;
        let c = s.parse_case("triad:48MiB").unwrap();
        assert_eq!(c.name(), "triad/48MiB");
        assert_eq!(c.dtype(), "f32");
        assert_eq!(
            s.parse_case("read:4000012").unwrap().params(),
            "op=read elements=1000003 bytes_per_array=4000012"
        );
        let err = |spec: &str| format!("{:#}", s.parse_case(spec).err().unwrap());
        assert!(err("scale:1GiB").contains("unknown stream operation"));
        assert!(err("copy:1001").contains("multiple of 4"));
        assert!(err("copy").contains("not key=value"));
        assert!(err("op=copy").contains("needs op= and size="));
        assert!(err("op=copy,size=1GiB,size=2GiB").contains("given twice"));
        assert!(err("op=scale,size=1GiB").contains("one of read, write, copy, triad"));
        assert!(err("copy:big").contains("not a size"));
        // 2^63 bytes once wrapped to a 0-byte workload predicted at 0 µs.
        assert!(err("copy:9223372036854775808").contains("at most 1024GiB"));
        assert!(err("copy:99999999999999999999").contains("2^64"));
    }

    #[test]
    fn default_grid_spans_l2_to_4gib() {
        let cases = StreamSuite.default_cases(false);
        assert_eq!(cases.len(), FULL_SIZES.len() * 4);
        assert!(cases.iter().any(|c| c.name() == "copy/1MiB"));
        assert!(cases.iter().any(|c| c.name() == "triad/4GiB"));
        assert!(StreamSuite.default_cases(true).len() < cases.len());
    }

    #[test]
    fn small_cases_also_run_hot_to_show_l2() {
        let h100 = crate::gpu::h100_example();
        let small = StreamCase::new(StreamOp::Copy, 1 << 20).unwrap();
        let big = StreamCase::new(StreamOp::Copy, 1 << 30).unwrap();
        assert_eq!(small.default_modes(&h100), vec![Mode::Cold, Mode::Hot]);
        assert_eq!(big.default_modes(&h100), vec![Mode::Cold]);
        assert!(
            (h100.dram_gbps() - 3352.3).abs() < 1.0,
            "{}",
            h100.dram_gbps()
        );
    }
}
