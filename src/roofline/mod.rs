//! Roofline ceilings: the limit that binds a problem, and how close a measurement came to it.
//!
//! This first version knows one ceiling, the DRAM bandwidth implied by the driver's bus width and
//! memory clock (`derived`). The spec table, measured ceilings (calibration kernels, cuBLASLt,
//! cudaMemcpy) and compute roofs build on the same [`Ceiling`] type.

use serde::Serialize;

use crate::gpu::DeviceInfo;
use crate::measure::Workload;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ceiling {
    /// Which limit, e.g. `dram_bw`.
    pub name: String,
    /// Where its value comes from: `derived`, `spec`, `measured`.
    pub source: String,
    /// GB/s for bandwidth ceilings, TFLOPS for compute ceilings.
    pub value: f64,
}

impl Ceiling {
    /// Achieved fraction of this ceiling, in percent.
    pub fn percent(&self, workload: &Workload, time_us: f64) -> f64 {
        let achieved = if self.name.ends_with("_bw") {
            workload.gbps(time_us)
        } else {
            workload.tflops(time_us)
        };
        100.0 * achieved / self.value
    }
}

/// The ceiling that binds `workload` on `device`, or why there is none yet. `l2_resident` marks a
/// hot measurement whose working set stays in L2: DRAM does not bind it.
pub fn binding_ceiling(
    device: &DeviceInfo,
    workload: &Workload,
    l2_resident: bool,
) -> Result<Ceiling, String> {
    if l2_resident {
        return Err("l2_resident: no L2 ceiling without calibration".into());
    }
    if workload.flops > 0 {
        return Err("compute roof not modelled yet".into());
    }
    Ok(Ceiling {
        name: "dram_bw".into(),
        source: "derived".into(),
        value: device.dram_gbps(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_of_bandwidth_ceiling() {
        let c = Ceiling {
            name: "dram_bw".into(),
            source: "derived".into(),
            value: 3000.0,
        };
        // 1.5 GB in 1 ms = 1500 GB/s = 50% of 3000.
        let w = Workload::bytes(1_500_000_000);
        assert!((c.percent(&w, 1000.0) - 50.0).abs() < 1e-9);
    }
}
