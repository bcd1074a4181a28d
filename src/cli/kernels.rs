//! `roofbench kernels`: the kernels embedded in this binary, per machine-code target.

use anyhow::Result;
use clap::Args;

use roofbench::gpu;
use roofbench::report::table;

#[derive(Args)]
pub struct KernelsArgs {
    /// Print the raw `ptxas -v` report too.
    #[arg(long)]
    pub ptxas: bool,
}

pub fn run(args: KernelsArgs) -> Result<()> {
    print_kernels(args.ptxas);
    Ok(())
}

/// One row per kernel, one column per target: registers, shared memory, spills.
pub fn print_kernels(ptxas: bool) {
    if let Some(why) = gpu::embedded::BUILT_WITHOUT_KERNELS {
        println!("built without kernels: {why}");
        return;
    }
    let kernel_count: usize = gpu::MODULES.iter().map(|m| m.kernel_names().len()).sum();
    println!(
        "{kernel_count} kernels in {} modules, nvcc {}",
        gpu::MODULES.len(),
        gpu::embedded::NVCC_VERSION.unwrap_or("?")
    );
    // One row per kernel, one column per machine-code target: registers, shared memory, spills.
    let mut targets: Vec<&str> = gpu::MODULES
        .iter()
        .flat_map(|m| m.kernels.iter().map(|k| k.target))
        .collect();
    targets.sort_by_key(|t| gpu::embedded::Target::parse(t).map(|t| (t.major, t.minor)));
    targets.dedup();
    let mut t = table(
        ["module", "kernel"]
            .into_iter()
            .chain(targets.iter().copied()),
    );
    for m in gpu::MODULES {
        println!(
            "{}: {} (targets: {})",
            m.name,
            m.source,
            m.targets.join(" ")
        );
        for name in m.kernel_names() {
            let cells = targets.iter().map(|target| {
                let entry = m
                    .kernels
                    .iter()
                    .find(|k| k.kernel == name && k.target == *target);
                entry.map_or("-".into(), resource_cell)
            });
            t.add_row(
                [m.name.to_string(), name.to_string()]
                    .into_iter()
                    .chain(cells),
            );
        }
    }
    println!("{t}");
    if ptxas {
        for m in gpu::MODULES {
            println!("--- ptxas -v: {} ---\n{}", m.source, m.ptxas_report);
        }
    }
}

/// One screen instead of a row per kernel: counts, targets, the heaviest register user per
/// target and any spills (the main job without a GPU shows this).
pub fn print_kernel_summary() {
    if let Some(why) = gpu::embedded::BUILT_WITHOUT_KERNELS {
        println!("built without kernels: {why}");
        return;
    }
    let s = gpu::KernelSummary::of(gpu::MODULES);
    println!(
        "{} kernels in {} modules (nvcc {}), targets: {}",
        s.kernels,
        s.modules,
        gpu::embedded::NVCC_VERSION.unwrap_or("?"),
        s.targets.join(" ")
    );
    for (module, k) in &s.most_registers {
        println!(
            "  most registers on {:<8} {module}: {} ({})",
            k.target,
            k.kernel,
            resource_cell(k)
        );
    }
    if s.spilling.is_empty() {
        println!("  no kernel spills registers or uses stack");
    }
    for (module, k) in &s.spilling {
        println!(
            "  {} {module}: {} ({})",
            k.target,
            k.kernel,
            resource_cell(k)
        );
    }
    println!("  (`roofbench kernels` lists every kernel per target)");
}

fn resource_cell(k: &gpu::KernelResources) -> String {
    let mut cell = format!("{} regs", k.registers);
    if k.shared_bytes > 0 {
        cell += &format!(", {} B smem", k.shared_bytes);
    }
    if k.spills() || k.stack_bytes > 0 {
        cell += &format!(
            ", SPILLS {}/{} B, stack {} B",
            k.spill_store_bytes, k.spill_load_bytes, k.stack_bytes
        );
    }
    cell
}
