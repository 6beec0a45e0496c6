/* --------------------------------------------------------------- norms */
/* rows of length R. kind 0: layer norm (mean, var), 1: rms norm.
   Statistics: SUM order in double. y = (x - mean) * rstd * w + b in double,
   rounded once. mean_out / rstd_out (fp32) may be NULL. */
#ifdef __AVX512F__
/* sb_norm's normalization of one row, 16 at a time, with w and b already doubles (wd,
   bd; NULL when absent): ((x - mean) * rstd) * w + b in double, rounded once to float,
   then as st() rounds. Returns where it stopped (the rest: the eight-lane and scalar
   loops). */
static inline __attribute__((always_inline)) i64 norm_row16_wd(const void *x, void *y, i64 base, i64 R,
                                                               __m512d mv, __m512d sv, const double *wd,
                                                               const double *bd, const int dt) {
    i64 k = 0;
    for (; k + 16 <= R; k += 16) {
        __m512 xv = z16_load(x, base + k, dt);
        __m512d v0 = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(xv)), mv), sv);
        __m512d v1 = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(xv, 1)), mv), sv);
        if (wd) {
            v0 = _mm512_mul_pd(v0, _mm512_loadu_pd(wd + k));
            v1 = _mm512_mul_pd(v1, _mm512_loadu_pd(wd + k + 8));
        }
        if (bd) {
            v0 = _mm512_add_pd(v0, _mm512_loadu_pd(bd + k));
            v1 = _mm512_add_pd(v1, _mm512_loadu_pd(bd + k + 8));
        }
        __m512 o = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(v0)), _mm512_cvtpd_ps(v1), 1);
        z16_store_dt(y, base + k, o, dt);
    }
    return k;
}
#endif

SB_API void SB_FN(sb_norm)(const void *x, const void *w, const void *b, void *y, float *mean_out,
             float *rstd_out, i64 rows, i64 R, double eps, int kind, int dt, int wdt,
             int nthreads) {
    int th = threads_for(rows * R * 4, nthreads);
    i64 blocks = (rows + 31) / 32;
#ifdef __AVX512F__
    /* w and b as doubles once per call (exact), instead of converting them per row */
    double *wd = (w || b) && R > 0 && rows > 0 ? (double *)malloc((size_t)R * 2 * sizeof(double)) : NULL;
    if (wd)
        for (i64 k = 0; k < R; k++) {
            wd[k] = w ? (double)ld(w, k, wdt) : 1.0;
            wd[R + k] = b ? (double)ld(b, k, wdt) : 0.0;
        }
#endif
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
            i64 k = 0;
#ifdef __AVX512F__
            /* sixteen at a time; without the weight buffer (not allocated) the
               eight-lane loop below does the same operations */
            if (wd || (!w && !b)) {
                __m512d mv = _mm512_set1_pd(mean[r]), sv = _mm512_set1_pd(rstd);
                const double *wr = w ? wd : NULL, *br = b ? wd + R : NULL;
                k = dt == BF16 ? norm_row16_wd(x, y, base, R, mv, sv, wr, br, BF16)
                               : norm_row16_wd(x, y, base, R, mv, sv, wr, br, F32);
            }
#endif
#ifdef SB_AVX2
            /* ((x - mean) * rstd) * w + b in double, eight at a time, rounded once to
               float, then to y's dtype as st() rounds */
            {
                __m256d mv = _mm256_set1_pd(mean[r]), sv = _mm256_set1_pd(rstd);
                for (; k + 8 <= R; k += 8) {
                    __m256 xv = v8_load(x, base + k, dt);
                    __m256d v0 = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(xv)), mv), sv);
                    __m256d v1 = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), mv), sv);
                    if (w) {
                        __m256 wv = v8_load(w, k, wdt);
                        v0 = _mm256_mul_pd(v0, _mm256_cvtps_pd(_mm256_castps256_ps128(wv)));
                        v1 = _mm256_mul_pd(v1, _mm256_cvtps_pd(_mm256_extractf128_ps(wv, 1)));
                    }
                    if (b) {
                        __m256 bv = v8_load(b, k, wdt);
                        v0 = _mm256_add_pd(v0, _mm256_cvtps_pd(_mm256_castps256_ps128(bv)));
                        v1 = _mm256_add_pd(v1, _mm256_cvtps_pd(_mm256_extractf128_ps(bv, 1)));
                    }
                    v8_store_dt(y, base + k, _mm256_set_m128(_mm256_cvtpd_ps(v1), _mm256_cvtpd_ps(v0)), dt);
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
#ifdef __AVX512F__
    free(wd);
#endif
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
#ifdef __AVX512F__
    for (; i + 16 <= n; i += 16) {
        __m512 sc = sv ? _mm512_loadu_ps(sv + i) : _mm512_set1_ps(s);
        __m512 sh = tv ? _mm512_loadu_ps(tv + i) : _mm512_set1_ps(t);
        z16_store_dt(y, base + i, _mm512_add_ps(_mm512_mul_ps(z16_load(x, base + i, dt_in), sc), sh), dt_out);
    }
#endif
#ifdef SB_AVX2
    for (; i + 8 <= n; i += 8) {
        v8 sc = sv ? _mm256_loadu_ps(sv + i) : _mm256_set1_ps(s);
        v8 sh = tv ? _mm256_loadu_ps(tv + i) : _mm256_set1_ps(t);
        v8_store_dt(y, base + i, _mm256_add_ps(_mm256_mul_ps(v8_load(x, base + i, dt_in), sc), sh), dt_out);
    }
#endif
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
