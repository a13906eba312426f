/* buf: bounded byte writer and reader; see buf.h. */
#include "buf.h"

#include <string.h>

#include "ota_err.h"

void wbuf_init(struct wbuf *w, uint8_t *p, size_t cap)
{
    w->p = p;
    w->cap = cap;
    w->len = 0;
    w->err = 0;
}

static uint8_t *wbuf_reserve(struct wbuf *w, size_t n)
{
    if (w->err || n > w->cap - w->len) {
        w->err = OTA_ERR_LENGTH;
        return NULL;
    }
    uint8_t *at = w->p + w->len;
    w->len += n;
    return at;
}

void wbuf_u8(struct wbuf *w, uint8_t v)
{
    wbuf_bytes(w, &v, 1);
}

void wbuf_u16(struct wbuf *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    wbuf_bytes(w, b, sizeof b);
}

void wbuf_u32(struct wbuf *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    wbuf_bytes(w, b, sizeof b);
}

void wbuf_u64(struct wbuf *w, uint64_t v)
{
    wbuf_u32(w, (uint32_t)(v >> 32));
    wbuf_u32(w, (uint32_t)v);
}

void wbuf_bytes(struct wbuf *w, const void *src, size_t n)
{
    uint8_t *at = wbuf_reserve(w, n);
    if (at && n)
        memcpy(at, src, n);
}

void rbuf_init(struct rbuf *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->off = 0;
    r->err = 0;
}

static const uint8_t *rbuf_take(struct rbuf *r, size_t n)
{
    if (r->err || n > r->len - r->off) {
        r->err = OTA_ERR_PARSE;
        return NULL;
    }
    const uint8_t *at = r->p + r->off;
    r->off += n;
    return at;
}

uint8_t rbuf_u8(struct rbuf *r)
{
    const uint8_t *b = rbuf_take(r, 1);
    return b ? b[0] : 0;
}

uint16_t rbuf_u16(struct rbuf *r)
{
    const uint8_t *b = rbuf_take(r, 2);
    return b ? (uint16_t)((b[0] << 8) | b[1]) : 0;
}

uint32_t rbuf_u32(struct rbuf *r)
{
    const uint8_t *b = rbuf_take(r, 4);
    return b ? ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3] : 0;
}

uint64_t rbuf_u64(struct rbuf *r)
{
    uint64_t hi = rbuf_u32(r);
    return (hi << 32) | rbuf_u32(r);
}

uint16_t rbuf_u16le(struct rbuf *r)
{
    const uint8_t *b = rbuf_take(r, 2);
    return b ? (uint16_t)(b[0] | (b[1] << 8)) : 0;
}

uint32_t rbuf_u24le(struct rbuf *r)
{
    const uint8_t *b = rbuf_take(r, 3);
    return b ? (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) : 0;
}

uint32_t rbuf_u32le(struct rbuf *r)
{
    const uint8_t *b = rbuf_take(r, 4);
    return b ? (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
                   ((uint32_t)b[3] << 24)
             : 0;
}

void rbuf_bytes(struct rbuf *r, void *dst, size_t dst_cap, size_t n)
{
    if (n > dst_cap) {
        r->err = OTA_ERR_PARSE;
        return;
    }
    const uint8_t *b = rbuf_take(r, n);
    if (b && n)
        memcpy(dst, b, n);
}

size_t rbuf_left(const struct rbuf *r)
{
    return r->err ? 0 : r->len - r->off;
}

int rbuf_end(const struct rbuf *r)
{
    if (r->err)
        return r->err;
    return r->off == r->len ? 0 : OTA_ERR_PARSE;
}
