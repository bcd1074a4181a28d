//! The layering ARCHITECTURE.md describes, checked on the source: a module of the library imports
//! only modules on lower floors (plus the few sideways edges listed there), and `main.rs` only
//! parses arguments. A new module must be given a floor here and in ARCHITECTURE.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The floors, lowest first. A module may import any module on a lower floor.
const FLOORS: &[&[&str]] = &[
    &["numeric", "gpu"],
    &["measure"],
    &["roofline"],
    &["report"],
    &["suite"],
    &["stream", "attention", "kv_evict", "gemm"],
    &["calibrate", "predict"],
];

/// Imports between modules of one floor that ARCHITECTURE.md allows, with the reason there.
const SIDEWAYS: &[(&str, &str)] = &[
    // The eviction suite times decode attention before and after compaction.
    ("kv_evict", "attention"),
];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library module a source file belongs to (`src/gemm/paths/mma.rs` -> `gemm`); `None` for
/// the binary (main.rs, cli/) and lib.rs, which sit above every floor.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (!matches!(name.as_str(), "main" | "lib" | "cli")).then_some(name)
}

/// The crate modules a file names in code (`crate::x`), comments left out.
fn imports(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_one_above_it() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let floor = floor_of(&module).unwrap_or_else(|| {
            panic!("module `{module}` has no floor: add it to ARCHITECTURE.md and FLOORS")
        });
        let source = std::fs::read_to_string(file).unwrap();
        for import in imports(&source) {
            if import == module {
                continue;
            }
            let Some(to) = floor_of(&import) else {
                violations.push(format!("{}: imports unknown `{import}`", file.display()));
                continue;
            };
            let sideways = SIDEWAYS.contains(&(module.as_str(), import.as_str()));
            if to >= floor && !sideways {
                violations.push(format!(
                    "{}: `{module}` (floor {floor}) imports `{import}` (floor {to})",
                    file.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that run up the floors:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_library_module_has_a_floor() {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(declared.len() >= 10, "lib.rs parsed: {declared:?}");
    for module in declared {
        assert!(floor_of(module).is_some(), "`{module}` has no floor");
    }
}

#[test]
fn the_checker_sees_imports_and_skips_comments() {
    let found = imports("use crate::gpu::{Gpu};\n// crate::cli is a comment\nlet x = crate::report::now(); crate::suite::X");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["gpu", "report", "suite"]
    );
    assert!(floor_of("report") < floor_of("suite"));
}
#[test]
fn main_rs_only_parses_arguments() {
    let main = std::fs::read_to_string(src_dir().join("main.rs")).unwrap();
    let lines = main.lines().count();
    assert!(
        lines < 250,
        "main.rs has {lines} lines: commands belong in src/cli/<command>.rs"
    );
}
