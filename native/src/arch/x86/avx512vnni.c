/*
 * x86-64 AVX-512 VNNI kernels (compiled with -mavx512f -mavx512bw -mavx512vl
 * -mavx512vnni; installed on top of the AVX2 set).
 *
 * int8 dot with _mm512_dpbusd_epi32, which multiplies u8 by s8: the weight
 * byte is made unsigned by adding 128 (xor 0x80) and the excess is removed
 * exactly: sum (w+128)*x = sum w*x + 128*sum x. The correction -128*sum x
 * depends only on the activation block, so it is computed once per block
 * (one more dpbusd against a vector of ones) and used as the accumulator's
 * starting value. Every intermediate is an exact int32.
 *
 * Layout: 16 weight rows at a time. Each zmm holds 32 bytes of row j and 32
 * of row j+4 (or 8+j / 12+j) of the same activation block, with the block's
 * 32 activation bytes broadcast to both halves; after the block, a transpose
 * tree folds the eight pair vectors into one vector whose lane i is the exact
 * block sum of row i. The float part (sumf += (acc*xs)*ws) then runs on 16
 * rows at once, in the spec's order for each row. Block tails (act_block not
 * a multiple of 32) and row tails use masked loads and stores.
 */
#include <immintrin.h>

#include "../../kernel_common.h"

/* Software prefetch distance of the 16-row product, in 16-row groups. */
#ifndef ES_PF_GROUPS
#define ES_PF_GROUPS 1
#endif

/* ---- activation quantization ------------------------------------------ */

static inline __mmask16 mask16(int32_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u); }

/* Masked loads and stores cover the block's tail: no scalar step is left. */
static inline float absmax_avx512(const float *x, int32_t n, int32_t *done) {
    __m512 vmax = _mm512_setzero_ps();
    for (int32_t i = 0; i < n; i += 16)
        vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(mask16(n - i), x + i)));
    *done = n;
    return _mm512_reduce_max_ps(vmax);
}

/* VCVTPS2DQ rounds half to even; the saturating store narrows to int8. */
static inline int32_t quant_avx512(const float *x, int32_t n, float inv, int8_t *q) {
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (int32_t i = 0; i < n; i += 16) {
        const __mmask16 m = mask16(n - i);
        __m512 f = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vinv);
        f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
        _mm512_mask_cvtsepi32_storeu_epi8(q + i, m, _mm512_cvtps_epi32(f));
    }
    return n;
}

static void quantize_row_avx512(const float *x, int32_t n, int32_t block, int8_t *q, float *scales) {
    es_quantize_row(x, n, block, q, scales, absmax_avx512, quant_avx512);
}

/* ---- int8 products ----------------------------------------------------- */

/* Pair vectors p[0..7] (p[j] = rows (j, j+4) for j < 4, (8+j-4, 12+j-4) for
   j >= 4, each half 8 lanes of partial sums) -> lane i = full sum of row i. */
ES_INLINE __m512i fold_pairs(const __m512i p[8]) {
    const __m512i q0 = _mm512_add_epi32(_mm512_unpacklo_epi32(p[0], p[1]), _mm512_unpackhi_epi32(p[0], p[1]));
    const __m512i q1 = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2], p[3]), _mm512_unpackhi_epi32(p[2], p[3]));
    const __m512i q2 = _mm512_add_epi32(_mm512_unpacklo_epi32(p[4], p[5]), _mm512_unpackhi_epi32(p[4], p[5]));
    const __m512i q3 = _mm512_add_epi32(_mm512_unpacklo_epi32(p[6], p[7]), _mm512_unpackhi_epi32(p[6], p[7]));
    const __m512i r0 = _mm512_add_epi32(_mm512_unpacklo_epi64(q0, q1), _mm512_unpackhi_epi64(q0, q1));
    const __m512i r1 = _mm512_add_epi32(_mm512_unpacklo_epi64(q2, q3), _mm512_unpackhi_epi64(q2, q3));
    return _mm512_add_epi32(_mm512_shuffle_i64x2(r0, r1, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i64x2(r0, r1, _MM_SHUFFLE(3, 1, 3, 1)));
}

ES_INLINE __m512i load_pair(const int8_t *a, const int8_t *b, __mmask32 m, int full) {
    if (full)
        return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                                  _mm256_loadu_si256((const __m256i *)b), 1);
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_maskz_loadu_epi8(m, a)),
                              _mm256_maskz_loadu_epi8(m, b), 1);
}

/* Scale indices (r + i) * ng of rows r .. r+15. */
static inline __m512i scale_index16(int32_t r, int32_t ng) {
    return _mm512_mullo_epi32(_mm512_add_epi32(_mm512_set1_epi32(r), _mm512_setr_epi32(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)), _mm512_set1_epi32(ng));
}

/* The tile (kernel_common.h) of one token and 16 rows, any act_block. */
static void rows16(const int8_t *x, const float *xst, const es_qmat *w, int32_t r, int32_t nrows, float *y) {
    const es_qshape s = es_qshape_of(w);
    const int32_t B = s.B, nb = s.nb;
    static const int ROW_OF_PAIR[8][2] = {{0, 4}, {1, 5}, {2, 6}, {3, 7}, {8, 12}, {9, 13}, {10, 14}, {11, 15}};
    const int8_t *wr[16], *pa[8], *pb[8];
    int32_t sidx[16];
    es_tile_rows(w, r, nrows, 16, wr, sidx);
    for (int j = 0; j < 8; j++) {
        pa[j] = wr[ROW_OF_PAIR[j][0]];
        pb[j] = wr[ROW_OF_PAIR[j][1]];
    }
    const __m512i vidx = _mm512_loadu_si512(sidx);
    const __m512i ones = _mm512_set1_epi8(1), bias = _mm512_set1_epi8((char)0x80);
    __m512 wsv = _mm512_i32gather_ps(vidx, w->scale, 4);
    __m512 sumf = _mm512_setzero_ps();
    for (int32_t b = 0; b < nb; b++) {
        const int32_t k0 = b * B;
        __m512i corr = _mm512_setzero_si512();
        for (int32_t c = k0; c < k0 + B; c += 32) {
            const __mmask32 m = k0 + B - c >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << (k0 + B - c)) - 1);
            const __m512i xv = _mm512_broadcast_i64x4(_mm256_maskz_loadu_epi8(m, x + c));
            corr = _mm512_dpbusd_epi32(corr, ones, xv);
        }
        corr = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(corr, 7));
        __m512i p[8];
        for (int j = 0; j < 8; j++) p[j] = corr;
        for (int32_t c = k0; c < k0 + B; c += 32) {
            const int full = k0 + B - c >= 32;
            const __mmask32 m = full ? ~(__mmask32)0 : (((__mmask32)1 << (k0 + B - c)) - 1);
            const __m512i xv = _mm512_broadcast_i64x4(_mm256_maskz_loadu_epi8(m, x + c));
            for (int j = 0; j < 8; j++)
                p[j] = _mm512_dpbusd_epi32(p[j], _mm512_xor_si512(load_pair(pa[j] + c, pb[j] + c, m, full), bias), xv);
        }
        if (es_new_group(&s, k0)) wsv = _mm512_i32gather_ps(vidx, w->scale + k0 / s.glen, 4);
        const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(fold_pairs(p)), _mm512_set1_ps(xst[b]));
        sumf = _mm512_add_ps(sumf, _mm512_mul_ps(f, wsv));
    }
    _mm512_mask_storeu_ps(y + r, mask16(nrows), sumf);
}

/* The common case: 16 whole rows, act_block a multiple of 32, row pointers
   as base + stride (no per-row pointers), and a linear software prefetch of
   the next 16 rows spread over the blocks, so DRAM streams one group ahead. */
static void rows16_fast(const int8_t *x, const float *xst, const es_qmat *w, int32_t r, float *y) {
    const es_qshape s = es_qshape_of(w);
    const size_t cols = (size_t)s.cols;
    const int32_t ng = s.ng, B = s.B, nb = s.nb;
    const int8_t *p = w->q + (size_t)r * cols;
    const int8_t *pf = p + ES_PF_GROUPS * 16 * cols, *end = w->q + (size_t)w->rows * cols;
    const __m512i ones = _mm512_set1_epi8(1), bias = _mm512_set1_epi8((char)0x80);
    const __m512i vidx = scale_index16(r, ng);
    if (pf < end) { /* the next group's scales: one line per group for per-row scales */
        const char *sp = (const char *)(w->scale + (size_t)(r + ES_PF_GROUPS * 16) * ng);
        for (int32_t o = 0; o < 16 * ng * 4; o += 64) _mm_prefetch(sp + o, _MM_HINT_T0);
    }
    __m512 wsv = ng == 1 ? _mm512_loadu_ps(w->scale + r) : _mm512_i32gather_ps(vidx, w->scale, 4);
    __m512 sumf = _mm512_setzero_ps();
    for (int32_t b = 0; b < nb; b++) {
        const int32_t k0 = b * B;
        if (pf < end)
            for (int32_t o = 0; o < 16 * B; o += 64) _mm_prefetch((const char *)pf + (size_t)k0 * 16 + o, _MM_HINT_T0);
        __m512i corr = _mm512_setzero_si512();
        for (int32_t c = k0; c < k0 + B; c += 32)
            corr = _mm512_dpbusd_epi32(corr, ones, _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x + c))));
        corr = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(corr, 7));
        __m512i p0 = corr, p1 = corr, p2 = corr, p3 = corr, p4 = corr, p5 = corr, p6 = corr, p7 = corr;
        for (int32_t c = k0; c < k0 + B; c += 32) {
            const __m512i xv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x + c)));
            const int8_t *r0 = p + c, *r4 = r0 + 4 * cols, *r8 = r0 + 8 * cols, *r12 = r0 + 12 * cols;
#define PAIR(acc, a, b) acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512( \
        _mm256_loadu_si256((const __m256i *)(a))), _mm256_loadu_si256((const __m256i *)(b)), 1), bias), xv)
            PAIR(p0, r0, r4);
            PAIR(p1, r0 + cols, r4 + cols);
            PAIR(p2, r0 + 2 * cols, r4 + 2 * cols);
            PAIR(p3, r0 + 3 * cols, r4 + 3 * cols);
            PAIR(p4, r8, r12);
            PAIR(p5, r8 + cols, r12 + cols);
            PAIR(p6, r8 + 2 * cols, r12 + 2 * cols);
            PAIR(p7, r8 + 3 * cols, r12 + 3 * cols);
#undef PAIR
        }
        if (es_new_group(&s, k0)) wsv = _mm512_i32gather_ps(vidx, w->scale + k0 / s.glen, 4);
        const __m512i pp[8] = {p0, p1, p2, p3, p4, p5, p6, p7};
        const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(fold_pairs(pp)), _mm512_set1_ps(xst[b]));
        sumf = _mm512_add_ps(sumf, _mm512_mul_ps(f, wsv));
    }
    _mm512_storeu_ps(y + r, sumf);
}

static inline void rows16_any(const int8_t *x, const float *xst, const es_qmat *w, int32_t r, int32_t nrows,
                              float *y) {
    if (nrows == 16 && es_act_block(w) % 32 == 0) rows16_fast(x, xst, w, r, y);
    else rows16(x, xst, w, r, nrows, y);
}

/* rows16 takes any act_block: no scalar fallback (multiple 1). */
ES_TILED_MATVEC(matvec_q8_avx512vnni, rows16_any, 16, 1)

/* ---- prefill: repacked 16-row panels -------------------------------------

   For many tokens the fold of rows16 dominates. Instead, a panel of 16 rows
   is repacked once (on the stack) so that the 64-byte vector kk holds bytes
   4kk..4kk+3 of each of the 16 rows, already +128: then one dpbusd of that
   vector with the token's 4 bytes broadcast adds each row's partial dot to
   its own lane, and a block needs no fold at all. The panel is reused by a
   block of tokens (as many as PANEL_BYTES of interleaved activations hold),
   whose -128*sum(x) block corrections are computed once. Same integers, same float order as the scalar twin. */

/* 16x16 transpose of 32-bit elements: r[i] = 16 ints of row i -> r[c] = column c. */
ES_INLINE void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* u[4g + j] (rows 4g..4g+3) holds, in 128-bit lane L, column 4L + j */
    for (int j = 0; j < 4; j++) {
        const __m512i a = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88), b = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xDD);
        const __m512i c = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
        const __m512i d = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_i32x4(a, c, 0x88);
        r[8 + j] = _mm512_shuffle_i32x4(a, c, 0xDD);
        r[4 + j] = _mm512_shuffle_i32x4(b, d, 0x88);
        r[12 + j] = _mm512_shuffle_i32x4(b, d, 0xDD);
    }
}

/* pk[kk] (cols/4 vectors) = bytes 4kk..4kk+3 of rows r..r+15, plus 128. */
static void pack_panel(const es_qmat *w, int32_t r, __m512i *pk) {
    const size_t cols = (size_t)w->cols;
    const int8_t *p = w->q + (size_t)r * cols;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    for (size_t c = 0; c < cols; c += 64) {
        const __mmask64 m = cols - c >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (cols - c)) - 1);
        __m512i v[16];
        for (int i = 0; i < 16; i++) v[i] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, p + (size_t)i * cols + c), bias);
        transpose16(v);
        const size_t kk0 = c / 4, n = cols - c >= 64 ? 16 : (cols - c) / 4;
        for (size_t j = 0; j < n; j++) _mm512_store_si512(pk + kk0 + j, v[j]);
    }
}

/* Activations of NT tokens interleaved for the panel steps: xi[kk * NT + i]
   = bytes 4kk..4kk+3 of token i, xsi[b * NT + i] its block scale and
   ci[b * NT + i] its -128 * block sum. One pointer then reaches all NT
   tokens with constant offsets, so each broadcast folds into its dpbusd and
   no per-token pointer is kept in a register. */
typedef struct {
    const int32_t *xi;
    const float *xsi;
    const int32_t *ci;
} panel_x;

/* NT tokens against 16 whole rows from r: the NT accumulators are independent
   dpbusd chains (one chain alone waits on dpbusd's latency), and each packed
   vector is loaded once for the NT tokens. Per token and row the float steps
   are those of the scalar twin, in block order. */
/* acc + dot of the u8 lanes of w with the s8 dword *x broadcast, in place:
   as an intrinsic GCC 12 moves each accumulator through a second register
   on every step of the panel loop (no tie of the destructive operand). */
ES_INLINE __m512i dpbusd_bcast(__m512i acc, __m512i w, const int32_t *x) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*x));
    return acc;
}

#define EACH8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define EACH4(X) X(0) X(1) X(2) X(3)
#define EACH1(X) X(0)
#define PS_SUM0(i) __m512 sumf##i = _mm512_setzero_ps();
#define PS_ACC0(i) __m512i acc##i = _mm512_set1_epi32(x.ci[b * nt + i]);
#define PS_DOT(i) acc##i = dpbusd_bcast(acc##i, wv, xk + i);
#define PS_FLOAT(i)                                                                                \
    sumf##i = _mm512_add_ps(sumf##i, _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc##i),      \
                                                                 _mm512_set1_ps(x.xsi[b * nt + i])), ws));
#define PS_STORE(i) _mm512_storeu_ps(y + (size_t)(t + i) * ldy + r, sumf##i);
#define PANEL_STEP(NT)                                                                                              \
    static void panel_step##NT(panel_x x, int32_t t, const es_qmat *w, int32_t r, const __m512i *pk,                 \
                               const __m512 *wsg, float *y, int32_t ldy) {                                            \
        enum { nt = NT };                                                                                             \
        const int32_t ng = es_n_groups(w), glen = es_group_len(w), B = es_act_block(w), nb = w->cols / B;            \
        EACH##NT(PS_SUM0)                                                                                             \
        for (int32_t b = 0; b < nb; b++) {                                                                            \
            const int32_t kk0 = b * B / 4;                                                                            \
            EACH##NT(PS_ACC0)                                                                                         \
            for (int32_t kk = kk0; kk < kk0 + B / 4; kk++) {                                                          \
                const __m512i wv = pk[kk];                                                                            \
                const int32_t *xk = x.xi + (size_t)kk * nt;                                                           \
                EACH##NT(PS_DOT)                                                                                      \
            }                                                                                                         \
            const __m512 ws = wsg[ng > 1 ? b * B / glen : 0];                                                         \
            EACH##NT(PS_FLOAT)                                                                                        \
        }                                                                                                             \
        EACH##NT(PS_STORE)                                                                                            \
    }
PANEL_STEP(8)
PANEL_STEP(4)
PANEL_STEP(1)
#undef PANEL_STEP
#undef PS_SUM0
#undef PS_ACC0
#undef PS_DOT
#undef PS_FLOAT
#undef PS_STORE
#undef EACH8
#undef EACH4
#undef EACH1

/* Interleave tokens [t, t + nt) (nt = 8, 4 or 1) into xi, xsi and ci. */
static panel_x interleave(const int8_t *xq, const float *xs, int32_t t, int32_t nt, const es_qmat *w, int32_t *xi,
                          float *xsi, int32_t *ci) {
    const int32_t cols = w->cols, B = es_act_block(w), nb = cols / B;
    for (int32_t i = 0; i < nt; i++) {
        const int8_t *xt = xq + (size_t)(t + i) * cols;
        const int32_t *x32 = (const int32_t *)xt;
        for (int32_t kk = 0; kk < cols / 4; kk++) xi[(size_t)kk * nt + i] = x32[kk];
        for (int32_t b = 0; b < nb; b++) {
            int32_t s = 0;
            for (int32_t k = 0; k < B; k++) s += xt[(size_t)b * B + k];
            ci[b * nt + i] = -128 * s;
            xsi[b * nt + i] = xs[(size_t)(t + i) * nb + b];
        }
    }
    return (panel_x){xi, xsi, ci};
}

/* Prefetch lines [l0, l1) of the n_lines from p into L2. */
ES_INLINE void prefetch_lines(const int8_t *p, size_t l0, size_t l1) {
    for (size_t l = l0; l < l1; l++) _mm_prefetch((const char *)p + l * 64, _MM_HINT_T1);
}

/* Interleaved activations of up to PANEL_BYTES / cols tokens (a multiple of 8). */
enum { PANEL_MAX_COLS = 4096, PANEL_BYTES = 128 * 1024 };

/* The token groups of one block [t0, t1): xi/xsi/ci laid out group after group. */
typedef struct {
    int32_t n;          /* groups */
    int32_t t[PANEL_BYTES / (8 * 32) + 4];   /* first token of each group */
    int32_t nt[PANEL_BYTES / (8 * 32) + 4];  /* its size: 8, 4 or 1 */
    panel_x x[PANEL_BYTES / (8 * 32) + 4];
} panel_groups;

/* 16 whole rows from r against every group; `next` (16 rows, or NULL) is the
   next panel's weights, prefetched a share per group so that its packing
   does not wait on memory. */
static void panel_tokens(const panel_groups *g, const es_qmat *w, int32_t r, const __m512i *pk, const __m512 *wsg,
                         float *y, int32_t ldy, const int8_t *next) {
    const size_t lines = next ? ((size_t)16 * w->cols + 63) / 64 : 0;
    const size_t per = (lines + (size_t)g->n - 1) / (size_t)g->n;
    size_t l = 0;
    for (int32_t k = 0; k < g->n; k++) {
        if (g->nt[k] == 8) panel_step8(g->x[k], g->t[k], w, r, pk, wsg, y, ldy);
        else if (g->nt[k] == 4) panel_step4(g->x[k], g->t[k], w, r, pk, wsg, y, ldy);
        else panel_step1(g->x[k], g->t[k], w, r, pk, wsg, y, ldy);
        prefetch_lines(next, l, l + per < lines ? l + per : lines);
        l += per;
    }
}

static void matmul_panels(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w, int32_t r0,
                          int32_t r1, float *y, int32_t ldy) {
    const int32_t cols = w->cols, ng = es_n_groups(w), B = es_act_block(w), nb = cols / B;
    const int32_t block = PANEL_BYTES / cols / 8 * 8 > 8 ? PANEL_BYTES / cols / 8 * 8 : 8;
    __m512i pk[PANEL_MAX_COLS / 4];
    __m512 wsg[PANEL_MAX_COLS / 32];
    int32_t xi[PANEL_BYTES / 4];
    float xsi[PANEL_BYTES / 32 + 8 * (PANEL_MAX_COLS / 32)];
    int32_t ci[PANEL_BYTES / 32 + 8 * (PANEL_MAX_COLS / 32)];
    panel_groups g;
    int32_t r = r0;
    for (int32_t t0 = 0; t0 < n_tokens; t0 += block) {
        const int32_t t1 = t0 + block < n_tokens ? t0 + block : n_tokens;
        g.n = 0;
        size_t oi = 0, os = 0;
        for (int32_t t = t0; t < t1; g.n++) {
            const int32_t nt = t1 - t >= 8 ? 8 : t1 - t >= 4 ? 4 : 1;
            g.t[g.n] = t;
            g.nt[g.n] = nt;
            g.x[g.n] = interleave(xq, xs, t, nt, w, xi + oi, xsi + os, ci + os);
            oi += (size_t)nt * cols / 4;
            os += (size_t)nt * nb;
            t += nt;
        }
        for (r = r0; r + 16 <= r1; r += 16) {
            pack_panel(w, r, pk);
            for (int32_t k = 0; k < ng; k++) wsg[k] = _mm512_i32gather_ps(scale_index16(r, ng), w->scale + k, 4);
            const int8_t *next = r + 32 <= r1 ? w->q + (size_t)(r + 16) * cols : NULL;
            panel_tokens(&g, w, r, pk, wsg, y, ldy, next);
        }
    }
    if (r < r1) /* fewer than 16 rows left */
        for (int32_t t = 0; t < n_tokens; t++)
            rows16(xq + (size_t)t * cols, xs + (size_t)t * nb, w, r, r1 - r, y + (size_t)t * ldy);
}

/* Rows outer in groups of 16 (16*cols bytes stay in L1/L2), tokens inner:
   each weight row comes from memory once per call. */
static void matmul_q8_avx512vnni(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w,
                                 int32_t r0, int32_t r1, float *y, int32_t ldy) {
    if (n_tokens >= 4 && es_act_block(w) % 32 == 0 && w->cols <= PANEL_MAX_COLS)
        matmul_panels(xq, xs, n_tokens, w, r0, r1, y, ldy);
    else
        es_tiles_by_row(xq, xs, n_tokens, w, r0, r1, y, ldy, 16, rows16_any);
}

void es_install_avx512vnni(es_kernels *k) {
    ES_SET(k, quantize_row, ES_K_QUANTIZE_ROW, quantize_row_avx512);
    ES_SET(k, matvec_q8, ES_K_MATVEC_Q8, matvec_q8_avx512vnni);
    ES_SET(k, matmul_q8, ES_K_MATMUL_Q8, matmul_q8_avx512vnni);
}
