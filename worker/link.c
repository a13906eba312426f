/* link: the worker's ZeroMQ DEALER to its gateway; see link.h.
 *
 * ZMQ_FD is edge-triggered: every wake-up receives until a receive finds
 * nothing (at most ZMQ_BATCH messages, then the loop gets a turn), and
 * every send made outside that receiving loop re-arms the check because a
 * send can consume the edge.  A send made inside it needs nothing: the
 * loop's last receive comes after it. */
#include "link.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>
#include <zmq.h>

#include "config.h"
#include "curve_key.h"
#include "log.h"
#include "ota_err.h"

/* Frames handled per wake-up before timers and the database get a turn. */
#define ZMQ_BATCH 256

struct link {
    unsigned id; /* the worker's, for the log */
    const char *endpoint;
    link_frame_fn on_frame;
    void *arg;
    void *zctx, *zsock;
    struct event *ev_zmq;
    int receiving; /* inside on_zmq's loop: its last receive follows every send */
};

int link_send(struct link *l, const uint8_t *frame, size_t len)
{
    if (zmq_send(l->zsock, frame, len, ZMQ_DONTWAIT) < 0)
        return errno == EAGAIN ? OTA_ERR_LIMIT : OTA_ERR_IO;
    /* A send can consume the edge of ZMQ_FD that announced input: look
     * again from the loop so no received frame waits unseen.  Not from
     * inside the receiving loop, which receives until EAGAIN after this
     * send anyway (one wasted receive, a poll() and a getpid() in libzmq,
     * and one more callback per exchange otherwise). */
    if (l->ev_zmq && !l->receiving)
        event_active(l->ev_zmq, EV_READ, 0);
    return 0;
}

/* One received message: a single part (one frame), or an empty delimiter
 * and one part (a REQ-style envelope). Anything else is dropped.  Returns
 * 0 when there was none (EAGAIN). */
static int handle_message(struct link *l)
{
    zmq_msg_t parts[2];
    int n = 0, more = 0, bad = 0;
    do {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, l->zsock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 2) {
            parts[n++] = m;
        } else {
            bad = 1;
            sodium_memzero(zmq_msg_data(&m), zmq_msg_size(&m));
            zmq_msg_close(&m);
        }
    } while (more);
    if (n == 0)
        return 0;

    zmq_msg_t *frame = NULL;
    if (!bad && n == 1)
        frame = &parts[0];
    else if (!bad && n == 2 && zmq_msg_size(&parts[0]) == 0)
        frame = &parts[1];

    if (!frame)
        log_warn("bad_message", "worker=%u parts=%d", l->id, bad ? 3 : n);
    else
        l->on_frame(l->arg, zmq_msg_data(frame), zmq_msg_size(frame));
    /* An OPEN frame carries a code or an operator token. */
    for (int i = 0; i < n; i++) {
        sodium_memzero(zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i]));
        zmq_msg_close(&parts[i]);
    }
    return 1;
}

static void on_zmq(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct link *l = arg;
    /* ZMQ_FD is edge-triggered: receive until a receive finds nothing
     * (EAGAIN: libzmq then has taken in its pending commands, so the next
     * message raises the edge again).  Cheaper than asking ZMQ_EVENTS
     * before each message: one poll() and getpid() less per message. */
    l->receiving = 1;
    for (int i = 0; i < ZMQ_BATCH; i++)
        if (!handle_message(l)) {
            l->receiving = 0;
            return;
        }
    l->receiving = 0;
    /* More is waiting: let timers and the database run first. */
    event_active(l->ev_zmq, EV_READ, 0);
}

/* A remote worker (--connect tcp://...) talks CurveZMQ: its own key pair
 * from worker.curve_secret_file (readable by worker.user: it is read after
 * privileges are dropped) and the gateway's public key.  A tcp:// endpoint
 * without them is refused: the frames carry top-up codes. */
static int set_curve(struct link *l, const struct cfg *cfg)
{
    const char *secf = cfg_str(cfg, "worker.curve_secret_file");
    const char *server = cfg_str(cfg, "worker.gateway_public_key");
    int tcp = strncmp(l->endpoint, "tcp://", 6) == 0;
    if (!*secf && !*server && !tcp)
        return 0;
    if (!*secf || !curve_z85_valid(server, strlen(server))) {
        log_error("bad_config",
                  "worker=%u detail=\"a tcp:// gateway needs worker.curve_secret_file "
                  "and worker.gateway_public_key (40 Z85 characters)\"",
                  l->id);
        return -1;
    }
    struct curve_keypair kp;
    char err[512];
    if (curve_key_load(secf, &kp, err, sizeof err) != 0) {
        log_error("bad_config", "worker=%u key=worker.curve_secret_file detail=\"%s\"", l->id, err);
        return -1;
    }
    int rc = zmq_setsockopt(l->zsock, ZMQ_CURVE_SERVERKEY, server, CURVE_Z85_LEN) ||
             zmq_setsockopt(l->zsock, ZMQ_CURVE_PUBLICKEY, kp.pub, CURVE_Z85_LEN) ||
             zmq_setsockopt(l->zsock, ZMQ_CURVE_SECRETKEY, kp.sec, CURVE_Z85_LEN);
    log_info("curve", "worker=%u public_key=\"%s\"", l->id, kp.pub);
    curve_keypair_wipe(&kp);
    return rc ? -1 : 0;
}

struct link *link_new(struct event_base *base, const struct cfg *cfg, unsigned worker_id,
                      const char *endpoint, link_frame_fn on_frame, void *arg)
{
    int linger = 1000;
    int hwm = (int)(cfg_int(cfg, "worker.capacity") * 16 + 1024);
    int fd;
    size_t fdsz = sizeof fd;
    struct link *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->id = worker_id;
    l->endpoint = endpoint;
    l->on_frame = on_frame;
    l->arg = arg;
    l->zctx = zmq_ctx_new();
    if (!l->zctx)
        goto fail;
    l->zsock = zmq_socket(l->zctx, ZMQ_DEALER);
    if (!l->zsock)
        goto fail;
    if (zmq_setsockopt(l->zsock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(l->zsock, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(l->zsock, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 || set_curve(l, cfg) != 0 ||
        zmq_connect(l->zsock, l->endpoint) != 0 ||
        zmq_getsockopt(l->zsock, ZMQ_FD, &fd, &fdsz) != 0)
        goto fail;
    l->ev_zmq = event_new(base, fd, EV_READ | EV_PERSIST, on_zmq, l);
    if (!l->ev_zmq || event_add(l->ev_zmq, NULL) != 0)
        goto fail;
    return l;
fail:
    log_error("zmq_failed", "worker=%u endpoint=\"%s\" err=\"%s\"", l->id, l->endpoint,
              zmq_strerror(zmq_errno()));
    link_free(l);
    return NULL;
}

void link_free(struct link *l)
{
    if (!l)
        return;
    if (l->ev_zmq)
        event_free(l->ev_zmq);
    if (l->zsock)
        zmq_close(l->zsock);
    if (l->zctx)
        zmq_ctx_term(l->zctx);
    free(l);
}
