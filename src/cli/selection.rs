//! Which suites and cases a command works on: `[SUITE…] [--case SPEC…] [--quick]`.

use anyhow::{anyhow, bail, Result};
use clap::Args;

use roofbench::suite::{usage, Case, Plan, Suite};

#[derive(Args)]
pub struct Selection {
    /// Suites to run (default: all). See `roofbench suites`.
    pub suites: Vec<String>,
    /// A case of your own instead of the built-in grid (repeatable; needs exactly one suite).
    #[arg(long = "case", value_name = "SPEC")]
    pub cases: Vec<String>,
    /// A small representative grid.
    #[arg(long)]
    pub quick: bool,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
}

impl Selection {
    /// The named suites' built-in grids (all suites when none is named).
    pub fn of_suites(suites: Vec<String>, quick: bool) -> Selection {
        Selection {
            suites,
            cases: Vec::new(),
            quick,
            device: 0,
        }
    }

    /// The suites and cases to run; unknown suites and bad case specs are usage errors.
    pub fn plans(
        &self,
        default_cases: impl Fn(&dyn Suite) -> Vec<Box<dyn Case>>,
    ) -> Result<Vec<Plan<'static>>> {
        self.checked_plans(default_cases).map_err(usage)
    }

    fn checked_plans(
        &self,
        default_cases: impl Fn(&dyn Suite) -> Vec<Box<dyn Case>>,
    ) -> Result<Vec<Plan<'static>>> {
        let suites: Vec<&'static dyn Suite> = if self.suites.is_empty() {
            roofbench::suites()
        } else {
            self.suites
                .iter()
                .map(|name| {
                    roofbench::find_suite(name).ok_or_else(|| {
                        let known: Vec<_> = roofbench::suites().iter().map(|s| s.name()).collect();
                        anyhow!("unknown suite `{name}` (known: {})", known.join(", "))
                    })
                })
                .collect::<Result<_>>()?
        };
        if !self.cases.is_empty() {
            let ([suite], [_]) = (suites.as_slice(), self.suites.as_slice()) else {
                bail!("--case needs exactly one suite named before it, e.g. `roofbench run stream --case copy:1GiB`");
            };
            let cases = self
                .cases
                .iter()
                .map(|spec| suite.parse_case(spec))
                .collect::<Result<Vec<_>>>()
                .map_err(|e| anyhow!("{e:#}\n  {} cases: {}", suite.name(), suite.case_syntax()))?;
            return Ok(vec![(*suite, cases)]);
        }
        Ok(suites.into_iter().map(|s| (s, default_cases(s))).collect())
    }

    /// The plans of the timing grid (`--quick`: its small subset).
    pub fn grid_plans(&self) -> Result<Vec<Plan<'static>>> {
        self.plans(|s| s.default_cases(self.quick))
    }
}
