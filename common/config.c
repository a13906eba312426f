/* config: the configuration file, flag overrides and the one table of
 * defaults (documented, with the same values, in deploy/ota.conf.example).
 * Values are validated by type when they are set, so getters never fail.
 * This file must never log (it runs before logging is set up) and never
 * accept a key that is not in the table. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_err.h"
#include "num.h"

enum cfg_type { CFG_STR, CFG_INT, CFG_BOOL };

struct cfg_key {
    const char *name;
    enum cfg_type type;
    const char *def;
    long long min, max; /* CFG_INT only */
};

#define STR(n, d)                                                                                  \
    {                                                                                              \
        n, CFG_STR, d, 0, 0                                                                        \
    }
#define INT(n, d, lo, hi)                                                                          \
    {                                                                                              \
        n, CFG_INT, d, lo, hi                                                                      \
    }
#define BOOL(n, d)                                                                                 \
    {                                                                                              \
        n, CFG_BOOL, d, 0, 1                                                                       \
    }

/* The defaults.  Keep in the order of deploy/ota.conf.example. */
static const struct cfg_key keys[] = {
    STR("log.format", "logfmt"),
    STR("log.file", "-"),
    STR("log.level", "info"),
    STR("db.conninfo", "host=var/pg dbname=ota"),
    INT("db.request_timeout_ms", "15000", 100, 600000),
    STR("db.finance_conninfo", ""),
    STR("card.system_id", "OTA1"),
    STR("card.picc_key", "des0"),
    STR("currency", "EUR"),
    INT("topup.max_amount", "100000", 1, 1000000),
    STR("gateway.listen", "127.0.0.1:8080"),
    STR("gateway.tls_cert", ""),
    STR("gateway.tls_key", ""),
    BOOL("gateway.behind_tls_proxy", "false"),
    STR("gateway.proxy_protocol_from", ""),
    STR("gateway.operator_listen", "127.0.0.1:8081"),
    STR("gateway.operator_tls_cert", ""),
    STR("gateway.operator_tls_key", ""),
    STR("gateway.operator_client_ca", ""),
    STR("gateway.admin_listen", "127.0.0.1:9090"),
    INT("gateway.max_connections", "20000", 1, 10000000),
    INT("gateway.max_connections_per_ip", "256", 1, 10000000),
    INT("gateway.max_message", "4096", 256, 65536),
    INT("gateway.max_header_bytes", "8192", 512, 65536),
    INT("gateway.max_headers", "64", 8, 1024),
    INT("gateway.upgrade_timeout_ms", "5000", 100, 600000),
    INT("gateway.ping_interval_ms", "15000", 100, 3600000),
    INT("gateway.idle_timeout_ms", "75000", 100, 3600000),
    INT("gateway.drain_timeout_ms", "30000", 0, 3600000),
    INT("gateway.first_message_timeout_ms", "5000", 100, 3600000),
    INT("gateway.max_output_bytes", "65536", 4096, 16777216),
    INT("gateway.output_stall_ms", "10000", 100, 3600000),
    STR("gateway.runtime_dir", "var/run"),
    INT("gateway.workers", "2", 0, 256),
    STR("gateway.worker_path", ""),
    INT("gateway.heartbeat_ms", "1000", 10, 600000),
    INT("gateway.worker_dead_ms", "5000", 50, 3600000),
    INT("gateway.restart_backoff_ms", "200", 1, 3600000),
    INT("gateway.restart_backoff_max_ms", "10000", 1, 3600000),
    STR("gateway.worker_listen", ""),
    STR("gateway.curve_secret_file", ""),
    STR("gateway.curve_allowed_keys", ""),
    STR("gateway.user", "ota"),
    STR("worker.user", "ota"),
    INT("worker.capacity", "4096", 1, 16777216),
    INT("worker.db_connections", "4", 1, 32),
    INT("worker.db_group_max", "16", 1, 32),
    STR("worker.keyfile", "var/keys.sealed"),
    STR("worker.kek_file", ""),
    STR("worker.kek_passphrase_env", "OTA_KEK_PASSPHRASE"),
    INT("worker.response_timeout_ms", "10000", 1, 3600000),
    INT("worker.operation_timeout_ms", "60000", 1, 3600000),
    INT("worker.lease_ms", "90000", 1, 86400000),
    STR("worker.operator_token_hash", ""),
    INT("worker.token_failures_per_peer", "10", 1, 1000000),
    INT("worker.token_failure_window_s", "3600", 1, 31536000),
    INT("worker.token_check_queue", "16", 1, 4096),
    STR("worker.curve_secret_file", ""),
    STR("worker.gateway_public_key", ""),
    INT("worker.code_failures_per_card", "5", 1, 1000000),
    INT("worker.code_failures_per_peer", "1000", 1, 1000000),
    INT("worker.code_failure_window_s", "600", 1, 31536000),
    INT("worker.code_failure_delay_ms", "2000", 1, 60000),
};

#define NKEYS (sizeof keys / sizeof keys[0])
#define CFG_MAX_VALUE 4096
#define CFG_MAX_LINE 8192

struct cfg {
    char *val[NKEYS]; /* NULL: the default */
    char *path;
    /* "--key=value" for every cfg_set() from flags, in order, so that a
     * parent can hand the same overrides to the processes it starts. */
    char **overrides;
    size_t noverrides;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int key_index(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* A getter called with a name outside the table is a bug in our code: stop
 * at once rather than run on an invented value. */
static size_t key_index_or_die(const char *name)
{
    int i = key_index(name);
    if (i < 0) {
        fprintf(stderr, "config: unknown key '%s' requested (bug)\n", name);
        abort();
    }
    return (size_t)i;
}

static int parse_int(const char *s, long long *out)
{
    return num_parse_ll(s, LLONG_MIN, LLONG_MAX, out) == 0 ? 0 : -1;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int check_value(const struct cfg_key *k, const char *value, char *err, size_t errlen)
{
    if (strlen(value) > CFG_MAX_VALUE) {
        set_err(err, errlen, "%s: value longer than %d bytes", k->name, CFG_MAX_VALUE);
        return OTA_ERR_LENGTH;
    }
    for (const char *p = value; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            set_err(err, errlen, "%s: control character in value", k->name);
            return OTA_ERR_PARSE;
        }
    }
    if (k->type == CFG_INT) {
        long long v;
        if (parse_int(value, &v) != 0) {
            set_err(err, errlen, "%s: '%s' is not an integer", k->name, value);
            return OTA_ERR_PARSE;
        }
        if (v < k->min || v > k->max) {
            set_err(err, errlen, "%s: %lld is outside %lld..%lld", k->name, v, k->min, k->max);
            return OTA_ERR_PARSE;
        }
    } else if (k->type == CFG_BOOL) {
        int b;
        if (parse_bool(value, &b) != 0) {
            set_err(err, errlen, "%s: '%s' is not true/false", k->name, value);
            return OTA_ERR_PARSE;
        }
    }
    return 0;
}

struct cfg *cfg_new(void)
{
    return calloc(1, sizeof(struct cfg));
}

void cfg_free(struct cfg *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NKEYS; i++)
        free(c->val[i]);
    for (size_t i = 0; i < c->noverrides; i++)
        free(c->overrides[i]);
    free(c->overrides);
    free(c->path);
    free(c);
}

static int store(struct cfg *c, const char *key, const char *value, char *err, size_t errlen)
{
    int i = key_index(key);
    if (i < 0) {
        set_err(err, errlen, "unknown key '%s'", key);
        return OTA_ERR_NOT_FOUND;
    }
    int rc = check_value(&keys[i], value, err, errlen);
    if (rc)
        return rc;
    char *copy = strdup(value);
    if (!copy) {
        set_err(err, errlen, "out of memory");
        return OTA_ERR_NOMEM;
    }
    free(c->val[i]);
    c->val[i] = copy;
    return 0;
}

int cfg_set(struct cfg *c, const char *key, const char *value, char *err, size_t errlen)
{
    int rc = store(c, key, value, err, errlen);
    if (rc)
        return rc;
    size_t n = strlen(key) + strlen(value) + 4;
    char *arg = malloc(n);
    char **grown = realloc(c->overrides, (c->noverrides + 1) * sizeof *grown);
    if (!arg || !grown) {
        free(arg);
        if (grown)
            c->overrides = grown;
        set_err(err, errlen, "out of memory");
        return OTA_ERR_NOMEM;
    }
    snprintf(arg, n, "--%s=%s", key, value);
    c->overrides = grown;
    c->overrides[c->noverrides++] = arg;
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* One line: blank, a comment (# as the first non-blank character), or
 * `key = value`.  A value wrapped in double quotes loses them (so that it
 * can keep leading or trailing blanks). */
static int parse_line(struct cfg *c, char *line, const char *path, unsigned lineno, char *err,
                      size_t errlen)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#')
        return 0;
    char *eq = strchr(s, '=');
    if (!eq) {
        set_err(err, errlen, "%s:%u: expected 'key = value'", path, lineno);
        return OTA_ERR_PARSE;
    }
    *eq = '\0';
    char *key = trim(s), *value = trim(eq + 1);
    size_t vn = strlen(value);
    if (vn >= 2 && value[0] == '"' && value[vn - 1] == '"') {
        value[vn - 1] = '\0';
        value++;
    }
    char why[256];
    int rc = store(c, key, value, why, sizeof why);
    if (rc)
        set_err(err, errlen, "%s:%u: %s", path, lineno, why);
    return rc;
}

int cfg_load_file(struct cfg *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return OTA_ERR_IO;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = 0;
    unsigned lineno = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        if (n > CFG_MAX_LINE) {
            set_err(err, errlen, "%s:%u: line longer than %d bytes", path, lineno, CFG_MAX_LINE);
            rc = OTA_ERR_LENGTH;
            break;
        }
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if (strlen(line) != n) {
            set_err(err, errlen, "%s:%u: NUL byte in line", path, lineno);
            rc = OTA_ERR_PARSE;
            break;
        }
        rc = parse_line(c, line, path, lineno, err, errlen);
        if (rc)
            break;
    }
    if (rc == 0 && ferror(f)) {
        set_err(err, errlen, "%s: read error", path);
        rc = OTA_ERR_IO;
    }
    free(line);
    fclose(f);
    if (rc == 0) {
        char *copy = strdup(path);
        if (!copy) {
            set_err(err, errlen, "out of memory");
            return OTA_ERR_NOMEM;
        }
        free(c->path);
        c->path = copy;
    }
    return rc;
}

int cfg_apply_args(struct cfg *c, int argc, char **argv, char *err, size_t errlen)
{
    int out = argc > 0 ? 1 : 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            argv[out++] = argv[i];
            continue;
        }
        char name[128];
        const char *eq = strchr(a + 2, '=');
        size_t n = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (n == 0 || n >= sizeof name) {
            argv[out++] = argv[i];
            continue;
        }
        memcpy(name, a + 2, n);
        name[n] = '\0';
        if (key_index(name) < 0) {
            argv[out++] = argv[i];
            continue;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            set_err(err, errlen, "--%s needs a value", name);
            return OTA_ERR_PARSE;
        }
        int rc = cfg_set(c, name, value, err, errlen);
        if (rc)
            return rc;
    }
    if (out < argc)
        argv[out] = NULL;
    return out;
}

const char *cfg_str(const struct cfg *c, const char *key)
{
    size_t i = key_index_or_die(key);
    return c && c->val[i] ? c->val[i] : keys[i].def;
}

long long cfg_int(const struct cfg *c, const char *key)
{
    long long v = 0;
    if (parse_int(cfg_str(c, key), &v) != 0)
        return 0;
    return v;
}

int cfg_bool(const struct cfg *c, const char *key)
{
    int b = 0;
    if (parse_bool(cfg_str(c, key), &b) != 0)
        return 0;
    return b;
}

const char *cfg_path(const struct cfg *c)
{
    return c ? c->path : NULL;
}

const char *const *cfg_override_args(const struct cfg *c, size_t *n)
{
    *n = c ? c->noverrides : 0;
    return c ? (const char *const *)c->overrides : NULL;
}

size_t cfg_key_count(void)
{
    return NKEYS;
}

const char *cfg_key_name(size_t i)
{
    return i < NKEYS ? keys[i].name : NULL;
}

const char *cfg_key_default(size_t i)
{
    return i < NKEYS ? keys[i].def : NULL;
}
