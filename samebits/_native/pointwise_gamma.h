/* lgamma, digamma and erfinv for the pointwise engine, on bundles (sb_simd.h), in float32
   and double-float (pointwise_math.h, pointwise_trig.h). Polynomial coefficients are
   near-minimax fits made by tools/fit_pointwise.py (float32 coefficients, the constant
   term split hi + lo). */
#ifndef SB_POINTWISE_GAMMA_H
#define SB_POINTWISE_GAMMA_H
#include "pointwise_math.h"
#include "pointwise_trig.h"

/* 1 / f as hi + lo (one division, the residual by fma) */
VAI vdf df_recip(vfn f) {
    vfn r = n_div(CF(1.0f), f);
    return df_make(r, n_mul(n_fma(n_neg(r), f, CF(1.0f)), r));
}
/* sin(pi x) and cos(pi x) as hi + lo (m_rem_half: an exact reduction) */
VAI void m_sincospi(vfn x, vdf *s, vdf *c) {
    vfn q;
    vdf r = m_rem_half(x, &q), sr, cr;
    m_sincos(r, &sr, &cr);
    *s = df_norm(m_sin_q(sr, cr, q)), *c = df_norm(m_cos_q(sr, cr, q));
}

/* lgamma(2 + z) = z (c0 + z Q(z)) for |z| <= 1/2 as hi + lo: a degree-10 fit of
   lgamma(2 + z) / z (relative error 2^-30.6), c0 = 1 - Euler's gamma in double-float */
VAI vdf m_lgamma2(vfn z) {
    vfn q = n_fma(z, CF(-7.420738984e-05f), CF(8.159811114e-05f));
    q = n_fma(q, z, CF(-2.095193486e-04f));
    q = n_fma(q, z, CF(5.245074863e-04f));
    q = n_fma(q, z, CF(-1.194975805e-03f));
    q = n_fma(q, z, CF(2.887410577e-03f));
    q = n_fma(q, z, CF(-7.385425735e-03f));
    q = n_fma(q, z, CF(2.058103494e-02f));
    q = n_fma(q, z, CF(-6.735230237e-02f));
    q = n_fma(q, z, CF(3.224670291e-01f));
    vdf g = df_two_prod(z, CF(4.227843285e-01f));
    g.lo = n_fma(z, n_fma(z, q, CF(6.645652917e-09f)), g.lo);
    return g;
}

/* lgamma(t) for t > 0 as hi + lo, with G = m_lgamma2:
     t < 1/2:        G(t) - ln(t (1 + t))          (lgamma(t + 2) - ln t - ln(t + 1))
     1/2 <= t < 3/2: G(t - 1) - ln t
     3/2 <= t < 8:   G(t - 2 - n) + ln((t - 1) .. (t - n)), n = floor(t - 3/2) in 0..6,
                     the product in double-float (each t - j exact)
     t >= 8:         (t - 1/2)(ln t - 1) + (ln(2 pi) - 1)/2 + (1/12 - (1/360 - z/1260) z) / t,
                     z = 1/t^2 (Stirling; the next term is below 2^-35 of the result), the
                     first product in double-float; +inf once it overflows.
   One ln (m_ln_df) serves every branch: its argument is selected. */
VAI vdf m_lgamma_pos(vfn t) {
    vmn st = n_ge(t, CF(8.0f)), lo = n_lt(t, CF(0.5f)), one = m_andn(m_notn(lo), n_lt(t, CF(1.5f)));
    vfn n = n_sel(m_orn(st, n_lt(t, CF(1.5f))), CF(0.0f), n_floor(n_sub(t, CF(1.5f))));
    vdf prod = df_make(CF(1.0f), CF(0.0f));
    for (int j = 1; j <= 6; j++) {
        vfn f = n_sel(n_ge(n, CF((float)j)), n_sub(t, CF((float)j)), CF(1.0f));
        prod = df_mul_f(prod, f);
    }
    vdf tt = df_two_prod(t, t), t1 = df_two_sum(t, tt.hi);        /* t + t^2 */
    t1.lo = n_add(t1.lo, tt.lo);
    vdf d = df_sel(lo, t1, df_sel(m_orn(one, st), df_make(t, CF(0.0f)), df_norm(prod)));
    vdf l = m_ln_df(d.hi, d.lo, 1);
    vfn z = n_sel(lo, t, n_sel(one, n_sub(t, CF(1.0f)), n_sub(n_sub(t, CF(2.0f)), n_sel(st, CF(0.0f), n))));
    vdf g = m_lgamma2(n_sel(st, CF(0.0f), z));
    vdf small = df_add(g, df_sel(m_orn(lo, one), df_neg(l), l));
    /* Stirling */
    vdf lm1 = df_two_sum(l.hi, CF(-1.0f));
    lm1.lo = n_add(lm1.lo, l.lo);
    vdf big = df_mul(df_two_sum(t, CF(-0.5f)), df_norm(lm1));
    vmn ovf = n_eq(big.hi, CF(INFINITY));
    vfn rt = n_div(CF(1.0f), n_sel(st, t, CF(8.0f))), zz = n_mul(rt, rt);
    vfn ser = n_mul(rt, n_fma(n_fma(zz, CF(1.0f / 1260), CF(-1.0f / 360)), zz, CF(1.0f / 12)));
    big = df_add(df_sel(ovf, df_make(CF(0.0f), CF(0.0f)), big),
                 df_make(CF(0x1.acfe3ap-2f), n_add(CF(-0x1.e6d052p-27f), ser)));
    big = df_sel(ovf, df_make(CF(INFINITY), CF(0.0f)), big);
    return df_sel(st, big, small);
}

/* lgamma(x) = ln |Gamma(x)|: m_lgamma_pos for x > 0; for x < 0 the reflection
   ln(pi / |x sin(pi x)|) - lgamma(-x) (sin(pi x) exactly reduced, all in double-float; near
   lgamma's negative zeros the two terms cancel and the relative error grows, as in every
   reflection-based lgamma); for -2^-30 < x < 0, lgamma(|x|) (both are -ln|x| - gamma x to
   within 2^-30 of the result). Non-positive integers and +-inf: +inf; NaN kept. */
VAI vfn m_lgamma(vfn x) {
    vfn t = n_abs(x);
    vdf r = m_lgamma_pos(n_sel(n_lt(t, CF(INFINITY)), t, CF(1.0f)));
    vmn neg = m_andn(n_lt(x, CF(0.0f)), n_ge(t, CF(0x1p-30f)));
    if (m_anyn(neg)) { /* skipped when no lane needs it: the same bits */
        vdf s, c;
        m_sincospi(x, &s, &c);
        vdf ts = df_mul_f(df_sel(n_lt(s.hi, CF(0.0f)), df_neg(s), s), t);
        vdf lr = m_ln_df(ts.hi, ts.lo, 1);
        vdf refl = df_add(DF(0x1.250d04p+0f, 0x1.1cf438p-25f), df_neg(df_add(lr, r)));
        r = df_sel(neg, refl, r);
    }
    vfn y = df_round(r);
    vmn pole = m_orn(n_eq(t, CF(INFINITY)), m_andn(n_le(x, CF(0.0f)), n_eq(n_trunc(x), x)));
    return n_sel(pole, CF(INFINITY), n_sel(n_isnan(x), x, y));
}

/* digamma(y) - sum, for y > 0, as hi + lo, with R a degree-10 fit of
   digamma(u) / (u - x0) on u in [1, 2] (relative error 2^-28; x0 = 1.4616321..., the
   positive root, in double-float):
     0 < y < 1: (y - (x0 - 1)) R(y - 1/2) - 1/y       (digamma(y + 1) - 1/y)
     1 <= y < 8: (u - x0) R(u - 3/2) + sum_{j=1..n} 1/(y - j), u = y - n in [1, 2)
                (the reciprocals in double-float; u and each y - j exact)
     y >= 8: ln y - 1/(2y) + z (-1/12 + z (1/120 + z (-1/252 + z/240))), z = 1/y^2
            (asymptotic; the next term is below 2^-33 of the result) */
VAI vdf m_digamma_pos(vfn y) {
    vmn lo = n_lt(y, CF(1.0f)), st = n_ge(y, CF(8.0f));
    vfn n = n_sel(m_orn(lo, st), CF(0.0f), n_sub(n_floor(y), CF(1.0f)));
    vfn u = n_sel(lo, y, n_sub(y, n));
    vdf f = df_two_sum(n_sub(u, n_sel(lo, CF(0x1.d8b618p-2f), CF(0x1.762d86p+0f))),
                       CF(-0x1.ab5f2p-27f));                     /* u - x0 (or y + 1 - x0) */
    vfn t = n_sub(u, n_sel(lo, CF(0.5f), CF(1.5f)));
    vfn q = n_fma(t, CF(1.112773828e-02f), CF(-1.637264155e-02f));
    q = n_fma(q, t, CF(1.697427221e-02f));
    q = n_fma(q, t, CF(-2.578796446e-02f));
    q = n_fma(q, t, CF(4.088080674e-02f));
    q = n_fma(q, t, CF(-6.205562130e-02f));
    q = n_fma(q, t, CF(9.498193860e-02f));
    q = n_fma(q, t, CF(-1.483989060e-01f));
    q = n_fma(q, t, CF(2.405426204e-01f));
    q = n_fma(q, t, CF(-4.236274958e-01f));
    vdf rr = df_fast_sum(CF(9.510558844e-01f), n_fma(q, t, CF(-8.727734091e-09f)));
    vdf s = df_mul(f, rr);
    vdf inv = df_recip(n_sel(lo, y, CF(1.0f)));
    s = df_sel(lo, df_add(s, df_neg(inv)), s);
    for (int j = 1; j <= 6; j++) {
        vmn on = n_ge(n, CF((float)j));
        vdf r = df_recip(n_sel(on, n_sub(y, CF((float)j)), CF(1.0f)));
        s = df_add(s, df_sel(on, r, df_make(CF(0.0f), CF(0.0f))));
    }
    /* asymptotic */
    vfn ys = n_sel(st, y, CF(8.0f));
    vdf l = m_ln_df(ys, CF(0.0f), 0);
    vfn ry = n_div(CF(1.0f), ys), z = n_mul(ry, ry);
    vfn p = n_fma(z, CF(1.0f / 240), CF(-1.0f / 252));
    p = n_fma(p, z, CF(1.0f / 120));
    p = n_fma(p, z, CF(-1.0f / 12));
    vdf big = df_fast_sum(l.hi, n_add(l.lo, n_fma(p, z, n_mul(CF(-0.5f), ry))));
    return df_sel(st, big, s);
}

/* digamma(x): m_digamma_pos for x > 0; x < 0: digamma(1 - x) - pi cos(pi x) / sin(pi x)
   (torch's reflection; sin and cos of pi x exactly reduced, the quotient in double-float;
   near digamma's negative zeros the terms cancel and the relative error grows, as in
   torch). |x| < 2^-64: -1/x (digamma(x) + 1/x = -gamma + O(x) is below 2^-24 of 1/x), which
   gives torch's digamma(+0) = -inf and digamma(-0) = +inf; negative integers and -inf:
   NaN, +inf: +inf, NaN kept. */
VAI vfn m_digamma(vfn x) {
    vmn neg = n_lt(x, CF(0.0f));
    vfn y = n_sel(neg, n_sub(CF(1.0f), x), x);
    vdf r = m_digamma_pos(n_sel(n_lt(y, CF(INFINITY)), y, CF(1.0f)));
    if (m_anyn(neg)) { /* skipped when no lane needs it: the same bits */
        vdf s, c;
        m_sincospi(x, &s, &c);
        vdf cot = df_mul(DF_PI, df_div(c, s));
        r = df_sel(neg, df_add(r, df_neg(cot)), r);
    }
    vfn d = df_round(r);
    d = n_sel(n_eq(x, CF(INFINITY)), x, d);
    d = n_sel(m_andn(neg, n_eq(n_trunc(x), x)), CF(NAN), d);        /* -inf too */
    d = n_sel(n_lt(n_abs(x), CF(0x1p-64f)), n_div(CF(-1.0f), x), d);
    return n_sel(n_isnan(x), x, d);
}

/* erfinv(x) = x P(w), w = -ln(1 - x^2) (1 - x^2 by one fma; w and sqrt(w) in
   double-float, so t below carries no error of theirs), P a fit of erfinv(x) / x on four
   pieces (Giles' variables, narrower pieces so the constant term dominates each):
   t = w - 1 (w < 2), w - 7/2 (w < 5), sqrt(w) - 5/2 (sqrt(w) < 2.8), sqrt(w) - 3.4, of
   degrees 8, 8, 7, 7 (relative error below 2^-28.4); each constant term in double-float so
   x P = x c0hi + x (c0lo + t Q(t)), one rounding. erfinv(+-1) = +-inf, NaN for |x| > 1,
   erfinv(+-0) = +-0, NaN kept. */
VAI vfn m_erfinv(vfn x) {
    vfn om = n_fma(n_neg(x), x, CF(1.0f));
    vdf w = df_neg(df_norm(m_ln_df(n_sel(n_gt(om, CF(0.0f)), om, CF(1.0f)), CF(0.0f), 0)));
    vmn ma = n_lt(w.hi, CF(2.0f)), mb = n_lt(w.hi, CF(5.0f));
    vfn y;
    /* the Horner steps, with EI(a, b, d, e) giving each piece's coefficient */
#define ERFINV_POLY(EI)                                                                            \
    do {                                                                                           \
        vfn t = n_add(n_sub(v.hi, EI(1.0f, 3.5f, 2.5f, 3.4f)), v.lo);                              \
        vfn q = n_fma(t, EI(1.259022326e-07f, -3.346504585e-08f, 0.0f, 0.0f),                      \
                      EI(-4.996202279e-07f, 3.108387716e-07f, 1.983546186e-03f, -2.686788212e-04f)); \
        q = n_fma(q, t, EI(-4.288082437e-06f, -3.877405845e-07f, -2.124024555e-03f, 6.544559728e-04f)); \
        q = n_fma(q, t, EI(3.810111230e-05f, -1.576653449e-05f, -5.083345342e-03f, -9.968396043e-04f)); \
        q = n_fma(q, t, EI(1.001286655e-04f, 1.585661666e-04f, 1.870633662e-02f, 1.497606747e-03f)); \
        q = n_fma(q, t, EI(-2.376322169e-03f, -4.813144624e-04f, -3.116500005e-02f, -2.577024978e-03f)); \
        q = n_fma(q, t, EI(4.250708502e-03f, -6.717068143e-03f, 3.519036993e-02f, 3.969489131e-03f)); \
        q = n_fma(q, t, EI(2.478328645e-01f, 2.353584170e-01f, 9.822731614e-01f, 1.006646752e+00f)); \
        vfn tail = n_fma(q, t, EI(-1.695577545e-08f, 3.391314118e-09f, -3.863111164e-09f, -1.109491876e-07f)); \
        y = n_fma(x, EI(1.127374411e+00f, 1.742829919e+00f, 2.335945368e+00f, 3.234783888e+00f),   \
                  n_mul(x, tail));                                                                 \
    } while (0)
#define EI2(a, b, d, e) n_sel(ma, CF(a), CF(b))
#define EI4(a, b, d, e) n_sel(ma, CF(a), n_sel(mb, CF(b), n_sel(md, CF(d), CF(e))))
    if (m_anyn(m_notn(mb))) {
        vdf sw = df_sqrt(w), v = df_sel(mb, w, sw);
        vmn md = n_lt(sw.hi, CF(2.8f));
        ERFINV_POLY(EI4);
    } else { /* no lane in the sqrt pieces: EI4 reduces to EI2, the same bits */
        vdf v = w;
        ERFINV_POLY(EI2);
    }
#undef EI2
#undef EI4
#undef ERFINV_POLY
    vfn ax = n_abs(x);
    y = n_sel(n_eq(ax, CF(1.0f)), n_copysign(CF(INFINITY), x), n_sel(n_eq(x, CF(0.0f)), x, y));
    return n_sel(n_gt(ax, CF(1.0f)), CF(NAN), n_sel(n_isnan(x), x, y));
}

#endif /* SB_POINTWISE_GAMMA_H */
