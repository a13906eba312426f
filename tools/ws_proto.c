/* ws_proto: RFC 6455 client handshake and framing, sans I/O (see ws_proto.h).
 * Our own framing rather than wslay's client context: the phone and the load
 * generator then test the gateway's wslay-based server with an independent
 * implementation (a shared misreading of the RFC would not cancel out), the
 * same core serves a blocking client and a many-session epoll loop without
 * callbacks, and each piece is unit-testable on the RFC's own examples. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "ota_err.h"
#include "ws_proto.h"

#define WSC_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void wsc_make_key(char out[WSC_KEY_LEN + 1])
{
    uint8_t nonce[16];
    randombytes_buf(nonce, sizeof nonce);
    /* EVP_EncodeBlock writes 24 characters and a NUL for 16 bytes. */
    EVP_EncodeBlock((unsigned char *)out, nonce, sizeof nonce);
}

int wsc_accept_for_key(const char *key, char out[WSC_ACCEPT_LEN + 1])
{
    char joined[WSC_KEY_LEN + sizeof WSC_GUID];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    size_t klen = strlen(key);

    if (klen != WSC_KEY_LEN)
        return OTA_ERR_INVAL;
    memcpy(joined, key, klen);
    memcpy(joined + klen, WSC_GUID, sizeof WSC_GUID - 1);
    if (EVP_Digest(joined, klen + sizeof WSC_GUID - 1, digest, &dlen, EVP_sha1(), NULL) != 1 ||
        dlen != 20)
        return OTA_ERR_CRYPTO;
    EVP_EncodeBlock((unsigned char *)out, digest, 20);
    return 0;
}

static int wsc_has_ctl(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7F)
            return 1;
    return 0;
}

int wsc_build_request(char *out, size_t cap, const char *host, const char *path, const char *key)
{
    int n;
    if (wsc_has_ctl(host) || wsc_has_ctl(path) || wsc_has_ctl(key) || path[0] != '/')
        return OTA_ERR_INVAL;
    n = snprintf(out, cap,
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "User-Agent: ota-topup-client\r\n"
                 "\r\n",
                 path, host, key);
    if (n < 0 || (size_t)n >= cap)
        return OTA_ERR_LENGTH;
    return n;
}

/* Finds "\r\n\r\n" within the first len bytes; returns the header length. */
static size_t wsc_header_end(const uint8_t *p, size_t len)
{
    for (size_t i = 3; i < len; i++)
        if (p[i - 3] == '\r' && p[i - 2] == '\n' && p[i - 1] == '\r' && p[i] == '\n')
            return i + 1;
    return 0;
}

/* Trims spaces and tabs around [*s, *s + *n). */
static void wsc_trim(const char **s, size_t *n)
{
    while (*n > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

/* 1 if the comma-separated list v (length n) holds token, case-insensitive. */
static int wsc_list_has(const char *v, size_t n, const char *token)
{
    size_t tlen = strlen(token);
    while (n > 0) {
        const char *comma = memchr(v, ',', n);
        size_t item = comma != NULL ? (size_t)(comma - v) : n;
        const char *s = v;
        size_t sl = item;
        wsc_trim(&s, &sl);
        if (sl == tlen && strncasecmp(s, token, tlen) == 0)
            return 1;
        if (comma == NULL)
            break;
        v = comma + 1;
        n -= item + 1;
    }
    return 0;
}

int wsc_parse_response(const uint8_t *p, size_t len, size_t max_header, const char *key,
                       int *status)
{
    const char *s = (const char *)p;
    size_t hlen = wsc_header_end(p, len < max_header ? len : max_header);
    char accept[WSC_ACCEPT_LEN + 1];
    int saw_upgrade = 0, saw_connection = 0, saw_accept = 0;
    size_t off, eol;

    *status = 0;
    if (hlen == 0)
        return len >= max_header ? OTA_ERR_LENGTH : 0;
    /* Status line: "HTTP/1.1 101 ..." */
    if (hlen < 12 || memcmp(s, "HTTP/1.1 ", 9) != 0 || s[9] < '1' || s[9] > '5' || s[10] < '0' ||
        s[10] > '9' || s[11] < '0' || s[11] > '9')
        return OTA_ERR_PARSE;
    *status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (*status != 101)
        return OTA_ERR_STATE;
    if (wsc_accept_for_key(key, accept) != 0)
        return OTA_ERR_INVAL;

    off = 0;
    while (off + 1 < hlen && !(s[off] == '\r' && s[off + 1] == '\n'))
        off++;
    off += 2; /* past the status line */
    while (off + 2 <= hlen) {
        const char *line = s + off, *colon, *name, *val;
        size_t nlen, vlen;
        eol = off;
        while (eol + 1 < hlen && !(s[eol] == '\r' && s[eol + 1] == '\n'))
            eol++;
        if (eol + 1 >= hlen)
            return OTA_ERR_PARSE;
        if (eol == off) /* the empty line that ends the header */
            break;
        colon = memchr(line, ':', eol - off);
        if (colon == NULL || colon == line)
            return OTA_ERR_PARSE;
        for (const char *c = line; c < s + eol; c++)
            if (*c == '\0' || *c == '\r' || *c == '\n')
                return OTA_ERR_PARSE;
        name = line;
        nlen = (size_t)(colon - line);
        val = colon + 1;
        vlen = (size_t)(s + eol - val);
        wsc_trim(&val, &vlen);
        if (nlen == 7 && strncasecmp(name, "Upgrade", 7) == 0) {
            if (!(vlen == 9 && strncasecmp(val, "websocket", 9) == 0))
                return OTA_ERR_PARSE;
            saw_upgrade = 1;
        } else if (nlen == 10 && strncasecmp(name, "Connection", 10) == 0) {
            if (wsc_list_has(val, vlen, "upgrade"))
                saw_connection = 1;
        } else if (nlen == 20 && strncasecmp(name, "Sec-WebSocket-Accept", 20) == 0) {
            if (saw_accept || vlen != WSC_ACCEPT_LEN || memcmp(val, accept, WSC_ACCEPT_LEN) != 0)
                return OTA_ERR_PARSE;
            saw_accept = 1;
        } else if ((nlen == 24 && strncasecmp(name, "Sec-WebSocket-Extensions", 24) == 0) ||
                   (nlen == 22 && strncasecmp(name, "Sec-WebSocket-Protocol", 22) == 0)) {
            /* We offered none, so the server may select none (§4.1). */
            if (vlen > 0)
                return OTA_ERR_PARSE;
        }
        off = eol + 2;
    }
    if (!saw_upgrade || !saw_connection || !saw_accept)
        return OTA_ERR_PARSE;
    return (int)hlen;
}

int wsc_frame_encode(uint8_t *out, size_t cap, enum wsc_opcode op, const uint8_t *payload,
                     size_t len, const uint8_t mask[4])
{
    size_t h = 0;
    if ((op & 0x8) != 0 && len > WSC_CONTROL_MAX)
        return OTA_ERR_INVAL;
    if (len > (size_t)INT32_MAX - WSC_FRAME_OVERHEAD || cap < len + WSC_FRAME_OVERHEAD)
        return OTA_ERR_LENGTH;
    out[h++] = (uint8_t)(0x80 | (op & 0x0F));
    if (len < 126) {
        out[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xFFFF) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(out + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++)
        out[h + i] = payload[i] ^ mask[i & 3];
    return (int)(h + len);
}

int wsc_frame_encode_random(uint8_t *out, size_t cap, enum wsc_opcode op, const uint8_t *payload,
                            size_t len)
{
    uint8_t mask[4];
    randombytes_buf(mask, sizeof mask);
    return wsc_frame_encode(out, cap, op, payload, len, mask);
}

size_t wsc_close_payload(uint8_t out[WSC_CONTROL_MAX], uint16_t code, const char *reason)
{
    size_t rlen = reason != NULL ? strlen(reason) : 0;
    if (rlen > WSC_CONTROL_MAX - 2)
        rlen = WSC_CONTROL_MAX - 2;
    /* Cutting must not leave half a UTF-8 sequence behind. */
    while (rlen > 0 && rlen < strlen(reason) && ((unsigned char)reason[rlen] & 0xC0) == 0x80)
        rlen--;
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (rlen > 0)
        memcpy(out + 2, reason, rlen);
    return 2 + rlen;
}

int wsc_frame_decode(uint8_t *p, size_t len, size_t max_payload, int masked, struct wsc_frame *f)
{
    size_t h = 2;
    uint64_t plen;
    int is_masked;
    uint8_t mask[4] = {0, 0, 0, 0};

    if (len < 2)
        return 0;
    if ((p[0] & 0x70) != 0) /* RSV1-3: no extension was negotiated */
        return OTA_ERR_PARSE;
    f->fin = (p[0] & 0x80) != 0;
    f->opcode = (enum wsc_opcode)(p[0] & 0x0F);
    switch (f->opcode) {
    case WSC_OP_CONT:
    case WSC_OP_TEXT:
    case WSC_OP_BINARY:
        break;
    case WSC_OP_CLOSE:
    case WSC_OP_PING:
    case WSC_OP_PONG:
        if (!f->fin || (p[1] & 0x7F) > WSC_CONTROL_MAX)
            return OTA_ERR_PARSE;
        break;
    default:
        return OTA_ERR_PARSE;
    }
    is_masked = (p[1] & 0x80) != 0;
    if (is_masked != (masked != 0))
        return OTA_ERR_PARSE;
    plen = p[1] & 0x7F;
    if (plen == 126) {
        if (len < 4)
            return 0;
        plen = ((uint64_t)p[2] << 8) | p[3];
        if (plen < 126)
            return OTA_ERR_PARSE;
        h = 4;
    } else if (plen == 127) {
        if (len < 10)
            return 0;
        if ((p[2] & 0x80) != 0)
            return OTA_ERR_PARSE;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = (plen << 8) | p[2 + i];
        if (plen <= 0xFFFF)
            return OTA_ERR_PARSE;
        h = 10;
    }
    if (plen > max_payload || plen > (uint64_t)INT32_MAX - 14)
        return OTA_ERR_LENGTH;
    if (is_masked) {
        if (len < h + 4)
            return 0;
        memcpy(mask, p + h, 4);
        h += 4;
    }
    if (len < h + plen)
        return 0;
    f->payload = p + h;
    f->len = (size_t)plen;
    if (is_masked)
        for (size_t i = 0; i < f->len; i++)
            f->payload[i] ^= mask[i & 3];
    return (int)(h + plen);
}

int wsc_utf8_valid(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

void wsc_rx_init(struct wsc_rx *rx, uint8_t *buf, size_t cap)
{
    memset(rx, 0, sizeof *rx);
    rx->state = WSC_RX_IDLE;
    rx->msg = buf;
    rx->msg_cap = cap;
}

static int wsc_rx_fail(struct wsc_rx *rx, uint16_t code, int err)
{
    rx->close_code = code;
    return err;
}

/* A close code a peer may send (RFC 6455 §7.4). */
static int wsc_close_code_valid(unsigned code)
{
    if (code >= 3000 && code <= 4999)
        return 1;
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011);
}

static int wsc_rx_control(struct wsc_rx *rx, const struct wsc_frame *f, struct wsc_event *ev)
{
    ev->data = f->payload;
    ev->len = f->len;
    if (f->opcode == WSC_OP_PING) {
        ev->type = WSC_EV_PING;
    } else if (f->opcode == WSC_OP_PONG) {
        ev->type = WSC_EV_PONG;
    } else {
        ev->type = WSC_EV_CLOSE;
        ev->code = WSC_CLOSE_NO_STATUS;
        if (f->len == 1)
            return wsc_rx_fail(rx, WSC_CLOSE_PROTOCOL, OTA_ERR_PARSE);
        if (f->len >= 2) {
            ev->code = (uint16_t)((f->payload[0] << 8) | f->payload[1]);
            if (!wsc_close_code_valid(ev->code))
                return wsc_rx_fail(rx, WSC_CLOSE_PROTOCOL, OTA_ERR_PARSE);
            if (!wsc_utf8_valid(f->payload + 2, f->len - 2))
                return wsc_rx_fail(rx, WSC_CLOSE_BAD_DATA, OTA_ERR_PARSE);
            ev->data = f->payload + 2;
            ev->len = f->len - 2;
        }
    }
    return 0;
}

int wsc_rx_feed(struct wsc_rx *rx, uint8_t *in, size_t len, size_t *consumed, struct wsc_event *ev)
{
    struct wsc_frame f;
    size_t room = rx->msg_cap - rx->msg_len;
    int n;

    memset(ev, 0, sizeof *ev);
    *consumed = 0;
    /* A control frame may arrive in the middle of a message, so the limit
     * is the larger of what the message has left and a control frame. */
    n = wsc_frame_decode(in, len, room > WSC_CONTROL_MAX ? room : WSC_CONTROL_MAX, 0, &f);
    if (n == OTA_ERR_LENGTH)
        return wsc_rx_fail(rx, WSC_CLOSE_TOO_BIG, n);
    if (n < 0)
        return wsc_rx_fail(rx, WSC_CLOSE_PROTOCOL, n);
    if (n == 0)
        return 0;
    *consumed = (size_t)n;

    if ((f.opcode & 0x8) != 0)
        return wsc_rx_control(rx, &f, ev);

    if (f.opcode == WSC_OP_CONT) {
        if (rx->state != WSC_RX_IN_MESSAGE)
            return wsc_rx_fail(rx, WSC_CLOSE_PROTOCOL, OTA_ERR_PARSE);
    } else {
        if (rx->state == WSC_RX_IN_MESSAGE)
            return wsc_rx_fail(rx, WSC_CLOSE_PROTOCOL, OTA_ERR_PARSE);
        rx->state = WSC_RX_IN_MESSAGE;
        rx->msg_op = f.opcode;
        rx->msg_len = 0;
    }
    if (f.len > rx->msg_cap - rx->msg_len)
        return wsc_rx_fail(rx, WSC_CLOSE_TOO_BIG, OTA_ERR_LENGTH);
    if (f.len > 0)
        memcpy(rx->msg + rx->msg_len, f.payload, f.len);
    rx->msg_len += f.len;
    if (!f.fin)
        return 0;

    rx->state = WSC_RX_IDLE;
    rx->msg[rx->msg_len] = '\0';
    if (rx->msg_op == WSC_OP_TEXT && !wsc_utf8_valid(rx->msg, rx->msg_len))
        return wsc_rx_fail(rx, WSC_CLOSE_BAD_DATA, OTA_ERR_PARSE);
    ev->type = rx->msg_op == WSC_OP_TEXT ? WSC_EV_TEXT : WSC_EV_BINARY;
    ev->data = rx->msg;
    ev->len = rx->msg_len;
    return 0;
}
