//! `roofbench gpus [NAME]`: the spec table, or one GPU with the document behind every value.

use anyhow::Result;
use clap::Args;

use super::Context;
use roofbench::predict;
use roofbench::report::table;
use roofbench::roofline::spec::{Origin, Sourced};
use roofbench::roofline::{Catalog, GpuSpec};

#[derive(Args)]
pub struct GpusArgs {
    /// Show one GPU with the source of every value.
    pub name: Option<String>,
}

pub fn run(args: GpusArgs, ctx: &Context) -> Result<()> {
    let catalog = ctx.catalog()?;
    match args.name {
        Some(name) => print_gpu_sources(&catalog, super::named_gpu(&catalog, &name)?),
        None => {
            let specs: Vec<_> = catalog.gpus.iter().collect();
            let (header, rows) = predict::gpu_summary(&specs, false);
            // Transposed: one GPU per row reads better for the whole table.
            let mut t = table(std::iter::once("GPU").chain(rows.iter().map(|r| r[0].as_str())));
            for (i, gpu) in header.iter().enumerate().skip(1) {
                t.add_row(std::iter::once(gpu.clone()).chain(rows.iter().map(|r| r[i].clone())));
            }
            println!("{t}\nDense figures (sparse ones are 2x). `roofbench gpus NAME` shows the source of each value.\n{}", predict::UNCONFIRMED_FOOTNOTE);
        }
    }
    Ok(())
}

pub fn origin_word(spec: &GpuSpec) -> &'static str {
    match spec.origin {
        Origin::Spec => "spec-sheet",
        Origin::User => "user-file",
        Origin::Derived => "derived",
    }
}

/// One GPU with the document behind every value.
fn print_gpu_sources(catalog: &Catalog, spec: &GpuSpec) {
    println!(
        "{} ({}, sm_{}{}, {} figures)",
        spec.name,
        spec.architecture,
        spec.compute_capability[0],
        spec.compute_capability[1],
        origin_word(spec)
    );
    let mut t = table(["field", "value", "source", "note"]);
    let mut add = |field: String, v: &Sourced| {
        let source = catalog
            .sources
            .get(&v.source)
            .map_or(v.source.clone(), |s| format!("{} <{}>", s.title, s.url));
        t.add_row(vec![
            field,
            format!("{}", v.value),
            source,
            v.note.clone().unwrap_or_default(),
        ]);
    };
    add("SMs".into(), &spec.sms);
    add("boost clock MHz".into(), &spec.boost_clock_mhz);
    add("memory GB".into(), &spec.memory_gb);
    add("memory GB/s".into(), &spec.memory_bandwidth_gbps);
    add("L2 MiB".into(), &spec.l2_mib);
    for (field, v) in [
        ("tensor peak clock MHz", &spec.tensor_clock_mhz),
        ("TDP W", &spec.tdp_w),
        ("PCIe GB/s", &spec.pcie_gbps),
        ("NVLink GB/s", &spec.nvlink_gbps),
    ] {
        if let Some(v) = v {
            add(field.into(), v);
        }
    }
    for (p, v) in &spec.dense_tflops {
        add(format!("{p} dense {}", p.unit()), v);
    }
    if let Some(f) = &spec.floor {
        add("floor: launch µs".into(), &f.launch_us);
        add("floor: DRAM latency µs".into(), &f.dram_latency_us);
    }
    println!("{t}");
}
