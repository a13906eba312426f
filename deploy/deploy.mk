# build fragment, included by Makefile.am: what `make install` puts beside
# the programs: the configuration example under $(sysconfdir)/ota, the
# systemd units (their paths rewritten to this prefix), the documentation,
# and the monitoring and load-balancer examples.
otaconfdir = $(sysconfdir)/ota
dist_otaconf_DATA = deploy/ota.conf.example

dist_doc_DATA = README.md OPERATIONS.md FINANCE.md
examplesdir = $(docdir)/examples
dist_examples_DATA = deploy/prometheus/prometheus.yml deploy/prometheus/alerts.yml \
	deploy/prometheus/alerts_test.yml deploy/grafana/ota-dashboard.json \
	deploy/haproxy/haproxy.cfg.in deploy/haproxy/render.sh

# The units in deploy/systemd name /usr/local (the default prefix); the
# installed copies name $(bindir) and $(docdir) instead.
OTA_UNITS = ota-gateway.service ota-worker@.service
EXTRA_DIST += deploy/systemd/ota-gateway.service deploy/systemd/ota-worker@.service \
	deploy/setup.sh deploy/quickstart debian
install-data-local: install-units
uninstall-local: uninstall-units
install-units:
	$(MKDIR_P) '$(DESTDIR)$(systemdsystemunitdir)'
	for u in $(OTA_UNITS); do \
		sed -e 's#/usr/local/bin/#$(bindir)/#g' \
			-e 's#/usr/local/share/doc/ota-topup/#$(docdir)/#g' \
			'$(srcdir)/deploy/systemd/'"$$u" >'$(DESTDIR)$(systemdsystemunitdir)/'"$$u.tmp" && \
		chmod 644 '$(DESTDIR)$(systemdsystemunitdir)/'"$$u.tmp" && \
		mv '$(DESTDIR)$(systemdsystemunitdir)/'"$$u.tmp" \
			'$(DESTDIR)$(systemdsystemunitdir)/'"$$u" || exit 1; \
	done
uninstall-units:
	for u in $(OTA_UNITS); do rm -f '$(DESTDIR)$(systemdsystemunitdir)/'"$$u"; done
.PHONY: install-units uninstall-units
