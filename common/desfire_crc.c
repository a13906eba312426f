/* desfire_crc: the DESFire CRC32 (JAMCRC: reflected 0xEDB88320, init
 * 0xFFFFFFFF, no final XOR), the ISO 14443A CRC16 and little-endian helpers.
 * Integrity checks only, never a MAC: a CRC is only meaningful inside an
 * enciphered payload. */
#include "desfire_crypto.h"

uint32_t dfc_crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    size_t i;
    int b;

    for (i = 0; i < n; i++) {
        crc ^= p[i];
        /* Bitwise and table-free so the CRC of secret keys has no cache-timing leak. */
        for (b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc;
}

uint32_t dfc_crc32(const uint8_t *p, size_t n)
{
    return dfc_crc32_update(0xFFFFFFFFu, p, n);
}

void dfc_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

uint32_t dfc_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint16_t dfc_crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0x6363;
    size_t i;
    int b;

    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (b = 0; b < 8; b++)
            crc = (uint16_t)((crc >> 1) ^ (0x8408u & (0u - (crc & 1u))));
    }
    return crc;
}
