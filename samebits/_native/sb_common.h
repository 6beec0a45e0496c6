#ifndef SB_COMMON_H
#define SB_COMMON_H
/* samebits native kernels: the common header.
 *
 * Layout: one C file per op family (gemm.c, reductions.c, unary.c, softmax.c,
 * attention.c, norm.c, conv.c, exact.c), all behind this header and gathered into one
 * translation unit by kernels.c, so the compiler can inline across them. That unit
 * is compiled once per ISA path (portable C, AVX2+FMA, AVX-512) with -DSB_ISA=...,
 * each object's exported names carrying the path as a suffix (sb_gemm_avx2), and the
 * objects are linked into one library with dispatch.c, which reads the CPU's features
 * (CPUID on x86-64, HWCAP on aarch64). The Python side picks the path at load time
 * (samebits/_native/__init__.py); every path computes the same operations in the same
 * order, so they give the same bits. A kernel is declared once, in _decls.py.
 *
 * Every kernel here fixes its reduction order so that it depends only on the
 * reduction length and the item's own data: never on M (rows), on which other
 * rows exist, on the thread count, or on how the work is split across threads.
 * Threads only ever own whole output elements; no reduction is split.
 *
 * The orders (the contract, also listed in docs/design.md):
 *   DOT  (K-contiguous B): for output (i, j), eight lanes; lane l
 *        accumulates a[k]*b[k] for k = l, l+8, l+16, ... with a fused
 *        multiply-add, the last partial block padded with zeros; then the
 *        lanes are added as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
 *   PAIR (bfloat16, K-contiguous B): one lane of VDPBF16PS: for output (i, j)
 *        one accumulator over the pairs of k in order, two FMAs per pair (odd
 *        element first) with DAZ/FTZ; see gemm_bf16.c. (order 2 asks for DOT in bfloat16 too: attention scores.)
 *   SEQ  (any other layout of B): for output (i, j), one fused
 *        multiply-add per k in increasing k, starting from +0.
 *        Exact zeros (masked keys, padding) therefore add nothing.
 *   SUM  (row and column sums): sequential over the reduced index in double,
 *        starting from +0, rounded once.
 *   ALL  (whole-tensor sum): fixed 4096-element chunks, each summed in eight
 *        double lanes plus the DOT tree, chunk results added left to right.
 *   Elementwise functions are one straight-line, branch-free sequence of
 *   float32 IEEE operations per element, so an element's bits do not depend on
 *   where it sits in a vector, a tail or a thread chunk.
 *
 * Several kernels may compute one order (e.g. DOT for few rows reads operands in
 * place, for many rows packs them into panels); they perform the same operations
 * on every output, and tests compare their bits.
 *
 * Compiled with -ffp-contract=off: the only fused operations are the explicit
 * fmaf / _mm256_fmadd_ps calls, identical in the vector and scalar paths.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SB_AVX2 1
#elif defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
#define SB_NEON 1
#endif

typedef int64_t i64;
enum { F32 = 0, BF16 = 1 };

/* ------------------------------------------------------------ exported API */
/* SB_FN(sb_gemm) is sb_gemm_<isa> in the object built for that ISA path. The
   prototypes and SB_ABI_VERSION are generated into sb_kernels.h from the one list in
   _decls.py, which the Python loader's ctypes table and ABI check also read. */
#ifndef SB_ISA
#define SB_ISA portable
#endif
#define SB_CAT2(a, b) a##_##b
#define SB_CAT(a, b) SB_CAT2(a, b)
#define SB_FN(name) SB_CAT(name, SB_ISA)
#define SB_API __attribute__((visibility("default")))
#include "sb_kernels.h"

/* Canonical NaNs in outputs. A NaN an operation creates (0/0, inf - inf, sqrt(-1)) is
   x86's default NaN, negative (0xffc00000), and ARM's, positive (0x7fc00000); and
   which operand's NaN an operation with two NaN operands passes on differs between
   instructions (an FMA's operand order is not the C expression's). So every value a
   kernel writes to memory goes through canon(): any NaN becomes the quiet NaN
   0x7fc00000 (bfloat16 0x7fc0, double 0x7ff8000000000000), every other value is kept
   bit for bit. The stores below (st, v8_store*, z16_store_dt) do it; a kernel that
   writes an output otherwise calls canon() itself. */
static inline float canon(float v) { return v != v ? __builtin_nanf("") : v; }
static inline double canon_d(double v) { return v != v ? __builtin_nan("") : v; }

static inline float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* the canonical NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round half to even */
    return (uint16_t)(u >> 16);
}

static inline float ld(const void *p, i64 i, int dt) {
    return dt == BF16 ? bf2f(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static inline void st(void *p, i64 i, float v, int dt) {
    if (dt == BF16) ((uint16_t *)p)[i] = f2bf(v);
    else ((float *)p)[i] = canon(v);
}

static inline size_t esz(int dt) { return dt == BF16 ? 2 : 4; }

/* ---------------------------------------------------------------- 8 lanes */
#ifdef SB_AVX2
typedef __m256 v8;
static inline v8 v8_zero(void) { return _mm256_setzero_ps(); }
static inline v8 v8_fma(v8 a, v8 b, v8 c) { return _mm256_fmadd_ps(a, b, c); }
static inline v8 v8_set1(float x) { return _mm256_set1_ps(x); }
static inline v8 v8_add(v8 a, v8 b) { return _mm256_add_ps(a, b); }
static inline __m256i v8_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* full load of 8 elements */
static inline v8 v8_load(const void *p, i64 i, int dt) {
    if (dt == BF16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    return _mm256_loadu_ps((const float *)p + i);
}
/* load n < 8 elements, zeros in the other lanes */
static inline v8 v8_load_n(const void *p, i64 i, int n, int dt) {
    if (dt == BF16) {
        uint16_t tmp[8] = {0};
        memcpy(tmp, (const uint16_t *)p + i, (size_t)n * 2);
        return v8_load(tmp, 0, BF16);
    }
    return _mm256_maskload_ps((const float *)p + i, v8_mask(n));
}
/* canon() on 8 lanes */
static inline v8 v8_canon(v8 v) {
    return _mm256_blendv_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)),
                            _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}
static inline void v8_store(float *p, v8 v) { _mm256_storeu_ps(p, v8_canon(v)); }
static inline void v8_store_n(float *p, v8 v, int n) { _mm256_maskstore_ps(p, v8_mask(n), v8_canon(v)); }
/* 8 lanes of 16-bit values held zero-extended in 32 bits, narrowed to 8 x 16 bits */
static inline __m128i v8_narrow16(__m256i r) {
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}
/* f2bf on 8 lanes: round half to even, NaN quieted; the bits of the scalar f2bf */
static inline __m128i v8_f2bf(v8 v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                     _mm256_set1_epi32(0x7f800000));
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd)), 16);
    return v8_narrow16(_mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), nan));
}
/* full store of 8 elements as dt (bfloat16: rounded as st() rounds) */
static inline void v8_store_dt(void *p, i64 i, v8 v, int dt) {
    if (dt == BF16) _mm_storeu_si128((__m128i *)((uint16_t *)p + i), v8_f2bf(v));
    else _mm256_storeu_ps((float *)p + i, v8_canon(v));
}
#ifdef __AVX512F__
/* 16 lanes on AVX-512: a full load of 16 elements as float32, and a full store as dt
   (bfloat16 rounded as v8_f2bf rounds: the same bits lane for lane) */
static inline __m512 z16_load(const void *p, i64 i, const int dt) {
    if (dt == BF16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_loadu_ps((const float *)p + i);
}
/* z16_load of the lanes in mask m only, zeros in the others */
static inline __m512 z16_load_mask(const void *p, i64 i, __mmask16 m, const int dt) {
    if (dt == BF16) {
        __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_maskz_loadu_ps(m, (const float *)p + i);
}
/* canon() on 16 lanes */
static inline __m512 z16_canon(__m512 v) {
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q),
                              _mm512_castsi512_ps(_mm512_set1_epi32(0x7fc00000)));
}
static inline void z16_store_dt(void *p, i64 i, __m512 v, const int dt) {
    if (dt != BF16) {
        _mm512_storeu_ps((float *)p + i, z16_canon(v));
        return;
    }
    __m512i u = _mm512_castps_si512(v);
    __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16);
    _mm256_storeu_si256((__m256i *)((uint16_t *)p + i),
                        _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, _mm512_set1_epi32(0x7fc0))));
}
#endif
static inline float v8_tree(v8 v) {
    /* ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* l0+l4 .. l3+l7 */
    __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));                                   /* (0+4)+(2+6), (1+5)+(3+7) */
    __m128 u = _mm_add_ss(t, _mm_shuffle_ps(t, t, 1));
    return _mm_cvtss_f32(u);
}
#elif defined(SB_NEON)
/* 8 lanes as two NEON vectors: the same lanes, the same operations as the scalar and
   AVX2 v8, so the kernels written over v8 (the GEMM register kernels, DOT's lanes)
   run in ASIMD registers */
typedef struct { float32x4_t lo, hi; } v8;
static inline v8 v8_zero(void) { v8 r = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; return r; }
static inline v8 v8_fma(v8 a, v8 b, v8 c) { v8 r = {vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)}; return r; }
static inline v8 v8_set1(float x) { v8 r = {vdupq_n_f32(x), vdupq_n_f32(x)}; return r; }
static inline v8 v8_add(v8 a, v8 b) { v8 r = {vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)}; return r; }
static inline float32x4_t q4_load(const void *p, i64 i, int dt) {
    if (dt == BF16)
        return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)p + i), 16));
    return vld1q_f32((const float *)p + i);
}
static inline v8 v8_load(const void *p, i64 i, int dt) { v8 r = {q4_load(p, i, dt), q4_load(p, i + 4, dt)}; return r; }
static inline v8 v8_load_n(const void *p, i64 i, int n, int dt) {
    float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int l = 0; l < n; l++) t[l] = ld(p, i + l, dt);
    return v8_load(t, 0, F32);
}
static inline float32x4_t q4_canon(float32x4_t v) {
    return vbslq_f32(vceqq_f32(v, v), v, vreinterpretq_f32_u32(vdupq_n_u32(0x7fc00000u)));
}
static inline v8 v8_canon(v8 v) { v8 r = {q4_canon(v.lo), q4_canon(v.hi)}; return r; }
static inline void v8_store(float *p, v8 v) { vst1q_f32(p, q4_canon(v.lo)); vst1q_f32(p + 4, q4_canon(v.hi)); }
static inline void v8_store_n(float *p, v8 v, int n) {
    float t[8];
    v8_store(t, v);
    for (int l = 0; l < n; l++) p[l] = t[l];
}
/* f2bf on 4 lanes: the bits of the scalar f2bf (round half to even, canonical NaN) */
static inline uint16x4_t q4_f2bf(float32x4_t v) {
    uint32x4_t u = vreinterpretq_u32_f32(v);
    uint32x4_t odd = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    uint32x4_t r = vshrq_n_u32(vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7fff), odd)), 16);
    r = vbslq_u32(vceqq_f32(v, v), r, vdupq_n_u32(0x7fc0));
    return vmovn_u32(r);
}
static inline void v8_store_dt(void *p, i64 i, v8 v, int dt) {
    if (dt == BF16) {
        vst1_u16((uint16_t *)p + i, q4_f2bf(v.lo));
        vst1_u16((uint16_t *)p + i + 4, q4_f2bf(v.hi));
    } else {
        v8_store((float *)p + i, v);
    }
}
static inline float v8_tree(v8 v) {
    /* ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) */
    float32x4_t s = vaddq_f32(v.lo, v.hi);      /* l0+l4, l1+l5, l2+l6, l3+l7 */
    float32x2_t t = vadd_f32(vget_low_f32(s), vget_high_f32(s)); /* (0+4)+(2+6), (1+5)+(3+7) */
    return vget_lane_f32(t, 0) + vget_lane_f32(t, 1);
}
#else
typedef struct { float x[8]; } v8;
static inline v8 v8_zero(void) { v8 r; for (int l = 0; l < 8; l++) r.x[l] = 0.0f; return r; }
static inline v8 v8_fma(v8 a, v8 b, v8 c) { for (int l = 0; l < 8; l++) c.x[l] = fmaf(a.x[l], b.x[l], c.x[l]); return c; }
static inline v8 v8_set1(float x) { v8 r; for (int l = 0; l < 8; l++) r.x[l] = x; return r; }
static inline v8 v8_add(v8 a, v8 b) { for (int l = 0; l < 8; l++) a.x[l] += b.x[l]; return a; }
static inline v8 v8_load(const void *p, i64 i, int dt) { v8 r; for (int l = 0; l < 8; l++) r.x[l] = ld(p, i + l, dt); return r; }
static inline v8 v8_load_n(const void *p, i64 i, int n, int dt) { v8 r = v8_zero(); for (int l = 0; l < n; l++) r.x[l] = ld(p, i + l, dt); return r; }
static inline void v8_store(float *p, v8 v) { for (int l = 0; l < 8; l++) p[l] = canon(v.x[l]); }
static inline void v8_store_n(float *p, v8 v, int n) { for (int l = 0; l < n; l++) p[l] = canon(v.x[l]); }
static inline void v8_store_dt(void *p, i64 i, v8 v, int dt) { for (int l = 0; l < 8; l++) st(p, i + l, v.x[l], dt); }
static inline float v8_tree(v8 v) {
    float s0 = v.x[0] + v.x[4], s1 = v.x[1] + v.x[5], s2 = v.x[2] + v.x[6], s3 = v.x[3] + v.x[7];
    return (s0 + s2) + (s1 + s3);
}
#endif

/* Work below which a kernel runs on one thread: 32768 units, or
   $SAMEBITS_MIN_PARALLEL_WORK (read once; tests set 0 so that small shapes run
   their multithreaded paths). */
static i64 min_parallel_work(void) {
    static i64 cached = -1;
    if (cached < 0) {
        const char *e = getenv("SAMEBITS_MIN_PARALLEL_WORK");
        char *end = NULL;
        long long v = e && *e ? strtoll(e, &end, 10) : -1;
        cached = (e && *e && end && *end == '\0' && v >= 0) ? (i64)v : (i64)1 << 15;
    }
    return cached;
}

/* the thread count the last kernel chose (dispatch.c; read by tests) */
extern int sb_last_threads;

static int threads_for(i64 work, int nthreads) {
    /* Splitting never changes bits (threads own whole outputs), so small jobs
       simply run on one thread to avoid the fork cost. */
    int th = nthreads < 1 ? 1 : nthreads;
    if (work < min_parallel_work()) th = 1;
    sb_last_threads = th;
    return th;
}

static int dyn_chunk(i64 tasks, int th) {
    /* Loops are scheduled dynamically, in chunks of about 1/8 of a thread's share:
       when another process or the server's own threads take a core for a while, the
       other threads go on with the work instead of waiting for the late one at the
       end of the loop (static shares measured 40% slower under a 25% background
       load of one core). Which thread computes an output never changes its bits. */
    i64 c = tasks / (8 * (i64)(th > 0 ? th : 1));
    return c < 1 ? 1 : (int)(c > (1 << 20) ? 1 << 20 : c);
}


#ifdef SB_AVX2

/* o[c] = (r[0][c], ..., r[7][c]): an 8x8 transpose in registers */
static inline __attribute__((always_inline)) void t8x8(const __m256 r[8], __m256 o[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]),
           t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]),
           t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]),
           t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
           u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
           u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
           u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    o[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    o[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    o[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    o[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    o[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    o[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    o[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    o[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
#endif

#endif /* SB_COMMON_H */
