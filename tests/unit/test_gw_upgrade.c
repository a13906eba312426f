/* Tests for gateway/upgrade.c and gateway/proxy.c: the HTTP upgrade parser
 * (good requests, every refusal and its status, limits, incremental
 * input) and the PROXY protocol v1/v2 parser. */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/proxy.h"
#include "gateway/upgrade.h"

static const struct upg_limits lim = {8192, 64};

#define GOOD_HEAD                                                                                  \
    "GET /v1/session HTTP/1.1\r\n"                                                                 \
    "Host: example.com\r\n"                                                                        \
    "Upgrade: websocket\r\n"                                                                       \
    "Connection: keep-alive, Upgrade\r\n"                                                          \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                                              \
    "Sec-WebSocket-Version: 13\r\n"

static enum upg_status parse(const char *s, struct upg_result *r)
{
    return upg_parse(s, strlen(s), &lim, r);
}

START_TEST(rfc_sample_accepted)
{
    struct upg_result r;
    const char *req = GOOD_HEAD "\r\n";
    ck_assert_int_eq(parse(req, &r), UPG_OK);
    ck_assert_str_eq(r.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ck_assert_uint_eq(r.head_len, strlen(req));
    char out[256];
    int n = upg_response_101(r.accept, out, sizeof out);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_nonnull(strstr(out, "HTTP/1.1 101 "));
    ck_assert_ptr_nonnull(strstr(out, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    ck_assert(n >= 4 && memcmp(out + n - 4, "\r\n\r\n", 4) == 0);
}
END_TEST

START_TEST(root_path_query_and_case)
{
    struct upg_result r;
    ck_assert_int_eq(parse("GET /?x=1 HTTP/1.1\r\nhost: a\r\nupgrade: WebSocket\r\n"
                           "connection: UPGRADE\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "sec-websocket-version:13\r\n\r\nEXTRA",
                           &r),
                     UPG_OK);
    /* Bytes after the head belong to the WebSocket stream. */
    ck_assert_uint_eq(r.head_len, strlen("GET /?x=1 HTTP/1.1\r\nhost: a\r\nupgrade: WebSocket\r\n"
                                         "connection: UPGRADE\r\nsec-websocket-key: "
                                         "dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version:13\r\n"
                                         "\r\n"));
}
END_TEST

START_TEST(incremental)
{
    const char *req = GOOD_HEAD "\r\n";
    struct upg_result r;
    for (size_t n = 0; n < strlen(req); n++)
        ck_assert_msg(upg_parse(req, n, &lim, &r) == UPG_NEED_MORE, "prefix %zu", n);
    ck_assert_int_eq(upg_parse(req, strlen(req), &lim, &r), UPG_OK);
}
END_TEST

struct bad {
    const char *req;
    int status;
};

static const struct bad bads[] = {
    {"POST /v1/session HTTP/1.1\r\nHost: a\r\n\r\n", 405},
    {"GET /v2/session HTTP/1.1\r\nHost: a\r\n\r\n", 404},
    {"GET http://a/v1/session HTTP/1.1\r\nHost: a\r\n\r\n", 404},
    {"GET /v1/session HTTP/1.0\r\nHost: a\r\n\r\n", 505},
    {"GET /v1/session HTTP/2.0\r\nHost: a\r\n\r\n", 505},
    {"GET /v1/session FTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET  /v1/session HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    {"GET /v1/session\r\nHost: a\r\n\r\n", 400},
    {"GET /v1/session HTTP/1.1\nHost: a\n\n", 400},
    {"GET /v1/session HTTP/1.1\r\nHost: a\r\n\r\n", 426},
    {"GET /v1/session HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", 400},
    {"GET /v1/session HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
     400},
    {GOOD_HEAD "Host: b\r\n\r\n", 400},
    {GOOD_HEAD "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 400},
    {GOOD_HEAD "Sec-WebSocket-Version: 13\r\n\r\n", 400},
    {GOOD_HEAD " folded\r\n\r\n", 400},
    {GOOD_HEAD "Bad Name: x\r\n\r\n", 400},
    {GOOD_HEAD "NoColon\r\n\r\n", 400},
    {GOOD_HEAD "X: a\x01z\r\n\r\n", 400},
    {GOOD_HEAD "Content-Length: 5\r\n\r\n", 400},
    {GOOD_HEAD "Transfer-Encoding: chunked\r\n\r\n", 400},
    {"GET /v1/session HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
     426},
    {"GET /v1/session HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
     "Sec-WebSocket-Key: short==\r\nSec-WebSocket-Version: 13\r\n\r\n",
     400},
    {"GET /v1/session HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\nSec-WebSocket-Version: 13\r\n\r\n",
     400},
    {"GET /v1/session HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\nSec-WebSocket-Version: 13\r\n\r\n",
     400},
    {"GET /v1/session HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: upgrade\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
     426},
};

START_TEST(refusals)
{
    const struct bad *b = &bads[_i];
    struct upg_result r;
    ck_assert_msg(parse(b->req, &r) == UPG_ERROR, "case %d accepted", _i);
    ck_assert_msg(r.http_status == b->status, "case %d: status %d want %d (%s)", _i, r.http_status,
                  b->status, r.why);
    char out[1024];
    int n = upg_response_error(r.http_status, r.why, out, sizeof out);
    ck_assert_int_gt(n, 0);
    char first[32];
    snprintf(first, sizeof first, "HTTP/1.1 %d ", b->status);
    ck_assert(strncmp(out, first, strlen(first)) == 0);
    ck_assert_ptr_nonnull(strstr(out, "Connection: close\r\n"));
}
END_TEST

START_TEST(nul_refused_early)
{
    struct upg_result r;
    const char req[] = "GET /v1/session HTTP/1.1\r\nHo\0st: a\r\n";
    ck_assert_int_eq(upg_parse(req, sizeof req - 1, &lim, &r), UPG_ERROR);
    ck_assert_int_eq(r.http_status, 400);
}
END_TEST

START_TEST(limits)
{
    struct upg_limits small = {256, 8};
    struct upg_result r;
    /* No end of head within the limit: 431 once the limit is reached. */
    char big[300];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    ck_assert_int_eq(upg_parse(big, 255, &small, &r), UPG_NEED_MORE);
    ck_assert_int_eq(upg_parse(big, 256, &small, &r), UPG_ERROR);
    ck_assert_int_eq(r.http_status, 431);
    ck_assert_int_eq(upg_parse(big, sizeof big, &small, &r), UPG_ERROR);
    ck_assert_int_eq(r.http_status, 431);
    /* Too many header lines. */
    char many[512] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 9; i++)
        strcat(many, "A: b\r\n");
    strcat(many, "\r\n");
    ck_assert_int_eq(upg_parse(many, strlen(many), &small, &r), UPG_ERROR);
    ck_assert_int_eq(r.http_status, 431);
}
END_TEST

START_TEST(error_responses)
{
    char out[512];
    ck_assert_int_gt(upg_response_error(426, NULL, out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "Sec-WebSocket-Version: 13\r\n"));
    ck_assert_int_gt(upg_response_error(503, "too many", out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "HTTP/1.1 503 Service Unavailable\r\n"));
    ck_assert_ptr_nonnull(strstr(out, "Content-Length: 9\r\n"));
    ck_assert_int_lt(upg_response_error(503, "too many", out, 20), 0);
}
END_TEST

/* ---- PROXY protocol ---------------------------------------------------- */

START_TEST(proxy_v1)
{
    struct pp_result r;
    const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET /";
    ck_assert_int_eq(pp_parse((const uint8_t *)h, strlen(h), &r), PP_OK);
    ck_assert_int_eq(r.has_addr, 1);
    ck_assert_str_eq(r.addr, "192.0.2.7");
    ck_assert_uint_eq(r.port, 56324);
    ck_assert_uint_eq(r.consumed, strlen(h) - 5);
    h = "PROXY TCP6 2001:DB8::1 2001:db8::2 1 2\r\n";
    ck_assert_int_eq(pp_parse((const uint8_t *)h, strlen(h), &r), PP_OK);
    ck_assert_str_eq(r.addr, "2001:db8::1");
    h = "PROXY UNKNOWN\r\n";
    ck_assert_int_eq(pp_parse((const uint8_t *)h, strlen(h), &r), PP_OK);
    ck_assert_int_eq(r.has_addr, 0);
    h = "PROXY TCP4 192.0.2.7 198.51.1";
    ck_assert_int_eq(pp_parse((const uint8_t *)h, strlen(h), &r), PP_NEED_MORE);
    const char *bad[] = {"PROXY TCP4 300.0.2.7 198.51.100.1 1 2\r\n",
                         "PROXY TCP4 192.0.2.7 198.51.100.1 1 65536\r\n",
                         "PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
                         "PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n",
                         "PROXY TCP5 192.0.2.7 198.51.100.1 1 2\r\n",
                         "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",
                         "GET / HTTP/1.1\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(pp_parse((const uint8_t *)bad[i], strlen(bad[i]), &r) == PP_ERROR, "%s",
                      bad[i]);
    char longline[200];
    memset(longline, '1', sizeof longline);
    memcpy(longline, "PROXY TCP4 ", 11);
    ck_assert_int_eq(pp_parse((const uint8_t *)longline, sizeof longline, &r), PP_ERROR);
}
END_TEST

START_TEST(proxy_v2)
{
    uint8_t h[64] = "\r\n\r\n\0\r\nQUIT\n";
    h[12] = 0x21; /* v2 PROXY */
    h[13] = 0x11; /* TCP4 */
    h[14] = 0;
    h[15] = 12;
    uint8_t src[4] = {203, 0, 113, 9}, dst[4] = {10, 0, 0, 1};
    memcpy(h + 16, src, 4);
    memcpy(h + 20, dst, 4);
    h[24] = 0x12;
    h[25] = 0x34;
    h[26] = 0x01;
    h[27] = 0xbb;
    struct pp_result r;
    ck_assert_int_eq(pp_parse(h, 27, &r), PP_NEED_MORE);
    ck_assert_int_eq(pp_parse(h, 28, &r), PP_OK);
    ck_assert_str_eq(r.addr, "203.0.113.9");
    ck_assert_uint_eq(r.port, 0x1234);
    ck_assert_uint_eq(r.consumed, 28);
    h[12] = 0x20; /* LOCAL */
    ck_assert_int_eq(pp_parse(h, 28, &r), PP_OK);
    ck_assert_int_eq(r.has_addr, 0);
    h[12] = 0x31; /* version 3 */
    ck_assert_int_eq(pp_parse(h, 28, &r), PP_ERROR);
    h[12] = 0x21;
    h[15] = 8; /* too short for IPv4 */
    ck_assert_int_eq(pp_parse(h, 24, &r), PP_ERROR);
    h[14] = 0x10; /* 4 KiB body */
    ck_assert_int_eq(pp_parse(h, 28, &r), PP_ERROR);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("gw_upgrade");
    TCase *t = tcase_create("upgrade");
    tcase_add_test(t, rfc_sample_accepted);
    tcase_add_test(t, root_path_query_and_case);
    tcase_add_test(t, incremental);
    tcase_add_loop_test(t, refusals, 0, (int)(sizeof bads / sizeof bads[0]));
    tcase_add_test(t, nul_refused_early);
    tcase_add_test(t, limits);
    tcase_add_test(t, error_responses);
    suite_add_tcase(s, t);
    TCase *p = tcase_create("proxy");
    tcase_add_test(p, proxy_v1);
    tcase_add_test(p, proxy_v2);
    suite_add_tcase(s, p);
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
