/* Unit tests of tools/ws_client.c against a scripted server: a forked child
 * on a loopback port that answers the upgrade, sends chosen bytes and
 * checks what the client sends back (pongs, close codes, masked text).  The
 * child's exit status is its verdict; every wait is bounded by alarm(). */
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <sodium.h>

#include "ota_err.h"
#include "ws_client.h"
#include "ws_proto.h"

/* What the scripted server does after (or instead of) a good upgrade. */
enum script {
    SCRIPT_FRAGMENTS_PING_CLOSE,
    SCRIPT_TOO_BIG,
    SCRIPT_MASKED,
    SCRIPT_REFUSE_403,
    SCRIPT_BAD_ACCEPT,
    SCRIPT_SILENT_THEN_CLOSE,
    SCRIPT_EOF,
    SCRIPT_READ_TEXT,
    SCRIPT_BAD_UTF8,
    SCRIPT_BINARY,
    SCRIPT_FRAME_WITH_101,
};

static uint8_t srv_buf[65536];
static size_t srv_len;

static int srv_read_more(int fd)
{
    ssize_t n;
    if (srv_len >= sizeof srv_buf)
        return -1;
    n = read(fd, srv_buf + srv_len, sizeof srv_buf - srv_len);
    if (n <= 0)
        return -1;
    srv_len += (size_t)n;
    return 0;
}

/* Reads one client frame (must be masked); returns its opcode or -1. */
static int srv_read_frame(int fd, uint8_t *payload, size_t cap, size_t *len)
{
    for (;;) {
        struct wsc_frame f;
        int n = wsc_frame_decode(srv_buf, srv_len, sizeof srv_buf, 1, &f);
        if (n < 0)
            return -1;
        if (n > 0) {
            if (f.len > cap)
                return -1;
            memcpy(payload, f.payload, f.len);
            *len = f.len;
            memmove(srv_buf, srv_buf + n, srv_len - (size_t)n);
            srv_len -= (size_t)n;
            return f.opcode;
        }
        if (srv_read_more(fd) != 0)
            return -1;
    }
}

static int srv_write(int fd, const void *p, size_t n)
{
    return write(fd, p, n) == (ssize_t)n ? 0 : -1;
}

/* Expects a close frame with this code from the client. */
static int srv_expect_close(int fd, uint16_t code)
{
    uint8_t p[200];
    size_t n = 0;
    int op = srv_read_frame(fd, p, sizeof p, &n);
    return op == WSC_OP_CLOSE && n >= 2 && ((p[0] << 8) | p[1]) == code ? 0 : 1;
}

static int srv_handshake(int fd, enum script sc)
{
    char key[WSC_KEY_LEN + 1], accept[WSC_ACCEPT_LEN + 1], resp[512];
    const char *k, *end;
    for (;;) {
        srv_buf[srv_len < sizeof srv_buf ? srv_len : sizeof srv_buf - 1] = '\0';
        if (strstr((const char *)srv_buf, "\r\n\r\n") != NULL)
            break;
        if (srv_read_more(fd) != 0)
            return -1;
    }
    k = strstr((const char *)srv_buf, "Sec-WebSocket-Key: ");
    if (k == NULL || strncmp((const char *)srv_buf, "GET /v1/session HTTP/1.1\r\n", 26) != 0)
        return -1;
    k += 19;
    end = strstr(k, "\r\n");
    if (end == NULL || end - k != WSC_KEY_LEN)
        return -1;
    memcpy(key, k, WSC_KEY_LEN);
    key[WSC_KEY_LEN] = '\0';
    srv_len = 0;
    if (sc == SCRIPT_REFUSE_403)
        return srv_write(fd, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 45);
    if (wsc_accept_for_key(key, accept) != 0)
        return -1;
    if (sc == SCRIPT_BAD_ACCEPT)
        accept[0] = accept[0] == 'A' ? 'B' : 'A';
    snprintf(resp, sizeof resp,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n%s",
             accept, sc == SCRIPT_FRAME_WITH_101 ? "\x81\x02hi" : "");
    return srv_write(fd, resp, strlen(resp));
}

static int srv_script(int fd, enum script sc)
{
    uint8_t p[256];
    size_t n = 0;
    switch (sc) {
    case SCRIPT_FRAGMENTS_PING_CLOSE: {
        static const uint8_t out[] = {0x01, 0x03, 'h', 'e',  'l',  0x89, 0x03,
                                      'p',  'i',  'n', 0x80, 0x02, 'l',  'o'};
        static const uint8_t close_done[] = {0x88, 0x06, 0x03, 0xE8, 'd', 'o', 'n', 'e'};
        if (srv_write(fd, out, sizeof out) != 0)
            return 2;
        /* The pong carries the ping's payload. */
        if (srv_read_frame(fd, p, sizeof p, &n) != WSC_OP_PONG || n != 3 || memcmp(p, "pin", 3))
            return 3;
        if (srv_write(fd, close_done, sizeof close_done) != 0)
            return 4;
        return srv_expect_close(fd, 1000) == 0 ? 0 : 5;
    }
    case SCRIPT_TOO_BIG: {
        static uint8_t big[4 + 20000];
        big[0] = 0x81;
        big[1] = 126;
        big[2] = 20000 >> 8;
        big[3] = 20000 & 0xFF;
        memset(big + 4, 'a', 20000);
        if (srv_write(fd, big, sizeof big) != 0)
            return 2;
        return srv_expect_close(fd, 1009) == 0 ? 0 : 3;
    }
    case SCRIPT_MASKED: {
        static const uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                         0x7f, 0x9f, 0x4d, 0x51, 0x58};
        if (srv_write(fd, masked, sizeof masked) != 0)
            return 2;
        return srv_expect_close(fd, 1002) == 0 ? 0 : 3;
    }
    case SCRIPT_BAD_UTF8: {
        static const uint8_t bad[] = {0x81, 0x02, 0xC0, 0x80};
        if (srv_write(fd, bad, sizeof bad) != 0)
            return 2;
        return srv_expect_close(fd, 1007) == 0 ? 0 : 3;
    }
    case SCRIPT_BINARY: {
        static const uint8_t bin[] = {0x82, 0x01, 0x00};
        if (srv_write(fd, bin, sizeof bin) != 0)
            return 2;
        return srv_expect_close(fd, 1003) == 0 ? 0 : 3;
    }
    case SCRIPT_SILENT_THEN_CLOSE: {
        static const uint8_t echo[] = {0x88, 0x02, 0x03, 0xE8};
        if (srv_expect_close(fd, 1000) != 0)
            return 2;
        return srv_write(fd, echo, sizeof echo) == 0 ? 0 : 3;
    }
    case SCRIPT_READ_TEXT:
        if (srv_read_frame(fd, p, sizeof p, &n) != WSC_OP_TEXT || n != 15 ||
            memcmp(p, "{\"type\":\"ping\"}", 15) != 0)
            return 2;
        return 0;
    case SCRIPT_FRAME_WITH_101:
    case SCRIPT_EOF:
    case SCRIPT_REFUSE_403:
    case SCRIPT_BAD_ACCEPT:
        return 0;
    }
    return 9;
}

/* Starts the scripted server; returns its pid and sets *url. */
static pid_t srv_start(enum script sc, struct wsc_url *url)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    char u[64];
    pid_t pid;

    ck_assert_int_ge(ls, 0);
    ck_assert_int_eq(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(ls, 1), 0);
    ck_assert_int_eq(getsockname(ls, (struct sockaddr *)&a, &al), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd, rc;
        alarm(10);
        fd = accept(ls, NULL, NULL);
        if (fd < 0)
            _exit(7);
        srv_len = 0;
        if (srv_handshake(fd, sc) != 0)
            _exit(8);
        rc = srv_script(fd, sc);
        close(fd);
        _exit(rc);
    }
    close(ls);
    snprintf(u, sizeof u, "ws://127.0.0.1:%u/v1/session", ntohs(a.sin_port));
    ck_assert_int_eq(wsc_url_parse(u, url), 0);
    return pid;
}

static int srv_verdict(pid_t pid)
{
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static struct wsc_client *client_connect(const struct wsc_url *url, size_t max_message)
{
    struct wsc_client_opts o = {.max_message = max_message, .connect_timeout_ms = 5000};
    struct wsc_client *c = NULL;
    char err[256];
    int r = wsc_client_connect(url, &o, &c, err, sizeof err);
    ck_assert_msg(r == 0, "connect: %s", err);
    return c;
}

START_TEST(test_fragments_ping_close)
{
    struct wsc_url url;
    pid_t pid = srv_start(SCRIPT_FRAGMENTS_PING_CLOSE, &url);
    struct wsc_client *c = client_connect(&url, 4096);
    const char *m = NULL;
    size_t n = 0;
    ck_assert_int_eq(wsc_client_recv(c, 5000, &m, &n), WSC_RECV_MESSAGE);
    ck_assert_uint_eq(n, 5);
    ck_assert_str_eq(m, "hello");
    ck_assert_int_eq(wsc_client_recv(c, 5000, &m, &n), WSC_RECV_CLOSED);
    ck_assert_uint_eq(wsc_client_close_code(c), 1000);
    ck_assert_str_eq(wsc_client_close_reason(c), "done");
    wsc_client_free(c);
    ck_assert_int_eq(srv_verdict(pid), 0);
}
END_TEST

static void expect_protocol_close(enum script sc, int want_err)
{
    struct wsc_url url;
    pid_t pid = srv_start(sc, &url);
    struct wsc_client *c = client_connect(&url, 4096);
    const char *m = NULL;
    size_t n = 0;
    ck_assert_int_eq(wsc_client_recv(c, 5000, &m, &n), want_err);
    ck_assert_str_ne(wsc_client_error(c), "");
    wsc_client_free(c);
    ck_assert_int_eq(srv_verdict(pid), 0);
}

START_TEST(test_too_big_closes_1009)
{
    expect_protocol_close(SCRIPT_TOO_BIG, OTA_ERR_LENGTH);
}
END_TEST

START_TEST(test_masked_server_frame_closes_1002)
{
    expect_protocol_close(SCRIPT_MASKED, OTA_ERR_PARSE);
}
END_TEST

START_TEST(test_bad_utf8_closes_1007)
{
    expect_protocol_close(SCRIPT_BAD_UTF8, OTA_ERR_PARSE);
}
END_TEST

START_TEST(test_binary_closes_1003)
{
    expect_protocol_close(SCRIPT_BINARY, OTA_ERR_PARSE);
}
END_TEST

START_TEST(test_refused_and_bad_accept)
{
    struct wsc_url url;
    struct wsc_client_opts o = {.connect_timeout_ms = 5000};
    struct wsc_client *c = NULL;
    char err[256];
    pid_t pid = srv_start(SCRIPT_REFUSE_403, &url);
    ck_assert_int_eq(wsc_client_connect(&url, &o, &c, err, sizeof err), OTA_ERR_STATE);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(err, "403"));
    ck_assert_int_eq(srv_verdict(pid), 0);

    pid = srv_start(SCRIPT_BAD_ACCEPT, &url);
    ck_assert_int_eq(wsc_client_connect(&url, &o, &c, err, sizeof err), OTA_ERR_PARSE);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(srv_verdict(pid), 0);
}
END_TEST

START_TEST(test_timeout_then_close_handshake)
{
    struct wsc_url url;
    pid_t pid = srv_start(SCRIPT_SILENT_THEN_CLOSE, &url);
    struct wsc_client *c = client_connect(&url, 4096);
    const char *m = NULL;
    size_t n = 0;
    ck_assert_int_eq(wsc_client_recv(c, 100, &m, &n), WSC_RECV_TIMEOUT);
    ck_assert_int_eq(wsc_client_close(c, WSC_CLOSE_NORMAL, NULL, 5000), 0);
    ck_assert_uint_eq(wsc_client_close_code(c), 1000);
    wsc_client_free(c);
    ck_assert_int_eq(srv_verdict(pid), 0);
}
END_TEST

START_TEST(test_eof_without_close)
{
    struct wsc_url url;
    pid_t pid = srv_start(SCRIPT_EOF, &url);
    struct wsc_client *c = client_connect(&url, 4096);
    const char *m = NULL;
    size_t n = 0;
    ck_assert_int_eq(wsc_client_recv(c, 5000, &m, &n), OTA_ERR_IO);
    ck_assert_uint_eq(wsc_client_close_code(c), WSC_CLOSE_ABNORMAL);
    wsc_client_free(c);
    ck_assert_int_eq(srv_verdict(pid), 0);
}
END_TEST

START_TEST(test_send_text_masked)
{
    struct wsc_url url;
    pid_t pid = srv_start(SCRIPT_READ_TEXT, &url);
    struct wsc_client *c = client_connect(&url, 4096);
    ck_assert_int_eq(wsc_client_send_text(c, "{\"type\":\"ping\"}", 15), 0);
    ck_assert_int_eq(srv_verdict(pid), 0);
    wsc_client_free(c);
}
END_TEST

START_TEST(test_frame_in_same_packet_as_101)
{
    struct wsc_url url;
    pid_t pid = srv_start(SCRIPT_FRAME_WITH_101, &url);
    struct wsc_client *c = client_connect(&url, 4096);
    const char *m = NULL;
    size_t n = 0;
    ck_assert_int_eq(wsc_client_recv(c, 5000, &m, &n), WSC_RECV_MESSAGE);
    ck_assert_str_eq(m, "hi");
    wsc_client_free(c);
    ck_assert_int_eq(srv_verdict(pid), 0);
}
END_TEST

START_TEST(test_connect_refused)
{
    struct wsc_url url;
    struct wsc_client_opts o = {.connect_timeout_ms = 2000};
    struct wsc_client *c = NULL;
    char err[256];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    char u[64];
    /* A port that was just free and has no listener. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s);
    snprintf(u, sizeof u, "ws://127.0.0.1:%u/", ntohs(a.sin_port));
    ck_assert_int_eq(wsc_url_parse(u, &url), 0);
    ck_assert_int_eq(wsc_client_connect(&url, &o, &c, err, sizeof err), OTA_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "refused"));
}
END_TEST

static Suite *ws_client_suite(void)
{
    Suite *s = suite_create("ws_client");
    TCase *tc = tcase_create("scripted server");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_fragments_ping_close);
    tcase_add_test(tc, test_too_big_closes_1009);
    tcase_add_test(tc, test_masked_server_frame_closes_1002);
    tcase_add_test(tc, test_bad_utf8_closes_1007);
    tcase_add_test(tc, test_binary_closes_1003);
    tcase_add_test(tc, test_refused_and_bad_accept);
    tcase_add_test(tc, test_timeout_then_close_handshake);
    tcase_add_test(tc, test_eof_without_close);
    tcase_add_test(tc, test_send_text_masked);
    tcase_add_test(tc, test_frame_in_same_packet_as_101);
    tcase_add_test(tc, test_connect_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;
    if (sodium_init() < 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    sr = srunner_create(ws_client_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
