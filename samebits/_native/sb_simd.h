#ifndef SB_SIMD_H
#define SB_SIMD_H
/* The vector layer: one small set of operations on float32 vectors, with a backend per
 * ISA path, so that a kernel body is written once and compiled for every width.
 *
 *   backend        lanes (VW)   chosen when the translation unit is compiled with
 *   SB_V_AVX512    16           __AVX512F__ (the avx512, avx512_bf16 and amx paths)
 *   SB_V_AVX2      8            __AVX2__ and __FMA__ (the avx2 path)
 *   SB_V_NEON      4            __ARM_NEON (the neon path on aarch64)
 *   SB_V_SCALAR    1            anything else (the portable path)
 *
 * Types: vf (VW floats), vi (VW int32), vm (a VW-lane mask, the result of a compare);
 * vd (VD doubles: 8, 4, 2, 1) for the reductions, at the end of the file.
 * Every operation is lane-wise and its result in a lane depends only on that lane's
 * inputs, with the same IEEE-754 meaning on every backend:
 *   v_add v_sub v_mul v_div v_sqrt   correctly rounded, as the C operators and sqrtf
 *   v_fma(a, b, c)                   a * b + c rounded once (fmaf)
 *   v_lt v_le v_gt v_ge v_eq         ordered compares: false when either lane is NaN
 *   v_ne v_unord                     true when either lane is NaN
 *   v_sel(m, a, b)                   m ? a : b, bit for bit (no arithmetic, so a NaN
 *                                    or a signed zero is kept as it is)
 *   v_rint v_floor v_ceil v_trunc    exact roundings to an integral float
 *                                    (rint: to nearest, ties to even)
 * There is deliberately no min/max: x86's and ARM's disagree on NaN and on -0, so a
 * kernel writes the compare and the select it means.
 * Integer lanes: vi_cvt(v) truncates a float to int32 and vi_tof converts back; a
 * kernel only converts values it has bounded (x86 gives INT_MIN out of range, ARM
 * saturates, C leaves it undefined). Shifts take constant counts.
 * v_lookup(t, i): lane k gets t[i_k] (a gather: data movement only, so the same bits
 * on every backend); every lane's index must be in the table, used or not.
 * v_lookup16(t, i): the same for a 16-entry table, i in [0, 16): one permute on AVX-512,
 * two and a blend on AVX2, v_lookup on NEON.
 *
 * Bundles: the elementwise engine steps VN vectors side by side (a vfn holds VN vf).
 * One vector's chain of dependent operations (a polynomial, a division) is long,
 * and running several independent chains at once keeps the FMA units busy; GCC
 * scalarizes the struct when everything is inlined. The n_* operations are the v_*
 * operations applied to each of the VN vectors: the bundle size changes the schedule,
 * never an element's operations.
 *
 * Compiled with -ffp-contract=off, so the only fused operation is v_fma.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define VAI static inline __attribute__((always_inline))

#if defined(__AVX512F__)
#include <immintrin.h>
#define SB_V_AVX512 1
#define VW 16
typedef __m512 vf;
typedef __m512i vi;
typedef __mmask16 vm;
VAI vf v_set1(float x) { return _mm512_set1_ps(x); }
VAI vf v_zero(void) { return _mm512_setzero_ps(); }
VAI vf v_load(const float *p) { return _mm512_loadu_ps(p); }
VAI void v_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
VAI vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
VAI vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
VAI vf v_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
VAI vf v_div(vf a, vf b) { return _mm512_div_ps(a, b); }
VAI vf v_sqrt(vf a) { return _mm512_sqrt_ps(a); }
VAI vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
VAI vm v_lt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
VAI vm v_le(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
VAI vm v_gt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
VAI vm v_ge(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
VAI vm v_eq(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
VAI vm v_ne(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
VAI vm v_unord(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q); }
VAI vf v_sel(vm m, vf a, vf b) { return _mm512_mask_blend_ps(m, b, a); }
VAI vm m_and(vm a, vm b) { return (vm)(a & b); }
VAI vm m_or(vm a, vm b) { return (vm)(a | b); }
VAI vm m_not(vm a) { return (vm)~a; }
VAI int m_any(vm a) { return a != 0; }
VAI vf v_rint(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
VAI vf v_floor(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
VAI vf v_ceil(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC); }
VAI vf v_trunc(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); }
VAI vi v_bits(vf a) { return _mm512_castps_si512(a); }
VAI vf v_from_bits(vi a) { return _mm512_castsi512_ps(a); }
VAI vi vi_set1(int32_t x) { return _mm512_set1_epi32(x); }
VAI vi vi_add(vi a, vi b) { return _mm512_add_epi32(a, b); }
VAI vi vi_sub(vi a, vi b) { return _mm512_sub_epi32(a, b); }
VAI vi vi_and(vi a, vi b) { return _mm512_and_si512(a, b); }
VAI vi vi_or(vi a, vi b) { return _mm512_or_si512(a, b); }
VAI vi vi_xor(vi a, vi b) { return _mm512_xor_si512(a, b); }
#define vi_sll(a, n) _mm512_slli_epi32((a), (n))
#define vi_srl(a, n) _mm512_srli_epi32((a), (n))
#define vi_sra(a, n) _mm512_srai_epi32((a), (n))
VAI vm vi_gt(vi a, vi b) { return _mm512_cmpgt_epi32_mask(a, b); }
VAI vm vi_eq(vi a, vi b) { return _mm512_cmpeq_epi32_mask(a, b); }
VAI vi vi_sel(vm m, vi a, vi b) { return _mm512_mask_blend_epi32(m, b, a); }
VAI vi vi_cvt(vf a) { return _mm512_cvttps_epi32(a); }
VAI vf vi_tof(vi a) { return _mm512_cvtepi32_ps(a); }
VAI vf v_lookup(const float *t, vi i) { return _mm512_i32gather_ps(i, t, 4); }
VAI vf v_lookup16(const float *t, vi i) { return _mm512_permutexvar_ps(i, _mm512_loadu_ps(t)); }

#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SB_V_AVX2 1
#define VW 8
typedef __m256 vf;
typedef __m256i vi;
typedef __m256 vm; /* all-ones or all-zeros lanes */
VAI vf v_set1(float x) { return _mm256_set1_ps(x); }
VAI vf v_zero(void) { return _mm256_setzero_ps(); }
VAI vf v_load(const float *p) { return _mm256_loadu_ps(p); }
VAI void v_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
VAI vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
VAI vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
VAI vf v_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
VAI vf v_div(vf a, vf b) { return _mm256_div_ps(a, b); }
VAI vf v_sqrt(vf a) { return _mm256_sqrt_ps(a); }
VAI vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
VAI vm v_lt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
VAI vm v_le(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
VAI vm v_gt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
VAI vm v_ge(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
VAI vm v_eq(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
VAI vm v_ne(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); }
VAI vm v_unord(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_UNORD_Q); }
VAI vf v_sel(vm m, vf a, vf b) { return _mm256_blendv_ps(b, a, m); }
VAI vm m_and(vm a, vm b) { return _mm256_and_ps(a, b); }
VAI vm m_or(vm a, vm b) { return _mm256_or_ps(a, b); }
VAI vm m_not(vm a) { return _mm256_xor_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(-1))); }
VAI int m_any(vm a) { return _mm256_movemask_ps(a) != 0; }
VAI vf v_rint(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
VAI vf v_floor(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
VAI vf v_ceil(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC); }
VAI vf v_trunc(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); }
VAI vi v_bits(vf a) { return _mm256_castps_si256(a); }
VAI vf v_from_bits(vi a) { return _mm256_castsi256_ps(a); }
VAI vi vi_set1(int32_t x) { return _mm256_set1_epi32(x); }
VAI vi vi_add(vi a, vi b) { return _mm256_add_epi32(a, b); }
VAI vi vi_sub(vi a, vi b) { return _mm256_sub_epi32(a, b); }
VAI vi vi_and(vi a, vi b) { return _mm256_and_si256(a, b); }
VAI vi vi_or(vi a, vi b) { return _mm256_or_si256(a, b); }
VAI vi vi_xor(vi a, vi b) { return _mm256_xor_si256(a, b); }
#define vi_sll(a, n) _mm256_slli_epi32((a), (n))
#define vi_srl(a, n) _mm256_srli_epi32((a), (n))
#define vi_sra(a, n) _mm256_srai_epi32((a), (n))
VAI vm vi_gt(vi a, vi b) { return _mm256_castsi256_ps(_mm256_cmpgt_epi32(a, b)); }
VAI vm vi_eq(vi a, vi b) { return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b)); }
VAI vi vi_sel(vm m, vi a, vi b) {
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(b), _mm256_castsi256_ps(a), m));
}
VAI vi vi_cvt(vf a) { return _mm256_cvttps_epi32(a); }
VAI vf vi_tof(vi a) { return _mm256_cvtepi32_ps(a); }
VAI vf v_lookup(const float *t, vi i) { return _mm256_i32gather_ps(t, i, 4); }
/* entries 0..7 and 8..15 by index bits 0-2; bit 3, shifted into the sign, blends */
VAI vf v_lookup16(const float *t, vi i) {
    vf lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(t), i);
    vf hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(t + 8), i);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)));
}

#elif defined(__ARM_NEON)
#include <arm_neon.h>
#define SB_V_NEON 1
#define VW 4
typedef float32x4_t vf;
typedef int32x4_t vi;
typedef uint32x4_t vm;
VAI vf v_set1(float x) { return vdupq_n_f32(x); }
VAI vf v_zero(void) { return vdupq_n_f32(0.0f); }
VAI vf v_load(const float *p) { return vld1q_f32(p); }
VAI void v_store(float *p, vf v) { vst1q_f32(p, v); }
VAI vf v_add(vf a, vf b) { return vaddq_f32(a, b); }
VAI vf v_sub(vf a, vf b) { return vsubq_f32(a, b); }
VAI vf v_mul(vf a, vf b) { return vmulq_f32(a, b); }
VAI vf v_div(vf a, vf b) { return vdivq_f32(a, b); }
VAI vf v_sqrt(vf a) { return vsqrtq_f32(a); }
VAI vf v_fma(vf a, vf b, vf c) { return vfmaq_f32(c, a, b); }
VAI vm v_lt(vf a, vf b) { return vcltq_f32(a, b); }
VAI vm v_le(vf a, vf b) { return vcleq_f32(a, b); }
VAI vm v_gt(vf a, vf b) { return vcgtq_f32(a, b); }
VAI vm v_ge(vf a, vf b) { return vcgeq_f32(a, b); }
VAI vm v_eq(vf a, vf b) { return vceqq_f32(a, b); }
VAI vm v_ne(vf a, vf b) { return vmvnq_u32(vceqq_f32(a, b)); }
VAI vm v_unord(vf a, vf b) { return vmvnq_u32(vandq_u32(vceqq_f32(a, a), vceqq_f32(b, b))); }
VAI vf v_sel(vm m, vf a, vf b) { return vbslq_f32(m, a, b); }
VAI vm m_and(vm a, vm b) { return vandq_u32(a, b); }
VAI vm m_or(vm a, vm b) { return vorrq_u32(a, b); }
VAI vm m_not(vm a) { return vmvnq_u32(a); }
VAI int m_any(vm a) { return vmaxvq_u32(a) != 0; }
VAI vf v_rint(vf a) { return vrndnq_f32(a); }
VAI vf v_floor(vf a) { return vrndmq_f32(a); }
VAI vf v_ceil(vf a) { return vrndpq_f32(a); }
VAI vf v_trunc(vf a) { return vrndq_f32(a); }
VAI vi v_bits(vf a) { return vreinterpretq_s32_f32(a); }
VAI vf v_from_bits(vi a) { return vreinterpretq_f32_s32(a); }
VAI vi vi_set1(int32_t x) { return vdupq_n_s32(x); }
VAI vi vi_add(vi a, vi b) { return vaddq_s32(a, b); }
VAI vi vi_sub(vi a, vi b) { return vsubq_s32(a, b); }
VAI vi vi_and(vi a, vi b) { return vandq_s32(a, b); }
VAI vi vi_or(vi a, vi b) { return vorrq_s32(a, b); }
VAI vi vi_xor(vi a, vi b) { return veorq_s32(a, b); }
#define vi_sll(a, n) vshlq_n_s32((a), (n))
#define vi_srl(a, n) vreinterpretq_s32_u32(vshrq_n_u32(vreinterpretq_u32_s32(a), (n)))
#define vi_sra(a, n) vshrq_n_s32((a), (n))
VAI vm vi_gt(vi a, vi b) { return vcgtq_s32(a, b); }
VAI vm vi_eq(vi a, vi b) { return vceqq_s32(a, b); }
VAI vi vi_sel(vm m, vi a, vi b) { return vbslq_s32(m, a, b); }
VAI vi vi_cvt(vf a) { return vcvtq_s32_f32(a); }
VAI vf vi_tof(vi a) { return vcvtq_f32_s32(a); }
VAI vf v_lookup(const float *t, vi i) {
    const float r[4] = {t[vgetq_lane_s32(i, 0)], t[vgetq_lane_s32(i, 1)], t[vgetq_lane_s32(i, 2)],
                        t[vgetq_lane_s32(i, 3)]};
    return vld1q_f32(r);
}
VAI vf v_lookup16(const float *t, vi i) { return v_lookup(t, i); }

#else
#define SB_V_SCALAR 1
#define VW 1
typedef float vf;
typedef int32_t vi;
typedef int vm;
VAI vf v_set1(float x) { return x; }
VAI vf v_zero(void) { return 0.0f; }
VAI vf v_load(const float *p) { return *p; }
VAI void v_store(float *p, vf v) { *p = v; }
VAI vf v_add(vf a, vf b) { return a + b; }
VAI vf v_sub(vf a, vf b) { return a - b; }
VAI vf v_mul(vf a, vf b) { return a * b; }
VAI vf v_div(vf a, vf b) { return a / b; }
VAI vf v_sqrt(vf a) { return sqrtf(a); }
VAI vf v_fma(vf a, vf b, vf c) { return fmaf(a, b, c); }
VAI vm v_lt(vf a, vf b) { return a < b; }
VAI vm v_le(vf a, vf b) { return a <= b; }
VAI vm v_gt(vf a, vf b) { return a > b; }
VAI vm v_ge(vf a, vf b) { return a >= b; }
VAI vm v_eq(vf a, vf b) { return a == b; }
VAI vm v_ne(vf a, vf b) { return !(a == b); }
VAI vm v_unord(vf a, vf b) { return a != a || b != b; }
VAI vf v_sel(vm m, vf a, vf b) { return m ? a : b; }
VAI vm m_and(vm a, vm b) { return a & b; }
VAI vm m_or(vm a, vm b) { return a | b; }
VAI vm m_not(vm a) { return !a; }
VAI int m_any(vm a) { return a != 0; }
VAI vf v_rint(vf a) { return rintf(a); }
VAI vf v_floor(vf a) { return floorf(a); }
VAI vf v_ceil(vf a) { return ceilf(a); }
VAI vf v_trunc(vf a) { return truncf(a); }
VAI vi v_bits(vf a) { vi r; memcpy(&r, &a, 4); return r; }
VAI vf v_from_bits(vi a) { vf r; memcpy(&r, &a, 4); return r; }
VAI vi vi_set1(int32_t x) { return x; }
VAI vi vi_add(vi a, vi b) { return (vi)((uint32_t)a + (uint32_t)b); }
VAI vi vi_sub(vi a, vi b) { return (vi)((uint32_t)a - (uint32_t)b); }
VAI vi vi_and(vi a, vi b) { return a & b; }
VAI vi vi_or(vi a, vi b) { return a | b; }
VAI vi vi_xor(vi a, vi b) { return a ^ b; }
#define vi_sll(a, n) ((vi)((uint32_t)(a) << (n)))
#define vi_srl(a, n) ((vi)((uint32_t)(a) >> (n)))
#define vi_sra(a, n) ((vi)((a) >> (n)))
VAI vm vi_gt(vi a, vi b) { return a > b; }
VAI vm vi_eq(vi a, vi b) { return a == b; }
VAI vi vi_sel(vm m, vi a, vi b) { return m ? a : b; }
VAI vi vi_cvt(vf a) { return (vi)a; }
VAI vf vi_tof(vi a) { return (vf)a; }
VAI vf v_lookup(const float *t, vi i) { return t[i]; }
VAI vf v_lookup16(const float *t, vi i) { return t[i]; }
#endif

/* Lane-independent helpers built from the operations above (the same on every backend) */
VAI vf v_neg(vf a) { return v_from_bits(vi_xor(v_bits(a), vi_set1((int32_t)0x80000000u))); }
VAI vf v_abs(vf a) { return v_from_bits(vi_and(v_bits(a), vi_set1(0x7fffffff))); }
/* |a| with b's sign bit */
VAI vf v_copysign(vf a, vf b) {
    return v_from_bits(vi_or(vi_and(v_bits(a), vi_set1(0x7fffffff)),
                             vi_and(v_bits(b), vi_set1((int32_t)0x80000000u))));
}
VAI vm v_isnan(vf a) { return v_ne(a, a); }
/* 2^n for integral n in [-126, 127], exactly */
VAI vf v_pow2i(vi n) { return v_from_bits(vi_sll(vi_add(n, vi_set1(127)), 23)); }

/* ------------------------------------------------------------------ bundles */
#ifndef VN
/* vectors per bundle, on every backend: 4 measured fastest on AVX2 (Zen 2) for the cheap
   functions (exp, sigmoid) and clearly so for the long ones (lgamma, pow, erfinv), whose
   eight-vector bundles spilled registers */
#define VN 4
#endif
typedef struct { vf v[VN]; } vfn;
typedef struct { vi v[VN]; } vin;
typedef struct { vm v[VN]; } vmn;
#define VEACH for (int u_ = 0; u_ < VN; u_++)
#define VN_UN(name, T, R, expr) VAI R name(T a) { R r; VEACH r.v[u_] = expr; return r; }
#define VN_BIN(name, T, R, expr) VAI R name(T a, T b) { R r; VEACH r.v[u_] = expr; return r; }
VN_UN(n_sqrt, vfn, vfn, v_sqrt(a.v[u_]))
VN_UN(n_neg, vfn, vfn, v_neg(a.v[u_]))
VN_UN(n_abs, vfn, vfn, v_abs(a.v[u_]))
VN_UN(n_rint, vfn, vfn, v_rint(a.v[u_]))
VN_UN(n_floor, vfn, vfn, v_floor(a.v[u_]))
VN_UN(n_ceil, vfn, vfn, v_ceil(a.v[u_]))
VN_UN(n_trunc, vfn, vfn, v_trunc(a.v[u_]))
VN_UN(n_isnan, vfn, vmn, v_isnan(a.v[u_]))
VN_UN(n_bits, vfn, vin, v_bits(a.v[u_]))
VN_UN(n_from_bits, vin, vfn, v_from_bits(a.v[u_]))
VN_UN(n_cvt, vfn, vin, vi_cvt(a.v[u_]))
VN_UN(n_itof, vin, vfn, vi_tof(a.v[u_]))
VN_UN(n_pow2i, vin, vfn, v_pow2i(a.v[u_]))
VN_UN(m_notn, vmn, vmn, m_not(a.v[u_]))
VN_BIN(n_add, vfn, vfn, v_add(a.v[u_], b.v[u_]))
VN_BIN(n_sub, vfn, vfn, v_sub(a.v[u_], b.v[u_]))
VN_BIN(n_mul, vfn, vfn, v_mul(a.v[u_], b.v[u_]))
VN_BIN(n_div, vfn, vfn, v_div(a.v[u_], b.v[u_]))
VN_BIN(n_copysign, vfn, vfn, v_copysign(a.v[u_], b.v[u_]))
/* a with b's sign bit or-ed in: copysign(a, b) for a with a clear sign bit (a >= +0) */
VN_BIN(n_orsign, vfn, vfn, v_from_bits(vi_or(v_bits(a.v[u_]), vi_and(v_bits(b.v[u_]), vi_set1((int32_t)0x80000000u)))))
VN_BIN(n_lt, vfn, vmn, v_lt(a.v[u_], b.v[u_]))
VN_BIN(n_le, vfn, vmn, v_le(a.v[u_], b.v[u_]))
VN_BIN(n_gt, vfn, vmn, v_gt(a.v[u_], b.v[u_]))
VN_BIN(n_ge, vfn, vmn, v_ge(a.v[u_], b.v[u_]))
VN_BIN(n_eq, vfn, vmn, v_eq(a.v[u_], b.v[u_]))
VN_BIN(n_ne, vfn, vmn, v_ne(a.v[u_], b.v[u_]))
VN_BIN(n_unord, vfn, vmn, v_unord(a.v[u_], b.v[u_]))
VN_BIN(m_andn, vmn, vmn, m_and(a.v[u_], b.v[u_]))
VN_BIN(m_orn, vmn, vmn, m_or(a.v[u_], b.v[u_]))
VN_BIN(ni_add, vin, vin, vi_add(a.v[u_], b.v[u_]))
VN_BIN(ni_sub, vin, vin, vi_sub(a.v[u_], b.v[u_]))
VN_BIN(ni_and, vin, vin, vi_and(a.v[u_], b.v[u_]))
VN_BIN(ni_or, vin, vin, vi_or(a.v[u_], b.v[u_]))
VN_BIN(ni_xor, vin, vin, vi_xor(a.v[u_], b.v[u_]))
VN_BIN(ni_gt, vin, vmn, vi_gt(a.v[u_], b.v[u_]))
VN_BIN(ni_eq, vin, vmn, vi_eq(a.v[u_], b.v[u_]))
#undef VN_UN
#undef VN_BIN
VAI vfn n_fma(vfn a, vfn b, vfn c) { vfn r; VEACH r.v[u_] = v_fma(a.v[u_], b.v[u_], c.v[u_]); return r; }
VAI vfn n_sel(vmn m, vfn a, vfn b) { vfn r; VEACH r.v[u_] = v_sel(m.v[u_], a.v[u_], b.v[u_]); return r; }
VAI vin ni_sel(vmn m, vin a, vin b) { vin r; VEACH r.v[u_] = vi_sel(m.v[u_], a.v[u_], b.v[u_]); return r; }
VAI vfn n_set1(float x) { vfn r; VEACH r.v[u_] = v_set1(x); return r; }
VAI vin ni_set1(int32_t x) { vin r; VEACH r.v[u_] = vi_set1(x); return r; }
VAI int m_anyn(vmn m) { int a = 0; VEACH a |= m_any(m.v[u_]); return a; }
/* every lane of the bundle set */
VAI int m_alln(vmn m) { int a = 0; VEACH a |= m_any(m_not(m.v[u_])); return !a; }
VAI vfn n_lookup(const float *t, vin i) { vfn r; VEACH r.v[u_] = v_lookup(t, i.v[u_]); return r; }
VAI vfn n_lookup16(const float *t, vin i) {
    vfn r;
    VEACH r.v[u_] = v_lookup16(t, i.v[u_]);
    return r;
}
#define ni_sll(a, n) ({ vin r_; VEACH r_.v[u_] = vi_sll((a).v[u_], (n)); r_; })
#define ni_srl(a, n) ({ vin r_; VEACH r_.v[u_] = vi_srl((a).v[u_], (n)); r_; })
#define ni_sra(a, n) ({ vin r_; VEACH r_.v[u_] = vi_sra((a).v[u_], (n)); r_; })
/* a constant, written CF(1.5f) in a formula */
#define CF(x) n_set1(x)
/* float lanes of a bundle as an array (VN * VW floats), for loads and stores */
VAI vfn n_load(const float *p) { vfn r; VEACH r.v[u_] = v_load(p + u_ * VW); return r; }
VAI void n_store(float *p, vfn a) { VEACH v_store(p + u_ * VW, a.v[u_]); }
#define VNW (VN * VW) /* floats per bundle */

/* ------------------------------------------- rows of float32 or bfloat16, doubles */
/* Additions for the kernels outside the pointwise engine (norm.c):
 *   v_load_dt(p, i, dt)     VW elements of a float32 (dt 0) or bfloat16 (dt 1) row from
 *                           element i, as float32 (bfloat16 widened exactly)
 *   v_store_dt(p, i, v, dt) VW lanes stored as dt: float32 with every NaN made the
 *                           canonical 0x7fc00000, bfloat16 rounded half to even with a
 *                           NaN stored as 0x7fc0 (the bits of sb_common.h's st())
 *   vd2                     the VW lanes of a vf as doubles (two double vectors)
 *   vd2_from(v) / vd2_to(d) exact widening / rounding to nearest float32 (as a C cast)
 *   vd2_set1, vd2_add, vd2_sub, vd2_mul   correctly rounded double operations
 *   vd2_fma(a, b, c)        a * b + c rounded once (fma) */
#if defined(SB_V_AVX512)
typedef struct { __m512d lo, hi; } vd2;
VAI vf v_load_dt(const void *p, int64_t i, const int dt) {
    if (dt == 1)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i))), 16));
    return _mm512_loadu_ps((const float *)p + i);
}
VAI void v_store_dt(void *p, int64_t i, vf v, const int dt) {
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    if (dt != 1) {
        _mm512_storeu_ps((float *)p + i, _mm512_mask_mov_ps(v, nan, _mm512_castsi512_ps(_mm512_set1_epi32(0x7fc00000))));
        return;
    }
    __m512i u = _mm512_castps_si512(v);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16);
    _mm256_storeu_si256((__m256i *)((uint16_t *)p + i),
                        _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, _mm512_set1_epi32(0x7fc0))));
}
VAI vd2 vd2_from(vf v) {
    vd2 r = {_mm512_cvtps_pd(_mm512_castps512_ps256(v)), _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1))};
    return r;
}
VAI vf vd2_to(vd2 d) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(d.lo)), _mm512_cvtpd_ps(d.hi), 1);
}
VAI vd2 vd2_set1(double x) { vd2 r = {_mm512_set1_pd(x), _mm512_set1_pd(x)}; return r; }
VAI vd2 vd2_add(vd2 a, vd2 b) { vd2 r = {_mm512_add_pd(a.lo, b.lo), _mm512_add_pd(a.hi, b.hi)}; return r; }
VAI vd2 vd2_sub(vd2 a, vd2 b) { vd2 r = {_mm512_sub_pd(a.lo, b.lo), _mm512_sub_pd(a.hi, b.hi)}; return r; }
VAI vd2 vd2_mul(vd2 a, vd2 b) { vd2 r = {_mm512_mul_pd(a.lo, b.lo), _mm512_mul_pd(a.hi, b.hi)}; return r; }
VAI vd2 vd2_fma(vd2 a, vd2 b, vd2 c) {
    vd2 r = {_mm512_fmadd_pd(a.lo, b.lo, c.lo), _mm512_fmadd_pd(a.hi, b.hi, c.hi)};
    return r;
}

#elif defined(SB_V_AVX2)
typedef struct { __m256d lo, hi; } vd2;
VAI vf v_load_dt(const void *p, int64_t i, const int dt) {
    if (dt == 1)
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i))), 16));
    return _mm256_loadu_ps((const float *)p + i);
}
VAI void v_store_dt(void *p, int64_t i, vf v, const int dt) {
    __m256 nanf = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    if (dt != 1) {
        _mm256_storeu_ps((float *)p + i, _mm256_blendv_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)), nanf));
        return;
    }
    __m256i u = _mm256_castps_si256(v);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd)), 16);
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), _mm256_castps_si256(nanf));
    _mm_storeu_si128((__m128i *)((uint16_t *)p + i),
                     _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
}
VAI vd2 vd2_from(vf v) {
    vd2 r = {_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))};
    return r;
}
VAI vf vd2_to(vd2 d) { return _mm256_set_m128(_mm256_cvtpd_ps(d.hi), _mm256_cvtpd_ps(d.lo)); }
VAI vd2 vd2_set1(double x) { vd2 r = {_mm256_set1_pd(x), _mm256_set1_pd(x)}; return r; }
VAI vd2 vd2_add(vd2 a, vd2 b) { vd2 r = {_mm256_add_pd(a.lo, b.lo), _mm256_add_pd(a.hi, b.hi)}; return r; }
VAI vd2 vd2_sub(vd2 a, vd2 b) { vd2 r = {_mm256_sub_pd(a.lo, b.lo), _mm256_sub_pd(a.hi, b.hi)}; return r; }
VAI vd2 vd2_mul(vd2 a, vd2 b) { vd2 r = {_mm256_mul_pd(a.lo, b.lo), _mm256_mul_pd(a.hi, b.hi)}; return r; }
VAI vd2 vd2_fma(vd2 a, vd2 b, vd2 c) {
    vd2 r = {_mm256_fmadd_pd(a.lo, b.lo, c.lo), _mm256_fmadd_pd(a.hi, b.hi, c.hi)};
    return r;
}

#elif defined(SB_V_NEON)
typedef struct { float64x2_t lo, hi; } vd2;
VAI vf v_load_dt(const void *p, int64_t i, const int dt) {
    if (dt == 1) return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)p + i), 16));
    return vld1q_f32((const float *)p + i);
}
VAI void v_store_dt(void *p, int64_t i, vf v, const int dt) {
    uint32x4_t ok = vceqq_f32(v, v);
    if (dt != 1) {
        vst1q_f32((float *)p + i, vbslq_f32(ok, v, vreinterpretq_f32_u32(vdupq_n_u32(0x7fc00000u))));
        return;
    }
    uint32x4_t u = vreinterpretq_u32_f32(v);
    uint32x4_t odd = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    uint32x4_t r = vshrq_n_u32(vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7fff), odd)), 16);
    vst1_u16((uint16_t *)p + i, vmovn_u32(vbslq_u32(ok, r, vdupq_n_u32(0x7fc0))));
}
VAI vd2 vd2_from(vf v) { vd2 r = {vcvt_f64_f32(vget_low_f32(v)), vcvt_high_f64_f32(v)}; return r; }
VAI vf vd2_to(vd2 d) { return vcvt_high_f32_f64(vcvt_f32_f64(d.lo), d.hi); }
VAI vd2 vd2_set1(double x) { vd2 r = {vdupq_n_f64(x), vdupq_n_f64(x)}; return r; }
VAI vd2 vd2_add(vd2 a, vd2 b) { vd2 r = {vaddq_f64(a.lo, b.lo), vaddq_f64(a.hi, b.hi)}; return r; }
VAI vd2 vd2_sub(vd2 a, vd2 b) { vd2 r = {vsubq_f64(a.lo, b.lo), vsubq_f64(a.hi, b.hi)}; return r; }
VAI vd2 vd2_mul(vd2 a, vd2 b) { vd2 r = {vmulq_f64(a.lo, b.lo), vmulq_f64(a.hi, b.hi)}; return r; }
VAI vd2 vd2_fma(vd2 a, vd2 b, vd2 c) {
    vd2 r = {vfmaq_f64(c.lo, a.lo, b.lo), vfmaq_f64(c.hi, a.hi, b.hi)};
    return r;
}

#else
typedef struct { double x; } vd2;
VAI vf v_load_dt(const void *p, int64_t i, const int dt) {
    if (dt == 1) {
        uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return ((const float *)p)[i];
}
VAI void v_store_dt(void *p, int64_t i, vf v, const int dt) {
    uint32_t u;
    memcpy(&u, &v, 4);
    int nan = (u & 0x7fffffffu) > 0x7f800000u;
    if (dt != 1) {
        ((float *)p)[i] = nan ? __builtin_nanf("") : v;
        return;
    }
    ((uint16_t *)p)[i] = nan ? 0x7fc0 : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
VAI vd2 vd2_from(vf v) { vd2 r = {(double)v}; return r; }
VAI vf vd2_to(vd2 d) { return (float)d.x; }
VAI vd2 vd2_set1(double x) { vd2 r = {x}; return r; }
VAI vd2 vd2_add(vd2 a, vd2 b) { vd2 r = {a.x + b.x}; return r; }
VAI vd2 vd2_sub(vd2 a, vd2 b) { vd2 r = {a.x - b.x}; return r; }
VAI vd2 vd2_mul(vd2 a, vd2 b) { vd2 r = {a.x * b.x}; return r; }
VAI vd2 vd2_fma(vd2 a, vd2 b, vd2 c) { vd2 r = {fma(a.x, b.x, c.x)}; return r; }
#endif

/* -------------------------------------------------- doubles, VD lanes per vector */
/* The double vectors of the SUM and ALL orders (reductions.c): VD double lanes, a full
 * register (8 on AVX-512, 4 on AVX2, 2 on NEON, 1 scalar).
 *   vd_zero, vd_load, vd_store          VD doubles (unaligned)
 *   vd_add, vd_sub, vd_mul              correctly rounded, as the C operators
 *   vd_widen8(p, i, dt, o)              the 8 elements of a float32 or bfloat16 array
 *                                       from i, exactly widened: o[j] lane l holds
 *                                       element i + j VD + l (8 / VD vectors)
 *   vd_cols8(p, i, R, dt, o)            8 elements of each of VD rows R apart, from i,
 *                                       transposed: o[q] lane l holds element
 *                                       i + l R + q (8 vectors)
 * Data movement and exact widening only: every double a lane holds is the C cast of
 * its element. */
#if defined(SB_V_AVX512) || defined(SB_V_AVX2)
/* 8 float32 or bfloat16 elements as float32: sb_common.h's v8_load (included first in
   every translation unit) */
/* four rows of 8: u[q] = (r[0][q], .., r[3][q] | r[0][q + 4], .., r[3][q + 4]) */
VAI void x8_t4x8(const __m256 r[4], __m256 u[4]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]),
           t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    u[0] = _mm256_shuffle_ps(t0, t2, 0x44);
    u[1] = _mm256_shuffle_ps(t0, t2, 0xEE);
    u[2] = _mm256_shuffle_ps(t1, t3, 0x44);
    u[3] = _mm256_shuffle_ps(t1, t3, 0xEE);
}
#endif

#if defined(SB_V_AVX512)
#define VD 8
typedef __m512d vd;
VAI vd vd_zero(void) { return _mm512_setzero_pd(); }
VAI vd vd_load(const double *p) { return _mm512_loadu_pd(p); }
VAI void vd_store(double *p, vd v) { _mm512_storeu_pd(p, v); }
VAI vd vd_add(vd a, vd b) { return _mm512_add_pd(a, b); }
VAI vd vd_sub(vd a, vd b) { return _mm512_sub_pd(a, b); }
VAI vd vd_mul(vd a, vd b) { return _mm512_mul_pd(a, b); }
VAI void vd_widen8(const void *p, int64_t i, const int dt, vd o[1]) {
    o[0] = _mm512_cvtps_pd(v8_load(p, i, dt));
}
VAI void vd_cols8(const void *p, int64_t i, int64_t R, const int dt, vd o[8]) {
    /* rows 0..3 and 4..7, whole arrays (they stay in registers); rows addressed from
       pointers to element i (an index i + w R had GCC spill the float32 rows) */
    __m256 a[4], b[4], u[4], v[4];
    const float *f = (const float *)p + i;
    const uint16_t *h = (const uint16_t *)p + i;
    for (int w = 0; w < 4; w++)
        a[w] = dt == 1 ? v8_load(h + w * R, 0, 1) : _mm256_loadu_ps(f + w * R);
    x8_t4x8(a, u);
    for (int w = 4; w < 8; w++)
        b[w - 4] = dt == 1 ? v8_load(h + w * R, 0, 1) : _mm256_loadu_ps(f + w * R);
    x8_t4x8(b, v);
    for (int q = 0; q < 4; q++) {
        o[q] = _mm512_cvtps_pd(_mm256_permute2f128_ps(u[q], v[q], 0x20));
        o[q + 4] = _mm512_cvtps_pd(_mm256_permute2f128_ps(u[q], v[q], 0x31));
    }
}

#elif defined(SB_V_AVX2)
#define VD 4
typedef __m256d vd;
VAI vd vd_zero(void) { return _mm256_setzero_pd(); }
VAI vd vd_load(const double *p) { return _mm256_loadu_pd(p); }
VAI void vd_store(double *p, vd v) { _mm256_storeu_pd(p, v); }
VAI vd vd_add(vd a, vd b) { return _mm256_add_pd(a, b); }
VAI vd vd_sub(vd a, vd b) { return _mm256_sub_pd(a, b); }
VAI vd vd_mul(vd a, vd b) { return _mm256_mul_pd(a, b); }
VAI void vd_widen8(const void *p, int64_t i, const int dt, vd o[2]) {
    __m256 v = v8_load(p, i, dt);
    o[0] = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    o[1] = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}
VAI void vd_cols8(const void *p, int64_t i, int64_t R, const int dt, vd o[8]) {
    __m256 r[4], u[4];
    for (int w = 0; w < 4; w++) r[w] = v8_load(p, i + w * R, dt);
    x8_t4x8(r, u);
    for (int q = 0; q < 4; q++) {
        o[q] = _mm256_cvtps_pd(_mm256_castps256_ps128(u[q]));
        o[q + 4] = _mm256_cvtps_pd(_mm256_extractf128_ps(u[q], 1));
    }
}

#elif defined(SB_V_NEON)
#define VD 2
typedef float64x2_t vd;
VAI vd vd_zero(void) { return vdupq_n_f64(0.0); }
VAI vd vd_load(const double *p) { return vld1q_f64(p); }
VAI void vd_store(double *p, vd v) { vst1q_f64(p, v); }
VAI vd vd_add(vd a, vd b) { return vaddq_f64(a, b); }
VAI vd vd_sub(vd a, vd b) { return vsubq_f64(a, b); }
VAI vd vd_mul(vd a, vd b) { return vmulq_f64(a, b); }
VAI void vd_widen8(const void *p, int64_t i, const int dt, vd o[4]) {
    for (int h = 0; h < 2; h++) {
        float32x4_t v = v_load_dt(p, i + 4 * h, dt);
        o[2 * h] = vcvt_f64_f32(vget_low_f32(v));
        o[2 * h + 1] = vcvt_high_f64_f32(v);
    }
}
VAI void vd_cols8(const void *p, int64_t i, int64_t R, const int dt, vd o[8]) {
    for (int h = 0; h < 2; h++) {
        float32x4_t a = v_load_dt(p, i + 4 * h, dt), b = v_load_dt(p, i + R + 4 * h, dt);
        float32x4_t lo = vzip1q_f32(a, b), hi = vzip2q_f32(a, b); /* a0 b0 a1 b1, a2 b2 a3 b3 */
        o[4 * h] = vcvt_f64_f32(vget_low_f32(lo));
        o[4 * h + 1] = vcvt_high_f64_f32(lo);
        o[4 * h + 2] = vcvt_f64_f32(vget_low_f32(hi));
        o[4 * h + 3] = vcvt_high_f64_f32(hi);
    }
}

#else
#define VD 1
typedef double vd;
VAI vd vd_zero(void) { return 0.0; }
VAI vd vd_load(const double *p) { return *p; }
VAI void vd_store(double *p, vd v) { *p = v; }
VAI vd vd_add(vd a, vd b) { return a + b; }
VAI vd vd_sub(vd a, vd b) { return a - b; }
VAI vd vd_mul(vd a, vd b) { return a * b; }
VAI void vd_widen8(const void *p, int64_t i, const int dt, vd o[8]) {
    for (int j = 0; j < 8; j++) o[j] = (double)v_load_dt(p, i + j, dt);
}
VAI void vd_cols8(const void *p, int64_t i, int64_t R, const int dt, vd o[8]) {
    (void)R;
    for (int q = 0; q < 8; q++) o[q] = (double)v_load_dt(p, i + q, dt);
}
#endif

#endif /* SB_SIMD_H */
