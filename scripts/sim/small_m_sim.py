#!/usr/bin/env python3
"""Host simulation of kernels/gemm/small_m.cu (the `small_m` GEMM path), lane by lane.

What it checks. It executes the kernel's index arithmetic for every CTA (blockIdx.x, blockIdx.y),
warp and lane of the simulated grid, and compares Y with a float64 reference:
  - W: which 16 bytes each lane loads (rows g and g+8 of its warp, k0 + kE*t of each vector),
    the predicates (rows past N, K past the end load zero) and that no predicated-on load leaves
    the W allocation;
  - X: the cp.async staging (rows < min(M, MB), 16-byte ops, zero-fill past K), the zeroing of
    token rows >= M, the lane's 16/32-byte B reads from shared memory, and the pipeline's
    shared-memory hazards (each buffer read only after the cp.async group that filled it was
    waited for AND a barrier passed; overwritten only after a barrier that follows its last
    read), the reduction tile reusing the buffers;
  - the fragments: a_words/b_words (including the exact bit-level widening fp8 -> f16/bf16 and
    int8 -> bf16 of the kernel, checked against a decoder on all 256 codes) and the mma.sync
    semantics of PTX ISA 9.7.14.5 (m16n8k16 .f16/.bf16, m16n8k32 .s8/.e4m3/.e5m2) from which
    registers the mma takes which (row, k) element, exact products, s32 accumulation for s8
    (checked for overflow and for exact conversion to f32);
  - fp8 x fp8 on each data path: "sm89" (native k32 mma), "sm80" (both operands widened to f16
    by the bit-level widening), "sm90" (widened to f16 by cvt, modelled as exact); other kinds
    have one path (labelled sm90);
  - per-128-block partials and their promotion with scale_x[m][kb] * scale_w[n/128][kb]
    (mode 3), the epilogue scales (modes 1, 2) and bias, the stores (only m < M, n < N: Y is
    prefilled with NaN inside a guard band that must stay NaN);
  - the split across the two K warps (shared-memory tile) and across CTAs: the f32 workspace
    [S][M][N] (bounds), the atomic counter per 64-row column, last-CTA detection, counter reset
    (two launches per problem, CTAs run to their atomic in a random order each time; the second
    launch must give the same Y and leave every counter zero).

Fragment layouts used (PTX ISA 8.x, "Matrix Fragments for mma.m16n8k16 with floating point type"
and "... for mma.m16n8k32"), groupID g = laneid >> 2, threadID_in_group t = laneid % 4:
  k16 A (.f16/.bf16, a0..a7, two per .b32 register, low half first):
      row = g for ai where 0 <= i < 2 || 4 <= i < 6, g + 8 otherwise;
      col = 2t + (i & 1) for i < 4, 2t + (i & 1) + 8 for i >= 4.
  k16 B (b0..b3): row = 2t + (i & 1) for i < 2, 2t + (i & 1) + 8 for i >= 2; col = g.
  k32 A (.s8/.e4m3/.e5m2, a0..a15, four per register, lowest byte first):
      row = g for 0 <= i < 4 || 8 <= i < 12, g + 8 otherwise;
      col = 4t + (i & 3) for i < 8, 4t + (i & 3) + 16 for i >= 8.
  k32 B (b0..b7): row = 4t + (i & 3) for i < 4, 4t + (i & 3) + 16 for i >= 4; col = g.
  C/D (c0..c3): row = g for c0, c1 and g + 8 for c2, c3; col = 2t + (i & 1).

What it does not check: timing, bank conflicts, the real tensor-core rounding (products and sums
are exact here: float64, s32), the memory model beyond the barrier/wait-group bookkeeping above
(threads of a CTA run in lock step; cp.async writes land when waited for), L2 prefetch hints,
code generation (ptxas -v is the check for spills), and only the CTA columns listed for large N.

Run:  python3 scripts/sim/small_m_sim.py            (representative set, a few minutes)
      python3 scripts/sim/small_m_sim.py --full     (the whole cross product, long)
      python3 scripts/sim/small_m_sim.py --break a_order --only s8 --limit 3
          (inject a bug, which must be caught: exit status 0 then; --break list names them)
      --only KIND, --limit N, --case KIND,ARCH,M,N,K,MODE: a subset. Exit status 0 when every case matches.
Needs only Python 3 and numpy.
"""
import argparse
import itertools
import sys

import numpy as np

# ------------------------------------------------------------------------------------------------
# Element formats: codes, decoders, the kernel's bit-level widening.

def bf16_to_f(bits):
    return (np.asarray(bits, np.uint32) << 16).view(np.float32).astype(np.float64)


def f16_to_f(bits):
    return np.asarray(bits, np.uint16).view(np.float16).astype(np.float64)


def f_to_bf16_rn(x):
    """float -> bf16 bits, round to nearest even (the value is first rounded to f32)."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return r.astype(np.uint16)


def f_to_f16(x):
    return np.asarray(x, np.float64).astype(np.float16).view(np.uint16)


FP8 = {  # exponent bits, bias, mantissa bits
    "e4m3": (4, 7, 3),
    "e5m2": (5, 15, 2),
}


def fp8_to_f(code, fmt):
    e_bits, bias, m_bits = FP8[fmt]
    code = np.asarray(code, np.int64)
    s = np.where(code & 0x80, -1.0, 1.0)
    e = (code >> m_bits) & ((1 << e_bits) - 1)
    m = code & ((1 << m_bits) - 1)
    sub = m / (1 << m_bits) * 2.0 ** (1 - bias)
    nor = (1 + m / (1 << m_bits)) * 2.0 ** (e - bias)
    return s * np.where(e == 0, sub, nor)


def fp8_valid_codes(fmt):
    codes = np.arange(256)
    if fmt == "e4m3":
        return codes[(codes & 0x7F) != 0x7F]
    return codes[((codes >> 2) & 0x1F) != 0x1F]  # e5m2: no inf/nan


def byte_perm(a, b, sel):
    """__byte_perm(a, b, sel) on uint32 arrays (no sign-replicate mode)."""
    a = np.asarray(a, np.uint64)
    b = np.asarray(b, np.uint64)
    src = (b << np.uint64(32)) | a
    out = np.zeros_like(a)
    for j in range(4):
        nib = (sel >> (4 * j)) & 0x7
        out |= ((src >> np.uint64(8 * nib)) & np.uint64(0xFF)) << np.uint64(8 * j)
    return out.astype(np.uint32)


HALF16 = {  # exponent bits, bias, mantissa bits, decoder, encoder
    "bf16": (8, 127, 7, bf16_to_f, f_to_bf16_rn),
    "f16": (5, 15, 10, f16_to_f, f_to_f16),
}


def widen_fp8x4(w, fmt, t16):
    """rb::widen_fp8x4<Fp8, T>: 4 fp8 codes (bytes of w) -> (word of elements 0,1; of 2,3)."""
    e8, b8, _ = FP8[fmt]
    e16, b16, _m16, dec, enc = HALF16[t16]
    shift = e16 - e8
    field = ((0x7F00 >> shift) * 0x00010001) & 0xFFFFFFFF
    sign = 0x80008000
    lo = byte_perm(w, 0, 0x1404)
    hi = byte_perm(w, 0, 0x3424)
    out = []
    for v in (lo, hi):
        r = ((v >> np.uint32(shift)) & np.uint32(field)) | (v & np.uint32(sign))
        if b16 != b8:  # Half16<T>::mul by 2^(bias(T) - bias(fp8)): exact
            f = 2.0 ** (b16 - b8)
            l16 = enc(dec(r & np.uint32(0xFFFF)) * f).astype(np.uint32)
            h16 = enc(dec(r >> np.uint32(16)) * f).astype(np.uint32)
            r = l16 | (h16 << np.uint32(16))
        out.append(r.astype(np.uint32))
    return out


def widen_s8x4_bf16(w):
    """small_m.cu widen_s8x4_bf16: 4 int8 -> two words of bf16 pairs."""
    u = np.asarray(w, np.uint32) ^ np.uint32(0x80808080)
    f = []
    for i in range(4):
        bits = byte_perm(u, 0x4B000000, 0x7440 | i)
        f.append(bits.view(np.float32) - np.float32(8388736.0))  # f32 arithmetic
    pack = lambda a, b: (f_to_bf16_rn(a).astype(np.uint32)
                         | (f_to_bf16_rn(b).astype(np.uint32) << np.uint32(16)))
    return [pack(f[0], f[1]), pack(f[2], f[3])]


def check_widening():
    for fmt in FP8:
        codes = fp8_valid_codes(fmt).astype(np.uint32)
        ref = fp8_to_f(codes, fmt)
        for t16 in HALF16:
            dec = HALF16[t16][3]
            for pos in range(4):  # the code in each byte of the word
                lo, hi = widen_fp8x4(codes << np.uint32(8 * pos), fmt, t16)
                word = (lo, hi)[pos // 2]
                half = (word >> np.uint32(16 * (pos % 2))) & np.uint32(0xFFFF)
                assert np.array_equal(dec(half), ref), (fmt, t16, pos)
    vals = np.arange(-128, 128)
    codes = (vals & 0xFF).astype(np.uint32)
    for pos in range(4):
        lo, hi = widen_s8x4_bf16(codes << np.uint32(8 * pos))
        word = (lo, hi)[pos // 2]
        got = bf16_to_f((word >> np.uint32(16 * (pos % 2))) & np.uint32(0xFFFF))
        assert np.array_equal(got, vals.astype(np.float64)), pos


# ------------------------------------------------------------------------------------------------
# mma.sync per PTX: index maps from (lane, register, sub-element) to (row, col) of A / B, C.

def _maps():
    lane = np.arange(32)
    g, t = lane >> 2, lane & 3
    m = {}
    # k16, 16-bit elements: A [32][4][2], B [32][2][2]
    i = (2 * np.arange(4)[:, None] + np.arange(2)[None, :])[None]  # [1][4][2]
    rowA = np.where((i < 2) | ((i >= 4) & (i < 6)), g[:, None, None], g[:, None, None] + 8)
    colA = 2 * t[:, None, None] + (i & 1) + 8 * (i >= 4)
    ib = (2 * np.arange(2)[:, None] + np.arange(2)[None, :])[None]
    rowB = 2 * t[:, None, None] + (ib & 1) + 8 * (ib >= 2)
    colB = np.broadcast_to(g[:, None, None], rowB.shape)
    m[16] = (rowA, colA, rowB, colB)
    # k32, 8-bit elements: A [32][4][4], B [32][2][4]
    i = (4 * np.arange(4)[:, None] + np.arange(4)[None, :])[None]
    rowA = np.where((i < 4) | ((i >= 8) & (i < 12)), g[:, None, None], g[:, None, None] + 8)
    colA = 4 * t[:, None, None] + (i & 3) + 16 * (i >= 8)
    ib = (4 * np.arange(2)[:, None] + np.arange(4)[None, :])[None]
    rowB = 4 * t[:, None, None] + (ib & 3) + 16 * (ib >= 4)
    colB = np.broadcast_to(g[:, None, None], rowB.shape)
    m[32] = (rowA, colA, rowB, colB)
    rowC = np.stack([g, g, g + 8, g + 8], 1)
    colC = np.stack([2 * t, 2 * t + 1, 2 * t, 2 * t + 1], 1)
    return m, rowC, colC


MAPS, ROWC, COLC = _maps()
for _k, (_ra, _ca, _rb, _cb) in MAPS.items():  # each (row, col) exactly once
    assert len({(r, c) for r, c in zip(_ra.ravel(), _ca.ravel())}) == 16 * _k
    assert len({(r, c) for r, c in zip(_rb.ravel(), np.broadcast_to(_cb, _rb.shape).ravel())}) == 8 * _k


def reg_elems(regs, elem):
    """[..., R] uint32 registers -> [..., R, e] element values. elem: decoder key."""
    regs = np.asarray(regs, np.uint32)
    if elem in ("bf16", "f16"):
        halves = np.stack([regs & np.uint32(0xFFFF), regs >> np.uint32(16)], -1)
        return HALF16[elem][3](halves)
    b = np.stack([(regs >> np.uint32(8 * j)) & np.uint32(0xFF) for j in range(4)], -1)
    if elem == "s8":
        return np.where(b >= 128, b.astype(np.int64) - 256, b.astype(np.int64))
    return fp8_to_f(b, elem)


def mma(a, b, elem, kshape):
    """D fragments [T][32][4] of A regs [32][4] x B regs [T][32][2] (D = A B, C = 0)."""
    rowA, colA, rowB, colB = MAPS[kshape]
    av = reg_elems(a, elem)
    bv = reg_elems(b, elem)
    dt = np.int64 if elem == "s8" else np.float64
    Am = np.zeros((16, kshape), dt)
    Am[rowA, colA] = av
    T = bv.shape[0]
    Bm = np.zeros((T, kshape, 8), dt)
    Bm[:, rowB, colB] = bv
    D = np.einsum("rk,tkc->trc", Am, Bm)
    return D[:, ROWC, COLC]


# ------------------------------------------------------------------------------------------------
# The kernel's traits and geometry (small_m.cu Traits<Kind>, Geometry<Kind, MB>).

class Kind:
    def __init__(self, name, arch):
        self.name = name
        self.fmt = {"bf16": None, "e4m3": "e4m3", "e5m2": "e5m2", "s8": "s8"}.get(name)
        self.wonly = name.startswith("w")
        if self.wonly:
            self.fmt = name[1:5] if name[1:5] in FP8 else "s8"
        self.w_bytes = 2 if name == "bf16" else 1
        self.x_bytes = 1 if (self.fmt and not self.wonly) else 2
        self.scaled_x = self.x_bytes == 1
        self.scaled = name != "bf16"
        # RB_SMALL_M_FP8_WIDEN: the native fp8 mma on sm_89 only
        fp8_widen = arch != 89
        self.native_cvt = arch >= 89  # widen_fp8x4<F, __half> uses cvt (exact) there
        if name == "bf16":
            self.steps, self.elem, self.k = 2, "bf16", 16
        elif self.wonly:
            self.steps, self.elem, self.k = 4, "bf16", 16
        elif self.fmt == "s8":
            self.steps, self.elem, self.k = 2, "s8", 32
        elif fp8_widen:
            self.steps, self.elem, self.k = 4, "f16", 16
        else:
            self.steps, self.elem, self.k = 2, self.fmt, 32

    def a_words(self, v):  # v: [32][4] uint32 (a 16-byte vector per lane)
        if self.name == "bf16" or (not self.wonly and self.steps == 2):
            return v
        if self.wonly and self.fmt == "s8":
            ws = [widen_s8x4_bf16(v[:, i]) for i in range(4)]
        else:
            t16 = "bf16" if self.wonly else "f16"
            ws = [self.widen(v[:, i], t16) for i in range(4)]
        return np.stack([w for pair in ws for w in pair], 1)  # [32][8]

    def widen(self, w, t16):
        if t16 == "f16" and self.native_cvt:  # __nv_cvt_fp8x2_to_halfraw2: low byte -> .x
            h = [f_to_f16(fp8_to_f((w >> np.uint32(8 * j)) & np.uint32(0xFF), self.fmt))
                 .astype(np.uint32) for j in range(4)]
            return [h[0] | (h[1] << np.uint32(16)), h[2] | (h[3] << np.uint32(16))]
        return widen_fp8x4(w, self.fmt, t16)

    def b_words(self, raw):  # raw: [32][kXLane] bytes from shared memory
        words = raw.view(np.uint32) if raw.flags.c_contiguous else raw.copy().view(np.uint32)
        if not self.wonly and self.steps == 4:  # fp8 x fp8 widened to f16
            ws = [self.widen(words[:, i], "f16") for i in range(4)]
            return np.stack([w for pair in ws for w in pair], 1)
        return words


class Geometry:
    def __init__(self, kind, mb):
        self.mb = mb
        self.tiles = mb // 8
        self.kE = 16 // kind.w_bytes
        self.vpi = 2 if (kind.w_bytes == 1 and kind.x_bytes == 2 and mb == 64) else 4
        self.kc = self.vpi * 4 * self.kE
        self.kcta = 2 * self.kc
        self.blocks = self.kc // 128
        self.vpb = self.vpi // self.blocks
        self.x_lane = self.kE * kind.x_bytes
        self.row_bytes = self.kcta * kind.x_bytes + (64 if self.x_lane == 16 else 16)
        self.buf_bytes = mb * self.row_bytes
        self.smem_bytes = 2 * self.buf_bytes
        assert self.kc % 128 == 0 and self.vpi % self.blocks == 0
        assert self.row_bytes % 16 == 0
        assert 2 * mb * 68 * 4 <= self.smem_bytes


BUCKETS = [8, 16, 32, 64]


def bucket(m):
    return next(b for b in BUCKETS if b >= m)


# ------------------------------------------------------------------------------------------------
# Checked memories.

class Checked:
    """A flat array whose reads and writes are bounds-checked."""

    def __init__(self, data, name):
        self.a = data
        self.name = name

    def idx(self, i):
        i = np.asarray(i)
        if i.size and (i.min() < 0 or i.max() >= self.a.size):
            raise AssertionError(f"{self.name}: index out of range [{i.min()}, {i.max()}] "
                                 f"of {self.a.size}")
        return i

    def __getitem__(self, i):
        return self.a[self.idx(i)]

    def __setitem__(self, i, v):
        self.a[self.idx(i)] = v


class Smem:
    """Dynamic shared memory of one CTA with the barrier / cp.async bookkeeping."""

    def __init__(self, geo):
        self.b = np.full(geo.smem_bytes, 0xA5, np.uint8)  # garbage
        self.geo = geo
        self.epoch = 0  # barriers passed
        self.groups = []  # committed, unfinished groups: list of (buf set, copies)
        self.open = []  # copies issued since the last commit
        self.ready = {}  # buf -> epoch at which its filling group was waited for
        self.last_read = {0: -1, 1: -1}
        self.pending_bufs = set()

    def cp_async(self, dst, src_bytes, buf):
        if buf in self.last_read and self.last_read[buf] >= self.epoch:
            raise AssertionError(f"cp.async into buffer {buf} in the epoch it is read")
        self.open.append((dst, src_bytes, buf))

    def commit(self):
        self.groups.append(self.open)
        self.open = []

    def wait(self, pending):
        while len(self.groups) > pending:
            for dst, src, buf in self.groups.pop(0):
                self.b[dst:dst + 16] = src
                self.ready[buf] = self.epoch
        self.pending_bufs = {buf for grp in self.groups for _, _, buf in grp}

    def sync(self):
        self.epoch += 1

    def read_buf(self, buf):
        if buf in self.pending_bufs or self.ready.get(buf, -1) >= self.epoch:
            raise AssertionError(f"buffer {buf} read before its copies are waited for + barrier")
        self.last_read[buf] = self.epoch

    def overwrite_all(self):
        if self.groups or self.open or any(e >= self.epoch for e in self.last_read.values()):
            raise AssertionError("reduction tile written over buffers still in use")


# ------------------------------------------------------------------------------------------------
# One CTA of gemm<Kind, MB>: returns after its stores; `counters`, `workspace`, `y` are shared.

def run_cta(P, bx, z, splits, mem, brk):
    kind, geo = P["kind"], P["geo"]
    M, N, K = P["M"], P["N"], P["K"]
    mode = P["mode"]
    MB, kT, kE, kVpi = geo.mb, geo.tiles, geo.kE, geo.vpi
    wb, xb = kind.w_bytes, kind.x_bytes
    sm = Smem(geo)
    lane = np.arange(32)
    g, t = lane >> 2, lane & 3
    n_cta = bx * 64
    iters = -(-K // geo.kcta)
    it_begin = iters * z // splits
    it_end = iters * (z + 1) // splits
    k_blocks = -(-K // 128)
    m_rows = min(M, MB)

    # --- zero token rows >= m_rows of both buffers (plain stores, epoch 0)
    for buf in (0, 1):
        base = buf * geo.buf_bytes
        sm.b[base + m_rows * geo.row_bytes: base + MB * geo.row_bytes] = 0

    # --- X staging (all 256 threads; uniform: modelled as one loop)
    ops_per_row = geo.kcta * xb // 16

    def stage_x(it, buf):
        dst0 = buf * geo.buf_bytes
        k_base = it * geo.kcta
        for op in range(m_rows * ops_per_row):
            row, c = divmod(op, ops_per_row)
            k = k_base + c * (16 // xb)
            if k < K:
                src = mem["x"][row * K * xb + k * xb + np.arange(16)]
            else:
                src = np.zeros(16, np.uint8)
            sm.cp_async(dst0 + row * geo.row_bytes + c * 16, src, buf)
        sm.commit()

    # --- W loads per warp: wv[warp] = [2 rows][kVpi][32 lanes][4 words]
    def load_w(warp, it):
        wn, wk = warp % 4, warp // 4
        n0 = n_cta + wn * 16
        lane_k = wk * geo.kc + kE * t
        out = np.zeros((2, kVpi, 32, 4), np.uint32)
        for r, rows in enumerate((n0 + g, n0 + g + 8)):
            ok_row = rows < N
            for v in range(kVpi):
                k = it * geo.kcta + v * 4 * kE
                pred = (k + lane_k < K) & ok_row
                if pred.any():
                    addr = (rows[:, None] * K * wb + (lane_k[:, None] + k) * wb
                            + np.arange(16)[None, :])
                    raw = np.zeros((32, 16), np.uint8)
                    raw[pred] = mem["w"][addr[pred]]
                    out[r, v] = raw.view(np.uint32)
        return out

    acc = np.zeros((8, kT, 32, 4))

    def compute(warp, wv, buf, it):
        wn, wk = warp % 4, warp // 4
        n0 = n_cta + wn * 16
        lane_k = wk * geo.kc + kE * t
        sw_row = min(n0, N - 1) // 128
        if brk == "sw_row":
            sw_row = n_cta // 64 % max(1, -(-N // 128))
        xs = buf * geo.buf_bytes + g * geo.row_bytes + lane_k * xb
        for b in range(geo.blocks):
            k_block = it * geo.kcta + wk * geo.kc + b * 128
            if k_block >= K:
                break
            kb = k_block // 128
            sx = np.ones((kT, 32, 2))
            sw = 1.0
            if kind.scaled and mode == 3:
                sw = mem["sw"][sw_row * k_blocks + kb] if n0 < N else 0.0
                for i in range(kT):
                    for j in range(2):
                        m = i * 8 + 2 * t + j
                        if kind.scaled_x:
                            ok = m < M
                            vals = np.zeros(32)
                            vals[ok] = mem["sx"][m[ok] * k_blocks + kb]
                            sx[i, :, j] = vals
            part = np.zeros((kT, 32, 4), np.int64 if kind.elem == "s8" else np.float64)
            for vv in range(geo.vpb):
                v = b * geo.vpb + vv
                a0 = kind.a_words(wv[0, v])
                a1 = kind.a_words(wv[1, v])
                tiles = [i for i in range(kT) if i * 8 < M]
                bws = []
                for i in tiles:
                    addr = xs + i * 8 * geo.row_bytes + v * 4 * kE * xb
                    # the lane reads within its token row's data (not padding, not a neighbour)
                    row_start = buf * geo.buf_bytes + (i * 8 + g) * geo.row_bytes
                    assert np.all(addr >= row_start) and np.all(
                        addr + geo.x_lane <= row_start + geo.kcta * xb), "X read outside row"
                    assert np.all(addr % 16 == 0), "misaligned 16-byte shared load"
                    raw = sm.b[addr[:, None] + np.arange(geo.x_lane)[None, :]]
                    bws.append(kind.b_words(np.ascontiguousarray(raw)))
                if not tiles:
                    continue
                bws = np.stack(bws)  # [T][32][words]
                for s in range(kind.steps):
                    if brk == "a_order":
                        a = np.stack([a0[:, 2 * s], a0[:, 2 * s + 1], a1[:, 2 * s],
                                      a1[:, 2 * s + 1]], 1)
                    else:
                        a = np.stack([a0[:, 2 * s], a1[:, 2 * s], a0[:, 2 * s + 1],
                                      a1[:, 2 * s + 1]], 1)
                    if brk == "b_order":
                        bb = np.stack([bws[:, :, 2 * s + 1], bws[:, :, 2 * s]], 2)
                    else:
                        bb = np.stack([bws[:, :, 2 * s], bws[:, :, 2 * s + 1]], 2)
                    d = mma(a, bb, kind.elem, kind.k)
                    part[tiles] += d
                    if kind.elem == "s8":
                        assert np.abs(part).max() < 2**31, "s32 overflow"
            if kind.elem == "s8":
                assert np.abs(part).max() < 2**24, "s32 partial not exact in f32"
            part = part.astype(np.float64)
            if kind.scaled and mode == 3:
                for e in range(4):
                    acc[warp, :, :, e] += part[:, :, e] * sx[:, :, e & 1] * sw
            else:
                acc[warp] += part

    # --- main loop, as small_m.cu: X(it+1) and W(it+1) requested before it is computed
    wv = {"a": None, "b": None}
    if it_begin < it_end:
        stage_x(it_begin, 0)
        wv["a"] = [load_w(w, it_begin) for w in range(8)]

    def step(cur, nxt, it):
        buf = (it - it_begin) & 1
        if it + 1 < it_end:
            stage_x(it + 1, buf ^ 1)
            wv[nxt] = [load_w(w, it + 1) for w in range(8)]
        else:
            sm.commit()
        sm.wait(2 if brk == "wait" else 1)
        sm.sync()
        sm.read_buf(buf)
        for w in range(8):
            compute(w, wv[cur][w], buf, it)
        if brk != "sync":
            sm.sync()

    it = it_begin
    while it < it_end:
        step("a", "b", it)
        if it + 1 < it_end:
            step("b", "a", it + 1)
        it += 2
    sm.wait(0)
    sm.sync()

    # --- the two K warps through shared memory: red[wk][token][row]
    sm.overwrite_all()
    red = np.full(2 * MB * 68, np.nan)
    written = np.zeros(red.size, bool)
    for warp in range(8):
        wn, wk = warp % 4, warp // 4
        for i in range(kT):
            for e in range(4):
                m = i * 8 + 2 * t + (e & 1)
                r = wn * 16 + g + 8 * ((e & 1) if brk == "red_row" else (e >> 1))
                idx = (wk * MB + m) * 68 + r
                assert idx.max() * 4 + 4 <= geo.smem_bytes
                assert not written[idx].any(), "reduction slot written twice"
                written[idx] = True
                red[idx] = acc[warp, i, :, e]
    sm.sync()

    def tile_sum(m, r):
        return red[m * 68 + r] + red[(MB + m) * 68 + r]

    def store(m, n, v):
        if kind.scaled:
            if mode == 1:
                v = v * (mem["sx"][0] if kind.scaled_x else 1.0) * mem["sw"][0]
            elif mode == 2:
                v = v * (mem["sx"][m] if kind.scaled_x else 1.0) * mem["sw"][n]
        if mem["bias"] is not None:
            v = v + bf16_to_f(mem["bias"][n])
        assert 0 <= m < M and 0 <= n < N, f"store out of range ({m}, {n})"
        mem["y"][m * N + n] = f_to_bf16_rn(v)
        mem["v"][m * N + n] = v

    n_rows = min(64, N - n_cta)
    if splits == 1:
        for idx in range(m_rows * 64):
            m, r = divmod(idx, 64)
            if r < n_rows:
                store(m, n_cta + r, tile_sum(m, r))
        return None
    for idx in range(m_rows * 64):
        m, r = divmod(idx, 64)
        if r < n_rows:
            mem["ws"][(z * M + m) * N + n_cta + r] = tile_sum(m, r)
            mem["ws_written"][(z * M + m) * N + n_cta + r] = True

    def finish():  # after this CTA's atomicAdd: returns True when it was the last
        old = mem["counters"][bx]
        mem["counters"][bx] = old + 1
        if old != splits - 1:
            return False
        for idx in range(m_rows * 64):
            m, r = divmod(idx, 64)
            if r < n_rows:
                v = 0.0
                for s in range(splits):
                    j = (s * M + m) * N + n_cta + r
                    assert mem["ws_written"][j], "last CTA reads a partial not yet written"
                    v += mem["ws"][j]
                store(m, n_cta + r, v)
        if brk != "no_reset":
            mem["counters"][bx] = 0
        return True
    return finish


# ------------------------------------------------------------------------------------------------

def make_problem(kind_name, arch, M, N, K, mode, bias, rng):
    kind = Kind(kind_name, arch)
    geo = Geometry(kind, bucket(M))
    kb = -(-K // 128)
    if kind.name == "bf16":
        x = f_to_bf16_rn(rng.standard_normal((M, K)))
        w = f_to_bf16_rn(rng.standard_normal((N, K)))
        xv, wv = bf16_to_f(x), bf16_to_f(w)
    else:
        def codes(shape):
            if kind.fmt == "s8":
                c = rng.integers(-127, 128, shape)
                return (c & 0xFF).astype(np.uint8), c.astype(np.float64)
            valid = fp8_valid_codes(kind.fmt)
            c = valid[rng.integers(0, valid.size, shape)].astype(np.uint8)
            return c, fp8_to_f(c, kind.fmt)
        w, wv = codes((N, K))
        if kind.wonly:
            x = f_to_bf16_rn(rng.standard_normal((M, K)))
            xv = bf16_to_f(x)
        else:
            x, xv = codes((M, K))
    sx = sw = None
    if kind.scaled:
        shape_x, shape_w = {1: ((1,), (1,)), 2: ((M,), (N,)),
                            3: ((M, kb), (-(-N // 128), kb))}[mode]
        sx = rng.uniform(0.25, 4.0, shape_x) if kind.scaled_x else None
        sw = rng.uniform(0.25, 4.0, shape_w)
    b = f_to_bf16_rn(rng.standard_normal(N)) if bias else None
    # reference (float64)
    if mode == 3 and kind.scaled:
        ref = np.zeros((M, N))
        for j in range(kb):
            sl = slice(128 * j, min(K, 128 * j + 128))
            p = xv[:, sl] @ wv[:, sl].T
            s_x = sx[:, j][:, None] if sx is not None else 1.0
            s_w = np.repeat(sw[:, j], 128)[:N][None, :]
            ref += p * s_x * s_w
    else:
        ref = xv @ wv.T
        if kind.scaled and mode == 1:
            ref = ref * (sx[0] if sx is not None else 1.0) * sw[0]
        elif kind.scaled and mode == 2:
            ref = ref * (sx[:, None] if sx is not None else 1.0) * sw[None, :]
    absref = np.abs(xv) @ np.abs(wv).T * (4.0 ** 2 if kind.scaled else 1.0)
    if b is not None:
        ref = ref + bf16_to_f(b)[None, :]
    return dict(kind=kind, geo=geo, M=M, N=N, K=K, mode=mode if kind.scaled else 0,
                x=x.ravel().view(np.uint8), w=w.ravel().view(np.uint8),
                sx=None if sx is None else sx.ravel(), sw=None if sw is None else sw.ravel(),
                bias=b, ref=ref, absref=absref)


def simulate(P, splits, columns, rng, brk, launches=2):
    M, N = P["M"], P["N"]
    ctas_n = -(-N // 64)
    guard = 64
    y = np.full(M * N + 2 * guard, 0x7FC0, np.uint16)  # bf16 NaN
    mem = {
        "x": Checked(P["x"], "X"), "w": Checked(P["w"], "W"),
        "sx": None if P["sx"] is None else Checked(P["sx"], "scale_x"),
        "sw": None if P["sw"] is None else Checked(P["sw"], "scale_w"),
        "bias": None if P["bias"] is None else Checked(P["bias"], "bias"),
        "counters": Checked(np.zeros(ctas_n, np.int64), "counters"),
    }
    results = []
    for launch in range(launches):
        y[:] = 0x7FC0
        mem["y"] = Checked(y[guard:guard + M * N], "Y")  # a view: guard bands stay outside
        mem["v"] = np.full(M * N, np.nan)
        mem["ws"] = Checked(np.full(splits * M * N, np.nan), "workspace")
        mem["ws_written"] = np.zeros(splits * M * N, bool)
        # every CTA runs to its atomic; the atomics happen in a random order
        finishers = []
        for bx in columns:
            for z in range(splits):
                f = run_cta(P, bx, z, splits, mem, brk)
                if f is not None:
                    finishers.append(f)
        lasts = 0
        for j in rng.permutation(len(finishers)):
            lasts += finishers[j]()
        if splits > 1:
            assert lasts == len(columns), f"launch {launch}: {lasts} last CTAs for " \
                                          f"{len(columns)} columns"
        assert np.all(mem["counters"].a == 0), f"launch {launch}: counters not reset"
        assert np.all(y[:guard] == 0x7FC0) and np.all(y[guard + M * N:] == 0x7FC0), "guard"
        results.append((y[guard:guard + M * N].copy().reshape(M, N), mem["v"].reshape(M, N)))
    return results


def check(P, results, columns):
    M, N = P["M"], P["N"]
    cols = np.concatenate([np.arange(64 * c, min(N, 64 * c + 64)) for c in columns])
    ref = P["ref"][:, cols]
    tol = 1e-9 * (P["absref"][:, cols] + 1.0)
    y0 = results[0][0]
    worst = 0
    for y, v in results:
        got = v[:, cols]
        if np.isnan(got).any():
            return f"{int(np.isnan(got).sum())} outputs never stored"
        err = np.abs(got - ref)
        if (err > tol).any():
            i = np.unravel_index(np.argmax(err / tol), err.shape)
            return (f"{int((err > tol).sum())} of {err.size} wrong, e.g. (m {i[0]}, n {cols[i[1]]}):"
                    f" {got[i]:.6g} vs {ref[i]:.6g}")
        if not np.array_equal(y[:, cols], f_to_bf16_rn(v[:, cols])):
            return "Y bits are not bf16_rn of the value"
        if not np.array_equal(y, y0):
            return "second launch differs"
        worst = max(worst, float((err / (P["absref"][:, cols] + 1.0)).max()))
    other = np.setdiff1d(np.arange(N), cols)
    if other.size and not np.all(y0[:, other] == 0x7FC0):
        return "stored outside the simulated CTAs' columns"
    return None


def cases(full):
    kinds = ["bf16", "e4m3", "e5m2", "s8", "we4m3", "we5m2", "ws8"]
    if full:
        for kind, M, N, K in itertools.product(kinds, [1, 7, 16, 33, 64], [16, 200, 4100],
                                               [80, 4112, 8192]):
            modes = [0] if kind == "bf16" else [1, 2, 3]
            archs = [80, 89, 90] if kind in ("e4m3", "e5m2") else [90]
            for mode, arch in itertools.product(modes, archs):
                yield kind, arch, M, N, K, mode
        return
    rng = np.random.default_rng(7)
    # every kind x every M bucket x every mode at one small shape (K tail inside a block)
    for kind in kinds:
        for M in [1, 7, 16, 33, 64]:
            modes = [0] if kind == "bf16" else [1, 2, 3]
            archs = [80, 89, 90] if kind in ("e4m3", "e5m2") else [90]
            for mode in modes:
                arch = archs[rng.integers(len(archs))]
                yield kind, arch, M, 200, 80 if kind == "bf16" else 208, mode
    # long K (ragged 128-block tail) and N = 16, every kind, both archs for fp8
    for kind in kinds:
        archs = [89, 90] if kind in ("e4m3", "e5m2") else [90]
        for arch in archs:
            M = [1, 7, 16, 33, 64][rng.integers(5)]
            yield kind, arch, M, 16, 4112, 0 if kind == "bf16" else 3
            yield kind, arch, [7, 33][rng.integers(2)], 4100, 8192, 0 if kind == "bf16" else 2
    yield "bf16", 90, 64, 4100, 4112, 0
    yield "ws8", 90, 64, 200, 8192, 3
    yield "s8", 90, 33, 200, 8192, 1


BREAKS = {
    "a_order": "A registers as {row g k-lo, row g k-hi, row g+8 k-lo, ...} (wrong fragment)",
    "b_order": "B registers swapped",
    "sw_row": "block-128 W scale row from the CTA index instead of n0 / 128",
    "red_row": "reduction row from e & 1 instead of e >> 1",
    "no_reset": "last CTA does not reset its counter",
    "wait": "cp.async.wait_group 2 instead of 1",
    "sync": "no barrier after compute",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--break", dest="brk", default=None, help="inject a bug; 'list' lists them")
    ap.add_argument("--limit", type=int, default=0, help="stop after this many problems")
    ap.add_argument("--case", default=None, metavar="KIND,ARCH,M,N,K,MODE",
                    help="one problem, e.g. s8,90,7,200,4112,3")
    ap.add_argument("--only", default=None, help="only this input kind (bf16, e4m3, ..., ws8)")
    args = ap.parse_args()
    if args.brk == "list":
        for k, v in BREAKS.items():
            print(f"{k:10} {v}")
        return 0
    if args.brk is not None and args.brk not in BREAKS:
        ap.error(f"unknown --break {args.brk}")
    check_widening()
    print("widening fp8 -> f16/bf16 and int8 -> bf16: exact on every code")
    rng = np.random.default_rng(2024)
    failures = 0
    n = 0
    todo = cases(args.full)
    if args.case:
        f = args.case.split(",")
        todo = [(f[0], *map(int, f[1:]))]
    for kind, arch, M, N, K, mode in todo:
        if args.only and kind != args.only:
            continue
        P = make_problem(kind, arch, M, N, K, mode, bias=bool(n % 2), rng=rng)
        ctas_n = -(-N // 64)
        columns = list(range(ctas_n)) if ctas_n <= 4 else [0, 1, ctas_n - 2, ctas_n - 1]
        iters = -(-K // P["geo"].kcta)
        for splits in sorted({1, min(max(iters, 2), 3), 5 if iters >= 5 else 1}):
            try:
                res = simulate(P, splits, columns, rng, args.brk)
                why = check(P, res, columns)
            except AssertionError as e:
                why = f"assertion: {e}"
            tag = (f"{kind:6} sm{arch} M={M:2} N={N:4} K={K:4} mode={mode} S={splits} "
                   f"MB={P['geo'].mb} bias={int(P['bias'] is not None)}")
            print(("FAIL " if why else "ok   ") + tag + (f": {why}" if why else ""), flush=True)
            failures += why is not None
        n += 1
        if args.limit and n >= args.limit:
            break
    print(f"{failures} failures")
    if args.brk:
        print(f"--break {args.brk}: " + ("caught" if failures else "NOT caught"))
        return 0 if failures else 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
