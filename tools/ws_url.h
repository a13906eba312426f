/* ws_url: parses ws:// and wss:// URLs for the clients (ota-card run,
 * ota-load).  It must never accept a URL with user info, a fragment,
 * control characters or a port outside 1..65535. */
#ifndef WS_URL_H
#define WS_URL_H

struct wsc_url {
    int tls;               /* 1 for wss */
    char host[256];        /* host name or address, without IPv6 brackets */
    char port[6];          /* decimal */
    char path[1024];       /* starts with '/', includes the query */
    char host_header[300]; /* Host header value: host, bracketed if IPv6, :port if not default */
};

/* Returns 0 or OTA_ERR_PARSE / OTA_ERR_LENGTH. */
int wsc_url_parse(const char *url, struct wsc_url *u);

#endif
