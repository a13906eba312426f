/* upgrade: the strict, bounded HTTP/1.1 WebSocket upgrade parser (RFC 6455
 * section 4.2.1) and the responses to it.  Pure: bytes in, a verdict out;
 * no I/O, no allocation, so it is unit-tested and fuzzed as it runs. */
#ifndef GW_UPGRADE_H
#define GW_UPGRADE_H

#include <stddef.h>

enum upg_status {
    UPG_NEED_MORE = 0, /* no complete head yet, within the limits */
    UPG_OK = 1,        /* a valid upgrade: answer 101 with r->accept */
    UPG_ERROR = 2,     /* answer r->http_status and close */
};

struct upg_limits {
    size_t max_header_bytes; /* request line + headers + blank line */
    unsigned max_headers;
};

struct upg_result {
    int http_status; /* 400, 404, 405, 426, 431 or 505 on UPG_ERROR */
    const char *why; /* static text for the log and the response body */
    size_t head_len; /* on UPG_OK: bytes of the head (through CRLF CRLF) */
    char accept[29]; /* on UPG_OK: Sec-WebSocket-Accept (base64, NUL) */
};

enum upg_status upg_parse(const char *buf, size_t len, const struct upg_limits *lim,
                          struct upg_result *r);

/* Sec-WebSocket-Accept for a key (SHA-1 of key || GUID, base64).
 * Returns 0 or a negative ota_err. */
int upg_accept_key(const char *key, size_t key_len, char out[29]);

/* Writes the 101 answer, or an error answer for status (with the headers
 * RFC 6455 asks for: Sec-WebSocket-Version on 426, Allow on 405).  Returns
 * the length, or a negative ota_err if cap is too small. */
int upg_response_101(const char accept[29], char *out, size_t cap);
int upg_response_error(int status, const char *why, char *out, size_t cap);

#endif
