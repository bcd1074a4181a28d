"""What the vendor baseline scripts share: roofbench's CSV columns, cold timing, the CSV writer."""
import csv
import datetime
import math
import statistics
import subprocess

COLUMNS = [  # the CSV header of roofbench's results (src/report/row.rs), in order
    "suite", "case", "kernel", "provider", "dtype", "params", "mode", "status", "samples", "median_us",
    "p10_us", "p90_us", "mean_us", "stdev_us", "rel_ci", "launches_per_sample", "bytes", "flops", "gbps",
    "tflops", "ceiling", "ceiling_source", "ceiling_value", "pct_of_ceiling", "bound_us", "pct_of_spec",
    "pct_of_copy", "tokens_per_s", "verified", "max_rel_err", "sqnr_db", "kernel_sqnr_db",
    "speedup_vs_bf16", "speedup_vs_cublaslt_bf16", "clock_warning", "gpu", "sm_clock_mhz",
    "mem_clock_mhz", "driver", "cuda", "commit", "timestamp", "note",
]


def time_cold(fn, l2_bytes, budget_s=2.0, min_samples=10, target_rel_ci=0.01):
    """Median µs of `fn` with the L2 flushed (written, then read) before each sample."""
    import torch
    flush = torch.empty(max(2 * l2_bytes, 8 << 20) // 4, dtype=torch.int32, device="cuda")
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(3):
        fn()
    samples, t0 = [], datetime.datetime.now()
    while True:
        flush.fill_(len(samples))
        flush.sum()
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1e3)
        n = len(samples)
        if n >= min_samples:
            s = sorted(samples)
            half = 1.96 * math.sqrt(n) / 2
            lo, hi = s[max(0, int(n / 2 - half))], s[min(n - 1, int(math.ceil(n / 2 + half)))]
            if (hi - lo) / (2 * statistics.median(s)) <= target_rel_ci:
                break
        if (datetime.datetime.now() - t0).total_seconds() > budget_s and n >= 3:
            break
    s = sorted(samples)
    q = statistics.quantiles(s, n=10) if len(s) >= 2 else [s[0]] * 9
    return {"samples": len(s), "median_us": statistics.median(s), "p10_us": q[0], "p90_us": q[-1],
            "mean_us": statistics.mean(s), "stdev_us": statistics.pstdev(s)}


def write_rows(path, rows):
    """Writes `rows` (dicts) as a CSV with roofbench's columns, blanks for missing ones."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in COLUMNS})


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def base_row(suite, torch):
    """The fields every baseline row of a run shares: the device, CUDA, commit, method."""
    props = torch.cuda.get_device_properties(0)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    return {"suite": suite, "mode": "cold", "gpu": props.name, "cuda": torch.version.cuda, "commit": commit,
            "launches_per_sample": 1, "ceiling": "none (baseline)", "verified": "false",
            "note": f"torch {torch.__version__}; not checked against roofbench's reference"}


def timed_row(row, make, l2_bytes):
    """`row` with the cold timing of the closure `make()` returns, GB/s and TFLOPS from the row's
    bytes and flops; or a skipped row with the reason (`make()` -> (None, why), or an exception:
    a call that cannot run a case is a skipped row, not a crash)."""
    row = dict(row, timestamp=now())
    try:
        run, why = make()
        if run is None:
            return dict(row, status="skipped", note=why)
        t = time_cold(run, l2_bytes)
        seconds = t["median_us"] * 1e-6
        return dict(row, **t, status="ok", gbps=row["bytes"] / seconds / 1e9,
                    tflops=row["flops"] / seconds / 1e12)
    except Exception as e:
        return dict(row, status="skipped", note=f"{type(e).__name__}: {e}")
