#ifndef SB_COMMON_H
#define SB_COMMON_H
/* samebits native kernels: the common header.
 *
 * Layout: one C file per op family (gemm.c, reductions.c, unary.c, softmax.c,
 * attention.c, norm.c, conv.c, exact.c), all behind this header and gathered into one
 * translation unit by kernels.c, so the compiler can inline across them. That unit
 * is compiled once per ISA path (portable C, AVX2+FMA, AVX-512) with -DSB_ISA=...,
 * each object's exported names carrying the path as a suffix (sb_gemm_avx2), and the
 * objects are linked into one library with dispatch.c, which reads CPUID. The Python
 * side picks the path at load time (samebits/_native/_loader.py); every path computes
 * the same operations in the same order, so they give the same bits.
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
#endif

typedef int64_t i64;
enum { F32 = 0, BF16 = 1 };

/* ------------------------------------------------------------ exported API */
/* SB_FN(sb_gemm) is sb_gemm_<isa> in the object built for that ISA path. The
   prototypes below are the ABI: samebits/_native/_loader.py binds them through its
   ctypes table, and tests/native/test_abi.py checks that table against this list.
   Bump SB_ABI_VERSION whenever one changes. */
#define SB_ABI_VERSION 11
#ifndef SB_ISA
#define SB_ISA portable
#endif
#define SB_CAT2(a, b) a##_##b
#define SB_CAT(a, b) SB_CAT2(a, b)
#define SB_FN(name) SB_CAT(name, SB_ISA)
#define SB_API __attribute__((visibility("default")))

SB_API int SB_FN(sb_gemm)(const void *A, i64 lda, i64 ka, i64 sa, const void *B, i64 bk, i64 bn,
                          i64 sb, float *C, i64 ldc, i64 sc, i64 batch, i64 M, i64 N, i64 K,
                          const void *bias, int bdt, int dt, int order, int nthreads);
SB_API int SB_FN(sb_gemm_map)(const void *A, i64 lda, i64 ka, i64 sa, const void *B, i64 bk,
                              i64 bn, i64 sb, float *C, i64 ldc, i64 sc, i64 batch, i64 M, i64 N,
                              i64 K, const void *bias, int bdt, int dt, int order, int nthreads,
                              const i64 *map);
SB_API void SB_FN(sb_sum)(const void *x, i64 outer, i64 R, i64 inner, const double *center,
                          int square, double *out, int dt, int nthreads);
/* sb_sum_all and sb_softmax return 0, or -1 when a work buffer cannot be allocated */
SB_API int SB_FN(sb_sum_all)(const void *x, i64 n, int dt, int nthreads, double *out);
SB_API void SB_FN(sb_unary_scalar)(const float *x, float *y, i64 n, int op);
SB_API void SB_FN(sb_unary)(const void *x, void *y, i64 n, int op, int dt, int nthreads);
SB_API i64 SB_FN(sb_pw_ops)(char *buf, i64 cap);
SB_API int SB_FN(sb_pointwise)(int op, i64 n, const void *x0, const void *x1, const void *x2,
                               const int *dts, const int *strides, void *y, int odt,
                               const double *params, int nparams, int nthreads);
SB_API int SB_FN(sb_softmax)(const void *x, void *y, i64 rows, i64 R, int mode, int dt_in,
                             int dt_out, int nthreads);
SB_API int SB_FN(sb_attention)(const void *q, const void *k, const void *v, const void *mask,
                               const i64 *meta, int mkind, float *out, float scale, int dt,
                               int nthreads);
SB_API void SB_FN(sb_norm)(const void *x, const void *w, const void *b, void *y, float *mean_out,
                           float *rstd_out, i64 rows, i64 R, double eps, int kind, int dt, int wdt,
                           int nthreads);
SB_API void SB_FN(sb_affine)(const void *x, void *y, const float *scale, const float *shift,
                             i64 outer, i64 C, i64 inner, i64 ss, int dt_in, int dt_out,
                             int nthreads);
SB_API void SB_FN(sb_exact_acc)(const void *x, i64 outer, i64 R, i64 inner, int dt, int64_t *out,
                                int32_t *flags, int nthreads);
/* returns 0, or -1 when a work buffer cannot be allocated */
SB_API int SB_FN(sb_depthwise)(const void *x, const void *w, const void *bias, void *out,
                               const i64 *meta, int dt, int wdt, int nthreads);
/* returns 0, or -1 when a work buffer cannot be allocated */
SB_API int SB_FN(sb_depthwise_nchw)(const void *x, const void *w, const void *bias, void *out,
                                    const i64 *meta, int dt, int wdt, int nthreads);
SB_API void SB_FN(sb_im2col)(const void *x, const i64 *meta, i64 r0, i64 r1, void *dst, int dt,
                             int nthreads);
SB_API void SB_FN(sb_pad_cl)(const void *x, const i64 *meta, void *dst, int dt, int nthreads);
SB_API void SB_FN(sb_exact_dot)(const void *a, const void *b, i64 n, int dt, int64_t *out,
                                int32_t *flags);

static inline float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round half to even */
    return (uint16_t)(u >> 16);
}

static inline float ld(const void *p, i64 i, int dt) {
    return dt == BF16 ? bf2f(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static inline void st(void *p, i64 i, float v, int dt) {
    if (dt == BF16) ((uint16_t *)p)[i] = f2bf(v);
    else ((float *)p)[i] = v;
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
static inline void v8_store(float *p, v8 v) { _mm256_storeu_ps(p, v); }
static inline void v8_store_n(float *p, v8 v, int n) { _mm256_maskstore_ps(p, v8_mask(n), v); }
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
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    return v8_narrow16(_mm256_blendv_epi8(r, q, nan));
}
/* full store of 8 elements as dt (bfloat16: rounded as st() rounds) */
static inline void v8_store_dt(void *p, i64 i, v8 v, int dt) {
    if (dt == BF16) _mm_storeu_si128((__m128i *)((uint16_t *)p + i), v8_f2bf(v));
    else _mm256_storeu_ps((float *)p + i, v);
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
static inline void z16_store_dt(void *p, i64 i, __m512 v, const int dt) {
    if (dt != BF16) {
        _mm512_storeu_ps((float *)p + i, v);
        return;
    }
    __m512i u = _mm512_castps_si512(v);
    __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16);
    __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    _mm256_storeu_si256((__m256i *)((uint16_t *)p + i),
                        _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, q)));
}
#endif
static inline float v8_tree(v8 v) {
    /* ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* l0+l4 .. l3+l7 */
    __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));                                   /* (0+4)+(2+6), (1+5)+(3+7) */
    __m128 u = _mm_add_ss(t, _mm_shuffle_ps(t, t, 1));
    return _mm_cvtss_f32(u);
}
#else
typedef struct { float x[8]; } v8;
static inline v8 v8_zero(void) { v8 r; for (int l = 0; l < 8; l++) r.x[l] = 0.0f; return r; }
static inline v8 v8_fma(v8 a, v8 b, v8 c) { for (int l = 0; l < 8; l++) c.x[l] = fmaf(a.x[l], b.x[l], c.x[l]); return c; }
static inline v8 v8_set1(float x) { v8 r; for (int l = 0; l < 8; l++) r.x[l] = x; return r; }
static inline v8 v8_add(v8 a, v8 b) { for (int l = 0; l < 8; l++) a.x[l] += b.x[l]; return a; }
static inline v8 v8_load(const void *p, i64 i, int dt) { v8 r; for (int l = 0; l < 8; l++) r.x[l] = ld(p, i + l, dt); return r; }
static inline v8 v8_load_n(const void *p, i64 i, int n, int dt) { v8 r = v8_zero(); for (int l = 0; l < n; l++) r.x[l] = ld(p, i + l, dt); return r; }
static inline void v8_store(float *p, v8 v) { for (int l = 0; l < 8; l++) p[l] = v.x[l]; }
static inline void v8_store_n(float *p, v8 v, int n) { for (int l = 0; l < n; l++) p[l] = v.x[l]; }
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
