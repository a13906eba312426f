/* ws_url: ws:// and wss:// URL parsing (see ws_url.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ota_err.h"
#include "ws_url.h"

static int wsc_url_port(const char *s, size_t n, char out[6])
{
    unsigned long v = 0;
    if (n == 0 || n > 5)
        return OTA_ERR_PARSE;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return OTA_ERR_PARSE;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return OTA_ERR_PARSE;
    snprintf(out, 6, "%lu", v);
    return 0;
}

int wsc_url_parse(const char *url, struct wsc_url *u)
{
    const char *auth, *auth_end, *host, *host_end, *port = NULL;
    size_t hlen, plen;
    int v6 = 0;

    memset(u, 0, sizeof *u);
    for (const char *c = url; *c != '\0'; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7F || *c == '#')
            return OTA_ERR_PARSE;
    if (strncasecmp(url, "ws://", 5) == 0) {
        auth = url + 5;
    } else if (strncasecmp(url, "wss://", 6) == 0) {
        auth = url + 6;
        u->tls = 1;
    } else {
        return OTA_ERR_PARSE;
    }
    auth_end = auth + strcspn(auth, "/?");
    if (memchr(auth, '@', (size_t)(auth_end - auth)) != NULL)
        return OTA_ERR_PARSE;
    if (*auth == '[') {
        host = auth + 1;
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (host_end == NULL)
            return OTA_ERR_PARSE;
        if (host_end + 1 < auth_end) {
            if (host_end[1] != ':')
                return OTA_ERR_PARSE;
            port = host_end + 2;
        }
        v6 = 1;
    } else {
        host = auth;
        host_end = memchr(auth, ':', (size_t)(auth_end - auth));
        if (host_end != NULL)
            port = host_end + 1;
        else
            host_end = auth_end;
    }
    hlen = (size_t)(host_end - host);
    if (hlen == 0)
        return OTA_ERR_PARSE;
    if (hlen >= sizeof u->host)
        return OTA_ERR_LENGTH;
    memcpy(u->host, host, hlen);
    if (port != NULL) {
        if (wsc_url_port(port, (size_t)(auth_end - port), u->port) != 0)
            return OTA_ERR_PARSE;
    } else {
        strcpy(u->port, u->tls ? "443" : "80");
    }
    if (*auth_end == '\0') {
        strcpy(u->path, "/");
    } else {
        plen = strlen(auth_end);
        if (plen + 1 >= sizeof u->path)
            return OTA_ERR_LENGTH;
        if (*auth_end == '?')
            u->path[0] = '/';
        memcpy(u->path + (*auth_end == '?'), auth_end, plen);
    }
    if (strcmp(u->port, u->tls ? "443" : "80") == 0)
        snprintf(u->host_header, sizeof u->host_header, v6 ? "[%s]" : "%s", u->host);
    else
        snprintf(u->host_header, sizeof u->host_header, v6 ? "[%s]:%s" : "%s:%s", u->host, u->port);
    return 0;
}
