/* --------------------------------------------------------------- norms */
/* rows of length R. kind 0: layer norm (mean, var), 1: rms norm.
   Statistics: SUM order in double. y = (x - mean) * rstd * w + b in double,
   rounded once. mean_out / rstd_out (fp32) may be NULL. */
#include "sb_simd.h"

/* One row's normalization: ((x - mean) * rstd) * w + b in double (w, b optional),
   rounded once to float, then to y's dtype as st() rounds. VW lanes at a time on the
   vector layer, the rest one by one: the same double operations per element. */
static inline __attribute__((always_inline)) void norm_row(const void *x, const void *w,
                                                           const void *b, void *y, i64 base,
                                                           i64 R, double mean, double rstd,
                                                           const int dt, const int wdt) {
    i64 k = 0;
    const vd2 mv = vd2_set1(mean), sv = vd2_set1(rstd);
    for (; k + VW <= R; k += VW) {
        vd2 v = vd2_mul(vd2_sub(vd2_from(v_load_dt(x, base + k, dt)), mv), sv);
        if (w) v = vd2_mul(v, vd2_from(v_load_dt(w, k, wdt)));
        if (b) v = vd2_add(v, vd2_from(v_load_dt(b, k, wdt)));
        v_store_dt(y, base + k, vd2_to(v), dt);
    }
    for (; k < R; k++) {
        double v = ((double)ld(x, base + k, dt) - mean) * rstd;
        if (w) v = v * (double)ld(w, k, wdt);
        if (b) v = v + (double)ld(b, k, wdt);
        st(y, base + k, (float)v, dt);
    }
}

/* norm_row with the dtypes as compile-time constants */
static void norm_row_dt(const void *x, const void *w, const void *b, void *y, i64 base, i64 R,
                        double mean, double rstd, int dt, int wdt) {
    if (dt == F32 && wdt == F32) norm_row(x, w, b, y, base, R, mean, rstd, F32, F32);
    else if (dt == BF16 && wdt == BF16) norm_row(x, w, b, y, base, R, mean, rstd, BF16, BF16);
    else if (dt == BF16) norm_row(x, w, b, y, base, R, mean, rstd, BF16, F32);
    else norm_row(x, w, b, y, base, R, mean, rstd, F32, BF16);
}

SB_API void SB_FN(sb_norm)(const void *x, const void *w, const void *b, void *y, float *mean_out,
             float *rstd_out, i64 rows, i64 R, double eps, int kind, int dt, int wdt,
             int nthreads) {
    int th = threads_for(rows * R * 4, nthreads);
    i64 blocks = (rows + 31) / 32;
#pragma omp parallel for schedule(dynamic, dyn_chunk(blocks, th)) num_threads(th)
    for (i64 bk = 0; bk < blocks; bk++) {
        i64 r0 = bk * 32, n = rows - r0 < 32 ? rows - r0 : 32;
        double mean[32] = {0}, ss[32] = {0};
        if (kind == 0) {
            rowsums(x, r0, n, R, NULL, 0, dt, mean);
            for (i64 r = 0; r < n; r++) mean[r] = R > 0 ? mean[r] / (double)R : 0.0;
        }
        rowsums(x, r0, n, R, mean, 1, dt, ss);
        for (i64 r = 0; r < n; r++) {
            i64 base = (r0 + r) * R;
            double var = R > 0 ? ss[r] / (double)R : 0.0;
            double rstd = 1.0 / sqrt(var + eps);
            norm_row_dt(x, w, b, y, base, R, mean[r], rstd, dt, wdt);
            if (mean_out) mean_out[r0 + r] = (float)mean[r];
            if (rstd_out) rstd_out[r0 + r] = (float)rstd;
        }
    }
}

/* ------------------------------------------------------ per-channel affine */
/* y[o][c][i] = x[o][c][i] * scale[o * ss + c] + shift[o * ss + c]: a float32 multiply
   then a float32 add (two roundings, never fused: -ffp-contract=off), then rounded once
   to y's dtype. Batch norm (ss = 0) and group norm (ss = C) normalize with it, NCHW
   (inner = H * W) and channels-last (outer = N * H * W, inner = 1) alike. Each element
   is computed on its own, so blocks and threads never change a bit. */
/* y[i] = x[i] * s + t for n elements of one row: s, t per element (sv, tv: the
   channels-last rows) or one pair for the row; two float32 roundings, then dt_out's */
static inline __attribute__((always_inline)) void affine_run(const void *x, void *y, i64 base, i64 n,
                                                             const float *sv, const float *tv,
                                                             float s, float t, const int dt_in,
                                                             const int dt_out) {
    i64 i = 0;
    for (; i + VW <= n; i += VW) {
        vf sc = sv ? v_load(sv + i) : v_set1(s);
        vf sh = tv ? v_load(tv + i) : v_set1(t);
        v_store_dt(y, base + i, v_add(v_mul(v_load_dt(x, base + i, dt_in), sc), sh), dt_out);
    }
    for (; i < n; i++) {
        float v = ld(x, base + i, dt_in) * (sv ? sv[i] : s);
        st(y, base + i, v + (tv ? tv[i] : t), dt_out);
    }
}

/* affine_run with the dtypes as compile-time constants */
static void affine_run_dt(const void *x, void *y, i64 base, i64 n, const float *sv,
                          const float *tv, float s, float t, int dt_in, int dt_out) {
    if (dt_in == F32 && dt_out == F32) affine_run(x, y, base, n, sv, tv, s, t, F32, F32);
    else if (dt_in == BF16 && dt_out == BF16) affine_run(x, y, base, n, sv, tv, s, t, BF16, BF16);
    else if (dt_in == F32) affine_run(x, y, base, n, sv, tv, s, t, F32, BF16);
    else affine_run(x, y, base, n, sv, tv, s, t, BF16, F32);
}

SB_API void SB_FN(sb_affine)(const void *x, void *y, const float *scale, const float *shift,
                             i64 outer, i64 C, i64 inner, i64 ss, int dt_in, int dt_out,
                             int nthreads) {
    i64 rows = outer * C;
    int th = threads_for(rows * inner, nthreads);
    if (inner == 1) { /* channels-last: one row of C channels per position */
#pragma omp parallel for schedule(static) num_threads(th)
        for (i64 o = 0; o < outer; o++)
            affine_run_dt(x, y, o * C, C, scale + o * ss, shift + o * ss, 0.0f, 0.0f, dt_in, dt_out);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(th)
    for (i64 r = 0; r < rows; r++) {
        i64 o = r / C, c = r % C;
        affine_run_dt(x, y, r * inner, inner, NULL, NULL, scale[o * ss + c], shift[o * ss + c],
                      dt_in, dt_out);
    }
}
