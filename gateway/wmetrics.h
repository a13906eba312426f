/* wmetrics: the workers' own numbers on /metrics.  Each worker sends a
 * WIRE_STATS frame every few seconds (database latency, integrity
 * failures, signs of a relay that tampered with a commit, and the
 * database-wide counts of entries in doubt, reserved codes and frozen
 * cards); this renders the last one of each worker.  Pure text, no I/O. */
#ifndef GW_WMETRICS_H
#define GW_WMETRICS_H

#include "metrics.h"

struct pool;

/* Appends the ota_worker_* and ledger families to t. */
void wmet_render(const struct pool *p, struct met_text *t);

#endif
