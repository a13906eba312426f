/* df_interop: drives the card simulator through a real PC/SC stack
 * (pcscd + vpcd + `ota-card vicc`) with Debian's libfreefare over libnfc's
 * pcsc driver, an EV1 implementation we did not write.  One TAP line per
 * check; exits non-zero if any check fails.
 *
 * Two cards: one personalized with the profile of card_profile.h (keys
 * diversified from known master keys), one blank (factory PICC key, the
 * all-zero DES key).  With --after-personalize, instead, one card that the
 * system personalized (test_pcsc_e2e.sh) is checked without changing it:
 * the PICC is locked (the all-zero keys fail; DeleteApplication,
 * FormatPICC, CreateApplication and GetApplicationIDs need the PICC key),
 * the diversified PICC key and application keys work, and the balance and
 * the newest record agree with what the system booked.  libfreefare ignores SW1 and keeps its
 * session key after a card error, so after every expected error this program selects and
 * authenticates again; every data command names its communication mode through the libfreefare _ex
 * functions.  It must never adapt a check to what the simulator happens to answer: expectations
 * come from the EV1 specification and the profile. */
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <freefare.h>
#include <nfc/nfc.h>

#include "card_profile.h"
#include "desfire_crypto.h"
#include "hex.h"

#define IO_MAX_RECORDS PROF_RECORD_COUNT
#define IO_BLANK_AID 0x0A0B0Cu
#define IO_FILE_MACED_VALUE 3

struct io_args {
    const char *reader, *blank_reader;
    uint8_t uid[7], blank_uid[10];
    int uid_len, blank_uid_len;
    uint8_t masters[PROF_NUM_MASTERS][16];
    int have_masters; /* how many master keys were given: 4, or 5 with the PICC's */
    int after_personalize;
    const char *system_id;
    int32_t balance;
};

static int tap_count, tap_failed;

static void tap(int ok, MifareTag tag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tap(int ok, MifareTag tag, const char *fmt, ...)
{
    va_list ap;
    tap_count++;
    if (!ok)
        tap_failed++;
    printf("%s %d - ", ok ? "ok" : "not ok", tap_count);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (!ok && tag != NULL)
        printf(" # picc error 0x%02X, pcd error 0x%02X", mifare_desfire_last_picc_error(tag),
               mifare_desfire_last_pcd_error(tag));
    printf("\n");
    fflush(stdout);
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diag(const char *fmt, ...)
{
    va_list ap;
    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* ---- keys ---- */

/* Card key n = AN10922(master n, UID || AID (LSB first) || system id). */
static int io_card_key(const struct io_args *a, int n, uint8_t out[16])
{
    uint8_t m[31];
    size_t sl = strlen(a->system_id);
    if (sl > sizeof m - 10)
        return -1;
    memcpy(m, a->uid, 7);
    m[7] = PROF_AID_0;
    m[8] = PROF_AID_1;
    m[9] = PROF_AID_2;
    memcpy(m + 10, a->system_id, sl);
    return dfc_an10922_aes128(a->masters[n], m, 10 + sl, out);
}

/* The PICC master key after personalization: AN10922(master 5, UID ||
 * 00 00 00 (the PICC's AID) || system id). */
static int io_picc_key(const struct io_args *a, uint8_t out[16])
{
    uint8_t m[31];
    size_t sl = strlen(a->system_id);
    if (sl > sizeof m - 10)
        return -1;
    memcpy(m, a->uid, 7);
    memset(m + 7, 0, 3);
    memcpy(m + 10, a->system_id, sl);
    return dfc_an10922_aes128(a->masters[PROF_MASTER_PICC], m, 10 + sl, out);
}

static MifareDESFireKey io_aes_key(const uint8_t k[16], uint8_t version)
{
    uint8_t copy[16];
    memcpy(copy, k, 16);
    MifareDESFireKey key = mifare_desfire_aes_key_new_with_version(copy, version);
    dfc_wipe(copy, sizeof copy);
    return key;
}

/* ---- card helpers ---- */

static int io_select(MifareTag tag, uint32_t aid)
{
    MifareDESFireAID a = mifare_desfire_aid_new(aid);
    int rc = mifare_desfire_select_application(tag, a);
    free(a);
    return rc;
}

/* A fresh session: select the application and authenticate with AES. */
static int io_session(MifareTag tag, uint32_t aid, uint8_t key_no, const uint8_t key[16])
{
    if (io_select(tag, aid) < 0)
        return -1;
    MifareDESFireKey k = io_aes_key(key, 0);
    int rc = mifare_desfire_authenticate_aes(tag, key_no, k);
    mifare_desfire_key_free(k);
    return rc;
}

static int io_expect_error(int rc, MifareTag tag, uint8_t status)
{
    return rc < 0 && mifare_desfire_last_picc_error(tag) == status;
}

/* Finds the single DESFire tag on a reader and checks its UID. */
static MifareTag *io_list(nfc_device *dev, const uint8_t *uid, int uid_len, const char *what,
                          MifareTag *found)
{
    char want[21];
    *found = NULL;
    MifareTag *tags = freefare_get_tags(dev);
    int count = 0;
    hex_encode(uid, (size_t)uid_len, want);
    for (int i = 0; tags != NULL && tags[i] != NULL; i++) {
        count++;
        if (freefare_get_tag_type(tags[i]) != DESFIRE)
            continue;
        char *u = freefare_get_tag_uid(tags[i]);
        if (u != NULL && strcmp(u, want) == 0)
            *found = tags[i];
        free(u);
    }
    tap(count == 1 && *found != NULL, NULL, "%s: the reader lists one DESFire tag with UID %s",
        what, want);
    if (*found != NULL)
        diag("%s: %s", what, freefare_get_tag_friendly_name(*found));
    return tags;
}

/* ---- the personalized card ---- */

static void io_check_version(MifareTag tag, const struct io_args *a)
{
    struct mifare_desfire_version_info v;
    memset(&v, 0, sizeof v);
    int rc = mifare_desfire_get_version(tag, &v);
    tap(rc == 0 && v.hardware.vendor_id == 0x04 && v.hardware.type == 0x01 &&
            v.hardware.version_major == 0x01 && v.software.version_major == 0x01 &&
            memcmp(v.uid, a->uid, 7) == 0,
        tag, "GetVersion: NXP DESFire EV1 (hw %02x/%02x v%u.%u, sw v%u.%u) with the card's UID",
        v.hardware.vendor_id, v.hardware.type, v.hardware.version_major, v.hardware.version_minor,
        v.software.version_major, v.software.version_minor);
}

static void io_check_auth(MifareTag tag, uint8_t keys[PROF_NUM_KEYS][16])
{
    tap(io_select(tag, PROF_AID_U32) == 0, tag, "SelectApplication C0FFEE");
    for (int n = 0; n < PROF_NUM_KEYS; n++)
        tap(io_session(tag, PROF_AID_U32, (uint8_t)n, keys[n]) == 0, tag,
            "AuthenticateAES with diversified key %d", n);

    /* Key 1's value presented as key 2: the card must refuse with AE. */
    int rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_READ]);
    tap(io_expect_error(rc, tag, AUTHENTICATION_ERROR), tag,
        "AuthenticateAES key 2 with a wrong key answers AE");
    uint8_t zero[16] = {0};
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_MASTER, zero);
    tap(io_expect_error(rc, tag, AUTHENTICATION_ERROR), tag,
        "AuthenticateAES key 0 with the all-zero key answers AE");
    tap(io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]) == 0, tag,
        "AuthenticateAES key 2 succeeds again after the failures");
}

static void io_check_uid(MifareTag tag, const struct io_args *a, uint8_t keys[][16])
{
    char want[15];
    char *uid = NULL;
    hex_encode(a->uid, 7, want);
    /* Without an authentication the card does not tell its UID. */
    int rc = io_select(tag, PROF_AID_U32);
    if (rc == 0)
        rc = mifare_desfire_get_card_uid(tag, &uid);
    tap(io_expect_error(rc, tag, AUTHENTICATION_ERROR), tag,
        "GetCardUID without an authentication answers AE");
    free(uid);
    uid = NULL;
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    if (rc == 0)
        rc = mifare_desfire_get_card_uid(tag, &uid);
    tap(rc == 0 && uid != NULL && strcmp(uid, want) == 0, tag,
        "GetCardUID (enciphered answer) returns %s", want);
    free(uid);
}

/* GetValue of file 1 (enciphered) in a fresh session under key_no. */
static int io_value(MifareTag tag, uint8_t key_no, const uint8_t key[16], int32_t *v)
{
    if (io_session(tag, PROF_AID_U32, key_no, key) < 0)
        return -1;
    return mifare_desfire_get_value_ex(tag, PROF_FILE_VALUE, v, MDCM_ENCIPHERED);
}

static void io_check_values(MifareTag tag, const struct io_args *a, uint8_t keys[][16],
                            int32_t *balance)
{
    int32_t v = -1;
    int rc = io_value(tag, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT], &v);
    tap(rc == 0 && v == a->balance, tag, "GetValue enciphered under key 2 = %d (got %d)",
        a->balance, v);
    v = -1;
    rc = io_value(tag, PROF_KEY_READ, keys[PROF_KEY_READ], &v);
    tap(rc == 0 && v == a->balance, tag, "GetValue enciphered under key 1 = %d (got %d)",
        a->balance, v);
    *balance = a->balance;

    /* Credit + Commit. */
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    int ok = rc == 0 && mifare_desfire_credit_ex(tag, PROF_FILE_VALUE, 500, MDCM_ENCIPHERED) == 0;
    tap(ok, tag, "Credit 500 enciphered under key 2");
    tap(ok && mifare_desfire_commit_transaction(tag) == 0, tag, "CommitTransaction after Credit");
    v = -1;
    rc = io_value(tag, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT], &v);
    tap(rc == 0 && v == *balance + 500, tag, "GetValue after the committed Credit = %d (got %d)",
        *balance + 500, v);
    if (rc == 0)
        *balance = v;

    /* Debit under the read key (terminals) + Commit. */
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_READ, keys[PROF_KEY_READ]);
    ok = rc == 0 && mifare_desfire_debit_ex(tag, PROF_FILE_VALUE, 200, MDCM_ENCIPHERED) == 0;
    tap(ok, tag, "Debit 200 enciphered under key 1");
    tap(ok && mifare_desfire_commit_transaction(tag) == 0, tag, "CommitTransaction after Debit");
    v = -1;
    rc = io_value(tag, PROF_KEY_READ, keys[PROF_KEY_READ], &v);
    tap(rc == 0 && v == *balance - 200, tag, "GetValue after the committed Debit = %d (got %d)",
        *balance - 200, v);
    if (rc == 0)
        *balance = v;

    /* AbortTransaction discards a Credit. */
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    ok = rc == 0 && mifare_desfire_credit_ex(tag, PROF_FILE_VALUE, 1000, MDCM_ENCIPHERED) == 0;
    tap(ok && mifare_desfire_abort_transaction(tag) == 0, tag, "Credit 1000 then AbortTransaction");
    v = -1;
    rc = io_value(tag, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT], &v);
    tap(rc == 0 && v == *balance, tag, "the aborted Credit is gone: GetValue = %d (got %d)",
        *balance, v);

    /* Selecting again discards a Credit; a later Commit has nothing to commit. */
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    ok = rc == 0 && mifare_desfire_credit_ex(tag, PROF_FILE_VALUE, 700, MDCM_ENCIPHERED) == 0;
    tap(ok, tag, "Credit 700, left uncommitted");
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    tap(rc == 0 && mifare_desfire_commit_transaction(tag) == 0, tag,
        "SelectApplication + AuthenticateAES again, then CommitTransaction");
    v = -1;
    rc = io_value(tag, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT], &v);
    tap(rc == 0 && v == *balance, tag,
        "the Credit before the reselect is gone: GetValue = %d (got %d)", *balance, v);

    /* Upper limit 1 000 000: a Credit past it is a boundary error. */
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    if (rc == 0)
        rc = mifare_desfire_credit_ex(tag, PROF_FILE_VALUE, PROF_VALUE_UPPER - *balance + 1,
                                      MDCM_ENCIPHERED);
    tap(io_expect_error(rc, tag, BOUNDARY_ERROR), tag, "Credit past the upper limit answers BE");
    /* Debit below the lower limit 0. */
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    if (rc == 0)
        rc = mifare_desfire_debit_ex(tag, PROF_FILE_VALUE, *balance + 1, MDCM_ENCIPHERED);
    tap(io_expect_error(rc, tag, BOUNDARY_ERROR), tag, "Debit below the lower limit answers BE");
    v = -1;
    rc = io_value(tag, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT], &v);
    tap(rc == 0 && v == *balance, tag, "GetValue unchanged after the refused operations = %d",
        *balance);
}

static void io_record(uint8_t rec[PROF_RECORD_SIZE], uint8_t seq, int32_t amount, int32_t after)
{
    memset(rec, 0, PROF_RECORD_SIZE);
    for (int i = 0; i < 16; i++)
        rec[PROF_REC_TXN + i] = (uint8_t)(0xA0 + seq + i);
    dfc_put_le32(rec + PROF_REC_AMOUNT, (uint32_t)amount);
    dfc_put_le32(rec + PROF_REC_BALANCE, (uint32_t)after);
    dfc_put_le32(rec + PROF_REC_TIME, 1700000000u + seq);
}

static void io_check_records(MifareTag tag, uint8_t keys[][16])
{
    /* Room for the records plus CRC and padding (libfreefare decrypts in place). */
    uint8_t buf[PROF_RECORD_SIZE * IO_MAX_RECORDS + 64];
    uint8_t rec[3][PROF_RECORD_SIZE];

    int rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    if (rc == 0)
        rc =
            (int)mifare_desfire_read_records_ex(tag, PROF_FILE_RECORDS, 0, 1, buf, MDCM_ENCIPHERED);
    tap(io_expect_error(rc, tag, BOUNDARY_ERROR), tag,
        "ReadRecords on the empty record file answers BE");

    for (uint8_t i = 0; i < 3; i++) {
        io_record(rec[i], i, 100 * (i + 1), 1000 * (i + 1));
        rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
        ssize_t w = rc < 0
                        ? -1
                        : mifare_desfire_write_record_ex(tag, PROF_FILE_RECORDS, 0,
                                                         PROF_RECORD_SIZE, rec[i], MDCM_ENCIPHERED);
        tap(w == PROF_RECORD_SIZE, tag,
            "WriteRecord of a 32-byte record %u, enciphered (two frames)", i + 1);
        tap(w == PROF_RECORD_SIZE && mifare_desfire_commit_transaction(tag) == 0, tag,
            "CommitTransaction after WriteRecord %u", i + 1);
    }

    /* One record: offset 0 is the newest. */
    memset(buf, 0, sizeof buf);
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    ssize_t r =
        rc < 0 ? -1
               : mifare_desfire_read_records_ex(tag, PROF_FILE_RECORDS, 0, 1, buf, MDCM_ENCIPHERED);
    tap(r == PROF_RECORD_SIZE && memcmp(buf, rec[2], PROF_RECORD_SIZE) == 0, tag,
        "ReadRecords one record (offset 0) returns the newest (%zd bytes)", r);

    /* Several: the two newest, oldest first. */
    memset(buf, 0, sizeof buf);
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    r = rc < 0 ? -1
               : mifare_desfire_read_records_ex(tag, PROF_FILE_RECORDS, 0, 2, buf, MDCM_ENCIPHERED);
    tap(r == 2 * PROF_RECORD_SIZE && memcmp(buf, rec[1], PROF_RECORD_SIZE) == 0 &&
            memcmp(buf + PROF_RECORD_SIZE, rec[2], PROF_RECORD_SIZE) == 0,
        tag, "ReadRecords two records returns them oldest first (%zd bytes)", r);

    /* All (length 0), across several answer frames. */
    memset(buf, 0, sizeof buf);
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    r = rc < 0 ? -1
               : mifare_desfire_read_records_ex(tag, PROF_FILE_RECORDS, 0, 0, buf, MDCM_ENCIPHERED);
    tap(r == 3 * PROF_RECORD_SIZE && memcmp(buf, rec[0], PROF_RECORD_SIZE) == 0 &&
            memcmp(buf + 2 * PROF_RECORD_SIZE, rec[2], PROF_RECORD_SIZE) == 0,
        tag, "ReadRecords all records (%zd bytes, several frames)", r);

    /* An uncommitted record is discarded by AbortTransaction. */
    uint8_t extra[PROF_RECORD_SIZE];
    io_record(extra, 9, 1, 1);
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    ssize_t w = rc < 0 ? -1
                       : mifare_desfire_write_record_ex(tag, PROF_FILE_RECORDS, 0, PROF_RECORD_SIZE,
                                                        extra, MDCM_ENCIPHERED);
    tap(w == PROF_RECORD_SIZE && mifare_desfire_abort_transaction(tag) == 0, tag,
        "WriteRecord then AbortTransaction");
    memset(buf, 0, sizeof buf);
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    r = rc < 0 ? -1
               : mifare_desfire_read_records_ex(tag, PROF_FILE_RECORDS, 0, 1, buf, MDCM_ENCIPHERED);
    tap(r == PROF_RECORD_SIZE && memcmp(buf, rec[2], PROF_RECORD_SIZE) == 0, tag,
        "the aborted record is gone: the newest is still record 3");

    /* Write access is key 2 only.  A right held by another key is an
     * authentication error (AE); 9D is for rights set to never (0xF), as
     * in libfreefare's own tests and the next check. */
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_READ, keys[PROF_KEY_READ]);
    w = rc < 0 ? 0
               : mifare_desfire_write_record_ex(tag, PROF_FILE_RECORDS, 0, PROF_RECORD_SIZE, extra,
                                                MDCM_ENCIPHERED);
    tap(w < 0 && mifare_desfire_last_picc_error(tag) == AUTHENTICATION_ERROR, tag,
        "WriteRecord under key 1 (the write right is key 2's) answers AE");
    /* ClearRecordFile needs ReadWrite, which the profile never grants. */
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    if (rc == 0)
        rc = mifare_desfire_clear_record_file(tag, PROF_FILE_RECORDS);
    tap(io_expect_error(rc, tag, PERMISSION_ERROR), tag, "ClearRecordFile under key 2 answers 9D");
}

static void io_check_settings(MifareTag tag, uint8_t keys[][16])
{
    struct mifare_desfire_file_settings s;
    memset(&s, 0, sizeof s);
    int rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    if (rc == 0)
        rc = mifare_desfire_get_file_settings(tag, PROF_FILE_VALUE, &s);
    tap(rc == 0 && s.file_type == MDFT_VALUE_FILE_WITH_BACKUP &&
            s.communication_settings == PROF_COMM_ENC && s.access_rights == PROF_VALUE_ACCESS &&
            s.settings.value_file.lower_limit == PROF_VALUE_LOWER &&
            s.settings.value_file.upper_limit == PROF_VALUE_UPPER &&
            s.settings.value_file.limited_credit_enabled == PROF_LIMITED_CREDIT,
        tag, "GetFileSettings of file 1 matches the profile (access %04x)", s.access_rights);
    memset(&s, 0, sizeof s);
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    if (rc == 0)
        rc = mifare_desfire_get_file_settings(tag, PROF_FILE_RECORDS, &s);
    tap(rc == 0 && s.file_type == MDFT_CYCLIC_RECORD_FILE_WITH_BACKUP &&
            s.communication_settings == PROF_COMM_ENC && s.access_rights == PROF_RECORD_ACCESS &&
            s.settings.linear_record_file.record_size == PROF_RECORD_SIZE &&
            s.settings.linear_record_file.max_number_of_records == PROF_RECORD_COUNT,
        tag, "GetFileSettings of file 2 matches the profile (access %04x)", s.access_rights);
    uint8_t ks = 0, maxk = 0;
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_MASTER, keys[PROF_KEY_MASTER]);
    if (rc == 0)
        rc = mifare_desfire_get_key_settings(tag, &ks, &maxk);
    /* libfreefare masks the key count to its low nibble, so the crypto
     * method bits (0x80 for AES) cannot be checked through it. */
    tap(rc == 0 && ks == PROF_APP_KEY_SETTINGS && maxk == PROF_NUM_KEYS, tag,
        "GetKeySettings: settings %02x (want %02x), %u keys", ks, PROF_APP_KEY_SETTINGS, maxk);
}

static void io_check_change_key(MifareTag tag, uint8_t keys[][16])
{
    uint8_t new3[16], new0[16];
    for (int i = 0; i < 16; i++) {
        new3[i] = (uint8_t)(0x30 + i);
        new0[i] = (uint8_t)(0xF0 - i);
    }

    /* Another key, under the master key: new XOR old, CRC of the new key. */
    int rc = io_session(tag, PROF_AID_U32, PROF_KEY_MASTER, keys[PROF_KEY_MASTER]);
    MifareDESFireKey nk = io_aes_key(new3, 0x01), ok_ = io_aes_key(keys[PROF_KEY_DEBIT], 0);
    if (rc == 0)
        rc = mifare_desfire_change_key(tag, PROF_KEY_DEBIT, nk, ok_);
    mifare_desfire_key_free(nk);
    mifare_desfire_key_free(ok_);
    tap(rc == 0, tag, "ChangeKey of key 3 under key 0");
    tap(io_session(tag, PROF_AID_U32, PROF_KEY_DEBIT, new3) == 0, tag,
        "AuthenticateAES key 3 with its new value");
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_DEBIT, keys[PROF_KEY_DEBIT]);
    tap(io_expect_error(rc, tag, AUTHENTICATION_ERROR), tag,
        "AuthenticateAES key 3 with its old value answers AE");
    uint8_t ver = 0xFF;
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_MASTER, keys[PROF_KEY_MASTER]);
    if (rc == 0)
        rc = mifare_desfire_get_key_version(tag, PROF_KEY_DEBIT, &ver);
    tap(rc == 0 && ver == 0x01, tag, "GetKeyVersion of key 3 = 01 (got %02x)", ver);

    /* The authenticated key itself: new key only; the session ends. */
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_MASTER, keys[PROF_KEY_MASTER]);
    nk = io_aes_key(new0, 0x02);
    if (rc == 0)
        rc = mifare_desfire_change_key(tag, PROF_KEY_MASTER, nk, NULL);
    mifare_desfire_key_free(nk);
    tap(rc == 0, tag, "ChangeKey of key 0 under key 0 (the session's own key)");
    tap(io_session(tag, PROF_AID_U32, PROF_KEY_MASTER, new0) == 0, tag,
        "AuthenticateAES key 0 with its new value");
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_MASTER, keys[PROF_KEY_MASTER]);
    tap(io_expect_error(rc, tag, AUTHENTICATION_ERROR), tag,
        "AuthenticateAES key 0 with its old value answers AE");
    /* Key 2 is untouched. */
    tap(io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]) == 0, tag,
        "AuthenticateAES key 2 still works after the key changes");
    dfc_wipe(new0, sizeof new0);
    dfc_wipe(new3, sizeof new3);
}

static void io_personalized(nfc_context *ctx, const struct io_args *a)
{
    uint8_t keys[PROF_NUM_KEYS][16];
    nfc_device *dev = nfc_open(ctx, a->reader);
    tap(dev != NULL, NULL, "personalized card: open reader %s", a->reader);
    if (dev == NULL)
        return;
    MifareTag tag = NULL;
    MifareTag *tags = io_list(dev, a->uid, a->uid_len, "personalized card", &tag);
    if (tag == NULL)
        goto out;
    int rc = mifare_desfire_connect(tag);
    tap(rc == 0, tag, "mifare_desfire_connect");
    if (rc < 0)
        goto out;

    for (int n = 0; n < PROF_NUM_KEYS; n++)
        if (io_card_key(a, n, keys[n]) < 0) {
            tap(0, NULL, "diversify key %d", n);
            goto out_keys;
        }

    io_check_version(tag, a);
    io_check_auth(tag, keys);
    io_check_uid(tag, a, keys);
    io_check_settings(tag, keys);
    int32_t balance = 0;
    io_check_values(tag, a, keys, &balance);
    io_check_records(tag, keys);
    io_check_change_key(tag, keys);
    mifare_desfire_disconnect(tag);
out_keys:
    dfc_wipe(keys, sizeof keys);
out:
    if (tags != NULL)
        freefare_free_tags(tags);
    nfc_close(dev);
}

/* ---- a card the system personalized ---- */

/* Without any authentication (a fresh selection of the PICC), the commands
 * that PICC key settings 0x09 reserve to the PICC master key are refused. */
static void io_check_picc_locked(nfc_device *dev, MifareTag tag)
{
    uint8_t zero[16] = {0};
    int rc;

    /* The factory keys: legacy DES (0A) and AES (AA) with all-zero keys.
     * The card's key is AES now, so the DES attempt is also of the wrong
     * key type: AE either way. */
    rc = io_select(tag, 0);
    MifareDESFireKey k = mifare_desfire_des_key_new(zero);
    if (rc == 0)
        rc = mifare_desfire_authenticate(tag, 0, k);
    mifare_desfire_key_free(k);
    tap(io_expect_error(rc, tag, AUTHENTICATION_ERROR), tag,
        "PICC: Authenticate (legacy DES) with the all-zero factory key answers AE");
    rc = io_session(tag, 0, 0, zero);
    tap(io_expect_error(rc, tag, AUTHENTICATION_ERROR), tag,
        "PICC: AuthenticateAES with the all-zero key answers AE");
    rc = io_select(tag, 0);
    k = mifare_desfire_3des_key_new(zero);
    if (rc == 0)
        rc = mifare_desfire_authenticate_iso(tag, 0, k);
    mifare_desfire_key_free(k);
    tap(io_expect_error(rc, tag, AUTHENTICATION_ERROR), tag,
        "PICC: Authenticate ISO (2K3DES) with the all-zero key answers AE");

    MifareDESFireAID aid = mifare_desfire_aid_new(PROF_AID_U32);
    rc = io_select(tag, 0);
    if (rc == 0)
        rc = mifare_desfire_delete_application(tag, aid);
    free(aid);
    tap(io_expect_error(rc, tag, AUTHENTICATION_ERROR), tag,
        "PICC: DeleteApplication C0FFEE without the PICC key answers AE");

    /* libfreefare refuses FormatPICC itself without a session key (it
     * never sends it), so the card is asked through libnfc directly: the
     * ISO 7816 wrapping of native FC. */
    static const uint8_t format_apdu[] = {0x90, 0xFC, 0x00, 0x00, 0x00};
    uint8_t answer[64];
    int n = -1;
    if (io_select(tag, 0) == 0)
        n = nfc_initiator_transceive_bytes(dev, format_apdu, sizeof format_apdu, answer,
                                           sizeof answer, 2000);
    tap(n == 2 && answer[0] == 0x91 && answer[1] == AUTHENTICATION_ERROR, NULL,
        "PICC: FormatPICC (90 FC, sent through libnfc) without the PICC key answers 91 AE "
        "(%d bytes: %02X %02X)",
        n, n >= 1 ? answer[0] : 0, n >= 2 ? answer[1] : 0);

    aid = mifare_desfire_aid_new(IO_BLANK_AID);
    rc = io_select(tag, 0);
    if (rc == 0)
        rc = mifare_desfire_create_application_aes(tag, aid, PROF_APP_KEY_SETTINGS, 1);
    free(aid);
    tap(io_expect_error(rc, tag, AUTHENTICATION_ERROR), tag,
        "PICC: CreateApplication without the PICC key answers AE");

    MifareDESFireAID *aids = NULL;
    size_t naids = 0;
    rc = io_select(tag, 0);
    if (rc == 0)
        rc = mifare_desfire_get_application_ids(tag, &aids, &naids);
    if (rc == 0)
        mifare_desfire_free_application_ids(aids);
    tap(io_expect_error(rc, tag, AUTHENTICATION_ERROR), tag,
        "PICC: GetApplicationIDs without the PICC key answers AE");
}

/* Under the diversified PICC key: the settings and the one application. */
static void io_check_picc_key(MifareTag tag, const uint8_t picc[16])
{
    MifareDESFireAID *aids = NULL;
    size_t naids = 0;
    int found = 0;
    int rc = io_session(tag, 0, 0, picc);
    tap(rc == 0, tag, "PICC: AuthenticateAES with the diversified PICC key");
    if (rc == 0)
        rc = mifare_desfire_get_application_ids(tag, &aids, &naids);
    if (rc == 0) {
        for (size_t i = 0; i < naids; i++)
            if (mifare_desfire_aid_get_aid(aids[i]) == PROF_AID_U32)
                found = 1;
        mifare_desfire_free_application_ids(aids);
    }
    tap(rc == 0 && found && naids == 1, tag,
        "PICC: GetApplicationIDs under the PICC key lists C0FFEE only (%zu applications)", naids);

    uint8_t ks = 0, maxk = 0;
    rc = io_session(tag, 0, 0, picc);
    if (rc == 0)
        rc = mifare_desfire_get_key_settings(tag, &ks, &maxk);
    tap(rc == 0 && ks == PROF_PICC_KEY_SETTINGS && maxk == 1, tag,
        "PICC: GetKeySettings %02x (want %02x), %u key", ks, PROF_PICC_KEY_SETTINGS, maxk);

    /* The application is still there for its own keys after the refused
     * DeleteApplication and FormatPICC. */
    tap(io_select(tag, PROF_AID_U32) == 0, tag, "SelectApplication C0FFEE still works");
}

static void io_check_booked(MifareTag tag, const struct io_args *a, uint8_t keys[][16])
{
    int32_t v = -1;
    int rc = io_value(tag, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT], &v);
    tap(rc == 0 && v == a->balance, tag, "GetValue enciphered under key 2 = %d (got %d)",
        a->balance, v);

    uint8_t buf[PROF_RECORD_SIZE + 64];
    memset(buf, 0, sizeof buf);
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_CREDIT, keys[PROF_KEY_CREDIT]);
    ssize_t r =
        rc < 0 ? -1
               : mifare_desfire_read_records_ex(tag, PROF_FILE_RECORDS, 0, 1, buf, MDCM_ENCIPHERED);
    if (a->balance == 0) {
        tap(io_expect_error((int)r, tag, BOUNDARY_ERROR), tag,
            "ReadRecords: no top-up record yet (BE)");
        return;
    }
    int32_t after = (int32_t)dfc_get_le32(buf + PROF_REC_BALANCE);
    int32_t amount = (int32_t)dfc_get_le32(buf + PROF_REC_AMOUNT);
    uint8_t tail[4] = {0};
    /* libfreefare finds the end of enciphered data by scanning for a CRC
     * followed by zero padding.  Our record ends in 4 zero bytes, so when
     * the card's CRC itself ends in k zero bytes (1 run in 256 for k = 1),
     * the scan stops k bytes early and returns 32 - k bytes.  Those k bytes
     * are the zero tail (buf was zeroed), so the record is the same. */
    tap(r >= PROF_RECORD_SIZE - 4 && r <= PROF_RECORD_SIZE && after == a->balance && amount > 0 &&
            amount <= a->balance && memcmp(buf + PROF_RECORD_SIZE - 4, tail, 4) == 0,
        tag, "ReadRecords: the newest top-up record says amount %d, balance after %d (%zd bytes)",
        amount, after, r);
}

static void io_after_personalize(nfc_context *ctx, const struct io_args *a)
{
    uint8_t keys[PROF_NUM_KEYS][16], picc[16], zero[16] = {0};
    nfc_device *dev = nfc_open(ctx, a->reader);
    tap(dev != NULL, NULL, "personalized card: open reader %s", a->reader);
    if (dev == NULL)
        return;
    MifareTag tag = NULL;
    MifareTag *tags = io_list(dev, a->uid, a->uid_len, "personalized card", &tag);
    if (tag == NULL)
        goto out;
    int rc = mifare_desfire_connect(tag);
    tap(rc == 0, tag, "mifare_desfire_connect");
    if (rc < 0)
        goto out;
    for (int n = 0; n < PROF_NUM_KEYS; n++)
        if (io_card_key(a, n, keys[n]) < 0) {
            tap(0, NULL, "diversify key %d", n);
            goto out_keys;
        }
    if (io_picc_key(a, picc) < 0) {
        tap(0, NULL, "diversify the PICC key");
        goto out_keys;
    }

    io_check_picc_locked(dev, tag);
    io_check_picc_key(tag, picc);
    for (int n = 0; n < PROF_NUM_KEYS; n++)
        tap(io_session(tag, PROF_AID_U32, (uint8_t)n, keys[n]) == 0, tag,
            "C0FFEE: AuthenticateAES with diversified key %d", n);
    rc = io_session(tag, PROF_AID_U32, PROF_KEY_MASTER, zero);
    tap(io_expect_error(rc, tag, AUTHENTICATION_ERROR), tag,
        "C0FFEE: AuthenticateAES key 0 with the all-zero key answers AE");
    io_check_settings(tag, keys);
    io_check_booked(tag, a, keys);
    mifare_desfire_disconnect(tag);
out_keys:
    dfc_wipe(keys, sizeof keys);
    dfc_wipe(picc, sizeof picc);
out:
    if (tags != NULL)
        freefare_free_tags(tags);
    nfc_close(dev);
}

/* ---- the blank card ---- */

static void io_blank(nfc_context *ctx, const struct io_args *a)
{
    nfc_device *dev = nfc_open(ctx, a->blank_reader);
    tap(dev != NULL, NULL, "blank card: open reader %s", a->blank_reader);
    if (dev == NULL)
        return;
    MifareTag tag = NULL;
    MifareTag *tags = io_list(dev, a->blank_uid, a->blank_uid_len, "blank card", &tag);
    if (tag == NULL)
        goto out;
    int rc = mifare_desfire_connect(tag);
    tap(rc == 0, tag, "mifare_desfire_connect (blank card)");
    if (rc < 0)
        goto out;

    uint8_t zero[16] = {0}, key1[16];
    for (int i = 0; i < 16; i++)
        key1[i] = (uint8_t)(0x11 * (i + 1));

    /* The factory PICC master key: all-zero DES, legacy authentication. */
    rc = io_select(tag, 0);
    MifareDESFireKey des0 = mifare_desfire_des_key_new(zero);
    if (rc == 0)
        rc = mifare_desfire_authenticate(tag, 0, des0);
    mifare_desfire_key_free(des0);
    tap(rc == 0, tag, "Authenticate (legacy DES) with the factory PICC key");

    MifareDESFireAID aid = mifare_desfire_aid_new(IO_BLANK_AID);
    rc = rc < 0 ? -1 : mifare_desfire_create_application_aes(tag, aid, PROF_APP_KEY_SETTINGS, 4);
    free(aid);
    tap(rc == 0, tag, "CreateApplication 0A0B0C (AES, 4 keys)");

    MifareDESFireAID *aids = NULL;
    size_t naids = 0;
    int found = 0;
    if (mifare_desfire_get_application_ids(tag, &aids, &naids) == 0) {
        for (size_t i = 0; i < naids; i++)
            if (mifare_desfire_aid_get_aid(aids[i]) == IO_BLANK_AID)
                found = 1;
        mifare_desfire_free_application_ids(aids);
    }
    tap(found && naids == 1, tag, "GetApplicationIDs lists the new application");

    tap(io_session(tag, IO_BLANK_AID, 0, zero) == 0, tag,
        "AuthenticateAES key 0 of the new application (all-zero AES key)");
    rc = mifare_desfire_create_value_file(tag, PROF_FILE_VALUE, MDCM_ENCIPHERED, PROF_VALUE_ACCESS,
                                          PROF_VALUE_LOWER, PROF_VALUE_UPPER, PROF_VALUE_INITIAL,
                                          PROF_LIMITED_CREDIT);
    tap(rc == 0, tag, "CreateValueFile 1 (enciphered, profile limits)");
    rc = mifare_desfire_create_cyclic_record_file(tag, PROF_FILE_RECORDS, MDCM_ENCIPHERED,
                                                  PROF_RECORD_ACCESS, PROF_RECORD_SIZE,
                                                  PROF_RECORD_COUNT);
    tap(rc == 0, tag, "CreateCyclicRecordFile 2 (32-byte records, 8 records)");
    rc = mifare_desfire_create_value_file(tag, IO_FILE_MACED_VALUE, MDCM_MACED,
                                          MDAR(MDAR_KEY1, MDAR_KEY1, MDAR_KEY1, MDAR_KEY0), 0, 1000,
                                          10, 0);
    tap(rc == 0, tag, "CreateValueFile 3 (MACed, initial value 10)");
    rc = mifare_desfire_create_value_file(tag, IO_FILE_MACED_VALUE, MDCM_MACED,
                                          MDAR(MDAR_KEY1, MDAR_KEY1, MDAR_KEY1, MDAR_KEY0), 0, 1000,
                                          10, 0);
    tap(io_expect_error(rc, tag, DUPLICATE_ERROR), tag, "CreateValueFile 3 again answers DE");

    uint8_t *files = NULL;
    size_t nfiles = 0;
    rc = io_session(tag, IO_BLANK_AID, 0, zero);
    if (rc == 0)
        rc = mifare_desfire_get_file_ids(tag, &files, &nfiles);
    tap(rc == 0 && nfiles == 3, tag, "GetFileIDs lists 3 files (got %zu)", nfiles);
    free(files);

    /* Key 1 gets its own value (other-key form under key 0). */
    rc = io_session(tag, IO_BLANK_AID, 0, zero);
    MifareDESFireKey nk = io_aes_key(key1, 0x05), old = io_aes_key(zero, 0);
    if (rc == 0)
        rc = mifare_desfire_change_key(tag, 1, nk, old);
    mifare_desfire_key_free(nk);
    mifare_desfire_key_free(old);
    tap(rc == 0, tag, "ChangeKey of key 1 of the new application");

    int32_t v = -1;
    rc = io_session(tag, IO_BLANK_AID, 1, key1);
    tap(rc == 0, tag, "AuthenticateAES key 1 with its new value");
    if (rc == 0)
        rc = mifare_desfire_get_value_ex(tag, IO_FILE_MACED_VALUE, &v, MDCM_MACED);
    tap(rc == 0 && v == 10, tag, "GetValue MACed = 10 (got %d)", v);
    rc = io_session(tag, IO_BLANK_AID, 1, key1);
    if (rc == 0)
        rc = mifare_desfire_credit_ex(tag, IO_FILE_MACED_VALUE, 5, MDCM_MACED);
    tap(rc == 0 && mifare_desfire_commit_transaction(tag) == 0, tag,
        "Credit 5 MACed + CommitTransaction");
    v = -1;
    rc = io_session(tag, IO_BLANK_AID, 1, key1);
    if (rc == 0)
        rc = mifare_desfire_get_value_ex(tag, IO_FILE_MACED_VALUE, &v, MDCM_MACED);
    tap(rc == 0 && v == 15, tag, "GetValue MACed after the Credit = 15 (got %d)", v);
    v = -1;
    rc = io_session(tag, IO_BLANK_AID, 1, key1);
    if (rc == 0)
        rc = mifare_desfire_get_value_ex(tag, PROF_FILE_VALUE, &v, MDCM_ENCIPHERED);
    tap(rc == 0 && v == PROF_VALUE_INITIAL, tag, "GetValue enciphered of the new file 1 = %d",
        PROF_VALUE_INITIAL);

    /* The new record file takes a record under key 2 (still all zero). */
    uint8_t rec[PROF_RECORD_SIZE], buf[PROF_RECORD_SIZE + 64];
    io_record(rec, 7, 42, 42);
    rc = io_session(tag, IO_BLANK_AID, 2, zero);
    ssize_t w = rc < 0 ? -1
                       : mifare_desfire_write_record_ex(tag, PROF_FILE_RECORDS, 0, PROF_RECORD_SIZE,
                                                        rec, MDCM_ENCIPHERED);
    tap(w == PROF_RECORD_SIZE && mifare_desfire_commit_transaction(tag) == 0, tag,
        "WriteRecord + CommitTransaction on the new cyclic record file");
    memset(buf, 0, sizeof buf);
    rc = io_session(tag, IO_BLANK_AID, 2, zero);
    ssize_t r =
        rc < 0 ? -1
               : mifare_desfire_read_records_ex(tag, PROF_FILE_RECORDS, 0, 1, buf, MDCM_ENCIPHERED);
    tap(r == PROF_RECORD_SIZE && memcmp(buf, rec, PROF_RECORD_SIZE) == 0, tag,
        "ReadRecords returns the record written");
    mifare_desfire_disconnect(tag);
    dfc_wipe(key1, sizeof key1);
out:
    if (tags != NULL)
        freefare_free_tags(tags);
    nfc_close(dev);
}

/* ---- command line ---- */

static int io_usage(const char *why)
{
    if (why != NULL)
        fprintf(stderr, "df_interop: %s\n", why);
    fprintf(stderr, "usage: df_interop [--reader CONNSTRING --uid HEX --master-keys K0,K1,K2,K3\n"
                    "                   [--system-id ASCII] [--balance N]]\n"
                    "                  [--blank-reader CONNSTRING --blank-uid HEX]\n"
                    "       df_interop --after-personalize --reader CONNSTRING --uid HEX\n"
                    "                  --master-keys K0,K1,K2,K3,K4 [--system-id ASCII] "
                    "[--balance N]\n");
    return 2;
}

/* K0,K1,K2,K3 or K0,...,K4 (the fifth is the PICC's); returns the count. */
static int io_parse_keys(const char *s, uint8_t keys[PROF_NUM_MASTERS][16])
{
    size_t len = strlen(s);
    int count = len == PROF_NUM_KEYS * 33 - 1      ? PROF_NUM_KEYS
                : len == PROF_NUM_MASTERS * 33 - 1 ? PROF_NUM_MASTERS
                                                   : 0;
    if (count == 0)
        return -1;
    for (int n = 0; n < count; n++) {
        const char *p = s + 33 * n;
        if (n < count - 1 && p[32] != ',')
            return -1;
        if (hex_decode(p, 32, keys[n], 16) != 16)
            return -1;
    }
    return count;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"reader", required_argument, NULL, 'r'},
        {"uid", required_argument, NULL, 'u'},
        {"master-keys", required_argument, NULL, 'k'},
        {"system-id", required_argument, NULL, 's'},
        {"balance", required_argument, NULL, 'n'},
        {"blank-reader", required_argument, NULL, 'R'},
        {"blank-uid", required_argument, NULL, 'U'},
        {"after-personalize", no_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    struct io_args a;
    int c;

    memset(&a, 0, sizeof a);
    a.system_id = PROF_SYSTEM_ID_DEFAULT;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            a.reader = optarg;
            break;
        case 'u':
            a.uid_len = hex_decode(optarg, strlen(optarg), a.uid, sizeof a.uid);
            if (a.uid_len != 7)
                return io_usage("--uid must be 7 bytes of hex");
            break;
        case 'k':
            a.have_masters = io_parse_keys(optarg, a.masters);
            if (a.have_masters < 0)
                return io_usage("--master-keys must be K0,K1,K2,K3[,K4] (32 hex each)");
            break;
        case 'P':
            a.after_personalize = 1;
            break;
        case 's':
            a.system_id = optarg;
            break;
        case 'n':
            a.balance = (int32_t)strtol(optarg, NULL, 10);
            break;
        case 'R':
            a.blank_reader = optarg;
            break;
        case 'U':
            a.blank_uid_len = hex_decode(optarg, strlen(optarg), a.blank_uid, sizeof a.blank_uid);
            if (a.blank_uid_len != 4 && a.blank_uid_len != 7)
                return io_usage("--blank-uid must be 4 or 7 bytes of hex");
            break;
        default:
            return io_usage(NULL);
        }
    }
    if (optind != argc)
        return io_usage("unexpected argument");
    if (a.reader == NULL && a.blank_reader == NULL)
        return io_usage("nothing to test: give --reader and/or --blank-reader");
    if (a.reader != NULL && (a.uid_len == 0 || !a.have_masters))
        return io_usage("--reader needs --uid and --master-keys");
    if (a.blank_reader != NULL && a.blank_uid_len == 0)
        return io_usage("--blank-reader needs --blank-uid");
    if (a.after_personalize && (a.reader == NULL || a.blank_reader != NULL))
        return io_usage("--after-personalize checks one card: --reader, no --blank-reader");
    if (a.after_personalize && a.have_masters != PROF_NUM_MASTERS)
        return io_usage("--after-personalize needs five master keys (the fifth: the PICC's)");

    nfc_context *ctx = NULL;
    nfc_init(&ctx);
    tap(ctx != NULL, NULL, "libnfc %s initialised", nfc_version());
    if (ctx != NULL) {
        if (a.after_personalize)
            io_after_personalize(ctx, &a);
        else if (a.reader != NULL)
            io_personalized(ctx, &a);
        if (a.blank_reader != NULL)
            io_blank(ctx, &a);
        nfc_exit(ctx);
    }
    dfc_wipe(a.masters, sizeof a.masters);
    printf("1..%d\n", tap_count);
    printf("# %d of %d checks passed\n", tap_count - tap_failed, tap_count);
    return tap_failed == 0 ? 0 : 1;
}
