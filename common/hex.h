/* hex: strict hex conversion for APDUs, UIDs and keys.  Decoding accepts
 * upper and lower case, nothing else (no spaces, no 0x); encoding is lower
 * case (docs/PROTOCOL.md §2). */
#ifndef HEX_H
#define HEX_H

#include <stddef.h>
#include <stdint.h>

/* Decodes len characters of s into out.  Returns the byte count, or
 * OTA_ERR_PARSE (odd length or a non-hex character) or OTA_ERR_LENGTH
 * (more than cap bytes). */
int hex_decode(const char *s, size_t len, uint8_t *out, size_t cap);
/* Writes 2*n characters and a NUL; out must hold 2*n+1 bytes. */
void hex_encode(const uint8_t *p, size_t n, char *out);

#endif
