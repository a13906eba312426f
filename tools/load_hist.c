/* load_hist: log-linear latency histogram (see load_hist.h). */
#include <string.h>

#include "load_hist.h"

void load_hist_init(struct load_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min_us = UINT64_MAX;
}

unsigned load_hist_index(uint64_t us)
{
    unsigned msb, shift;
    uint64_t idx;
    if (us < 2 * LOAD_HIST_SUB)
        return (unsigned)us;
    msb = 63u - (unsigned)__builtin_clzll(us);
    shift = msb - 6; /* keep the top 7 bits: 64..127 */
    idx = (uint64_t)shift * LOAD_HIST_SUB + (us >> shift);
    return idx < LOAD_HIST_BUCKETS ? (unsigned)idx : LOAD_HIST_BUCKETS - 1;
}

uint64_t load_hist_upper(unsigned idx)
{
    unsigned shift;
    uint64_t m;
    if (idx < 2 * LOAD_HIST_SUB)
        return idx;
    shift = idx / LOAD_HIST_SUB - 1;
    m = idx - (uint64_t)shift * LOAD_HIST_SUB;
    return ((m + 1) << shift) - 1;
}

void load_hist_add(struct load_hist *h, uint64_t us)
{
    h->bucket[load_hist_index(us)]++;
    h->count++;
    h->sum_us += us;
    if (us < h->min_us)
        h->min_us = us;
    if (us > h->max_us)
        h->max_us = us;
}

void load_hist_merge(struct load_hist *dst, const struct load_hist *src)
{
    for (unsigned i = 0; i < LOAD_HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    dst->sum_us += src->sum_us;
    if (src->min_us < dst->min_us)
        dst->min_us = src->min_us;
    if (src->max_us > dst->max_us)
        dst->max_us = src->max_us;
}

uint64_t load_hist_quantile(const struct load_hist *h, double q)
{
    uint64_t rank, seen = 0;
    if (h->count == 0)
        return 0;
    if (q <= 0)
        return h->min_us;
    /* The smallest value with at least ceil(q * count) samples at or below. */
    rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < LOAD_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t up = load_hist_upper(i);
            return up < h->max_us ? up : h->max_us;
        }
    }
    return h->max_us;
}

uint64_t load_hist_mean(const struct load_hist *h)
{
    return h->count == 0 ? 0 : h->sum_us / h->count;
}
