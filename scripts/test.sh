#!/usr/bin/env bash
# The project's checks, as CI runs them: pinned nvcc, formatting, lints, tests, benches compile.
# No GPU needed; GPU tests are #[ignore]d here (run them on a GPU with scripts/package-gpu.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-cuda.sh
export ROOFBENCH_REQUIRE_KERNELS=1   # a missing nvcc or an nvcc warning fails the build

cargo fmt --all -- --check
python3 -m py_compile scripts/baselines/*.py
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
cargo bench --no-run --locked
