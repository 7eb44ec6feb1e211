/*
 * edge_serial: microcontroller client of the edge_sdk serial protocol, version 2.
 *
 * Portable C99, no malloc, no stdio: every buffer is fixed in size and lives
 * in a struct the caller owns (an es_client is about 2.1 KB with the default
 * ES_MAX_PAYLOAD of 1024). The board is reached through three callbacks
 * (es_hal): read a byte if one is waiting, write a byte, read a millisecond
 * clock. Specification: docs/serial-protocol.md.
 *
 * Usage (Arduino-style HAL):
 *
 *     static int rd(void *ctx) { (void)ctx; return Serial1.available() ? Serial1.read() : -1; }
 *     static int wr(void *ctx, uint8_t b) { (void)ctx; return Serial1.write(b) == 1 ? 0 : -1; }
 *     static uint32_t ms(void *ctx) { (void)ctx; return millis(); }
 *     static int on_token(void *user, const char *text, size_t len) {
 *         (void)user; Serial.write((const uint8_t *)text, len); return 0;   // nonzero cancels
 *     }
 *
 *     static es_client client;
 *     es_hal hal = { rd, wr, ms, NULL };
 *     es_client_init(&client, &hal, 10000);
 *     es_sampling s = { 0 };
 *     s.present = ES_HAS_MAX_TOKENS | ES_HAS_TEMPERATURE;
 *     s.max_tokens = 32; s.temperature = 0.0f;
 *     es_done done; es_error err;
 *     int rc = es_client_generate(&client, "Which way is the door?", &s, on_token, NULL, &done, &err);
 *
 *     // Declare the actions once at boot; then every reply is one of them.
 *     static const char *const actions[] = { "forward", "back", "left", "right", "stop" };
 *     rc = es_client_register_choices(&client, 1, actions, 5, NULL, &err);
 *     s.present |= ES_HAS_CONSTRAINT; s.constraint = 1;
 *     rc = es_client_generate(&client, "Obstacle ahead. Action:", &s, on_token, NULL, &done, &err);
 *     if (rc == ES_OK && es_done_complete(&done)) { ... act on it ... }
 */
#ifndef EDGE_SERIAL_H
#define EDGE_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ sizes */

#define ES_PROTOCOL_VERSION 2u
/* Largest payload this client accepts. The protocol's limit is 1024; a
 * smaller value saves RAM, and frames with bigger payloads are then dropped
 * (ES_E_TOO_LARGE). Requests this client builds must fit it too. */
#define ES_SERVER_MAX_PAYLOAD 1024u /* the largest payload `edge-sdk serve-serial` sends */
#ifndef ES_MAX_PAYLOAD
#define ES_MAX_PAYLOAD 1024u
#endif
#define ES_HEADER_SIZE 6u
#define ES_CRC_SIZE 4u
#define ES_MAX_BODY (ES_HEADER_SIZE + ES_MAX_PAYLOAD + ES_CRC_SIZE)
#define ES_MAX_ENCODED (ES_MAX_BODY + ES_MAX_BODY / 254u + 1u)
#define ES_MAX_WIRE (ES_MAX_ENCODED + 2u) /* with both 0x00 delimiters */
#define ES_STOP_REASON_MAX 16u            /* bytes kept of DONE's stop_reason, with NUL */

/* ----------------------------------------------------- message types */

#define ES_PING 0x01u
#define ES_INFO 0x02u
#define ES_GENERATE 0x03u
#define ES_CHAT 0x04u
#define ES_CANCEL 0x05u
#define ES_REGISTER 0x06u
#define ES_UNREGISTER 0x07u
#define ES_PONG 0x81u
#define ES_INFO_REPLY 0x82u
#define ES_TOKEN 0x83u
#define ES_DONE 0x84u
#define ES_ERROR 0x85u
#define ES_ACK 0x86u
#define ES_FLAG_MORE 0x40u /* fragments of long requests; this client never sends them */

/* ------------------------------------------------------- field tags */

#define ES_TAG_PROMPT 0x01u
#define ES_TAG_ROLE 0x02u
#define ES_TAG_CONTENT 0x03u
#define ES_TAG_MAX_TOKENS 0x10u
#define ES_TAG_TEMPERATURE 0x11u
#define ES_TAG_TOP_K 0x12u
#define ES_TAG_TOP_P 0x13u
#define ES_TAG_MIN_P 0x14u
#define ES_TAG_REPETITION_PENALTY 0x15u
#define ES_TAG_SEED 0x16u
#define ES_TAG_STOP 0x17u
#define ES_TAG_CONSTRAINT 0x18u
#define ES_TAG_MODEL 0x20u
#define ES_TAG_CONTEXT 0x21u
#define ES_TAG_BACKEND 0x22u
#define ES_TAG_PROTOCOL_VERSION 0x23u
#define ES_TAG_MAX_PAYLOAD 0x24u
#define ES_TAG_MAX_CONSTRAINTS 0x25u
#define ES_TAG_MAX_CONSTRAINT_SIZE 0x26u
#define ES_TAG_PROMPT_TOKENS 0x30u
#define ES_TAG_GENERATED_TOKENS 0x31u
#define ES_TAG_PREFILL_TOK_S 0x32u
#define ES_TAG_DECODE_TOK_S 0x33u
#define ES_TAG_STOP_REASON 0x34u
#define ES_TAG_CAPPED_MAX_TOKENS 0x35u
#define ES_TAG_FINISH_REASON 0x36u
#define ES_TAG_CONSTRAINT_STATE 0x37u
#define ES_TAG_JSON_SCHEMA 0x40u
#define ES_TAG_CHOICE 0x41u
#define ES_TAG_REGEX 0x42u
#define ES_TAG_GRAMMAR 0x43u
#define ES_TAG_CONSTRAINTS_HELD 0x44u

/* ------------------------------------------- ERROR codes from the server */

#define ES_CODE_BAD_FRAME 1u
#define ES_CODE_BAD_LENGTH 2u
#define ES_CODE_BAD_CRC 3u
#define ES_CODE_TOO_LARGE 4u
#define ES_CODE_BAD_VERSION 5u
#define ES_CODE_UNKNOWN_TYPE 6u
#define ES_CODE_BAD_PAYLOAD 7u
#define ES_CODE_BUSY 8u
#define ES_CODE_NOT_RUNNING 9u
#define ES_CODE_MODEL_ERROR 10u
#define ES_CODE_INTERNAL 11u
#define ES_CODE_BAD_SEQ 12u
#define ES_CODE_BAD_CONSTRAINT 13u     /* REGISTER: the server's engine refused the constraint */
#define ES_CODE_UNKNOWN_CONSTRAINT 14u /* no constraint is registered under that id: register it again */
#define ES_CODE_CONSTRAINT_LIMIT 15u   /* REGISTER: too many ids held, or the constraint is too large */
#define ES_CODE_UNSUPPORTED 16u        /* REGISTER: this server cannot apply constraints */

/* ------------------------------------------------ local status codes */

#define ES_OK 0
#define ES_E_ARG (-1)       /* a NULL pointer or an out-of-range argument */
#define ES_E_SPACE (-2)     /* the output buffer is too small */
#define ES_E_COBS (-3)      /* received chunk is not valid COBS */
#define ES_E_SHORT (-4)     /* received frame shorter than header + CRC */
#define ES_E_LENGTH (-5)    /* payload_len disagrees with the frame size */
#define ES_E_CRC (-6)       /* CRC-32 mismatch */
#define ES_E_TOO_LARGE (-7) /* frame or request over ES_MAX_PAYLOAD */
#define ES_E_FIELD (-8)     /* malformed field in a payload */
#define ES_E_VERSION (-9)   /* frame of another protocol version */
#define ES_E_TIMEOUT (-10)  /* no reply within the client's timeout */
#define ES_E_REMOTE (-11)   /* the server answered ERROR; see es_error */
#define ES_E_IO (-12)       /* the HAL's write_byte failed */
#define ES_E_UNEXPECTED (-13) /* a reply of the wrong type for the request */

/* --------------------------------------------------------- building blocks */

/* CRC-32 (IEEE 802.3, zlib's): es_crc32(0, d, n) == zlib.crc32(d); pass the
 * previous result to continue. Bitwise: no table in RAM or flash. */
uint32_t es_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* COBS, canonical form. Encode writes at most len + len / 254 + 1 bytes.
 * Decode may run in place (dst == src). Both return ES_OK or ES_E_SPACE /
 * ES_E_COBS and set *out_len. */
int es_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap, size_t *out_len);
int es_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap, size_t *out_len);

/* One decoded frame; payload points into the receiver's buffer and stays
 * valid until the next es_rx_push. */
typedef struct {
    uint8_t version;
    uint8_t type;
    uint16_t seq;
    uint16_t payload_len;
    const uint8_t *payload;
} es_frame;

/* Next field of a payload at *pos: 1 and the field, 0 at the end, ES_E_FIELD
 * when a field is cut. */
int es_next_field(const uint8_t *payload, size_t len, size_t *pos, uint8_t *tag, const uint8_t **value, uint16_t *value_len);

/* ------------------------------------------------------- requests */

#define ES_HAS_MAX_TOKENS (1u << 0)
#define ES_HAS_TEMPERATURE (1u << 1)
#define ES_HAS_TOP_K (1u << 2)
#define ES_HAS_TOP_P (1u << 3)
#define ES_HAS_MIN_P (1u << 4)
#define ES_HAS_REPETITION_PENALTY (1u << 5)
#define ES_HAS_SEED (1u << 6)
#define ES_HAS_CONSTRAINT (1u << 7)

#define ES_MAX_CONSTRAINT_ID 255u /* constraint ids are 1..255 */

/* Request options; only those whose ES_HAS_* bit is in `present` are sent,
 * the server uses the model's defaults for the rest. Stop strings are sent
 * when n_stop > 0. With ES_HAS_CONSTRAINT the reply is generated under the
 * constraint registered as `constraint` (1..255; es_client_register_*). */
typedef struct {
    uint32_t present;
    uint32_t max_tokens;
    float temperature;
    uint32_t top_k;
    float top_p;
    float min_p;
    float repetition_penalty;
    uint32_t seed;
    const char *const *stop; /* n_stop NUL-terminated strings */
    size_t n_stop;
    uint32_t constraint;
} es_sampling;

typedef struct {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} es_message;

/* Each builder writes one whole frame (both delimiters) into out and sets
 * *out_len; ES_E_TOO_LARGE when the payload would pass ES_MAX_PAYLOAD, ES_E_SPACE
 * when cap is short (ES_MAX_WIRE always suffices). sampling may be NULL. */
int es_build_ping(uint16_t seq, const uint8_t *payload, size_t len, uint8_t *out, size_t cap, size_t *out_len);
int es_build_info(uint16_t seq, uint8_t *out, size_t cap, size_t *out_len);
int es_build_cancel(uint16_t seq, uint16_t target_seq, uint8_t *out, size_t cap, size_t *out_len);
int es_build_generate(uint16_t seq, const char *prompt, const es_sampling *sampling, uint8_t *out, size_t cap, size_t *out_len);
int es_build_chat(uint16_t seq, const es_message *messages, size_t n_messages, const es_sampling *sampling, uint8_t *out,
                  size_t cap, size_t *out_len);
/* REGISTER of constraint `id` (1..255): a JSON Schema as JSON text, a list of
 * choices (n_choices >= 1), a regex or a Lark grammar. The whole request must
 * fit ES_MAX_PAYLOAD: 7 bytes for the id, then 3 + strlen per string.
 * UNREGISTER of `id`, or of every constraint with id 0. */
int es_build_register_schema(uint16_t seq, uint8_t id, const char *schema_json, uint8_t *out, size_t cap, size_t *out_len);
int es_build_register_choices(uint16_t seq, uint8_t id, const char *const *choices, size_t n_choices, uint8_t *out,
                              size_t cap, size_t *out_len);
int es_build_register_regex(uint16_t seq, uint8_t id, const char *regex, uint8_t *out, size_t cap, size_t *out_len);
int es_build_register_grammar(uint16_t seq, uint8_t id, const char *grammar, uint8_t *out, size_t cap, size_t *out_len);
int es_build_unregister(uint16_t seq, uint8_t id, uint8_t *out, size_t cap, size_t *out_len);

/* ------------------------------------------------------- responses */

#define ES_DONE_PROMPT_TOKENS (1u << 0)
#define ES_DONE_GENERATED_TOKENS (1u << 1)
#define ES_DONE_PREFILL_TOK_S (1u << 2)
#define ES_DONE_DECODE_TOK_S (1u << 3)
#define ES_DONE_STOP_REASON (1u << 4)
#define ES_DONE_CAPPED_MAX_TOKENS (1u << 5)
#define ES_DONE_FINISH_REASON (1u << 6)
#define ES_DONE_CONSTRAINT (1u << 7)

typedef struct {
    uint32_t present; /* ES_DONE_* bits of the fields the server sent */
    uint32_t prompt_tokens;
    uint32_t generated_tokens;
    float prefill_tok_s;
    float decode_tok_s;
    char stop_reason[ES_STOP_REASON_MAX]; /* "stop", "length", "cancelled", ...; cut to fit, NUL-terminated */
    uint32_t capped_max_tokens; /* with ES_DONE_CAPPED_MAX_TOKENS: the server lowered the request's max_tokens
                                   to this (the context's room after the prompt, or its own limit) */
    char finish_reason[ES_STOP_REASON_MAX]; /* "stop": the text ended and its constraint is complete; "length":
                                               max_tokens or the context cut it; "cancelled", ... */
    char constraint[ES_STOP_REASON_MAX];    /* with ES_DONE_CONSTRAINT: "satisfied" or "incomplete" */
} es_done;

/* 1 when the reply is complete: finish_reason "stop" (for a constrained
 * request, the constraint was satisfied); 0 for a reply cut short, which is
 * never a valid answer. */
int es_done_complete(const es_done *done);

typedef struct {
    uint16_t seq;        /* request it refers to; 0 when the server could not tell */
    uint16_t code;       /* ES_CODE_* */
    const char *message; /* UTF-8, not NUL-terminated; valid until the next es_rx_push */
    uint16_t message_len;
} es_error;

typedef struct {
    const char *model; /* not NUL-terminated; valid until the next es_rx_push */
    uint16_t model_len;
    const char *backend;
    uint16_t backend_len;
    uint32_t ctx;
    uint32_t protocol_version;
    uint32_t max_payload;
    uint32_t max_constraints;     /* ids a line may hold at once */
    uint32_t max_constraint_size; /* bytes of text one constraint may have */
} es_info;

typedef struct {
    uint32_t constraint;       /* the id registered or dropped; 0 after dropping all */
    uint32_t constraints_held; /* how many the line holds now */
} es_ack;

/* Unknown tags are skipped. ES_E_FIELD on a malformed payload, ES_E_ARG on a frame of another type. */
int es_parse_done(const es_frame *frame, es_done *out);
int es_parse_error(const es_frame *frame, es_error *out);
int es_parse_info(const es_frame *frame, es_info *out);
int es_parse_ack(const es_frame *frame, es_ack *out);

/* ------------------------------------------------------- receiver */

/* Byte-at-a-time frame accumulator; bounded: a run longer than ES_MAX_ENCODED
 * is dropped as it arrives and reported as ES_E_TOO_LARGE at its delimiter. */
typedef struct {
    uint8_t buf[ES_MAX_ENCODED]; /* COBS bytes since the last 0x00, then the decoded frame (in place) */
    size_t len;
    uint8_t overflow;
} es_rx;

void es_rx_init(es_rx *rx);

/* 1: a frame is in *out (CRC checked, any version); 0: need more bytes;
 * < 0: a bad chunk was dropped (ES_E_COBS, ES_E_SHORT, ES_E_LENGTH, ES_E_CRC,
 * ES_E_TOO_LARGE) and the receiver is ready for the next frame. */
int es_rx_push(es_rx *rx, uint8_t byte, es_frame *out);

/* ---------------------------------------------------------- client */

typedef struct {
    int (*read_byte)(void *ctx);             /* next received byte 0..255, or -1 when none is waiting */
    int (*write_byte)(void *ctx, uint8_t b); /* 0 when the byte was written */
    uint32_t (*millis)(void *ctx);           /* a millisecond clock; may wrap */
    void *ctx;
} es_hal;

/* Called for each TOKEN; text is UTF-8 and not NUL-terminated. Return nonzero
 * to cancel: the client sends CANCEL and keeps reading up to the DONE. */
typedef int (*es_token_fn)(void *user, const char *text, size_t len);

typedef struct {
    es_hal hal;
    uint32_t timeout_ms; /* longest wait for each frame of a reply */
    uint16_t seq;        /* seq of the last request sent; the next is seq + 1, never 0 */
    uint32_t dropped;    /* bad chunks received and skipped (a reply cut short, line noise) */
    es_rx rx;
    uint8_t tx[ES_MAX_WIRE];
} es_client;

void es_client_init(es_client *c, const es_hal *hal, uint32_t timeout_ms);

/* Each call sends one request and reads up to its reply, skipping frames of
 * other seqs, and chunks that are not frames (counted in c->dropped: a reply
 * the server's write timeout cut short is followed by the next valid frame,
 * and a reply that never comes ends in ES_E_TIMEOUT). An ERROR with seq 0
 * (some frame was unreadable) ends the call with ES_E_REMOTE until the first
 * TOKEN of a stream arrives, and is skipped after it. Frames that are
 * requests (our own, on a line that echoes) are skipped. A generate or chat
 * that ends without its DONE sends a CANCEL for it.
 * ES_OK, ES_E_TIMEOUT, ES_E_IO, ES_E_REMOTE (err filled, when err is not NULL),
 * ES_E_FIELD (an ERROR whose payload is malformed), ES_E_VERSION,
 * ES_E_UNEXPECTED, ES_E_TOO_LARGE (a reply frame over this build's
 * ES_MAX_PAYLOAD was dropped; only when it is below ES_SERVER_MAX_PAYLOAD), or
 * a builder's status. */
int es_client_ping(es_client *c, es_error *err);
int es_client_info(es_client *c, es_info *info, es_error *err);
int es_client_generate(es_client *c, const char *prompt, const es_sampling *sampling, es_token_fn on_token, void *user,
                       es_done *done, es_error *err);
int es_client_chat(es_client *c, const es_message *messages, size_t n_messages, const es_sampling *sampling,
                   es_token_fn on_token, void *user, es_done *done, es_error *err);
/* REGISTER / UNREGISTER and wait for the ACK (ack may be NULL). A constraint
 * the server refuses is ES_E_REMOTE with err->code ES_CODE_BAD_CONSTRAINT,
 * ES_CODE_CONSTRAINT_LIMIT or ES_CODE_UNSUPPORTED. */
int es_client_register_schema(es_client *c, uint8_t id, const char *schema_json, es_ack *ack, es_error *err);
int es_client_register_choices(es_client *c, uint8_t id, const char *const *choices, size_t n_choices, es_ack *ack,
                               es_error *err);
int es_client_register_regex(es_client *c, uint8_t id, const char *regex, es_ack *ack, es_error *err);
int es_client_register_grammar(es_client *c, uint8_t id, const char *grammar, es_ack *ack, es_error *err);
int es_client_unregister(es_client *c, uint8_t id, es_ack *ack, es_error *err);

#ifdef __cplusplus
}
#endif

#endif /* EDGE_SERIAL_H */
