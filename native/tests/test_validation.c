/*
 * Bad input returns the documented status instead of touching memory:
 * NULL pointers, inconsistent shapes, group sizes, arena size and alignment,
 * positions past the context, token ids past the vocabulary, layer ranges.
 */
#include "check.h"
#include "edge_sdk.h"

enum { DIM = 32, NH = 2, NKV = 1, HD = 16, FFN = 64, VOCAB = 10, NL = 2, CTX = 8 };

static int8_t wbuf[FFN * DIM];
static float sbuf[FFN * DIM];
static float norm[DIM];

static es_qmat qm(int32_t rows, int32_t cols) {
    es_qmat m = {wbuf, sbuf, rows, cols, 0, 0};
    return m;
}

int main(void) {
    const es_dims dims = {DIM, NH, NKV, HD, FFN, VOCAB, NL, 0, 1e-5f};
    const int32_t qd = NH * HD, kvd = NKV * HD;
    es_layer_weights lw[NL];
    for (int l = 0; l < NL; l++) {
        es_layer_weights w = {norm, qm(qd, DIM), qm(kvd, DIM), qm(kvd, DIM), qm(DIM, qd), norm,
                              qm(FFN, DIM), qm(FFN, DIM), qm(DIM, FFN)};
        lw[l] = w;
    }
    static float kc[NL * NKV * CTX * HD], vc[NL * NKV * CTX * HD], cs[CTX * HD / 2];
    static float ksc[NL * NKV * CTX + 1], vsc[NL * NKV * CTX + 1];
    es_kv_cache kv = {kc, vc, ES_KV_F32, NL, NKV, CTX, HD, NULL, NULL};
    es_rope rope = {cs, cs, CTX, HD / 2};
    static _Alignas(64) unsigned char arena[1 << 15];
    uint64_t off[ES_BUF_COUNT];
    es_buffer_info info[ES_BUF_COUNT];
    float x[4 * DIM] = {0};

    es_ctx *ctx = NULL;
    CHECK_EQ_INT(es_ctx_create(0, ES_ISA_AUTO, &ctx), ES_ERR_THREADS);
    CHECK_EQ_INT(es_ctx_create(1, 99, &ctx), ES_ERR_ARG);
    CHECK_EQ_INT(es_ctx_create(1, ES_ISA_AUTO, NULL), ES_ERR_NULL);
    CHECK_EQ_INT(es_ctx_create(2, ES_ISA_AUTO, &ctx), ES_OK);
    int32_t nt = 0, isa = -5, best = -5;
    CHECK_EQ_INT(es_ctx_info(ctx, &nt, &isa), ES_OK);
    CHECK_EQ_INT(es_best_isa(&best), ES_OK);
    CHECK(nt == 2 && isa == best, "ctx info %d %d", nt, isa);

    /* unsupported ISA of the other architecture */
#if defined(__x86_64__)
    es_ctx *other = NULL;
    CHECK_EQ_INT(es_ctx_create(1, ES_ISA_NEON, &other), ES_ERR_UNSUPPORTED);
#else
    es_ctx *other = NULL;
    CHECK_EQ_INT(es_ctx_create(1, ES_ISA_AVX2, &other), ES_ERR_UNSUPPORTED);
#endif

    /* buffer trace */
    CHECK_EQ_INT(es_layer_buffers(&dims, 0, CTX, 2, info, ES_BUF_COUNT), ES_ERR_DIM);
    CHECK_EQ_INT(es_layer_buffers(&dims, 1, CTX, 0, info, ES_BUF_COUNT), ES_ERR_THREADS);
    CHECK_EQ_INT(es_layer_buffers(&dims, 1, CTX, 2, info, 3), ES_ERR_ARG);
    es_dims bad = dims;
    bad.n_kv_heads = 3;
    CHECK_EQ_INT(es_layer_buffers(&bad, 1, CTX, 2, info, ES_BUF_COUNT), ES_ERR_DIM);
    bad = dims;
    bad.head_dim = 15;
    CHECK_EQ_INT(es_layer_buffers(&bad, 1, CTX, 2, info, ES_BUF_COUNT), ES_ERR_DIM);
    CHECK_EQ_INT(es_layer_buffers(&dims, 4, CTX, 2, info, ES_BUF_COUNT), ES_OK);
    CHECK_EQ_INT(info[ES_BUF_GATE].size_bytes, 4 * FFN * 4);
    CHECK_EQ_INT(info[ES_BUF_ATT].size_bytes, 2 * 64);
    CHECK_EQ_INT(info[ES_BUF_Q].last_use, ES_OP_ATTENTION);
    uint64_t end = 0;
    for (int i = 0; i < ES_BUF_COUNT; i++) {
        off[i] = end;
        end = (end + info[i].size_bytes + 63) / 64 * 64;
    }
    CHECK(end <= sizeof arena, "arena");

#define LAYERS(...) es_run_layers(ctx, &dims, lw, __VA_ARGS__)
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_OK);
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 4, arena, end, off, ES_BUF_COUNT), ES_OK);
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 5, arena, end, off, ES_BUF_COUNT), ES_ERR_POS);
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, -1, arena, end, off, ES_BUF_COUNT), ES_ERR_POS);
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 0, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_DIM);
    CHECK_EQ_INT(LAYERS(1, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_LAYER);
    CHECK_EQ_INT(LAYERS(-1, 1, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_LAYER);
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end - 1, off, ES_BUF_COUNT), ES_ERR_ARENA);
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena + 1, end, off, ES_BUF_COUNT), ES_ERR_ALIGN);
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT - 1), ES_ERR_ARG);
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, NULL, end, off, ES_BUF_COUNT), ES_ERR_NULL);
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, NULL, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_NULL);
    uint64_t saved = off[ES_BUF_H];
    off[ES_BUF_H] += 8;
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, sizeof arena, off, ES_BUF_COUNT), ES_ERR_ALIGN);
    off[ES_BUF_H] = UINT64_MAX - 63;
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, sizeof arena, off, ES_BUF_COUNT), ES_ERR_ARENA);
    off[ES_BUF_H] = saved;
    /* buffers alive at the same op may not share bytes; buffers alive at different ops may */
    saved = off[ES_BUF_UP];
    off[ES_BUF_UP] = off[ES_BUF_GATE]; /* both written by GATE_UP */
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_ARENA);
    off[ES_BUF_UP] = off[ES_BUF_GATE] + 64; /* a partial overlap */
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_ARENA);
    off[ES_BUF_UP] = saved;
    CHECK(info[ES_BUF_Q].last_use < info[ES_BUF_GATE].first_use, "Q dead before GATE");
    saved = off[ES_BUF_GATE];
    off[ES_BUF_GATE] = off[ES_BUF_Q]; /* Q is dead by then: a planner may reuse its bytes */
    CHECK(info[ES_BUF_GATE].size_bytes <= end - off[ES_BUF_GATE], "gate fits from Q's offset");
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_OK);
    off[ES_BUF_GATE] = saved;
    /* the scores buffer is sized for the context's thread count */
    es_ctx *ctx3 = NULL;
    CHECK_EQ_INT(es_ctx_create(3, ES_ISA_AUTO, &ctx3), ES_OK);
    saved = off[ES_BUF_ATT];
    off[ES_BUF_ATT] = end; /* last in the arena: 2 threads x 64 bytes fit exactly */
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end + 128, off, ES_BUF_COUNT), ES_OK);
    CHECK_EQ_INT(es_run_layers(ctx3, &dims, lw, 0, NL, &kv, &rope, x, 4, 0, arena, end + 128, off,
                               ES_BUF_COUNT), ES_ERR_ARENA);
    off[ES_BUF_ATT] = saved;
    es_ctx_destroy(ctx3);

    es_kv_cache kv_bad = kv;
    kv_bad.dtype = 7;
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_DTYPE);
    kv_bad = kv;
    kv_bad.n_layers = 1;
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_LAYER);
    CHECK_EQ_INT(LAYERS(1, 1, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_LAYER);
    kv_bad = kv;
    kv_bad.head_dim = 8;
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_DIM);
    kv_bad = kv;
    kv_bad.v = NULL;
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_NULL);
    kv_bad = kv;
    kv_bad.dtype = -1;
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_DTYPE);
    kv_bad.dtype = ES_KV_I8 + 1;
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_DTYPE);
    /* element alignment: f32 to 4 bytes, f16 to 2, int8 any; an int8 cache's scales to 4 */
    kv_bad = kv;
    kv_bad.k = (char *)kc + 2;
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_ALIGN);
    kv_bad.dtype = ES_KV_F16;
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_OK);
    kv_bad.v = (char *)vc + 1;
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_ALIGN);
    /* int8: the scales are required */
    es_kv_cache kv8 = kv;
    kv8.dtype = ES_KV_I8;
    CHECK_EQ_INT(LAYERS(0, NL, &kv8, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_NULL);
    kv8.k_scale = ksc;
    CHECK_EQ_INT(LAYERS(0, NL, &kv8, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_NULL);
    kv8.v_scale = vsc;
    CHECK_EQ_INT(LAYERS(0, NL, &kv8, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_OK);
    kv_bad = kv8;
    kv_bad.k = (char *)kc + 1;
    kv_bad.v = (char *)vc + 3;
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_OK);
    kv_bad.v_scale = (float *)((char *)vsc + 2);
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_ALIGN);
    kv_bad = kv8;
    kv_bad.k_scale = (float *)((char *)ksc + 1);
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_ALIGN);
    /* a cache whose byte size no pointer offset can hold */
    kv_bad = kv8;
    kv_bad.n_layers = INT32_MAX;
    kv_bad.ctx = INT32_MAX;
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_DIM);
    kv_bad = kv;
    kv_bad.n_layers = INT32_MAX;
    kv_bad.ctx = INT32_MAX;
    CHECK_EQ_INT(LAYERS(0, NL, &kv_bad, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_DIM);
    es_rope rope_bad = rope;
    rope_bad.n_pos = 3;
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope_bad, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_POS);
    rope_bad = rope;
    rope_bad.half_dim = HD;
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope_bad, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_DIM);

    /* weights */
    es_layer_weights saved_lw = lw[1];
    lw[1].wk.rows = kvd + 1;
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_DIM);
    lw[1] = saved_lw;
    lw[1].w_down.group_size = 48; /* 64 % 48 != 0 */
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_GROUP);
    lw[1].w_down.group_size = -4;
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_GROUP);
    lw[1] = saved_lw;
    lw[1].wv.act_block = 16; /* differs from dims.act_block */
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_GROUP);
    lw[1] = saved_lw;
    bad = dims;
    bad.act_block = 24; /* does not divide dim 32 */
    CHECK_EQ_INT(es_layer_buffers(&bad, 1, CTX, 2, info, ES_BUF_COUNT), ES_ERR_GROUP);
    bad.act_block = 16;
    CHECK_EQ_INT(es_layer_buffers(&bad, 3, CTX, 2, info, ES_BUF_COUNT), ES_OK);
    CHECK_EQ_INT(info[ES_BUF_HS].size_bytes, 3 * (FFN / 16) * 4);
    CHECK_EQ_INT(info[ES_BUF_XS].size_bytes, 3 * (DIM / 16) * 4);
    lw[1].w_up.scale = NULL;
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_NULL);
    lw[1] = saved_lw;
    lw[0].ffn_norm = NULL;
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_ERR_NULL);
    /* a later layer's bad weights are caught before the first layer runs */
    lw[0].ffn_norm = norm;
    CHECK_EQ_INT(LAYERS(0, NL, &kv, &rope, x, 4, 0, arena, end, off, ES_BUF_COUNT), ES_OK);

    /* embed / head */
    es_qmat table = qm(VOCAB, DIM);
    int32_t ids[2] = {3, VOCAB};
    CHECK_EQ_INT(es_run_embed(ctx, &table, ids, 2, x), ES_ERR_TOKEN);
    ids[1] = -1;
    CHECK_EQ_INT(es_run_embed(ctx, &table, ids, 2, x), ES_ERR_TOKEN);
    ids[1] = VOCAB - 1;
    CHECK_EQ_INT(es_run_embed(ctx, &table, ids, 2, x), ES_OK);
    CHECK_EQ_INT(es_run_embed(ctx, NULL, ids, 2, x), ES_ERR_NULL);
    float logits[2 * VOCAB];
    CHECK_EQ_INT(es_run_head(ctx, &dims, norm, &table, x, 2, logits, arena, end, off, ES_BUF_COUNT), ES_OK);
    es_qmat wrong = qm(VOCAB + 1, DIM);
    CHECK_EQ_INT(es_run_head(ctx, &dims, norm, &wrong, x, 2, logits, arena, end, off, ES_BUF_COUNT), ES_ERR_DIM);
    CHECK_EQ_INT(es_run_head(ctx, &dims, norm, &table, x, 2, logits, arena + 64, 1, off, ES_BUF_COUNT),
                 ES_ERR_ARENA);

    /* kernels */
    int8_t q8[DIM];
    float sc[2];
    CHECK_EQ_INT(es_quantize_rows(ctx, x, 1, 0, 0, q8, sc), ES_ERR_DIM);
    CHECK_EQ_INT(es_quantize_rows(ctx, NULL, 1, DIM, 0, q8, sc), ES_ERR_NULL);
    es_qmat g3 = qm(4, DIM);
    g3.group_size = 3;
    CHECK_EQ_INT(es_matmul_q8(ctx, q8, sc, 1, &g3, x), ES_ERR_GROUP);
    g3.group_size = 8;
    g3.act_block = 16; /* group not a multiple of the block */
    CHECK_EQ_INT(es_matmul_q8(ctx, q8, sc, 1, &g3, x), ES_ERR_GROUP);
    g3.act_block = 0;
    CHECK_EQ_INT(es_matmul_q8(ctx, q8, sc, 1, &g3, x), ES_ERR_GROUP);
    g3.act_block = 8;
    CHECK_EQ_INT(es_quantize_rows(ctx, x, 1, DIM, 8, q8, x + DIM), ES_OK);
    CHECK_EQ_INT(es_matmul_q8(ctx, q8, x + DIM, 1, &g3, x + 2 * DIM), ES_OK);
    CHECK_EQ_INT(es_quantize_rows(ctx, x, 1, DIM, 5, q8, sc), ES_ERR_GROUP);
    g3.cols = 0;
    CHECK_EQ_INT(es_matmul_q8(ctx, q8, sc, 1, &g3, x), ES_ERR_DIM);
    /* limits checked before any memory is read (the pointers only need to be non-NULL) */
    es_qmat big = qm(1, ES_MAX_ACT_BLOCK + 64); /* one block per row, too long for an exact int32 sum */
    CHECK_EQ_INT(es_matmul_q8(ctx, q8, sc, 1, &big, x), ES_ERR_GROUP);
    es_qmat many = qm(INT32_MAX / 2, 4); /* rows x groups past int32 */
    many.group_size = 1;
    many.act_block = 1;
    CHECK_EQ_INT(es_matmul_q8(ctx, q8, sc, 1, &many, x), ES_ERR_DIM);
    CHECK_EQ_INT(es_f32_to_f16(ctx, x, NULL, 3), ES_ERR_NULL);

    /* names */
    CHECK(strcmp(es_status_str(ES_ERR_ARENA), "a scratch buffer does not fit in the arena, or overlaps one alive at the same op") == 0, "status str");
    CHECK(strcmp(es_status_str(-999), "unknown status") == 0, "unknown status");
    CHECK(strcmp(es_buffer_name(ES_BUF_HQ), "hq") == 0 && es_buffer_name(99)[0] == 0, "buffer name");
    CHECK(strcmp(es_op_name(ES_OP_SWIGLU), "swiglu") == 0, "op name");
    const char *names[ES_K_COUNT];
    CHECK_EQ_INT(es_kernel_names(ES_ISA_GENERIC, names, ES_K_COUNT), ES_OK);
    CHECK(strcmp(names[ES_K_MATVEC_Q8], "matvec_q8_generic") == 0, "%s", names[ES_K_MATVEC_Q8]);
    CHECK_EQ_INT(es_kernel_names(42, names, ES_K_COUNT), ES_ERR_ARG);
    CHECK_EQ_INT(es_ctx_destroy(NULL), ES_ERR_NULL);
    CHECK_EQ_INT(es_ctx_destroy(ctx), ES_OK);
    return check_report("test_validation");
}
