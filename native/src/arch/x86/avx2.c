/*
 * x86-64 AVX2 kernels (compiled with -mavx2 -mfma -mf16c; offered only when
 * the CPU has all three). Same bits as the scalar twins: float reductions keep
 * the canonical 16-lane order (two 8-lane accumulators = lanes 0-7 and 8-15),
 * no FMA (-ffp-contract=off), es_expf evaluated step for step.
 *
 * int8 dot: _mm256_maddubs_epi16 needs u8 x s8, so x is split into |x| (u8)
 * and its sign moved onto w (_mm256_sign_epi8), as llama.cpp does. With
 * |x|, |w| <= 127 a pair sum is at most 32258: no int16 saturation. Weights
 * must stay in [-127, 127] (sign_epi8 cannot negate -128).
 */
#include <immintrin.h>

#include "../../kernel_common.h"

/* ---- helpers ------------------------------------------------------------ */

static inline __m256i lane_mask8(int32_t n) { /* first n (may be <=0 or >8) lanes */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __m256 load8_tail(const float *p, int32_t n) {
    return _mm256_maskload_ps(p, lane_mask8(n));
}

/* Canonical fold of lanes 0-7 (a) and 8-15 (b). */
static inline float fold16(__m256 a, __m256 b) {
    __m256 s8 = _mm256_add_ps(a, b);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

/* es_expf on 8 lanes, step for step. */
static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(ES_EXP_LO);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(ES_EXP_HI)), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(ES_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(ES_LN2_HI)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(ES_LN2_LO)));
    __m256 z = _mm256_mul_ps(r, r);
    __m256 y = _mm256_set1_ps(ES_EXP_P0);
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(ES_EXP_P1));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(ES_EXP_P2));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(ES_EXP_P3));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(ES_EXP_P4));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(ES_EXP_P5));
    y = _mm256_add_ps(_mm256_mul_ps(y, z), r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, y);
}

/* ---- activation quantization ------------------------------------------ */

static inline float absmax_avx2(const float *x, int32_t n, int32_t *done) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 vmax = _mm256_setzero_ps();
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(x + i), absmask));
    *done = i;
    return hmax8(vmax);
}

/* CVTPS2DQ rounds half to even (the default MXCSR mode), as es_rint_small does. */
static inline int32_t quant_avx2(const float *x, int32_t n, float inv, int8_t *q) {
    const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 f = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
        f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
        const __m256i v = _mm256_cvtps_epi32(f);
        const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        _mm_storel_epi64((__m128i *)(q + i), _mm_packs_epi16(w16, w16));
    }
    return i;
}

static void quantize_row_avx2(const float *x, int32_t n, int32_t block, int8_t *q, float *scales) {
    es_quantize_row(x, n, block, q, scales, absmax_avx2, quant_avx2);
}

/* ---- int8 products ----------------------------------------------------- */

static inline __m256i dot32(__m256i x, __m256i ax, __m256i w) {
    const __m256i p16 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, x));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* Eight 8-lane int32 vectors -> one vector of their eight sums. */
static inline __m256i hsum8x8(const __m256i a[8]) {
    const __m256i h0123 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
    const __m256i h4567 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]), _mm256_hadd_epi32(a[6], a[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                            _mm256_permute2x128_si256(h0123, h4567, 0x31));
}

/* The tile (kernel_common.h) of one token and eight rows, act_block a
   multiple of 32: lane i of every vector is row r + i, so the float sum over
   blocks runs in the spec's order for eight rows at once. */
static void rows8_avx2(const int8_t *x, const float *xst, const es_qmat *w, int32_t r, int32_t nrows,
                       float *y) {
    const es_qshape s = es_qshape_of(w);
    const int8_t *wr[8];
    int32_t sidx[8];
    es_tile_rows(w, r, nrows, 8, wr, sidx);
    const __m256i vidx = _mm256_loadu_si256((const __m256i *)sidx);
    /* linear software prefetch of the next 8 rows, spread over the blocks */
    const int8_t *pf = w->q + (size_t)(r + 8) * s.cols, *end = w->q + (size_t)w->rows * s.cols;
    if (pf < end) _mm_prefetch((const char *)(w->scale + (size_t)(r + 8) * s.ng), _MM_HINT_T0);
    __m256 wsv = _mm256_i32gather_ps(w->scale, vidx, 4);
    __m256 sumf = _mm256_setzero_ps();
    for (int32_t b = 0; b < s.nb; b++) {
        const int32_t k0 = b * s.B;
        if (pf < end)
            for (int32_t o = 0; o < 8 * s.B; o += 64) _mm_prefetch((const char *)pf + (size_t)k0 * 8 + o, _MM_HINT_T0);
        __m256i acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_si256();
        for (int32_t c = k0; c < k0 + s.B; c += 32) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + c));
            const __m256i ax = _mm256_sign_epi8(xv, xv);
            for (int i = 0; i < 8; i++)
                acc[i] = _mm256_add_epi32(acc[i], dot32(xv, ax, _mm256_loadu_si256((const __m256i *)(wr[i] + c))));
        }
        if (es_new_group(&s, k0)) wsv = _mm256_i32gather_ps(w->scale + k0 / s.glen, vidx, 4);
        const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(hsum8x8(acc)), _mm256_set1_ps(xst[b]));
        sumf = _mm256_add_ps(sumf, _mm256_mul_ps(f, wsv));
    }
    _mm256_maskstore_ps(y + r, lane_mask8(nrows), sumf);
}

/* act_block not a multiple of 32 goes to the scalar twin. */
ES_TILED_MATVEC(matvec_q8_avx2, rows8_avx2, 8, 32)
ES_TILED_MATMUL(matmul_q8_avx2, rows8_avx2, 8, 32)

/* ---- float kernels ------------------------------------------------------ */

static float sumsq(const float *x, int32_t n) {
    __m256 a = _mm256_setzero_ps(), b = a;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 va = _mm256_loadu_ps(x + i), vb = _mm256_loadu_ps(x + i + 8);
        a = _mm256_add_ps(a, _mm256_mul_ps(va, va));
        b = _mm256_add_ps(b, _mm256_mul_ps(vb, vb));
    }
    if (i < n) {
        const __m256 va = load8_tail(x + i, n - i), vb = load8_tail(x + i + 8, n - i - 8);
        a = _mm256_add_ps(a, _mm256_mul_ps(va, va));
        b = _mm256_add_ps(b, _mm256_mul_ps(vb, vb));
    }
    return fold16(a, b);
}

static void rmsnorm_avx2(const float *x, const float *w, int32_t n, float eps, float *out) {
    const float inv = es_rms_inv(sumsq(x, n), n, eps);
    const __m256 vinv = _mm256_set1_ps(inv);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv),
                                                _mm256_loadu_ps(w + i)));
    for (; i < n; i++) out[i] = (x[i] * inv) * w[i];
}

static void rope_avx2(float *x, const float *cos, const float *sin, int32_t half) {
    int32_t i = 0;
    for (; i + 8 <= half; i += 8) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + half + i);
        const __m256 c = _mm256_loadu_ps(cos + i), s = _mm256_loadu_ps(sin + i);
        _mm256_storeu_ps(x + i, _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s)));
        _mm256_storeu_ps(x + half + i, _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s)));
    }
    for (; i < half; i++) es_rope_pair(x, cos, sin, half, i);
}

static void softmax_avx2(float *x, int32_t n) {
    __m256 vm = _mm256_set1_ps(x[0]);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    float mx = hmax8(vm);
    for (; i < n; i++)
        if (x[i] > mx) mx = x[i];
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 a = _mm256_setzero_ps(), b = a;
    for (i = 0; i + 16 <= n; i += 16) {
        const __m256 ea = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
        const __m256 eb = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vmx));
        _mm256_storeu_ps(x + i, ea);
        _mm256_storeu_ps(x + i + 8, eb);
        a = _mm256_add_ps(a, ea);
        b = _mm256_add_ps(b, eb);
    }
    if (i < n) {
        const __m256i ma = lane_mask8(n - i), mb = lane_mask8(n - i - 8);
        const __m256 ea = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, ma), vmx)),
                                        _mm256_castsi256_ps(ma));
        const __m256 eb = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i + 8, mb), vmx)),
                                        _mm256_castsi256_ps(mb));
        _mm256_maskstore_ps(x + i, ma, ea);
        _mm256_maskstore_ps(x + i + 8, mb, eb);
        a = _mm256_add_ps(a, ea);
        b = _mm256_add_ps(b, eb);
    }
    const float sum = fold16(a, b);
    const __m256 vsum = _mm256_set1_ps(sum);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_div_ps(_mm256_loadu_ps(x + i), vsum));
    for (; i < n; i++) x[i] = x[i] / sum;
}

/* 8 cache values at element i of a row, as f32 (f16 rows converted exactly,
   int8 rows as their integers). dtype is a constant where this is inlined. */
ES_INLINE __m256 kv_load8(const void *row, int32_t dtype, int32_t i) {
    if (dtype == ES_KV_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
    if (dtype == ES_KV_I8)
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)row + i))));
    return _mm256_loadu_ps((const float *)row + i);
}

ES_INLINE __m256 kv_load8_tail(const void *row, int32_t dtype, int32_t i, int32_t n) {
    if (n <= 0) return _mm256_setzero_ps();
    if (dtype == ES_KV_F16) {
        uint16_t tmp[8] = {0};
        memcpy(tmp, (const uint16_t *)row + i, (size_t)(n < 8 ? n : 8) * 2);
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tmp));
    }
    if (dtype == ES_KV_I8) {
        int8_t tmp[8] = {0};
        memcpy(tmp, (const int8_t *)row + i, (size_t)(n < 8 ? n : 8));
        return kv_load8(tmp, ES_KV_I8, 0);
    }
    return load8_tail((const float *)row + i, n);
}

/* The attention kernel for one dtype (a constant: each call below compiles
   its own loops). */
ES_INLINE void attention_avx2_of(const float *q, const void *k, const void *v, const float *ks, const float *vs,
                                 const int32_t dtype, int32_t n_pos, int32_t hd, float scale, float *scores,
                                 float *out) {
    const size_t esz = es_kv_esize(dtype);
    for (int32_t j = 0; j < n_pos; j++) {
        const void *kr = (const char *)k + (size_t)j * hd * esz;
        __m256 a = _mm256_setzero_ps(), b = a;
        int32_t i = 0;
        for (; i + 16 <= hd; i += 16) {
            a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(q + i), kv_load8(kr, dtype, i)));
            b = _mm256_add_ps(b, _mm256_mul_ps(_mm256_loadu_ps(q + i + 8), kv_load8(kr, dtype, i + 8)));
        }
        if (i < hd) {
            a = _mm256_add_ps(a, _mm256_mul_ps(load8_tail(q + i, hd - i), kv_load8_tail(kr, dtype, i, hd - i)));
            b = _mm256_add_ps(b, _mm256_mul_ps(load8_tail(q + i + 8, hd - i - 8),
                                               kv_load8_tail(kr, dtype, i + 8, hd - i - 8)));
        }
        scores[j] = es_attention_score(fold16(a, b), ks, j, dtype, scale);
    }
    softmax_avx2(scores, n_pos);
    es_attention_value_weights(scores, vs, dtype, n_pos);
    int32_t i0 = 0;
    for (; i0 + 32 <= hd; i0 += 32) {
        __m256 o0 = _mm256_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
        for (int32_t j = 0; j < n_pos; j++) {
            const void *vr = (const char *)v + (size_t)j * hd * esz;
            const __m256 p = _mm256_set1_ps(scores[j]);
            o0 = _mm256_add_ps(o0, _mm256_mul_ps(p, kv_load8(vr, dtype, i0)));
            o1 = _mm256_add_ps(o1, _mm256_mul_ps(p, kv_load8(vr, dtype, i0 + 8)));
            o2 = _mm256_add_ps(o2, _mm256_mul_ps(p, kv_load8(vr, dtype, i0 + 16)));
            o3 = _mm256_add_ps(o3, _mm256_mul_ps(p, kv_load8(vr, dtype, i0 + 24)));
        }
        _mm256_storeu_ps(out + i0, o0);
        _mm256_storeu_ps(out + i0 + 8, o1);
        _mm256_storeu_ps(out + i0 + 16, o2);
        _mm256_storeu_ps(out + i0 + 24, o3);
    }
    es_attention_out_tail(scores, v, dtype, n_pos, hd, i0, out);
}

static void attention_avx2(const float *q, const void *k, const void *v, const float *ks, const float *vs,
                           int32_t dtype, int32_t n_pos, int32_t hd, float scale, float *scores, float *out) {
    if (dtype == ES_KV_I8) attention_avx2_of(q, k, v, ks, vs, ES_KV_I8, n_pos, hd, scale, scores, out);
    else if (dtype == ES_KV_F16) attention_avx2_of(q, k, v, ks, vs, ES_KV_F16, n_pos, hd, scale, scores, out);
    else attention_avx2_of(q, k, v, ks, vs, ES_KV_F32, n_pos, hd, scale, scores, out);
}

static void swiglu_avx2(const float *g, const float *u, int32_t n, float *h) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        const __m256 s = _mm256_div_ps(gv, _mm256_add_ps(one, exp8(_mm256_xor_ps(gv, sign))));
        _mm256_storeu_ps(h + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) h[i] = es_swiglu_value(g[i], u[i]);
}

static void add_avx2(float *x, const float *y, int32_t n) {
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) x[i] += y[i];
}

static void embed_row_avx2(const int8_t *q, const float *scale, int32_t cols, int32_t group_size,
                           float *out) {
    const int32_t glen = group_size > 0 ? group_size : cols;
    for (int32_t g0 = 0; g0 < cols; g0 += glen) {
        const __m256 s = _mm256_set1_ps(scale[g0 / glen]);
        int32_t i = g0;
        for (; i + 8 <= g0 + glen; i += 8) {
            const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + i)));
            _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(v), s));
        }
        for (; i < g0 + glen; i++) out[i] = (float)q[i] * scale[g0 / glen];
    }
}

static void f32_to_f16_avx2(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = es_f32_to_f16_scalar(x[i]);
}

static void f16_to_f32_avx2(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = es_f16_to_f32_scalar(x[i]);
}

void es_install_avx2(es_kernels *k) {
    ES_SET_ALL(k, avx2);
}
