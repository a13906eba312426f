/* gw: what every part of the gateway process reads: the event base, the
 * settings read once from the configuration, the clock, the counters, the
 * connection list and the session table.  One instance, owned by main.c.
 * It knows none of the parts (workers, listeners, admin, drain): main.c
 * wires them, and they report to their owners through callbacks.  Nothing
 * in here is secret, and nothing here parses network input. */
#ifndef GW_GW_H
#define GW_GW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "metrics.h"

struct cfg;
struct conn;
struct session;
struct ipcount;

/* Settings read once at start (all validated by config.c's ranges). */
struct gw_settings {
    size_t max_connections, max_connections_per_ip, max_message, max_header_bytes;
    unsigned max_headers;
    uint64_t upgrade_timeout_ms, ping_interval_ms, idle_timeout_ms, drain_timeout_ms;
    uint64_t first_message_ms, output_stall_ms;
    size_t max_output;
    uint64_t heartbeat_ms, worker_dead_ms, restart_backoff_ms, restart_backoff_max_ms;
    unsigned workers;
};

TAILQ_HEAD(conn_list, conn);

struct gw {
    struct cfg *cfg;
    struct event_base *base;
    struct gw_settings set;
    struct met met;
    struct ipcount *ips;

    struct conn_list conns; /* every open client connection */
    size_t nconns;          /* all, before and after the upgrade */
    size_t nws;             /* upgraded (counted against the limits) */
    size_t nsessions;       /* with an operation running */

    /* Session ids: (generation << 32 | slot index) XOR incarnation.  The
     * generation means a late frame for an ended session never reaches a
     * new one in the same slot; the incarnation (random, new at every
     * start, told to the workers in every heartbeat) means a session of an
     * earlier gateway process, still open in a remote worker, never has
     * the id of one of ours. */
    struct session **slots;
    uint32_t nslots, *free_slots, nfree, gen;
    uint64_t incarnation;

    char **proxy_from; /* canonical addresses allowed to send PROXY headers */
    size_t nproxy_from;

    int draining; /* set by drain.c; read by the listeners, conns, pool, admin */
};

uint64_t gw_now_us(void);

/* Session table. */
int gw_session_register(struct gw *g, struct session *s);
void gw_session_unregister(struct gw *g, struct session *s);
struct session *gw_session_find(struct gw *g, uint64_t id);

/* Is addr (canonical text) allowed to send a PROXY protocol header? */
int gw_proxy_allowed(const struct gw *g, const char *addr);

#endif
