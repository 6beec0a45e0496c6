/* ------------------------------------------------------------------ gemm */
/* C[b][i][j] = SEQ_k A[b][i][k] * B[b][k][j], any strides: A element (i, k) at
   A[i*lda + k*ka], B element (k, j) at B[k*bk + j*bn]; C fp32, row stride ldc.

   GotoBLAS-style blocking: the output is cut into MC x NC tiles (threads take
   whole tiles), K into KC blocks. Per K block a tile packs its B block into
   16-column panels ([k][16], float) and its A block into 6-row panels ([k][6]),
   then a 6x16 register kernel runs the FMAs for k in increasing order. Between
   K blocks the running sums wait in C as float32, which is exact, so for every
   output the operations are: acc = +0; acc = fma(a[k], b[k], acc) for k = 0..K-1;
   then acc + bias[j]. Tile and block sizes only change which outputs share a
   pass, never that sequence. */
#define GMR 6
#define GNR 16
#define GKC 256
#define GMC 96
#define GNC 256
#define GSMALL_M 12
#define GSMALL_KC 4096

static void pack_b(const char *B, i64 bk, i64 bn, int dt, i64 k0, i64 kc, i64 j0, i64 nc,
                   float *dst) {
    size_t e = esz(dt);
    for (i64 p = 0; p < nc; p += GNR) {
        float *d = dst + p * kc;
        int w = (int)(nc - p < GNR ? nc - p : GNR);
        int h = 0;
#ifdef SB_AVX2
        if (bk == 1) {
            /* K-contiguous (a weight in x @ W.T, keys in q @ k.T): 8x8 transposes */
            for (; h + 8 <= w; h += 8) {
                i64 src = (j0 + p + h) * bn;
                i64 k = 0;
                for (; k + 8 <= kc; k += 8) {
                    i64 s = src + k0 + k;
                    __m256 r[8], t[8];
                    for (int w = 0; w < 8; w++) r[w] = v8_load(B, s + w * bn, dt);
                    t8x8(r, t);
                    float *o = d + k * GNR + h;
                    for (int c = 0; c < 8; c++) _mm256_storeu_ps(o + c * GNR, t[c]);
                }
                for (; k < kc; k++)
                    for (int c = 0; c < 8; c++) d[k * GNR + h + c] = ld(B, src + c * bn + k0 + k, dt);
            }
        }
#endif
        if (bn == 1 && h == 0 && w == GNR) {
            /* N-contiguous (p @ v, x @ W): a copy per k */
            for (i64 k = 0; k < kc; k++) {
                const char *s = B + ((k0 + k) * bk + j0 + p) * e;
                v8_store(d + k * GNR, v8_load(s, 0, dt));
                v8_store(d + k * GNR + 8, v8_load(s, 8, dt));
            }
            continue;
        }
        if (h == GNR) continue;
        for (i64 k = 0; k < kc; k++) {
            for (int c = h; c < w; c++) d[k * GNR + c] = ld(B, (k0 + k) * bk + (j0 + p + c) * bn, dt);
            for (int c = w; c < GNR; c++) d[k * GNR + c] = 0.0f;
        }
    }
}

static void pack_a(const char *A, i64 lda, i64 ka, int dt, i64 i0, i64 mc, i64 k0, i64 kc,
                   float *dst) {
    for (i64 p = 0; p < mc; p += GMR) {
        float *d = dst + p * kc;
        int h = (int)(mc - p < GMR ? mc - p : GMR);
        for (int r = 0; r < h; r++) { /* rows past h are never read (see micro_rows) */
            i64 base = (i0 + p + r) * lda + k0 * ka;
            if (ka == 1 && dt == F32) {
                const float *s = (const float *)A + base;
                for (i64 k = 0; k < kc; k++) d[k * GMR + r] = s[k];
            } else {
                for (i64 k = 0; k < kc; k++) d[k * GMR + r] = ld(A, base + k * ka, dt);
            }
        }
    }
}

/* acc (MR x 16) = C (or +0 on the first K block) + SEQ over this block, then
   + bias on the last block. Rows are independent: MR only decides how many are
   computed, never the operations of one output. */
static inline __attribute__((always_inline)) void micro_rows(const float *ap, const float *bp,
                                                             i64 kc, float *C, i64 ldc, const int MR,
                                                             int nr, int first, const float *bias) {
    v8 acc[GMR][2];
    for (int r = 0; r < MR; r++) {
        if (first) {
            acc[r][0] = acc[r][1] = v8_zero();
        } else if (nr == GNR) {
            acc[r][0] = v8_load(C + r * ldc, 0, F32);
            acc[r][1] = v8_load(C + r * ldc, 8, F32);
        } else {
            acc[r][0] = v8_load_n(C + r * ldc, 0, nr < 8 ? nr : 8, F32);
            acc[r][1] = nr > 8 ? v8_load_n(C + r * ldc, 8, nr - 8, F32) : v8_zero();
        }
    }
    for (i64 k = 0; k < kc; k++) {
        v8 b0 = v8_load(bp + k * GNR, 0, F32), b1 = v8_load(bp + k * GNR, 8, F32);
        const float *a = ap + k * GMR;
        for (int r = 0; r < MR; r++) {
            v8 av = v8_set1(a[r]);
            acc[r][0] = v8_fma(av, b0, acc[r][0]);
            acc[r][1] = v8_fma(av, b1, acc[r][1]);
        }
    }
    if (bias) {
        v8 c0 = v8_load(bias, 0, F32), c1 = v8_load(bias, 8, F32);
        for (int r = 0; r < MR; r++) {
            acc[r][0] = v8_add(acc[r][0], c0);
            acc[r][1] = v8_add(acc[r][1], c1);
        }
    }
    for (int r = 0; r < MR; r++) {
        float *c = C + r * ldc;
        if (nr == GNR) {
            v8_store(c, acc[r][0]);
            v8_store(c + 8, acc[r][1]);
        } else {
            v8_store_n(c, acc[r][0], nr < 8 ? nr : 8);
            if (nr > 8) v8_store_n(c + 8, acc[r][1], nr - 8);
        }
    }
}

/* The same operations on NP full panels side by side (NP * 16 columns): for
   one to four rows, so that enough independent FMA chains hide the latency. */
static inline __attribute__((always_inline)) void micro_wide(const float *ap, const float *bp,
                                                             i64 kc, float *C, i64 ldc, const int MR,
                                                             const int NP, int first,
                                                             const float *bias) {
    v8 acc[4][8];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < 2 * NP; v++)
            acc[r][v] = first ? v8_zero() : v8_load(C + r * ldc, 8 * v, F32);
    for (i64 k = 0; k < kc; k++) {
        v8 bv[8];
        for (int v = 0; v < 2 * NP; v++) bv[v] = v8_load(bp + (v / 2) * GNR * kc + k * GNR, 8 * (v % 2), F32);
        const float *a = ap + k * GMR;
        for (int r = 0; r < MR; r++) {
            v8 av = v8_set1(a[r]);
            for (int v = 0; v < 2 * NP; v++) acc[r][v] = v8_fma(av, bv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < 2 * NP; v++) {
            if (bias) acc[r][v] = v8_add(acc[r][v], v8_load(bias, 8 * v, F32));
            v8_store(C + r * ldc + 8 * v, acc[r][v]);
        }
}

#define MICRO(R)                                                                                   \
    static void micro_##R(const float *ap, const float *bp, i64 kc, float *C, i64 ldc, int nr,     \
                          int first, const float *bias) {                                          \
        micro_rows(ap, bp, kc, C, ldc, R, nr, first, bias);                                        \
    }
MICRO(1)
MICRO(2)
MICRO(3)
MICRO(4)
MICRO(5)
MICRO(6)
typedef void (*micro_fn)(const float *, const float *, i64, float *, i64, int, int, const float *);
static const micro_fn MICROS[GMR + 1] = {NULL, micro_1, micro_2, micro_3, micro_4, micro_5, micro_6};

/* The DOT path's lane kernel reading float32 A in place: lane l of rows
   a, a + lda, ... is a[8k] for k < kc (a = &A[row][k0 + l]), exactly the values
   the lane-major packing would have put at [l][k][r]. Lanes past K run fewer
   steps instead of multiplying packed zeros; fma(0, 0, acc) == acc because acc,
   a sum that starts at +0, is never -0, so the bits are the packed kernel's. */
static inline __attribute__((always_inline)) void micro_lane(const float *a, i64 lda, const float *bp,
                                                             i64 kc, float *C, const int MR, int first) {
    v8 acc[GMR][2];
    for (int r = 0; r < MR; r++) {
        acc[r][0] = first ? v8_zero() : v8_load(C + r * GNR, 0, F32);
        acc[r][1] = first ? v8_zero() : v8_load(C + r * GNR, 8, F32);
    }
    for (i64 k = 0; k < kc; k++) {
        v8 b0 = v8_load(bp + k * GNR, 0, F32), b1 = v8_load(bp + k * GNR, 8, F32);
        for (int r = 0; r < MR; r++) {
            v8 av = v8_set1(a[r * lda + 8 * k]);
            acc[r][0] = v8_fma(av, b0, acc[r][0]);
            acc[r][1] = v8_fma(av, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < MR; r++) {
        v8_store(C + r * GNR, acc[r][0]);
        v8_store(C + r * GNR + 8, acc[r][1]);
    }
}

#define LANE(R)                                                                                    \
    static void lane_##R(const float *a, i64 lda, const float *bp, i64 kc, float *C, int first) { \
        micro_lane(a, lda, bp, kc, C, R, first);                                                   \
    }
LANE(1)
LANE(2)
LANE(3)
LANE(4)
LANE(5)
LANE(6)
typedef void (*lane_fn)(const float *, i64, const float *, i64, float *, int);
static const lane_fn LANES[GMR + 1] = {NULL, lane_1, lane_2, lane_3, lane_4, lane_5, lane_6};

#define WIDE(R, NP)                                                                                \
    static void wide_##R(const float *ap, const float *bp, i64 kc, float *C, i64 ldc, int first,   \
                         const float *bias) {                                                      \
        micro_wide(ap, bp, kc, C, ldc, R, NP, first, bias);                                        \
    }
WIDE(1, 4)
WIDE(2, 2)
WIDE(3, 2)
typedef void (*wide_fn)(const float *, const float *, i64, float *, i64, int, const float *);
static const wide_fn WIDES[4] = {NULL, wide_1, wide_2, wide_3};
static const int WIDE_NP[4] = {0, 4, 2, 2};

#if defined(__AVX512F__)
#define SB_ZMM 1
/* AVX-512: six rows x NP (2 or 4) full 16-column panels, one zmm per row and panel,
   so 6 NP independent FMA chains (a 16-column panel in one zmm gives only six), and
   per k NP panel loads and six broadcasts feed 6 NP FMAs (four panels: 10 loads per
   24 FMAs instead of 8 per 12). Per output the operations of micro_rows / micro_lane
   exactly: C (or +0), one fma per k, + bias.
   A element (r, k) is a[r * ars + k * aks]: packed panels (ars 1, aks GMR) or rows
   read in place by the DOT lanes (ars lda, aks 8). Panel u: B at bp[u], C at Cp[u],
   bias bias[u] (or none). */
static inline __attribute__((always_inline)) void zmm_rows(const float *a, i64 ars, i64 aks,
                                                           const float *const bp[4], i64 kc,
                                                           float *const Cp[4], i64 ldc, int first,
                                                           const float *const bias[4], const int NP) {
    __m512 acc[GMR][4];
    for (int r = 0; r < GMR; r++)
        for (int u = 0; u < NP; u++)
            acc[r][u] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(Cp[u] + r * ldc);
    for (i64 k = 0; k < kc; k++) {
        __m512 b[4];
        for (int u = 0; u < NP; u++) b[u] = _mm512_loadu_ps(bp[u] + k * GNR);
        for (int r = 0; r < GMR; r++) {
            __m512 av = _mm512_set1_ps(a[r * ars + k * aks]);
            for (int u = 0; u < NP; u++) acc[r][u] = _mm512_fmadd_ps(av, b[u], acc[r][u]);
        }
    }
    for (int r = 0; r < GMR; r++)
        for (int u = 0; u < NP; u++) {
            if (bias && bias[u]) acc[r][u] = _mm512_add_ps(acc[r][u], _mm512_loadu_ps(bias[u]));
            _mm512_storeu_ps(Cp[u] + r * ldc, z16_canon(acc[r][u]));
        }
}

static void micro2_6(const float *ap, const float *bp0, const float *bp1, i64 kc, float *C0,
                     float *C1, i64 ldc, int first, const float *bias0, const float *bias1) {
    const float *bp[4] = {bp0, bp1}, *bias[4] = {bias0, bias1};
    float *Cp[4] = {C0, C1};
    zmm_rows(ap, 1, GMR, bp, kc, Cp, ldc, first, bias, 2);
}

/* the DOT path's kernel (no bias: the lanes go to the tree) on NP = 2 or 4 panels, A
   packed (ars 1, aks GMR) or read in place (ars lda, aks 8) */
static void zmm_rows_n6(const float *a, i64 ars, i64 aks, const float *const bp[4], i64 kc,
                        float *const Cp[4], int first, int np) {
    if (np == 4) zmm_rows(a, ars, aks, bp, kc, Cp, GNR, first, NULL, 4);
    else zmm_rows(a, ars, aks, bp, kc, Cp, GNR, first, NULL, 2);
}
#endif

/* Per-thread packing buffers, allocated once per thread and kept: a fresh
   allocation per call would cost page faults on every small product. */
static _Thread_local float *tl_pack[8];
static _Thread_local size_t tl_cap[8];
static float *pack_buffer(int which, size_t n) {
    if (tl_cap[which] < n) {
        free(tl_pack[which]);
        n = (n + 4095) / 4096 * 4096;
        tl_pack[which] = aligned_alloc(64, sizeof(float) * n);
        tl_cap[which] = tl_pack[which] ? n : 0;
    }
    return tl_pack[which];
}

/* ------------------------------------------------------------- DOT gemm */
/* DOT order (B K-contiguous): for output (i, j) eight lanes, lane l holding
   SEQ over k = l, l+8, l+16, ... (the last partial block padded with zeros,
   fma(0, 0, acc)); then ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), then + bias.

   Two kernels compute exactly these operations:
   * dot_small (few rows): each output's 8 lanes sit in one vector, A and B rows
     are read in place; best when B is read once (a matrix-vector product).
   * dot_packed (many rows): each lane is a GEMM of depth ceil(K/8); lane l of
     A and B is packed as 6-row / 16-column panels and run by the SEQ register
     kernel, the lane sums wait in a buffer, and the tree runs on vectors of 8
     outputs. */
#define DOT_MICRO(MR, NR_DOT)                                                                      \
    static inline __attribute__((always_inline)) void dot_micro_##MR##x##NR_DOT(                      \
        const void *const *a, const void *const *b, float *out[MR], i64 K, const int dt) {    \
        v8 acc[MR][NR_DOT];                                                                  \
        for (int r = 0; r < MR; r++)                                                         \
            for (int c = 0; c < NR_DOT; c++) acc[r][c] = v8_zero();                          \
        i64 k = 0;                                                                           \
        for (; k + 8 <= K; k += 8) {                                                         \
            /* MR A vectors stay live; B streams one column at a time (fits 16 regs) */       \
            v8 av[MR];                                                                       \
            for (int r = 0; r < MR; r++) av[r] = v8_load(a[r], k, dt);                       \
            for (int c = 0; c < NR_DOT; c++) {                                               \
                v8 bv = v8_load(b[c], k, dt);                                                \
                for (int r = 0; r < MR; r++) acc[r][c] = v8_fma(av[r], bv, acc[r][c]);       \
            }                                                                                \
        }                                                                                    \
        if (k < K) {                                                                         \
            int n = (int)(K - k);                                                            \
            v8 bv[NR_DOT];                                                                   \
            for (int c = 0; c < NR_DOT; c++) bv[c] = v8_load_n(b[c], k, n, dt);              \
            for (int r = 0; r < MR; r++) {                                                   \
                v8 av = v8_load_n(a[r], k, n, dt);                                           \
                for (int c = 0; c < NR_DOT; c++) acc[r][c] = v8_fma(av, bv[c], acc[r][c]);   \
            }                                                                                \
        }                                                                                    \
        for (int r = 0; r < MR; r++)                                                         \
            for (int c = 0; c < NR_DOT; c++) out[r][c] = v8_tree(acc[r][c]);                 \
    }
DOT_MICRO(1, 8)
DOT_MICRO(3, 4)

/* dtype-specialized entry points: dt is a compile-time constant inside each */
static void dot_3x4_f32(const void *const *a, const void *const *b, float *out[3], i64 K) { dot_micro_3x4(a, b, out, K, F32); }
static void dot_3x4_bf16(const void *const *a, const void *const *b, float *out[3], i64 K) { dot_micro_3x4(a, b, out, K, BF16); }
static void dot_1x8_f32(const void *const *a, const void *const *b, float *out[1], i64 K) { dot_micro_1x8(a, b, out, K, F32); }
static void dot_1x8_bf16(const void *const *a, const void *const *b, float *out[1], i64 K) { dot_micro_1x8(a, b, out, K, BF16); }


#ifdef __AVX512F__
/* float32 DOT on AVX-512, rows read in place: MR rows x 8 columns per call. A zmm
   holds the eight lanes of two outputs (columns 2p and 2p + 1 of one row): A's eight
   k broadcast to both halves, B's two rows side by side, so one FMA does both outputs'
   lane steps. Each lane runs exactly dot_micro's chain (the last block zero-padded),
   then the same tree. out[r * 8 + c]. */
static inline __attribute__((always_inline)) void dotz_micro(const float *const *a, const float *const *b,
                                                             float *out, i64 K, const int MR) {
    __m512 acc[4][4];
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < 4; p++) acc[r][p] = _mm512_setzero_ps();
    i64 k = 0;
    for (; k + 8 <= K; k += 8) {
        __m512 bv[4];
        for (int p = 0; p < 4; p++)
            bv[p] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(b[2 * p] + k)),
                                       _mm256_loadu_ps(b[2 * p + 1] + k), 1);
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_broadcast_f32x8(_mm256_loadu_ps(a[r] + k));
            for (int p = 0; p < 4; p++) acc[r][p] = _mm512_fmadd_ps(av, bv[p], acc[r][p]);
        }
    }
    if (k < K) { /* the last block, zeros past K */
        __mmask8 m = (__mmask8)((1u << (K - k)) - 1);
        __m512 bv[4];
        for (int p = 0; p < 4; p++)
            bv[p] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_maskz_loadu_ps(m, b[2 * p] + k)),
                                       _mm256_maskz_loadu_ps(m, b[2 * p + 1] + k), 1);
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_broadcast_f32x8(_mm256_maskz_loadu_ps(m, a[r] + k));
            for (int p = 0; p < 4; p++) acc[r][p] = _mm512_fmadd_ps(av, bv[p], acc[r][p]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < 4; p++) {
            out[r * 8 + 2 * p] = v8_tree(_mm512_castps512_ps256(acc[r][p]));
            out[r * 8 + 2 * p + 1] = v8_tree(_mm512_extractf32x8_ps(acc[r][p], 1));
        }
}
typedef void (*dotz_fn)(const float *const *, const float *const *, float *, i64);
#define DOTZ_DEF(MR) \
    static void dotz_##MR(const float *const *a, const float *const *b, float *out, i64 K) { dotz_micro(a, b, out, K, MR); }
DOTZ_DEF(1) DOTZ_DEF(2) DOTZ_DEF(3) DOTZ_DEF(4)
static const dotz_fn DOTZ[5] = {NULL, dotz_1, dotz_2, dotz_3, dotz_4};

/* dot_small's float32 tile [i0, i1) x [j0, j1) on AVX-512 */
static void dotz_tile(const float *Ab, i64 lda, const float *Bb, i64 ldb, float *Cb, i64 ldc, i64 i0,
                      i64 i1, i64 j0, i64 j1, i64 K, const void *bias, int bdt) {
    for (i64 j = j0; j < j1; j += 8) {
        const float *bp[8];
        int nc = (int)(j1 - j < 8 ? j1 - j : 8);
        /* missing columns reuse column j; their results are discarded */
        for (int c = 0; c < 8; c++) bp[c] = Bb + (j + (c < nc ? c : 0)) * ldb;
        for (i64 i = i0; i < i1; i += 4) {
            int mr = (int)(i1 - i < 4 ? i1 - i : 4);
            const float *ap[4];
            for (int r = 0; r < mr; r++) ap[r] = Ab + (i + r) * lda;
            float o[32];
            DOTZ[mr](ap, bp, o, K);
            for (int r = 0; r < mr; r++)
                for (int c = 0; c < nc; c++)
                    Cb[(i + r) * ldc + j + c] = canon(bias ? o[r * 8 + c] + ld(bias, j + c, bdt) : o[r * 8 + c]);
        }
    }
}
#endif

/* (batch, M, K) x (batch, N, K) rows in place; C = tree(lanes) [+ bias] */
static void dot_small(const void *A, i64 lda, i64 sa, const void *B, i64 ldb, i64 sb, float *C,
                      i64 ldc, i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt,
                      int dt, int th) {
    /* Tiles: MB rows x NB cols so that both operand blocks stay in L2. */
    i64 span = (i64)(262144 / ((K > 0 ? K : 1) * (i64)esz(dt)));
    i64 NB = span < 8 ? 8 : (span > 256 ? 256 : span);
    NB -= NB % 8;
    i64 MB = NB - NB % 3;
    if (MB < 3) MB = 3;
#ifdef __AVX512F__
    if (dt == F32) MB = NB; /* dotz_tile's groups of 4 rows (NB is a multiple of 8) */
#endif
    i64 mt = (M + MB - 1) / MB, nt = (N + NB - 1) / NB, tiles = batch * mt * nt;
    size_t e = esz(dt);
#pragma omp parallel for schedule(dynamic, 1) num_threads(th) /* tiles differ in size */
    for (i64 t = 0; t < tiles; t++) {
        i64 bi = t / (mt * nt), rest = t % (mt * nt), ti = rest / nt, tj = rest % nt;
        const char *Ab = (const char *)A + bi * sa * e;
        const char *Bb = (const char *)B + bi * sb * e;
        float *Cb = C + bi * sc;
        i64 i0 = ti * MB, i1 = i0 + MB < M ? i0 + MB : M;
        i64 j0 = tj * NB, j1 = j0 + NB < N ? j0 + NB : N;
#ifdef __AVX512F__
        if (dt == F32 && i1 - i0 > 1) { /* (one row: the ymm kernel below reads B faster) */
            dotz_tile((const float *)Ab, lda, (const float *)Bb, ldb, Cb, ldc, i0, i1, j0, j1, K, bias, bdt);
            continue;
        }
#endif
        i64 i3 = i0 + (i1 - i0) / 3 * 3; /* rows [i0, i3) in triples, the rest one by one */
        for (i64 j = j0; j < j1 && i0 < i3; j += 4) {
            const void *bp[4];
            int nc = (int)(j1 - j < 4 ? j1 - j : 4);
            /* missing columns reuse column j; their results are discarded */
            for (int c = 0; c < 4; c++) bp[c] = Bb + (j + (c < nc ? c : 0)) * ldb * e;
            for (i64 i = i0; i < i3; i += 3) {
                const void *ap[3] = {Ab + i * lda * e, Ab + (i + 1) * lda * e, Ab + (i + 2) * lda * e};
                float o[3][4];
                float *op[3] = {o[0], o[1], o[2]};
                (dt == BF16 ? dot_3x4_bf16 : dot_3x4_f32)(ap, bp, op, K);
                for (int r = 0; r < 3; r++)
                    for (int c = 0; c < nc; c++)
                        Cb[(i + r) * ldc + j + c] = canon(bias ? o[r][c] + ld(bias, j + c, bdt) : o[r][c]);
            }
        }
        for (i64 i = i3; i < i1; i++) {
            const void *ap[1] = {Ab + i * lda * e};
            for (i64 j = j0; j < j1; j += 8) {
                const void *bp[8];
                int nc = (int)(j1 - j < 8 ? j1 - j : 8);
                for (int c = 0; c < 8; c++) bp[c] = Bb + (j + (c < nc ? c : 0)) * ldb * e;
                float o[1][8];
                float *op[1] = {o[0]};
                (dt == BF16 ? dot_1x8_bf16 : dot_1x8_f32)(ap, bp, op, K);
                for (int c = 0; c < nc; c++)
                    Cb[i * ldc + j + c] = canon(bias ? o[0][c] + ld(bias, j + c, bdt) : o[0][c]);
            }
        }
    }
}


#define DOT_SMALL_M 16
#define DOT_NARROW_N 512
#define DOT_NARROW_M 32
#define DOT_MID_M 64
#ifndef DKC
#define DKC 512 /* k per block, a multiple of 8: 64 per lane */
#endif
#ifndef DMC
#define DMC 96
#endif
#ifndef DNC
#define DNC 256
#endif

/* Where output (i, j) of one batch item goes (sb_gemm_map): with R = i + ioff,
   C + (R / wq) * so + (R % wq) * si + j * sj, and rows with R % wq >= keep are not
   stored. It lets a convolution write NCHW output directly (a column stride), skip
   the junk columns of its "wide" rows, and start a chunk of rows mid-image.
   A's rows may also be runs (arun > 0): element (i, k) of a K-contiguous A at
   A[i * lda + (k / arun) * astride + k % arun], so a convolution reads the taps of
   every kernel row straight from its padded input (an implicit im2col). Runs are a
   multiple of the order's block (8 for DOT, a pair for PAIR) and K blocks never
   straddle them, so every output gets the operations it gets from the same A copied out.
   map[9] holds flags: 1 (cbf, PAIR only), C is bfloat16: each result is rounded once,
   as torch's .to(torch.bfloat16) would, and C's strides count bfloat16 elements;
   2 (rbias), the bias is indexed by the row i instead of the column j (a product
   computed transposed: out^T = W @ X, so a convolution's channels are rows; DOT
   only with a K-major B, element (k, j) at B[k * bk + j]).
   An M-contiguous float32 A (lda == 1) may wrap too (awq > 0, batch 1): row R at
   (R / awq) * sa + R % awq, so one GEMM spans a batch of NCHW images.
   A K-contiguous A's rows may come in groups (map[10] = aw > 0, map[11] = aws): row i
   at (i / aw) * aws + (i % aw) * lda, so a convolution's row of output positions
   (aw = OW of them, lda = stride x Cin apart) and the next (aws apart) are read in
   place with no junk rows between them.
   Neither the map nor the runs change how a result is computed. */
struct omap {
    i64 wq, keep, so, si, sj, ioff, arun, astride, awq, cbf, rbias, aw, aws;
};

static inline struct omap omap_plain(i64 M, i64 ldc, i64 K) {
    struct omap m = {M > 0 ? M : 1, M > 0 ? M : 1, 0, ldc, 1, 0, K > 0 ? K : 1, 0, 0, 0, 0, 0, 0};
    return m;
}

/* out[x] = where row i0 + x of a K-contiguous A starts, for x < n */
static inline void omap_arows(const struct omap *m, i64 lda, i64 i0, i64 n, i64 *out) {
    if (!m->aw) {
        for (i64 x = 0; x < n; x++) out[x] = (i0 + x) * lda;
        return;
    }
    i64 q = i0 / m->aw, r = i0 % m->aw;
    for (i64 x = 0; x < n; x++) {
        out[x] = q * m->aws + r * lda;
        if (++r == m->aw) r = 0, q++;
    }
}

/* where A's element k0 of a row starts, relative to the row */
static inline i64 omap_a(const struct omap *m, i64 k0) {
    return (k0 / m->arun) * m->astride + k0 % m->arun;
}

/* the K block from k0: at most DKC long, never past K or the end of an A run */
static inline i64 omap_kblock(const struct omap *m, i64 k0, i64 K, i64 kmax) {
    i64 kc = K - k0 < kmax ? K - k0 : kmax, left = m->arun - k0 % m->arun;
    return kc < left ? kc : left;
}

/* out[x] = the offset of row i0 + x's column 0, or -1 when the row is not stored,
   for x < n (one division for the run: per row they cost as much as a short K's FMAs) */
static inline void omap_rows(const struct omap *m, i64 i0, i64 n, i64 *out) {
    i64 R = i0 + m->ioff, q = R / m->wq, r = R % m->wq;
    for (i64 x = 0; x < n; x++) {
        out[x] = r >= m->keep ? -1 : q * m->so + r * m->si;
        if (++r == m->wq) r = 0, q++;
    }
}

/* lane-major packing of an M-contiguous operand: element (row R, k) at
   X[(R / wq) * ws + R % wq + k * ldk] (an NCHW activation: R = (image, position),
   wq positions per image ws apart); the same dst as pack_lanes */
static void pack_lanes_t(const char *X, i64 ldk, i64 wq, i64 ws, int dt, i64 r0, int rows,
                         const int W, i64 k0, i64 kc, i64 K, float *dst) {
    i64 D = (kc + 7) / 8, base[GNR];
    for (int w = 0; w < rows; w++) base[w] = ((r0 + w) / wq) * ws + (r0 + w) % wq;
    /* one image: the panel's rows are one contiguous run */
    int run = W == 6 && rows == 6 && base[5] == base[0] + 5 && dt == F32;
    for (i64 kb = 0; kb < D; kb++)
        for (int l = 0; l < 8; l++) {
            i64 k = k0 + 8 * kb + l;
            float *d = dst + (l * D + kb) * W;
            int w = 0;
            if (k < K) {
                if (run) {
                    memcpy(d, (const float *)X + base[0] + k * ldk, 6 * sizeof(float));
                    continue;
                }
                for (; w < rows; w++) d[w] = ld(X, base[w] + k * ldk, dt);
            }
            for (; w < W; w++) d[w] = 0.0f;
        }
}

/* lane-major packing of a K-major operand (B of a product computed transposed:
   element (k, column c) at X[k * ldk + c0 + c]): dst[l][k'][16] = X[k0 + 8k' + l][c0 ..
   c0 + cols), zeros past K and past cols; the same dst as pack_lanes with W = 16 */
static void pack_lanes_kmajor(const char *X, i64 ldk, int dt, i64 c0, int cols, i64 k0, i64 kc,
                              i64 K, float *dst) {
    i64 D = (kc + 7) / 8;
    for (int l = 0; l < 8; l++)
        for (i64 kb = 0; kb < D; kb++) {
            i64 k = k0 + 8 * kb + l;
            float *d = dst + (l * D + kb) * GNR;
            int c = 0;
            if (k < K) {
                i64 src = k * ldk + c0;
#ifdef SB_AVX2
                if (cols == GNR) {
                    v8_store(d, v8_load(X, src, dt));
                    v8_store(d + 8, v8_load(X, src + 8, dt));
                    continue;
                }
#endif
                for (; c < cols; c++) d[c] = ld(X, src + c, dt);
            }
            for (; c < GNR; c++) d[c] = 0.0f;
        }
}

/* lane-major packing: dst[l][k'][W] = X[row w][k0 + 8k' + l] (0 past K), row w at
   (r0 + w) * ld, or at roff[w] when roff is given; W = 6 (A panels) or 16 (B panels),
   `rows` valid of W. */
static void pack_lanes(const char *X, i64 ld, const i64 *roff, int dt, i64 r0, int rows,
                       const int W, i64 k0, i64 kc, i64 K, float *dst) {
    i64 D = (kc + 7) / 8, ro[GNR];
    for (int w = 0; w < rows; w++) ro[w] = roff ? roff[w] : (r0 + w) * ld;
    int w0 = 0;
#ifdef SB_AVX2
    /* 8 rows at a time: load 8 k of each, transpose, so vector l holds lane l */
    for (; w0 < rows; w0 += 8) {
        int n = rows - w0 < 8 ? rows - w0 : 8;
        const int cnt = W - w0 < 8 ? W - w0 : 8; /* columns of dst this group fills: 6 or 8 */
        for (i64 kb = 0; kb < D; kb++) {
            i64 k = k0 + 8 * kb;
            int nk = k + 8 <= K ? 8 : (int)(K - k);
            __m256 r[8];
            const i64 *rb = ro + w0;
            if (n == 8 && nk == 8 && dt == F32) {
                for (int w = 0; w < 8; w++) r[w] = _mm256_loadu_ps((const float *)X + rb[w] + k);
            } else if (n == 8 && nk == 8) {
                for (int w = 0; w < 8; w++) r[w] = v8_load(X, rb[w] + k, BF16);
            } else {
                for (int w = 0; w < 8; w++)
                    r[w] = w >= n ? _mm256_setzero_ps()
                                  : (nk == 8 ? v8_load(X, rb[w] + k, dt)
                                             : v8_load_n(X, rb[w] + k, nk, dt));
            }
            __m256 o[8];
            t8x8(r, o);
            for (int l = 0; l < 8; l++) {
                float *d = dst + (l * D + kb) * W + w0;
                if (cnt == 8) {
                    _mm256_storeu_ps(d, o[l]);
                } else { /* cnt == 6 (A panels); masked stores are slow on some CPUs */
                    _mm_storeu_ps(d, _mm256_castps256_ps128(o[l]));
                    _mm_storel_pi((__m64 *)(d + 4), _mm256_extractf128_ps(o[l], 1));
                }
            }
        }
    }
    if (w0 >= W) return;
#endif
    for (int w = w0; w < W; w++) {
        if (w >= rows) {
            for (i64 q = 0; q < 8 * D; q++) dst[q * W + w] = 0.0f; /* [l][k'] flattened */
            continue;
        }
        i64 base = ro[w];
        for (i64 kb = 0; kb < D; kb++) {
            i64 k = k0 + 8 * kb;
            v8 v = k + 8 <= K ? v8_load(X, base + k, dt) : v8_load_n(X, base + k, (int)(K - k), dt);
            float t[8];
            v8_store(t, v);
            for (int l = 0; l < 8; l++) dst[(l * D + kb) * W + w] = t[l];
        }
    }
}

/* Work sharing with stealing: each thread owns a contiguous run of tiles (runs[tid])
   and takes them from the front; a thread whose run is done takes the last tile of
   the run with most left. Without another load, each thread does its own run (and
   packs each column tile of B once); when a core is taken away for a while (the
   server's event loop, another process), the others finish the late thread's work
   instead of waiting for it (dynamic one-tile grabs measured 8% slower at K = 1536,
   N = 384: the threads then packed the same column tiles of B). Which thread
   computes a tile never changes its bits. */
struct run {
    i64 front, back;
};

static i64 next_tile(struct run *runs, int nth, int tid) {
    i64 t = -1;
#pragma omp critical(sb_next_tile)
    {
        if (runs[tid].front < runs[tid].back) {
            t = runs[tid].front++;
        } else {
            int v = -1;
            i64 most = 0;
            for (int u = 0; u < nth; u++)
                if (runs[u].back - runs[u].front > most) most = runs[u].back - runs[u].front, v = u;
            if (v >= 0) t = --runs[v].back;
        }
    }
    return t;
}

static void dot_packed(const void *A, i64 lda, i64 ka, i64 sa, const void *B, i64 ldb, int bkm,
                       i64 sb, float *C, i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias,
                       int bdt, int dt, int th, const struct omap *om, int *oom) {
    /* even tiles (threads take equal runs of them): as few as DMC x DNC allows */
    i64 mt = (M + DMC - 1) / DMC, nt = (N + DNC - 1) / DNC;
    i64 MC = ((M + mt - 1) / mt + GMR - 1) / GMR * GMR, NC = ((N + nt - 1) / nt + GNR - 1) / GNR * GNR;
    /* smaller tiles when there are too few to keep every thread busy */
    while (th > 1 && batch * mt * nt < 4 * th && (NC > GNR || MC > GMR)) {
        if (NC > GNR) NC = (NC / 2 + GNR - 1) / GNR * GNR;
        else MC = (MC / 2 + GMR - 1) / GMR * GMR;
        mt = (M + MC - 1) / MC;
        nt = (N + NC - 1) / NC;
    }
    i64 tiles = batch * mt * nt;
    size_t e = esz(dt);
    i64 Dmax = (DKC + 7) / 8, Kpad = (K + 7) / 8 * 8;
    /* float32 A is read in place by micro_lane (its packing took ~1/3 of the time
       outside the kernel) when its rows are short and not 4 KB-aligned to each other;
       otherwise it is packed still: rows a multiple of 4 KB apart share L1 sets, and
       long rows (K >= 2048) were slower read in place (M = 200, N = 768: K = 1024
       0.95 -> 0.84, K = 3072 0.84 -> 0.80 of MKL; K = 384..1536 and 1000 even or better) */
    int direct = dt == F32 && ka == 1 && lda < 2048 && lda % 1024 != 0;
    struct run runs[64];
#pragma omp parallel num_threads(th < 64 ? th : 64)
    {
        /* pb holds a whole column tile for every K block, so a thread packs B once
           per column tile: tiles are ordered column-tile major and each thread takes
           one contiguous run of them (see next_tile: a thread done early takes tiles
           from the end of a late thread's run) */
        float *pa = pack_buffer(0, (size_t)DMC * 8 * Dmax), *pb = pack_buffer(1, (size_t)DNC * Kpad);
        float *lanes = pack_buffer(2, (size_t)DMC * DNC * 8);
        if (!pa || !pb || !lanes) {
#pragma omp atomic write
            *oom = 1;
        }
        int nth = omp_get_num_threads(), tid = omp_get_thread_num();
        runs[tid].front = tiles * tid / nth, runs[tid].back = tiles * (tid + 1) / nth;
#pragma omp barrier
        i64 packed = -1; /* the (batch, column tile) in pb; the column tile if B is shared */
        for (i64 t; (t = next_tile(runs, nth, tid)) >= 0;) {
            if (!pa || !pb || !lanes) continue;
            i64 bj = t / mt, bi = bj / nt, tj = bj % nt, ti = t % mt;
            const char *Ab = (const char *)A + bi * sa * e;
            const char *Bb = (const char *)B + bi * sb * e;
            float *Cb = C + bi * sc;
            i64 i0 = ti * MC, mc = M - i0 < MC ? M - i0 : MC;
            i64 j0 = tj * NC, nc = N - j0 < NC ? N - j0 : NC;
            i64 npan = (nc + GNR - 1) / GNR, mpan = (mc + GMR - 1) / GMR;
            i64 rowoff[DMC + GMR], aoff[DMC + GMR];
            omap_rows(om, i0, mc, rowoff);
            /* where A's rows start; a panel is read in place (direct) only when its
               rows are evenly lda apart, else packed (rows in groups: see omap) */
            unsigned char pk[DMC / GMR + 1];
            if (ka == 1) omap_arows(om, lda, i0, mc, aoff);
            for (i64 qq = 0; qq < mpan; qq++) {
                int h = (int)(mc - qq * GMR < GMR ? mc - qq * GMR : GMR);
                pk[qq] = !direct || aoff[qq * GMR + h - 1] - aoff[qq * GMR] != (h - 1) * lda;
            }
            if (packed != (sb ? bj : tj)) {
                for (i64 k0 = 0, kc; k0 < K; k0 += kc) {
                    kc = omap_kblock(om, k0, K, DKC);
                    i64 D = (kc + 7) / 8;
                    for (i64 pp = 0; pp < npan; pp++) {
                        int w = (int)(nc - pp * GNR < GNR ? nc - pp * GNR : GNR);
                        float *dst = pb + k0 * NC + pp * GNR * 8 * D;
                        if (bkm) /* K-major B (ldb between k rows) */
                            pack_lanes_kmajor((const char *)Bb, ldb, dt, j0 + pp * GNR, w, k0, kc, K, dst);
                        else
                            pack_lanes((const char *)Bb, ldb, NULL, dt, j0 + pp * GNR, w, GNR, k0, kc, K, dst);
                    }
                }
                packed = sb ? bj : tj;
            }
            for (i64 k0 = 0, kc; k0 < K; k0 += kc) {
                kc = omap_kblock(om, k0, K, DKC);
                i64 D = (kc + 7) / 8, ak = omap_a(om, k0) - k0; /* A's k0 at row + k0 + ak */
                int first = k0 == 0;
                const float *pbk = pb + k0 * NC;
                for (i64 qq = 0; qq < mpan; qq++) {
                    int h = (int)(mc - qq * GMR < GMR ? mc - qq * GMR : GMR);
                    if (!pk[qq]) continue;
                    if (ka == 1)
                        pack_lanes((const char *)Ab + ak * (i64)e, lda, aoff + qq * GMR, dt,
                                   i0 + qq * GMR, h, GMR, k0, kc, K, pa + qq * GMR * 8 * D);
                    else /* M-contiguous A (lda == 1) */
                        pack_lanes_t((const char *)Ab, ka, om->awq ? om->awq : M, sa, dt,
                                     i0 + qq * GMR, h, GMR, k0, kc, K, pa + qq * GMR * 8 * D);
                }
                for (i64 pp = 0; pp < npan;) {
                    /* two or four column panels at once where the path has zmm and they
                       are full */
                    int np = 1;
#ifdef SB_ZMM
                    if (pp + 3 < npan && nc - (pp + 3) * GNR >= GNR) np = 4;
                    else if (pp + 1 < npan && nc - (pp + 1) * GNR >= GNR) np = 2;
#endif
                    for (i64 qq = 0; qq < mpan; qq++) {
                        int h = (int)(mc - qq * GMR < GMR ? mc - qq * GMR : GMR);
#ifdef SB_ZMM
                        if (np > 1 && h == GMR) {
                            for (int l = 0; l < 8; l++) {
                                const float *bp[4];
                                float *Cp[4];
                                for (int u = 0; u < np; u++) {
                                    bp[u] = pbk + (pp + u) * GNR * 8 * D + l * D * GNR;
                                    Cp[u] = lanes + ((pp + u) * mpan + qq) * 8 * GMR * GNR + l * GMR * GNR;
                                }
                                if (!pk[qq])
                                    zmm_rows_n6((const float *)Ab + aoff[qq * GMR] + k0 + ak + l, lda, 8,
                                                bp, (kc - l + 7) / 8, Cp, first, np);
                                else
                                    zmm_rows_n6(pa + qq * GMR * 8 * D + l * D * GMR, 1, GMR, bp, D, Cp,
                                                first, np);
                            }
                        } else
#endif
                            for (int u = 0; u < np; u++) {
                                i64 pu = pp + u;
                                float *lb = lanes + (pu * mpan + qq) * 8 * GMR * GNR;
                                const float *pbu = pbk + pu * GNR * 8 * D;
                                if (!pk[qq]) {
                                    const float *a = (const float *)Ab + aoff[qq * GMR] + k0 + ak;
                                    for (int l = 0; l < 8; l++)
                                        LANES[h](a + l, lda, pbu + l * D * GNR, (kc - l + 7) / 8,
                                                 lb + l * GMR * GNR, first);
                                } else {
                                    for (int l = 0; l < 8; l++)
                                        MICROS[h](pa + qq * GMR * 8 * D + l * D * GMR, pbu + l * D * GNR,
                                                  D, lb + l * GMR * GNR, GNR, GNR, first, NULL);
                                }
                            }
                        if (k0 + kc < K) continue;
                        /* last block: the lane tree while the lanes are in L1, 8 outputs
                           per vector, then + bias */
                        for (int u = 0; u < np; u++) {
                            i64 pu = pp + u;
                            int w = (int)(nc - pu * GNR < GNR ? nc - pu * GNR : GNR);
                            float *lb = lanes + (pu * mpan + qq) * 8 * GMR * GNR;
                            for (int r = 0; r < h; r++) {
                                i64 row = rowoff[qq * GMR + r];
                                if (row < 0) continue;
                                for (int v = 0; v < 2 && 8 * v < w; v++) {
                                    v8 L[8];
                                    for (int l = 0; l < 8; l++)
                                        L[l] = v8_load(lb + l * GMR * GNR + r * GNR, 8 * v, F32);
                                    v8 x = v8_add(v8_add(v8_add(L[0], L[4]), v8_add(L[2], L[6])),
                                                  v8_add(v8_add(L[1], L[5]), v8_add(L[3], L[7])));
                                    int n = w - 8 * v < 8 ? w - 8 * v : 8;
                                    i64 j = j0 + pu * GNR + 8 * v;
                                    if (bias && om->rbias) /* transposed: per row */
                                        x = v8_add(x, v8_set1(ld(bias, i0 + qq * GMR + r, bdt)));
                                    else if (bias)
                                        x = v8_add(x, v8_load_n(bias, j, n, bdt));
                                    float *c = Cb + row + j * om->sj;
                                    if (om->sj == 1) {
                                        if (n == 8) v8_store(c, x);
                                        else v8_store_n(c, x, n);
                                    } else { /* a column stride: one store per output */
                                        float t[8];
                                        v8_store(t, x);
                                        for (int q = 0; q < n; q++) c[q * om->sj] = t[q];
                                    }
                                }
                            }
                        }
                    }
                    pp += np;
                }
            }
        }
    }
}

/* the PAIR order (gemm_bf16.c, included after this file by kernels.c) */
static int pair_gemm(const uint16_t *A, i64 lda, i64 sa, const uint16_t *B, i64 ldb, int bkmaj, i64 sb,
                     float *C, i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt,
                     int th, const struct omap *om);

/* order 0: SEQ, any strides. order 1: DOT (float32) or PAIR (bfloat16), order 2:
   DOT for either dtype (attention's scores); 1 and 2 need ka == 1 and bk == 1. */
SB_API int SB_FN(sb_gemm)(const void *A, i64 lda, i64 ka, i64 sa, const void *B, i64 bk, i64 bn, i64 sb,
            float *C, i64 ldc, i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt,
            int dt, int order, int nthreads) {
    return SB_FN(sb_gemm_map)(A, lda, ka, sa, B, bk, bn, sb, C, ldc, sc, batch, M, N, K, bias, bdt,
                              dt, order, nthreads, NULL);
}

/* sb_gemm with an output map and A runs (struct omap: map = {wq, keep, so, si, sj,
   ioff, arun, astride, awq, flags, aw, aws}; arun, awq, flags, aw 0: none), for the DOT and PAIR orders (ldc is then
   unused); with a map, float32 A may also be M-contiguous (lda == 1, element (i, k)
   at A[i + k * ka]; no runs). */
SB_API int SB_FN(sb_gemm_map)(const void *A, i64 lda, i64 ka, i64 sa, const void *B, i64 bk, i64 bn,
                              i64 sb, float *C, i64 ldc, i64 sc, i64 batch, i64 M, i64 N, i64 K,
                              const void *bias, int bdt, int dt, int order, int nthreads,
                              const i64 *map) {
    int th = threads_for(batch * M * N * K, nthreads);
    struct omap om = omap_plain(M, ldc, K);
    int pair = order == 1 && dt == BF16;
    if (map) {
        if (order == 0 || map[0] <= 0 || map[1] < 0 || map[5] < 0 || map[6] < 0 || map[8] < 0 ||
            (map[9] & ~3) || ((map[9] & 1) && !pair))
            return -2;
        struct omap m = {map[0], map[1], map[2], map[3],  map[4],          map[5],  map[6],
                         map[7], map[8], map[9] & 1, (map[9] >> 1) & 1, map[10], map[11]};
        if (m.awq && (batch != 1 || ka == 1)) return -2;
        if (m.aw < 0 || (m.aw && ka != 1)) return -2;
        if (m.arun == 0) m.arun = om.arun, m.astride = om.astride; /* one run: the row */
        else if (ka != 1 || K % m.arun || m.arun % (pair ? 2 : 8)) return -2;
        om = m;
    }
    if (pair) {
        /* B K-contiguous (N rows bn apart), or K-major (bn == 1: K rows bk apart) */
        if (ka != 1 || (bk != 1 && bn != 1)) return -2;
        return pair_gemm((const uint16_t *)A, lda, sa, (const uint16_t *)B, bk == 1 ? bn : bk,
                         bk != 1, sb, C, sc, batch, M, N, K, bias, bdt, th, &om);
    }
    if (order == 1 || order == 2) {
        int mcontig = map && ka != 1 && lda == 1 && dt == F32;
        int bkm = map && bk != 1 && bn == 1; /* K-major B: a product computed transposed */
        if ((ka != 1 && !mcontig) || (bk != 1 && !bkm) || (om.rbias && !bkm)) return -2;
        int oom = 0;
        /* the in-place kernel also wins for narrow outputs of moderate height, and on
           AVX-512 (float32, two outputs per zmm) up to DOT_MID_M rows when K is long
           and B fits in 16 MiB (measured against the packed kernel, AMD Zen 5) */
        int mid = 0;
#ifdef __AVX512F__
        mid = dt == F32 && M <= DOT_MID_M && K >= 1024 && N * K <= (4 << 20);
#endif
        if (!map && (M <= DOT_SMALL_M || (N <= DOT_NARROW_N && M <= DOT_NARROW_M) || mid))
            dot_small(A, lda, sa, B, bn, sb, C, ldc, sc, batch, M, N, K, bias, bdt, dt, th);
        else
            dot_packed(A, lda, mcontig ? ka : 1, sa, B, bkm ? bk : bn, bkm, sb, C, sc, batch, M, N,
                       K, bias, bdt, dt, th, &om, &oom);
        return oom ? -1 : 0;
    }
    if (map) return -2;
    /* Few rows: a B block is used by few FMAs, so what matters is reading B at
       full bandwidth. Narrow column tiles over long K blocks keep each B row one
       long sequential stream. Many rows: blocks sized for L2 (GotoBLAS). */
    i64 MC = GMC, NC = GNC, KC = GKC;
    if (M <= GSMALL_M) {
        MC = GSMALL_M;
        NC = 4 * GNR;
        KC = K < GSMALL_KC ? K : GSMALL_KC;
    }
    i64 mt = (M + MC - 1) / MC, nt = (N + NC - 1) / NC;
    /* narrower column tiles when there are too few tiles to feed every thread */
    while (th > 1 && batch * mt * nt < 4 * th && NC > 4 * GNR) {
        NC /= 2;
        nt = (N + NC - 1) / NC;
    }
    i64 tiles = batch * mt * nt;
    size_t e = esz(dt);
    int oom = 0;
#pragma omp parallel num_threads(th)
    {
        float *pa = pack_buffer(0, (size_t)MC * KC), *pb = pack_buffer(1, (size_t)NC * KC);
        if (!pa || !pb) {
#pragma omp atomic write
            oom = 1;
        }
        float biasbuf[GNC + GNR]; /* NC <= GNC */
#pragma omp for schedule(dynamic, 1) /* tiles differ in size */
        for (i64 t = 0; t < tiles; t++) {
            if (!pa || !pb) continue;
            i64 bi = t / (mt * nt), rest = t % (mt * nt), ti = rest / nt, tj = rest % nt;
            const char *Ab = (const char *)A + bi * sa * e;
            const char *Bb = (const char *)B + bi * sb * e;
            float *Cb = C + bi * sc;
            i64 i0 = ti * MC, mc = M - i0 < MC ? M - i0 : MC;
            i64 j0 = tj * NC, nc = N - j0 < NC ? N - j0 : NC;
            if (bias) {
                for (i64 c = 0; c < nc; c++) biasbuf[c] = ld(bias, j0 + c, bdt);
                for (i64 c = nc; c < GNC + GNR; c++) biasbuf[c] = 0.0f;
            }
            for (i64 k0 = 0; k0 < K; k0 += KC) {
                i64 kc = K - k0 < KC ? K - k0 : KC;
                int first = k0 == 0, last = k0 + kc == K;
                pack_b((const char *)Bb, bk, bn, dt, k0, kc, j0, nc, pb);
                pack_a((const char *)Ab, lda, ka, dt, i0, mc, k0, kc, pa);
                i64 p = 0;
                if (mc <= 3) { /* few rows: several panels per call (see micro_wide) */
                    i64 step = WIDE_NP[mc] * GNR;
                    for (; p + step <= nc; p += step)
                        WIDES[mc](pa, pb + p * kc, kc, Cb + i0 * ldc + j0 + p, ldc, first,
                                  bias && last ? biasbuf + p : NULL);
                }
                for (; p < nc; p += GNR) {
                    int nr = (int)(nc - p < GNR ? nc - p : GNR);
                    const float *bp = pb + p * kc;
#ifdef SB_ZMM
                    if (p + 2 * GNR <= nc) { /* two full panels: six-row blocks in zmm */
                        for (i64 q = 0; q < mc; q += GMR) {
                            int mr = (int)(mc - q < GMR ? mc - q : GMR);
                            float *c = Cb + (i0 + q) * ldc + j0 + p;
                            const float *b0 = bias && last ? biasbuf + p : NULL;
                            const float *b1 = bias && last ? biasbuf + p + GNR : NULL;
                            if (mr == GMR) {
                                micro2_6(pa + q * kc, bp, bp + GNR * kc, kc, c, c + GNR, ldc, first,
                                         b0, b1);
                            } else {
                                MICROS[mr](pa + q * kc, bp, kc, c, ldc, GNR, first, b0);
                                MICROS[mr](pa + q * kc, bp + GNR * kc, kc, c + GNR, ldc, GNR, first,
                                           b1);
                            }
                        }
                        p += GNR;
                        continue;
                    }
#endif
                    for (i64 q = 0; q < mc; q += GMR) {
                        int mr = (int)(mc - q < GMR ? mc - q : GMR);
                        MICROS[mr](pa + q * kc, bp, kc, Cb + (i0 + q) * ldc + j0 + p, ldc, nr, first,
                                   bias && last ? biasbuf + p : NULL);
                    }
                }
            }
        }
    }
    return oom ? -1 : 0;
}
