//! The measurement harness: CUDA-event timing (cold and hot modes), adaptive sampling, statistics,
//! clock checks, and a Criterion measurement of GPU time.

pub mod criterion;
mod harness;
pub mod stats;
pub mod stop;

pub use harness::{Harness, L2Flush, MeasureConfig, Mode, Timing, FLUSH_READ_KERNEL};
pub use stats::{summarize, Summary};
pub use stop::{StopReason, StopRule};
