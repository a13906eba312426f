/* keyfile: the sealed file of master keys that only workers and ota-ctl read.
 *
 * Holds the five AES-128 master keys (application keys 0-3 and the PICC
 * key, card_profile.h) and the 32-byte code HMAC key, sealed with
 * crypto_secretbox.  The key-encryption key comes from a passphrase
 * (crypto_pwhash, Argon2id, salt in the file) or from a separate 32-byte
 * key file.  Decrypted keys live only in sodium_malloc memory (locked, not
 * dumped) and are wiped by keyfile_free(). */
#ifndef KEYFILE_H
#define KEYFILE_H

#include <stddef.h>
#include <stdint.h>
#include "card_profile.h"
#include "topup_code.h"

struct master_keys {
    uint8_t app[PROF_NUM_MASTERS][16]; /* 0-3 application keys, 4 PICC key */
    uint8_t code_hmac[CODE_HMAC_KEY_LEN];
};

enum keyfile_kek { KEYFILE_KEK_PASSPHRASE = 1, KEYFILE_KEK_FILE = 2 };

/* Allocates zeroed keys in sodium_malloc memory (NULL on failure). */
struct master_keys *keyfile_alloc(void);
void keyfile_free(struct master_keys *k);
/* Seals keys into path (mode 0600, written atomically).  kek_source is the
 * passphrase or the path of the 32-byte KEK file. */
int keyfile_seal(const char *path, const struct master_keys *k, enum keyfile_kek kind,
                 const char *kek_source);
/* Opens path into k.  A wrong passphrase or a tampered file gives
 * OTA_ERR_MAC; nothing secret is ever put in err. */
int keyfile_open(const char *path, struct master_keys *k, enum keyfile_kek kind,
                 const char *kek_source, char *err, size_t errlen);
/* Short public fingerprint of one key (hex of a keyed BLAKE2b), for
 * `ota-ctl keys show`. */
void keyfile_fingerprint(const uint8_t *key, size_t len, char out[17]);

#endif
