#!/usr/bin/env bash
# Builds everything a GPU node without Rust needs into dist/gpu/ (git-ignored):
#   bin/roofbench, tests/<name> (test executables), benches/<name>, gpu-check.sh
# Copy dist/gpu (or dist/gpu.tar.xz) to the node and run gpu/gpu-check.sh. With the device tool:
#   carry ["dist/gpu.tar.xz"], command "tar xJf dist/gpu.tar.xz -C /tmp && OUT=$OUT /tmp/gpu/gpu-check.sh"
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

# The one command a GPU session runs (ordered by value, stops at a deadline; see its header).
cp scripts/gpu-check.sh "$dist/gpu-check.sh"
# Compressed archives for the device tool's carry (64 MiB per call at most): every executable
# embeds every kernel, so all of them together no longer fit. dist/gpu.tar.xz holds the CLI and
# the GPU tests; dist/gpu-benches.tar.xz the Criterion benches (unpack it over the same DIR in a
# later call). On the node: tar xJf dist/gpu.tar.xz -C DIR.
tar -C dist -cJf dist/gpu.tar.xz --exclude=gpu/benches gpu
tar -C dist -cJf dist/gpu-benches.tar.xz gpu/benches
for a in dist/gpu.tar.xz dist/gpu-benches.tar.xz; do
  size=$(stat -c %s "$a")
  [ "$size" -le $((60 << 20)) ] || echo "WARNING: $a is $((size >> 20)) MiB, over the 60 MiB budget (the carry holds 64)"
done
echo "packaged into $dist ($(du -sh "$dist" | cut -f1)): dist/gpu.tar.xz ($(du -h dist/gpu.tar.xz | cut -f1)), dist/gpu-benches.tar.xz ($(du -h dist/gpu-benches.tar.xz | cut -f1))"
echo "ldd of the CLI (should be libc, libm, libgcc_s only):"
ldd "$dist/bin/roofbench" | sed 's/^/  /'
