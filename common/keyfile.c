/* keyfile: sealing and opening the master key file (keyfile.h).
 *
 * File layout (all integers little endian), 200 bytes:
 *   0   8  magic "OTAKEYS1"
 *   8   1  KEK kind (1 passphrase, 2 KEK file)
 *   9   7  zero
 *   16  8  Argon2id opslimit   (passphrase kind; 0 for a KEK file)
 *   24  8  Argon2id memlimit   (idem)
 *   32 16  Argon2id salt       (random for both kinds)
 *   48 24  secretbox nonce
 *   72 128 crypto_secretbox_easy(plaintext 112 bytes): MAC(16) || box
 * Plaintext: application master keys 0..4 (5 x 16 bytes) || code HMAC key.
 * The secretbox key is BLAKE2b(key = KEK, message = bytes 0..71), so every
 * header byte (kind, limits, salt, nonce) is authenticated along with the
 * keys: any change gives OTA_ERR_MAC.
 *
 * Must never: put a key, a passphrase or a KEK in an error message or a
 * log; keep a secret outside sodium_malloc memory longer than one call (the
 * few stack copies are wiped before return); leave a half-written key file
 * behind (written to a temporary file, fsynced, renamed). */
#include "keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota_err.h"

#define KF_MAGIC "OTAKEYS1"
#define KF_MAGIC_LEN 8
#define KF_OFF_KIND 8
#define KF_OFF_OPS 16
#define KF_OFF_MEM 24
#define KF_OFF_SALT 32
#define KF_OFF_NONCE (KF_OFF_SALT + crypto_pwhash_SALTBYTES)
#define KF_HDR_LEN (KF_OFF_NONCE + crypto_secretbox_NONCEBYTES)
#define KF_PLAIN_LEN (PROF_NUM_MASTERS * 16 + CODE_HMAC_KEY_LEN)
#define KF_FILE_LEN (KF_HDR_LEN + crypto_secretbox_MACBYTES + KF_PLAIN_LEN)
#define KF_KEK_LEN 32

_Static_assert(KF_HDR_LEN == 72, "key file header layout");
_Static_assert(crypto_secretbox_KEYBYTES == 32, "secretbox key size");
_Static_assert(crypto_auth_hmacsha256_KEYBYTES == CODE_HMAC_KEY_LEN, "code HMAC key size");

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

struct master_keys *keyfile_alloc(void)
{
    if (sodium_init() < 0)
        return NULL;
    struct master_keys *k = sodium_malloc(sizeof *k);
    if (k != NULL)
        sodium_memzero(k, sizeof *k);
    return k;
}

void keyfile_free(struct master_keys *k)
{
    if (k != NULL)
        sodium_free(k); /* sodium_free wipes before unmapping */
}

/* Reads exactly len bytes of a small file into out; OTA_ERR_LENGTH if the
 * file has another size. */
static int read_exact_file(const char *path, uint8_t *out, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return errno == ENOENT ? OTA_ERR_NOT_FOUND : OTA_ERR_IO;
    struct stat st;
    int rc = OTA_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = OTA_ERR_IO;
    else if ((uint64_t)st.st_size != len)
        rc = OTA_ERR_LENGTH;
    size_t got = 0;
    while (rc == OTA_OK && got < len) {
        ssize_t n = read(fd, out + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n == 0 ? OTA_ERR_LENGTH : OTA_ERR_IO;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    return rc;
}

/* The secretbox key for a header: BLAKE2b keyed with the KEK, which comes
 * from the passphrase (Argon2id over the header's salt and limits) or the
 * KEK file.  box_key is sodium_malloc memory. */
static int derive_box_key(const uint8_t hdr[KF_HDR_LEN], enum keyfile_kek kind,
                          const char *kek_source, uint8_t *box_key)
{
    uint8_t *kek = sodium_malloc(KF_KEK_LEN);
    if (kek == NULL)
        return OTA_ERR_NOMEM;
    int rc = OTA_OK;
    if (kind == KEYFILE_KEK_PASSPHRASE) {
        uint64_t ops = get_le64(hdr + KF_OFF_OPS), mem = get_le64(hdr + KF_OFF_MEM);
        /* Bounded so that a tampered header cannot make us burn minutes or
         * gigabytes before the MAC check refuses it. */
        if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > crypto_pwhash_OPSLIMIT_SENSITIVE ||
            mem < crypto_pwhash_MEMLIMIT_MIN || mem > crypto_pwhash_MEMLIMIT_SENSITIVE)
            rc = OTA_ERR_MAC;
        else if (crypto_pwhash(kek, KF_KEK_LEN, kek_source, strlen(kek_source), hdr + KF_OFF_SALT,
                               ops, (size_t)mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
            rc = OTA_ERR_NOMEM; /* libsodium fails here only for lack of memory */
    } else if (kind == KEYFILE_KEK_FILE) {
        rc = read_exact_file(kek_source, kek, KF_KEK_LEN);
        if (rc == OTA_ERR_LENGTH)
            rc = OTA_ERR_INVAL; /* not a KEK file */
    } else {
        rc = OTA_ERR_INVAL;
    }
    if (rc == OTA_OK && crypto_generichash(box_key, crypto_secretbox_KEYBYTES, hdr, KF_HDR_LEN, kek,
                                           KF_KEK_LEN) != 0)
        rc = OTA_ERR_CRYPTO;
    sodium_free(kek);
    return rc;
}

/* Writes buf to path atomically: a temporary file in the same directory
 * (0600 from the start), fsync, rename, fsync of the directory. */
static int write_atomic(const char *path, const uint8_t *buf, size_t len)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmpXXXXXX", path) >= (int)sizeof tmp)
        return OTA_ERR_LENGTH;
    mode_t old = umask(077);
    int fd = mkstemp(tmp);
    umask(old);
    if (fd < 0)
        return OTA_ERR_IO;
    int rc = fchmod(fd, 0600) == 0 ? OTA_OK : OTA_ERR_IO;
    size_t off = 0;
    while (rc == OTA_OK && off < len) {
        ssize_t n = write(fd, buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = OTA_ERR_IO;
        else
            off += (size_t)n;
    }
    if (rc == OTA_OK && fsync(fd) != 0)
        rc = OTA_ERR_IO;
    if (close(fd) != 0 && rc == OTA_OK)
        rc = OTA_ERR_IO;
    if (rc == OTA_OK && rename(tmp, path) != 0)
        rc = OTA_ERR_IO;
    if (rc != OTA_OK) {
        unlink(tmp);
        return rc;
    }
    /* Make the rename itself durable. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return OTA_OK;
}

int keyfile_seal(const char *path, const struct master_keys *k, enum keyfile_kek kind,
                 const char *kek_source)
{
    if (path == NULL || k == NULL || kek_source == NULL || kek_source[0] == '\0' ||
        (kind != KEYFILE_KEK_PASSPHRASE && kind != KEYFILE_KEK_FILE))
        return OTA_ERR_INVAL;
    if (sodium_init() < 0)
        return OTA_ERR_CRYPTO;
    uint8_t file[KF_FILE_LEN];
    memset(file, 0, sizeof file);
    memcpy(file, KF_MAGIC, KF_MAGIC_LEN);
    file[KF_OFF_KIND] = (uint8_t)kind;
    if (kind == KEYFILE_KEK_PASSPHRASE) {
        put_le64(file + KF_OFF_OPS, crypto_pwhash_OPSLIMIT_INTERACTIVE);
        put_le64(file + KF_OFF_MEM, crypto_pwhash_MEMLIMIT_INTERACTIVE);
    }
    randombytes_buf(file + KF_OFF_SALT, crypto_pwhash_SALTBYTES);
    randombytes_buf(file + KF_OFF_NONCE, crypto_secretbox_NONCEBYTES);

    uint8_t *box_key = sodium_malloc(crypto_secretbox_KEYBYTES);
    uint8_t *plain = sodium_malloc(KF_PLAIN_LEN);
    int rc = box_key != NULL && plain != NULL ? OTA_OK : OTA_ERR_NOMEM;
    if (rc == OTA_OK)
        rc = derive_box_key(file, kind, kek_source, box_key);
    if (rc == OTA_OK) {
        memcpy(plain, k->app, sizeof k->app);
        memcpy(plain + sizeof k->app, k->code_hmac, sizeof k->code_hmac);
        if (crypto_secretbox_easy(file + KF_HDR_LEN, plain, KF_PLAIN_LEN, file + KF_OFF_NONCE,
                                  box_key) != 0)
            rc = OTA_ERR_CRYPTO;
    }
    if (box_key != NULL)
        sodium_free(box_key);
    if (plain != NULL)
        sodium_free(plain);
    if (rc == OTA_OK)
        rc = write_atomic(path, file, sizeof file);
    sodium_memzero(file, sizeof file); /* ciphertext only, but leave nothing */
    return rc;
}

int keyfile_open(const char *path, struct master_keys *k, enum keyfile_kek kind,
                 const char *kek_source, char *err, size_t errlen)
{
    char dummy[1];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (path == NULL || k == NULL || kek_source == NULL || kek_source[0] == '\0' ||
        (kind != KEYFILE_KEK_PASSPHRASE && kind != KEYFILE_KEK_FILE)) {
        snprintf(err, errlen, "key file: no %s given",
                 kind == KEYFILE_KEK_FILE ? "KEK file" : "passphrase");
        return OTA_ERR_INVAL;
    }
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialize");
        return OTA_ERR_CRYPTO;
    }
    uint8_t file[KF_FILE_LEN];
    int rc = read_exact_file(path, file, sizeof file);
    if (rc != OTA_OK) {
        snprintf(err, errlen, "key file %s: %s", path,
                 rc == OTA_ERR_LENGTH      ? "wrong size (not a sealed key file)"
                 : rc == OTA_ERR_NOT_FOUND ? "does not exist"
                                           : "cannot be read");
        return rc == OTA_ERR_LENGTH ? OTA_ERR_PARSE : rc;
    }
    if (memcmp(file, KF_MAGIC, KF_MAGIC_LEN) != 0) {
        snprintf(err, errlen, "key file %s: not a sealed key file (bad magic)", path);
        return OTA_ERR_PARSE;
    }
    if (file[KF_OFF_KIND] != (uint8_t)kind) {
        snprintf(err, errlen, "key file %s: sealed with a %s, but a %s was given", path,
                 file[KF_OFF_KIND] == KEYFILE_KEK_FILE ? "KEK file" : "passphrase",
                 kind == KEYFILE_KEK_FILE ? "KEK file" : "passphrase");
        return OTA_ERR_INVAL;
    }
    uint8_t *box_key = sodium_malloc(crypto_secretbox_KEYBYTES);
    uint8_t *plain = sodium_malloc(KF_PLAIN_LEN);
    rc = box_key != NULL && plain != NULL ? OTA_OK : OTA_ERR_NOMEM;
    if (rc == OTA_OK) {
        rc = derive_box_key(file, kind, kek_source, box_key);
        if (rc == OTA_ERR_INVAL || rc == OTA_ERR_IO || rc == OTA_ERR_NOT_FOUND)
            snprintf(err, errlen, "KEK file %s: %s", kek_source,
                     rc == OTA_ERR_INVAL ? "not 32 bytes" : "cannot be read");
    }
    if (rc == OTA_OK &&
        crypto_secretbox_open_easy(plain, file + KF_HDR_LEN, KF_FILE_LEN - KF_HDR_LEN,
                                   file + KF_OFF_NONCE, box_key) != 0) {
        rc = OTA_ERR_MAC;
    }
    if (rc == OTA_ERR_MAC)
        snprintf(err, errlen, "key file %s: wrong passphrase or KEK, or the file was altered",
                 path);
    if (rc == OTA_OK) {
        memcpy(k->app, plain, sizeof k->app);
        memcpy(k->code_hmac, plain + sizeof k->app, sizeof k->code_hmac);
    } else if (err[0] == '\0') {
        snprintf(err, errlen, "key file %s: %s", path, ota_strerror(rc));
    }
    if (box_key != NULL)
        sodium_free(box_key);
    if (plain != NULL)
        sodium_free(plain);
    sodium_memzero(file, sizeof file);
    return rc;
}

void keyfile_fingerprint(const uint8_t *key, size_t len, char out[17])
{
    static const uint8_t fp_key[] = "ota key fingerprint v1";
    uint8_t h[8];
    static const char hexd[] = "0123456789abcdef";
    crypto_generichash(h, sizeof h, key, len, fp_key, sizeof fp_key - 1);
    for (size_t i = 0; i < sizeof h; i++) {
        out[2 * i] = hexd[h[i] >> 4];
        out[2 * i + 1] = hexd[h[i] & 0xf];
    }
    out[16] = '\0';
}
