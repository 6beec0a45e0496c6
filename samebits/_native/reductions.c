/* ----------------------------------------------------------- reductions */
/* The SUM order and the ALL order, written once over the vector layer's double vectors
   (sb_simd.h: VD lanes, 8 on AVX-512, 4 on AVX2, 2 on NEON, 1 scalar). */
#include "sb_simd.h"

/* The SUM order for G * VD contiguous rows of length R from row o0: out[r] = sequential
   double sum over k of f(x[o0 + r][k] - cen[r]), f = identity or square. A row's chain
   sits in one lane of a double vector; G vectors are G independent add chains (one
   alone is latency-bound). Eight k at a time come from each row by a transposing load
   (vd_cols8), the rest one by one: the same double operations per row on every path,
   whatever G and VD. */
static inline __attribute__((always_inline)) void rowsum_g(const void *x, i64 o0, i64 R,
                                                           const double *cen, int square,
                                                           const int dt, const int G,
                                                           double *out) {
    vd acc[4], cv[4];
    for (int g = 0; g < G; g++) {
        acc[g] = vd_zero();
        cv[g] = cen ? vd_load(cen + g * VD) : vd_zero();
    }
    i64 k = 0;
    for (; k + 8 <= R; k += 8)
#pragma GCC unroll 4 /* the sums stay in registers: G chains the core overlaps */
        for (int g = 0; g < G; g++) {
            vd col[8]; /* col[q]: element k + q of the chain's VD rows */
            vd_cols8(x, (o0 + g * VD) * R + k, R, dt, col);
            for (int q = 0; q < 8; q++) {
                vd a = col[q];
                if (cen) a = vd_sub(a, cv[g]); /* v - (+0) would be v */
                if (square) a = vd_mul(a, a);
                acc[g] = vd_add(acc[g], a);
            }
        }
    for (int g = 0; g < G; g++) vd_store(out + g * VD, acc[g]);
    for (; k < R; k++)
        for (int r = 0; r < G * VD; r++) {
            double v = (double)ld(x, (o0 + r) * R + k, dt);
            if (cen) v -= cen[r];
            out[r] += square ? v * v : v;
        }
}

/* rowsum_g with the dtype a compile-time constant (and G: inlined at constant G, never
   a clone that takes G at run time, whose loads spill) */
static inline __attribute__((always_inline)) void rowsum_dt(const void *x, i64 o0, i64 R,
                                                            const double *cen, int square,
                                                            int dt, const int G, double *out) {
    if (dt == BF16) rowsum_g(x, o0, R, cen, square, BF16, G, out);
    else rowsum_g(x, o0, R, cen, square, F32, G, out);
}

/* The SUM order for rows o0 .. o0 + n - 1 (out[r], after subtracting cen[r] if given,
   squared if asked): 4, 2 then 1 chains of VD rows, the last n % VD rows one by one.
   Rows are independent, so how many run side by side never changes a bit. */
static void rowsums(const void *x, i64 o0, i64 n, i64 R, const double *cen, int square, int dt,
                    double *out) {
    i64 r = 0;
    for (int G = 4; G >= 1; G /= 2)
        for (; r + G * VD <= n; r += G * VD) {
            const double *c = cen ? cen + r : NULL;
            if (G == 4) rowsum_dt(x, o0 + r, R, c, square, dt, 4, out + r);
            else if (G == 2) rowsum_dt(x, o0 + r, R, c, square, dt, 2, out + r);
            else rowsum_dt(x, o0 + r, R, c, square, dt, 1, out + r);
        }
    for (; r < n; r++) { /* fewer than VD rows */
        double acc = 0.0, c = cen ? cen[r] : 0.0;
        for (i64 k = 0; k < R; k++) {
            double v = (double)ld(x, (o0 + r) * R + k, dt) - c;
            acc += square ? v * v : v;
        }
        out[r] = acc;
    }
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

/* Chunks side by side: full chunks in groups of ALL_NC, that many independent add chains
   (one chunk alone is latency-bound) */
#if VD >= 8
#define ALL_NC 8
#elif VD >= 2
#define ALL_NC 4
#else
#define ALL_NC 1
#endif

/* The ALL order of NC chunks of n elements from element a, CHUNK apart (n < CHUNK only
   for NC = 1: x's last chunk): eight double lanes per chunk (8 / VD vectors), lane q
   summing elements q, q + 8, ... in order, then the lane tree; part[c] is chunk c's */
static inline __attribute__((always_inline)) void chunk_sums(const void *x, i64 a, i64 n,
                                                             const int NC, const int dt,
                                                             double *part) {
    vd acc[ALL_NC][8 / VD];
    for (int c = 0; c < NC; c++)
        for (int j = 0; j < 8 / VD; j++) acc[c][j] = vd_zero();
    i64 i = 0;
    for (; i + 8 <= n; i += 8)
        for (int c = 0; c < NC; c++) {
            vd v[8 / VD];
            vd_widen8(x, a + c * CHUNK + i, dt, v);
            for (int j = 0; j < 8 / VD; j++) acc[c][j] = vd_add(acc[c][j], v[j]);
        }
    for (int c = 0; c < NC; c++) {
        double l[8];
        for (int j = 0; j < 8 / VD; j++) vd_store(l + j * VD, acc[c][j]);
        for (int q = 0; i + q < n; q++) l[q] += (double)ld(x, a + c * CHUNK + i + q, dt);
        part[c] = lane_tree8(l);
    }
}

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
        if (t < groups) {
            i64 a = t * ALL_NC * CHUNK;
            if (dt == BF16) chunk_sums(x, a, CHUNK, ALL_NC, BF16, part + t * ALL_NC);
            else chunk_sums(x, a, CHUNK, ALL_NC, F32, part + t * ALL_NC);
            continue;
        }
        i64 c = groups * ALL_NC + (t - groups), a = c * CHUNK, b = a + CHUNK < n ? a + CHUNK : n;
        if (dt == BF16) chunk_sums(x, a, b - a, 1, BF16, part + c);
        else chunk_sums(x, a, b - a, 1, F32, part + c);
    }
    double s = 0.0;
    for (i64 c = 0; c < chunks; c++) s += part[c];
    free(part);
    *out = canon_d(s);
    return 0;
}
