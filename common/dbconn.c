/* dbconn: resolves relative socket directories in db.conninfo; see
 * dbconn.h.  libpq parses the conninfo (both forms), so nothing here
 * guesses at its syntax; we only rewrite host= and quote every value.
 *
 * Must never print a conninfo or leave a copy of one (it may hold a
 * password) in freed memory. */
#include "dbconn.h"

#include <limits.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ota_err.h"

/* Copies libpq's message without its trailing newline. */
static void set_err(char *err, size_t errlen, const char *prefix, const char *msg)
{
    if (err == NULL || errlen == 0)
        return;
    snprintf(err, errlen, "%s%s", prefix, msg != NULL ? msg : "");
    size_t n = strlen(err);
    while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == '\r'))
        err[--n] = '\0';
}

/* A host list element that names a socket directory relative to cwd. */
static int is_relative_dir(const char *elem, size_t len)
{
    return len > 0 && elem[0] != '/' && elem[0] != '@' && memchr(elem, '/', len) != NULL;
}

/* Appends s[0..n) quoted for a keyword='value' conninfo. */
static char *put_quoted(char *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'' || s[i] == '\\')
            *o++ = '\\';
        *o++ = s[i];
    }
    return o;
}

/* Appends cwd/rel, quoted.  When that directory exists, its canonical
 * path instead if it is not longer: "../.." from a deep working directory
 * would otherwise push the socket path (directory + "/.s.PGSQL.5432")
 * past the 107 bytes a unix socket address holds (make distcheck builds
 * five levels down). */
static char *put_dir(char *o, const char *cwd, size_t cwdlen, const char *rel, size_t len)
{
    char joined[PATH_MAX], canon[PATH_MAX];
    int slash = cwdlen == 0 || cwd[cwdlen - 1] != '/';
    size_t n = cwdlen + (size_t)slash + len;
    memcpy(joined, cwd, cwdlen);
    if (slash)
        joined[cwdlen] = '/';
    memcpy(joined + cwdlen + (size_t)slash, rel, len);
    joined[n] = '\0';
    if (realpath(joined, canon) != NULL && strlen(canon) <= n)
        return put_quoted(o, canon, strlen(canon));
    return put_quoted(o, joined, n);
}

/* Writes the host list with its relative elements made absolute. */
static int put_hosts(char **op, const char *v, const char *cwd)
{
    char *o = *op;
    size_t cwdlen = strlen(cwd);
    for (const char *p = v;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (is_relative_dir(p, len)) {
            while (len >= 2 && p[0] == '.' && p[1] == '/') {
                p += 2;
                len -= 2;
                while (len > 0 && p[0] == '/') {
                    p++;
                    len--;
                }
            }
            if (cwdlen + 1 + len >= PATH_MAX)
                return OTA_ERR_LENGTH;
            o = put_dir(o, cwd, cwdlen, p, len);
        } else {
            o = put_quoted(o, p, len);
        }
        if (comma == NULL)
            break;
        *o++ = ',';
        p = comma + 1;
    }
    *op = o;
    return OTA_OK;
}

/* An upper bound of the output: every byte may be escaped, every host
 * element may gain the working directory. */
static size_t out_bound(const PQconninfoOption *opts, size_t cwdlen)
{
    size_t n = 1;
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        size_t vl = strlen(o->val);
        n += strlen(o->keyword) + 4 + 2 * vl;
        if (strcmp(o->keyword, "host") == 0) {
            size_t elems = 1;
            for (const char *c = o->val; *c; c++)
                elems += *c == ',';
            n += elems * (2 * cwdlen + 1);
        }
    }
    return n;
}

int dbconn_resolve_at(const char *conninfo, const char *cwd, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (conninfo == NULL || cwd == NULL || cwd[0] != '/') {
        set_err(err, errlen, "db.conninfo: ", "no conninfo or no absolute working directory");
        return OTA_ERR_INVAL;
    }
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (opts == NULL) {
        set_err(err, errlen,
                "db.conninfo cannot be parsed: ", perr != NULL ? perr : "out of memory");
        int rc = perr != NULL ? OTA_ERR_PARSE : OTA_ERR_NOMEM;
        PQfreemem(perr);
        return rc;
    }
    size_t cap = out_bound(opts, strlen(cwd));
    char *buf = malloc(cap);
    if (buf == NULL) {
        PQconninfoFree(opts);
        set_err(err, errlen, "db.conninfo: ", "out of memory");
        return OTA_ERR_NOMEM;
    }
    char *o = buf;
    int rc = OTA_OK;
    for (const PQconninfoOption *p = opts; p->keyword != NULL && rc == OTA_OK; p++) {
        if (p->val == NULL)
            continue;
        if (o != buf)
            *o++ = ' ';
        size_t kl = strlen(p->keyword);
        memcpy(o, p->keyword, kl);
        o += kl;
        *o++ = '=';
        *o++ = '\'';
        if (strcmp(p->keyword, "host") == 0)
            rc = put_hosts(&o, p->val, cwd);
        else
            o = put_quoted(o, p->val, strlen(p->val));
        *o++ = '\'';
    }
    *o = '\0';
    /* The parsed options may hold a password too. */
    for (PQconninfoOption *p = opts; p->keyword != NULL; p++)
        if (p->val != NULL)
            sodium_memzero(p->val, strlen(p->val));
    PQconninfoFree(opts);
    if (rc != OTA_OK) {
        set_err(err, errlen, "db.conninfo: ", "a socket directory path is too long");
        dbconn_free(buf);
        return rc;
    }
    *out = buf;
    return OTA_OK;
}

int dbconn_resolve(const char *conninfo, char **out, char *err, size_t errlen)
{
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL) {
        *out = NULL;
        set_err(err, errlen, "db.conninfo: ", "cannot read the working directory");
        return OTA_ERR_IO;
    }
    return dbconn_resolve_at(conninfo, cwd, out, err, errlen);
}

void dbconn_free(char *conninfo)
{
    if (conninfo == NULL)
        return;
    sodium_memzero(conninfo, strlen(conninfo));
    free(conninfo);
}

int dbconn_describe(const char *conninfo, char *out, size_t cap)
{
    static const char *const shown[] = {"host", "hostaddr", "port", "dbname", "user"};
    if (cap == 0)
        return OTA_ERR_LENGTH;
    out[0] = '\0';
    PQconninfoOption *opts = PQconninfoParse(conninfo != NULL ? conninfo : "", NULL);
    if (opts == NULL)
        return OTA_ERR_PARSE;
    size_t len = 0;
    int rc = OTA_OK;
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
        for (PQconninfoOption *p = opts; p->keyword != NULL; p++) {
            if (p->val == NULL || strcmp(p->keyword, shown[i]) != 0)
                continue;
            int n = snprintf(out + len, cap - len, "%s%s=%s", len ? " " : "", p->keyword, p->val);
            if (n < 0 || (size_t)n >= cap - len) {
                rc = OTA_ERR_LENGTH;
                len = cap - 1;
            } else {
                len += (size_t)n;
            }
        }
    for (PQconninfoOption *p = opts; p->keyword != NULL; p++)
        if (p->val != NULL)
            sodium_memzero(p->val, strlen(p->val));
    PQconninfoFree(opts);
    return rc;
}
