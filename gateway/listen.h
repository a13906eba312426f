/* listen: the public and operator WebSocket listeners: address checks
 * (plain ws only where the configuration allows it), TLS contexts
 * (operator clients must present a certificate), accepting under the
 * hard connection cap, and handing each socket to conn.c. */
#ifndef GW_LISTEN_H
#define GW_LISTEN_H

#include <stdint.h>

struct gw;
struct listener;
struct conn_io;

/* kind: WIRE_LISTENER_PUBLIC or WIRE_LISTENER_OPERATOR.  Each accepted
 * connection reports to io (with arg).  Logs and returns NULL when the
 * configuration is refused or the bind fails. */
struct listener *listener_new(struct gw *g, uint8_t kind, const struct conn_io *io, void *arg);
void listener_disable(struct listener *l);
void listener_free(struct listener *l);
/* 1 if host:port names a loopback address. */
int listen_is_loopback(const char *addr);

#endif
