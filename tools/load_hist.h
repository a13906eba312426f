/* load_hist: a latency histogram for ota-load, in the manner of
 * HdrHistogram: exact below 128 µs, then 64 buckets per power of two (at
 * most 1.6 % relative error), fixed size, no allocation per sample.  It
 * must never lose a sample: values beyond the top bucket count in it. */
#ifndef LOAD_HIST_H
#define LOAD_HIST_H

#include <stdint.h>

#define LOAD_HIST_SUB 64
#define LOAD_HIST_BUCKETS (LOAD_HIST_SUB * 2 + LOAD_HIST_SUB * 34)

struct load_hist {
    uint64_t count;
    uint64_t sum_us;
    uint64_t min_us, max_us;
    uint64_t bucket[LOAD_HIST_BUCKETS];
};

void load_hist_init(struct load_hist *h);
void load_hist_add(struct load_hist *h, uint64_t us);
/* Adds every sample of src to dst. */
void load_hist_merge(struct load_hist *dst, const struct load_hist *src);
/* The value at quantile q (0..1): the upper edge of the bucket that holds
 * it, capped by the largest sample; 0 when empty. */
uint64_t load_hist_quantile(const struct load_hist *h, double q);
uint64_t load_hist_mean(const struct load_hist *h);

/* Bucket index of a value and the largest value of a bucket (for tests). */
unsigned load_hist_index(uint64_t us);
uint64_t load_hist_upper(unsigned idx);

#endif
