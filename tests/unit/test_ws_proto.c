/* Unit tests of tools/ws_proto.c and tools/ws_url.c: the client side of
 * RFC 6455 checked against the RFC's own examples (§1.3 accept key, §5.7
 * frames) and against the malformed inputs a server could send.  The accept
 * value is RFC 6455 §1.3's (also what Python's hashlib computes). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ota_err.h"
#include "ws_proto.h"
#include "ws_url.h"

static const uint8_t rfc_mask[4] = {0x37, 0xfa, 0x21, 0x3d};

START_TEST(test_accept_rfc_example)
{
    char out[WSC_ACCEPT_LEN + 1];
    ck_assert_int_eq(wsc_accept_for_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ck_assert_int_eq(wsc_accept_for_key("short", out), OTA_ERR_INVAL);
}
END_TEST

START_TEST(test_make_key)
{
    char a[WSC_KEY_LEN + 1], b[WSC_KEY_LEN + 1];
    unsigned char raw[32];
    size_t rawlen = 0;
    wsc_make_key(a);
    wsc_make_key(b);
    ck_assert_uint_eq(strlen(a), WSC_KEY_LEN);
    ck_assert_str_ne(a, b);
    ck_assert_int_eq(sodium_base642bin(raw, sizeof raw, a, strlen(a), NULL, &rawlen, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    ck_assert_uint_eq(rawlen, 16);
}
END_TEST

START_TEST(test_build_request)
{
    char req[1024];
    int n = wsc_build_request(req, sizeof req, "127.0.0.1:8080", "/v1/session",
                              "dGhlIHNhbXBsZSBub25jZQ==");
    ck_assert_int_gt(n, 0);
    ck_assert_uint_eq(strlen(req), (size_t)n);
    ck_assert_ptr_nonnull(strstr(req, "GET /v1/session HTTP/1.1\r\n"));
    ck_assert_ptr_nonnull(strstr(req, "\r\nHost: 127.0.0.1:8080\r\n"));
    ck_assert_ptr_nonnull(strstr(req, "\r\nUpgrade: websocket\r\n"));
    ck_assert_ptr_nonnull(strstr(req, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    ck_assert_ptr_nonnull(strstr(req, "\r\nSec-WebSocket-Version: 13\r\n"));
    ck_assert_str_eq(req + n - 4, "\r\n\r\n");
    ck_assert_int_eq(wsc_build_request(req, sizeof req, "h", "/x\r\nEvil: 1", "k"), OTA_ERR_INVAL);
    ck_assert_int_eq(wsc_build_request(req, sizeof req, "h", "nopath", "k"), OTA_ERR_INVAL);
    ck_assert_int_eq(wsc_build_request(req, 40, "h", "/", "dGhlIHNhbXBsZSBub25jZQ=="),
                     OTA_ERR_LENGTH);
}
END_TEST

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define GOOD_ACCEPT "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"

static int parse(const char *s, int *status)
{
    return wsc_parse_response((const uint8_t *)s, strlen(s), 8192, KEY, status);
}

START_TEST(test_parse_response_ok)
{
    const char *ok = "HTTP/1.1 101 Switching Protocols\r\n"
                     "upgrade: WebSocket\r\n"
                     "Connection: keep-alive, Upgrade\r\n" GOOD_ACCEPT "\r\n"
                     "\x81\x05Hello";
    int status = 0;
    int n = parse(ok, &status);
    ck_assert_int_eq(status, 101);
    ck_assert_int_eq(n, (int)(strlen(ok) - 7));
    /* Every strict prefix of the header asks for more bytes. */
    for (size_t i = 0; i < strlen(ok) - 7; i++)
        ck_assert_int_eq(wsc_parse_response((const uint8_t *)ok, i, 8192, KEY, &status), 0);
}
END_TEST

START_TEST(test_parse_response_rejects)
{
    int status = 0;
    /* Wrong accept value. */
    ck_assert_int_eq(parse("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
                           &status),
                     OTA_ERR_PARSE);
    /* Missing Upgrade / Connection / Accept. */
    ck_assert_int_eq(
        parse("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\n" GOOD_ACCEPT "\r\n", &status),
        OTA_ERR_PARSE);
    ck_assert_int_eq(parse("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n" GOOD_ACCEPT "\r\n", &status),
                     OTA_ERR_PARSE);
    ck_assert_int_eq(
        parse("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", &status),
        OTA_ERR_PARSE);
    /* An extension we never offered. */
    ck_assert_int_eq(
        parse("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" GOOD_ACCEPT
              "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
              &status),
        OTA_ERR_PARSE);
    /* Not 101: the status is reported. */
    ck_assert_int_eq(parse("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", &status),
                     OTA_ERR_STATE);
    ck_assert_int_eq(status, 403);
    ck_assert_int_eq(parse("garbage\r\n\r\n", &status), OTA_ERR_PARSE);
    /* A header line without a colon. */
    ck_assert_int_eq(parse("HTTP/1.1 101 OK\r\nUpgrade websocket\r\n\r\n", &status), OTA_ERR_PARSE);
}
END_TEST

START_TEST(test_parse_response_too_long)
{
    char big[600];
    int status = 0;
    memset(big, 'a', sizeof big);
    memcpy(big, "HTTP/1.1 101 OK\r\nX: ", 20);
    ck_assert_int_eq(wsc_parse_response((const uint8_t *)big, sizeof big, 512, KEY, &status),
                     OTA_ERR_LENGTH);
    ck_assert_int_eq(wsc_parse_response((const uint8_t *)big, 511, 512, KEY, &status), 0);
}
END_TEST

START_TEST(test_encode_rfc_masked_hello)
{
    static const uint8_t want[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                   0x7f, 0x9f, 0x4d, 0x51, 0x58};
    static const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                   0x7f, 0x9f, 0x4d, 0x51, 0x58};
    uint8_t out[64];
    int n = wsc_frame_encode(out, sizeof out, WSC_OP_TEXT, (const uint8_t *)"Hello", 5, rfc_mask);
    ck_assert_int_eq(n, (int)sizeof want);
    ck_assert_mem_eq(out, want, sizeof want);
    n = wsc_frame_encode(out, sizeof out, WSC_OP_PONG, (const uint8_t *)"Hello", 5, rfc_mask);
    ck_assert_int_eq(n, (int)sizeof pong);
    ck_assert_mem_eq(out, pong, sizeof pong);
    ck_assert_int_eq(wsc_frame_encode(out, 10, WSC_OP_TEXT, (const uint8_t *)"Hello", 5, rfc_mask),
                     OTA_ERR_LENGTH);
}
END_TEST

START_TEST(test_encode_lengths)
{
    static const size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
    size_t cap = 70000 + WSC_FRAME_OVERHEAD;
    uint8_t *payload = malloc(70000), *out = malloc(cap);
    ck_assert_ptr_nonnull(payload);
    ck_assert_ptr_nonnull(out);
    randombytes_buf(payload, 70000);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t len = sizes[i];
        struct wsc_frame f;
        size_t hdr = len < 126 ? 6 : len <= 65535 ? 8 : 14;
        int n = wsc_frame_encode_random(out, cap, WSC_OP_BINARY, payload, len);
        ck_assert_int_eq(n, (int)(hdr + len));
        ck_assert_uint_eq(out[0], 0x82);
        if (len == 126)
            ck_assert(out[1] == 0xFE && out[2] == 0 && out[3] == 126);
        if (len == 65536)
            ck_assert(out[1] == 0xFF && out[7] == 1 && out[8] == 0 && out[9] == 0);
        /* What a server decodes is what was sent. */
        ck_assert_int_eq(wsc_frame_decode(out, (size_t)n, 70000, 1, &f), n);
        ck_assert_uint_eq(f.len, len);
        ck_assert_int_eq(f.opcode, WSC_OP_BINARY);
        ck_assert(f.fin);
        if (len > 0)
            ck_assert_mem_eq(f.payload, payload, len);
    }
    ck_assert_int_eq(wsc_frame_encode_random(out, cap, WSC_OP_PING, payload, 126), OTA_ERR_INVAL);
    free(payload);
    free(out);
}
END_TEST

START_TEST(test_decode_rfc_examples)
{
    uint8_t hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    uint8_t frag[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
    uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    uint8_t big[] = {0x82, 0x7E, 0x01, 0x00};
    struct wsc_frame f;

    ck_assert_int_eq(wsc_frame_decode(hello, sizeof hello, 100, 0, &f), 7);
    ck_assert(f.fin && f.opcode == WSC_OP_TEXT && f.len == 5);
    ck_assert_mem_eq(f.payload, "Hello", 5);
    for (size_t i = 0; i < sizeof hello; i++)
        ck_assert_int_eq(wsc_frame_decode(hello, i, 100, 0, &f), 0);

    ck_assert_int_eq(wsc_frame_decode(masked, sizeof masked, 100, 1, &f), 11);
    ck_assert_mem_eq(f.payload, "Hello", 5);

    ck_assert_int_eq(wsc_frame_decode(frag, sizeof frag, 100, 0, &f), 5);
    ck_assert(!f.fin && f.opcode == WSC_OP_TEXT && f.len == 3);
    ck_assert_int_eq(wsc_frame_decode(frag + 5, 4, 100, 0, &f), 4);
    ck_assert(f.fin && f.opcode == WSC_OP_CONT && f.len == 2);

    ck_assert_int_eq(wsc_frame_decode(ping, sizeof ping, 100, 0, &f), 7);
    ck_assert_int_eq(f.opcode, WSC_OP_PING);

    /* 256-byte binary header: more bytes needed, or too big for the limit. */
    ck_assert_int_eq(wsc_frame_decode(big, sizeof big, 1000, 0, &f), 0);
    ck_assert_int_eq(wsc_frame_decode(big, sizeof big, 255, 0, &f), OTA_ERR_LENGTH);
}
END_TEST

START_TEST(test_decode_rejects)
{
    struct wsc_frame f;
    uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    uint8_t unmasked[] = {0x81, 0x01, 'a'};
    uint8_t rsv[] = {0xC1, 0x01, 'a'};
    uint8_t opcode3[] = {0x83, 0x01, 'a'};
    uint8_t frag_ping[] = {0x09, 0x01, 'a'};
    uint8_t long_ping[] = {0x89, 0x7E, 0x00, 0x80};
    uint8_t nonminimal16[] = {0x81, 0x7E, 0x00, 0x05, 'H', 'e', 'l', 'l', 'o'};
    uint8_t nonminimal64[] = {0x81, 0x7F, 0, 0, 0, 0, 0, 0, 0x01, 0x00};
    uint8_t msb64[] = {0x81, 0x7F, 0x80, 0, 0, 0, 0, 0, 0x01, 0x00};

    /* A client must refuse masked server frames; a server, unmasked ones. */
    ck_assert_int_eq(wsc_frame_decode(masked, sizeof masked, 100, 0, &f), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_frame_decode(unmasked, sizeof unmasked, 100, 1, &f), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_frame_decode(rsv, sizeof rsv, 100, 0, &f), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_frame_decode(opcode3, sizeof opcode3, 100, 0, &f), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_frame_decode(frag_ping, sizeof frag_ping, 100, 0, &f), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_frame_decode(long_ping, sizeof long_ping, 1000, 0, &f), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_frame_decode(nonminimal16, sizeof nonminimal16, 100, 0, &f),
                     OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_frame_decode(nonminimal64, sizeof nonminimal64, 100000, 0, &f),
                     OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_frame_decode(msb64, sizeof msb64, 100000, 0, &f), OTA_ERR_PARSE);
}
END_TEST

START_TEST(test_utf8)
{
    ck_assert(wsc_utf8_valid((const uint8_t *)"plain", 5));
    ck_assert(wsc_utf8_valid((const uint8_t *)"\xc3\xa9\xe2\x80\x94\xf0\x9f\x92\xb3", 9));
    ck_assert(!wsc_utf8_valid((const uint8_t *)"\xc0\x80", 2));         /* overlong NUL */
    ck_assert(!wsc_utf8_valid((const uint8_t *)"\xe0\x80\xaf", 3));     /* overlong '/' */
    ck_assert(!wsc_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));     /* surrogate */
    ck_assert(!wsc_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ck_assert(!wsc_utf8_valid((const uint8_t *)"\xe2\x80", 2));         /* truncated */
    ck_assert(!wsc_utf8_valid((const uint8_t *)"\x80", 1));             /* lone continuation */
    ck_assert(!wsc_utf8_valid((const uint8_t *)"\xff", 1));
}
END_TEST

/* Feeds a whole byte string; returns the events in order (at most 8). */
static int feed_all(struct wsc_rx *rx, uint8_t *in, size_t len, struct wsc_event *evs, int *nev)
{
    size_t off = 0;
    *nev = 0;
    while (off < len) {
        size_t used = 0;
        int r = wsc_rx_feed(rx, in + off, len - off, &used, &evs[*nev]);
        if (r < 0)
            return r;
        if (used == 0)
            break;
        off += used;
        if (evs[*nev].type != WSC_EV_NONE && *nev < 7)
            (*nev)++;
    }
    return 0;
}

START_TEST(test_rx_fragments_with_ping)
{
    uint8_t buf[65];
    struct wsc_rx rx;
    struct wsc_event ev[8];
    int nev = 0;
    uint8_t in[] = {0x01, 0x03, 'H', 'e', 'l', 0x89, 0x02, 'h', 'i', 0x80, 0x02, 'l', 'o'};
    wsc_rx_init(&rx, buf, 64);
    ck_assert_int_eq(feed_all(&rx, in, sizeof in, ev, &nev), 0);
    ck_assert_int_eq(nev, 2);
    ck_assert_int_eq(ev[0].type, WSC_EV_PING);
    ck_assert_uint_eq(ev[0].len, 2);
    ck_assert_int_eq(ev[1].type, WSC_EV_TEXT);
    ck_assert_str_eq((const char *)ev[1].data, "Hello");
}
END_TEST

START_TEST(test_rx_incremental)
{
    uint8_t buf[65];
    struct wsc_rx rx;
    struct wsc_event ev;
    uint8_t in[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    size_t used = 1;
    wsc_rx_init(&rx, buf, 64);
    for (size_t i = 0; i < sizeof in; i++) {
        ck_assert_int_eq(wsc_rx_feed(&rx, in, i, &used, &ev), 0);
        ck_assert_uint_eq(used, 0);
        ck_assert_int_eq(ev.type, WSC_EV_NONE);
    }
    ck_assert_int_eq(wsc_rx_feed(&rx, in, sizeof in, &used, &ev), 0);
    ck_assert_uint_eq(used, sizeof in);
    ck_assert_int_eq(ev.type, WSC_EV_TEXT);
}
END_TEST

START_TEST(test_rx_close)
{
    uint8_t buf[65];
    struct wsc_rx rx;
    struct wsc_event ev;
    size_t used;
    uint8_t close_ok[] = {0x88, 0x05, 0x03, 0xE8, 'b', 'y', 'e'};
    uint8_t close_empty[] = {0x88, 0x00};
    uint8_t close_one[] = {0x88, 0x01, 0x03};
    uint8_t close_1005[] = {0x88, 0x02, 0x03, 0xED};
    uint8_t close_badutf[] = {0x88, 0x03, 0x03, 0xE8, 0xFF};

    wsc_rx_init(&rx, buf, 64);
    ck_assert_int_eq(wsc_rx_feed(&rx, close_ok, sizeof close_ok, &used, &ev), 0);
    ck_assert_int_eq(ev.type, WSC_EV_CLOSE);
    ck_assert_uint_eq(ev.code, 1000);
    ck_assert_uint_eq(ev.len, 3);
    ck_assert_mem_eq(ev.data, "bye", 3);
    ck_assert_int_eq(wsc_rx_feed(&rx, close_empty, sizeof close_empty, &used, &ev), 0);
    ck_assert_uint_eq(ev.code, WSC_CLOSE_NO_STATUS);
    ck_assert_int_eq(wsc_rx_feed(&rx, close_one, sizeof close_one, &used, &ev), OTA_ERR_PARSE);
    ck_assert_uint_eq(rx.close_code, WSC_CLOSE_PROTOCOL);
    wsc_rx_init(&rx, buf, 64);
    ck_assert_int_eq(wsc_rx_feed(&rx, close_1005, sizeof close_1005, &used, &ev), OTA_ERR_PARSE);
    ck_assert_uint_eq(rx.close_code, WSC_CLOSE_PROTOCOL);
    wsc_rx_init(&rx, buf, 64);
    ck_assert_int_eq(wsc_rx_feed(&rx, close_badutf, sizeof close_badutf, &used, &ev),
                     OTA_ERR_PARSE);
    ck_assert_uint_eq(rx.close_code, WSC_CLOSE_BAD_DATA);
}
END_TEST

START_TEST(test_rx_errors)
{
    uint8_t buf[9];
    struct wsc_rx rx;
    struct wsc_event ev;
    size_t used;
    uint8_t cont_first[] = {0x80, 0x01, 'a'};
    uint8_t text_in_text[] = {0x01, 0x01, 'a', 0x81, 0x01, 'b'};
    uint8_t bad_utf8[] = {0x81, 0x02, 0xC0, 0x80};
    uint8_t too_big[] = {0x81, 0x09, '1', '2', '3', '4', '5', '6', '7', '8', '9'};
    uint8_t too_big_frag[] = {0x01, 0x05, '1', '2', '3', '4', '5', 0x80, 0x04, '6', '7', '8', '9'};
    uint8_t binary[] = {0x82, 0x02, 0x00, 0xFF};

    wsc_rx_init(&rx, buf, 8);
    ck_assert_int_eq(wsc_rx_feed(&rx, cont_first, sizeof cont_first, &used, &ev), OTA_ERR_PARSE);
    ck_assert_uint_eq(rx.close_code, WSC_CLOSE_PROTOCOL);

    wsc_rx_init(&rx, buf, 8);
    ck_assert_int_eq(wsc_rx_feed(&rx, text_in_text, sizeof text_in_text, &used, &ev), 0);
    ck_assert_uint_eq(used, 3);
    ck_assert_int_eq(wsc_rx_feed(&rx, text_in_text + 3, 3, &used, &ev), OTA_ERR_PARSE);
    ck_assert_uint_eq(rx.close_code, WSC_CLOSE_PROTOCOL);

    wsc_rx_init(&rx, buf, 8);
    ck_assert_int_eq(wsc_rx_feed(&rx, bad_utf8, sizeof bad_utf8, &used, &ev), OTA_ERR_PARSE);
    ck_assert_uint_eq(rx.close_code, WSC_CLOSE_BAD_DATA);

    wsc_rx_init(&rx, buf, 8);
    ck_assert_int_eq(wsc_rx_feed(&rx, too_big, sizeof too_big, &used, &ev), OTA_ERR_LENGTH);
    ck_assert_uint_eq(rx.close_code, WSC_CLOSE_TOO_BIG);

    wsc_rx_init(&rx, buf, 8);
    ck_assert_int_eq(wsc_rx_feed(&rx, too_big_frag, sizeof too_big_frag, &used, &ev), 0);
    ck_assert_int_eq(wsc_rx_feed(&rx, too_big_frag + 7, 6, &used, &ev), OTA_ERR_LENGTH);
    ck_assert_uint_eq(rx.close_code, WSC_CLOSE_TOO_BIG);

    wsc_rx_init(&rx, buf, 8);
    ck_assert_int_eq(wsc_rx_feed(&rx, binary, sizeof binary, &used, &ev), 0);
    ck_assert_int_eq(ev.type, WSC_EV_BINARY);
    ck_assert_uint_eq(ev.len, 2);
}
END_TEST

START_TEST(test_close_payload)
{
    uint8_t p[WSC_CONTROL_MAX];
    char reason[200];
    size_t n = wsc_close_payload(p, 1009, "too big");
    ck_assert_uint_eq(n, 9);
    ck_assert(p[0] == 0x03 && p[1] == 0xF1);
    ck_assert_mem_eq(p + 2, "too big", 7);
    /* A long reason is cut to 123 bytes without splitting a character. */
    memset(reason, 'a', sizeof reason);
    memcpy(reason + 122, "\xc3\xa9", 2);
    reason[199] = '\0';
    n = wsc_close_payload(p, 1000, reason);
    ck_assert_uint_eq(n, 2 + 122);
    ck_assert(wsc_utf8_valid(p + 2, n - 2));
}
END_TEST

START_TEST(test_url_parse)
{
    struct wsc_url u;
    ck_assert_int_eq(wsc_url_parse("ws://127.0.0.1:8080/v1/session", &u), 0);
    ck_assert(!u.tls);
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_str_eq(u.port, "8080");
    ck_assert_str_eq(u.path, "/v1/session");
    ck_assert_str_eq(u.host_header, "127.0.0.1:8080");

    ck_assert_int_eq(wsc_url_parse("wss://gw.example.com", &u), 0);
    ck_assert(u.tls);
    ck_assert_str_eq(u.port, "443");
    ck_assert_str_eq(u.path, "/");
    ck_assert_str_eq(u.host_header, "gw.example.com");

    ck_assert_int_eq(wsc_url_parse("WS://[::1]:9001/x?y=1", &u), 0);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_str_eq(u.port, "9001");
    ck_assert_str_eq(u.path, "/x?y=1");
    ck_assert_str_eq(u.host_header, "[::1]:9001");

    ck_assert_int_eq(wsc_url_parse("ws://h?q", &u), 0);
    ck_assert_str_eq(u.path, "/?q");
    ck_assert_str_eq(u.port, "80");

    ck_assert_int_eq(wsc_url_parse("http://h/", &u), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_url_parse("ws://user@h/", &u), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_url_parse("ws://h:0/", &u), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_url_parse("ws://h:65536/", &u), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_url_parse("ws://h:8x/", &u), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_url_parse("ws://:80/", &u), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_url_parse("ws://h/#frag", &u), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_url_parse("ws://h/a b", &u), OTA_ERR_PARSE);
    ck_assert_int_eq(wsc_url_parse("ws://[::1/", &u), OTA_ERR_PARSE);
}
END_TEST

static Suite *ws_proto_suite(void)
{
    Suite *s = suite_create("ws_proto");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_accept_rfc_example);
    tcase_add_test(tc, test_make_key);
    tcase_add_test(tc, test_build_request);
    tcase_add_test(tc, test_parse_response_ok);
    tcase_add_test(tc, test_parse_response_rejects);
    tcase_add_test(tc, test_parse_response_too_long);
    tcase_add_test(tc, test_encode_rfc_masked_hello);
    tcase_add_test(tc, test_encode_lengths);
    tcase_add_test(tc, test_decode_rfc_examples);
    tcase_add_test(tc, test_decode_rejects);
    tcase_add_test(tc, test_utf8);
    tcase_add_test(tc, test_rx_fragments_with_ping);
    tcase_add_test(tc, test_rx_incremental);
    tcase_add_test(tc, test_rx_close);
    tcase_add_test(tc, test_rx_errors);
    tcase_add_test(tc, test_close_payload);
    tcase_add_test(tc, test_url_parse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;
    if (sodium_init() < 0)
        return 1;
    sr = srunner_create(ws_proto_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
