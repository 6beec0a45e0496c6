/* ------------------------------------------------------------- gemm bf16 */
/* PAIR order, the bfloat16 DOT order (A and B both K-contiguous, as in x @ W.T).
   It is the order of the AVX512_BF16 instruction VDPBF16PS, so CPUs that have it
   run it natively and every other path emulates it to the bit:

     K is padded with zeros to a multiple of 32. For output (i, j), sixteen lanes
     start at +0; lane l takes the pairs k = 32t + 2l + 1, then k = 32t + 2l, for
     t = 0, 1, ...: acc = fma(a[k], b[k], acc), one rounding each. Then
     h[l] = acc[l] + acc[l + 8] (l < 8), ((h0+h4)+(h2+h6)) + ((h1+h5)+(h3+h7)),
     then + bias. Every step has DAZ and FTZ: denormal inputs count as zero and
     results that are tiny after rounding become zero of the same sign.

   VDPBF16PS ignores MXCSR and always works that way. Measured on an AMD Zen 5
   (tests/native/test_bf16_order.py runs the check wherever the CPU has the
   instruction): 9.6M lanes of random, denormal, tiny and overflowing operands
   gave the bits of two FMAs per pair, odd element first, under FTZ/DAZ. A
   product of two bfloat16 values is exact in float32 whenever it is normal, so
   the FMA only differs from a multiply-then-add when a product underflows or
   overflows. The AVX2 and AVX-512 paths run those FMAs with MXCSR set to
   FTZ | DAZ for the kernel (per thread, restored after); the portable path, which
   may run where no FMA instruction exists, computes each step in double with
   round-to-odd and flushes in software. tests/native compares every path.

   Kernel: tiles of MB rows x NB columns (both operand blocks in L2), taken by
   threads whole; in a tile, MR x NR outputs at a time read A and B rows in place
   over the whole K, each output's sixteen lanes in one vector. The padded tail
   block of 32 is copied into zeroed buffers. MR and NR only decide how many outputs
   share a pass. */

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#define PR_NATIVE 1
#endif
#define PR_TILE_ROWS 240 /* the most rows a tile of pair_gemm has (its MB) */
#if defined(__AVX512F__) && defined(__AVX512BW__)
#define PR_ZMM 1
#endif

#if defined(PR_ZMM) || defined(SB_AVX2)
#define PR_MXCSR 1
static inline unsigned pr_ftz_on(void) {
    unsigned old = _mm_getcsr();
    _mm_setcsr((old & ~0x6000u) | 0x8040u); /* round to nearest, FTZ (bit 15), DAZ (bit 6) */
    return old;
}
static inline void pr_ftz_off(unsigned old) { _mm_setcsr(old); }
#endif

#ifdef PR_ZMM
/* sixteen lanes in one zmm; the operands, 32 bfloat16, in one zmm too */
typedef __m512 pacc;
typedef __m512i pops;
#ifdef PR_NATIVE
#define PR_MR 4
#define PR_NR 6
#else
#define PR_MR 4
#define PR_NR 4
#endif
static inline pacc pr_zero(void) { return _mm512_setzero_ps(); }
static inline pops pr_load(const uint16_t *p) { return _mm512_loadu_si512((const void *)p); }
static inline pacc pr_step(pacc acc, pops a, pops b) {
#ifdef PR_NATIVE
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
#else
    /* a 32-bit word holds elements 2l (low half) and 2l + 1 (high half) */
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(a, hi)),
                          _mm512_castsi512_ps(_mm512_and_si512(b, hi)), acc);
    return _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(a, 16)),
                           _mm512_castsi512_ps(_mm512_slli_epi32(b, 16)), acc);
#endif
}
static inline float pr_tree(pacc v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    return v8_tree(h);
}
#elif defined(SB_AVX2)
typedef struct { __m256 lo, hi; } pacc;
typedef struct { __m256i lo, hi; } pops;
#define PR_MR 1
#define PR_NR 4
static inline pacc pr_zero(void) { pacc r = {_mm256_setzero_ps(), _mm256_setzero_ps()}; return r; }
static inline pops pr_load(const uint16_t *p) {
    pops r = {_mm256_loadu_si256((const __m256i *)p), _mm256_loadu_si256((const __m256i *)(p + 16))};
    return r;
}
static inline __m256 pr_half(__m256 acc, __m256i a, __m256i b) {
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    acc = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(a, hi)),
                          _mm256_castsi256_ps(_mm256_and_si256(b, hi)), acc);
    return _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(a, 16)),
                           _mm256_castsi256_ps(_mm256_slli_epi32(b, 16)), acc);
}
static inline pacc pr_step(pacc acc, pops a, pops b) {
    acc.lo = pr_half(acc.lo, a.lo, b.lo);
    acc.hi = pr_half(acc.hi, a.hi, b.hi);
    return acc;
}
static inline float pr_tree(pacc v) { return v8_tree(_mm256_add_ps(v.lo, v.hi)); }
#else
/* portable: the same steps in software, without MXCSR */
typedef struct { float x[16]; } pacc;
typedef struct { const uint16_t *p; } pops;
#define PR_MR 1
#define PR_NR 1
static inline float pr_daz(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0) {
        u &= 0x80000000u;
        memcpy(&x, &u, 4);
    }
    return x;
}
/* fma(a, b, c) rounded once to float32 with DAZ and FTZ (tiny after rounding). The
   product of two bfloat16 values and its sum with a float are computed in double;
   round-to-odd (from the TwoSum error) makes the final rounding to float exact. */
static float pr_fma(float a, float b, float c) {
    double p = (double)pr_daz(a) * (double)pr_daz(b), cd = c, s = p + cd;
    if (s != s) return (float)s;
    if (s - s == 0) { /* finite */
        double bp = s - cd, err = (p - bp) + (cd - (s - bp));
        if (err != 0) {
            uint64_t bits;
            memcpy(&bits, &s, 8);
            if (!(bits & 1)) bits += (err > 0) == (s > 0) ? 1 : (uint64_t)-1;
            memcpy(&s, &bits, 8);
        }
    }
    if (fabs(s) < 0x1p-100) { /* round to 24 bits as if the exponent had no floor */
        float r = (float)(s * 0x1p64);
        if (fabsf(r) < 0x1p-62f) return r < 0 || (r == 0 && signbit(r)) ? -0.0f : 0.0f;
        return (float)((double)r * 0x1p-64);
    }
    return (float)s;
}
/* a + b with DAZ and FTZ (an exact sum below the smallest normal is representable,
   so flushing after the add is flushing after rounding) */
static float pr_add(float a, float b) {
    float r = pr_daz(a) + pr_daz(b);
    return fabsf(r) < 0x1p-126f ? copysignf(0.0f, r) : r;
}
static inline pacc pr_zero(void) { pacc r; for (int l = 0; l < 16; l++) r.x[l] = 0.0f; return r; }
static inline pops pr_load(const uint16_t *p) { pops r = {p}; return r; }
static inline pacc pr_step(pacc acc, pops a, pops b) {
    for (int l = 0; l < 16; l++) {
        acc.x[l] = pr_fma(bf2f(a.p[2 * l + 1]), bf2f(b.p[2 * l + 1]), acc.x[l]);
        acc.x[l] = pr_fma(bf2f(a.p[2 * l]), bf2f(b.p[2 * l]), acc.x[l]);
    }
    return acc;
}
static inline float pr_tree(pacc v) {
    float h[8];
    for (int l = 0; l < 8; l++) h[l] = pr_add(v.x[l], v.x[l + 8]);
    return pr_add(pr_add(pr_add(h[0], h[4]), pr_add(h[2], h[6])),
                  pr_add(pr_add(h[1], h[5]), pr_add(h[3], h[7])));
}
#endif

static inline float pr_bias(float x, float b) {
#ifdef PR_MXCSR
    return x + b; /* under FTZ | DAZ */
#else
    return pr_add(x, b);
#endif
}

/* MR x NR outputs over the whole K: rows a[r], b[c] (bfloat16, K-contiguous) */
static inline __attribute__((always_inline)) void pr_micro(const uint16_t *const *a,
                                                           const uint16_t *const *b, i64 K,
                                                           const struct omap *om, float *out,
                                                           const int MR, const int NR) {
    pacc acc[PR_MR][PR_NR];
    for (int r = 0; r < MR; r++)
        for (int c = 0; c < NR; c++) acc[r][c] = pr_zero();
    i64 k = 0, off = 0; /* A's element k at a[r] + k + off (runs: see struct omap) */
    for (i64 ks = 0; ks < K; ks += om->arun) {
        i64 ke = ks + om->arun < K ? ks + om->arun : K;
        off = omap_a(om, ks) - ks;
        for (; k + 32 <= ke; k += 32) {
            pops av[PR_MR];
            for (int r = 0; r < MR; r++) av[r] = pr_load(a[r] + k + off);
            for (int c = 0; c < NR; c++) {
                pops bv = pr_load(b[c] + k);
                for (int r = 0; r < MR; r++) acc[r][c] = pr_step(acc[r][c], av[r], bv);
            }
        }
    }
    if (k < K) { /* the padded last block: zeros past K take part, as on every path */
        uint16_t ta[PR_MR][32], tb[32];
        size_t n = (size_t)(K - k);
        for (int r = 0; r < MR; r++) {
            memset(ta[r], 0, sizeof ta[r]);
            memcpy(ta[r], a[r] + k + off, n * 2);
        }
        for (int c = 0; c < NR; c++) {
            memset(tb, 0, sizeof tb);
            memcpy(tb, b[c] + k, n * 2);
            pops bv = pr_load(tb);
            for (int r = 0; r < MR; r++) acc[r][c] = pr_step(acc[r][c], pr_load(ta[r]), bv);
        }
    }
#ifdef PR_ZMM
    if ((MR * NR) % 8 == 0) { /* the tree on 8 outputs at once: fold, transpose, add */
        for (int g = 0; g < MR * NR; g += 8) {
            __m256 h[8], t[8];
            for (int q = 0; q < 8; q++) {
                __m512 v = acc[(g + q) / NR][(g + q) % NR];
                h[q] = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
            }
            t8x8(h, t); /* t[l] = lane l of the 8 outputs */
            _mm256_storeu_ps(out + g, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(t[0], t[4]),
                                                                  _mm256_add_ps(t[2], t[6])),
                                                    _mm256_add_ps(_mm256_add_ps(t[1], t[5]),
                                                                  _mm256_add_ps(t[3], t[7]))));
        }
        return;
    }
#endif
    for (int r = 0; r < MR; r++)
        for (int c = 0; c < NR; c++) out[r * NR + c] = pr_tree(acc[r][c]);
}

static void pr_micro_big(const uint16_t *const *a, const uint16_t *const *b, i64 K,
                         const struct omap *om, float *out) {
    pr_micro(a, b, K, om, out, PR_MR, PR_NR);
}
static void pr_micro_row(const uint16_t *const *a, const uint16_t *const *b, i64 K,
                         const struct omap *om, float *out) {
    pr_micro(a, b, K, om, out, 1, PR_NR);
}

/* one tile: rows [i0, i1) x columns [j0, j1) of one batch item. Rows outer: the MR
   rows of A stay in L1 while the tile's columns of B stream from L2. (Packing B into
   one stream per column group measured no faster on Zen 5, and slower for few rows.) */
static __attribute__((noinline)) void pr_tile(const uint16_t *A, i64 lda, const uint16_t *B,
                                              i64 ldb, void *C, const struct omap *om, i64 i0,
                                              i64 i1, i64 j0, i64 j1, i64 K, const void *bias,
                                              int bdt) {
    float o[PR_MR * PR_NR];
    i64 rowoff[PR_TILE_ROWS];
    omap_rows(om, i0, i1 - i0, rowoff);
    for (i64 i = i0; i < i1;) {
        const int mr = PR_MR > 1 && i + PR_MR <= i1 ? PR_MR : 1;
        const uint16_t *ap[PR_MR];
        for (int r = 0; r < mr; r++) ap[r] = A + (i + r) * lda;
        for (i64 j = j0; j < j1; j += PR_NR) {
            const uint16_t *bp[PR_NR];
            int nc = (int)(j1 - j < PR_NR ? j1 - j : PR_NR);
            /* missing columns reuse column j; their results are discarded */
            for (int c = 0; c < PR_NR; c++) bp[c] = B + (j + (c < nc ? c : 0)) * ldb;
            if (mr == PR_MR) pr_micro_big(ap, bp, K, om, o);
            else pr_micro_row(ap, bp, K, om, o);
            for (int r = 0; r < mr; r++) {
                i64 row = rowoff[i - i0 + r];
                if (row < 0) continue;
                for (int c = 0; c < nc; c++) {
                    float x = bias ? pr_bias(o[r * PR_NR + c], ld(bias, j + c, bdt))
                                   : o[r * PR_NR + c];
                    i64 at = row + (j + c) * om->sj;
                    if (om->cbf) ((uint16_t *)C)[at] = f2bf(x); /* rounded once, as .to() */
                    else ((float *)C)[at] = x;
                }
            }
        }
        i += mr;
    }
}

#define PR_SPAN 262144 /* bytes of one operand block of a tile: L2-sized */
/* (batch, M, K) x (batch, N, K), both bfloat16 rows in place; C float32 */
static int pair_gemm(const uint16_t *A, i64 lda, i64 sa, const uint16_t *B, i64 ldb, i64 sb,
                     float *C, i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt,
                     int th, const struct omap *om) {
    /* tiles: MB rows x NB columns whose operand blocks stay in L2 */
    i64 span = (i64)(PR_SPAN / ((K > 0 ? K : 1) * 2));
    i64 NB = span < 24 ? 24 : (span > PR_TILE_ROWS ? PR_TILE_ROWS : span);
    NB -= NB % (PR_NR * PR_MR > 1 ? 12 : 1);
    i64 MB = NB;
    if (M <= 8) NB = 8 * PR_NR; /* few rows: B is streamed once; narrow tiles spread it */
    i64 mt = (M + MB - 1) / MB, nt = (N + NB - 1) / NB, tiles = batch * mt * nt;
#pragma omp parallel num_threads(th)
    {
#ifdef PR_MXCSR
        unsigned old = pr_ftz_on();
#endif
#pragma omp for schedule(dynamic, 1)
        for (i64 t = 0; t < tiles; t++) {
            i64 bi = t / (mt * nt), rest = t % (mt * nt), ti = rest / nt, tj = rest % nt;
            i64 i0 = ti * MB, i1 = i0 + MB < M ? i0 + MB : M;
            i64 j0 = tj * NB, j1 = j0 + NB < N ? j0 + NB : N;
            void *Cb = (char *)C + bi * sc * (om->cbf ? 2 : 4);
            pr_tile(A + bi * sa, lda, B + bi * sb, ldb, Cb, om, i0, i1, j0, j1, K, bias, bdt);
        }
#ifdef PR_MXCSR
        pr_ftz_off(old);
#endif
    }
    return 0;
}
