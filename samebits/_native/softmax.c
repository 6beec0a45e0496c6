/* ------------------------------------------------------------- softmax */
/* rows of length R, contiguous. mode 0: softmax, 1: log_softmax,
   2: softmax with fully masked rows (max = -inf) giving zeros (attention).
   max is exact; e = f_exp(x - max) per element (float); the sum of the e is
   sequential in double along the row; outputs are rounded once.
   Rows are processed 8 at a time so the 8 sequential chains overlap. */
#define SROWS 8
SB_API void SB_FN(sb_softmax)(const void *x, void *y, i64 rows, i64 R, int mode, int dt_in, int dt_out,
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
