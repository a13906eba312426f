/* curve_key: CurveZMQ key files; see curve_key.h.  Line-oriented text,
 * bounded line length, no allocation for the key pair (the secret stays
 * in the caller's struct and in a stack buffer that is wiped). */
#include "curve_key.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "ota_err.h"

#define LINE_MAX_BYTES 256
#define ALLOW_MAX 4096

static const char Z85[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int curve_z85_valid(const char *s, size_t n)
{
    if (n != CURVE_Z85_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || !strchr(Z85, s[i]))
            return 0;
    return 1;
}

/* err = "PATH: what". */
static int fail(char *err, size_t cap, int rc, const char *what, const char *path)
{
    if (err && cap)
        snprintf(err, cap, "%s: %s", path, what);
    return rc;
}

/* Trims blanks at both ends in place; returns the start. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* If line is "name = value" returns value (trimmed), else NULL.  The name
 * is matched first because '=' is also a Z85 character. */
static char *named(char *line, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(line, name, n) != 0)
        return NULL;
    char *p = line + n;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '=')
        return NULL;
    return trim(p + 1);
}

/* Reads one line; 0 at end, -1 when a line is too long. */
static int read_line(FILE *f, char *buf, size_t cap)
{
    if (!fgets(buf, (int)cap, f))
        return 0;
    size_t n = strlen(buf);
    if (n == cap - 1 && buf[n - 1] != '\n' && !feof(f))
        return -1;
    return 1;
}

int curve_key_load(const char *path, struct curve_keypair *kp, char *err, size_t cap)
{
    memset(kp, 0, sizeof *kp);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return fail(err, cap, OTA_ERR_IO, "cannot open the CurveZMQ key file", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, cap, OTA_ERR_IO, "the CurveZMQ key file is not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return fail(err, cap, OTA_ERR_INVAL,
                    "the CurveZMQ key file is readable by others (chmod 600)", path);
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return fail(err, cap, OTA_ERR_IO, "cannot read the CurveZMQ key file", path);
    }
    char line[LINE_MAX_BYTES];
    int rc = 0, r;
    while ((r = read_line(f, line, sizeof line)) > 0) {
        char *l = trim(line), *v;
        if (!*l || *l == '#')
            continue;
        char *dst = NULL;
        if ((v = named(l, "public-key")) != NULL)
            dst = kp->pub;
        else if ((v = named(l, "secret-key")) != NULL)
            dst = kp->sec;
        if (!dst || !curve_z85_valid(v, strlen(v))) {
            rc = fail(err, cap, OTA_ERR_PARSE,
                      "expected 'public-key = KEY' and 'secret-key = KEY' (40 Z85 "
                      "characters each)",
                      path);
            break;
        }
        memcpy(dst, v, CURVE_Z85_LEN + 1);
    }
    sodium_memzero(line, sizeof line);
    fclose(f);
    if (!rc && r < 0)
        rc = fail(err, cap, OTA_ERR_PARSE, "line too long", path);
    if (!rc && (!kp->pub[0] || !kp->sec[0]))
        rc = fail(err, cap, OTA_ERR_PARSE, "needs both public-key and secret-key", path);
    if (rc)
        curve_keypair_wipe(kp);
    return rc;
}

int curve_allow_load(const char *path, char (**keys)[CURVE_Z85_LEN + 1], size_t *n, char *err,
                     size_t cap)
{
    *keys = NULL;
    *n = 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return fail(err, cap, OTA_ERR_IO, "cannot open the worker key allow-list", path);
    char line[LINE_MAX_BYTES];
    int rc = 0, r;
    while ((r = read_line(f, line, sizeof line)) > 0) {
        char *l = trim(line), *v = l;
        if (!*l || *l == '#')
            continue;
        if (!curve_z85_valid(l, strlen(l))) {
            v = named(l, "public-key");
            if (!v || !curve_z85_valid(v, strlen(v))) {
                rc = fail(err, cap, OTA_ERR_PARSE, "a line of the allow-list is not a public key",
                          path);
                break;
            }
        }
        if (*n >= ALLOW_MAX) {
            rc = fail(err, cap, OTA_ERR_LIMIT, "too many keys in the allow-list", path);
            break;
        }
        char(*grown)[CURVE_Z85_LEN + 1] = realloc(*keys, (*n + 1) * sizeof **keys);
        if (!grown) {
            rc = fail(err, cap, OTA_ERR_NOMEM, "out of memory", path);
            break;
        }
        *keys = grown;
        memcpy((*keys)[*n], v, CURVE_Z85_LEN + 1);
        (*n)++;
    }
    fclose(f);
    if (!rc && r < 0)
        rc = fail(err, cap, OTA_ERR_PARSE, "line too long", path);
    if (rc) {
        free(*keys);
        *keys = NULL;
        *n = 0;
    }
    return rc;
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int curve_key_write(const char *path, const struct curve_keypair *kp, char *err, size_t cap)
{
    char pubpath[4096];
    if (snprintf(pubpath, sizeof pubpath, "%s.pub", path) >= (int)sizeof pubpath)
        return fail(err, cap, OTA_ERR_LENGTH, "path too long", path);
    char text[512];
    int n = snprintf(text, sizeof text,
                     "# CurveZMQ key pair (ota-ctl keys curve-gen).  Secret: keep it mode 0600.\n"
                     "public-key = %s\nsecret-key = %s\n",
                     kp->pub, kp->sec);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        sodium_memzero(text, sizeof text);
        return fail(err, cap, OTA_ERR_IO,
                    errno == EEXIST ? "exists; refusing to overwrite a key" : "cannot create",
                    path);
    }
    int bad = n < 0 || n >= (int)sizeof text || write_all(fd, text, (size_t)n) != 0 || fsync(fd);
    sodium_memzero(text, sizeof text);
    if (close(fd) != 0 || bad) {
        unlink(path);
        return fail(err, cap, OTA_ERR_IO, "cannot write", path);
    }
    n = snprintf(text, sizeof text,
                 "# CurveZMQ public key (ota-ctl keys curve-gen); public, copy it freely.\n"
                 "public-key = %s\n",
                 kp->pub);
    fd = open(pubpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 || write_all(fd, text, (size_t)n) != 0) {
        if (fd >= 0)
            close(fd);
        return fail(err, cap, OTA_ERR_IO, "cannot write the .pub file", path);
    }
    if (close(fd) != 0)
        return fail(err, cap, OTA_ERR_IO, "cannot write the .pub file", path);
    return 0;
}

void curve_keypair_wipe(struct curve_keypair *kp)
{
    sodium_memzero(kp, sizeof *kp);
}
