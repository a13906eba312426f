/* ota_ctl: the `ota-ctl` administration tool.  Reads the shared
 * configuration (--config FILE, --key=value overrides), then hands the
 * command to its group (ctl_db.c, ctl_keys.c, ...).  This file only
 * dispatches; it never parses a subcommand's options itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_curve.h"
#include "ota_err.h"
#include "version.h"

static void ctl_usage(FILE *f)
{
    fputs("usage: ota-ctl [--config FILE] [--conninfo CONNINFO] [--key=value ...] COMMAND\n"
          "       ota-ctl --help | --version\n"
          "  (--conninfo: connect there instead of db.conninfo, and for the reports\n"
          "   instead of db.finance_conninfo)\n"
          "  db migrate [--schema-dir DIR]      apply schema/*.sql not yet applied\n"
          "  db status [--schema-dir DIR]       applied and pending migrations\n"
          "  keys gen-kek FILE [--force]        write a 32-byte key-encryption key (0600)\n"
          "  keys init [--kek-file F] [--force] generate and seal the master keys and code key\n"
          "  keys import --master-keys K0,K1,K2,K3[,KPICC]|- [--kek-file F] [--force]\n"
          "  keys show [--kek-file F]           fingerprints of the sealed keys\n"
          "  keys curve-gen FILE                CurveZMQ key pair (FILE 0600, FILE.pub)\n"
          "  codes issue --amount N --count M [--expires DAYS] [--batch NAME]\n"
          "  codes list [--state S] [--batch B] [--from T] [--to T] [--limit N] [--format F]\n"
          "  codes summary [--currency C] [--format F]   codes by state (count, value)\n"
          "  codes find CODE|- [--format F]     a typed code's state (read from stdin with -)\n"
          "  codes revoke CODE_ID...            an issued code can no longer be used\n"
          "  codes generate [--count N]         well-formed codes that are stored nowhere\n"
          "  ledger show [--card UID] [--state S] [--code ID|CODE] [--from T] [--to T]\n"
          "              [--limit N] [--format table|csv|json]\n"
          "  ledger daily [--from DAY] [--to DAY] [--state S] [--format F]\n"
          "  ledger in-doubt [--card UID] [--min-age SECONDS] [--format F]\n"
          "  ledger liability [--per-card] [--card UID] [--format F]\n"
          "  ledger reconcile [--severity violation|review] [--format F]\n"
          "  ledger resolve TXN --committed|--voided --reason TEXT\n"
          "  cards show UID | cards frozen | cards unfreeze UID --reason TEXT\n"
          "  operator token-hash                hash a token read on stdin\n"
          "  audit                              check the ledger's invariants (exit 1 on a "
          "violation)\n",
          f);
}

/* Takes --NAME VALUE / --NAME=VALUE (NAME is config or conninfo) out of
 * argv, anywhere before the command's own words, and returns the value
 * or NULL. */
static const char *take_opt(int *argc, char **argv, const char *name)
{
    const char *value = NULL;
    size_t n = strlen(name);
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) == 0 && strncmp(a + 2, name, n) == 0) {
            if (a[2 + n] == '\0' && i + 1 < *argc) {
                value = argv[++i];
                continue;
            }
            if (a[2 + n] == '=') {
                value = a + 3 + n;
                continue;
            }
        }
        argv[out++] = argv[i];
    }
    *argc = out;
    argv[out] = NULL;
    return value;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(struct ctl *, int, char **);
    } cmds[] = {
        {"db", ctl_cmd_db},         {"keys", ctl_cmd_keys},   {"codes", ctl_cmd_codes},
        {"ledger", ctl_cmd_ledger}, {"cards", ctl_cmd_cards}, {"operator", ctl_cmd_operator},
        {"audit", ctl_cmd_audit},
    };
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0 ||
            strcmp(argv[i], "help") == 0) {
            ctl_usage(stdout);
            return CTL_EXIT_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            fputs(OTA_VERSION_LINE("ota-ctl"), stdout);
            return CTL_EXIT_OK;
        }

    struct ctl c = {.cfg = cfg_new(), .argv0 = argv[0]};
    if (c.cfg == NULL) {
        fprintf(stderr, "ota-ctl: out of memory\n");
        return CTL_EXIT_FAIL;
    }
    char err[512];
    const char *path = take_opt(&argc, argv, "config");
    c.conninfo = take_opt(&argc, argv, "conninfo");
    if (path != NULL && cfg_load_file(c.cfg, path, err, sizeof err) != OTA_OK) {
        fprintf(stderr, "ota-ctl: %s\n", err);
        cfg_free(c.cfg);
        return CTL_EXIT_USAGE;
    }
    argc = cfg_apply_args(c.cfg, argc, argv, err, sizeof err);
    if (argc < 0) {
        fprintf(stderr, "ota-ctl: %s\n", err);
        cfg_free(c.cfg);
        return CTL_EXIT_USAGE;
    }
    if (argc < 2) {
        ctl_usage(stderr);
        cfg_free(c.cfg);
        return CTL_EXIT_USAGE;
    }
    int rc = -1;
    if (argc >= 3 && strcmp(argv[1], "keys") == 0 && strcmp(argv[2], "curve-gen") == 0)
        rc = ctl_curve_gen(argc - 3, argv + 3);
    else
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
            if (strcmp(argv[1], cmds[i].name) == 0)
                rc = cmds[i].fn(&c, argc - 2, argv + 2);
    if (rc == -1) {
        fprintf(stderr, "ota-ctl: unknown %s '%s'\n", argv[1][0] == '-' ? "option" : "command",
                argv[1]);
        ctl_usage(stderr);
        rc = CTL_EXIT_USAGE;
    }
    cfg_free(c.cfg);
    return rc;
}
