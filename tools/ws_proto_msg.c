/* ws_proto_msg: the session's JSON messages, client side (see
 * ws_proto_msg.h).  The gateway's own spelling of command and commands
 * is read without a JSON parser (ota-load's CPU is taken from the server
 * under test, and jansson was most of it); every other spelling goes
 * through jansson with the same checks. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "hex.h"
#include "ota_err.h"
#include "ws_proto_msg.h"

__attribute__((format(printf, 3, 4))) static int wsm_fail(char *why, size_t whylen, const char *fmt,
                                                          ...)
{
    va_list ap;
    if (why != NULL && whylen > 0) {
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return OTA_ERR_PARSE;
}

/* Decodes one APDU into slot i of b. */
static int wsm_add_apdu(struct wsm_batch *b, const char *hex, size_t len, char *why, size_t whylen)
{
    int n = hex_decode(hex, len, b->apdu[b->n], WSM_APDU_MAX);
    if (n < 4)
        return wsm_fail(why, whylen, "APDU %zu of the batch is not hex of 4 to %d bytes", b->n + 1,
                        WSM_APDU_MAX);
    b->len[b->n++] = (size_t)n;
    return 0;
}

static int wsm_is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* {"type":"command","data":"HEX"} or {"type":"commands","data":["HEX",...]}
 * exactly as the gateway writes them.  Returns 1 when it was one of them
 * (m filled, or an error in *err), 0 to fall back to jansson. */
static int wsm_parse_plain(const char *p, size_t n, size_t max_batch, struct wsm_msg *m, int *err,
                           char *why, size_t whylen)
{
    static const char one[] = "{\"type\":\"command\",\"data\":\"";
    static const char many[] = "{\"type\":\"commands\",\"data\":[";
    size_t i;

    *err = 0;
    if (n > sizeof one && memcmp(p, one, sizeof one - 1) == 0) {
        if (p[n - 2] != '"' || p[n - 1] != '}')
            return 0;
        for (i = sizeof one - 1; i < n - 2; i++)
            if (!wsm_is_hex(p[i]))
                return 0;
        m->kind = WSM_CARD;
        m->batch.single = 1;
        *err = wsm_add_apdu(&m->batch, p + sizeof one - 1, n - 2 - (sizeof one - 1), why, whylen);
        return 1;
    }
    if (n <= sizeof many || memcmp(p, many, sizeof many - 1) != 0 || p[n - 2] != ']' ||
        p[n - 1] != '}')
        return 0;
    /* Check the whole shape first: anything unusual goes to jansson. */
    i = sizeof many - 1;
    for (;;) {
        size_t start;
        if (i >= n - 2 || p[i] != '"')
            return 0;
        start = ++i;
        while (i < n - 2 && wsm_is_hex(p[i]))
            i++;
        if (i >= n - 2 || p[i] != '"' || i == start)
            return 0;
        i++;
        if (i == n - 2)
            break;
        if (p[i] != ',')
            return 0;
        i++;
    }
    m->kind = WSM_CARD;
    if (max_batch < WSM_BATCH_MIN) {
        *err = wsm_fail(why, whylen, "commands in a v1 session (no batch was announced)");
        return 1;
    }
    for (i = sizeof many - 1; i < n - 2;) {
        const char *start = p + i + 1, *end = memchr(start, '"', n - 2 - (i + 1));
        if (m->batch.n >= max_batch) {
            *err = wsm_fail(why, whylen, "a batch larger than the %zu APDUs announced", max_batch);
            return 1;
        }
        *err = wsm_add_apdu(&m->batch, start, (size_t)(end - start), why, whylen);
        if (*err != 0)
            return 1;
        i = (size_t)(end - p) + 2; /* past the quote and the comma (or at "]") */
    }
    return 1;
}

static int wsm_parse_json_card(struct wsm_msg *m, const char *type, size_t max_batch, char *why,
                               size_t whylen)
{
    json_t *data = json_object_get(m->json, "data");
    size_t i, count;

    m->kind = WSM_CARD;
    if (strcmp(type, "command") == 0) {
        m->batch.single = 1;
        if (!json_is_string(data))
            return wsm_fail(why, whylen, "a command without a data string");
        return wsm_add_apdu(&m->batch, json_string_value(data), json_string_length(data), why,
                            whylen);
    }
    if (max_batch < WSM_BATCH_MIN)
        return wsm_fail(why, whylen, "commands in a v1 session (no batch was announced)");
    if (!json_is_array(data) || json_array_size(data) == 0)
        return wsm_fail(why, whylen, "commands without a non-empty data array");
    count = json_array_size(data);
    if (count > max_batch)
        return wsm_fail(why, whylen, "a batch of %zu APDUs, larger than the %zu announced", count,
                        max_batch);
    for (i = 0; i < count; i++) {
        json_t *s = json_array_get(data, i);
        int r;
        if (!json_is_string(s))
            return wsm_fail(why, whylen, "APDU %zu of the batch is not a string", i + 1);
        r = wsm_add_apdu(&m->batch, json_string_value(s), json_string_length(s), why, whylen);
        if (r != 0)
            return r;
    }
    return 0;
}

int wsm_parse(const char *text, size_t len, size_t max_batch, struct wsm_msg *m, char *why,
              size_t whylen)
{
    const char *type;
    int err = 0;

    /* Not the whole struct: its APDU slots are 4 KiB, filled as parsed. */
    m->kind = WSM_OTHER;
    m->batch.n = 0;
    m->batch.single = 0;
    m->json = NULL;
    if (max_batch > WSM_BATCH_MAX)
        max_batch = WSM_BATCH_MAX;
    if (wsm_parse_plain(text, len, max_batch, m, &err, why, whylen))
        return err;
    m->json = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    type = json_string_value(json_object_get(m->json, "type"));
    if (!json_is_object(m->json) || type == NULL)
        return wsm_fail(why, whylen, "a message that is not a JSON object with a string type");
    if (strcmp(type, "command") == 0 || strcmp(type, "commands") == 0)
        return wsm_parse_json_card(m, type, max_batch, why, whylen);
    if (strcmp(type, "modal") == 0)
        m->kind = WSM_MODAL;
    else if (strcmp(type, "result") == 0)
        m->kind = WSM_RESULT;
    else
        m->kind = WSM_OTHER;
    return 0;
}

void wsm_msg_clear(struct wsm_msg *m)
{
    json_decref(m->json);
    m->json = NULL;
}

int wsm_answer_goes_on(const uint8_t *answer, size_t len)
{
    return len >= 2 && answer[len - 2] == 0x91 &&
           (answer[len - 1] == 0x00 || answer[len - 1] == 0xAF);
}

void wsm_batch_run(const struct wsm_batch *b, wsm_card_fn card, void *ctx, struct wsm_answers *out)
{
    out->n = 0;
    out->error = NULL;
    for (size_t i = 0; i < b->n; i++) {
        size_t rlen = 0;
        const char *kind = card(ctx, b->apdu[i], b->len[i], out->data[i], WSM_ANSWER_MAX, &rlen);
        if (kind != NULL) {
            out->error = kind;
            return;
        }
        out->len[i] = rlen;
        out->n = i + 1;
        if (!wsm_answer_goes_on(out->data[i], rlen))
            return;
    }
}

/* Appends s (and reports whether it fit). */
static int wsm_put(char *out, size_t cap, size_t *at, const char *s, size_t n)
{
    if (*at + n >= cap)
        return -1;
    memcpy(out + *at, s, n);
    *at += n;
    out[*at] = '\0';
    return 0;
}

static int wsm_put_hex(char *out, size_t cap, size_t *at, const uint8_t *p, size_t n)
{
    if (*at + 2 * n + 2 >= cap)
        return -1;
    out[(*at)++] = '"';
    hex_encode(p, n, out + *at);
    *at += 2 * n;
    out[(*at)++] = '"';
    out[*at] = '\0';
    return 0;
}

#define WSM_PUTS(s) wsm_put(out, cap, &at, (s), strlen(s))

int wsm_encode_answers(const struct wsm_batch *b, const struct wsm_answers *a, char *out,
                       size_t cap)
{
    size_t at = 0;
    int bad = 0;

    if (b->single && a->error != NULL) {
        bad |= WSM_PUTS("{\"type\":\"error\",\"kind\":\"");
        bad |= WSM_PUTS(a->error);
        bad |= WSM_PUTS("\"}");
    } else if (b->single) {
        bad |= WSM_PUTS("{\"type\":\"response\",\"data\":");
        bad |= a->n == 1 ? wsm_put_hex(out, cap, &at, a->data[0], a->len[0]) : -1;
        bad |= WSM_PUTS("}");
    } else {
        bad |= WSM_PUTS("{\"type\":\"responses\",\"data\":[");
        for (size_t i = 0; i < a->n && !bad; i++) {
            if (i > 0)
                bad |= WSM_PUTS(",");
            bad |= wsm_put_hex(out, cap, &at, a->data[i], a->len[i]);
        }
        bad |= WSM_PUTS("]");
        if (a->error != NULL) {
            bad |= WSM_PUTS(",\"error\":\"");
            bad |= WSM_PUTS(a->error);
            bad |= WSM_PUTS("\"");
        }
        bad |= WSM_PUTS("}");
    }
    return bad ? OTA_ERR_LENGTH : (int)at;
}

char *wsm_operation(const char *operation, const char *uid_hex, const char *auth_code,
                    const char *request_id, int batch)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "operation", "operation", operation, "uid",
                  uid_hex, "tech", "IsoDep", "authCode", auth_code != NULL ? auth_code : "");
    char *text;
    if (o == NULL)
        return NULL;
    if (request_id != NULL)
        json_object_set_new(o, "requestId", json_string(request_id));
    if (batch >= WSM_BATCH_MIN)
        json_object_set_new(o, "batch", json_integer(batch));
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    /* jansson keeps its own copy of the code: it goes with the object. */
    json_decref(o);
    return text;
}
