# build fragment, included by Makefile.am (owner adds lines here)
# Sources and libraries of `ota-card run` (tools/card_run.c, client side).
CARDRUN_SRC =
CARDRUN_LINK =
