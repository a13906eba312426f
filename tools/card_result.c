/* card_result: result messages in words (see card_result.h). */
#include <stdio.h>
#include <string.h>

#include "card_cmd.h"
#include "card_result.h"

static const struct {
    const char *code;
    const char *text;
} card_result_codes[] = {
    {"bad-request", "the server refused the request (a malformed message, or an operation "
                    "this listener does not accept)"},
    {"unsupported-card", "this is not a DESFire EV1 card with the top-up application"},
    {"auth-failed", "the card did not authenticate (other keys, or the UID sent is not this "
                    "card's)"},
    {"card-error", "the card answered with an error, or it is held for review by operations"},
    {"integrity", "a MAC or CRC did not verify: the card's answers were altered or corrupted"},
    {"code-invalid", "this code does not exist or was mistyped"},
    {"code-used", "this code was already used"},
    {"limit-exceeded", "the top-up would take the balance over the card's or the system's limit, "
                       "or too many wrong codes or operator tokens came from here; try later"},
    {"card-busy", "another session is using this card right now; try again in a moment"},
    {"timeout", "the card or the connection took too long to answer"},
    {"lost-tag", "the card left the reader before the operation ended"},
    {"overloaded", "the server is overloaded; try again later"},
    {"internal", "the server hit an internal error"},
};

#define CARD_RESULT_NCODES ((int)(sizeof card_result_codes / sizeof card_result_codes[0]))

const char *card_result_explain(const char *code)
{
    for (int i = 0; i < CARD_RESULT_NCODES; i++)
        if (strcmp(card_result_codes[i].code, code) == 0)
            return card_result_codes[i].text;
    return NULL;
}

int card_result_code_count(void)
{
    return CARD_RESULT_NCODES;
}

const char *card_result_code(int i)
{
    return i >= 0 && i < CARD_RESULT_NCODES ? card_result_codes[i].code : NULL;
}

static const char *card_result_str(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Appends s to the string in out, truncating to cap. */
static void card_result_cat(char *out, size_t cap, const char *s)
{
    size_t n = strlen(out);
    if (n + 1 < cap)
        snprintf(out + n, cap - n, "%s", s);
}

static const char *card_result_opname(const char *op)
{
    if (op == NULL)
        return "operation";
    if (strcmp(op, "topup") == 0)
        return "top-up";
    return op;
}

int card_result_format(const json_t *result, char *out, size_t cap)
{
    const char *status = card_result_str(result, "status");
    const char *op = card_result_opname(card_result_str(result, "operation"));
    const char *err = card_result_str(result, "error");
    const char *txn = card_result_str(result, "txn");
    const json_t *bal = json_object_get(result, "balance");
    const json_t *amt = json_object_get(result, "amount");
    char piece[160];

    if (cap == 0)
        return CARD_EXIT_CONN;
    out[0] = '\0';
    if (status == NULL) {
        snprintf(out, cap, "invalid result from the server: no status");
        return CARD_EXIT_CONN;
    }
    if (strcmp(status, "ok") == 0) {
        snprintf(out, cap, "%s ok", op);
        if (json_is_integer(amt)) {
            snprintf(piece, sizeof piece, ": +%lld", (long long)json_integer_value(amt));
            card_result_cat(out, cap, piece);
        }
        if (json_is_integer(bal)) {
            snprintf(piece, sizeof piece, "%sbalance %lld", json_is_integer(amt) ? ", " : ": ",
                     (long long)json_integer_value(bal));
            card_result_cat(out, cap, piece);
        }
        if (txn != NULL) {
            snprintf(piece, sizeof piece, " (txn %s)", txn);
            card_result_cat(out, cap, piece);
        }
        return CARD_EXIT_OK;
    }
    if (strcmp(status, "pending") == 0) {
        snprintf(out, cap,
                 "pending: the %s may or may not have reached the card; present the card "
                 "again to settle it",
                 op);
        if (txn != NULL) {
            snprintf(piece, sizeof piece, " (txn %s)", txn);
            card_result_cat(out, cap, piece);
        }
        if (err != NULL) {
            snprintf(piece, sizeof piece, " [%s]", err);
            card_result_cat(out, cap, piece);
        }
        return CARD_EXIT_PENDING;
    }
    if (strcmp(status, "failed") == 0) {
        const char *why = err != NULL ? card_result_explain(err) : NULL;
        if (err == NULL)
            snprintf(out, cap, "%s failed: no error code given", op);
        else if (why == NULL)
            snprintf(out, cap, "%s failed: %s (an error code this client does not know)", op, err);
        else
            snprintf(out, cap, "%s failed: %s \xe2\x80\x94 %s", op, err, why);
        return CARD_EXIT_FAIL;
    }
    snprintf(out, cap, "invalid result from the server: unknown status '%s'", status);
    return CARD_EXIT_CONN;
}
