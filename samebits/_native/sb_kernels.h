/* GENERATED from samebits/_native/_decls.py by `python -m samebits._native._decls`:
   edit the list there, never this file (tests/native/test_abi.py checks it). */
#ifndef SB_KERNELS_H
#define SB_KERNELS_H
#define SB_ABI_VERSION 255992059

/* gemm */
/* 0, -1 when a work buffer cannot be allocated, -2 for a layout the order cannot take */
SB_API int SB_FN(sb_gemm)(const void *A, i64 lda, i64 ka, i64 sa, const void *B, i64 bk, i64 bn, i64 sb, float *C, i64 ldc, i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt, int dt, int order, int nthreads);
/* sb_gemm with an output map (12 int64: struct omap in gemm.c) */
SB_API int SB_FN(sb_gemm_map)(const void *A, i64 lda, i64 ka, i64 sa, const void *B, i64 bk, i64 bn, i64 sb, float *C, i64 ldc, i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt, int dt, int order, int nthreads, const i64 *map);
/* reductions */
SB_API void SB_FN(sb_sum)(const void *x, i64 outer, i64 R, i64 inner, const double *center, int square, double *out, int dt, int nthreads);
/* 0, or -1 when a work buffer cannot be allocated */
SB_API int SB_FN(sb_sum_all)(const void *x, i64 n, int dt, int nthreads, double *out);
/* pointwise */
SB_API i64 SB_FN(sb_pw_ops)(char *buf, i64 cap);
SB_API int SB_FN(sb_pointwise)(int op, i64 n, const void *x0, const void *x1, const void *x2, const int *dts, const int *strides, void *y, int odt, const double *params, int nparams, int nthreads);
/* softmax */
/* 0, or -1 when a work buffer cannot be allocated */
SB_API int SB_FN(sb_softmax)(const void *x, void *y, i64 rows, i64 R, int mode, int dt_in, int dt_out, int nthreads);
/* attention */
SB_API int SB_FN(sb_attention)(const void *q, const void *k, const void *v, const void *mask, const i64 *meta, int mkind, float *out, float scale, int dt, int nthreads);
/* norm */
SB_API void SB_FN(sb_norm)(const void *x, const void *w, const void *b, void *y, float *mean_out, float *rstd_out, i64 rows, i64 R, double eps, int kind, int dt, int wdt, int nthreads);
SB_API void SB_FN(sb_affine)(const void *x, void *y, const float *scale, const float *shift, i64 outer, i64 C, i64 inner, i64 ss, int dt_in, int dt_out, int nthreads);
/* exact */
SB_API void SB_FN(sb_exact_acc)(const void *x, i64 outer, i64 R, i64 inner, int dt, int64_t *out, int32_t *flags, int nthreads);
/* conv */
/* 0, or -1 when a work buffer cannot be allocated */
SB_API int SB_FN(sb_depthwise)(const void *x, const void *w, const void *bias, void *out, const i64 *meta, int dt, int wdt, int nthreads);
/* 0, or -1 when a work buffer cannot be allocated */
SB_API int SB_FN(sb_depthwise_nchw)(const void *x, const void *w, const void *bias, void *out, const i64 *meta, int dt, int wdt, int nthreads);
SB_API void SB_FN(sb_im2col)(const void *x, const i64 *meta, i64 r0, i64 r1, void *dst, int dt, int nthreads);
SB_API void SB_FN(sb_pad_cl)(const void *x, const i64 *meta, void *dst, int dt, int nthreads);
/* exact */
SB_API void SB_FN(sb_exact_dot)(const void *a, const void *b, i64 n, int dt, int64_t *out, int32_t *flags);

#endif /* SB_KERNELS_H */
