/* desfire_secret: randomness, constant-time comparison and wiping for the
 * DESFire core, all through libsodium.  Never compare MACs or RndA with
 * memcmp, never clear secrets with a memset the compiler may drop. */
#include "desfire_crypto.h"

#include <stdlib.h>

#include <sodium.h>

void dfc_random(uint8_t *p, size_t n)
{
    /* Idempotent; without it randombytes may not have its source ready. */
    if (sodium_init() < 0)
        abort();
    randombytes_buf(p, n);
}

int dfc_ct_equal(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0;
}

void dfc_wipe(void *p, size_t n)
{
    sodium_memzero(p, n);
}
