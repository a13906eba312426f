/* hx_ledger_pg: lets the engine harness (tests/unit/test_engine_harness.h)
 * run against the real PostgreSQL ledger (worker/ledger_pg.c) instead of
 * the in-memory one.  For test programs only. */
#ifndef HX_LEDGER_PG_H
#define HX_LEDGER_PG_H

/* Connects (a ledger_pg pool and an inspection connection) and makes it the
 * ledger of every struct hx initialised afterwards.  0, or -1 with a
 * message on stderr.  Check must run with CK_FORK=no or fork after this
 * (the pool is the process's own). */
int hx_ledger_pg_setup(const char *conninfo);
void hx_ledger_pg_teardown(void);

#endif
