/* engine_cfg: the engine's settings (struct eng_config) read from the
 * configuration (common/config.c), whose table holds their one set of
 * defaults (documented in deploy/ota.conf.example).  ota-worker and the
 * engine's tests build the engine's settings the same way, so a default
 * cannot differ between them. */
#ifndef ENGINE_CFG_H
#define ENGINE_CFG_H

#include <stddef.h>

#include "engine.h"

struct cfg;

/* Fills ec from c (card.*, worker.* timeouts and limits, topup.max_amount)
 * and a random instance.  Returns 0, or -1 with the key and the reason in
 * err (for a bad_config log line). */
int eng_config_read(const struct cfg *c, struct eng_config *ec, char *err, size_t cap);

#endif
