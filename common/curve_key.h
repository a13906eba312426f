/* curve_key: the text files that hold CurveZMQ keys for remote workers:
 * a key pair file (written by `ota-ctl keys curve-gen`, read by the
 * gateway and by a remote ota-worker) and the gateway's allow-list of
 * worker public keys.  Keys stay in ZeroMQ's Z85 text form (40
 * characters), which is what ZeroMQ's socket options accept.  This module
 * never logs a secret key and refuses a secret file others can read. */
#ifndef OTA_CURVE_KEY_H
#define OTA_CURVE_KEY_H

#include <stddef.h>

#define CURVE_Z85_LEN 40

struct curve_keypair {
    char pub[CURVE_Z85_LEN + 1];
    char sec[CURVE_Z85_LEN + 1];
};

/* 1 if [s, s+n) is a 40-character Z85 key. */
int curve_z85_valid(const char *s, size_t n);

/* Reads a key pair file: lines "public-key = KEY" and "secret-key = KEY",
 * blank lines and # comments.  The file must not be readable by group or
 * others.  Returns 0 or a negative ota_err with a reason in err. */
int curve_key_load(const char *path, struct curve_keypair *kp, char *err, size_t cap);

/* Reads an allow-list of public keys: one per line, bare or as
 * "public-key = KEY" (so that .pub files can be concatenated), blank lines
 * and # comments.  *keys is a malloc'd array of *n keys (free()).
 * Returns 0 or a negative ota_err with a reason in err. */
int curve_allow_load(const char *path, char (**keys)[CURVE_Z85_LEN + 1], size_t *n, char *err,
                     size_t cap);

/* Writes the key pair to path (created, mode 0600, never overwritten) and
 * its public key to path.pub (mode 0644).  Returns 0 or a negative ota_err
 * with a reason in err. */
int curve_key_write(const char *path, const struct curve_keypair *kp, char *err, size_t cap);

/* Wipes the secret half. */
void curve_keypair_wipe(struct curve_keypair *kp);

#endif
