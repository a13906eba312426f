/* load_sess: one simulated phone of ota-load (see load_sess.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <jansson.h>

#include "hex.h"
#include "load_sess.h"
#include "ota_err.h"
#include "sim_card.h"

#define LOAD_CLOSE_GRACE_US 3000000ULL

uint64_t load_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int load_in_window(const struct load_run *run, uint64_t now)
{
    return now >= run->window_from && (run->window_to == 0 || now < run->window_to);
}

static int ls_find_outcome(const struct load_run *run, const char *name)
{
    for (int i = 0; i < run->noutcomes; i++)
        if (strcmp(run->outcome[i].name, name) == 0)
            return i;
    return -1;
}

void load_count(struct load_run *run, const char *name)
{
    int i = ls_find_outcome(run, name);
    /* A server inventing codes must not grow the table: the last row is "other". */
    if (i < 0 && run->noutcomes >= LOAD_OUTCOMES_MAX - 1) {
        name = "other";
        i = ls_find_outcome(run, name);
    }
    if (i < 0) {
        i = run->noutcomes++;
        snprintf(run->outcome[i].name, sizeof run->outcome[i].name, "%s", name);
    }
    run->outcome[i].count++;
}

static void ls_epoll(struct load_run *run, struct load_sess *s, int op, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = s};
    epoll_ctl(run->epfd, op, s->fd, &ev);
}

/* Ends the connection; the slot becomes idle (the loop starts the next). */
static void ls_reset(struct load_run *run, struct load_sess *s)
{
    if (s->fd >= 0) {
        epoll_ctl(run->epfd, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
    }
    s->fd = -1;
    s->state = LS_IDLE;
    s->timer_at = 0;
    s->timer_gen++;
    s->want_out = 0;
    s->in_len = s->out_len = s->out_off = 0;
    s->deadline = 0;
}

/* The operation ended without a result: count why. */
static void ls_fail(struct load_run *run, struct load_sess *s, const char *why)
{
    if (s->state == LS_IDLE) /* already ended (and counted) */
        return;
    if (s->state != LS_WAIT_CLOSE) {
        run->completed++;
        load_count(run, why);
    }
    ls_reset(run, s);
}

static void ls_flush(struct load_run *run, struct load_sess *s)
{
    while (s->out_off < s->out_len) {
        ssize_t n = send(s->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            s->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!s->want_out) {
                ls_epoll(run, s, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
                s->want_out = 1;
            }
            return;
        }
        ls_fail(run, s, "client:write");
        return;
    }
    s->out_off = s->out_len = 0;
    if (s->want_out) {
        ls_epoll(run, s, EPOLL_CTL_MOD, EPOLLIN);
        s->want_out = 0;
    }
}

static int ls_send_frame(struct load_run *run, struct load_sess *s, enum wsc_opcode op,
                         const void *p, size_t n)
{
    int len;
    if (s->out_off > 0 && s->out_off == s->out_len)
        s->out_off = s->out_len = 0;
    len = wsc_frame_encode_random(s->out + s->out_len, sizeof s->out - s->out_len, op, p, n);
    if (len < 0) {
        ls_fail(run, s, "client:overflow");
        return len;
    }
    s->out_len += (size_t)len;
    ls_flush(run, s);
    return s->fd >= 0 ? 0 : OTA_ERR_IO;
}

static enum load_op ls_pick_op(struct load_run *run)
{
    unsigned total = 0, r;
    for (int i = 0; i < LOAD_OP_COUNT; i++)
        total += run->mix[i];
    /* xorshift64: reproducible with --seed, no syscalls per pick. */
    run->rng ^= run->rng << 13;
    run->rng ^= run->rng >> 7;
    run->rng ^= run->rng << 17;
    r = total > 0 ? (unsigned)(run->rng % total) : 0;
    for (int i = 0; i < LOAD_OP_COUNT; i++) {
        if (r < run->mix[i])
            return (enum load_op)i;
        r -= run->mix[i];
    }
    return LOAD_OP_CHECK;
}

int load_sess_start(struct load_run *run, struct load_sess *s)
{
    int one = 1;

    s->op = ls_pick_op(run);
    s->code[0] = '\0';
    if (s->op == LOAD_OP_TOPUP) {
        if (run->next_code < run->ncodes) {
            snprintf(s->code, sizeof s->code, "%s", run->codes[run->next_code++]);
        } else {
            s->op = LOAD_OP_CHECK;
            run->codes_exhausted++;
        }
    }
    run->started++;
    s->state = LS_CONNECTING;
    s->t_op_start = load_now_us();
    s->deadline = s->t_op_start + (uint64_t)run->timeout_ms * 1000u;
    s->fd = socket(run->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        ls_fail(run, s, "client:socket");
        return OTA_ERR_IO;
    }
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s->fd, (const struct sockaddr *)&run->addr, run->addrlen) != 0 &&
        errno != EINPROGRESS) {
        ls_fail(run, s, "client:connect");
        return OTA_ERR_IO;
    }
    s->want_out = 1;
    ls_epoll(run, s, EPOLL_CTL_ADD, EPOLLIN | EPOLLOUT);
    return 0;
}

static void ls_on_connected(struct load_run *run, struct load_sess *s)
{
    int err = 0, n;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        ls_fail(run, s, "client:connect");
        return;
    }
    wsc_make_key(s->key);
    n = wsc_build_request((char *)s->out, sizeof s->out, run->url.host_header, run->url.path,
                          s->key);
    if (n < 0) {
        ls_fail(run, s, "client:overflow");
        return;
    }
    s->out_len = (size_t)n;
    s->out_off = 0;
    s->state = LS_UPGRADING;
    ls_flush(run, s);
}

static void ls_send_operation(struct load_run *run, struct load_sess *s)
{
    char rid[48];
    char *text;
    snprintf(rid, sizeof rid, "load-%u-%llu", s->idx, (unsigned long long)run->started);
    text = wsm_operation(s->op == LOAD_OP_TOPUP ? "topup" : "check", s->uid_hex, s->code, rid,
                         run->batch);
    if (text == NULL) {
        ls_fail(run, s, "client:overflow");
        return;
    }
    s->state = LS_WAIT_SERVER;
    s->round_trips = s->apdus = 0;
    if (ls_send_frame(run, s, WSC_OP_TEXT, text, strlen(text)) == 0)
        s->t_op_sent = s->t_sent = load_now_us();
    free(text);
}

static const char *ls_card(void *ctx, const uint8_t *apdu, size_t len, uint8_t *resp, size_t cap,
                           size_t *resp_len)
{
    return sim_card_transceive(ctx, apdu, len, resp, cap, resp_len) == 0 ? NULL : "io";
}

static void ls_answer(struct load_run *run, struct load_sess *s)
{
    static struct wsm_answers answers; /* one loop thread; 4 KiB off the stack */
    static char text[WSM_ANSWERS_TEXT_MAX];
    int n;

    wsm_batch_run(&s->batch, ls_card, s->card, &answers);
    n = wsm_encode_answers(&s->batch, &answers, text, sizeof text);
    if (n < 0) {
        ls_fail(run, s, "client:overflow");
        return;
    }
    s->state = LS_WAIT_SERVER;
    if (ls_send_frame(run, s, WSC_OP_TEXT, text, (size_t)n) == 0)
        s->t_sent = load_now_us();
}

/* One exchange's server time, in the measured window only.  docs/PROTOCOL.md
 * section 6 puts a ledger step before AbortTransaction (the lease), before
 * WriteRecord (card state, reserve) and before the result (booking, lease
 * release); every other command follows card crypto alone. */
static void ls_sample_exchange(struct load_run *run, uint64_t sent, uint64_t now, int ledger)
{
    if (!load_in_window(run, now))
        return;
    load_hist_add(&run->exchange_us, now - sent);
    load_hist_add(ledger ? &run->exchange_ledger_us : &run->exchange_card_us, now - sent);
}

/* Whether the server ran a ledger step before sending these APDUs (an
 * approximation for batches: the batch holds a command that section 6
 * puts right after one, AbortTransaction after the lease or WriteRecord
 * after the reserve).  Native commands are wrapped ISO 7816 style: CLA
 * 90, then the INS. */
static int ls_after_ledger(const struct wsm_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->apdu[i][0] == 0x90 && (b->apdu[i][1] == 0xA7 || b->apdu[i][1] == 0x3B))
            return 1;
    return 0;
}

static void ls_on_card(struct load_run *run, struct load_sess *s, const struct wsm_batch *b,
                       uint64_t now)
{
    if (s->state != LS_WAIT_SERVER) {
        ls_fail(run, s, "client:protocol");
        return;
    }
    s->batch = *b;
    s->round_trips++;
    s->apdus += (unsigned)b->n;
    ls_sample_exchange(run, s->t_sent, now, ls_after_ledger(b));
    if (run->delay_ms <= 0) {
        ls_answer(run, s);
        return;
    }
    s->state = LS_DELAY;
    load_timer_set(run, s, load_now_us() + (uint64_t)run->delay_ms * 1000u);
}

static void ls_on_result(struct load_run *run, struct load_sess *s, const json_t *msg, uint64_t now)
{
    const char *status = json_string_value(json_object_get(msg, "status"));
    const char *err = json_string_value(json_object_get(msg, "error"));
    int in_window = load_in_window(run, now);

    if (s->state != LS_WAIT_SERVER || status == NULL) {
        ls_fail(run, s, "client:protocol");
        return;
    }
    ls_sample_exchange(run, s->t_sent, now, 1);
    run->completed++;
    if (in_window) {
        load_hist_add(&run->session_us, now - s->t_op_start);
        run->window_completed++;
    }
    if (strcmp(status, "ok") == 0) {
        load_count(run, "ok");
        run->ok_by_op[s->op]++;
        if (in_window) {
            run->window_ok_by_op[s->op]++;
            load_hist_add(&run->tap_us[s->op], now - s->t_op_sent);
            run->round_trips[s->op] += s->round_trips;
            run->apdus[s->op] += s->apdus;
            if (s->round_trips > run->round_trips_max[s->op])
                run->round_trips_max[s->op] = s->round_trips;
        }
    } else if (strcmp(status, "pending") == 0) {
        load_count(run, "pending");
    } else {
        char name[32];
        snprintf(name, sizeof name, "%s", err != NULL ? err : "failed:no-code");
        load_count(run, name);
    }
    s->state = LS_WAIT_CLOSE;
    /* The server closes right after the result; do not wait for long. */
    if (s->deadline > now + LOAD_CLOSE_GRACE_US)
        s->deadline = now + LOAD_CLOSE_GRACE_US;
}

/* One message from the server.  ws_proto_msg reads the gateway's own
 * spelling of command and commands without jansson (it was 40 % of this
 * process's instructions, taken from the CPU the server under test
 * shares). */
static void ls_on_text(struct load_run *run, struct load_sess *s, const uint8_t *p, size_t n)
{
    static struct wsm_msg m; /* one loop thread; 4 KiB off the stack */
    uint64_t now = load_now_us();

    if (wsm_parse((const char *)p, n, (size_t)run->batch, &m, NULL, 0) != 0) {
        ls_fail(run, s, "client:protocol");
    } else if (m.kind == WSM_CARD) {
        ls_on_card(run, s, &m.batch, now);
    } else if (m.kind == WSM_RESULT) {
        ls_on_result(run, s, m.json, now);
    }
    /* modal and unknown types: nothing to do */
    wsm_msg_clear(&m);
}

static void ls_on_upgrade_bytes(struct load_run *run, struct load_sess *s)
{
    int status = 0;
    int n = wsc_parse_response(s->in, s->in_len, LOAD_IN_CAP - 1, s->key, &status);
    if (n == 0)
        return;
    if (n < 0) {
        char why[32];
        if (n == OTA_ERR_STATE)
            snprintf(why, sizeof why, "client:http-%d", status);
        else
            snprintf(why, sizeof why, "client:upgrade");
        ls_fail(run, s, why);
        return;
    }
    memmove(s->in, s->in + n, s->in_len - (size_t)n);
    s->in_len -= (size_t)n;
    wsc_rx_init(&s->rx, s->msg, LOAD_MSG_CAP);
    ls_send_operation(run, s);
}

/* Decodes every whole frame in the input buffer. */
static void ls_on_frames(struct load_run *run, struct load_sess *s)
{
    size_t off = 0;
    while (s->fd >= 0 && off < s->in_len) {
        struct wsc_event ev;
        size_t used = 0;
        if (wsc_rx_feed(&s->rx, s->in + off, s->in_len - off, &used, &ev) < 0) {
            uint8_t p[WSC_CONTROL_MAX];
            size_t pn = wsc_close_payload(p, s->rx.close_code, NULL);
            ls_send_frame(run, s, WSC_OP_CLOSE, p, pn);
            ls_fail(run, s, "client:protocol");
            return;
        }
        if (used == 0)
            break;
        off += used;
        switch (ev.type) {
        case WSC_EV_TEXT:
            ls_on_text(run, s, ev.data, ev.len);
            break;
        case WSC_EV_PING:
            ls_send_frame(run, s, WSC_OP_PONG, ev.data, ev.len);
            break;
        case WSC_EV_CLOSE: {
            uint8_t p[2];
            int done = s->state == LS_WAIT_CLOSE;
            char why[40];
            p[0] = (uint8_t)(ev.code >> 8);
            p[1] = (uint8_t)ev.code;
            ls_send_frame(run, s, WSC_OP_CLOSE, p, ev.code == WSC_CLOSE_NO_STATUS ? 0 : 2);
            snprintf(why, sizeof why, "client:closed-%u", ev.code);
            if (done)
                ls_reset(run, s);
            else
                ls_fail(run, s, why);
            return;
        }
        case WSC_EV_BINARY:
            ls_fail(run, s, "client:protocol");
            return;
        case WSC_EV_PONG:
        case WSC_EV_NONE:
            break;
        }
    }
    if (s->fd >= 0 && off > 0) {
        memmove(s->in, s->in + off, s->in_len - off);
        s->in_len -= off;
    }
}

void load_sess_on_io(struct load_run *run, struct load_sess *s, uint32_t events)
{
    if (s->fd < 0)
        return;
    if (s->state == LS_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            ls_on_connected(run, s);
        return;
    }
    if ((events & EPOLLOUT) && s->out_len > s->out_off)
        ls_flush(run, s);
    if (s->fd < 0 || !(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    for (;;) {
        ssize_t n;
        if (s->in_len == sizeof s->in) {
            ls_fail(run, s, "client:overflow");
            return;
        }
        n = recv(s->fd, s->in + s->in_len, sizeof s->in - s->in_len, 0);
        if (n > 0) {
            s->in_len += (size_t)n;
            if (s->state == LS_UPGRADING)
                ls_on_upgrade_bytes(run, s);
            if (s->fd >= 0 && s->state != LS_UPGRADING)
                ls_on_frames(run, s);
            if (s->fd < 0)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (s->state == LS_WAIT_CLOSE)
            ls_reset(run, s);
        else
            ls_fail(run, s, n == 0 ? "client:eof" : "client:read");
        return;
    }
}

void load_sess_on_timer(struct load_run *run, struct load_sess *s)
{
    s->timer_at = 0;
    if (s->state == LS_DELAY)
        ls_answer(run, s);
}

void load_sess_on_deadline(struct load_run *run, struct load_sess *s)
{
    if (s->state == LS_IDLE)
        return;
    ls_fail(run, s, "client:timeout");
}
