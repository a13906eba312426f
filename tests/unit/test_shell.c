/* Tests for worker/shell.c: the sessions of a gateway incarnation that is
 * gone (a new one heartbeats) are ended and send nothing more, while a
 * heartbeat of the same incarnation keeps them (issue 16 point 7).  The
 * engine runs against the card simulator's keys (test_engine_harness);
 * frames and ledger requests go to recording callbacks. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "shell.h"
#include "test_engine_harness.h"
#include "wire.h"

static struct {
    int n;
    uint8_t type[64];
    uint64_t session[64];
} sent;

static int record_send(void *arg, const uint8_t *frame, size_t len)
{
    (void)arg;
    struct wire_hdr h;
    ck_assert_int_eq(wire_decode_hdr(frame, len, &h), 0);
    if (sent.n < 64) {
        sent.type[sent.n] = h.type;
        sent.session[sent.n] = h.session;
    }
    sent.n++;
    return 0;
}

static void ignore_ledger(void *arg, const struct ledger_req *req)
{
    (void)arg;
    (void)req;
}

static void heartbeat(struct shell *sh, uint64_t gateway)
{
    uint8_t f[WIRE_MAX_FRAME];
    struct wire_heartbeat hb = {.gateway = gateway};
    int n = wire_encode_heartbeat(f, sizeof f, &hb);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(shell_on_frame(sh, f, (size_t)n), WIRE_HEARTBEAT);
}

static void open_check(struct shell *sh, uint64_t session, const uint8_t uid[7])
{
    uint8_t f[WIRE_MAX_FRAME];
    struct wire_open o;
    memset(&o, 0, sizeof o);
    o.op = WIRE_OP_CHECK;
    o.uid_len = 7;
    memcpy(o.uid, uid, 7);
    o.peer_len = 9;
    memcpy(o.peer, "127.0.0.1", 9);
    int n = wire_encode_open(f, sizeof f, session, &o);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(shell_on_frame(sh, f, (size_t)n), WIRE_OPEN);
}

START_TEST(sessions_of_a_gone_gateway_are_dropped)
{
    struct hx h;
    hx_init(&h, 0);
    struct event_base *base = event_base_new();
    struct shell_io io = {.send = record_send, .ledger = ignore_ledger};
    struct shell *sh = shell_new(base, h.ctx, 16, &io);
    ck_assert_ptr_nonnull(sh);

    heartbeat(sh, 0x1111);
    open_check(sh, 77, h.uid);
    ck_assert_uint_eq(shell_sessions(sh), 1);
    ck_assert_int_ge(sent.n, 1);
    ck_assert_uint_eq(sent.type[sent.n - 1], WIRE_COMMAND);
    ck_assert(sent.session[sent.n - 1] == 77);

    /* The same gateway again: nothing changes. */
    int before = sent.n;
    heartbeat(sh, 0x1111);
    ck_assert_uint_eq(shell_sessions(sh), 1);
    ck_assert_int_eq(sent.n, before);

    /* A new incarnation: the old session ends without a frame (its result
     * would reach whichever new client got its id). */
    heartbeat(sh, 0x2222);
    ck_assert_uint_eq(shell_sessions(sh), 0);
    ck_assert_int_eq(sent.n, before);

    /* The new gateway's sessions run. */
    open_check(sh, 78, h.uid);
    ck_assert_uint_eq(shell_sessions(sh), 1);
    ck_assert_int_eq(sent.n, before + 1);
    ck_assert(sent.session[before] == 78);

    shell_free(sh);
    event_base_free(base);
    hx_free(&h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shell");
    TCase *t = tcase_create("gateway_incarnation");
    tcase_add_test(t, sessions_of_a_gone_gateway_are_dropped);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
