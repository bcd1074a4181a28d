//! Host-side ceilings: launch overhead (plain and graph) and PCIe copies both ways.

use anyhow::Result;

use super::{rate, skipped};
use crate::gpu::{kernels, GpuResult};
use crate::measure::{Harness, Mode};
use crate::roofline::{CeilingKind, MeasuredCeiling};

/// Launch overhead: µs per launch of an empty kernel, back to back, plain and from a graph.
pub(super) fn launch_ceilings(harness: &mut Harness<'_>) -> Vec<MeasuredCeiling> {
    let gpu = harness.gpu();
    let mut found = Vec::new();
    for (name, mode) in [("launch", Mode::Hot), ("launch_graph", Mode::Graph)] {
        let result = gpu
            .kernel(kernels::CALIB_EMPTY)
            .map_err(anyhow::Error::from)
            .and_then(|k| {
                let mut launch = || {
                    // SAFETY: calib_empty takes no arguments.
                    unsafe { gpu.launch(&k).run(1, 32, 0) }
                };
                Ok(harness.measure(mode, &mut launch)?)
            });
        found.push(match result {
            Ok(t) => MeasuredCeiling {
                name: name.into(),
                kind: CeilingKind::Launch,
                value: t.summary.median,
                unit: "µs".into(),
                provider: "roofbench".into(),
                method: format!(
                    "calib_empty <<<1, 32>>>, {} back-to-back per sample, {}",
                    t.launches_per_sample,
                    mode.as_str()
                ),
                verified: true,
                rel_ci: t.summary.rel_ci,
                skipped: None,
            },
            Err(e) => skipped(name, CeilingKind::Launch, "roofbench", e.to_string()),
        });
    }
    found
}

/// Host <-> device copies of `bytes`, pinned and pageable, each direction; verified by a round
/// trip of random data.
pub(super) fn pcie_ceilings(harness: &mut Harness<'_>, bytes: usize) -> Vec<MeasuredCeiling> {
    let names = [
        "pcie_h2d_pinned",
        "pcie_d2h_pinned",
        "pcie_h2d_pageable",
        "pcie_d2h_pageable",
    ];
    match measure_pcie(harness, bytes) {
        Ok(found) => found,
        Err(e) => names
            .iter()
            .map(|n| skipped(n, CeilingKind::Pcie, "driver", e.to_string()))
            .collect(),
    }
}

fn measure_pcie(harness: &mut Harness<'_>, bytes: usize) -> Result<Vec<MeasuredCeiling>> {
    let gpu = harness.gpu();
    let words = bytes / 4;
    let data = crate::stream::reference::random_words(rand::random(), words);
    let mut pinned = gpu.alloc_pinned::<u32>(words)?;
    pinned.as_mut_slice()?.copy_from_slice(&data);
    let mut device = gpu.alloc::<u32>(words)?;
    let mut pageable = vec![0u32; words];

    // Round trip first: pinned -> device -> pageable must give the data back.
    gpu.copy_from_pinned(&pinned, &mut device)?;
    gpu.copy_to_pageable(&device, &mut pageable)?;
    let verified = pageable == data;

    let work = bytes as f64;
    let mut found = Vec::new();
    let mut time = |name: &str, launch: &mut dyn FnMut() -> GpuResult<()>| -> Result<()> {
        let timing = harness.measure(Mode::Hot, launch)?;
        found.push(rate(
            name,
            CeilingKind::Pcie,
            "driver",
            format!("{} MiB", bytes >> 20),
            work,
            &timing,
            verified,
        ));
        Ok(())
    };
    time("pcie_h2d_pinned", &mut || {
        gpu.copy_from_pinned(&pinned, &mut device)
    })?;
    let mut pinned_out = gpu.alloc_pinned::<u32>(words)?;
    time("pcie_d2h_pinned", &mut || {
        gpu.copy_to_pinned(&device, &mut pinned_out)
    })?;
    time("pcie_h2d_pageable", &mut || gpu.write(&mut device, &data))?;
    time("pcie_d2h_pageable", &mut || {
        gpu.copy_to_pageable(&device, &mut pageable)
    })?;
    Ok(found)
}
