#!/usr/bin/env bash
# The project's checks, as CI runs them: pinned nvcc, formatting, lints, tests, benches compile.
# No GPU needed; GPU tests are #[ignore]d here (run them on a GPU with scripts/package-gpu.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-cuda.sh
export ROOFBENCH_REQUIRE_KERNELS=1   # a missing nvcc or an nvcc warning fails the build

cargo fmt --all -- --check
python3 -m py_compile scripts/baselines/*.py
# Host simulations of the GEMM kernels' index arithmetic against the PTX ISA's fragment layouts
# (no GPU needed; a subset of small_m_sim.py's cases: its full set takes minutes). They need
# numpy: the system's, else a pinned one installed next to nvcc.
if ! python3 -c 'import numpy' 2>/dev/null; then
  python3 -m pip install --quiet --target .cuda/pydeps numpy==2.4.6
  export PYTHONPATH=$PWD/.cuda/pydeps${PYTHONPATH:+:$PYTHONPATH}
fi
python3 scripts/sim/mma_sim.py
python3 scripts/sim/wgmma_sim.py --self-test
for case in bf16,90,7,200,1024,0 s8,80,33,200,4112,3 e4m3,90,16,4100,8192,2 we4m3,89,1,136,4096,3; do
  python3 scripts/sim/small_m_sim.py --case "$case"
done
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
cargo bench --no-run --locked
