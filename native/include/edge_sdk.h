/*
 * edge_sdk native core: int8 LLaMA decoder kernels and layer execution.
 *
 * This header is the ABI. Everything between ES_CDEF_BEGIN and ES_CDEF_END is
 * plain C that cffi reads verbatim as its cdef: no preprocessor lines, no
 * macros, fixed-width types, enums with literal values. Every function
 * returns an int status (ES_OK = 0 or a negative es_status), except
 * es_status_str / es_buffer_name / es_op_name which return static strings.
 *
 * Arithmetic (the spec every kernel, SIMD or scalar, follows exactly; the
 * numpy twin is edge_sdk/int8_reference.py):
 *   - weights: int8 q (rows, cols) + float32 scale (rows, n_groups);
 *     group_size 0 = one group per row, else cols % group_size == 0.
 *   - activations are quantized per token in blocks of act_block values
 *     (0 = one block spanning the row): per block amax = max|x|; amax == 0
 *     gives scale 0 and q 0; else scale = amax/127, inv = 127/amax,
 *     q = rint_half_even(clamp(x*inv, -127, 127)). xs is (T, cols/act_block).
 *   - product: acc_b = exact int32 dot over block b; sumf = 0; for b in
 *     order: sumf += ((float)acc_b * xs[t,b]) * wscale[r, g(b)]; y = sumf.
 *     group_size must be a multiple of act_block, so g(b) = b*act_block/G.
 *   - float reductions (sum of squares, dot products, softmax sum) use one
 *     canonical order: 16 lanes (element i goes to lane i % 16, summed in
 *     index order), then lanes folded 8, 4, 2, 1 (lane j += lane j + w).
 *     exp is es_expf (range reduction + degree-5 polynomial, no FMA).
 *     So every kernel gives the same bits on every ISA and thread count.
 *   - int8 KV cache (ES_KV_I8): each (layer, kv head, position) row of
 *     head_dim keys (after RoPE) or values is quantized as one activation
 *     block above (amax, scale = amax/127, rint_half_even, 0 for an all-zero
 *     row) into q (int8) and its scale (f32). Attention reads them as
 *     score_j = (dot(q, (float)kq_j) * kscale_j) * (1/sqrt(head_dim)), the
 *     dot in the canonical order, and out = sum_j in order of
 *     (p_j * vscale_j) * (float)vq_j, p the softmax of the scores.
 *
 * Usage (C):
 *   es_ctx *ctx; es_ctx_create(2, ES_ISA_AUTO, &ctx);
 *   es_buffer_info info[ES_BUF_COUNT];
 *   es_layer_buffers(&dims, n_tokens, kv.ctx, 2, info, ES_BUF_COUNT);
 *   ... place buffers in an arena (64-aligned offsets) ...
 *   es_run_embed(ctx, &embed, ids, n_tokens, x);
 *   es_run_layers(ctx, &dims, layers, 0, dims.n_layers, &kv, &rope,
 *                 x, n_tokens, pos, arena, arena_bytes, offsets, ES_BUF_COUNT);
 *   es_run_head(ctx, &dims, out_norm, &head, x, 1, logits,
 *               arena, arena_bytes, offsets, ES_BUF_COUNT);
 *   es_ctx_destroy(ctx);
 */
#ifndef EDGE_SDK_H
#define EDGE_SDK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ES_CDEF_BEGIN */

enum es_abi {
    ES_ABI_VERSION = 3
};

/* ---- status codes ---------------------------------------------------- */

enum es_status {
    ES_OK = 0,
    ES_ERR_NULL = -1,         /* a required pointer is NULL */
    ES_ERR_DIM = -2,          /* a dimension is not positive or shapes disagree */
    ES_ERR_GROUP = -3,        /* group size / act_block do not divide cols, or
                                 group size is not a multiple of act_block */
    ES_ERR_ARENA = -4,        /* a buffer does not fit in the arena, or overlaps one alive at the same op */
    ES_ERR_ALIGN = -5,        /* a buffer is not 64-byte aligned */
    ES_ERR_POS = -6,          /* position range outside the context */
    ES_ERR_TOKEN = -7,        /* token id negative or >= vocab */
    ES_ERR_LAYER = -8,        /* layer range outside the model / cache */
    ES_ERR_DTYPE = -9,        /* unknown KV-cache dtype */
    ES_ERR_THREADS = -10,     /* thread count out of range or thread start failed */
    ES_ERR_NOMEM = -11,       /* allocation failed (context creation only) */
    ES_ERR_UNSUPPORTED = -12, /* requested ISA not supported by this CPU/build */
    ES_ERR_ARG = -13          /* any other invalid argument */
};

/* ---- CPU features and kernel sets ------------------------------------ */

enum es_cpu_feature {
    ES_CPU_AVX2 = 1,
    ES_CPU_FMA = 2,
    ES_CPU_F16C = 4,
    ES_CPU_AVX512F = 8,
    ES_CPU_AVX512BW = 16,
    ES_CPU_AVX512VL = 32,
    ES_CPU_AVX512VNNI = 64,
    ES_CPU_NEON = 256,
    ES_CPU_ASIMDDP = 512,
    ES_CPU_I8MM = 1024,
    ES_CPU_FP16 = 2048
};

enum es_isa {
    ES_ISA_AUTO = -1,         /* best available (generic if EDGE_SDK_FORCE_SCALAR=1) */
    ES_ISA_GENERIC = 0,       /* portable scalar twins */
    ES_ISA_AVX2 = 1,          /* x86-64 AVX2 + FMA + F16C */
    ES_ISA_AVX512VNNI = 2,    /* x86-64 AVX-512 F/BW/VL/VNNI (on top of AVX2) */
    ES_ISA_NEON = 3,          /* aarch64 ARMv8.0 Advanced SIMD */
    ES_ISA_DOTPROD = 4,       /* aarch64 ARMv8.2 dot product (on top of NEON) */
    ES_ISA_I8MM = 5,          /* aarch64 int8 matrix multiply (on top of DOTPROD) */
    ES_ISA_NEON32 = 6,        /* 32-bit ARMv7 NEON */
    ES_ISA_COUNT = 7
};

enum es_kernel_id {
    ES_K_QUANTIZE_ROW = 0,
    ES_K_MATVEC_Q8 = 1,
    ES_K_MATMUL_Q8 = 2,
    ES_K_RMSNORM = 3,
    ES_K_ROPE = 4,
    ES_K_ATTENTION = 5,
    ES_K_SOFTMAX = 6,
    ES_K_SWIGLU = 7,
    ES_K_ADD = 8,
    ES_K_EMBED_ROW = 9,
    ES_K_F32_TO_F16 = 10,
    ES_K_F16_TO_F32 = 11,
    ES_K_COUNT = 12
};

/* ---- tensors ---------------------------------------------------------- */

enum es_limits {
    /* activation values per block in a product: 131072 * 127 * 127 < 2^31, so a
       block's int32 sum cannot overflow; rows x n_groups must also fit int32 */
    ES_MAX_ACT_BLOCK = 131072
};

typedef struct es_qmat {
    const int8_t *q;          /* (rows, cols) C-contiguous, values in [-127, 127] */
    const float *scale;       /* (rows, n_groups) */
    int32_t rows;
    int32_t cols;
    int32_t group_size;       /* 0 = per row (n_groups 1), else cols / n_groups */
    int32_t act_block;        /* activation values per scale in products with it; 0 = cols */
} es_qmat;

typedef struct es_dims {
    int32_t dim;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;
    int32_t ffn_dim;
    int32_t vocab_size;
    int32_t n_layers;
    int32_t act_block;        /* activation block of every product (0 = whole row);
                                 every es_qmat of the model carries the same value */
    float rms_eps;
} es_dims;

typedef struct es_layer_weights {
    const float *attn_norm;   /* (dim) */
    es_qmat wq;               /* (n_heads*head_dim, dim) */
    es_qmat wk;               /* (n_kv_heads*head_dim, dim) */
    es_qmat wv;               /* (n_kv_heads*head_dim, dim) */
    es_qmat wo;               /* (dim, n_heads*head_dim) */
    const float *ffn_norm;    /* (dim) */
    es_qmat w_gate;           /* (ffn_dim, dim) */
    es_qmat w_up;             /* (ffn_dim, dim) */
    es_qmat w_down;           /* (dim, ffn_dim) */
} es_layer_weights;

typedef struct es_model_weights {
    es_qmat embed;                    /* (vocab_size, dim) */
    const es_layer_weights *layers;   /* (n_layers) */
    const float *out_norm;            /* (dim) */
    es_qmat head;                     /* (vocab_size, dim); tied models pass embed */
} es_model_weights;

enum es_kv_dtype {
    ES_KV_F32 = 0,
    ES_KV_F16 = 1,
    ES_KV_I8 = 2
};

typedef struct es_kv_cache {
    void *k;                  /* (n_layers, n_kv_heads, ctx, head_dim) of dtype, aligned to its size */
    void *v;                  /* (n_layers, n_kv_heads, ctx, head_dim) of dtype, aligned to its size */
    int32_t dtype;            /* es_kv_dtype; f16 is IEEE half, round-to-nearest-even; int8 as above */
    int32_t n_layers;
    int32_t n_kv_heads;
    int32_t ctx;
    int32_t head_dim;
    float *k_scale;           /* int8: (n_layers, n_kv_heads, ctx) f32, one per key row; else unused */
    float *v_scale;           /* int8: (n_layers, n_kv_heads, ctx) f32, one per value row; else unused */
} es_kv_cache;

typedef struct es_rope {
    const float *cos;         /* (n_pos, half_dim) */
    const float *sin;         /* (n_pos, half_dim) */
    int32_t n_pos;            /* must be >= pos + n_tokens of every run */
    int32_t half_dim;         /* head_dim / 2 */
} es_rope;

/* ---- activation buffers of one layer --------------------------------- */

enum es_buffer_id {
    ES_BUF_XN = 0,            /* (T, dim) f32: attn rmsnorm output */
    ES_BUF_XQ = 1,            /* (T, dim) i8 */
    ES_BUF_XS = 2,            /* (T, dim/act_block) f32 */
    ES_BUF_Q = 3,             /* (T, n_heads*head_dim) f32 */
    ES_BUF_K = 4,             /* (T, n_kv_heads*head_dim) f32 */
    ES_BUF_V = 5,             /* (T, n_kv_heads*head_dim) f32 */
    ES_BUF_ATT = 6,           /* (n_threads, round_up(ctx*4, 64) bytes) f32 scores */
    ES_BUF_ATTN_OUT = 7,      /* (T, n_heads*head_dim) f32 */
    ES_BUF_AQ = 8,            /* (T, n_heads*head_dim) i8 */
    ES_BUF_AS = 9,            /* (T, n_heads*head_dim/act_block) f32 */
    ES_BUF_O = 10,            /* (T, dim) f32 */
    ES_BUF_FXN = 11,          /* (T, dim) f32: ffn rmsnorm output */
    ES_BUF_FXQ = 12,          /* (T, dim) i8 */
    ES_BUF_FXS = 13,          /* (T, dim/act_block) f32 */
    ES_BUF_GATE = 14,         /* (T, ffn_dim) f32 */
    ES_BUF_UP = 15,           /* (T, ffn_dim) f32 */
    ES_BUF_H = 16,            /* (T, ffn_dim) f32 */
    ES_BUF_HQ = 17,           /* (T, ffn_dim) i8 */
    ES_BUF_HS = 18,           /* (T, ffn_dim/act_block) f32 */
    ES_BUF_D = 19,            /* (T, dim) f32 */
    ES_BUF_COUNT = 20
};

enum es_layer_op {
    ES_OP_ATTN_NORM = 0,
    ES_OP_ATTN_QUANT = 1,
    ES_OP_QKV = 2,
    ES_OP_ROPE_STORE = 3,
    ES_OP_ATTENTION = 4,
    ES_OP_OUT_QUANT = 5,
    ES_OP_WO = 6,
    ES_OP_ATTN_RESIDUAL = 7,
    ES_OP_FFN_NORM = 8,
    ES_OP_FFN_QUANT = 9,
    ES_OP_GATE_UP = 10,
    ES_OP_SWIGLU = 11,
    ES_OP_H_QUANT = 12,
    ES_OP_DOWN = 13,
    ES_OP_FFN_RESIDUAL = 14,
    ES_OP_COUNT = 15
};

enum es_arena {
    ES_ARENA_ALIGN = 64
};

typedef struct es_buffer_info {
    uint64_t size_bytes;
    int32_t first_use;        /* inclusive es_layer_op index */
    int32_t last_use;         /* inclusive es_layer_op index */
} es_buffer_info;

/* ---- context: thread pool + chosen kernel set ------------------------ */

typedef struct es_ctx es_ctx;

/* ---- functions -------------------------------------------------------- */

const char *es_status_str(int status);
const char *es_buffer_name(int32_t id);
const char *es_op_name(int32_t id);

int es_abi_version(uint32_t *out);
int es_cpu_features(uint32_t *out);                 /* es_cpu_feature bits */
int es_isa_supported(int32_t isa, int32_t *out);    /* 1 if the CPU and build can run it */
int es_best_isa(int32_t *out);                      /* what ES_ISA_AUTO resolves to */
int es_isa_name(int32_t isa, const char **out);
/* names[i] = implementation of es_kernel_id i in that kernel set */
int es_kernel_names(int32_t isa, const char **names, int32_t n_names);

/* n_threads in [1, 256]; 1 starts no threads. Threads may share one ctx: their
   parallel steps take turns (each call still needs its own arena and buffers). */
int es_ctx_create(int32_t n_threads, int32_t isa, es_ctx **out);
int es_ctx_destroy(es_ctx *ctx);
int es_ctx_info(const es_ctx *ctx, int32_t *n_threads, int32_t *isa);

int es_layer_buffers(const es_dims *dims, int32_t n_tokens, int32_t ctx_len,
                     int32_t n_threads, es_buffer_info *out, int32_t n_out);

/* Kernels over whole arrays (tests, tools). */
/* q (n_rows, n_cols); scales (n_rows, n_cols/act_block), act_block 0 = n_cols */
int es_quantize_rows(es_ctx *ctx, const float *x, int32_t n_rows, int32_t n_cols,
                     int32_t act_block, int8_t *q, float *scales);
/* xq (n_tokens, w->cols), xs (n_tokens, w->cols/w->act_block); y (n_tokens, w->rows) */
int es_matmul_q8(es_ctx *ctx, const int8_t *xq, const float *xs, int32_t n_tokens,
                 const es_qmat *w, float *y);
int es_f32_to_f16(es_ctx *ctx, const float *x, uint16_t *y, int64_t n);
int es_f16_to_f32(es_ctx *ctx, const uint16_t *x, float *y, int64_t n);

/* Graphs. x (n_tokens, dim) is the residual stream, updated in place. */
int es_run_embed(es_ctx *ctx, const es_qmat *table, const int32_t *ids,
                 int32_t n_tokens, float *out);
int es_run_layers(es_ctx *ctx, const es_dims *dims,
                  const es_layer_weights *layers, int32_t layer0, int32_t n_run,
                  const es_kv_cache *kv, const es_rope *rope,
                  float *x, int32_t n_tokens, int32_t pos,
                  void *arena, uint64_t arena_bytes,
                  const uint64_t *offsets, int32_t n_offsets);
int es_run_head(es_ctx *ctx, const es_dims *dims, const float *out_norm,
                const es_qmat *head, const float *x, int32_t n_tokens, float *logits,
                void *arena, uint64_t arena_bytes,
                const uint64_t *offsets, int32_t n_offsets);
/* Whole model: embed ids, all layers, head. x_work (n_tokens, dim);
   logits (n_tokens, vocab) if all_logits else (1, vocab) for the last token. */
int es_run_model(es_ctx *ctx, const es_dims *dims, const es_model_weights *model,
                 const es_kv_cache *kv, const es_rope *rope,
                 const int32_t *ids, int32_t n_tokens, int32_t pos,
                 float *x_work, float *logits, int32_t all_logits,
                 void *arena, uint64_t arena_bytes,
                 const uint64_t *offsets, int32_t n_offsets);

/* ES_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* EDGE_SDK_H */
