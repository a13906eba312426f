/* admin: the operations HTTP listener (evhttp): /healthz, /readyz,
 * /status (JSON) and /metrics (Prometheus text).  Read-only views of the
 * gateway; it changes nothing and shows no client data. */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

struct gw;
struct pool;
struct admin;

struct admin *admin_new(struct gw *g, struct pool *pool);
void admin_free(struct admin *a);

#endif
