/* Unit tests of tools/ws_proto_msg.c: the client side of the session's
 * JSON (docs/PROTOCOL.md sections 2 and 8).  Both spellings of command
 * and commands (the gateway's compact one and any other JSON), the limits
 * of a batch (announced size, v1 session, hex, empty), running a batch on
 * a scripted card (stop rule, lost card part-way) and the exact text of
 * response, responses and error. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ota_err.h"
#include "ws_proto_msg.h"

static int parse(const char *text, size_t max_batch, struct wsm_msg *m)
{
    char why[200];
    return wsm_parse(text, strlen(text), max_batch, m, why, sizeof why);
}

START_TEST(test_parse_command_plain_and_json)
{
    struct wsm_msg m;
    ck_assert_int_eq(parse("{\"type\":\"command\",\"data\":\"905a00000300000000\"}", 0, &m), 0);
    ck_assert_int_eq(m.kind, WSM_CARD);
    ck_assert_int_eq(m.batch.single, 1);
    ck_assert_uint_eq(m.batch.n, 1);
    ck_assert_uint_eq(m.batch.len[0], 9);
    ck_assert_uint_eq(m.batch.apdu[0][1], 0x5A);
    wsm_msg_clear(&m);
    /* Another spelling, upper-case hex and an unknown member: jansson. */
    ck_assert_int_eq(parse("{ \"data\": \"90AF000000\", \"type\": \"command\", \"x\": 1 }", 16, &m),
                     0);
    ck_assert_int_eq(m.kind, WSM_CARD);
    ck_assert_int_eq(m.batch.single, 1);
    ck_assert_uint_eq(m.batch.len[0], 5);
    ck_assert_uint_eq(m.batch.apdu[0][1], 0xAF);
    wsm_msg_clear(&m);
}
END_TEST

START_TEST(test_parse_commands)
{
    struct wsm_msg m;
    const char *plain =
        "{\"type\":\"commands\",\"data\":[\"905a00000300000000\",\"90aa0000010200\","
        "\"906000000000\"]}";
    const char *spaced = "{\"type\": \"commands\", \"data\": [\"905A00000300000000\", "
                         "\"90aa0000010200\", \"906000000000\"]}";
    const char *texts[2] = {plain, spaced};
    for (int t = 0; t < 2; t++) {
        ck_assert_int_eq(parse(texts[t], 16, &m), 0);
        ck_assert_int_eq(m.kind, WSM_CARD);
        ck_assert_int_eq(m.batch.single, 0);
        ck_assert_uint_eq(m.batch.n, 3);
        ck_assert_uint_eq(m.batch.len[0], 9);
        ck_assert_uint_eq(m.batch.len[1], 7);
        ck_assert_uint_eq(m.batch.len[2], 6);
        ck_assert_uint_eq(m.batch.apdu[1][1], 0xAA);
        ck_assert_uint_eq(m.batch.apdu[2][1], 0x60);
        wsm_msg_clear(&m);
    }
    /* Exactly the announced size is fine, one more is not. */
    ck_assert_int_eq(parse(plain, 3, &m), 0);
    wsm_msg_clear(&m);
    ck_assert_int_eq(parse(plain, 2, &m), OTA_ERR_PARSE);
    wsm_msg_clear(&m);
    ck_assert_int_eq(parse(spaced, 2, &m), OTA_ERR_PARSE);
    wsm_msg_clear(&m);
}
END_TEST

START_TEST(test_parse_commands_rejects)
{
    static const char *const bad[] = {
        "{\"type\":\"commands\",\"data\":[]}",
        "{\"type\":\"commands\",\"data\":\"905a00000300000000\"}",
        "{\"type\":\"commands\",\"data\":[\"905a00000300000000\",\"9z00\"]}",
        "{\"type\":\"commands\",\"data\":[\"905a00000300000000\",\"900\"]}",
        "{\"type\":\"commands\",\"data\":[\"905a00000300000000\",\"9000\"]}", /* under 4 bytes */
        "{\"type\":\"commands\",\"data\":[\"905a00000300000000\",17]}",
        "{\"type\":\"commands\"}",
        "{\"type\":\"command\",\"data\":[\"905a00000300000000\"]}",
        "{\"type\":\"command\"}",
        "{\"type\":\"command\",\"data\":\"\"}",
        "{\"type\":\"command\",\"data\":\"90\"}",
        "{\"data\":\"905a00000300000000\"}",
        "[\"command\"]",
        "not json",
        "{\"type\":\"command\",\"data\":\"905a00000300000000\"",
    };
    struct wsm_msg m;
    char why[200];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        ck_assert_msg(wsm_parse(bad[i], strlen(bad[i]), 16, &m, why, sizeof why) == OTA_ERR_PARSE,
                      "accepted: %s", bad[i]);
        ck_assert_msg(why[0] != '\0', "no reason for: %s", bad[i]);
        wsm_msg_clear(&m);
    }
    /* A longer APDU than a short APDU can be. */
    {
        char big[64 + 2 * (WSM_APDU_MAX + 1)];
        size_t at = (size_t)snprintf(big, sizeof big, "{\"type\":\"commands\",\"data\":[\"");
        for (int i = 0; i < WSM_APDU_MAX + 1; i++)
            at += (size_t)snprintf(big + at, sizeof big - at, "90");
        snprintf(big + at, sizeof big - at, "\"]}");
        ck_assert_int_eq(parse(big, 16, &m), OTA_ERR_PARSE);
        wsm_msg_clear(&m);
    }
}
END_TEST

START_TEST(test_parse_v1_session_refuses_commands)
{
    struct wsm_msg m;
    const char *cmds =
        "{\"type\":\"commands\",\"data\":[\"905a00000300000000\",\"90aa0000010200\"]}";
    ck_assert_int_eq(parse(cmds, 0, &m), OTA_ERR_PARSE);
    wsm_msg_clear(&m);
    ck_assert_int_eq(parse(cmds, 1, &m), OTA_ERR_PARSE);
    wsm_msg_clear(&m);
    /* A command is what v1 is made of. */
    ck_assert_int_eq(parse("{\"type\":\"command\",\"data\":\"905a00000300000000\"}", 1, &m), 0);
    wsm_msg_clear(&m);
}
END_TEST

START_TEST(test_parse_other_kinds)
{
    struct wsm_msg m;
    ck_assert_int_eq(parse("{\"type\":\"modal\",\"message\":\"Hold still\"}", 16, &m), 0);
    ck_assert_int_eq(m.kind, WSM_MODAL);
    ck_assert_str_eq(json_string_value(json_object_get(m.json, "message")), "Hold still");
    wsm_msg_clear(&m);
    ck_assert_int_eq(parse("{\"type\":\"result\",\"status\":\"ok\",\"balance\":5}", 16, &m), 0);
    ck_assert_int_eq(m.kind, WSM_RESULT);
    ck_assert_int_eq(json_integer_value(json_object_get(m.json, "balance")), 5);
    wsm_msg_clear(&m);
    ck_assert_int_eq(parse("{\"type\":\"hello\"}", 16, &m), 0);
    ck_assert_int_eq(m.kind, WSM_OTHER);
    wsm_msg_clear(&m);
    /* Duplicate members would let two readers see two messages. */
    ck_assert_int_eq(parse("{\"type\":\"result\",\"type\":\"modal\"}", 16, &m), OTA_ERR_PARSE);
    wsm_msg_clear(&m);
}
END_TEST

START_TEST(test_answer_goes_on)
{
    static const uint8_t ok[] = {0x12, 0x91, 0x00}, more[] = {0x91, 0xAF}, err[] = {0x91, 0xBE},
                         iso[] = {0x90, 0x00}, one[] = {0x91};
    ck_assert(wsm_answer_goes_on(ok, sizeof ok));
    ck_assert(wsm_answer_goes_on(more, sizeof more));
    ck_assert(!wsm_answer_goes_on(err, sizeof err));
    ck_assert(!wsm_answer_goes_on(iso, sizeof iso));
    ck_assert(!wsm_answer_goes_on(one, sizeof one));
    ck_assert(!wsm_answer_goes_on(NULL, 0));
}
END_TEST

/* A scripted card: answers[i] to the i-th APDU; fail_at: the card is
 * lost at that APDU (1-based, 0 = never). */
struct script {
    const char *answers[WSM_BATCH_MAX];
    int fail_at;
    int ran;
};

static const char *script_card(void *ctx, const uint8_t *apdu, size_t len, uint8_t *resp,
                               size_t cap, size_t *resp_len)
{
    struct script *s = ctx;
    const char *hex;
    (void)apdu;
    (void)len;
    if (s->fail_at == s->ran + 1)
        return "lost-tag";
    hex = s->answers[s->ran++];
    *resp_len = 0;
    for (size_t i = 0; hex[2 * i] != '\0' && i < cap; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        resp[i] = (uint8_t)v;
        (*resp_len)++;
    }
    return NULL;
}

static void batch_of(struct wsm_batch *b, size_t n)
{
    memset(b, 0, sizeof *b);
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        b->len[i] = 5;
        b->apdu[i][0] = 0x90;
        b->apdu[i][1] = (uint8_t)(0x60 + i);
    }
}

START_TEST(test_batch_run_and_encode)
{
    struct wsm_batch b;
    struct wsm_answers a;
    struct script s = {{"1122339100", "91af", "9100", "aabb91ae", "9100"}, 0, 0};
    char out[WSM_ANSWERS_TEXT_MAX];

    /* All answers go on: every APDU runs. */
    batch_of(&b, 3);
    wsm_batch_run(&b, script_card, &s, &a);
    ck_assert_uint_eq(a.n, 3);
    ck_assert_ptr_null(a.error);
    ck_assert_int_gt(wsm_encode_answers(&b, &a, out, sizeof out), 0);
    ck_assert_str_eq(out, "{\"type\":\"responses\",\"data\":[\"1122339100\",\"91af\",\"9100\"]}");

    /* It stops after 91 AE (an error status), the fifth never runs. */
    memset(&s, 0, sizeof s);
    s.answers[0] = "9100";
    s.answers[1] = "aabb91ae";
    s.answers[2] = "9100";
    batch_of(&b, 3);
    wsm_batch_run(&b, script_card, &s, &a);
    ck_assert_uint_eq(a.n, 2);
    ck_assert_int_eq(s.ran, 2);
    wsm_encode_answers(&b, &a, out, sizeof out);
    ck_assert_str_eq(out, "{\"type\":\"responses\",\"data\":[\"9100\",\"aabb91ae\"]}");

    /* Lost at the second: the first answer and the error. */
    memset(&s, 0, sizeof s);
    s.answers[0] = "9100";
    s.fail_at = 2;
    batch_of(&b, 4);
    wsm_batch_run(&b, script_card, &s, &a);
    ck_assert_uint_eq(a.n, 1);
    ck_assert_str_eq(a.error, "lost-tag");
    wsm_encode_answers(&b, &a, out, sizeof out);
    ck_assert_str_eq(out, "{\"type\":\"responses\",\"data\":[\"9100\"],\"error\":\"lost-tag\"}");

    /* Lost at the first: no answers, the error. */
    memset(&s, 0, sizeof s);
    s.fail_at = 1;
    wsm_batch_run(&b, script_card, &s, &a);
    wsm_encode_answers(&b, &a, out, sizeof out);
    ck_assert_str_eq(out, "{\"type\":\"responses\",\"data\":[],\"error\":\"lost-tag\"}");
}
END_TEST

START_TEST(test_single_command_answers_v1)
{
    struct wsm_batch b;
    struct wsm_answers a;
    struct script s = {{"0102039100"}, 0, 0};
    char out[WSM_ANSWERS_TEXT_MAX];

    batch_of(&b, 1);
    b.single = 1;
    wsm_batch_run(&b, script_card, &s, &a);
    wsm_encode_answers(&b, &a, out, sizeof out);
    ck_assert_str_eq(out, "{\"type\":\"response\",\"data\":\"0102039100\"}");
    /* A single command's error status is still its answer. */
    memset(&s, 0, sizeof s);
    s.answers[0] = "91ae";
    wsm_batch_run(&b, script_card, &s, &a);
    wsm_encode_answers(&b, &a, out, sizeof out);
    ck_assert_str_eq(out, "{\"type\":\"response\",\"data\":\"91ae\"}");
    memset(&s, 0, sizeof s);
    s.fail_at = 1;
    wsm_batch_run(&b, script_card, &s, &a);
    wsm_encode_answers(&b, &a, out, sizeof out);
    ck_assert_str_eq(out, "{\"type\":\"error\",\"kind\":\"lost-tag\"}");
    /* Too small a buffer is an error, not a cut message. */
    ck_assert_int_eq(wsm_encode_answers(&b, &a, out, 10), OTA_ERR_LENGTH);
}
END_TEST

START_TEST(test_operation)
{
    char *t = wsm_operation("topup", "04a1b2c3d4e5f6", "1234-5678", "rq-1", 16);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t,
                     "{\"type\":\"operation\",\"operation\":\"topup\",\"uid\":\"04a1b2c3d4e5f6\","
                     "\"tech\":\"IsoDep\",\"authCode\":\"1234-5678\",\"requestId\":\"rq-1\","
                     "\"batch\":16}");
    free(t);
    t = wsm_operation("check", "04a1b2c3d4e5f6", NULL, NULL, 0);
    ck_assert_str_eq(t,
                     "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":\"04a1b2c3d4e5f6\","
                     "\"tech\":\"IsoDep\",\"authCode\":\"\"}");
    free(t);
    /* 1 is v1: no batch member at all (the seed gateway never saw one). */
    t = wsm_operation("check", "04a1b2c3d4e5f6", "", "x", 1);
    ck_assert_ptr_null(strstr(t, "batch"));
    free(t);
}
END_TEST

static Suite *ws_proto_msg_suite(void)
{
    Suite *s = suite_create("ws_proto_msg");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_parse_command_plain_and_json);
    tcase_add_test(tc, test_parse_commands);
    tcase_add_test(tc, test_parse_commands_rejects);
    tcase_add_test(tc, test_parse_v1_session_refuses_commands);
    tcase_add_test(tc, test_parse_other_kinds);
    tcase_add_test(tc, test_answer_goes_on);
    tcase_add_test(tc, test_batch_run_and_encode);
    tcase_add_test(tc, test_single_command_answers_v1);
    tcase_add_test(tc, test_operation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ws_proto_msg_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
