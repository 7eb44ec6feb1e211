/*
 * edge_serial: microcontroller client of the edge_sdk serial protocol, version 2.
 * See edge_serial.h for the interface and docs/serial-protocol.md for the wire format.
 *
 * Sections in data-flow order: CRC-32, COBS, frame writer, request builders,
 * payload parsers, receiver, client (streams, then constraint registration).
 */
#include "edge_serial.h"

#include <string.h>

/* The protocol caps payloads at 1024 bytes; a client may accept less, never more. */
typedef char es_check_max_payload[(ES_MAX_PAYLOAD >= 16u && ES_MAX_PAYLOAD <= 1024u) ? 1 : -1];
/* Reals travel as IEEE-754 binary32, which is what float is on every target we know. */
typedef char es_check_float[(sizeof(float) == 4) ? 1 : -1];

/* ------------------------------------------------------------ CRC-32 */

/* Reflected CRC-32, polynomial 0xEDB88320, one bit at a time (8 steps a byte). */
static uint32_t crc_step(uint32_t c, uint8_t b) {
    int k;
    c ^= b;
    for (k = 0; k < 8; k++) {
        c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c;
}

uint32_t es_crc32(uint32_t crc, const uint8_t *data, size_t len) {
    uint32_t c = ~crc;
    size_t i;
    if (data == NULL) {
        return crc;
    }
    for (i = 0; i < len; i++) {
        c = crc_step(c, data[i]);
    }
    return ~c;
}

/* -------------------------------------------------------------- COBS */

/* Streaming COBS encoder. A group is opened lazily after a full (0xFF) group,
 * so data that ends on a full group gets no trailing 0x01: the canonical form. */
typedef struct {
    uint8_t *out;
    size_t cap;
    size_t pos;
    size_t code_pos;
    uint8_t code;
    uint8_t open;
    int err;
} cobs_enc;

static void enc_raw(cobs_enc *e, uint8_t b) {
    if (e->pos >= e->cap) {
        e->err = ES_E_SPACE;
        return;
    }
    e->out[e->pos++] = b;
}

static void enc_open(cobs_enc *e) {
    e->code_pos = e->pos;
    enc_raw(e, 0); /* placeholder for the code byte */
    e->code = 1;
    e->open = 1;
}

static void enc_close(cobs_enc *e) {
    if (e->err == ES_OK) {
        e->out[e->code_pos] = e->code;
    }
    e->open = 0;
}

static void enc_begin(cobs_enc *e, uint8_t *out, size_t cap, size_t pos) {
    e->out = out;
    e->cap = cap;
    e->pos = pos;
    e->err = ES_OK;
    enc_open(e);
}

static void enc_put(cobs_enc *e, uint8_t b) {
    if (!e->open) {
        enc_open(e);
    }
    if (b == 0) {
        enc_close(e);
        enc_open(e);
        return;
    }
    enc_raw(e, b);
    if (++e->code == 0xFF) {
        enc_close(e);
    }
}

static void enc_end(cobs_enc *e) {
    if (e->open) {
        enc_close(e);
    }
}

int es_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap, size_t *out_len) {
    cobs_enc e;
    size_t i;
    if ((src == NULL && len > 0) || dst == NULL || out_len == NULL) {
        return ES_E_ARG;
    }
    enc_begin(&e, dst, cap, 0);
    for (i = 0; i < len; i++) {
        enc_put(&e, src[i]);
    }
    enc_end(&e);
    *out_len = e.pos;
    return e.err;
}

int es_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap, size_t *out_len) {
    size_t i = 0, o = 0, k;
    if ((src == NULL && len > 0) || dst == NULL || out_len == NULL) {
        return ES_E_ARG;
    }
    /* In place is safe: each group writes no more bytes than it has consumed. */
    while (i < len) {
        uint8_t code = src[i++];
        if (code == 0 || (size_t)(code - 1u) > len - i) {
            return ES_E_COBS;
        }
        for (k = 1; k < code; k++) {
            uint8_t b = src[i++];
            if (b == 0) {
                return ES_E_COBS;
            }
            if (o >= cap) {
                return ES_E_SPACE;
            }
            dst[o++] = b;
        }
        if (code != 0xFF && i < len) {
            if (o >= cap) {
                return ES_E_SPACE;
            }
            dst[o++] = 0;
        }
    }
    *out_len = o;
    return ES_OK;
}

/* ------------------------------------------------------ frame writer */

/* Writes 0x00, COBS(header | payload | CRC), 0x00 straight into the caller's
 * buffer while computing the CRC, so no body buffer is needed. */
typedef struct {
    cobs_enc enc;
    uint32_t crc; /* running, pre-inverted */
} frame_writer;

static void fw_byte(frame_writer *w, uint8_t b) {
    w->crc = crc_step(w->crc, b);
    enc_put(&w->enc, b);
}

static void fw_u16(frame_writer *w, uint16_t v) {
    fw_byte(w, (uint8_t)(v & 0xFFu));
    fw_byte(w, (uint8_t)(v >> 8));
}

static void fw_u32(frame_writer *w, uint32_t v) {
    int k;
    for (k = 0; k < 4; k++) {
        fw_byte(w, (uint8_t)(v >> (8 * k)));
    }
}

static void fw_bytes(frame_writer *w, const uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        fw_byte(w, p[i]);
    }
}

static void fw_begin(frame_writer *w, uint8_t *out, size_t cap, uint8_t type, uint16_t seq, size_t payload_len) {
    if (cap > 0) {
        out[0] = 0x00; /* leading delimiter: ends any noise before this frame */
    }
    enc_begin(&w->enc, out, cap, 1);
    if (cap == 0) {
        w->enc.err = ES_E_SPACE;
    }
    w->crc = 0xFFFFFFFFu;
    fw_byte(w, (uint8_t)ES_PROTOCOL_VERSION);
    fw_byte(w, type);
    fw_u16(w, seq);
    fw_u16(w, (uint16_t)payload_len);
}

static int fw_end(frame_writer *w, size_t *out_len) {
    uint32_t crc = ~w->crc;
    int k;
    for (k = 0; k < 4; k++) {
        enc_put(&w->enc, (uint8_t)(crc >> (8 * k)));
    }
    enc_end(&w->enc);
    enc_raw(&w->enc, 0x00);
    if (w->enc.err != ES_OK) {
        return w->enc.err;
    }
    *out_len = w->enc.pos;
    return ES_OK;
}

/* --------------------------------------------------- request builders */

#define FIELD_HEADER 3u

static void fw_field(frame_writer *w, uint8_t tag, const uint8_t *value, size_t len) {
    fw_byte(w, tag);
    fw_u16(w, (uint16_t)len);
    fw_bytes(w, value, len);
}

static void fw_field_u32(frame_writer *w, uint8_t tag, uint32_t v) {
    fw_byte(w, tag);
    fw_u16(w, 4);
    fw_u32(w, v);
}

static void fw_field_f32(frame_writer *w, uint8_t tag, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    fw_field_u32(w, tag, u);
}

static size_t sampling_size(const es_sampling *s) {
    size_t n = 0, i;
    int k;
    if (s == NULL) {
        return 0;
    }
    for (k = 0; k < 8; k++) { /* the seven sampling fields and CONSTRAINT: 4-byte values all */
        if (s->present & (1u << k)) {
            n += FIELD_HEADER + 4u;
        }
    }
    for (i = 0; i < s->n_stop; i++) {
        n += FIELD_HEADER + strlen(s->stop[i]);
    }
    return n;
}

/* Fields in tag order, as the Python encoder writes them. */
static void fw_sampling(frame_writer *w, const es_sampling *s) {
    size_t i;
    if (s == NULL) {
        return;
    }
    if (s->present & ES_HAS_MAX_TOKENS) fw_field_u32(w, ES_TAG_MAX_TOKENS, s->max_tokens);
    if (s->present & ES_HAS_TEMPERATURE) fw_field_f32(w, ES_TAG_TEMPERATURE, s->temperature);
    if (s->present & ES_HAS_TOP_K) fw_field_u32(w, ES_TAG_TOP_K, s->top_k);
    if (s->present & ES_HAS_TOP_P) fw_field_f32(w, ES_TAG_TOP_P, s->top_p);
    if (s->present & ES_HAS_MIN_P) fw_field_f32(w, ES_TAG_MIN_P, s->min_p);
    if (s->present & ES_HAS_REPETITION_PENALTY) fw_field_f32(w, ES_TAG_REPETITION_PENALTY, s->repetition_penalty);
    if (s->present & ES_HAS_SEED) fw_field_u32(w, ES_TAG_SEED, s->seed);
    for (i = 0; i < s->n_stop; i++) {
        fw_field(w, ES_TAG_STOP, (const uint8_t *)s->stop[i], strlen(s->stop[i]));
    }
    if (s->present & ES_HAS_CONSTRAINT) fw_field_u32(w, ES_TAG_CONSTRAINT, s->constraint);
}

static int check_sampling(const es_sampling *s) {
    size_t i;
    if (s == NULL) {
        return ES_OK;
    }
    if (s->n_stop > 0 && s->stop == NULL) {
        return ES_E_ARG;
    }
    if ((s->present & ES_HAS_CONSTRAINT) && (s->constraint == 0 || s->constraint > ES_MAX_CONSTRAINT_ID)) {
        return ES_E_ARG;
    }
    for (i = 0; i < s->n_stop; i++) {
        if (s->stop[i] == NULL) {
            return ES_E_ARG;
        }
    }
    return ES_OK;
}

int es_build_ping(uint16_t seq, const uint8_t *payload, size_t len, uint8_t *out, size_t cap, size_t *out_len) {
    frame_writer w;
    if ((payload == NULL && len > 0) || out == NULL || out_len == NULL || seq == 0) {
        return ES_E_ARG;
    }
    if (len > ES_MAX_PAYLOAD) {
        return ES_E_TOO_LARGE;
    }
    fw_begin(&w, out, cap, ES_PING, seq, len);
    fw_bytes(&w, payload, len);
    return fw_end(&w, out_len);
}

int es_build_info(uint16_t seq, uint8_t *out, size_t cap, size_t *out_len) {
    frame_writer w;
    if (out == NULL || out_len == NULL || seq == 0) {
        return ES_E_ARG;
    }
    fw_begin(&w, out, cap, ES_INFO, seq, 0);
    return fw_end(&w, out_len);
}

int es_build_cancel(uint16_t seq, uint16_t target_seq, uint8_t *out, size_t cap, size_t *out_len) {
    frame_writer w;
    if (out == NULL || out_len == NULL || seq == 0 || target_seq == 0) {
        return ES_E_ARG;
    }
    fw_begin(&w, out, cap, ES_CANCEL, seq, 2);
    fw_u16(&w, target_seq);
    return fw_end(&w, out_len);
}

int es_build_generate(uint16_t seq, const char *prompt, const es_sampling *sampling, uint8_t *out, size_t cap, size_t *out_len) {
    frame_writer w;
    size_t plen, total;
    if (prompt == NULL || out == NULL || out_len == NULL || seq == 0 || check_sampling(sampling) != ES_OK) {
        return ES_E_ARG;
    }
    plen = strlen(prompt);
    if (plen > ES_MAX_PAYLOAD) {
        return ES_E_TOO_LARGE;
    }
    total = FIELD_HEADER + plen + sampling_size(sampling);
    if (total > ES_MAX_PAYLOAD) {
        return ES_E_TOO_LARGE;
    }
    fw_begin(&w, out, cap, ES_GENERATE, seq, total);
    fw_field(&w, ES_TAG_PROMPT, (const uint8_t *)prompt, plen);
    fw_sampling(&w, sampling);
    return fw_end(&w, out_len);
}

int es_build_chat(uint16_t seq, const es_message *messages, size_t n_messages, const es_sampling *sampling, uint8_t *out,
                  size_t cap, size_t *out_len) {
    frame_writer w;
    size_t total = 0, i;
    if (messages == NULL || n_messages == 0 || out == NULL || out_len == NULL || seq == 0 ||
        check_sampling(sampling) != ES_OK) {
        return ES_E_ARG;
    }
    for (i = 0; i < n_messages; i++) {
        if (messages[i].role == NULL || messages[i].content == NULL) {
            return ES_E_ARG;
        }
        total += 2u * FIELD_HEADER + strlen(messages[i].role) + strlen(messages[i].content);
        if (total > ES_MAX_PAYLOAD) {
            return ES_E_TOO_LARGE;
        }
    }
    total += sampling_size(sampling);
    if (total > ES_MAX_PAYLOAD) {
        return ES_E_TOO_LARGE;
    }
    fw_begin(&w, out, cap, ES_CHAT, seq, total);
    for (i = 0; i < n_messages; i++) {
        fw_field(&w, ES_TAG_ROLE, (const uint8_t *)messages[i].role, strlen(messages[i].role));
        fw_field(&w, ES_TAG_CONTENT, (const uint8_t *)messages[i].content, strlen(messages[i].content));
    }
    fw_sampling(&w, sampling);
    return fw_end(&w, out_len);
}

/* REGISTER: CONSTRAINT (the id) then n fields of one kind (n > 1 only for CHOICE). */
static int build_register(uint16_t seq, uint8_t id, uint8_t tag, const char *const *values, size_t n, uint8_t *out,
                          size_t cap, size_t *out_len) {
    frame_writer w;
    size_t total = FIELD_HEADER + 4u, i;
    if (values == NULL || n == 0 || out == NULL || out_len == NULL || seq == 0 || id == 0) {
        return ES_E_ARG;
    }
    for (i = 0; i < n; i++) {
        if (values[i] == NULL) {
            return ES_E_ARG;
        }
        total += FIELD_HEADER + strlen(values[i]);
        if (total > ES_MAX_PAYLOAD) {
            return ES_E_TOO_LARGE;
        }
    }
    fw_begin(&w, out, cap, ES_REGISTER, seq, total);
    fw_field_u32(&w, ES_TAG_CONSTRAINT, id);
    for (i = 0; i < n; i++) {
        fw_field(&w, tag, (const uint8_t *)values[i], strlen(values[i]));
    }
    return fw_end(&w, out_len);
}

int es_build_register_schema(uint16_t seq, uint8_t id, const char *schema_json, uint8_t *out, size_t cap, size_t *out_len) {
    return build_register(seq, id, ES_TAG_JSON_SCHEMA, schema_json != NULL ? &schema_json : NULL, 1, out, cap, out_len);
}

int es_build_register_choices(uint16_t seq, uint8_t id, const char *const *choices, size_t n_choices, uint8_t *out,
                              size_t cap, size_t *out_len) {
    return build_register(seq, id, ES_TAG_CHOICE, choices, n_choices, out, cap, out_len);
}

int es_build_register_regex(uint16_t seq, uint8_t id, const char *regex, uint8_t *out, size_t cap, size_t *out_len) {
    return build_register(seq, id, ES_TAG_REGEX, regex != NULL ? &regex : NULL, 1, out, cap, out_len);
}

int es_build_register_grammar(uint16_t seq, uint8_t id, const char *grammar, uint8_t *out, size_t cap, size_t *out_len) {
    return build_register(seq, id, ES_TAG_GRAMMAR, grammar != NULL ? &grammar : NULL, 1, out, cap, out_len);
}

int es_build_unregister(uint16_t seq, uint8_t id, uint8_t *out, size_t cap, size_t *out_len) {
    frame_writer w;
    if (out == NULL || out_len == NULL || seq == 0) {
        return ES_E_ARG;
    }
    fw_begin(&w, out, cap, ES_UNREGISTER, seq, id != 0 ? FIELD_HEADER + 4u : 0u);
    if (id != 0) {
        fw_field_u32(&w, ES_TAG_CONSTRAINT, id);
    }
    return fw_end(&w, out_len);
}

/* ---------------------------------------------------- payload parsers */

static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static float rd_f32(const uint8_t *p) {
    uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

int es_next_field(const uint8_t *payload, size_t len, size_t *pos, uint8_t *tag, const uint8_t **value, uint16_t *value_len) {
    size_t i;
    uint16_t n;
    if ((payload == NULL && len > 0) || pos == NULL || tag == NULL || value == NULL || value_len == NULL) {
        return ES_E_ARG;
    }
    i = *pos;
    if (i >= len) {
        return 0;
    }
    if (len - i < FIELD_HEADER) {
        return ES_E_FIELD;
    }
    n = rd_u16(payload + i + 1);
    if ((size_t)n > len - i - FIELD_HEADER) {
        return ES_E_FIELD;
    }
    *tag = payload[i];
    *value = payload + i + FIELD_HEADER;
    *value_len = n;
    *pos = i + FIELD_HEADER + n;
    return 1;
}

int es_parse_done(const es_frame *frame, es_done *out) {
    size_t pos = 0;
    uint8_t tag;
    const uint8_t *v;
    uint16_t n;
    int r;
    if (frame == NULL || out == NULL || frame->type != ES_DONE) {
        return ES_E_ARG;
    }
    memset(out, 0, sizeof *out);
    while ((r = es_next_field(frame->payload, frame->payload_len, &pos, &tag, &v, &n)) == 1) {
        if (tag == ES_TAG_STOP_REASON || tag == ES_TAG_FINISH_REASON || tag == ES_TAG_CONSTRAINT_STATE) {
            char *dst = tag == ES_TAG_STOP_REASON ? out->stop_reason
                        : tag == ES_TAG_FINISH_REASON ? out->finish_reason : out->constraint;
            size_t keep = n < ES_STOP_REASON_MAX - 1u ? n : ES_STOP_REASON_MAX - 1u;
            memcpy(dst, v, keep);
            dst[keep] = '\0';
            out->present |= tag == ES_TAG_STOP_REASON ? ES_DONE_STOP_REASON
                            : tag == ES_TAG_FINISH_REASON ? ES_DONE_FINISH_REASON : ES_DONE_CONSTRAINT;
            continue;
        }
        if (tag != ES_TAG_PROMPT_TOKENS && tag != ES_TAG_GENERATED_TOKENS && tag != ES_TAG_PREFILL_TOK_S &&
            tag != ES_TAG_DECODE_TOK_S && tag != ES_TAG_CAPPED_MAX_TOKENS) {
            continue; /* unknown to this client: skip */
        }
        if (n != 4) {
            return ES_E_FIELD;
        }
        switch (tag) {
        case ES_TAG_PROMPT_TOKENS: out->prompt_tokens = rd_u32(v); out->present |= ES_DONE_PROMPT_TOKENS; break;
        case ES_TAG_GENERATED_TOKENS: out->generated_tokens = rd_u32(v); out->present |= ES_DONE_GENERATED_TOKENS; break;
        case ES_TAG_PREFILL_TOK_S: out->prefill_tok_s = rd_f32(v); out->present |= ES_DONE_PREFILL_TOK_S; break;
        case ES_TAG_DECODE_TOK_S: out->decode_tok_s = rd_f32(v); out->present |= ES_DONE_DECODE_TOK_S; break;
        default: out->capped_max_tokens = rd_u32(v); out->present |= ES_DONE_CAPPED_MAX_TOKENS; break;
        }
    }
    return r < 0 ? r : ES_OK;
}

int es_done_complete(const es_done *done) {
    return done != NULL && (done->present & ES_DONE_FINISH_REASON) && strcmp(done->finish_reason, "stop") == 0;
}

int es_parse_error(const es_frame *frame, es_error *out) {
    if (frame == NULL || out == NULL || frame->type != ES_ERROR) {
        return ES_E_ARG;
    }
    if (frame->payload_len < 2) {
        return ES_E_FIELD;
    }
    out->seq = frame->seq;
    out->code = rd_u16(frame->payload);
    out->message = (const char *)frame->payload + 2;
    out->message_len = (uint16_t)(frame->payload_len - 2u);
    return ES_OK;
}

int es_parse_info(const es_frame *frame, es_info *out) {
    size_t pos = 0;
    uint8_t tag;
    const uint8_t *v;
    uint16_t n;
    int r;
    if (frame == NULL || out == NULL || frame->type != ES_INFO_REPLY) {
        return ES_E_ARG;
    }
    memset(out, 0, sizeof *out);
    while ((r = es_next_field(frame->payload, frame->payload_len, &pos, &tag, &v, &n)) == 1) {
        switch (tag) {
        case ES_TAG_MODEL: out->model = (const char *)v; out->model_len = n; break;
        case ES_TAG_BACKEND: out->backend = (const char *)v; out->backend_len = n; break;
        case ES_TAG_CONTEXT:
        case ES_TAG_PROTOCOL_VERSION:
        case ES_TAG_MAX_PAYLOAD:
        case ES_TAG_MAX_CONSTRAINTS:
        case ES_TAG_MAX_CONSTRAINT_SIZE:
            if (n != 4) {
                return ES_E_FIELD;
            }
            if (tag == ES_TAG_CONTEXT) out->ctx = rd_u32(v);
            else if (tag == ES_TAG_PROTOCOL_VERSION) out->protocol_version = rd_u32(v);
            else if (tag == ES_TAG_MAX_PAYLOAD) out->max_payload = rd_u32(v);
            else if (tag == ES_TAG_MAX_CONSTRAINTS) out->max_constraints = rd_u32(v);
            else out->max_constraint_size = rd_u32(v);
            break;
        default: break; /* unknown to this client: skip */
        }
    }
    return r < 0 ? r : ES_OK;
}

int es_parse_ack(const es_frame *frame, es_ack *out) {
    size_t pos = 0;
    uint8_t tag;
    const uint8_t *v;
    uint16_t n;
    int r;
    if (frame == NULL || out == NULL || frame->type != ES_ACK) {
        return ES_E_ARG;
    }
    memset(out, 0, sizeof *out);
    while ((r = es_next_field(frame->payload, frame->payload_len, &pos, &tag, &v, &n)) == 1) {
        if (tag != ES_TAG_CONSTRAINT && tag != ES_TAG_CONSTRAINTS_HELD) {
            continue; /* unknown to this client: skip */
        }
        if (n != 4) {
            return ES_E_FIELD;
        }
        if (tag == ES_TAG_CONSTRAINT) out->constraint = rd_u32(v);
        else out->constraints_held = rd_u32(v);
    }
    return r < 0 ? r : ES_OK;
}

/* ----------------------------------------------------------- receiver */

void es_rx_init(es_rx *rx) {
    if (rx != NULL) {
        rx->len = 0;
        rx->overflow = 0;
    }
}

int es_rx_push(es_rx *rx, uint8_t byte, es_frame *out) {
    size_t n, body;
    uint16_t plen;
    if (rx == NULL || out == NULL) {
        return ES_E_ARG;
    }
    if (byte != 0x00) {
        if (rx->overflow) {
            return 0;
        }
        if (rx->len >= sizeof rx->buf) {
            rx->overflow = 1; /* drop the rest of this run, report at its delimiter */
            rx->len = 0;
            return 0;
        }
        rx->buf[rx->len++] = byte;
        return 0;
    }
    if (rx->overflow) {
        rx->overflow = 0;
        return ES_E_TOO_LARGE;
    }
    n = rx->len;
    rx->len = 0;
    if (n == 0) {
        return 0; /* empty frame between two delimiters */
    }
    if (es_cobs_decode(rx->buf, n, rx->buf, sizeof rx->buf, &body) != ES_OK) {
        return ES_E_COBS;
    }
    if (body < ES_HEADER_SIZE + ES_CRC_SIZE) {
        return ES_E_SHORT;
    }
    plen = rd_u16(rx->buf + 4);
    if ((size_t)plen != body - ES_HEADER_SIZE - ES_CRC_SIZE) {
        return ES_E_LENGTH;
    }
    if (plen > ES_MAX_PAYLOAD) {
        return ES_E_TOO_LARGE; /* COBS adds a byte per 254 only: a payload with zeros can pass the buffer's room */
    }
    if (es_crc32(0, rx->buf, body - ES_CRC_SIZE) != rd_u32(rx->buf + body - ES_CRC_SIZE)) {
        return ES_E_CRC;
    }
    out->version = rx->buf[0];
    out->type = rx->buf[1];
    out->seq = rd_u16(rx->buf + 2);
    out->payload_len = plen;
    out->payload = rx->buf + ES_HEADER_SIZE;
    return 1;
}

/* ------------------------------------------------------------- client */

void es_client_init(es_client *c, const es_hal *hal, uint32_t timeout_ms) {
    if (c == NULL || hal == NULL) {
        return;
    }
    c->hal = *hal;
    c->timeout_ms = timeout_ms;
    c->seq = 0;
    c->dropped = 0;
    es_rx_init(&c->rx);
}

static uint16_t next_seq(es_client *c) {
    c->seq = (uint16_t)(c->seq == 0xFFFFu ? 1u : c->seq + 1u); /* 0 is reserved */
    return c->seq;
}

static int send_tx(es_client *c, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (c->hal.write_byte(c->hal.ctx, c->tx[i]) != 0) {
            return ES_E_IO;
        }
    }
    return ES_OK;
}

/* Next frame that answers `seq`; frames of other seqs, requests (our own,
 * heard back on a line that echoes) and chunks that are not frames (a reply
 * cut short, noise: counted in c->dropped) are skipped. An ERROR with seq 0 (the
 * server could not read some frame) counts only while `unattributed` is set:
 * before the first TOKEN it may be about our request, after it the request was
 * clearly received. A build whose ES_MAX_PAYLOAD is below the server's cannot
 * hold every reply: a frame dropped as too large ends the call with
 * ES_E_TOO_LARGE rather than losing part of the reply. */
static int wait_frame(es_client *c, uint16_t seq, es_frame *f, es_error *err, int unattributed) {
    uint32_t start = c->hal.millis(c->hal.ctx);
    for (;;) {
        int b, r;
        if ((uint32_t)(c->hal.millis(c->hal.ctx) - start) >= c->timeout_ms) {
            return ES_E_TIMEOUT;
        }
        b = c->hal.read_byte(c->hal.ctx);
        if (b < 0) {
            continue;
        }
        r = es_rx_push(&c->rx, (uint8_t)b, f);
        if (r < 0) {
            c->dropped++;
            if (r == ES_E_TOO_LARGE && ES_MAX_PAYLOAD < ES_SERVER_MAX_PAYLOAD) {
                return ES_E_TOO_LARGE;
            }
            continue;
        }
        if (r == 0 || (f->type & 0x80u) == 0 || (f->seq != seq && !(unattributed && f->type == ES_ERROR && f->seq == 0))) {
            continue;
        }
        if (f->version != ES_PROTOCOL_VERSION) {
            return ES_E_VERSION;
        }
        if (f->type == ES_ERROR) {
            if (err != NULL && es_parse_error(f, err) != ES_OK) {
                return ES_E_FIELD;
            }
            return ES_E_REMOTE;
        }
        return ES_OK;
    }
}

static int client_ready(const es_client *c) {
    return c != NULL && c->hal.read_byte != NULL && c->hal.write_byte != NULL && c->hal.millis != NULL;
}

int es_client_ping(es_client *c, es_error *err) {
    es_frame f;
    size_t n;
    uint16_t seq;
    int rc;
    if (!client_ready(c)) {
        return ES_E_ARG;
    }
    seq = next_seq(c);
    if ((rc = es_build_ping(seq, NULL, 0, c->tx, sizeof c->tx, &n)) != ES_OK || (rc = send_tx(c, n)) != ES_OK ||
        (rc = wait_frame(c, seq, &f, err, 1)) != ES_OK) {
        return rc;
    }
    return f.type == ES_PONG ? ES_OK : ES_E_UNEXPECTED;
}

int es_client_info(es_client *c, es_info *info, es_error *err) {
    es_frame f;
    size_t n;
    uint16_t seq;
    int rc;
    if (!client_ready(c) || info == NULL) {
        return ES_E_ARG;
    }
    seq = next_seq(c);
    if ((rc = es_build_info(seq, c->tx, sizeof c->tx, &n)) != ES_OK || (rc = send_tx(c, n)) != ES_OK ||
        (rc = wait_frame(c, seq, &f, err, 1)) != ES_OK) {
        return rc;
    }
    return f.type == ES_INFO_REPLY ? es_parse_info(&f, info) : ES_E_UNEXPECTED;
}

static int send_cancel(es_client *c, uint16_t seq) {
    size_t n;
    int rc = es_build_cancel(next_seq(c), seq, c->tx, sizeof c->tx, &n);
    return rc != ES_OK ? rc : send_tx(c, n);
}

/* Reads TOKENs up to the DONE of `seq`; a nonzero on_token sends one CANCEL.
 * A call that ends without the DONE (a timeout, a dropped frame, an ERROR with
 * seq 0) sends a CANCEL too, in case the server is still streaming. */
static int read_stream(es_client *c, uint16_t seq, es_token_fn on_token, void *user, es_done *done, es_error *err) {
    es_frame f;
    int cancelled = 0, started = 0, rc;
    for (;;) {
        if ((rc = wait_frame(c, seq, &f, err, !started)) != ES_OK) {
            const int answered = (rc == ES_E_REMOTE || rc == ES_E_FIELD) && f.seq == seq; /* ERROR for our request */
            if (!answered && rc != ES_E_IO && !cancelled) {
                (void)send_cancel(c, seq);
            }
            return rc;
        }
        if (f.type == ES_DONE) {
            es_done local;
            return es_parse_done(&f, done != NULL ? done : &local);
        }
        if (f.type != ES_TOKEN) {
            return ES_E_UNEXPECTED;
        }
        started = 1;
        if (on_token != NULL && on_token(user, (const char *)f.payload, f.payload_len) != 0 && !cancelled) {
            cancelled = 1;
            if ((rc = send_cancel(c, seq)) != ES_OK) {
                return rc;
            }
        }
    }
}

int es_client_generate(es_client *c, const char *prompt, const es_sampling *sampling, es_token_fn on_token, void *user,
                       es_done *done, es_error *err) {
    size_t n;
    uint16_t seq;
    int rc;
    if (!client_ready(c)) {
        return ES_E_ARG;
    }
    seq = next_seq(c);
    if ((rc = es_build_generate(seq, prompt, sampling, c->tx, sizeof c->tx, &n)) != ES_OK || (rc = send_tx(c, n)) != ES_OK) {
        return rc;
    }
    return read_stream(c, seq, on_token, user, done, err);
}

int es_client_chat(es_client *c, const es_message *messages, size_t n_messages, const es_sampling *sampling,
                   es_token_fn on_token, void *user, es_done *done, es_error *err) {
    size_t n;
    uint16_t seq;
    int rc;
    if (!client_ready(c)) {
        return ES_E_ARG;
    }
    seq = next_seq(c);
    if ((rc = es_build_chat(seq, messages, n_messages, sampling, c->tx, sizeof c->tx, &n)) != ES_OK ||
        (rc = send_tx(c, n)) != ES_OK) {
        return rc;
    }
    return read_stream(c, seq, on_token, user, done, err);
}

/* Sends the request already built in c->tx (n bytes, seq) and waits for its ACK. */
static int await_ack(es_client *c, uint16_t seq, size_t n, es_ack *ack, es_error *err) {
    es_frame f;
    es_ack local;
    int rc;
    if ((rc = send_tx(c, n)) != ES_OK || (rc = wait_frame(c, seq, &f, err, 1)) != ES_OK) {
        return rc;
    }
    return f.type == ES_ACK ? es_parse_ack(&f, ack != NULL ? ack : &local) : ES_E_UNEXPECTED;
}

static int client_register(es_client *c, uint8_t id, uint8_t tag, const char *const *values, size_t n_values, es_ack *ack,
                           es_error *err) {
    size_t n;
    uint16_t seq;
    int rc;
    if (!client_ready(c)) {
        return ES_E_ARG;
    }
    seq = next_seq(c);
    if ((rc = build_register(seq, id, tag, values, n_values, c->tx, sizeof c->tx, &n)) != ES_OK) {
        return rc;
    }
    return await_ack(c, seq, n, ack, err);
}

int es_client_register_schema(es_client *c, uint8_t id, const char *schema_json, es_ack *ack, es_error *err) {
    return client_register(c, id, ES_TAG_JSON_SCHEMA, schema_json != NULL ? &schema_json : NULL, 1, ack, err);
}

int es_client_register_choices(es_client *c, uint8_t id, const char *const *choices, size_t n_choices, es_ack *ack,
                               es_error *err) {
    return client_register(c, id, ES_TAG_CHOICE, choices, n_choices, ack, err);
}

int es_client_register_regex(es_client *c, uint8_t id, const char *regex, es_ack *ack, es_error *err) {
    return client_register(c, id, ES_TAG_REGEX, regex != NULL ? &regex : NULL, 1, ack, err);
}

int es_client_register_grammar(es_client *c, uint8_t id, const char *grammar, es_ack *ack, es_error *err) {
    return client_register(c, id, ES_TAG_GRAMMAR, grammar != NULL ? &grammar : NULL, 1, ack, err);
}

int es_client_unregister(es_client *c, uint8_t id, es_ack *ack, es_error *err) {
    size_t n;
    uint16_t seq;
    int rc;
    if (!client_ready(c)) {
        return ES_E_ARG;
    }
    seq = next_seq(c);
    if ((rc = es_build_unregister(seq, id, c->tx, sizeof c->tx, &n)) != ES_OK) {
        return rc;
    }
    return await_ack(c, seq, n, ack, err);
}
