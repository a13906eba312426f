# build fragment, included by Makefile.am (owner adds lines here)
# Sources and libraries of `ota-card run` (tools/card_run.c, client side):
# the run command, result texts, the WebSocket client (own RFC 6455
# framing in ws_proto, poll()-driven I/O with optional TLS in ws_client)
# and, where libpcsclite is found, the PC/SC reader.
# tools_ota_card_CFLAGS (tools/card.mk) must include $(CARDRUN_CFLAGS).
CARDRUN_SRC = tools/card_run.c tools/card_run.h tools/card_run_args.c tools/card_run_args.h \
	tools/card_result.c tools/card_result.h \
	tools/ws_proto_msg.c tools/ws_proto_msg.h \
	tools/ws_client.c tools/ws_client.h tools/ws_proto.c tools/ws_proto.h \
	tools/ws_url.c tools/ws_url.h
CARDRUN_LINK = $(SSL_LIBS) $(CRYPTO_LIBS) $(JANSSON_LIBS)
CARDRUN_CFLAGS = $(SSL_CFLAGS) $(JANSSON_CFLAGS)
if HAVE_PCSC
CARDRUN_SRC += tools/pcsc_reader.c tools/pcsc_reader.h
CARDRUN_LINK += $(PCSC_LIBS)
CARDRUN_CFLAGS += $(PCSC_CFLAGS)
endif
