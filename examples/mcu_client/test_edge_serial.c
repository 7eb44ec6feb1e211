/*
 * Host test of edge_serial.c against frames made by the Python reference
 * (test_vectors.h, written by gen_vectors.py). Run: make -C examples/mcu_client test
 */
#include <stdio.h>
#include <string.h>

#include "edge_serial.h"
#include "test_vectors.h"

static int checks = 0;
static int failures = 0;

#define CHECK(cond)                                                        \
    do {                                                                   \
        checks++;                                                          \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            printf("%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                  \
    } while (0)

#define CHECK_BYTES(got, got_len, vec) CHECK((got_len) == sizeof(vec) && memcmp((got), (vec), sizeof(vec)) == 0)

/* ------------------------------------------------ a line made of arrays */

typedef struct {
    uint8_t in[8192]; /* what the "server" sends */
    size_t in_len;
    size_t in_pos;
    uint8_t out[4096]; /* what the client wrote */
    size_t out_len;
    uint32_t now; /* advances 1 ms per clock read */
} fake_line;

static void feed(fake_line *l, const uint8_t *data, size_t n) {
    memcpy(l->in + l->in_len, data, n);
    l->in_len += n;
}

static int line_read(void *ctx) {
    fake_line *l = (fake_line *)ctx;
    return l->in_pos < l->in_len ? l->in[l->in_pos++] : -1;
}

static int line_write(void *ctx, uint8_t b) {
    fake_line *l = (fake_line *)ctx;
    if (l->out_len >= sizeof l->out) {
        return -1;
    }
    l->out[l->out_len++] = b;
    return 0;
}

static uint32_t line_millis(void *ctx) { return ((fake_line *)ctx)->now++; }

static void client_on(es_client *c, fake_line *l) {
    es_hal hal;
    memset(l, 0, sizeof *l);
    hal.read_byte = line_read;
    hal.write_byte = line_write;
    hal.millis = line_millis;
    hal.ctx = l;
    es_client_init(c, &hal, 100);
}

typedef struct {
    char text[256];
    size_t len;
    int calls;
    int cancel_after; /* return nonzero on this call (1-based); 0 never */
} token_sink;

static int on_token(void *user, const char *text, size_t len) {
    token_sink *s = (token_sink *)user;
    memcpy(s->text + s->len, text, len);
    s->len += len;
    s->text[s->len] = '\0';
    s->calls++;
    return s->cancel_after != 0 && s->calls == s->cancel_after;
}

/* The sampling of gen_vectors.FULL_SAMPLING. */
static const char *const full_stop[] = {"\n", "User:"};

static es_sampling full_sampling(void) {
    es_sampling s;
    memset(&s, 0, sizeof s);
    s.present = ES_HAS_MAX_TOKENS | ES_HAS_TEMPERATURE | ES_HAS_TOP_K | ES_HAS_TOP_P | ES_HAS_MIN_P |
                ES_HAS_REPETITION_PENALTY | ES_HAS_SEED;
    s.max_tokens = 32;
    s.temperature = 0.7f;
    s.top_k = 40;
    s.top_p = 0.9f;
    s.min_p = 0.05f;
    s.repetition_penalty = 1.1f;
    s.seed = 42;
    s.stop = full_stop;
    s.n_stop = 2;
    return s;
}

/* The constraints of gen_vectors.py: ACTIONS, ROBOT_SCHEMA, MOVE_REGEX, MOVE_GRAMMAR. */
static const char *const actions[] = {"forward", "back", "left", "right", "stop"};
static const char robot_schema[] =
    "{\"type\":\"object\",\"properties\":{\"action\":{\"enum\":[\"forward\",\"back\",\"left\",\"right\",\"stop\"]},"
    "\"cm\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":500}},\"required\":[\"action\",\"cm\"],\"additionalProperties\":false}";
static const char move_regex[] = "(LEFT|RIGHT) [1-9][0-9]?";
static const char move_grammar[] = "start: \"move \" DIR \" \" NUM\nDIR: \"left\" | \"right\"\nNUM: /[0-9]{1,3}/";

static es_sampling constrained_sampling(void) {
    es_sampling s;
    memset(&s, 0, sizeof s);
    s.present = ES_HAS_MAX_TOKENS | ES_HAS_TEMPERATURE | ES_HAS_CONSTRAINT;
    s.max_tokens = 8;
    s.temperature = 0.0f;
    s.constraint = 1;
    return s;
}

/* ----------------------------------------------------------------- tests */

static void test_crc(void) {
    const uint8_t *d = (const uint8_t *)"123456789";
    uint32_t u;
    float f = 0.7f;
    CHECK(es_crc32(0, d, 9) == VEC_CRC_CHECK);
    CHECK(es_crc32(es_crc32(0, d, 4), d + 4, 5) == VEC_CRC_CHECK);
    CHECK(es_crc32(0, d, 0) == 0);
    memcpy(&u, &f, sizeof u);
    CHECK(u == VEC_F32_0_7);
}

static void test_cobs(void) {
    static const uint8_t raw4[] = {0x11, 0x22, 0x00, 0x33};
    static const uint8_t enc4[] = {0x03, 0x11, 0x22, 0x02, 0x33};
    static const uint8_t raw6[] = {0x11, 0x00, 0x00, 0x00};
    static const uint8_t enc6[] = {0x02, 0x11, 0x01, 0x01, 0x01};
    static const uint8_t bad_long[] = {0x05, 0x11, 0x22};
    static const uint8_t bad_zero[] = {0x03, 0x11, 0x00};
    uint8_t raw[600], enc[620], dec[620];
    size_t n, m, len, i;
    int ok = 1;

    CHECK(es_cobs_encode(raw4, sizeof raw4, enc, sizeof enc, &n) == ES_OK);
    CHECK_BYTES(enc, n, enc4);
    CHECK(es_cobs_encode(raw6, sizeof raw6, enc, sizeof enc, &n) == ES_OK);
    CHECK_BYTES(enc, n, enc6);
    CHECK(es_cobs_encode(raw, 0, enc, sizeof enc, &n) == ES_OK && n == 1 && enc[0] == 0x01);
    /* 254 non-zero bytes: one full group, no trailing 0x01 (canonical form). */
    for (i = 0; i < 254; i++) raw[i] = (uint8_t)(i + 1);
    CHECK(es_cobs_encode(raw, 254, enc, sizeof enc, &n) == ES_OK && n == 255 && enc[0] == 0xFF && enc[254] == 0xFE);
    /* ... but followed by a zero it ends with 0x01 0x01. */
    raw[254] = 0;
    CHECK(es_cobs_encode(raw, 255, enc, sizeof enc, &n) == ES_OK && n == 257 && enc[255] == 0x01 && enc[256] == 0x01);
    CHECK(es_cobs_encode(raw, 255, enc, 256, &n) == ES_E_SPACE);
    CHECK(es_cobs_decode(bad_long, sizeof bad_long, dec, sizeof dec, &n) == ES_E_COBS);
    CHECK(es_cobs_decode(bad_zero, sizeof bad_zero, dec, sizeof dec, &n) == ES_E_COBS);

    /* Round trips at awkward lengths and zero densities, decoding in place. */
    for (len = 0; len <= 600; len += (len < 40 ? 1 : 13)) {
        for (i = 0; i < len; i++) raw[i] = (uint8_t)((i * 7 + len) % 5 == 0 && len % 3 ? 0 : (i * 31 + 1) % 255 + 1);
        if (es_cobs_encode(raw, len, enc, sizeof enc, &n) != ES_OK || n > len + len / 254 + 1) ok = 0;
        if (memchr(enc, 0, n) != NULL) ok = 0;
        if (es_cobs_decode(enc, n, enc, sizeof enc, &m) != ES_OK || m != len || memcmp(enc, raw, len) != 0) ok = 0;
    }
    CHECK(ok);
}

static void test_builders(void) {
    uint8_t out[ES_MAX_WIRE];
    char big[1100];
    size_t n;
    es_sampling s = full_sampling();
    es_sampling chat_s;
    es_message chat[2];
    char prompt[301];

    CHECK(es_build_ping(1, NULL, 0, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_ping_1);
    CHECK(es_build_info(2, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_info_2);
    CHECK(es_build_cancel(2, 1, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_cancel_2_target_1);
    CHECK(es_build_generate(1, "Hello, robot!", &s, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_generate_1);
    CHECK(es_build_generate(5, "Hi", NULL, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_generate_min_5);

    memset(prompt, 'a', 300);
    prompt[300] = '\0';
    memset(&s, 0, sizeof s);
    s.present = ES_HAS_MAX_TOKENS;
    s.max_tokens = 0;
    CHECK(es_build_generate(256, prompt, &s, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_generate_long_256);

    chat[0].role = "system";
    chat[0].content = "Be brief.";
    chat[1].role = "user";
    chat[1].content = "Wave.";
    memset(&chat_s, 0, sizeof chat_s);
    chat_s.present = ES_HAS_MAX_TOKENS | ES_HAS_TEMPERATURE;
    chat_s.max_tokens = 8;
    chat_s.temperature = 0.0f;
    CHECK(es_build_chat(6, chat, 2, &chat_s, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_chat_6);

    /* Refusals. */
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(es_build_generate(1, big, NULL, out, sizeof out, &n) == ES_E_TOO_LARGE);
    big[1021] = '\0'; /* 3 + 1021 = 1024: exactly fits */
    CHECK(es_build_generate(1, big, NULL, out, sizeof out, &n) == ES_OK);
    big[1021] = 'b'; /* 1022 bytes: one over */
    big[1022] = '\0';
    CHECK(es_build_generate(1, big, NULL, out, sizeof out, &n) == ES_E_TOO_LARGE);
    CHECK(es_build_generate(1, "Hi", NULL, out, sizeof vec_generate_min_5 - 1, &n) == ES_E_SPACE);
    CHECK(es_build_generate(1, "Hi", NULL, out, 0, &n) == ES_E_SPACE);
    CHECK(es_build_generate(0, "Hi", NULL, out, sizeof out, &n) == ES_E_ARG);
    CHECK(es_build_generate(1, NULL, NULL, out, sizeof out, &n) == ES_E_ARG);
    CHECK(es_build_cancel(3, 0, out, sizeof out, &n) == ES_E_ARG);
    CHECK(es_build_chat(6, chat, 0, NULL, out, sizeof out, &n) == ES_E_ARG);
}

static void test_constraint_builders(void) {
    uint8_t out[ES_MAX_WIRE];
    char big[1100];
    const char *one[1];
    size_t n;
    es_sampling s = constrained_sampling();

    CHECK(es_build_register_choices(1, 1, actions, 5, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_register_choices_1);
    CHECK(es_build_register_schema(2, 2, robot_schema, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_register_schema_2);
    CHECK(es_build_register_regex(3, 3, move_regex, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_register_regex_3);
    CHECK(es_build_register_grammar(4, 255, move_grammar, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_register_grammar_4);
    CHECK(es_build_unregister(5, 0, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_unregister_all_5);
    CHECK(es_build_unregister(6, 2, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_unregister_2_6);
    CHECK(es_build_generate(2, "Obstacle ahead. Action:", &s, out, sizeof out, &n) == ES_OK);
    CHECK_BYTES(out, n, vec_generate_constrained_2);

    /* Refusals: id 0, no choices, a NULL string, a constraint id out of range, a request over the payload. */
    CHECK(es_build_register_choices(1, 0, actions, 5, out, sizeof out, &n) == ES_E_ARG);
    CHECK(es_build_register_choices(1, 1, actions, 0, out, sizeof out, &n) == ES_E_ARG);
    CHECK(es_build_register_choices(1, 1, NULL, 1, out, sizeof out, &n) == ES_E_ARG);
    one[0] = NULL;
    CHECK(es_build_register_choices(1, 1, one, 1, out, sizeof out, &n) == ES_E_ARG);
    CHECK(es_build_register_regex(1, 1, NULL, out, sizeof out, &n) == ES_E_ARG);
    CHECK(es_build_register_schema(0, 1, robot_schema, out, sizeof out, &n) == ES_E_ARG);
    s.constraint = 0;
    CHECK(es_build_generate(2, "Go", &s, out, sizeof out, &n) == ES_E_ARG);
    s.constraint = 256;
    CHECK(es_build_generate(2, "Go", &s, out, sizeof out, &n) == ES_E_ARG);
    memset(big, 'a', sizeof big - 1);
    big[1014] = '\0'; /* 7 (id) + 3 + 1014 = 1024: exactly fits */
    CHECK(es_build_register_regex(1, 1, big, out, sizeof out, &n) == ES_OK);
    big[1014] = 'a';
    big[1015] = '\0';
    CHECK(es_build_register_regex(1, 1, big, out, sizeof out, &n) == ES_E_TOO_LARGE);
    CHECK(es_build_register_choices(1, 1, actions, 5, out, sizeof vec_register_choices_1 - 1, &n) == ES_E_SPACE);
}

/* Push `data` byte by byte; record frames and drop statuses in order. */
typedef struct {
    es_frame frames[8];
    uint8_t copies[8][ES_MAX_PAYLOAD]; /* payloads, copied out of the receiver */
    int n_frames;
    int status[8];
    int n_status;
} rx_log;

static void push_all(es_rx *rx, const uint8_t *data, size_t n, rx_log *log) {
    size_t i;
    for (i = 0; i < n; i++) {
        es_frame f;
        int r = es_rx_push(rx, data[i], &f);
        if (r == 1 && log->n_frames < 8) {
            memcpy(log->copies[log->n_frames], f.payload, f.payload_len);
            f.payload = log->copies[log->n_frames];
            log->frames[log->n_frames++] = f;
        } else if (r < 0 && log->n_status < 8) {
            log->status[log->n_status++] = r;
        }
    }
}

static void test_receiver(void) {
    static es_rx rx;
    static rx_log log;
    static uint8_t flood[3000];
    es_done done;
    es_error err;
    es_info info;

    es_rx_init(&rx);
    memset(&log, 0, sizeof log);
    push_all(&rx, vec_stream_1, sizeof vec_stream_1, &log);
    CHECK(log.n_frames == 4 && log.n_status == 0);
    CHECK(log.frames[0].type == ES_TOKEN && log.frames[0].seq == 1 && log.frames[0].version == 2);
    CHECK(log.frames[0].payload_len == 5 && memcmp(log.frames[0].payload, "Hello", 5) == 0);
    CHECK(log.frames[1].payload_len == 1 && memcmp(log.frames[1].payload, ",", 1) == 0);
    CHECK(log.frames[2].payload_len == 6 && memcmp(log.frames[2].payload, " world", 6) == 0);
    CHECK(es_parse_done(&log.frames[3], &done) == ES_OK);
    CHECK(done.present == (0x1Fu | ES_DONE_FINISH_REASON) && done.prompt_tokens == 5 && done.generated_tokens == 3);
    CHECK(done.prefill_tok_s == 120.5f && done.decode_tok_s == 33.25f && strcmp(done.stop_reason, "stop") == 0);
    CHECK(strcmp(done.finish_reason, "stop") == 0 && done.constraint[0] == '\0' && es_done_complete(&done));
    CHECK(es_parse_error(&log.frames[3], &err) == ES_E_ARG);

    memset(&log, 0, sizeof log);
    push_all(&rx, vec_done_unknown_tag_1, sizeof vec_done_unknown_tag_1, &log);
    CHECK(log.n_frames == 1 && es_parse_done(&log.frames[0], &done) == ES_OK);
    CHECK(done.present == (ES_DONE_GENERATED_TOKENS | ES_DONE_STOP_REASON) && done.generated_tokens == 7);
    CHECK(strcmp(done.stop_reason, "eos") == 0);
    CHECK(!es_done_complete(&done)); /* no finish_reason: not known to be complete */

    /* A DONE whose request the server capped (max_tokens 0xFFFFFFFF; room for 125 after a 4-token prompt). */
    memset(&log, 0, sizeof log);
    push_all(&rx, vec_done_capped_1, sizeof vec_done_capped_1, &log);
    CHECK(log.n_frames == 1 && es_parse_done(&log.frames[0], &done) == ES_OK);
    CHECK(done.present == (ES_DONE_PROMPT_TOKENS | ES_DONE_GENERATED_TOKENS | ES_DONE_STOP_REASON | ES_DONE_CAPPED_MAX_TOKENS |
                           ES_DONE_FINISH_REASON));
    CHECK(strcmp(done.finish_reason, "length") == 0 && !es_done_complete(&done));
    CHECK(done.prompt_tokens == 4 && done.generated_tokens == 125 && done.capped_max_tokens == 125);
    CHECK(strcmp(done.stop_reason, "context") == 0);
    /* ...and one that was not: the field is absent and its bit clear. */
    memset(&log, 0, sizeof log);
    push_all(&rx, vec_done_cancelled_1, sizeof vec_done_cancelled_1, &log);
    CHECK(log.n_frames == 1 && es_parse_done(&log.frames[0], &done) == ES_OK);
    CHECK((done.present & ES_DONE_CAPPED_MAX_TOKENS) == 0 && done.capped_max_tokens == 0);

    memset(&log, 0, sizeof log);
    push_all(&rx, vec_error_busy_1, sizeof vec_error_busy_1, &log);
    CHECK(log.n_frames == 1 && es_parse_error(&log.frames[0], &err) == ES_OK);
    CHECK(err.seq == 1 && err.code == ES_CODE_BUSY && err.message_len == 28);
    CHECK(memcmp(err.message, "busy: request 3 is streaming", 28) == 0);

    memset(&log, 0, sizeof log);
    push_all(&rx, vec_info_reply_2, sizeof vec_info_reply_2, &log);
    CHECK(log.n_frames == 1 && es_parse_info(&log.frames[0], &info) == ES_OK);
    CHECK(info.model_len == 21 && memcmp(info.model, "SmolLM2-135M-Instruct", 21) == 0);
    CHECK(info.backend_len == 6 && memcmp(info.backend, "native", 6) == 0);
    CHECK(info.ctx == 8192 && info.protocol_version == 2 && info.max_payload == 1024);
    CHECK(info.max_constraints == 16 && info.max_constraint_size == 4096);

    /* Constraint replies: ACKs, a constrained DONE that completed and one that was cut short. */
    {
        es_ack ack;
        memset(&log, 0, sizeof log);
        push_all(&rx, vec_ack_1, sizeof vec_ack_1, &log);
        push_all(&rx, vec_ack_all_5, sizeof vec_ack_all_5, &log);
        push_all(&rx, vec_done_constrained_2, sizeof vec_done_constrained_2, &log);
        push_all(&rx, vec_done_incomplete_2, sizeof vec_done_incomplete_2, &log);
        push_all(&rx, vec_error_bad_constraint_1, sizeof vec_error_bad_constraint_1, &log);
        CHECK(log.n_frames == 5 && log.n_status == 0);
        CHECK(es_parse_ack(&log.frames[0], &ack) == ES_OK && ack.constraint == 1 && ack.constraints_held == 1);
        CHECK(es_parse_ack(&log.frames[1], &ack) == ES_OK && ack.constraint == 0 && ack.constraints_held == 0);
        CHECK(es_parse_ack(&log.frames[2], &ack) == ES_E_ARG);
        CHECK(es_parse_done(&log.frames[2], &done) == ES_OK && es_done_complete(&done));
        CHECK(done.present == (ES_DONE_PROMPT_TOKENS | ES_DONE_GENERATED_TOKENS | ES_DONE_STOP_REASON | ES_DONE_FINISH_REASON |
                               ES_DONE_CONSTRAINT));
        CHECK(strcmp(done.stop_reason, "eos") == 0 && strcmp(done.constraint, "satisfied") == 0 && done.generated_tokens == 2);
        CHECK(es_parse_done(&log.frames[3], &done) == ES_OK && !es_done_complete(&done));
        CHECK(strcmp(done.finish_reason, "length") == 0 && strcmp(done.constraint, "incomplete") == 0);
        CHECK(es_parse_error(&log.frames[4], &err) == ES_OK && err.code == ES_CODE_BAD_CONSTRAINT && err.message_len == 50);
        CHECK(memcmp(err.message, "constraint 1 (choices): choices lists 'left' twice", 50) == 0);
    }

    /* Faults: each dropped with its status; the frames around them survive. */
    memset(&log, 0, sizeof log);
    push_all(&rx, vec_noise, sizeof vec_noise, &log);
    push_all(&rx, vec_token_flipped_1, sizeof vec_token_flipped_1, &log);
    push_all(&rx, vec_done_truncated_1, sizeof vec_done_truncated_1, &log);
    push_all(&rx, vec_short, sizeof vec_short, &log);
    push_all(&rx, vec_pong_v1_1, sizeof vec_pong_v1_1, &log);
    push_all(&rx, vec_pong_1, sizeof vec_pong_1, &log);
    CHECK(log.n_status == 4);
    CHECK(log.status[0] == ES_E_COBS && log.status[1] == ES_E_CRC && log.status[2] == ES_E_LENGTH && log.status[3] == ES_E_SHORT);
    CHECK(log.n_frames == 2 && log.frames[0].version == 1 && log.frames[0].type == ES_PONG);
    CHECK(log.frames[1].version == 2 && log.frames[1].type == ES_PONG && log.frames[1].seq == 1);

    /* A flood with no delimiter is dropped in bounded memory. */
    memset(&log, 0, sizeof log);
    memset(flood, 0x41, sizeof flood);
    push_all(&rx, flood, sizeof flood, &log);
    CHECK(rx.len <= sizeof rx.buf);
    push_all(&rx, vec_pong_1, sizeof vec_pong_1, &log);
    CHECK(log.n_status == 1 && log.status[0] == ES_E_TOO_LARGE);
    CHECK(log.n_frames == 1 && log.frames[0].type == ES_PONG);

    /* A payload of ES_MAX_PAYLOAD + 4 bytes with a zero every 50 encodes in fewer bytes than the
       receiver holds (COBS adds one per 254): it is still refused, by its header's length. */
    {
        static uint8_t body[ES_HEADER_SIZE + ES_MAX_PAYLOAD + 4 + ES_CRC_SIZE], wire[sizeof body + 16];
        const size_t plen = ES_MAX_PAYLOAD + 4, blen = ES_HEADER_SIZE + plen + ES_CRC_SIZE;
        size_t i, n = 0;
        uint32_t crc;
        memset(body, 0x61, sizeof body);
        body[0] = 1;
        body[1] = (uint8_t)ES_TOKEN;
        body[2] = 1;
        body[3] = 0;
        body[4] = (uint8_t)(plen & 0xFFu);
        body[5] = (uint8_t)(plen >> 8);
        for (i = ES_HEADER_SIZE; i < ES_HEADER_SIZE + plen; i += 50) body[i] = 0;
        crc = es_crc32(0, body, blen - ES_CRC_SIZE);
        for (i = 0; i < 4; i++) body[blen - ES_CRC_SIZE + i] = (uint8_t)(crc >> (8 * i));
        wire[0] = 0;
        CHECK(es_cobs_encode(body, blen, wire + 1, sizeof wire - 2, &n) == ES_OK);
        CHECK(n <= sizeof rx.buf); /* it fits the receiver's buffer... */
        wire[n + 1] = 0;
        memset(&log, 0, sizeof log);
        push_all(&rx, wire, n + 2, &log);
        CHECK(log.n_frames == 0 && log.n_status == 1 && log.status[0] == ES_E_TOO_LARGE); /* ...and is refused */
    }
}

static void test_client(void) {
    static es_client c;
    static fake_line line;
    static uint8_t expect[2048];
    es_sampling s = full_sampling();
    token_sink sink;
    es_done done;
    es_error err;
    es_info info;

    /* PING then INFO: seqs 1 and 2. */
    client_on(&c, &line);
    feed(&line, vec_pong_1, sizeof vec_pong_1);
    feed(&line, vec_info_reply_2, sizeof vec_info_reply_2);
    CHECK(es_client_ping(&c, &err) == ES_OK);
    CHECK(es_client_info(&c, &info, &err) == ES_OK && info.ctx == 8192);
    memcpy(expect, vec_ping_1, sizeof vec_ping_1);
    memcpy(expect + sizeof vec_ping_1, vec_info_2, sizeof vec_info_2);
    CHECK(line.out_len == sizeof vec_ping_1 + sizeof vec_info_2 && memcmp(line.out, expect, line.out_len) == 0);

    /* GENERATE through noise and a stale frame of another request. */
    client_on(&c, &line);
    feed(&line, vec_noise, sizeof vec_noise);
    feed(&line, vec_token_stale_9, sizeof vec_token_stale_9);
    feed(&line, vec_stream_1, sizeof vec_stream_1);
    memset(&sink, 0, sizeof sink);
    CHECK(es_client_generate(&c, "Hello, robot!", &s, on_token, &sink, &done, &err) == ES_OK);
    CHECK_BYTES(line.out, line.out_len, vec_generate_1);
    CHECK(strcmp(sink.text, "Hello, world") == 0 && sink.calls == 3);
    CHECK(done.generated_tokens == 3 && strcmp(done.stop_reason, "stop") == 0);
    CHECK(c.dropped == 1);

    /* Cancel from the token callback: GENERATE then CANCEL go out, DONE ends it. */
    client_on(&c, &line);
    feed(&line, vec_token_a_1, sizeof vec_token_a_1);
    feed(&line, vec_done_cancelled_1, sizeof vec_done_cancelled_1);
    memset(&sink, 0, sizeof sink);
    sink.cancel_after = 1;
    CHECK(es_client_generate(&c, "Hello, robot!", &s, on_token, &sink, &done, &err) == ES_OK);
    memcpy(expect, vec_generate_1, sizeof vec_generate_1);
    memcpy(expect + sizeof vec_generate_1, vec_cancel_2_target_1, sizeof vec_cancel_2_target_1);
    CHECK(line.out_len == sizeof vec_generate_1 + sizeof vec_cancel_2_target_1 && memcmp(line.out, expect, line.out_len) == 0);
    CHECK(strcmp(sink.text, "a") == 0 && done.generated_tokens == 1 && strcmp(done.stop_reason, "cancelled") == 0);

    /* The server says busy. */
    client_on(&c, &line);
    feed(&line, vec_error_busy_1, sizeof vec_error_busy_1);
    CHECK(es_client_generate(&c, "Hello, robot!", &s, NULL, NULL, &done, &err) == ES_E_REMOTE);
    CHECK(err.code == ES_CODE_BUSY && err.seq == 1);

    /* An unattributed ERROR before any token fails the call; after one it is skipped. */
    client_on(&c, &line);
    feed(&line, vec_error_bad_crc_0, sizeof vec_error_bad_crc_0);
    CHECK(es_client_generate(&c, "Hello, robot!", &s, NULL, NULL, &done, &err) == ES_E_REMOTE);
    CHECK(err.code == ES_CODE_BAD_CRC && err.seq == 0 && err.message_len == 15);
    /* the request may have arrived after all: the client cancels it to be safe */
    memcpy(expect, vec_generate_1, sizeof vec_generate_1);
    memcpy(expect + sizeof vec_generate_1, vec_cancel_2_target_1, sizeof vec_cancel_2_target_1);
    CHECK(line.out_len == sizeof vec_generate_1 + sizeof vec_cancel_2_target_1 && memcmp(line.out, expect, line.out_len) == 0);
    /* likewise a stream that goes silent */
    client_on(&c, &line);
    feed(&line, vec_token_a_1, sizeof vec_token_a_1);
    memset(&sink, 0, sizeof sink);
    CHECK(es_client_generate(&c, "Hello, robot!", &s, on_token, &sink, &done, &err) == ES_E_TIMEOUT);
    CHECK(strcmp(sink.text, "a") == 0);
    CHECK(line.out_len == sizeof vec_generate_1 + sizeof vec_cancel_2_target_1 && memcmp(line.out, expect, line.out_len) == 0);
    /* an ERROR for the request itself ended it on the server: no CANCEL */
    client_on(&c, &line);
    feed(&line, vec_error_busy_1, sizeof vec_error_busy_1);
    CHECK(es_client_generate(&c, "Hello, robot!", &s, NULL, NULL, &done, &err) == ES_E_REMOTE);
    CHECK_BYTES(line.out, line.out_len, vec_generate_1);
    client_on(&c, &line);
    feed(&line, vec_token_a_1, sizeof vec_token_a_1);
    feed(&line, vec_error_bad_crc_0, sizeof vec_error_bad_crc_0);
    feed(&line, vec_done_cancelled_1, sizeof vec_done_cancelled_1);
    memset(&sink, 0, sizeof sink);
    CHECK(es_client_generate(&c, "Hello, robot!", &s, on_token, &sink, &done, &err) == ES_OK);
    CHECK(strcmp(sink.text, "a") == 0 && done.generated_tokens == 1);

    /* A reply cut short (the server's write timed out in it), then the whole reply: the cut chunk,
       ended by the next frame's leading 0x00, is skipped and counted; the call takes the reply. */
    client_on(&c, &line);
    feed(&line, vec_pong_cut_1, sizeof vec_pong_cut_1);
    feed(&line, vec_pong_1, sizeof vec_pong_1);
    CHECK(es_client_ping(&c, &err) == ES_OK && c.dropped == 1);
    client_on(&c, &line);
    feed(&line, vec_token_a_1, sizeof vec_token_a_1);
    feed(&line, vec_token_cut_1, sizeof vec_token_cut_1);
    feed(&line, vec_stream_1, sizeof vec_stream_1);
    memset(&sink, 0, sizeof sink);
    CHECK(es_client_generate(&c, "Hello, robot!", &s, on_token, &sink, &done, &err) == ES_OK);
    CHECK(strcmp(sink.text, "aHello, world") == 0 && sink.calls == 4 && c.dropped == 1);
    CHECK(done.generated_tokens == 3 && strcmp(done.stop_reason, "stop") == 0);
    CHECK_BYTES(line.out, line.out_len, vec_generate_1); /* no CANCEL: the stream ended with its DONE */
    /* A reply that never comes after its cut start still times out (the chunk waits for a delimiter). */
    client_on(&c, &line);
    feed(&line, vec_pong_cut_1, sizeof vec_pong_cut_1);
    CHECK(es_client_ping(&c, &err) == ES_E_TIMEOUT && c.dropped == 0);
    CHECK(line.now >= 100 && line.now <= 110);

    /* Silence: a timeout after timeout_ms clock ticks. */
    client_on(&c, &line);
    CHECK(es_client_ping(&c, &err) == ES_E_TIMEOUT);
    CHECK(line.now >= 100 && line.now <= 110);

    /* A line that echoes: our own PING comes back before the PONG and is not taken for the reply. */
    client_on(&c, &line);
    feed(&line, vec_ping_1, sizeof vec_ping_1);
    feed(&line, vec_pong_1, sizeof vec_pong_1);
    CHECK(es_client_ping(&c, &err) == ES_OK);

    /* A reply in another protocol version (a server of version 1). */
    client_on(&c, &line);
    feed(&line, vec_pong_v1_1, sizeof vec_pong_v1_1);
    CHECK(es_client_ping(&c, &err) == ES_E_VERSION);

    /* seq wraps from 65535 to 1, never 0. */
    client_on(&c, &line);
    c.seq = 0xFFFF;
    feed(&line, vec_pong_1, sizeof vec_pong_1);
    CHECK(es_client_ping(&c, &err) == ES_OK && c.seq == 1);
}

/* A board at boot: register its actions, then every GENERATE names them. */
static void test_client_constraints(void) {
    static es_client c;
    static fake_line line;
    static uint8_t expect[1024];
    es_sampling s = constrained_sampling();
    token_sink sink;
    es_done done;
    es_error err;
    es_ack ack;
    size_t n = 0;

    client_on(&c, &line);
    feed(&line, vec_ack_1, sizeof vec_ack_1);
    feed(&line, vec_token_stale_9, sizeof vec_token_stale_9); /* noise between the replies is skipped */
    feed(&line, vec_noise, sizeof vec_noise);
    feed(&line, vec_token_forward_2, sizeof vec_token_forward_2);
    feed(&line, vec_done_constrained_2, sizeof vec_done_constrained_2);
    CHECK(es_client_register_choices(&c, 1, actions, 5, &ack, &err) == ES_OK);
    CHECK(ack.constraint == 1 && ack.constraints_held == 1);
    memset(&sink, 0, sizeof sink);
    CHECK(es_client_generate(&c, "Obstacle ahead. Action:", &s, on_token, &sink, &done, &err) == ES_OK);
    CHECK(strcmp(sink.text, "forward") == 0 && es_done_complete(&done) && strcmp(done.constraint, "satisfied") == 0);
    memcpy(expect, vec_register_choices_1, sizeof vec_register_choices_1);
    n = sizeof vec_register_choices_1;
    memcpy(expect + n, vec_generate_constrained_2, sizeof vec_generate_constrained_2);
    n += sizeof vec_generate_constrained_2;
    CHECK(line.out_len == n && memcmp(line.out, expect, n) == 0);
    CHECK(c.dropped == 1);

    /* A reply cut short by max_tokens: the call succeeds, and the DONE says it is not an answer. */
    client_on(&c, &line);
    c.seq = 1;
    feed(&line, vec_token_forward_2, sizeof vec_token_forward_2);
    feed(&line, vec_done_incomplete_2, sizeof vec_done_incomplete_2);
    CHECK(es_client_generate(&c, "Obstacle ahead. Action:", &s, NULL, NULL, &done, &err) == ES_OK);
    CHECK(!es_done_complete(&done) && strcmp(done.constraint, "incomplete") == 0);

    /* The server refuses a registration, or does not know the id (it restarted): ES_E_REMOTE with the code. */
    client_on(&c, &line);
    feed(&line, vec_error_bad_constraint_1, sizeof vec_error_bad_constraint_1);
    CHECK(es_client_register_choices(&c, 1, actions, 5, &ack, &err) == ES_E_REMOTE);
    CHECK(err.code == ES_CODE_BAD_CONSTRAINT && err.seq == 1);
    client_on(&c, &line);
    c.seq = 1;
    feed(&line, vec_error_unknown_constraint_2, sizeof vec_error_unknown_constraint_2);
    CHECK(es_client_generate(&c, "Obstacle ahead. Action:", &s, NULL, NULL, &done, &err) == ES_E_REMOTE);
    CHECK(err.code == ES_CODE_UNKNOWN_CONSTRAINT && err.seq == 2);
    CHECK_BYTES(line.out, line.out_len, vec_generate_constrained_2); /* the ERROR ended it: no CANCEL */

    /* The other kinds and UNREGISTER: exact requests, each answered by its ACK. */
    client_on(&c, &line);
    c.seq = 1;
    CHECK(es_client_register_schema(&c, 2, robot_schema, &ack, &err) == ES_E_TIMEOUT); /* no reply on the line */
    CHECK_BYTES(line.out, line.out_len, vec_register_schema_2);
    client_on(&c, &line);
    c.seq = 4;
    feed(&line, vec_ack_all_5, sizeof vec_ack_all_5);
    CHECK(es_client_unregister(&c, 0, &ack, &err) == ES_OK && ack.constraints_held == 0 && ack.constraint == 0);
    CHECK_BYTES(line.out, line.out_len, vec_unregister_all_5);
    client_on(&c, &line);
    feed(&line, vec_pong_1, sizeof vec_pong_1); /* a reply of the wrong type for a REGISTER */
    CHECK(es_client_register_regex(&c, 3, move_regex, NULL, &err) == ES_E_UNEXPECTED);
    client_on(&c, &line);
    CHECK(es_client_register_grammar(&c, 0, move_grammar, NULL, &err) == ES_E_ARG && line.out_len == 0);
}

int main(void) {
    test_crc();
    test_cobs();
    test_builders();
    test_constraint_builders();
    test_receiver();
    test_client();
    test_client_constraints();
    if (failures != 0) {
        printf("%d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("all checks passed (%d checks)\n", checks);
    return 0;
}
