/* samebits native kernels.
 *
 * Every kernel here fixes its reduction order so that it depends only on the
 * reduction length and the item's own data: never on M (rows), on which other
 * rows exist, on the thread count, or on how the work is split across threads.
 * Threads only ever own whole output elements; no reduction is split.
 *
 * The orders (the contract, also listed in docs/design.md):
 *   DOT  (gemm_nt, K-contiguous B): for output (i, j), eight lanes; lane l
 *        accumulates a[k]*b[k] for k = l, l+8, l+16, ... with a fused
 *        multiply-add, the last partial block padded with zeros; then the
 *        lanes are added as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
 *   SEQ  (gemm_nn, N-contiguous B): for output (i, j), one fused
 *        multiply-add per k in increasing k, starting from +0.
 *        Exact zeros (masked keys, padding) therefore add nothing.
 *   SUM  (row and column sums): sequential over the reduced index in double,
 *        starting from +0, rounded once.
 *   ALL  (whole-tensor sum): fixed 4096-element chunks, each summed in eight
 *        double lanes plus the DOT tree, chunk results added left to right.
 *   Elementwise functions are evaluated in double by one straight-line
 *   sequence of IEEE operations per element and rounded once, so an element's
 *   bits do not depend on where it sits in a vector, a tail or a thread chunk.
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

/* ------------------------------------------------------------- DOT gemm */
/* C[b][i][j] = DOT_k A[b][i][k] * B[b][j][k]; A rows stride lda, B rows ldb
   (both K-contiguous), C fp32 row stride ldc. */
#define NR_DOT 4

#define DOT_MICRO(MR)                                                                        \
    static void dot_micro_##MR(const void *const *a, const void *const *b, float *out[MR],  \
                               i64 K, int dt) {                                              \
        v8 acc[MR][NR_DOT];                                                                  \
        for (int r = 0; r < MR; r++)                                                         \
            for (int c = 0; c < NR_DOT; c++) acc[r][c] = v8_zero();                          \
        i64 k = 0;                                                                           \
        for (; k + 8 <= K; k += 8) {                                                         \
            v8 bv[NR_DOT];                                                                   \
            for (int c = 0; c < NR_DOT; c++) bv[c] = v8_load(b[c], k, dt);                   \
            for (int r = 0; r < MR; r++) {                                                   \
                v8 av = v8_load(a[r], k, dt);                                                \
                for (int c = 0; c < NR_DOT; c++) acc[r][c] = v8_fma(av, bv[c], acc[r][c]);   \
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
DOT_MICRO(1)
DOT_MICRO(3)

void sb_gemm_nt(const void *A, i64 lda, i64 sa, const void *B, i64 ldb, i64 sb, float *C, i64 ldc,
                i64 sc, i64 batch, i64 M, i64 N, i64 K, int dt, int nthreads) {
    /* Tiles: MB rows x NB cols so that both operand blocks stay in L2. */
    i64 span = (i64)(262144 / ((K > 0 ? K : 1) * (i64)esz(dt)));
    i64 NB = span < 8 ? 8 : (span > 256 ? 256 : span);
    NB -= NB % NR_DOT;
    i64 MB = NB - NB % 3;
    if (MB < 3) MB = 3;
    i64 mt = (M + MB - 1) / MB, nt = (N + NB - 1) / NB, tiles = batch * mt * nt;
    int th = threads_for(batch * M * N * K, nthreads);
    size_t e = esz(dt);
#pragma omp parallel for schedule(static) num_threads(th)
    for (i64 t = 0; t < tiles; t++) {
        i64 bi = t / (mt * nt), rest = t % (mt * nt), ti = rest / nt, tj = rest % nt;
        const char *Ab = (const char *)A + bi * sa * e;
        const char *Bb = (const char *)B + bi * sb * e;
        float *Cb = C + bi * sc;
        i64 i0 = ti * MB, i1 = i0 + MB < M ? i0 + MB : M;
        i64 j0 = tj * NB, j1 = j0 + NB < N ? j0 + NB : N;
        for (i64 j = j0; j < j1; j += NR_DOT) {
            const void *bp[NR_DOT];
            int nc = (int)(j1 - j < NR_DOT ? j1 - j : NR_DOT);
            /* missing columns reuse column j; their results are discarded */
            for (int c = 0; c < NR_DOT; c++) bp[c] = Bb + (j + (c < nc ? c : 0)) * ldb * e;
            i64 i = i0;
            for (; i + 3 <= i1; i += 3) {
                const void *ap[3] = {Ab + i * lda * e, Ab + (i + 1) * lda * e, Ab + (i + 2) * lda * e};
                float o[3][NR_DOT];
                float *op[3] = {o[0], o[1], o[2]};
                dot_micro_3(ap, bp, op, K, dt);
                for (int r = 0; r < 3; r++)
                    for (int c = 0; c < nc; c++) Cb[(i + r) * ldc + j + c] = o[r][c];
            }
            for (; i < i1; i++) {
                const void *ap[1] = {Ab + i * lda * e};
                float o[1][NR_DOT];
                float *op[1] = {o[0]};
                dot_micro_1(ap, bp, op, K, dt);
                for (int c = 0; c < nc; c++) Cb[i * ldc + j + c] = o[0][c];
            }
        }
    }
}

/* ------------------------------------------------------------- SEQ gemm */
/* C[b][i][j] = SEQ_k A[b][i][k] * B[b][k][j]; B rows (index k) stride ldb,
   N-contiguous. A element (i, k) at A[i*lda + k*ka]. */
#define MR_NN 6
#define NV_NN 2

void sb_gemm_nn(const void *A, i64 lda, i64 ka, i64 sa, const void *B, i64 ldb, i64 sb, float *C,
                i64 ldc, i64 sc, i64 batch, i64 M, i64 N, i64 K, int dt, int nthreads) {
    i64 NB = 8 * NV_NN, MB = 4 * MR_NN;
    i64 mt = (M + MB - 1) / MB, nt = (N + NB - 1) / NB, tiles = batch * mt * nt;
    int th = threads_for(batch * M * N * K, nthreads);
    size_t e = esz(dt);
#pragma omp parallel for schedule(static) num_threads(th)
    for (i64 t = 0; t < tiles; t++) {
        i64 bi = t / (mt * nt), rest = t % (mt * nt), ti = rest / nt, tj = rest % nt;
        const char *Ab = (const char *)A + bi * sa * e;
        const char *Bb = (const char *)B + bi * sb * e;
        float *Cb = C + bi * sc;
        i64 i0 = ti * MB, i1 = i0 + MB < M ? i0 + MB : M;
        i64 j = tj * NB;
        int ncol = (int)(N - j < NB ? N - j : NB);
        int nv[NV_NN];
        for (int v = 0; v < NV_NN; v++) {
            int left = ncol - 8 * v;
            nv[v] = left < 0 ? 0 : (left > 8 ? 8 : left);
        }
        for (i64 i = i0; i < i1; i += MR_NN) {
            int nr = (int)(i1 - i < MR_NN ? i1 - i : MR_NN);
            const char *ar[MR_NN];
            for (int r = 0; r < MR_NN; r++) ar[r] = Ab + (i + (r < nr ? r : 0)) * lda * e;
            v8 acc[MR_NN][NV_NN];
            for (int r = 0; r < MR_NN; r++)
                for (int v = 0; v < NV_NN; v++) acc[r][v] = v8_zero();
            for (i64 k = 0; k < K; k++) {
                const char *brow = Bb + k * ldb * e;
                v8 bv[NV_NN];
                for (int v = 0; v < NV_NN; v++)
                    bv[v] = nv[v] == 8 ? v8_load(brow, j + 8 * v, dt)
                                       : v8_load_n(brow, j + 8 * v, nv[v], dt);
                for (int r = 0; r < MR_NN; r++) {
                    v8 av = v8_set1(ld(ar[r], k * ka, dt));
                    for (int v = 0; v < NV_NN; v++) acc[r][v] = v8_fma(av, bv[v], acc[r][v]);
                }
            }
            for (int r = 0; r < nr; r++)
                for (int v = 0; v < NV_NN; v++) {
                    if (nv[v] == 8) v8_store(Cb + (i + r) * ldc + j + 8 * v, acc[r][v]);
                    else if (nv[v] > 0) v8_store_n(Cb + (i + r) * ldc + j + 8 * v, acc[r][v], nv[v]);
                }
        }
    }
}

/* ----------------------------------------------------------- reductions */
/* x viewed as (outer, R, inner), contiguous. out[o][j] = SUM_k f(x[o][k][j]),
   f = identity (p=1) or square (p=2), after subtracting center[o][j] if given. */
void sb_sum(const void *x, i64 outer, i64 R, i64 inner, const double *center, int square,
            double *out, int dt, int nthreads) {
    int th = threads_for(outer * R * inner, nthreads);
    if (inner == 1) {
        /* rows: interleave 8 rows so the 8 sequential chains overlap */
        i64 blocks = (outer + 7) / 8;
#pragma omp parallel for schedule(static) num_threads(th)
        for (i64 bk = 0; bk < blocks; bk++) {
            i64 o0 = bk * 8, n = outer - o0 < 8 ? outer - o0 : 8;
            double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, c[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            if (center)
                for (i64 r = 0; r < n; r++) c[r] = center[o0 + r];
            for (i64 k = 0; k < R; k++)
                for (i64 r = 0; r < n; r++) {
                    double v = (double)ld(x, (o0 + r) * R + k, dt) - c[r];
                    acc[r] += square ? v * v : v;
                }
            for (i64 r = 0; r < n; r++) out[o0 + r] = acc[r];
        }
        return;
    }
    i64 jb = (inner + 63) / 64, tasks = outer * jb;
#pragma omp parallel for schedule(static) num_threads(th)
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
#pragma omp parallel for schedule(static) num_threads(th)
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
/* exp in double: 2^n * P(r), |r| <= ln2/2, degree-12 Taylor (error < 1e-16). */
static inline double sb_exp(double x) {
    if (x > 709.0) return INFINITY;
    if (x < -745.0) return 0.0;
    if (x != x) return x;
    const double shift = 6755399441055744.0; /* 1.5 * 2^52: round to nearest */
    double n = (x * 1.4426950408889634 + shift) - shift;
    double r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* scale by 2^n in two steps so n down to -1075 stays representable */
    i64 ni = (i64)n, n1 = ni / 2, n2 = ni - n1;
    uint64_t b1 = (uint64_t)(n1 + 1023) << 52, b2 = (uint64_t)(n2 + 1023) << 52;
    double s1, s2;
    memcpy(&s1, &b1, 8);
    memcpy(&s2, &b2, 8);
    return p * s1 * s2;
}

/* expm1 for small |x| by Taylor, otherwise exp - 1 */
static inline double sb_expm1(double x) {
    if (x > -0.3 && x < 0.3) {
        double p = 1.0 / 6227020800.0;
        p = p * x + 1.0 / 479001600.0;
        p = p * x + 1.0 / 39916800.0;
        p = p * x + 1.0 / 3628800.0;
        p = p * x + 1.0 / 362880.0;
        p = p * x + 1.0 / 40320.0;
        p = p * x + 1.0 / 5040.0;
        p = p * x + 1.0 / 720.0;
        p = p * x + 1.0 / 120.0;
        p = p * x + 1.0 / 24.0;
        p = p * x + 1.0 / 6.0;
        p = p * x + 0.5;
        return x + x * x * p;
    }
    return sb_exp(x) - 1.0;
}

static inline double sb_tanh(double x) {
    double a = x < 0 ? -x : x;
    if (a > 20.0) return x < 0 ? -1.0 : 1.0;
    double e = sb_expm1(2.0 * a);
    double t = e / (e + 2.0);
    return x < 0 ? -t : t;
}

/* erfc, Chebyshev fit with fractional error < 1.2e-7 everywhere
   (Numerical Recipes, erfcc), evaluated in double. */
static inline double sb_erfc(double z) {
    double a = z < 0 ? -z : z;
    double t = 1.0 / (1.0 + 0.5 * a);
    double p = -0.82215223 + t * 0.17087277;
    p = 1.48851587 + t * p;
    p = -1.13520398 + t * p;
    p = 0.27886807 + t * p;
    p = -0.18628806 + t * p;
    p = 0.09678418 + t * p;
    p = 0.37409196 + t * p;
    p = 1.00002368 + t * p;
    double r = t * sb_exp(-a * a - 1.26551223 + t * p);
    return z >= 0 ? r : 2.0 - r;
}

enum { U_GELU = 0, U_GELU_TANH, U_SILU, U_SIGMOID, U_EXP, U_TANH, U_RSQRT, U_ERF };

static inline double unary(double x, int op) {
    switch (op) {
    case U_GELU: return 0.5 * x * sb_erfc(-x * 0.7071067811865476);
    case U_GELU_TANH: {
        double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
        return 0.5 * x * (1.0 + sb_tanh(u));
    }
    case U_SILU: return x / (1.0 + sb_exp(-x));
    case U_SIGMOID: return 1.0 / (1.0 + sb_exp(-x));
    case U_EXP: return sb_exp(x);
    case U_TANH: return sb_tanh(x);
    case U_RSQRT: return 1.0 / sqrt(x);
    case U_ERF: return 1.0 - sb_erfc(x);
    }
    return x;
}

void sb_unary(const void *x, void *y, i64 n, int op, int dt, int nthreads) {
    i64 blocks = (n + 4095) / 4096;
    int th = threads_for(n * 8, nthreads);
#pragma omp parallel for schedule(static) num_threads(th)
    for (i64 bk = 0; bk < blocks; bk++) {
        i64 a = bk * 4096, b = a + 4096 < n ? a + 4096 : n;
        for (i64 i = a; i < b; i++) {
            double v = (double)ld(x, i, dt);
            st(y, i, (float)unary(v, op), dt);
        }
    }
}

/* ------------------------------------------------------------- softmax */
/* rows of length R, contiguous. mode 0: softmax, 1: log_softmax,
   2: softmax with fully masked rows (max = -inf) giving zeros (attention).
   max is exact; the sum of exp(x - max) is sequential in double. */
void sb_softmax(const void *x, void *y, i64 rows, i64 R, int mode, int dt_in, int dt_out,
                int nthreads) {
    int th = threads_for(rows * R * 8, nthreads);
#pragma omp parallel num_threads(th)
    {
        double *e = (double *)malloc((size_t)(R > 0 ? R : 1) * sizeof(double));
#pragma omp for schedule(static)
        for (i64 r = 0; r < rows; r++) {
            i64 base = r * R;
            double m = -INFINITY;
            int nan = 0;
            for (i64 k = 0; k < R; k++) {
                double v = (double)ld(x, base + k, dt_in);
                if (v != v) nan = 1;
                if (v > m) m = v;
            }
            if (nan || (m == -INFINITY && mode != 2) || m == INFINITY) {
                for (i64 k = 0; k < R; k++) st(y, base + k, NAN, dt_out);
                continue;
            }
            if (m == -INFINITY) {
                for (i64 k = 0; k < R; k++) st(y, base + k, 0.0f, dt_out);
                continue;
            }
            double s = 0.0;
            for (i64 k = 0; k < R; k++) {
                e[k] = sb_exp((double)ld(x, base + k, dt_in) - m);
                s += e[k];
            }
            if (mode == 1) {
                double ls = log(s);
                for (i64 k = 0; k < R; k++)
                    st(y, base + k, (float)(((double)ld(x, base + k, dt_in) - m) - ls), dt_out);
            } else {
                for (i64 k = 0; k < R; k++) st(y, base + k, (float)(e[k] / s), dt_out);
            }
        }
        free(e);
    }
}

/* --------------------------------------------------------------- norms */
/* rows of length R. kind 0: layer norm (mean, var), 1: rms norm.
   Statistics: SUM order in double. y = (x - mean) * rstd * w + b in double,
   rounded once. mean_out / rstd_out (fp32) may be NULL. */
void sb_norm(const void *x, const void *w, const void *b, void *y, float *mean_out,
             float *rstd_out, i64 rows, i64 R, double eps, int kind, int dt, int wdt,
             int nthreads) {
    int th = threads_for(rows * R * 4, nthreads);
#pragma omp parallel for schedule(static) num_threads(th)
    for (i64 r = 0; r < rows; r++) {
        i64 base = r * R;
        double mean = 0.0, ss = 0.0;
        if (kind == 0) {
            double s = 0.0;
            for (i64 k = 0; k < R; k++) s += (double)ld(x, base + k, dt);
            mean = R > 0 ? s / (double)R : 0.0;
        }
        for (i64 k = 0; k < R; k++) {
            double d = (double)ld(x, base + k, dt) - mean;
            ss += d * d;
        }
        double var = R > 0 ? ss / (double)R : 0.0;
        double rstd = 1.0 / sqrt(var + eps);
        for (i64 k = 0; k < R; k++) {
            double v = ((double)ld(x, base + k, dt) - mean) * rstd;
            if (w) v = v * (double)ld(w, k, wdt);
            if (b) v = v + (double)ld(b, k, wdt);
            st(y, base + k, (float)v, dt);
        }
        if (mean_out) mean_out[r] = (float)mean;
        if (rstd_out) rstd_out[r] = (float)rstd;
    }
}

int sb_abi_version(void) { return 1; }
