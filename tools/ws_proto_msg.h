/* ws_proto_msg: the client side of the session's JSON messages
 * (docs/PROTOCOL.md sections 2 and 8), shared by every client in the
 * project: ota-card run, ota-load, ota-card relay and the hostile relay.
 * It parses what a gateway sends (command, commands, modal, result),
 * runs a batch on a card through a callback (in order, stopping after the
 * first answer that ends in neither 91 00 nor 91 AF), and writes the
 * operation and the answers (response, responses, error).  Sans I/O: no
 * sockets, no clocks.  It must never accept a batch larger than the one
 * the client announced, nor a `commands` in a v1 session, and never put
 * an answer in a message that the card did not give. */
#ifndef WS_PROTO_MSG_H
#define WS_PROTO_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define WSM_BATCH_MIN 2
#define WSM_BATCH_MAX 16
#define WSM_APDU_MAX 261   /* short APDU: CLA INS P1 P2 Lc 255 bytes Le */
#define WSM_ANSWER_MAX 258 /* 256 data bytes + SW1 SW2 */
/* Largest text wsm_encode_answers can write: 16 answers of 258 bytes. */
#define WSM_ANSWERS_TEXT_MAX (WSM_BATCH_MAX * (2 * WSM_ANSWER_MAX + 3) + 96)

enum wsm_kind {
    WSM_CARD = 1, /* command or commands: APDUs for the card (batch) */
    WSM_MODAL,    /* json: the message; "message" text for a person */
    WSM_RESULT,   /* json: the result object */
    WSM_OTHER,    /* json: a type nobody defined (ignored, PROTOCOL §2) */
};

/* The APDUs of one `command` (single = 1, n = 1) or `commands`. */
struct wsm_batch {
    size_t n;
    int single; /* came as `command`: answered with `response` / `error` */
    size_t len[WSM_BATCH_MAX];
    uint8_t apdu[WSM_BATCH_MAX][WSM_APDU_MAX];
};

struct wsm_msg {
    enum wsm_kind kind;
    struct wsm_batch batch; /* WSM_CARD */
    json_t *json;           /* other kinds: the object, owned (wsm_msg_clear) */
};

/* Parses one text message from the gateway.  max_batch is what the
 * client announced (0 or 1: a v1 session, where `commands` is an error).
 * Returns 0, or OTA_ERR_PARSE with a reason for a person in why (not
 * JSON, no string type, a command without hex data of at least 4 bytes,
 * commands that are not an array of 1..max_batch such strings). */
int wsm_parse(const char *text, size_t len, size_t max_batch, struct wsm_msg *m, char *why,
              size_t whylen);
void wsm_msg_clear(struct wsm_msg *m);

/* The card's answers to a batch, in order, and why it stopped early. */
struct wsm_answers {
    size_t n;
    const char *error; /* NULL, or "lost-tag" / "io" / "timeout" */
    size_t len[WSM_BATCH_MAX];
    uint8_t data[WSM_BATCH_MAX][WSM_ANSWER_MAX];
};

/* 1 when an answer lets a batch go on: it ends in 91 00 or 91 AF. */
int wsm_answer_goes_on(const uint8_t *answer, size_t len);

/* Runs one APDU on the card: returns NULL with the answer in resp, or
 * the error kind to report ("lost-tag", "io", "timeout"). */
typedef const char *(*wsm_card_fn)(void *ctx, const uint8_t *apdu, size_t len, uint8_t *resp,
                                   size_t cap, size_t *resp_len);

/* Runs the batch's APDUs in order until one answer does not go on, the
 * card fails (out->error), or all ran. */
void wsm_batch_run(const struct wsm_batch *b, wsm_card_fn card, void *ctx, struct wsm_answers *out);

/* Writes the message that answers b: `response` (single, or `error` when
 * the card failed), `responses` (with "error" when it stopped because the
 * card failed).  Returns the length (NUL-terminated) or OTA_ERR_LENGTH. */
int wsm_encode_answers(const struct wsm_batch *b, const struct wsm_answers *a, char *out,
                       size_t cap);

/* The `operation` message; batch 0 or 1 leaves "batch" out (v1).  Returns
 * a malloc'ed string the caller wipes (it holds the code) and frees, or
 * NULL. */
char *wsm_operation(const char *operation, const char *uid_hex, const char *auth_code,
                    const char *request_id, int batch);

#endif
