#!/usr/bin/env bash
# Installs a pinned nvcc (CUDA 13.0) from NVIDIA's PyPI wheels into the repo-local, git-ignored
# folder .cuda/. No CUDA toolkit, driver or GPU is needed: this is only the compiler that build.rs
# uses to embed the kernels. Idempotent: returns at once when the pinned version is already there.
#
#   scripts/install-cuda.sh            # installs into <repo>/.cuda
#   CUDA_LOCAL_DIR=/opt/x scripts/install-cuda.sh
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${CUDA_LOCAL_DIR:-$repo/.cuda}
nvcc="$dest/nvidia/cu13/bin/nvcc"
want="V13.0.88"

# Pins: nvvm must match nvcc (an unpinned one emits PTX the 13.0 driver rejects); cccl supplies
# <nv/target>, which cuda_fp16.h / cuda_bf16.h / cuda_fp8.h include.
packages=(
  "nvidia-cuda-nvcc==13.0.88"
  "nvidia-cuda-runtime==13.0.96"
  "nvidia-cuda-crt==13.0.88"
  "nvidia-nvvm==13.0.88"
  "nvidia-cuda-cccl==13.0.*"
)

if [ -x "$nvcc" ] && "$nvcc" --version 2>/dev/null | grep -q "$want"; then
  echo "nvcc $want already installed at $nvcc"
  exit 0
fi

python=${PYTHON:-$(command -v python3 || command -v python || true)}
if [ -z "$python" ]; then
  echo "error: python3 with pip is needed to install nvcc from PyPI wheels" >&2
  exit 1
fi

echo "installing nvcc $want into $dest ..."
rm -rf "$dest"
"$python" -m pip install --quiet --disable-pip-version-check --no-cache-dir --root-user-action=ignore \
  --target "$dest" "${packages[@]}"

if ! "$nvcc" --version | grep -q "$want"; then
  echo "error: $nvcc is not $want after install" >&2
  exit 1
fi
echo "nvcc $want installed: $nvcc"
