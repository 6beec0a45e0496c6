/* ------------------------------------------------------------- softmax */
/* rows of length R, contiguous. mode 0: softmax, 1: log_softmax,
   2: softmax with fully masked rows (max = -inf) giving zeros (attention).
   max is exact; e = f_exp(x - max) per element (float); the sum of the e is
   sequential in double along the row; outputs are rounded once. log_softmax:
   (x - max) - d_log(sum), in double, rounded once.
   Rows are processed 8 at a time so the 8 sequential chains overlap. */
#define SROWS 8

/* log of a double in [1, 2^60] (a row's sum of exp, which holds exp(0) = 1) from + - * /
   alone, so its bits do not depend on the libm or the CPU (glibc's log picks an FMA or
   an SSE2 variant by CPU, and they may differ in the last place): s = m * 2^e with m in
   [sqrt(1/2), sqrt(2)), f = (m - 1) / (m + 1), log m = 2 atanh f = 2 (f + f^3/3 + ...),
   13 terms (|f| <= 0.1716: the next term is below 2^-60 of the result), then + e ln 2
   in two parts. Error about 1 ulp of double, far below the float output's. */
static double d_log(double s) {
    uint64_t u;
    memcpy(&u, &s, 8);
    int e = (int)((u >> 52) & 0x7ff) - 1023;
    u = (u & 0x000fffffffffffffull) | 0x3ff0000000000000ull; /* m in [1, 2) */
    double m;
    memcpy(&m, &u, 8);
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e += 1;
    }
    double f = (m - 1.0) / (m + 1.0), f2 = f * f;
    double p = 1.0 / 25;
    static const double c[12] = {1.0 / 23, 1.0 / 21, 1.0 / 19, 1.0 / 17, 1.0 / 15, 1.0 / 13,
                                 1.0 / 11, 1.0 / 9,  1.0 / 7,  1.0 / 5,  1.0 / 3,  1.0};
    for (int i = 0; i < 12; i++) p = p * f2 + c[i];
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    return (double)e * ln2_hi + ((double)e * ln2_lo + 2.0 * f * p);
}
SB_API int SB_FN(sb_softmax)(const void *x, void *y, i64 rows, i64 R, int mode, int dt_in, int dt_out,
                int nthreads) {
    int th = threads_for(rows * R * 8, nthreads), oom = 0;
    i64 blocks = (rows + SROWS - 1) / SROWS;
#pragma omp parallel num_threads(th)
    {
        float *e = (float *)malloc((size_t)(R > 0 ? R : 1) * SROWS * sizeof(float));
        if (!e) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(dynamic, dyn_chunk(blocks, th))
        for (i64 bk = 0; bk < blocks; bk++) {
            if (!e) continue;
            i64 r0 = bk * SROWS;
            int nr = (int)(rows - r0 < SROWS ? rows - r0 : SROWS);
            float m[SROWS];
            int state[SROWS]; /* 0 normal, 1 all NaN, 2 all zero */
            for (int r = 0; r < nr; r++) {
                i64 base = (r0 + r) * R;
                float mx = -INFINITY;
                int nan = 0;
                i64 k = 0;
#ifdef __AVX512F__
                /* the max 16 lanes at a time: exact in any order; NaN never taken (it is
                   max's first operand), only flagged. Which zero a max of +-0 keeps cannot
                   change an output: exp(x - max) is 1 for both, and a log_softmax row
                   with two zeros sums to 2 or more, so (x - max) - log(sum) is -log(sum). */
                if (R >= 16) {
                    __m512 vm = _mm512_set1_ps(-INFINITY);
                    __mmask16 bad = 0;
                    for (; k + 16 <= R; k += 16) {
                        __m512 v = z16_load(x, base + k, dt_in);
                        bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                        vm = _mm512_max_ps(v, vm);
                    }
                    mx = _mm512_reduce_max_ps(vm);
                    nan = bad != 0;
                }
#endif
                for (; k < R; k++) {
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
                    double ls = d_log(s[r]);
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
    return oom ? -1 : 0;
}
