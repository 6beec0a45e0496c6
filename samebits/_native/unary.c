/* ------------------------------------------ exp for softmax and attention */
/* softmax.c and attention.c take exp(x - max) from here: branch-free straight-line
   float arithmetic (selects instead of branches), explicit fmaf. The elementwise ops
   themselves run in the pointwise engine (pointwise.c), whose m_exp is this sequence.
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

#include "sb_simd.h"
#if VW > 1
/* f_exp on the vector layer's VW lanes (unary_vec.h): operation for operation the
   float sequence above. GCC's auto-vectorized version of the scalar code ran 3-5x
   slower. */
#define UNV 8 /* vectors per step, on every width (measured fastest) */
#include "unary_vec.h"
#endif
