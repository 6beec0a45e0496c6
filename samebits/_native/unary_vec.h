/* The vector version of unary.c's f_exp and the row helpers softmax and attention build
   on it, written once over the vector layer (sb_simd.h: VW lanes on AVX-512, AVX2 and
   NEON) and included by unary.c on every path whose layer has vectors. Operation for
   operation f_exp's float sequence: a select is a compare and v_sel with the same
   comparison, so NaN takes the same side; the width changes how many elements share an
   instruction, never an element's operations.
   Each uvn_ function takes `nv` vectors (nv <= UNV, a constant at every call site) and
   runs every step on all of them before the next: one vector's chain (division,
   polynomials, exp) is long and serial, and stepping several side by side lets the core
   overlap them (gelu ~1.6x faster in L1 with four ymm; eight zmm 1.3x faster than four
   on AMD Zen 5). The lanes compute exactly what one vector does. */
#define EACH for (int u = 0; u < nv; u++)
#define AI static inline __attribute__((always_inline))

AI void uvn_exp(const vf *x, vf *y, const int nv) {
    vf xc[UNV], n[UNV], r[UNV], p[UNV];
    EACH xc[u] = v_sel(v_lt(x[u], v_set1(-104.0f)), v_set1(-104.0f),
                       v_sel(v_gt(x[u], v_set1(88.8f)), v_set1(88.8f), x[u]));
    EACH n[u] = v_sub(v_add(v_mul(xc[u], v_set1(1.44269504f)), v_set1(12582912.0f)),
                      v_set1(12582912.0f));
    EACH r[u] = v_fma(n[u], v_set1(-0.693145752f), xc[u]);
    EACH r[u] = v_fma(n[u], v_set1(-1.42860677e-06f), r[u]);
    EACH p[u] = v_fma(v_set1(1.0f / 5040.0f), r[u], v_set1(1.0f / 720.0f));
    EACH p[u] = v_fma(p[u], r[u], v_set1(1.0f / 120.0f));
    EACH p[u] = v_fma(p[u], r[u], v_set1(1.0f / 24.0f));
    EACH p[u] = v_fma(p[u], r[u], v_set1(1.0f / 6.0f));
    EACH p[u] = v_fma(p[u], r[u], v_set1(0.5f));
    EACH p[u] = v_fma(p[u], r[u], v_set1(1.0f));
    EACH p[u] = v_fma(p[u], r[u], v_set1(1.0f));
    EACH {
        /* n is integral in [-151, 128] except where x is NaN, whose lane the last
           select replaces (vi_cvt's out-of-range result differs by ISA) */
        vi ni = vi_cvt(n[u]), n1 = vi_sra(ni, 1), n2 = vi_sub(ni, n1);
        vf s1 = v_from_bits(vi_sll(vi_add(n1, vi_set1(127)), 23));
        vf s2 = v_from_bits(vi_sll(vi_add(n2, vi_set1(127)), 23));
        vf v = v_mul(v_mul(p[u], s1), s2);
        v = v_sel(v_gt(x[u], v_set1(88.72283f)), v_set1(INFINITY), v);
        v = v_sel(v_lt(x[u], v_set1(-103.97f)), v_zero(), v);
        y[u] = v_sel(v_ne(x[u], x[u]), x[u], v);
    }
}

AI vf uv_exp(vf x) {
    vf y;
    uvn_exp(&x, &y, 1);
    return y;
}

/* The max of n elements of a float32 or bfloat16 row from base, and (nan) whether one
   is NaN. A NaN is never taken, only flagged (a compare with a NaN is false, as in
   the scalar loop); which zero a max of +-0 keeps may differ from the scalar loop's
   and cannot change a softmax: exp(x - max) is 1 for both, and a row with two zeros
   sums to 2 or more, so (x - max) - log(sum) is -log(sum) for either. */
AI float uv_row_max(const void *x, i64 base, i64 n, const int dt, int *nan) {
    float mx = -INFINITY;
    int bad = 0;
    i64 k = 0;
    if (n >= VW) {
        vf m = v_set1(-INFINITY);
        vm b = v_lt(m, m); /* all false */
        for (; k + VW <= n; k += VW) {
            vf v = v_load_dt(x, base + k, dt);
            b = m_or(b, v_unord(v, v));
            m = v_sel(v_gt(v, m), v, m);
        }
        float t[VW];
        v_store(t, m);
        for (int l = 0; l < VW; l++) mx = t[l] > mx ? t[l] : mx;
        bad = m_any(b);
    }
    for (; k < n; k++) {
        float v = ld(x, base + k, dt);
        bad |= v != v;
        mx = v > mx ? v : mx;
    }
    *nan = bad;
    return mx;
}

/* y[k] = f_exp(x[base + k] - m) for k < n (y float32): UNV vectors at a time, then one,
   then the scalar f_exp (the same operations) */
AI void uv_exp_shifted(const void *x, i64 base, i64 n, float m, float *y, const int dt) {
    const vf mv = v_set1(m);
    i64 k = 0;
    for (; k + UNV * VW <= n; k += UNV * VW) {
        vf v[UNV];
        for (int u = 0; u < UNV; u++) v[u] = v_sub(v_load_dt(x, base + k + VW * u, dt), mv);
        uvn_exp(v, v, UNV);
        for (int u = 0; u < UNV; u++) v_store(y + k + VW * u, v[u]);
    }
    for (; k + VW <= n; k += VW) v_store(y + k, uv_exp(v_sub(v_load_dt(x, base + k, dt), mv)));
    for (; k < n; k++) y[k] = f_exp(ld(x, base + k, dt) - m);
}

#undef EACH
#undef AI
