/* ledger_sql: what the PostgreSQL ledger says and how it reads the
 * answers: for each ledger request (ledger.h), the statement (a call of the
 * worker's stored function for its type, schema/) and its text
 * parameters; for each result, the parser that turns it into the reply.
 * Pure: no connection and no I/O (libpq only to read a PGresult), so it
 * is unit-tested without PostgreSQL (tests/unit/test_ledger_sql.c makes
 * its results with PQmakeEmptyPGresult).  ledger_pg.c runs the statements.
 * Never logs (the parameters hold code hashes and lease holders). */
#ifndef LEDGER_SQL_H
#define LEDGER_SQL_H

#include <stdint.h>

#include <libpq-fe.h>

#include "ledger.h"

#define LEDGER_SQL_NPARAMS 10
#define LEDGER_SQL_PARAM_LEN 80 /* "\\x" + 64 hex digits of a code hash, with room */
/* The counting statement's columns, in order: in_doubt, in_doubt_old,
 * in_doubt_oldest_s, codes_reserved, cards_frozen. */
#define LEDGER_SQL_NCOUNTS 5

/* One statement with its parameters (values[i] points into buf or into
 * the request); wipe it once sent. */
struct ledger_sql_call {
    const char *sql;
    int nparams;
    char buf[LEDGER_SQL_NPARAMS][LEDGER_SQL_PARAM_LEN];
    const char *values[LEDGER_SQL_NPARAMS];
};

/* Fills c for req; OTA_ERR_INVAL for a request this code cannot express
 * (a bug in the engine: answered ERROR without touching the database). */
int ledger_sql_build(const struct ledger_req *req, struct ledger_sql_call *c);
/* Turns the statement's result (PGRES_TUPLES_OK) into the reply;
 * OTA_ERR_PARSE when the database answered something unexpected. */
int ledger_sql_parse(const struct ledger_req *req, const PGresult *res, struct ledger_reply *rep);

/* Statements are prepared by name on each connection (ledger_pg.c): the
 * index of sql (a ledger_sql_call's) among them, or -1; and its name. */
int ledger_sql_statement(const char *sql);
const char *ledger_sql_statement_name(int i);

/* The counting statement (ledger_pg_counts): entries in doubt for longer
 * than old_s count as old. */
void ledger_sql_build_counts(uint32_t old_s, struct ledger_sql_call *c);
/* Its answer: one row of LEDGER_SQL_NCOUNTS non-negative integers. */
int ledger_sql_parse_counts(const PGresult *res, uint64_t out[LEDGER_SQL_NCOUNTS]);

#endif
