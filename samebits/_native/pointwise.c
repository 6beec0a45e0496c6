/* ------------------------------------------------------- the pointwise engine */
/* Every floating elementwise op that is not one correctly rounded IEEE operation runs
   here, as a fixed sequence of IEEE operations per element written once over the vector
   layer (sb_simd.h): v_fma only where a formula says fma, no contraction, compares and
   selects instead of branches. An element's bits therefore depend on its inputs alone:
   not on its position in a vector, a tail or a thread's share, not on the ISA path,
   and not on torch's dispatch level or version.

   float32 is computed as written; bfloat16 inputs are widened exactly, computed in
   float32 and rounded once at the store. A NaN result is stored as the canonical quiet
   NaN 0x7fc00000 (x86's default NaN is negative, ARM's positive, and which operand's
   payload survives differs), so NaN outputs have one bit pattern everywhere.

   The ops are listed once, in PW_OPS: name, number of tensor operands, number of
   scalar parameters. The Python side reads the list from sb_pw_ops() and numbers the
   ops in its order. pw_<name> is each op's formula; its comment is the definition. */
#include "sb_simd.h"
#include "pointwise_math.h"
#include "pointwise_trig.h"
#include "pointwise_gamma.h"

/* X(name, tensor operands, scalar parameters) */
#define PW_OPS(X)                                                                                  \
    X(exp, 1, 0) X(expm1, 1, 0) X(tanh, 1, 0) X(erf, 1, 0) X(erfc, 1, 0) X(log1p, 1, 0)            \
    X(sigmoid, 1, 0) X(silu, 1, 0) X(gelu, 1, 0) X(gelu_tanh, 1, 0) X(rsqrt, 1, 0)                 \
    X(elu, 1, 3) X(softplus, 1, 2) X(mish, 1, 0) X(softshrink, 1, 1) X(sinh, 1, 0)                 \
    X(cosh, 1, 0) X(atanh, 1, 0)                                                                   \
    X(add, 2, 1) X(rsub, 2, 1) X(addcmul, 3, 1) X(addcdiv, 3, 1) X(lerp, 3, 0)                     \
    X(exp2, 1, 0) X(log, 1, 0) X(log2, 1, 0) X(log10, 1, 0) X(logsigmoid, 1, 0)                    \
    X(hardswish, 1, 0) X(hardsigmoid, 1, 0) X(logit, 1, 1)                                         \
    X(pow, 2, 0) X(logaddexp, 2, 0) X(logaddexp2, 2, 0) X(xlogy, 2, 0) X(xlog1py, 2, 0)            \
    X(hypot, 2, 0) X(sin, 1, 0) X(cos, 1, 0) X(tan, 1, 0) X(asin, 1, 0) X(acos, 1, 0)              \
    X(atan, 1, 0) X(asinh, 1, 0) X(acosh, 1, 0) X(sinc, 1, 0) X(atan2, 2, 0) X(erfinv, 1, 0)       \
    X(lgamma, 1, 0) X(digamma, 1, 0)                                                               \
    X(silu_backward, 2, 0) X(gelu_backward, 2, 0) X(gelu_tanh_backward, 2, 0)                        \
    X(sigmoid_backward, 2, 0) X(tanh_backward, 2, 0) X(softplus_backward, 2, 2)                      \
    X(elu_backward, 2, 4) X(logsigmoid_backward, 2, 0) X(hardswish_backward, 2, 0)                   \
    X(hardsigmoid_backward, 2, 0) X(mish_backward, 2, 0) X(logit_backward, 2, 1)                     \
    X(normal, 2, 2) X(mul, 2, 0) X(div, 2, 0) X(sqrt, 1, 0) X(fmax, 2, 0) X(fmin, 2, 0)

/* ---- formulas (a, b, c: the tensor operands; p: the scalar parameters as float32) */

/* exp (the samebits exp of unary.c: softmax and attention use the same operations) */
VAI vfn pw_exp(vfn a, vfn b, vfn c, const float *p) { (void)b, (void)c, (void)p; return m_exp(a); }
VAI vfn pw_expm1(vfn a, vfn b, vfn c, const float *p) { (void)b, (void)c, (void)p; return m_expm1(a); }
VAI vfn pw_tanh(vfn a, vfn b, vfn c, const float *p) { (void)b, (void)c, (void)p; return m_tanh(a); }
/* erf(x) = |x| < 1 ? x (c0 + x^2 P(x^2)) : copysign(1 - E(|x| - 2.5), x), 1 past |x| > 4:
   P a degree-6 near-minimax fit of erf(x) / x on x^2 in [0, 1] (relative error 2^-29.6)
   with c0 = 2/sqrt(pi) split hi + lo; E a degree-14 fit of erfc on [1, 4] (absolute
   error 2^-26.7; tools/fit_pointwise.py). No division and no exp; each side runs only
   when some lane needs it (the same bits). */
VAI vfn pw_erf(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vfn ax = n_abs(a);
    vmn small = n_lt(ax, CF(1.0f));
    vfn r = CF(0.0f);
    if (!m_alln(small)) {
        vfn t = n_sub(ax, CF(2.5f));
        vfn e = n_fma(t, CF(-8.961795857e-07f), CF(-5.092480819e-07f));
        e = n_fma(e, t, CF(1.576836621e-05f));
        e = n_fma(e, t, CF(-1.768236871e-05f));
        e = n_fma(e, t, CF(-8.125784370e-05f));
        e = n_fma(e, t, CF(2.703999926e-04f));
        e = n_fma(e, t, CF(-2.584787144e-04f));
        e = n_fma(e, t, CF(-5.600668956e-04f));
        e = n_fma(e, t, CF(2.797347261e-03f));
        e = n_fma(e, t, CF(-6.109301001e-03f));
        e = n_fma(e, t, CF(8.622686379e-03f));
        e = n_fma(e, t, CF(-8.351716213e-03f));
        e = n_fma(e, t, CF(5.445676390e-03f));
        e = n_fma(e, t, CF(-2.178188879e-03f));
        e = n_fma(e, t, CF(4.069526622e-04f));
        r = n_orsign(n_sel(n_gt(ax, CF(4.0f)), CF(1.0f), n_sub(CF(1.0f), e)), a);
    }
    if (m_anyn(small)) {
        vfn z = n_mul(a, a);
        vfn q = n_fma(z, CF(7.857759192e-05f), CF(-8.011404425e-04f));
        q = n_fma(q, z, CF(5.188468844e-03f));
        q = n_fma(q, z, CF(-2.685388736e-02f));
        q = n_fma(q, z, CF(1.128358692e-01f));
        q = n_fma(q, z, CF(-3.761262596e-01f));
        q = n_fma(q, z, CF(5.920502488e-08f));
        r = n_sel(small, n_fma(a, CF(1.128379107e+00f), n_mul(a, q)), r);
    }
    return r;
}
VAI vfn pw_erfc(vfn a, vfn b, vfn c, const float *p) { (void)b, (void)c, (void)p; return m_erfc(a); }
VAI vfn pw_log1p(vfn a, vfn b, vfn c, const float *p) { (void)b, (void)c, (void)p; return m_log1p(a); }
/* sigmoid(x) = 1 / (1 + exp(-x)) */
VAI vfn m_sigmoid(vfn x) { return n_div(CF(1.0f), n_add(CF(1.0f), m_exp(n_neg(x)))); }
VAI vfn pw_sigmoid(vfn a, vfn b, vfn c, const float *p) { (void)b, (void)c, (void)p; return m_sigmoid(a); }
/* silu(x) = x / (1 + exp(-x)) */
VAI vfn pw_silu(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    return n_div(a, n_add(CF(1.0f), m_exp(n_neg(a))));
}
/* gelu(x) = x Phi(x), Phi the normal distribution function; with a = |x|,
   x Phi(x) = x - a Phi(-a) for x >= 0 and -a Phi(-a) for x < 0.
   a < 3.875: -Phi(-a) = Q_k(t), k = rint(4a), t = 4a - k (both exact), Q_k the degree-6 row
   k of pw_gelu_q (16 pieces, relative error 2^-24.8); gelu = fma(a, Q_k(t), x < 0 ? +0 : x).
   a >= 3.875: a Phi(-a) = F(u) exp(-a^2 / 2) with u = 1 / a, F of degree 6 (relative error
   2^-27), a^2 / 2 exactly as hi + lo by fma and lo added to exp's reduced argument, 2^n in
   two factors (subnormal results round once); gelu = x < 0 ? -w : x - w, a taken as 18
   above 18 (w = +0 there), so gelu(inf) = inf, gelu(-inf) = -0, NaN stays NaN.
   Coefficients: tools/fit_pointwise.py gelu. The tail runs only for the vectors of a
   bundle with a lane that needs it (the same bits): activations often hold a few lanes
   past 3.875 (~1% of MiniLM's), which would otherwise send a third of the bundles there. */
static const float pw_gelu_q[7][16] = {
    {-5.000000000e-01f, -4.012936652e-01f, -3.085375428e-01f, -2.266273499e-01f, -1.586552560e-01f,
     -1.056497768e-01f, -6.680720299e-02f, -4.005915672e-02f, -2.275013179e-02f, -1.222447306e-02f,
     -6.209665444e-03f, -2.979763318e-03f, -1.349898055e-03f, -5.770250573e-04f, -2.326290851e-04f,
     -8.841728413e-05f},
    {9.973557293e-02f, 9.666702896e-02f, 8.801633120e-02f, 7.528435439e-02f, 6.049268320e-02f,
     4.566227272e-02f, 3.237939999e-02f, 2.156933025e-02f, 1.349774189e-02f, 7.934913039e-03f,
     4.382075276e-03f, 2.273390768e-03f, 1.107962104e-03f, 5.072620115e-04f, 2.181706805e-04f,
     8.814891771e-05f},
    {-7.954130865e-08f, -3.021466313e-03f, -5.500743166e-03f, -7.058070507e-03f, -7.561448961e-03f,
     -7.134527899e-03f, -6.071025971e-03f, -4.718301352e-03f, -3.374446649e-03f, -2.231668448e-03f,
     -1.369391452e-03f, -7.814731798e-04f, -4.154843336e-04f, -2.060742554e-04f, -9.544930072e-05f,
     -4.131984679e-05f},
    {-1.038184622e-03f, -9.439540445e-04f, -6.876459229e-04f, -3.430025827e-04f, -6.016770016e-08f,
     2.674927819e-04f, 4.215657827e-04f, 4.633942444e-04f, 4.218014947e-04f, 3.357798851e-04f,
     2.396404161e-04f, 1.554038463e-04f, 9.232980665e-05f, 5.052781489e-05f, 2.556660547e-05f,
     1.199423514e-05f},
    {-2.913446451e-06f, 5.259140016e-05f, 7.595287025e-05f, 9.117302397e-05f, 7.743443712e-05f,
     5.142681039e-05f, 2.263241913e-05f, -1.424945367e-06f, -1.745908048e-05f, -2.422018224e-05f,
     -2.324345769e-05f, -1.861325291e-05f, -1.299731321e-05f, -8.125659406e-06f, -4.601861292e-06f,
     -2.380480282e-06f},
    {1.505919590e-05f, 7.903267942e-06f, 4.609458756e-06f, -5.113223551e-07f, -3.664475344e-06f,
     -5.543956831e-06f, -5.530156159e-06f, -4.175998129e-06f, -2.192739885e-06f, -4.145402386e-07f,
     6.654647109e-07f, 1.109050686e-06f, 1.082959898e-06f, 8.465671044e-07f, 5.665495451e-07f,
     3.343565993e-07f},
    {-3.661547453e-06f, -1.686514406e-05f, 6.528474842e-06f, -4.585487204e-06f, 2.789754717e-06f,
     4.792277650e-06f, 2.812455705e-06f, 2.585435155e-08f, 2.969413337e-08f, 8.363065831e-07f,
     2.721997134e-07f, 1.269363850e-07f, 4.266377918e-09f, -2.611061234e-08f, -3.623989997e-08f,
     -3.273138915e-08f},
};
/* gelu's tail for every lane: x < 0 ? -w : x - w, w = F(1/a) exp(-a^2 / 2), a = min(|x|, 18) */
VAI vfn m_gelu_tail(vfn a, vfn ax) {
    vfn ac = n_sel(n_lt(ax, CF(18.0f)), ax, CF(18.0f));
    vfn u = n_div(CF(1.0f), ac);
    vfn f = n_fma(u, CF(2.045997143e+00f), CF(-3.276451588e+00f));
    f = n_fma(f, u, CF(1.859809995e+00f));
    f = n_fma(f, u, CF(-7.813441008e-02f));
    f = n_fma(f, u, CF(-3.935392201e-01f));
    f = n_fma(f, u, CF(-2.021454420e-04f));
    f = n_fma(f, u, CF(3.989454210e-01f));
    vfn sq = n_mul(ac, ac), sq_lo = n_fma(ac, ac, n_neg(sq));
    vfn nn, e = m_exp_reduce(n_mul(sq, CF(-0.5f)), &nn);
    e = m_exp_poly(n_fma(sq_lo, CF(-0.5f), e));
    vfn w = m_mul_pow2(n_mul(f, e), nn);
    return n_sel(n_isnan(a), a, n_sel(n_lt(a, CF(0.0f)), n_neg(w), n_sub(a, w)));
}
VAI vfn pw_gelu(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vfn ax = n_abs(a), a4 = n_mul(ax, CF(4.0f));
    vmn near = n_lt(ax, CF(3.875f));
    int all_near = m_alln(near);
    vfn k = n_rint(a4);
    if (!all_near) k = n_sel(n_lt(a4, CF(15.0f)), k, CF(15.0f));
    vfn t = n_sub(a4, k);
    vin i = n_cvt(k);
    vfn q = n_lookup16(pw_gelu_q[6], i);
    for (int d = 5; d >= 0; d--) q = n_fma(q, t, n_lookup16(pw_gelu_q[d], i));
    vfn r = n_fma(ax, q, n_sel(n_lt(a, CF(0.0f)), CF(0.0f), a));
    if (all_near) return r;
    /* the tail per vector, only where a lane needs it: the vector is repeated across a
       bundle (the compiler computes the repeated lanes once) */
    VEACH if (m_any(m_not(near.v[u_]))) {
        vfn av, axv;
        for (int w = 0; w < VN; w++) av.v[w] = a.v[u_], axv.v[w] = ax.v[u_];
        r.v[u_] = v_sel(near.v[u_], r.v[u_], m_gelu_tail(av, axv).v[0]);
    }
    return r;
}
/* gelu_tanh(x) = (0.5 x)(1 + tanh(0.797884561 fma(0.044715 x, x x, x))) */
VAI vfn pw_gelu_tanh(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vfn u = n_mul(CF(0.797884561f), n_fma(n_mul(CF(0.044715f), a), n_mul(a, a), a));
    return n_mul(n_mul(CF(0.5f), a), n_add(CF(1.0f), m_tanh(u)));
}
/* rsqrt(x) = 1 / sqrt(x) */
VAI vfn pw_rsqrt(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    return n_div(CF(1.0f), n_sqrt(a));
}
/* elu(x; p0 = scale, p1 = input_scale, p2 = alpha * scale (rounded once from double)):
   x > 0 ? x * p0 : expm1(x * p1) * p2   (celu and selu are elu with their constants) */
VAI vfn pw_elu(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c;
    vfn neg = n_mul(m_expm1(n_mul(a, CF(p[1]))), CF(p[2]));
    return n_sel(n_gt(a, n_set1(0.0f)), n_mul(a, CF(p[0])), neg);
}
/* softplus(x; beta, threshold): z = x * beta; z > threshold ? x : log1p(exp(z)) / beta */
VAI vfn m_softplus(vfn a, float beta, float threshold) {
    vfn z = n_mul(a, CF(beta));
    vfn soft = n_div(m_log1p(m_exp(z)), CF(beta));
    return n_sel(n_gt(z, CF(threshold)), a, soft);
}
VAI vfn pw_softplus(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c;
    return m_softplus(a, p[0], p[1]);
}
/* mish(x) = x * tanh(softplus(x; 1, 20)) */
VAI vfn pw_mish(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    return n_mul(a, m_tanh(m_softplus(a, 1.0f, 20.0f)));
}
/* softshrink(x; l) = x > l ? x - l : (x < -l ? x + l : x * 0)  (x * 0 keeps NaN and sign) */
VAI vfn pw_softshrink(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c;
    vfn l = CF(p[0]), nl = CF(-p[0]);
    vfn inner = n_sel(n_lt(a, nl), n_add(a, l), n_mul(a, CF(0.0f)));
    return n_sel(n_gt(a, l), n_sub(a, l), inner);
}
/* sinh(x) = copysign(|x| > 20 ? (E / 2) E : (e + e / (e + 1)) / 2, x) with e = expm1(|x|),
   E = exp(|x| / 2) (finite up to sinh's own overflow); the halvings are products by 0.5 */
VAI vfn pw_sinh(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vfn x = n_abs(a), e = m_expm1(x);
    vfn small = n_mul(CF(0.5f), n_add(e, n_div(e, n_add(e, CF(1.0f)))));
    vfn half = m_exp(n_mul(x, CF(0.5f)));
    return n_copysign(n_sel(n_gt(x, CF(20.0f)), n_mul(n_mul(half, CF(0.5f)), half), small), a);
}
/* cosh(x) = |x| > 20 ? (E / 2) E : (exp(|x|) + 1 / exp(|x|)) / 2 */
VAI vfn pw_cosh(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vfn x = n_abs(a), e = m_exp(x);
    vfn half = m_exp(n_mul(x, CF(0.5f)));
    vfn small = n_mul(CF(0.5f), n_add(e, n_div(CF(1.0f), e)));
    return n_sel(n_gt(x, CF(20.0f)), n_mul(n_mul(half, CF(0.5f)), half), small);
}
/* atanh(x) = copysign(log1p(2|x| / (1 - |x|)) / 2, x) */
VAI vfn pw_atanh(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vfn x = n_abs(a);
    return n_copysign(n_mul(CF(0.5f), m_log1p(n_div(n_mul(CF(2.0f), x), n_sub(CF(1.0f), x)))), a);
}
/* add(a, b; alpha) = fma(b, alpha, a): a + alpha b rounded once (sub is add with -alpha) */
VAI vfn pw_add(vfn a, vfn b, vfn c, const float *p) { (void)c; return n_fma(b, CF(p[0]), a); }
/* rsub(a, b; alpha) = b - alpha a = fma(a, -alpha, b) */
VAI vfn pw_rsub(vfn a, vfn b, vfn c, const float *p) { (void)c; return n_fma(a, CF(-p[0]), b); }
/* addcmul(a, b, c; value) = fma(b c, value, a): the product rounded, then one fma */
VAI vfn pw_addcmul(vfn a, vfn b, vfn c, const float *p) { return n_fma(n_mul(b, c), CF(p[0]), a); }
/* addcdiv(a, b, c; value) = fma(b / c, value, a) */
VAI vfn pw_addcdiv(vfn a, vfn b, vfn c, const float *p) { return n_fma(n_div(b, c), CF(p[0]), a); }
/* lerp(a, b, w) = |w| < 0.5 ? fma(w, b - a, a) : fma(a - b, 1 - w, b)  (torch's two branches,
   each rounded once after the difference) */
VAI vfn pw_lerp(vfn a, vfn b, vfn w, const float *p) {
    (void)p;
    vfn d = n_sub(b, a);
    vfn lo = n_fma(w, d, a), hi = n_fma(n_neg(d), n_sub(CF(1.0f), w), b);
    return n_sel(n_lt(n_abs(w), CF(0.5f)), lo, hi);
}

/* ---- exponentials and logarithms (pointwise_math.h: m_log2_df, m_exp2_df) */
/* exp2(x) = 2^x */
VAI vfn pw_exp2(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    return m_exp2_df(a, CF(0.0f));
}
/* log's special values are selected only where some lane needs them: a bundle of
   positive finite normals splits x without the subnormal scaling (the same bits) */
VAI vfn pw_log_general(vfn a) {
    vfn k;
    vdf lnm = m_ln_poly(a, &k);
    return m_log_special(a, df_round(m_log_b(k, lnm, LOG_E)));
}
/* log(x) = k ln 2 + ln m in double-float (m_log_b), ln m by m_ln_poly (no division),
   rounded once */
VAI vfn pw_log(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    if (!m_alln_normal(a)) return pw_log_general(a);
    vin ks;
    vfn f = n_sub(m_split_normal(a, &ks), CF(1.0f));
    return df_round(m_log_b(n_itof(ks), m_ln_poly_f(f), LOG_E));
}
/* The log table (python tools/fit_pointwise.py logb): piece i of m in [0.703125, 1.40625)
   by bits 19..22 of bits(m) - 0x3f340000; rows invc (1 / the piece's centre as a float32;
   1 for the piece around 1, so that log_b(c) = 0 there), then log_b(1 / invc) as hi, lo
   for b = e, 2 and 10 */
static const float pw_log_t[7][16] = {
    {1.391304374e+00f, 1.333333373e+00f, 1.279999971e+00f, 1.230769277e+00f, 1.185185194e+00f, 1.142857194e+00f, 1.103448272e+00f, 1.066666722e+00f, 1.032258034e+00f, 1.000000000e+00f, 9.411764741e-01f, 8.888888955e-01f, 8.421052694e-01f, 8.000000119e-01f, 7.619047761e-01f, 7.272727489e-01f},
    {-3.302417099e-01f, -2.876821160e-01f, -2.468600571e-01f, -2.076393962e-01f, -1.698990464e-01f, -1.335314363e-01f, -9.844006598e-02f, -6.453857571e-02f, -3.174866736e-02f, 0.000000000e+00f, 6.062461808e-02f, 1.177830249e-01f, 1.718502492e-01f, 2.231435329e-01f, 2.719337046e-01f, 3.184536994e-01f},
    {4.450557700e-09f, 1.377754355e-08f, 1.535771066e-09f, -5.840503636e-09f, 2.175073011e-09f, -1.003885641e-09f, -3.108004742e-09f, 2.417232192e-09f, -1.152905327e-09f, 0.000000000e+00f, 7.905949333e-12f, 3.298690654e-09f, 3.048216402e-10f, 3.540848725e-09f, -7.757448905e-09f, 1.965855700e-09f},
    {-4.764380753e-01f, -4.150375426e-01f, -3.561437726e-01f, -2.995603383e-01f, -2.451125085e-01f, -1.926451474e-01f, -1.420190036e-01f, -9.310948104e-02f, -4.580364749e-02f, 0.000000000e+00f, 8.746283501e-02f, 1.699249893e-01f, 2.479275018e-01f, 3.219280839e-01f, 3.923173845e-01f, 4.594315886e-01f},
    {4.488755145e-09f, 3.070523280e-10f, -5.376446399e-09f, 2.655258013e-09f, -5.006196152e-11f, 5.006929094e-09f, 4.131714526e-09f, 1.402773786e-09f, 8.708941901e-10f, 0.000000000e+00f, 8.620151815e-10f, 1.350707213e-09f, 8.969937570e-10f, -1.050710541e-08f, 1.142504136e-08f, -1.300811459e-08f},
    {-1.434221566e-01f, -1.249387488e-01f, -1.072099581e-01f, -9.017664939e-02f, -7.378621399e-02f, -5.799196661e-02f, -4.275197908e-02f, -2.802874707e-02f, -1.378827170e-02f, 0.000000000e+00f, 2.632893622e-02f, 5.115251988e-02f, 7.463361323e-02f, 9.691000730e-02f, 1.180993021e-01f, 1.383026838e-01f},
    {6.180663981e-09f, -7.743712338e-10f, -1.804548400e-09f, 2.863833171e-09f, -3.402638615e-09f, 2.130239041e-10f, 2.797459209e-10f, 8.163901777e-10f, 1.527264981e-10f, 0.000000000e+00f, 8.852607536e-10f, -6.700900390e-10f, 1.832360264e-09f, -7.614283093e-10f, 1.935178018e-09f, 1.393036242e-09f},
};
/* x = m 2^k for the log table: k as a float in *kf, the piece in *i, m returned; x > 0
   finite (other lanes give garbage for the callers to select away). Subnormals are scaled
   by 2^23 first, only when some lane is one (*normal = 0; the same bits). */
VAI vfn m_log_t_split(vfn x, vfn *kf, vin *i, int *normal) {
    *normal = m_alln_normal(x);
    vmn sub = n_lt(x, CF(0x1p-126f));
    vfn xs = *normal ? x : n_mul(x, n_sel(sub, CF(0x1p23f), CF(1.0f)));
    vin t = ni_sub(n_bits(xs), ni_set1(0x3f340000)), k = ni_sra(t, 23);
    *i = ni_and(ni_srl(t, 19), ni_set1(15));
    *kf = n_itof(k);
    if (!*normal) *kf = n_sub(*kf, n_sel(sub, CF(23.0f), CF(0.0f)));
    return n_from_bits(ni_sub(n_bits(xs), ni_sll(k, 23)));
}
/* log_b(m 2^k + ml 2^k) for b = e (base 0), 2 (1) or 10 (2), in float32 pieces, from
   m_log_t_split's m and k and the piece i; ml is 0 or a low part already scaled by 2^-k,
   below ulp(m). r = m invc - 1 = rh + rl exactly (p = m invc, rl = fma(m, invc, -p), rh =
   p - 1 exact by Sterbenz; abs(r) <= 0.0313), and log_b = a + b + lo with
   a = k log_b(2) + log_b(c) (Fast2Sum of k log_b(2)_hi, exact and larger unless 0, and
   log_b(c)_hi; both low parts into a.lo, so equal k and piece give equal a), b =
   log_b(e)_hi rh (an exact product), and lo = rh (log_b(e)_lo + rh R(rh)) +
   log_b(e)_hi rl (1 - rh), R a degree-3 fit (relative error of the whole 2^-31); ml is
   read only where has_lo.
   abs(a.hi) >= abs(b.hi) wherever a.hi is not 0 (the smallest nonzero log_b(c) is 1.47
   times the largest log_b(e) rh beside it), so a + b can be a Fast2Sum. */
typedef struct { vdf a, b; vfn lo; } ltf;
VAI ltf m_log_t_pieces(vfn m, vfn kf, vin i, vfn ml, const int has_lo, const int base) {
    static const float c0[3][2] = {{1.0f, 0.0f}, {0x1.715476p+0f, 0x1.4ae0cp-26f}, {0x1.bcb7b2p-2f, -0x1.5b235ep-27f}};
    static const float l2[3][2] = {{0x1.62e4p-1f, 0x1.7f7d1cp-20f}, {1.0f, 0.0f}, {0x1.344p-2f, 0x1.3509f8p-18f}};
    static const float rc[3][4] = {{-4.999999702e-01f, 3.333337009e-01f, -2.501724064e-01f, 1.994444430e-01f},
                                   {-7.213474512e-01f, 4.808983505e-01f, -3.609552681e-01f, 2.883897424e-01f},
                                   {-2.171472162e-01f, 1.447648108e-01f, -1.086682826e-01f, 8.692997694e-02f}};
    vfn ic = n_lookup16(pw_log_t[0], i);
    vfn lh = n_lookup16(pw_log_t[2 * base + 1], i), ll = n_lookup16(pw_log_t[2 * base + 2], i);
    vfn pr = n_mul(m, ic), rl = n_fma(m, ic, n_neg(pr)), rh = n_sub(pr, CF(1.0f));
    if (has_lo) rl = n_fma(ml, ic, rl);
    vfn rr = n_fma(rh, CF(rc[base][3]), CF(rc[base][2]));
    rr = n_fma(rr, rh, CF(rc[base][1]));
    rr = n_fma(rr, rh, CF(rc[base][0]));
    ltf t;
    t.a = df_fast_sum(n_mul(kf, CF(l2[base][0])), lh);
    t.a.lo = n_add(t.a.lo, ll);
    if (base != 1) t.a.lo = n_fma(kf, CF(l2[base][1]), t.a.lo);  /* log2: k log2(2) is exact */
    vfn crl = rl;
    if (base == 0) {  /* ln: log_b(e) = 1, its product with rh exact */
        t.b = df_make(rh, CF(0.0f));
    } else {
        t.b = df_two_prod(CF(c0[base][0]), rh);
        crl = n_mul(CF(c0[base][0]), rl);
    }
    t.lo = n_fma(rh, n_fma(rh, rr, CF(c0[base][1])), n_fma(n_neg(crl), rh, crl));
    return t;
}
/* log2(x), log10(x): the pieces summed (a and b by Fast2Sum, then the low parts), rounded
   once; log's special values, selected only where some lane needs them */
VAI vfn m_log_b_table(vfn x, const int base) {
    vfn kf;
    vin i;
    int normal;
    vfn m = m_log_t_split(x, &kf, &i, &normal);
    ltf t = m_log_t_pieces(m, kf, i, CF(0.0f), 0, base);
    vdf s = df_fast_sum(t.a.hi, t.b.hi);
    vfn y = n_add(s.hi, n_add(n_add(s.lo, t.a.lo), n_add(t.b.lo, t.lo)));
    return normal ? y : m_log_special(x, y);
}
VAI vfn pw_log2(vfn a, vfn b, vfn c, const float *p) { (void)b, (void)c, (void)p; return m_log_b_table(a, 1); }
VAI vfn pw_log10(vfn a, vfn b, vfn c, const float *p) { (void)b, (void)c, (void)p; return m_log_b_table(a, 2); }
/* x ln(xh + xl) as x ln_hi + x ln_lo, one fma (x ln_hi where that is infinite); xh's log
   special values where xh is not positive and finite (xlogy, xlog1py) */
VAI vfn m_x_ln(vfn x, vfn xh, vfn xl) {
    vdf l = df_norm(m_ln_df(xh, xl, 1));
    vmn fin = m_andn(n_gt(xh, CF(0.0f)), n_lt(xh, CF(INFINITY)));
    vfn h = m_log_special(xh, l.hi), p = n_mul(x, h);
    vfn r = n_fma(x, h, n_mul(x, n_sel(fin, l.lo, CF(0.0f))));
    return n_sel(n_eq(n_abs(p), CF(INFINITY)), p, r);
}
/* xlogy(x, y) = y NaN ? NaN : (x == 0 ? 0 : x log y) */
VAI vfn pw_xlogy(vfn a, vfn b, vfn c, const float *p) {
    (void)c, (void)p;
    vfn r = n_sel(n_eq(a, CF(0.0f)), CF(0.0f), m_x_ln(a, b, CF(0.0f)));
    return n_sel(n_isnan(b), b, r);
}
/* xlog1py(x, y) = y NaN ? NaN : (x == 0 ? 0 : x log(1 + y)), 1 + y as an exact hi + lo;
   x y for |y| < 2^-60 (log1p(y) = y there, and y would underflow inside ln) */
VAI vfn pw_xlog1py(vfn a, vfn b, vfn c, const float *p) {
    (void)c, (void)p;
    vdf u = df_two_sum(CF(1.0f), b);
    vmn lin = m_orn(n_eq(b, CF(INFINITY)), n_lt(n_abs(b), CF(0x1p-60f)));
    vfn r = n_sel(lin, n_mul(a, b), m_x_ln(a, u.hi, u.lo));
    r = n_sel(n_eq(a, CF(0.0f)), CF(0.0f), r);
    return n_sel(n_isnan(b), b, r);
}
/* logit(x; eps) = log(z / (1 - z)), z = x clamped to [eps, 1 - eps] when eps >= 0 (torch's
   x < lo ? lo : (x > hi ? hi : x), hi = 1 - eps in float32); the quotient in
   double-float, so logit is accurate near x = 1/2 */
VAI vfn pw_logit(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c;
    if (p[0] >= 0.0f) {
        vfn lo = CF(p[0]), hi = CF(1.0f - p[0]);
        a = n_sel(n_lt(a, lo), lo, n_sel(n_gt(a, hi), hi, a));
    }
    vdf q = df_div(df_make(a, CF(0.0f)), df_two_sum(CF(1.0f), n_neg(a)));
    return m_log_special(q.hi, df_round(m_ln_df(q.hi, q.lo, 1)));
}
/* m + log_b(1 + e) for e = b^-|a - b| (logaddexp, logaddexp2): the log in double-float
   (m_log1p_b), the sum rounded once; m where m is infinite */
VAI vfn m_plus_log1p(vfn m, vdf l) {
    return n_sel(n_eq(n_abs(m), CF(INFINITY)), m, df_round(df_acc(l, m)));
}
/* logsigmoid(x) = min(x, 0) - ln(1 + e), e = exp(-|x|) (torch's formula): 1 + e as an exact
   h + l, ln(h + l) in m_log_t_pieces, min(x, 0) - a - b by TwoSum and the low parts,
   rounded once, so only exp's rounding and the last one remain; -inf at -inf, NaN kept */
VAI vfn pw_logsigmoid(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vfn mn = n_sel(n_lt(a, CF(0.0f)), a, CF(0.0f)), kf;
    vdf u = df_two_sum(CF(1.0f), m_exp(n_neg(n_abs(a))));
    vin i;
    int normal;
    vfn m = m_log_t_split(u.hi, &kf, &i, &normal);
    ltf t = m_log_t_pieces(m, kf, i, n_mul(u.lo, n_pow2i(ni_sub(ni_set1(0), n_cvt(kf)))), 1, 0);
    vdf da = df_two_sum(mn, n_neg(t.a.hi)), s = df_two_sum(da.hi, n_neg(t.b.hi));
    vfn lo = n_sub(n_add(s.lo, da.lo), n_add(n_add(t.a.lo, t.b.lo), t.lo));
    vfn y = n_sel(n_eq(mn, CF(-INFINITY)), mn, n_add(s.hi, lo));
    return n_sel(n_isnan(a), a, y);
}
/* clamp(x + 3, 0, 6): compares and selects, NaN kept */
VAI vfn m_relu6_shift3(vfn a) {
    vfn t = n_add(a, CF(3.0f));
    t = n_sel(n_lt(t, CF(0.0f)), CF(0.0f), t);
    return n_sel(n_gt(t, CF(6.0f)), CF(6.0f), t);
}
/* hardswish(x) = (x clamp(x + 3, 0, 6)) / 6 */
VAI vfn pw_hardswish(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    return n_div(n_mul(a, m_relu6_shift3(a)), CF(6.0f));
}
/* hardsigmoid(x) = clamp(x + 3, 0, 6) / 6 */
VAI vfn pw_hardsigmoid(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    return n_div(m_relu6_shift3(a), CF(6.0f));
}
/* pow(x, y), one formula for every form (tensor or scalar exponent or base), C99 Annex F:
   |x|^y = exp2(y log2|x|) with log2 and the product in double-float; negative x: odd
   integer y negates, non-integer y gives NaN (finite x); then, per element,
   y = 2: x x, 3: (x x) x, 1: x, -1: 1 / x, -2: 1 / (x x), 0.5: sqrt|x|, -0.5: 1 / sqrt|x|
   (|x| so that pow(-0, .5) = +0 and pow(-inf, .5) = +inf as C99 says; torch's scalar-exponent
   path gives sqrt's -0 and NaN there), y = 0 or x = 1: 1 (even for NaN), x = -1 and
   y = +-inf: 1. As in torch's scalar-exponent path, pow(x, -2) = 1 / (x x) is 0 once x x
   overflows (|x| > 1.8e19), where the exact value would be subnormal. */
VAI vfn pw_pow(vfn x, vfn y, vfn c, const float *p) {
    (void)c, (void)p;
    vfn ax = n_abs(x);
    vdf l = m_log2_df(ax);
    vmn fin = m_andn(n_gt(ax, CF(0.0f)), n_lt(ax, CF(INFINITY)));
    l = df_make(m_log_special(ax, l.hi), n_sel(fin, l.lo, CF(0.0f)));
    vdf t = df_two_prod(y, l.hi);
    t.lo = n_fma(y, l.lo, t.lo);
    vfn r = m_exp2_df(t.hi, t.lo);
    vmn yint = n_eq(n_trunc(y), y);                                /* +-inf count as even */
    vfn hy = n_mul(y, CF(0.5f));
    vmn yodd = m_andn(yint, n_ne(n_trunc(hy), hy));
    vmn xneg = ni_gt(ni_set1(0), n_bits(x));                        /* sign bit, -0 included */
    r = n_sel(m_andn(xneg, yodd), n_neg(r), r);
    vfn x2 = n_mul(x, x), sq = n_sqrt(ax);
    r = n_sel(n_eq(y, CF(2.0f)), x2, r);
    r = n_sel(n_eq(y, CF(3.0f)), n_mul(x2, x), r);
    r = n_sel(n_eq(y, CF(1.0f)), x, r);
    r = n_sel(n_eq(y, CF(-1.0f)), n_div(CF(1.0f), x), r);
    r = n_sel(n_eq(y, CF(-2.0f)), n_div(CF(1.0f), x2), r);
    r = n_sel(n_eq(y, CF(0.5f)), sq, r);
    r = n_sel(n_eq(y, CF(-0.5f)), n_div(CF(1.0f), sq), r);
    vmn negfin = m_andn(n_lt(x, CF(0.0f)), n_gt(x, CF(-INFINITY)));
    r = n_sel(m_andn(negfin, m_notn(yint)), CF(NAN), r);
    vmn one = m_orn(n_eq(y, CF(0.0f)), n_eq(x, CF(1.0f)));
    one = m_orn(one, m_andn(n_eq(x, CF(-1.0f)), n_eq(n_abs(y), CF(INFINITY))));
    return n_sel(one, CF(1.0f), r);
}
/* max(a, b) by compare and select, and torch's a == b == +-inf case of logaddexp */
VAI vfn m_max_sel(vfn a, vfn b) { return n_sel(n_gt(a, b), a, b); }
VAI vmn m_same_inf(vfn a, vfn b) { return m_andn(n_eq(a, b), n_eq(n_abs(a), CF(INFINITY))); }
/* logaddexp(a, b) = a == b == +-inf ? a : max(a, b) + log1p(exp(-|a - b|)), the log1p in
   double-float and the sum rounded once; NaN in, NaN out */
VAI vfn pw_logaddexp(vfn a, vfn b, vfn c, const float *p) {
    (void)c, (void)p;
    vfn r = m_plus_log1p(m_max_sel(a, b), m_log1p_b(m_exp(n_neg(n_abs(n_sub(a, b)))), LOG_E));
    r = n_sel(n_unord(a, b), CF(NAN), r);
    return n_sel(m_same_inf(a, b), a, r);
}
/* logaddexp2(a, b) = a == b == +-inf ? a : max(a, b) + log2(1 + exp2(-|a - b|)), the log2 in
   double-float (torch: log1p(exp2(.)) / ln 2) and the sum rounded once */
VAI vfn pw_logaddexp2(vfn a, vfn b, vfn c, const float *p) {
    (void)c, (void)p;
    vfn e = m_exp2_df(n_neg(n_abs(n_sub(a, b))), CF(0.0f));
    vfn r = m_plus_log1p(m_max_sel(a, b), m_log1p_b(e, LOG_2));
    r = n_sel(n_unord(a, b), CF(NAN), r);
    return n_sel(m_same_inf(a, b), a, r);
}
/* hypot(a, b) = sqrt(a^2 + b^2), the squares and their sum in double-float after scaling
   both by 2^k (k = 127 - the larger's exponent field, in two exact factors: the larger
   lands in [1, 2), or above 2^-23 if subnormal), so nothing overflows or underflows that
   matters, then by 2^-k; +inf if either is infinite (even with a NaN), else NaN if either
   is NaN */
VAI vfn pw_hypot(vfn a, vfn b, vfn c, const float *p) {
    (void)c, (void)p;
    vfn ax = n_abs(a), ay = n_abs(b);
    vmn xbig = n_gt(ax, ay);
    vfn hi = n_sel(xbig, ax, ay), lo = n_sel(xbig, ay, ax);
    vin k = ni_sub(ni_set1(127), ni_srl(n_bits(hi), 23)), k1 = ni_sra(k, 1), k2 = ni_sub(k, k1);
    vfn s1 = n_pow2i(k1), s2 = n_pow2i(k2);
    hi = n_mul(n_mul(hi, s1), s2), lo = n_mul(n_mul(lo, s1), s2);
    vdf r = df_sqrt(df_add(df_two_prod(hi, hi), df_two_prod(lo, lo)));
    vfn u1 = n_pow2i(ni_sub(ni_set1(0), k1)), u2 = n_pow2i(ni_sub(ni_set1(0), k2));
    vfn h = df_round(df_make(n_mul(n_mul(r.hi, u1), u2), n_mul(n_mul(r.lo, u1), u2)));
    h = n_sel(n_eq(hi, CF(0.0f)), CF(0.0f), h);
    h = n_sel(n_unord(a, b), CF(NAN), h);
    return n_sel(m_orn(n_eq(ax, CF(INFINITY)), n_eq(ay, CF(INFINITY))), CF(INFINITY), h);
}

/* ---- trigonometric (pointwise_trig.h) */
/* NaN where x is +-inf or NaN, else y */
VAI vfn m_finite_or_nan(vfn x, vfn y) { return n_sel(n_lt(n_abs(x), CF(INFINITY)), y, CF(NAN)); }
/* sin r = r (1 + z S(z)) in double, z = r^2, S a degree-4 fit (relative error 2^-35.6 on
   abs(r) <= 1.5713; python tools/fit_pointwise.py double) */
VAI vd2 m_sin_d(vd2 r) {
    vd2 z = vd2_mul(r, r);
    vd2 w = vd2_fma(z, vd2_set1(-2.390887783859376e-08), vd2_set1(2.7526600329158237e-06));
    w = vd2_fma(z, w, vd2_set1(-0.00019840893796399596));
    w = vd2_fma(z, w, vd2_set1(0.008333331321616715));
    w = vd2_fma(z, w, vd2_set1(-0.16666666631697388));
    return vd2_mul(r, vd2_fma(z, w, vd2_set1(1.0)));
}
/* sin(x) for abs(x) < 2^12: q = rint(x (1/pi)_f) + 0 (so that q = +0, not -0), r1 = x - q P
   exactly (one fma; P = 0x1.921fb4p+1, the float below pi, and r1 a multiple of 2^-23 below
   2), then in double r = r1 - q (pi - P) (relative error 2^-52, abs(r) <= 1.5713; both
   parts of pi positive, so x = -0 keeps its sign), sin r by m_sin_d, rounded once to
   float32 and negated for odd q. */
VAI vfn m_sin_near(vfn x) {
    vfn q = n_add(n_rint(n_mul(x, CF(0x1.45f306p-2f))), CF(0.0f));
    vfn r1 = n_fma(q, CF(-0x1.921fb4p+1f), x), y;
    VEACH {
        vd2 r = vd2_fma(vd2_from(q.v[u_]), vd2_set1(-0x1.4442d18469899p-23), vd2_from(r1.v[u_]));
        y.v[u_] = vd2_to(m_sin_d(r));
    }
    return n_from_bits(ni_xor(n_bits(y), ni_sll(n_cvt(q), 31)));
}
/* sin(x) elsewhere: x = q pi/2 + r (m_rem_pio2), sin x = +-sin r or +-cos r by q (m_sin_q),
   rounded once; NaN at +-inf and NaN. Each lane takes the one formula its abs(x) picks;
   the far one runs only when some lane needs it (the same bits). */
VAI vfn pw_sin(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vmn near = n_lt(n_abs(a), CF(4096.0f));
    if (m_alln(near)) return m_sin_near(a);
    vfn q;
    vdf r = m_rem_pio2(a, &q), s, co;
    m_sincos(r, &s, &co);
    vfn y = m_finite_or_nan(a, df_round(m_sin_q(s, co, q)));
    return n_sel(near, m_sin_near(n_sel(near, a, CF(0.0f))), y);
}
/* cos(x) for abs(x) < 2^12: x = (q + 1/2) pi + r with q = floor(x (1/pi)_f), so
   cos x = (-1)^(q+1) sin r; r = x - h pi_1 - h pi_2 in double (h = q + 1/2, pi_1 + pi_2
   = pi to 2^-106; each fma rounds once, relative error 2^-52 in r, abs(r) <= 1.5712),
   sin r by m_sin_d, rounded once to float32, negated for even q */
VAI vfn m_cos_near(vfn x) {
    vfn q = n_floor(n_mul(x, CF(0x1.45f306p-2f))), h = n_add(q, CF(0.5f)), y;
    VEACH {
        vd2 hd = vd2_from(h.v[u_]);
        vd2 r = vd2_fma(hd, vd2_set1(-0x1.921fb54442d18p+1), vd2_from(x.v[u_]));
        r = vd2_fma(hd, vd2_set1(-0x1.1a62633145c07p-53), r);
        y.v[u_] = vd2_to(m_sin_d(r));
    }
    return n_from_bits(ni_xor(n_bits(y), ni_sll(ni_add(n_cvt(q), ni_set1(1)), 31)));
}
/* cos(x) elsewhere: as sin, with m_cos_q */
VAI vfn pw_cos(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vmn near = n_lt(n_abs(a), CF(4096.0f));
    if (m_alln(near)) return m_cos_near(a);
    vfn q;
    vdf r = m_rem_pio2(a, &q), s, co;
    m_sincos(r, &s, &co);
    vfn y = m_finite_or_nan(a, df_round(m_cos_q(s, co, q)));
    return n_sel(near, m_cos_near(n_sel(near, a, CF(0.0f))), y);
}
/* tan(x) for abs(x) < 2^12, in float32 pieces: q = rint(x (2/pi)_f) + 0, r1 = x - q P/2
   exactly (one fma; P/2 = 0x1.921fb4p+0, as in sin), r = r1 - q D as rh + rl (D = pi/2 -
   P/2 in two floats, q D_hi an exact product, TwoSum; abs(r) <= 0.7856), and
   tan r = rh + rh^3 / 3 + rh^5 U(z) + rl (1 + t0^2) (z = rh^2; rh^3 and rh^3 / 3 as exact
   pairs; U a degree-5 fit by tools/fit_pointwise.py tan, relative error of tan 2^-29;
   t0 = tan rh in float32) as th + tl;
   q even: th + tl, rounded once; q odd: -1 / (th + tl) from y0 = -1 / th and one
   correction, y0 + y0 (1 + (th + tl) y0) */
VAI vfn m_tan_near(vfn x) {
    vfn q = n_add(n_rint(n_mul(x, CF(0x1.45f306p-1f))), CF(0.0f));
    vfn r1 = n_fma(q, CF(-0x1.921fb4p+0f), x);
    vdf qd = df_two_prod(q, CF(0x1.4442d2p-24f));
    vdf r = df_two_sum(r1, n_neg(qd.hi));
    vfn rh = r.hi, rl = n_sub(r.lo, n_fma(q, CF(-0x1.ee59dap-50f), qd.lo));
    vdf z = df_two_prod(rh, rh), w = df_two_prod(rh, z.hi);
    w.lo = n_fma(rh, z.lo, w.lo);                                  /* rh^3 */
    vdf w3 = df_two_prod(w.hi, CF(0x1.555556p-2f));               /* rh^3 / 3 */
    w3.lo = n_fma(w.hi, CF(-0x1.555556p-27f), n_fma(w.lo, CF(0x1.555556p-2f), w3.lo));
    vfn u = n_fma(z.hi, CF(4.180626478e-03f), CF(5.275366711e-04f));
    u = n_fma(u, z.hi, CF(1.044839527e-02f));
    u = n_fma(u, z.hi, CF(2.145327069e-02f));
    u = n_fma(u, z.hi, CF(5.402086303e-02f));
    u = n_fma(u, z.hi, CF(1.333308816e-01f));
    vfn s2 = n_mul(n_mul(w.hi, z.hi), u), t0 = n_add(rh, n_add(w3.hi, s2));
    vdf tt = df_fast_sum(rh, w3.hi);
    tt = df_fast_sum(tt.hi, n_add(tt.lo, n_add(w3.lo, n_fma(rl, n_fma(t0, t0, CF(1.0f)), s2))));
    vfn y0 = n_div(CF(-1.0f), tt.hi);
    vfn e = n_fma(tt.lo, y0, n_fma(tt.hi, y0, CF(1.0f)));
    vmn odd = ni_eq(ni_and(n_cvt(q), ni_set1(1)), ni_set1(1));
    vfn y = n_sel(odd, n_fma(y0, e, y0), n_add(tt.hi, tt.lo));
    return n_sel(n_eq(x, CF(0.0f)), x, y);
}
/* tan(x) elsewhere = sin r / cos r (q even) or -cos r / sin r (q odd), the quotient in
   double-float, rounded once; each lane takes the one formula its abs(x) picks, the far
   one only when some lane needs it (the same bits) */
VAI vfn pw_tan(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vmn near = n_lt(n_abs(a), CF(4096.0f));
    if (m_alln(near)) return m_tan_near(a);
    vfn q;
    vdf r = m_rem_pio2(a, &q), s, co;
    m_sincos(r, &s, &co);
    vmn odd = m_orn(n_eq(q, CF(1.0f)), n_eq(q, CF(3.0f)));
    s = df_norm(s), co = df_norm(co);
    vdf t = df_div(df_sel(odd, co, s), df_sel(odd, s, co));
    vfn y = m_finite_or_nan(a, df_round(df_sel(odd, df_neg(t), t)));
    return n_sel(near, m_tan_near(n_sel(near, a, CF(0.0f))), y);
}
/* sinc(x) = sin(pi x) / (pi x), sin(pi x) after the exact reduction m_rem_half, the
   quotient in double-float; 1 for |x| < 2^-14 (1 - (pi x)^2/6 rounds to 1), 0 for
   |x| >= 2^24 (integers), NaN at +-inf */
VAI vfn pw_sinc(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vfn q;
    vdf r = m_rem_half(a, &q), s, co;
    m_sincos(r, &s, &co);
    vfn y = df_round(df_div(df_norm(m_sin_q(s, co, q)), df_mul_f(DF_PI, a)));
    y = n_sel(n_ge(n_abs(a), CF(0x1p24f)), CF(0.0f), y);
    return m_finite_or_nan(a, n_sel(n_lt(n_abs(a), CF(0x1p-14f)), CF(1.0f), y));
}
/* asin(x) = sign(x) (|x| <= 1/2 ? asin t : pi/2 - 2 asin t), t from m_asin_t */
VAI vfn pw_asin(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vfn ax = n_abs(a);
    vmn big = n_gt(ax, CF(0.5f));
    vfn y = m_pi4_plus(n_sel(big, CF(2.0f), CF(0.0f)), n_sel(big, CF(-2.0f), CF(1.0f)), m_asin_t(ax, big));
    return n_copysign(y, a);
}
/* acos(x) = |x| <= 1/2: pi/2 - sign(x) asin t; x > 1/2: 2 asin t; x < -1/2: pi - 2 asin t */
VAI vfn pw_acos(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vfn ax = n_abs(a);
    vmn big = n_gt(ax, CF(0.5f)), neg = n_lt(a, CF(0.0f));
    vfn k = n_sel(big, n_sel(neg, CF(4.0f), CF(0.0f)), CF(2.0f));
    vfn g = n_sel(big, n_sel(neg, CF(-2.0f), CF(2.0f)), n_sel(neg, CF(1.0f), CF(-1.0f)));
    return m_pi4_plus(k, g, m_asin_t(ax, big));
}
/* atan(x) = sign(x) (k pi/4 + atan u), a = abs(x) clamped to 2^30: u = a (k = 0) up to
   tan(pi/8), (a - 1) / (a + 1) (k = 1) up to tan(3pi/8), else -1 / a (k = 2); numerator
   and denominator as exact pairs (TwoSum of a times 0 or 1 and 0 or +-1), u by one
   float32 division (1 / den_hi) and one correction, as u1 + u2 (u1 rounded); atan u =
   u1 + u1 z A(z) + u2 (1 - z) (z = u1^2, m_atan_a; 1 - z: the slope of atan u - u);
   k pi/4 + u1 by Fast2Sum, the low parts added, rounded once. NaN in, NaN out. */
VAI vfn pw_atan(vfn x, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vfn a = n_abs(x);
    a = n_sel(n_gt(a, CF(0x1p30f)), CF(0x1p30f), a);
    vmn big = n_gt(a, CF(0x1.3504f4p+1f)), mid = n_gt(a, CF(0x1.a827ap-2f));
    vfn na = n_sel(big, CF(0.0f), CF(1.0f)), nc = n_sel(mid, CF(-1.0f), CF(0.0f));
    vfn da = n_sel(mid, CF(1.0f), CF(0.0f)), dc = n_sel(big, CF(0.0f), CF(1.0f));
    vdf num = df_two_sum(n_mul(a, na), nc), den = df_two_sum(n_mul(a, da), dc);
    vfn rcp = n_div(CF(1.0f), den.hi), uh = n_mul(num.hi, rcp);
    vfn rho = n_add(n_fma(n_neg(uh), den.hi, num.hi), n_fma(n_neg(uh), den.lo, num.lo));
    vdf u = df_fast_sum(uh, n_mul(rho, rcp));                      /* u rounded, and the rest */
    vfn z = n_mul(u.hi, u.hi);
    vfn pa = m_atan_a(z);
    vfn k = n_sel(big, CF(2.0f), n_sel(mid, CF(1.0f), CF(0.0f)));
    vdf s = df_fast_sum(n_mul(k, CF(0x1.921fb6p-1f)), u.hi);
    vfn lo = n_fma(u.lo, n_sub(CF(1.0f), z), n_fma(n_mul(u.hi, z), pa, s.lo));
    lo = n_fma(k, CF(-0x1.777a5cp-26f), lo);
    return n_copysign(n_add(s.hi, lo), x);
}
/* atan2(y, x): m_atan2 (C99 Annex F signed zeros and infinities) */
VAI vfn pw_atan2(vfn a, vfn b, vfn c, const float *p) {
    (void)c, (void)p;
    return m_atan2(a, b);
}
/* ln(w) + (big ? ln 2 : 0) for w = hi + lo, rounded once (asinh, acosh) */
VAI vfn m_ln_plus_ln2(vdf w, vmn big) {
    vdf l = m_ln_df(w.hi, w.lo, 1);
    return df_round(df_sel(big, df_add(l, DF_LN2), l));
}
/* asinh(x) = sign(x) ln(a + sqrt(a^2 + 1)), a = |x|, the argument in double-float;
   a > 2^12: ln(a) + ln 2 (the dropped 1/(4a^2) is below 2^-26 of it); a < 2^-12: a
   (the dropped a^3/6 is below 2^-25 of it); +-inf and NaN kept */
VAI vfn pw_asinh(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vfn ax = n_abs(a);
    vmn huge = n_gt(ax, CF(0x1p12f));
    vfn as = n_sel(huge, CF(1.0f), ax);
    vdf sq = df_two_prod(as, as), w2 = df_two_sum(CF(1.0f), sq.hi);
    w2.lo = n_add(w2.lo, sq.lo);
    vdf rt = df_sqrt(w2), w = df_two_sum(as, rt.hi);
    w.lo = n_add(w.lo, rt.lo);
    vfn y = m_ln_plus_ln2(df_sel(huge, df_make(ax, CF(0.0f)), w), huge);
    y = n_sel(n_lt(ax, CF(0x1p-12f)), ax, n_sel(n_eq(ax, CF(INFINITY)), ax, y));
    return n_sel(n_isnan(a), a, n_copysign(y, a));
}
/* acosh(x) = ln(x + sqrt((x - 1)(x + 1))), x - 1 exact, the rest in double-float;
   x > 2^12: ln(x) + ln 2; NaN below 1, +inf at +inf */
VAI vfn pw_acosh(vfn a, vfn b, vfn c, const float *p) {
    (void)b, (void)c, (void)p;
    vmn huge = n_gt(a, CF(0x1p12f));
    vfn xs = n_sel(huge, CF(2.0f), a);
    vdf rt = df_sqrt(df_mul_f(df_two_sum(xs, CF(1.0f)), n_sub(xs, CF(1.0f))));
    vdf w = df_two_sum(xs, rt.hi);
    w.lo = n_add(w.lo, rt.lo);
    vfn y = m_ln_plus_ln2(df_sel(huge, df_make(a, CF(0.0f)), w), huge);
    y = n_sel(n_eq(a, CF(INFINITY)), a, y);
    return n_sel(n_ge(a, CF(1.0f)), y, CF(NAN));
}

/* ---- special functions (pointwise_gamma.h) */
VAI vfn pw_erfinv(vfn a, vfn b, vfn c, const float *p) { (void)b, (void)c, (void)p; return m_erfinv(a); }
VAI vfn pw_lgamma(vfn a, vfn b, vfn c, const float *p) { (void)b, (void)c, (void)p; return m_lgamma(a); }
VAI vfn pw_digamma(vfn a, vfn b, vfn c, const float *p) { (void)b, (void)c, (void)p; return m_digamma(a); }

/* ---- backward ops: a = the incoming gradient g, b = the forward input x (or output y).
   Each is torch's derivative formula (aten/src/ATen/native/cpu/Activation.cpp,
   BinaryOpsKernel.cpp) in the same order of operations, over the engine's own exp, tanh,
   erfc and softplus, so it is the derivative of the engine's forward formula. Where
   torch's vector body and scalar tail disagree (NaN or -0 inputs), the vector body's
   choice is taken unless noted. */
/* silu_backward(g, x) = (g s)(1 + x (1 - s)), s = sigmoid(x) */
VAI vfn pw_silu_backward(vfn g, vfn x, vfn c, const float *p) {
    (void)c, (void)p;
    vfn s = m_sigmoid(x);
    return n_mul(n_mul(g, s), n_add(CF(1.0f), n_mul(x, n_sub(CF(1.0f), s))));
}
/* gelu_backward(g, x) = g (cdf + x pdf), cdf = 0.5 erfc(-x / sqrt 2) (the engine's erfc),
   pdf = (1 / sqrt(2 pi)) exp((x x) (-1/2)) */
VAI vfn pw_gelu_backward(vfn g, vfn x, vfn c, const float *p) {
    (void)c, (void)p;
    vfn cdf = n_mul(CF(0.5f), m_erfc(n_mul(x, CF(-0.707106781f))));
    vfn pdf = n_mul(CF(0.398942280f), m_exp(n_mul(n_mul(x, x), CF(-0.5f))));
    return n_mul(g, n_add(cdf, n_mul(x, pdf)));
}
/* gelu_tanh_backward(g, x) = g (0.5 (1 + t) + ((0.5 x)(1 - t t)) k (1 + 0.134145 x x)),
   t = tanh(u), u and k = 0.797884561 as in pw_gelu_tanh (0.134145 = 3 * 0.044715) */
VAI vfn pw_gelu_tanh_backward(vfn g, vfn x, vfn c, const float *p) {
    (void)c, (void)p;
    vfn x2 = n_mul(x, x);
    vfn t = m_tanh(n_mul(CF(0.797884561f), n_fma(n_mul(CF(0.044715f), x), x2, x)));
    vfn left_d = n_mul(CF(0.5f), n_add(CF(1.0f), t));
    vfn inner_d = n_mul(CF(0.797884561f), n_add(CF(1.0f), n_mul(CF(0.134145f), x2)));
    vfn right_d = n_mul(n_mul(n_mul(CF(0.5f), x), n_sub(CF(1.0f), n_mul(t, t))), inner_d);
    return n_mul(g, n_add(left_d, right_d));
}
/* sigmoid_backward(g, y) = (g (1 - y)) y */
VAI vfn pw_sigmoid_backward(vfn g, vfn y, vfn c, const float *p) {
    (void)c, (void)p;
    return n_mul(n_mul(g, n_sub(CF(1.0f), y)), y);
}
/* tanh_backward(g, y) = g fma(-y, y, 1): 1 - y^2 rounded once (torch's AVX2 build contracts
   it to the same fma) */
VAI vfn pw_tanh_backward(vfn g, vfn y, vfn c, const float *p) {
    (void)c, (void)p;
    return n_mul(g, n_fma(n_neg(y), y, CF(1.0f)));
}
/* softplus_backward(g, x; beta, threshold) = x beta > threshold ? g : (g z) / (z + 1),
   z = exp(x beta) */
VAI vfn pw_softplus_backward(vfn g, vfn x, vfn c, const float *p) {
    (void)c;
    vfn xb = n_mul(x, CF(p[0])), z = m_exp(xb);
    return n_sel(n_gt(xb, CF(p[1])), g, n_div(n_mul(g, z), n_add(z, CF(1.0f))));
}
/* elu_backward(g, v; alpha, scale, input_scale, is_result), negcoef = alpha scale (in
   float32, as torch): v > 0 ? g scale :
   is_result ? (g input_scale)(v + negcoef) : ((g input_scale) negcoef) exp(v input_scale) */
VAI vfn pw_elu_backward(vfn g, vfn v, vfn c, const float *p) {
    (void)c;
    vfn neg = CF(p[0] * p[1]), gi = n_mul(g, CF(p[2]));
    vfn inner = p[3] != 0.0f ? n_mul(gi, n_add(v, neg)) : n_mul(n_mul(gi, neg), m_exp(n_mul(v, CF(p[2]))));
    return n_sel(n_gt(v, CF(0.0f)), n_mul(g, CF(p[1])), inner);
}
/* logsigmoid_backward(g, x) = (m - s z / (1 + z)) g, z = exp(-|x|), m = x < 0 ? 1 : 0,
   s = x < 0 ? 1 : -1 */
VAI vfn pw_logsigmoid_backward(vfn g, vfn x, vfn c, const float *p) {
    (void)c, (void)p;
    vmn neg = n_lt(x, CF(0.0f));
    vfn z = m_exp(n_neg(n_abs(x)));
    vfn d = n_sub(n_sel(neg, CF(1.0f), CF(0.0f)), n_mul(n_sel(neg, CF(1.0f), CF(-1.0f)), n_div(z, n_add(CF(1.0f), z))));
    return n_mul(d, g);
}
/* hardswish_backward(g, x) = x <= -3 ? 0 : (x >= 3 ? g : g (x / 3 + 1/2)) */
VAI vfn pw_hardswish_backward(vfn g, vfn x, vfn c, const float *p) {
    (void)c, (void)p;
    vfn mid = n_mul(g, n_add(n_div(x, CF(3.0f)), CF(0.5f)));
    return n_sel(n_le(x, CF(-3.0f)), CF(0.0f), n_sel(n_ge(x, CF(3.0f)), g, mid));
}
/* hardsigmoid_backward(g, x) = -3 < x < 3 ? g (1/6 in float32) : 0 */
VAI vfn pw_hardsigmoid_backward(vfn g, vfn x, vfn c, const float *p) {
    (void)c, (void)p;
    vmn in = m_andn(n_gt(x, CF(-3.0f)), n_lt(x, CF(3.0f)));
    return n_sel(in, n_mul(g, CF(1.0f / 6.0f)), CF(0.0f));
}
/* mish_backward(g, x) = g (t + (x s)(1 - t t)), s = sigmoid(x), t = tanh(softplus(x)) with
   pw_mish's softplus (beta 1, threshold 20) */
VAI vfn pw_mish_backward(vfn g, vfn x, vfn c, const float *p) {
    (void)c, (void)p;
    vfn s = m_sigmoid(x), t = m_tanh(m_softplus(x, 1.0f, 20.0f));
    return n_mul(g, n_add(t, n_mul(n_mul(x, s), n_sub(CF(1.0f), n_mul(t, t)))));
}
/* logit_backward(g, x; eps) = g / (x (1 - x)) inside the domain, which is [0, 1] for
   eps < 0 (NaN outside) and [eps, 1 - eps] for eps >= 0 (0 outside); a NaN x gives NaN
   (torch's scalar tail; its vector body gives 0 when eps >= 0), and x = -0 gives
   g / -0 (torch's scalar tail has g * inf there) */
VAI vfn pw_logit_backward(vfn g, vfn x, vfn c, const float *p) {
    (void)c;
    vfn d = n_div(g, n_mul(x, n_sub(CF(1.0f), x)));
    float lo = p[0] < 0.0f ? 0.0f : p[0], hi = p[0] < 0.0f ? 1.0f : 1.0f - p[0];
    vmn out = m_orn(n_lt(x, CF(lo)), n_gt(x, CF(hi)));
    return n_sel(out, CF(p[0] < 0.0f ? NAN : 0.0f), d);
}

/* normal(u1, u2; mean, std) = fma(sqrt(-2 log(1 - u1)) * cos(6.28318548 u2), std, mean):
   Box-Muller on two uniform draws in [0, 1) (1 - u1 is exact, in (0, 1]); samebits'
   normal_ draws u1 and u2 with torch's uniform_ */
VAI vfn pw_normal(vfn a, vfn b, vfn c, const float *p) {
    vfn r = n_sqrt(n_mul(CF(-2.0f), pw_log(n_sub(CF(1.0f), a), b, c, p)));
    vfn t = pw_cos(n_mul(CF(6.28318548f), b), b, c, p);
    return n_fma(n_mul(r, t), CF(p[1]), CF(p[0]));
}

/* mul(a, b) = a * b and div(a, b) = a / b in float32 (for bfloat16 and float16 results
   with a scalar operand: the scalar rounded to float32, as every form of the op takes it,
   and the result rounded once) */
/* sqrt(x), correctly rounded (torch 2.13's float32 sqrt on CPU is not: about 16% of
   values in [0, 10) are 1 ulp off, measured) */
VAI vfn pw_sqrt(vfn a, vfn b, vfn c, const float *p) { (void)b, (void)c, (void)p; return n_sqrt(a); }
/* fmax(a, b), fmin(a, b): IEEE-754's maximumNumber and minimumNumber: a NaN operand
   gives the other, +0 counts as greater than -0 (torch's own pick a zero's sign by
   dtype, dispatch level and position in the vector loop, measured) */
VAI vmn m_signbit(vfn a) { return n_lt(n_copysign(CF(1.0f), a), CF(0.0f)); }
VAI vfn pw_fmax(vfn a, vfn b, vfn c, const float *p) {
    (void)c, (void)p;
    vfn tie = n_sel(m_signbit(a), b, a);
    vfn m = n_sel(n_gt(a, b), a, n_sel(n_gt(b, a), b, tie));
    return n_sel(n_isnan(b), a, n_sel(n_isnan(a), b, m));
}
VAI vfn pw_fmin(vfn a, vfn b, vfn c, const float *p) {
    (void)c, (void)p;
    vfn tie = n_sel(m_signbit(a), a, b);
    vfn m = n_sel(n_lt(a, b), a, n_sel(n_lt(b, a), b, tie));
    return n_sel(n_isnan(b), a, n_sel(n_isnan(a), b, m));
}
VAI vfn pw_mul(vfn a, vfn b, vfn c, const float *p) { (void)c, (void)p; return n_mul(a, b); }
VAI vfn pw_div(vfn a, vfn b, vfn c, const float *p) { (void)c, (void)p; return n_div(a, b); }

/* ---- the driver */
enum {
#define PW_ENUM(name, n, k) PW_##name,
    PW_OPS(PW_ENUM)
#undef PW_ENUM
        PW_COUNT
};

static const int pw_arity[] = {
#define PW_ARITY(name, n, k) n,
    PW_OPS(PW_ARITY)
#undef PW_ARITY
};

static const char pw_names[] =
#define PW_NAME(name, n, k) #name ":" #n ":" #k ";"
    PW_OPS(PW_NAME)
#undef PW_NAME
    ;

/* "name:operands:params;" for each op, in the order of their codes, written to buf
   (NUL-terminated when it fits in cap bytes); returns the length without the NUL */
SB_API i64 SB_FN(sb_pw_ops)(char *buf, i64 cap) {
    i64 n = (i64)sizeof(pw_names) - 1;
    if (buf && cap > n) memcpy(buf, pw_names, (size_t)n + 1);
    return n;
}

#define PW_BLK 1024 /* elements per task: a multiple of every bundle width */

/* NaN -> the canonical quiet NaN, every other value unchanged */
VAI vfn pw_canon(vfn y) { return n_sel(n_isnan(y), n_from_bits(ni_set1(0x7fc00000)), y); }

/* pw_run_<name>: the op on m float32 elements, m a multiple of the bundle width */
#define PW_RUN(name, n, k)                                                                         \
    static void pw_run_##name(const float *a, const float *b, const float *c, float *o, int m,    \
                              const float *p) {                                                    \
        for (int i = 0; i < m; i += VNW) {                                                         \
            vfn x = n_load(a + i), y = n > 1 ? n_load(b + i) : x, z = n > 2 ? n_load(c + i) : x;   \
            n_store(o + i, pw_canon(pw_##name(x, y, z, p)));                                       \
        }                                                                                          \
    }
PW_OPS(PW_RUN)
#undef PW_RUN

/* pw_runh_<name>: the same on bfloat16 operands and output, widened and rounded in
   registers (v_store_dt stores every NaN as 0x7fc0, as pw_canon then f2bf would) */
#define PW_RUNH(name, n, k)                                                                        \
    static void pw_runh_##name(const uint16_t *a, const uint16_t *b, const uint16_t *c,            \
                               uint16_t *o, int m, const float *p) {                               \
        for (int i = 0; i < m; i += VNW) {                                                         \
            vfn x, y, z;                                                                           \
            VEACH x.v[u_] = v_load_dt(a, i + u_ * VW, 1);                                          \
            VEACH y.v[u_] = n > 1 ? v_load_dt(b, i + u_ * VW, 1) : x.v[u_];                        \
            VEACH z.v[u_] = n > 2 ? v_load_dt(c, i + u_ * VW, 1) : x.v[u_];                        \
            vfn r = pw_##name(x, y, z, p);                                                         \
            VEACH v_store_dt(o, i + u_ * VW, r.v[u_], 1);                                          \
        }                                                                                          \
    }
PW_OPS(PW_RUNH)
#undef PW_RUNH

typedef void (*pw_run_fn)(const float *, const float *, const float *, float *, int, const float *);
static const pw_run_fn pw_run[] = {
#define PW_PTR(name, n, k) pw_run_##name,
    PW_OPS(PW_PTR)
#undef PW_PTR
};
typedef void (*pw_runh_fn)(const uint16_t *, const uint16_t *, const uint16_t *, uint16_t *, int,
                           const float *);
static const pw_runh_fn pw_runh[] = {
#define PW_PTR(name, n, k) pw_runh_##name,
    PW_OPS(PW_PTR)
#undef PW_PTR
};

/* op on m <= PW_BLK float32 elements: o[i] = op(a[i], b[i], c[i]); the tail runs through
   the same body, padded with zeros */
static void pw_block(int op, const float *a, const float *b, const float *c, float *o, int m,
                     const float *p) {
    int full = m - m % VNW;
    if (full) pw_run[op](a, b, c, o, full, p);
    if (full < m) {
        int t = m - full, n = pw_arity[op];
        float ta[VNW] = {0}, tb[VNW] = {0}, tc[VNW] = {0}, to[VNW];
        memcpy(ta, a + full, (size_t)t * 4);
        if (n > 1) memcpy(tb, b + full, (size_t)t * 4);
        if (n > 2) memcpy(tc, c + full, (size_t)t * 4);
        pw_run[op](ta, tb, tc, to, VNW, p);
        memcpy(o + full, to, (size_t)t * 4);
    }
}

/* operand j of a task as float32: the tensor itself (float32, contiguous), or widened
   from bfloat16 into buf, or a broadcast scalar (stride 0) filled into buf */
static const float *pw_operand(const void *x, int dt, int stride, i64 a0, int m, float *buf) {
    if (stride == 0) {
        float v = ld(x, 0, dt);
        for (int i = 0; i < m; i++) buf[i] = v;
        return buf;
    }
    if (dt == F32) return (const float *)x + a0;
    int i = 0;
    for (; i + VW <= m; i += VW) v_store(buf + i, v_load_dt(x, a0 + i, 1));
    const uint16_t *h = (const uint16_t *)x + a0;
    for (; i < m; i++) buf[i] = bf2f(h[i]);
    return buf;
}

/* y[i] = op(x0[i], x1[i], x2[i]; params) for i < n. dts[j]: operand j's dtype (F32 or
   BF16); strides[j]: 1 (contiguous) or 0 (one value broadcast); odt: y's dtype;
   params: the op's scalars (double, rounded to float32 once here). Returns 0, -1 for
   an unknown op. */
SB_API int SB_FN(sb_pointwise)(int op, i64 n, const void *x0, const void *x1, const void *x2,
                               const int *dts, const int *strides, void *y, int odt,
                               const double *params, int nparams, int nthreads) {
    if (op < 0 || op >= PW_COUNT) return -1;
    float p[8] = {0};
    for (int j = 0; j < nparams && j < 8; j++) p[j] = (float)params[j];
    const void *xs[3] = {x0, x1 ? x1 : x0, x2 ? x2 : x0};
    int th = threads_for(n * 4, nthreads);
    i64 blocks = (n + PW_BLK - 1) / PW_BLK;
    int halves = odt == BF16; /* every operand a bfloat16 tensor, and the output */
    for (int j = 0; j < pw_arity[op]; j++) halves &= dts[j] == BF16 && strides[j] == 1;
#pragma omp parallel for schedule(dynamic, dyn_chunk(blocks, th)) num_threads(th)
    for (i64 bk = 0; bk < blocks; bk++) {
        float buf[3][PW_BLK], out[PW_BLK];
        i64 a0 = bk * PW_BLK;
        int m = (int)(n - a0 < PW_BLK ? n - a0 : PW_BLK);
        if (halves) { /* whole bundles in registers; a tail goes on below */
            int full = m - m % VNW;
            const uint16_t *h[3];
            for (int j = 0; j < 3; j++) h[j] = (const uint16_t *)xs[j] + a0;
            if (full) pw_runh[op](h[0], h[1], h[2], (uint16_t *)y + a0, full, p);
            a0 += full;
            m -= full;
            if (!m) continue;
        }
        const float *in[3];
        for (int j = 0; j < 3; j++)
            in[j] = j < pw_arity[op] ? pw_operand(xs[j], dts[j], strides[j], a0, m, buf[j]) : in[0];
        float *o = odt == F32 ? (float *)y + a0 : out;
        pw_block(op, in[0], in[1], in[2], o, m, p);
        if (odt != F32) { /* v_store_dt's rounding is f2bf's, lane for lane */
            int i = 0;
            for (; i + VW <= m; i += VW) v_store_dt(y, a0 + i, v_load(out + i), 1);
            uint16_t *h = (uint16_t *)y + a0;
            for (; i < m; i++) h[i] = f2bf(out[i]);
        }
    }
    return 0;
}
