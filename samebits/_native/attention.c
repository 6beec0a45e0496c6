/* ----------------------------------------------------------- attention */
/* Fused scaled-dot-product attention, the same operations as the unfused chain
   (and tested bit for bit against it):
     s_ij = DOT(q_i, k_j) (float32) * scale;
     masking: bool mask -> -inf where false; float mask -> s + m; causal: j > i -> -inf;
     softmax over j: exact max, e = f_exp(s - max), sequential double sum over
       j = 0..S-1, p = (float)(e * (1 / sum)); fully masked rows give zeros;
     out_i = SEQ_j fma(p_ij, v_j, acc) from +0, in key order.
   With a causal mask, row i reads keys 0..i only (the others have p = 0
   exactly and would add nothing), as flash attention does.
   Tiles are (batch, 32 query rows), scored 8 rows at a time; a tile owns its rows entirely, so the thread
   count and the tiling never change an operation.
   meta (int64): nb, L, S, D, Dv, rep, then the batch shape (nb), then per tensor
   q, k, v, mask its batch strides (nb, 0 where broadcast) and row stride, and for
   the mask also its column stride. Key / value head h (the last batch dim) is
   h / rep (grouped-query attention): nothing is copied or expanded. The last dim
   of q, k, v is contiguous. mkind: 0 none, 1 bool (uint8), 2 float32, 3 causal. */
#define AROWS 8  /* query rows whose scores are held at once */
#define ATILE 32 /* query rows per tile (per copy of the keys and values); up to
                    2 * ATILE rows make one tile, so a short sequence copies its keys once */
enum { M_NONE = 0, M_BOOL, M_FLOAT, M_CAUSAL };

/* whether key j is masked out for good: false in a bool mask, -inf in a float one
   (its score becomes -inf whatever the product, for finite products) */
static inline int attn_dead(const void *m, i64 j, i64 mcs, int mkind) {
    if (mkind == M_BOOL) return !((const uint8_t *)m)[j * mcs];
    if (mkind == M_FLOAT) return ((const float *)m)[j * mcs] == -INFINITY;
    return 0;
}

/* whether keys j .. j + 7 are all masked out */
static inline int attn_dead8(const void *m, i64 j, i64 mcs, int mkind) {
    for (int c = 0; c < 8; c++)
        if (!attn_dead(m, j + c, mcs, mkind)) return 0;
    return 1;
}

/* scores of one query row against keys [0, S): DOT lanes, tree, * scale. Groups of 8
   keys that the mask row m removes entirely get -inf without their products: the
   mask would make them -inf anyway (bool: always; float -inf: for finite products).
   Packed sequences (a block-diagonal mask) then cost little more than their parts. */
static inline __attribute__((always_inline)) void attn_scores(const void *q, const char *kb, i64 krs,
                                                              i64 S, i64 D, float scale, const int qdt,
                                                              const int dt, float *s, const void *m,
                                                              i64 mcs, int mkind) {
    size_t e = esz(dt);
    i64 full = D / 8;
    int part = (int)(D - 8 * full);
    v8 qpart = part ? v8_load_n(q, 8 * full, part, qdt) : v8_zero();
    i64 j = 0;
#ifdef SB_AVX2
    for (; j + 8 <= S; j += 8) {
        if (m && attn_dead8(m, j, mcs, mkind)) {
            _mm256_storeu_ps(s + j, _mm256_set1_ps(-INFINITY));
            continue;
        }
        const char *kr = kb + j * krs * e;
        v8 acc[8];
        for (int c = 0; c < 8; c++) acc[c] = v8_zero();
        /* d outer, keys inner: eight independent chains, each still in d order */
        for (i64 d = 0; d < full; d++) {
            v8 qd = v8_load(q, 8 * d, qdt);
            for (int c = 0; c < 8; c++) acc[c] = v8_fma(qd, v8_load(kr + c * krs * e, 8 * d, dt), acc[c]);
        }
        if (part)
            for (int c = 0; c < 8; c++)
                acc[c] = v8_fma(qpart, v8_load_n(kr + c * krs * e, 8 * full, part, dt), acc[c]);
        v8 o[8];
        t8x8(acc, o); /* o[l] = lane l of the 8 keys: the tree on 8 scores at once */
        v8 x = v8_add(v8_add(v8_add(o[0], o[4]), v8_add(o[2], o[6])),
                      v8_add(v8_add(o[1], o[5]), v8_add(o[3], o[7])));
        _mm256_storeu_ps(s + j, _mm256_mul_ps(x, _mm256_set1_ps(scale)));
    }
#endif
    for (; j < S; j++) {
        const char *kr = kb + j * krs * e;
        v8 acc = v8_zero();
        for (i64 d = 0; d < full; d++) acc = v8_fma(v8_load(q, 8 * d, qdt), v8_load(kr, 8 * d, dt), acc);
        if (part) acc = v8_fma(qpart, v8_load_n(kr, 8 * full, part, dt), acc);
        s[j] = v8_tree(acc) * scale;
    }
}

/* o0 / o1 (columns [c0, c0 + 8 NV)) = SEQ over keys of p * v: keys [j0, S0) for both
   rows, then [S0, S1) for the second only (a longer causal row). The caller leaves
   out only keys where both rows have p = 0: fma(0, v, acc) == acc (acc, a sum from +0,
   is never -0; v finite), so the skipped keys would not change a bit. */
static inline __attribute__((always_inline)) void attn_pv(const float *p0, const float *p1, const char *vb,
                                                          i64 vrs, i64 j0, i64 S0, i64 S1, i64 c0, i64 Dv,
                                                          const int NV, const int dt, float *o0, float *o1,
                                                          int two) {
    size_t e = esz(dt);
    int nv = (int)((Dv - c0 + 7) / 8 < NV ? (Dv - c0 + 7) / 8 : NV);
    int tail = (int)((Dv - c0) % 8); /* columns in a partial last vector */
    int ragged = nv < NV || (tail && c0 + 8 * nv > Dv);
    v8 a0[4], a1[4];
    for (int c = 0; c < NV; c++) a0[c] = a1[c] = v8_zero();
#define PV_LOAD(vr, c)                                                                             \
    (ragged && (c) == nv - 1 && tail ? v8_load_n(vr, c0 + 8 * (c), tail, dt) : v8_load(vr, c0 + 8 * (c), dt))
    if (!ragged) {
        for (i64 j = j0; j < S0; j++) {
            const char *vr = vb + j * vrs * e;
            v8 w0 = v8_set1(p0[j]), w1 = v8_set1(p1[j]);
            for (int c = 0; c < NV; c++) {
                v8 x = v8_load(vr, c0 + 8 * c, dt);
                a0[c] = v8_fma(w0, x, a0[c]);
                a1[c] = v8_fma(w1, x, a1[c]);
            }
        }
    } else {
        for (i64 j = j0; j < S0; j++) {
            const char *vr = vb + j * vrs * e;
            v8 w0 = v8_set1(p0[j]), w1 = v8_set1(p1[j]);
            for (int c = 0; c < nv; c++) {
                v8 x = PV_LOAD(vr, c);
                a0[c] = v8_fma(w0, x, a0[c]);
                a1[c] = v8_fma(w1, x, a1[c]);
            }
        }
    }
    for (i64 j = S0 > j0 ? S0 : j0; j < S1; j++) {
        const char *vr = vb + j * vrs * e;
        v8 w1 = v8_set1(p1[j]);
        for (int c = 0; c < nv; c++) a1[c] = v8_fma(w1, PV_LOAD(vr, c), a1[c]);
    }
#undef PV_LOAD
    for (int c = 0; c < nv; c++) {
        i64 col = c0 + 8 * c;
        int n = col + 8 <= Dv ? 8 : (int)(Dv - col);
        float tmp[8];
        v8_store(tmp, a0[c]);
        memcpy(o0 + col, tmp, (size_t)n * 4);
        if (two) {
            v8_store(tmp, a1[c]);
            memcpy(o1 + col, tmp, (size_t)n * 4);
        }
    }
}

#ifdef __AVX512F__
/* AVX-512: NR (1..4) rows' outputs, columns [c0, c0 + 64) (four zmm, masked past Dv),
   SEQ over keys [j0, end) of p * v from +0, float32 v. A row whose own keys end
   before `end` has p = 0 exactly on the rest (the caller zeroes them), and
   fma(0, v, acc) == acc (acc, a sum from +0, is never -0; v finite): the operations
   of attn_pv on every output. */
static inline __attribute__((always_inline)) void attn_pv4(const float *const p[4], const float *vb,
                                                           i64 vrs, i64 j0, i64 end, i64 c0, i64 Dv,
                                                           const int NR, float *const o[4]) {
    __mmask16 mk[4];
    for (int c = 0; c < 4; c++) {
        i64 n = Dv - c0 - 16 * c;
        mk[c] = n >= 16 ? (__mmask16)0xffff : (n <= 0 ? 0 : (__mmask16)((1u << n) - 1));
    }
    __m512 acc[4][4];
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
    for (i64 j = j0; j < end; j++) {
        const float *vr = vb + j * vrs + c0;
        __m512 x[4];
        for (int c = 0; c < 4; c++) x[c] = _mm512_maskz_loadu_ps(mk[c], vr + 16 * c);
        for (int r = 0; r < NR; r++) {
            __m512 w = _mm512_set1_ps(p[r][j]);
            for (int c = 0; c < 4; c++) acc[r][c] = _mm512_fmadd_ps(w, x[c], acc[r][c]);
        }
    }
    for (int r = 0; r < NR; r++)
        for (int c = 0; c < 4; c++) _mm512_mask_storeu_ps(o[r] + c0 + 16 * c, mk[c], z16_canon(acc[r][c]));
}

static void attn_pv4_n(const float *const p[4], const float *vb, i64 vrs, i64 j0, i64 end, i64 c0,
                       i64 Dv, int nr, float *const o[4]) {
    switch (nr) {
    case 4: attn_pv4(p, vb, vrs, j0, end, c0, Dv, 4, o); break;
    case 3: attn_pv4(p, vb, vrs, j0, end, c0, Dv, 3, o); break;
    case 2: attn_pv4(p, vb, vrs, j0, end, c0, Dv, 2, o); break;
    default: attn_pv4(p, vb, vrs, j0, end, c0, Dv, 1, o); break;
    }
}
#endif

/* n rows of width w at row stride rs -> compact float32 rows */
static void pack_rows(const char *x, i64 rs, int dt, i64 n, i64 w, float *dst) {
    for (i64 j = 0; j < n; j++) {
        const char *src = x + j * rs * esz(dt);
        float *d = dst + j * w;
        if (dt == F32) { /* rows are short (a head): inline copies, not a libc call each */
            i64 c = 0;
#ifdef SB_AVX2
            for (; c + 8 <= w; c += 8) _mm256_storeu_ps(d + c, _mm256_loadu_ps((const float *)src + c));
#endif
            for (; c < w; c++) d[c] = ((const float *)src)[c];
            continue;
        }
        i64 c = 0;
        for (; c + 8 <= w; c += 8) v8_store(d + c, v8_load(src, c, BF16));
        for (; c < w; c++) d[c] = bf2f(((const uint16_t *)src)[c]);
    }
}

static i64 batch_offset(i64 b, int nb, const i64 *shape, const i64 *st, i64 rep) {
    i64 off = 0;
    for (int d = nb - 1; d >= 0; d--) {
        i64 idx = b % shape[d];
        b /= shape[d];
        off += (d == nb - 1 ? idx / rep : idx) * st[d];
    }
    return off;
}

/* the mask batch of batch b: its index over the dims the mask does not broadcast over
   (nonzero mask stride) */
static i64 mask_batch(i64 b, int nb, const i64 *shape, const i64 *mst) {
    i64 mb = 0, mult = 1;
    for (int d = nb - 1; d >= 0; d--) {
        i64 idx = b % shape[d];
        b /= shape[d];
        if (mst[d]) {
            mb += idx * mult;
            mult *= shape[d];
        }
    }
    return mb;
}

SB_API int SB_FN(sb_attention)(const void *q, const void *k, const void *v, const void *mask, const i64 *meta,
                 int mkind, float *out, float scale, int dt, int nthreads) {
    int nb = (int)meta[0];
    i64 L = meta[1], S = meta[2], D = meta[3], Dv = meta[4], rep = meta[5];
    const i64 *shape = meta + 6, *qst = shape + nb, *kst = qst + nb + 1, *vst = kst + nb + 1,
              *mst = vst + nb + 1;
    i64 qrs = qst[nb], mrs = mst[nb], mcs = mst[nb + 1];
    i64 B = 1;
    for (int d = 0; d < nb; d++) B *= shape[d];
    size_t e = esz(dt);
    i64 tr = L <= 2 * ATILE ? (L > 0 ? L : 1) : ATILE; /* rows per tile */
    i64 rb = (L + tr - 1) / tr, tiles = B * rb;
    int th = threads_for(B * L * S * (D + Dv + 16), nthreads), oom = 0;
    /* Each mask row's live window [first, last + 1) of keys not masked out for good,
       found once per mask row rather than once per head that shares it. Keys outside
       it are dead, so a row's scores, mask, max and exp run over the 8-key groups
       that meet its window only (the same groups, with the same operations, as a
       scan of all keys: the groups left out would be -inf without products). A
       block-diagonal mask (packed sequences) then costs each row its own block. */
    i64 MB = 1, *win = NULL;
    if (mkind == M_BOOL || mkind == M_FLOAT) {
        for (int d = 0; d < nb; d++) MB *= mst[d] ? shape[d] : 1;
        win = (i64 *)malloc((size_t)(MB * L > 0 ? MB * L : 1) * 2 * sizeof(i64));
        if (!win) return -1;
        i64 rows = MB * L;
#pragma omp parallel for schedule(dynamic, dyn_chunk(rows, th)) num_threads(threads_for(rows * S, th))
        for (i64 r = 0; r < rows; r++) {
            i64 mb = r / L, i = r % L, off = 0;
            /* the offset of mask batch mb: its index in the non-broadcast dims */
            for (int d = nb - 1; d >= 0; d--)
                if (mst[d]) {
                    off += (mb % shape[d]) * mst[d];
                    mb /= shape[d];
                }
            const void *mr = mkind == M_BOOL ? (const void *)((const uint8_t *)mask + off + i * mrs)
                                             : (const void *)((const float *)mask + off + i * mrs);
            i64 lo = 0, hi = S;
            while (lo < S && attn_dead(mr, lo, mcs, mkind)) lo++;
            while (hi > lo && attn_dead(mr, hi - 1, mcs, mkind)) hi--;
            win[2 * r] = lo, win[2 * r + 1] = hi;
        }
        /* rows then cost about their windows, so a head is one tile (its keys and
           values are copied once, not once per 32 rows) when heads alone keep every
           thread busy */
        if (B >= 4 * th) tr = L > 0 ? L : 1, rb = 1, tiles = B;
    }
#pragma omp parallel num_threads(th)
    {
        i64 S8 = (S + 7) / 8 * 8;
        float *sc = (float *)malloc((size_t)(S8 > 0 ? S8 : 8) * AROWS * sizeof(float));
        float *kbuf = (float *)malloc((size_t)(S > 0 ? S : 1) * (D + Dv) * sizeof(float)),
              *vbuf = kbuf + (S > 0 ? S : 1) * D;
        if (!kbuf) {
            free(sc);
            sc = NULL;
        }
        if (!sc) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (i64 t = 0; t < tiles; t++) {
            if (!sc) continue;
            i64 b = t / rb, t0 = (t % rb) * tr, t1 = t0 + tr < L ? t0 + tr : L;
            const char *qb = (const char *)q + batch_offset(b, nb, shape, qst, 1) * e;
            const char *kb = (const char *)k + batch_offset(b, nb, shape, kst, rep) * e;
            const char *vb = (const char *)v + batch_offset(b, nb, shape, vst, rep) * e;
            /* Keys and values at a row stride other than their width (e.g. heads
               interleaved, as (batch, len, heads, dim) storage) are copied, as float32,
               to a compact block first: the strided rows would fall into few L1 sets.
               Widening is exact, so the products do not change. */
            i64 krs = kst[nb], vrs = vst[nb];
            int kdt = dt, vdt = dt;
            i64 Sneed = mkind == M_CAUSAL && t1 < S ? t1 : S;
            int pv4 = 0;
#ifdef __AVX512F__
            pv4 = t1 - t0 > 1; /* several rows share the keys and values: float32, compact, once */
#endif
            if ((krs != D || (pv4 && dt == BF16)) && t1 - t0 > 1) {
                pack_rows(kb, krs, dt, Sneed, D, kbuf);
                kb = (const char *)kbuf, krs = D, kdt = F32;
            }
            if ((vrs != Dv || (pv4 && dt == BF16)) && t1 - t0 > 1) {
                pack_rows(vb, vrs, dt, Sneed, Dv, vbuf);
                vb = (const char *)vbuf, vrs = Dv, vdt = F32;
            }
            i64 moff = win ? batch_offset(b, nb, shape, mst, 1) : 0;
            i64 mb = win ? mask_batch(b, nb, shape, mst) : 0;
            for (i64 i0 = t0; i0 < t1; i0 += AROWS) {
            int nr = (int)(t1 - i0 < AROWS ? t1 - i0 : AROWS);
            /* keys row r reads: all, or 0..i for a causal mask */
            i64 Sr[AROWS], Lo[AROWS], Hi[AROWS];
            int state[AROWS];
            double sum[AROWS];
            for (int r = 0; r < nr; r++) {
                i64 i = i0 + r;
                float *s = sc + (i64)r * S8;
                i64 S = Sr[r] = mkind == M_CAUSAL && i + 1 < meta[2] ? i + 1 : meta[2];
                const char *qr = qb + i * qrs * e;
                const void *mr = mkind == M_BOOL ? (const void *)((const uint8_t *)mask + moff + i * mrs)
                                 : mkind == M_FLOAT ? (const void *)((const float *)mask + moff + i * mrs)
                                                    : NULL;
                /* [g0, g1): the 8-key groups meeting the row's live window (all keys
                   when the row has none: it is handled as before, all -inf) */
                i64 g0 = 0, g1 = S;
                if (win && win[2 * (mb * L + i)] < win[2 * (mb * L + i) + 1]) {
                    g0 = win[2 * (mb * L + i)] / 8 * 8;
                    g1 = (win[2 * (mb * L + i) + 1] + 7) / 8 * 8;
                    g1 = g1 < S ? g1 : S;
                }
                const char *kg = kb + g0 * krs * esz(kdt);
                const void *mg = !mr ? NULL
                                 : mkind == M_BOOL ? (const void *)((const uint8_t *)mr + g0 * mcs)
                                                   : (const void *)((const float *)mr + g0 * mcs);
                float *sg = s + g0;
                i64 n = g1 - g0;
                if (kdt == F32 && dt == F32) attn_scores(qr, kg, krs, n, D, scale, F32, F32, sg, mg, mcs, mkind);
                else if (kdt == F32) attn_scores(qr, kg, krs, n, D, scale, BF16, F32, sg, mg, mcs, mkind);
                else attn_scores(qr, kg, krs, n, D, scale, BF16, BF16, sg, mg, mcs, mkind);
                if (mkind == M_BOOL) {
                    const uint8_t *m = (const uint8_t *)mr;
                    for (i64 j = g0; j < g1; j++) s[j] = m[j * mcs] ? s[j] : -INFINITY;
                } else if (mkind == M_FLOAT) {
                    const float *m = (const float *)mr;
                    if (mcs == 1)
                        for (i64 j = g0; j < g1; j++) s[j] = s[j] + m[j];
                    else
                        for (i64 j = g0; j < g1; j++) s[j] = s[j] + m[j * mcs];
                }
                /* the max is exact in any order (its zero sign does not change s - max) */
                int nan = 0;
                i64 j;
#if VW > 1
                float m = uv_row_max(s, g0, g1 - g0, F32, &nan);
#else
                float m = -INFINITY;
                for (j = g0; j < g1; j++) {
                    nan |= s[j] != s[j];
                    m = s[j] > m ? s[j] : m;
                }
#endif
                state[r] = (nan || m == INFINITY) ? 1 : (m == -INFINITY ? 2 : 0);
                /* [lo, hi): the keys not at -inf. Outside it every e is exp(-inf) = 0
                   exactly, so the exp, the sums, the division and p @ v run over it
                   only: the zeros they skip would add nothing (the sums start at +0).
                   The zeros outside it are written below, where the sums read them. */
                i64 lo = g0, hi = g1;
                if (!state[r]) {
                    while (lo < g1 && s[lo] == -INFINITY) lo++;
                    while (hi > lo && s[hi - 1] == -INFINITY) hi--;
                } else { /* NaN / inf rows end all NaN or all 0, over every key */
                    for (j = 0; j < g0; j++) s[j] = -INFINITY;
                    for (j = g1; j < S; j++) s[j] = -INFINITY;
                    lo = 0, hi = S;
                }
                Lo[r] = lo, Hi[r] = hi;
#if VW > 1
                uv_exp_shifted(s, lo, hi - lo, m, s + lo, F32); /* in place */
#else
                for (j = lo; j < hi; j++) s[j] = f_exp(s[j] - m);
#endif
                sum[r] = 0.0;
            }
            /* the sums: one sequential chain per row, the rows side by side, over the
               union of their [lo, hi) */
            i64 J0 = S, J1 = 0;
            for (int r = 0; r < nr; r++) {
                J0 = Lo[r] < J0 ? Lo[r] : J0;
                J1 = Hi[r] > J1 ? Hi[r] : J1;
            }
            for (int r = 0; r < nr; r++) { /* p = 0 where the sums and p @ v read past [lo, hi) */
                float *s = sc + (i64)r * S8;
                for (i64 j = J0; j < Lo[r]; j++) s[j] = 0.0f;
                for (i64 j = Hi[r]; j < J1; j++) s[j] = 0.0f;
            }
            i64 common = J1;
            for (int r = 0; r < nr; r++) common = Sr[r] < common ? Sr[r] : common;
            for (i64 j = J0; j < common; j++)
                for (int r = 0; r < nr; r++) sum[r] += (double)sc[(i64)r * S8 + j];
            for (int r = 0; r < nr; r++) /* causal rows: their remaining keys */
                for (i64 j = common > J0 ? common : J0; j < Hi[r]; j++) sum[r] += (double)sc[(i64)r * S8 + j];
            for (int r = 0; r < nr; r++) {
                float *s = sc + (i64)r * S8;
                i64 S = Sr[r];
                if (state[r]) {
                    float f = state[r] == 1 ? NAN : 0.0f;
                    for (i64 j = 0; j < S; j++) s[j] = f;
                } else {
                    double inv = 1.0 / sum[r];
                    for (i64 j = Lo[r]; j < Hi[r]; j++) s[j] = (float)((double)s[j] * inv);
                }
            }
#ifdef __AVX512F__
            if (pv4 && vdt == F32) { /* out rows: four at a time, 64 columns a pass */
                for (int r = 0; r < nr; r += 4) {
                    int n4 = nr - r < 4 ? nr - r : 4;
                    i64 j0 = Lo[r], end = Hi[r];
                    const float *pr[4];
                    float *orr[4];
                    for (int u = 0; u < 4; u++) {
                        int ru = r + (u < n4 ? u : 0);
                        pr[u] = sc + (i64)ru * S8;
                        orr[u] = out + ((b * L) + i0 + ru) * Dv;
                        j0 = Lo[ru] < j0 ? Lo[ru] : j0;
                        end = Hi[ru] > end ? Hi[ru] : end;
                    }
                    for (i64 c0 = 0; c0 < Dv; c0 += 64)
                        attn_pv4_n(pr, (const float *)vb, vrs, j0, end, c0, Dv, n4, orr);
                }
                continue;
            }
#endif
            /* out rows: SEQ over keys, 32 columns (4 vectors) of two rows at a time */
            for (int r = 0; r < nr; r += 2) {
                int two = r + 1 < nr;
                /* p is 0 outside each row's [Lo, Hi): keys [j0, end) cover both rows' */
                i64 j0 = two && Lo[r + 1] < Lo[r] ? Lo[r + 1] : Lo[r];
                i64 end = two && Hi[r + 1] > Hi[r] ? Hi[r + 1] : Hi[r];
                i64 S0 = Sr[r] < end ? Sr[r] : end, S1 = two ? (Sr[r + 1] < end ? Sr[r + 1] : end) : S0;
                if (S1 < S0) S1 = S0;
                const float *p0 = sc + (i64)r * S8, *p1 = sc + (i64)(r + two) * S8;
                float *o0 = out + ((b * L) + i0 + r) * Dv, *o1 = o0 + Dv;
                for (i64 c0 = 0; c0 < Dv; c0 += 32) {
                    if (vdt == BF16) attn_pv(p0, p1, vb, vrs, j0, S0, S1, c0, Dv, 4, BF16, o0, o1, two);
                    else attn_pv(p0, p1, vb, vrs, j0, S0, S1, c0, Dv, 4, F32, o0, o1, two);
                }
            }
            } /* row groups */
        }
        free(sc);
        free(kbuf);
    }
    free(win);
    return oom ? -1 : 0;
}
