/* Tests for gateway/session.c through its callbacks: the connection
 * reports to it through sess_conn_io (a real conn.c on one end of a
 * socketpair, the test a WebSocket client on the other), the pool through
 * sess_pool_io (a real pool and worker process, gw_rig.c, the test
 * speaking for the worker).  A session's messages become wire frames and
 * back; it ends once, with a result or because the client left, and its
 * worker is told unless the worker ended it. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "gateway/conn.h"
#include "gateway/ipcount.h"
#include "gateway/session.h"
#include "gw_rig.h"
#include "wire.h"

struct fixture {
    struct rig r;
    struct sess_ctx ctx;
    int fd;            /* the client's end */
    uint8_t in[65536]; /* bytes from the gateway not yet taken */
    size_t inlen;
};

static void client_write(struct fixture *f, const void *p, size_t n)
{
    ck_assert_int_eq(write(f->fd, p, n), (ssize_t)n);
}

/* Reads until at least n bytes are buffered, running the loop meanwhile;
 * 0 at EOF or timeout. */
static int client_fill(struct fixture *f, size_t n)
{
    for (int i = 0; i < 10000 && f->inlen < n; i++) {
        ssize_t got = recv(f->fd, f->in + f->inlen, sizeof f->in - f->inlen, MSG_DONTWAIT);
        if (got == 0)
            return 0;
        if (got > 0)
            f->inlen += (size_t)got;
        else
            rig_turn(&f->r);
    }
    return f->inlen >= n;
}

static void client_take(struct fixture *f, size_t n)
{
    memmove(f->in, f->in + n, f->inlen - n);
    f->inlen -= n;
}

static void setup(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    rig_init(&f->r, &sess_pool_io, &f->ctx);
    f->ctx.gw = &f->r.g;
    f->ctx.pool = f->r.pool;
    f->r.g.ips = ipcount_new(64);
    ck_assert_ptr_nonnull(f->r.g.ips);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    f->fd = sv[1];
    evutil_make_socket_nonblocking(sv[0]);
    struct bufferevent *bev = bufferevent_socket_new(f->r.g.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    ck_assert_ptr_nonnull(bev);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    conn_accept(&f->r.g, bev, (struct sockaddr *)&sa, sizeof sa, WIRE_LISTENER_PUBLIC,
                &sess_conn_io, &f->ctx);
    static const char req[] =
        "GET /v1/session HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    client_write(f, req, sizeof req - 1);
    for (;;) {
        ck_assert_msg(client_fill(f, f->inlen + 1), "no upgrade answer");
        char *end = memmem(f->in, f->inlen, "\r\n\r\n", 4);
        if (!end)
            continue;
        ck_assert_msg(memcmp(f->in, "HTTP/1.1 101", 12) == 0, "upgrade refused");
        client_take(f, (size_t)(end + 4 - (char *)f->in));
        break;
    }
}

static void teardown(struct fixture *f)
{
    if (f->fd >= 0)
        close(f->fd);
    conn_free_all(&f->r.g);
    ipcount_free(f->r.g.ips);
    rig_free(&f->r);
}

/* A masked text frame, as a client sends it. */
static void client_text(struct fixture *f, const char *text)
{
    size_t n = strlen(text);
    uint8_t frame[1024], mask[4] = {0x11, 0x22, 0x33, 0x44};
    size_t h = 0;
    ck_assert_uint_lt(n, sizeof frame - 8);
    frame[h++] = 0x81;
    if (n < 126) {
        frame[h++] = (uint8_t)(0x80 | n);
    } else {
        frame[h++] = 0x80 | 126;
        frame[h++] = (uint8_t)(n >> 8);
        frame[h++] = (uint8_t)n;
    }
    memcpy(frame + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        frame[h + i] = (uint8_t)text[i] ^ mask[i % 4];
    client_write(f, frame, h + n);
}

/* The next frame from the gateway (never masked, never fragmented here):
 * its opcode, with the payload NUL-terminated in out. */
static int client_frame(struct fixture *f, char *out, size_t cap)
{
    ck_assert_msg(client_fill(f, 2), "no frame from the gateway");
    int op = f->in[0] & 0x0f;
    size_t n = f->in[1] & 0x7f, h = 2;
    if (n == 126) {
        ck_assert(client_fill(f, 4));
        n = (size_t)f->in[2] << 8 | f->in[3];
        h = 4;
    }
    ck_assert(client_fill(f, h + n));
    ck_assert_uint_lt(n, cap);
    memcpy(out, f->in + h, n);
    out[n] = '\0';
    client_take(f, h + n);
    return op;
}

static void expect_text(struct fixture *f, const char *needle)
{
    char text[4096];
    ck_assert_int_eq(client_frame(f, text, sizeof text), 1);
    ck_assert_msg(strstr(text, needle), "\"%s\" not in %s", needle, text);
}

static void expect_close(struct fixture *f, unsigned code)
{
    char p[256];
    ck_assert_int_eq(client_frame(f, p, sizeof p), 8);
    ck_assert_uint_eq((unsigned)(uint8_t)p[0] << 8 | (uint8_t)p[1], code);
}

/* The next frame for the worker: its header (and the frame in buf). */
static struct wire_hdr worker_gets(struct fixture *f, uint8_t type, uint8_t *buf, int *n)
{
    struct wire_hdr h;
    *n = rig_recv(&f->r, buf, WIRE_MAX_FRAME);
    ck_assert_int_gt(*n, 0);
    ck_assert_int_eq(wire_decode_hdr(buf, (size_t)*n, &h), 0);
    ck_assert_uint_eq(h.type, type);
    return h;
}

#define CHECK_OP                                                                                   \
    "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":\"04A1B2C3D4E5F6\","                  \
    "\"tech\":\"IsoDep\",\"requestId\":\"r1\"}"
#define TOPUP_OP                                                                                   \
    "{\"type\":\"operation\",\"operation\":\"topup\",\"uid\":\"04A1B2C3D4E5F6\","                  \
    "\"tech\":\"IsoDep\",\"authCode\":\"ABCD-EFGH\",\"requestId\":\"r2\"}"

START_TEST(a_session_from_operation_to_result)
{
    struct fixture f;
    setup(&f);
    rig_worker_ready(&f.r, 4);
    rig_worker_heartbeat(&f.r, 1);
    client_text(&f, CHECK_OP);
    uint8_t fr[WIRE_MAX_FRAME];
    int n;
    struct wire_hdr h = worker_gets(&f, WIRE_OPEN, fr, &n);
    struct wire_open o;
    ck_assert_int_eq(wire_decode_open(&h, fr, &o, &f.r.seal), 0);
    ck_assert_uint_eq(o.op, WIRE_OP_CHECK);
    ck_assert_uint_eq(o.uid_len, 7);
    ck_assert_mem_eq(o.uid, "\x04\xa1\xb2\xc3\xd4\xe5\xf6", 7);
    ck_assert_uint_eq(o.listener, WIRE_LISTENER_PUBLIC);
    ck_assert_ptr_nonnull(gw_session_find(&f.r.g, h.session));
    ck_assert_uint_eq(f.r.g.nsessions, 1);

    uint64_t id = h.session;
    rig_send(&f.r, fr,
             wire_encode_bytes(fr, sizeof fr, WIRE_MODAL, id, (const uint8_t *)"Hold", 4));
    static const uint8_t apdu[] = {0x90, 0x6c, 0x00, 0x00, 0x01, 0x00, 0x00};
    rig_send(&f.r, fr, wire_encode_bytes(fr, sizeof fr, WIRE_COMMAND, id, apdu, sizeof apdu));
    expect_text(&f, "\"message\":\"Hold\"");
    expect_text(&f, "\"data\":\"906c0000010000\"");

    client_text(&f, "{\"type\":\"response\",\"data\":\"0A0000009100\"}");
    h = worker_gets(&f, WIRE_CARD_RESPONSE, fr, &n);
    ck_assert_uint_eq(h.session, id);
    struct wire_bytes b;
    ck_assert_int_eq(wire_decode_bytes(&h, fr, &b), 0);
    ck_assert_uint_eq(b.len, 6);
    ck_assert_mem_eq(b.data, "\x0a\x00\x00\x00\x91\x00", 6);

    struct wire_result res = {.op = WIRE_OP_CHECK, .status = WIRE_ST_OK};
    rig_send(&f.r, fr, wire_encode_result(fr, sizeof fr, id, &res));
    expect_text(&f, "\"status\":\"ok\"");
    expect_close(&f, 1000);
    ck_assert_uint_eq(f.r.g.nsessions, 0);
    ck_assert_ptr_null(gw_session_find(&f.r.g, id));
    struct pool_worker_info wi;
    pool_info(f.r.pool, 0, &wi);
    ck_assert_uint_eq(wi.sessions, 0);
    /* The worker ended it: nothing more goes to the worker. */
    ck_assert_int_eq(rig_quiet(&f.r, 100), 0);
    teardown(&f);
}
END_TEST

START_TEST(a_lost_worker_with_money_at_risk_gives_pending)
{
    struct fixture f;
    setup(&f);
    rig_worker_ready(&f.r, 4);
    client_text(&f, TOPUP_OP);
    uint8_t fr[WIRE_MAX_FRAME];
    int n;
    struct wire_hdr h = worker_gets(&f, WIRE_OPEN, fr, &n);
    /* The authCode crosses sealed to the worker's READY key (ZeroMQ keeps
     * copies of the frames it sent): never in clear, and the key opens it. */
    ck_assert_ptr_null(memmem(fr, (size_t)n, "ABCD", 4));
    ck_assert_ptr_null(memmem(fr, (size_t)n, "EFGH", 4));
    struct wire_open o;
    ck_assert_int_eq(wire_decode_open(&h, fr, &o, &f.r.seal), 0);
    ck_assert_str_eq(o.authcode, "ABCD-EFGH");
    struct wire_phase ph = {.at_risk = 1};
    rig_send(&f.r, fr, wire_encode_phase(fr, sizeof fr, h.session, &ph));
    /* The phase frame is processed before the worker dies. */
    rig_send(&f.r, fr,
             wire_encode_bytes(fr, sizeof fr, WIRE_MODAL, h.session, (const uint8_t *)"Wait", 4));
    expect_text(&f, "\"message\":\"Wait\"");
    ck_assert_int_eq(kill(f.r.worker_pid, SIGKILL), 0);
    expect_text(&f, "\"status\":\"pending\"");
    expect_close(&f, 1000);
    ck_assert_uint_eq(f.r.g.nsessions, 0);
    teardown(&f);
}
END_TEST

START_TEST(a_client_that_leaves_is_reported_to_the_worker)
{
    struct fixture f;
    setup(&f);
    rig_worker_ready(&f.r, 4);
    client_text(&f, CHECK_OP);
    uint8_t fr[WIRE_MAX_FRAME];
    int n;
    struct wire_hdr open = worker_gets(&f, WIRE_OPEN, fr, &n);
    close(f.fd);
    f.fd = -1;
    struct wire_hdr gone = worker_gets(&f, WIRE_CLIENT_GONE, fr, &n);
    ck_assert_uint_eq(gone.session, open.session);
    RIG_WAIT(&f.r, f.r.g.nconns == 0);
    ck_assert_uint_eq(f.r.g.nsessions, 0);
    teardown(&f);
}
END_TEST

START_TEST(frames_for_another_session_or_worker_are_dropped)
{
    struct fixture f;
    setup(&f);
    rig_worker_ready(&f.r, 4);
    client_text(&f, CHECK_OP);
    uint8_t fr[WIRE_MAX_FRAME];
    int n;
    struct wire_hdr h = worker_gets(&f, WIRE_OPEN, fr, &n);
    struct wire_result res = {.op = WIRE_OP_CHECK, .status = WIRE_ST_OK};
    rig_send(&f.r, fr, wire_encode_result(fr, sizeof fr, h.session ^ 1, &res));
    rig_send(&f.r, fr,
             wire_encode_bytes(fr, sizeof fr, WIRE_MODAL, h.session, (const uint8_t *)"Still", 5));
    /* The result for an unknown id ended nothing: the modal comes. */
    expect_text(&f, "\"message\":\"Still\"");
    ck_assert_uint_eq(f.r.g.nsessions, 1);
    teardown(&f);
}
END_TEST

START_TEST(no_live_worker_is_overloaded)
{
    struct fixture f;
    setup(&f);
    client_text(&f, CHECK_OP);
    expect_text(&f, "\"error\":\"overloaded\"");
    expect_close(&f, 1000);
    ck_assert_uint_eq(f.r.g.nsessions, 0);
    teardown(&f);
}
END_TEST

START_TEST(a_second_operation_is_a_bad_request)
{
    struct fixture f;
    setup(&f);
    rig_worker_ready(&f.r, 4);
    client_text(&f, CHECK_OP);
    uint8_t fr[WIRE_MAX_FRAME];
    int n;
    struct wire_hdr open = worker_gets(&f, WIRE_OPEN, fr, &n);
    client_text(&f, CHECK_OP);
    expect_text(&f, "\"error\":\"bad-request\"");
    expect_close(&f, 1000);
    struct wire_hdr gone = worker_gets(&f, WIRE_CLIENT_GONE, fr, &n);
    ck_assert_uint_eq(gone.session, open.session);
    teardown(&f);
}
END_TEST

#define CHECK_OP_V2                                                                                \
    "{\"type\":\"operation\",\"operation\":\"check\",\"uid\":\"04A1B2C3D4E5F6\","                  \
    "\"tech\":\"IsoDep\",\"batch\":3,\"requestId\":\"r3\"}"

/* A v2 session opened with batch 3, the worker's first WIRE_COMMANDS (two
 * APDUs) on its way to the client: the OPEN's header in *open. */
static void v2_batch_out(struct fixture *f, struct wire_hdr *open)
{
    uint8_t fr[WIRE_MAX_FRAME];
    int n;
    rig_worker_ready(&f->r, 4);
    client_text(f, CHECK_OP_V2);
    *open = worker_gets(f, WIRE_OPEN, fr, &n);
    struct wire_open o;
    ck_assert_int_eq(wire_decode_open(open, fr, &o, &f->r.seal), 0);
    ck_assert_uint_eq(o.batch, 3);
    static struct wire_apdus b;
    memset(&b, 0, sizeof b);
    b.n = 2;
    b.a[0].len = 2;
    memcpy(b.a[0].data, "\x90\x5a", 2);
    b.a[1].len = 3;
    memcpy(b.a[1].data, "\x90\xaa\x00", 3);
    rig_send(&f->r, fr, wire_encode_apdus(fr, sizeof fr, WIRE_COMMANDS, open->session, &b));
    expect_text(f, "\"type\":\"commands\"");
}

START_TEST(a_v2_batch_goes_out_as_commands_and_back_as_responses)
{
    struct fixture f;
    setup(&f);
    struct wire_hdr open;
    v2_batch_out(&f, &open);
    /* Fewer answers than commands (the client stopped) pass on unread. */
    client_text(&f, "{\"type\":\"responses\",\"data\":[\"9100\"],\"error\":\"lost-tag\"}");
    uint8_t fr[WIRE_MAX_FRAME];
    int n;
    struct wire_hdr h = worker_gets(&f, WIRE_CARD_RESPONSES, fr, &n);
    ck_assert_uint_eq(h.session, open.session);
    static struct wire_apdus d;
    ck_assert_int_eq(wire_decode_apdus(&h, fr, &d), 0);
    ck_assert_uint_eq(d.n, 1);
    ck_assert_uint_eq(d.err, WIRE_CERR_LOST_TAG);
    ck_assert_mem_eq(d.a[0].data, "\x91\x00", 2);
    struct wire_result res = {
        .op = WIRE_OP_CHECK, .status = WIRE_ST_FAILED, .error = WIRE_E_LOST_TAG};
    rig_send(&f.r, fr, wire_encode_result(fr, sizeof fr, open.session, &res));
    expect_text(&f, "\"status\":\"failed\"");
    expect_close(&f, 1000);
    teardown(&f);
}
END_TEST

START_TEST(a_batch_answered_wrongly_is_a_bad_request)
{
    static const char *wrong[] = {
        "{\"type\":\"response\",\"data\":\"9100\"}",                      /* v1 answer */
        "{\"type\":\"responses\",\"data\":[\"9100\",\"9100\",\"9100\"]}", /* more */
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        struct fixture f;
        setup(&f);
        struct wire_hdr open;
        v2_batch_out(&f, &open);
        client_text(&f, wrong[i]);
        expect_text(&f, "\"error\":\"bad-request\"");
        expect_close(&f, 1000);
        uint8_t fr[WIRE_MAX_FRAME];
        int n;
        struct wire_hdr gone = worker_gets(&f, WIRE_CLIENT_GONE, fr, &n);
        ck_assert_uint_eq(gone.session, open.session);
        teardown(&f);
    }
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *su = suite_create("gw_session");
    TCase *tc = tcase_create("session");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_session_from_operation_to_result);
    tcase_add_test(tc, a_lost_worker_with_money_at_risk_gives_pending);
    tcase_add_test(tc, a_client_that_leaves_is_reported_to_the_worker);
    tcase_add_test(tc, frames_for_another_session_or_worker_are_dropped);
    tcase_add_test(tc, no_live_worker_is_overloaded);
    tcase_add_test(tc, a_second_operation_is_a_bad_request);
    tcase_add_test(tc, a_v2_batch_goes_out_as_commands_and_back_as_responses);
    tcase_add_test(tc, a_batch_answered_wrongly_is_a_bad_request);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
