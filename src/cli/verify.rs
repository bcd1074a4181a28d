//! `roofbench verify`: every GPU correctness check against the CPU references, a pass/fail table.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::selection::Selection;
use super::{exit_for_failures, print_device_line, require_gpu};
use roofbench::report::{verify_table, VerifyOutcome};
use roofbench::suite;

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    select: Selection,
}

pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let select = &args.select;
    // The verify set (awkward sizes included) unless --quick asks for the small timing grid.
    let plans = select.plans(|s| {
        if select.quick {
            s.default_cases(true)
        } else {
            s.verify_cases()
        }
    })?;
    let gpu = match require_gpu(select.device) {
        Ok(gpu) => gpu,
        Err(code) => return Ok(code),
    };
    print_device_line(&gpu);
    let rows = suite::verify(&gpu, &plans);
    println!("{}", verify_table(&rows));
    let count = |o| rows.iter().filter(|r| r.outcome == o).count();
    let (pass, fail, skip) = (
        count(VerifyOutcome::Pass),
        count(VerifyOutcome::Fail),
        count(VerifyOutcome::Skipped),
    );
    println!("verify: {pass} passed, {fail} failed, {skip} skipped");
    Ok(exit_for_failures(fail, "check(s) failed"))
}
