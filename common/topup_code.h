/* topup_code: the format of top-up codes people type, and their keyed hash.
 *
 * A code carries 80 random bits as 16 characters of Crockford-style base32
 * (no I, L, O, U), plus one check character, shown in groups of four:
 * "ABCD-EFGH-JKMN-PQRS-T".  Input is normalized (case, dashes, spaces,
 * I/L -> 1, O -> 0) and the check character lets a typo answer
 * `code-invalid` without a database round trip.  The database stores only
 * HMAC-SHA-256(code_key, normalized code), never the code. */
#ifndef TOPUP_CODE_H
#define TOPUP_CODE_H

#include <stddef.h>
#include <stdint.h>

#define CODE_DATA_CHARS 16
#define CODE_NORM_LEN (CODE_DATA_CHARS + 1)  /* data + check, no dashes */
#define CODE_DISPLAY_LEN (CODE_NORM_LEN + 4) /* with four dashes */
#define CODE_HMAC_KEY_LEN 32
#define CODE_HASH_LEN 32

/* Writes a fresh code in display form (NUL-terminated, cap >= 22). */
int code_generate(char *out, size_t cap);
/* Normalizes user input into out (cap >= CODE_NORM_LEN + 1).  Returns 0, or
 * OTA_ERR_PARSE (bad characters/length) or OTA_ERR_MAC (check mismatch). */
int code_normalize(const char *in, char *out, size_t cap);
/* HMAC-SHA-256 of a normalized code. */
void code_hash(const uint8_t key[CODE_HMAC_KEY_LEN], const char *normalized,
               uint8_t out[CODE_HASH_LEN]);

#endif
