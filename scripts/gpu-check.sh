#!/usr/bin/env bash
# The GPU check: everything a GPU session should run, in order of value, in one call that stops
# cleanly at a deadline. Made for scarce GPU time (one H100/H200 for ~15 minutes, at most 10 per
# command): package here with scripts/package-gpu.sh, then on the node
#   tar xJf dist/gpu.tar.xz -C /tmp && OUT=$OUT /tmp/gpu/gpu-check.sh
#
# Steps (each writes $OUT/<step>.txt as it goes; runs under $OUT/results/<gpu>/runs/<start>/):
#   devices    device facts (no GPU: stop here with the no-GPU exit code)
#   verify     `roofbench verify`: every suite's correctness checks, awkward sizes included
#   tests      the #[ignore]d GPU tests (graph capture, quantizer bit-exactness, ...)
#   calibrate  a quick calibration: the ceilings the runs are measured against
#   goals      `roofbench run --quick`: the cases every suite's goals compare, beside the vendor
#              providers (cuBLASLt, the driver), and the goal ratios
#   rest       `roofbench run`: the full grid
#   benches    the Criterion benches, if their archive was unpacked here
# A step starts only when the time left covers its estimate; a step that runs into the deadline
# is interrupted (rows already measured are kept: results are written as each case finishes).
#
# Environment: OUT (default ./out); ROOFBENCH_DEADLINE_S (default 540: one 10-minute call with a
# margin for the transfer); ROOFBENCH_PHASES (default: all steps above; `run` means goals + rest);
# ROOFBENCH_VERIFY_SUITES (verify only these suites); ROOFBENCH_BIN / ROOFBENCH_TESTS (where the
# CLI and the test executables are, default: next to this script). Arguments go to both runs.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${ROOFBENCH_BIN:-$here/bin/roofbench}
tests_dir=${ROOFBENCH_TESTS:-$here/tests}
benches_dir=$here/benches
out=${OUT:-$PWD/out}
deadline_s=${ROOFBENCH_DEADLINE_S:-540}
phases=" ${ROOFBENCH_PHASES:-devices verify tests calibrate goals rest benches} "
phases=${phases/ run / goals rest }
start=$(date +%s)
mkdir -p "$out"
summary_file="$out/summary.txt"
: > "$summary_file"

want() { [[ "$phases" == *" $1 "* ]]; }
elapsed() { echo $(($(date +%s) - start)); }
left() { echo $((deadline_s - $(elapsed))); }
note() { echo "$*" | tee -a "$summary_file"; }

# cuBLASLt (vendor GEMMs) is loaded at run time; CUDA installs keep it outside ld's path.
for d in /usr/local/cuda/lib64 /usr/local/cuda-*/targets/x86_64-linux/lib; do
  if [ -e "$d/libcublasLt.so" ] || ls "$d"/libcublasLt.so.* >/dev/null 2>&1; then
    export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
  fi
done

# Rough estimates, seconds, from the case counts and the per-case sampling budgets (0.5 s quick,
# 3 s full, per variant and mode; ~3 variants a case with the vendor providers; plus preparing
# inputs and the CPU references). They decide whether a step may start.
count() { "$bin" cases "$@" 2>/dev/null | wc -l; }
quick_cases=$(count --quick)
all_cases=$(count)
declare -A estimate=(
  [devices]=5
  [verify]=$((30 + 2 * quick_cases))
  [tests]=60
  [calibrate]=90
  [goals]=$((15 + quick_cases * 3 * 1))
  [rest]=$((30 + all_cases * 3 * 4))
  [benches]=120
)
echo "gpu-check: deadline ${deadline_s}s; rough estimates: verify ${estimate[verify]}s, tests ${estimate[tests]}s," \
  "calibrate ${estimate[calibrate]}s, goals ${estimate[goals]}s ($quick_cases cases)," \
  "rest ${estimate[rest]}s ($all_cases cases), benches ${estimate[benches]}s" | tee "$out/estimate.txt"

status=0
# step NAME COMMAND...: runs COMMAND with the time left, output to $OUT/NAME.txt, one summary line.
step() {
  local name=$1
  shift
  if ! want "$name"; then
    return 0
  fi
  local remaining
  remaining=$(left)
  if ((remaining < ${estimate[$name]:-1})); then
    note "$name: not started, ${remaining}s left of the deadline (needs ~${estimate[$name]}s)"
    status=1
    return 0
  fi
  local t0 rc
  t0=$(date +%s)
  timeout --signal=INT --kill-after=15 "$remaining" "$@" 2>&1 | tee "$out/$name.txt"
  rc=${PIPESTATUS[0]}
  local took=$(($(date +%s) - t0))
  case $rc in
    0) note "$name: ok (${took}s)" ;;
    124 | 130 | 137) note "$name: CUT at the deadline after ${took}s (what finished is written)"; status=1 ;;
    *) note "$name: FAILED, exit $rc (${took}s): see $out/$name.txt"; status=1 ;;
  esac
  return "$rc"
}

run_tests() {
  local t
  for t in "$tests_dir"/*; do
    [ -x "$t" ] || continue
    echo "== $(basename "$t") --ignored"
    "$t" --ignored --test-threads=1 || return 1
  done
}

run_benches() {
  local b
  for b in "$benches_dir"/*; do
    [ -x "$b" ] || continue
    CRITERION_HOME="$out/criterion" "$b" --bench --warm-up-time 1 --measurement-time 2 || return 1
  done
}

step devices "$bin" devices
devices_rc=$?
if want devices && [ "$devices_rc" -ne 0 ]; then
  note "no usable GPU: nothing else can run (exit $devices_rc)"
  exit "$devices_rc"
fi
"$bin" kernels > "$out/kernels.txt" 2>&1
# shellcheck disable=SC2086  # a list of suite names
step verify "$bin" verify ${ROOFBENCH_VERIFY_SUITES:-}
step tests run_tests
step calibrate "$bin" calibrate --quick --out "$out/results"
step goals "$bin" run --quick --out "$out/results" "$@"
step rest "$bin" run --out "$out/results" "$@"
step benches run_benches

# What passed, and the goal ratios of the runs.
{
  echo "--- after $(elapsed)s of ${deadline_s}s"
  grep -h "^verify: " "$out/verify.txt" 2>/dev/null
  grep -h "^test result: " "$out/tests.txt" 2>/dev/null | sort | uniq -c
  for goals in "$out"/results/*/runs/*/*-goals.json; do
    [ -e "$goals" ] && echo "goals: $goals" && cat "$goals"
  done
} | tee -a "$summary_file"
echo "gpu-check: exit $status; summary in $summary_file"
exit "$status"
