/* ------------------------------------------------------------- depthwise conv */
/* One input channel per output channel (groups == channels), channels-last:
   x (N, D, H, W, C) already padded, w (KD*KH*KW, C); out (N, OD, OH, OW, C) float32,
   or with meta[17] = 1 out (N, C, OD, OH, OW) in dtype meta[18] (bfloat16 rounded once).
   With meta[19] = 1 (AVX-512 paths only; -2 elsewhere) x is the unpadded NCDHW input
   instead, padded here by meta[20..22] = pd, ph, pw (D, H, W are the padded sizes).
   meta = {N, D, H, W, C, KD, KH, KW, sd, sh, sw, dd, dh, dw, OD, OH, OW, nchw, odt,
           xnchw, pd, ph, pw}.

   Order TAP, for output (n, od, oh, ow, c): acc = +0; acc = fma(x, w[t][c], acc)
   for the taps t = (kd, kh, kw) in row-major order; then acc + bias[c]. Vector
   lanes carry different channels (and blocks of up to DW_OW ow carry different
   outputs), never parts of one sum, so every ISA path and every thread split give the same
   bits. Threads take whole blocks of channels of an (n, od) output plane. */

#define DW_OW 8

/* off[t] for the taps t = (kd, kh, kw) in row-major order: where tap t reads, relative
   to its window's first element, in a padded input of rows W and planes H x W whose
   elements are C apart (C channels-last, 1 for one NCDHW plane) */
static void tap_offsets(i64 *off, i64 KD, i64 KH, i64 KW, i64 dd, i64 dh, i64 dw, i64 H, i64 W,
                        i64 C) {
    for (i64 kd = 0, t = 0; kd < KD; kd++)
        for (i64 kh = 0; kh < KH; kh++)
            for (i64 kw = 0; kw < KW; kw++, t++) off[t] = ((kd * dd * H + kh * dh) * W + kw * dw) * C;
}

static inline __attribute__((always_inline)) void dw_block(const char *x, const void *w, i64 xoff0,
                                                           i64 xstep, const i64 *tapoff, i64 taps,
                                                           i64 c, int nc, i64 C, int dt, int wdt,
                                                           int nw, v8 acc[DW_OW]) {
    /* nw (1..DW_OW) outputs ow0.., each xstep elements apart in x, channels c..c+nc */
    for (int q = 0; q < DW_OW; q++) acc[q] = v8_zero();
    for (i64 t = 0; t < taps; t++) {
        v8 wv = nc == 8 ? v8_load(w, t * C + c, wdt) : v8_load_n(w, t * C + c, nc, wdt);
        i64 base = xoff0 + tapoff[t] + c;
        for (int q = 0; q < nw; q++) {
            i64 o = base + q * xstep;
            v8 xv = nc == 8 ? v8_load(x, o, dt) : v8_load_n(x, o, nc, dt);
            acc[q] = v8_fma(xv, wv, acc[q]);
        }
    }
}

/* the same operations for a full block (8 outputs x 8 channels), with every bound
   and dtype a constant at the call site, so the accumulators stay in registers */
static inline __attribute__((always_inline)) void dw_block_full(const void *x, const void *w,
                                                                i64 xoff0, i64 xstep,
                                                                const i64 *tapoff, i64 taps,
                                                                i64 c, i64 C, const int dt,
                                                                v8 acc[DW_OW]) {
    for (int q = 0; q < DW_OW; q++) acc[q] = v8_zero();
    for (i64 t = 0; t < taps; t++) {
        v8 wv = v8_load(w, t * C + c, dt);
        i64 o = xoff0 + tapoff[t] + c;
        for (int q = 0; q < DW_OW; q++) acc[q] = v8_fma(v8_load(x, o + q * xstep, dt), wv, acc[q]);
    }
}

/* where a depthwise block's outputs go: channels-last float32 (o: output (q, channel
   c + l) at o[q * C + l]), or NCHW in odt (o unused: output (q, channel c + l) at
   element at + l * plane + q of out) */
struct dw_dst {
    float *o;
    void *out;
    i64 at, plane;
    int nchw, odt;
};

#ifdef __AVX512F__
/* n (1..8) outputs of 8 consecutive channels, r[q] = output q of the 8 channels, to
   NCHW: transposed in registers, each channel's run stored at once */
static inline void dw_store8_nchw(const __m256 r[8], int n, int nc, const struct dw_dst *d,
                                  i64 l0) {
    __m256 t[8];
    t8x8(r, t); /* t[l]: outputs 0..7 of channel l */
    for (int l = 0; l < nc; l++) {
        i64 at = d->at + (l0 + l) * d->plane;
        if (n == 8) {
            v8_store_dt(d->out, at, t[l], d->odt);
        } else {
            float v[8];
            v8_store(v, t[l]);
            for (int q = 0; q < n; q++) st(d->out, at + q, v[q], d->odt);
        }
    }
}

/* AVX-512: NW (1..DW_OW) outputs of a block of 16 channels, the same operations per
   output: xb is the block's compact float32 copy (16 channels a position, so its
   positions fill every L1 set: in the full tensor they sit C channels apart, which
   for C = 384 or 768 maps them all to 8 or 4 of the 64 sets), wb its weights (taps,
   16), bb its bias. Lanes past the block's nc channels are zeros and are not stored. */
static inline __attribute__((always_inline)) void dw_block16(const float *xb, const float *wb,
                                                             const float *bb, i64 xoff0, i64 xstep,
                                                             const i64 *tapoff, i64 taps, int nc,
                                                             i64 C, const int NW,
                                                             const struct dw_dst *d) {
    __m512 acc[DW_OW];
    for (int q = 0; q < NW; q++) acc[q] = _mm512_setzero_ps();
    for (i64 t = 0; t < taps; t++) {
        __m512 wv = _mm512_loadu_ps(wb + 16 * t);
        const float *xt = xb + xoff0 + tapoff[t];
        __asm__("" : "+r"(xt)); /* one base register, constant offsets (see dwz_block) */
        for (int q = 0; q < NW; q++)
            acc[q] = _mm512_fmadd_ps(_mm512_loadu_ps(xt + q * xstep), wv, acc[q]);
    }
    if (bb)
        for (int q = 0; q < NW; q++) acc[q] = _mm512_add_ps(acc[q], _mm512_loadu_ps(bb));
    if (!d->nchw) {
        __mmask16 m = (__mmask16)((1u << nc) - 1);
        for (int q = 0; q < NW; q++) _mm512_mask_storeu_ps(d->o + q * C, m, z16_canon(acc[q]));
        return;
    }
    for (int h = 0; h < 2 && 8 * h < nc; h++) {
        __m256 r[8];
        for (int q = 0; q < 8; q++)
            r[q] = q >= NW ? _mm256_setzero_ps()
                           : (h ? _mm512_extractf32x8_ps(acc[q], 1) : _mm512_castps512_ps256(acc[q]));
        dw_store8_nchw(r, NW, nc - 8 * h < 8 ? nc - 8 * h : 8, d, 8 * h);
    }
}

#define DW16(NW)                                                                                   \
    static void dw16_##NW(const float *xb, const float *wb, const float *bb, i64 xoff0, i64 xstep, \
                          const i64 *tapoff, i64 taps, int nc, i64 C, const struct dw_dst *d) {    \
        dw_block16(xb, wb, bb, xoff0, xstep, tapoff, taps, nc, C, NW, d);                          \
    }
DW16(1)
DW16(2)
DW16(3)
DW16(4)
DW16(5)
DW16(6)
DW16(7)
DW16(8)
typedef void (*dw16_fn)(const float *, const float *, const float *, i64, i64, const i64 *, i64,
                        int, i64, const struct dw_dst *);
static const dw16_fn DW16S[DW_OW + 1] = {NULL, dw16_1, dw16_2, dw16_3, dw16_4,
                                         dw16_5, dw16_6, dw16_7, dw16_8};

/* the compact copy of channels [c0, c0 + nc) of an item's padded channels-last input
   (P positions C channels apart, from element base) as float32, 16 a position, zeros
   past nc */
static void dw_gather16_cl(const void *x, i64 base, i64 P, i64 C, i64 c0, int nc, int dt,
                           float *xb) {
    __mmask16 m = (__mmask16)((1u << nc) - 1);
    for (i64 p = 0; p < P; p++) _mm512_storeu_ps(xb + 16 * p, z16_load_mask(x, base + p * C + c0, m, dt));
}

/* the same block from item n of an unpadded NCDHW input (D0 x H0 x W0 planes, padded
   here to D x H x W by pd, ph, pw): 8 positions x 8 channels transposed in registers */
static void dw_gather16_nchw(const void *x, i64 n, i64 C, i64 D, i64 H, i64 W, i64 pd, i64 ph,
                             i64 pw, i64 c0, int nc, int dt, float *xb) {
    i64 D0 = D - 2 * pd, H0 = H - 2 * ph, W0 = W - 2 * pw, cs = D0 * H0 * W0;
    for (i64 d = 0; d < D; d++)
        for (i64 h = 0; h < H; h++) {
            float *row = xb + (d * H + h) * W * 16;
            if (d < pd || d >= pd + D0 || h < ph || h >= ph + H0) {
                memset(row, 0, (size_t)W * 64);
                continue;
            }
            memset(row, 0, (size_t)pw * 64);
            memset(row + (pw + W0) * 16, 0, (size_t)(W - pw - W0) * 64);
            i64 src = ((n * C + c0) * D0 + d - pd) * H0 * W0 + (h - ph) * W0;
            for (i64 w0 = 0; w0 < W0; w0 += 8) {
                int nw = (int)(W0 - w0 < 8 ? W0 - w0 : 8);
                for (int half = 0; half < 2; half++) {
                    __m256 r[8], t[8];
                    for (int l = 0; l < 8; l++) {
                        int ch = 8 * half + l;
                        i64 at = src + ch * cs + w0;
                        r[l] = ch >= nc ? _mm256_setzero_ps()
                                        : (nw == 8 ? v8_load(x, at, dt) : v8_load_n(x, at, nw, dt));
                    }
                    t8x8(r, t); /* t[q]: channels 8 half .. 8 half + 7 at position w0 + q */
                    for (int q = 0; q < nw; q++) _mm256_storeu_ps(row + (pw + w0 + q) * 16 + 8 * half, t[q]);
                }
            }
        }
}

/* the block's weights (taps, 16) and bias, float32, zeros past nc */
static void dw_weights16(const void *w, const void *bias, int wdt, i64 taps, i64 C, i64 c0, int nc,
                         float *wb, float *bb) {
    for (i64 t = 0; t < taps; t++)
        for (int l = 0; l < 16; l++) wb[16 * t + l] = l < nc ? ld(w, t * C + c0 + l, wdt) : 0.0f;
    if (bias)
        for (int l = 0; l < 16; l++) bb[l] = l < nc ? ld(bias, c0 + l, wdt) : 0.0f;
}
#endif

SB_API int SB_FN(sb_depthwise)(const void *x, const void *w, const void *bias, void *out,
                               const i64 *meta, int dt, int wdt, int nthreads) {
    i64 N = meta[0], D = meta[1], H = meta[2], W = meta[3], C = meta[4];
    i64 KD = meta[5], KH = meta[6], KW = meta[7];
    i64 sd = meta[8], sh = meta[9], sw = meta[10], dd = meta[11], dh = meta[12], dw = meta[13];
    i64 OD = meta[14], OH = meta[15], OW = meta[16];
    int nchw = (int)meta[17], odt = nchw ? (int)meta[18] : F32, xnchw = (int)meta[19];
    i64 taps = KD * KH * KW, plane = OD * OH * OW;
#ifndef __AVX512F__
    if (xnchw) return -2;
#endif
    /* tasks: blocks of channels of an item, each running every output row of its block,
       so the block's input stays in L1 from one output row to the next: on AVX-512
       (n, block of 16), every od from one compact copy of the block, whose positions
       are 16 floats apart; elsewhere (n, od, block of 8) read in place, C apart */
#ifdef __AVX512F__
    const i64 CW = 16, xc = 16;
#else
    const i64 CW = 8, xc = C;
#endif
    i64 *tapoff = (i64 *)malloc((size_t)(taps > 0 ? taps : 1) * sizeof(i64));
    int oom = !tapoff;
    if (oom) return -1;
    tap_offsets(tapoff, KD, KH, KW, dd, dh, dw, H, W, xc);
    i64 cbs = (C + CW - 1) / CW, tasks = N * OD * cbs;
    int th = threads_for(N * OD * OH * OW * C * taps, nthreads);
#ifdef __AVX512F__
    i64 P = D * H * W; /* the block's compact copy: the padded positions of one item */
    tasks = N * cbs;   /* every od of the item from one copy */
#pragma omp parallel num_threads(th)
    {
        float *xb = (float *)aligned_alloc(64, (size_t)(P * 16 + 16) * sizeof(float));
        float *wb = (float *)aligned_alloc(64, (size_t)(taps * 16 + 16) * sizeof(float)), bb[16];
        if (!xb || !wb) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(dynamic, dyn_chunk(tasks, th))
        for (i64 task = 0; task < tasks; task++) {
            if (!xb || !wb) continue;
            i64 cb = task % cbs, n = task / cbs, c0 = cb * CW;
            int nc = (int)(C - c0 < CW ? C - c0 : CW);
            if (xnchw) dw_gather16_nchw(x, n, C, D, H, W, meta[20], meta[21], meta[22], c0, nc, dt, xb);
            else dw_gather16_cl(x, n * P * C, P, C, c0, nc, dt, xb);
            dw_weights16(w, bias, wdt, taps, C, c0, nc, wb, bb);
            for (i64 od = 0; od < OD; od++)
                for (i64 oh = 0; oh < OH; oh++) {
                    i64 xrow = ((od * sd) * H + oh * sh) * W * 16;
                    i64 pos = (od * OH + oh) * OW; /* of the row's first output in its plane */
                    float *orow = (float *)out + ((n * OD + od) * OH + oh) * OW * C;
                    for (i64 ow0 = 0; ow0 < OW; ow0 += DW_OW) {
                        int nw = (int)(OW - ow0 < DW_OW ? OW - ow0 : DW_OW);
                        struct dw_dst d = {orow + ow0 * C + c0, out, (n * C + c0) * plane + pos + ow0,
                                           plane, nchw, odt};
                        DW16S[nw](xb, wb, bias ? bb : NULL, xrow + ow0 * sw * 16, sw * 16, tapoff, taps,
                                  nc, C, &d);
                    }
                }
        }
        free(xb);
        free(wb);
    }
#else
#pragma omp parallel for schedule(dynamic, dyn_chunk(tasks, th)) num_threads(th)
    for (i64 task = 0; task < tasks; task++) {
        i64 cb = task % cbs, od = (task / cbs) % OD, n = task / (cbs * OD);
        i64 c0 = cb * CW, c1 = c0 + CW < C ? c0 + CW : C;
        for (i64 oh = 0; oh < OH; oh++) {
            i64 xrow = ((n * D + od * sd) * H + oh * sh) * W * C;
            i64 pos = (od * OH + oh) * OW; /* of the row's first output in its plane */
            float *orow = (float *)out + ((n * OD + od) * OH + oh) * OW * C;
            for (i64 ow0 = 0; ow0 < OW; ow0 += DW_OW) {
                int nw = (int)(OW - ow0 < DW_OW ? OW - ow0 : DW_OW);
                for (i64 c = c0; c < c1; c += 8) {
                    int nc = (int)(c1 - c < 8 ? c1 - c : 8);
                    v8 acc[DW_OW];
                    int full = nc == 8 && nw == DW_OW && dt == wdt;
                    if (full && dt == F32)
                        dw_block_full(x, w, xrow + ow0 * sw * C, sw * C, tapoff, taps, c, C, F32, acc);
                    else if (full && dt == BF16)
                        dw_block_full(x, w, xrow + ow0 * sw * C, sw * C, tapoff, taps, c, C, BF16, acc);
                    else
                        dw_block((const char *)x, w, xrow + ow0 * sw * C, sw * C, tapoff, taps, c,
                                 nc, C, dt, wdt, nw, acc);
                    v8 bv = v8_zero();
                    if (bias) bv = nc == 8 ? v8_load(bias, c, wdt) : v8_load_n(bias, c, nc, wdt);
                    for (int q = 0; q < nw; q++) {
                        v8 s = bias ? v8_add(acc[q], bv) : acc[q];
                        if (nchw) {
                            float v[8];
                            v8_store(v, s);
                            for (int l = 0; l < nc; l++)
                                st(out, (n * C + c + l) * plane + pos + ow0 + q, v[l], odt);
                            continue;
                        }
                        float *o = orow + (ow0 + q) * C + c;
                        if (nc == 8) v8_store(o, s);
                        else v8_store_n(o, s, nc);
                    }
                }
            }
        }
    }
#endif
    free(tapoff);
    return oom ? -1 : 0;
}

/* The TAP order for NCDHW input and output: x (N, Cin, D, H, W) unpadded, w (Co, taps),
   out (N, Co, OD, OH, OW) fp32; output channel o reads input channel o / (Co / Cin).
   meta = {N, Cin, D, H, W, Co, KD, KH, KW, sd, sh, sw, dd, dh, dw, pd, ph, pw, OD, OH, OW}.
   Each thread copies one (n, channel) plane at a time into a zero-bordered float32
   buffer, then runs every output of the plane: acc = +0, one fma per tap in (kd, kh,
   kw) order, then + bias, exactly as sb_depthwise. Vector lanes carry outputs along a
   row, never parts of one sum. */
#define DWN_OW 32 /* outputs per block: four vectors of 8 */

/* DWN_OW outputs from +0, one fma per tap in order: output q * 8 + l reads
   xb[(q * 8 + l) * sw + tapoff[t]] */
static inline __attribute__((always_inline)) void dwn_block(const float *xb, i64 sw, const float *wt,
                                                            const i64 *tapoff, i64 taps,
                                                            v8 acc[DWN_OW / 8]) {
    for (int q = 0; q < DWN_OW / 8; q++) acc[q] = v8_zero();
    for (i64 t = 0; t < taps; t++) {
        v8 wv = v8_set1(wt[t]);
        const float *xt = xb + tapoff[t];
        for (int q = 0; q < DWN_OW / 8; q++) {
            v8 xv;
            if (sw == 1) {
                xv = v8_load(xt, 8 * q, F32);
            } else {
                float g[8];
                for (int l = 0; l < 8; l++) g[l] = xt[(8 * q + l) * sw];
                xv = v8_load(g, 0, F32);
            }
            acc[q] = v8_fma(xv, wv, acc[q]);
        }
    }
}

#ifdef __AVX512F__
/* AVX-512: DWZ zmm of 16 outputs at flat positions f0 .. f0 + 16 DWZ - 1 of the padded
   plane (stride 1): output f reads xb[f + tapoff[t]]; eight independent FMA chains per
   tap, the same operations per output as dwn_block */
#define DWZ 8
static inline __attribute__((always_inline)) void dwz_block(const float *xb, const float *wt,
                                                            const i64 *tapoff, i64 taps,
                                                            __m512 acc[DWZ]) {
    for (int q = 0; q < DWZ; q++) acc[q] = _mm512_setzero_ps();
    for (i64 t = 0; t < taps; t++) {
        __m512 wv = _mm512_set1_ps(wt[t]);
        const float *xt = xb + tapoff[t];
        /* one base register, the eight loads at constant offsets from it (GCC otherwise
           kept eight index registers, spilling some to xmm, per tap) */
        __asm__("" : "+r"(xt));
        for (int q = 0; q < DWZ; q++) acc[q] = _mm512_fmadd_ps(_mm512_loadu_ps(xt + 16 * q), wv, acc[q]);
    }
}
#endif

/* n (1..8) results to out[at..] as odt (bfloat16 rounded once) */
static inline void dwn_store(void *out, i64 at, v8 r, int n, int odt) {
    if (n == 8) {
        v8_store_dt(out, at, r, odt);
        return;
    }
    float t[8];
    v8_store(t, r);
    for (int l = 0; l < n; l++) st(out, at + l, t[l], odt);
}

SB_API int SB_FN(sb_depthwise_nchw)(const void *x, const void *w, const void *bias, void *out,
                                     const i64 *meta, int dt, int wdt, int nthreads) {
    i64 N = meta[0], Cin = meta[1], D = meta[2], H = meta[3], W = meta[4], Co = meta[5];
    i64 KD = meta[6], KH = meta[7], KW = meta[8];
    i64 sd = meta[9], sh = meta[10], sw = meta[11], dd = meta[12], dh = meta[13], dw = meta[14];
    i64 pd = meta[15], ph = meta[16], pw = meta[17], OD = meta[18], OH = meta[19], OW = meta[20];
    int odt = (int)meta[21]; /* out: float32, or bfloat16 (each result rounded once) */
    i64 Dp = D + 2 * pd, Hp = H + 2 * ph, Wp = W + 2 * pw, taps = KD * KH * KW;
    i64 mult = Co / Cin, planes = N * Co;
    size_t cap = (size_t)(Dp * Hp * Wp + DWN_OW * sw + 16 * 8 + 64);
    int th = threads_for(planes * OD * OH * OW * taps, nthreads);
    int oom = 0, chunk = dyn_chunk(planes, th); /* small planes: one grab per plane cost more than its work */
#pragma omp parallel num_threads(th)
    {
        float *pad = (float *)calloc(cap, sizeof(float));
        float *wt = (float *)malloc((size_t)(taps > 0 ? taps : 1) * sizeof(float));
        i64 *tapoff = (i64 *)malloc((size_t)(taps > 0 ? taps : 1) * sizeof(i64));
        if (!pad || !wt || !tapoff) {
#pragma omp atomic write
            oom = 1;
        }
        if (tapoff) tap_offsets(tapoff, KD, KH, KW, dd, dh, dw, Hp, Wp, 1);
#pragma omp for schedule(dynamic, chunk)
        for (i64 pl = 0; pl < planes; pl++) {
            if (!pad || !wt || !tapoff) continue;
            i64 n = pl / Co, o = pl % Co, ci = o / mult;
            i64 src = (n * Cin + ci) * D * H * W;
            /* the plane inside its zero border (the border and the slack stay zero) */
            for (i64 d = 0; d < D; d++)
                for (i64 h = 0; h < H; h++) {
                    float *prow = pad + ((d + pd) * Hp + h + ph) * Wp + pw;
                    i64 xrow = src + (d * H + h) * W;
                    i64 q = 0;
                    if (dt == F32) memcpy(prow, (const float *)x + xrow, (size_t)W * sizeof(float)), q = W;
#ifdef SB_AVX2
                    for (; q + 8 <= W; q += 8) v8_store(prow + q, v8_load(x, xrow + q, dt));
#endif
                    for (; q < W; q++) prow[q] = ld(x, xrow + q, dt);
                }
            for (i64 t = 0; t < taps; t++) wt[t] = ld(w, o * taps + t, wdt);
            float b = bias ? ld(bias, o, wdt) : 0.0f;
            i64 op = pl * OD * OH * OW;
#ifdef __AVX512F__
            if (sd == 1 && sh == 1 && sw == 1) {
                /* every stride-1 plane as wide rows (see below), 16 DWZ outputs a block;
                   a vector's lanes that cross a row end are stored in runs */
                i64 F = ((OD - 1) * Hp + OH - 1) * Wp + OW, ow = 0, oh = 0, od = 0;
                size_t e = esz(odt);
                for (i64 f0 = 0; f0 < F; f0 += 16 * DWZ) {
                    __m512 acc[DWZ];
                    dwz_block(pad + f0, wt, tapoff, taps, acc);
                    for (int q = 0; q < DWZ; q++) {
                        __m512 r = bias ? _mm512_add_ps(acc[q], _mm512_set1_ps(b)) : acc[q];
                        if (ow + 16 <= OW && oh < OH && od < OD) { /* inside one row */
                            z16_store_dt(out, op + (od * OH + oh) * OW + ow, r, odt);
                            ow += 16;
                            continue;
                        }
                        float tmp[16];
                        z16_store_dt(tmp, 0, r, odt); /* 16 values as odt */
                        for (int l = 0; l < 16;) { /* runs of lanes within one row */
                            int run = (int)(Wp - ow < 16 - l ? Wp - ow : 16 - l);
                            i64 keep = OW - ow < run ? OW - ow : run;
                            if (keep > 0 && oh < OH && od < OD)
                                memcpy((char *)out + (op + (od * OH + oh) * OW + ow) * e,
                                       (const char *)tmp + l * e, (size_t)keep * e);
                            l += run;
                            ow += run;
                            if (ow == Wp) ow = 0, ++oh == Hp ? (oh = 0, od++) : 0;
                        }
                    }
                }
                continue;
            }
#endif
            if (sd == 1 && sh == 1 && sw == 1 && OW < DWN_OW) {
                /* small planes, wide rows: output (od, oh, ow) sits at flat
                   f = (od Hp + oh) Wp + ow of the padded plane and reads
                   pad[f + tapoff[t]], so blocks run over f across rows and fill the
                   vectors; the lanes that fall on border columns or rows are computed
                   and not stored */
                i64 F = ((OD - 1) * Hp + OH - 1) * Wp + OW, ow = 0, oh = 0, od = 0;
                for (i64 f0 = 0; f0 < F; f0 += DWN_OW) {
                    v8 acc[DWN_OW / 8];
                    dwn_block(pad + f0, 1, wt, tapoff, taps, acc);
                    for (int q = 0; q < DWN_OW / 8; q++) {
                        v8 r = bias ? v8_add(acc[q], v8_set1(b)) : acc[q];
                        if (ow + 8 <= OW && oh < OH && od < OD) { /* inside one row */
                            dwn_store(out, op + (od * OH + oh) * OW + ow, r, 8, odt);
                            ow += 8;
                            continue;
                        }
                        float t[8];
                        v8_store(t, r);
                        for (int l = 0; l < 8; l++) { /* (od, oh, ow) of f0 + 8q + l */
                            if (ow < OW && oh < OH && od < OD) st(out, op + (od * OH + oh) * OW + ow, t[l], odt);
                            if (++ow == Wp) ow = 0, ++oh == Hp ? (oh = 0, od++) : 0;
                        }
                    }
                }
                continue;
            }
            for (i64 od = 0; od < OD; od++)
                for (i64 oh = 0; oh < OH; oh++) {
                    const float *prow = pad + (od * sd * Hp + oh * sh) * Wp;
                    i64 orow = op + (od * OH + oh) * OW;
                    for (i64 ow0 = 0; ow0 < OW; ow0 += DWN_OW) {
                        v8 acc[DWN_OW / 8];
                        dwn_block(prow + ow0 * sw, sw, wt, tapoff, taps, acc);
                        i64 left = OW - ow0;
                        for (int q = 0; q < DWN_OW / 8 && 8 * q < left; q++) {
                            v8 r = bias ? v8_add(acc[q], v8_set1(b)) : acc[q];
                            dwn_store(out, orow + ow0 + 8 * q, r, (int)(left - 8 * q < 8 ? left - 8 * q : 8), odt);
                        }
                    }
                }
        }
        free(pad);
        free(wt);
        free(tapoff);
    }
    return oom ? -1 : 0;
}

/* -------------------------------------------------- padded channels-last copy */
/* x (N, C, H, W) at element strides (sn, sc, sh, sw) -> dst (N, Hp, Wq, C), contiguous:
   x[n, c, h, w] at (n, ph + h, pw + w, c), zeros everywhere else. A copy in one pass
   (the borders are written, never the whole buffer twice); no arithmetic, so it cannot
   change a bit. meta = {N, C, H, W, sn, sc, sh, sw, ph, pw, Hp, Wq}. */
SB_API void SB_FN(sb_pad_cl)(const void *x, const i64 *meta, void *dst, int dt, int nthreads) {
    i64 N = meta[0], C = meta[1], H = meta[2], W = meta[3], sn = meta[4], sc = meta[5];
    i64 sh = meta[6], sw = meta[7], ph = meta[8], pw = meta[9], Hp = meta[10], Wq = meta[11];
    size_t e = esz(dt);
    i64 rows = N * Hp;
    int th = threads_for(rows * Wq * C, nthreads);
#pragma omp parallel for schedule(dynamic, dyn_chunk(rows, th)) num_threads(th)
    for (i64 row = 0; row < rows; row++) {
        i64 n = row / Hp, h = row % Hp - ph;
        char *d = (char *)dst + (size_t)(row * Wq * C) * e;
        if (h < 0 || h >= H) {
            memset(d, 0, (size_t)(Wq * C) * e);
            continue;
        }
        memset(d, 0, (size_t)(pw * C) * e);
        memset(d + (size_t)((pw + W) * C) * e, 0, (size_t)((Wq - pw - W) * C) * e);
        d += (size_t)(pw * C) * e;
        i64 src = n * sn + h * sh;
        if (sc == 1) { /* channels contiguous: one run per position */
            for (i64 w = 0; w < W; w++)
                memcpy(d + (size_t)(w * C) * e, (const char *)x + (size_t)(src + w * sw) * e, (size_t)C * e);
            continue;
        }
        for (i64 w0 = 0; w0 < W; w0 += 8)
            for (i64 c0 = 0; c0 < C; c0 += 8) {
                i64 nw = W - w0 < 8 ? W - w0 : 8, nc = C - c0 < 8 ? C - c0 : 8;
#ifdef SB_AVX2
                if (nc == 8 && sw == 1) { /* 8 channels x nw positions, transposed */
                    __m256 r[8], t[8];
                    for (int q = 0; q < 8; q++) {
                        i64 at = src + (c0 + q) * sc + w0;
                        if (nw < 8) { /* the row's last positions: bits moved, zeros after */
                            uint32_t b[8] = {0};
                            if (dt == F32) memcpy(b, (const float *)x + at, (size_t)nw * 4);
                            else
                                for (int l = 0; l < nw; l++) b[l] = ((const uint16_t *)x)[at + l];
                            r[q] = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)b));
                            continue;
                        }
                        r[q] = dt == F32 ? _mm256_loadu_ps((const float *)x + at)
                                         : _mm256_castsi256_ps(_mm256_cvtepu16_epi32(
                                               _mm_loadu_si128((const __m128i *)((const uint16_t *)x + at))));
                    }
                    t8x8(r, t); /* t[l]: the 8 channels at position w0 + l */
                    for (int l = 0; l < nw; l++) {
                        i64 at = (w0 + l) * C + c0;
                        if (dt == F32) {
                            _mm256_storeu_ps((float *)d + at, t[l]);
                        } else {
                            _mm_storeu_si128((__m128i *)((uint16_t *)d + at),
                                             v8_narrow16(_mm256_castps_si256(t[l])));
                        }
                    }
                    continue;
                }
#endif
                for (i64 w = w0; w < w0 + nw; w++)
                    for (i64 c = c0; c < c0 + nc; c++) {
                        i64 to = w * C + c, from = src + c * sc + w * sw;
                        if (dt == F32) ((uint32_t *)d)[to] = ((const uint32_t *)x)[from];
                        else ((uint16_t *)d)[to] = ((const uint16_t *)x)[from];
                    }
            }
    }
}

/* ----------------------------------------------------------------- im2col */
/* Rows r0..r1-1 of the im2col matrix of a channels-last padded input
   x (N, D, H, W, C): row r = (n, od, oh, ow) holds, for the taps (kd, kh, kw) in
   row-major order, channels c0..c0+cg-1, so its K = taps * cg order is (tap, c).
   meta = {N, D, H, W, C, KD, KH, KW, sd, sh, sw, dd, dh, dw, OD, OH, OW, c0, cg}.
   A copy: no arithmetic, so it cannot change bits; threads take whole rows. */
SB_API void SB_FN(sb_im2col)(const void *x, const i64 *meta, i64 r0, i64 r1, void *dst, int dt,
                             int nthreads) {
    i64 D = meta[1], H = meta[2], W = meta[3], C = meta[4];
    i64 KD = meta[5], KH = meta[6], KW = meta[7];
    i64 sd = meta[8], sh = meta[9], sw = meta[10], dd = meta[11], dh = meta[12], dw = meta[13];
    i64 OD = meta[14], OH = meta[15], OW = meta[16], c0 = meta[17], cg = meta[18];
    size_t e = esz(dt), run = (size_t)cg * e;
    i64 K = KD * KH * KW * cg;
    int th = threads_for((r1 - r0) * K, nthreads);
#pragma omp parallel for schedule(dynamic, dyn_chunk(r1 - r0, th)) num_threads(th)
    for (i64 r = r0; r < r1; r++) {
        i64 ow = r % OW, oh = (r / OW) % OH, od = (r / (OW * OH)) % OD, n = r / (OW * OH * OD);
        char *d = (char *)dst + (size_t)(r - r0) * (size_t)K * e;
        for (i64 kd = 0; kd < KD; kd++)
            for (i64 kh = 0; kh < KH; kh++) {
                i64 base = ((n * D + od * sd + kd * dd) * H + oh * sh + kh * dh) * W + ow * sw;
                if (cg == C && dw == 1) { /* the KW taps of all channels are one run */
                    size_t n = run * (size_t)KW;
                    const char *src = (const char *)x + (size_t)(base * C) * e;
                    if (n <= 64) /* short runs (a stem's few channels): no library call */
                        for (size_t b = 0; b < n; b++) d[b] = src[b];
                    else
                        memcpy(d, src, n);
                    d += n;
                    continue;
                }
                for (i64 kw = 0; kw < KW; kw++, d += run)
                    memcpy(d, (const char *)x + (size_t)((base + kw * dw) * C + c0) * e, run);
            }
    }
}
