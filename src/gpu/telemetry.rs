//! Clocks, power and throttle reasons through NVML (optional: absent NVML means no telemetry,
//! never an error). Looked up by PCI bus id, because CUDA and NVML may number devices differently.

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::Nvml;
use serde::Serialize;

pub struct Telemetry {
    nvml: Nvml,
    pci_bus_id: String,
}

/// One reading of the device's state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClockSnapshot {
    pub sm_clock_mhz: u32,
    pub mem_clock_mhz: u32,
    pub power_w: f64,
    pub temperature_c: u32,
    /// Active clock-limiting reasons that make a measurement suspect (power cap, thermal, ...);
    /// idle and application-clock settings are left out, they are the normal state.
    pub throttle_reasons: Vec<String>,
}

impl ClockSnapshot {
    pub fn throttled(&self) -> bool {
        !self.throttle_reasons.is_empty()
    }
}

impl Telemetry {
    pub(crate) fn open(pci_bus_id: &str) -> Option<Telemetry> {
        let nvml = Nvml::init().ok()?;
        nvml.device_by_pci_bus_id(pci_bus_id).ok()?;
        Some(Telemetry {
            nvml,
            pci_bus_id: pci_bus_id.to_string(),
        })
    }

    pub fn driver_version(&self) -> Option<String> {
        self.nvml.sys_driver_version().ok()
    }

    /// Maximum (SM, memory) clocks in MHz: the fallback when the driver's deprecated clock
    /// attributes read 0.
    pub fn max_clocks_mhz(&self) -> Option<(u32, u32)> {
        let device = self
            .nvml
            .device_by_pci_bus_id(self.pci_bus_id.as_str())
            .ok()?;
        Some((
            device.max_clock_info(Clock::SM).ok()?,
            device.max_clock_info(Clock::Memory).ok()?,
        ))
    }

    /// Enforced power limit in watts.
    pub fn power_limit_w(&self) -> Option<f64> {
        let device = self
            .nvml
            .device_by_pci_bus_id(self.pci_bus_id.as_str())
            .ok()?;
        device
            .enforced_power_limit()
            .ok()
            .map(|mw| f64::from(mw) / 1000.0)
    }

    pub fn snapshot(&self) -> Option<ClockSnapshot> {
        let device = self
            .nvml
            .device_by_pci_bus_id(self.pci_bus_id.as_str())
            .ok()?;
        let reasons = device
            .current_throttle_reasons()
            .unwrap_or(ThrottleReasons::empty());
        Some(ClockSnapshot {
            sm_clock_mhz: device.clock_info(Clock::SM).unwrap_or(0),
            mem_clock_mhz: device.clock_info(Clock::Memory).unwrap_or(0),
            power_w: device
                .power_usage()
                .map(|mw| f64::from(mw) / 1000.0)
                .unwrap_or(0.0),
            temperature_c: device.temperature(TemperatureSensor::Gpu).unwrap_or(0),
            throttle_reasons: suspect_reasons(reasons),
        })
    }
}

fn suspect_reasons(reasons: ThrottleReasons) -> Vec<String> {
    let named = [
        (ThrottleReasons::SW_POWER_CAP, "sw_power_cap"),
        (ThrottleReasons::HW_SLOWDOWN, "hw_slowdown"),
        (ThrottleReasons::SYNC_BOOST, "sync_boost"),
        (ThrottleReasons::SW_THERMAL_SLOWDOWN, "sw_thermal"),
        (ThrottleReasons::HW_THERMAL_SLOWDOWN, "hw_thermal"),
        (ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake"),
    ];
    named
        .iter()
        .filter(|(flag, _)| reasons.contains(*flag))
        .map(|(_, name)| name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_app_clocks_are_not_throttling() {
        let normal = ThrottleReasons::GPU_IDLE | ThrottleReasons::APPLICATIONS_CLOCKS_SETTING;
        assert!(suspect_reasons(normal).is_empty());
        let hot = ThrottleReasons::SW_THERMAL_SLOWDOWN | ThrottleReasons::GPU_IDLE;
        assert_eq!(suspect_reasons(hot), vec!["sw_thermal".to_string()]);
    }
}
