#!/usr/bin/env python3
"""Host-side model of the Hopper GEMM kernel `kernels/gemm/wgmma.cu` (no GPU needed).

What it checks
--------------
1. Data path, per CTA of the persistent grid, following the kernel's own index arithmetic:
   - TMA 2-D tiled loads with CU_TENSOR_MAP_SWIZZLE_128B into a byte-addressed model of shared
     memory: box row r, byte c lands at dst + 128 r + 16 ((c / 16) ^ (r % 8)) + c % 16 (the
     16-byte chunk index XORed with the row within each 1024-byte atom of 8 rows x 128 bytes);
     out-of-bounds elements (rows >= M or N, columns >= K) are zeros. The destination must be
     1024-byte aligned (asserted).
   - The dynamic shared memory base is deliberately not 1024-aligned; the kernel's own alignment
     step and its layout (A stages, B stages, epilogue buffers, barriers) are replayed.
   - The wgmma matrix descriptors the consumers build (rb::wgmma_desc_sw128 plus the per-stage
     and per-k-step start-address offsets, added to the 64-bit descriptor exactly as the kernel
     does), decoded field by field (start bits 0-13, LBO 16-29, SBO 32-45, base offset 49-51,
     swizzle 62-63), and the addresses a K-major SW128 wgmma reads: row r, byte b of the 32-byte
     K step at start + (r / 8) SBO + (r % 8) 128 + b, then the 128B swizzle applied to the
     address (bits 4-6 ^= bits 7-9). Every element each wgmma reads is compared with the X or W
     element it must be (or a zero fill), and the products are accumulated exactly (int64).
   - The m64nN D fragment (thread t, register i -> row 16 (t / 32) + (t % 32) / 4 + 8 ((i % 4) / 2),
     column 8 (i / 4) + 2 (t % 4) + i % 2, the PTX ISA layout), checked to be a bijection, then
     the kernel's epilogue replayed: scale modes 0-3, bias, the promoted (per-128-K f32) and
     block-128 accumulation, bf16 rounding, the staging buffer (144-byte pitch) and the 16-byte /
     scalar global stores with their bounds. Y starts as NaN; every element of [M][N] must be
     written exactly once, nothing outside it, and match a float64 reference (1 bf16 ulp).
   - The grouped persistent raster: every tile visited exactly once over all CTAs.
2. Pipeline bookkeeping (stage, phase) across persistent tiles, as a randomised interleaving of
   the producer thread, the 8 consumer warps and asynchronous TMA completions on modelled
   mbarriers (pending arrivals, tx-count, phase; a parity wait passes once the phase with that
   parity has completed). It checks: no deadlock; a consumer only reads a stage holding its own
   step's data; TMA never overwrites a stage whose wgmmas may still read it (a wgmma group is
   taken to run until the wgmma.wait_group that guarantees its completion).
3. The exact int32 -> f32 conversion of INT8 block-128 partial sums (rb::small_s32_to_f32 in
   kernels/common/dtype.cuh, used by wgmma.cu and mma_gemm.cuh): an integer add of 0x4B400000 to
   the bits, then a float32 subtract of 12582912.0, evaluated bit for bit in numpy float32 (IEEE
   round to nearest even, as FADD.RN) for every p in [-2^22, 2^22]; that range holds every
   partial a 128-wide K block of int8 codes can produce (|p| <= 128 * 128^2 = 2^21); and the
   conversion is shown to fail just past 2^22 (the bound is the real one). The s8 block-128 data
   path converts its partials the same way.
4. Fault injection (--break NAME, or --self-test for all): deliberate bugs that the checks above
   must catch: swizzle (wgmma reads without the XOR), koffset (k step offset in bytes instead of
   16-byte units), fragment (epilogue row halves swapped), parity (producer waits on the wrong
   empty parity), early-release (consumer frees a stage before its wgmmas are known complete),
   magic (the conversion's constant off by one: 0x4B400001).

What it does not model: real FP8/BF16 arithmetic and tensor-core rounding (inputs are small
integers, sums exact), instruction timing, memory-model/proxy subtleties beyond the barrier
protocol, bank conflicts, register allocation, and whether hardware honours the descriptor model
above (taken from the PTX ISA and the layout public Hopper kernels use).

Run:  python3 scripts/sim/wgmma_sim.py            (all shapes + pipeline, ~1 min)
      python3 scripts/sim/wgmma_sim.py --self-test (also shows each injected fault is caught)
      python3 scripts/sim/wgmma_sim.py --break swizzle   (expect a failure)
Requires numpy.
"""
import argparse
import random
import sys

import numpy as np

# ---- constants of kernels/gemm/wgmma.cu -------------------------------------------------------
BM = 128
ROW_BYTES = 128
STEP_BYTES = 32
KSTEPS = ROW_BYTES // STEP_BYTES
CONSUMER_WARPS = 8
GROUP_M = 8
EPI_COLS = 64
EPI_PITCH = EPI_COLS * 2 + 16
EPI_BYTES = 64 * EPI_PITCH
# rb::small_s32_to_f32 (kernels/common/dtype.cuh)
MAGIC_BITS = 0x4B400000
MAGIC_FLOAT = 12582912.0
MAGIC_EXACT_BOUND = 1 << 22
BLOCK_K = 128     # K elements of one block-128 partial sum
INT8_MAX_ABS = 128  # |code| bound the kernel relies on (the quantizer emits [-127, 127])

BREAK = set()


class SimError(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise SimError(msg)


class Config:
    """Config<In, BN> of the kernel."""

    def __init__(self, bn, elem_bytes, promote, int8=False):
        assert bn in (128, 256)
        self.int8 = int8  # int32 accumulators: block partials go through small_s32_to_f32
        self.bn = bn
        self.eb = elem_bytes
        self.promote = promote  # "none", "sum", "block"
        self.regs = bn // 2
        self.bk = ROW_BYTES // elem_bytes
        self.stages = 4 if bn == 256 else 6
        self.stage_a = BM * ROW_BYTES
        self.stage_b = bn * ROW_BYTES
        self.off_b = self.stages * self.stage_a
        self.off_epi = self.off_b + self.stages * self.stage_b
        self.off_full = self.off_epi + 2 * EPI_BYTES
        self.off_empty = self.off_full + self.stages * 8
        self.smem_bytes = self.off_empty + self.stages * 8 + 1024
        check(self.smem_bytes <= 232448, "smem over the H100 limit")
        if promote == "block":
            check(bn == 128 and elem_bytes == 1, "block-128 needs BN = 128, 8-bit")
        if promote != "none":
            check(self.bk == 128, "promotion every 128 of K")

    def rust_shared_bytes(self):
        # Tile::shared_bytes of src/gemm/paths/wgmma.rs
        return self.stages * (BM + self.bn) * ROW_BYTES + 2 * EPI_BYTES + 2 * self.stages * 8 + 1024


# ---- bf16 ---------------------------------------------------------------------------------------
def bf16_round(x):
    """Round float64 -> float32 -> bf16 (nearest even), returned as float64."""
    f = np.asarray(x, dtype=np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    out = rounded.astype(np.uint32).view(np.float32).astype(np.float64)
    return np.where(np.isnan(f), np.nan, out)


# ---- int32 -> f32 conversion of block partial sums -------------------------------------------
def small_s32_to_f32(p):
    """rb::small_s32_to_f32: bits = p + MAGIC_BITS (integer add), then a float32 subtract."""
    magic = MAGIC_BITS + (1 if "magic" in BREAK else 0)
    bits = (np.asarray(p, dtype=np.int64) + magic).astype(np.uint32)
    return bits.view(np.float32) - np.float32(MAGIC_FLOAT)


def conversion_check():
    """Exact over the range the kernels use it in; not exact just past it."""
    check(BLOCK_K * INT8_MAX_ABS ** 2 <= MAGIC_EXACT_BOUND,
          "a block's int8 partial can exceed the conversion's exact range")
    check(np.float32(MAGIC_FLOAT).view(np.uint32) == MAGIC_BITS, "MAGIC_FLOAT is not MAGIC_BITS")
    p = np.arange(-MAGIC_EXACT_BOUND, MAGIC_EXACT_BOUND + 1, dtype=np.int64)
    got = small_s32_to_f32(p)
    bad = np.flatnonzero(got.astype(np.float64) != p)
    check(bad.size == 0, f"int32 -> f32 conversion inexact for {bad.size} values, first p = "
          f"{p[bad[0]] if bad.size else None} -> {got[bad[0]] if bad.size else None}")
    past = np.array([MAGIC_EXACT_BOUND + 1, -MAGIC_EXACT_BOUND - 3])
    check((small_s32_to_f32(past).astype(np.float64) != past).all(),
          "the conversion is exact past 2^22: the stated bound is not the real one")


# ---- scheduler ----------------------------------------------------------------------------------
def tile_coords(tile, tiles_m, tiles_n):
    per_group = GROUP_M * tiles_n
    group = tile // per_group
    first_m = group * GROUP_M
    rows = min(tiles_m - first_m, GROUP_M)
    in_group = tile - group * per_group
    return first_m + in_group % rows, in_group // rows


def advance(stage, phase, stages):
    stage += 1
    if stage == stages:
        return 0, phase ^ 1
    return stage, phase


# ---- shared memory model ------------------------------------------------------------------------
class Smem:
    """Each byte holds (source, row, element, byte-of-element); source 0 = zero fill, -1 unset."""

    def __init__(self, size):
        self.src = np.full(size, -1, dtype=np.int64)
        self.row = np.zeros(size, dtype=np.int64)
        self.col = np.zeros(size, dtype=np.int64)
        self.byt = np.zeros(size, dtype=np.int64)


def tma_load_2d_sw128(smem, dst, src_id, rows, cols, eb, box_rows, box_cols, c0, c1):
    """cp.async.bulk.tensor.2d with a SWIZZLE_128B map of a row-major [rows][cols] tensor."""
    check(dst % 1024 == 0, f"TMA SW128 destination {dst:#x} not 1024-byte aligned")
    check(box_cols * eb <= 128 and (box_cols * eb) % 16 == 0, "box inner extent")
    r = np.arange(box_rows)[:, None]
    c = np.arange(box_cols * eb)[None, :]
    grow = c1 + r
    gel = c0 + c // eb
    inb = (grow < rows) & (gel < cols) & (grow >= 0) & (gel >= 0)
    addr = dst + r * 128 + (((c // 16) ^ (r % 8)) * 16) + c % 16
    addr = np.broadcast_to(addr, inb.shape)
    smem.src[addr] = np.where(inb, src_id, 0)
    smem.row[addr] = np.broadcast_to(grow, inb.shape)
    smem.col[addr] = np.broadcast_to(gel, inb.shape)
    smem.byt[addr] = np.broadcast_to(c % eb, inb.shape)
    return box_rows * box_cols * eb  # bytes counted by complete_tx, OOB fill included


def desc_sw128(addr):
    """rb::wgmma_desc_sw128 of kernels/common/wgmma.cuh."""
    return ((addr & 0x3FFFF) >> 4) | (1 << 16) | ((1024 >> 4) << 32) | (1 << 62)


def decode_desc(desc):
    desc &= (1 << 64) - 1
    return {
        "start": (desc & 0x3FFF) << 4,
        "lbo": ((desc >> 16) & 0x3FFF) << 4,
        "sbo": ((desc >> 32) & 0x3FFF) << 4,
        "base_offset": (desc >> 49) & 7,
        "swizzle": (desc >> 62) & 3,
        "junk": desc & ~((0x3FFF) | (0x3FFF << 16) | (0x3FFF << 32) | (7 << 49) | (3 << 62)),
    }


def wgmma_operand_addresses(desc, rows):
    """Byte addresses a K-major SW128 wgmma reads: rows x 32 bytes of K."""
    d = decode_desc(desc)
    check(d["junk"] == 0, f"descriptor has bits outside its fields: {desc:#x}")
    check(d["swizzle"] == 1, f"descriptor swizzle mode {d['swizzle']} is not 128B (1)")
    check(d["base_offset"] == 0, "descriptor base offset is not 0")
    check(d["sbo"] == 1024, f"SBO {d['sbo']} is not 1024 (8 rows of 128 bytes)")
    r = np.arange(rows)[:, None]
    b = np.arange(STEP_BYTES)[None, :]
    addr = d["start"] + (r // 8) * d["sbo"] + (r % 8) * 128 + b
    if "swizzle" not in BREAK:
        addr = addr ^ (((addr >> 7) & 7) << 4)
    return addr


def gather_operand(smem, addr, eb, src_id, want_rows, want_cols, nrows_tensor, ncols_tensor):
    """The elements at `addr` ([rows][32 bytes]); checks each is the expected one."""
    src = smem.src[addr]
    check((src >= 0).all(), "wgmma read shared memory no TMA wrote")
    rows, nbytes = addr.shape
    el = nbytes // eb
    src = src.reshape(rows, el, eb)
    row = smem.row[addr].reshape(rows, el, eb)
    col = smem.col[addr].reshape(rows, el, eb)
    byt = smem.byt[addr].reshape(rows, el, eb)
    check((byt == np.arange(eb)[None, None, :]).all(), "element bytes out of order")
    inb = (want_rows < nrows_tensor) & (want_cols < ncols_tensor)
    for k in range(eb):
        check((np.where(inb, src[:, :, k] == src_id, src[:, :, k] == 0)).all(),
              "wgmma read an element from the wrong place (zero fill vs data)")
        check((np.where(inb, (row[:, :, k] == want_rows) & (col[:, :, k] == want_cols),
                        True)).all(), "wgmma read the wrong element")
    return inb, row[:, :, 0], col[:, :, 0]


def d_fragment_layout(n):
    """PTX m64nN D layout: (thread, reg) -> (row, col) arrays [128][n/2]."""
    t = np.arange(128)[:, None]
    i = np.arange(n // 2)[None, :]
    warp, lane = t // 32, t % 32
    row = 16 * warp + lane // 4 + 8 * ((i % 4) // 2)
    col = 8 * (i // 4) + 2 * (lane % 4) + i % 2
    return row, col


# ---- the kernel, one CTA at a time --------------------------------------------------------------
def run_kernel(cfg, m, n, k, x, w, sx, sw, bias, scale_mode, sms, y, writes, raw_base=0x80):
    tiles_m = -(-m // BM)
    tiles_n = -(-n // cfg.bn)
    tiles = tiles_m * tiles_n
    k_blocks = -(-k // cfg.bk)
    grid = min(sms, tiles)
    visited = []
    frag_row, frag_col = d_fragment_layout(cfg.bn)
    flat = frag_row * cfg.bn + frag_col
    check(np.array_equal(np.sort(flat.ravel()), np.arange(64 * cfg.bn)),
          "D fragment layout is not a bijection")
    for cta in range(grid):
        smem = Smem(raw_base + cfg.smem_bytes)
        check(cfg.smem_bytes == cfg.rust_shared_bytes(), "Rust shared_bytes != kernel kSmemBytes")
        base = raw_base + ((1024 - (raw_base & 1023)) & 1023)
        check(base + cfg.off_empty + cfg.stages * 8 <= raw_base + cfg.smem_bytes,
              "layout runs past the dynamic shared memory")
        p_stage, p_phase = 0, 0  # producer
        c_stage, c_phase = 0, 0  # consumers (both walk the same sequence)
        for tile in range(cta, tiles, grid):
            tm, tn = tile_coords(tile, tiles_m, tiles_n)
            visited.append((tm, tn))
            acc = [np.zeros((128, cfg.regs), dtype=np.int64) for _ in range(2)]
            sums = [np.zeros((128, cfg.regs), dtype=np.float64) for _ in range(2)]
            for kb in range(k_blocks):
                # producer: two boxes into stage p_stage
                check(p_stage == c_stage and p_phase == c_phase, "producer/consumer step disagree")
                a_dst = base + p_stage * cfg.stage_a
                b_dst = base + cfg.off_b + p_stage * cfg.stage_b
                tx = tma_load_2d_sw128(smem, a_dst, 1, m, k, cfg.eb, BM, cfg.bk, kb * cfg.bk, tm * BM)
                tx += tma_load_2d_sw128(smem, b_dst, 2, n, k, cfg.eb, cfg.bn, cfg.bk, kb * cfg.bk,
                                        tn * cfg.bn)
                check(tx == cfg.stage_a + cfg.stage_b, "expect_tx bytes != bytes the TMA delivers")
                p_stage, p_phase = advance(p_stage, p_phase, cfg.stages)
                for cons in range(2):
                    desc_a0 = desc_sw128(base + cons * 64 * ROW_BYTES)
                    desc_b0 = desc_sw128(base + cfg.off_b)
                    if cfg.promote != "none":
                        acc[cons][:] = 0  # scale-d = 0 on the first k step of every k-block
                    elif kb == 0:
                        acc[cons][:] = 0
                    d = np.zeros((64, cfg.bn), dtype=np.int64)
                    for s in range(KSTEPS):
                        k_off = (s * STEP_BYTES) if "koffset" in BREAK else (s * STEP_BYTES) >> 4
                        da = desc_a0 + ((c_stage * cfg.stage_a) >> 4) + k_off
                        db = desc_b0 + ((c_stage * cfg.stage_b) >> 4) + k_off
                        ka = kb * cfg.bk + s * (STEP_BYTES // cfg.eb) + np.arange(STEP_BYTES // cfg.eb)
                        arows = tm * BM + cons * 64 + np.arange(64)
                        brows = tn * cfg.bn + np.arange(cfg.bn)
                        ina, _, _ = gather_operand(smem, wgmma_operand_addresses(da, 64), cfg.eb, 1,
                                                   arows[:, None], ka[None, :], m, k)
                        inb, _, _ = gather_operand(smem, wgmma_operand_addresses(db, cfg.bn), cfg.eb,
                                                   2, brows[:, None], ka[None, :], n, k)
                        av = np.where(ina, x[np.minimum(arows, m - 1)][:, np.minimum(ka, k - 1)], 0)
                        bv = np.where(inb, w[np.minimum(brows, n - 1)][:, np.minimum(ka, k - 1)], 0)
                        d += av @ bv.T
                    acc[cons] += d[frag_row, frag_col]
                    if cfg.promote != "none":
                        t = np.arange(128)[:, None]
                        i = np.arange(cfg.regs)[None, :]
                        h = (i // 2) % 2
                        if "fragment" in BREAK:
                            h = 1 - h
                        if cfg.promote == "block":
                            r = tm * BM + cons * 64 + (t // 32) * 16 + (t % 32) // 4 + 8 * h
                            swv = sw[tn * k_blocks + kb]
                            bs = np.where(r < m, sx[np.minimum(r, m - 1) * k_blocks + kb] * swv, 0.0)
                            part = (small_s32_to_f32(acc[cons]) if cfg.int8
                                    else acc[cons]).astype(np.float64)
                            sums[cons] += part * bs
                        else:
                            sums[cons] += acc[cons].astype(np.float64)
                c_stage, c_phase = advance(c_stage, c_phase, cfg.stages)
            mode = 0 if cfg.promote == "block" else scale_mode
            for cons in range(2):
                vals = acc[cons].astype(np.float64) if cfg.promote == "none" else sums[cons]
                epilogue(cfg, vals, y, writes, sx, sw, bias, m, n, tm * BM + cons * 64, tn * cfg.bn,
                         mode)
    check(sorted(visited) == [(a, b) for a in range(tiles_m) for b in range(tiles_n)],
          "the persistent raster does not visit every tile exactly once")


def epilogue(cfg, vals, y, writes, sx, sw, bias, m, n, row0, col0, mode):
    """The kernel's epilogue for one consumer, all 128 threads at once."""
    stage_buf = np.zeros(EPI_BYTES // 2, dtype=np.float64)  # bf16 slots of the staging buffer
    stage_set = np.zeros(EPI_BYTES // 2, dtype=bool)
    t = np.arange(128)
    warp, lane = t // 32, t % 32
    frag_row = warp * 16 + lane // 4
    frag_col = 2 * (lane % 4)
    row_scale = np.ones((128, 2))
    if mode == 1:
        row_scale[:] = sx[0] * sw[0]
    elif mode == 2:
        for hh in range(2):
            r = row0 + frag_row + 8 * hh
            row_scale[:, hh] = np.where(r < m, sx[np.minimum(r, m - 1)], 0.0)
    vector_ok = n % 8 == 0  # y is 16-byte aligned here
    for chunk in range(cfg.bn // EPI_COLS):
        stage_set[:] = False
        for jj in range(EPI_COLS // 8):
            j = chunk * (EPI_COLS // 8) + jj
            c = col0 + j * 8 + frag_col
            col_scale = np.ones((128, 2))
            add = np.zeros((128, 2))
            if mode == 2:
                col_scale[:, 0] = np.where(c < n, sw[np.minimum(c, n - 1)], 0.0)
                col_scale[:, 1] = np.where(c + 1 < n, sw[np.minimum(c + 1, n - 1)], 0.0)
            if bias is not None:
                add[:, 0] = np.where(c < n, bias[np.minimum(c, n - 1)], 0.0)
                add[:, 1] = np.where(c + 1 < n, bias[np.minimum(c + 1, n - 1)], 0.0)
            for h in range(2):
                i = j * 4 + 2 * h
                hrow = (1 - h) if "fragment" in BREAK else h
                lo = vals[t, i] * row_scale[:, h] * col_scale[:, 0] + add[:, 0]
                hi = vals[t, i + 1] * row_scale[:, h] * col_scale[:, 1] + add[:, 1]
                offset = (frag_row + 8 * hrow) * EPI_PITCH + (jj * 8 + frag_col) * 2
                check((offset % 4 == 0).all(), "misaligned 4-byte staging store")
                check((offset + 4 <= EPI_BYTES).all(), "staging store past the buffer")
                stage_buf[offset // 2] = bf16_round(lo)
                stage_buf[offset // 2 + 1] = bf16_round(hi)
                stage_set[offset // 2] = True
                stage_set[offset // 2 + 1] = True
        for q in range(64 * 8 // 128):
            v = t + 128 * q
            r, cv = v // 8, v % 8
            grow = row0 + r
            gcol = col0 + chunk * EPI_COLS + cv * 8
            for th in range(128):
                if grow[th] < m and gcol[th] < n:
                    src = (r[th] * EPI_PITCH + cv[th] * 16) // 2
                    check(stage_set[src:src + 8].all(), "epilogue reads staging slots never written")
                    data = stage_buf[src:src + 8]
                    base = int(grow[th]) * n + int(gcol[th])
                    count = 8 if (vector_ok and gcol[th] + 8 <= n) else min(8, n - int(gcol[th]))
                    for e in range(count):
                        check(gcol[th] + e < n, "write past the end of a row")
                        check(0 <= base + e < m * n, "write outside Y")
                        y[base + e] = data[e]
                        writes[base + e] += 1


# ---- reference ----------------------------------------------------------------------------------
def reference(m, n, k, x, w, sx, sw, bias, mode, bk):
    if mode == 3:
        kbs = -(-k // bk)
        acc = np.zeros((m, n))
        for kb in range(kbs):
            part = x[:, kb * bk:(kb + 1) * bk] @ w[:, kb * bk:(kb + 1) * bk].T
            scale = sx.reshape(m, kbs)[:, kb][:, None] * sw.reshape(-1, kbs)[np.arange(n) // 128, kb][None, :]
            acc += part * scale
    else:
        acc = (x @ w.T).astype(np.float64)
        if mode == 1:
            acc *= sx[0] * sw[0]
        elif mode == 2:
            acc *= sx[:, None] * sw[None, :]
    if bias is not None:
        acc += bias[None, :]
    return acc


KERNELS = {
    # name: (BN, element bytes, promotion, scale modes)
    "gemm_wgmma_bf16": (256, 2, "none", [0]),
    "gemm_wgmma_e4m3": (256, 1, "none", [1, 2]),
    "gemm_wgmma_s8": (256, 1, "none", [1, 2]),
    "gemm_wgmma_e4m3_promoted": (128, 1, "sum", [1, 2]),
    "gemm_wgmma_e4m3_block128": (128, 1, "block", [3]),
    "gemm_wgmma_s8_block128": (128, 1, "block", [3]),
}


def run_case(name, m, n, k, mode, with_bias, sms, rng):
    bn, eb, promote, _ = KERNELS[name]
    cfg = Config(bn, eb, promote, int8="_s8" in name)
    check((k * eb) % 16 == 0, "K * bytes must be a multiple of 16 (supports() rejects it)")
    # int8: codes up to the quantizer's 127, so a block's partial reaches ~2^20 and an error in
    # its conversion shows; the float formats keep small integers (exact products, any format).
    lim = 127 if cfg.int8 else 8
    x = rng.integers(-lim, lim + 1, size=(m, k)).astype(np.int64)
    w = rng.integers(-lim, lim + 1, size=(n, k)).astype(np.int64)
    kbs = -(-k // 128)
    if mode == 3:
        sx = rng.uniform(0.5, 2.0, size=m * kbs)
        sw = rng.uniform(0.5, 2.0, size=-(-n // 128) * kbs)
    elif mode in (1, 2):
        sx = rng.uniform(0.5, 2.0, size=m if mode == 2 else 1)
        sw = rng.uniform(0.5, 2.0, size=n if mode == 2 else 1)
    else:
        sx = sw = None
    bias = bf16_round(rng.uniform(-50, 50, size=n)) if with_bias else None
    y = np.full(m * n, np.nan)
    writes = np.zeros(m * n, dtype=np.int64)
    run_kernel(cfg, m, n, k, x, w, sx, sw, bias, mode, sms, y, writes)
    check((writes == 1).all(), f"{(writes == 0).sum()} elements unwritten, "
          f"{(writes > 1).sum()} written more than once")
    ref = bf16_round(reference(m, n, k, x, w, sx, sw, bias, mode, 128))
    got = y.reshape(m, n)
    err = np.abs(got - ref)
    tol = np.abs(ref) * 2.0 ** -7 + 1e-30
    check(not np.isnan(got).any(), "NaN left in Y")
    check((err <= tol).all(), f"mismatch: max error {err.max()} at {np.unravel_index(err.argmax(), err.shape)}")


# ---- pipeline model -----------------------------------------------------------------------------
class MBarrier:
    def __init__(self, count):
        self.count = count
        self.pending = count
        self.tx = 0
        self.phase = 0  # number of completed phases

    def _maybe_complete(self):
        if self.pending == 0 and self.tx == 0:
            self.phase += 1
            self.pending = self.count

    def arrive(self):
        check(self.pending > 0, "arrival on a barrier with no pending arrivals")
        self.pending -= 1
        self._maybe_complete()

    def arrive_expect_tx(self, nbytes):
        self.tx += nbytes
        self.arrive()

    def complete_tx(self, nbytes):
        self.tx -= nbytes
        check(self.tx >= 0, "tx-count underflow")
        self._maybe_complete()

    def passed(self, parity):
        # try_wait.parity: true once the phase with this parity has completed, i.e. the current
        # (incomplete) phase has the other parity.
        return (self.phase & 1) != parity


def pipeline_check(stages, k_blocks, tiles, promote, seed, bytes_a=16384, bytes_b=16384):
    rng = random.Random(seed)
    full = [MBarrier(1) for _ in range(stages)]
    empty = [MBarrier(CONSUMER_WARPS) for _ in range(stages)]
    data = [[None, None] for _ in range(stages)]  # step id held by the A and B parts
    readers = [set() for _ in range(stages)]  # warps whose wgmmas may still read the stage
    steps = [(t, kb) for t in range(tiles) for kb in range(k_blocks)]
    tma_events = []

    def producer():
        stage, phase = 0, 0
        for step in range(len(steps)):
            par = phase if "parity" in BREAK else phase ^ 1
            while not empty[stage].passed(par):
                yield "blocked"
            full[stage].arrive_expect_tx(bytes_a + bytes_b)
            tma_events.append((stage, 0, step, bytes_a))
            tma_events.append((stage, 1, step, bytes_b))
            stage, phase = advance(stage, phase, stages)
            yield "ran"

    def consumer(wid):
        stage, phase = 0, 0
        step = 0
        for _tile in range(tiles):
            prev = None
            for kb in range(k_blocks):
                while not full[stage].passed(phase):
                    yield "blocked"
                check(data[stage] == [step, step],
                      f"warp {wid} reads stage {stage} holding {data[stage]}, wants step {step}")
                readers[stage].add(wid)  # wgmma issued on this stage
                yield "ran"
                if promote == "none":
                    if "early-release" in BREAK:
                        empty[stage].arrive()  # before wait_group: the wgmma may still run
                        yield "ran"
                    # wait_group<1>: the previous k-block's group is complete
                    if prev is not None:
                        readers[prev[0]].discard(wid)
                        if "early-release" not in BREAK:
                            empty[prev[0]].arrive()
                    prev = (stage, step)
                else:
                    # wait_group<0>, then free this stage
                    readers[stage].discard(wid)
                    empty[stage].arrive()
                stage, phase = advance(stage, phase, stages)
                step += 1
                yield "ran"
            if promote == "none" and prev is not None:
                readers[prev[0]].discard(wid)  # wait_group<0>
                if "early-release" not in BREAK:
                    empty[prev[0]].arrive()
            for _ in range(rng.randint(0, 3)):  # epilogue
                yield "ran"

    agents = [producer()] + [consumer(w) for w in range(CONSUMER_WARPS)]
    done = [False] * len(agents)
    blocked_rounds = 0
    while not all(done) or tma_events:
        choices = [("agent", i) for i in range(len(agents)) if not done[i]]
        choices += [("tma", j) for j in range(len(tma_events))]
        kind, idx = rng.choice(choices)
        if kind == "tma":
            stage, part, step, nbytes = tma_events.pop(idx)
            check(not readers[stage],
                  f"TMA overwrites stage {stage} while warps {sorted(readers[stage])} may read it")
            data[stage][part] = step
            full[stage].complete_tx(nbytes)
            blocked_rounds = 0
            continue
        try:
            status = next(agents[idx])
        except StopIteration:
            done[idx] = True
            status = "ran"
        if status == "blocked":
            blocked_rounds += 1
            # A blocked role changes nothing; thousands of blocked picks in a row with no TMA in
            # flight means none can run ((8/9)^20000 odds otherwise).
            if blocked_rounds > 20000 and not tma_events:
                raise SimError("deadlock: every role waits on a barrier phase that never completes")
        else:
            blocked_rounds = 0
    for s in range(stages):
        check(not readers[s], "stage still read at exit")


# ---- driver -------------------------------------------------------------------------------------
def data_path_cases():
    cases = []
    for name, (_bn, eb, _promote, modes) in KERNELS.items():
        for mode in modes:
            cases.append((name, 7, 200, 80 if eb == 1 else 80, mode, True, 132))
    cases += [
        ("gemm_wgmma_e4m3", 7, 200, 4112, 2, False, 132),
        ("gemm_wgmma_s8", 7, 200, 4112, 1, True, 132),
        ("gemm_wgmma_e4m3_block128", 7, 200, 4112, 3, True, 132),
        ("gemm_wgmma_s8_block128", 33, 130, 4112, 3, False, 132),
        ("gemm_wgmma_e4m3_promoted", 7, 200, 4112, 2, True, 132),
        ("gemm_wgmma_bf16", 7, 200, 136, 0, True, 132),
        # persistent: several tiles per CTA, stage/phase carried across tiles; M, N tails
        ("gemm_wgmma_bf16", 300, 600, 328, 0, True, 2),
        ("gemm_wgmma_e4m3_block128", 200, 300, 400, 3, False, 2),
        ("gemm_wgmma_e4m3", 1100, 260, 144, 2, True, 3),
        ("gemm_wgmma_s8", 129, 257, 48, 2, False, 4),
    ]
    return cases


def run_all(quick=False, verbose=True):
    conversion_check()
    if verbose:
        print(f"ok  int32 -> f32 magic conversion exact for |p| <= 2^22 (block partials <= "
              f"{BLOCK_K * INT8_MAX_ABS ** 2})")
    cases = data_path_cases()
    if quick:
        cases = [c for c in cases if c[1] * c[2] * c[3] <= 7 * 200 * 4112][:6]
    rng = np.random.default_rng(1)
    for case in cases:
        run_case(*case, rng=rng)
        if verbose:
            print("ok  data path", case)
    pipe = [(4, 5, 3, "none"), (6, 5, 3, "none"), (6, 5, 3, "sum"), (4, 1, 7, "none"),
            (6, 7, 2, "block"), (4, 4, 3, "none")]
    seeds = 10 if quick else 60
    for stages, kbs, tiles, promote in pipe:
        for seed in range(seeds):
            pipeline_check(stages, kbs, tiles, promote, seed)
        if verbose:
            print(f"ok  pipeline stages={stages} k_blocks={kbs} tiles={tiles} promote={promote} "
                  f"({seeds} schedules)")


def self_test():
    run_all(verbose=True)
    for fault in ["swizzle", "koffset", "fragment", "parity", "early-release", "magic"]:
        BREAK.clear()
        BREAK.add(fault)
        try:
            run_all(quick=True, verbose=False)
        except SimError as e:
            print(f"ok  injected fault '{fault}' caught: {e}")
        else:
            print(f"FAIL injected fault '{fault}' was not caught")
            sys.exit(1)
        finally:
            BREAK.clear()
    print("self-test passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--break", dest="fault", choices=["swizzle", "koffset", "fragment", "parity",
                                                       "early-release", "magic"])
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return
    if args.fault:
        BREAK.add(args.fault)
    try:
        run_all()
    except SimError as e:
        print("FAIL:", e)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
