/* drain: the gateway's graceful stop (SIGTERM/SIGINT).  Closes the client
 * ports, lets the running sessions finish (gateway.drain_timeout_ms),
 * closes every WebSocket with 1001, waits for the close frames to leave,
 * then stops the workers and ends the event loop.  It calls down into the
 * listeners, the connections and the pool; nothing calls it but main.c. */
#ifndef GW_DRAIN_H
#define GW_DRAIN_H

struct gw;
struct pool;
struct listener;

struct drain;

struct drain *drain_new(struct gw *g, struct pool *pool, struct listener *pub, struct listener *op);
/* Starts the drain; a second call cuts the session phase short. */
void drain_start(struct drain *d);
void drain_free(struct drain *d);

#endif
