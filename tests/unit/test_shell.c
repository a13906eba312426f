/* Tests for worker/shell.c, driven through plain callbacks as shell.h
 * promises: frames, ledger requests and token checks go to recording
 * callbacks, the test answers them (the card simulator for commands, the
 * in-memory ledger for ledger requests).  A whole check session runs
 * through the shell; ledger requests carry the session's id and their
 * replies find it; a client that is gone ends its session; past the
 * capacity or while draining, an OPEN is answered overloaded; the sessions
 * of a gateway incarnation that is gone (a new one heartbeats) are ended
 * and send nothing more, while a heartbeat of the same incarnation keeps
 * them (issue 16 point 7); the operator-token checks go out through
 * io->token and their verdicts, immediate or later, reach only the session
 * that asked (point 9).  The engine runs against the card simulator's keys
 * (test_engine_harness). */
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
    uint8_t last_error;           /* of the last result */
    uint8_t last[WIRE_MAX_FRAME]; /* the last frame sent */
    size_t last_len;
    uint64_t result_ms; /* shell_now_ms() when the last result was sent */
} sent;

static struct {
    int n;
    struct ledger_req req; /* the last one */
} asked;

/* io->token: records the request, answers `token_now` (0: later). */
static struct {
    int calls;
    uint64_t session, ticket;
    char token[WIRE_MAX_AUTHCODE + 1];
    int now;
} tok;

static int record_send(void *arg, const uint8_t *frame, size_t len)
{
    (void)arg;
    struct wire_hdr h;
    ck_assert_int_eq(wire_decode_hdr(frame, len, &h), 0);
    if (sent.n < 64) {
        sent.type[sent.n] = h.type;
        sent.session[sent.n] = h.session;
    }
    struct wire_result r;
    if (h.type == WIRE_RESULT && wire_decode_result(&h, frame, &r) == 0) {
        sent.last_error = r.error;
        sent.result_ms = shell_now_ms();
    }
    sent.n++;
    memcpy(sent.last, frame, len);
    sent.last_len = len;
    return 0;
}

static void ignore_ledger(void *arg, const struct ledger_req *req)
{
    (void)arg;
    (void)req;
}

static void record_ledger(void *arg, const struct ledger_req *req)
{
    (void)arg;
    asked.req = *req;
    asked.n++;
}

static int token_check(void *arg, uint64_t session, uint64_t ticket, const struct eng_token *req)
{
    (void)arg;
    tok.calls++;
    tok.session = session;
    tok.ticket = ticket;
    memcpy(tok.token, req->token, req->len);
    tok.token[req->len] = '\0';
    return tok.now;
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
    int n = wire_encode_open(f, sizeof f, session, &o, shell_seal_pk(sh));
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(shell_on_frame(sh, f, (size_t)n), WIRE_OPEN);
}

START_TEST(sessions_of_a_gone_gateway_are_dropped)
{
    struct hx h;
    hx_init(&h, 0);
    struct event_base *base = event_base_new();
    struct shell_io io = {.send = record_send, .ledger = ignore_ledger, .token = token_check};
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

static void open_personalize(struct shell *sh, uint64_t session, const uint8_t uid[7])
{
    uint8_t f[WIRE_MAX_FRAME];
    struct wire_open o;
    memset(&o, 0, sizeof o);
    o.op = WIRE_OP_PERSONALIZE;
    o.listener = WIRE_LISTENER_OPERATOR;
    o.uid_len = 7;
    memcpy(o.uid, uid, 7);
    o.authcode_len = 12;
    memcpy(o.authcode, "token-of-the", 12);
    o.peer_len = 9;
    memcpy(o.peer, "127.0.0.1", 9);
    int n = wire_encode_open(f, sizeof f, session, &o, shell_seal_pk(sh));
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(shell_on_frame(sh, f, (size_t)n), WIRE_OPEN);
}

START_TEST(token_verdicts_reach_their_session)
{
    struct hx h;
    hx_init_factory(&h, SIM_PICC_DES0);
    struct event_base *base = event_base_new();
    struct shell_io io = {.send = record_send, .ledger = ignore_ledger, .token = token_check};
    struct shell *sh = shell_new(base, h.ctx, 16, &io);
    ck_assert_ptr_nonnull(sh);
    memset(&sent, 0, sizeof sent);
    memset(&tok, 0, sizeof tok);

    /* Decided at once (the address is over its limit): the result follows
     * in the same call. */
    tok.now = ENG_TOKEN_LIMITED;
    open_personalize(sh, 90, h.uid);
    ck_assert_int_eq(tok.calls, 1);
    ck_assert_str_eq(tok.token, "token-of-the");
    ck_assert_uint_eq(shell_sessions(sh), 0);
    ck_assert_uint_eq(sent.type[sent.n - 1], WIRE_RESULT);
    ck_assert_uint_eq(sent.last_error, WIRE_E_LIMIT_EXCEEDED);

    /* Decided later: nothing goes to the client meanwhile; a verdict with
     * another ticket (an earlier session under the same id) is ignored. */
    tok.now = 0;
    int before = sent.n;
    open_personalize(sh, 91, h.uid);
    ck_assert_int_eq(tok.calls, 2);
    ck_assert_uint_eq(shell_sessions(sh), 1);
    ck_assert_int_eq(sent.n, before);
    shell_on_token_verdict(sh, 91, tok.ticket + 1, ENG_TOKEN_OK);
    shell_on_token_verdict(sh, 92, tok.ticket, ENG_TOKEN_OK);
    ck_assert_int_eq(sent.n, before);
    shell_on_token_verdict(sh, 91, tok.ticket, ENG_TOKEN_WRONG);
    ck_assert_uint_eq(shell_sessions(sh), 0);
    ck_assert_uint_eq(sent.type[sent.n - 1], WIRE_RESULT);
    ck_assert_uint_eq(sent.last_error, WIRE_E_AUTH_FAILED);

    /* A right token: the personalization starts (its first command). */
    open_personalize(sh, 93, h.uid);
    before = sent.n;
    shell_on_token_verdict(sh, 93, tok.ticket, ENG_TOKEN_OK);
    ck_assert_int_eq(sent.n, before + 1);
    ck_assert_uint_eq(sent.type[before], WIRE_COMMAND);
    ck_assert_uint_eq(shell_sessions(sh), 1);

    shell_free(sh);
    event_base_free(base);
    hx_free(&h);
}
END_TEST

static void client_gone(struct shell *sh, uint64_t session)
{
    uint8_t f[WIRE_MAX_FRAME];
    int n = wire_encode_empty(f, sizeof f, WIRE_CLIENT_GONE, session);
    ck_assert_int_eq(shell_on_frame(sh, f, (size_t)n), WIRE_CLIENT_GONE);
}

/* The last frame sent was a result for session: its content. */
static struct wire_result last_result(uint64_t session)
{
    struct wire_hdr hdr;
    struct wire_result r;
    ck_assert_int_eq(wire_decode_hdr(sent.last, sent.last_len, &hdr), 0);
    ck_assert_uint_eq(hdr.type, WIRE_RESULT);
    ck_assert(hdr.session == session);
    ck_assert_int_eq(wire_decode_result(&hdr, sent.last, &r), 0);
    return r;
}

START_TEST(a_check_session_runs_through_the_callbacks)
{
    struct hx h;
    hx_init(&h, 0);
    memset(&sent, 0, sizeof sent);
    memset(&asked, 0, sizeof asked);
    struct event_base *base = event_base_new();
    struct shell_io io = {.send = record_send, .ledger = record_ledger, .token = token_check};
    struct shell *sh = shell_new(base, h.ctx, 16, &io);
    ck_assert_ptr_nonnull(sh);
    heartbeat(sh, 0x1111);
    open_check(sh, 77, h.uid);
    int replies = 0, have_result = 0; /* r read in the loop, or at its end */
    struct wire_result r;
    for (int steps = 0; steps < 200 && shell_sessions(sh) > 0; steps++) {
        if (asked.n > replies) {
            /* A ledger request is pending: it names the session, and the
             * reply goes back by that id (the lease's release may follow
             * the result). */
            ck_assert(asked.req.session == 77);
            struct ledger_reply rep;
            ck_assert_int_eq(ledger_mem_handle(h.lm, &asked.req, shell_now_ms(), &rep), 0);
            replies++;
            shell_on_ledger_reply(sh, asked.req.session, &rep);
            continue;
        }
        struct wire_hdr hdr;
        ck_assert_int_eq(wire_decode_hdr(sent.last, sent.last_len, &hdr), 0);
        ck_assert(hdr.session == 77);
        if (hdr.type == WIRE_RESULT) {
            r = last_result(77);
            have_result = 1;
            break;
        }
        ck_assert_uint_eq(hdr.type, WIRE_COMMAND);
        struct wire_bytes cmd;
        ck_assert_int_eq(wire_decode_bytes(&hdr, sent.last, &cmd), 0);
        uint8_t resp[WIRE_MAX_APDU], f[WIRE_MAX_FRAME];
        size_t rn = 0;
        ck_assert_int_eq(sim_card_transceive(h.card, cmd.data, cmd.len, resp, sizeof resp, &rn), 0);
        int n = wire_encode_bytes(f, sizeof f, WIRE_CARD_RESPONSE, 77, resp, rn);
        ck_assert_int_eq(shell_on_frame(sh, f, (size_t)n), WIRE_CARD_RESPONSE);
    }
    if (!have_result) /* the session ended with its result */
        r = last_result(77);
    /* The lease's release, if still out, ends the session. */
    while (asked.n > replies) {
        struct ledger_reply rep;
        ck_assert(asked.req.session == 77);
        ck_assert_int_eq(ledger_mem_handle(h.lm, &asked.req, shell_now_ms(), &rep), 0);
        replies++;
        shell_on_ledger_reply(sh, asked.req.session, &rep);
    }
    ck_assert_uint_eq(r.status, WIRE_ST_OK);
    ck_assert(r.has & WIRE_RES_HAS_BALANCE);
    ck_assert_int_eq(r.balance, 0);
    ck_assert_int_ge(asked.n, 1);
    ck_assert_uint_eq(shell_sessions(sh), 0);
    shell_free(sh);
    event_base_free(base);
    hx_free(&h);
}
END_TEST

/* Runs the loop for ms milliseconds of real time. */
static void run_loop_for(struct event_base *base, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* The shell leaves a session's pending timer alone while the engine's
 * deadline only moves later (one timer per session, not one reschedule
 * per exchange).  That timer then fires before the deadline; the session
 * must survive it and still time out at its real deadline: a card that
 * stops answering ends the session with a timeout no sooner than
 * response_timeout_ms after its last answer. */
START_TEST(a_card_that_stops_answering_times_out_at_its_real_deadline)
{
    struct hx h;
    hx_init(&h, 0);
    h.cfg.response_timeout_ms = 600;
    h.cfg.operation_timeout_ms = 60000;
    h.cfg.lease_ms = 120000;
    hx_reconfigure(&h);
    memset(&sent, 0, sizeof sent);
    memset(&asked, 0, sizeof asked);
    struct event_base *base = event_base_new();
    struct shell_io io = {.send = record_send, .ledger = record_ledger, .token = token_check};
    struct shell *sh = shell_new(base, h.ctx, 16, &io);
    ck_assert_ptr_nonnull(sh);
    heartbeat(sh, 0x1111);
    open_check(sh, 78, h.uid);
    int replies = 0, answered = 0;
    uint64_t last_answer = shell_now_ms();
    /* Three card answers 250 ms apart (ledger requests answered at once):
     * the timer armed at the open fires while the session is alive. */
    while (answered < 3) {
        ck_assert_uint_eq(shell_sessions(sh), 1);
        if (asked.n > replies) {
            struct ledger_reply rep;
            ck_assert_int_eq(ledger_mem_handle(h.lm, &asked.req, shell_now_ms(), &rep), 0);
            replies++;
            shell_on_ledger_reply(sh, asked.req.session, &rep);
            continue;
        }
        run_loop_for(base, 250);
        struct wire_hdr hdr;
        ck_assert_int_eq(wire_decode_hdr(sent.last, sent.last_len, &hdr), 0);
        ck_assert_uint_eq(hdr.type, WIRE_COMMAND);
        struct wire_bytes cmd;
        ck_assert_int_eq(wire_decode_bytes(&hdr, sent.last, &cmd), 0);
        uint8_t resp[WIRE_MAX_APDU], f[WIRE_MAX_FRAME];
        size_t rn = 0;
        ck_assert_int_eq(sim_card_transceive(h.card, cmd.data, cmd.len, resp, sizeof resp, &rn), 0);
        int n = wire_encode_bytes(f, sizeof f, WIRE_CARD_RESPONSE, 78, resp, rn);
        last_answer = shell_now_ms();
        ck_assert_int_eq(shell_on_frame(sh, f, (size_t)n), WIRE_CARD_RESPONSE);
        answered++;
    }
    /* The card says nothing more; its lease release closes the session. */
    for (int i = 0; i < 300 && shell_sessions(sh) > 0; i++) {
        if (asked.n > replies) {
            struct ledger_reply rep;
            ck_assert_int_eq(ledger_mem_handle(h.lm, &asked.req, shell_now_ms(), &rep), 0);
            replies++;
            shell_on_ledger_reply(sh, asked.req.session, &rep);
            continue;
        }
        run_loop_for(base, 50);
    }
    ck_assert_uint_eq(shell_sessions(sh), 0);
    struct wire_result r = last_result(78);
    ck_assert_uint_eq(r.status, WIRE_ST_FAILED);
    ck_assert_uint_eq(r.error, WIRE_E_TIMEOUT);
    /* Not the early timer: the real deadline after the last answer. */
    ck_assert_uint_ge(sent.result_ms - last_answer, h.cfg.response_timeout_ms);
    shell_free(sh);
    event_base_free(base);
    hx_free(&h);
}
END_TEST

START_TEST(a_client_that_is_gone_ends_its_session)
{
    struct hx h;
    hx_init(&h, 0);
    memset(&sent, 0, sizeof sent);
    struct event_base *base = event_base_new();
    struct shell_io io = {.send = record_send, .ledger = ignore_ledger, .token = token_check};
    struct shell *sh = shell_new(base, h.ctx, 16, &io);
    heartbeat(sh, 0x1111);
    open_check(sh, 90, h.uid);
    open_check(sh, 91, h.uid);
    ck_assert_uint_eq(shell_sessions(sh), 2);
    client_gone(sh, 90);
    ck_assert_uint_eq(shell_sessions(sh), 1);
    client_gone(sh, 90); /* again: nothing to end */
    ck_assert_uint_eq(shell_sessions(sh), 1);
    shell_free(sh);
    event_base_free(base);
    hx_free(&h);
}
END_TEST

START_TEST(past_capacity_or_draining_is_overloaded)
{
    struct hx h;
    hx_init(&h, 0);
    memset(&sent, 0, sizeof sent);
    struct event_base *base = event_base_new();
    struct shell_io io = {.send = record_send, .ledger = ignore_ledger, .token = token_check};
    struct shell *sh = shell_new(base, h.ctx, 1, &io);
    heartbeat(sh, 0x1111);
    open_check(sh, 1, h.uid);
    open_check(sh, 2, h.uid);
    /* A result the gateway can decode: it names the operation (the OPEN
     * was wiped before the refusal once, and the result said op 0). */
    struct wire_result r = last_result(2);
    ck_assert_uint_eq(r.op, WIRE_OP_CHECK);
    ck_assert_uint_eq(r.status, WIRE_ST_FAILED);
    ck_assert_uint_eq(r.error, WIRE_E_OVERLOADED);
    ck_assert_uint_eq(shell_sessions(sh), 1);
    client_gone(sh, 1);
    shell_set_draining(sh, 1);
    open_check(sh, 3, h.uid);
    r = last_result(3);
    ck_assert_uint_eq(r.error, WIRE_E_OVERLOADED);
    ck_assert_uint_eq(shell_sessions(sh), 0);
    shell_free(sh);
    event_base_free(base);
    hx_free(&h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shell");
    TCase *t = tcase_create("shell");
    tcase_add_test(t, a_check_session_runs_through_the_callbacks);
    tcase_add_test(t, a_client_that_is_gone_ends_its_session);
    tcase_add_test(t, a_card_that_stops_answering_times_out_at_its_real_deadline);
    tcase_add_test(t, past_capacity_or_draining_is_overloaded);
    tcase_add_test(t, sessions_of_a_gone_gateway_are_dropped);
    tcase_add_test(t, token_verdicts_reach_their_session);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
