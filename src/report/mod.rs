//! Results: the row schema, CSV/JSON writers, terminal tables.

pub mod plot;
mod row;
mod table;
mod writer;

pub use row::{Provider, ResultRow, Status};
pub use table::{results_table, table, verify_table};
pub use writer::{now, read_csv, write_rows_csv, ResultsWriter, RunMetadata};
