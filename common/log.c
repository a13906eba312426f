/* log: one line per event in logfmt or JSON, written with a single write()
 * so lines of several processes appending to one file never interleave.
 * Callers pass logfmt `key=value` pairs; for JSON they are re-read here.
 * This file must never emit a raw control character (one event is one
 * line, whatever a caller's value holds) and never log on its own behalf
 * anything but its own failures. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ota_err.h"

#define LOG_LINE_MAX 4096
#define LOG_KV_MAX 2048
#define LOG_PATH_MAX 1024

static struct {
    char prog[32];
    char path[LOG_PATH_MAX]; /* "" = stderr */
    int fd;
    int json;
    enum log_level min;
} lg = {"ota", "", 2, 0, LOG_LVL_INFO};

static const char *level_name(enum log_level l)
{
    switch (l) {
    case LOG_LVL_DEBUG:
        return "debug";
    case LOG_LVL_INFO:
        return "info";
    case LOG_LVL_WARN:
        return "warn";
    case LOG_LVL_ERROR:
        return "error";
    }
    return "info";
}

static int open_path(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

int log_init(const char *prog, const char *path, int json, enum log_level min_level)
{
    snprintf(lg.prog, sizeof lg.prog, "%s", prog ? prog : "ota");
    lg.json = json ? 1 : 0;
    lg.min = min_level;
    if (!path || !*path || strcmp(path, "-") == 0) {
        if (lg.fd > 2)
            close(lg.fd);
        lg.path[0] = '\0';
        lg.fd = 2;
        return 0;
    }
    if (strlen(path) >= sizeof lg.path)
        return OTA_ERR_LENGTH;
    int fd = open_path(path);
    if (fd < 0)
        return OTA_ERR_IO;
    if (lg.fd > 2)
        close(lg.fd);
    lg.fd = fd;
    snprintf(lg.path, sizeof lg.path, "%s", path);
    return 0;
}

int log_reopen(void)
{
    if (!lg.path[0])
        return 0;
    int fd = open_path(lg.path);
    if (fd < 0) {
        log_event(LOG_LVL_ERROR, __func__, "log_reopen_failed", "errno=%d", errno);
        return OTA_ERR_IO;
    }
    if (lg.fd > 2)
        close(lg.fd);
    lg.fd = fd;
    return 0;
}

enum log_level log_parse_level(const char *name)
{
    if (name && strcmp(name, "debug") == 0)
        return LOG_LVL_DEBUG;
    if (name && strcmp(name, "warn") == 0)
        return LOG_LVL_WARN;
    if (name && strcmp(name, "error") == 0)
        return LOG_LVL_ERROR;
    return LOG_LVL_INFO;
}

/* Appending writer into a fixed line; truncates silently at the end. */
struct line {
    char *p;
    size_t cap, len;
};

static void put_c(struct line *l, char c)
{
    if (l->len + 1 < l->cap)
        l->p[l->len++] = c;
}

static void put_s(struct line *l, const char *s)
{
    while (*s)
        put_c(l, *s++);
}

static void put_fmt(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_fmt(struct line *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->p + l->len, l->cap - l->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->len += (size_t)n < l->cap - l->len ? (size_t)n : l->cap - l->len - 1;
}

/* A byte from a caller's text: printable ASCII and UTF-8 pass, anything
 * that could break the line (controls, DEL) becomes \xNN. */
static void put_safe(struct line *l, unsigned char c, int json)
{
    if (c == '\n') {
        put_s(l, "\\n");
    } else if (c == '\t') {
        put_s(l, "\\t");
    } else if (c < 0x20 || c == 0x7f) {
        if (json)
            put_fmt(l, "\\u%04x", c);
        else
            put_fmt(l, "\\x%02x", c);
    } else {
        put_c(l, (char)c);
    }
}

static void put_json_str(struct line *l, const char *s, size_t n)
{
    put_c(l, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            put_c(l, '\\');
            put_c(l, (char)c);
        } else {
            put_safe(l, c, 1);
        }
    }
    put_c(l, '"');
}

static int is_json_int(const char *s, size_t n)
{
    size_t i = 0;
    if (n > 0 && s[0] == '-')
        i = 1;
    if (i >= n || n - i > 15)
        return 0;
    if (s[i] == '0' && n - i > 1)
        return 0;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Re-reads the caller's logfmt pairs as JSON members.  A quoted value ends
 * at an unescaped quote; a bare value at a blank.  Input that is not
 * logfmt is kept as a "msg" member rather than dropped. */
static void kv_to_json(struct line *l, const char *kv)
{
    const char *p = kv;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *k = p;
        while (*p && *p != '=' && *p != ' ')
            p++;
        if (*p != '=' || p == k) {
            put_s(l, ",\"msg\":");
            put_json_str(l, k, strlen(k));
            return;
        }
        size_t kn = (size_t)(p - k);
        p++;
        put_c(l, ',');
        put_json_str(l, k, kn);
        put_c(l, ':');
        if (*p == '"') {
            p++;
            char val[LOG_KV_MAX];
            size_t vn = 0;
            while (*p && *p != '"') {
                char c = *p++;
                if (c == '\\' && *p) {
                    c = *p++;
                    if (c == 'n')
                        c = '\n';
                    else if (c == 't')
                        c = '\t';
                }
                if (vn < sizeof val)
                    val[vn++] = c;
            }
            if (*p == '"')
                p++;
            put_json_str(l, val, vn);
        } else {
            const char *v = p;
            while (*p && *p != ' ')
                p++;
            size_t vn = (size_t)(p - v);
            if (is_json_int(v, vn)) {
                for (size_t i = 0; i < vn; i++)
                    put_c(l, v[i]);
            } else {
                put_json_str(l, v, vn);
            }
        }
    }
}

void log_event(enum log_level lvl, const char *func, const char *event, const char *kv_fmt, ...)
{
    if (lvl < lg.min)
        return;
    char kv[LOG_KV_MAX];
    kv[0] = '\0';
    if (kv_fmt && *kv_fmt) {
        va_list ap;
        va_start(ap, kv_fmt);
        vsnprintf(kv, sizeof kv, kv_fmt, ap);
        va_end(ap);
    }

    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(ts.tv_nsec / 1000000) % 1000);

    char buf[LOG_LINE_MAX];
    struct line l = {buf, sizeof buf - 1, 0}; /* one byte kept for the newline */
    if (lg.json) {
        put_s(&l, "{\"ts\":\"");
        put_s(&l, when);
        put_s(&l, "\",\"level\":\"");
        put_s(&l, level_name(lvl));
        put_s(&l, "\",\"prog\":");
        put_json_str(&l, lg.prog, strlen(lg.prog));
        put_fmt(&l, ",\"pid\":%ld,\"func\":", (long)getpid());
        put_json_str(&l, func ? func : "", func ? strlen(func) : 0);
        put_s(&l, ",\"event\":");
        put_json_str(&l, event ? event : "", event ? strlen(event) : 0);
        kv_to_json(&l, kv);
        /* Close the object even when the line was truncated. */
        if (l.len + 1 >= l.cap)
            l.len = l.cap - 3;
        put_c(&l, '}');
    } else {
        put_fmt(&l, "ts=%s level=%s prog=", when, level_name(lvl));
        for (const char *s = lg.prog; *s; s++)
            put_safe(&l, (unsigned char)*s, 0);
        put_fmt(&l, " pid=%ld func=", (long)getpid());
        for (const char *s = func ? func : ""; *s; s++)
            put_safe(&l, (unsigned char)*s, 0);
        put_s(&l, " event=");
        for (const char *s = event ? event : ""; *s; s++)
            put_safe(&l, (unsigned char)*s, 0);
        if (kv[0]) {
            put_c(&l, ' ');
            for (const char *s = kv; *s; s++)
                put_safe(&l, (unsigned char)*s, 0);
        }
    }
    buf[l.len++] = '\n';
    const char *p = buf;
    size_t left = l.len;
    while (left > 0) {
        ssize_t n = write(lg.fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p += n;
        left -= (size_t)n;
    }
}

const char *log_uid_tail(const uint8_t *uid, size_t len, char out[8])
{
    static const char hex[] = "0123456789abcdef";
    if (!uid || len < 2) {
        memcpy(out, "..", 3);
        return out;
    }
    out[0] = '.';
    out[1] = '.';
    for (size_t i = 0; i < 2; i++) {
        uint8_t b = uid[len - 2 + i];
        out[2 + 2 * i] = hex[b >> 4];
        out[3 + 2 * i] = hex[b & 15];
    }
    out[6] = '\0';
    return out;
}

const char *log_quote(const char *s, char *out, size_t outlen)
{
    if (outlen < 3) {
        if (outlen)
            out[0] = '\0';
        return out;
    }
    size_t o = 0;
    out[o++] = '"';
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[5];
        size_t en;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            en = 2;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            en = 4;
        } else {
            esc[0] = (char)c;
            en = 1;
        }
        if (o + en + 2 > outlen)
            break;
        memcpy(out + o, esc, en);
        o += en;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
