/* config: the one configuration format, shared by ota-gateway, ota-worker
 * and ota-ctl.  A file of `key = value` lines (# comments, blank lines);
 * keys are dotted (`gateway.listen`, `db.conninfo`); command-line flags
 * `--key=value` or `--key value` override the file.  Every key and its
 * default is documented in deploy/ota.conf.example, and nowhere else.
 * Unknown keys are an error (a typo must not silently fall back). */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct cfg;

/* Creates an empty configuration holding the built-in defaults table. */
struct cfg *cfg_new(void);
void cfg_free(struct cfg *c);
/* Loads a file; on error returns a negative ota_err and a message naming
 * the file and line in err. */
int cfg_load_file(struct cfg *c, const char *path, char *err, size_t errlen);
/* Sets one key (from a flag); rejects unknown keys. */
int cfg_set(struct cfg *c, const char *key, const char *value, char *err, size_t errlen);
/* Applies argv flags of the form --key=value / --key value for every known
 * key; leaves other arguments in place (returns the new argc). */
int cfg_apply_args(struct cfg *c, int argc, char **argv, char *err, size_t errlen);

/* Getters return the configured value or the documented default. */
const char *cfg_str(const struct cfg *c, const char *key);
long long cfg_int(const struct cfg *c, const char *key);
int cfg_bool(const struct cfg *c, const char *key);
/* Path the configuration was loaded from, or NULL (passed to workers). */
const char *cfg_path(const struct cfg *c);
/* The overrides given to cfg_set()/cfg_apply_args(), as "--key=value"
 * strings in order (a parent passes them on to the processes it starts). */
const char *const *cfg_override_args(const struct cfg *c, size_t *n);
/* The table of known keys and their defaults (tests, documentation). */
size_t cfg_key_count(void);
const char *cfg_key_name(size_t i);
const char *cfg_key_default(size_t i);

#endif
