/*
 * x86-64 AVX-512 VNNI kernels (compiled with -mavx512f -mavx512bw -mavx512vl
 * -mavx512vnni; installed on top of the AVX2 set).
 *
 * int8 dot with _mm512_dpbusd_epi32, which multiplies u8 by s8: the weight
 * byte is made unsigned by adding 128 (xor 0x80), and the excess is removed
 * exactly afterwards: sum (w+128)*x = sum w*x + 128*sum x, where sum x is one
 * more dpbusd of x against a vector of ones. The +128 is applied once per
 * weight vector and shared by every token of a tile; sum x costs one dpbusd
 * per token and is shared by the four rows of a block. Every intermediate is
 * an exact int32, so the result equals the scalar twin bit for bit.
 *
 * Tiles: 4 weight rows x NT tokens (NT <= 4) per pass; tails of a row or a
 * group use masked loads (masked lanes are 0 and add nothing).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../../es_math.h"
#include "../../kernels.h"

#define ES_INLINE static inline __attribute__((always_inline))

/* ---- activation quantization ------------------------------------------ */

static void quantize_row_avx512(const float *x, int32_t n, int8_t *q, float *scale) {
    __m512 vmax = _mm512_setzero_ps();
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + i)));
    }
    const float amax = _mm512_reduce_max_ps(vmax);
    if (amax == 0.0f) {
        *scale = 0.0f;
        memset(q, 0, (size_t)n);
        return;
    }
    *scale = amax / 127.0f;
    const __m512 vinv = _mm512_set1_ps(127.0f / amax);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m512 f = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vinv);
        f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
        _mm512_mask_cvtsepi32_storeu_epi8(q + i, m, _mm512_cvtps_epi32(f));
    }
}

/* ---- int8 products ----------------------------------------------------- */

/* Four 16-lane int32 vectors -> their four sums. */
ES_INLINE __m128i reduce4(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m256i a2 = _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
    const __m256i b2 = _mm256_add_epi32(_mm512_castsi512_si256(b), _mm512_extracti64x4_epi64(b, 1));
    const __m256i c2 = _mm256_add_epi32(_mm512_castsi512_si256(c), _mm512_extracti64x4_epi64(c, 1));
    const __m256i d2 = _mm256_add_epi32(_mm512_castsi512_si256(d), _mm512_extracti64x4_epi64(d, 1));
    const __m256i abcd = _mm256_hadd_epi32(_mm256_hadd_epi32(a2, b2), _mm256_hadd_epi32(c2, d2));
    return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

ES_INLINE __mmask64 chunk_mask(int32_t rem) {
    return rem >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << rem) - 1);
}

/* Rows r .. r+nrows-1 (nrows <= 4) for NT tokens (NT <= 4, a constant after
   inlining): y[t*ldy + r + i] for t < NT, i < nrows. x0 points at token 0
   (tokens ldx bytes apart), xs at its scale. */
ES_INLINE void block4(const int8_t *x0, int32_t ldx, const float *xs, const int NT,
                      const es_qmat *w, int32_t r, int32_t nrows, float *y, int32_t ldy) {
    const int32_t cols = w->cols, ng = es_n_groups(w), glen = es_group_len(w);
    const __m512i ones = _mm512_set1_epi8(1), bias = _mm512_set1_epi8((char)0x80);
    const int8_t *wr[4];
    const float *wsr[4];
    for (int i = 0; i < 4; i++) {
        const int32_t rr = r + (i < nrows ? i : nrows - 1);
        wr[i] = w->q + (size_t)rr * cols;
        wsr[i] = w->scale + (size_t)rr * ng;
    }
    __m128 sumf[4];
    for (int t = 0; t < NT; t++) sumf[t] = _mm_setzero_ps();
    for (int32_t g = 0; g < ng; g++) {
        const int32_t k0 = g * glen;
        __m512i acc[4][4], xsum[4];
        for (int t = 0; t < NT; t++) {
            xsum[t] = _mm512_setzero_si512();
            for (int i = 0; i < 4; i++) acc[i][t] = _mm512_setzero_si512();
        }
        for (int32_t c = 0; c < glen; c += 64) {
            const __mmask64 m = chunk_mask(glen - c);
            __m512i wv[4];
            for (int i = 0; i < 4; i++) wv[i] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, wr[i] + k0 + c), bias);
            for (int t = 0; t < NT; t++) {
                const __m512i xv = _mm512_maskz_loadu_epi8(m, x0 + (size_t)t * ldx + k0 + c);
                xsum[t] = _mm512_dpbusd_epi32(xsum[t], ones, xv);
                for (int i = 0; i < 4; i++) acc[i][t] = _mm512_dpbusd_epi32(acc[i][t], wv[i], xv);
            }
        }
        const __m128 sc = _mm_setr_ps(wsr[0][g], wsr[1][g], wsr[2][g], wsr[3][g]);
        for (int t = 0; t < NT; t++) {
            const __m512i corr = _mm512_slli_epi32(xsum[t], 7);
            const __m128i s = reduce4(_mm512_sub_epi32(acc[0][t], corr), _mm512_sub_epi32(acc[1][t], corr),
                                      _mm512_sub_epi32(acc[2][t], corr), _mm512_sub_epi32(acc[3][t], corr));
            sumf[t] = _mm_add_ps(sumf[t], _mm_mul_ps(_mm_cvtepi32_ps(s), sc));
        }
    }
    for (int t = 0; t < NT; t++) {
        const __m128 out = _mm_mul_ps(sumf[t], _mm_set1_ps(xs[t]));
        float *yt = y + (size_t)t * ldy + r;
        if (nrows == 4) {
            _mm_storeu_ps(yt, out);
        } else {
            float tmp[4];
            _mm_storeu_ps(tmp, out);
            for (int i = 0; i < nrows; i++) yt[i] = tmp[i];
        }
    }
}

static void block4_1(const int8_t *x, int32_t ldx, const float *xs, const es_qmat *w, int32_t r,
                     int32_t nrows, float *y, int32_t ldy) {
    block4(x, ldx, xs, 1, w, r, nrows, y, ldy);
}
static void block4_2(const int8_t *x, int32_t ldx, const float *xs, const es_qmat *w, int32_t r,
                     int32_t nrows, float *y, int32_t ldy) {
    block4(x, ldx, xs, 2, w, r, nrows, y, ldy);
}
static void block4_3(const int8_t *x, int32_t ldx, const float *xs, const es_qmat *w, int32_t r,
                     int32_t nrows, float *y, int32_t ldy) {
    block4(x, ldx, xs, 3, w, r, nrows, y, ldy);
}
static void block4_4(const int8_t *x, int32_t ldx, const float *xs, const es_qmat *w, int32_t r,
                     int32_t nrows, float *y, int32_t ldy) {
    block4(x, ldx, xs, 4, w, r, nrows, y, ldy);
}

typedef void (*block_fn)(const int8_t *, int32_t, const float *, const es_qmat *, int32_t, int32_t,
                         float *, int32_t);

static void matvec_q8_avx512vnni(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w,
                                 int32_t r0, int32_t r1, float *y, int32_t ldy) {
    for (int32_t t = 0; t < n_tokens; t++) {
        const int8_t *x = xq + (size_t)t * w->cols;
        float *yt = y + (size_t)t * ldy;
        for (int32_t r = r0; r < r1; r += 4) block4_1(x, w->cols, xs + t, w, r, r1 - r < 4 ? r1 - r : 4, yt, ldy);
    }
}

/* Rows outer (a block of 4 rows stays in L1), token tiles of 4 inner: each
   weight row is read from memory once per call. */
static void matmul_q8_avx512vnni(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w,
                                 int32_t r0, int32_t r1, float *y, int32_t ldy) {
    static const block_fn tiles[5] = {0, block4_1, block4_2, block4_3, block4_4};
    for (int32_t r = r0; r < r1; r += 4) {
        const int32_t nrows = r1 - r < 4 ? r1 - r : 4;
        for (int32_t t = 0; t < n_tokens; t += 4) {
            const int32_t nt = n_tokens - t < 4 ? n_tokens - t : 4;
            tiles[nt](xq + (size_t)t * w->cols, w->cols, xs + t, w, r, nrows, y + (size_t)t * ldy, ldy);
        }
    }
}

void es_install_avx512vnni(es_kernels *k) {
    ES_SET(k, quantize_row, ES_K_QUANTIZE_ROW, quantize_row_avx512);
    ES_SET(k, matvec_q8, ES_K_MATVEC_Q8, matvec_q8_avx512vnni);
    ES_SET(k, matmul_q8, ES_K_MATMUL_Q8, matmul_q8_avx512vnni);
}
