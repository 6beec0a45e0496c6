/* ------------------------------------------------------------- softmax */
/* rows of length R, contiguous. mode 0: softmax, 1: log_softmax,
   2: softmax with fully masked rows (max = -inf) giving zeros (attention).
   max is exact; e = f_exp(x - max) per element (float); the sum of the e is
   sequential in double along the row; outputs are rounded once. log_softmax:
   (x - max) - d_logs(sum), in double, rounded once.
   Rows are processed in blocks side by side so their sequential chains overlap. */

/* log of a double in [1, 2^60] (a row's sum of exp, which holds exp(0) = 1) from + - * /
   alone, so its bits do not depend on the libm or the CPU (glibc's log picks an FMA or
   an SSE2 variant by CPU, and they may differ in the last place): s = m * 2^e with m in
   [sqrt(1/2), sqrt(2)), f = (m - 1) / (m + 1), log m = 2 atanh f = 2 (f + f^3/3 + ...),
   13 terms (|f| <= 0.1716: the next term is below 2^-60 of the result), then + e ln 2
   in two parts. Error about 1 ulp of double, far below the float output's.
   Written without branches over n rows, so the compiler may run rows side by side:
   each row's double operations are the same either way. */
static inline void d_logs(const double *s, double *out, int n) {
    static const double c[12] = {1.0 / 23, 1.0 / 21, 1.0 / 19, 1.0 / 17, 1.0 / 15, 1.0 / 13,
                                 1.0 / 11, 1.0 / 9,  1.0 / 7,  1.0 / 5,  1.0 / 3,  1.0};
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    for (int r = 0; r < n; r++) {
        uint64_t u;
        memcpy(&u, &s[r], 8);
        int64_t e = (int64_t)((u >> 52) & 0x7ff) - 1023;
        u = (u & 0x000fffffffffffffull) | 0x3ff0000000000000ull; /* m in [1, 2) */
        double m;
        memcpy(&m, &u, 8);
        int64_t big = m > 1.4142135623730951;
        m = big ? m * 0.5 : m;
        double ed = (double)(e + big);
        double f = (m - 1.0) / (m + 1.0), f2 = f * f;
        double p = 1.0 / 25;
        for (int i = 0; i < 12; i++) p = p * f2 + c[i];
        out[r] = ed * ln2_hi + (ed * ln2_lo + 2.0 * f * p);
    }
}

/* Rows per block: up to 32 side by side (four add chains in rowsums), fewer for long
   rows so that the block's exp values stay near the cache. Rows are independent: the
   block size changes no bit. */
static inline i64 softmax_rows(i64 R) { return R <= 1024 ? 32 : (R <= 8192 ? 8 : 2); }

/* One block of nr rows from r0; e: nr * R floats. The dtypes are constants at each
   call site, so the per-element loops compile to plain vector code. */
static inline __attribute__((always_inline)) void softmax_block(const void *x, void *y, i64 r0, int nr,
                                                                i64 R, int mode, float *e,
                                                                const int dt_in, const int dt_out) {
    float m[32];
    int state[32]; /* 0 normal, 1 all NaN, 2 all zero */
    for (int r = 0; r < nr; r++) {
        i64 base = (r0 + r) * R;
        int nan;
#if VW > 1
        float mx = uv_row_max(x, base, R, dt_in, &nan);
#else
        float mx = -INFINITY;
        nan = 0;
        for (i64 k = 0; k < R; k++) {
            float v = ld(x, base + k, dt_in);
            nan |= v != v;
            mx = v > mx ? v : mx;
        }
#endif
        m[r] = mx;
        state[r] = (nan || mx == INFINITY || (mx == -INFINITY && mode != 2)) ? 1
                   : (mx == -INFINITY ? 2 : 0);
        float *er = e + (i64)r * R;
#if VW > 1
        uv_exp_shifted(x, base, R, mx, er, dt_in); /* f_exp's operations on vectors */
#else
        for (i64 k = 0; k < R; k++) er[k] = f_exp(ld(x, base + k, dt_in) - mx);
#endif
    }
    double s[32], ls[32];
    rowsums(e, 0, nr, R, NULL, 0, F32, s); /* the SUM order: sequential in double */
    if (mode == 1) d_logs(s, ls, nr);
    for (int r = 0; r < nr; r++) {
        i64 base = (r0 + r) * R;
        float *er = e + (i64)r * R;
        if (state[r]) {
            float f = state[r] == 1 ? NAN : 0.0f;
            for (i64 k = 0; k < R; k++) st(y, base + k, f, dt_out);
        } else if (mode == 1) {
            double l = ls[r];
            float mr = m[r];
            for (i64 k = 0; k < R; k++)
                st(y, base + k, (float)((double)(ld(x, base + k, dt_in) - mr) - l), dt_out);
        } else {
            double inv = 1.0 / s[r];
            for (i64 k = 0; k < R; k++) st(y, base + k, (float)((double)er[k] * inv), dt_out);
        }
    }
}

SB_API int SB_FN(sb_softmax)(const void *x, void *y, i64 rows, i64 R, int mode, int dt_in, int dt_out,
                int nthreads) {
    int th = threads_for(rows * R * 8, nthreads), oom = 0;
    i64 nb = softmax_rows(R);
    while (nb > 8 && (rows + nb - 1) / nb < 2 * th) nb /= 2; /* two blocks per thread */
    i64 blocks = (rows + nb - 1) / nb;
#pragma omp parallel num_threads(th)
    {
        float *e = (float *)malloc((size_t)(R > 0 ? R : 1) * (size_t)nb * sizeof(float));
        if (!e) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(dynamic, dyn_chunk(blocks, th))
        for (i64 bk = 0; bk < blocks; bk++) {
            if (!e) continue;
            i64 r0 = bk * nb;
            int nr = (int)(rows - r0 < nb ? rows - r0 : nb);
            if (dt_in == F32 && dt_out == F32) softmax_block(x, y, r0, nr, R, mode, e, F32, F32);
            else if (dt_in == F32) softmax_block(x, y, r0, nr, R, mode, e, F32, BF16);
            else if (dt_out == F32) softmax_block(x, y, r0, nr, R, mode, e, BF16, F32);
            else softmax_block(x, y, r0, nr, R, mode, e, BF16, BF16);
        }
        free(e);
    }
    return oom ? -1 : 0;
}
