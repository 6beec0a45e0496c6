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
    r = x > -0.3f ? r : big;
    return x == 0.0f ? x : r; /* expm1(-0) = -0 */
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

/* log1p: u = 1 + y = m * 2^k with m in [sqrt(1/2), sqrt(2)); log(m) from
   s = f / (2 + f), f = m - 1, by a degree-4 polynomial in s^2 (a minimax fit with the
   same constants as fdlibm's logf); plus the rounding error of 1 + y, (y - (u - 1)) / u
   (or (1 - (u - y)) / u once u >= 2), and k ln 2 in two parts. Branch-free; about
   1-2 ulp. */
static inline float f_log1p(float y) {
    float u = 1.0f + y;
    uint32_t b;
    memcpy(&b, &u, 4);
    uint32_t ix = b + (0x3f800000u - 0x3f3504f3u);
    int32_t k = (int32_t)(ix >> 23) - 127;
    uint32_t mb = (ix & 0x007fffffu) + 0x3f3504f3u;
    float m;
    memcpy(&m, &mb, 4);
    float f = m - 1.0f;
    float s = f / (2.0f + f), z = s * s, w = z * z;
    float R = fmaf(z, fmaf(w, 0.284987867f, 0.666666627f), w * fmaf(w, 0.242790788f, 0.400009722f));
    float hfsq = (0.5f * f) * f;
    float dk = (float)k;
    float c = k > 0 ? 1.0f - (u - y) : y - (u - 1.0f);
    c = c / u;
    float r = fmaf(dk, 6.93138123e-01f, f - hfsq + fmaf(s, hfsq + R, fmaf(dk, 9.05800061e-06f, c)));
    r = y == INFINITY ? INFINITY : r;
    r = u == 0.0f ? -INFINITY : r;
    r = y < -1.0f ? NAN : r;
    return y != y ? y : r;
}

enum { U_GELU = 0, U_GELU_TANH, U_SILU, U_SIGMOID, U_EXP, U_TANH, U_RSQRT, U_ERF, U_EXPM1, U_LOG1P, U_COUNT };
#define UBLK 512

#include "sb_simd.h"
#if VW > 1
/* The same functions on the vector layer's VW lanes (unary_vec.h): operation for
   operation the float sequences above. GCC's auto-vectorized versions of the scalar
   code ran 3-5x slower. */
#define UNV 8 /* vectors per step of unary_block, on every width (measured fastest) */
#include "unary_vec.h"

/* src -> dst (may be the same) through the vector path, UNV vectors at a time,
   then single vectors; the tail is padded, not scalar. */
#define UW VW
#define UVT vf
#define ULOAD v_load
#define USTORE v_store
#define UN(name) uvn_##name
#define UNARY_CASE(OP)                                                                             \
    case OP:                                                                                       \
        for (; i + UW * UNV <= n; i += UW * UNV) {                                                 \
            UVT x[UNV];                                                                            \
            for (int u = 0; u < UNV; u++) x[u] = ULOAD(src + i + UW * u);                          \
            UN(unary)(x, x, OP, UNV);                                                              \
            for (int u = 0; u < UNV; u++) USTORE(dst + i + UW * u, x[u]);                          \
        }                                                                                          \
        for (; i + UW <= n; i += UW) {                                                             \
            UVT x = ULOAD(src + i);                                                                \
            UN(unary)(&x, &x, OP, 1);                                                              \
            USTORE(dst + i, x);                                                                    \
        }                                                                                          \
        break;
static void unary_block_scalar(float *v, int n, int op);
static void unary_block(const float *src, float *dst, int n, int op) {
    int i = 0;
    if (op == U_LOG1P) { /* no vector version: the scalar sequence (vectorized by GCC) */
        memmove(dst, src, (size_t)n * 4);
        unary_block_scalar(dst, n, op);
        return;
    }
    switch (op) {
        UNARY_CASE(U_GELU)
        UNARY_CASE(U_GELU_TANH)
        UNARY_CASE(U_SILU)
        UNARY_CASE(U_SIGMOID)
        UNARY_CASE(U_EXP)
        UNARY_CASE(U_TANH)
        UNARY_CASE(U_RSQRT)
        UNARY_CASE(U_ERF)
        UNARY_CASE(U_EXPM1)
    }
    if (i < n) {
        float t[UW] = {0};
        memcpy(t, src + i, (size_t)(n - i) * 4);
        UVT x = ULOAD(t);
        UN(unary)(&x, &x, op, 1);
        USTORE(t, x);
        memcpy(dst + i, t, (size_t)(n - i) * 4);
    }
}
#undef UNARY_CASE
#undef UW
#undef UVT
#undef ULOAD
#undef USTORE
#undef UN
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
    case U_EXPM1:
        for (int i = 0; i < n; i++) v[i] = f_expm1(v[i]);
        break;
    case U_LOG1P:
        for (int i = 0; i < n; i++) v[i] = f_log1p(v[i]);
        break;
    }
}
#if VW == 1
static void unary_block(const float *src, float *dst, int n, int op) {
    memmove(dst, src, (size_t)n * 4);
    unary_block_scalar(dst, n, op);
}
#endif

/* sb_unary_scalar: float32 only, one thread, the scalar sequences (tests) */
SB_API void SB_FN(sb_unary_scalar)(const float *x, float *y, i64 n, int op) {
    for (i64 a = 0; a < n; a += UBLK) {
        int m = (int)(n - a < UBLK ? n - a : UBLK);
        memcpy(y + a, x + a, (size_t)m * 4);
        unary_block_scalar(y + a, m, op);
        for (int i = 0; i < m; i++) y[a + i] = canon(y[a + i]);
    }
}

/* bfloat16 has 65536 values, so a function of one is a table: entry h holds the
   bfloat16 result the block code gives for input h (computed by that code, once per
   process and op), and a large tensor is looked up instead of computed. Same bits by
   construction; the table costs 128 KiB per op. NULL when it cannot be allocated. */
static uint16_t *bf16_tables[U_COUNT];
static const uint16_t *bf16_table(int op) {
    uint16_t *t = __atomic_load_n(&bf16_tables[op], __ATOMIC_ACQUIRE);
    if (t) return t;
#pragma omp critical(sb_unary_table)
    {
        if (!bf16_tables[op] && (t = malloc(65536 * sizeof(uint16_t)))) {
            float v[UBLK];
            for (int a = 0; a < 65536; a += UBLK) {
                for (int i = 0; i < UBLK; i++) v[i] = bf2f((uint16_t)(a + i));
                unary_block(v, v, UBLK, op);
                for (int i = 0; i < UBLK; i++) t[a + i] = f2bf(v[i]);
            }
            __atomic_store_n(&bf16_tables[op], t, __ATOMIC_RELEASE);
        }
    }
    return __atomic_load_n(&bf16_tables[op], __ATOMIC_ACQUIRE);
}

SB_API void SB_FN(sb_unary)(const void *x, void *y, i64 n, int op, int dt, int nthreads) {
    int th = threads_for(n * 4, nthreads);
    const uint16_t *table = NULL;
    if (dt == BF16 && op >= 0 && op < U_COUNT &&
        (n >= 65536 || __atomic_load_n(&bf16_tables[op], __ATOMIC_ACQUIRE)))
        table = bf16_table(op);
    if (table) {
        const uint16_t *xs = (const uint16_t *)x;
        uint16_t *ys = (uint16_t *)y;
#pragma omp parallel for schedule(static) num_threads(th)
        for (i64 i = 0; i < n; i++) ys[i] = table[xs[i]];
        return;
    }
    i64 blocks = (n + UBLK - 1) / UBLK;
#pragma omp parallel for schedule(dynamic, dyn_chunk(blocks, th)) num_threads(th)
    for (i64 bk = 0; bk < blocks; bk++) {
        float v[UBLK];
        i64 a = bk * UBLK;
        int m = (int)(n - a < UBLK ? n - a : UBLK);
        if (dt == BF16) {
            int i = 0;
            for (; i + VW <= m; i += VW) v_store(v + i, v_load_dt(x, a + i, BF16));
            for (; i < m; i++) v[i] = bf2f(((const uint16_t *)x)[a + i]);
            unary_block(v, v, m, op);
            i = 0;
            for (; i + VW <= m; i += VW) v_store_dt(y, a + i, v_load(v + i), BF16);
            for (; i < m; i++) ((uint16_t *)y)[a + i] = f2bf(v[i]);
        } else {
            float *ya = (float *)y + a;
            unary_block((const float *)x + a, ya, m, op);
            for (int i = 0; i < m; i++) ya[i] = canon(ya[i]); /* in L1: a cheap pass */
        }
    }
}
