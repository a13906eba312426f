/* listen: client listeners and their TLS; see listen.h.  Refuses to serve
 * plain ws on a non-loopback address unless gateway.behind_tls_proxy is
 * set, and never serves the operator listener in clear off loopback. */
#include "listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config.h"
#include "conn.h"
#include "gw.h"
#include "log.h"
#include "wire.h"

struct listener {
    struct gw *g;
    const struct conn_io *io;
    void *io_arg;
    uint8_t kind;
    struct evconnlistener *l;
    SSL_CTX *tls;
};

static int parse_addr(const char *addr, struct sockaddr_storage *ss, int *len)
{
    *len = (int)sizeof *ss;
    memset(ss, 0, sizeof *ss);
    return evutil_parse_sockaddr_port(addr, (struct sockaddr *)ss, len);
}

int listen_is_loopback(const char *addr)
{
    struct sockaddr_storage ss;
    int len;
    if (parse_addr(addr, &ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        return IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
    }
    return 0;
}

static void tls_error(const char *what, const char *path)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof buf);
    log_error("tls_config_failed", "what=%s path=\"%s\" err=\"%s\"", what, path, buf);
}

static SSL_CTX *make_tls(const char *cert, const char *key, const char *client_ca)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_error("context", "");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* CLEANSE_PLAINTEXT: OpenSSL wipes its copy of what it decrypted (a
     * client's authCode among it) once handed over. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_CLEANSE_PLAINTEXT);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        tls_error("certificate", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        tls_error("private_key", key);
        goto fail;
    }
    if (client_ca) {
        if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
            tls_error("client_ca", client_ca);
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static void accept_cb(struct evconnlistener *el, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)el;
    struct listener *l = arg;
    struct gw *g = l->g;
    /* Past the limit the upgrade answers 503; far past it, the socket is
     * closed at once so that a flood cannot grow memory. */
    size_t hard = g->set.max_connections + g->set.max_connections / 8 + 64;
    if (g->nconns >= hard || g->draining) {
        g->met.rejected_total[g->draining ? MET_REJ_DRAINING : MET_REJ_LIMIT_TOTAL]++;
        evutil_closesocket(fd);
        return;
    }
    struct bufferevent *bev;
    if (l->tls) {
        SSL *ssl = SSL_new(l->tls);
        if (!ssl) {
            evutil_closesocket(fd);
            return;
        }
        bev = bufferevent_openssl_socket_new(g->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (bev)
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        bev = bufferevent_socket_new(g->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    conn_accept(g, bev, sa, salen, l->kind, l->io, l->io_arg);
}

struct listener *listener_new(struct gw *g, uint8_t kind, const struct conn_io *io, void *arg)
{
    int op = kind == WIRE_LISTENER_OPERATOR;
    const char *addr = cfg_str(g->cfg, op ? "gateway.operator_listen" : "gateway.listen");
    const char *cert = cfg_str(g->cfg, op ? "gateway.operator_tls_cert" : "gateway.tls_cert");
    const char *key = cfg_str(g->cfg, op ? "gateway.operator_tls_key" : "gateway.tls_key");
    const char *ca = cfg_str(g->cfg, "gateway.operator_client_ca");
    const char *name = op ? "operator" : "public";
    struct sockaddr_storage ss;
    int len;

    if (parse_addr(addr, &ss, &len) != 0) {
        log_error("bad_config", "listener=%s addr=\"%s\" detail=\"expected host:port\"", name,
                  addr);
        return NULL;
    }
    if (!*cert != !*key) {
        log_error("bad_config", "listener=%s detail=\"set both TLS certificate and key\"", name);
        return NULL;
    }
    int tls = *cert != '\0';
    int loop = listen_is_loopback(addr);
    if (!tls && !loop) {
        if (op) {
            log_error("refused_plain_listener",
                      "listener=operator addr=\"%s\" detail=\"plain ws only on loopback; set "
                      "gateway.operator_tls_cert/key and gateway.operator_client_ca\"",
                      addr);
            return NULL;
        }
        if (!cfg_bool(g->cfg, "gateway.behind_tls_proxy")) {
            log_error("refused_plain_listener",
                      "listener=public addr=\"%s\" detail=\"plain ws on a non-loopback address "
                      "needs gateway.behind_tls_proxy = true or TLS\"",
                      addr);
            return NULL;
        }
    }
    if (tls && op && !*ca) {
        log_error("bad_config", "listener=operator detail=\"TLS on the operator listener needs "
                                "gateway.operator_client_ca\"");
        return NULL;
    }
    struct listener *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->g = g;
    l->io = io;
    l->io_arg = arg;
    l->kind = kind;
    if (tls && !(l->tls = make_tls(cert, key, op ? ca : NULL))) {
        free(l);
        return NULL;
    }
    l->l = evconnlistener_new_bind(
        g->base, accept_cb, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        1024, (struct sockaddr *)&ss, len);
    if (!l->l) {
        log_error("bind_failed", "listener=%s addr=\"%s\" errno=%d", name, addr, errno);
        if (l->tls)
            SSL_CTX_free(l->tls);
        free(l);
        return NULL;
    }
    log_info("listening", "listener=%s addr=\"%s\" tls=%d", name, addr, tls);
    return l;
}

/* Closes the listening socket rather than only stop accepting: with the
 * socket open, the kernel would still complete new connections into the
 * backlog, and a load balancer that has not yet seen /readyz fail would
 * send sessions there that hang until the drain ends; a closed port
 * refuses them at once, and HAProxy retries them on another gateway
 * (retries + redispatch). */
void listener_disable(struct listener *l)
{
    if (l && l->l) {
        evconnlistener_free(l->l);
        l->l = NULL;
    }
}

void listener_free(struct listener *l)
{
    if (!l)
        return;
    if (l->l)
        evconnlistener_free(l->l);
    if (l->tls)
        SSL_CTX_free(l->tls);
    free(l);
}
