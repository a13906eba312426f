/* ctl: what the `ota-ctl` command groups share (one file per group:
 * ctl_db.c, ctl_keys.c, ctl_codes.c, ctl_ledger.c, ctl_cards.c,
 * ctl_operator.c, ctl_audit.c; helpers in ctl_common.c).
 *
 * ota-ctl is an administrator's tool: synchronous libpq is fine here.  It
 * must never print a key, a KEK, a passphrase or an operator token, and
 * prints a top-up code only once, on stdout, when `codes issue` made it. */
#ifndef OTA_CTL_H
#define OTA_CTL_H

#include <libpq-fe.h>
#include <stddef.h>

#include "config.h"
#include "keyfile.h"

#define CTL_EXIT_OK 0
#define CTL_EXIT_FAIL 1 /* an error, or audit found a violation */
#define CTL_EXIT_USAGE 2

struct ctl {
    struct cfg *cfg;
    const char *argv0; /* for locating the schema directory */
};

/* One option of a subcommand: --name=value, --name value, or a bare flag
 * (takes_value 0).  After ctl_parse_opts, value/seen are filled in. */
struct ctl_opt {
    const char *name;
    int takes_value;
    const char *value;
    int seen;
};

/* Parses argv[0..argc) (the words after the subcommand) into opts and
 * positional arguments.  Prints a message naming `what` and returns -1 on
 * an unknown option, a missing value or too many positionals. */
int ctl_parse_opts(const char *what, int argc, char **argv, struct ctl_opt *opts, size_t nopts,
                   const char **pos, size_t maxpos, size_t *npos);
/* The value of option `name`, or NULL. */
const char *ctl_opt(const struct ctl_opt *opts, size_t nopts, const char *name);
int ctl_flag(const struct ctl_opt *opts, size_t nopts, const char *name);
/* Parses a decimal integer in [min, max]; prints an error naming `what`. */
int ctl_parse_ll(const char *what, const char *s, long long min, long long max, long long *out);

/* Connects with db.conninfo (a relative socket directory in host= is taken
 * relative to the working directory), sets the session time zone to UTC.
 * Prints why on failure and returns NULL. */
PGconn *ctl_connect(const struct ctl *c);
/* Runs one statement with text parameters; prints `what` and the server's
 * message and returns NULL unless it succeeded. */
PGresult *ctl_exec(PGconn *db, const char *what, const char *sql, int n, const char *const *values);
/* The bytea text form (\x...) of a hex UID given by a person (4, 7 or 10
 * bytes, case-insensitive).  out holds at least 24 bytes. */
int ctl_uid_param(const char *hex, char *out, size_t cap);

/* Opens worker.keyfile with the KEK of the configuration (worker.kek_file,
 * or the passphrase from the environment variable named by
 * worker.kek_passphrase_env); kek_file overrides the configuration when
 * not NULL.  Prints why on failure. */
int ctl_open_keys(const struct ctl *c, const char *kek_file, struct master_keys *k);
/* The KEK kind and source ctl_open_keys would use (source points into the
 * configuration, kek_file or the environment). */
int ctl_kek_source(const struct ctl *c, const char *kek_file, enum keyfile_kek *kind,
                   const char **source);

enum ctl_format { CTL_FMT_TABLE, CTL_FMT_CSV, CTL_FMT_JSON };
int ctl_parse_format(const char *s, enum ctl_format *out);
/* Prints every row of res in the format; CSV and JSON column names and
 * order are exactly the query's (stable for scripts). */
void ctl_print_result(const PGresult *res, enum ctl_format fmt);

int ctl_cmd_db(struct ctl *c, int argc, char **argv);
int ctl_cmd_keys(struct ctl *c, int argc, char **argv);
int ctl_cmd_codes(struct ctl *c, int argc, char **argv);
int ctl_cmd_ledger(struct ctl *c, int argc, char **argv);
int ctl_cmd_cards(struct ctl *c, int argc, char **argv);
int ctl_cmd_operator(struct ctl *c, int argc, char **argv);
int ctl_cmd_audit(struct ctl *c, int argc, char **argv);

#endif
