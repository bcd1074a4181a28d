#!/usr/bin/env bash
# One command from a fresh clone to results: installs nvcc, builds roofbench, runs the suites.
# With a GPU: calibrates the GPU's ceilings once (results/<gpu>/ceilings.json), then measures
# every suite against them: results/<gpu>/runs/<start>/<suite>.csv|json and the plots
# roofline.svg, <suite>-pct.svg (every run keeps its own folder). Without one: says so, shows a
# one-screen kernel summary and PREDICTED roofline bounds for an H100 SXM.
# Either way it ends with the accuracy deltas (CPU, f64) of the KV-cache eviction policies and
# of the FP8/INT8 GEMM quantization schemes, in results/local/<start>/ (untracked), and a summary.
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
# `--quick` applies to the accuracy step too; the other arguments are `run`'s alone.
quick=()
for a in "$@"; do [ "$a" = --quick ] && quick=(--quick); done
# Nothing committed is rewritten: `run` writes a new folder per run (results/<gpu>/runs/<start>/)
# and the accuracy reports go to an untracked folder of this job (results/local/ is ignored by
# git); `roofbench accuracy` alone still writes results/accuracy/, for a deliberate commit.
local_dir="results/local/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$local_dir"
status=0
"$bin" run "$@" || status=$?
# The tables go to a file (the progress bar stays on the terminal); the summary says where.
"$bin" accuracy ${quick[@]+"${quick[@]}"} --out "$local_dir" >"$local_dir/accuracy.txt" || status=$?
echo
echo "== summary =="
if "$bin" devices >/dev/null 2>&1; then
  echo "measured: every suite on this GPU (table above), in results/<gpu>/runs/<start time>/"
else
  echo "no GPU: nothing measured; the bounds above are PREDICTED from a spec sheet"
fi
echo "accuracy deltas (CPU, f64): $local_dir/accuracy/ (tables: $local_dir/accuracy.txt)"
echo "next: roofbench predict --gpu H200 | roofbench compare-gpus \"H100 SXM\" B200 | roofbench kernels | roofbench --help (exit codes)"
exit "$status"
