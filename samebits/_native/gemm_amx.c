/* ------------------------------------------------------------- gemm amx */
/* The AMX path (SAMEBITS_ISA=amx): bfloat16 x @ W.T on AMX tiles, TDPBF16PS.

   Not portable. TDPBF16PS does not compute the PAIR order: on a Xeon with AMX
   (measured with small C programs when this path was specified; this kernel itself
   has not yet run on AMX hardware) 44-91% of its results matched each candidate
   order of roundings, the SDM's pseudocode (even and odd products in separate
   chains, C added once per instruction) included, so these bits exist only on CPUs
   with AMX. What the path keeps is invariance on such a CPU: an output's bits depend
   on its own row of A, its own row of W and K, never on M, the batch, the threads or
   the tiles (given that an element's result does not depend on where it sits in the
   tile, which tests/native/test_amx.py checks where the CPU has AMX).

   Order, per output (i, j): one float32 accumulator, +0 at first, then one
   TDPBF16PS per 32 k (16 pairs) in increasing k, the last chunk padded with zeros
   in both operands; then + bias as the PAIR order adds it (FTZ/DAZ). Every tile has
   one fixed shape (16 rows x 64 bytes) and every chunk starts at a multiple of 32,
   whatever M, N and the task split are; an output is always the same element of
   the same instruction's computation, its row and column positions in the tile
   aside (a row alone in a 1-row tile and in a 16-row tile measured equal in that
   specification's experiment).

   Roles: W is the tile A (16 output columns x 32 k, loaded in place, stride ldb)
   and x the tile B (16 pairs x 16 rows: x's 32-bit pairs transposed, packed once
   per task), so C's tiles hold outputs transposed (16 columns j x 16 rows i). W needs
   no packing, which is what decode (M = 1) reads most; x is packed once per task.
   A tile of W past N or past K is copied into a zero-padded buffer.

   SB_AMX_SIM (a test double): the same kernel with each tile instruction computed
   in C. Its TDPBF16PS does the PAIR order's steps, not AMX's unknown ones, so that
   path gives the portable bits and tests compare every byte: it checks this file's
   data movement (packing, padding, tile placement, transposes) on CPUs without AMX. */

#ifdef SB_AMX

#define AX_MB 128 /* rows of x per task (a multiple of 32, <= PQ_MB) */
#define AX_NB 128 /* columns per block of a task (a multiple of 32, <= PQ_NB) */
#define AX_KC 512 /* k per block (a multiple of 32) */

#ifdef SB_AMX_SIM
static _Thread_local uint32_t ax_reg[8][16][16];
static void ax_load(int t, const void *p, i64 stride) {
    for (int r = 0; r < 16; r++) memcpy(ax_reg[t][r], (const char *)p + r * stride, 64);
}
static void ax_store(int t, void *p, i64 stride) {
    for (int r = 0; r < 16; r++) memcpy((char *)p + r * stride, ax_reg[t][r], 64);
}
static void ax_zero(int t) { memset(ax_reg[t], 0, sizeof ax_reg[t]); }
/* C[m][n] += sum over pairs p of A[m][p] . B[p][n], the PAIR order's two steps */
static void ax_dp(int c, int a, int b) {
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float acc;
            memcpy(&acc, &ax_reg[c][m][n], 4);
            for (int p = 0; p < 16; p++) {
                uint32_t wa = ax_reg[a][m][p], wb = ax_reg[b][p][n];
                acc = pr_fma(bf2f((uint16_t)(wa >> 16)), bf2f((uint16_t)(wb >> 16)), acc);
                acc = pr_fma(bf2f((uint16_t)wa), bf2f((uint16_t)wb), acc);
            }
            memcpy(&ax_reg[c][m][n], &acc, 4);
        }
}
#define AX_LOAD(t, p, s) ax_load(t, p, s)
#define AX_STORE(t, p, s) ax_store(t, p, s)
#define AX_ZERO(t) ax_zero(t)
#define AX_DP(c, a, b) ax_dp(c, a, b)
static void ax_config(void) {}
static void ax_release(void) {}
#else
/* Own asm for the loads and the configuration: GCC's _tile_loadd declares no memory
   read (so stores into the packing buffers could move past it) and its
   _tile_loadconfig only the first 8 bytes of the 64 it reads. */
#define AX_LOAD(t, p, s) \
    __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"((const void *)(p)), "r"((long)(s)) : "memory")
#define AX_STORE(t, p, s) \
    __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"((void *)(p)), "r"((long)(s)) : "memory")
#define AX_ZERO(t) __asm__ volatile("tilezero %%tmm" #t ::)
/* tmm c += tmm a (rows of W pairs) . tmm b (pairs x columns of x) */
#define AX_DP(c, a, b) __asm__ volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)
struct ax_cfg { /* ldtilecfg's operand */
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};
/* palette 1, tiles 0-7 all 16 rows x 64 bytes */
static void ax_config(void) {
    struct ax_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    __asm__ volatile("ldtilecfg %0" ::"m"(cfg) : "memory");
}
static void ax_release(void) { __asm__ volatile("tilerelease" ::: "memory"); }
#endif

/* Pack rows [0, mc) of x (row r at X + xoff[r]) over all of K into B tiles:
   xp[(mt * kt_n + kt) * 256 + p * 16 + c] = the pair at 32 kt + 2p of row 16 mt + c
   (low half the even k), kt_n = ceil(K / 32); zeros past mc and past K. Only words
   move. */
static void ax_pack_x(const uint16_t *X, const i64 *xoff, i64 mc, i64 K, uint32_t *xp) {
    i64 kt_n = (K + 31) / 32, mt_n = (mc + 15) / 16;
    for (i64 mt = 0; mt < mt_n; mt++)
        for (i64 kt = 0; kt < kt_n; kt++) {
            uint32_t *d = xp + (mt * kt_n + kt) * 256;
            i64 k = 32 * kt, rows = mc - 16 * mt < 16 ? mc - 16 * mt : 16;
#ifdef PR_ZMM
            if (rows == 16 && k + 32 <= K) { /* 16 rows x 16 pairs: one transpose */
                __m512i r[16];
                for (int c = 0; c < 16; c++) r[c] = _mm512_loadu_si512((const void *)(X + xoff[16 * mt + c] + k));
                t16x16(r);
                for (int p = 0; p < 16; p++) _mm512_storeu_si512((void *)(d + 16 * p), r[p]);
                continue;
            }
#endif
            for (int p = 0; p < 16; p++)
                for (int c = 0; c < 16; c++) {
                    i64 e = k + 2 * p;
                    uint32_t lo = 0, hi = 0;
                    if (c < rows && e < K) {
                        const uint16_t *row = X + xoff[16 * mt + c];
                        lo = row[e];
                        if (e + 1 < K) hi = row[e + 1];
                    }
                    d[16 * p + c] = lo | hi << 16;
                }
        }
}

/* Where each A tile (W rows j0 + 16 nt.., k0 + 32 kt..) is read from: in place
   (stride ldb elements) when it lies inside N and K, else a zero-padded copy in pad */
static void ax_w_tiles(const uint16_t *W, i64 ldb, i64 j0, i64 nc, i64 N, i64 k0, i64 kc, i64 K,
                       uint16_t *pad, const uint16_t **at, i64 *stride) {
    i64 kt_n = (kc + 31) / 32, nt_n = (nc + 15) / 16;
    for (i64 nt = 0; nt < nt_n; nt++)
        for (i64 kt = 0; kt < kt_n; kt++) {
            i64 j = j0 + 16 * nt, k = k0 + 32 * kt, x = nt * kt_n + kt;
            if (j + 16 <= N && k + 32 <= K) {
                at[x] = W + j * ldb + k;
                stride[x] = ldb * 2;
                continue;
            }
            uint16_t *d = pad + x * 512;
            memset(d, 0, 1024);
            i64 rows = N - j < 16 ? N - j : 16, n = K - k < 32 ? K - k : 32;
            for (i64 r = 0; r < rows; r++) memcpy(d + 32 * r, W + (j + r) * ldb + k, (size_t)n * 2);
            at[x] = d;
            stride[x] = 64;
        }
}

/* pair_gemm's arguments with B K-contiguous and every A row one run.
   Tasks: (batch item, up to AX_MB rows, a range of columns as wide as the thread
   count allows). A task packs its rows of x once over all of K (its tiles are then
   read from L2 by every column block), and walks its columns AX_NB at a time: per
   512-k block, 32 x 32 outputs (four C tiles) at a time, the sums waiting in sT
   (float32, exact) between blocks. */
static int ax_gemm(const uint16_t *A, i64 lda, i64 sa, const uint16_t *B, i64 ldb, i64 sb, float *C,
                   i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt, int th,
                   const struct omap *om) {
    i64 mt = (M + AX_MB - 1) / AX_MB, ktot = (K + 31) / 32;
    /* column ranges (multiples of 32) so that there are about 4 tasks per thread */
    i64 split = th > 1 && batch * mt < 4 * th ? (4 * th + batch * mt - 1) / (batch * mt) : 1;
    i64 NR = ((N + split - 1) / split + 31) / 32 * 32, nt = (N + NR - 1) / NR;
    i64 tasks = batch * mt * nt;
    int oom = 0;
#pragma omp parallel num_threads(th)
    {
        /* sT: C's tiles (column j rows of AX_MB floats); s: the same outputs by row i */
        float *sT = pack_buffer(5, (size_t)2 * AX_MB * AX_NB);
        uint32_t *xp = (uint32_t *)pack_buffer(6, (size_t)(AX_MB / 16) * (size_t)(ktot > 0 ? ktot : 1) * 256);
        uint16_t *pad = (uint16_t *)pack_buffer(7, (size_t)(AX_NB / 16) * (AX_KC / 32) * 256);
        const uint16_t *wat[(AX_NB / 16) * (AX_KC / 32)];
        i64 wst[(AX_NB / 16) * (AX_KC / 32)], xoff[AX_MB];
        float bb[PQ_NB];
        if (!sT || !xp || !pad) {
#pragma omp atomic write
            oom = 1;
        }
        unsigned old = pr_ftz_on();
        if (sT && xp && pad) ax_config();
#pragma omp for schedule(dynamic, 1)
        for (i64 t = 0; t < tasks; t++) {
            if (!sT || !xp || !pad) continue;
            i64 bi = t / (mt * nt), rest = t % (mt * nt), ti = rest / nt, tj = rest % nt;
            i64 i0 = ti * AX_MB, mc = M - i0 < AX_MB ? M - i0 : AX_MB;
            i64 jr = tj * NR, jend = jr + NR < N ? jr + NR : N;
            const uint16_t *Ab = A + bi * sa, *Bb = B + bi * sb;
            float *s = sT + AX_MB * AX_NB;
            omap_arows(om, lda, i0, mc, xoff);
            if (K > 0) ax_pack_x(Ab, xoff, mc, K, xp); /* tile (mt, kt) at (mt * ktot + kt) * 256 */
            for (i64 j0 = jr; j0 < jend; j0 += AX_NB) {
                i64 nc = jend - j0 < AX_NB ? jend - j0 : AX_NB;
                for (i64 k0 = 0; k0 < K || k0 == 0; k0 += AX_KC) {
                    i64 kc = K - k0 < AX_KC ? K - k0 : AX_KC, kt_n = (kc + 31) / 32;
                    if (kc > 0) ax_w_tiles(Bb, ldb, j0, nc, N, k0, kc, K, pad, wat, wst);
                    for (i64 mm = 0; mm < mc; mm += 32) {
                        int two_m = mc - mm > 16; /* x rows in the second 16 */
                        const uint32_t *xm = xp + ((mm / 16) * ktot + k0 / 32) * 256;
                        for (i64 nn = 0; nn < nc; nn += 32) {
                            int two_n = nc - nn > 16;
                            /* tile 0: (j nn.., i mm..), 1: (j nn.., i mm + 16..), 2 and 3: j nn + 16.. */
                            float *c0 = sT + nn * AX_MB + mm, *c2 = c0 + 16 * AX_MB;
                            const i64 cs = AX_MB * 4;
                            if (k0 == 0) {
                                AX_ZERO(0);
                                AX_ZERO(1);
                                AX_ZERO(2);
                                AX_ZERO(3);
                            } else {
                                AX_LOAD(0, c0, cs);
                                if (two_m) AX_LOAD(1, c0 + 16, cs);
                                if (two_n) AX_LOAD(2, c2, cs);
                                if (two_n && two_m) AX_LOAD(3, c2 + 16, cs);
                            }
                            for (i64 kt = 0; kt < kt_n; kt++) {
                                i64 w0 = (nn / 16) * kt_n + kt, w1 = w0 + kt_n;
                                const uint32_t *x0 = xm + kt * 256;
                                AX_LOAD(4, wat[w0], wst[w0]);
                                AX_LOAD(6, x0, 64);
                                AX_DP(0, 4, 6);
                                if (two_m) {
                                    AX_LOAD(7, x0 + ktot * 256, 64);
                                    AX_DP(1, 4, 7);
                                }
                                if (two_n) {
                                    AX_LOAD(5, wat[w1], wst[w1]);
                                    AX_DP(2, 5, 6);
                                    if (two_m) AX_DP(3, 5, 7);
                                }
                            }
                            AX_STORE(0, c0, cs);
                            if (two_m) AX_STORE(1, c0 + 16, cs);
                            if (two_n) AX_STORE(2, c2, cs);
                            if (two_n && two_m) AX_STORE(3, c2 + 16, cs);
                        }
                    }
                    if (kc <= 0) break;
                }
                for (i64 r = 0; r < mc; r++) /* by row: s[r][c] = sT[c][r] */
                    for (i64 c = 0; c < nc; c++) s[r * AX_NB + c] = sT[c * AX_MB + r];
                pq_out(om, s, AX_NB, i0, mc, j0, nc, bias, bdt, (char *)C + bi * sc * (om->cbf ? 2 : 4), bb);
            }
        }
        if (sT && xp && pad) ax_release();
        pr_ftz_off(old);
    }
    return oom ? -1 : 0;
}
#endif
