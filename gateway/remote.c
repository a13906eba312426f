/* remote: remote workers (gateway.worker_listen) reach the ROUTER over
 * tcp:// with CurveZMQ.  The ZAP handler here (inproc://zeromq.zap.01,
 * served from the event loop) admits only public keys on the allow-list
 * and names each connection by its key (ZeroMQ's User-Id property), which
 * route.c reads.  Remote workers cannot be killed or restarted from here:
 * one that falls silent loses its sessions and its slot (supervise.c). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "config.h"
#include "curve_key.h"
#include "gw.h"
#include "log.h"
#include "ota_err.h"
#include "pool_int.h"

static void zap_reply(void *sock, zmq_msg_t *reqid, const char *code, const char *text,
                      const char *user)
{
    zmq_send(sock, "1.0", 3, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, zmq_msg_data(reqid), zmq_msg_size(reqid), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, code, strlen(code), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, text, strlen(text), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, user, strlen(user), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, "", 0, ZMQ_DONTWAIT);
}

/* One ZAP request (RFC 27): version, request id, domain, address,
 * identity, mechanism, credentials.  CURVE: the client's 32-byte public
 * key must be on the allow-list.  NULL: only the local ipc:// endpoint
 * runs without CurveZMQ (a tcp:// peer cannot, the endpoint is a CURVE
 * server), and ZeroMQ asks about NULL only when a domain is set there. */
static int zap_one(struct pool *p)
{
    enum { NPARTS = 7 };
    zmq_msg_t parts[NPARTS + 1];
    int n = 0, more = 0;
    do {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, p->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < NPARTS + 1)
            parts[n++] = m;
        else
            zmq_msg_close(&m);
    } while (more);
    if (n == 0)
        return 0;
    if (n < 6) {
        /* A REP socket must answer every request it read; without the
         * request id there is nothing to answer. */
        log_warn("zap_bad_request", "parts=%d", n);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
        return 1;
    }
    const char *mech = zmq_msg_data(&parts[5]);
    size_t mn = zmq_msg_size(&parts[5]);
    char addr[64];
    size_t an =
        zmq_msg_size(&parts[3]) < sizeof addr - 1 ? zmq_msg_size(&parts[3]) : sizeof addr - 1;
    memcpy(addr, zmq_msg_data(&parts[3]), an);
    addr[an] = '\0';
    for (size_t i = 0; i < an; i++)
        if (addr[i] < 0x21 || addr[i] > 0x7e)
            addr[i] = '?';
    char key[CURVE_Z85_LEN + 1] = "";
    int ok = 0;
    const char *why = "unknown mechanism";
    if (zmq_msg_size(&parts[0]) != 3 || memcmp(zmq_msg_data(&parts[0]), "1.0", 3) != 0) {
        why = "bad ZAP version";
    } else if (mn == 4 && memcmp(mech, "NULL", 4) == 0) {
        ok = 1;
    } else if (mn == 5 && memcmp(mech, "CURVE", 5) == 0 && n == 7 &&
               zmq_msg_size(&parts[6]) == 32) {
        if (!zmq_z85_encode(key, zmq_msg_data(&parts[6]), 32)) {
            why = "bad key";
        } else {
            why = "public key not on gateway.curve_allowed_keys";
            for (size_t i = 0; i < p->nallowed && !ok; i++)
                ok = strcmp(p->allowed[i], key) == 0;
        }
    }
    if (ok) {
        zap_reply(p->zap, &parts[1], "200", "OK", key);
        if (key[0])
            log_info("remote_worker_admitted", "addr=%s key=\"%s\"", addr, key);
    } else {
        zap_reply(p->zap, &parts[1], "400", why, "");
        /* A refused worker retries every few hundred ms: log the first
         * refusal and then every 100th. */
        if (p->remote_refused++ % 100 == 0)
            log_warn("remote_worker_refused",
                     "addr=%s key=\"%s\" why=\"%s\" refused_total=%" PRIu64, addr,
                     key[0] ? key : "-", why, p->remote_refused);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
    return 1;
}

static void on_zap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pool *p = arg;
    route_drain_socket(p, p->ev_zap, zap_one);
}

int pool_load_curve(struct pool *p)
{
    if (!p->nremote_max)
        return 0;
    const struct cfg *c = p->gw->cfg;
    const char *ep = cfg_str(c, "gateway.worker_listen");
    const char *secf = cfg_str(c, "gateway.curve_secret_file");
    const char *allowf = cfg_str(c, "gateway.curve_allowed_keys");
    char err[512];
    if (!*secf || !*allowf) {
        log_error("bad_config", "key=gateway.worker_listen detail=\"remote workers need "
                                "gateway.curve_secret_file and gateway.curve_allowed_keys\"");
        return OTA_ERR_INVAL;
    }
    if (strncmp(ep, "tcp://", 6) != 0) {
        log_error("bad_config", "key=gateway.worker_listen value=\"%s\" detail=\"tcp://HOST:PORT\"",
                  ep);
        return OTA_ERR_INVAL;
    }
    if (curve_allow_load(allowf, &p->allowed, &p->nallowed, err, sizeof err) != 0) {
        log_error("bad_config", "key=gateway.curve_allowed_keys detail=\"%s\"", err);
        return OTA_ERR_INVAL;
    }
    if (curve_key_load(secf, &p->kp, err, sizeof err) != 0) {
        log_error("bad_config", "key=gateway.curve_secret_file detail=\"%s\"", err);
        return OTA_ERR_INVAL;
    }
    return 0;
}

/* Binds gateway.worker_listen as a CurveZMQ server.  The ZAP handler is
 * bound first: a CURVE server without one admits every client. */
int remote_start(struct pool *p)
{
    const char *ep = cfg_str(p->gw->cfg, "gateway.worker_listen");
    int one = 1, zero = 0, fd;
    size_t fdsz = sizeof fd;
    p->zap = zmq_socket(p->zctx, ZMQ_REP);
    int rc = !p->zap || zmq_setsockopt(p->zap, ZMQ_LINGER, &zero, sizeof zero) ||
             zmq_bind(p->zap, ZAP_ENDPOINT) || zmq_getsockopt(p->zap, ZMQ_FD, &fd, &fdsz) ||
             zmq_setsockopt(p->zsock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
             zmq_setsockopt(p->zsock, ZMQ_CURVE_SECRETKEY, p->kp.sec, CURVE_Z85_LEN) ||
             zmq_setsockopt(p->zsock, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN));
    curve_keypair_wipe(&p->kp);
    if (!rc) {
        p->ev_zap = event_new(p->gw->base, fd, EV_READ | EV_PERSIST, on_zap, p);
        rc = !p->ev_zap || event_add(p->ev_zap, NULL);
    }
    if (!rc)
        rc = zmq_bind(p->zsock, ep);
    if (rc) {
        log_error("zmq_failed", "endpoint=\"%s\" err=\"%s\"", ep, zmq_strerror(zmq_errno()));
        return OTA_ERR_IO;
    }
    log_info("listening", "listener=workers addr=\"%s\" curve=1 allowed_keys=%zu", ep, p->nallowed);
    return 0;
}
