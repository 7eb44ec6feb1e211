/* Names of status codes, buffers and ops (static strings). */
#include "edge_sdk.h"

const char *es_status_str(int status) {
    switch (status) {
    case ES_OK: return "ok";
    case ES_ERR_NULL: return "a required pointer is NULL";
    case ES_ERR_DIM: return "a dimension is not positive or shapes disagree";
    case ES_ERR_GROUP: return "group size is negative or does not divide the columns";
    case ES_ERR_ARENA: return "a scratch buffer does not fit in the arena, or overlaps one alive at the same op";
    case ES_ERR_ALIGN: return "a scratch buffer is not 64-byte aligned";
    case ES_ERR_POS: return "position range is outside the context";
    case ES_ERR_TOKEN: return "token id is negative or not below the vocabulary size";
    case ES_ERR_LAYER: return "layer range is outside the model or the KV cache";
    case ES_ERR_DTYPE: return "unknown KV-cache dtype";
    case ES_ERR_THREADS: return "thread count out of range or a thread failed to start";
    case ES_ERR_NOMEM: return "out of memory";
    case ES_ERR_UNSUPPORTED: return "the requested instruction set is not supported by this CPU or build";
    case ES_ERR_ARG: return "invalid argument";
    default: return "unknown status";
    }
}

const char *es_buffer_name(int32_t id) {
    static const char *const names[ES_BUF_COUNT] = {
        "xn", "xq", "xs", "q", "k", "v", "att", "attn_out", "aq", "as", "o",
        "fxn", "fxq", "fxs", "gate", "up", "h", "hq", "hs", "d",
    };
    return id >= 0 && id < ES_BUF_COUNT ? names[id] : "";
}

const char *es_op_name(int32_t id) {
    static const char *const names[ES_OP_COUNT] = {
        "attn_norm", "attn_quant", "qkv", "rope_store", "attention", "out_quant", "wo",
        "attn_residual", "ffn_norm", "ffn_quant", "gate_up", "swiglu", "h_quant", "down",
        "ffn_residual",
    };
    return id >= 0 && id < ES_OP_COUNT ? names[id] : "";
}
