/* upgrade: strict HTTP/1.1 upgrade parsing; see upgrade.h.  Everything
 * that is not a plain, well-formed GET upgrade to /v1/session or / is
 * refused with a status that says why.  This file must never read past
 * len, never allocate and never trust a length it did not count itself. */
#include "upgrade.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "ota_err.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static enum upg_status fail(struct upg_result *r, int status, const char *why)
{
    r->http_status = status;
    r->why = why;
    return UPG_ERROR;
}

/* RFC 7230 tchar. */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Does the comma-separated token list [v, v+n) hold tok (case-insensitive)? */
static int list_has(const char *v, size_t n, const char *tok)
{
    size_t tn = strlen(tok), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tn && strncasecmp(v + s, tok, tn) == 0)
            return 1;
    }
    return 0;
}

static int name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

static int b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* A key is the base64 of exactly 16 bytes: 22 characters and "==", the
 * last data character carrying no stray bits. */
static int key_valid(const char *k, size_t n)
{
    if (n != 24 || k[22] != '=' || k[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; i++)
        if (!b64_char((unsigned char)k[i]))
            return 0;
    return strchr("AQgw", k[21]) != NULL;
}

struct seen {
    int host, upgrade, connection, version, version_ok, key;
    const char *key_v;
    size_t key_n;
};

/* One header line [p, p+n) without its CRLF. */
static enum upg_status header(const char *p, size_t n, struct seen *s, struct upg_result *r)
{
    if (n == 0 || p[0] == ' ' || p[0] == '\t')
        return fail(r, 400, "folded or empty header line");
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i >= n || p[i] != ':')
        return fail(r, 400, "malformed header name");
    const char *name = p;
    size_t nn = i;
    i++;
    for (size_t k = i; k < n; k++) {
        unsigned char c = (unsigned char)p[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(r, 400, "control character in header value");
    }
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    size_t e = n;
    while (e > i && (p[e - 1] == ' ' || p[e - 1] == '\t'))
        e--;
    const char *v = p + i;
    size_t vn = e - i;

    if (name_is(name, nn, "Host")) {
        if (s->host++)
            return fail(r, 400, "duplicate Host");
    } else if (name_is(name, nn, "Upgrade")) {
        if (list_has(v, vn, "websocket"))
            s->upgrade = 1;
    } else if (name_is(name, nn, "Connection")) {
        if (list_has(v, vn, "upgrade"))
            s->connection = 1;
    } else if (name_is(name, nn, "Sec-WebSocket-Version")) {
        if (s->version++)
            return fail(r, 400, "duplicate Sec-WebSocket-Version");
        s->version_ok = vn == 2 && v[0] == '1' && v[1] == '3';
    } else if (name_is(name, nn, "Sec-WebSocket-Key")) {
        if (s->key++)
            return fail(r, 400, "duplicate Sec-WebSocket-Key");
        s->key_v = v;
        s->key_n = vn;
    } else if (name_is(name, nn, "Content-Length")) {
        if (vn != 1 || v[0] != '0')
            return fail(r, 400, "a request body is not allowed");
    } else if (name_is(name, nn, "Transfer-Encoding")) {
        return fail(r, 400, "a request body is not allowed");
    }
    return UPG_NEED_MORE;
}

/* "GET /v1/session HTTP/1.1" (a query string is ignored). */
static enum upg_status request_line(const char *p, size_t n, struct upg_result *r)
{
    const char *sp1 = memchr(p, ' ', n);
    if (!sp1)
        return fail(r, 400, "malformed request line");
    size_t mn = (size_t)(sp1 - p);
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', n - mn - 1);
    if (!sp2)
        return fail(r, 400, "malformed request line");
    size_t tn = (size_t)(sp2 - t);
    const char *ver = sp2 + 1;
    size_t vn = n - mn - tn - 2;
    for (size_t i = 0; i < mn; i++)
        if (!is_tchar((unsigned char)p[i]))
            return fail(r, 400, "malformed method");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 && p + i != sp1 && p + i != sp2)
            return fail(r, 400, "malformed request line");
    if (mn == 0 || tn == 0 || vn == 0)
        return fail(r, 400, "malformed request line");
    if (vn != 8 || memcmp(ver, "HTTP/1.", 7) != 0 || ver[7] < '0' || ver[7] > '9') {
        if (vn >= 5 && memcmp(ver, "HTTP/", 5) == 0)
            return fail(r, 505, "only HTTP/1.1 is supported");
        return fail(r, 400, "malformed HTTP version");
    }
    if (ver[7] != '1')
        return fail(r, 505, "only HTTP/1.1 is supported");
    if (mn != 3 || memcmp(p, "GET", 3) != 0)
        return fail(r, 405, "only GET upgrades to a WebSocket");
    const char *q = memchr(t, '?', tn);
    size_t pn = q ? (size_t)(q - t) : tn;
    if (!((pn == 1 && t[0] == '/') || (pn == 11 && memcmp(t, "/v1/session", 11) == 0)))
        return fail(r, 404, "no such path (use /v1/session)");
    return UPG_NEED_MORE;
}

enum upg_status upg_parse(const char *buf, size_t len, const struct upg_limits *lim,
                          struct upg_result *r)
{
    memset(r, 0, sizeof *r);
    size_t scan = len < lim->max_header_bytes ? len : lim->max_header_bytes;
    const char *end = NULL;
    for (size_t i = 0; i + 3 < scan; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            end = buf + i;
            break;
        }
    }
    /* Bare LF line ends, NUL and other bytes no client sends are refused
     * as soon as they are seen, not after the limit. */
    for (size_t i = 0; i < scan && (!end || buf + i < end); i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == 0 || (c == '\n' && (i == 0 || buf[i - 1] != '\r')) ||
            (c == '\r' && i + 1 < scan && buf[i + 1] != '\n'))
            return fail(r, 400, "malformed line ending or NUL");
    }
    if (!end) {
        if (len >= lim->max_header_bytes)
            return fail(r, 431, "request head too large");
        return UPG_NEED_MORE;
    }
    size_t head = (size_t)(end - buf);
    const char *p = buf;
    const char *nl = memchr(p, '\r', head);
    size_t first = nl ? (size_t)(nl - p) : head;
    if (request_line(p, first, r) == UPG_ERROR)
        return UPG_ERROR;

    struct seen s;
    memset(&s, 0, sizeof s);
    unsigned count = 0;
    size_t off = first + 2;
    while (off < head + 2 && off <= head) {
        const char *l = buf + off;
        const char *cr = memchr(l, '\r', head - off);
        size_t ln = cr ? (size_t)(cr - l) : head - off;
        if (++count > lim->max_headers)
            return fail(r, 431, "too many header lines");
        if (header(l, ln, &s, r) == UPG_ERROR)
            return UPG_ERROR;
        off += ln + 2;
    }
    if (!s.host)
        return fail(r, 400, "missing Host");
    if (!s.upgrade)
        return fail(r, 426, "Upgrade: websocket required");
    if (!s.connection)
        return fail(r, 400, "Connection: upgrade required");
    if (!s.version || !s.version_ok)
        return fail(r, 426, "Sec-WebSocket-Version 13 required");
    if (!s.key || !key_valid(s.key_v, s.key_n))
        return fail(r, 400, "missing or malformed Sec-WebSocket-Key");
    if (upg_accept_key(s.key_v, s.key_n, r->accept) != 0)
        return fail(r, 500, "internal error");
    r->head_len = head + 4;
    r->http_status = 101;
    r->why = "ok";
    return UPG_OK;
}

int upg_accept_key(const char *key, size_t key_len, char out[29])
{
    unsigned char in[64], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t gl = sizeof WS_GUID - 1;
    if (key_len > sizeof in - gl)
        return OTA_ERR_LENGTH;
    memcpy(in, key, key_len);
    memcpy(in + key_len, WS_GUID, gl);
    if (!EVP_Digest(in, key_len + gl, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return OTA_ERR_CRYPTO;
    if (EVP_EncodeBlock((unsigned char *)out, md, 20) != 28)
        return OTA_ERR_CRYPTO;
    return 0;
}

int upg_response_101(const char accept[29], char *out, size_t cap)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    return n < 0 || (size_t)n >= cap ? OTA_ERR_LENGTH : n;
}

static const char *reason(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Internal Server Error";
}

int upg_response_error(int status, const char *why, char *out, size_t cap)
{
    const char *extra = "";
    if (status == 426)
        extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    else if (status == 405)
        extra = "Allow: GET\r\n";
    else if (status == 503)
        extra = "Retry-After: 1\r\n";
    if (!why)
        why = reason(status);
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "%s\r\n%s\n",
                     status, reason(status), strlen(why) + 1, extra, why);
    return n < 0 || (size_t)n >= cap ? OTA_ERR_LENGTH : n;
}
