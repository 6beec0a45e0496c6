/* ------------------------------------------------------------- gemm bf16 */
/* PAIR order, the bfloat16 order for a K-contiguous B (x @ W.T). It is what one
   lane of the AVX512_BF16 instruction VDPBF16PS computes, so CPUs that have it
   run it natively and every other path emulates it to the bit:

     For output (i, j), one float32 accumulator starts at +0. For the pairs
     p = 0, 1, ..., ceil(K/2) - 1 (an odd K is padded with one zero element):
       acc = fma(a[2p + 1], b[2p + 1], acc); acc = fma(a[2p], b[2p], acc),
     one rounding each; then + bias. Every step has DAZ and FTZ: denormal inputs
     count as zero and results that are tiny after rounding become zero of the
     same sign.

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

   Kernel: a vector lane is one output, so wider registers carry more outputs,
   never another order. Per K block (PQ_KC elements, never past the end of an A
   run) B is packed into 16-column panels in the instruction's layout: pair p of
   column c as one 32-bit word, element 2p in the low half, 2p + 1 in the high
   half, zeros past N and past K. A is read in place: a row's pair is one 32-bit
   word broadcast to every lane. MR rows x NV panels of outputs take a step per
   pair. Between K blocks the running sums wait in a float32 buffer, which is
   exact; the tile's results then get the bias and go out through the output map.
   MR, NV, the tiles and the threads only decide which outputs share a pass. */

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#define PR_NATIVE 1
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__)
#define PR_ZMM 1
#endif

#define PQ_KC 256  /* k per block (even): NV panels of it stay in L1 */
#define PQ_MB 192  /* rows per tile (a multiple of every PQ_MR) */
#define PQ_NB 128  /* columns per tile (a multiple of 16) */

#if defined(PR_ZMM) || defined(SB_AVX2)
#define PR_MXCSR 1
static inline unsigned pr_ftz_on(void) {
    unsigned old = _mm_getcsr();
    _mm_setcsr((old & ~0x6000u) | 0x8040u); /* round to nearest, FTZ (bit 15), DAZ (bit 6) */
    return old;
}
static inline void pr_ftz_off(unsigned old) { _mm_setcsr(old); }
#endif

/* the PAIR order's steps in software, without MXCSR: the portable path's, and the
   AMX test double's (gemm_amx.c) */
#if !defined(PR_MXCSR) || defined(SB_AMX_SIM)
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
static inline float pr_fma(float a, float b, float c) {
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
static inline float pr_add(float a, float b) {
    float r = pr_daz(a) + pr_daz(b);
    return fabsf(r) < 0x1p-126f ? copysignf(0.0f, r) : r;
}
#endif

/* pq_acc: the running sums of 16 outputs (one panel); pq_b: one pair of each of
   the panel's 16 columns; pq_a: one pair of one A row, for every lane */
#ifdef PR_ZMM
typedef __m512 pq_acc;
#define PQ_MR 6
static inline pq_acc pq_zero(void) { return _mm512_setzero_ps(); }
static inline pq_acc pq_ld(const float *p) { return _mm512_loadu_ps(p); }
static inline void pq_st(float *p, pq_acc v) { _mm512_storeu_ps(p, v); }
#ifdef PR_NATIVE
#define PQ_NV 4
typedef __m512i pq_b;
typedef __m512i pq_a;
static inline pq_b pq_bprep(__m512i w) { return w; }
static inline pq_b pq_bload(const uint32_t *p) { return _mm512_loadu_si512((const void *)p); }
static inline pq_a pq_abcast(uint32_t w) { return _mm512_set1_epi32((int)w); }
static inline pq_acc pq_step(pq_acc acc, pq_a a, pq_b b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}
#else
#define PQ_NV 2
typedef struct { __m512 h, l; } pq_b;
typedef struct { __m512 h, l; } pq_a;
static inline pq_b pq_bprep(__m512i w) {
    pq_b r = {_mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32((int)0xffff0000u))),
              _mm512_castsi512_ps(_mm512_slli_epi32(w, 16))};
    return r;
}
static inline pq_b pq_bload(const uint32_t *p) { return pq_bprep(_mm512_loadu_si512((const void *)p)); }
static inline pq_a pq_abcast(uint32_t w) {
    pq_a r = {_mm512_castsi512_ps(_mm512_set1_epi32((int)(w & 0xffff0000u))),
              _mm512_castsi512_ps(_mm512_set1_epi32((int)(w << 16)))};
    return r;
}
static inline pq_acc pq_step(pq_acc acc, pq_a a, pq_b b) {
    return _mm512_fmadd_ps(a.l, b.l, _mm512_fmadd_ps(a.h, b.h, acc)); /* odd element first */
}
#endif
#elif defined(SB_AVX2)
typedef struct { __m256 lo, hi; } pq_acc; /* columns 0-7, 8-15 */
typedef struct { __m256 h0, l0, h1, l1; } pq_b;
typedef struct { __m256 h, l; } pq_a;
#define PQ_MR 4
#define PQ_NV 1
static inline pq_acc pq_zero(void) { pq_acc r = {_mm256_setzero_ps(), _mm256_setzero_ps()}; return r; }
static inline pq_acc pq_ld(const float *p) { pq_acc r = {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; return r; }
static inline void pq_st(float *p, pq_acc v) { _mm256_storeu_ps(p, v.lo); _mm256_storeu_ps(p + 8, v.hi); }
/* columns 0-7 in w0, 8-15 in w1 */
static inline pq_b pq_bprep2(__m256i w0, __m256i w1) {
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    pq_b r = {_mm256_castsi256_ps(_mm256_and_si256(w0, hi)), _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16)),
              _mm256_castsi256_ps(_mm256_and_si256(w1, hi)), _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16))};
    return r;
}
static inline pq_b pq_bload(const uint32_t *p) {
    return pq_bprep2(_mm256_loadu_si256((const __m256i *)p), _mm256_loadu_si256((const __m256i *)(p + 8)));
}
static inline pq_a pq_abcast(uint32_t w) {
    pq_a r = {_mm256_castsi256_ps(_mm256_set1_epi32((int)(w & 0xffff0000u))),
              _mm256_castsi256_ps(_mm256_set1_epi32((int)(w << 16)))};
    return r;
}
static inline pq_acc pq_step(pq_acc acc, pq_a a, pq_b b) {
    acc.lo = _mm256_fmadd_ps(a.l, b.l0, _mm256_fmadd_ps(a.h, b.h0, acc.lo));
    acc.hi = _mm256_fmadd_ps(a.l, b.l1, _mm256_fmadd_ps(a.h, b.h1, acc.hi));
    return acc;
}
#else
/* portable: the same steps in software, without MXCSR */
typedef struct { float x[16]; } pq_acc;
typedef struct { const uint32_t *p; } pq_b;
typedef uint32_t pq_a;
#define PQ_MR 1
#define PQ_NV 1
static inline pq_acc pq_zero(void) { pq_acc r; for (int c = 0; c < 16; c++) r.x[c] = 0.0f; return r; }
static inline pq_acc pq_ld(const float *p) { pq_acc r; memcpy(r.x, p, sizeof r.x); return r; }
static inline void pq_st(float *p, pq_acc v) { memcpy(p, v.x, sizeof v.x); }
static inline pq_b pq_bload(const uint32_t *p) { pq_b r = {p}; return r; }
static inline pq_a pq_abcast(uint32_t w) { return w; }
static inline pq_acc pq_step(pq_acc acc, pq_a a, pq_b b) {
    for (int c = 0; c < 16; c++) {
        uint32_t w = b.p[c];
        acc.x[c] = pr_fma(bf2f((uint16_t)(a >> 16)), bf2f((uint16_t)(w >> 16)), acc.x[c]);
        acc.x[c] = pr_fma(bf2f((uint16_t)a), bf2f((uint16_t)w), acc.x[c]);
    }
    return acc;
}
#endif

static inline float pr_bias(float x, float b) {
#ifdef PR_MXCSR
    return x + b; /* under FTZ | DAZ */
#else
    return pr_add(x, b);
#endif
}

#ifdef PR_ZMM
/* r[p] = (x[0][p], ..., x[15][p]): a 16x16 transpose of 32-bit words in registers */
static inline __attribute__((always_inline)) void t16x16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* r[4i + c], 128-bit lane L: rows 4i..4i+3 of word 4L + c */
        r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int c = 0; c < 4; c++) {
        __m512i u0 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0x44), u1 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0xee);
        __m512i v0 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0x44), v1 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0xee);
        t[c] = _mm512_shuffle_i32x4(u0, v0, 0x88);
        t[4 + c] = _mm512_shuffle_i32x4(u0, v0, 0xdd);
        t[8 + c] = _mm512_shuffle_i32x4(u1, v1, 0x88);
        t[12 + c] = _mm512_shuffle_i32x4(u1, v1, 0xdd);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}
#endif

/* Pack the K block [k0, k0 + kc) of columns [j0, j0 + nc) of B (N, K rows at ldb)
   into panels: dst[(panel * np + p) * 16 + c] = pair p of column j0 + 16 panel + c,
   np = ceil(kc / 2); zeros past nc and past kc. Only words move: no arithmetic. */
static void pq_pack(const uint16_t *B, i64 ldb, i64 j0, i64 nc, i64 k0, i64 kc, uint32_t *dst) {
    i64 np = (kc + 1) / 2, npan = (nc + 15) / 16;
    for (i64 pan = 0; pan < npan; pan++) {
        i64 p0 = 0;
        const uint16_t *src = B + (j0 + 16 * pan) * ldb + k0;
        uint32_t *d = dst + pan * np * 16;
#ifdef PR_ZMM
        if (nc - 16 * pan >= 16) /* 16 columns x 16 pairs at a time */
            for (; 2 * (p0 + 16) <= kc; p0 += 16) {
                __m512i r[16];
                for (int w = 0; w < 16; w++) r[w] = _mm512_loadu_si512((const void *)(src + w * ldb + 2 * p0));
                t16x16(r);
                for (int l = 0; l < 16; l++) _mm512_storeu_si512((void *)(d + (p0 + l) * 16), r[l]);
            }
#endif
        i64 pz = p0;
        for (int h = 0; h < 2; h++) {
            i64 c0 = 16 * pan + 8 * h, n = nc - c0 < 0 ? 0 : (nc - c0 < 8 ? nc - c0 : 8);
            const uint16_t *sh = src + 8 * h * ldb;
            uint32_t *dh = d + 8 * h;
            p0 = pz;
#ifdef SB_AVX2
            /* 8 columns x 8 pairs at a time */
            if (n == 8)
                for (; 2 * (p0 + 8) <= kc; p0 += 8) {
                    __m256 r[8], o[8];
                    for (int w = 0; w < 8; w++) r[w] = _mm256_loadu_ps((const float *)(sh + w * ldb + 2 * p0));
                    t8x8(r, o);
                    for (int l = 0; l < 8; l++) _mm256_storeu_ps((float *)(dh + (p0 + l) * 16), o[l]);
                }
#endif
            for (; p0 < np; p0++) {
                i64 k = 2 * p0;
                for (int w = 0; w < 8; w++) {
                    uint32_t lo = 0, hi = 0;
                    if (w < n) {
                        lo = sh[w * ldb + k];
                        if (k + 1 < kc) hi = sh[w * ldb + k + 1];
                    }
                    dh[p0 * 16 + w] = lo | hi << 16;
                }
            }
        }
    }
}

/* pq_pack for a K-major B (element (k, j) at B[k * ldk + j], an NCHW activation
   whose positions are the columns): the same panels */
static void pq_pack_t(const uint16_t *B, i64 ldk, i64 j0, i64 nc, i64 k0, i64 kc, uint32_t *dst) {
    i64 np = (kc + 1) / 2, npan = (nc + 15) / 16;
    for (i64 pan = 0; pan < npan; pan++) {
        i64 cpan = nc - 16 * pan < 16 ? nc - 16 * pan : 16;
        for (i64 p = 0; p < np; p++) {
            const uint16_t *lo = B + (k0 + 2 * p) * ldk + j0 + 16 * pan, *hi = lo + ldk;
            int has_hi = 2 * p + 1 < kc;
            uint32_t *d = dst + (pan * np + p) * 16;
            i64 c = 0;
#ifdef SB_AVX2
            if (has_hi) /* interleave 8 elements of row 2p with 8 of row 2p + 1 */
                for (; c + 8 <= cpan; c += 8) {
                    __m128i l = _mm_loadu_si128((const __m128i *)(lo + c));
                    __m128i h = _mm_loadu_si128((const __m128i *)(hi + c));
                    _mm_storeu_si128((__m128i *)(d + c), _mm_unpacklo_epi16(l, h));
                    _mm_storeu_si128((__m128i *)(d + c + 4), _mm_unpackhi_epi16(l, h));
                }
#endif
            for (; c < cpan; c++) d[c] = lo[c] | (has_hi ? (uint32_t)hi[c] << 16 : 0u);
            for (; c < 16; c++) d[c] = 0;
        }
    }
}

/* MR rows x NV panels over the np pairs of one K block: a[r] is row r's block
   start (bfloat16, in place), bp panel 0's words, ps the words between panels.
   With `odd` the block's last pair has only its low element in A (the end of an odd
   K). The sums start at +0 (first) or from s, and go back to s (row stride lds). */
static inline __attribute__((always_inline)) void pq_micro(const uint16_t *const *a, const uint32_t *bp,
                                                           i64 ps, i64 np, int odd, float *s, i64 lds,
                                                           int first, const int MR, const int NV) {
    pq_acc acc[PQ_MR][PQ_NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = first ? pq_zero() : pq_ld(s + r * lds + 16 * v);
    i64 full = np - odd;
    for (i64 p = 0; p < full; p++) {
        pq_b b[PQ_NV];
        for (int v = 0; v < NV; v++) b[v] = pq_bload(bp + v * ps + p * 16);
        for (int r = 0; r < MR; r++) {
            uint32_t w;
            memcpy(&w, a[r] + 2 * p, 4);
            pq_a x = pq_abcast(w);
            for (int v = 0; v < NV; v++) acc[r][v] = pq_step(acc[r][v], x, b[v]);
        }
    }
    if (odd) { /* the padded pair: A's high element is the zero past K */
        pq_b b[PQ_NV];
        for (int v = 0; v < NV; v++) b[v] = pq_bload(bp + v * ps + full * 16);
        for (int r = 0; r < MR; r++) {
            pq_a x = pq_abcast(a[r][2 * full]);
            for (int v = 0; v < NV; v++) acc[r][v] = pq_step(acc[r][v], x, b[v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) pq_st(s + r * lds + 16 * v, acc[r][v]);
}

typedef void (*pq_fn)(const uint16_t *const *, const uint32_t *, i64, i64, int, float *, i64, int);
#define PQ_DEF(MR, NV)                                                                           \
    static void pq_##MR##_##NV(const uint16_t *const *a, const uint32_t *bp, i64 ps, i64 np,      \
                               int odd, float *s, i64 lds, int first) {                          \
        if (MR <= PQ_MR && NV <= PQ_NV) pq_micro(a, bp, ps, np, odd, s, lds, first, MR, NV);     \
    }
#define PQ_ROW(MR) PQ_DEF(MR, 1) PQ_DEF(MR, 2) PQ_DEF(MR, 3) PQ_DEF(MR, 4)
PQ_ROW(1) PQ_ROW(2) PQ_ROW(3) PQ_ROW(4) PQ_ROW(5) PQ_ROW(6)
#define PQ_ENTRY(MR) {NULL, pq_##MR##_1, pq_##MR##_2, pq_##MR##_3, pq_##MR##_4}
static const pq_fn PQ_FNS[7][5] = {{NULL}, PQ_ENTRY(1), PQ_ENTRY(2), PQ_ENTRY(3),
                                   PQ_ENTRY(4), PQ_ENTRY(5), PQ_ENTRY(6)};


/* Few rows (a matrix-vector product, decode; M <= 8 on zmm, 4 on AVX2): no packing
   buffer. Per 16 columns and 32 k, the 16 B rows are loaded and transposed in
   registers (pair p of every column in one vector), and each row's pair p is
   broadcast against it: the pq_step of the packed kernel, on the same words. np pairs
   (<= 16) are taken; the block's words come from b[c] + k and a[r] + k (bfloat16
   rows of 32 elements, or zero-padded copies). */
#if defined(PR_ZMM) || defined(SB_AVX2)
#ifdef PR_ZMM /* 16 transposed vectors + 8 sums fit 32 registers */
#define PQ_SMALL_M 8
#else
#define PQ_SMALL_M 4
#endif
static inline __attribute__((always_inline)) void pq_small_block(const uint16_t *const *b,
                                                                 const uint16_t *const *a, i64 k,
                                                                 int np, pq_acc *acc, const int MR) {
    pq_b t[16];
#ifdef PR_ZMM
    __m512i r[16];
    for (int w = 0; w < 16; w++) r[w] = _mm512_loadu_si512((const void *)(b[w] + k));
    t16x16(r);
    for (int p = 0; p < 16; p++) t[p] = pq_bprep(r[p]);
#else
    for (int h = 0; h < 2; h++) { /* pairs 8h..8h+7: columns 0-7 and 8-15, 8x8 each */
        __m256 r0[8], r1[8], o0[8], o1[8];
        for (int w = 0; w < 8; w++) {
            r0[w] = _mm256_loadu_ps((const float *)(b[w] + k + 16 * h));
            r1[w] = _mm256_loadu_ps((const float *)(b[8 + w] + k + 16 * h));
        }
        t8x8(r0, o0);
        t8x8(r1, o1);
        for (int p = 0; p < 8; p++)
            t[8 * h + p] = pq_bprep2(_mm256_castps_si256(o0[p]), _mm256_castps_si256(o1[p]));
    }
#endif
    for (int p = 0; p < np; p++)
        for (int q = 0; q < MR; q++) {
            uint32_t w;
            memcpy(&w, a[q] + k + 2 * p, 4);
            acc[q] = pq_step(acc[q], pq_abcast(w), t[p]);
        }
}

/* MR rows x 16 columns over the whole K into s (16 floats per row) */
static inline __attribute__((always_inline)) void pq_small(const uint16_t *const *a, const uint16_t *const *b,
                                                           i64 K, float *s, const int MR) {
    pq_acc acc[PQ_SMALL_M];
    for (int q = 0; q < MR; q++) acc[q] = pq_zero();
    i64 k = 0;
    for (; k + 32 <= K; k += 32) pq_small_block(b, a, k, 16, acc, MR);
    if (k < K) { /* the last block, zero-padded copies; only its ceil((K - k) / 2) pairs run */
        uint16_t tb[16][32], ta[PQ_SMALL_M][34];
        const uint16_t *pb[16], *pa[PQ_SMALL_M];
        size_t n = (size_t)(K - k);
        for (int w = 0; w < 16; w++) {
            memset(tb[w], 0, sizeof tb[w]);
            memcpy(tb[w], b[w] + k, n * 2);
            pb[w] = tb[w];
        }
        for (int q = 0; q < MR; q++) {
            memset(ta[q], 0, sizeof ta[q]);
            memcpy(ta[q], a[q] + k, n * 2);
            pa[q] = ta[q];
        }
        pq_small_block(pb, pa, 0, (int)((n + 1) / 2), acc, MR);
    }
    for (int q = 0; q < MR; q++) pq_st(s + 16 * q, acc[q]);
}
typedef void (*pq_small_fn)(const uint16_t *const *, const uint16_t *const *, i64, float *);
#define PQ_SMALL_DEF(MR) \
    static void pq_small_##MR(const uint16_t *const *a, const uint16_t *const *b, i64 K, float *s) { pq_small(a, b, K, s, MR); }
PQ_SMALL_DEF(1) PQ_SMALL_DEF(2) PQ_SMALL_DEF(3) PQ_SMALL_DEF(4)
#if PQ_SMALL_M == 8
PQ_SMALL_DEF(5) PQ_SMALL_DEF(6) PQ_SMALL_DEF(7) PQ_SMALL_DEF(8)
static const pq_small_fn PQ_SMALLS[PQ_SMALL_M + 1] = {NULL, pq_small_1, pq_small_2, pq_small_3, pq_small_4,
                                                      pq_small_5, pq_small_6, pq_small_7, pq_small_8};
#else
static const pq_small_fn PQ_SMALLS[PQ_SMALL_M + 1] = {NULL, pq_small_1, pq_small_2, pq_small_3, pq_small_4};
#endif
#else
#define PQ_SMALL_M 0
#endif

/* n results of one row to C at `at` (float32, or bfloat16 rounded once with cbf):
   x[c] (+ bias[c]), the same operations as pr_bias and f2bf, 8 at a time */
static void pq_emit(const float *x, const float *bias, i64 n, void *C, i64 at, int cbf) {
    i64 c = 0;
#ifdef SB_AVX2
    for (; c + 8 <= n; c += 8) {
        __m256 y = _mm256_loadu_ps(x + c);
        if (bias) y = _mm256_add_ps(y, _mm256_loadu_ps(bias + c)); /* under FTZ | DAZ */
        v8_store_dt(C, at + c, y, cbf ? BF16 : F32);
    }
#endif
    for (; c < n; c++) st(C, at + c, bias ? pr_bias(x[c], bias[c]) : x[c], cbf ? BF16 : F32);
}

/* the sums s (mc rows of lds) of rows i0.., columns j0.. of one batch item: + bias,
   then to Cb through the output map */
static void pq_out(const struct omap *om, const float *s, i64 lds, i64 i0, i64 mc, i64 j0, i64 nc,
                   const void *bias, int bdt, void *Cb, float *bb) {
    i64 rowoff[PQ_MB];
    omap_rows(om, i0, mc, rowoff);
    if (bias && !om->rbias)
        for (i64 c = 0; c < nc; c++) bb[c] = ld(bias, j0 + c, bdt);
#ifdef SB_AVX2
    /* NCHW output (a column stride, positions along rows): 8 rows x 8 columns at a
       time, transposed, where the 8 rows are 8 consecutive positions */
    int tr = om->sj != 1 && om->si == 1 && !om->rbias;
#endif
    for (i64 r0 = 0; r0 < mc; r0 += 8) {
        i64 r1 = r0 + 8 < mc ? r0 + 8 : mc, c = 0;
#ifdef SB_AVX2
        int run = tr && r1 - r0 == 8 && rowoff[r0] >= 0;
        for (int l = 1; run && l < 8; l++) run = rowoff[r0 + l] == rowoff[r0] + l;
        if (run) {
            for (; c + 8 <= nc; c += 8) {
                __m256 v[8], t[8];
                for (int l = 0; l < 8; l++) v[l] = _mm256_loadu_ps(s + (r0 + l) * lds + c);
                t8x8(v, t); /* t[q]: column c + q of the 8 rows */
                for (int q = 0; q < 8; q++) {
                    __m256 y = bias ? _mm256_add_ps(t[q], _mm256_set1_ps(bb[c + q])) : t[q];
                    v8_store_dt(Cb, rowoff[r0] + (j0 + c + q) * om->sj, y, om->cbf ? BF16 : F32);
                }
            }
        }
#endif
        for (i64 r = r0; r < r1; r++) {
            if (rowoff[r] < 0) continue;
            if (bias && om->rbias) { /* one bias per row */
                float b = ld(bias, i0 + r, bdt);
                for (i64 q = 0; q < nc; q++) bb[q] = b;
            }
            const float *x = s + r * lds;
            i64 at = rowoff[r] + (j0 + c) * om->sj;
            if (om->sj == 1) {
                pq_emit(x + c, bias ? bb + c : NULL, nc - c, Cb, at, (int)om->cbf);
                continue;
            }
            for (i64 q = c; q < nc; q++, at += om->sj) /* a column stride */
                st(Cb, at, bias ? pr_bias(x[q], bb[q]) : x[q], om->cbf ? BF16 : F32);
        }
    }
}

#if PQ_SMALL_M
/* M <= PQ_SMALL_M rows, A in plain rows, B K-contiguous: pq_small per 16 columns */
static void pair_small(const uint16_t *A, i64 lda, i64 sa, const uint16_t *B, i64 ldb, i64 sb,
                       float *C, i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt,
                       int th, const struct omap *om) {
    i64 npan = (N + 15) / 16, tasks = batch * npan;
#pragma omp parallel num_threads(th)
    {
        unsigned old = pr_ftz_on();
        float s[PQ_SMALL_M * 16], bb[16];
#pragma omp for schedule(dynamic, dyn_chunk(tasks, th))
        for (i64 t = 0; t < tasks; t++) {
            i64 bi = t / npan, j0 = (t % npan) * 16, nc = N - j0 < 16 ? N - j0 : 16;
            const uint16_t *ap[PQ_SMALL_M], *bp[16];
            for (i64 r = 0; r < M; r++) ap[r] = A + bi * sa + r * lda;
            /* missing columns reuse column j0; their results are not stored */
            for (i64 c = 0; c < 16; c++) bp[c] = B + bi * sb + (j0 + (c < nc ? c : 0)) * ldb;
            if (K > 0) PQ_SMALLS[M](ap, bp, K, s);
            else memset(s, 0, sizeof s);
            pq_out(om, s, 16, 0, M, j0, nc, bias, bdt, (char *)C + bi * sc * (om->cbf ? 2 : 4), bb);
        }
        pr_ftz_off(old);
    }
}
#endif

#ifdef SB_AMX
/* the AMX kernel (gemm_amx.c, included after this file by kernels.c) */
static int ax_gemm(const uint16_t *A, i64 lda, i64 sa, const uint16_t *B, i64 ldb, i64 sb, float *C,
                   i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt, int th,
                   const struct omap *om);
#endif

/* (batch, M, K) x (batch, N, K), both bfloat16 rows in place (or B K-major with
   bkmaj: (batch, K, N), rows ldb apart); C float32, or bfloat16 with om->cbf (each
   result rounded once, as .to() would) */
static int pair_gemm(const uint16_t *A, i64 lda, i64 sa, const uint16_t *B, i64 ldb, int bkmaj, i64 sb,
                     float *C, i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt,
                     int th, const struct omap *om) {
#ifdef SB_AMX
    if (!bkmaj && om->arun >= K)
        return ax_gemm(A, lda, sa, B, ldb, sb, C, sc, batch, M, N, K, bias, bdt, th, om);
#endif
#if PQ_SMALL_M
    if (M <= PQ_SMALL_M && !bkmaj && om->arun >= K && !om->aw) {
        pair_small(A, lda, sa, B, ldb, sb, C, sc, batch, M, N, K, bias, bdt, th, om);
        return 0;
    }
#endif
    /* row tiles of equal height (a multiple of PQ_MR), at most PQ_MB */
    i64 mt = M > PQ_MB ? (M + PQ_MB - 1) / PQ_MB : 1, NB = PQ_NB;
    i64 MB = ((M + mt - 1) / mt + PQ_MR - 1) / PQ_MR * PQ_MR, nt = (N + NB - 1) / NB;
    if (MB > PQ_MB) MB = PQ_MB;
    /* narrower column tiles when there are too few tiles to keep every thread busy */
    while (th > 1 && batch * mt * nt < 4 * th && NB > 16) {
        NB /= 2;
        nt = (N + NB - 1) / NB;
    }
    i64 tiles = batch * mt * nt;
    int oom = 0;
#pragma omp parallel num_threads(th)
    {
        uint32_t *bp = (uint32_t *)pack_buffer(3, (size_t)PQ_NV * 16 * (PQ_KC / 2));
        float *s = pack_buffer(4, (size_t)PQ_MB * PQ_NB), bb[PQ_NB];
        if (!bp || !s) {
#pragma omp atomic write
            oom = 1;
        }
#ifdef PR_MXCSR
        unsigned old = pr_ftz_on();
#endif
#pragma omp for schedule(dynamic, 1)
        for (i64 t = 0; t < tiles; t++) {
            if (!bp || !s) continue;
            i64 bi = t / (mt * nt), rest = t % (mt * nt), ti = rest / nt, tj = rest % nt;
            i64 i0 = ti * MB, mc = M - i0 < MB ? M - i0 : MB;
            i64 j0 = tj * NB, nc = N - j0 < NB ? N - j0 : NB;
            i64 npan = (nc + 15) / 16, lds = npan * 16;
            const uint16_t *Ab = A + bi * sa, *Bb = B + bi * sb;
            i64 aoff[PQ_MB];
            omap_arows(om, lda, i0, mc, aoff);
            if (K <= 0) memset(s, 0, sizeof(float) * (size_t)(mc * lds)); /* empty sums: +0 */
            for (i64 k0 = 0, kc; k0 < K; k0 += kc) {
                kc = omap_kblock(om, k0, K, PQ_KC);
                i64 np = (kc + 1) / 2, ak = omap_a(om, k0); /* A's k0 at row + ak */
                for (i64 pg = 0; pg < npan; pg += PQ_NV) {
                    /* PQ_NV panels of the block, packed while the tile's rows use them */
                    int nv = (int)(npan - pg < PQ_NV ? npan - pg : PQ_NV);
                    i64 cg = nc - 16 * pg < 16 * nv ? nc - 16 * pg : 16 * nv;
                    if (bkmaj) pq_pack_t(Bb, ldb, j0 + 16 * pg, cg, k0, kc, bp);
                    else pq_pack(Bb, ldb, j0 + 16 * pg, cg, k0, kc, bp);
                    for (i64 r0 = 0; r0 < mc; r0 += PQ_MR) {
                        int mr = (int)(mc - r0 < PQ_MR ? mc - r0 : PQ_MR);
                        const uint16_t *ap[PQ_MR];
                        for (int r = 0; r < mr; r++) ap[r] = Ab + aoff[r0 + r] + ak;
                        PQ_FNS[mr][nv](ap, bp, np * 16, np, (int)(kc & 1), s + r0 * lds + pg * 16,
                                       lds, k0 == 0);
                    }
                }
            }
            pq_out(om, s, lds, i0, mc, j0, nc, bias, bdt, (char *)C + bi * sc * (om->cbf ? 2 : 4), bb);
        }
#ifdef PR_MXCSR
        pr_ftz_off(old);
#endif
    }
    return oom ? -1 : 0;
}
