/* desfire_crypto: the block-cipher primitives DESFire EV1 needs.
 * AES-128 and TDEA (2-key and 3-key; single DES is 2-key with K1 == K2)
 * through OpenSSL EVP; SP 800-38B CMAC whose CBC chain starts from a
 * running IV; the DESFire CRC32 (JAMCRC: no final XOR) and the ISO 14443A
 * CRC16 of legacy DES sessions; NXP AN10922 key diversification; libsodium
 * randomness; constant-time comparison.  No I/O, no state. */
#ifndef DESFIRE_CRYPTO_H
#define DESFIRE_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

enum dfc_cipher {
    DFC_AES128 = 0, /* 16-byte key, 16-byte block */
    DFC_TDES2 = 1,  /* 16-byte key K1||K2 (DES: K||K), 8-byte block */
    DFC_TDES3 = 2,  /* 24-byte key, 8-byte block */
};

#define DFC_MAX_BLOCK 16
#define DFC_MAX_KEY 24

size_t dfc_block_size(enum dfc_cipher c);
size_t dfc_key_size(enum dfc_cipher c);

/* CBC over len bytes (a multiple of the block size) with the caller's IV;
 * on return iv holds the last ciphertext block (sent or received), which is
 * the EV1 running-IV rule for both directions.  in may equal out.
 * Returns 0 or OTA_ERR_LENGTH / OTA_ERR_CRYPTO. */
int dfc_cbc_encrypt(enum dfc_cipher c, const uint8_t *key, uint8_t *iv, const uint8_t *in,
                    uint8_t *out, size_t len);
int dfc_cbc_decrypt(enum dfc_cipher c, const uint8_t *key, uint8_t *iv, const uint8_t *in,
                    uint8_t *out, size_t len);
/* One raw block (ECB), used by legacy DES authentication. */
int dfc_block_encrypt(enum dfc_cipher c, const uint8_t *key, const uint8_t *in, uint8_t *out);
int dfc_block_decrypt(enum dfc_cipher c, const uint8_t *key, const uint8_t *in, uint8_t *out);

/* CMAC subkeys: k0 = E(K, 0), k1, k2 (Rb 0x87 for AES, 0x1B for TDEA). */
int dfc_cmac_subkeys(enum dfc_cipher c, const uint8_t *key, uint8_t *k0, uint8_t *k1, uint8_t *k2);
/* SP 800-38B CMAC with the CBC chain starting from iv (all zero for plain
 * CMAC).  mac receives the full block; the caller copies it into the
 * session IV (EV1 rule) and sends the first 8 bytes.  iv and mac may alias. */
int dfc_cmac(enum dfc_cipher c, const uint8_t *key, const uint8_t *iv, const uint8_t *msg,
             size_t len, uint8_t *mac);

/* DESFire CRC32: poly 0xEDB88320 reflected, init 0xFFFFFFFF, no final XOR.
 * Appended to data little-endian. */
uint32_t dfc_crc32(const uint8_t *p, size_t n);
uint32_t dfc_crc32_update(uint32_t crc, const uint8_t *p, size_t n);
void dfc_put_le32(uint8_t *p, uint32_t v);
uint32_t dfc_get_le32(const uint8_t *p);
/* ISO 14443-3 type A CRC16 (init 0x6363), legacy DES sessions. */
uint16_t dfc_crc16(const uint8_t *p, size_t n);

/* AN10922 AES-128 diversification: out = CMAC(master, 0x01 || m) with the
 * input always padded to two blocks.  m = UID(7) || AID(3, LSB first) ||
 * system identifier; 1 <= mlen <= 31. */
int dfc_an10922_aes128(const uint8_t master[16], const uint8_t *m, size_t mlen, uint8_t out[16]);
/* The same for TDEA (2-key: constants 0x21/0x22; 3-key: 0x31..0x33), raw
 * CMAC output without parity adjustment (matches AN10922 "Derived Key"). */
int dfc_an10922_tdes(enum dfc_cipher c, const uint8_t *master, const uint8_t *m, size_t mlen,
                     uint8_t *out);

/* Cryptographic randomness (libsodium). */
void dfc_random(uint8_t *p, size_t n);
/* Constant-time equality: 1 if equal. */
int dfc_ct_equal(const void *a, const void *b, size_t n);
/* Wipes secrets in a way the compiler keeps. */
void dfc_wipe(void *p, size_t n);

#endif
