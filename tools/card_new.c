/* card_new: `ota-card new` writes a simulated card file, either in factory
 * state (--blank) or personalized with the profile of card_profile.h from
 * the four application master keys.  The master keys never outlive the
 * call: they are wiped from memory and from the visible command line. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card_cmd.h"
#include "card_profile.h"
#include "desfire_crypto.h"
#include "hex.h"
#include "ota_err.h"
#include "sim_card.h"
#include "num.h"

#define NEW_KEY_HEX 32
/* AN10922 input: UID(7) || AID(3) || system id, at most 31 bytes. */
#define NEW_SYSTEM_ID_MAX (31 - PROF_UID_LEN - 3)

struct new_args {
    const char *card;
    uint8_t uid[10];
    int uid_len;
    int blank, profile;
    int have_keys;
    uint8_t keys[PROF_NUM_KEYS][16];
    const char *system_id;
    int have_balance;
    int32_t balance;
    enum sim_picc_key picc;
};

static int new_usage(const char *why)
{
    if (why != NULL)
        fprintf(stderr, "ota-card new: %s\n", why);
    fprintf(stderr, "usage: " CARD_USAGE_NEW);
    return CARD_EXIT_USAGE;
}

/* K0,K1,K2,K3: four AES keys of 32 hex characters each. */
static int new_parse_keys(char *s, uint8_t keys[PROF_NUM_KEYS][16])
{
    size_t len = strlen(s);
    const char *p = s;
    for (int n = 0; n < PROF_NUM_KEYS; n++) {
        const char *end = p + NEW_KEY_HEX;
        if ((size_t)(end - s) > len)
            return -1;
        if (n < PROF_NUM_KEYS - 1 ? *end != ',' : *end != '\0')
            return -1;
        if (hex_decode(p, NEW_KEY_HEX, keys[n], 16) != 16)
            return -1;
        p = end + 1;
    }
    return 0;
}

static int new_parse_balance(const char *s, int32_t *out)
{
    long long v;
    if (num_parse_ll(s, PROF_VALUE_LOWER, PROF_VALUE_UPPER, &v) != 0)
        return -1;
    *out = (int32_t)v;
    return 0;
}

static int new_check_system_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NEW_SYSTEM_ID_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7E)
            return -1;
    return 0;
}

static int new_parse(int argc, char **argv, struct new_args *a)
{
    static const struct option opts[] = {
        {"card", required_argument, NULL, 'c'},
        {"uid", required_argument, NULL, 'u'},
        {"blank", no_argument, NULL, 'b'},
        {"profile", no_argument, NULL, 'p'},
        {"master-keys", required_argument, NULL, 'k'},
        {"system-id", required_argument, NULL, 's'},
        {"balance", required_argument, NULL, 'n'},
        {"picc-key", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            a->card = optarg;
            break;
        case 'u': {
            size_t n = strlen(optarg);
            a->uid_len = hex_decode(optarg, n, a->uid, sizeof a->uid);
            if (a->uid_len != 4 && a->uid_len != 7)
                return new_usage("--uid must be 4 or 7 bytes of hex");
            break;
        }
        case 'b':
            a->blank = 1;
            break;
        case 'p':
            a->profile = 1;
            break;
        case 'k': {
            int bad = new_parse_keys(optarg, a->keys);
            /* Keep the keys out of /proc/PID/cmdline from here on. */
            memset(optarg, 'x', strlen(optarg));
            if (bad)
                return new_usage("--master-keys must be K0,K1,K2,K3, each 32 hex characters");
            a->have_keys = 1;
            break;
        }
        case 's':
            if (new_check_system_id(optarg) < 0)
                return new_usage("--system-id must be 1 to 21 printable ASCII characters");
            a->system_id = optarg;
            break;
        case 'n':
            if (new_parse_balance(optarg, &a->balance) < 0)
                return new_usage("--balance must be an integer from 0 to 1000000");
            a->have_balance = 1;
            break;
        case 'P':
            if (strcmp(optarg, "des0") == 0)
                a->picc = SIM_PICC_DES0;
            else if (strcmp(optarg, "aes0") == 0)
                a->picc = SIM_PICC_AES0;
            else
                return new_usage("--picc-key must be des0 or aes0");
            break;
        case 'h':
            fprintf(stdout, "usage: " CARD_USAGE_NEW);
            return -1;
        case ':':
            return new_usage("an option is missing its argument");
        default:
            return new_usage("unknown option");
        }
    }
    if (optind != argc)
        return new_usage("unexpected argument");
    if (a->card == NULL)
        return new_usage("--card is required");
    if (a->uid_len == 0)
        return new_usage("--uid is required");
    if (a->blank && (a->profile || a->have_keys))
        return new_usage("--blank excludes --profile and --master-keys");
    if (a->have_keys)
        a->profile = 1;
    if (a->profile && !a->have_keys)
        return new_usage("--profile needs --master-keys");
    if (!a->profile && (a->system_id != NULL || a->have_balance))
        return new_usage("--system-id and --balance apply only with --profile");
    if (a->profile && a->uid_len != PROF_UID_LEN)
        return new_usage("a personalized card needs a 7-byte UID");
    return 0;
}

int card_cmd_new(int argc, char **argv)
{
    struct new_args a;
    memset(&a, 0, sizeof a);
    a.picc = SIM_PICC_DES0;

    int rc = new_parse(argc, argv, &a);
    if (rc != 0) {
        dfc_wipe(a.keys, sizeof a.keys);
        return rc < 0 ? CARD_EXIT_OK : rc;
    }

    int status = CARD_EXIT_FAIL;
    struct sim_card *card = sim_card_new(a.uid, (size_t)a.uid_len, a.picc);
    if (card == NULL) {
        fprintf(stderr, "ota-card new: cannot create the card: %s\n", ota_strerror(OTA_ERR_NOMEM));
        goto out;
    }
    if (a.profile) {
        const char *sid = a.system_id != NULL ? a.system_id : PROF_SYSTEM_ID_DEFAULT;
        rc = sim_card_personalize(card, (const uint8_t(*)[16])a.keys, sid, a.balance);
        if (rc < 0) {
            fprintf(stderr, "ota-card new: personalization failed: %s\n", ota_strerror(rc));
            goto out;
        }
    }
    rc = sim_card_save(card, a.card);
    if (rc < 0) {
        fprintf(stderr, "ota-card new: cannot write %s: %s\n", a.card, ota_strerror(rc));
        goto out;
    }
    status = CARD_EXIT_OK;
out:
    dfc_wipe(a.keys, sizeof a.keys);
    if (card != NULL)
        sim_card_free(card);
    return status;
}
