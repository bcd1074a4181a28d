//! Roofline models of GPUs: the sourced spec table, ceilings measured on the machine, and the
//! model that turns a problem's minimum bytes and FLOPs into the time no kernel can beat.

pub mod ceilings;
mod model;
mod precision;
pub mod spec;
mod workload;

pub use ceilings::{CeilingKind, MeasuredCeiling, MeasuredCeilings};
pub use model::{Bound, Limit, Roof, Term};
pub use precision::Precision;
pub use spec::{Catalog, GpuSpec};
pub use workload::{DataPath, Workload};

/// The roofs a run measures against: measured ceilings where calibrated (primary), and the spec
/// sheet (or derived) figures, reported side by side.
#[derive(Debug, Clone)]
pub struct Roofs {
    pub primary: Roof,
    pub spec: Roof,
    /// The measured device copy bandwidth (best of the copy kernel and cuMemcpyDtoD), GB/s.
    pub copy_gbps: Option<f64>,
}

impl Roofs {
    pub fn new(spec: &GpuSpec, measured: Option<&MeasuredCeilings>) -> Roofs {
        let spec_roof = Roof::from_spec(spec);
        let primary = measured.map_or_else(|| spec_roof.clone(), |m| spec_roof.with_measured(m));
        let copy_gbps = measured.and_then(|m| {
            m.entries
                .iter()
                .filter(|e| e.usable() && matches!(e.name.as_str(), "hbm_copy" | "memcpy_dtod"))
                .map(|e| e.value)
                .reduce(f64::max)
        });
        Roofs {
            primary,
            spec: spec_roof,
            copy_gbps,
        }
    }
}

/// Tolerance before a result "beats" a measured ceiling: the ceilings' own run-to-run noise.
pub const CEILING_TOLERANCE_PCT: f64 = 103.0;

/// A measured ceiling is an upper bound; a result above it means the ceiling is wrong (or the
/// clocks changed between calibration and run). The message says so, for the row's note.
pub fn beats_measured_ceiling(pct_of_ceiling: f64, ceiling_source: &str) -> Option<String> {
    (ceiling_source.starts_with("measured") && pct_of_ceiling > CEILING_TOLERANCE_PCT).then(|| {
        format!(
            "{pct_of_ceiling:.1}% of a measured ceiling ({ceiling_source}): the ceiling is not an upper bound, recalibrate"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beating_a_measured_ceiling_is_flagged() {
        assert!(
            beats_measured_ceiling(101.0, "measured:hbm_copy").is_none(),
            "within noise"
        );
        assert!(beats_measured_ceiling(110.0, "measured:hbm_copy")
            .unwrap()
            .contains("recalibrate"));
        assert!(
            beats_measured_ceiling(110.0, "spec").is_none(),
            "spec figures are not measured"
        );
    }
}
