//! Every GPU test, in one test executable (each executable embeds every kernel, and the GPU
//! package must stay under the device tool's carry limit). All are `#[ignore = "needs a CUDA
//! GPU"]`: run them on a GPU with `cargo test --test gpu -- --ignored`.

mod attention;
mod calibrate;
mod common;
mod gemm;
mod kv_evict;
mod quantize;
mod stream;
