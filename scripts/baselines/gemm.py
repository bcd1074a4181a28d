#!/usr/bin/env python3
"""PyTorch baselines for the gemm suite, written as rows of roofbench's results schema.

Where PyTorch with CUDA is installed, times the same cases as `roofbench run gemm` through the
calls `../shared/anchors.md` was measured with:
  - bf16: torch.matmul (cuBLAS/cuBLASLt),
  - e4m3 per-tensor and per-token x per-channel: torch._scaled_mm (cuBLASLt FP8), twice: kernel
    `torch` with use_fast_accum=False (partial sums promoted to f32, like roofbench's
    `wgmma-promoted` and cuBLASLt's default) and `torch fast-accum` with use_fast_accum=True (the
    sum kept in the FP8 tensor-core accumulator, like `wgmma` and `cublasLt fp8-e4m3 fast-accum`),
  - int8: torch._int_mm (cuBLASLt IMMA, int32 out; scales not applied),
with CUDA events, the L2 flushed before every sample, the median of adaptive samples. Bytes and
FLOPs come from roofbench itself (`roofbench cases gemm`), so the TFLOPS columns are comparable.

    roofbench cases gemm --quick > cases.jsonl
    python3 scripts/baselines/gemm.py cases.jsonl --out results/<gpu>/gemm-baselines.csv

E5M2 x E5M2, block-128 scales, weight-only GEMMs and quantizer cases have no torch call here:
those rows are skipped with a note. Inputs are random; outputs are not checked (roofbench's own
cuBLASLt provider is verified in `roofbench run gemm`).
"""
import argparse
import json
import sys

from common import base_row, timed_row, write_rows

try:
    import torch
except ImportError:  # the script still documents itself and exits cleanly
    torch = None


def fp8_case(case):
    """Whether torch runs the case as an FP8 _scaled_mm (then with and without fast accumulation)."""
    return case["inputs"] == "e4m3" and case["scheme"] in ("per-tensor", "per-token-channel")


def runner(case, fast_accum=False):
    """A closure that runs the case's GEMM once, or (None, why)."""
    m, n, k = case["m"], case["n"], case["k"]
    inputs, scheme = case["inputs"], case["scheme"]
    if "op=gemm" not in case["params"]:
        return None, "quantizer cases have no torch baseline"
    if case["bias"]:
        return None, "bias: no torch baseline"
    dev = "cuda"
    if inputs == "bf16":
        x = torch.randn(m, k, dtype=torch.bfloat16, device=dev)
        w = torch.randn(n, k, dtype=torch.bfloat16, device=dev)
        return (lambda: torch.matmul(x, w.t())), ""
    if fp8_case(case):
        x = torch.randn(m, k, device=dev).to(torch.float8_e4m3fn)
        w = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn)
        if scheme == "per-tensor":
            sx = torch.ones((), device=dev)
            sw = torch.ones((), device=dev)
        else:
            sx = torch.ones(m, 1, device=dev)
            sw = torch.ones(1, n, device=dev)
        return (lambda: torch._scaled_mm(x, w.t(), scale_a=sx, scale_b=sw, out_dtype=torch.bfloat16,
                                         use_fast_accum=fast_accum)), ""
    if inputs == "int8":
        x = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=dev)
        w = torch.randint(-127, 128, (n, k), dtype=torch.int8, device=dev)
        return (lambda: torch._int_mm(x, w.t())), ""
    return None, f"{inputs}/{scheme}: no torch call in this script"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", help="JSON lines from `roofbench cases gemm ...`")
    ap.add_argument("--out", required=True, help="CSV to write (roofbench's results schema)")
    args = ap.parse_args()
    if torch is None or not torch.cuda.is_available():
        print("gemm baselines skipped: PyTorch with CUDA is not available")
        return 0
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
    base = base_row("gemm", torch)
    rows = []
    for line in open(args.cases):
        case = json.loads(line)
        # Each of our FP8 kernels has a torch row that sums the same way (see the docstring).
        accums = [("torch", False)] + ([("torch fast-accum", True)] if fp8_case(case) else [])
        for kernel, fast in accums:
            row = dict(base, case=case["name"], kernel=kernel, provider="torch", dtype=case["dtype"],
                       params=case["params"], bytes=case["bytes"], flops=case["flops"])
            row = timed_row(row, lambda: runner(case, fast), l2)
            torch.cuda.empty_cache()  # the next case may need the memory this one's inputs held
            rows.append(row)
            print(f"{case['name']:<56} {kernel:<17} {row.get('median_us', '-')}", file=sys.stderr)
    write_rows(args.out, rows)
    print(f"{len(rows)} baseline rows in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
