//! The calibration table: each ceiling beside its spec figure.

use crate::roofline::{CeilingKind, MeasuredCeilings};

/// The calibration table: each ceiling, its spec counterpart and the ratio. Compute ceilings are
/// also compared with the spec peak scaled to the SM clock measured during calibration (the
/// datasheet peak assumes its own clock: SMs x FLOPs/clock/SM x clock).
pub fn ceilings_table(
    c: &MeasuredCeilings,
    spec: &crate::roofline::GpuSpec,
    device: &crate::gpu::DeviceInfo,
) -> comfy_table::Table {
    let mut t = crate::report::table([
        "ceiling",
        "provider",
        "value",
        "unit",
        "spec",
        "× spec",
        "× spec@clock",
        "±ci %",
        "verified",
        "method / why skipped",
    ]);
    let per_clock = crate::roofline::spec::flops_per_sm_per_clock(device.compute_capability);
    for e in &c.entries {
        let spec_value = match e.kind {
            CeilingKind::Dram => Some(spec.memory_bandwidth_gbps.value),
            CeilingKind::Pcie => spec.pcie_gbps.as_ref().map(|p| p.value / 2.0), // one direction
            CeilingKind::Compute(p) => spec.peak_tflops(p),
            _ => None,
        };
        let at_clock = match (e.kind, c.sm_clock_mhz) {
            (CeilingKind::Compute(p), Some(mhz)) => per_clock
                .iter()
                .find(|(q, _)| *q == p)
                .map(|(_, rate)| f64::from(device.sms) * rate * f64::from(mhz) * 1e6 / 1e12),
            _ => None,
        };
        let ratio = |s: Option<f64>| match (s, e.skipped.is_none()) {
            (Some(s), true) => format!("{:.3}", e.value / s),
            _ => "-".into(),
        };
        let value = if e.skipped.is_some() {
            "-".into()
        } else {
            format!("{:.1}", e.value)
        };
        t.add_row(vec![
            e.name.clone(),
            e.provider.clone(),
            value,
            e.unit.clone(),
            spec_value.map_or("-".into(), |s| format!("{s:.0}")),
            ratio(spec_value),
            ratio(at_clock),
            format!("{:.2}", e.rel_ci * 100.0),
            if e.skipped.is_some() {
                "skipped"
            } else if e.verified {
                "yes"
            } else {
                "NO"
            }
            .into(),
            e.skipped.clone().unwrap_or_else(|| e.method.clone()),
        ]);
    }
    t
}
