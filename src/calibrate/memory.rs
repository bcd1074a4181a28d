//! Memory ceilings: DRAM read/write/copy with the stream suite's kernels beside the driver's
//! cuMemcpyDtoD / cuMemsetD32, and L2 (a hot read of a quarter of it).

use anyhow::Result;

use super::{rate, skipped};
use crate::measure::{Harness, Mode};
use crate::roofline::{CeilingKind, MeasuredCeiling};
use crate::stream::{StreamCase, StreamOp};
use crate::suite::{Case, Provider};

/// The stream suite's kernels (best of the 4- and 16-byte variants, each verified) and the
/// driver's equivalent, on one size and mode.
pub(super) fn stream_ceilings(
    harness: &mut Harness<'_>,
    op: StreamOp,
    bytes: u64,
    mode: Mode,
    kind: CeilingKind,
) -> Result<Vec<MeasuredCeiling>> {
    let gpu = harness.gpu();
    let prefix = if kind == CeilingKind::L2 { "l2" } else { "hbm" };
    let case = StreamCase::new(op, bytes)?;
    let name = format!("{prefix}_{}", op.name());
    if let Err(e) = gpu.ensure_free(&case.name(), case.device_bytes()) {
        return Ok(vec![skipped(&name, kind, "roofbench", e.to_string())]);
    }
    let mut prepared = case.prepare(gpu)?;
    let work = case.workload().bytes as f64;
    let mut ours: Option<MeasuredCeiling> = None;
    let mut found = Vec::new();
    for (i, v) in prepared.variants().to_vec().iter().enumerate() {
        if v.unavailable.is_some() {
            continue;
        }
        let verified = prepared.verify(gpu, i)?.passed;
        let timing = harness.measure(mode, &mut || prepared.launch(gpu, i))?;
        let method = format!("{} {} {}", v.kernel, case.name(), mode.as_str());
        match v.provider {
            Provider::Roofbench => {
                let c = rate(&name, kind, "roofbench", method, work, &timing, verified);
                if ours
                    .as_ref()
                    .is_none_or(|best| c.usable() && c.value > best.value)
                {
                    ours = Some(c);
                }
            }
            Provider::Driver => {
                let driver_name = if op == StreamOp::Copy {
                    "memcpy_dtod"
                } else {
                    "memset_d32"
                };
                found.push(rate(
                    driver_name,
                    kind,
                    "driver",
                    method,
                    work,
                    &timing,
                    verified,
                ));
            }
            // The stream suite has no library variants.
            Provider::CublasLt => {}
        }
    }
    found.insert(
        0,
        ours.unwrap_or_else(|| skipped(&name, kind, "roofbench", "no stream kernel ran".into())),
    );
    Ok(found)
}
