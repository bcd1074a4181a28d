//! The GPU spec table: public datasheet figures for GPUs you may run on or may buy, each value
//! with the document it comes from (`gpus.toml`, embedded). Users add or override GPUs with a file
//! of the same format (`ROOFBENCH_GPUS=path` or `--gpus path`; see `examples/my-gpus.toml`).
//!
//! A running GPU is matched to its entry by driver name, SM count and memory size; a GPU with no
//! entry gets a *derived* spec from what the driver reveals (SMs x clock x per-SM tensor
//! throughput of its architecture, bus width x memory clock).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::precision::Precision;
use crate::gpu::DeviceInfo;

/// The embedded table.
pub const EMBEDDED_TOML: &str = include_str!("gpus.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub title: String,
    pub url: String,
}

/// A value and the document it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sourced {
    pub value: f64,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Sourced {
    fn derived(value: f64, how: &str) -> Sourced {
        Sourced {
            value,
            source: "derived".into(),
            note: Some(how.into()),
        }
    }
}

/// Where an entry came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The embedded, sourced table.
    #[default]
    Spec,
    /// A user's file.
    User,
    /// Computed from driver facts for a GPU with no entry.
    Derived,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSpec {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `cuDeviceGetName` strings this entry matches.
    #[serde(default)]
    pub driver_names: Vec<String>,
    pub architecture: String,
    pub compute_capability: [u32; 2],
    pub sms: Sourced,
    pub boost_clock_mhz: Sourced,
    pub memory_gb: Sourced,
    #[serde(default)]
    pub memory_type: Option<String>,
    pub memory_bandwidth_gbps: Sourced,
    pub l2_mb: Sourced,
    #[serde(default)]
    pub tdp_w: Option<Sourced>,
    #[serde(default)]
    pub pcie_gbps: Option<Sourced>,
    #[serde(default)]
    pub nvlink_gbps: Option<Sourced>,
    /// Dense peaks (sparse figures are 2x and never used), TFLOPS / TOPS.
    pub dense_tflops: BTreeMap<Precision, Sourced>,
    #[serde(default)]
    pub origin: Origin,
}

impl GpuSpec {
    pub fn peak_tflops(&self, p: Precision) -> Option<f64> {
        self.dense_tflops.get(&p).map(|s| s.value)
    }

    /// Whether `name` (case-insensitive, spaces or dashes) names this GPU.
    pub fn is_named(&self, name: &str) -> bool {
        let norm = |s: &str| s.to_lowercase().replace([' ', '_'], "-");
        let wanted = norm(name);
        std::iter::once(&self.name)
            .chain(&self.aliases)
            .chain(&self.driver_names)
            .any(|n| norm(n) == wanted)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(default)]
    pub sources: BTreeMap<String, Source>,
    #[serde(default, rename = "gpu")]
    pub gpus: Vec<GpuSpec>,
}

impl Catalog {
    /// The embedded table (its validity is a unit test).
    pub fn embedded() -> Catalog {
        Catalog::parse(EMBEDDED_TOML, Origin::Spec)
            .expect("the embedded gpus.toml is valid (see tests)")
    }

    /// The embedded table plus the user's file from `ROOFBENCH_GPUS`, if set.
    pub fn load(user_file: Option<&Path>) -> Result<Catalog> {
        let mut catalog = Catalog::embedded();
        let from_env = std::env::var_os("ROOFBENCH_GPUS").map(std::path::PathBuf::from);
        if let Some(path) = user_file.map(Path::to_path_buf).or(from_env) {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read GPU file {}", path.display()))?;
            let user = Catalog::parse(&text, Origin::User)
                .with_context(|| format!("in GPU file {}", path.display()))?;
            catalog.merge(user);
        }
        Ok(catalog)
    }

    pub fn parse(text: &str, origin: Origin) -> Result<Catalog> {
        let mut catalog: Catalog = toml::from_str(text)?;
        for gpu in &mut catalog.gpus {
            gpu.origin = origin;
        }
        catalog.validate()?;
        Ok(catalog)
    }

    /// Every value names a known source and is positive; names are unique.
    pub fn validate(&self) -> Result<()> {
        for (i, gpu) in self.gpus.iter().enumerate() {
            if self.gpus[..i]
                .iter()
                .any(|g| g.name.eq_ignore_ascii_case(&gpu.name))
            {
                bail!("GPU `{}` is listed twice", gpu.name);
            }
            let mut values: Vec<(&str, &Sourced)> = vec![
                ("sms", &gpu.sms),
                ("boost_clock_mhz", &gpu.boost_clock_mhz),
                ("memory_gb", &gpu.memory_gb),
                ("memory_bandwidth_gbps", &gpu.memory_bandwidth_gbps),
                ("l2_mb", &gpu.l2_mb),
            ];
            for (field, v) in [
                ("tdp_w", &gpu.tdp_w),
                ("pcie_gbps", &gpu.pcie_gbps),
                ("nvlink_gbps", &gpu.nvlink_gbps),
            ] {
                if let Some(v) = v {
                    values.push((field, v));
                }
            }
            values.extend(gpu.dense_tflops.iter().map(|(p, v)| (p.name(), v)));
            for (field, v) in values {
                if !(v.value > 0.0 && v.value.is_finite()) {
                    bail!(
                        "{}: {field} = {} is not a positive number",
                        gpu.name,
                        v.value
                    );
                }
                if v.source != "derived" && !self.sources.contains_key(&v.source) {
                    bail!(
                        "{}: {field} cites source `{}`, which is not under [sources]",
                        gpu.name,
                        v.source
                    );
                }
            }
        }
        Ok(())
    }

    /// Adds `other`'s sources and GPUs; a GPU with an existing name replaces that entry.
    pub fn merge(&mut self, other: Catalog) {
        self.sources.extend(other.sources);
        for gpu in other.gpus {
            match self
                .gpus
                .iter_mut()
                .find(|g| g.name.eq_ignore_ascii_case(&gpu.name))
            {
                Some(existing) => *existing = gpu,
                None => self.gpus.push(gpu),
            }
        }
    }

    pub fn find(&self, name: &str) -> Option<&GpuSpec> {
        self.gpus.iter().find(|g| g.is_named(name))
    }

    /// `find`, or an error listing the known names.
    pub fn get(&self, name: &str) -> Result<&GpuSpec> {
        self.find(name).with_context(|| {
            let names: Vec<&str> = self.gpus.iter().map(|g| g.name.as_str()).collect();
            format!("unknown GPU `{name}`; known: {}", names.join(", "))
        })
    }

    /// The entry for a running device: its driver name with the same SM count and memory size
    /// (within 10%), else any entry with that SM count, memory and compute capability; else a
    /// derived spec.
    pub fn match_device(&self, info: &DeviceInfo) -> GpuSpec {
        let memory_gb = info.memory_bytes as f64 / 1e9;
        let fits = |g: &&GpuSpec| {
            g.sms.value as u32 == info.sms && (memory_gb / g.memory_gb.value - 1.0).abs() < 0.1
        };
        let cc = [info.compute_capability.0, info.compute_capability.1];
        self.gpus
            .iter()
            .filter(fits)
            .find(|g| g.driver_names.iter().any(|n| n == &info.name))
            .or_else(|| {
                self.gpus
                    .iter()
                    .filter(fits)
                    .find(|g| g.compute_capability == cc)
            })
            .cloned()
            .unwrap_or_else(|| derive_spec(info))
    }
}

/// Dense tensor-core FLOPs per SM per clock (FP32: CUDA-core FLOPs), by architecture. These are
/// the ratios behind the datasheet peaks: e.g. H100 SXM BF16 989.4 TFLOPS = 132 SMs x 4096 x
/// 1830 MHz; A100 312 = 108 x 2048 x 1410 MHz; A10/L40S/L4 BF16 = SMs x 1024 x boost clock.
pub fn flops_per_sm_per_clock(cc: (u32, u32)) -> Vec<(Precision, f64)> {
    use Precision::*;
    let table: &[(Precision, f64)] = match cc {
        (8, 0) => &[
            (Fp32, 128.0),
            (Tf32, 1024.0),
            (Fp16, 2048.0),
            (Bf16, 2048.0),
            (Int8, 4096.0),
        ],
        (8, 6) | (8, 7) => &[
            (Fp32, 256.0),
            (Tf32, 512.0),
            (Fp16, 1024.0),
            (Bf16, 1024.0),
            (Int8, 2048.0),
        ],
        (8, 9) => &[
            (Fp32, 256.0),
            (Tf32, 512.0),
            (Fp16, 1024.0),
            (Bf16, 1024.0),
            (Fp8, 2048.0),
            (Int8, 2048.0),
        ],
        (9, 0) => &[
            (Fp32, 256.0),
            (Tf32, 2048.0),
            (Fp16, 4096.0),
            (Bf16, 4096.0),
            (Fp8, 8192.0),
            (Int8, 8192.0),
        ],
        (10, 0) => &[
            (Fp32, 256.0),
            (Tf32, 4096.0),
            (Fp16, 8192.0),
            (Bf16, 8192.0),
            (Fp8, 16384.0),
            (Int8, 16384.0),
            (Fp4, 32768.0),
        ],
        _ => &[],
    };
    table.to_vec()
}

fn arch_name(cc: (u32, u32)) -> &'static str {
    match cc.0 {
        8 if cc.1 == 9 => "ada",
        8 => "ampere",
        9 => "hopper",
        10 | 12 => "blackwell",
        _ => "unknown",
    }
}

/// A spec from driver facts alone, for a GPU with no entry (marked `derived`).
pub fn derive_spec(info: &DeviceInfo) -> GpuSpec {
    let clock_ghz = f64::from(info.sm_clock_mhz) / 1e3;
    let sms = f64::from(info.sms);
    let dense_tflops = flops_per_sm_per_clock(info.compute_capability)
        .into_iter()
        .map(|(p, per_clock)| {
            let how = format!("{sms} SMs x {per_clock} FLOPs/clock/SM x {clock_ghz:.3} GHz");
            (p, Sourced::derived(sms * per_clock * clock_ghz / 1e3, &how))
        })
        .collect();
    GpuSpec {
        name: info.name.clone(),
        aliases: vec![],
        driver_names: vec![info.name.clone()],
        architecture: arch_name(info.compute_capability).into(),
        compute_capability: [info.compute_capability.0, info.compute_capability.1],
        sms: Sourced::derived(sms, "driver"),
        boost_clock_mhz: Sourced::derived(f64::from(info.sm_clock_mhz), "driver: max SM clock"),
        memory_gb: Sourced::derived(info.memory_bytes as f64 / 1e9, "driver"),
        memory_type: None,
        memory_bandwidth_gbps: Sourced::derived(
            info.dram_gbps(),
            "driver: bus width x memory clock x 2",
        ),
        l2_mb: Sourced::derived(info.l2_bytes as f64 / 1e6, "driver"),
        tdp_w: None,
        pcie_gbps: None,
        nvlink_gbps: None,
        dense_tflops,
        origin: Origin::Derived,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h100_info() -> DeviceInfo {
        crate::gpu::h100_example()
    }

    #[test]
    fn embedded_table_is_valid_and_covers_the_required_gpus() {
        let c = Catalog::embedded();
        for name in [
            "A100 SXM4 40GB",
            "A100 SXM4 80GB",
            "A100 PCIe 40GB",
            "A100 PCIe 80GB",
            "H100 SXM",
            "H100 PCIe",
            "H100 NVL",
            "H200",
            "GH200",
            "B200",
            "L40S",
            "L4",
            "A10",
            "RTX 4090",
            "RTX 6000 Ada",
        ] {
            assert!(c.find(name).is_some(), "{name} is missing from gpus.toml");
        }
        for g in &c.gpus {
            assert!(
                g.peak_tflops(Precision::Bf16).is_some(),
                "{}: no bf16 peak",
                g.name
            );
            assert!(
                g.peak_tflops(Precision::Fp32).is_some(),
                "{}: no fp32 peak",
                g.name
            );
            let has_fp8 = g.peak_tflops(Precision::Fp8).is_some();
            let fp8_capable = g.compute_capability >= [8, 9];
            assert_eq!(
                has_fp8, fp8_capable,
                "{}: fp8 peak only from sm_89 on",
                g.name
            );
        }
    }

    #[test]
    fn dense_peaks_agree_with_sms_times_clock_times_rate() {
        // Sanity of the table against the per-SM rates: within 15% at the boost clock (datasheets
        // quote tensor peaks at a clock at or below max boost).
        let c = Catalog::embedded();
        for g in &c.gpus {
            let cc = (g.compute_capability[0], g.compute_capability[1]);
            for (p, per_clock) in flops_per_sm_per_clock(cc) {
                let Some(peak) = g.peak_tflops(p) else {
                    continue;
                };
                let at_boost = g.sms.value * per_clock * g.boost_clock_mhz.value * 1e6 / 1e12;
                let ratio = peak / at_boost;
                // GeForce parts run FP16/BF16 with FP32 accumulate at half rate.
                let ok = (0.85..=1.02).contains(&ratio)
                    || (g.name.contains("4090") && (0.42..=0.52).contains(&ratio));
                assert!(
                    ok,
                    "{} {p}: table {peak} vs {at_boost:.1} from SMs x clock x rate ({ratio:.2})",
                    g.name
                );
            }
        }
    }

    #[test]
    fn running_h100_matches_its_entry() {
        let spec = Catalog::embedded().match_device(&h100_info());
        assert_eq!(spec.name, "H100 SXM");
        assert_eq!(spec.origin, Origin::Spec);
    }

    #[test]
    fn unknown_gpu_gets_a_derived_spec() {
        let mut info = h100_info();
        info.name = "NVIDIA H100 (engineering sample)".into();
        info.sms = 144;
        let spec = Catalog::embedded().match_device(&info);
        assert_eq!(spec.origin, Origin::Derived);
        // 144 SMs x 4096 x 1.98 GHz = 1167.9 TFLOPS bf16; 5120 bits x 2619 MHz x 2 = 3352 GB/s.
        assert!((spec.peak_tflops(Precision::Bf16).unwrap() - 1167.85).abs() < 0.1);
        assert!((spec.memory_bandwidth_gbps.value - 3352.3).abs() < 0.1);
        assert_eq!(spec.dense_tflops[&Precision::Bf16].source, "derived");
    }

    #[test]
    fn user_file_adds_and_overrides() {
        let user = r#"
            [sources.mine]
            title = "our lab's measurement"
            url = "file://lab-notes"

            [[gpu]]
            name = "H100 SXM"
            architecture = "hopper"
            compute_capability = [9, 0]
            sms = { value = 132, source = "mine" }
            boost_clock_mhz = { value = 1755, source = "mine" }
            memory_gb = { value = 80, source = "mine" }
            memory_bandwidth_gbps = { value = 3000, source = "mine" }
            l2_mb = { value = 50, source = "mine" }
            [gpu.dense_tflops]
            fp32 = { value = 60, source = "mine" }
            bf16 = { value = 900, source = "mine" }
        "#;
        let mut c = Catalog::embedded();
        let before = c.gpus.len();
        c.merge(Catalog::parse(user, Origin::User).unwrap());
        assert_eq!(c.gpus.len(), before, "same name replaces");
        let h = c.get("h100-sxm").unwrap();
        assert_eq!(h.origin, Origin::User);
        assert_eq!(h.memory_bandwidth_gbps.value, 3000.0);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let missing_source = r#"
            [[gpu]]
            name = "X"
            architecture = "hopper"
            compute_capability = [9, 0]
            sms = { value = 1, source = "nowhere" }
            boost_clock_mhz = { value = 1, source = "nowhere" }
            memory_gb = { value = 1, source = "nowhere" }
            memory_bandwidth_gbps = { value = 1, source = "nowhere" }
            l2_mb = { value = 1, source = "nowhere" }
            dense_tflops = {}
        "#;
        let err = format!(
            "{:#}",
            Catalog::parse(missing_source, Origin::User).unwrap_err()
        );
        assert!(err.contains("source `nowhere`"), "{err}");
        assert!(Catalog::parse("[[gpu]]\nname = 3", Origin::User).is_err());
        assert!(Catalog::embedded()
            .get("Voodoo 5")
            .unwrap_err()
            .to_string()
            .contains("known: "));
    }
}
