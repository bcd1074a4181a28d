#!/usr/bin/env bash
# One command from a fresh clone to results: installs nvcc, builds roofbench, runs the suites.
# With a GPU: measured results in results/<gpu>/. Without one: says so, and shows what it can.
# Arguments go to `roofbench run` (e.g. --quick, stream --case copy:2GiB).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-cuda.sh
cargo build --release --locked
exec target/release/roofbench run "$@"
