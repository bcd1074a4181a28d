//! Compiles every `kernels/**/*.cu` into a fatbin at build time and embeds it, with the `ptxas -v`
//! resource report, into the crate (`$OUT_DIR/embedded_kernels.rs`, read by `src/gpu/embedded.rs`).
//!
//! - nvcc is looked up in `NVCC`, `CUDA_HOME`/`CUDA_PATH`, `PATH`, then the repo-local install made
//!   by `scripts/install-cuda.sh` (`.cuda/`).
//! - Without nvcc the crate still builds, with one cargo warning, and embeds no kernels; GPU
//!   commands then explain how to fix it. `ROOFBENCH_REQUIRE_KERNELS=1` makes that a build error,
//!   and also turns nvcc warnings into errors.
//! - A `.cu` file may restrict its targets with a line `// roofbench-targets: sm_90a sm_100a`
//!   (e.g. for wgmma kernels); by default every target below that nvcc supports is built.
//! - Fatbins are cached under `<target-dir>/kernel-cache/`, keyed by the sources, flags and nvcc
//!   version, so `cargo test`, `clippy` and `bench` (three profiles) run nvcc once.
//! - Every kernel name in `src/gpu/kernel_list.txt` becomes a typed constant
//!   (`gpu::kernels::L2_FLUSH_READ`, `$OUT_DIR/kernel_names.rs`), so a misspelled kernel is a
//!   compile error, with or without nvcc. With nvcc, the list must equal the kernels the build
//!   embeds: a difference is a warning (an error under `ROOFBENCH_REQUIRE_KERNELS=1`), and
//!   `ROOFBENCH_UPDATE_KERNEL_LIST=1 cargo build` rewrites the list from the build.
//! - A ptxas report that says wgmma instructions were serialized fails the build, with or
//!   without `ROOFBENCH_REQUIRE_KERNELS` (ptxas prints it as info, which `-Werror` misses; see
//!   `build/ptxas_check.rs`): such a kernel would silently run several times slower.

#[path = "build/ptxas_check.rs"]
mod ptxas_check;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Machine code for these (where nvcc supports them) plus compute_80 PTX for newer GPUs.
const TARGETS: &[&str] = &["sm_80", "sm_86", "sm_89", "sm_90a", "sm_100a"];
const PTX_TARGET: &str = "compute_80";
/// `-Xfatbin=-compress-all`: the driver decompresses at module load; embedded kernels shrink
/// about 7x, which keeps every test and bench executable small enough to ship to a GPU node.
const NVCC_FLAGS: &[&str] = &[
    "-std=c++17",
    "-O3",
    "-lineinfo",
    "-Xfatbin=-compress-all",
    "-Xptxas",
    "-v",
];
const TARGETS_DIRECTIVE: &str = "// roofbench-targets:";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let kernels_dir = manifest_dir.join("kernels");
    for var in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_PATH",
        "ROOFBENCH_REQUIRE_KERNELS",
        "ROOFBENCH_UPDATE_KERNEL_LIST",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed={}", kernels_dir.display());
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("build").display()
    );
    let list_path = manifest_dir.join(KERNEL_LIST);
    println!("cargo:rerun-if-changed={}", list_path.display());
    emit_git_commit(&manifest_dir);

    let require = std::env::var("ROOFBENCH_REQUIRE_KERNELS").is_ok_and(|v| v == "1");
    let listed = read_kernel_list(&list_path).unwrap_or_else(|e| fail(&e));
    let generated = match build_kernels(&manifest_dir, &kernels_dir, &out_dir, require) {
        Ok((generated, embedded)) => {
            check_kernel_list(&list_path, &listed, &embedded, require);
            generated
        }
        Err(Failure::NoNvcc(why)) => {
            let message = format!(
                "nvcc not found ({why}): roofbench is built WITHOUT GPU kernels. \
                 Run scripts/install-cuda.sh (or set NVCC / CUDA_HOME) and rebuild."
            );
            if require {
                fail(&format!("ROOFBENCH_REQUIRE_KERNELS=1 but {message}"));
            }
            println!("cargo:warning={message}");
            generated_source(&[], None, Some(&message))
        }
        Err(Failure::Compile(message)) => fail(&message),
    };
    for (file, text) in [
        ("embedded_kernels.rs", generated),
        ("kernel_names.rs", kernel_names_source(&listed)),
    ] {
        let path = out_dir.join(file);
        if let Err(e) = std::fs::write(&path, text) {
            fail(&format!("cannot write {}: {e}", path.display()));
        }
    }
}

/// A build error with a readable message, without a panic backtrace.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

enum Failure {
    NoNvcc(String),
    Compile(String),
}

struct Nvcc {
    path: PathBuf,
    version: String,
    targets: Vec<String>,
}

/// One compiled `.cu` file.
struct Module {
    name: String,
    source: String,
    fatbin: PathBuf,
    targets: Vec<String>,
    report: String,
}

fn build_kernels(
    manifest_dir: &Path,
    kernels_dir: &Path,
    out_dir: &Path,
    require: bool,
) -> Result<(String, BTreeSet<String>), Failure> {
    let nvcc = find_nvcc(manifest_dir)?;
    let sources = cu_files(kernels_dir);
    let sources_hash = hash_tree(kernels_dir);
    let cache_dir = cache_dir(out_dir);
    let _ = std::fs::create_dir_all(&cache_dir);

    let results: Vec<Result<Module, Failure>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .map(|source| {
                let (nvcc, cache_dir) = (&nvcc, &cache_dir);
                scope.spawn(move || {
                    compile_module(nvcc, kernels_dir, source, sources_hash, cache_dir, require)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Failure::Compile("nvcc thread panicked".into())))
            })
            .collect()
    });
    let modules = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let embedded = modules
        .iter()
        .flat_map(|m| {
            parse_report(&m.report)
                .into_keys()
                .map(|(kernel, _)| kernel)
        })
        .collect();
    Ok((
        generated_source(&modules, Some(&nvcc.version), None),
        embedded,
    ))
}

/// The kernel list, relative to the manifest directory.
const KERNEL_LIST: &str = "src/gpu/kernel_list.txt";
const KERNEL_LIST_HEADER: &str = "\
# Every kernel the build embeds, one per line; build.rs makes each a typed constant
# (roofbench::gpu::kernels::NAME_IN_CAPITALS). Checked against the build when nvcc is present;
# regenerate with: ROOFBENCH_UPDATE_KERNEL_LIST=1 cargo build
";

fn read_kernel_list(path: &Path) -> Result<BTreeSet<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the kernel list {}: {e}", path.display()))?;
    let names: BTreeSet<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    match names.iter().find(|n| {
        !n.starts_with(|c: char| c.is_ascii_lowercase())
            || !n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }) {
        Some(bad) => Err(format!(
            "{}: `{bad}` is not a lower-case C identifier",
            path.display()
        )),
        None => Ok(names),
    }
}

/// Compares the list with what nvcc built; rewrites it on request, else warns or fails.
fn check_kernel_list(
    path: &Path,
    listed: &BTreeSet<String>,
    embedded: &BTreeSet<String>,
    require: bool,
) {
    if listed == embedded {
        return;
    }
    if std::env::var("ROOFBENCH_UPDATE_KERNEL_LIST").is_ok_and(|v| v == "1") {
        let mut text = String::from(KERNEL_LIST_HEADER);
        for name in embedded {
            let _ = writeln!(text, "{name}");
        }
        if let Err(e) = std::fs::write(path, text) {
            fail(&format!("cannot write {}: {e}", path.display()));
        }
        println!(
            "cargo:warning={} rewritten from the build: rebuild to use it",
            path.display()
        );
        return;
    }
    let missing: Vec<_> = embedded.difference(listed).cloned().collect();
    let stale: Vec<_> = listed.difference(embedded).cloned().collect();
    let message = format!(
        "{} differs from the kernels nvcc built: not listed [{}], listed but not built [{}]; \
         run `ROOFBENCH_UPDATE_KERNEL_LIST=1 cargo build` and commit the list",
        path.display(),
        missing.join(" "),
        stale.join(" ")
    );
    if require {
        fail(&message);
    }
    println!("cargo:warning={message}");
}

/// One typed constant per listed kernel, and the sorted list of all of them.
fn kernel_names_source(names: &BTreeSet<String>) -> String {
    let mut s = String::from("// @generated by build.rs from src/gpu/kernel_list.txt.\n");
    for name in names {
        let _ = writeln!(
            s,
            "pub const {}: KernelName = KernelName({name:?});",
            name.to_ascii_uppercase()
        );
    }
    let _ = writeln!(s, "/// Every listed kernel, sorted by name.");
    let _ = writeln!(s, "pub static ALL: &[KernelName] = &[");
    for name in names {
        let _ = writeln!(s, "    {},", name.to_ascii_uppercase());
    }
    s.push_str("];\n");
    s
}

fn find_nvcc(manifest_dir: &Path) -> Result<Nvcc, Failure> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(p) = std::env::var("NVCC") {
        candidates.push(PathBuf::from(p));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Ok(home) = std::env::var(var) {
            candidates.push(Path::new(&home).join("bin").join("nvcc"));
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|dir| dir.join("nvcc")));
    }
    candidates.push(manifest_dir.join(".cuda/nvidia/cu13/bin/nvcc"));

    let path = candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Failure::NoNvcc("not in NVCC, CUDA_HOME, CUDA_PATH, PATH or .cuda/".into())
        })?;
    let version_out = run_capture(Command::new(&path).arg("--version"))
        .map_err(|e| Failure::NoNvcc(format!("{} does not run: {e}", path.display())))?;
    let version = version_out
        .lines()
        .find_map(|l| l.split(", V").nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let listed = run_capture(Command::new(&path).arg("--list-gpu-code")).unwrap_or_default();
    // `--list-gpu-code` names base targets (sm_90); the arch-specific `a` variant exists with it.
    let targets = TARGETS
        .iter()
        .filter(|t| {
            listed
                .split_whitespace()
                .any(|l| l == t.trim_end_matches('a'))
        })
        .map(|t| t.to_string())
        .collect();
    Ok(Nvcc {
        path,
        version,
        targets,
    })
}

fn run_capture(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

fn cu_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    walk(dir, &mut |p| {
        if p.extension().is_some_and(|e| e == "cu") {
            files.push(p.to_path_buf());
        }
    });
    files.sort();
    files
}

fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, visit);
        } else {
            visit(&p);
        }
    }
}

/// FNV-1a over every file under `kernels/` (names and contents): a header change recompiles all.
fn hash_tree(dir: &Path) -> u64 {
    let mut h = Fnv::default();
    walk(dir, &mut |p| {
        h.write(p.to_string_lossy().as_bytes());
        h.write(&std::fs::read(p).unwrap_or_default());
    });
    h.0
}

#[derive(Clone, Copy)]
struct Fnv(u64);
impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}
impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// `<target-dir>/kernel-cache`, found from OUT_DIR (`<target-dir>/[triple/]<profile>/build/<pkg>/out`).
fn cache_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent()?.parent())
        .map(|target| target.join("kernel-cache"))
        .unwrap_or_else(|| out_dir.join("kernel-cache"))
}

fn declared_targets(source_text: &str, supported: &[String]) -> Result<Vec<String>, String> {
    let Some(line) = source_text
        .lines()
        .find(|l| l.trim_start().starts_with(TARGETS_DIRECTIVE))
    else {
        return Ok(supported.to_vec());
    };
    let wanted: Vec<&str> = line.trim_start()[TARGETS_DIRECTIVE.len()..]
        .split_whitespace()
        .collect();
    if let Some(unknown) = wanted.iter().find(|t| !TARGETS.contains(t)) {
        return Err(format!(
            "unknown target {unknown} (known: {})",
            TARGETS.join(" ")
        ));
    }
    Ok(supported
        .iter()
        .filter(|t| wanted.contains(&t.as_str()))
        .cloned()
        .collect())
}

fn compile_module(
    nvcc: &Nvcc,
    kernels_dir: &Path,
    source: &Path,
    sources_hash: u64,
    cache_dir: &Path,
    require: bool,
) -> Result<Module, Failure> {
    let relative = source.strip_prefix(kernels_dir).unwrap_or(source);
    let name = relative
        .with_extension("")
        .to_string_lossy()
        .replace('\\', "/");
    let text = std::fs::read_to_string(source)
        .map_err(|e| Failure::Compile(format!("cannot read {}: {e}", source.display())))?;
    let cubin_targets = declared_targets(&text, &nvcc.targets)
        .map_err(|e| Failure::Compile(format!("{}: {e}", source.display())))?;
    // Generic PTX only for modules that run everywhere: an arch-specific module (wgmma) has none.
    let with_ptx = !text.contains(TARGETS_DIRECTIVE);

    let mut args: Vec<String> = vec!["-fatbin".into()];
    args.extend(NVCC_FLAGS.iter().map(|s| s.to_string()));
    if require {
        args.extend(["-Werror".into(), "all-warnings".into()]);
    }
    args.push(format!("-I{}", kernels_dir.display()));
    for t in &cubin_targets {
        args.push(format!("-gencode=arch=compute_{0},code={t}", &t[3..]));
    }
    if with_ptx {
        args.push(format!("-gencode=arch={PTX_TARGET},code={PTX_TARGET}"));
    }
    let mut targets = cubin_targets.clone();
    if with_ptx {
        targets.push(PTX_TARGET.to_string());
    }

    let mut key = Fnv::default();
    key.write(&sources_hash.to_le_bytes());
    key.write(name.as_bytes());
    key.write(nvcc.version.as_bytes());
    key.write(args.join(" ").as_bytes());
    let stem = format!("{}-{:016x}", name.replace('/', "__"), key.0);
    let fatbin = cache_dir.join(format!("{stem}.fatbin"));
    let report_path = cache_dir.join(format!("{stem}.ptxas.txt"));

    if !(fatbin.is_file() && report_path.is_file()) {
        let tmp = cache_dir.join(format!("{stem}.{}.tmp", std::process::id()));
        let out = Command::new(&nvcc.path)
            .args(&args)
            .arg(source)
            .arg("-o")
            .arg(&tmp)
            .output()
            .map_err(|e| Failure::Compile(format!("cannot run {}: {e}", nvcc.path.display())))?;
        let log = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(Failure::Compile(format!(
                "nvcc failed on {}:\n{log}",
                source.display()
            )));
        }
        for line in log.lines().filter(|l| l.to_lowercase().contains("warning")) {
            println!("cargo:warning={}: {line}", source.display());
        }
        std::fs::write(&report_path, &log)
            .and_then(|_| std::fs::rename(&tmp, &fatbin))
            .map_err(|e| {
                Failure::Compile(format!("cannot write to {}: {e}", cache_dir.display()))
            })?;
    }
    let report = std::fs::read_to_string(&report_path).unwrap_or_default();
    // Checked on every build, cached report or not, so the failure cannot be skipped by a cache.
    let serialized = ptxas_check::serialized_wgmma(&report);
    if !serialized.is_empty() {
        return Err(Failure::Compile(format!(
            "{}: ptxas serialized wgmma instructions (each waits for the previous one: a \
             several-fold slowdown); change the kernel until these lines are gone:\n{}",
            source.display(),
            serialized.join("\n")
        )));
    }
    Ok(Module {
        name,
        source: format!("kernels/{}", relative.to_string_lossy()),
        fatbin,
        targets,
        report,
    })
}

/// Per (kernel, target): registers, shared memory, stack, spills, from `ptxas -v` output.
#[derive(Default)]
struct Resources {
    registers: u32,
    shared_bytes: u32,
    stack_bytes: u32,
    spill_store_bytes: u32,
    spill_load_bytes: u32,
}

fn parse_report(report: &str) -> BTreeMap<(String, String), Resources> {
    let mut table: BTreeMap<(String, String), Resources> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in report.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let mut parts = rest.split('\'');
            let kernel = parts.next().unwrap_or_default().to_string();
            let target = parts.nth(1).unwrap_or_default().to_string();
            current = Some((kernel, target));
            table
                .entry(current.clone().unwrap_or_default())
                .or_default();
            continue;
        }
        let Some(key) = &current else { continue };
        let entry = table.entry(key.clone()).or_default();
        let number_before = |word: &str| -> Option<u32> {
            let idx = line.find(word)?;
            line[..idx].split_whitespace().last()?.parse().ok()
        };
        if line.contains("stack frame") {
            entry.stack_bytes = number_before("bytes stack frame").unwrap_or(0);
            entry.spill_store_bytes = number_before("bytes spill stores").unwrap_or(0);
            entry.spill_load_bytes = number_before("bytes spill loads").unwrap_or(0);
        }
        if line.contains("Used") && line.contains("registers") {
            entry.registers = number_before("registers").unwrap_or(0);
            entry.shared_bytes = number_before("bytes smem").unwrap_or(0);
        }
    }
    table
}

fn generated_source(
    modules: &[Module],
    nvcc_version: Option<&str>,
    missing: Option<&str>,
) -> String {
    let mut s = String::from("// @generated by build.rs: the kernels embedded in this build.\n");
    let _ = writeln!(
        s,
        "pub const NVCC_VERSION: Option<&str> = {nvcc_version:?};"
    );
    let _ = writeln!(
        s,
        "pub const BUILT_WITHOUT_KERNELS: Option<&str> = {missing:?};"
    );
    let _ = writeln!(s, "pub static MODULES: &[EmbeddedModule] = &[");
    for m in modules {
        let _ = writeln!(s, "  EmbeddedModule {{");
        let _ = writeln!(s, "    name: {:?},\n    source: {:?},", m.name, m.source);
        let _ = writeln!(
            s,
            "    fatbin: include_bytes!({:?}),",
            m.fatbin.display().to_string()
        );
        let _ = writeln!(s, "    targets: &{:?},", m.targets);
        let _ = writeln!(s, "    ptxas_report: {:?},", m.report);
        let _ = writeln!(s, "    kernels: &[");
        for ((kernel, target), r) in parse_report(&m.report) {
            let _ = writeln!(
                s,
                "      KernelResources {{ kernel: {kernel:?}, target: {target:?}, registers: {}, \
                 shared_bytes: {}, stack_bytes: {}, spill_store_bytes: {}, spill_load_bytes: {} }},",
                r.registers, r.shared_bytes, r.stack_bytes, r.spill_store_bytes, r.spill_load_bytes
            );
        }
        let _ = writeln!(s, "    ],\n  }},");
    }
    s.push_str("];\n");
    s
}

/// The commit the binary was built from (results carry it; GPU nodes have no git checkout).
fn emit_git_commit(manifest_dir: &Path) {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(manifest_dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let suffix = if dirty { "-dirty" } else { "" };
    println!("cargo:rustc-env=ROOFBENCH_GIT_COMMIT={commit}{suffix}");
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/index");
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={git_dir}/{head_ref}");
        }
    }
}
