/* wmetrics: renders the workers' WIRE_STATS for /metrics; see wmetrics.h.
 * Per-worker counters carry a worker label (the slot id: a number); the
 * database-wide gauges are the same whichever worker read them, so only
 * the freshest reading of a live worker is shown, and none when every
 * reading is older than WMET_MAX_COUNTS_AGE_S (absent, so that an alert on
 * absence can fire, rather than a stale number).  Must never put anything
 * but fixed names and numbers into a label. */
#include "wmetrics.h"

#include <stdio.h>

#include "pool.h"
#include "wire.h"

#define WMET_MAX_COUNTS_AGE_S 120.0

static const char *const sign_names[WIRE_SIGN_COUNT] = {
    [WIRE_SIGN_INTEGRITY_AT_RISK] = "integrity_at_risk",
    [WIRE_SIGN_SETTLED_LATER] = "settled_later",
    [WIRE_SIGN_READBACK] = "readback",
    [WIRE_SIGN_CREDIT_MISSING] = "credit_missing",
    [WIRE_SIGN_SETTLE_CONFLICT] = "settle_conflict",
};

/* Worker slot i's last WIRE_STATS (NULL: none yet) and its label. */
static const struct wire_stats *stats_of(const struct pool *p, size_t i, unsigned *id)
{
    double age;
    const struct wire_stats *s = pool_worker_stats(p, i, &age);
    if (s) {
        struct pool_worker_info wi;
        pool_info(p, i, &wi);
        *id = wi.id;
    }
    return s;
}

static void latency(const struct pool *p, struct met_text *t)
{
    const char *name = "ota_worker_db_latency_seconds";
    met_header(t, name, "histogram",
               "Ledger request latency in the worker, from submit to the database's reply "
               "(queueing included).");
    for (size_t i = 0; i < pool_count(p); i++) {
        unsigned id;
        const struct wire_stats *s = stats_of(p, i, &id);
        if (!s)
            continue;
        uint64_t cum = 0;
        for (size_t b = 0; b < WIRE_STATS_DB_BUCKETS; b++) {
            cum += s->db_buckets[b];
            met_printf(t, "ota_worker_db_latency_seconds_bucket{worker=\"%u\",le=\"%g\"} %llu\n",
                       id, wire_stats_db_bounds_us[b] / 1e6, (unsigned long long)cum);
        }
        met_printf(t, "ota_worker_db_latency_seconds_bucket{worker=\"%u\",le=\"+Inf\"} %llu\n", id,
                   (unsigned long long)s->db_count);
        met_printf(t, "ota_worker_db_latency_seconds_sum{worker=\"%u\"} %.6f\n", id,
                   (double)s->db_sum_us / 1e6);
        met_printf(t, "ota_worker_db_latency_seconds_count{worker=\"%u\"} %llu\n", id,
                   (unsigned long long)s->db_count);
    }
}

enum counter { C_DB_ERRORS, C_INTEGRITY, C_FREEZES };

static void counter(const struct pool *p, struct met_text *t, const char *name, const char *help,
                    enum counter which)
{
    met_header(t, name, "counter", help);
    for (size_t i = 0; i < pool_count(p); i++) {
        unsigned id;
        const struct wire_stats *s = stats_of(p, i, &id);
        if (!s)
            continue;
        uint64_t v = which == C_DB_ERRORS   ? s->db_errors
                     : which == C_INTEGRITY ? s->integrity_failures
                                            : s->freezes;
        met_printf(t, "%s{worker=\"%u\"} %llu\n", name, id, (unsigned long long)v);
    }
}

static void signs(const struct pool *p, struct met_text *t)
{
    met_header(t, "ota_worker_relay_commit_signs_total", "counter",
               "Signs that a relay withheld or altered a commit's answer: integrity failure "
               "while a top-up was at risk, commit proven only in a later session, read-back "
               "failed, credit missing, card records contradicting the ledger.");
    for (size_t i = 0; i < pool_count(p); i++) {
        unsigned id;
        const struct wire_stats *s = stats_of(p, i, &id);
        if (!s)
            continue;
        for (int k = 0; k < WIRE_SIGN_COUNT; k++)
            met_printf(t, "ota_worker_relay_commit_signs_total{worker=\"%u\",sign=\"%s\"} %llu\n",
                       id, sign_names[k], (unsigned long long)s->signs[k]);
    }
}

/* The freshest database counts of a live worker, or NULL. */
static const struct wire_stats *freshest(const struct pool *p, double *age_out)
{
    const struct wire_stats *best = NULL;
    double best_age = 0;
    for (size_t i = 0; i < pool_count(p); i++) {
        struct pool_worker_info wi;
        double age;
        const struct wire_stats *s = pool_worker_stats(p, i, &age);
        if (!s || !s->counts_ok)
            continue;
        pool_info(p, i, &wi);
        if (!wi.live)
            continue;
        age += s->counts_age_ms / 1000.0;
        if (age <= WMET_MAX_COUNTS_AGE_S && (!best || age < best_age)) {
            best = s;
            best_age = age;
        }
    }
    *age_out = best_age;
    return best;
}

static void gauge(struct met_text *t, const char *name, const char *help, int have, double v)
{
    met_header(t, name, "gauge", help);
    if (have)
        met_printf(t, "%s %.17g\n", name, v);
}

void wmet_render(const struct pool *p, struct met_text *t)
{
    latency(p, t);
    counter(p, t, "ota_worker_db_errors_total",
            "Ledger requests whose outcome is unknown (database unreachable, timeout, error).",
            C_DB_ERRORS);
    counter(p, t, "ota_worker_integrity_failures_total",
            "Card answers that failed the secure-messaging checks (MAC, CRC, length).",
            C_INTEGRITY);
    counter(p, t, "ota_worker_freezes_total", "Cards this worker froze.", C_FREEZES);
    signs(p, t);

    double age = 0;
    const struct wire_stats *s = freshest(p, &age);
    int h = s != NULL;
    gauge(t, "ota_ledger_in_doubt",
          "Ledger transactions reserved without a final entry (database wide).", h,
          h ? (double)s->in_doubt : 0);
    gauge(t, "ota_ledger_in_doubt_old",
          "Of those, reserved more than 60 seconds ago (database wide).", h,
          h ? (double)s->in_doubt_old : 0);
    gauge(t, "ota_ledger_in_doubt_oldest_seconds",
          "Age of the oldest transaction in doubt; 0 if none (database wide).", h,
          h ? (double)s->in_doubt_oldest_s : 0);
    gauge(t, "ota_codes_reserved", "Top-up codes in state reserved (database wide).", h,
          h ? (double)s->codes_reserved : 0);
    gauge(t, "ota_cards_frozen", "Cards frozen until an operator clears them (database wide).", h,
          h ? (double)s->cards_frozen : 0);
    gauge(t, "ota_ledger_counts_age_seconds",
          "How old the database-wide counts above are (absent: no live worker read them "
          "in the last 2 minutes).",
          h, age);
}
