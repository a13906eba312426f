/* hex: strict hex conversion; see hex.h. */
#include "hex.h"

#include "ota_err.h"

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int hex_decode(const char *s, size_t len, uint8_t *out, size_t cap)
{
    if (len % 2)
        return OTA_ERR_PARSE;
    if (len / 2 > cap)
        return OTA_ERR_LENGTH;
    for (size_t i = 0; i < len; i += 2) {
        int hi = hex_nibble(s[i]), lo = hex_nibble(s[i + 1]);
        if (hi < 0 || lo < 0)
            return OTA_ERR_PARSE;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(len / 2);
}

void hex_encode(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}
