/* buf: bounded byte writer and reader (in the spirit of OpenSSH's sshbuf).
 * Every frame is built and parsed through these, so no code indexes raw
 * bytes by hand.  Errors are sticky: after the first overflow or underrun
 * every call is a no-op and buf_*_err() reports it once at the end. */
#ifndef BUF_H
#define BUF_H

#include <stddef.h>
#include <stdint.h>

struct wbuf {
    uint8_t *p;
    size_t cap, len;
    int err; /* 0 or OTA_ERR_LENGTH */
};

struct rbuf {
    const uint8_t *p;
    size_t len, off;
    int err; /* 0 or OTA_ERR_PARSE */
};

void wbuf_init(struct wbuf *w, uint8_t *p, size_t cap);
void wbuf_u8(struct wbuf *w, uint8_t v);
void wbuf_u16(struct wbuf *w, uint16_t v); /* big-endian */
void wbuf_u32(struct wbuf *w, uint32_t v);
void wbuf_u64(struct wbuf *w, uint64_t v);
void wbuf_bytes(struct wbuf *w, const void *src, size_t n);

void rbuf_init(struct rbuf *r, const uint8_t *p, size_t len);
uint8_t rbuf_u8(struct rbuf *r);
uint16_t rbuf_u16(struct rbuf *r);
uint32_t rbuf_u32(struct rbuf *r);
uint64_t rbuf_u64(struct rbuf *r);
/* Little-endian, as DESFire answers are (file sizes, record counts and
 * sizes are 24-bit). */
uint16_t rbuf_u16le(struct rbuf *r);
uint32_t rbuf_u24le(struct rbuf *r);
uint32_t rbuf_u32le(struct rbuf *r);
/* Copies n bytes into dst; dst_cap bounds the copy (n > dst_cap is an error). */
void rbuf_bytes(struct rbuf *r, void *dst, size_t dst_cap, size_t n);
size_t rbuf_left(const struct rbuf *r);
/* 0 if no error happened and (for rbuf_end) every byte was consumed. */
int rbuf_end(const struct rbuf *r);

#endif
