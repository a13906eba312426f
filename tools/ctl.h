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
    const char *argv0;    /* for locating the schema directory */
    const char *conninfo; /* --conninfo: every connection goes there (or NULL) */
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
/* The same for the finance reports (ledger, codes list and summary,
 * audit): db.finance_conninfo when set (a hot standby, so reports never
 * load the primary), else db.conninfo; --conninfo overrides both.  The
 * session is read-only. */
PGconn *ctl_connect_finance(const struct ctl *c);
/* Runs one statement with text parameters; prints `what` and the server's
 * message and returns NULL unless it succeeded. */
PGresult *ctl_exec(PGconn *db, const char *what, const char *sql, int n, const char *const *values);
/* Who runs ota-ctl, for the records of unfreezes and resolutions:
 * "ota-ctl:" and the sudo user if any, else the login. */
const char *ctl_actor(char *buf, size_t cap);
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
 * order are exactly the query's (stable for scripts).  CSV: RFC 4180
 * quoting, a NULL is an empty field; JSON: an array of objects, integers
 * and booleans typed, NULL as null, everything else a string. */
void ctl_print_result(const PGresult *res, enum ctl_format fmt);
/* Connects for finance (ctl_connect_finance), runs one read-only query
 * and prints it; a CTL_EXIT_ code. */
int ctl_report(const struct ctl *c, const char *what, const char *sql, int n,
               const char *const *values, enum ctl_format fmt);

/* SQL text of a timestamptz column as an ISO 8601 UTC string with
 * microseconds ("2025-06-01T12:00:00.000000Z"), the form every report and
 * export uses whatever the server's DateStyle. */
#define CTL_SQL_TS(col) "to_char(" col ", 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* The id of a code given as a person typed it (or "-": one line read from
 * stdin, which keeps it out of the process list), looked up by its HMAC
 * with the code key of the sealed key file; needs ota_admin's SELECT on
 * codes.  id gets the decimal id.  Prints why and returns -1 when the code
 * is malformed, the keys cannot be opened or no such code was issued;
 * never prints the code. */
int ctl_code_lookup(const struct ctl *c, PGconn *db, const char *typed, const char *kek_file,
                    char *id, size_t cap);
/* 1 when s is a code id (1 to 18 decimal digits), 0 when it must be a
 * typed code. */
int ctl_is_code_id(const char *s);

int ctl_cmd_db(struct ctl *c, int argc, char **argv);
int ctl_cmd_keys(struct ctl *c, int argc, char **argv);
int ctl_cmd_codes(struct ctl *c, int argc, char **argv);
int ctl_cmd_ledger(struct ctl *c, int argc, char **argv);
/* `ota-ctl ledger resolve` (tools/ctl_resolve.c). */
int ctl_ledger_resolve(const struct ctl *c, int argc, char **argv);
int ctl_cmd_cards(struct ctl *c, int argc, char **argv);
int ctl_cmd_operator(struct ctl *c, int argc, char **argv);
int ctl_cmd_audit(struct ctl *c, int argc, char **argv);

#endif
