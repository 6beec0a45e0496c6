/* samebits native kernels.
 *
 * Every kernel here fixes its reduction order so that it depends only on the
 * reduction length and the item's own data: never on M (rows), on which other
 * rows exist, on the thread count, or on how the work is split across threads.
 * Threads only ever own whole output elements; no reduction is split.
 *
 * The orders (the contract, also listed in docs/design.md):
 *   DOT  (K-contiguous B): for output (i, j), eight lanes; lane l
 *        accumulates a[k]*b[k] for k = l, l+8, l+16, ... with a fused
 *        multiply-add, the last partial block padded with zeros; then the
 *        lanes are added as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
 *   SEQ  (any other layout of B): for output (i, j), one fused
 *        multiply-add per k in increasing k, starting from +0.
 *        Exact zeros (masked keys, padding) therefore add nothing.
 *   SUM  (row and column sums): sequential over the reduced index in double,
 *        starting from +0, rounded once.
 *   ALL  (whole-tensor sum): fixed 4096-element chunks, each summed in eight
 *        double lanes plus the DOT tree, chunk results added left to right.
 *   Elementwise functions are one straight-line, branch-free sequence of
 *   float32 IEEE operations per element, so an element's bits do not depend on
 *   where it sits in a vector, a tail or a thread chunk.
 *
 * Several kernels may compute one order (e.g. DOT for few rows reads operands in
 * place, for many rows packs them into panels); they perform the same operations
 * on every output, and tests compare their bits.
 *
 * Compiled with -ffp-contract=off: the only fused operations are the explicit
 * fmaf / _mm256_fmadd_ps calls, identical in the vector and scalar paths.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SB_AVX2 1
#endif

typedef int64_t i64;
enum { F32 = 0, BF16 = 1 };

static inline float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round half to even */
    return (uint16_t)(u >> 16);
}

static inline float ld(const void *p, i64 i, int dt) {
    return dt == BF16 ? bf2f(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static inline void st(void *p, i64 i, float v, int dt) {
    if (dt == BF16) ((uint16_t *)p)[i] = f2bf(v);
    else ((float *)p)[i] = v;
}

static inline size_t esz(int dt) { return dt == BF16 ? 2 : 4; }

/* ---------------------------------------------------------------- 8 lanes */
#ifdef SB_AVX2
typedef __m256 v8;
static inline v8 v8_zero(void) { return _mm256_setzero_ps(); }
static inline v8 v8_fma(v8 a, v8 b, v8 c) { return _mm256_fmadd_ps(a, b, c); }
static inline v8 v8_set1(float x) { return _mm256_set1_ps(x); }
static inline v8 v8_add(v8 a, v8 b) { return _mm256_add_ps(a, b); }
static inline __m256i v8_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* full load of 8 elements */
static inline v8 v8_load(const void *p, i64 i, int dt) {
    if (dt == BF16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    return _mm256_loadu_ps((const float *)p + i);
}
/* load n < 8 elements, zeros in the other lanes */
static inline v8 v8_load_n(const void *p, i64 i, int n, int dt) {
    if (dt == BF16) {
        uint16_t tmp[8] = {0};
        memcpy(tmp, (const uint16_t *)p + i, (size_t)n * 2);
        return v8_load(tmp, 0, BF16);
    }
    return _mm256_maskload_ps((const float *)p + i, v8_mask(n));
}
static inline void v8_store(float *p, v8 v) { _mm256_storeu_ps(p, v); }
static inline void v8_store_n(float *p, v8 v, int n) { _mm256_maskstore_ps(p, v8_mask(n), v); }
static inline float v8_tree(v8 v) {
    /* ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* l0+l4 .. l3+l7 */
    __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));                                   /* (0+4)+(2+6), (1+5)+(3+7) */
    __m128 u = _mm_add_ss(t, _mm_shuffle_ps(t, t, 1));
    return _mm_cvtss_f32(u);
}
#else
typedef struct { float x[8]; } v8;
static inline v8 v8_zero(void) { v8 r; for (int l = 0; l < 8; l++) r.x[l] = 0.0f; return r; }
static inline v8 v8_fma(v8 a, v8 b, v8 c) { for (int l = 0; l < 8; l++) c.x[l] = fmaf(a.x[l], b.x[l], c.x[l]); return c; }
static inline v8 v8_set1(float x) { v8 r; for (int l = 0; l < 8; l++) r.x[l] = x; return r; }
static inline v8 v8_add(v8 a, v8 b) { for (int l = 0; l < 8; l++) a.x[l] += b.x[l]; return a; }
static inline v8 v8_load(const void *p, i64 i, int dt) { v8 r; for (int l = 0; l < 8; l++) r.x[l] = ld(p, i + l, dt); return r; }
static inline v8 v8_load_n(const void *p, i64 i, int n, int dt) { v8 r = v8_zero(); for (int l = 0; l < n; l++) r.x[l] = ld(p, i + l, dt); return r; }
static inline void v8_store(float *p, v8 v) { for (int l = 0; l < 8; l++) p[l] = v.x[l]; }
static inline void v8_store_n(float *p, v8 v, int n) { for (int l = 0; l < n; l++) p[l] = v.x[l]; }
static inline float v8_tree(v8 v) {
    float s0 = v.x[0] + v.x[4], s1 = v.x[1] + v.x[5], s2 = v.x[2] + v.x[6], s3 = v.x[3] + v.x[7];
    return (s0 + s2) + (s1 + s3);
}
#endif

static int threads_for(i64 work, int nthreads) {
    /* Splitting never changes bits (threads own whole outputs), so small jobs
       simply run on one thread to avoid the fork cost. */
    if (nthreads < 1) nthreads = 1;
    if (work < (1 << 15)) return 1;
    return nthreads;
}

static int dyn_chunk(i64 tasks, int th) {
    /* Loops are scheduled dynamically, in chunks of about 1/8 of a thread's share:
       when another process or the server's own threads take a core for a while, the
       other threads go on with the work instead of waiting for the late one at the
       end of the loop (static shares measured 40% slower under a 25% background
       load of one core). Which thread computes an output never changes its bits. */
    i64 c = tasks / (8 * (i64)(th > 0 ? th : 1));
    return c < 1 ? 1 : (int)(c > (1 << 20) ? 1 << 20 : c);
}

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

#ifdef SB_AVX2
/* o[c] = (r[0][c], ..., r[7][c]): an 8x8 transpose in registers */
static inline __attribute__((always_inline)) void t8x8(const __m256 r[8], __m256 o[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]),
           t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]),
           t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]),
           t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
           u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
           u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
           u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    o[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    o[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    o[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    o[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    o[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    o[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    o[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    o[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
#endif

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

/* Per-thread packing buffers, allocated once per thread and kept: a fresh
   allocation per call would cost page faults on every small product. */
static _Thread_local float *tl_pack[3];
static _Thread_local size_t tl_cap[3];
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
                        Cb[(i + r) * ldc + j + c] = bias ? o[r][c] + ld(bias, j + c, bdt) : o[r][c];
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
                    Cb[i * ldc + j + c] = bias ? o[0][c] + ld(bias, j + c, bdt) : o[0][c];
            }
        }
    }
}


#define DOT_SMALL_M 16
#define DOT_NARROW_N 512
#define DOT_NARROW_M 32
#ifndef DKC
#define DKC 512 /* k per block, a multiple of 8: 64 per lane */
#endif
#ifndef DMC
#define DMC 96
#endif
#ifndef DNC
#define DNC 256
#endif

/* lane-major packing: dst[l][k'][W] = X[row w][k0 + 8k' + l] (0 past K), rows
   at stride ld, W = 6 (A panels) or 16 (B panels), `rows` valid of W. */
static void pack_lanes(const char *X, i64 ld, int dt, i64 r0, int rows, const int W, i64 k0,
                       i64 kc, i64 K, float *dst) {
    i64 D = (kc + 7) / 8;
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
            i64 base = (r0 + w0) * ld + k;
            if (n == 8 && nk == 8 && dt == F32) {
                const float *x = (const float *)X + base;
                for (int w = 0; w < 8; w++) r[w] = _mm256_loadu_ps(x + w * ld);
            } else if (n == 8 && nk == 8) {
                for (int w = 0; w < 8; w++) r[w] = v8_load(X, base + w * ld, BF16);
            } else {
                for (int w = 0; w < 8; w++)
                    r[w] = w >= n ? _mm256_setzero_ps()
                                  : (nk == 8 ? v8_load(X, base + w * ld, dt)
                                             : v8_load_n(X, base + w * ld, nk, dt));
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
        i64 base = (r0 + w) * ld;
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

static void dot_packed(const void *A, i64 lda, i64 sa, const void *B, i64 ldb, i64 sb, float *C,
                       i64 ldc, i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt,
                       int dt, int th, int *oom) {
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
    int direct = dt == F32 && lda < 2048 && lda % 1024 != 0;
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
        i64 packed = -1; /* the (batch, column tile) in pb */
        for (i64 t; (t = next_tile(runs, nth, tid)) >= 0;) {
            if (!pa || !pb || !lanes) continue;
            i64 bj = t / mt, bi = bj / nt, tj = bj % nt, ti = t % mt;
            const char *Ab = (const char *)A + bi * sa * e;
            const char *Bb = (const char *)B + bi * sb * e;
            float *Cb = C + bi * sc;
            i64 i0 = ti * MC, mc = M - i0 < MC ? M - i0 : MC;
            i64 j0 = tj * NC, nc = N - j0 < NC ? N - j0 : NC;
            i64 npan = (nc + GNR - 1) / GNR, mpan = (mc + GMR - 1) / GMR;
            if (packed != bj) {
                for (i64 k0 = 0; k0 < K; k0 += DKC) {
                    i64 kc = K - k0 < DKC ? K - k0 : DKC, D = (kc + 7) / 8;
                    for (i64 pp = 0; pp < npan; pp++) {
                        int w = (int)(nc - pp * GNR < GNR ? nc - pp * GNR : GNR);
                        pack_lanes((const char *)Bb, ldb, dt, j0 + pp * GNR, w, GNR, k0, kc, K,
                                   pb + k0 * NC + pp * GNR * 8 * D);
                    }
                }
                packed = bj;
            }
            for (i64 k0 = 0; k0 < K; k0 += DKC) {
                i64 kc = K - k0 < DKC ? K - k0 : DKC, D = (kc + 7) / 8;
                int first = k0 == 0;
                const float *pbk = pb + k0 * NC;
                if (!direct)
                    for (i64 qq = 0; qq < mpan; qq++) {
                        int h = (int)(mc - qq * GMR < GMR ? mc - qq * GMR : GMR);
                        pack_lanes((const char *)Ab, lda, dt, i0 + qq * GMR, h, GMR, k0, kc, K,
                                   pa + qq * GMR * 8 * D);
                    }
                for (i64 pp = 0; pp < npan; pp++) {
                    int w = (int)(nc - pp * GNR < GNR ? nc - pp * GNR : GNR);
                    for (i64 qq = 0; qq < mpan; qq++) {
                        int h = (int)(mc - qq * GMR < GMR ? mc - qq * GMR : GMR);
                        float *lb = lanes + (pp * mpan + qq) * 8 * GMR * GNR;
                        if (direct) {
                            const float *a = (const float *)Ab + (i0 + qq * GMR) * lda + k0;
                            for (int l = 0; l < 8; l++)
                                LANES[h](a + l, lda, pbk + pp * GNR * 8 * D + l * D * GNR,
                                         (kc - l + 7) / 8, lb + l * GMR * GNR, first);
                        } else {
                            for (int l = 0; l < 8; l++)
                                MICROS[h](pa + qq * GMR * 8 * D + l * D * GMR,
                                          pbk + pp * GNR * 8 * D + l * D * GNR, D,
                                          lb + l * GMR * GNR, GNR, GNR, first, NULL);
                        }
                        if (k0 + kc < K) continue;
                        /* last block: the lane tree while the lanes are in L1, 8 outputs
                           per vector, then + bias */
                        for (int r = 0; r < h; r++)
                            for (int v = 0; v < 2 && 8 * v < w; v++) {
                                v8 L[8];
                                for (int l = 0; l < 8; l++)
                                    L[l] = v8_load(lb + l * GMR * GNR + r * GNR, 8 * v, F32);
                                v8 x = v8_add(v8_add(v8_add(L[0], L[4]), v8_add(L[2], L[6])),
                                              v8_add(v8_add(L[1], L[5]), v8_add(L[3], L[7])));
                                int n = w - 8 * v < 8 ? w - 8 * v : 8;
                                i64 j = j0 + pp * GNR + 8 * v;
                                if (bias) x = v8_add(x, v8_load_n(bias, j, n, bdt));
                                float *c = Cb + (i0 + qq * GMR + r) * ldc + j;
                                if (n == 8) v8_store(c, x);
                                else v8_store_n(c, x, n);
                            }
                    }
                }
            }
        }
    }
}

/* order 0: SEQ, any strides. order 1: DOT, needs ka == 1 and bk == 1. */
int sb_gemm(const void *A, i64 lda, i64 ka, i64 sa, const void *B, i64 bk, i64 bn, i64 sb,
            float *C, i64 ldc, i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt,
            int dt, int order, int nthreads) {
    int th = threads_for(batch * M * N * K, nthreads);
    if (order == 1) {
        if (ka != 1 || bk != 1) return -2;
        int oom = 0;
        /* the in-place kernel also wins for narrow outputs of moderate height */
        if (M <= DOT_SMALL_M || (N <= DOT_NARROW_N && M <= DOT_NARROW_M))
            dot_small(A, lda, sa, B, bn, sb, C, ldc, sc, batch, M, N, K, bias, bdt, dt, th);
        else
            dot_packed(A, lda, sa, B, bn, sb, C, ldc, sc, batch, M, N, K, bias, bdt, dt, th, &oom);
        return oom ? -1 : 0;
    }
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

/* ----------------------------------------------------------- reductions */
/* SUM order for n <= 8 contiguous rows of length R starting at row o0:
   acc[r] = sequential double sum over k of f(x[o0+r][k] - c[r]). The 8 chains
   run side by side (8x8 in-register transposes on AVX2, plain loops otherwise);
   every path performs the same double operations per row. */
#ifdef SB_AVX2
/* The SUM order for 16 float32 rows: rowsum8's operations, two groups of 8 rows
   side by side so that four independent add chains hide the add latency. */
static void rowsum16_f32(const float *x, i64 R, const double *cen, int square, double *out16) {
    double c[16] = {0};
    if (cen)
        for (int r = 0; r < 16; r++) c[r] = cen[r];
    __m256d acc[4], cv[4];
    for (int g = 0; g < 4; g++) {
        acc[g] = _mm256_setzero_pd();
        cv[g] = _mm256_loadu_pd(c + 4 * g);
    }
    i64 k = 0;
    for (; k + 8 <= R; k += 8) {
        __m256 col[2][8];
        for (int h = 0; h < 2; h++) {
            __m256 r[8];
            for (int w = 0; w < 8; w++) r[w] = _mm256_loadu_ps(x + (8 * h + w) * R + k);
            t8x8(r, col[h]);
        }
        for (int q = 0; q < 8; q++)
            for (int h = 0; h < 2; h++) {
                __m256d a = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(col[h][q])), cv[2 * h]);
                __m256d b = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(col[h][q], 1)), cv[2 * h + 1]);
                if (square) {
                    a = _mm256_mul_pd(a, a);
                    b = _mm256_mul_pd(b, b);
                }
                acc[2 * h] = _mm256_add_pd(acc[2 * h], a);
                acc[2 * h + 1] = _mm256_add_pd(acc[2 * h + 1], b);
            }
    }
    for (int g = 0; g < 4; g++) _mm256_storeu_pd(out16 + 4 * g, acc[g]);
    for (; k < R; k++)
        for (int r = 0; r < 16; r++) {
            double v = (double)x[r * R + k] - c[r];
            out16[r] += square ? v * v : v;
        }
}
#endif

static void rowsum8(const void *x, i64 o0, i64 n, i64 R, const double *cen, int square, int dt,
                double *out8) {
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, c[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (cen)
            for (i64 r = 0; r < n; r++) c[r] = cen[r];
        i64 k = 0;
#ifdef SB_AVX2
        if (n == 8 && dt == F32) {
            const float *xb = (const float *)x + o0 * R;
            __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
            __m256d clo = _mm256_loadu_pd(c), chi = _mm256_loadu_pd(c + 4);
            for (; k + 8 <= R; k += 8) {
                __m256 r[8], col[8]; /* col[q] holds element k+q of rows 0..7 */
                for (int w = 0; w < 8; w++) r[w] = _mm256_loadu_ps(xb + w * R + k);
                t8x8(r, col);
                for (int q = 0; q < 8; q++) {
                    __m256d a = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(col[q])), clo);
                    __m256d b = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(col[q], 1)), chi);
                    if (square) {
                        a = _mm256_mul_pd(a, a);
                        b = _mm256_mul_pd(b, b);
                    }
                    lo = _mm256_add_pd(lo, a);
                    hi = _mm256_add_pd(hi, b);
                }
            }
            _mm256_storeu_pd(acc, lo);
            _mm256_storeu_pd(acc + 4, hi);
        }
#endif
        for (; k < R; k++)
            for (i64 r = 0; r < n; r++) {
                double v = (double)ld(x, (o0 + r) * R + k, dt) - c[r];
                acc[r] += square ? v * v : v;
            }
        for (i64 r = 0; r < n; r++) out8[r] = acc[r];
}

/* x viewed as (outer, R, inner), contiguous. out[o][j] = SUM_k f(x[o][k][j]),
   f = identity (p=1) or square (p=2), after subtracting center[o][j] if given. */
void sb_sum(const void *x, i64 outer, i64 R, i64 inner, const double *center, int square,
            double *out, int dt, int nthreads) {
    int th = threads_for(outer * R * inner, nthreads);
    if (inner == 1) {
        i64 blocks = (outer + 7) / 8;
#pragma omp parallel for schedule(dynamic, dyn_chunk(blocks, th)) num_threads(th)
        for (i64 bk = 0; bk < blocks; bk++) {
            i64 o0 = bk * 8, n = outer - o0 < 8 ? outer - o0 : 8;
            rowsum8(x, o0, n, R, center ? center + o0 : NULL, square, dt, out + o0);
        }
        return;
    }
    i64 jb = (inner + 63) / 64, tasks = outer * jb;
#pragma omp parallel for schedule(dynamic, dyn_chunk(tasks, th)) num_threads(th)
    for (i64 t = 0; t < tasks; t++) {
        i64 o = t / jb, j0 = (t % jb) * 64, n = inner - j0 < 64 ? inner - j0 : 64;
        double acc[64], c[64];
        for (i64 j = 0; j < n; j++) {
            acc[j] = 0.0;
            c[j] = center ? center[o * inner + j0 + j] : 0.0;
        }
        for (i64 k = 0; k < R; k++) {
            i64 base = (o * R + k) * inner + j0;
            for (i64 j = 0; j < n; j++) {
                double v = (double)ld(x, base + j, dt) - c[j];
                acc[j] += square ? v * v : v;
            }
        }
        for (i64 j = 0; j < n; j++) out[o * inner + j0 + j] = acc[j];
    }
}

#define CHUNK 4096
double sb_sum_all(const void *x, i64 n, int dt, int nthreads) {
    i64 chunks = (n + CHUNK - 1) / CHUNK;
    if (chunks == 0) return 0.0;
    double *part = (double *)malloc((size_t)chunks * sizeof(double));
    int th = threads_for(n, nthreads);
#pragma omp parallel for schedule(dynamic, dyn_chunk(chunks, th)) num_threads(th)
    for (i64 c = 0; c < chunks; c++) {
        i64 a = c * CHUNK, b = a + CHUNK < n ? a + CHUNK : n;
        double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        i64 i = a;
        for (; i + 8 <= b; i += 8)
            for (int q = 0; q < 8; q++) l[q] += (double)ld(x, i + q, dt);
        for (int q = 0; i + q < b; q++) l[q] += (double)ld(x, i + q, dt);
        part[c] = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
    }
    double s = 0.0;
    for (i64 c = 0; c < chunks; c++) s += part[c];
    free(part);
    return s;
}

/* ------------------------------------------------------ elementwise math */
/* Elementwise functions are branch-free straight-line float arithmetic (selects
   instead of branches) so GCC vectorizes the loops that call them; vector lanes
   and the scalar remainder then run the same IEEE operations per element. */
/* Float versions for the elementwise ops: 8 lanes, explicit fmaf, about 1-3 ulp.
   exp: n = rint(x / ln2) by the magic-number trick, two-part Cody-Waite
   reduction, degree-7 Taylor polynomial, 2^n applied in two integer-built steps. */
static inline float f_exp(float x) {
    float xc = x < -104.0f ? -104.0f : (x > 88.8f ? 88.8f : x);
    float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = fmaf(n, -0.693145752f, xc);
    r = fmaf(n, -1.42860677e-06f, r);
    float p = 1.0f / 5040.0f;
    p = fmaf(p, r, 1.0f / 720.0f);
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t ni = (int32_t)n, n1 = ni >> 1, n2 = ni - n1; /* each in [-75, 64] */
    uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    float y = (p * s1) * s2;
    y = x > 88.72283f ? INFINITY : y;
    y = x < -103.97f ? 0.0f : y;
    return x != x ? x : y;
}

static inline float f_expm1(float x) {
    float p = 1.0f / 40320.0f;
    p = fmaf(p, x, 1.0f / 5040.0f);
    p = fmaf(p, x, 1.0f / 720.0f);
    p = fmaf(p, x, 1.0f / 120.0f);
    p = fmaf(p, x, 1.0f / 24.0f);
    p = fmaf(p, x, 1.0f / 6.0f);
    p = fmaf(p, x, 0.5f);
    float small = fmaf(x * x, p, x);
    float big = f_exp(x) - 1.0f;
    float r = x < 0.3f ? small : big;
    return x > -0.3f ? r : big;
}

static inline float f_tanh(float x) {
    float a = x < 0 ? -x : x;
    float e = f_expm1(2.0f * (a > 10.0f ? 10.0f : a));
    float t = e / (e + 2.0f);
    t = a > 9.1f ? 1.0f : t;
    t = x < 0 ? -t : t;
    return x != x ? x : t;
}

/* erfc by Numerical Recipes' Chebyshev fit (fractional error < 1.2e-7) */
static inline float f_erfc(float z) {
    float a = z < 0 ? -z : z;
    float t = 1.0f / fmaf(0.5f, a, 1.0f);
    float p = fmaf(t, 0.17087277f, -0.82215223f);
    p = fmaf(t, p, 1.48851587f);
    p = fmaf(t, p, -1.13520398f);
    p = fmaf(t, p, 0.27886807f);
    p = fmaf(t, p, -0.18628806f);
    p = fmaf(t, p, 0.09678418f);
    p = fmaf(t, p, 0.37409196f);
    p = fmaf(t, p, 1.00002368f);
    float r = t * f_exp(fmaf(-a, a, fmaf(t, p, -1.26551223f)));
    r = z >= 0 ? r : 2.0f - r;
    return z != z ? z : r; /* NaN in, that NaN out: t * e of two NaNs would depend on operand order */
}

enum { U_GELU = 0, U_GELU_TANH, U_SILU, U_SIGMOID, U_EXP, U_TANH, U_RSQRT, U_ERF };
#define UBLK 512

#ifdef SB_AVX2
/* The same functions on 8 lanes, written with intrinsics: operation for
   operation the float sequences above (a select is a compare and a blend, with
   the same comparison, so NaN takes the same side). GCC's auto-vectorized
   versions of the scalar code ran 3-5x slower.
   Each function takes `nv` vectors (nv <= UNV, a constant at every call site)
   and runs every step on all of them before the next step. One vector's chain
   (division, polynomials, exp) is long and serial, and out-of-order execution
   could not overlap enough of the next vector's to hide it: stepping four
   vectors side by side made gelu ~1.6x faster in L1. The lanes compute exactly
   what one vector does; nv changes the schedule, never an operation. */
#define VC(x) _mm256_set1_ps(x)
#define VSEL(c, a, b) _mm256_blendv_ps((b), (a), (c)) /* c ? a : b */
#define UNV 4
#define EACH for (int u = 0; u < nv; u++)
#define AI static inline __attribute__((always_inline))

/* -x (a sign flip, as C's unary minus; 0 - x would differ on zeros and NaN) */
AI v8 fv_neg(v8 x) { return _mm256_xor_ps(x, VC(-0.0f)); }

AI v8 fv_abs(v8 x) { return VSEL(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ), fv_neg(x), x); }

AI void fvn_exp(const v8 *x, v8 *y, const int nv) {
    v8 xc[UNV], n[UNV], r[UNV], p[UNV];
    EACH xc[u] = VSEL(_mm256_cmp_ps(x[u], VC(-104.0f), _CMP_LT_OQ), VC(-104.0f),
                      VSEL(_mm256_cmp_ps(x[u], VC(88.8f), _CMP_GT_OQ), VC(88.8f), x[u]));
    EACH n[u] = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(xc[u], VC(1.44269504f)), VC(12582912.0f)),
                              VC(12582912.0f));
    EACH r[u] = _mm256_fmadd_ps(n[u], VC(-0.693145752f), xc[u]);
    EACH r[u] = _mm256_fmadd_ps(n[u], VC(-1.42860677e-06f), r[u]);
    EACH p[u] = _mm256_fmadd_ps(VC(1.0f / 5040.0f), r[u], VC(1.0f / 720.0f));
    EACH p[u] = _mm256_fmadd_ps(p[u], r[u], VC(1.0f / 120.0f));
    EACH p[u] = _mm256_fmadd_ps(p[u], r[u], VC(1.0f / 24.0f));
    EACH p[u] = _mm256_fmadd_ps(p[u], r[u], VC(1.0f / 6.0f));
    EACH p[u] = _mm256_fmadd_ps(p[u], r[u], VC(0.5f));
    EACH p[u] = _mm256_fmadd_ps(p[u], r[u], VC(1.0f));
    EACH p[u] = _mm256_fmadd_ps(p[u], r[u], VC(1.0f));
    EACH {
        __m256i ni = _mm256_cvttps_epi32(n[u]), n1 = _mm256_srai_epi32(ni, 1),
                n2 = _mm256_sub_epi32(ni, n1);
        v8 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
        v8 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
        v8 v = _mm256_mul_ps(_mm256_mul_ps(p[u], s1), s2);
        v = VSEL(_mm256_cmp_ps(x[u], VC(88.72283f), _CMP_GT_OQ), VC(INFINITY), v);
        v = VSEL(_mm256_cmp_ps(x[u], VC(-103.97f), _CMP_LT_OQ), _mm256_setzero_ps(), v);
        y[u] = VSEL(_mm256_cmp_ps(x[u], x[u], _CMP_NEQ_UQ), x[u], v);
    }
}

AI v8 fv_exp(v8 x) {
    v8 y;
    fvn_exp(&x, &y, 1);
    return y;
}

AI void fvn_expm1(const v8 *x, v8 *y, const int nv) {
    v8 p[UNV], big[UNV];
    fvn_exp(x, big, nv);
    EACH p[u] = _mm256_fmadd_ps(VC(1.0f / 40320.0f), x[u], VC(1.0f / 5040.0f));
    EACH p[u] = _mm256_fmadd_ps(p[u], x[u], VC(1.0f / 720.0f));
    EACH p[u] = _mm256_fmadd_ps(p[u], x[u], VC(1.0f / 120.0f));
    EACH p[u] = _mm256_fmadd_ps(p[u], x[u], VC(1.0f / 24.0f));
    EACH p[u] = _mm256_fmadd_ps(p[u], x[u], VC(1.0f / 6.0f));
    EACH p[u] = _mm256_fmadd_ps(p[u], x[u], VC(0.5f));
    EACH {
        v8 small = _mm256_fmadd_ps(_mm256_mul_ps(x[u], x[u]), p[u], x[u]);
        v8 b = _mm256_sub_ps(big[u], VC(1.0f));
        v8 r = VSEL(_mm256_cmp_ps(x[u], VC(0.3f), _CMP_LT_OQ), small, b);
        y[u] = VSEL(_mm256_cmp_ps(x[u], VC(-0.3f), _CMP_GT_OQ), r, b);
    }
}

AI void fvn_tanh(const v8 *x, v8 *y, const int nv) {
    v8 a[UNV], e[UNV];
    EACH a[u] = fv_abs(x[u]);
    EACH e[u] = _mm256_mul_ps(VC(2.0f), VSEL(_mm256_cmp_ps(a[u], VC(10.0f), _CMP_GT_OQ), VC(10.0f), a[u]));
    fvn_expm1(e, e, nv);
    EACH {
        v8 t = _mm256_div_ps(e[u], _mm256_add_ps(e[u], VC(2.0f)));
        t = VSEL(_mm256_cmp_ps(a[u], VC(9.1f), _CMP_GT_OQ), VC(1.0f), t);
        t = VSEL(_mm256_cmp_ps(x[u], _mm256_setzero_ps(), _CMP_LT_OQ), fv_neg(t), t);
        y[u] = VSEL(_mm256_cmp_ps(x[u], x[u], _CMP_NEQ_UQ), x[u], t);
    }
}

AI void fvn_erfc(const v8 *z, v8 *y, const int nv) {
    v8 a[UNV], t[UNV], p[UNV], e[UNV];
    EACH a[u] = fv_abs(z[u]);
    EACH t[u] = _mm256_div_ps(VC(1.0f), _mm256_fmadd_ps(VC(0.5f), a[u], VC(1.0f)));
    EACH p[u] = _mm256_fmadd_ps(t[u], VC(0.17087277f), VC(-0.82215223f));
    EACH p[u] = _mm256_fmadd_ps(t[u], p[u], VC(1.48851587f));
    EACH p[u] = _mm256_fmadd_ps(t[u], p[u], VC(-1.13520398f));
    EACH p[u] = _mm256_fmadd_ps(t[u], p[u], VC(0.27886807f));
    EACH p[u] = _mm256_fmadd_ps(t[u], p[u], VC(-0.18628806f));
    EACH p[u] = _mm256_fmadd_ps(t[u], p[u], VC(0.09678418f));
    EACH p[u] = _mm256_fmadd_ps(t[u], p[u], VC(0.37409196f));
    EACH p[u] = _mm256_fmadd_ps(t[u], p[u], VC(1.00002368f));
    EACH e[u] = _mm256_fmadd_ps(fv_neg(a[u]), a[u], _mm256_fmadd_ps(t[u], p[u], VC(-1.26551223f)));
    fvn_exp(e, e, nv);
    EACH {
        v8 r = _mm256_mul_ps(t[u], e[u]);
        r = VSEL(_mm256_cmp_ps(z[u], _mm256_setzero_ps(), _CMP_GE_OQ), r, _mm256_sub_ps(VC(2.0f), r));
        y[u] = VSEL(_mm256_cmp_ps(z[u], z[u], _CMP_NEQ_UQ), z[u], r);
    }
}

AI void fvn_unary(const v8 *x, v8 *y, const int op, const int nv) {
    v8 w[UNV];
    switch (op) {
    case U_GELU:
        EACH w[u] = _mm256_mul_ps(x[u], VC(-0.707106781f));
        fvn_erfc(w, w, nv);
        EACH y[u] = _mm256_mul_ps(_mm256_mul_ps(VC(0.5f), x[u]), w[u]);
        break;
    case U_GELU_TANH:
        EACH w[u] = _mm256_mul_ps(
            VC(0.797884561f),
            _mm256_fmadd_ps(_mm256_mul_ps(VC(0.044715f), x[u]), _mm256_mul_ps(x[u], x[u]), x[u]));
        fvn_tanh(w, w, nv);
        EACH y[u] = _mm256_mul_ps(_mm256_mul_ps(VC(0.5f), x[u]), _mm256_add_ps(VC(1.0f), w[u]));
        break;
    case U_SILU:
    case U_SIGMOID:
        EACH w[u] = fv_neg(x[u]);
        fvn_exp(w, w, nv);
        EACH y[u] = _mm256_div_ps(op == U_SILU ? x[u] : VC(1.0f), _mm256_add_ps(VC(1.0f), w[u]));
        break;
    case U_EXP:
        fvn_exp(x, y, nv);
        break;
    case U_TANH:
        fvn_tanh(x, y, nv);
        break;
    case U_RSQRT:
        EACH y[u] = _mm256_div_ps(VC(1.0f), _mm256_sqrt_ps(x[u]));
        break;
    default: /* U_ERF */
        fvn_erfc(x, w, nv);
        EACH y[u] = _mm256_sub_ps(VC(1.0f), w[u]);
    }
}

/* src -> dst (may be the same) through the vector path, UNV vectors at a time,
   then single vectors; the tail is padded, not scalar */
#define UNARY_CASE(OP)                                                                             \
    case OP:                                                                                       \
        for (; i + 8 * UNV <= n; i += 8 * UNV) {                                                   \
            v8 x[UNV];                                                                             \
            for (int u = 0; u < UNV; u++) x[u] = _mm256_loadu_ps(src + i + 8 * u);                 \
            fvn_unary(x, x, OP, UNV);                                                              \
            for (int u = 0; u < UNV; u++) _mm256_storeu_ps(dst + i + 8 * u, x[u]);                 \
        }                                                                                          \
        for (; i + 8 <= n; i += 8) {                                                               \
            v8 x = _mm256_loadu_ps(src + i);                                                       \
            fvn_unary(&x, &x, OP, 1);                                                              \
            _mm256_storeu_ps(dst + i, x);                                                          \
        }                                                                                          \
        break;
static void unary_block(const float *src, float *dst, int n, int op) {
    int i = 0;
    switch (op) {
        UNARY_CASE(U_GELU)
        UNARY_CASE(U_GELU_TANH)
        UNARY_CASE(U_SILU)
        UNARY_CASE(U_SIGMOID)
        UNARY_CASE(U_EXP)
        UNARY_CASE(U_TANH)
        UNARY_CASE(U_RSQRT)
        UNARY_CASE(U_ERF)
    }
    if (i < n) {
        float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        memcpy(t, src + i, (size_t)(n - i) * 4);
        v8 x = _mm256_loadu_ps(t);
        fvn_unary(&x, &x, op, 1);
        _mm256_storeu_ps(t, x);
        memcpy(dst + i, t, (size_t)(n - i) * 4);
    }
}
#undef EACH
#undef AI
#endif

/* the scalar sequences, element by element: the non-AVX2 build's kernel and,
   on AVX2 builds, the reference the vector path is tested against bit for bit */
static void unary_block_scalar(float *v, int n, int op) {
    switch (op) {
    case U_GELU:
        for (int i = 0; i < n; i++) v[i] = (0.5f * v[i]) * f_erfc(v[i] * -0.707106781f);
        break;
    case U_GELU_TANH:
        for (int i = 0; i < n; i++) {
            float x = v[i];
            float u = 0.797884561f * fmaf(0.044715f * x, x * x, x);
            v[i] = (0.5f * x) * (1.0f + f_tanh(u));
        }
        break;
    case U_SILU:
        for (int i = 0; i < n; i++) v[i] = v[i] / (1.0f + f_exp(-v[i]));
        break;
    case U_SIGMOID:
        for (int i = 0; i < n; i++) v[i] = 1.0f / (1.0f + f_exp(-v[i]));
        break;
    case U_EXP:
        for (int i = 0; i < n; i++) v[i] = f_exp(v[i]);
        break;
    case U_TANH:
        for (int i = 0; i < n; i++) v[i] = f_tanh(v[i]);
        break;
    case U_RSQRT:
        for (int i = 0; i < n; i++) v[i] = 1.0f / sqrtf(v[i]);
        break;
    case U_ERF:
        for (int i = 0; i < n; i++) v[i] = 1.0f - f_erfc(v[i]);
        break;
    }
}
#ifndef SB_AVX2
static void unary_block(const float *src, float *dst, int n, int op) {
    memmove(dst, src, (size_t)n * 4);
    unary_block_scalar(dst, n, op);
}
#endif

/* sb_unary_scalar: float32 only, one thread, the scalar sequences (tests) */
void sb_unary_scalar(const float *x, float *y, i64 n, int op) {
    for (i64 a = 0; a < n; a += UBLK) {
        int m = (int)(n - a < UBLK ? n - a : UBLK);
        memcpy(y + a, x + a, (size_t)m * 4);
        unary_block_scalar(y + a, m, op);
    }
}

void sb_unary(const void *x, void *y, i64 n, int op, int dt, int nthreads) {
    i64 blocks = (n + UBLK - 1) / UBLK;
    int th = threads_for(n * 4, nthreads);
#pragma omp parallel for schedule(dynamic, dyn_chunk(blocks, th)) num_threads(th)
    for (i64 bk = 0; bk < blocks; bk++) {
        float v[UBLK];
        i64 a = bk * UBLK;
        int m = (int)(n - a < UBLK ? n - a : UBLK);
        if (dt == BF16) {
            for (int i = 0; i < m; i++) v[i] = bf2f(((const uint16_t *)x)[a + i]);
            unary_block(v, v, m, op);
            for (int i = 0; i < m; i++) ((uint16_t *)y)[a + i] = f2bf(v[i]);
        } else {
            unary_block((const float *)x + a, (float *)y + a, m, op);
        }
    }
}

/* ------------------------------------------------------------- softmax */
/* rows of length R, contiguous. mode 0: softmax, 1: log_softmax,
   2: softmax with fully masked rows (max = -inf) giving zeros (attention).
   max is exact; e = f_exp(x - max) per element (float); the sum of the e is
   sequential in double along the row; outputs are rounded once.
   Rows are processed 8 at a time so the 8 sequential chains overlap. */
#define SROWS 8
void sb_softmax(const void *x, void *y, i64 rows, i64 R, int mode, int dt_in, int dt_out,
                int nthreads) {
    int th = threads_for(rows * R * 8, nthreads);
    i64 blocks = (rows + SROWS - 1) / SROWS;
#pragma omp parallel num_threads(th)
    {
        float *e = (float *)malloc((size_t)(R > 0 ? R : 1) * SROWS * sizeof(float));
#pragma omp for schedule(dynamic, dyn_chunk(blocks, th))
        for (i64 bk = 0; bk < blocks; bk++) {
            i64 r0 = bk * SROWS;
            int nr = (int)(rows - r0 < SROWS ? rows - r0 : SROWS);
            float m[SROWS];
            int state[SROWS]; /* 0 normal, 1 all NaN, 2 all zero */
            for (int r = 0; r < nr; r++) {
                i64 base = (r0 + r) * R;
                float mx = -INFINITY;
                int nan = 0;
                for (i64 k = 0; k < R; k++) {
                    float v = ld(x, base + k, dt_in);
                    nan |= v != v;
                    mx = v > mx ? v : mx;
                }
                m[r] = mx;
                state[r] = (nan || mx == INFINITY || (mx == -INFINITY && mode != 2)) ? 1
                           : (mx == -INFINITY ? 2 : 0);
                float *er = e + (i64)r * R;
                for (i64 k = 0; k < R; k++) er[k] = f_exp(ld(x, base + k, dt_in) - mx);
            }
            double s[SROWS] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (i64 k = 0; k < R; k++)
                for (int r = 0; r < nr; r++) s[r] += (double)e[(i64)r * R + k];
            for (int r = 0; r < nr; r++) {
                i64 base = (r0 + r) * R;
                float *er = e + (i64)r * R;
                if (state[r]) {
                    float f = state[r] == 1 ? NAN : 0.0f;
                    for (i64 k = 0; k < R; k++) st(y, base + k, f, dt_out);
                } else if (mode == 1) {
                    double ls = log(s[r]);
                    for (i64 k = 0; k < R; k++)
                        st(y, base + k, (float)((double)(ld(x, base + k, dt_in) - m[r]) - ls), dt_out);
                } else {
                    double inv = 1.0 / s[r];
                    for (i64 k = 0; k < R; k++) st(y, base + k, (float)((double)er[k] * inv), dt_out);
                }
            }
        }
        free(e);
    }
}

/* ----------------------------------------------------------- attention */
/* Fused scaled-dot-product attention, the same operations as the unfused chain
   (and tested bit for bit against it):
     s_ij = DOT(q_i, k_j) (float32) * scale;
     masking: bool mask -> -inf where false; float mask -> s + m; causal: j > i -> -inf;
     softmax over j: exact max, e = f_exp(s - max), sequential double sum over
       j = 0..S-1, p = (float)(e * (1 / sum)); fully masked rows give zeros;
     out_i = SEQ_j fma(p_ij, v_j, acc) from +0, in key order.
   With a causal mask, row i reads keys 0..i only (the others have p = 0
   exactly and would add nothing), as flash attention does.
   Tiles are (batch, 32 query rows), scored 8 rows at a time; a tile owns its rows entirely, so the thread
   count and the tiling never change an operation.
   meta (int64): nb, L, S, D, Dv, rep, then the batch shape (nb), then per tensor
   q, k, v, mask its batch strides (nb, 0 where broadcast) and row stride, and for
   the mask also its column stride. Key / value head h (the last batch dim) is
   h / rep (grouped-query attention): nothing is copied or expanded. The last dim
   of q, k, v is contiguous. mkind: 0 none, 1 bool (uint8), 2 float32, 3 causal. */
#define AROWS 8  /* query rows whose scores are held at once */
#define ATILE 32 /* query rows per tile (per copy of the keys and values); up to
                    2 * ATILE rows make one tile, so a short sequence copies its keys once */
enum { M_NONE = 0, M_BOOL, M_FLOAT, M_CAUSAL };

/* whether key j is masked out for good: false in a bool mask, -inf in a float one
   (its score becomes -inf whatever the product, for finite products) */
static inline int attn_dead(const void *m, i64 j, i64 mcs, int mkind) {
    if (mkind == M_BOOL) return !((const uint8_t *)m)[j * mcs];
    if (mkind == M_FLOAT) return ((const float *)m)[j * mcs] == -INFINITY;
    return 0;
}

/* whether keys j .. j + 7 are all masked out */
static inline int attn_dead8(const void *m, i64 j, i64 mcs, int mkind) {
    for (int c = 0; c < 8; c++)
        if (!attn_dead(m, j + c, mcs, mkind)) return 0;
    return 1;
}

/* scores of one query row against keys [0, S): DOT lanes, tree, * scale. Groups of 8
   keys that the mask row m removes entirely get -inf without their products: the
   mask would make them -inf anyway (bool: always; float -inf: for finite products).
   Packed sequences (a block-diagonal mask) then cost little more than their parts. */
static inline __attribute__((always_inline)) void attn_scores(const void *q, const char *kb, i64 krs,
                                                              i64 S, i64 D, float scale, const int qdt,
                                                              const int dt, float *s, const void *m,
                                                              i64 mcs, int mkind) {
    size_t e = esz(dt);
    i64 full = D / 8;
    int part = (int)(D - 8 * full);
    v8 qpart = part ? v8_load_n(q, 8 * full, part, qdt) : v8_zero();
    i64 j = 0;
#ifdef SB_AVX2
    for (; j + 8 <= S; j += 8) {
        if (m && attn_dead8(m, j, mcs, mkind)) {
            _mm256_storeu_ps(s + j, _mm256_set1_ps(-INFINITY));
            continue;
        }
        const char *kr = kb + j * krs * e;
        v8 acc[8];
        for (int c = 0; c < 8; c++) acc[c] = v8_zero();
        /* d outer, keys inner: eight independent chains, each still in d order */
        for (i64 d = 0; d < full; d++) {
            v8 qd = v8_load(q, 8 * d, qdt);
            for (int c = 0; c < 8; c++) acc[c] = v8_fma(qd, v8_load(kr + c * krs * e, 8 * d, dt), acc[c]);
        }
        if (part)
            for (int c = 0; c < 8; c++)
                acc[c] = v8_fma(qpart, v8_load_n(kr + c * krs * e, 8 * full, part, dt), acc[c]);
        v8 o[8];
        t8x8(acc, o); /* o[l] = lane l of the 8 keys: the tree on 8 scores at once */
        v8 x = v8_add(v8_add(v8_add(o[0], o[4]), v8_add(o[2], o[6])),
                      v8_add(v8_add(o[1], o[5]), v8_add(o[3], o[7])));
        _mm256_storeu_ps(s + j, _mm256_mul_ps(x, _mm256_set1_ps(scale)));
    }
#endif
    for (; j < S; j++) {
        const char *kr = kb + j * krs * e;
        v8 acc = v8_zero();
        for (i64 d = 0; d < full; d++) acc = v8_fma(v8_load(q, 8 * d, qdt), v8_load(kr, 8 * d, dt), acc);
        if (part) acc = v8_fma(qpart, v8_load_n(kr, 8 * full, part, dt), acc);
        s[j] = v8_tree(acc) * scale;
    }
}

/* o0 / o1 (columns [c0, c0 + 8 NV)) = SEQ over keys of p * v: keys [j0, S0) for both
   rows, then [S0, S1) for the second only (a longer causal row). The caller leaves
   out only keys where both rows have p = 0: fma(0, v, acc) == acc (acc, a sum from +0,
   is never -0; v finite), so the skipped keys would not change a bit. */
static inline __attribute__((always_inline)) void attn_pv(const float *p0, const float *p1, const char *vb,
                                                          i64 vrs, i64 j0, i64 S0, i64 S1, i64 c0, i64 Dv,
                                                          const int NV, const int dt, float *o0, float *o1,
                                                          int two) {
    size_t e = esz(dt);
    int nv = (int)((Dv - c0 + 7) / 8 < NV ? (Dv - c0 + 7) / 8 : NV);
    int tail = (int)((Dv - c0) % 8); /* columns in a partial last vector */
    int ragged = nv < NV || (tail && c0 + 8 * nv > Dv);
    v8 a0[4], a1[4];
    for (int c = 0; c < NV; c++) a0[c] = a1[c] = v8_zero();
#define PV_LOAD(vr, c)                                                                             \
    (ragged && (c) == nv - 1 && tail ? v8_load_n(vr, c0 + 8 * (c), tail, dt) : v8_load(vr, c0 + 8 * (c), dt))
    if (!ragged) {
        for (i64 j = j0; j < S0; j++) {
            const char *vr = vb + j * vrs * e;
            v8 w0 = v8_set1(p0[j]), w1 = v8_set1(p1[j]);
            for (int c = 0; c < NV; c++) {
                v8 x = v8_load(vr, c0 + 8 * c, dt);
                a0[c] = v8_fma(w0, x, a0[c]);
                a1[c] = v8_fma(w1, x, a1[c]);
            }
        }
    } else {
        for (i64 j = j0; j < S0; j++) {
            const char *vr = vb + j * vrs * e;
            v8 w0 = v8_set1(p0[j]), w1 = v8_set1(p1[j]);
            for (int c = 0; c < nv; c++) {
                v8 x = PV_LOAD(vr, c);
                a0[c] = v8_fma(w0, x, a0[c]);
                a1[c] = v8_fma(w1, x, a1[c]);
            }
        }
    }
    for (i64 j = S0 > j0 ? S0 : j0; j < S1; j++) {
        const char *vr = vb + j * vrs * e;
        v8 w1 = v8_set1(p1[j]);
        for (int c = 0; c < nv; c++) a1[c] = v8_fma(w1, PV_LOAD(vr, c), a1[c]);
    }
#undef PV_LOAD
    for (int c = 0; c < nv; c++) {
        i64 col = c0 + 8 * c;
        int n = col + 8 <= Dv ? 8 : (int)(Dv - col);
        float tmp[8];
        v8_store(tmp, a0[c]);
        memcpy(o0 + col, tmp, (size_t)n * 4);
        if (two) {
            v8_store(tmp, a1[c]);
            memcpy(o1 + col, tmp, (size_t)n * 4);
        }
    }
}

/* n rows of width w at row stride rs -> compact float32 rows */
static void pack_rows(const char *x, i64 rs, int dt, i64 n, i64 w, float *dst) {
    for (i64 j = 0; j < n; j++) {
        const char *src = x + j * rs * esz(dt);
        float *d = dst + j * w;
        if (dt == F32) { /* rows are short (a head): inline copies, not a libc call each */
            i64 c = 0;
#ifdef SB_AVX2
            for (; c + 8 <= w; c += 8) _mm256_storeu_ps(d + c, _mm256_loadu_ps((const float *)src + c));
#endif
            for (; c < w; c++) d[c] = ((const float *)src)[c];
            continue;
        }
        i64 c = 0;
        for (; c + 8 <= w; c += 8) v8_store(d + c, v8_load(src, c, BF16));
        for (; c < w; c++) d[c] = bf2f(((const uint16_t *)src)[c]);
    }
}

static i64 batch_offset(i64 b, int nb, const i64 *shape, const i64 *st, i64 rep) {
    i64 off = 0;
    for (int d = nb - 1; d >= 0; d--) {
        i64 idx = b % shape[d];
        b /= shape[d];
        off += (d == nb - 1 ? idx / rep : idx) * st[d];
    }
    return off;
}

/* the mask batch of batch b: its index over the dims the mask does not broadcast over
   (nonzero mask stride) */
static i64 mask_batch(i64 b, int nb, const i64 *shape, const i64 *mst) {
    i64 mb = 0, mult = 1;
    for (int d = nb - 1; d >= 0; d--) {
        i64 idx = b % shape[d];
        b /= shape[d];
        if (mst[d]) {
            mb += idx * mult;
            mult *= shape[d];
        }
    }
    return mb;
}

int sb_attention(const void *q, const void *k, const void *v, const void *mask, const i64 *meta,
                 int mkind, float *out, float scale, int dt, int nthreads) {
    int nb = (int)meta[0];
    i64 L = meta[1], S = meta[2], D = meta[3], Dv = meta[4], rep = meta[5];
    const i64 *shape = meta + 6, *qst = shape + nb, *kst = qst + nb + 1, *vst = kst + nb + 1,
              *mst = vst + nb + 1;
    i64 qrs = qst[nb], mrs = mst[nb], mcs = mst[nb + 1];
    i64 B = 1;
    for (int d = 0; d < nb; d++) B *= shape[d];
    size_t e = esz(dt);
    i64 tr = L <= 2 * ATILE ? (L > 0 ? L : 1) : ATILE; /* rows per tile */
    i64 rb = (L + tr - 1) / tr, tiles = B * rb;
    int th = threads_for(B * L * S * (D + Dv + 16), nthreads), oom = 0;
    /* Each mask row's live window [first, last + 1) of keys not masked out for good,
       found once per mask row rather than once per head that shares it. Keys outside
       it are dead, so a row's scores, mask, max and exp run over the 8-key groups
       that meet its window only (the same groups, with the same operations, as a
       scan of all keys: the groups left out would be -inf without products). A
       block-diagonal mask (packed sequences) then costs each row its own block. */
    i64 MB = 1, *win = NULL;
    if (mkind == M_BOOL || mkind == M_FLOAT) {
        for (int d = 0; d < nb; d++) MB *= mst[d] ? shape[d] : 1;
        win = (i64 *)malloc((size_t)(MB * L > 0 ? MB * L : 1) * 2 * sizeof(i64));
        if (!win) return -1;
        i64 rows = MB * L;
#pragma omp parallel for schedule(dynamic, dyn_chunk(rows, th)) num_threads(threads_for(rows * S, th))
        for (i64 r = 0; r < rows; r++) {
            i64 mb = r / L, i = r % L, off = 0;
            /* the offset of mask batch mb: its index in the non-broadcast dims */
            for (int d = nb - 1; d >= 0; d--)
                if (mst[d]) {
                    off += (mb % shape[d]) * mst[d];
                    mb /= shape[d];
                }
            const void *mr = mkind == M_BOOL ? (const void *)((const uint8_t *)mask + off + i * mrs)
                                             : (const void *)((const float *)mask + off + i * mrs);
            i64 lo = 0, hi = S;
            while (lo < S && attn_dead(mr, lo, mcs, mkind)) lo++;
            while (hi > lo && attn_dead(mr, hi - 1, mcs, mkind)) hi--;
            win[2 * r] = lo, win[2 * r + 1] = hi;
        }
        /* rows then cost about their windows, so a head is one tile (its keys and
           values are copied once, not once per 32 rows) when heads alone keep every
           thread busy */
        if (B >= 4 * th) tr = L > 0 ? L : 1, rb = 1, tiles = B;
    }
#pragma omp parallel num_threads(th)
    {
        i64 S8 = (S + 7) / 8 * 8;
        float *sc = (float *)malloc((size_t)(S8 > 0 ? S8 : 8) * AROWS * sizeof(float));
        float *kbuf = (float *)malloc((size_t)(S > 0 ? S : 1) * (D + Dv) * sizeof(float)),
              *vbuf = kbuf + (S > 0 ? S : 1) * D;
        if (!kbuf) {
            free(sc);
            sc = NULL;
        }
        if (!sc) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (i64 t = 0; t < tiles; t++) {
            if (!sc) continue;
            i64 b = t / rb, t0 = (t % rb) * tr, t1 = t0 + tr < L ? t0 + tr : L;
            const char *qb = (const char *)q + batch_offset(b, nb, shape, qst, 1) * e;
            const char *kb = (const char *)k + batch_offset(b, nb, shape, kst, rep) * e;
            const char *vb = (const char *)v + batch_offset(b, nb, shape, vst, rep) * e;
            /* Keys and values at a row stride other than their width (e.g. heads
               interleaved, as (batch, len, heads, dim) storage) are copied, as float32,
               to a compact block first: the strided rows would fall into few L1 sets.
               Widening is exact, so the products do not change. */
            i64 krs = kst[nb], vrs = vst[nb];
            int kdt = dt, vdt = dt;
            i64 Sneed = mkind == M_CAUSAL && t1 < S ? t1 : S;
            if (krs != D && t1 - t0 > 1) {
                pack_rows(kb, krs, dt, Sneed, D, kbuf);
                kb = (const char *)kbuf, krs = D, kdt = F32;
            }
            if (vrs != Dv && t1 - t0 > 1) {
                pack_rows(vb, vrs, dt, Sneed, Dv, vbuf);
                vb = (const char *)vbuf, vrs = Dv, vdt = F32;
            }
            i64 moff = win ? batch_offset(b, nb, shape, mst, 1) : 0;
            i64 mb = win ? mask_batch(b, nb, shape, mst) : 0;
            for (i64 i0 = t0; i0 < t1; i0 += AROWS) {
            int nr = (int)(t1 - i0 < AROWS ? t1 - i0 : AROWS);
            /* keys row r reads: all, or 0..i for a causal mask */
            i64 Sr[AROWS], Lo[AROWS], Hi[AROWS];
            int state[AROWS];
            double sum[AROWS];
            for (int r = 0; r < nr; r++) {
                i64 i = i0 + r;
                float *s = sc + (i64)r * S8;
                i64 S = Sr[r] = mkind == M_CAUSAL && i + 1 < meta[2] ? i + 1 : meta[2];
                const char *qr = qb + i * qrs * e;
                const void *mr = mkind == M_BOOL ? (const void *)((const uint8_t *)mask + moff + i * mrs)
                                 : mkind == M_FLOAT ? (const void *)((const float *)mask + moff + i * mrs)
                                                    : NULL;
                /* [g0, g1): the 8-key groups meeting the row's live window (all keys
                   when the row has none: it is handled as before, all -inf) */
                i64 g0 = 0, g1 = S;
                if (win && win[2 * (mb * L + i)] < win[2 * (mb * L + i) + 1]) {
                    g0 = win[2 * (mb * L + i)] / 8 * 8;
                    g1 = (win[2 * (mb * L + i) + 1] + 7) / 8 * 8;
                    g1 = g1 < S ? g1 : S;
                }
                const char *kg = kb + g0 * krs * esz(kdt);
                const void *mg = !mr ? NULL
                                 : mkind == M_BOOL ? (const void *)((const uint8_t *)mr + g0 * mcs)
                                                   : (const void *)((const float *)mr + g0 * mcs);
                float *sg = s + g0;
                i64 n = g1 - g0;
                if (kdt == F32 && dt == F32) attn_scores(qr, kg, krs, n, D, scale, F32, F32, sg, mg, mcs, mkind);
                else if (kdt == F32) attn_scores(qr, kg, krs, n, D, scale, BF16, F32, sg, mg, mcs, mkind);
                else attn_scores(qr, kg, krs, n, D, scale, BF16, BF16, sg, mg, mcs, mkind);
                if (mkind == M_BOOL) {
                    const uint8_t *m = (const uint8_t *)mr;
                    for (i64 j = g0; j < g1; j++) s[j] = m[j * mcs] ? s[j] : -INFINITY;
                } else if (mkind == M_FLOAT) {
                    const float *m = (const float *)mr;
                    if (mcs == 1)
                        for (i64 j = g0; j < g1; j++) s[j] = s[j] + m[j];
                    else
                        for (i64 j = g0; j < g1; j++) s[j] = s[j] + m[j * mcs];
                }
                /* the max is exact in any order (its zero sign does not change s - max) */
                float m = -INFINITY;
                int nan = 0;
                i64 j = g0;
#ifdef SB_AVX2
                if (n >= 8) {
                    v8 vm = _mm256_set1_ps(-INFINITY), bad = _mm256_setzero_ps();
                    for (; j + 8 <= g1; j += 8) {
                        v8 x = _mm256_loadu_ps(s + j);
                        bad = _mm256_or_ps(bad, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
                        vm = _mm256_max_ps(vm, x);
                    }
                    float t[8];
                    _mm256_storeu_ps(t, vm);
                    for (int l = 0; l < 8; l++) m = t[l] > m ? t[l] : m;
                    nan = !_mm256_testz_ps(bad, bad);
                }
#endif
                for (; j < g1; j++) {
                    nan |= s[j] != s[j];
                    m = s[j] > m ? s[j] : m;
                }
                state[r] = (nan || m == INFINITY) ? 1 : (m == -INFINITY ? 2 : 0);
                /* [lo, hi): the keys not at -inf. Outside it every e is exp(-inf) = 0
                   exactly, so the exp, the sums, the division and p @ v run over it
                   only: the zeros they skip would add nothing (the sums start at +0).
                   The zeros outside it are written below, where the sums read them. */
                i64 lo = g0, hi = g1;
                if (!state[r]) {
                    while (lo < g1 && s[lo] == -INFINITY) lo++;
                    while (hi > lo && s[hi - 1] == -INFINITY) hi--;
                } else { /* NaN / inf rows end all NaN or all 0, over every key */
                    for (j = 0; j < g0; j++) s[j] = -INFINITY;
                    for (j = g1; j < S; j++) s[j] = -INFINITY;
                    lo = 0, hi = S;
                }
                Lo[r] = lo, Hi[r] = hi;
                j = lo;
#ifdef SB_AVX2
                for (; j + 8 <= hi; j += 8)
                    _mm256_storeu_ps(s + j, fv_exp(_mm256_sub_ps(_mm256_loadu_ps(s + j), _mm256_set1_ps(m))));
#endif
                for (; j < hi; j++) s[j] = f_exp(s[j] - m);
                sum[r] = 0.0;
            }
            /* the sums: one sequential chain per row, the rows side by side, over the
               union of their [lo, hi) */
            i64 J0 = S, J1 = 0;
            for (int r = 0; r < nr; r++) {
                J0 = Lo[r] < J0 ? Lo[r] : J0;
                J1 = Hi[r] > J1 ? Hi[r] : J1;
            }
            for (int r = 0; r < nr; r++) { /* p = 0 where the sums and p @ v read past [lo, hi) */
                float *s = sc + (i64)r * S8;
                for (i64 j = J0; j < Lo[r]; j++) s[j] = 0.0f;
                for (i64 j = Hi[r]; j < J1; j++) s[j] = 0.0f;
            }
            i64 common = J1;
            for (int r = 0; r < nr; r++) common = Sr[r] < common ? Sr[r] : common;
            for (i64 j = J0; j < common; j++)
                for (int r = 0; r < nr; r++) sum[r] += (double)sc[(i64)r * S8 + j];
            for (int r = 0; r < nr; r++) /* causal rows: their remaining keys */
                for (i64 j = common > J0 ? common : J0; j < Hi[r]; j++) sum[r] += (double)sc[(i64)r * S8 + j];
            for (int r = 0; r < nr; r++) {
                float *s = sc + (i64)r * S8;
                i64 S = Sr[r];
                if (state[r]) {
                    float f = state[r] == 1 ? NAN : 0.0f;
                    for (i64 j = 0; j < S; j++) s[j] = f;
                } else {
                    double inv = 1.0 / sum[r];
                    for (i64 j = Lo[r]; j < Hi[r]; j++) s[j] = (float)((double)s[j] * inv);
                }
            }
            /* out rows: SEQ over keys, 32 columns (4 vectors) of two rows at a time */
            for (int r = 0; r < nr; r += 2) {
                int two = r + 1 < nr;
                /* p is 0 outside each row's [Lo, Hi): keys [j0, end) cover both rows' */
                i64 j0 = two && Lo[r + 1] < Lo[r] ? Lo[r + 1] : Lo[r];
                i64 end = two && Hi[r + 1] > Hi[r] ? Hi[r + 1] : Hi[r];
                i64 S0 = Sr[r] < end ? Sr[r] : end, S1 = two ? (Sr[r + 1] < end ? Sr[r + 1] : end) : S0;
                if (S1 < S0) S1 = S0;
                const float *p0 = sc + (i64)r * S8, *p1 = sc + (i64)(r + two) * S8;
                float *o0 = out + ((b * L) + i0 + r) * Dv, *o1 = o0 + Dv;
                for (i64 c0 = 0; c0 < Dv; c0 += 32) {
                    if (vdt == BF16) attn_pv(p0, p1, vb, vrs, j0, S0, S1, c0, Dv, 4, BF16, o0, o1, two);
                    else attn_pv(p0, p1, vb, vrs, j0, S0, S1, c0, Dv, 4, F32, o0, o1, two);
                }
            }
            } /* row groups */
        }
        free(sc);
        free(kbuf);
    }
    free(win);
    return oom ? -1 : 0;
}

/* --------------------------------------------------------------- norms */
/* rows of length R. kind 0: layer norm (mean, var), 1: rms norm.
   Statistics: SUM order in double. y = (x - mean) * rstd * w + b in double,
   rounded once. mean_out / rstd_out (fp32) may be NULL. */
void sb_norm(const void *x, const void *w, const void *b, void *y, float *mean_out,
             float *rstd_out, i64 rows, i64 R, double eps, int kind, int dt, int wdt,
             int nthreads) {
    int th = threads_for(rows * R * 4, nthreads);
    i64 blocks = (rows + 15) / 16;
#pragma omp parallel for schedule(dynamic, dyn_chunk(blocks, th)) num_threads(th)
    for (i64 bk = 0; bk < blocks; bk++) {
        i64 r0 = bk * 16, n = rows - r0 < 16 ? rows - r0 : 16;
        double mean[16] = {0}, ss[16] = {0};
#ifdef SB_AVX2
        int fast = n == 16 && dt == F32;
#else
        int fast = 0;
#endif
        if (kind == 0) {
#ifdef SB_AVX2
            if (fast) rowsum16_f32((const float *)x + r0 * R, R, NULL, 0, mean);
#endif
            if (!fast) {
                rowsum8(x, r0, n < 8 ? n : 8, R, NULL, 0, dt, mean);
                if (n > 8) rowsum8(x, r0 + 8, n - 8, R, NULL, 0, dt, mean + 8);
            }
            for (i64 r = 0; r < n; r++) mean[r] = R > 0 ? mean[r] / (double)R : 0.0;
        }
#ifdef SB_AVX2
        if (fast) rowsum16_f32((const float *)x + r0 * R, R, mean, 1, ss);
#endif
        if (!fast) {
            rowsum8(x, r0, n < 8 ? n : 8, R, mean, 1, dt, ss);
            if (n > 8) rowsum8(x, r0 + 8, n - 8, R, mean + 8, 1, dt, ss + 8);
        }
        for (i64 r = 0; r < n; r++) {
            i64 base = (r0 + r) * R;
            double var = R > 0 ? ss[r] / (double)R : 0.0;
            double rstd = 1.0 / sqrt(var + eps);
            i64 k = 0;
#ifdef SB_AVX2
            /* ((x - mean) * rstd) * w + b in double, four at a time, rounded once */
            if (dt == F32 && wdt == F32) {
                const float *xr = (const float *)x + base, *wf = (const float *)w, *bf = (const float *)b;
                float *yr = (float *)y + base;
                __m256d mv = _mm256_set1_pd(mean[r]), sv = _mm256_set1_pd(rstd);
                for (; k + 4 <= R; k += 4) {
                    __m256d v = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(xr + k)), mv), sv);
                    if (wf) v = _mm256_mul_pd(v, _mm256_cvtps_pd(_mm_loadu_ps(wf + k)));
                    if (bf) v = _mm256_add_pd(v, _mm256_cvtps_pd(_mm_loadu_ps(bf + k)));
                    _mm_storeu_ps(yr + k, _mm256_cvtpd_ps(v));
                }
            }
#endif
            for (; k < R; k++) {
                double v = ((double)ld(x, base + k, dt) - mean[r]) * rstd;
                if (w) v = v * (double)ld(w, k, wdt);
                if (b) v = v + (double)ld(b, k, wdt);
                st(y, base + k, (float)v, dt);
            }
            if (mean_out) mean_out[r0 + r] = (float)mean[r];
            if (rstd_out) rstd_out[r0 + r] = (float)rstd;
        }
    }
}

/* ------------------------------------------------------- exact sums */
/* Superaccumulator: a double's value m * 2^(E-1075) is added, as integers, into
   chunks of 32 bits anchored at 2^-1074 (chunk c covers bits 32c..32c+31). Every
   float16/bfloat16/float32 value widens to double exactly. Integer addition is
   associative, so the state is the exact sum in any order, thread split or process
   split. NCH = 67 chunks span 2^-1074 .. 2^1070 and the carry room above. */
#define NCH 67
enum { X_F32 = 0, X_BF16 = 1, X_F64 = 2, X_F16 = 3 };

static inline double xld(const void *p, i64 i, int dt) {
    switch (dt) {
    case X_F64: return ((const double *)p)[i];
    case X_BF16: return (double)bf2f(((const uint16_t *)p)[i]);
    case X_F16: {
        uint16_t h = ((const uint16_t *)p)[i];
        uint32_t sgn = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
        double v;
        if (e == 0) v = ldexp((double)m, -24);
        else if (e == 31) v = m ? NAN : INFINITY;
        else v = ldexp((double)(m | 1024), (int)e - 25);
        return sgn ? -v : v;
    }
    default: return (double)((const float *)p)[i];
    }
}

static inline void xadd(int64_t *acc, int *flags, double v) {
    uint64_t b;
    memcpy(&b, &v, 8);
    int neg = (int)(b >> 63);
    int E = (int)((b >> 52) & 2047);
    uint64_t m = b & ((1ULL << 52) - 1);
    if (E == 2047) {
        *flags |= m ? 1 : (neg ? 4 : 2); /* 1 NaN, 2 +inf, 4 -inf */
        return;
    }
    if (E) m |= 1ULL << 52;
    else E = 1;
    int p = E - 1, c = p >> 5, sh = p & 31;
    unsigned __int128 w = (unsigned __int128)m << sh;
    int64_t lo = (int64_t)(uint32_t)w, mid = (int64_t)(uint32_t)(w >> 32), hi = (int64_t)(w >> 64);
    int64_t s = -(int64_t)neg; /* 0 or -1: (v ^ s) - s negates without a branch */
    acc[c] += (lo ^ s) - s;
    acc[c + 1] += (mid ^ s) - s;
    acc[c + 2] += (hi ^ s) - s;
}

/* carry-propagate: every chunk but the last into [0, 2^32) */
static void xnorm(int64_t *acc) {
    for (int i = 0; i < NCH - 1; i++) {
        int64_t carry = acc[i] >> 32;
        acc[i] -= carry * ((int64_t)1 << 32);
        acc[i + 1] += carry;
    }
}

/* Fast exact path for a contiguous run of finite float64/float32 values.
   Bins j = 0..K-1 own the bits at and above lsb_j = max(lsb_0 - 40 j, -1074), with
   lsb_0 = (exponent of max|x|) - 40, and K chosen so lsb_{K-1} is at or below the
   last bit of the smallest nonzero |x|. q_j = (r + S_j) - S_j with S_j = 1.5 *
   2^(lsb_j + 52) is r rounded to a multiple of 2^lsb_j (exact, |r| < 2^(lsb_j+51)),
   and r - q_j is exact, so after K bins the residual is exactly 0. Each lane adds
   at most 512 q's of at most 2^(lsb_j+40): its double sum stays an exact multiple
   of 2^lsb_j below 2^(lsb_j+53). Lane sums then fold into the integer state. */
#define FBLK 2048
#define FMAXK 6

static __attribute__((unused)) int fast_plan(double mx, double mn, double *S) {
    if (!(mx <= 1.7e308) || mx == 0.0) return 0;
    int ex, e2;
    frexp(mx, &ex); /* mx < 2^ex */
    frexp(mn, &e2);
    int lsb0 = ex - 40;
    if (lsb0 + 52 > 1023) return 0; /* splitter would overflow: use the general path */
    int need = e2 - 53 < -1074 ? -1074 : e2 - 53;
    int K = 1;
    while (K <= FMAXK && (lsb0 - 40 * (K - 1) > need && lsb0 - 40 * (K - 1) > -1074)) K++;
    if (K > FMAXK) return 0;
    for (int j = 0; j < K; j++) {
        int l = lsb0 - 40 * j;
        if (l < -1074) l = -1074;
        S[j] = ldexp(1.5, l + 52);
    }
    return K;
}

#ifdef SB_AVX2
static inline __m256d fload(const void *x, i64 i, int dt) {
    return dt == X_F64 ? _mm256_loadu_pd((const double *)x + i)
                       : _mm256_cvtps_pd(_mm_loadu_ps((const float *)x + i));
}
#define FAST_K(K)                                                                               \
    static void fast_bins_##K(const void *x, i64 n, int dt, const double *S, int64_t *acc, int *f) { \
        __m256d sp[K];                                                                          \
        for (int j = 0; j < K; j++) sp[j] = _mm256_set1_pd(S[j]);                               \
        for (i64 b = 0; b < n; b += FBLK) {                                                     \
            i64 e = b + FBLK < n ? b + FBLK : n, i = b;                                         \
            /* 4 independent chains per iteration: the add-sub-sub chain of one  \
               vector is latency-bound, four of them fill the pipes */            \
            __m256d a[4][K];                                                                    \
            for (int u = 0; u < 4; u++)                                                         \
                for (int j = 0; j < K; j++) a[u][j] = _mm256_setzero_pd();                      \
            for (; i + 16 <= e; i += 16) {                                                      \
                __m256d r[4] = {fload(x, i, dt), fload(x, i + 4, dt), fload(x, i + 8, dt),      \
                                fload(x, i + 12, dt)};                                          \
                for (int j = 0; j < K; j++)                                                     \
                    for (int u = 0; u < 4; u++) {                                               \
                        __m256d q = _mm256_sub_pd(_mm256_add_pd(r[u], sp[j]), sp[j]);           \
                        a[u][j] = _mm256_add_pd(a[u][j], q);                                    \
                        r[u] = _mm256_sub_pd(r[u], q);                                          \
                    }                                                                           \
            }                                                                                   \
            for (; i + 4 <= e; i += 4) {                                                        \
                __m256d r = fload(x, i, dt);                                                    \
                for (int j = 0; j < K; j++) {                                                   \
                    __m256d q = _mm256_sub_pd(_mm256_add_pd(r, sp[j]), sp[j]);                  \
                    a[0][j] = _mm256_add_pd(a[0][j], q);                                        \
                    r = _mm256_sub_pd(r, q);                                                    \
                }                                                                               \
            }                                                                                   \
            double lanes[4];                                                                    \
            for (int u = 0; u < 4; u++)                                                         \
                for (int j = 0; j < K; j++) {                                                   \
                    _mm256_storeu_pd(lanes, a[u][j]);                                           \
                    for (int l = 0; l < 4; l++) xadd(acc, f, lanes[l]);                         \
                }                                                                               \
            for (; i < e; i++) xadd(acc, f, xld(x, i, dt));                                     \
        }                                                                                       \
    }
FAST_K(1)
FAST_K(2)
FAST_K(3)
FAST_K(4)
FAST_K(5)
FAST_K(6)
typedef void (*fast_fn)(const void *, i64, int, const double *, int64_t *, int *);
static const fast_fn FAST[FMAXK + 1] = {NULL, fast_bins_1, fast_bins_2, fast_bins_3,
                                        fast_bins_4, fast_bins_5, fast_bins_6};

/* max |x| and min nonzero |x| of a contiguous run; returns 0 if any is not finite */
static int fast_range_f32(const float *x, i64 n, double *mx, double *mn) {
    /* float32 runs: 8 lanes in single precision (max and min are exact) */
    __m256 vmax = _mm256_setzero_ps(), vmin = _mm256_set1_ps(INFINITY), bad = _mm256_setzero_ps();
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 big = _mm256_set1_ps(3.40282347e38f), inf = _mm256_set1_ps(INFINITY);
    i64 i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_and_ps(_mm256_loadu_ps(x + i), absmask);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(v, big, _CMP_NLE_UQ));
        vmax = _mm256_max_ps(vmax, v);
        vmin = _mm256_min_ps(vmin, _mm256_blendv_ps(v, inf, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_EQ_OQ)));
    }
    if (_mm256_movemask_ps(bad)) return 0;
    float a[8], b[8];
    _mm256_storeu_ps(a, vmax);
    _mm256_storeu_ps(b, vmin);
    double M = 0, m = INFINITY;
    for (int l = 0; l < 8; l++) {
        M = a[l] > M ? a[l] : M;
        m = b[l] < m ? b[l] : m;
    }
    for (; i < n; i++) {
        double v = fabs((double)x[i]);
        if (!(v <= 3.40282347e38)) return 0;
        M = v > M ? v : M;
        if (v != 0 && v < m) m = v;
    }
    *mx = M;
    *mn = m;
    return 1;
}

static int fast_range(const void *x, i64 n, int dt, double *mx, double *mn) {
    if (dt == X_F32) return fast_range_f32((const float *)x, n, mx, mn);
    __m256d vmax = _mm256_setzero_pd(), vmin = _mm256_set1_pd(INFINITY), bad = _mm256_setzero_pd();
    const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
    const __m256d big = _mm256_set1_pd(1.7976931348623157e308), inf = _mm256_set1_pd(INFINITY);
    i64 i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d v = _mm256_and_pd(fload(x, i, dt), absmask);
        bad = _mm256_or_pd(bad, _mm256_cmp_pd(v, big, _CMP_NLE_UQ)); /* NaN or inf */
        vmax = _mm256_max_pd(vmax, v);
        __m256d nz = _mm256_blendv_pd(v, inf, _mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_EQ_OQ));
        vmin = _mm256_min_pd(vmin, nz);
    }
    double a[4], b[4];
    _mm256_storeu_pd(a, vmax);
    _mm256_storeu_pd(b, vmin);
    if (_mm256_movemask_pd(bad)) return 0;
    double M = 0, m = INFINITY;
    for (int l = 0; l < 4; l++) {
        M = a[l] > M ? a[l] : M;
        m = b[l] < m ? b[l] : m;
    }
    for (; i < n; i++) {
        double v = fabs(xld(x, i, dt));
        if (!(v <= 1.7976931348623157e308)) return 0;
        M = v > M ? v : M;
        if (v != 0 && v < m) m = v;
    }
    *mx = M;
    *mn = m;
    return 1;
}

#endif

/* exact state of a contiguous run: the fast path when it applies, else xadd per value */
static void exact_run(const void *x, i64 n, int dt, int64_t *acc, int *f) {
#ifdef SB_AVX2
    if (dt == X_F64 || dt == X_F32) {
        double mx, mn, S[FMAXK];
        if (fast_range(x, n, dt, &mx, &mn)) {
            if (mx == 0.0) return; /* all zeros */
            int K = fast_plan(mx, mn, S);
            if (K) {
                FAST[K](x, n, dt, S, acc, f);
                xnorm(acc);
                return;
            }
        }
    }
#endif
    for (i64 k = 0; k < n; k++) {
        xadd(acc, f, xld(x, k, dt));
        if ((k & ((1 << 29) - 1)) == (1 << 29) - 1) xnorm(acc);
    }
    xnorm(acc);
}

/* x viewed as (outer, R, inner), contiguous; out: (outer*inner, NCH) normalized
   states; flags: (outer*inner). */
void sb_exact_acc(const void *x, i64 outer, i64 R, i64 inner, int dt, int64_t *out, int32_t *flags,
                  int nthreads) {
    i64 nout = outer * inner;
    int th = threads_for(nout * R * 2, nthreads);
    size_t es = dt == X_F64 ? 8 : (dt == X_F32 ? 4 : 2);
    if (nout >= th) {
#pragma omp parallel for schedule(static) num_threads(th)
        for (i64 t = 0; t < nout; t++) {
            i64 o = t / inner, j = t % inner;
            int64_t *acc = out + t * NCH;
            int f = 0;
            memset(acc, 0, NCH * sizeof(int64_t));
            if (inner == 1) {
                exact_run((const char *)x + o * R * es, R, dt, acc, &f);
            } else {
                for (i64 k = 0; k < R; k++) {
                    xadd(acc, &f, xld(x, (o * R + k) * inner + j, dt));
                    if ((k & ((1 << 29) - 1)) == (1 << 29) - 1) xnorm(acc);
                }
                xnorm(acc);
            }
            flags[t] = f;
        }
        return;
    }
    /* few outputs: split the run across threads, each with a private state; integer
       addition of the states is exact, so the split does not matter. */
    for (i64 t = 0; t < nout; t++) {
        i64 o = t / inner, j = t % inner;
        int64_t total[NCH];
        int ftotal = 0;
        memset(total, 0, sizeof(total));
        i64 per = (R + th - 1) / th;
#pragma omp parallel num_threads(th)
        {
            int tid = omp_get_thread_num();
            i64 a = tid * per, b = a + per < R ? a + per : R;
            int64_t acc[NCH];
            int f = 0;
            memset(acc, 0, sizeof(acc));
            if (a < b) {
                if (inner == 1) {
                    exact_run((const char *)x + (o * R + a) * es, b - a, dt, acc, &f);
                } else {
                    for (i64 k = a; k < b; k++) {
                        xadd(acc, &f, xld(x, (o * R + k) * inner + j, dt));
                        if (((k - a) & ((1 << 29) - 1)) == (1 << 29) - 1) xnorm(acc);
                    }
                    xnorm(acc);
                }
            }
#pragma omp critical
            {
                for (int c = 0; c < NCH; c++) total[c] += acc[c];
                xnorm(total);
                ftotal |= f;
            }
        }
        memcpy(out + t * NCH, total, sizeof(total));
        flags[t] = ftotal;
    }
}

/* exact products for dot: the pairs (p, e) with a*b == p + e exactly (fma), added
   to one state; float32/bf16/f16 products are exact in double already (e == 0). */
void sb_exact_dot(const void *a, const void *b, i64 n, int dt, int64_t *out, int32_t *flags) {
    int64_t acc[NCH];
    int f = 0;
    memset(acc, 0, sizeof(acc));
    for (i64 k = 0; k < n; k++) {
        double x = xld(a, k, dt), y = xld(b, k, dt);
        double p = x * y;
        if (!isfinite(p) || !isfinite(x) || !isfinite(y)) {
            xadd(acc, &f, p);
            continue;
        }
        double e = fma(x, y, -p);
        xadd(acc, &f, p);
        xadd(acc, &f, e);
        if ((k & ((1 << 28) - 1)) == (1 << 28) - 1) xnorm(acc);
    }
    xnorm(acc);
    memcpy(out, acc, sizeof(acc));
    *flags = f;
}

int sb_abi_version(void) { return 1; }
