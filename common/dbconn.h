/* dbconn: db.conninfo as every process hands it to libpq.
 *
 * libpq reads `host=var/pg` as a host name; our configuration means a
 * socket directory relative to the process's working directory (see
 * deploy/ota.conf.example).  dbconn rewrites the conninfo (keyword/value or
 * URI form) into keyword='value' form with each relative socket directory
 * made absolute, so ota-ctl, ota-worker and the tests resolve it the same
 * way.  A host element is a socket directory when it contains a '/'; one
 * that starts with '/' (or '@', an abstract socket) is kept as it is, and
 * a plain name or address is a TCP host.  A directory without a slash
 * must be written `./pg`.
 *
 * Must never print or log a conninfo: it may hold a password.  Only
 * dbconn_describe's output is fit for a log line. */
#ifndef OTA_DBCONN_H
#define OTA_DBCONN_H

#include <stddef.h>

/* Sets *out to a malloc'd conninfo (free with dbconn_free) equal to
 * `conninfo` but with every relative socket directory in host= prefixed
 * with the working directory (an existing directory by its canonical path
 * when that is not longer: no "..").  Returns 0, OTA_ERR_PARSE (libpq cannot
 * parse it; why in err), OTA_ERR_IO (no working directory), OTA_ERR_LENGTH
 * (a resolved path longer than PATH_MAX) or OTA_ERR_NOMEM. */
int dbconn_resolve(const char *conninfo, char **out, char *err, size_t errlen);

/* As dbconn_resolve, against the absolute directory `cwd` instead of the
 * working directory (tests; a process that will chdir). */
int dbconn_resolve_at(const char *conninfo, const char *cwd, char **out, char *err, size_t errlen);

/* Wipes (it may hold a password) and frees a dbconn_resolve result. */
void dbconn_free(char *conninfo);

/* Writes "host=... port=... dbname=... user=..." (only those given, never
 * a password or any other option) for log lines and error messages.
 * Returns 0, OTA_ERR_PARSE or OTA_ERR_LENGTH (truncated, still
 * NUL-terminated when cap > 0). */
int dbconn_describe(const char *conninfo, char *out, size_t cap);

#endif
