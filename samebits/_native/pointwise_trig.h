/* Trigonometric helpers of the pointwise engine, on bundles (sb_simd.h), in float32 and
   double-float (pointwise_math.h). Argument reduction is exact or carried in double-float,
   so sin, cos and tan are accurate for every float32, 3e38 included. */
#ifndef SB_POINTWISE_TRIG_H
#define SB_POINTWISE_TRIG_H
#include "pointwise_math.h"
#include "pointwise_rempio2.h"

#define DF_PIO2 DF(0x1.921fb6p+0f, -0x1.777a5cp-25f)
#define DF_PI DF(0x1.921fb6p+1f, -0x1.777a5cp-24f)

/* q mod 4 in {0, 1, 2, 3} for an integral float q (|q| < 2^26: every step exact) */
VAI vfn m_mod4(vfn q) { return n_sub(q, n_mul(CF(4.0f), n_floor(n_mul(q, CF(0.25f))))); }
/* a + b into hi + lo: TwoSum of hi and b, the error added to lo */
VAI vdf df_acc(vdf a, vfn b) {
    vdf s = df_two_sum(a.hi, b);
    s.lo = n_add(s.lo, a.lo);
    return s;
}

/* Payne-Hanek for 2^19 <= |x| < inf: x 2/pi = integer + F with F in [-1/2, 1/2] in
   double-float, from pw_rempio2's row for x's exponent e (2/pi without the bits whose
   products with x are multiples of 4, in four 24-bit chunks c0..c3; x scaled by 2^-64
   for e > 65 as the table is). x c0 and x c1 are exact pairs by fma; integer parts are
   removed, and counted mod 4, as soon as they appear (each subtraction exact), so the
   fraction keeps 2^-68 absolute accuracy. r = F pi/2 (|r| <= pi/4), q = the integer
   mod 4; negative x flips both. Lanes outside the range get finite garbage. */
VAI vdf m_rem_pio2_big(vfn x, vfn *qout) {
    vfn ax = n_abs(x);
    vin e = ni_sub(ni_srl(n_bits(ax), 23), ni_set1(127));
    vmn row_ok = m_andn(ni_gt(e, ni_set1(PW_REMPIO2_EMIN - 1)), ni_gt(ni_set1(128), e));
    vin idx = ni_sll(ni_sel(row_ok, ni_sub(e, ni_set1(PW_REMPIO2_EMIN)), ni_set1(0)), 2);
    const float *t = &pw_rempio2[0][0];
    vfn xs = n_sel(ni_gt(e, ni_set1(65)), n_mul(ax, CF(0x1p-64f)), ax);
    vdf p0 = df_two_prod(xs, n_lookup(t, idx));                   /* < 2^26, multiples of 2^-22 */
    vfn k0 = n_rint(p0.hi), k1 = n_rint(p0.lo);
    vfn f = n_add(n_sub(p0.hi, k0), n_sub(p0.lo, k1));            /* exact: |f| <= 1 */
    vfn k2 = n_rint(f);
    vdf p1 = df_two_prod(xs, n_lookup(t, ni_add(idx, ni_set1(1)))); /* |p1| < 4 */
    vdf acc = df_two_sum(n_sub(f, k2), p1.hi);
    vfn k3 = n_rint(acc.hi);
    acc.hi = n_sub(acc.hi, k3);
    vdf p2 = df_two_prod(xs, n_lookup(t, ni_add(idx, ni_set1(2)))); /* < 2^-21 */
    acc = df_acc(df_acc(acc, p1.lo), p2.hi);
    acc.lo = n_add(acc.lo, n_fma(xs, n_lookup(t, ni_add(idx, ni_set1(3))), p2.lo));
    vfn k4 = n_rint(acc.hi);
    acc = df_two_sum(n_sub(acc.hi, k4), acc.lo);
    vfn k = n_add(n_add(m_mod4(k0), m_mod4(k1)), n_add(k2, n_add(k3, k4)));
    vdf r = df_mul(acc, DF_PIO2);
    vmn neg = n_lt(x, CF(0.0f));
    *qout = m_mod4(n_sel(neg, n_neg(k), k));
    return df_sel(neg, df_neg(r), r);
}

/* x = q pi/2 + r with q in {0, 1, 2, 3} (a float) and r as hi + lo, |r.hi| <= pi/4 + 2^-20.
   |x| < 2^19: Cody-Waite with pi/2 = P1 + P2 + P3 (to 2^-76): q = rint(x 2/pi); x - q P1
   is exact (q < 2^19, P1 has 24 bits), q P2 is an exact pair by fma taken off by TwoSum,
   q P3 goes to lo. Larger finite |x|: m_rem_pio2_big, run only when some lane needs it
   (skipping it changes no bits: its lanes are selected away). inf and NaN: garbage (the
   callers select NaN). */
VAI vdf m_rem_pio2(vfn x, vfn *qout) {
    vfn ax = n_abs(x);
    vmn small = n_lt(ax, CF(0x1p19f));
    vfn xs = n_sel(small, x, CF(0.0f));
    vfn q = n_rint(n_mul(xs, CF(0x1.45f306p-1f)));
    vfn r1 = n_fma(n_neg(q), CF(0x1.921fb6p+0f), xs);
    vdf t = df_two_prod(q, CF(-0x1.777a5cp-25f));
    vdf u = df_two_sum(r1, n_neg(t.hi));
    vdf r = df_fast_sum(u.hi, n_sub(u.lo, n_fma(q, CF(-0x1.ee59dap-50f), t.lo)));
    q = m_mod4(q);
    vmn big = m_andn(m_notn(small), n_lt(ax, CF(INFINITY)));
    if (m_anyn(big)) {
        vfn qb;
        vdf rb = m_rem_pio2_big(x, &qb);
        r = df_sel(big, rb, r);
        q = n_sel(big, qb, q);
    }
    *qout = q;
    return r;
}

/* x = q/2 + r/pi for sin(pi x) and cos(pi x), exactly: x' = x - 4 trunc(x/4) (x mod 4, an
   exact subtraction), q = rint(2 x') mod 4, r = pi (x' - q/2) in double-float, |r| <= pi/4 */
VAI vdf m_rem_half(vfn x, vfn *qout) {
    vfn xr = n_sub(x, n_mul(CF(4.0f), n_trunc(n_mul(x, CF(0.25f)))));
    vfn q = n_rint(n_add(xr, xr));
    vfn t = n_sub(xr, n_mul(q, CF(0.5f)));
    *qout = m_mod4(q);
    return df_mul_f(DF_PI, t);
}

/* sin and cos of r = hi + lo, |r.hi| <= pi/4 + 2^-20, each as hi + lo:
   sin r = r.hi + (r.lo (1 - r^2/2) + r.hi r^2 S(r^2)), S the Taylor terms -1/3! .. 1/9!
   (truncation < 2^-28); cos r = (1 - r^2/2) + r^4 C(r^2), C the Taylor terms
   1/4! .. -1/10! (truncation < 2^-31), r^2/2 in double-float and 1 - r^2/2 by Fast2Sum.
   Neither is renormalized (lo is up to a tenth of hi). */
VAI void m_sincos(vdf r, vdf *s, vdf *c) {
    vdf r2 = df_two_prod(r.hi, r.hi);
    r2.lo = n_fma(n_add(r.hi, r.hi), r.lo, r2.lo);
    vfn z = r2.hi;
    vfn ps = n_fma(z, CF(0x1.71de3ap-19f), CF(-0x1.a01a02p-13f));
    ps = n_fma(ps, z, CF(0x1.111112p-7f));
    ps = n_fma(ps, z, CF(-0x1.555556p-3f));
    *s = df_make(r.hi, n_fma(n_mul(r.hi, z), ps, n_mul(r.lo, n_fma(z, CF(-0.5f), CF(1.0f)))));
    vfn pc = n_fma(z, CF(-0x1.27e4fcp-22f), CF(0x1.a01a02p-16f));
    pc = n_fma(pc, z, CF(-0x1.6c16c2p-10f));
    pc = n_fma(pc, z, CF(0x1.555556p-5f));
    vdf h = df_fast_sum(CF(1.0f), n_mul(z, CF(-0.5f)));
    h.lo = n_fma(n_mul(z, z), pc, n_fma(r2.lo, CF(-0.5f), h.lo));
    *c = h;
}

/* sin(x) and cos(x) from sin r and cos r, x = q pi/2 + r:
   sin x = (s, c, -s, -c)[q], cos x = (c, -s, -c, s)[q] */
VAI vdf m_sin_q(vdf s, vdf c, vfn q) {
    vdf v = df_sel(m_orn(n_eq(q, CF(1.0f)), n_eq(q, CF(3.0f))), c, s);
    return df_sel(n_ge(q, CF(2.0f)), df_neg(v), v);
}
VAI vdf m_cos_q(vdf s, vdf c, vfn q) {
    vdf v = df_sel(m_orn(n_eq(q, CF(1.0f)), n_eq(q, CF(3.0f))), s, c);
    return df_sel(m_orn(n_eq(q, CF(1.0f)), n_eq(q, CF(2.0f))), df_neg(v), v);
}

/* B + g v for a double-float B = k pi/4 (k integral, <= 4) and g = +-1 or +-2, rounded once */
VAI vfn m_pi4_plus(vfn k, vfn g, vdf v) {
    vdf bk = df_two_prod(k, CF(0x1.921fb6p-1f));
    vdf r = df_two_sum(bk.hi, n_mul(g, v.hi));
    r.lo = n_add(r.lo, n_fma(k, CF(-0x1.777a5cp-26f), n_fma(g, v.lo, bk.lo)));
    return df_round(r);
}

/* A(z) of atan u = u + u z A(z), z = u^2 <= tan(pi/8)^2: a degree-5 minimax fit (relative
   error of atan 2^-33.9; tools/fit_pointwise.py atan) */
VAI vfn m_atan_a(vfn z) {
    vfn pa = n_fma(z, CF(4.348477349e-02f), CF(-8.282173425e-02f));
    pa = n_fma(pa, z, CF(1.100946516e-01f));
    pa = n_fma(pa, z, CF(-1.427912712e-01f));
    pa = n_fma(pa, z, CF(1.999980211e-01f));
    return n_fma(pa, z, CF(-3.333333135e-01f));
}

/* atan2(y, x) for C99 Annex F: with a = |y|, b = |x| (both set to 1 when both are
   infinite), u = min(a, b) / max(a, b), or (min - max) / (min + max) above tan(pi/8),
   as hi + lo (|u| <= tan(pi/8)); atan u = u + u^3 A(u^2), A a degree-5 minimax fit
   (relative error 2^-33.9); the angle is B + sign atan u with B in {0, pi/4, pi/2, 3pi/4,
   pi} in double-float (min = a: B = 0 or pi/4, else pi/2 - that; x < 0 or -0: pi - that),
   rounded once, with y's sign. max = 0 gives u = 0; NaN in, NaN out. */
VAI vfn m_atan2(vfn y, vfn x) {
    vfn a = n_abs(y), b = n_abs(x);
    vmn both_inf = m_andn(n_eq(a, CF(INFINITY)), n_eq(b, CF(INFINITY)));
    a = n_sel(both_inf, CF(1.0f), a), b = n_sel(both_inf, CF(1.0f), b);
    vmn swap = n_gt(a, b);
    vfn lo = n_sel(swap, b, a), hi = n_sel(swap, a, b);
    vmn inf_hi = n_eq(hi, CF(INFINITY));                          /* lo finite: u = 0 */
    lo = n_sel(inf_hi, CF(0.0f), lo), hi = n_sel(inf_hi, CF(1.0f), hi);
    hi = n_sel(n_eq(hi, CF(0.0f)), CF(1.0f), hi);
    /* both times 2^(24 - e), e = hi's exponent field less 127 (in two exact factors): hi
       lands in [2^24, 2^25), so the division's residual stays normal whenever lo / hi is */
    vin k = ni_sub(ni_set1(151), ni_srl(n_bits(hi), 23)), k1 = ni_sra(k, 1), k2 = ni_sub(k, k1);
    lo = n_mul(n_mul(lo, n_pow2i(k1)), n_pow2i(k2)), hi = n_mul(n_mul(hi, n_pow2i(k1)), n_pow2i(k2));
    vmn mid = n_gt(lo, n_mul(hi, CF(0x1.a827ap-2f)));              /* lo / hi > tan(pi/8) */
    vdf num = df_sel(mid, df_two_sum(lo, n_neg(hi)), df_make(lo, CF(0.0f)));
    vdf den = df_sel(mid, df_two_sum(lo, hi), df_make(hi, CF(0.0f)));
    vdf u = df_div(num, den);
    vfn z = n_mul(u.hi, u.hi);
    vfn pa = m_atan_a(z);
    vdf at = df_make(u.hi, n_fma(n_mul(u.hi, z), pa, u.lo));
    vmn xneg = ni_gt(ni_set1(0), n_bits(x));                        /* sign bit: -0 too */
    /* B = k pi/4 and the sign g of atan u */
    vfn kb = n_sel(swap, n_sel(mid, CF(1.0f), CF(2.0f)), n_sel(mid, CF(1.0f), CF(0.0f)));
    vfn g = n_sel(swap, CF(-1.0f), CF(1.0f));
    kb = n_sel(xneg, n_sub(CF(4.0f), kb), kb), g = n_sel(xneg, n_neg(g), g);
    vfn res = n_copysign(m_pi4_plus(kb, g, at), y);
    return n_sel(n_unord(x, y), CF(NAN), res);
}

/* 1 / d for a positive normal d within a relative 2^-8, without a division: the
   exponent-mirroring seed 0x7ef311c3 - bits(d) (within 5.1%) and one Newton step; integer
   operations and fma, so every path gives its bits. For small corrections only (a
   residual that is itself 2^-24 of its value). */
VAI vfn m_rcp_rough(vfn d) {
    vfn y = n_from_bits(ni_sub(ni_set1(0x7ef311c3), n_bits(d)));
    return n_mul(y, n_fma(n_neg(d), y, CF(2.0f)));
}

/* asin of t for the asin / acos family, as hi + lo: t = a (a <= 1/2) or
   t = sqrt((1 - a) / 2) (a > 1/2, flagged by big; sqrt in double-float, its residual
   divided by 2t through m_rcp_rough), and
   asin t = t + t^3 P(t^2), P a degree-5 minimax fit (relative error 2^-31.7).
   a > 1 gives NaN. */
VAI vdf m_asin_t(vfn a, vmn big) {
    vfn z = n_sel(big, n_mul(n_sub(CF(1.0f), a), CF(0.5f)), n_mul(a, a));
    vfn t = n_sel(big, n_sqrt(z), a);
    vfn tl = n_mul(n_fma(n_neg(t), t, z), m_rcp_rough(n_add(t, t))); /* sqrt's residual */
    tl = n_sel(m_andn(big, n_gt(t, CF(0.0f))), tl, CF(0.0f));
    vfn p = n_fma(z, CF(3.762792796e-02f), CF(1.435660012e-02f));
    p = n_fma(p, z, CF(3.183020651e-02f));
    p = n_fma(p, z, CF(4.451414570e-02f));
    p = n_fma(p, z, CF(7.500519603e-02f));
    p = n_fma(p, z, CF(1.666665971e-01f));
    return df_make(t, n_fma(n_mul(t, z), p, tl));
}
#endif /* SB_POINTWISE_TRIG_H */
