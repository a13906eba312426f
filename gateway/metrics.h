/* metrics: the gateway's counters and histograms, and the Prometheus text
 * writer used by /metrics.  Pure: recording is a few additions, rendering
 * appends to a growing text buffer; the admin module owns the HTTP side. */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define MET_MAX_BUCKETS 12

struct met_hist {
    const double *bounds; /* upper bounds in seconds, ascending */
    size_t nb;
    uint64_t counts[MET_MAX_BUCKETS]; /* per bucket, not cumulative */
    uint64_t count;
    double sum;
};

/* Session outcome labels of ota_gateway_sessions_total{result}. */
enum met_result { MET_RES_OK = 0, MET_RES_FAILED, MET_RES_PENDING, MET_RES_ABORTED, MET_RES_N };

/* Why a connection was refused or cut before its session began. */
enum met_reject {
    MET_REJ_LIMIT_TOTAL = 0,
    MET_REJ_LIMIT_IP,
    MET_REJ_BAD_UPGRADE,
    MET_REJ_UPGRADE_TIMEOUT,
    MET_REJ_PROXY,
    MET_REJ_DRAINING,
    MET_REJ_TLS,
    MET_REJ_N
};

#define MET_CLOSE_N 6 /* 1000, 1001, 1002, 1003, 1007, 1009 */

struct met {
    uint64_t sessions_total[WIRE_OP_PERSONALIZE + 1][MET_RES_N]; /* [0] = no operation */
    uint64_t session_errors_total[WIRE_E_COUNT];
    uint64_t rejected_total[MET_REJ_N];
    uint64_t close_codes_total[MET_CLOSE_N]; /* by met_close_index() */
    uint64_t output_stalled_total;           /* dropped: output over the cap too long */
    struct met_hist exchange_added;          /* client response in -> next command out */
    struct met_hist apdu_roundtrip;          /* command out -> client response in */
    struct met_hist session_duration;
};

void met_init(struct met *m);
void met_observe(struct met_hist *h, double seconds);
/* Index of a close code in close_codes_total. */
int met_close_index(int code);
void met_session_end(struct met *m, uint8_t op, enum met_result res, uint8_t error);

/* A growing text buffer. */
struct met_text {
    char *p;
    size_t len, cap;
    int oom;
};
void met_printf(struct met_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* # HELP and # TYPE lines. */
void met_header(struct met_text *t, const char *name, const char *type, const char *help);
/* Everything in struct met (the caller adds the gauges it owns). */
void met_render(const struct met *m, struct met_text *t);
void met_render_hist(const struct met_hist *h, const char *name, const char *help,
                     struct met_text *t);

#endif
