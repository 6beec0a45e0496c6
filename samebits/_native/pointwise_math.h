/* The math functions of the pointwise engine, on bundles (sb_simd.h), each a fixed
   sequence of float32 IEEE operations. Accuracy against a float64 reference is
   measured by tests/native/test_pointwise_accuracy.py and listed in docs/design.md.
   m_<name> is the function; pointwise.c's pw_<name> turns it into an op. */
#ifndef SB_POINTWISE_MATH_H
#define SB_POINTWISE_MATH_H
#include "sb_simd.h"

/* exp: n = rint(x / ln2) by the magic-number trick (x clamped to [-104, 88.8]), a
   two-part Cody-Waite reduction r = x - n ln2, a degree-7 Taylor polynomial in r,
   and 2^n applied in two integer-built factors (each exponent in [-75, 64]);
   +inf above 88.72283, +0 below -103.97, NaN kept. (The operations of unary.c's f_exp.) */
VAI vfn m_exp(vfn x) {
    vfn xc = n_sel(n_lt(x, CF(-104.0f)), CF(-104.0f), n_sel(n_gt(x, CF(88.8f)), CF(88.8f), x));
    vfn nn = n_sub(n_add(n_mul(xc, CF(1.44269504f)), CF(12582912.0f)), CF(12582912.0f));
    vfn r = n_fma(nn, CF(-0.693145752f), xc);
    r = n_fma(nn, CF(-1.42860677e-06f), r);
    vfn p = n_fma(CF(1.0f / 5040.0f), r, CF(1.0f / 720.0f));
    p = n_fma(p, r, CF(1.0f / 120.0f));
    p = n_fma(p, r, CF(1.0f / 24.0f));
    p = n_fma(p, r, CF(1.0f / 6.0f));
    p = n_fma(p, r, CF(0.5f));
    p = n_fma(p, r, CF(1.0f));
    p = n_fma(p, r, CF(1.0f));
    vin ni = n_cvt(nn), n1 = ni_sra(ni, 1), n2 = ni_sub(ni, n1);
    vfn y = n_mul(n_mul(p, n_pow2i(n1)), n_pow2i(n2));
    y = n_sel(n_gt(x, CF(88.72283f)), CF(INFINITY), y);
    y = n_sel(n_lt(x, CF(-103.97f)), CF(0.0f), y);
    return n_sel(n_isnan(x), x, y);
}

/* expm1: for |x| < 0.3 the degree-8 Taylor series x + x^2 p(x), else exp(x) - 1;
   expm1(-0) = -0 */
VAI vfn m_expm1(vfn x) {
    vfn big = n_sub(m_exp(x), CF(1.0f));
    vfn p = n_fma(CF(1.0f / 40320.0f), x, CF(1.0f / 5040.0f));
    p = n_fma(p, x, CF(1.0f / 720.0f));
    p = n_fma(p, x, CF(1.0f / 120.0f));
    p = n_fma(p, x, CF(1.0f / 24.0f));
    p = n_fma(p, x, CF(1.0f / 6.0f));
    p = n_fma(p, x, CF(0.5f));
    vfn small = n_fma(n_mul(x, x), p, x);
    vfn r = n_sel(n_lt(x, CF(0.3f)), small, big);
    r = n_sel(n_gt(x, CF(-0.3f)), r, big);
    return n_sel(n_eq(x, CF(0.0f)), x, r);
}

/* tanh(x) = sign(x) e / (e + 2), e = expm1(2 min(|x|, 10)); 1 past |x| > 9.1; NaN kept */
VAI vfn m_tanh(vfn x) {
    vfn a = n_sel(n_lt(x, CF(0.0f)), n_neg(x), x); /* -0 stays -0, so tanh(-0) = -0 */
    vfn e = m_expm1(n_mul(CF(2.0f), n_sel(n_gt(a, CF(10.0f)), CF(10.0f), a)));
    vfn t = n_div(e, n_add(e, CF(2.0f)));
    t = n_sel(n_gt(a, CF(9.1f)), CF(1.0f), t);
    t = n_sel(n_lt(x, CF(0.0f)), n_neg(t), t);
    return n_sel(n_isnan(x), x, t);
}

/* erfc by Numerical Recipes' Chebyshev fit (fractional error < 1.2e-7):
   t = 1 / (1 + |z| / 2), erfc(|z|) = t exp(-z^2 - 1.26551223 + t P(t)); 2 - that below 0 */
VAI vfn m_erfc(vfn z) {
    vfn a = n_abs(z);
    vfn t = n_div(CF(1.0f), n_fma(CF(0.5f), a, CF(1.0f)));
    vfn p = n_fma(t, CF(0.17087277f), CF(-0.82215223f));
    p = n_fma(t, p, CF(1.48851587f));
    p = n_fma(t, p, CF(-1.13520398f));
    p = n_fma(t, p, CF(0.27886807f));
    p = n_fma(t, p, CF(-0.18628806f));
    p = n_fma(t, p, CF(0.09678418f));
    p = n_fma(t, p, CF(0.37409196f));
    p = n_fma(t, p, CF(1.00002368f));
    vfn e = m_exp(n_fma(n_neg(a), a, n_fma(t, p, CF(-1.26551223f))));
    vfn r = n_mul(t, e);
    r = n_sel(n_ge(z, CF(0.0f)), r, n_sub(CF(2.0f), r));
    return n_sel(n_isnan(z), z, r);
}

/* log1p: u = 1 + y = m 2^k with m in [sqrt(1/2), sqrt(2)); log m from s = f / (2 + f),
   f = m - 1, by fdlibm's logf polynomial in s^2; plus the rounding error of 1 + y,
   (y - (u - 1)) / u (or (1 - (u - y)) / u once k > 0), and k ln 2 in two parts.
   +inf at +inf, -inf at -1, NaN below -1. */
VAI vfn m_log1p(vfn y) {
    vfn u = n_add(CF(1.0f), y);
    vin ix = ni_add(n_bits(u), ni_set1((int32_t)(0x3f800000u - 0x3f3504f3u)));
    vin k = ni_sub(ni_srl(ix, 23), ni_set1(127));
    vfn m = n_from_bits(ni_add(ni_and(ix, ni_set1(0x007fffff)), ni_set1(0x3f3504f3)));
    vfn f = n_sub(m, CF(1.0f));
    vfn s = n_div(f, n_add(CF(2.0f), f)), z = n_mul(s, s), w = n_mul(z, z);
    vfn R = n_fma(z, n_fma(w, CF(0.284987867f), CF(0.666666627f)),
                  n_mul(w, n_fma(w, CF(0.242790788f), CF(0.400009722f))));
    vfn hfsq = n_mul(n_mul(CF(0.5f), f), f);
    vfn dk = n_itof(k);
    vmn kpos = ni_gt(k, ni_set1(0));
    vfn cc = n_sel(kpos, n_sub(CF(1.0f), n_sub(u, y)), n_sub(y, n_sub(u, CF(1.0f))));
    cc = n_div(cc, u);
    vfn r = n_fma(dk, CF(6.93138123e-01f),
                  n_add(n_sub(f, hfsq), n_fma(s, n_add(hfsq, R), n_fma(dk, CF(9.05800061e-06f), cc))));
    r = n_sel(n_eq(y, CF(INFINITY)), CF(INFINITY), r);
    r = n_sel(n_eq(u, CF(0.0f)), CF(-INFINITY), r);
    r = n_sel(n_lt(y, CF(-1.0f)), CF(NAN), r);
    return n_sel(n_isnan(y), y, r);
}

#endif /* SB_POINTWISE_MATH_H */
