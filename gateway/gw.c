/* gw: the process-wide tables (sessions by id, trusted PROXY peers) and
 * the clock; see gw.h. */
#include "gw.h"

#include <arpa/inet.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "ota_err.h"
#include "session.h"

#define DRAIN_TICK_MS 100
#define CLOSE_GRACE_MS 2500 /* after the last 1001, for close frames to leave */
/* The session phase of a drain lasts at least this long, so that a client
 * whose upgrade completed just before SIGTERM and whose operation message
 * is on its way still gets its session. */
#define DRAIN_MIN_MS 1000

uint64_t gw_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int gw_session_register(struct gw *g, struct session *s)
{
    if (g->nfree == 0)
        return OTA_ERR_LIMIT;
    uint32_t slot = g->free_slots[--g->nfree];
    do {
        g->gen++;
        s->id = ((uint64_t)g->gen << 32 | slot) ^ g->incarnation;
    } while (g->gen == 0 || s->id == 0); /* 0 means no session on the wire */
    g->slots[slot] = s;
    return 0;
}

void gw_session_unregister(struct gw *g, struct session *s)
{
    uint32_t slot = (uint32_t)(s->id ^ g->incarnation);
    if (slot < g->nslots && g->slots[slot] == s) {
        g->slots[slot] = NULL;
        g->free_slots[g->nfree++] = slot;
    }
}

struct session *gw_session_find(struct gw *g, uint64_t id)
{
    uint32_t slot = (uint32_t)(id ^ g->incarnation);
    if (slot >= g->nslots || !g->slots[slot] || g->slots[slot]->id != id)
        return NULL;
    return g->slots[slot];
}

int gw_proxy_allowed(const struct gw *g, const char *addr)
{
    for (size_t i = 0; i < g->nproxy_from; i++)
        if (strcmp(g->proxy_from[i], addr) == 0)
            return 1;
    return 0;
}
