//! Ceilings measured on the machine itself by `roofbench calibrate`, stored per GPU in
//! `results/<gpu-slug>/ceilings.json` and used by later runs on that GPU.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::precision::Precision;

/// What a measured ceiling bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CeilingKind {
    /// DRAM bandwidth, GB/s.
    Dram,
    /// L2 bandwidth, GB/s.
    L2,
    /// Shared-memory bandwidth (whole GPU), GB/s.
    SharedMemory,
    /// Host <-> device bandwidth, GB/s.
    Pcie,
    /// Math throughput in a precision, TFLOPS / TOPS.
    Compute(Precision),
    /// Time per kernel launch, µs.
    Launch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasuredCeiling {
    /// e.g. `hbm_copy`, `wgmma_bf16`, `cublaslt_fp8`.
    pub name: String,
    pub kind: CeilingKind,
    pub value: f64,
    pub unit: String,
    /// `roofbench` (calibration kernel) or a vendor (`cublaslt`, `driver`).
    pub provider: String,
    /// What was run: kernel, size, mode.
    pub method: String,
    /// The calibration produced the expected result (the work was really done).
    pub verified: bool,
    pub rel_ci: f64,
    /// Why a ceiling could not be measured (then `value` is 0 and it is not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl MeasuredCeiling {
    pub fn usable(&self) -> bool {
        self.verified && self.skipped.is_none() && self.value > 0.0
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasuredCeilings {
    pub gpu: String,
    pub measured_at: String,
    pub commit: String,
    pub command: String,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub entries: Vec<MeasuredCeiling>,
}

impl MeasuredCeilings {
    pub fn path(results_dir: &Path, gpu_slug: &str) -> PathBuf {
        results_dir.join(gpu_slug).join("ceilings.json")
    }

    /// The stored ceilings of a GPU, if it was calibrated.
    pub fn load(results_dir: &Path, gpu_slug: &str) -> Result<Option<MeasuredCeilings>> {
        let path = Self::path(results_dir, gpu_slug);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let parsed = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a ceilings file", path.display()))?;
        Ok(Some(parsed))
    }

    pub fn save(&self, results_dir: &Path, gpu_slug: &str) -> Result<PathBuf> {
        let path = Self::path(results_dir, gpu_slug);
        std::fs::create_dir_all(path.parent().unwrap_or(results_dir))?;
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// The best usable value of a kind (the highest bandwidth or throughput; the lowest latency),
    /// and the entry it comes from.
    pub fn best(&self, kind: CeilingKind) -> Option<&MeasuredCeiling> {
        let usable = self.entries.iter().filter(|e| e.usable() && e.kind == kind);
        if kind == CeilingKind::Launch {
            usable.min_by(|a, b| a.value.total_cmp(&b.value))
        } else {
            usable.max_by(|a, b| a.value.total_cmp(&b.value))
        }
    }
}

/// Test fixtures: a ceiling and a ceilings file without the run metadata.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn entry(name: &str, kind: CeilingKind, value: f64, verified: bool) -> MeasuredCeiling {
        MeasuredCeiling {
            name: name.into(),
            kind,
            value,
            unit: String::new(),
            provider: "roofbench".into(),
            method: String::new(),
            verified,
            rel_ci: 0.005,
            skipped: None,
        }
    }

    pub fn ceilings(entries: Vec<MeasuredCeiling>) -> MeasuredCeilings {
        MeasuredCeilings {
            gpu: "H100".into(),
            measured_at: String::new(),
            commit: String::new(),
            command: String::new(),
            sm_clock_mhz: None,
            mem_clock_mhz: None,
            entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{ceilings, entry};
    use super::*;

    #[test]
    fn best_uses_only_verified_entries() {
        let c = ceilings(vec![
            entry("hbm_read", CeilingKind::Dram, 3010.0, true),
            entry("hbm_copy", CeilingKind::Dram, 2950.0, true),
            entry("bogus", CeilingKind::Dram, 9999.0, false),
            entry("launch", CeilingKind::Launch, 2.1, true),
            entry("launch_graph", CeilingKind::Launch, 1.2, true),
        ]);
        assert_eq!(c.best(CeilingKind::Dram).unwrap().name, "hbm_read");
        assert_eq!(c.best(CeilingKind::Launch).unwrap().value, 1.2);
        assert!(c.best(CeilingKind::L2).is_none());

        let dir = tempfile::tempdir().unwrap();
        c.save(dir.path(), "h100").unwrap();
        let back = MeasuredCeilings::load(dir.path(), "h100").unwrap().unwrap();
        assert_eq!(back.entries, c.entries);
        assert!(MeasuredCeilings::load(dir.path(), "a100")
            .unwrap()
            .is_none());
    }
}
