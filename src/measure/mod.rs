//! The measurement harness: CUDA-event timing (cold and hot modes), adaptive sampling, statistics,
//! clock checks, the declared minimum work of a problem, and a Criterion measurement.

pub mod criterion;
mod harness;
pub mod stats;
pub mod stop;
mod workload;

pub use harness::{Harness, L2Flush, MeasureConfig, Mode, Timing};
pub use stats::{summarize, Summary};
pub use stop::{StopReason, StopRule};
pub use workload::{DataPath, Workload};
