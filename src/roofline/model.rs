//! The roofline model: for a problem's minimum bytes and FLOPs, the time no kernel can beat on a
//! GPU, which limit sets it, and the ridge point where the limits cross.
//!
//! bound = max(bytes / bandwidth, flops / peak(precision), floor). The floor only binds tiny
//! problems: a dependent launch (one kernel of a stream, as every decode step is) pays the launch
//! interval and, when its bytes come from DRAM, at least one DRAM round trip before it can
//! finish. The true time of a small problem is nearer the sum of floor and bytes term; the max is
//! what is guaranteed, and it lets each bound name the one term that sets it ([`Term`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::ceilings::{CeilingKind, MeasuredCeilings};
use super::precision::Precision;
use super::spec::{GpuSpec, Origin, Sourced};
use super::workload::{DataPath, Workload};

/// One limit and where its value comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limit {
    /// `dram_bw`, `l2_bw`, `bf16_peak`, `launch`, ...
    pub name: String,
    /// GB/s, TFLOPS/TOPS, or µs for `launch`.
    pub value: f64,
    /// `spec`, `user`, `derived`, or `measured:<calibration>` (`+spec` where a measured term is
    /// added to a table one).
    pub source: String,
    /// The value (or a part of it) is marked unconfirmed in the spec table.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unconfirmed: bool,
}

/// Which term of the model sets a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Term {
    /// Minimum bytes over the memory (or host-link) bandwidth.
    Bytes,
    /// FLOPs over the peak of the case's precision.
    Flops,
    /// The latency floor: launch interval plus one DRAM round trip.
    Floor,
}

impl Term {
    pub fn as_str(self) -> &'static str {
        match self {
            Term::Bytes => "bytes",
            Term::Flops => "flops",
            Term::Floor => "floor",
        }
    }
}

/// The limits of one GPU used by the model.
#[derive(Debug, Clone, Serialize)]
pub struct Roof {
    pub gpu: String,
    pub dram: Limit,
    pub l2: Option<Limit>,
    pub compute: BTreeMap<Precision, Limit>,
    /// The launch interval of dependent kernels, µs (the floor's first part).
    pub launch: Option<Limit>,
    /// One DRAM round trip, µs (the floor's second part, for bytes that come from DRAM).
    pub dram_latency: Option<Limit>,
    /// Host -> device and device -> host bandwidth over the host link (pinned memory), GB/s.
    pub host_to_device: Option<Limit>,
    pub device_to_host: Option<Limit>,
}

/// The roofline bound of one problem on one [`Roof`].
#[derive(Debug, Clone, Serialize)]
pub struct Bound {
    /// The fastest possible time, µs.
    pub time_us: f64,
    /// The limit that sets `time_us`, and which term of the model it is.
    pub limit: Limit,
    pub term: Term,
    pub memory_us: f64,
    pub compute_us: Option<f64>,
    /// FLOPs per byte of the problem (0 for pure data movement).
    pub intensity: f64,
    /// FLOPs per byte where this precision's peak meets the memory roof.
    pub ridge: Option<f64>,
}

impl Bound {
    /// Percent of the bound reached by a measured time.
    pub fn percent(&self, measured_us: f64) -> f64 {
        100.0 * self.time_us / measured_us
    }
}

fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::Spec => "spec",
        Origin::User => "user",
        Origin::Derived => "derived",
    }
}

impl Roof {
    /// The datasheet (or derived) limits of `spec`.
    pub fn from_spec(spec: &GpuSpec) -> Roof {
        let source = origin_name(spec.origin).to_string();
        let limit = |name: String, v: &Sourced, scale: f64| Limit {
            name,
            value: v.value * scale,
            source: source.clone(),
            unconfirmed: v.is_unconfirmed(),
        };
        Roof {
            gpu: spec.name.clone(),
            dram: limit("dram_bw".into(), &spec.memory_bandwidth_gbps, 1.0),
            l2: None,
            compute: spec
                .dense_tflops
                .iter()
                .map(|(p, v)| (*p, limit(format!("{p}_peak"), v, 1.0)))
                .collect(),
            launch: spec
                .floor
                .as_ref()
                .map(|f| limit("launch".into(), &f.launch_us, 1.0)),
            dram_latency: spec
                .floor
                .as_ref()
                .map(|f| limit("dram_latency".into(), &f.dram_latency_us, 1.0)),
            // The spec figure counts both directions; one direction gets half.
            host_to_device: spec
                .pcie_gbps
                .as_ref()
                .map(|p| limit("pcie_h2d".into(), p, 0.5)),
            device_to_host: spec
                .pcie_gbps
                .as_ref()
                .map(|p| limit("pcie_d2h".into(), p, 0.5)),
        }
    }

    /// Measured limits where `ceilings` has them, `self`'s for the rest.
    pub fn with_measured(&self, ceilings: &MeasuredCeilings) -> Roof {
        let measured = |kind: CeilingKind, name: &str| {
            ceilings.best(kind).map(|c| Limit {
                name: name.to_string(),
                value: c.value,
                source: format!("measured:{}", c.name),
                unconfirmed: false,
            })
        };
        let mut roof = self.clone();
        if let Some(l) = measured(CeilingKind::Dram, "dram_bw") {
            roof.dram = l;
        }
        roof.l2 = measured(CeilingKind::L2, "l2_bw").or(roof.l2);
        roof.launch = measured(CeilingKind::Launch, "launch").or(roof.launch);
        let link = |entry: &str, name: &str| {
            ceilings
                .entries
                .iter()
                .find(|e| e.usable() && e.name == entry)
                .map(|c| Limit {
                    name: name.to_string(),
                    value: c.value,
                    source: format!("measured:{}", c.name),
                    unconfirmed: false,
                })
        };
        roof.host_to_device = link("pcie_h2d_pinned", "pcie_h2d").or(roof.host_to_device);
        roof.device_to_host = link("pcie_d2h_pinned", "pcie_d2h").or(roof.device_to_host);
        for p in Precision::ALL {
            if let Some(l) = measured(CeilingKind::Compute(p), &format!("{p}_peak")) {
                roof.compute.insert(p, l);
            }
        }
        roof
    }

    /// FLOPs per byte where the `precision` peak meets the DRAM roof.
    pub fn ridge(&self, precision: Precision) -> Option<f64> {
        self.compute
            .get(&precision)
            .map(|peak| peak.value * 1e3 / self.dram.value)
    }

    /// The latency floor, µs: the launch interval, plus one DRAM round trip when `from_dram`.
    /// Its source names each part's (`measured:launch_graph+spec`).
    pub fn floor(&self, from_dram: bool) -> Option<Limit> {
        let launch = self.launch.as_ref()?;
        let mut floor = Limit {
            name: "floor".into(),
            ..launch.clone()
        };
        if let Some(latency) = self.dram_latency.as_ref().filter(|_| from_dram) {
            floor.value += latency.value;
            if latency.source != launch.source {
                floor.source = format!("{}+{}", launch.source, latency.source);
            }
            floor.unconfirmed |= latency.unconfirmed;
        }
        Some(floor)
    }

    /// The bound of `workload`; `l2_resident` makes L2, not DRAM, the memory roof. An error says
    /// why no bound exists (a missing peak or an uncalibrated L2).
    pub fn bound(&self, workload: &Workload, l2_resident: bool) -> Result<Bound, String> {
        let (memory, what) = match workload.path {
            DataPath::HostToDevice => (self.host_to_device.as_ref(), "host-to-device bandwidth"),
            DataPath::DeviceToHost => (self.device_to_host.as_ref(), "device-to-host bandwidth"),
            DataPath::Device if l2_resident => (self.l2.as_ref(), "L2 ceiling"),
            DataPath::Device => (Some(&self.dram), "DRAM bandwidth"),
        };
        let memory = memory.ok_or(format!(
            "{} has no {what} (run `roofbench calibrate`)",
            self.gpu
        ))?;
        let memory_us = workload.bytes as f64 / (memory.value * 1e3);
        let mut candidates = vec![(memory_us, memory.clone(), Term::Bytes)];
        let mut compute_us = None;
        let mut ridge = None;
        if workload.flops > 0 {
            let p = workload
                .precision
                .ok_or("the case declares FLOPs without a precision")?;
            let peak = self
                .compute
                .get(&p)
                .ok_or_else(|| format!("{} has no {p} peak", self.gpu))?;
            let us = workload.flops as f64 / (peak.value * 1e6);
            compute_us = Some(us);
            ridge = Some(peak.value * 1e3 / memory.value);
            candidates.push((us, peak.clone(), Term::Flops));
        }
        // L2-resident bytes pay no DRAM round trip; host-link bytes pay more than one, so the
        // DRAM latency still bounds them from below.
        let from_dram = workload.path != DataPath::Device || !l2_resident;
        if let Some(floor) = self.floor(from_dram) {
            candidates.push((floor.value, floor, Term::Floor));
        }
        let (time_us, limit, term) = candidates
            .into_iter()
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .expect("the memory term is always there");
        Ok(Bound {
            time_us,
            limit,
            term,
            memory_us,
            compute_us,
            intensity: workload.intensity(),
            ridge,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::ceilings::fixtures::{ceilings, entry};
    use super::super::spec::Catalog;
    use super::*;

    fn h100() -> Roof {
        Roof::from_spec(Catalog::embedded().get("H100 SXM").unwrap())
    }

    #[test]
    fn host_link_workloads_meet_the_pcie_roof() {
        let roof = h100();
        let spec_pcie = Catalog::embedded()
            .get("H100 SXM")
            .unwrap()
            .pcie_gbps
            .clone()
            .unwrap();
        let w = Workload::host_link(1 << 30, DataPath::DeviceToHost);
        let b = roof.bound(&w, false).unwrap();
        assert_eq!(b.limit.name, "pcie_d2h");
        assert!((b.limit.value - spec_pcie.value / 2.0).abs() < 1e-9);
        let measured = roof.with_measured(&ceilings(vec![
            entry("pcie_h2d_pinned", CeilingKind::Pcie, 55.0, true),
            entry("pcie_d2h_pinned", CeilingKind::Pcie, 50.0, true),
        ]));
        let b = measured.bound(&w, false).unwrap();
        assert_eq!(
            (b.limit.value, b.limit.source.as_str()),
            (50.0, "measured:pcie_d2h_pinned")
        );
        let h2d = Workload::host_link(1 << 30, DataPath::HostToDevice);
        assert_eq!(measured.bound(&h2d, false).unwrap().limit.value, 55.0);
    }

    #[test]
    fn memory_bound_copy_by_hand() {
        // 2 GiB moved at 3350 GB/s: 2147483648 / 3350e9 s = 641.04 µs.
        let b = h100().bound(&Workload::bytes(2 << 30), false).unwrap();
        assert!((b.time_us - 641.04).abs() < 0.01, "{}", b.time_us);
        assert_eq!(b.limit.name, "dram_bw");
        assert_eq!(b.limit.source, "spec");
        assert_eq!(b.percent(2.0 * b.time_us), 50.0);
    }

    #[test]
    fn compute_bound_gemm_by_hand() {
        // 8192^3 bf16 GEMM: 2*8192^3 = 1.0995e12 FLOPs; bytes 3 * 8192^2 * 2 = 402.65 MB.
        let n = 8192u64;
        let w = Workload {
            bytes: 3 * n * n * 2,
            flops: 2 * n * n * n,
            precision: Some(Precision::Bf16),
            path: Default::default(),
        };
        let roof = h100();
        let peak = roof.compute[&Precision::Bf16].value;
        let b = roof.bound(&w, false).unwrap();
        assert_eq!((b.limit.name.as_str(), b.term), ("bf16_peak", Term::Flops));
        assert!((b.time_us - 2.0 * (n as f64).powi(3) / (peak * 1e6)).abs() < 1e-6);
        assert!((b.memory_us - 402_653_184.0 / 3350e3).abs() < 1e-6);
        // Ridge: peak / bandwidth = 989.4e12 / 3350e9 = 295 FLOPs per byte (for 989.4).
        assert!((b.ridge.unwrap() - peak * 1e3 / 3350.0).abs() < 1e-9);
        assert!(
            b.intensity > b.ridge.unwrap(),
            "a big GEMM sits right of the ridge"
        );
    }

    #[test]
    fn the_floor_binds_tiny_problems_from_the_spec_alone() {
        // A 1 MiB copy moves 2 MiB: 0.63 µs at 3350 GB/s, below one launch and DRAM round trip.
        let roof = h100();
        let copy = roof.bound(&Workload::bytes(2 << 20), false).unwrap();
        assert_eq!(
            (copy.term, copy.limit.name.as_str()),
            (Term::Floor, "floor")
        );
        let spec = Catalog::embedded();
        let floor = spec.get("H100 SXM").unwrap().floor.clone().unwrap();
        let expected = floor.launch_us.value + floor.dram_latency_us.value;
        assert!((copy.time_us - expected).abs() < 1e-12, "{}", copy.time_us);
        assert!(copy.time_us > copy.memory_us);
        assert!(copy.limit.unconfirmed, "the published floor is unconfirmed");
        // L2-resident bytes pay no DRAM round trip.
        let measured = roof.with_measured(&ceilings(vec![entry(
            "l2_read",
            CeilingKind::L2,
            9000.0,
            true,
        )]));
        let hot = measured.bound(&Workload::bytes(4096), true).unwrap();
        assert_eq!(hot.time_us, floor.launch_us.value);
        // A big copy is bound by its bytes.
        let big = roof.bound(&Workload::bytes(1 << 30), false).unwrap();
        assert_eq!(
            (big.term, big.limit.name.as_str()),
            (Term::Bytes, "dram_bw")
        );
        // Every GPU of the table has a floor.
        for g in &spec.gpus {
            assert!(
                Roof::from_spec(g).floor(true).is_some(),
                "{}: no floor",
                g.name
            );
        }
    }

    #[test]
    fn calibration_replaces_the_launch_part_of_the_floor() {
        let roof = h100().with_measured(&ceilings(vec![
            entry("launch", CeilingKind::Launch, 2.1, true),
            entry("launch_graph", CeilingKind::Launch, 1.6, true),
        ]));
        let tiny = roof.bound(&Workload::bytes(4096), false).unwrap();
        let latency = roof.dram_latency.as_ref().unwrap().value;
        assert_eq!(tiny.term, Term::Floor);
        assert!((tiny.time_us - (1.6 + latency)).abs() < 1e-12);
        assert_eq!(tiny.limit.source, "measured:launch_graph+spec");
    }

    #[test]
    fn missing_limits_are_explained() {
        let roof = h100();
        assert!(roof
            .bound(&Workload::bytes(1 << 20), true)
            .unwrap_err()
            .contains("calibrate"));
        let fp4 = Workload {
            bytes: 1,
            flops: 1,
            precision: Some(Precision::Fp4),
            path: Default::default(),
        };
        assert!(roof.bound(&fp4, false).unwrap_err().contains("no fp4 peak"));
        let untyped = Workload {
            bytes: 1,
            flops: 1,
            precision: None,
            path: Default::default(),
        };
        assert!(roof.bound(&untyped, false).is_err());
    }

    #[test]
    fn measured_limits_replace_spec_ones_where_present() {
        let spec = h100();
        let measured = ceilings(vec![
            entry("hbm_copy", CeilingKind::Dram, 3000.0, true),
            entry(
                "wgmma_bf16",
                CeilingKind::Compute(Precision::Bf16),
                800.0,
                true,
            ),
            entry("l2_read", CeilingKind::L2, 9000.0, true),
        ]);
        let roof = spec.with_measured(&measured);
        assert_eq!(roof.dram.value, 3000.0);
        assert_eq!(roof.dram.source, "measured:hbm_copy");
        assert_eq!(roof.compute[&Precision::Bf16].value, 800.0);
        assert_eq!(
            roof.compute[&Precision::Fp8].source,
            "spec",
            "uncalibrated: spec"
        );
        assert!(
            roof.bound(&Workload::bytes(1 << 20), true).is_ok(),
            "L2 now calibrated"
        );
        // 1 GiB at 3000 GB/s.
        let b = roof.bound(&Workload::bytes(1 << 30), false).unwrap();
        assert!((b.time_us - 357.91).abs() < 0.01);
    }
}
