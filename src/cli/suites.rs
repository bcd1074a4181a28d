//! `roofbench suites` (each suite and its `--case` syntax) and `roofbench cases` (the cases a
//! selection would run, one JSON object per line, for scripts/baselines/).

use anyhow::Result;

use super::selection::Selection;

pub fn list() -> Result<()> {
    for s in roofbench::suites() {
        println!(
            "{:<10} {}\n{:<10} --case {}",
            s.name(),
            s.about(),
            "",
            s.case_syntax()
        );
    }
    Ok(())
}

pub fn cases(select: Selection) -> Result<()> {
    for (suite, cases) in select.grid_plans()? {
        for case in cases {
            let mut json = case.describe();
            json["suite"] = suite.name().into();
            println!("{json}");
        }
    }
    Ok(())
}
