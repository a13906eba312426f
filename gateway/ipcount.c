/* ipcount: per-address connection counts; see ipcount.h.  Addresses come
 * from the TCP peer or a trusted PROXY header, never from HTTP headers. */
#include "ipcount.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ota_err.h"

struct ip_entry {
    struct ip_entry *next;
    size_t count;
    char addr[]; /* NUL-terminated */
};

struct ipcount {
    size_t nb;
    struct ip_entry **b;
};

static size_t hash(const char *s, size_t nb)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)(h % nb);
}

struct ipcount *ipcount_new(size_t buckets)
{
    struct ipcount *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->nb = buckets ? buckets : 1;
    t->b = calloc(t->nb, sizeof *t->b);
    if (!t->b) {
        free(t);
        return NULL;
    }
    return t;
}

void ipcount_free(struct ipcount *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nb; i++) {
        struct ip_entry *e = t->b[i];
        while (e) {
            struct ip_entry *n = e->next;
            free(e);
            e = n;
        }
    }
    free(t->b);
    free(t);
}

static struct ip_entry **find(const struct ipcount *t, const char *addr)
{
    struct ip_entry **pp = &t->b[hash(addr, t->nb)];
    while (*pp && strcmp((*pp)->addr, addr) != 0)
        pp = &(*pp)->next;
    return pp;
}

int ipcount_take(struct ipcount *t, const char *addr, size_t limit)
{
    struct ip_entry **pp = find(t, addr);
    if (*pp) {
        if ((*pp)->count >= limit)
            return OTA_ERR_LIMIT;
        (*pp)->count++;
        return 0;
    }
    if (limit == 0)
        return OTA_ERR_LIMIT;
    size_t n = strlen(addr);
    struct ip_entry *e = malloc(sizeof *e + n + 1);
    if (!e)
        return OTA_ERR_NOMEM;
    memcpy(e->addr, addr, n + 1);
    e->count = 1;
    e->next = NULL;
    *pp = e;
    return 0;
}

void ipcount_put(struct ipcount *t, const char *addr)
{
    struct ip_entry **pp = find(t, addr);
    if (!*pp)
        return;
    if (--(*pp)->count == 0) {
        struct ip_entry *e = *pp;
        *pp = e->next;
        free(e);
    }
}

size_t ipcount_get(const struct ipcount *t, const char *addr)
{
    struct ip_entry *const *pp = (struct ip_entry *const *)find(t, addr);
    return *pp ? (*pp)->count : 0;
}
