#!/usr/bin/env bash
# One command from a fresh clone to results: installs nvcc, builds roofbench, runs the suites.
# With a GPU: calibrates the GPU's ceilings once (results/<gpu>/ceilings.json), then measures
# every suite against them: results/<gpu>/<suite>.csv|json and the plots roofline.svg,
# <suite>-pct.svg. Without one: says so and shows PREDICTED roofline bounds for an H100 SXM.
# Either way it ends with the accuracy deltas (CPU, f64) of the KV-cache eviction policies and
# of the FP8/INT8 GEMM quantization schemes: results/accuracy/.
# Arguments go to `roofbench run` (e.g. --quick, stream --case copy:2GiB, --predict-gpu H200).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-cuda.sh
cargo build --release --locked
bin=target/release/roofbench
if "$bin" devices >/dev/null 2>&1; then
  # Once per GPU (ceilings.json is kept); `roofbench calibrate` alone re-measures.
  "$bin" calibrate --if-missing || echo "calibration incomplete: runs use spec ceilings where it failed"
fi
status=0
"$bin" run "$@" || status=$?
"$bin" accuracy || status=$?
exit "$status"
