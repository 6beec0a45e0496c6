/* The vector versions of the elementwise functions, written once for any width and
   included by unary.c once per vector type (8 lanes in ymm, 16 in zmm). The includer
   defines VT (float vector), VIT (int vector), VF(op) / VI(op) (the _ps / _epi32
   intrinsic), VCMP (a compare giving what VSEL takes), VSEL(c, a, b) (c ? a : b),
   VCASTI, VC (broadcast), FV(name) / FVN(name) (the function names), UNV, EACH, AI;
   this file undefines the parameters it is given (not UNV, EACH, AI) at its end.
   Operation for operation the float sequences of unary.c: a select is a compare and
   a blend with the same comparison, so NaN takes the same side; the width changes
   how many elements share an instruction, never an element's operations. */

/* -x (a sign flip, as C's unary minus; 0 - x would differ on zeros and NaN) */
AI VT FV(neg)(VT x) { return VF(xor)(x, VC(-0.0f)); }

AI VT FV(abs)(VT x) { return VSEL(VCMP(x, VF(setzero)(), _CMP_LT_OQ), FV(neg)(x), x); }

AI void FVN(exp)(const VT *x, VT *y, const int nv) {
    VT xc[UNV], n[UNV], r[UNV], p[UNV];
    EACH xc[u] = VSEL(VCMP(x[u], VC(-104.0f), _CMP_LT_OQ), VC(-104.0f),
                      VSEL(VCMP(x[u], VC(88.8f), _CMP_GT_OQ), VC(88.8f), x[u]));
    EACH n[u] = VF(sub)(VF(add)(VF(mul)(xc[u], VC(1.44269504f)), VC(12582912.0f)),
                              VC(12582912.0f));
    EACH r[u] = VF(fmadd)(n[u], VC(-0.693145752f), xc[u]);
    EACH r[u] = VF(fmadd)(n[u], VC(-1.42860677e-06f), r[u]);
    EACH p[u] = VF(fmadd)(VC(1.0f / 5040.0f), r[u], VC(1.0f / 720.0f));
    EACH p[u] = VF(fmadd)(p[u], r[u], VC(1.0f / 120.0f));
    EACH p[u] = VF(fmadd)(p[u], r[u], VC(1.0f / 24.0f));
    EACH p[u] = VF(fmadd)(p[u], r[u], VC(1.0f / 6.0f));
    EACH p[u] = VF(fmadd)(p[u], r[u], VC(0.5f));
    EACH p[u] = VF(fmadd)(p[u], r[u], VC(1.0f));
    EACH p[u] = VF(fmadd)(p[u], r[u], VC(1.0f));
    EACH {
        VIT ni = VI(cvttps)(n[u]), n1 = VI(srai)(ni, 1),
                n2 = VI(sub)(ni, n1);
        VT s1 = VCASTI(VI(slli)(VI(add)(n1, VI(set1)(127)), 23));
        VT s2 = VCASTI(VI(slli)(VI(add)(n2, VI(set1)(127)), 23));
        VT v = VF(mul)(VF(mul)(p[u], s1), s2);
        v = VSEL(VCMP(x[u], VC(88.72283f), _CMP_GT_OQ), VC(INFINITY), v);
        v = VSEL(VCMP(x[u], VC(-103.97f), _CMP_LT_OQ), VF(setzero)(), v);
        y[u] = VSEL(VCMP(x[u], x[u], _CMP_NEQ_UQ), x[u], v);
    }
}

AI VT FV(exp)(VT x) {
    VT y;
    FVN(exp)(&x, &y, 1);
    return y;
}

AI void FVN(expm1)(const VT *x, VT *y, const int nv) {
    VT p[UNV], big[UNV];
    FVN(exp)(x, big, nv);
    EACH p[u] = VF(fmadd)(VC(1.0f / 40320.0f), x[u], VC(1.0f / 5040.0f));
    EACH p[u] = VF(fmadd)(p[u], x[u], VC(1.0f / 720.0f));
    EACH p[u] = VF(fmadd)(p[u], x[u], VC(1.0f / 120.0f));
    EACH p[u] = VF(fmadd)(p[u], x[u], VC(1.0f / 24.0f));
    EACH p[u] = VF(fmadd)(p[u], x[u], VC(1.0f / 6.0f));
    EACH p[u] = VF(fmadd)(p[u], x[u], VC(0.5f));
    EACH {
        VT small = VF(fmadd)(VF(mul)(x[u], x[u]), p[u], x[u]);
        VT b = VF(sub)(big[u], VC(1.0f));
        VT r = VSEL(VCMP(x[u], VC(0.3f), _CMP_LT_OQ), small, b);
        r = VSEL(VCMP(x[u], VC(-0.3f), _CMP_GT_OQ), r, b);
        y[u] = VSEL(VCMP(x[u], VF(setzero)(), _CMP_EQ_OQ), x[u], r); /* expm1(-0) = -0 */
    }
}

AI void FVN(tanh)(const VT *x, VT *y, const int nv) {
    VT a[UNV], e[UNV];
    EACH a[u] = FV(abs)(x[u]);
    EACH e[u] = VF(mul)(VC(2.0f), VSEL(VCMP(a[u], VC(10.0f), _CMP_GT_OQ), VC(10.0f), a[u]));
    FVN(expm1)(e, e, nv);
    EACH {
        VT t = VF(div)(e[u], VF(add)(e[u], VC(2.0f)));
        t = VSEL(VCMP(a[u], VC(9.1f), _CMP_GT_OQ), VC(1.0f), t);
        t = VSEL(VCMP(x[u], VF(setzero)(), _CMP_LT_OQ), FV(neg)(t), t);
        y[u] = VSEL(VCMP(x[u], x[u], _CMP_NEQ_UQ), x[u], t);
    }
}

AI void FVN(erfc)(const VT *z, VT *y, const int nv) {
    VT a[UNV], t[UNV], p[UNV], e[UNV];
    EACH a[u] = FV(abs)(z[u]);
    EACH t[u] = VF(div)(VC(1.0f), VF(fmadd)(VC(0.5f), a[u], VC(1.0f)));
    EACH p[u] = VF(fmadd)(t[u], VC(0.17087277f), VC(-0.82215223f));
    EACH p[u] = VF(fmadd)(t[u], p[u], VC(1.48851587f));
    EACH p[u] = VF(fmadd)(t[u], p[u], VC(-1.13520398f));
    EACH p[u] = VF(fmadd)(t[u], p[u], VC(0.27886807f));
    EACH p[u] = VF(fmadd)(t[u], p[u], VC(-0.18628806f));
    EACH p[u] = VF(fmadd)(t[u], p[u], VC(0.09678418f));
    EACH p[u] = VF(fmadd)(t[u], p[u], VC(0.37409196f));
    EACH p[u] = VF(fmadd)(t[u], p[u], VC(1.00002368f));
    EACH e[u] = VF(fmadd)(FV(neg)(a[u]), a[u], VF(fmadd)(t[u], p[u], VC(-1.26551223f)));
    FVN(exp)(e, e, nv);
    EACH {
        VT r = VF(mul)(t[u], e[u]);
        r = VSEL(VCMP(z[u], VF(setzero)(), _CMP_GE_OQ), r, VF(sub)(VC(2.0f), r));
        y[u] = VSEL(VCMP(z[u], z[u], _CMP_NEQ_UQ), z[u], r);
    }
}

AI void FVN(unary)(const VT *x, VT *y, const int op, const int nv) {
    VT w[UNV];
    switch (op) {
    case U_GELU:
        EACH w[u] = VF(mul)(x[u], VC(-0.707106781f));
        FVN(erfc)(w, w, nv);
        EACH y[u] = VF(mul)(VF(mul)(VC(0.5f), x[u]), w[u]);
        break;
    case U_GELU_TANH:
        EACH w[u] = VF(mul)(
            VC(0.797884561f),
            VF(fmadd)(VF(mul)(VC(0.044715f), x[u]), VF(mul)(x[u], x[u]), x[u]));
        FVN(tanh)(w, w, nv);
        EACH y[u] = VF(mul)(VF(mul)(VC(0.5f), x[u]), VF(add)(VC(1.0f), w[u]));
        break;
    case U_SILU:
    case U_SIGMOID:
        EACH w[u] = FV(neg)(x[u]);
        FVN(exp)(w, w, nv);
        EACH y[u] = VF(div)(op == U_SILU ? x[u] : VC(1.0f), VF(add)(VC(1.0f), w[u]));
        break;
    case U_EXP:
        FVN(exp)(x, y, nv);
        break;
    case U_TANH:
        FVN(tanh)(x, y, nv);
        break;
    case U_RSQRT:
        EACH y[u] = VF(div)(VC(1.0f), VF(sqrt)(x[u]));
        break;
    case U_EXPM1:
        FVN(expm1)(x, y, nv);
        break;
    default: /* U_ERF */
        FVN(erfc)(x, w, nv);
        EACH y[u] = VF(sub)(VC(1.0f), w[u]);
    }
}

#undef VT
#undef VIT
#undef VF
#undef VI
#undef VCASTI
#undef VC
#undef VCMP
#undef VSEL
#undef FV
#undef FVN
