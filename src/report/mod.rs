//! Results: the row schemas (measured, verified, predicted), CSV/JSON writers, terminal tables,
//! plots.

pub mod plot;
mod row;
mod table;
mod writer;

pub use row::{Prediction, Provider, ResultRow, Status, VerifyOutcome, VerifyRow, PREDICTED};
pub use table::{results_table, table, verify_table};
pub use writer::{
    command_line, now, read_csv, write_accuracy_json, write_rows_csv, ResultsWriter, RunFolder,
    RunMetadata, RUNS,
};
