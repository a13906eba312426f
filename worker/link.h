/* link: the worker's ZeroMQ link to its gateway.  A DEALER connected to
 * the gateway's ROUTER (ipc:// locally; tcp:// with CurveZMQ for a remote
 * worker, refused without its keys: the frames carry top-up codes), its
 * edge-triggered input drained in batches from the event loop, and frames
 * out.  Every frame received goes up to the owner's callback and is wiped
 * once it returns; the link knows nothing of sessions or the database. */
#ifndef WORKER_LINK_H
#define WORKER_LINK_H

#include <stddef.h>
#include <stdint.h>

struct cfg;
struct event_base;
struct link;

/* One frame as received (not yet checked); valid during the call only. */
typedef void (*link_frame_fn)(void *arg, const uint8_t *frame, size_t len);

/* Connects to endpoint (worker.capacity sizes the queues; the CurveZMQ keys
 * from worker.curve_secret_file and worker.gateway_public_key).  Logs and
 * returns NULL on failure. */
struct link *link_new(struct event_base *base, const struct cfg *cfg, unsigned worker_id,
                      const char *endpoint, link_frame_fn on_frame, void *arg);
/* Sends one frame without blocking; 0, OTA_ERR_LIMIT (queue full) or
 * OTA_ERR_IO. */
int link_send(struct link *l, const uint8_t *frame, size_t len);
/* Closes the socket (after up to a second for frames still queued). */
void link_free(struct link *l);

#endif
