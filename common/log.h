/* log: one line per event, logfmt or JSON (log.format in the configuration).
 * Every line carries ts, level, prog, func and event; the caller adds
 * `key=value` pairs (logfmt syntax; values with spaces are quoted by the
 * caller with %q-like care: use log_quote()).  Never pass keys, codes,
 * operator tokens or full UIDs: use log_uid_tail() for UIDs. */
#ifndef OTA_LOG_H
#define OTA_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

/* path NULL or "-" = stderr. json = 1 for JSON lines. */
int log_init(const char *prog, const char *path, int json, enum log_level min_level);
/* Reopens the log file (SIGHUP). */
int log_reopen(void);
void log_event(enum log_level lvl, const char *func, const char *event, const char *kv_fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Last 2 bytes of a UID as hex, e.g. "..a1b2": enough to correlate, not to
 * identify the card. out must hold 8 bytes. */
const char *log_uid_tail(const uint8_t *uid, size_t len, char out[8]);
/* Writes s as a logfmt quoted value ("..." with \" \\ and \xNN escapes)
 * into out, truncating to outlen; returns out. */
const char *log_quote(const char *s, char *out, size_t outlen);
/* "debug" / "info" / "warn" / "error" (log.level); anything else is info. */
enum log_level log_parse_level(const char *name);

#define log_info(ev, ...) log_event(LOG_LVL_INFO, __func__, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_event(LOG_LVL_WARN, __func__, ev, __VA_ARGS__)
#define log_error(ev, ...) log_event(LOG_LVL_ERROR, __func__, ev, __VA_ARGS__)
#define log_debug(ev, ...) log_event(LOG_LVL_DEBUG, __func__, ev, __VA_ARGS__)

#endif
