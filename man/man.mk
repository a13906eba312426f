# build fragment, included by Makefile.am: the manual pages.  ota.conf(5)
# is generated from its prose (man/ota.conf.5.in) and the keys of
# deploy/ota.conf.example, so it lists exactly the keys the example does.
dist_man_MANS = man/ota-card.1 man/ota-load.1 man/ota-gateway.8 man/ota-worker.8 \
	man/ota-ctl.8
nodist_man_MANS = man/ota.conf.5
EXTRA_DIST += man/conf2man.sh man/ota.conf.5.in
CLEANFILES += man/ota.conf.5

man/ota.conf.5: $(srcdir)/man/conf2man.sh $(srcdir)/man/ota.conf.5.in \
		$(srcdir)/deploy/ota.conf.example
	$(AM_V_GEN)$(MKDIR_P) man && \
	$(SHELL) $(srcdir)/man/conf2man.sh $(srcdir)/man/ota.conf.5.in \
		$(srcdir)/deploy/ota.conf.example >$@.tmp && mv $@.tmp $@
