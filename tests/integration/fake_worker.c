/* fake_worker: a stand-in for ota-worker in the gateway's smoke test.  It
 * speaks common/wire.h over a ZeroMQ DEALER exactly like the real worker
 * but runs a scripted session instead of a card engine:
 *   check  -> modal, command 905a000003eeffc000, then on 9100 a GetValue
 *             command, then result ok with the balance from the answer;
 *   topup with authCode "die" -> phase at_risk, then the process exits;
 *   client error -> result failed lost-tag;
 *   a v2 client (batch >= 2) -> modal, then one `commands` batch of both
 *             commands; on `responses` with both answers result ok with
 *             the balance from the second, else failed lost-tag.
 * With FAKE_WORKER_PEERS=FILE in its environment it appends one line per
 * OPEN ("listener=N peer=ADDR"), so that tests see the client address the
 * gateway passed on (PROXY protocol).  As a remote worker it connects with
 * CurveZMQ: --curve-secret-file FILE (a key pair from ota-ctl keys
 * curve-gen) and --curve-server-key KEY (the gateway's public key).
 * It holds no card key and must never be installed. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <zmq.h>

#include "curve_key.h"
#include "wire.h"

static void *sock;

static void send_frame(const uint8_t *f, int n)
{
    if (n > 0)
        zmq_send(sock, f, (size_t)n, 0);
}

static void result(uint64_t id, uint8_t op, uint8_t status, uint8_t err, int64_t balance)
{
    uint8_t f[WIRE_MAX_FRAME];
    struct wire_result r;
    memset(&r, 0, sizeof r);
    r.op = op;
    r.status = status;
    r.error = err;
    if (status == WIRE_ST_OK) {
        r.has = WIRE_RES_HAS_BALANCE | WIRE_RES_HAS_TXN;
        r.balance = balance;
        for (int i = 0; i < 16; i++)
            r.txn[i] = (uint8_t)(0x10 + i);
    }
    send_frame(f, wire_encode_result(f, sizeof f, id, &r));
}

static void command(uint64_t id, const uint8_t *apdu, size_t n)
{
    uint8_t f[WIRE_MAX_FRAME];
    send_frame(f, wire_encode_bytes(f, sizeof f, WIRE_COMMAND, id, apdu, n));
}

int main(int argc, char **argv)
{
    const char *endpoint = NULL, *secret_file = NULL, *server_key = NULL;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--connect") == 0)
            endpoint = argv[i + 1];
        else if (strcmp(argv[i], "--curve-secret-file") == 0)
            secret_file = argv[i + 1];
        else if (strcmp(argv[i], "--curve-server-key") == 0)
            server_key = argv[i + 1];
    }
    const char *peers = getenv("FAKE_WORKER_PEERS");
    if (!endpoint) {
        fprintf(stderr, "fake_worker: --connect missing\n");
        return 2;
    }
    signal(SIGTERM, SIG_DFL);
    void *ctx = zmq_ctx_new();
    sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (secret_file && server_key) {
        struct curve_keypair kp;
        char err[256];
        if (curve_key_load(secret_file, &kp, err, sizeof err) != 0) {
            fprintf(stderr, "fake_worker: %s\n", err);
            return 2;
        }
        if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_key, strlen(server_key)) != 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, kp.pub, CURVE_Z85_LEN) != 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp.sec, CURVE_Z85_LEN) != 0) {
            fprintf(stderr, "fake_worker: bad CurveZMQ key\n");
            return 2;
        }
        curve_keypair_wipe(&kp);
    }
    if (zmq_connect(sock, endpoint) != 0) {
        fprintf(stderr, "fake_worker: connect failed\n");
        return 1;
    }
    uint8_t f[WIRE_MAX_FRAME];
    struct wire_ready rd = {.pid = (uint32_t)getpid(), .capacity = 100};
    static struct wire_seal_key seal; /* OPEN's authCode comes sealed to it */
    if (sodium_init() < 0 || crypto_box_keypair(seal.pk, seal.sk) != 0)
        return 1;
    memcpy(rd.seal_pk, seal.pk, sizeof rd.seal_pk);
    send_frame(f, wire_encode_ready(f, sizeof f, &rd));
    /* One scripted session at a time is enough for the smoke test; the
     * step is kept per session id in a tiny table. */
    struct {
        uint64_t id;
        int step;
        uint8_t op;
    } s[64];
    memset(s, 0, sizeof s);
    struct timespec last_hb;
    clock_gettime(CLOCK_MONOTONIC, &last_hb);
    for (;;) {
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&it, 1, 100);
        if (rc < 0)
            break;
        /* Every 300 ms whatever arrives (the gateway's own heartbeats
         * would otherwise keep the poll from ever timing out). */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - last_hb.tv_sec) * 1000 + (now.tv_nsec - last_hb.tv_nsec) / 1000000 >=
            300) {
            struct wire_heartbeat hb = {.sessions = 0, .db_ok = 1};
            send_frame(f, wire_encode_heartbeat(f, sizeof f, &hb));
            last_hb = now;
        }
        if (rc == 0 || !(it.revents & ZMQ_POLLIN))
            continue;
        int n = zmq_recv(sock, f, sizeof f, 0);
        if (n < 0)
            break;
        struct wire_hdr h;
        if (n > (int)sizeof f || wire_decode_hdr(f, (size_t)n, &h) != 0)
            continue;
        int k = (int)(h.session % 64);
        static const uint8_t sel[] = {0x90, 0x5a, 0, 0, 3, 0xee, 0xff, 0xc0, 0};
        static const uint8_t gv[] = {0x90, 0x6c, 0, 0, 1, 1, 0};
        if (h.type == WIRE_OPEN) {
            struct wire_open o;
            if (wire_decode_open(&h, f, &o, &seal) != 0)
                continue;
            s[k].id = h.session;
            s[k].step = 0;
            s[k].op = o.op;
            FILE *pf = peers ? fopen(peers, "a") : NULL;
            if (pf) {
                fprintf(pf, "listener=%u peer=%s\n", (unsigned)o.listener, o.peer);
                fclose(pf);
            }
            if (o.op == WIRE_OP_TOPUP && strcmp(o.authcode, "die") == 0) {
                struct wire_phase ph = {.at_risk = 1};
                send_frame(f, wire_encode_phase(f, sizeof f, h.session, &ph));
                usleep(200000);
                _exit(3);
            }
            const char *msg = "Hold the card still";
            send_frame(f, wire_encode_bytes(f, sizeof f, WIRE_MODAL, h.session,
                                            (const uint8_t *)msg, strlen(msg)));
            if (o.batch > 1) {
                struct wire_apdus b;
                memset(&b, 0, sizeof b);
                b.n = 2;
                b.a[0].len = sizeof sel;
                memcpy(b.a[0].data, sel, sizeof sel);
                b.a[1].len = sizeof gv;
                memcpy(b.a[1].data, gv, sizeof gv);
                send_frame(f, wire_encode_apdus(f, sizeof f, WIRE_COMMANDS, h.session, &b));
                continue;
            }
            command(h.session, sel, sizeof sel);
        } else if (h.type == WIRE_CARD_RESPONSE && s[k].id == h.session) {
            struct wire_bytes b;
            if (wire_decode_bytes(&h, f, &b) != 0)
                continue;
            if (s[k].step == 0) {
                s[k].step = 1;
                command(h.session, gv, sizeof gv);
            } else {
                int64_t bal = b.len >= 6 ? (int64_t)(b.data[0] | b.data[1] << 8 | b.data[2] << 16 |
                                                     (uint32_t)b.data[3] << 24)
                                         : 0;
                result(h.session, s[k].op, WIRE_ST_OK, WIRE_E_NONE, bal);
                s[k].id = 0;
            }
        } else if (h.type == WIRE_CARD_RESPONSES && s[k].id == h.session) {
            static struct wire_apdus b;
            if (wire_decode_apdus(&h, f, &b) != 0)
                continue;
            const struct wire_bytes *v = &b.a[1];
            if (b.n == 2 && b.err == 0 && v->len >= 6)
                result(h.session, s[k].op, WIRE_ST_OK, WIRE_E_NONE,
                       (int64_t)(v->data[0] | v->data[1] << 8 | v->data[2] << 16 |
                                 (uint32_t)v->data[3] << 24));
            else
                result(h.session, s[k].op, WIRE_ST_FAILED, WIRE_E_LOST_TAG, 0);
            s[k].id = 0;
        } else if (h.type == WIRE_CLIENT_ERROR && s[k].id == h.session) {
            result(h.session, s[k].op, WIRE_ST_FAILED, WIRE_E_LOST_TAG, 0);
            s[k].id = 0;
        } else if (h.type == WIRE_CLIENT_GONE) {
            if (s[k].id == h.session)
                s[k].id = 0;
        }
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return 0;
}
