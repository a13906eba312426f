# build fragment, included by Makefile.am: the ota-ctl administration tool
# and the schema migrations it applies (installed with it).
bin_PROGRAMS += tools/ota-ctl
tools_ota_ctl_SOURCES = tools/ota_ctl.c tools/ctl.h tools/ctl_common.c tools/ctl_db.c \
	tools/ctl_keys.c tools/ctl_codes.c tools/ctl_ledger.c tools/ctl_cards.c \
	tools/ctl_operator.c tools/ctl_audit.c tools/ctl_resolve.c
tools_ota_ctl_CFLAGS = $(AM_CFLAGS) $(SODIUM_CFLAGS) $(PQ_CFLAGS) $(JANSSON_CFLAGS)
tools_ota_ctl_CPPFLAGS = $(AM_CPPFLAGS) -DOTA_SCHEMA_DIR='"$(schemadir)"'
tools_ota_ctl_LDADD = $(CARD_LIBS) $(PQ_LIBS) $(JANSSON_LIBS)

schemadir = $(pkgdatadir)/schema
dist_schema_DATA = schema/001_base.sql schema/002_finance.sql schema/090_worker_ledger.sql \
	schema/092_worker_integrity_flag.sql schema/093_worker_reserve_valid_first.sql \
	schema/094_ledger_resolve.sql schema/095_ledger_floor.sql schema/096_worker_begin.sql
dist_schema_DATA += schema/097_ledger_hot_path.sql schema/098_card_history_bounded.sql
