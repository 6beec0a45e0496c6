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
SB_API void SB_FN(sb_exact_acc)(const void *x, i64 outer, i64 R, i64 inner, int dt, int64_t *out, int32_t *flags,
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
#pragma omp parallel num_threads(th)
        {
            /* slices from the team this region really got: OMP_THREAD_LIMIT,
               OMP_DYNAMIC or nesting can give fewer threads than asked for */
            int got = omp_get_num_threads(), tid = omp_get_thread_num();
            i64 per = (R + got - 1) / got;
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
SB_API void SB_FN(sb_exact_dot)(const void *a, const void *b, i64 n, int dt, int64_t *out, int32_t *flags) {
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
