/* Tests for common/keyfile.c: seal/open round trips with a passphrase and
 * with a KEK file, wrong passphrase or KEK and every tampered byte give
 * OTA_ERR_MAC, the file is 0600 and written atomically (no temporary file
 * left), no secret appears in an error message, fingerprints. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keyfile.h"
#include "ota_err.h"

#define KF_SIZE 200 /* header 72 + MAC 16 + keys 112 */

static char dir[64];
static char path[128];
static char kek_path[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_keyfile.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/keys.sealed", dir);
    snprintf(kek_path, sizeof kek_path, "%s/kek", dir);
}

static void teardown(void)
{
    unlink(path);
    unlink(kek_path);
    rmdir(dir);
}

static struct master_keys *random_keys(void)
{
    struct master_keys *k = keyfile_alloc();
    ck_assert_ptr_nonnull(k);
    randombytes_buf(k, sizeof *k);
    return k;
}

static void write_kek(const char *p)
{
    uint8_t kek[32];
    randombytes_buf(kek, sizeof kek);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, kek, sizeof kek), (ssize_t)sizeof kek);
    close(fd);
}

static size_t read_file(const char *p, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void write_file(const char *p, const uint8_t *buf, size_t n)
{
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
}

START_TEST(passphrase_round_trip)
{
    struct master_keys *k = random_keys(), *back = keyfile_alloc();
    char err[256];
    ck_assert_int_eq(keyfile_seal(path, k, KEYFILE_KEK_PASSPHRASE, "correct horse"), OTA_OK);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(st.st_size, KF_SIZE);
    ck_assert_int_eq(
        keyfile_open(path, back, KEYFILE_KEK_PASSPHRASE, "correct horse", err, sizeof err), OTA_OK);
    ck_assert_mem_eq(back->app, k->app, sizeof k->app);
    ck_assert_mem_eq(back->code_hmac, k->code_hmac, sizeof k->code_hmac);
    /* The file holds no key in clear. */
    uint8_t raw[512];
    size_t n = read_file(path, raw, sizeof raw);
    ck_assert_ptr_null(memmem(raw, n, k->app[0], 16));
    ck_assert_ptr_null(memmem(raw, n, k->code_hmac, 16));
    /* Sealing again gives another file (fresh salt and nonce). */
    uint8_t raw2[512];
    ck_assert_int_eq(keyfile_seal(path, k, KEYFILE_KEK_PASSPHRASE, "correct horse"), OTA_OK);
    ck_assert_uint_eq(read_file(path, raw2, sizeof raw2), n);
    ck_assert_int_ne(memcmp(raw, raw2, n), 0);
    keyfile_free(k);
    keyfile_free(back);
}
END_TEST

START_TEST(wrong_passphrase_is_mac_and_no_secret_in_err)
{
    struct master_keys *k = random_keys(), *back = keyfile_alloc();
    char err[256];
    ck_assert_int_eq(keyfile_seal(path, k, KEYFILE_KEK_PASSPHRASE, "s3cr3t-pass"), OTA_OK);
    ck_assert_int_eq(
        keyfile_open(path, back, KEYFILE_KEK_PASSPHRASE, "s3cr3t-pasz", err, sizeof err),
        OTA_ERR_MAC);
    ck_assert_uint_gt(strlen(err), 0);
    ck_assert_ptr_null(strstr(err, "s3cr3t"));
    /* Nothing was written into the caller's keys. */
    uint8_t zero[sizeof back->app] = {0};
    ck_assert_mem_eq(back->app, zero, sizeof zero);
    /* A KEK file where a passphrase sealed it: refused before any crypto. */
    write_kek(kek_path);
    ck_assert_int_eq(keyfile_open(path, back, KEYFILE_KEK_FILE, kek_path, err, sizeof err),
                     OTA_ERR_INVAL);
    ck_assert_int_eq(keyfile_open(path, back, KEYFILE_KEK_PASSPHRASE, "", err, sizeof err),
                     OTA_ERR_INVAL);
    ck_assert_int_eq(keyfile_seal(path, k, KEYFILE_KEK_PASSPHRASE, ""), OTA_ERR_INVAL);
    keyfile_free(k);
    keyfile_free(back);
}
END_TEST

/* Flipping any one bit of any byte (header, MAC, ciphertext) is caught.
 * KEK-file kind so that each open is fast. */
START_TEST(every_tampered_byte_is_mac)
{
    struct master_keys *k = random_keys(), *back = keyfile_alloc();
    char err[256];
    write_kek(kek_path);
    ck_assert_int_eq(keyfile_seal(path, k, KEYFILE_KEK_FILE, kek_path), OTA_OK);
    uint8_t raw[512], bad[512];
    size_t n = read_file(path, raw, sizeof raw);
    ck_assert_uint_eq(n, KF_SIZE);
    int mac = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(bad, raw, n);
        bad[i] ^= (uint8_t)(1u << (i % 8));
        write_file(path, bad, n);
        int rc = keyfile_open(path, back, KEYFILE_KEK_FILE, kek_path, err, sizeof err);
        if (i < 8)
            ck_assert_int_eq(rc, OTA_ERR_PARSE); /* magic */
        else if (i == 8)
            ck_assert_int_eq(rc, OTA_ERR_INVAL); /* kind */
        else {
            ck_assert_msg(rc == OTA_ERR_MAC, "byte %zu: %d", i, rc);
            mac++;
        }
    }
    ck_assert_int_eq(mac, KF_SIZE - 9);
    /* Truncated and extended files. */
    write_file(path, raw, n - 1);
    ck_assert_int_eq(keyfile_open(path, back, KEYFILE_KEK_FILE, kek_path, err, sizeof err),
                     OTA_ERR_PARSE);
    memcpy(bad, raw, n);
    bad[n] = 0;
    write_file(path, bad, n + 1);
    ck_assert_int_eq(keyfile_open(path, back, KEYFILE_KEK_FILE, kek_path, err, sizeof err),
                     OTA_ERR_PARSE);
    /* The intact file still opens, and another KEK does not. */
    write_file(path, raw, n);
    ck_assert_int_eq(keyfile_open(path, back, KEYFILE_KEK_FILE, kek_path, err, sizeof err), OTA_OK);
    ck_assert_mem_eq(back->code_hmac, k->code_hmac, sizeof k->code_hmac);
    write_kek(kek_path);
    ck_assert_int_eq(keyfile_open(path, back, KEYFILE_KEK_FILE, kek_path, err, sizeof err),
                     OTA_ERR_MAC);
    keyfile_free(k);
    keyfile_free(back);
}
END_TEST

/* A tampered passphrase-kind header (salt, limits) is caught too. */
START_TEST(tampered_passphrase_header_is_mac)
{
    struct master_keys *k = random_keys(), *back = keyfile_alloc();
    char err[256];
    ck_assert_int_eq(keyfile_seal(path, k, KEYFILE_KEK_PASSPHRASE, "pw"), OTA_OK);
    uint8_t raw[512];
    size_t n = read_file(path, raw, sizeof raw);
    const size_t pos[] = {16, 24, 32, 47, 48, 71, 72, 199};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
        raw[pos[i]] ^= 0x01;
        write_file(path, raw, n);
        ck_assert_int_eq(keyfile_open(path, back, KEYFILE_KEK_PASSPHRASE, "pw", err, sizeof err),
                         OTA_ERR_MAC);
        raw[pos[i]] ^= 0x01;
    }
    /* An absurd memory limit is refused without trying to allocate it. */
    raw[31] = 0x7f;
    write_file(path, raw, n);
    ck_assert_int_eq(keyfile_open(path, back, KEYFILE_KEK_PASSPHRASE, "pw", err, sizeof err),
                     OTA_ERR_MAC);
    keyfile_free(k);
    keyfile_free(back);
}
END_TEST

START_TEST(atomic_write_and_mode)
{
    struct master_keys *k = random_keys();
    write_kek(kek_path);
    /* An existing file with loose permissions is replaced by a 0600 one. */
    write_file(path, (const uint8_t *)"old", 3);
    chmod(path, 0644);
    ck_assert_int_eq(keyfile_seal(path, k, KEYFILE_KEK_FILE, kek_path), OTA_OK);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    /* Only the key file and the KEK remain in the directory. */
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, ".."))
            entries++;
    closedir(d);
    ck_assert_int_eq(entries, 2);
    /* A directory that does not exist: an error, nothing written. */
    char bad[160];
    snprintf(bad, sizeof bad, "%s/missing/keys", dir);
    ck_assert_int_eq(keyfile_seal(bad, k, KEYFILE_KEK_FILE, kek_path), OTA_ERR_IO);
    /* A KEK file of the wrong size. */
    write_file(kek_path, (const uint8_t *)"short", 5);
    ck_assert_int_eq(keyfile_seal(path, k, KEYFILE_KEK_FILE, kek_path), OTA_ERR_INVAL);
    keyfile_free(k);
}
END_TEST

START_TEST(missing_file_errors)
{
    struct master_keys *k = keyfile_alloc();
    char err[256];
    ck_assert_int_eq(keyfile_open(path, k, KEYFILE_KEK_PASSPHRASE, "pw", err, sizeof err),
                     OTA_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err, path));
    keyfile_free(k);
}
END_TEST

START_TEST(fingerprints)
{
    uint8_t a[16], b[16];
    char fa[17], fa2[17], fb[17];
    randombytes_buf(a, sizeof a);
    memcpy(b, a, sizeof b);
    b[15] ^= 0x80;
    keyfile_fingerprint(a, sizeof a, fa);
    keyfile_fingerprint(a, sizeof a, fa2);
    keyfile_fingerprint(b, sizeof b, fb);
    ck_assert_uint_eq(strlen(fa), 16);
    ck_assert_str_eq(fa, fa2);
    ck_assert_str_ne(fa, fb);
    for (int i = 0; i < 16; i++)
        ck_assert_ptr_nonnull(strchr("0123456789abcdef", fa[i]));
    /* Not a prefix of the key itself. */
    char hexa[33];
    sodium_bin2hex(hexa, sizeof hexa, a, sizeof a);
    ck_assert_int_ne(strncmp(hexa, fa, 16), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("keyfile");
    TCase *t = tcase_create("core");
    tcase_set_timeout(t, 60);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, passphrase_round_trip);
    tcase_add_test(t, wrong_passphrase_is_mac_and_no_secret_in_err);
    tcase_add_test(t, every_tampered_byte_is_mac);
    tcase_add_test(t, tampered_passphrase_header_is_mac);
    tcase_add_test(t, atomic_write_and_mode);
    tcase_add_test(t, missing_file_errors);
    tcase_add_test(t, fingerprints);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    if (sodium_init() < 0)
        return EXIT_FAILURE;
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
