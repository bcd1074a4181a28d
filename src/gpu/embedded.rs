//! The kernels compiled into this binary by `build.rs`, with their `ptxas -v` resource reports,
//! and the rule that decides whether a module's machine code can run on a given device.

/// Registers, shared memory and spills of one kernel for one target, from `ptxas -v`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct KernelResources {
    pub kernel: &'static str,
    pub target: &'static str,
    pub registers: u32,
    pub shared_bytes: u32,
    pub stack_bytes: u32,
    pub spill_store_bytes: u32,
    pub spill_load_bytes: u32,
}

impl KernelResources {
    pub fn spills(&self) -> bool {
        self.spill_store_bytes > 0 || self.spill_load_bytes > 0
    }
}

/// One `kernels/**/*.cu` file compiled to a fatbin.
#[derive(Debug)]
pub struct EmbeddedModule {
    /// Path under `kernels/` without the extension, e.g. `stream/stream`.
    pub name: &'static str,
    pub source: &'static str,
    pub fatbin: &'static [u8],
    /// `sm_XY[a]` machine code and `compute_XY` PTX in the fatbin.
    pub targets: &'static [&'static str],
    pub ptxas_report: &'static str,
    pub kernels: &'static [KernelResources],
}

include!(concat!(env!("OUT_DIR"), "/embedded_kernels.rs"));

/// What a newcomer needs of the kernel table on one screen: how many kernels in how many
/// modules, for which targets, the heaviest register user per target and every spilling kernel
/// (`roofbench kernels` shows the full table).
#[derive(Debug, Clone)]
pub struct KernelSummary {
    pub modules: usize,
    pub kernels: usize,
    /// Machine-code and PTX targets, oldest first.
    pub targets: Vec<&'static str>,
    /// Per target: the kernel with the most registers (module, resources).
    pub most_registers: Vec<(&'static str, &'static KernelResources)>,
    /// Every (module, kernel resources) that spills or uses stack.
    pub spilling: Vec<(&'static str, &'static KernelResources)>,
}

impl KernelSummary {
    pub fn of(modules: &'static [EmbeddedModule]) -> KernelSummary {
        let all = || {
            modules
                .iter()
                .flat_map(|m| m.kernels.iter().map(move |k| (m.name, k)))
        };
        let mut targets: Vec<&'static str> = all().map(|(_, k)| k.target).collect();
        targets.sort_by_key(|t| Target::parse(t).map(|t| (t.major, t.minor, t.arch_specific)));
        targets.dedup();
        let most_registers = targets
            .iter()
            .filter_map(|&t| {
                all()
                    .filter(|(_, k)| k.target == t)
                    .max_by_key(|(_, k)| k.registers)
            })
            .collect();
        KernelSummary {
            modules: modules.len(),
            kernels: modules.iter().map(|m| m.kernel_names().len()).sum(),
            targets,
            most_registers,
            spilling: all()
                .filter(|(_, k)| k.spills() || k.stack_bytes > 0)
                .collect(),
        }
    }
}

impl EmbeddedModule {
    /// Names of the entry points (from the report of the first target).
    pub fn kernel_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.kernels.iter().map(|k| k.kernel).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    pub fn contains(&self, kernel: &str) -> bool {
        self.kernels.iter().any(|k| k.kernel == kernel)
    }

    /// Whether the driver can run this module on a device of compute capability `cc`, and how.
    pub fn runnable_on(&self, cc: (u32, u32)) -> Option<Target> {
        self.targets
            .iter()
            .filter_map(|t| Target::parse(t))
            .filter(|t| t.runs_on(cc))
            // Prefer exact machine code, then the newest compatible cubin, then PTX (JIT).
            .max_by_key(|t| (!t.ptx, t.arch_specific, t.major, t.minor))
    }

    /// Human-readable list of the devices this module needs, for "unavailable" errors.
    pub fn requirement(&self) -> String {
        self.targets.join(", ")
    }
}

/// A compilation target: `sm_90a` (machine code, arch-specific), `sm_80`, or `compute_80` (PTX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub major: u32,
    pub minor: u32,
    pub arch_specific: bool,
    pub ptx: bool,
}

impl Target {
    pub fn parse(s: &str) -> Option<Target> {
        let (ptx, digits) = match (s.strip_prefix("sm_"), s.strip_prefix("compute_")) {
            (Some(d), _) => (false, d),
            (_, Some(d)) => (true, d),
            _ => return None,
        };
        let (digits, arch_specific) = match digits.strip_suffix('a') {
            Some(d) => (d, true),
            None => (digits, false),
        };
        let value: u32 = digits.parse().ok()?;
        Some(Target {
            major: value / 10,
            minor: value % 10,
            arch_specific,
            ptx,
        })
    }

    /// CUDA's compatibility rules: `sm_XYa` runs only on X.Y; `sm_XY` on X.Z with Z >= Y (same
    /// major); PTX `compute_XY` is JIT-compiled for any device >= X.Y.
    pub fn runs_on(&self, (major, minor): (u32, u32)) -> bool {
        let own = (self.major, self.minor);
        if self.arch_specific {
            own == (major, minor)
        } else if self.ptx {
            own <= (major, minor)
        } else {
            self.major == major && self.minor <= minor
        }
    }
}

/// The embedded module that holds `kernel`.
pub fn module_of(kernel: &str) -> Option<&'static EmbeddedModule> {
    MODULES.iter().find(|m| m.contains(kernel))
}

/// The build commit, with `-dirty` when the tree had uncommitted changes at build time.
pub const GIT_COMMIT: &str = env!("ROOFBENCH_GIT_COMMIT");

#[cfg(test)]
mod tests {
    use super::*;

    fn module(targets: &'static [&'static str]) -> EmbeddedModule {
        EmbeddedModule {
            name: "t",
            source: "kernels/t.cu",
            fatbin: &[],
            targets,
            ptxas_report: "",
            kernels: &[],
        }
    }

    #[test]
    fn arch_specific_code_runs_only_on_its_own_chip() {
        let wgmma = module(&["sm_90a"]);
        assert!(wgmma.runnable_on((9, 0)).is_some());
        assert!(
            wgmma.runnable_on((8, 0)).is_none(),
            "A100 cannot run sm_90a"
        );
        assert!(
            wgmma.runnable_on((10, 0)).is_none(),
            "B200 cannot run sm_90a"
        );
    }

    #[test]
    fn generic_modules_prefer_machine_code_and_fall_back_to_ptx() {
        let m = module(&["sm_80", "sm_86", "sm_89", "sm_90a", "sm_100a", "compute_80"]);
        assert_eq!(m.runnable_on((9, 0)), Target::parse("sm_90a"));
        assert_eq!(m.runnable_on((8, 9)), Target::parse("sm_89"));
        assert_eq!(m.runnable_on((8, 7)), Target::parse("sm_86"));
        assert_eq!(m.runnable_on((12, 0)), Target::parse("compute_80"));
        assert_eq!(m.runnable_on((7, 5)), None);
    }

    #[test]
    fn target_parsing() {
        assert_eq!(
            Target::parse("sm_100a"),
            Some(Target {
                major: 10,
                minor: 0,
                arch_specific: true,
                ptx: false
            })
        );
        assert_eq!(Target::parse("compute_80").map(|t| t.ptx), Some(true));
        assert_eq!(Target::parse("bogus"), None);
    }
}
