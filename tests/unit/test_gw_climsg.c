/* Tests for gateway/climsg.c, gateway/utf8.c, gateway/wsmsg.c and
 * gateway/metrics.c: client
 * messages good and bad (nesting, huge strings, wrong types, duplicate
 * keys, odd-length and non-hex data, oversize APDUs), the messages the
 * gateway writes, strict UTF-8, the Prometheus text, and that no block
 * jansson frees still holds an authCode. */
#include <check.h>
#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/climsg.h"
#include "gateway/metrics.h"
#include "gateway/utf8.h"
#include "gateway/wsmsg.h"
#include "ota_err.h"

static int parse(const char *s, struct cm_msg *m, const char **why)
{
    return cm_parse((const uint8_t *)s, strlen(s), m, why);
}

START_TEST(operation_good)
{
    struct cm_msg m;
    const char *why = NULL;
    ck_assert_int_eq(
        parse("{\"type\":\"operation\",\"operation\":\"topup\",\"uid\":\"04A1b2C3d4E5f6\","
              "\"tech\":\"IsoDep\",\"authCode\":\"ABCD-EFGH\",\"requestId\":\"r1\","
              "\"unknown\":{\"x\":[1,2,3]}}",
              &m, &why),
        0);
    ck_assert_int_eq(m.type, CM_OPERATION);
    ck_assert_uint_eq(m.op, WIRE_OP_TOPUP);
    ck_assert_uint_eq(m.uid_len, 7);
    ck_assert_mem_eq(m.uid, "\x04\xa1\xb2\xc3\xd4\xe5\xf6", 7);
    ck_assert_int_eq(m.tech_ok, 1);
    ck_assert_str_eq(m.authcode, "ABCD-EFGH");
    ck_assert_uint_eq(m.authcode_len, 9);
    ck_assert_str_eq(json_string_value(m.request_id), "r1");
    cm_msg_clear(&m);
    ck_assert_ptr_null(m.request_id);
    ck_assert_uint_eq(m.authcode[0], 0);

    ck_assert_int_eq(parse("{\"type\":\"operation\",\"operation\":\"check\",\"uid\":\"01020304\","
                           "\"tech\":\"NfcA\",\"requestId\":42}",
                           &m, &why),
                     0);
    ck_assert_uint_eq(m.uid_len, 4);
    ck_assert_int_eq(m.tech_ok, 0);
    ck_assert_uint_eq(m.authcode_len, 0);
    ck_assert_int_eq(json_integer_value(m.request_id), 42);
    cm_msg_clear(&m);
}
END_TEST

START_TEST(response_and_error_good)
{
    struct cm_msg m;
    const char *why = NULL;
    ck_assert_int_eq(parse("{\"data\":\"00AB9100\",\"type\":\"response\"}", &m, &why), 0);
    ck_assert_int_eq(m.type, CM_RESPONSE);
    ck_assert_uint_eq(m.data_len, 4);
    ck_assert_mem_eq(m.data, "\x00\xab\x91\x00", 4);
    ck_assert_int_eq(
        parse("{\"type\":\"error\",\"kind\":\"lost-tag\",\"message\":\"gone\"}", &m, &why), 0);
    ck_assert_int_eq(m.type, CM_ERROR);
    ck_assert_uint_eq(m.err_kind, WIRE_CERR_LOST_TAG);
    ck_assert_int_eq(parse("{\"type\":\"error\",\"kind\":\"timeout\"}", &m, &why), 0);
    ck_assert_uint_eq(m.err_kind, WIRE_CERR_TIMEOUT);
    ck_assert_int_eq(parse("{\"type\":\"error\",\"kind\":\"io\"}", &m, &why), 0);
    ck_assert_uint_eq(m.err_kind, WIRE_CERR_IO);
}
END_TEST

static const char *const bad_msgs[] = {
    "",
    "null",
    "[]",
    "\"operation\"",
    "{}",
    "{\"type\":1}",
    "{\"type\":\"hello\"}",
    "{\"type\":\"operation\",\"type\":\"operation\"}",
    "{\"type\":\"response\",\"data\":\"9100\",\"data\":\"9100\"}",
    "{\"type\":\"response\",\"data\":\"910\"}",
    "{\"type\":\"response\",\"data\":\"91g0\"}",
    "{\"type\":\"response\",\"data\":\" 9100\"}",
    "{\"type\":\"response\",\"data\":\"0x9100\"}",
    "{\"type\":\"response\",\"data\":9100}",
    "{\"type\":\"response\"}",
    "{\"type\":\"error\",\"kind\":\"lost\"}",
    "{\"type\":\"error\",\"kind\":[]}",
    "{\"type\":\"error\",\"kind\":\"io\",\"message\":5}",
    "{\"type\":\"operation\",\"operation\":\"steal\",\"uid\":\"01020304\",\"tech\":\"IsoDep\"}",
    "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":\"010203\",\"tech\":\"IsoDep\"}",
    "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":\"0102030405\",\"tech\":\"IsoDep\"}",
    "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":\"0102030z\",\"tech\":\"IsoDep\"}",
    "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":16909060,\"tech\":\"IsoDep\"}",
    "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":\"01020304\"}",
    "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":\"01020304\",\"tech\":true}",
    "{\"type\":\"operation\",\"operation\":\"topup\",\"uid\":\"01020304\",\"tech\":\"IsoDep\"}",
    "{\"type\":\"operation\",\"operation\":\"topup\",\"uid\":\"01020304\",\"tech\":\"IsoDep\","
    "\"authCode\":7}",
    "{\"type\":\"operation\",\"operation\":\"topup\",\"uid\":\"01020304\",\"tech\":\"IsoDep\","
    "\"authCode\":\"a\\u0000b\"}",
    "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":\"01020304\",\"tech\":\"IsoDep\","
    "\"requestId\":{}}",
    "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":\"01020304\",\"tech\":\"IsoDep\","
    "\"requestId\":null}",
    "{\"type\":\"operation\",\"operation\":[\"check\"],\"uid\":\"01020304\",\"tech\":\"IsoDep\"}",
    "{\"type\":\"response\",\"data\":\"9100\"} trailing",
    "{\"type\":\"response\",\"data\":\"9100\",}",
};

START_TEST(bad_messages)
{
    struct cm_msg m;
    const char *why = NULL;
    int rc = parse(bad_msgs[_i], &m, &why);
    ck_assert_msg(rc < 0, "accepted: %s", bad_msgs[_i]);
    ck_assert_ptr_nonnull(why);
    ck_assert_ptr_null(m.request_id);
}
END_TEST

START_TEST(v2_batches)
{
    struct cm_msg m;
    const char *why = NULL;
    const char *op = "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":\"04112233445566\","
                     "\"tech\":\"IsoDep\"";
    char buf[512];
    ck_assert_int_eq(parse("{\"type\":\"operation\",\"operation\":\"check\",\"uid\":"
                           "\"04112233445566\",\"tech\":\"IsoDep\"}",
                           &m, &why),
                     0);
    ck_assert_uint_eq(m.batch, 1); /* absent: v1 */
    cm_msg_clear(&m);
    static const char *good[] = {"1", "2", "16"};
    static const int want[] = {1, 2, 16};
    for (int i = 0; i < 3; i++) {
        snprintf(buf, sizeof buf, "%s,\"batch\":%s}", op, good[i]);
        ck_assert_int_eq(parse(buf, &m, &why), 0);
        ck_assert_uint_eq(m.batch, want[i]);
        cm_msg_clear(&m);
    }
    static const char *bad[] = {"0", "17", "-1", "\"4\"", "2.5", "null", "true", "[2]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "%s,\"batch\":%s}", op, bad[i]);
        ck_assert_int_ne(parse(buf, &m, &why), 0);
        ck_assert_ptr_nonnull(strstr(why, "batch"));
    }

    ck_assert_int_eq(
        parse("{\"type\":\"responses\",\"data\":[\"9100\",\"E803000000009100\"]}", &m, &why), 0);
    ck_assert_int_eq(m.type, CM_RESPONSES);
    ck_assert_uint_eq(m.n_answers, 2);
    ck_assert_uint_eq(m.answers[1].len, 8);
    ck_assert_mem_eq(m.answers[1].data, "\xe8\x03\x00\x00\x00\x00\x91\x00", 8);
    ck_assert_uint_eq(m.err_kind, 0);
    cm_msg_clear(&m);
    ck_assert_int_eq(
        parse("{\"type\":\"responses\",\"data\":[\"91AF\"],\"error\":\"lost-tag\"}", &m, &why), 0);
    ck_assert_uint_eq(m.n_answers, 1);
    ck_assert_uint_eq(m.err_kind, WIRE_CERR_LOST_TAG);
    cm_msg_clear(&m);
    ck_assert_int_eq(parse("{\"type\":\"responses\",\"data\":[],\"error\":\"timeout\"}", &m, &why),
                     0);
    ck_assert_uint_eq(m.n_answers, 0);
    ck_assert_uint_eq(m.err_kind, WIRE_CERR_TIMEOUT);
    cm_msg_clear(&m);

    static const char *bad_resp[] = {
        "{\"type\":\"responses\"}",
        "{\"type\":\"responses\",\"data\":\"9100\"}",
        "{\"type\":\"responses\",\"data\":[]}",
        "{\"type\":\"responses\",\"data\":[9100]}",
        "{\"type\":\"responses\",\"data\":[\"910\"]}",
        "{\"type\":\"responses\",\"data\":[\"91zz\"]}",
        "{\"type\":\"responses\",\"data\":[\"9100\"],\"error\":\"cosmic-ray\"}",
        "{\"type\":\"responses\",\"data\":[\"9100\"],\"error\":1}",
        "{\"type\":\"responses\",\"data\":[\"9100\",\"9100\",\"9100\",\"9100\",\"9100\",\"9100\","
        "\"9100\",\"9100\",\"9100\",\"9100\",\"9100\",\"9100\",\"9100\",\"9100\",\"9100\","
        "\"9100\",\"9100\"]}",
    };
    for (size_t i = 0; i < sizeof bad_resp / sizeof bad_resp[0]; i++) {
        why = NULL;
        ck_assert_msg(parse(bad_resp[i], &m, &why) != 0, "accepted: %s", bad_resp[i]);
        ck_assert_ptr_nonnull(why);
    }
    /* An answer longer than an APDU answer. */
    char big[1024];
    int n = snprintf(big, sizeof big, "{\"type\":\"responses\",\"data\":[\"");
    for (int i = 0; i < 301; i++)
        n += snprintf(big + n, sizeof big - (size_t)n, "00");
    snprintf(big + n, sizeof big - (size_t)n, "\"]}");
    ck_assert_int_eq(parse(big, &m, &why), OTA_ERR_LENGTH);

    struct wire_apdus b;
    memset(&b, 0, sizeof b);
    b.n = 2;
    b.a[0].len = 2;
    memcpy(b.a[0].data, "\x90\xAF", 2);
    b.a[1].len = 3;
    memcpy(b.a[1].data, "\x01\x02\xff", 3);
    char *s = cm_build_commands(&b);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "{\"type\":\"commands\",\"data\":[\"90af\",\"0102ff\"]}");
    free(s);
}
END_TEST

START_TEST(deep_nesting)
{
    char buf[512];
    size_t n = 0;
    n += (size_t)snprintf(buf, sizeof buf, "{\"type\":\"response\",\"data\":\"9100\",\"x\":");
    for (int i = 0; i < 9; i++)
        buf[n++] = '[';
    for (int i = 0; i < 9; i++)
        buf[n++] = ']';
    buf[n++] = '}';
    buf[n] = '\0';
    struct cm_msg m;
    const char *why = NULL;
    ck_assert_int_eq(parse(buf, &m, &why), OTA_ERR_PARSE);
    ck_assert_str_eq(why, "message nested too deeply");
    /* Brackets inside strings do not count. */
    ck_assert_int_eq(
        parse("{\"type\":\"error\",\"kind\":\"io\",\"message\":\"[[[[[[[[[[[[[[\"}", &m, &why), 0);
    ck_assert_int_eq(parse("{\"type\":\"error\",\"kind\":\"io\",\"x\":[[[[[[[1]]]]]]]}", &m, &why),
                     0);
}
END_TEST

START_TEST(huge_strings)
{
    struct cm_msg m;
    const char *why = NULL;
    char buf[2048];
    /* An APDU answer over WIRE_MAX_APDU bytes. */
    int n = snprintf(buf, sizeof buf, "{\"type\":\"response\",\"data\":\"");
    for (int i = 0; i < 2 * (WIRE_MAX_APDU + 1); i++)
        buf[n++] = 'a';
    strcpy(buf + n, "\"}");
    ck_assert_int_eq(parse(buf, &m, &why), OTA_ERR_LENGTH);
    /* Exactly WIRE_MAX_APDU is fine. */
    n = snprintf(buf, sizeof buf, "{\"type\":\"response\",\"data\":\"");
    for (int i = 0; i < 2 * WIRE_MAX_APDU; i++)
        buf[n++] = 'a';
    strcpy(buf + n, "\"}");
    ck_assert_int_eq(parse(buf, &m, &why), 0);
    ck_assert_uint_eq(m.data_len, WIRE_MAX_APDU);
    /* An authCode over WIRE_MAX_AUTHCODE. */
    n = snprintf(buf, sizeof buf,
                 "{\"type\":\"operation\",\"operation\":\"topup\",\"uid\":"
                 "\"01020304\",\"tech\":\"IsoDep\",\"authCode\":\"");
    for (int i = 0; i < WIRE_MAX_AUTHCODE + 1; i++)
        buf[n++] = 'C';
    strcpy(buf + n, "\"}");
    ck_assert_int_eq(parse(buf, &m, &why), OTA_ERR_LENGTH);
    /* A requestId over CM_MAX_REQUEST_ID. */
    n = snprintf(buf, sizeof buf,
                 "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":"
                 "\"01020304\",\"tech\":\"IsoDep\",\"requestId\":\"");
    for (int i = 0; i < CM_MAX_REQUEST_ID + 1; i++)
        buf[n++] = 'r';
    strcpy(buf + n, "\"}");
    ck_assert_int_eq(parse(buf, &m, &why), OTA_ERR_LENGTH);
    /* Over the hard input bound, whatever the content. */
    size_t big = CM_MAX_INPUT + 1;
    uint8_t *p = malloc(big);
    memset(p, ' ', big);
    ck_assert_int_eq(cm_parse(p, big, &m, &why), OTA_ERR_LENGTH);
    free(p);
}
END_TEST

START_TEST(builders)
{
    char *s = cm_build_command((const uint8_t *)"\x90\x5A\x00\x00\x03\xEE\xFF\xC0\x00", 9);
    ck_assert_str_eq(s, "{\"type\":\"command\",\"data\":\"905a000003eeffc000\"}");
    free(s);
    s = cm_build_modal("Hold \"the\" card\n", 16);
    ck_assert_str_eq(s, "{\"type\":\"modal\",\"message\":\"Hold \\\"the\\\" card\\n\"}");
    free(s);
    ck_assert_ptr_null(cm_build_modal("\xff\xfe", 2));

    struct wire_result r;
    memset(&r, 0, sizeof r);
    r.op = WIRE_OP_TOPUP;
    r.status = WIRE_ST_OK;
    r.has = WIRE_RES_HAS_BALANCE | WIRE_RES_HAS_AMOUNT | WIRE_RES_HAS_TXN;
    r.balance = 1500;
    r.amount = 500;
    for (int i = 0; i < 16; i++)
        r.txn[i] = (uint8_t)(0xa0 + i);
    json_t *rid = json_integer(7);
    s = cm_build_result(&r, rid);
    json_decref(rid);
    json_error_t e;
    json_t *o = json_loads(s, 0, &e);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_string_value(json_object_get(o, "type")), "result");
    ck_assert_str_eq(json_string_value(json_object_get(o, "operation")), "topup");
    ck_assert_str_eq(json_string_value(json_object_get(o, "status")), "ok");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "balance")), 1500);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "amount")), 500);
    ck_assert_str_eq(json_string_value(json_object_get(o, "txn")),
                     "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "requestId")), 7);
    ck_assert_ptr_null(json_object_get(o, "error"));
    json_decref(o);
    free(s);

    memset(&r, 0, sizeof r);
    r.status = WIRE_ST_FAILED;
    r.error = WIRE_E_BAD_REQUEST;
    s = cm_build_result(&r, NULL);
    ck_assert_str_eq(s, "{\"type\":\"result\",\"status\":\"failed\",\"error\":\"bad-request\"}");
    free(s);
    r.op = WIRE_OP_TOPUP;
    r.status = WIRE_ST_PENDING;
    r.error = WIRE_E_INTERNAL;
    s = cm_build_result(&r, NULL);
    ck_assert_ptr_nonnull(strstr(s, "\"status\":\"pending\",\"error\":\"internal\""));
    free(s);
}
END_TEST

START_TEST(utf8)
{
    struct {
        const char *s;
        int ok;
    } v[] = {
        {"plain", 1},
        {"\xc3\xa9t\xc3\xa9", 1},
        {"\xe2\x82\xac", 1},
        {"\xf0\x9f\x92\xb3", 1},
        {"\xf4\x8f\xbf\xbf", 1},
        {"\xc0\xaf", 0},         /* overlong */
        {"\xe0\x80\xaf", 0},     /* overlong */
        {"\xed\xa0\x80", 0},     /* surrogate */
        {"\xf4\x90\x80\x80", 0}, /* above U+10FFFF */
        {"\xf5\x80\x80\x80", 0},
        {"\xe2\x82", 0}, /* truncated */
        {"\x80", 0},
        {"a\xffz", 0},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        ck_assert_msg(utf8_valid((const uint8_t *)v[i].s, strlen(v[i].s)) == v[i].ok, "case %zu",
                      i);
}
END_TEST

START_TEST(metrics_text)
{
    struct met m;
    met_init(&m);
    met_observe(&m.exchange_added, 0.00007);
    met_observe(&m.exchange_added, 0.0003);
    met_observe(&m.exchange_added, 7.0);
    met_session_end(&m, WIRE_OP_TOPUP, MET_RES_OK, WIRE_E_NONE);
    met_session_end(&m, WIRE_OP_TOPUP, MET_RES_FAILED, WIRE_E_CODE_USED);
    struct met_text t = {0};
    met_render(&m, &t);
    ck_assert_int_eq(t.oom, 0);
    ck_assert_ptr_nonnull(
        strstr(t.p, "ota_gateway_sessions_total{operation=\"topup\",result=\"ok\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t.p, "ota_gateway_session_errors_total{error=\"code-used\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(t.p, "ota_gateway_exchange_added_seconds_bucket{le=\"5e-05\"} 0\n"));
    ck_assert_ptr_nonnull(
        strstr(t.p, "ota_gateway_exchange_added_seconds_bucket{le=\"0.0001\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(t.p, "ota_gateway_exchange_added_seconds_bucket{le=\"0.0005\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t.p, "ota_gateway_exchange_added_seconds_bucket{le=\"0.1\"} 2\n"));
    ck_assert_ptr_nonnull(
        strstr(t.p, "ota_gateway_exchange_added_seconds_bucket{le=\"+Inf\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(t.p, "ota_gateway_exchange_added_seconds_count 3\n"));
    ck_assert_ptr_nonnull(strstr(t.p, "# TYPE ota_gateway_session_duration_seconds histogram\n"));
    ck_assert_int_eq(met_close_index(1009), 5);
    ck_assert_int_eq(met_close_index(1007), 4);
    ck_assert_int_eq(met_close_index(4000), 2);
    free(t.p);
}
END_TEST

/* Each block jansson frees is scanned for the code before it goes back to
 * malloc. */
static const char secret_code[] = "WIPE-ME-7Q4K9Z2X";
static int blocks_freed, blocks_with_code;

static void scan_then_free(void *p)
{
    size_t n = malloc_usable_size(p), k = strlen(secret_code);
    blocks_freed++;
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp((const char *)p + i, secret_code, k) == 0) {
            blocks_with_code++;
            break;
        }
    free(p);
}

/* Parses before + the code + after. */
static void parse_with_code(const char *before, const char *after, int want)
{
    char text[512];
    ck_assert_int_lt(snprintf(text, sizeof text, "%s%s%s", before, secret_code, after),
                     (int)sizeof text);
    struct cm_msg m;
    const char *why = NULL;
    ck_assert_int_eq(parse(text, &m, &why), want);
    cm_msg_clear(&m);
}

START_TEST(json_memory_wiped)
{
    static const char good[] = "{\"type\":\"operation\",\"operation\":\"topup\","
                               "\"uid\":\"04112233445566\",\"tech\":\"IsoDep\","
                               "\"authCode\":\"";
    static const char bad[] = "{\"type\":\"operation\",\"operation\":\"topup\","
                              "\"authCode\":\"";
    /* Control: with a plain free, a message that jansson refuses after the
     * code (here a syntax error) leaves the code in a block it freed. */
    json_set_alloc_funcs(malloc, scan_then_free);
    parse_with_code(good, "\", oops}", OTA_ERR_PARSE);
    ck_assert_int_gt(blocks_with_code, 0);
    /* With the gateway's wiping free: no freed block holds it, for a good
     * message, a syntax error, a duplicate key and a bad member. */
    blocks_freed = blocks_with_code = 0;
    cm_json_wipe_on_free(scan_then_free);
    parse_with_code(good, "\"}", 0);
    parse_with_code(good, "\", oops}", OTA_ERR_PARSE);
    parse_with_code(good, "\", \"authCode\":\"x\"}", OTA_ERR_PARSE);
    parse_with_code(bad, "\",\"uid\":7}", OTA_ERR_PARSE);
    ck_assert_int_gt(blocks_freed, 4);
    ck_assert_int_eq(blocks_with_code, 0);
    /* json_dumps text still goes back with free(). */
    char *t = cm_build_command((const uint8_t *)"\x90\x60\x00\x00\x00", 5);
    ck_assert_ptr_nonnull(t);
    free(t);
    json_set_alloc_funcs(malloc, free);
}
END_TEST

/* A message in fragments with a ping between them is one message; the
 * bound holds for the sum of the fragments. */
START_TEST(ws_message_fragments)
{
    struct wsmsg m;
    wsmsg_init(&m, 8);
    wsmsg_frame_start(&m, 0x1); /* text, not final */
    ck_assert_int_eq(wsmsg_chunk(&m, (const uint8_t *)"abc", 3), 0);
    wsmsg_frame_start(&m, 0x9); /* a ping between the fragments */
    ck_assert_int_eq(wsmsg_chunk(&m, (const uint8_t *)"ping", 4), 0);
    wsmsg_frame_start(&m, 0x0); /* continuation */
    ck_assert_int_eq(wsmsg_chunk(&m, (const uint8_t *)"de", 2), 0);
    ck_assert_uint_eq(m.len, 5);
    ck_assert_int_eq(memcmp(m.buf, "abcde", 5), 0);
    wsmsg_clear(&m);
    ck_assert_ptr_null(m.buf);
    ck_assert_uint_eq(m.len, 0);
    /* A new text frame starts over; past the bound the message is dropped. */
    wsmsg_frame_start(&m, 0x1);
    ck_assert_int_eq(wsmsg_chunk(&m, (const uint8_t *)"12345", 5), 0);
    wsmsg_frame_start(&m, 0x0);
    ck_assert_int_eq(wsmsg_chunk(&m, (const uint8_t *)"6789", 4), OTA_ERR_LENGTH);
    ck_assert_ptr_null(m.buf);
    wsmsg_frame_start(&m, 0x1);
    ck_assert_int_eq(wsmsg_chunk(&m, (const uint8_t *)"12345678", 8), 0);
    ck_assert_uint_eq(m.len, 8);
    wsmsg_clear(&m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("gw_climsg");
    TCase *t = tcase_create("climsg");
    tcase_add_test(t, operation_good);
    tcase_add_test(t, response_and_error_good);
    tcase_add_loop_test(t, bad_messages, 0, (int)(sizeof bad_msgs / sizeof bad_msgs[0]));
    tcase_add_test(t, v2_batches);
    tcase_add_test(t, deep_nesting);
    tcase_add_test(t, huge_strings);
    tcase_add_test(t, builders);
    tcase_add_test(t, json_memory_wiped);
    tcase_add_test(t, ws_message_fragments);
    suite_add_tcase(s, t);
    TCase *u = tcase_create("utf8_metrics");
    tcase_add_test(u, utf8);
    tcase_add_test(u, metrics_text);
    suite_add_tcase(s, u);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
