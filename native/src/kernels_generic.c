/*
 * Portable scalar twins of every kernel. These define the arithmetic; every
 * SIMD kernel must produce the same bits (see the header comment of
 * edge_sdk.h for the canonical reduction order, es_math.h for es_expf and
 * the per-element steps, kernel_common.h for the skeletons SIMD kernels
 * share with these).
 */
#include "kernel_common.h"

/* ---- activation quantization ------------------------------------------ */

/* No vector loops: every value takes the scalar steps of kernel_common.h. */
void quantize_row_generic(const float *x, int32_t n, int32_t block, int8_t *q, float *scales) {
    es_quantize_row(x, n, block, q, scales, es_absmax_none, es_quant_none);
}

/* ---- int8 products ----------------------------------------------------- */

void matvec_q8_generic(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w,
                       int32_t r0, int32_t r1, float *y, int32_t ldy) {
    const int32_t cols = w->cols, ng = es_n_groups(w), glen = es_group_len(w);
    const int32_t B = es_act_block(w), nb = cols / B;
    for (int32_t t = 0; t < n_tokens; t++) {
        const int8_t *x = xq + (size_t)t * cols;
        const float *xst = xs + (size_t)t * nb;
        for (int32_t r = r0; r < r1; r++) {
            const int8_t *wr = w->q + (size_t)r * cols;
            const float *ws = w->scale + (size_t)r * ng;
            float sumf = 0.0f;
            for (int32_t b = 0; b < nb; b++) {
                int32_t acc = 0;
                for (int32_t k = b * B; k < (b + 1) * B; k++) acc += (int32_t)x[k] * (int32_t)wr[k];
                sumf += ((float)acc * xst[b]) * ws[b * B / glen];
            }
            y[(size_t)t * ldy + r] = sumf;
        }
    }
}

/* Prefill: rows outer in blocks that stay in cache, tokens inner, so each
   weight row is read from memory once per call. */
void matmul_q8_generic(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w,
                       int32_t r0, int32_t r1, float *y, int32_t ldy) {
    enum { ROWS = 16 };
    for (int32_t rb = r0; rb < r1; rb += ROWS) {
        int32_t re = rb + ROWS < r1 ? rb + ROWS : r1;
        matvec_q8_generic(xq, xs, n_tokens, w, rb, re, y, ldy);
    }
}

/* ---- float kernels ------------------------------------------------------ */

void rmsnorm_generic(const float *x, const float *w, int32_t n, float eps, float *out) {
    float lane[16] = {0};
    for (int32_t i = 0; i < n; i++) lane[i & 15] += x[i] * x[i];
    const float ss = es_fold16(lane);
    const float inv = es_rms_inv(ss, n, eps);
    for (int32_t i = 0; i < n; i++) out[i] = (x[i] * inv) * w[i];
}

void rope_generic(float *x, const float *cos, const float *sin, int32_t half) {
    for (int32_t i = 0; i < half; i++) es_rope_pair(x, cos, sin, half, i);
}

void softmax_generic(float *x, int32_t n) {
    float mx = x[0];
    for (int32_t i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    float lane[16] = {0};
    for (int32_t i = 0; i < n; i++) {
        x[i] = es_expf(x[i] - mx);
        lane[i & 15] += x[i];
    }
    const float sum = es_fold16(lane);
    for (int32_t i = 0; i < n; i++) x[i] = x[i] / sum;
}

void attention_generic(const float *q, const void *k, const void *v, const float *ks, const float *vs,
                       int32_t dtype, int32_t n_pos, int32_t head_dim, float scale, float *scores,
                       float *out) {
    for (int32_t j = 0; j < n_pos; j++) {
        float lane[16] = {0};
        for (int32_t i = 0; i < head_dim; i++)
            lane[i & 15] += q[i] * es_kv_at(k, dtype, (size_t)j * head_dim + i);
        scores[j] = es_attention_score(es_fold16(lane), ks, j, dtype, scale);
    }
    softmax_generic(scores, n_pos);
    es_attention_value_weights(scores, vs, dtype, n_pos);
    for (int32_t i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int32_t j = 0; j < n_pos; j++) {
        const float p = scores[j];
        for (int32_t i = 0; i < head_dim; i++)
            out[i] += p * es_kv_at(v, dtype, (size_t)j * head_dim + i);
    }
}

void swiglu_generic(const float *g, const float *u, int32_t n, float *h) {
    for (int32_t i = 0; i < n; i++) h[i] = es_swiglu_value(g[i], u[i]);
}

void add_generic(float *x, const float *y, int32_t n) {
    for (int32_t i = 0; i < n; i++) x[i] += y[i];
}

void embed_row_generic(const int8_t *q, const float *scale, int32_t cols, int32_t group_size,
                       float *out) {
    const int32_t glen = group_size > 0 ? group_size : cols;
    for (int32_t i = 0; i < cols; i++) out[i] = (float)q[i] * scale[i / glen];
}

void f32_to_f16_generic(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = es_f32_to_f16_scalar(x[i]);
}

void f16_to_f32_generic(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = es_f16_to_f32_scalar(x[i]);
}

void es_install_generic(es_kernels *k) {
    ES_SET_ALL(k, generic);
}
