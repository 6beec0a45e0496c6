/* The math functions of the pointwise engine, on bundles (sb_simd.h), each a fixed
   sequence of float32 IEEE operations. Accuracy against a float64 reference is
   measured by tests/native/test_pointwise_math.py and benchmarks/pointwise_accuracy.py,
   and listed in docs/design.md.
   m_<name> is the function; pointwise.c's pw_<name> turns it into an op. */
#ifndef SB_POINTWISE_MATH_H
#define SB_POINTWISE_MATH_H
#include "sb_simd.h"

/* exp's argument reduction: n = rint(x / ln2) by the magic-number trick (into *nn), and
   r = x - n ln2 by a two-part Cody-Waite reduction */
VAI vfn m_exp_reduce(vfn x, vfn *nn) {
    *nn = n_sub(n_add(n_mul(x, CF(1.44269504f)), CF(12582912.0f)), CF(12582912.0f));
    vfn r = n_fma(*nn, CF(-0.693145752f), x);
    return n_fma(*nn, CF(-1.42860677e-06f), r);
}
/* e^r for the reduced r: the degree-7 Taylor polynomial */
VAI vfn m_exp_poly(vfn r) {
    vfn p = n_fma(CF(1.0f / 5040.0f), r, CF(1.0f / 720.0f));
    p = n_fma(p, r, CF(1.0f / 120.0f));
    p = n_fma(p, r, CF(1.0f / 24.0f));
    p = n_fma(p, r, CF(1.0f / 6.0f));
    p = n_fma(p, r, CF(0.5f));
    p = n_fma(p, r, CF(1.0f));
    return n_fma(p, r, CF(1.0f));
}
/* expm1's degree-8 Taylor series x + x^2 (1/2! + x/3! + ... + x^6/8!) */
VAI vfn m_expm1_series(vfn x) {
    vfn p = n_fma(CF(1.0f / 40320.0f), x, CF(1.0f / 5040.0f));
    p = n_fma(p, x, CF(1.0f / 720.0f));
    p = n_fma(p, x, CF(1.0f / 120.0f));
    p = n_fma(p, x, CF(1.0f / 24.0f));
    p = n_fma(p, x, CF(1.0f / 6.0f));
    p = n_fma(p, x, CF(0.5f));
    return n_fma(n_mul(x, x), p, x);
}

/* exp: x clamped to [-104, 88.8], reduced (m_exp_reduce), m_exp_poly, and 2^n applied in
   two integer-built factors (each exponent in [-75, 64]); +inf above 88.72283, +0 below
   -103.97, NaN kept. (The operations of unary.c's f_exp.)
   m_exp_mid is the same sequence for a bundle whose lanes all lie in [-87, 88]: there the
   clamps and special values change nothing and 2^n (n in [-126, 127]) is one normal
   float, so p 2^n rounds the same value once as p 2^n1 2^n2 does: the same bits. */
VAI vfn m_exp_mid(vfn x) {
    vfn nn, p = m_exp_poly(m_exp_reduce(x, &nn));
    return n_mul(p, n_pow2i(n_cvt(nn)));
}
/* p 2^n for an integral float n (|n| <= 252) in two integer-built factors, 2^(n >> 1)
   and 2^(n - (n >> 1)), each a normal float: exp's, exp2's and gelu's tail's scaling */
VAI vfn m_mul_pow2(vfn p, vfn nn) {
    vin ni = n_cvt(nn), n1 = ni_sra(ni, 1), n2 = ni_sub(ni, n1);
    return n_mul(n_mul(p, n_pow2i(n1)), n_pow2i(n2));
}
VAI vfn m_exp(vfn x) {
    if (m_alln(m_andn(n_ge(x, CF(-87.0f)), n_le(x, CF(88.0f))))) return m_exp_mid(x);
    vfn xc = n_sel(n_lt(x, CF(-104.0f)), CF(-104.0f), n_sel(n_gt(x, CF(88.8f)), CF(88.8f), x));
    vfn nn, p = m_exp_poly(m_exp_reduce(xc, &nn));
    vfn y = m_mul_pow2(p, nn);
    y = n_sel(n_gt(x, CF(88.72283f)), CF(INFINITY), y);
    y = n_sel(n_lt(x, CF(-103.97f)), CF(0.0f), y);
    return n_sel(n_isnan(x), x, y);
}

/* expm1: for |x| < 0.3 m_expm1_series, else exp(x) - 1; expm1(-0) = -0 */
VAI vfn m_expm1(vfn x) {
    vfn big = n_sub(m_exp(x), CF(1.0f));
    vfn r = n_sel(n_lt(x, CF(0.3f)), m_expm1_series(x), big);
    r = n_sel(n_gt(x, CF(-0.3f)), r, big);
    return n_sel(n_eq(x, CF(0.0f)), x, r);
}

/* expm1(y) for y in [0, 18.2] (tanh's range; -0 gives +0) in one path: y reduced
   (m_exp_reduce: 0 <= n <= 27, |r| <= 0.35), expm1(r) by m_expm1_series (truncation
   below 2^-26 of r), and 2^n expm1(r) + (2^n - 1) in one fma */
VAI vfn m_expm1_tanh(vfn y) {
    vfn nn, e = m_expm1_series(m_exp_reduce(y, &nn));
    vfn s = n_pow2i(n_cvt(nn));
    return n_fma(s, e, n_sub(s, CF(1.0f)));
}

/* tanh(x) = copysign(e / (e + 2), x) (the sign bit or-ed in: e / (e + 2) >= +0),
   e = m_expm1_tanh(2 min(|x|, 9.1)); 1 past |x| > 9.1 (tanh(9.1) rounds to 1); NaN kept.
   A bundle with every |x| <= 9.1 skips the clamp, the saturation and the NaN select,
   which change nothing there: the same bits. */
VAI vfn m_tanh(vfn x) {
    vfn a = n_abs(x);
    if (m_alln(n_le(a, CF(9.1f)))) {
        vfn e = m_expm1_tanh(n_add(a, a));
        return n_orsign(n_div(e, n_add(e, CF(2.0f))), x);
    }
    vmn sat = n_gt(a, CF(9.1f));
    vfn ac = n_sel(sat, CF(9.1f), a);
    vfn e = m_expm1_tanh(n_add(ac, ac));
    vfn t = n_sel(sat, CF(1.0f), n_div(e, n_add(e, CF(2.0f))));
    return n_sel(n_isnan(x), x, n_orsign(t, x));
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

/* ------------------------------------------------------------ double-float */
/* A value carried as hi + lo, |lo| at most about ulp(hi): 48 bits from float32 operations
   (Dekker; Knuth's TwoSum). Used where one rounded float32 step would cost more than an
   ulp of the result: log2 inside pow, the reduced argument of sin and cos, sums that
   cancel. */
typedef struct { vfn hi, lo; } vdf;
VAI vdf df_make(vfn hi, vfn lo) { vdf r = {hi, lo}; return r; }
/* s + e = a + b exactly (TwoSum) */
VAI vdf df_two_sum(vfn a, vfn b) {
    vfn s = n_add(a, b), bb = n_sub(s, a);
    return df_make(s, n_add(n_sub(a, n_sub(s, bb)), n_sub(b, bb)));
}
/* s + e = a + b exactly, given |a| >= |b| or a == 0 (Fast2Sum) */
VAI vdf df_fast_sum(vfn a, vfn b) {
    vfn s = n_add(a, b);
    return df_make(s, n_sub(b, n_sub(s, a)));
}
/* p + e = a b exactly (barring underflow), e by fma */
VAI vdf df_two_prod(vfn a, vfn b) {
    vfn p = n_mul(a, b);
    return df_make(p, n_fma(a, b, n_neg(p)));
}
/* a b, dropping a.lo b.lo */
VAI vdf df_mul(vdf a, vdf b) {
    vdf p = df_two_prod(a.hi, b.hi);
    p.lo = n_add(p.lo, n_add(n_mul(a.hi, b.lo), n_mul(a.lo, b.hi)));
    return p;
}
/* a b for a float b */
VAI vdf df_mul_f(vdf a, vfn b) {
    vdf p = df_two_prod(a.hi, b);
    p.lo = n_fma(a.lo, b, p.lo);
    return p;
}
/* a + b, renormalized so that hi is the rounded sum */
VAI vdf df_add(vdf a, vdf b) {
    vdf s = df_two_sum(a.hi, b.hi);
    return df_fast_sum(s.hi, n_add(s.lo, n_add(a.lo, b.lo)));
}
VAI vdf df_neg(vdf a) { return df_make(n_neg(a.hi), n_neg(a.lo)); }
VAI vdf df_sel(vmn m, vdf a, vdf b) { return df_make(n_sel(m, a.hi, b.hi), n_sel(m, a.lo, b.lo)); }
/* the float32 nearest hi + lo (one rounding) */
VAI vfn df_round(vdf a) { return n_add(a.hi, a.lo); }
/* a constant hi + lo, written DF(0x1.62e43p-1f, -0x1.05c61p-29f) */
#define DF(h, l) df_make(CF(h), CF(l))
/* a renormalized: hi the rounded sum (Fast2Sum; |a.lo| <= |a.hi|) */
VAI vdf df_norm(vdf a) { return df_fast_sum(a.hi, a.lo); }
/* n / d as hi + lo for normalized n and d (|lo| <= ulp(hi)), hi within 2 ulp of the
   quotient (not renormalized): one division, the residual n - hi d by fma */
VAI vdf df_div(vdf n, vdf d) {
    vfn rcp = n_div(CF(1.0f), d.hi);
    vfn qh = n_mul(n.hi, rcp);
    vfn res = n_sub(n_fma(n_neg(qh), d.hi, n.hi), n_sub(n_mul(qh, d.lo), n.lo));
    return df_make(qh, n_mul(res, rcp));
}
/* sqrt(a) for a >= 0 as hi + lo: one sqrt, its residual by fma over one division */
VAI vdf df_sqrt(vdf a) {
    vfn h = n_sqrt(a.hi);
    vfn l = n_div(n_add(n_fma(n_neg(h), h, a.hi), a.lo), n_add(h, h));
    return df_make(h, n_sel(n_eq(h, CF(0.0f)), CF(0.0f), l));
}

/* -------------------------------------------------------------- log2, exp2 */
#define DF_LN2 DF(0x1.62e43p-1f, -0x1.05c61p-29f)
/* x = m 2^k as m_split_mant below, for a normal x (nothing scaled): m, and k in *ks */
VAI vfn m_split_normal(vfn x, vin *ks) {
    vin k = ni_sra(ni_sub(n_bits(x), ni_set1(0x3f3504f3)), 23);
    *ks = k;
    return n_from_bits(ni_sub(n_bits(x), ni_sll(k, 23)));         /* x 2^-k, exactly */
}
/* x = m 2^k with m in [sqrt(1/2), sqrt(2)) for a positive finite x, subnormals included:
   those are scaled by 2^23 first, only when some lane is one (the same bits); *sub marks
   the scaled lanes, and *ks holds the exponent of the scaled x, for callers that scale a
   low part too. k is returned as a float. */
VAI vfn m_split_mant(vfn x, vfn *kout, vin *ks, vmn *sub, int *anysub) {
    *sub = n_lt(x, CF(0x1p-126f));
    *anysub = m_anyn(*sub); /* skips work that would change nothing: the bits are the same */
    if (*anysub) x = n_mul(x, n_sel(*sub, CF(0x1p23f), CF(1.0f)));
    vfn m = m_split_normal(x, ks);
    *kout = n_itof(*ks);
    if (*anysub) *kout = n_sub(*kout, n_sel(*sub, CF(23.0f), CF(0.0f)));
    return m;
}

/* ln m for x = xh + xl = m 2^k, xh > 0 finite (subnormals included), |xl| <= ulp(xh)
   (xl is ignored when has_lo = 0), m in [sqrt(1/2), sqrt(2)); k is returned in *k (as a
   float). Other xh give garbage: callers select their special values.
   f = m - 1 (exact), s = f / (2 + f) in double-float (one division), and
   ln m = 2 atanh(s) = 2s + s^3 (2/3 + s^2 Q(s^2)), Q the Taylor terms 2/5 .. 2/13 of
   atanh (truncation < 2^-39 since s^2 < 0.0295). The s^3 (...) term is at most 2^-6.7 of
   ln m: in float32 it leaves ln m within 2^-30 (precise = 0, enough for a rounded log);
   precise = 1 evaluates it in double-float too, for 2^-40 (pow scales log2 by y). */
VAI vdf m_ln_mant(vfn xh, vfn xl, int has_lo, int precise, vfn *kout) {
    vmn sub;
    vin k;
    int anysub;
    vfn m = m_split_mant(xh, kout, &k, &sub, &anysub);
    vfn f = n_sub(m, CF(1.0f));                                    /* exact */
    vdf d = df_fast_sum(CF(2.0f), f), fn = df_make(f, CF(0.0f));
    if (has_lo) { /* xl 2^-k (2^-k in two factors), added to f and to 2 + f */
        if (anysub) xl = n_mul(xl, n_sel(sub, CF(0x1p23f), CF(1.0f)));
        vin k1 = ni_sra(k, 1);
        vfn ml = n_mul(n_mul(xl, n_pow2i(ni_sub(ni_set1(0), k1))), n_pow2i(ni_sub(k1, k)));
        d.lo = n_add(d.lo, ml);
        fn = df_two_sum(f, ml);                                    /* f + ml normalized */
    }
    vdf s = df_div(fn, d);
    vfn z = n_mul(s.hi, s.hi);
    vfn q = n_fma(z, CF(2.0f / 13), CF(2.0f / 11));
    q = n_fma(q, z, CF(2.0f / 9));
    q = n_fma(q, z, CF(2.0f / 7));
    q = n_fma(q, z, CF(2.0f / 5));
    vfn t;
    vdf lnm;
    if (precise) {
        vdf s2 = df_two_prod(s.hi, s.hi);
        s2.lo = n_fma(n_add(s.hi, s.hi), s.lo, s2.lo);
        vdf c = df_fast_sum(CF(0x1.555556p-1f), n_mul(z, q));     /* 2/3 + z q */
        c.lo = n_add(c.lo, CF(-0x1.555556p-26f));
        vdf tt = df_mul(df_mul(s2, s), c);
        lnm = df_fast_sum(n_add(s.hi, s.hi), tt.hi);
        t = tt.lo;
    } else {
        t = n_mul(n_mul(s.hi, z), n_fma(z, q, CF(0x1.555556p-1f)));
        lnm = df_make(n_add(s.hi, s.hi), CF(0.0f));
    }
    lnm.lo = n_add(lnm.lo, n_add(n_add(s.lo, s.lo), t));
    return lnm;
}

/* ln m for x = m 2^k (m_split_mant; k in *kout) as hi + lo without a division:
   f = m - 1 (exact, in [-0.293, 0.415)), ln m = f + f^2 R(f), R a degree-8 near-minimax
   fit of (ln(1 + f) - f) / f^2 (tools/fit_pointwise.py; its error is below 2^-27.8 of
   ln m), returned as f + (f^2 R(f)) (not renormalized: lo is at most a fifth of hi);
   m_ln_poly_f takes f.
   log's core (0.91 ulp, no division); pow and the functions whose argument is hi + lo
   keep m_ln_mant's (log2 and log10 have their own table, in pointwise.c). Other x give
   garbage: callers select their special values. */
VAI vdf m_ln_poly_f(vfn f) {
    vfn r = n_fma(f, CF(-7.623397559e-02f), CF(1.290878654e-01f));
    r = n_fma(r, f, CF(-1.324462742e-01f));
    r = n_fma(r, f, CF(1.418117732e-01f));
    r = n_fma(r, f, CF(-1.660876423e-01f));
    r = n_fma(r, f, CF(2.000200152e-01f));
    r = n_fma(r, f, CF(-2.500160038e-01f));
    r = n_fma(r, f, CF(3.333332539e-01f));
    r = n_fma(r, f, CF(-4.999998808e-01f));
    return df_make(f, n_mul(n_mul(f, f), r));
}
VAI vdf m_ln_poly(vfn x, vfn *kout) {
    vmn sub;
    vin ks;
    int anysub;
    return m_ln_poly_f(n_sub(m_split_mant(x, kout, &ks, &sub, &anysub), CF(1.0f)));
}

/* log_b(x) = k log_b(2) + ln m log_b(e) as hi + lo, from m_ln_mant's k and ln m:
   log_b(2) = c2h + c2l with c2h of at most 16 bits, so k c2h is exact, and log_b(e) =
   ceh + cel (1 + 0 for ln). |k c2h| > |ln m log_b(e)| unless k = 0, so Fast2Sum adds them. */
VAI vdf m_log_b(vfn k, vdf lnm, float c2h, float c2l, float ceh, float cel) {
    vdf p = lnm;
    if (ceh != 1.0f || cel != 0.0f) p = df_mul(lnm, DF(ceh, cel));
    vdf r = df_fast_sum(n_mul(k, CF(c2h)), p.hi);
    r.lo = n_add(r.lo, n_fma(k, CF(c2l), p.lo));
    return r;
}
/* the constants of m_log_b for ln and log2 (ln 2 split with hi of at most 16 bits, so
   k c2h is exact for every exponent k) */
#define LOG_E 0x1.62e4p-1f, 0x1.7f7d1cp-20f, 1.0f, 0.0f
#define LOG_2 1.0f, 0.0f, 0x1.715476p+0f, 0x1.4ae0cp-26f

/* ln(xh + xl) as hi + lo (relative error below 2^-29); has_lo = 0: xl taken as 0 */
VAI vdf m_ln_df(vfn xh, vfn xl, int has_lo) {
    vfn k;
    vdf lnm = m_ln_mant(xh, xl, has_lo, 0, &k);
    return m_log_b(k, lnm, LOG_E);
}
/* log2(x) as hi + lo, relative error below 2^-40 (for pow) */
VAI vdf m_log2_df(vfn x) {
    vfn k;
    vdf lnm = m_ln_mant(x, x, 0, 1, &k);
    return m_log_b(k, lnm, LOG_2);
}

/* log_b(1 + e) for e >= 0 as hi + lo (the LOG_E or LOG_2 constants): 1 + e as an exact
   hi + lo into the ln core; e log_b(e) below 2^-60 (log1p(e) = e there, and e would
   underflow inside the core) */
VAI vdf m_log1p_b(vfn e, float c2h, float c2l, float ceh, float cel) {
    vdf u = df_two_sum(CF(1.0f), e);
    vfn k;
    vdf lnm = m_ln_mant(u.hi, u.lo, 1, 0, &k);
    return df_sel(n_lt(e, CF(0x1p-60f)), df_mul_f(DF(ceh, cel), e), m_log_b(k, lnm, c2h, c2l, ceh, cel));
}

/* every lane of the bundle a positive finite normal (NaN is not) */
VAI int m_alln_normal(vfn x) {
    return m_alln(m_andn(n_ge(x, CF(0x1p-126f)), n_le(x, CF(0x1.fffffep127f))));
}

/* log's special values on a result r computed for x > 0: +inf at +inf, -inf at +-0,
   NaN below 0, a NaN input kept */
VAI vfn m_log_special(vfn x, vfn r) {
    r = n_sel(n_eq(x, CF(INFINITY)), x, r);
    r = n_sel(n_eq(x, CF(0.0f)), CF(-INFINITY), r);
    r = n_sel(n_lt(x, CF(0.0f)), CF(NAN), r);
    return n_sel(n_isnan(x), x, r);
}

/* 2^(h + l), |l| <= ulp(h): n = rint(h), r = (h - n) + l in [-0.5, 0.5] (h - n exact),
   2^r by its Taylor polynomial of degree 7 (coefficients ln2^k / k!, truncation < 2^-28),
   times 2^n in two exact factors (n clamped to [-160, 130], where the result is already
   0 or +inf; l is ignored there). NaN h kept. */
VAI vfn m_exp2_df(vfn h, vfn l) {
    vmn in = m_andn(n_ge(h, CF(-160.0f)), n_le(h, CF(130.0f)));   /* false for NaN */
    vfn hc = n_sel(in, h, n_sel(n_gt(h, CF(0.0f)), CF(130.0f), CF(-160.0f)));
    vfn nf = n_rint(hc);
    vfn r = n_add(n_sub(hc, nf), n_sel(in, l, CF(0.0f)));
    vfn p = n_fma(CF(0x1.ffcbfcp-17f), r, CF(0x1.430912p-13f));
    p = n_fma(p, r, CF(0x1.5d87fep-10f));
    p = n_fma(p, r, CF(0x1.3b2ab6p-7f));
    p = n_fma(p, r, CF(0x1.c6b08ep-5f));
    p = n_fma(p, r, CF(0x1.ebfbep-3f));
    p = n_fma(p, r, CF(0x1.62e43p-1f));
    p = n_fma(p, r, CF(1.0f));
    return n_sel(n_isnan(h), h, m_mul_pow2(p, nf));
}

#endif /* SB_POINTWISE_MATH_H */
