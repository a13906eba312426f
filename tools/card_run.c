/* card_run: `ota-card run`, the phone app as a command (docs/PROTOCOL.md
 * sections 1-4 and 8).  It sends `operation` (announcing batches of up to
 * 16 APDUs unless --protocol v1), answers each `command` with the card's
 * `response` and each `commands` batch with `responses` (run in order,
 * stopping after the first answer that ends in neither 91 00 nor 91 AF),
 * prints `modal` texts and the `result`, and saves the simulated card's
 * committed state whatever happened (also when interrupted).  Test-only
 * flags make it misbehave the way a phone can (drop, lost tag, tear,
 * stall), counted per APDU also inside a batch.  It must never print or
 * log the top-up code or operator token, never run APDUs it received while
 * others were outstanding, and never answer with anything but the card's
 * own answers. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "ota_autoconf.h"

#include "card_cmd.h"
#include "card_result.h"
#include "card_run.h"
#include "card_run_args.h"
#include "hex.h"
#include "ota_err.h"
#include "sim_card.h"
#include "ws_client.h"
#include "ws_proto_msg.h"
#ifdef HAVE_PCSC
#include "pcsc_reader.h"
#include "num.h"
#endif

#define RUN_APDU_MAX WSM_APDU_MAX
#define RUN_ANSWER_MAX WSM_ANSWER_MAX
#define RUN_CLOSE_WAIT_MS 3000

/* The card on the other side of the phone. */
enum run_card_kind { RUN_CARD_SIM = 0, RUN_CARD_PCSC };

struct run_card {
    enum run_card_kind kind;
    struct sim_card *sim;
#ifdef HAVE_PCSC
    struct pcsc_reader *pcsc;
#endif
    uint8_t uid[RUN_UID_MAX];
    size_t uid_len;
};

/* What ended the session, for the exit status and the --json line. */
enum run_end {
    RUN_END_RESULT = 0,
    RUN_END_CONNECTION, /* the connection failed or closed without a result */
    RUN_END_PROTOCOL,   /* the server broke docs/PROTOCOL.md */
    RUN_END_TIMEOUT,
    RUN_END_INTERRUPTED,
    RUN_END_DROPPED, /* --drop-after */
    RUN_END_TORN,    /* --tear-after */
    RUN_END_CARD,    /* the card side failed in a way the client could not report */
};

static const char *const run_end_kind[] = {
    [RUN_END_RESULT] = "result",
    [RUN_END_CONNECTION] = "connection",
    [RUN_END_PROTOCOL] = "protocol",
    [RUN_END_TIMEOUT] = "timeout",
    [RUN_END_INTERRUPTED] = "interrupted",
    [RUN_END_DROPPED] = "dropped",
    [RUN_END_TORN] = "torn",
    [RUN_END_CARD] = "card",
};

enum run_state {
    RUN_WAIT_SERVER = 0, /* waiting for a command, modal or result */
    RUN_HOLDING,         /* APDUs are held back (--stall-after) */
    RUN_WAIT_CLOSE,      /* the result came; waiting for the close */
    RUN_DONE,
};

struct run_session {
    enum run_state state;
    const struct run_args *args;
    struct run_card *card;
    struct wsc_client *ws;
    long commands; /* APDUs received so far (over all batches) */
    /* The batch being answered: its APDUs, the answers so far, and the
     * next APDU to run (held back by --stall-after until held_until). */
    struct wsm_batch batch;
    struct wsm_answers answers;
    size_t next;
    long long held_until; /* ms, monotonic */
    FILE *trace;
    long long t0;       /* ms, monotonic: the session's start, for the trace */
    long long deadline; /* ms, monotonic: no result by then = timeout */
    json_t *result;
    enum run_end end;
    char why[320]; /* for a person when end != RESULT */
};

static volatile sig_atomic_t run_interrupted;

static void run_on_signal(int sig)
{
    (void)sig;
    run_interrupted = 1;
}

static long long run_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int run_card_open(const struct run_args *a, struct run_card *c)
{
    memset(c, 0, sizeof *c);
    if (a->pcsc) {
#ifdef HAVE_PCSC
        char err[300];
        c->kind = RUN_CARD_PCSC;
        if (pcsc_reader_open(a->pcsc_reader, &c->pcsc, err, sizeof err) != 0 ||
            pcsc_reader_uid(c->pcsc, c->uid, sizeof c->uid, &c->uid_len, err, sizeof err) != 0) {
            fprintf(stderr, "ota-card run: %s\n", err);
            return CARD_EXIT_CONN;
        }
        if (!a->quiet)
            fprintf(stderr, "ota-card run: card in reader '%s'\n", pcsc_reader_name(c->pcsc));
        return 0;
#else
        fprintf(stderr, "ota-card run: this ota-card was built without PC/SC support "
                        "(install libpcsclite-dev and run configure again)\n");
        return CARD_EXIT_USAGE;
#endif
    }
    c->kind = RUN_CARD_SIM;
    c->sim = sim_card_load(a->card_file);
    if (c->sim == NULL) {
        fprintf(stderr, "ota-card run: cannot load the card file %s\n", a->card_file);
        return CARD_EXIT_USAGE;
    }
    {
        size_t n = 0;
        const uint8_t *uid = sim_card_uid(c->sim, &n);
        if (uid == NULL || n == 0 || n > sizeof c->uid) {
            fprintf(stderr, "ota-card run: the card file %s has no valid UID\n", a->card_file);
            sim_card_free(c->sim);
            c->sim = NULL;
            return CARD_EXIT_USAGE;
        }
        memcpy(c->uid, uid, n);
        c->uid_len = n;
    }
    return 0;
}

/* Saves a simulated card's committed state.  Returns 0 or CARD_EXIT_CONN. */
static int run_card_close(const struct run_args *a, struct run_card *c)
{
    int ret = 0;
    if (c->kind == RUN_CARD_SIM && c->sim != NULL) {
        int r = sim_card_save(c->sim, a->card_file);
        if (r != 0) {
            fprintf(stderr, "ota-card run: cannot save the card to %s: %s\n", a->card_file,
                    ota_strerror(r));
            ret = CARD_EXIT_CONN;
        }
        sim_card_free(c->sim);
        c->sim = NULL;
    }
#ifdef HAVE_PCSC
    pcsc_reader_close(c->pcsc);
    c->pcsc = NULL;
#endif
    return ret;
}

/* Runs one APDU on the card (a real reader runs a batch APDU by APDU,
 * like a phone).  Returns NULL with the answer, or the error kind to send
 * instead ("lost-tag" / "io"). */
static const char *run_card_exchange(struct run_card *c, const uint8_t *apdu, size_t len,
                                     uint8_t *resp, size_t *resp_len, char *err, size_t errlen)
{
    *resp_len = 0;
#ifdef HAVE_PCSC
    if (c->kind == RUN_CARD_PCSC) {
        enum pcsc_status st =
            pcsc_reader_transceive(c->pcsc, apdu, len, resp, RUN_ANSWER_MAX, resp_len, err, errlen);
        return st == PCSC_OK ? NULL : st == PCSC_LOST_TAG ? "lost-tag" : "io";
    }
#endif
    {
        int r = sim_card_transceive(c->sim, apdu, len, resp, RUN_ANSWER_MAX, resp_len);
        if (r != 0) {
            snprintf(err, errlen, "simulated card: %s", ota_strerror(r));
            return "io";
        }
    }
    return NULL;
}

__attribute__((format(printf, 3, 4))) static void run_end(struct run_session *s, enum run_end end,
                                                          const char *fmt, ...)
{
    va_list ap;
    s->end = end;
    s->state = RUN_DONE;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
}

/* Appends one message to the --trace file: direction ("out" from the
 * phone, "in" from the gateway), ms since the session started, and the
 * message itself (it is JSON already; an unparsable one goes as a
 * string). */
static void run_trace(struct run_session *s, const char *dir, const char *text, size_t len)
{
    json_t *msg;
    char *line;
    if (s->trace == NULL)
        return;
    msg = json_loadb(text, len, 0, NULL);
    if (msg == NULL)
        msg = json_stringn(text, len);
    line = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    fprintf(s->trace, "{\"dir\":\"%s\",\"ms\":%lld,\"msg\":%s}\n", dir, run_now_ms() - s->t0,
            line != NULL ? line : "null");
    fflush(s->trace);
    free(line);
    json_decref(msg);
}

/* Sends a text message.  trace: what the trace shows instead (NULL: the
 * text itself). */
static int run_send_text(struct run_session *s, const char *text, const char *trace)
{
    int r = wsc_client_send_text(s->ws, text, strlen(text));
    if (r != 0) {
        run_end(s, RUN_END_CONNECTION, "cannot send: %s", wsc_client_error(s->ws));
        return r;
    }
    trace = trace != NULL ? trace : text;
    run_trace(s, "out", trace, strlen(trace));
    return 0;
}

/* Sends the answers gathered for the current batch. */
static int run_send_answers(struct run_session *s)
{
    char text[WSM_ANSWERS_TEXT_MAX];
    if (wsm_encode_answers(&s->batch, &s->answers, text, sizeof text) < 0) {
        run_end(s, RUN_END_CARD, "the card's answers do not fit in a message");
        return OTA_ERR_LENGTH;
    }
    return run_send_text(s, text, NULL);
}

/* Runs APDUs of the current batch from s->next on: the card's answers, or
 * a fault asked for on the command line at the APDU it names.  Ends by
 * sending the answers, holding the rest back (--stall-after), or leaving
 * without an answer (--drop-after, --tear-after). */
static void run_batch_go_on(struct run_session *s)
{
    const struct run_args *a = s->args;
    struct wsm_answers *ans = &s->answers;

    while (s->next < s->batch.n) {
        size_t i = s->next;
        char hex[2 * RUN_ANSWER_MAX + 1], err[300] = "";
        const char *kind;

        if (s->state != RUN_HOLDING) {
            s->commands++;
            if (a->verbose) {
                hex_encode(s->batch.apdu[i], s->batch.len[i], hex);
                fprintf(stderr, "> %s\n", hex);
            }
            if (a->drop_after == s->commands) {
                wsc_client_abort(s->ws);
                run_end(s, RUN_END_DROPPED, "dropped the connection at command %ld (as asked)",
                        s->commands);
                return;
            }
            if (a->lost_tag_after == s->commands) {
                ans->error = "lost-tag";
                break;
            }
            if (a->stall_after == s->commands) {
                s->held_until = run_now_ms() + a->stall_ms;
                s->state = RUN_HOLDING;
                return;
            }
        }
        s->state = RUN_WAIT_SERVER;
        kind = run_card_exchange(s->card, s->batch.apdu[i], s->batch.len[i], ans->data[i],
                                 &ans->len[i], err, sizeof err);
        if (kind != NULL) {
            if (!a->quiet)
                fprintf(stderr, "ota-card run: card: %s (sending error %s)\n", err, kind);
            ans->error = kind;
            break;
        }
        ans->n = i + 1;
        s->next = i + 1;
        if (a->verbose) {
            hex_encode(ans->data[i], ans->len[i], hex);
            fprintf(stderr, "< %s\n", hex);
        }
        if (a->tear_after == s->commands) {
            /* The card ran the command; now it loses power before the
             * answer leaves the phone. */
            if (s->card->kind == RUN_CARD_SIM)
                sim_card_power_cycle(s->card->sim);
            wsc_client_abort(s->ws);
            run_end(s, RUN_END_TORN, "card torn after command %ld (as asked)", s->commands);
            return;
        }
        if (!wsm_answer_goes_on(ans->data[i], ans->len[i]))
            break;
    }
    s->state = RUN_WAIT_SERVER;
    run_send_answers(s);
}

static void run_on_card(struct run_session *s, const struct wsm_msg *m)
{
    if (s->state != RUN_WAIT_SERVER) {
        run_end(s, RUN_END_PROTOCOL, "the server sent %s while %s",
                m->batch.single ? "a command" : "commands",
                s->state == RUN_HOLDING ? "others were outstanding" : "the result was already in");
        return;
    }
    s->batch = m->batch;
    s->answers.n = 0;
    s->answers.error = NULL;
    s->next = 0;
    run_batch_go_on(s);
}

static void run_on_result(struct run_session *s, json_t *msg, const char *raw)
{
    const struct run_args *a = s->args;
    const char *rid = json_string_value(json_object_get(msg, "requestId"));
    char line[512];

    if (s->state == RUN_WAIT_CLOSE) {
        run_end(s, RUN_END_PROTOCOL, "the server sent a second result");
        return;
    }
    if (rid != NULL && strcmp(rid, a->request_id) != 0 && !a->quiet)
        fprintf(stderr, "ota-card run: warning: the result echoes requestId '%s', not '%s'\n", rid,
                a->request_id);
    s->result = json_incref(msg);
    if (a->json) {
        printf("%s\n", raw);
    } else {
        card_result_format(msg, line, sizeof line);
        printf("%s\n", line);
    }
    fflush(stdout);
    /* Held APDUs will never be answered now. */
    s->state = RUN_WAIT_CLOSE;
    s->deadline = run_now_ms() + RUN_CLOSE_WAIT_MS;
}

static void run_on_message(struct run_session *s, const char *text, size_t len)
{
    struct wsm_msg m;
    char why[200];

    run_trace(s, "in", text, len);
    if (wsm_parse(text, len, (size_t)s->args->batch, &m, why, sizeof why) != 0) {
        run_end(s, RUN_END_PROTOCOL, "the server broke the protocol: %s", why);
    } else if (m.kind == WSM_CARD) {
        run_on_card(s, &m);
    } else if (m.kind == WSM_MODAL) {
        const char *t = json_string_value(json_object_get(m.json, "message"));
        if (t != NULL && !s->args->quiet) {
            FILE *f = s->args->json ? stderr : stdout;
            fprintf(f, "modal: %s\n", t);
            fflush(f);
        }
    } else if (m.kind == WSM_RESULT) {
        run_on_result(s, m.json, text);
    } else if (!s->args->quiet) {
        /* Unknown messages are ignored, like unknown members (§2). */
        fprintf(stderr, "ota-card run: ignoring a message of type '%s'\n",
                json_string_value(json_object_get(m.json, "type")));
    }
    wsm_msg_clear(&m);
}

/* Sends `operation`; the trace shows it with the code replaced. */
static int run_send_operation(struct run_session *s)
{
    const struct run_args *a = s->args;
    const struct run_card *c = s->card;
    char uid[2 * RUN_UID_MAX + 1];
    char *text, *shown;
    int r;

    if (a->uid_len > 0)
        hex_encode(a->uid, a->uid_len, uid);
    else
        hex_encode(c->uid, c->uid_len, uid);
    text = wsm_operation(a->operation, uid, a->auth, a->request_id, (int)a->batch);
    shown = wsm_operation(a->operation, uid, a->auth[0] != '\0' ? "***" : "", a->request_id,
                          (int)a->batch);
    if (text == NULL || shown == NULL) {
        run_end(s, RUN_END_CARD, "out of memory");
        r = OTA_ERR_NOMEM;
    } else {
        r = run_send_text(s, text, shown);
    }
    if (text != NULL) {
        sodium_memzero(text, strlen(text));
        free(text);
    }
    free(shown);
    return r;
}

/* The receive loop: one message or timer at a time until the session ends. */
static void run_loop(struct run_session *s)
{
    while (s->state != RUN_DONE) {
        long long now = run_now_ms(), until;
        const char *text = NULL;
        size_t len = 0;
        int r;

        if (run_interrupted) {
            run_end(s, RUN_END_INTERRUPTED, "interrupted");
            wsc_client_close(s->ws, WSC_CLOSE_GOING_AWAY, "interrupted", 1000);
            return;
        }
        until =
            s->state == RUN_HOLDING && s->held_until < s->deadline ? s->held_until : s->deadline;
        r = wsc_client_recv(s->ws, until > now ? (int)(until - now) : 0, &text, &len);
        if (r == WSC_RECV_MESSAGE) {
            run_on_message(s, text, len);
        } else if (r == WSC_RECV_TIMEOUT) {
            if (s->state == RUN_HOLDING && run_now_ms() >= s->held_until) {
                run_batch_go_on(s);
            } else if (s->state == RUN_WAIT_CLOSE) {
                /* The result is in; a server slow to close costs us nothing. */
                wsc_client_close(s->ws, WSC_CLOSE_NORMAL, NULL, 1000);
                s->state = RUN_DONE;
            } else if (run_now_ms() >= s->deadline) {
                run_end(s, RUN_END_TIMEOUT, "no result within %ld ms", s->args->timeout_ms);
                wsc_client_close(s->ws, WSC_CLOSE_GOING_AWAY, "timeout", 1000);
            }
        } else if (r == WSC_RECV_CLOSED || r < 0) {
            if (s->state == RUN_WAIT_CLOSE)
                s->state = RUN_DONE;
            else if (r == WSC_RECV_CLOSED)
                run_end(s, RUN_END_CONNECTION,
                        "the server closed the session before a result "
                        "(code %u%s%s)",
                        wsc_client_close_code(s->ws),
                        wsc_client_close_reason(s->ws)[0] != '\0' ? ": " : "",
                        wsc_client_close_reason(s->ws));
            else
                run_end(s, r == OTA_ERR_IO ? RUN_END_CONNECTION : RUN_END_PROTOCOL, "%s",
                        wsc_client_error(s->ws));
        }
        /* WSC_RECV_INTERRUPTED: the loop's head handles it. */
    }
}

static void run_report_end(const struct run_session *s)
{
    if (s->end == RUN_END_RESULT)
        return;
    fprintf(stderr, "ota-card run: %s\n", s->why);
    if (s->args->json) {
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:I}", "type", "client-error", "kind", run_end_kind[s->end],
                      "message", s->why, "commands", (json_int_t)s->commands);
        char *t = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        if (t != NULL)
            printf("%s\n", t);
        free(t);
        json_decref(o);
        fflush(stdout);
    }
}

static void run_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = run_on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: poll() must return so the card gets saved. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

int card_cmd_run(int argc, char **argv)
{
    struct run_args a;
    struct run_card card;
    struct run_session s;
    struct wsc_url url;
    struct wsc_client_opts opts;
    char err[300];
    int help = 0, r, status;

    r = run_parse_args(argc, argv, &a, &help);
    if (r != 0)
        return r;
    if (help) {
        fputs(RUN_USAGE "\n" RUN_HELP, stdout);
        return CARD_EXIT_OK;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "ota-card run: libsodium failed to initialize\n");
        return CARD_EXIT_CONN;
    }
    if (wsc_url_parse(a.url, &url) != 0)
        return run_usage("--url wants ws://HOST[:PORT]/PATH or wss://...");
    run_signals();
    r = run_card_open(&a, &card);
    if (r != 0) {
        sodium_memzero(a.auth, sizeof a.auth);
        return r;
    }

    memset(&s, 0, sizeof s);
    s.args = &a;
    s.card = &card;
    s.state = RUN_WAIT_SERVER;
    s.t0 = run_now_ms();
    if (a.trace_file != NULL && (s.trace = fopen(a.trace_file, "a")) == NULL) {
        fprintf(stderr, "ota-card run: cannot open the trace file %s\n", a.trace_file);
        sodium_memzero(a.auth, sizeof a.auth);
        run_card_close(&a, &card);
        return CARD_EXIT_USAGE;
    }
    memset(&opts, 0, sizeof opts);
    opts.connect_timeout_ms = a.timeout_ms < 10000 ? (int)a.timeout_ms : 10000;
    opts.ca_file = a.ca_file;
    opts.cert_file = a.cert_file;
    opts.key_file = a.key_file;
    opts.insecure = a.insecure;
    r = wsc_client_connect(&url, &opts, &s.ws, err, sizeof err);
    if (r != 0) {
        run_end(&s, RUN_END_CONNECTION, "cannot connect to %s: %s", a.url, err);
    } else {
        s.deadline = run_now_ms() + a.timeout_ms;
        if (run_send_operation(&s) == 0)
            run_loop(&s);
        /* Tell a server that broke the protocol why we leave (no-op when
         * the connection is already closed or was dropped on purpose). */
        if (s.end == RUN_END_PROTOCOL)
            wsc_client_close(s.ws, WSC_CLOSE_PROTOCOL, "protocol error", 1000);
    }
    sodium_memzero(a.auth, sizeof a.auth);
    wsc_client_free(s.ws);

    run_report_end(&s);
    if (s.end == RUN_END_RESULT && s.result != NULL) {
        char line[8];
        status = card_result_format(s.result, line, sizeof line);
    } else {
        status = CARD_EXIT_CONN;
    }
    json_decref(s.result);
    if (s.trace != NULL)
        fclose(s.trace);
    r = run_card_close(&a, &card);
    return r != 0 ? r : status;
}
