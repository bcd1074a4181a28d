# Host simulation of kernels/gemm/mma_gemm.cuh (the mma path) data movement: load_stage (the XOR
# swizzle of cp.async 16-byte chunks), ldmatrix, the PTX ISA fragment layouts of mma.sync
# m16n8k16 / m16n8k32, the widened fp8 path, accumulator -> (row, col) in the epilogue. It checks
# one CTA tile of small problems with M/N/K tails against numpy. Run: python3 scripts/sim/mma_sim.py
# (numpy). It cannot check hardware behaviour the PTX ISA does not state; a GPU run still must.
import sys
import numpy as np
FAILURES = []  # mismatches per run; any non-zero one fails the script
rng = np.random.default_rng(1)
BM=BN=128; ROWB=64; TILEB=BM*ROWB

def swz(row, chunk): return row*ROWB + ((chunk ^ ((row>>1)&3))<<4)

def load_stage(smem, xb, wb, m0, n0, M, N, kbytes, kt):
    for tid in range(256):
        for i in range(2):
            c = tid + i*256; row=c>>2; chunk=c&3
            kb = kt*ROWB + chunk*16
            off = swz(row, chunk)
            for base, mat, r0, lim in ((0, xb, m0, M), (TILEB, wb, n0, N)):
                ok = kb < kbytes and r0+row < lim
                smem[base+off:base+off+16] = mat[r0+row, kb:kb+16] if ok else 0

def ldmatrix_x4(smem, addrs):
    # addrs[lane]; returns regs[lane][j] as 4 bytes
    regs = [[None]*4 for _ in range(32)]
    for j in range(4):
        for l in range(32):
            r = l//4; a = addrs[8*j + r]
            regs[l][j] = smem[a + 4*(l%4): a + 4*(l%4) + 4].copy()
    return regs

def to_elems(b, eb):  # bytes -> elements (int8 or little-endian int16)
    return b.view(np.int8).astype(np.int64) if eb==1 else b.view(np.int16).astype(np.int64)

def mma8(A, B):  # A regs[lane][4] (4 bytes), B regs[lane][2]; returns D[lane][4]
    Am = np.zeros((16,32),np.int64); Bm=np.zeros((32,8),np.int64)
    for l in range(32):
        g,t=l//4,l%4
        for i in range(4):
            e = to_elems(A[l][i],1)
            for b in range(4):
                idx=4*i+b
                row = g if (idx<4 or 8<=idx<12) else g+8
                col = 4*t + (idx&3) + (16 if idx>=8 else 0)
                Am[row,col]=e[b]
        for i in range(2):
            e = to_elems(B[l][i],1)
            for b in range(4):
                idx=4*i+b
                Bm[4*t+(idx&3)+(16 if idx>=4 else 0), g]=e[b]
    return frag_c(Am@Bm)

def mma16(A, B):  # 16-bit elements, two per reg
    Am = np.zeros((16,16),np.int64); Bm=np.zeros((16,8),np.int64)
    for l in range(32):
        g,t=l//4,l%4
        for i in range(4):
            e = to_elems(A[l][i],2)
            for b in range(2):
                idx=2*i+b
                row = g if idx in (0,1,4,5) else g+8
                Am[row, 2*t+(idx&1)+(8 if idx>=4 else 0)] = e[b]
        for i in range(2):
            e = to_elems(B[l][i],2)
            for b in range(2):
                idx=2*i+b
                Bm[2*t+(idx&1)+(8 if idx>=2 else 0), g]=e[b]
    return frag_c(Am@Bm)

def frag_c(D):
    out=[[0]*4 for _ in range(32)]
    for l in range(32):
        g,t=l//4,l%4
        out[l]=[D[g,2*t],D[g,2*t+1],D[g+8,2*t],D[g+8,2*t+1]]
    return out

def widen(reg):  # 4 int8 bytes -> two "16-bit" regs: (bytes 0,1), (bytes 2,3) as int16 elements
    v = reg.view(np.int8).astype(np.int16)
    return np.array(v[0:2]).view(np.uint8).copy(), np.array(v[2:4]).view(np.uint8).copy()

def compute_stage(smem, acc, eb, warp_m, warp_n, via_f16):
    for ks in range(2):
        A=[[None]*4 for _ in range(4)]  # per mi: regs[lane][4]
        Bf=[None]*4                      # per ni: regs[lane][2]
        for mi in range(4):
            addrs=[]
            for l in range(32):
                row = warp_m*64 + (l&7) + ((l>>3)&1)*8 + mi*16
                ch = ks*2 + (l>>4)
                addrs.append(row*ROWB + ((ch ^ ((l>>1)&3))<<4))
            A[mi]=ldmatrix_x4(smem, addrs)
        for nj in range(2):
            addrs=[]
            for l in range(32):
                row = warp_n*32 + (l&7) + (l>>4)*8 + nj*16
                ch = ks*2 + ((l>>3)&1)
                addrs.append(TILEB + row*ROWB + ((ch ^ ((l>>1)&3))<<4))
            r=ldmatrix_x4(smem, addrs)
            Bf[2*nj]=[[r[l][0],r[l][1]] for l in range(32)]
            Bf[2*nj+1]=[[r[l][2],r[l][3]] for l in range(32)]
        for mi in range(4):
            for ni in range(4):
                if eb==2:
                    d=mma16(A[mi],Bf[ni])
                elif via_f16:
                    alo=[];ahi=[];blo=[];bhi=[]
                    for l in range(32):
                        lg=widen(A[mi][l][0]); lg8=widen(A[mi][l][1]); hg=widen(A[mi][l][2]); hg8=widen(A[mi][l][3])
                        alo.append([lg[0],lg8[0],lg[1],lg8[1]]); ahi.append([hg[0],hg8[0],hg[1],hg8[1]])
                        b0=widen(Bf[ni][l][0]); b1=widen(Bf[ni][l][1])
                        blo.append([b0[0],b0[1]]); bhi.append([b1[0],b1[1]])
                    d1=mma16(alo,blo); d2=mma16(ahi,bhi)
                    d=[[d1[l][j]+d2[l][j] for j in range(4)] for l in range(32)]
                else:
                    d=mma8(A[mi],Bf[ni])
                for l in range(32):
                    for j in range(4): acc[(warp_m,warp_n,l)][mi][ni][j]+=d[l][j]

def run(eb, M, N, K, m0, n0, via_f16=False):
    lo,hi = (-127,128) if eb==1 else (-300,300)
    X = rng.integers(lo,hi,(M,K)).astype(np.int8 if eb==1 else np.int16)
    W = rng.integers(lo,hi,(N,K)).astype(np.int8 if eb==1 else np.int16)
    xb = X.view(np.uint8).reshape(M,K*eb); wb=W.view(np.uint8).reshape(N,K*eb)
    kbytes=K*eb; ktiles=(kbytes+63)//64
    acc={(wm,wn,l):[[[0]*4 for _ in range(4)] for _ in range(4)] for wm in range(2) for wn in range(4) for l in range(32)}
    for kt in range(ktiles):
        smem=np.zeros(2*TILEB,np.uint8)
        load_stage(smem,xb,wb,m0,n0,M,N,kbytes,kt)
        for wm in range(2):
            for wn in range(4):
                compute_stage(smem,acc,eb,wm,wn,via_f16)
    ref = X.astype(np.int64)@W.astype(np.int64).T
    Y = np.full((BM,BN), None, object)
    for (wm,wn,l),a in acc.items():
        g,t=l//4,l%4
        for mi in range(4):
            for ni in range(4):
                for j in range(4):
                    r = wm*64+mi*16+g+8*(j>>1); c = wn*32+ni*8+2*t+(j&1)
                    assert Y[r,c] is None; Y[r,c]=a[mi][ni][j]
    bad=0
    for r in range(BM):
        for c in range(BN):
            gr,gc=m0+r,n0+c
            if gr<M and gc<N and Y[r,c]!=ref[gr,gc]: bad+=1
    print(f"eb={eb} via_f16={via_f16} M={M} N={N} K={K} tile=({m0},{n0}): mismatches {bad}")
    FAILURES.append(bad)

run(1, 150, 140, 80, 0, 0)
run(1, 150, 140, 208, 128, 128)
run(1, 130, 135, 80, 0, 128, via_f16=True)
run(2, 140, 133, 40, 0, 0)
run(2, 140, 133, 72, 128, 0)

sys.exit(1 if any(FAILURES) else 0)
