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
    /// Values the table could not confirm from a primary document say so at the start of their
    /// note; every output that uses one must carry the flag.
    pub fn is_unconfirmed(&self) -> bool {
        self.note
            .as_deref()
            .is_some_and(|n| n.starts_with("unconfirmed"))
    }

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
    /// L2 in MiB: NVIDIA's "MB" for L2 is binary (H100's "50 MB" is 52,428,800 bytes, what the
    /// driver reports). `l2_mb` is the old spelling of the same field.
    #[serde(alias = "l2_mb")]
    pub l2_mib: Sourced,
    /// The SM clock the vendor's tensor peaks assume, where it is below `boost_clock_mhz`
    /// (Hopper, B200); absent, the tensor peaks are at the boost clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor_clock_mhz: Option<Sourced>,
    #[serde(default)]
    pub tdp_w: Option<Sourced>,
    #[serde(default)]
    pub pcie_gbps: Option<Sourced>,
    #[serde(default)]
    pub nvlink_gbps: Option<Sourced>,
    /// Dense peaks (sparse figures are 2x and never used), TFLOPS / TOPS.
    pub dense_tflops: BTreeMap<Precision, Sourced>,
    /// The latency floor; absent in a file, it is the architecture's (`[floor.<architecture>]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<Floor>,
    #[serde(default)]
    pub origin: Origin,
}

/// What no kernel can beat however little it moves: one dependent launch and one DRAM round
/// trip. A kernel in a stream starts after its predecessor ends and the launch pipeline delivers
/// it (`launch_us`: the back-to-back interval of empty kernels, what `roofbench calibrate`
/// measures as `launch` / `launch_graph`), and it cannot finish before its first load from DRAM
/// returns (`dram_latency_us`). Both are lower ends of what is published, so the floor stays a
/// bound; calibration replaces the launch term with the measured one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Floor {
    pub launch_us: Sourced,
    pub dram_latency_us: Sourced,
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
    /// Latency floors by architecture (`ampere`, `ada`, `hopper`, `blackwell`).
    #[serde(default, rename = "floor")]
    pub floors: BTreeMap<String, Floor>,
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
        catalog.resolve();
        catalog.validate()?;
        Ok(catalog)
    }

    /// Fills what an entry leaves to its architecture or to the rule for its kind of part: the
    /// architecture's floor, and an FP16-accumulate peak equal to the FP32-accumulate one (only
    /// GeForce parts halve FP32 accumulation, and their entries list `fp16_acc16`).
    fn resolve(&mut self) {
        for gpu in &mut self.gpus {
            if gpu.floor.is_none() {
                gpu.floor = self.floors.get(&gpu.architecture).cloned();
            }
            fill_fp16_acc16(gpu);
        }
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
                ("l2_mib", &gpu.l2_mib),
            ];
            if let Some(f) = &gpu.floor {
                values.push(("floor.launch_us", &f.launch_us));
                values.push(("floor.dram_latency_us", &f.dram_latency_us));
            }
            for (field, v) in [
                ("tdp_w", &gpu.tdp_w),
                ("pcie_gbps", &gpu.pcie_gbps),
                ("nvlink_gbps", &gpu.nvlink_gbps),
                ("tensor_clock_mhz", &gpu.tensor_clock_mhz),
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
        self.floors.extend(other.floors);
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
        self.resolve();
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
            .unwrap_or_else(|| {
                let mut derived = derive_spec(info);
                derived.floor = self.floors.get(&derived.architecture).cloned();
                derived
            })
    }
}

fn fill_fp16_acc16(gpu: &mut GpuSpec) {
    if gpu.dense_tflops.contains_key(&Precision::Fp16Acc16) {
        return;
    }
    if let Some(fp16) = gpu.dense_tflops.get(&Precision::Fp16).cloned() {
        let rule = "FP16 accumulate at the FP32-accumulate rate (only GeForce parts halve FP32 accumulation)";
        let note = match &fp16.note {
            Some(n) => format!("{n}; {rule}"),
            None => rule.to_string(),
        };
        gpu.dense_tflops.insert(
            Precision::Fp16Acc16,
            Sourced {
                note: Some(note),
                ..fp16
            },
        );
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
            (Fp16Acc16, 2048.0),
            (Bf16, 2048.0),
            (Int8, 4096.0),
        ],
        (8, 6) | (8, 7) => &[
            (Fp32, 256.0),
            (Tf32, 512.0),
            (Fp16, 1024.0),
            (Fp16Acc16, 1024.0),
            (Bf16, 1024.0),
            (Int8, 2048.0),
        ],
        (8, 9) => &[
            (Fp32, 256.0),
            (Tf32, 512.0),
            (Fp16, 1024.0),
            (Fp16Acc16, 1024.0),
            (Bf16, 1024.0),
            (Fp8, 2048.0),
            (Int8, 2048.0),
        ],
        (9, 0) => &[
            (Fp32, 256.0),
            (Tf32, 2048.0),
            (Fp16, 4096.0),
            (Fp16Acc16, 4096.0),
            (Bf16, 4096.0),
            (Fp8, 8192.0),
            (Int8, 8192.0),
        ],
        (10, 0) => &[
            (Fp32, 256.0),
            (Tf32, 4096.0),
            (Fp16, 8192.0),
            (Fp16Acc16, 8192.0),
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

const MIB: f64 = 1048576.0;

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
        l2_mib: Sourced::derived(info.l2_bytes as f64 / MIB, "driver"),
        tensor_clock_mhz: None,
        tdp_w: None,
        pcie_gbps: None,
        nvlink_gbps: None,
        dense_tflops,
        floor: None,
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
    fn dense_peaks_are_sms_times_rate_at_the_stated_clock() {
        // Each tensor peak is SMs x FLOPs/clock/SM x the clock the table says it is at
        // (tensor_clock_mhz, else boost); FP32 at the boost clock. Within 2.5%: datasheets round
        // and several parts' SM counts or clocks are themselves derived.
        let c = Catalog::embedded();
        for g in &c.gpus {
            let cc = (g.compute_capability[0], g.compute_capability[1]);
            let tensor_clock = g.tensor_clock_mhz.as_ref().unwrap_or(&g.boost_clock_mhz);
            assert!(tensor_clock.value <= g.boost_clock_mhz.value, "{}", g.name);
            for (p, per_clock) in flops_per_sm_per_clock(cc) {
                let Some(peak) = g.peak_tflops(p) else {
                    continue;
                };
                let mhz = if p == Precision::Fp32 {
                    g.boost_clock_mhz.value
                } else {
                    tensor_clock.value
                };
                let at_clock = g.sms.value * per_clock * mhz * 1e6 / 1e12;
                let ratio = peak / at_clock;
                // GeForce parts run FP32 accumulation (and TF32) at half rate.
                let geforce_half = g.name.contains("4090")
                    && matches!(
                        p,
                        Precision::Tf32 | Precision::Fp16 | Precision::Bf16 | Precision::Fp8
                    );
                let want = if geforce_half { 0.5 } else { 1.0 };
                assert!(
                    (ratio / want - 1.0).abs() < 0.025,
                    "{} {p}: table {peak} vs {at_clock:.1} from SMs x rate x {mhz} MHz ({ratio:.3})",
                    g.name
                );
            }
        }
    }

    #[test]
    fn peaks_at_max_boost_cannot_be_beaten_at_any_clock() {
        // Where no tensor clock below boost is stated, no kernel may beat a peak at any clock
        // the part runs: the peak is at least SMs x rate x max boost (L40S: 366.5, not the
        // datasheet's 362.05, which a kernel at 2520 MHz could beat).
        let c = Catalog::embedded();
        for g in c.gpus.iter().filter(|g| g.tensor_clock_mhz.is_none()) {
            let cc = (g.compute_capability[0], g.compute_capability[1]);
            for (p, per_clock) in flops_per_sm_per_clock(cc) {
                let Some(peak) = g.peak_tflops(p) else {
                    continue;
                };
                let geforce_half = g.name.contains("4090")
                    && p != Precision::Fp32
                    && p != Precision::Int8
                    && p != Precision::Fp16Acc16;
                let at_boost = g.sms.value * per_clock * g.boost_clock_mhz.value
                    / 1e6
                    / if geforce_half { 2.0 } else { 1.0 };
                // Datasheets round to 3 significant figures (A10's 125, L4's 121).
                assert!(
                    peak >= at_boost * 0.99,
                    "{} {p}: {peak} < {at_boost:.2}",
                    g.name
                );
            }
        }
        let l40s = c.get("L40S").unwrap();
        assert!(l40s.peak_tflops(Precision::Bf16).unwrap() >= 142.0 * 1024.0 * 2520.0 / 1e6);
    }

    #[test]
    fn geforce_fp16_accumulate_is_twice_fp32_accumulate_elsewhere_equal() {
        let c = Catalog::embedded();
        let rtx = c.get("RTX 4090").unwrap();
        let acc16 = rtx.peak_tflops(Precision::Fp16Acc16).unwrap();
        assert!((acc16 / rtx.peak_tflops(Precision::Fp16).unwrap() - 2.0).abs() < 0.01);
        // A BF16 GEMM (FP32 accumulation) is bound by the FP32-accumulate peak.
        assert_eq!(rtx.peak_tflops(Precision::Bf16), Some(165.2));
        let h100 = c.get("H100 SXM").unwrap();
        assert_eq!(
            h100.peak_tflops(Precision::Fp16Acc16),
            h100.peak_tflops(Precision::Fp16)
        );
        let filled = &h100.dense_tflops[&Precision::Fp16Acc16];
        assert!(filled
            .note
            .as_deref()
            .unwrap()
            .contains("FP32-accumulate rate"));
        // An unconfirmed FP16 figure stays unconfirmed when copied.
        let gh200 = c.get("GH200").unwrap();
        assert!(gh200.dense_tflops[&Precision::Fp16Acc16].is_unconfirmed());
    }

    #[test]
    fn l2_sizes_are_mib_as_the_driver_reports_them() {
        let c = Catalog::embedded();
        let derived = derive_spec(&h100_info());
        assert_eq!(
            derived.l2_mib.value,
            c.get("H100 SXM").unwrap().l2_mib.value
        );
        // The old field name still reads.
        let old = EMBEDDED_TOML.replace("l2_mib = {", "l2_mb = {");
        let parsed = Catalog::parse(&old, Origin::User).unwrap();
        assert_eq!(parsed.get("A100 SXM4 80GB").unwrap().l2_mib.value, 40.0);
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
            l2_mib = { value = 50, source = "mine" }
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
            l2_mib = { value = 1, source = "nowhere" }
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
