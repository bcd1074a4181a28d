#!/usr/bin/env python3
"""Vendor baselines for the attention suite, written as rows of roofbench's results schema.

Where PyTorch (and optionally FlashInfer) are installed, times on the same cases as
`roofbench run attention`:
  - torch SDPA with the cuDNN and FlashAttention backends (contiguous, padded KV),
  - FlashInfer's paged decode (HND pages, the same page size),
with CUDA events, the L2 flushed before every sample, the median of adaptive samples. Bytes and
FLOPs come from roofbench itself (`roofbench cases`), so the GB/s columns are comparable.

    roofbench cases attention --quick > cases.jsonl
    python3 scripts/baselines/attention.py cases.jsonl --out results/<gpu>/attention-baselines.csv

BF16/FP16 KV only (FP8 KV cases are skipped with a note). Uniform lengths only for SDPA (a padded
batch would read padding); FlashInfer takes any lengths.
"""
import argparse
import json
import math
import sys

from common import base_row, timed_row, write_rows

try:
    import torch
except ImportError:  # the script still documents itself and exits cleanly
    torch = None



def torch_dtype(name):
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)


def sdpa_runner(case, backend):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    lens = case["context_lens"]
    if len(set(lens)) != 1 or case["q_len"] != 1 or case["window"] or case["softcap"]:
        return None, "SDPA baseline: uniform lengths, q_len 1, no window/soft-cap only"
    b, hq, hk, d, ctx = case["batch"], case["q_heads"], case["kv_heads"], case["head_dim"], lens[0]
    dt = torch_dtype(case["q_dtype"])
    q = torch.randn(b, hq, 1, d, dtype=dt, device="cuda")
    k = torch.randn(b, hk, ctx, d, dtype=dt, device="cuda")
    v = torch.randn(b, hk, ctx, d, dtype=dt, device="cuda")
    sdp = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[backend]

    def run():
        with sdpa_kernel([sdp]):
            torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=case["softmax_scale"], enable_gqa=hq != hk)
    return run, ""


def flashinfer_runner(case):
    import flashinfer
    lens = case["context_lens"]
    b, hq, hk, d, page = case["batch"], case["q_heads"], case["kv_heads"], case["head_dim"], case["page_size"]
    if case["q_len"] != 1:
        return None, "FlashInfer decode baseline: q_len 1 only"
    dt = torch_dtype(case["q_dtype"])
    pages = [math.ceil(n / page) for n in lens]
    total = sum(pages)
    kv = torch.randn(total, 2, hk, page, d, dtype=dt, device="cuda")  # HND pages, K and V
    indices = torch.randperm(total, dtype=torch.int32, device="cuda")
    indptr = torch.tensor([0] + list(__import__("itertools").accumulate(pages)), dtype=torch.int32, device="cuda")
    last = torch.tensor([(n - 1) % page + 1 for n in lens], dtype=torch.int32, device="cuda")
    workspace = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(workspace, kv_layout="HND")
    wrapper.plan(indptr, indices, last, hq, hk, d, page, sm_scale=case["softmax_scale"],
                 logits_soft_cap=case["softcap"] or None, window_left=(case["window"] - 1) if case["window"] else -1,
                 q_data_type=dt, kv_data_type=dt)
    q = torch.randn(b, hq, d, dtype=dt, device="cuda")
    return (lambda: wrapper.run(q, kv)), ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", help="JSON lines from `roofbench cases attention ...`")
    ap.add_argument("--out", required=True, help="CSV to write (roofbench's results schema)")
    args = ap.parse_args()
    if torch is None or not torch.cuda.is_available():
        print("attention baselines skipped: PyTorch with CUDA is not available")
        return 0
    try:
        import flashinfer  # noqa: F401
        have_flashinfer = True
    except ImportError:
        have_flashinfer = False
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
    base = base_row("attention", torch)
    rows = []
    for line in open(args.cases):
        case = json.loads(line)
        if case["kv_dtype"] not in ("bf16", "fp16") or case["q_dtype"] != case["kv_dtype"]:
            continue
        providers = [("sdpa_cudnn", "torch", lambda c: sdpa_runner(c, "cudnn")),
                     ("sdpa_flash", "torch", lambda c: sdpa_runner(c, "flash"))]
        if have_flashinfer:
            providers.append(("flashinfer_paged_decode", "flashinfer", flashinfer_runner))
        for kernel, provider, make in providers:
            row = dict(base, case=case["name"], kernel=kernel, provider=provider, dtype=case["dtype"],
                       params=case["params"], bytes=case["bytes"], flops=case["flops"])
            row = timed_row(row, lambda: make(case), l2)
            if row["status"] == "ok":
                row["tokens_per_s"] = case["batch"] * case["q_len"] / (row["median_us"] * 1e-6)
            rows.append(row)
            print(f"{case['name']:<48} {kernel:<26} {row.get('median_us', '-')}", file=sys.stderr)
    write_rows(args.out, rows)
    print(f"{len(rows)} baseline rows in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
