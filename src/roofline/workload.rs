//! The minimum work a problem needs, declared once by its suite. GB/s and TFLOPS are derived from
//! these, never from what a particular kernel happens to move, so kernels stay comparable.

use serde::Serialize;

use super::precision::Precision;

/// Where the bytes of a workload travel: device memory, or the host link (swapping KV blocks to
/// pinned host memory is bound by PCIe, not HBM).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataPath {
    #[default]
    Device,
    HostToDevice,
    DeviceToHost,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// Bytes the operation must move through device memory: each input read once, each output
    /// written once.
    pub bytes: u64,
    /// Arithmetic operations it must do (a multiply-add counts 2).
    pub flops: u64,
    /// The arithmetic the FLOPs are done in: which compute roof applies.
    pub precision: Option<Precision>,
    /// Which memory roof the bytes meet.
    pub path: DataPath,
}

impl Workload {
    pub fn bytes(bytes: u64) -> Workload {
        Workload {
            bytes,
            flops: 0,
            precision: None,
            path: DataPath::Device,
        }
    }

    /// `bytes` over the host link in one direction.
    pub fn host_link(bytes: u64, path: DataPath) -> Workload {
        Workload {
            path,
            ..Workload::bytes(bytes)
        }
    }

    /// Decimal GB/s at `time_us` microseconds.
    pub fn gbps(&self, time_us: f64) -> f64 {
        self.bytes as f64 / (time_us * 1e-6) / 1e9
    }

    /// Decimal TFLOPS (or TOPS) at `time_us` microseconds.
    pub fn tflops(&self, time_us: f64) -> f64 {
        self.flops as f64 / (time_us * 1e-6) / 1e12
    }

    /// FLOPs per byte.
    pub fn intensity(&self) -> f64 {
        if self.bytes == 0 {
            f64::INFINITY
        } else {
            self.flops as f64 / self.bytes as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_from_declared_work() {
        let w = Workload {
            bytes: 3_000_000_000,
            flops: 2_000_000_000_000,
            precision: Some(Precision::Bf16),
            path: DataPath::Device,
        };
        assert!((w.gbps(1_000_000.0) - 3.0).abs() < 1e-12);
        assert!((w.tflops(1_000_000.0) - 2.0).abs() < 1e-12);
        assert!((w.intensity() - 2000.0 / 3.0).abs() < 1e-9);
    }
}
