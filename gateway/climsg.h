/* climsg: the client messages of docs/PROTOCOL.md, in JSON.  Parses and
 * validates what a client sends (operation, response, error, and v2's
 * responses) into a fixed struct, and writes what the gateway sends
 * (command, v2's commands, modal, result).  Pure: no I/O, no state; the session decides what is
 * allowed when (gateway/session.c). */
#ifndef GW_CLIMSG_H
#define GW_CLIMSG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "wire.h"

#define CM_MAX_DEPTH 8        /* nesting of arrays/objects in a message */
#define CM_MAX_REQUEST_ID 128 /* bytes of a string requestId */
#define CM_MAX_INPUT 65536    /* hard bound whatever the configuration */

enum cm_type { CM_OPERATION = 1, CM_RESPONSE, CM_ERROR, CM_RESPONSES };

struct cm_msg {
    enum cm_type type;
    /* operation */
    uint8_t op; /* enum wire_op; 0 if the name is not known */
    uint8_t uid_len;
    uint8_t uid[WIRE_MAX_UID];
    int tech_ok; /* tech was "IsoDep" */
    uint16_t authcode_len;
    char authcode[WIRE_MAX_AUTHCODE + 1];
    json_t *request_id; /* owned; NULL when absent (free with cm_msg_clear) */
    uint8_t batch;      /* "batch": APDUs per message (v2: 2..16); 1 when absent (v1) */
    /* response */
    uint16_t data_len;
    uint8_t data[WIRE_MAX_APDU];
    /* error; responses: optional "error" (0 when absent) */
    uint8_t err_kind; /* enum wire_client_err */
    /* responses (v2): the answers in order */
    uint8_t n_answers;
    struct wire_bytes answers[WIRE_MAX_BATCH];
};

/* Parses one text message.  Returns 0, or OTA_ERR_PARSE / OTA_ERR_LENGTH
 * with *why set to a static description (safe to log and to show).
 * On success the caller owns m->request_id.  The authCode is wiped from
 * every temporary copy before return. */
int cm_parse(const uint8_t *text, size_t len, struct cm_msg *m, const char **why);
/* Wipes the authCode and drops the requestId. */
void cm_msg_clear(struct cm_msg *m);
/* Makes jansson wipe every block it frees (the parser's copy of the
 * message, each string and key: an authCode must not stay in freed
 * memory), then hand it to release (free; a test passes its own).
 * Process-wide; call once before any JSON is parsed. */
void cm_json_wipe_on_free(void (*release)(void *));

/* Builders: return a malloc'd NUL-terminated JSON text (free()), or NULL
 * when out of memory or the text is not valid UTF-8 (modal). */
char *cm_build_command(const uint8_t *apdu, size_t n);
/* The same message written into out (cap at least CM_COMMAND_MAX), with
 * no allocation: the gateway sends one per exchange.  Returns its length,
 * or -1 for an APDU over WIRE_MAX_APDU or a buffer too small. */
#define CM_COMMAND_MAX (sizeof "{\"type\":\"command\",\"data\":\"\"}" + 2 * WIRE_MAX_APDU)
int cm_format_command(const uint8_t *apdu, size_t n, char *out, size_t cap);
/* {"type":"commands","data":[hex,...]} (v2). */
char *cm_build_commands(const struct wire_apdus *b);
char *cm_build_modal(const char *text, size_t n);
/* op 0 = no operation known yet (member left out). */
char *cm_build_result(const struct wire_result *r, const json_t *request_id);

/* Formats 16 bytes as a UUID text (36 characters and NUL). */
void cm_uuid_text(const uint8_t b[16], char out[37]);

#endif
