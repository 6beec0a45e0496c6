/* ----------------------------------------------------------- reductions */
/* SUM order for n <= 8 contiguous rows of length R starting at row o0:
   acc[r] = sequential double sum over k of f(x[o0+r][k] - c[r]). The 8 chains
   run side by side (8x8 in-register transposes on AVX2, plain loops otherwise);
   every path performs the same double operations per row. */
#ifdef SB_AVX2
/* The SUM order for 16 rows (float32 or bfloat16, rows R apart from x[o0 * R]):
   rowsum8's operations, two groups of 8 rows side by side so that four independent
   add chains hide the add latency. */
static inline __attribute__((always_inline)) void rowsum16(const void *x, i64 o0, i64 R,
                                                           const double *cen, int square,
                                                           const int dt, double *out16) {
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
            for (int w = 0; w < 8; w++) r[w] = v8_load(x, (o0 + 8 * h + w) * R + k, dt);
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
            double v = (double)ld(x, (o0 + r) * R + k, dt) - c[r];
            out16[r] += square ? v * v : v;
        }
}

static void rowsum16_dt(const void *x, i64 o0, i64 R, const double *cen, int square, int dt,
                        double *out16) {
    if (dt == BF16) rowsum16(x, o0, R, cen, square, BF16, out16);
    else rowsum16(x, o0, R, cen, square, F32, out16);
}
#endif

static void rowsum8(const void *x, i64 o0, i64 n, i64 R, const double *cen, int square, int dt,
                double *out8) {
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, c[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (cen)
            for (i64 r = 0; r < n; r++) c[r] = cen[r];
        i64 k = 0;
#ifdef SB_AVX2
        if (n == 8) {
            __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
            __m256d clo = _mm256_loadu_pd(c), chi = _mm256_loadu_pd(c + 4);
            for (; k + 8 <= R; k += 8) {
                __m256 r[8], col[8]; /* col[q] holds element k+q of rows 0..7 */
                for (int w = 0; w < 8; w++) r[w] = v8_load(x, (o0 + w) * R + k, dt);
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

#ifdef __AVX512F__
/* The SUM order for 32 rows on AVX-512: rowsum8's operations, one zmm of eight double
   sums per group of 8 rows, four groups (four independent add chains) */
static inline __attribute__((always_inline)) void rowsum32(const void *x, i64 o0, i64 R,
                                                           const double *cen, int square,
                                                           const int dt, double *out32) {
    double c[32] = {0};
    if (cen)
        for (int r = 0; r < 32; r++) c[r] = cen[r];
    __m512d acc[4], cv[4];
    for (int g = 0; g < 4; g++) {
        acc[g] = _mm512_setzero_pd();
        cv[g] = _mm512_loadu_pd(c + 8 * g);
    }
    i64 k = 0;
    for (; k + 8 <= R; k += 8)
#pragma GCC unroll 4 /* the sums stay in registers: four chains the core overlaps */
        for (int g = 0; g < 4; g++) {
            __m256 r[8], col[8]; /* col[q]: element k + q of the group's 8 rows */
            for (int w = 0; w < 8; w++) r[w] = v8_load(x, (o0 + 8 * g + w) * R + k, dt);
            t8x8(r, col);
            for (int q = 0; q < 8; q++) {
                __m512d a = _mm512_cvtps_pd(col[q]);
                if (cen) a = _mm512_sub_pd(a, cv[g]); /* v - (+0) would be v */
                if (square) a = _mm512_mul_pd(a, a);
                acc[g] = _mm512_add_pd(acc[g], a);
            }
        }
    for (int g = 0; g < 4; g++) _mm512_storeu_pd(out32 + 8 * g, acc[g]);
    for (; k < R; k++)
        for (int r = 0; r < 32; r++) {
            double v = (double)ld(x, (o0 + r) * R + k, dt) - c[r];
            out32[r] += square ? v * v : v;
        }
}
#endif

/* The SUM order for rows o0 .. o0 + n - 1 (out[r], after subtracting cen[r] if given,
   squared if asked), by the widest kernel the path has: rows are independent, so
   how many run side by side never changes a bit */
static void rowsums(const void *x, i64 o0, i64 n, i64 R, const double *cen, int square, int dt,
                    double *out) {
    i64 r = 0;
#ifdef __AVX512F__
    for (; r + 32 <= n; r += 32) {
        if (dt == BF16) rowsum32(x, o0 + r, R, cen ? cen + r : NULL, square, BF16, out + r);
        else rowsum32(x, o0 + r, R, cen ? cen + r : NULL, square, F32, out + r);
    }
#endif
#ifdef SB_AVX2
    for (; r + 16 <= n; r += 16) rowsum16_dt(x, o0 + r, R, cen ? cen + r : NULL, square, dt, out + r);
#endif
    for (; r < n; r += 8)
        rowsum8(x, o0 + r, n - r < 8 ? n - r : 8, R, cen ? cen + r : NULL, square, dt, out + r);
}

/* The SUM order for n <= 64 columns j0.. of one (R, inner) slab: out[j] = sequential
   double sum over k of f(x[k][j0 + j] - c[j]). The columns are independent chains;
   with n and dt constants (64 columns, one dtype) the compiler runs them as vectors. */
static inline __attribute__((always_inline)) void colsums(const void *x, i64 R, i64 inner, i64 j0,
                                                          const i64 n, const double *cen, int square,
                                                          const int dt, double *out) {
    double acc[64], c[64];
    for (i64 j = 0; j < n; j++) {
        acc[j] = 0.0;
        c[j] = cen ? cen[j] : 0.0;
    }
    for (i64 k = 0; k < R; k++) {
        i64 base = k * inner + j0;
        if (square)
            for (i64 j = 0; j < n; j++) {
                double v = (double)ld(x, base + j, dt) - c[j];
                acc[j] += v * v;
            }
        else if (cen)
            for (i64 j = 0; j < n; j++) acc[j] += (double)ld(x, base + j, dt) - c[j];
        else /* v - (+0) is v, -0 and NaN included */
            for (i64 j = 0; j < n; j++) acc[j] += (double)ld(x, base + j, dt);
    }
    for (i64 j = 0; j < n; j++) out[j] = acc[j];
}

/* x viewed as (outer, R, inner), contiguous. out[o][j] = SUM_k f(x[o][k][j]),
   f = identity (p=1) or square (p=2), after subtracting center[o][j] if given. */
SB_API void SB_FN(sb_sum)(const void *x, i64 outer, i64 R, i64 inner, const double *center, int square,
            double *out, int dt, int nthreads) {
    int th = threads_for(outer * R * inner, nthreads);
    if (inner == 1) {
        i64 blocks = (outer + 31) / 32;
#pragma omp parallel for schedule(dynamic, dyn_chunk(blocks, th)) num_threads(th)
        for (i64 bk = 0; bk < blocks; bk++) {
            i64 o0 = bk * 32, n = outer - o0 < 32 ? outer - o0 : 32;
            rowsums(x, o0, n, R, center ? center + o0 : NULL, square, dt, out + o0);
            for (i64 r = 0; r < n; r++) out[o0 + r] = canon_d(out[o0 + r]);
        }
        return;
    }
    i64 jb = (inner + 63) / 64, tasks = outer * jb;
#pragma omp parallel for schedule(dynamic, dyn_chunk(tasks, th)) num_threads(th)
    for (i64 t = 0; t < tasks; t++) {
        i64 o = t / jb, j0 = (t % jb) * 64, n = inner - j0 < 64 ? inner - j0 : 64;
        const double *c = center ? center + o * inner + j0 : NULL;
        double *dst = out + o * inner + j0;
        const void *xo = (const char *)x + o * R * inner * (i64)esz(dt);
        if (n == 64 && dt == BF16) colsums(xo, R, inner, j0, 64, c, square, BF16, dst);
        else if (n == 64) colsums(xo, R, inner, j0, 64, c, square, F32, dst);
        else colsums(xo, R, inner, j0, n, c, square, dt, dst);
        for (i64 j = 0; j < n; j++) dst[j] = canon_d(dst[j]);
    }
}

#define CHUNK 4096
/* the ALL order's lane tree over a chunk's eight double lanes */
static inline double lane_tree8(const double l[8]) {
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/* The ALL order of one chunk: eight double lanes, lane q summing elements q, q + 8, ...
   in order, then the lane tree */
static double chunk_sum(const void *x, i64 a, i64 b, int dt) {
    double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    i64 i = a;
    for (; i + 8 <= b; i += 8)
        for (int q = 0; q < 8; q++) l[q] += (double)ld(x, i + q, dt);
    for (int q = 0; i + q < b; q++) l[q] += (double)ld(x, i + q, dt);
    return lane_tree8(l);
}

#ifdef SB_AVX2
/* ALL_NC full chunks from c0 side by side: chunk_sum's operations, one chunk's eight
   lanes in one zmm (two ymm on AVX2), so ALL_NC chunks are that many independent add
   chains (one chunk alone is latency-bound) */
#ifdef __AVX512F__
#define ALL_NC 8
#else
#define ALL_NC 4
#endif
static inline __attribute__((always_inline)) void chunk_sums(const void *x, i64 c0, const int dt,
                                                             double *part) {
#ifdef __AVX512F__
    __m512d acc[ALL_NC];
    for (int c = 0; c < ALL_NC; c++) acc[c] = _mm512_setzero_pd();
    for (i64 i = 0; i < CHUNK; i += 8)
        for (int c = 0; c < ALL_NC; c++)
            acc[c] = _mm512_add_pd(acc[c], _mm512_cvtps_pd(v8_load(x, (c0 + c) * CHUNK + i, dt)));
    for (int c = 0; c < ALL_NC; c++) {
        double l[8];
        _mm512_storeu_pd(l, acc[c]);
        part[c] = lane_tree8(l);
    }
#else
    __m256d lo[ALL_NC], hi[ALL_NC];
    for (int c = 0; c < ALL_NC; c++) lo[c] = hi[c] = _mm256_setzero_pd();
    for (i64 i = 0; i < CHUNK; i += 8)
        for (int c = 0; c < ALL_NC; c++) {
            __m256 v = v8_load(x, (c0 + c) * CHUNK + i, dt);
            lo[c] = _mm256_add_pd(lo[c], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            hi[c] = _mm256_add_pd(hi[c], _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
        }
    for (int c = 0; c < ALL_NC; c++) {
        double l[8];
        _mm256_storeu_pd(l, lo[c]);
        _mm256_storeu_pd(l + 4, hi[c]);
        part[c] = lane_tree8(l);
    }
#endif
}
#else
#define ALL_NC 1
#endif

SB_API int SB_FN(sb_sum_all)(const void *x, i64 n, int dt, int nthreads, double *out) {
    i64 chunks = (n + CHUNK - 1) / CHUNK;
    *out = 0.0;
    if (chunks == 0) return 0;
    double *part = (double *)malloc((size_t)chunks * sizeof(double));
    if (!part) return -1;
    int th = threads_for(n, nthreads);
    /* groups of ALL_NC full chunks, then the rest one by one; no groups when there
       would be too few of them to give every thread two */
    i64 groups = ALL_NC > 1 ? (n / CHUNK) / ALL_NC : 0;
    if (groups < 2 * th) groups = 0;
    i64 tasks = groups + (chunks - groups * ALL_NC);
#pragma omp parallel for schedule(dynamic, dyn_chunk(tasks, th)) num_threads(th)
    for (i64 t = 0; t < tasks; t++) {
#ifdef SB_AVX2
        if (t < groups) {
            if (dt == BF16) chunk_sums(x, t * ALL_NC, BF16, part + t * ALL_NC);
            else chunk_sums(x, t * ALL_NC, F32, part + t * ALL_NC);
            continue;
        }
#endif
        i64 c = groups * ALL_NC + (t - groups), a = c * CHUNK, b = a + CHUNK < n ? a + CHUNK : n;
        part[c] = chunk_sum(x, a, b, dt);
    }
    double s = 0.0;
    for (i64 c = 0; c < chunks; c++) s += part[c];
    free(part);
    *out = canon_d(s);
    return 0;
}
