/* metrics: counters, histograms and their Prometheus text form; see
 * metrics.h.  Names follow ota_gateway_<what>[_<unit>][_total]; every
 * family has HELP and TYPE so `promtool check metrics` accepts it.  This
 * file must never put client-controlled text into a label. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double exchange_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                         0.0025,  0.005,  0.01,    0.025,  0.1};
static const double apdu_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};
static const double duration_bounds[] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};

#define N(a) (sizeof a / sizeof a[0])

void met_init(struct met *m)
{
    memset(m, 0, sizeof *m);
    m->exchange_added.bounds = exchange_bounds;
    m->exchange_added.nb = N(exchange_bounds);
    m->apdu_roundtrip.bounds = apdu_bounds;
    m->apdu_roundtrip.nb = N(apdu_bounds);
    m->session_duration.bounds = duration_bounds;
    m->session_duration.nb = N(duration_bounds);
}

void met_observe(struct met_hist *h, double seconds)
{
    if (seconds < 0)
        seconds = 0;
    for (size_t i = 0; i < h->nb; i++) {
        if (seconds <= h->bounds[i]) {
            h->counts[i]++;
            break;
        }
    }
    h->count++;
    h->sum += seconds;
}

void met_session_end(struct met *m, uint8_t op, enum met_result res, uint8_t error)
{
    if (op > WIRE_OP_PERSONALIZE)
        op = 0;
    if (res >= MET_RES_N)
        res = MET_RES_FAILED;
    m->sessions_total[op][res]++;
    if (res != MET_RES_OK && res != MET_RES_ABORTED && error > WIRE_E_NONE && error < WIRE_E_COUNT)
        m->session_errors_total[error]++;
}

void met_printf(struct met_text *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if (t->p && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t want = t->cap ? t->cap * 2 : 4096;
        while (want < t->len + (size_t)n + 1)
            want *= 2;
        char *p = realloc(t->p, want);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = want;
    }
}

void met_header(struct met_text *t, const char *name, const char *type, const char *help)
{
    met_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void met_render_hist(const struct met_hist *h, const char *name, const char *help,
                     struct met_text *t)
{
    met_header(t, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->nb; i++) {
        cum += h->counts[i];
        met_printf(t, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    met_printf(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    met_printf(t, "%s_sum %.9f\n", name, h->sum);
    met_printf(t, "%s_count %llu\n", name, (unsigned long long)h->count);
}

static const char *const result_names[MET_RES_N] = {"ok", "failed", "pending", "aborted"};
static const char *const reject_names[MET_REJ_N] = {
    "limit_total", "limit_per_ip", "bad_upgrade", "upgrade_timeout", "proxy", "draining", "tls"};
static const int close_codes[MET_CLOSE_N] = {1000, 1001, 1002, 1003, 1007, 1009};

void met_render(const struct met *m, struct met_text *t)
{
    met_header(t, "ota_gateway_sessions_total", "counter",
               "Sessions ended, by operation and result (aborted: the client left first).");
    for (uint8_t op = 0; op <= WIRE_OP_PERSONALIZE; op++)
        for (int r = 0; r < MET_RES_N; r++)
            met_printf(t, "ota_gateway_sessions_total{operation=\"%s\",result=\"%s\"} %llu\n",
                       op ? wire_op_name(op) : "none", result_names[r],
                       (unsigned long long)m->sessions_total[op][r]);
    met_header(t, "ota_gateway_session_errors_total", "counter",
               "Sessions that ended failed or pending, by result error code.");
    for (uint8_t e = 1; e < WIRE_E_COUNT; e++)
        met_printf(t, "ota_gateway_session_errors_total{error=\"%s\"} %llu\n", wire_error_name(e),
                   (unsigned long long)m->session_errors_total[e]);
    met_header(t, "ota_gateway_connections_rejected_total", "counter",
               "Connections refused or cut before a session began, by reason.");
    for (int r = 0; r < MET_REJ_N; r++)
        met_printf(t, "ota_gateway_connections_rejected_total{reason=\"%s\"} %llu\n",
                   reject_names[r], (unsigned long long)m->rejected_total[r]);
    met_header(t, "ota_gateway_ws_closes_total", "counter",
               "WebSocket close frames sent, by close code.");
    for (int i = 0; i < MET_CLOSE_N; i++)
        met_printf(t, "ota_gateway_ws_closes_total{code=\"%d\"} %llu\n", close_codes[i],
                   (unsigned long long)m->close_codes_total[i]);
    met_header(t, "ota_gateway_connections_output_stalled_total", "counter",
               "Connections dropped because their client read nothing while its output stayed "
               "over gateway.max_output_bytes for gateway.output_stall_ms.");
    met_printf(t, "ota_gateway_connections_output_stalled_total %llu\n",
               (unsigned long long)m->output_stalled_total);
    met_render_hist(&m->exchange_added, "ota_gateway_exchange_added_seconds",
                    "Server-added time per exchange: client response received to next command "
                    "sent.",
                    t);
    met_render_hist(
        &m->apdu_roundtrip, "ota_gateway_apdu_roundtrip_seconds",
        "Time from a command (or a v2 batch of commands) sent to the client's answer received.", t);
    met_render_hist(&m->session_duration, "ota_gateway_session_duration_seconds",
                    "Time from the operation message to the result (or the client leaving).", t);
}

int met_close_index(int code)
{
    for (int i = 0; i < MET_CLOSE_N; i++)
        if (close_codes[i] == code)
            return i;
    return 2; /* any other code we send is a protocol error */
}
