/* climsg: JSON client messages; see climsg.h.  Input is bounded before
 * jansson sees it (size, nesting depth), duplicate keys are refused, every
 * required member is type-checked, hex is strict.  This file must never
 * keep or log an authCode, and never accept a message it cannot bound. */
#include "climsg.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "hex.h"
#include "ota_err.h"

static int fail(const char **why, const char *text, int err)
{
    *why = text;
    return err;
}

/* Maximum nesting of [ and { outside strings; stops counting past limit. */
static int depth_ok(const uint8_t *p, size_t n)
{
    int depth = 0, in_str = 0, esc = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > CM_MAX_DEPTH)
                return 0;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 1;
}

static const char *get_string(json_t *o, const char *key, size_t *len, int *present)
{
    json_t *v = json_object_get(o, key);
    *present = v != NULL;
    if (!v || !json_is_string(v))
        return NULL;
    *len = json_string_length(v);
    return json_string_value(v);
}

static int parse_operation(json_t *o, struct cm_msg *m, const char **why)
{
    size_t n = 0;
    int present;
    const char *s = get_string(o, "operation", &n, &present);
    if (!s)
        return fail(why, "operation: missing or not a string", OTA_ERR_PARSE);
    m->op = strlen(s) == n ? wire_op_parse(s) : 0;
    if (!m->op)
        return fail(why, "operation: not check, topup or personalize", OTA_ERR_PARSE);

    s = get_string(o, "uid", &n, &present);
    if (!s)
        return fail(why, "uid: missing or not a string", OTA_ERR_PARSE);
    if (n != 8 && n != 14)
        return fail(why, "uid: must be 4 or 7 bytes of hex", OTA_ERR_PARSE);
    int got = hex_decode(s, n, m->uid, sizeof m->uid);
    if (got < 0)
        return fail(why, "uid: not hex", OTA_ERR_PARSE);
    m->uid_len = (uint8_t)got;

    s = get_string(o, "tech", &n, &present);
    if (!s)
        return fail(why, "tech: missing or not a string", OTA_ERR_PARSE);
    m->tech_ok = n == 6 && strcmp(s, "IsoDep") == 0;

    s = get_string(o, "authCode", &n, &present);
    if (present && !s)
        return fail(why, "authCode: not a string", OTA_ERR_PARSE);
    if (!present && m->op != WIRE_OP_CHECK)
        return fail(why, "authCode: missing", OTA_ERR_PARSE);
    if (s) {
        if (n > WIRE_MAX_AUTHCODE)
            return fail(why, "authCode: too long", OTA_ERR_LENGTH);
        if (memchr(s, 0, n))
            return fail(why, "authCode: NUL character", OTA_ERR_PARSE);
        memcpy(m->authcode, s, n);
        m->authcode[n] = '\0';
        m->authcode_len = (uint16_t)n;
    }

    m->batch = 1;
    json_t *batch = json_object_get(o, "batch");
    if (batch) {
        json_int_t b = json_is_integer(batch) ? json_integer_value(batch) : 0;
        if (b < 1 || b > WIRE_MAX_BATCH)
            return fail(
                why, "batch: must be an integer from 2 to 16 (1 or absent: one command at a time)",
                OTA_ERR_PARSE);
        m->batch = (uint8_t)b;
    }

    json_t *rid = json_object_get(o, "requestId");
    if (rid) {
        if (json_is_string(rid)) {
            if (json_string_length(rid) > CM_MAX_REQUEST_ID)
                return fail(why, "requestId: too long", OTA_ERR_LENGTH);
        } else if (!json_is_number(rid)) {
            return fail(why, "requestId: not a string or number", OTA_ERR_PARSE);
        }
        m->request_id = json_incref(rid);
    }
    return 0;
}

static int parse_response(json_t *o, struct cm_msg *m, const char **why)
{
    size_t n = 0;
    int present;
    const char *s = get_string(o, "data", &n, &present);
    if (!s)
        return fail(why, "data: missing or not a string", OTA_ERR_PARSE);
    if (n > 2 * WIRE_MAX_APDU)
        return fail(why, "data: longer than an APDU answer", OTA_ERR_LENGTH);
    int got = hex_decode(s, n, m->data, sizeof m->data);
    if (got < 0)
        return fail(why, "data: not hex (odd length or bad digit)", OTA_ERR_PARSE);
    m->data_len = (uint16_t)got;
    return 0;
}

static uint8_t err_kind_parse(const char *s)
{
    if (strcmp(s, "lost-tag") == 0)
        return WIRE_CERR_LOST_TAG;
    if (strcmp(s, "io") == 0)
        return WIRE_CERR_IO;
    if (strcmp(s, "timeout") == 0)
        return WIRE_CERR_TIMEOUT;
    return 0;
}

/* {"type":"responses","data":[hex,...], "error": kind (optional)}: how
 * many answers the batch allows is the session's to check. */
static int parse_responses(json_t *o, struct cm_msg *m, const char **why)
{
    json_t *data = json_object_get(o, "data");
    if (!data || !json_is_array(data))
        return fail(why, "data: missing or not an array", OTA_ERR_PARSE);
    if (json_array_size(data) > WIRE_MAX_BATCH)
        return fail(why, "data: more than 16 answers", OTA_ERR_LENGTH);
    for (size_t i = 0; i < json_array_size(data); i++) {
        json_t *v = json_array_get(data, i);
        if (!json_is_string(v))
            return fail(why, "data: an answer is not a string", OTA_ERR_PARSE);
        size_t n = json_string_length(v);
        if (n > 2 * WIRE_MAX_APDU)
            return fail(why, "data: an answer longer than an APDU answer", OTA_ERR_LENGTH);
        struct wire_bytes *a = &m->answers[m->n_answers];
        int got = hex_decode(json_string_value(v), n, a->data, sizeof a->data);
        if (got < 0)
            return fail(why, "data: an answer is not hex (odd length or bad digit)", OTA_ERR_PARSE);
        a->len = (uint16_t)got;
        m->n_answers++;
    }
    size_t n = 0;
    int present;
    const char *s = get_string(o, "error", &n, &present);
    if (present && !s)
        return fail(why, "error: not a string", OTA_ERR_PARSE);
    if (s && !(m->err_kind = err_kind_parse(s)))
        return fail(why, "error: not lost-tag, io or timeout", OTA_ERR_PARSE);
    if (m->n_answers == 0 && !m->err_kind)
        return fail(why, "responses: no answer and no error", OTA_ERR_PARSE);
    return 0;
}

static int parse_error(json_t *o, struct cm_msg *m, const char **why)
{
    size_t n = 0;
    int present;
    const char *s = get_string(o, "kind", &n, &present);
    if (!s)
        return fail(why, "kind: missing or not a string", OTA_ERR_PARSE);
    if (!(m->err_kind = err_kind_parse(s)))
        return fail(why, "kind: not lost-tag, io or timeout", OTA_ERR_PARSE);
    json_t *msg = json_object_get(o, "message");
    if (msg && !json_is_string(msg))
        return fail(why, "message: not a string", OTA_ERR_PARSE);
    return 0;
}

static void (*json_release)(void *) = free;

/* jansson allocates with malloc (set below), so the block's usable size
 * is known here without a header of our own, and what json_dumps returns
 * may still be freed with free(). */
static void wiping_free(void *p)
{
    if (!p)
        return;
    sodium_memzero(p, malloc_usable_size(p));
    json_release(p);
}

void cm_json_wipe_on_free(void (*release)(void *))
{
    json_release = release ? release : free;
    json_set_alloc_funcs(malloc, wiping_free);
}

/* jansson keeps the authCode in its own string; wipe it before the
 * object is freed (also when cm_json_wipe_on_free was not called). */
static void wipe_authcode(json_t *o)
{
    json_t *v = json_object_get(o, "authCode");
    if (v && json_is_string(v))
        sodium_memzero((void *)json_string_value(v), json_string_length(v));
}

int cm_parse(const uint8_t *text, size_t len, struct cm_msg *m, const char **why)
{
    memset(m, 0, sizeof *m);
    if (len > CM_MAX_INPUT)
        return fail(why, "message too large", OTA_ERR_LENGTH);
    if (!depth_ok(text, len))
        return fail(why, "message nested too deeply", OTA_ERR_PARSE);
    json_error_t e;
    json_t *o = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &e);
    sodium_memzero(&e, sizeof e); /* its text may quote the input */
    if (!o)
        return fail(why, "not valid JSON (or a duplicate key)", OTA_ERR_PARSE);
    int rc;
    size_t n = 0;
    int present;
    const char *type = json_is_object(o) ? get_string(o, "type", &n, &present) : NULL;
    if (!json_is_object(o)) {
        rc = fail(why, "message is not a JSON object", OTA_ERR_PARSE);
    } else if (!type) {
        rc = fail(why, "type: missing or not a string", OTA_ERR_PARSE);
    } else if (strcmp(type, "operation") == 0) {
        m->type = CM_OPERATION;
        rc = parse_operation(o, m, why);
    } else if (strcmp(type, "response") == 0) {
        m->type = CM_RESPONSE;
        rc = parse_response(o, m, why);
    } else if (strcmp(type, "responses") == 0) {
        m->type = CM_RESPONSES;
        rc = parse_responses(o, m, why);
    } else if (strcmp(type, "error") == 0) {
        m->type = CM_ERROR;
        rc = parse_error(o, m, why);
    } else {
        rc = fail(why, "type: unknown message type", OTA_ERR_PARSE);
    }
    if (json_is_object(o))
        wipe_authcode(o);
    json_decref(o);
    if (rc)
        cm_msg_clear(m);
    return rc;
}

void cm_msg_clear(struct cm_msg *m)
{
    sodium_memzero(m->authcode, sizeof m->authcode);
    m->authcode_len = 0;
    if (m->request_id)
        json_decref(m->request_id);
    m->request_id = NULL;
}

static char *dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* Written by hand, not through jansson: its object, strings and dump
 * cost about ten allocations per exchange, and hex needs no escaping. */
int cm_format_command(const uint8_t *apdu, size_t n, char *out, size_t cap)
{
    static const char head[] = "{\"type\":\"command\",\"data\":\"", tail[] = "\"}";
    size_t len = sizeof head - 1 + 2 * n + sizeof tail - 1;
    if (n > WIRE_MAX_APDU || cap < len + 1)
        return -1;
    memcpy(out, head, sizeof head - 1);
    hex_encode(apdu, n, out + sizeof head - 1); /* writes its NUL, overwritten next */
    memcpy(out + sizeof head - 1 + 2 * n, tail, sizeof tail);
    return (int)len;
}

char *cm_build_command(const uint8_t *apdu, size_t n)
{
    char text[CM_COMMAND_MAX];
    int len = cm_format_command(apdu, n, text, sizeof text);
    return len < 0 ? NULL : strdup(text);
}

char *cm_build_commands(const struct wire_apdus *b)
{
    char hex[2 * WIRE_MAX_APDU + 1];
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    for (size_t i = 0; i < b->n && i < WIRE_MAX_BATCH; i++) {
        if (b->a[i].len > WIRE_MAX_APDU) {
            json_decref(arr);
            return NULL;
        }
        hex_encode(b->a[i].data, b->a[i].len, hex);
        if (json_array_append_new(arr, json_string(hex)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return dump(json_pack("{s:s, s:o}", "type", "commands", "data", arr));
}

char *cm_build_modal(const char *text, size_t n)
{
    json_t *msg = json_stringn(text, n);
    if (!msg)
        return NULL;
    return dump(json_pack("{s:s, s:o}", "type", "modal", "message", msg));
}

void cm_uuid_text(const uint8_t b[16], char out[37])
{
    static const char digits[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = digits[b[i] >> 4];
        out[o++] = digits[b[i] & 15];
    }
    out[o] = '\0';
}

char *cm_build_result(const struct wire_result *r, const json_t *request_id)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = json_object_set_new(o, "type", json_string("result"));
    if (r->op >= WIRE_OP_CHECK && r->op <= WIRE_OP_PERSONALIZE)
        bad |= json_object_set_new(o, "operation", json_string(wire_op_name(r->op)));
    bad |= json_object_set_new(o, "status", json_string(wire_status_name(r->status)));
    if (r->has & WIRE_RES_HAS_BALANCE)
        bad |= json_object_set_new(o, "balance", json_integer(r->balance));
    if (r->has & WIRE_RES_HAS_AMOUNT)
        bad |= json_object_set_new(o, "amount", json_integer(r->amount));
    if (r->has & WIRE_RES_HAS_TXN) {
        char uuid[37];
        cm_uuid_text(r->txn, uuid);
        bad |= json_object_set_new(o, "txn", json_string(uuid));
    }
    if (r->status != WIRE_ST_OK)
        bad |= json_object_set_new(o, "error", json_string(wire_error_name(r->error)));
    if (request_id)
        bad |= json_object_set_new(o, "requestId", json_deep_copy(request_id));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return dump(o);
}
