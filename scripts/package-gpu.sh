#!/usr/bin/env bash
# Builds everything a GPU node without Rust needs into dist/gpu/ (git-ignored):
#   bin/roofbench, tests/<name> (test executables), benches/<name>, run-all.sh
# Copy dist/gpu (or dist/gpu.tar.xz) to the node and run gpu/run-all.sh. With the device tool:
#   carry ["dist/gpu.tar.xz"], command "tar xJf dist/gpu.tar.xz -C /tmp && OUT=$OUT /tmp/gpu/run-all.sh"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-cuda.sh
export ROOFBENCH_REQUIRE_KERNELS=1
dist=dist/gpu
rm -rf "$dist" dist/gpu.tar.xz dist/gpu-benches.tar.xz && mkdir -p "$dist/bin" "$dist/tests" "$dist/benches"

cargo build --release --locked --bins
cp target/release/roofbench "$dist/bin/"
strip --strip-all "$dist/bin/roofbench"   # the device tool carries at most 64 MiB

# Executable paths from cargo's JSON messages; copied under stable names (no hash suffix).
collect() {  # $1: destination folder, $2: target kinds to keep (comma-separated); stdin: cargo JSON
  python3 -c '
import json, os, shutil, subprocess, sys
dest, kinds = sys.argv[1], sys.argv[2].split(",")
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    exe = msg.get("executable")
    if msg.get("reason") != "compiler-artifact" or not exe:
        continue
    kind, name = msg["target"]["kind"][0], msg["target"]["name"]
    # Only harnesses with GPU tests travel (the CPU-only ones ran here; every executable embeds
    # all kernels, so each one costs megabytes of the carry limit).
    gpu_tests = kind == "lib" or (kind == "test" and name == "gpu")
    if kind in kinds and (kind == "bench" or (msg["profile"]["test"] and gpu_tests)):
        name = kind + "-" + name if kind in ("lib", "bin") else name
        shutil.copy2(exe, os.path.join(dest, name))
        subprocess.run(["strip", "--strip-all", os.path.join(dest, name)], check=True)
        print("  " + os.path.join(dest, name))
' "$1" "$2"
}
echo "test executables:"
cargo test --release --locked --no-run --message-format=json 2>/dev/null | collect "$dist/tests" lib,bin,test
echo "bench executables:"
cargo bench --locked --no-run --message-format=json 2>/dev/null | collect "$dist/benches" bench

cat > "$dist/run-all.sh" <<'RUN'
#!/usr/bin/env bash
# On a GPU node: device facts, every correctness check, the GPU tests, calibration, the suites
# (measured against the fresh ceilings), the benches. Results go to $OUT (default ./out):
# verify.txt, tests.txt, calibrate.txt, results/<gpu>/ceilings.json, results/<gpu>/runs/<start>/{*.csv,*.json,*.svg}, criterion/.
# Arguments go to `roofbench run` (e.g. --quick, or a suite and its --case list).
# ROOFBENCH_PHASES picks steps (default: all of "verify tests calibrate run benches"), so a
# session with a per-call time limit can spread them over calls, e.g.
#   ROOFBENCH_PHASES="verify tests" run-all.sh;  ROOFBENCH_PHASES="calibrate run" run-all.sh --quick
# ROOFBENCH_VERIFY_SUITES limits `verify` to some suites (e.g. "gemm"); results of earlier calls
# in the same $OUT are kept (calibration is reused by `run`).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$PWD/out}
phases=" ${ROOFBENCH_PHASES:-verify tests calibrate run benches} "
[ "${ROOFBENCH_SKIP_BENCHES:-0}" = 1 ] && phases=${phases/ benches / }
want() { [[ "$phases" == *" $1 "* ]]; }
mkdir -p "$out"
status=0
# cuBLASLt (vendor GEMMs) is loaded at run time; CUDA installs keep it outside ld's path.
for d in /usr/local/cuda/lib64 /usr/local/cuda-*/targets/x86_64-linux/lib; do
  [ -e "$d/libcublasLt.so" ] || ls "$d"/libcublasLt.so.* >/dev/null 2>&1 && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
# No GPU: roofbench's own "no GPU" exit code (3), passed on.
"$here/bin/roofbench" devices | tee "$out/devices.txt" || exit 3
"$here/bin/roofbench" kernels > "$out/kernels.txt"
if want verify; then
  # shellcheck disable=SC2086  # a list of suite names
  "$here/bin/roofbench" verify ${ROOFBENCH_VERIFY_SUITES:-} 2>&1 | tee "$out/verify.txt" || status=1
fi
if want tests; then
  for t in "$here"/tests/*; do
    echo "== $(basename "$t") --ignored"
    "$t" --ignored --test-threads=1 || status=1
  done 2>&1 | tee "$out/tests.txt"
  grep -q "FAILED\|panicked" "$out/tests.txt" && status=1
fi
if want calibrate; then
  "$here/bin/roofbench" calibrate --out "$out/results" 2>&1 | tee "$out/calibrate.txt" || status=1
fi
if want run; then
  "$here/bin/roofbench" run --out "$out/results" "$@" || status=1
fi
if want benches; then
  for b in "$here"/benches/*; do
    [ -x "$b" ] || continue  # benches travel in their own archive (see below)
    CRITERION_HOME="$out/criterion" "$b" --bench --warm-up-time 1 --measurement-time 2 || status=1
  done 2>&1 | tee "$out/benches.txt"
fi
echo "run-all: phases${phases% }, exit $status (outputs in $out)"
exit $status
RUN
chmod +x "$dist/run-all.sh"
# Compressed archives for the device tool's carry (64 MiB per call at most): every executable
# embeds every kernel, so all of them together no longer fit. dist/gpu.tar.xz holds the CLI and
# the GPU tests; dist/gpu-benches.tar.xz the Criterion benches (unpack it over the same DIR in a
# later call). On the node: tar xJf dist/gpu.tar.xz -C DIR.
tar -C dist -cJf dist/gpu.tar.xz --exclude=gpu/benches gpu
tar -C dist -cJf dist/gpu-benches.tar.xz gpu/benches
for a in dist/gpu.tar.xz dist/gpu-benches.tar.xz; do
  size=$(stat -c %s "$a")
  [ "$size" -le $((64 << 20)) ] || echo "WARNING: $a is $((size >> 20)) MiB, over the 64 MiB carry"
done
echo "packaged into $dist ($(du -sh "$dist" | cut -f1)): dist/gpu.tar.xz ($(du -h dist/gpu.tar.xz | cut -f1)), dist/gpu-benches.tar.xz ($(du -h dist/gpu-benches.tar.xz | cut -f1))"
echo "ldd of the CLI (should be libc, libm, libgcc_s only):"
ldd "$dist/bin/roofbench" | sed 's/^/  /'
