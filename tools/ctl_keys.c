/* ctl_keys: `ota-ctl keys gen-kek|init|import|show`: the sealed key file
 * (worker.keyfile) of the five AES master keys and the code HMAC key.
 *
 * Must never print or log a key, a KEK or a passphrase (only keyed
 * fingerprints), never overwrite a key file without --force, and never
 * silently replace the code HMAC key of an existing file (that would turn
 * every issued code invalid): import keeps it. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "card_profile.h"
#include "ctl.h"
#include "hex.h"
#include "ota_err.h"

static const char *const KEY_NAMES[PROF_NUM_MASTERS] = {"app key 0 (master)", "app key 1 (read)",
                                                        "app key 2 (credit)", "app key 3 (debit)",
                                                        "PICC master key"};

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void print_fingerprints(const struct master_keys *k)
{
    char fp[17];
    for (int i = 0; i < PROF_NUM_MASTERS; i++) {
        keyfile_fingerprint(k->app[i], sizeof k->app[i], fp);
        printf("%-20s %s\n", KEY_NAMES[i], fp);
    }
    keyfile_fingerprint(k->code_hmac, sizeof k->code_hmac, fp);
    printf("%-20s %s\n", "code HMAC key", fp);
}

static int keys_gen_kek(int argc, char **argv)
{
    struct ctl_opt o[] = {{"force", 0, NULL, 0}};
    const char *pos[1];
    size_t npos;
    if (ctl_parse_opts("keys gen-kek", argc, argv, o, 1, pos, 1, &npos) != 0 || npos != 1) {
        fprintf(stderr, "usage: ota-ctl keys gen-kek FILE [--force]\n");
        return CTL_EXIT_USAGE;
    }
    const char *path = pos[0];
    int flags =
        O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (ctl_flag(o, 1, "force") ? O_TRUNC : O_EXCL);
    int fd = open(path, flags, 0600);
    if (fd < 0) {
        fprintf(stderr, "ota-ctl: cannot create %s: %s%s\n", path, strerror(errno),
                errno == EEXIST ? " (use --force to replace it)" : "");
        return CTL_EXIT_FAIL;
    }
    uint8_t *kek = sodium_malloc(32);
    int ok = kek != NULL && fchmod(fd, 0600) == 0;
    if (ok) {
        randombytes_buf(kek, 32);
        ok = write(fd, kek, 32) == 32 && fsync(fd) == 0;
    }
    if (close(fd) != 0)
        ok = 0;
    if (kek != NULL)
        sodium_free(kek);
    if (!ok) {
        fprintf(stderr, "ota-ctl: writing %s failed: %s\n", path, strerror(errno));
        unlink(path);
        return CTL_EXIT_FAIL;
    }
    fprintf(stderr, "ota-ctl: wrote a 32-byte key-encryption key to %s (mode 0600)\n", path);
    return CTL_EXIT_OK;
}

static int seal(const struct ctl *c, const char *kek_file, const struct master_keys *k)
{
    enum keyfile_kek kind;
    const char *source;
    if (ctl_kek_source(c, kek_file, &kind, &source) != 0)
        return CTL_EXIT_FAIL;
    const char *path = cfg_str(c->cfg, "worker.keyfile");
    int rc = keyfile_seal(path, k, kind, source);
    if (rc != OTA_OK) {
        fprintf(stderr, "ota-ctl: sealing %s failed: %s%s\n", path, ota_strerror(rc),
                rc == OTA_ERR_INVAL && kind == KEYFILE_KEK_FILE ? " (is the KEK file 32 bytes?)"
                                                                : "");
        return CTL_EXIT_FAIL;
    }
    printf("sealed %s with a %s\n", path, kind == KEYFILE_KEK_FILE ? "KEK file" : "passphrase");
    print_fingerprints(k);
    return CTL_EXIT_OK;
}

static int keys_init(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"kek-file", 1, NULL, 0}, {"force", 0, NULL, 0}};
    const char *pos[1];
    size_t npos;
    if (ctl_parse_opts("keys init", argc, argv, o, 2, pos, 0, &npos) != 0)
        return CTL_EXIT_USAGE;
    const char *path = cfg_str(c->cfg, "worker.keyfile");
    if (file_exists(path) && !ctl_flag(o, 2, "force")) {
        fprintf(stderr,
                "ota-ctl: %s exists; --force replaces every key in it (cards "
                "personalized with the old keys and issued codes stop working)\n",
                path);
        return CTL_EXIT_FAIL;
    }
    struct master_keys *k = keyfile_alloc();
    if (k == NULL) {
        fprintf(stderr, "ota-ctl: out of locked memory\n");
        return CTL_EXIT_FAIL;
    }
    randombytes_buf(k->app, sizeof k->app);
    randombytes_buf(k->code_hmac, sizeof k->code_hmac);
    int rc = seal(c, ctl_opt(o, 2, "kek-file"), k);
    keyfile_free(k);
    return rc;
}

/* Reads the K0,...[,KPICC] list from the argument, or from stdin when the
 * argument is "-" (keeps keys out of the process list and shell history). */
static int parse_master_keys(const char *arg, struct master_keys *k, int *have_picc)
{
    char *line = sodium_malloc(512);
    if (line == NULL)
        return -1;
    int rc = 0;
    if (strcmp(arg, "-") == 0) {
        if (fgets(line, 512, stdin) == NULL) {
            fprintf(stderr, "ota-ctl: no master keys on stdin\n");
            rc = -1;
        }
        line[strcspn(line, "\r\n")] = '\0';
    } else if (strlen(arg) >= 512) {
        rc = -1;
    } else {
        snprintf(line, 512, "%s", arg);
    }
    int n = 0;
    for (char *p = line; rc == 0 && *p != '\0' && n <= PROF_NUM_MASTERS;) {
        size_t len = strcspn(p, ",");
        if (n == PROF_NUM_MASTERS ||
            hex_decode(p, len, k->app[n], sizeof k->app[n]) != (int)sizeof k->app[n]) {
            rc = -1;
            break;
        }
        n++;
        p += len;
        if (*p == ',')
            p++;
    }
    if (rc == 0 && n < PROF_NUM_KEYS)
        rc = -1;
    if (rc != 0)
        fprintf(stderr,
                "ota-ctl: --master-keys needs 4 or 5 AES keys of 32 hex digits each, "
                "separated by commas (%d valid before the first problem)\n",
                n);
    *have_picc = n == PROF_NUM_MASTERS;
    sodium_free(line);
    return rc;
}

static int keys_import(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {
        {"master-keys", 1, NULL, 0}, {"kek-file", 1, NULL, 0}, {"force", 0, NULL, 0}};
    const char *pos[1];
    size_t npos;
    if (ctl_parse_opts("keys import", argc, argv, o, 3, pos, 0, &npos) != 0 ||
        ctl_opt(o, 3, "master-keys") == NULL) {
        fprintf(stderr, "usage: ota-ctl keys import --master-keys K0,K1,K2,K3[,KPICC]|- "
                        "[--kek-file F] [--force]\n");
        return CTL_EXIT_USAGE;
    }
    const char *path = cfg_str(c->cfg, "worker.keyfile");
    const char *kek_file = ctl_opt(o, 3, "kek-file");
    int exists = file_exists(path);
    if (exists && !ctl_flag(o, 3, "force")) {
        fprintf(stderr,
                "ota-ctl: %s exists; --force replaces its master keys (the code "
                "HMAC key is kept)\n",
                path);
        return CTL_EXIT_FAIL;
    }
    struct master_keys *k = keyfile_alloc();
    if (k == NULL) {
        fprintf(stderr, "ota-ctl: out of locked memory\n");
        return CTL_EXIT_FAIL;
    }
    int rc = CTL_EXIT_OK;
    /* Keep the code key of the existing file: issued codes stay valid. */
    if (exists && ctl_open_keys(c, kek_file, k) != 0) {
        fprintf(stderr, "ota-ctl: cannot keep the code HMAC key of %s; not replacing it\n", path);
        rc = CTL_EXIT_FAIL;
    } else if (!exists) {
        randombytes_buf(k->code_hmac, sizeof k->code_hmac);
    }
    int have_picc = 0;
    if (rc == CTL_EXIT_OK && parse_master_keys(ctl_opt(o, 3, "master-keys"), k, &have_picc) != 0)
        rc = CTL_EXIT_USAGE;
    if (rc == CTL_EXIT_OK && !have_picc && exists) {
        fprintf(stderr, "ota-ctl: no PICC master key given: kept the one in %s\n", path);
    } else if (rc == CTL_EXIT_OK && !have_picc) {
        randombytes_buf(k->app[PROF_MASTER_PICC], sizeof k->app[PROF_MASTER_PICC]);
        fprintf(stderr, "ota-ctl: no PICC master key given: generated one\n");
    }
    if (rc == CTL_EXIT_OK)
        rc = seal(c, kek_file, k);
    keyfile_free(k);
    return rc;
}

static int keys_show(const struct ctl *c, int argc, char **argv)
{
    struct ctl_opt o[] = {{"kek-file", 1, NULL, 0}};
    const char *pos[1];
    size_t npos;
    if (ctl_parse_opts("keys show", argc, argv, o, 1, pos, 0, &npos) != 0)
        return CTL_EXIT_USAGE;
    struct master_keys *k = keyfile_alloc();
    if (k == NULL) {
        fprintf(stderr, "ota-ctl: out of locked memory\n");
        return CTL_EXIT_FAIL;
    }
    int rc = ctl_open_keys(c, ctl_opt(o, 1, "kek-file"), k) == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    if (rc == CTL_EXIT_OK) {
        printf("key file %s\n", cfg_str(c->cfg, "worker.keyfile"));
        print_fingerprints(k);
    }
    keyfile_free(k);
    return rc;
}

int ctl_cmd_keys(struct ctl *c, int argc, char **argv)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "ota-ctl: libsodium failed to initialize\n");
        return CTL_EXIT_FAIL;
    }
    if (argc >= 1 && strcmp(argv[0], "gen-kek") == 0)
        return keys_gen_kek(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "init") == 0)
        return keys_init(c, argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "import") == 0)
        return keys_import(c, argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "show") == 0)
        return keys_show(c, argc - 1, argv + 1);
    fprintf(stderr, "usage: ota-ctl keys gen-kek|init|import|show ...\n");
    return CTL_EXIT_USAGE;
}
