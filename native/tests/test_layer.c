/*
 * Whole graphs on a small random model: every kernel set and thread count
 * gives the same bits as the scalar twins on one thread; a prefill of T
 * tokens gives the same bits as T single-token decode steps; a layer range
 * split in two calls equals one call; f32, f16 and int8 caches all do so.
 */
#include "check.h"
#include "edge_sdk.h"
#include "kernels.h"

enum { DIM = 48, NH = 4, NKV = 2, HD = 12, FFN = 80, VOCAB = 37, NL = 3, CTX = 16, T = 5 };

typedef struct model {
    int8_t q[NL][7][FFN * DIM];
    float s[NL][7][FFN * DIM / 4];
    float norms[NL][2][DIM];
    es_layer_weights lw[NL];
    int8_t eq[VOCAB * DIM];
    float es[VOCAB * DIM / 4];
    float out_norm[DIM];
    es_model_weights m;
    float cos[CTX * HD / 2], sin[CTX * HD / 2];
} model;

static es_qmat make_qmat(rng_t *r, int8_t *q, float *s, int32_t rows, int32_t cols, int32_t G, int32_t ab) {
    const int32_t ng = G ? cols / G : 1;
    for (int32_t i = 0; i < rows * cols; i++) q[i] = rng_i8(r);
    for (int32_t i = 0; i < rows * ng; i++) s[i] = (rng_unit(r) + 1.5f) * 0.02f;
    es_qmat m = {q, s, rows, cols, G, ab};
    return m;
}

static void build(model *md, int32_t G, int32_t ab, rng_t *r) {
    const int32_t qd = NH * HD, kvd = NKV * HD;
    for (int l = 0; l < NL; l++) {
        es_layer_weights *w = &md->lw[l];
        for (int i = 0; i < DIM; i++) {
            md->norms[l][0][i] = 1.0f + 0.3f * rng_unit(r);
            md->norms[l][1][i] = 1.0f + 0.3f * rng_unit(r);
        }
        w->attn_norm = md->norms[l][0];
        w->ffn_norm = md->norms[l][1];
        w->wq = make_qmat(r, md->q[l][0], md->s[l][0], qd, DIM, G, ab);
        w->wk = make_qmat(r, md->q[l][1], md->s[l][1], kvd, DIM, G, ab);
        w->wv = make_qmat(r, md->q[l][2], md->s[l][2], kvd, DIM, G, ab);
        w->wo = make_qmat(r, md->q[l][3], md->s[l][3], DIM, qd, G, ab);
        w->w_gate = make_qmat(r, md->q[l][4], md->s[l][4], FFN, DIM, G, ab);
        w->w_up = make_qmat(r, md->q[l][5], md->s[l][5], FFN, DIM, G, ab);
        w->w_down = make_qmat(r, md->q[l][6], md->s[l][6], DIM, FFN, G, ab);
    }
    for (int i = 0; i < DIM; i++) md->out_norm[i] = 1.0f + 0.3f * rng_unit(r);
    md->m.embed = make_qmat(r, md->eq, md->es, VOCAB, DIM, G, ab);
    md->m.layers = md->lw;
    md->m.out_norm = md->out_norm;
    md->m.head = md->m.embed; /* tied */
    for (int p = 0; p < CTX; p++)
        for (int i = 0; i < HD / 2; i++) {
            const double f = p * pow(10000.0, -2.0 * i / HD);
            md->cos[p * HD / 2 + i] = (float)cos(f);
            md->sin[p * HD / 2 + i] = (float)sin(f);
        }
}

typedef struct run_out {
    float logits[T * VOCAB];
    float kv[2][NL * NKV * CTX * HD]; /* int8: the integers */
    float scales[2][NL * NKV * CTX];  /* int8 only */
} run_out;

static es_dims DIMS = {DIM, NH, NKV, HD, FFN, VOCAB, NL, 0, 1e-5f};

static uint64_t g_offsets[ES_BUF_COUNT];
static _Alignas(64) unsigned char g_arena[1 << 16];

static uint64_t plan(int32_t n_tokens, int32_t n_threads) {
    es_buffer_info info[ES_BUF_COUNT];
    int st = es_layer_buffers(&DIMS, n_tokens, CTX, n_threads, info, ES_BUF_COUNT);
    CHECK_EQ_INT(st, ES_OK);
    uint64_t end = 0;
    for (int i = 0; i < ES_BUF_COUNT; i++) {
        g_offsets[i] = end;
        end = (end + info[i].size_bytes + 63) / 64 * 64;
    }
    return end;
}

/* mode 0: one prefill of T tokens; mode 1: T decode steps; mode 2: prefill
   with the layer range split as [0,1) + [1,NL) and the head separately. */
static void run(const model *md, int32_t isa, int32_t n_threads, int32_t dtype, int mode, run_out *out) {
    es_ctx *ctx = NULL;
    CHECK_EQ_INT(es_ctx_create(n_threads, isa, &ctx), ES_OK);
    static float kbuf[NL * NKV * CTX * HD], vbuf[NL * NKV * CTX * HD], ks[NL * NKV * CTX], vs[NL * NKV * CTX];
    memset(kbuf, 0, sizeof kbuf);
    memset(vbuf, 0, sizeof vbuf);
    memset(ks, 0, sizeof ks);
    memset(vs, 0, sizeof vs);
    es_kv_cache kv = {kbuf, vbuf, dtype, NL, NKV, CTX, HD, ks, vs};
    es_rope rope = {md->cos, md->sin, CTX, HD / 2};
    const int32_t ids[T] = {3, 0, 36, 7, 3};
    float x[T * DIM];
    const uint64_t need = plan(T, n_threads);
    CHECK(need <= sizeof g_arena, "arena %llu", (unsigned long long)need);
    if (mode == 0) {
        CHECK_EQ_INT(es_run_model(ctx, &DIMS, &md->m, &kv, &rope, ids, T, 0, x, out->logits, 1, g_arena,
                                  sizeof g_arena, g_offsets, ES_BUF_COUNT), ES_OK);
    } else if (mode == 1) {
        for (int t = 0; t < T; t++)
            CHECK_EQ_INT(es_run_model(ctx, &DIMS, &md->m, &kv, &rope, ids + t, 1, t, x, out->logits + t * VOCAB, 0,
                                      g_arena, sizeof g_arena, g_offsets, ES_BUF_COUNT), ES_OK);
    } else {
        CHECK_EQ_INT(es_run_embed(ctx, &md->m.embed, ids, T, x), ES_OK);
        CHECK_EQ_INT(es_run_layers(ctx, &DIMS, md->lw, 0, 1, &kv, &rope, x, T, 0, g_arena, sizeof g_arena,
                                   g_offsets, ES_BUF_COUNT), ES_OK);
        CHECK_EQ_INT(es_run_layers(ctx, &DIMS, md->lw + 1, 1, NL - 1, &kv, &rope, x, T, 0, g_arena,
                                   sizeof g_arena, g_offsets, ES_BUF_COUNT), ES_OK);
        CHECK_EQ_INT(es_run_head(ctx, &DIMS, md->out_norm, &md->m.head, x, T, out->logits, g_arena,
                                 sizeof g_arena, g_offsets, ES_BUF_COUNT), ES_OK);
    }
    const size_t n = (size_t)NL * NKV * CTX * HD;
    memset(out->scales, 0, sizeof out->scales);
    if (dtype == ES_KV_I8) {
        for (size_t i = 0; i < n; i++) {
            out->kv[0][i] = (float)((const int8_t *)kbuf)[i];
            out->kv[1][i] = (float)((const int8_t *)vbuf)[i];
        }
        memcpy(out->scales[0], ks, sizeof ks);
        memcpy(out->scales[1], vs, sizeof vs);
    } else if (dtype == ES_KV_F16) {
        f16_to_f32_generic((const uint16_t *)kbuf, out->kv[0], (int64_t)n);
        f16_to_f32_generic((const uint16_t *)vbuf, out->kv[1], (int64_t)n);
    } else {
        memcpy(out->kv[0], kbuf, n * 4);
        memcpy(out->kv[1], vbuf, n * 4);
    }
    es_ctx_destroy(ctx);
}

static int same(const run_out *a, const run_out *b) {
    return memcmp(a->logits, b->logits, sizeof a->logits) == 0 && memcmp(a->kv, b->kv, sizeof a->kv) == 0 &&
           memcmp(a->scales, b->scales, sizeof a->scales) == 0;
}

int main(void) {
    static model md;
    static run_out ref, got;
    /* (group size, act_block): per-token, per-row with blocks, groups with blocks */
    const int32_t groups[4][2] = {{0, 0}, {0, 16}, {16, 8}, {16, 16}};
    for (int gi = 0; gi < 4; gi++) {
        rng_t r = {1234 + (uint64_t)gi};
        DIMS.act_block = groups[gi][1];
        build(&md, groups[gi][0], groups[gi][1], &r);
        for (int32_t dtype = ES_KV_F32; dtype <= ES_KV_I8; dtype++) {
            run(&md, ES_ISA_GENERIC, 1, dtype, 0, &ref);
            float amax = 0.0f;
            int finite = 1;
            for (int i = 0; i < T * VOCAB; i++) {
                finite &= isfinite(ref.logits[i]);
                if (fabsf(ref.logits[i]) > amax) amax = fabsf(ref.logits[i]);
            }
            CHECK(finite && amax > 0.01f, "reference logits degenerate: amax %g", amax);
            for (int32_t isa = 0; isa < ES_ISA_COUNT; isa++) {
                int32_t ok = 0;
                es_isa_supported(isa, &ok);
                if (!ok) continue;
                for (int32_t nt = 1; nt <= 3; nt++)
                    for (int mode = 0; mode < 3; mode++) {
                        if (isa == 0 && nt == 1 && mode == 0) continue;
                        memset(&got, 0xff, sizeof got);
                        run(&md, isa, nt, dtype, mode, &got);
                        CHECK(same(&ref, &got), "G=%d B=%d dtype=%d isa=%d threads=%d mode=%d", groups[gi][0], groups[gi][1], dtype,
                              isa, nt, mode);
                    }
            }
        }
    }
    return check_report("test_layer");
}
