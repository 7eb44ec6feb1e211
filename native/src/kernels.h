/*
 * The kernel table: one function pointer per kernel, one table per ISA.
 *
 * Every kernel has a portable scalar twin `<kernel>_generic` (kernels_generic.c)
 * with the same signature; each arch file overrides the entries it speeds up
 * (es_install_<isa>). The tables are filled once (dispatch.c) and chosen per
 * es_ctx; callers never pick between implementations themselves.
 */
#ifndef ES_KERNELS_H
#define ES_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "edge_sdk.h"

/* x (n) f32 -> q (n) i8, scales (n/block); block divides n (0 = n). The
   quantization of the header comment. */
typedef void (*es_quantize_row_fn)(const float *x, int32_t n, int32_t block, int8_t *q, float *scales);

/* y[t*ldy + r] = product of token t with weight row r, for t in [0, n_tokens),
   r in [r0, r1). xq (n_tokens, w->cols), xs (n_tokens, w->cols/act_block).
   matvec is called with n_tokens == 1, matmul with n_tokens > 1 (both accept
   any n_tokens >= 1). */
typedef void (*es_matmul_fn)(const int8_t *xq, const float *xs, int32_t n_tokens,
                             const es_qmat *w, int32_t r0, int32_t r1,
                             float *y, int32_t ldy);

/* out = (x * (1/sqrt(sum(x^2)/n + eps))) * w, canonical sum order. */
typedef void (*es_rmsnorm_fn)(const float *x, const float *w, int32_t n, float eps, float *out);

/* One head in place, rotate_half layout: (a, b) = (x[i], x[i+half]) ->
   (a*cos[i] - b*sin[i], b*cos[i] + a*sin[i]). */
typedef void (*es_rope_fn)(float *x, const float *cos, const float *sin, int32_t half);

/* One query head against n_pos cached positions of one kv head:
   k, v (n_pos, head_dim) of kv dtype (stride head_dim); ks, vs (n_pos) the
   rows' scales when dtype is ES_KV_I8 (not read otherwise); scores (n_pos)
   scratch; out (head_dim) = sum_j softmax(q.k_j * scale)_j * v_j, in the
   order of edge_sdk.h (for int8: k_j = ks[j] * kq_j, v_j = vs[j] * vq_j). */
typedef void (*es_attention_fn)(const float *q, const void *k, const void *v, const float *ks,
                                const float *vs, int32_t dtype, int32_t n_pos, int32_t head_dim,
                                float scale, float *scores, float *out);

/* In place: x = exp(x - max) / sum, canonical sum order. */
typedef void (*es_softmax_fn)(float *x, int32_t n);

/* h = (g / (1 + exp(-g))) * u */
typedef void (*es_swiglu_fn)(const float *g, const float *u, int32_t n, float *h);

/* x += y */
typedef void (*es_add_fn)(float *x, const float *y, int32_t n);

/* out (cols) = q * scale[group] */
typedef void (*es_embed_row_fn)(const int8_t *q, const float *scale, int32_t cols,
                                int32_t group_size, float *out);

typedef void (*es_f32_to_f16_fn)(const float *x, uint16_t *y, int64_t n);
typedef void (*es_f16_to_f32_fn)(const uint16_t *x, float *y, int64_t n);

typedef struct es_kernels {
    es_quantize_row_fn quantize_row;
    es_matmul_fn matvec_q8;
    es_matmul_fn matmul_q8;
    es_rmsnorm_fn rmsnorm;
    es_rope_fn rope;
    es_attention_fn attention;
    es_softmax_fn softmax;
    es_swiglu_fn swiglu;
    es_add_fn add;
    es_embed_row_fn embed_row;
    es_f32_to_f16_fn f32_to_f16;
    es_f16_to_f32_fn f16_to_f32;
    const char *names[ES_K_COUNT]; /* implementation names, es_kernel_id order */
} es_kernels;

/* Set one entry and its name: ES_SET(k, matvec_q8, ES_K_MATVEC_Q8, matvec_q8_avx2). */
#define ES_SET(k, field, id, fn) do { (k)->field = (fn); (k)->names[(id)] = #fn; } while (0)

/* Every entry, from the kernels named <kernel>_<isa>, for a set that has
   them all (the scalar twins, NEON, AVX2): ES_SET_ALL(k, avx2). */
#define ES_SET_ALL(k, isa)                                                      \
    do {                                                                        \
        ES_SET(k, quantize_row, ES_K_QUANTIZE_ROW, quantize_row_##isa);         \
        ES_SET(k, matvec_q8, ES_K_MATVEC_Q8, matvec_q8_##isa);                  \
        ES_SET(k, matmul_q8, ES_K_MATMUL_Q8, matmul_q8_##isa);                  \
        ES_SET(k, rmsnorm, ES_K_RMSNORM, rmsnorm_##isa);                        \
        ES_SET(k, rope, ES_K_ROPE, rope_##isa);                                 \
        ES_SET(k, attention, ES_K_ATTENTION, attention_##isa);                  \
        ES_SET(k, softmax, ES_K_SOFTMAX, softmax_##isa);                        \
        ES_SET(k, swiglu, ES_K_SWIGLU, swiglu_##isa);                           \
        ES_SET(k, add, ES_K_ADD, add_##isa);                                    \
        ES_SET(k, embed_row, ES_K_EMBED_ROW, embed_row_##isa);                  \
        ES_SET(k, f32_to_f16, ES_K_F32_TO_F16, f32_to_f16_##isa);               \
        ES_SET(k, f16_to_f32, ES_K_F16_TO_F32, f16_to_f32_##isa);               \
    } while (0)

/* Scalar twins (kernels_generic.c). */
void quantize_row_generic(const float *x, int32_t n, int32_t block, int8_t *q, float *scales);
void matvec_q8_generic(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w,
                       int32_t r0, int32_t r1, float *y, int32_t ldy);
void matmul_q8_generic(const int8_t *xq, const float *xs, int32_t n_tokens, const es_qmat *w,
                       int32_t r0, int32_t r1, float *y, int32_t ldy);
void rmsnorm_generic(const float *x, const float *w, int32_t n, float eps, float *out);
void rope_generic(float *x, const float *cos, const float *sin, int32_t half);
void attention_generic(const float *q, const void *k, const void *v, const float *ks, const float *vs,
                       int32_t dtype, int32_t n_pos, int32_t head_dim, float scale, float *scores,
                       float *out);
void softmax_generic(float *x, int32_t n);
void swiglu_generic(const float *g, const float *u, int32_t n, float *h);
void add_generic(float *x, const float *y, int32_t n);
void embed_row_generic(const int8_t *q, const float *scale, int32_t cols, int32_t group_size,
                       float *out);
void f32_to_f16_generic(const float *x, uint16_t *y, int64_t n);
void f16_to_f32_generic(const uint16_t *x, float *y, int64_t n);

void es_install_generic(es_kernels *k);

/* Per-arch hooks (arch/<arch>/cpu.c). */
uint32_t es_arch_features(void);                      /* es_cpu_feature bits */
int es_arch_isa_supported(int32_t isa, uint32_t features);
int32_t es_arch_best_isa(uint32_t features);
void es_arch_install(int32_t isa, es_kernels *k);     /* overlay isa on a generic table */

/* Kernel sets (tables filled once, NULL if the ISA cannot run here). */
const es_kernels *es_kernels_for(int32_t isa);

#endif /* ES_KERNELS_H */
