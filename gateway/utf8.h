/* utf8: strict UTF-8 validation of WebSocket text messages (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF).  Pure. */
#ifndef GW_UTF8_H
#define GW_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* 1 if [p, p+n) is valid UTF-8. */
int utf8_valid(const uint8_t *p, size_t n);

#endif
