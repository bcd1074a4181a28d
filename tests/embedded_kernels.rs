//! The kernel table built into the binary: every kernel the suites launch is there for sm_90a
//! (the H100/H200 target) without register spills, and nothing is embedded that no suite uses.

use roofbench::gpu::{embedded, MODULES};

/// Without nvcc the table is empty by design; CI builds with ROOFBENCH_REQUIRE_KERNELS=1, where an
/// empty table would already have failed the build.
fn built_with_kernels() -> bool {
    if let Some(why) = embedded::BUILT_WITHOUT_KERNELS {
        eprintln!("skipping: built without kernels ({why})");
        return false;
    }
    true
}

/// Every kernel the Rust side launches: the suites', the calibration's, the harness's L2 flush,
/// and the GEMM operand quantizer's (not a suite yet; its GPU tests launch every one).
fn launched_kernels() -> Vec<String> {
    let mut names: Vec<String> = roofbench::suites()
        .iter()
        .flat_map(|s| s.kernel_names())
        .collect();
    names.extend(roofbench::gemm::kernel_names());
    names.push(roofbench::measure::FLUSH_READ_KERNEL.to_string());
    names.extend(roofbench::calibrate::KERNELS.iter().map(|k| k.to_string()));
    names
}

/// Holds with or without nvcc: the list the typed constants come from names every kernel the
/// Rust side can compose, so `Gpu::kernel_by_name` never meets a name that is not in it.
#[test]
fn every_launched_kernel_is_in_the_kernel_list() {
    for kernel in launched_kernels() {
        assert!(
            roofbench::gpu::KernelName::parse(&kernel).is_ok(),
            "{kernel} is launched but not in src/gpu/kernel_list.txt"
        );
    }
}

#[test]
fn every_launched_kernel_is_embedded_with_sm90a_code() {
    if !built_with_kernels() {
        return;
    }
    for kernel in launched_kernels() {
        let module = embedded::module_of(&kernel)
            .unwrap_or_else(|| panic!("{kernel} is launched but not embedded"));
        assert!(!module.fatbin.is_empty());
        // Arch-specific modules (e.g. sm_89-only FP8 mma.sync) need no Hopper code; all others do.
        if module.targets.contains(&"sm_90a") {
            assert!(
                module
                    .kernels
                    .iter()
                    .any(|k| k.kernel == kernel && k.target == "sm_90a"),
                "{kernel} has no sm_90a machine code in {}",
                module.source
            );
        }
    }
    let hopper_modules = MODULES
        .iter()
        .filter(|m| m.targets.contains(&"sm_90a"))
        .count();
    assert!(
        hopper_modules >= MODULES.len() - 1,
        "only the sm_89-only module may skip sm_90a"
    );
}

#[test]
fn no_embedded_kernel_is_unused() {
    let used = launched_kernels();
    for module in MODULES {
        for name in module.kernel_names() {
            assert!(
                used.iter().any(|u| u == name),
                "{name} in {} is launched by nothing",
                module.source
            );
        }
    }
}

#[test]
fn no_register_spills_on_sm90a() {
    if !built_with_kernels() {
        return;
    }
    let spilling: Vec<String> = MODULES
        .iter()
        .flat_map(|m| m.kernels.iter())
        .filter(|k| k.target == "sm_90a" && (k.spills() || k.stack_bytes > 0))
        .map(|k| {
            format!(
                "{} ({} B stores, {} B loads, {} B stack)",
                k.kernel, k.spill_store_bytes, k.spill_load_bytes, k.stack_bytes
            )
        })
        .collect();
    assert!(
        spilling.is_empty(),
        "kernels spilling on sm_90a: {spilling:?}"
    );
}

#[test]
fn report_was_parsed_for_every_target() {
    if !built_with_kernels() {
        return;
    }
    for module in MODULES {
        for target in module.targets.iter().filter(|t| t.starts_with("sm_")) {
            for name in module.kernel_names() {
                let entry = module
                    .kernels
                    .iter()
                    .find(|k| k.kernel == name && k.target == *target);
                let entry =
                    entry.unwrap_or_else(|| panic!("{name} has no ptxas entry for {target}"));
                assert!(entry.registers > 0, "{name}/{target}: registers not parsed");
            }
        }
    }
}
