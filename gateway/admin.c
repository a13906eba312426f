/* admin: /healthz /readyz /status /metrics; see admin.h.  Every answer is
 * built from counters the loop already keeps; nothing here blocks. */
#include "admin.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "config.h"
#include "gw.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "wmetrics.h"
#include "num.h"

struct admin {
    struct gw *g;
    struct pool *pool;
    struct evhttp *http;
};

static void reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                  const char *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(b, body, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static void text(struct evhttp_request *req, int code, const char *reason, const char *body)
{
    reply(req, code, reason, "text/plain; charset=utf-8", body, strlen(body));
}

static void status_json(struct admin *a, struct evhttp_request *req)
{
    struct gw *g = a->g;
    json_t *ws = json_array();
    for (size_t i = 0; i < pool_count(a->pool); i++) {
        struct pool_worker_info wi;
        pool_info(a->pool, i, &wi);
        json_t *age =
            wi.last_heartbeat_age_s >= 0 ? json_real(wi.last_heartbeat_age_s) : json_null();
        json_t *wo = json_pack("{s:I, s:I, s:b, s:b, s:I, s:I, s:I, s:I, s:o, s:b}", "id",
                               (json_int_t)wi.id, "pid", (json_int_t)wi.pid, "live", wi.live,
                               "db_ok", wi.db_ok, "sessions", (json_int_t)wi.sessions,
                               "reported_sessions", (json_int_t)wi.reported_sessions, "capacity",
                               (json_int_t)wi.capacity, "restarts", (json_int_t)wi.restarts,
                               "last_heartbeat_age_s", age, "remote", wi.remote);
        if (wo)
            json_object_set_new(wo, "crash_loop", json_boolean(wi.crash_loop));
        if (wo && wi.remote) {
            json_object_set_new(wo, "key", json_string(wi.key));
            json_object_set_new(wo, "address", json_string(wi.addr));
        }
        json_array_append_new(ws, wo);
    }
    json_t *o = json_pack("{s:b, s:b, s:I, s:I, s:I, s:o, s:I}", "ready",
                          !g->draining && pool_ready(a->pool), "draining", g->draining,
                          "connections", (json_int_t)g->nconns, "websockets", (json_int_t)g->nws,
                          "sessions", (json_int_t)g->nsessions, "workers", ws,
                          "remote_workers_refused", (json_int_t)pool_remote_refused(a->pool));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    reply(req, 200, "OK", "application/json", s, strlen(s));
    free(s);
}

enum worker_measure { WM_UP, WM_DB_OK, WM_SESSIONS, WM_RESTARTS, WM_CRASH_LOOP };

/* One integer metric with a sample per worker slot. */
static void worker_metric(struct met_text *t, const struct pool *p, const char *name,
                          const char *type, const char *help, enum worker_measure m)
{
    met_header(t, name, type, help);
    for (size_t i = 0; i < pool_count(p); i++) {
        struct pool_worker_info wi;
        pool_info(p, i, &wi);
        long long v = m == WM_UP         ? wi.live
                      : m == WM_DB_OK    ? wi.live && wi.db_ok
                      : m == WM_SESSIONS ? (long long)wi.sessions
                      : m == WM_RESTARTS ? (long long)wi.restarts
                                         : wi.crash_loop;
        met_printf(t, "%s{worker=\"%u\"} %lld\n", name, wi.id, v);
    }
}

static void metrics(struct admin *a, struct evhttp_request *req)
{
    struct gw *g = a->g;
    struct met_text t = {0};
    met_header(&t, "ota_gateway_sessions_active", "gauge", "Sessions with an operation running.");
    met_printf(&t, "ota_gateway_sessions_active %zu\n", g->nsessions);
    met_header(&t, "ota_gateway_connections_active", "gauge",
               "Open client connections (before and after the upgrade).");
    met_printf(&t, "ota_gateway_connections_active %zu\n", g->nconns);
    met_header(&t, "ota_gateway_websockets_active", "gauge", "Open WebSocket connections.");
    met_printf(&t, "ota_gateway_websockets_active %zu\n", g->nws);
    met_header(&t, "ota_gateway_draining", "gauge", "1 while the gateway drains (SIGTERM).");
    met_printf(&t, "ota_gateway_draining %d\n", g->draining);
    met_render(&g->met, &t);

    worker_metric(&t, a->pool, "ota_gateway_worker_up", "gauge", "1 if the worker is live.", WM_UP);
    worker_metric(&t, a->pool, "ota_gateway_worker_db_ok", "gauge",
                  "1 if the worker reports a usable database connection.", WM_DB_OK);
    worker_metric(&t, a->pool, "ota_gateway_worker_sessions", "gauge",
                  "Sessions pinned to the worker.", WM_SESSIONS);
    worker_metric(&t, a->pool, "ota_gateway_worker_restarts_total", "counter",
                  "Times the worker was restarted after it exited or was killed.", WM_RESTARTS);
    worker_metric(&t, a->pool, "ota_gateway_worker_crash_loop", "gauge",
                  "1 while the worker keeps dying: its last restart waited the longest back-off "
                  "(gateway.restart_backoff_max_ms) and it has not stayed up that long since.",
                  WM_CRASH_LOOP);
    size_t n = pool_count(a->pool);
    struct pool_worker_info wi;
    met_header(&t, "ota_gateway_worker_heartbeat_age_seconds", "gauge",
               "Seconds since the worker was last heard from (live workers only).");
    for (size_t i = 0; i < n; i++) {
        pool_info(a->pool, i, &wi);
        if (wi.last_heartbeat_age_s >= 0)
            met_printf(&t, "ota_gateway_worker_heartbeat_age_seconds{worker=\"%u\"} %.3f\n", wi.id,
                       wi.last_heartbeat_age_s);
    }
    met_header(&t, "ota_gateway_remote_workers_refused_total", "counter",
               "Remote worker connections refused (CurveZMQ key not allowed, or no free slot).");
    met_printf(&t, "ota_gateway_remote_workers_refused_total %" PRIu64 "\n",
               pool_remote_refused(a->pool));
    /* The workers' own numbers (WIRE_STATS; gateway/wmetrics.c). */
    wmet_render(a->pool, &t);
    if (t.oom || !t.p) {
        free(t.p);
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", t.p, t.len);
    free(t.p);
}

static void handle(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        text(req, 405, "Method Not Allowed", "GET only\n");
        return;
    }
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    if (!path)
        path = "";
    if (strcmp(path, "/healthz") == 0) {
        text(req, 200, "OK", "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        if (a->g->draining)
            text(req, 503, "Service Unavailable", "draining\n");
        else if (!pool_ready(a->pool))
            text(req, 503, "Service Unavailable", "no live worker with a database\n");
        else
            text(req, 200, "OK", "ready\n");
    } else if (strcmp(path, "/status") == 0) {
        status_json(a, req);
    } else if (strcmp(path, "/metrics") == 0) {
        metrics(a, req);
    } else {
        text(req, 404, "Not Found", "try /healthz /readyz /status /metrics\n");
    }
}

struct admin *admin_new(struct gw *g, struct pool *pool)
{
    const char *addr = cfg_str(g->cfg, "gateway.admin_listen");
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) {
        log_error("bad_config", "key=gateway.admin_listen value=\"%s\"", addr);
        return NULL;
    }
    size_t hn = (size_t)(colon - addr);
    memcpy(host, addr, hn);
    host[hn] = '\0';
    if (hn >= 2 && host[0] == '[' && host[hn - 1] == ']') {
        memmove(host, host + 1, hn - 2);
        host[hn - 2] = '\0';
    }
    long long port;
    if (num_parse_ll(colon + 1, 1, 65535, &port) != 0) {
        log_error("bad_config", "key=gateway.admin_listen value=\"%s\"", addr);
        return NULL;
    }
    struct admin *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->g = g;
    a->pool = pool;
    a->http = evhttp_new(g->base);
    if (!a->http) {
        free(a);
        return NULL;
    }
    evhttp_set_max_headers_size(a->http, 8192);
    evhttp_set_max_body_size(a->http, 0);
    evhttp_set_timeout(a->http, 10);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(a->http, handle, a);
    if (!evhttp_bind_socket_with_handle(a->http, host, (ev_uint16_t)port)) {
        log_error("bind_failed", "listener=admin addr=\"%s\"", addr);
        admin_free(a);
        return NULL;
    }
    log_info("listening", "listener=admin addr=\"%s\"", addr);
    return a;
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    free(a);
}
