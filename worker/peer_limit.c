/* peer_limit: failed attempts per client address (see peer_limit.h).
 *
 * A plain array searched linearly: it serves operator-token attempts,
 * which are few, and a flood of refused attempts costs one scan each (a
 * few microseconds for the default 1024 addresses), never an Argon2id run.
 * Must never let an address past its limit, whatever the table holds: when
 * no entry can be replaced, the attempt is refused. */
#include "peer_limit.h"

#include <stdlib.h>
#include <string.h>

#include "wire.h"

struct plim_entry {
    int used;
    char peer[WIRE_MAX_PEER + 1];
    uint32_t failures;
    uint32_t in_flight;
    uint64_t window_start_ms; /* of the first failure counted */
};

struct plim {
    uint32_t max_failures;
    uint64_t window_ms;
    size_t n;
    struct plim_entry *e;
};

struct plim *plim_new(uint32_t max_failures, uint32_t window_s, size_t max_peers)
{
    if (max_failures == 0 || window_s == 0 || max_peers == 0)
        return NULL;
    struct plim *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->e = calloc(max_peers, sizeof *p->e);
    if (!p->e) {
        free(p);
        return NULL;
    }
    p->max_failures = max_failures;
    p->window_ms = (uint64_t)window_s * 1000u;
    p->n = max_peers;
    return p;
}

void plim_free(struct plim *p)
{
    if (!p)
        return;
    free(p->e);
    free(p);
}

static struct plim_entry *find(const struct plim *p, const char *peer)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->e[i].used && strncmp(p->e[i].peer, peer, sizeof p->e[i].peer) == 0)
            return &p->e[i];
    return NULL;
}

/* A free entry, else the one with nothing in flight whose window began
 * first (no failures at all counts as earliest); NULL if none. */
static struct plim_entry *make_room(struct plim *p, const char *peer)
{
    struct plim_entry *best = NULL;
    for (size_t i = 0; i < p->n; i++) {
        struct plim_entry *e = &p->e[i];
        if (!e->used) {
            best = e;
            break;
        }
        if (e->in_flight)
            continue;
        uint64_t age = e->failures ? e->window_start_ms + 1 : 0;
        uint64_t best_age = best && best->failures ? best->window_start_ms + 1 : 0;
        if (!best || age < best_age)
            best = e;
    }
    if (!best)
        return NULL;
    memset(best, 0, sizeof *best);
    best->used = 1;
    strncpy(best->peer, peer, sizeof best->peer - 1);
    return best;
}

static void expire(const struct plim *p, struct plim_entry *e, uint64_t now_ms)
{
    if (e->failures && now_ms - e->window_start_ms >= p->window_ms)
        e->failures = 0;
}

int plim_begin(struct plim *p, const char *peer, uint64_t now_ms)
{
    struct plim_entry *e = find(p, peer);
    if (!e)
        e = make_room(p, peer);
    if (!e)
        return 0;
    expire(p, e, now_ms);
    if ((uint64_t)e->failures + e->in_flight >= p->max_failures)
        return 0;
    e->in_flight++;
    return 1;
}

void plim_end(struct plim *p, const char *peer, int failed, uint64_t now_ms)
{
    struct plim_entry *e = find(p, peer);
    if (!e)
        return;
    if (e->in_flight)
        e->in_flight--;
    if (!failed)
        return;
    expire(p, e, now_ms);
    if (e->failures == 0)
        e->window_start_ms = now_ms;
    if (e->failures < UINT32_MAX)
        e->failures++;
}

uint32_t plim_failures(const struct plim *p, const char *peer, uint64_t now_ms)
{
    const struct plim_entry *e = find(p, peer);
    if (!e || (e->failures && now_ms - e->window_start_ms >= p->window_ms))
        return 0;
    return e->failures;
}
