//! `roofbench devices`: facts about each CUDA device from the driver and NVML.

use std::process::ExitCode;

use anyhow::Result;

use super::EXIT_NO_GPU;
use roofbench::gpu::{Gpu, GpuError};
use roofbench::report::table;

/// Exit code 2 with the reason when there is no driver or device.
pub fn run() -> Result<ExitCode> {
    let count = match Gpu::count() {
        Ok(0) => Err(GpuError::NoDevice("the driver reports 0 devices".into())),
        other => other,
    };
    let count = match count {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_NO_GPU));
        }
    };
    let mut t = table([
        "#",
        "name",
        "cc",
        "SMs",
        "L2 MiB",
        "memory GiB",
        "bus bits",
        "mem MHz",
        "DRAM GB/s",
        "SM MHz",
        "driver",
        "CUDA",
        "clocks now",
    ]);
    for ordinal in 0..count {
        let gpu = Gpu::open(ordinal)?;
        let i = gpu.info();
        let now = gpu
            .telemetry()
            .and_then(|t| t.snapshot())
            .map_or("no NVML".into(), |c| {
                format!(
                    "sm {} / mem {} MHz, {:.0} W",
                    c.sm_clock_mhz, c.mem_clock_mhz, c.power_w
                )
            });
        t.add_row(vec![
            ordinal.to_string(),
            i.name.clone(),
            format!("{}.{}", i.compute_capability.0, i.compute_capability.1),
            i.sms.to_string(),
            (i.l2_bytes >> 20).to_string(),
            format!("{:.1}", i.memory_bytes as f64 / (1u64 << 30) as f64),
            i.memory_bus_width_bits.to_string(),
            i.memory_clock_mhz.to_string(),
            format!("{:.0}", i.dram_gbps()),
            i.sm_clock_mhz.to_string(),
            i.driver.clone(),
            i.cuda_driver_api.clone(),
            now,
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
