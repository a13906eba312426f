/* vicc: the simulated card as vsmartcard's virtual ICC (see vicc.h).
 * The reader-level pseudo-APDU FF CA (GET DATA: UID) is answered here, as a
 * PC/SC contactless reader's firmware would; everything else goes to the
 * simulator unchanged.  This file must never interpret DESFire commands
 * beyond knowing which ones leave committed state untouched (so it can skip
 * the save), and never answer before the card file is saved. */
#include "vicc.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "ota_err.h"
#include "sim_card.h"

/* vpcd frames carry a 16-bit length. */
#define VICC_MSG_MAX 0xFFFF
#define VICC_ANSWER_MAX 1024
#define VICC_POLL_MS 200
#define VICC_BACKOFF_MIN_MS 50
#define VICC_BACKOFF_MAX_MS 2000

enum vicc_conn_state {
    VICC_DISCONNECTED = 0,
    VICC_CONNECTED,
};

struct vicc_card {
    struct sim_card *card;
    char *path;
    /* INS of the command a 90 AF continuation belongs to. */
    uint8_t chain_ins;
    enum vicc_conn_state state;
    int fd;
    unsigned long apdus;
};

/* T0 = 0x81 (one historical byte), TD1 = 0x80, TD2 = 0x01 (T=1), the
 * DESFire EV1 historical byte 0x80, TCK = XOR of T0..last = 0x80. */
static const uint8_t vicc_atr_bytes[] = {0x3B, 0x81, 0x80, 0x01, 0x80, 0x80};

const uint8_t *vicc_atr(size_t *len)
{
    *len = sizeof vicc_atr_bytes;
    return vicc_atr_bytes;
}

struct vicc_card *vicc_card_open(const char *path)
{
    struct vicc_card *vc = calloc(1, sizeof *vc);
    if (vc == NULL)
        return NULL;
    vc->fd = -1;
    vc->path = strdup(path);
    vc->card = sim_card_load(path);
    if (vc->path == NULL || vc->card == NULL) {
        log_error("card_load_failed", "path=%s", path);
        vicc_card_close(vc);
        return NULL;
    }
    return vc;
}

void vicc_card_close(struct vicc_card *vc)
{
    if (vc == NULL)
        return;
    if (vc->fd >= 0)
        close(vc->fd);
    if (vc->card != NULL)
        sim_card_free(vc->card);
    free(vc->path);
    free(vc);
}

/* Native commands that never change committed state: reads, session
 * set-up, and the transactional writes that stay pending until
 * CommitTransaction (which does save).  Anything not listed saves, so a
 * command added to the simulator later errs on the side of persisting. */
static int vicc_ins_keeps_state(uint8_t ins)
{
    switch (ins) {
    case 0x60: /* GetVersion */
    case 0x0A: /* Authenticate (legacy) */
    case 0x1A: /* AuthenticateISO */
    case 0xAA: /* AuthenticateAES */
    case 0x5A: /* SelectApplication */
    case 0x6A: /* GetApplicationIDs */
    case 0x6D: /* GetDFNames */
    case 0x45: /* GetKeySettings */
    case 0x64: /* GetKeyVersion */
    case 0x51: /* GetCardUID */
    case 0x6F: /* GetFileIDs */
    case 0x61: /* GetISOFileIDs */
    case 0xF5: /* GetFileSettings */
    case 0xBD: /* ReadData */
    case 0xBB: /* ReadRecords */
    case 0x6C: /* GetValue */
    case 0x6E: /* FreeMemory */
    case 0x0C: /* Credit (pending) */
    case 0xDC: /* Debit (pending) */
    case 0x1C: /* LimitedCredit (pending) */
    case 0x3B: /* WriteRecord (pending) */
    case 0xA7: /* AbortTransaction */
        return 1;
    default:
        return 0;
    }
}

/* GET DATA (PC/SC part 3): P1 = 00 is the UID; other P1 values (ATS,
 * ATQA, SAK, historical bytes) are not reported by this reader. */
static void vicc_get_data(const struct vicc_card *vc, const uint8_t *apdu, size_t len, uint8_t *out,
                          size_t cap, size_t *out_len)
{
    size_t uid_len = 0;
    const uint8_t *uid = sim_card_uid(vc->card, &uid_len);

    if (len < 4 || apdu[2] != 0x00 || apdu[3] != 0x00 || uid == NULL || cap < uid_len + 2) {
        out[0] = 0x6A;
        out[1] = 0x81;
        *out_len = 2;
        return;
    }
    memcpy(out, uid, uid_len);
    out[uid_len] = 0x90;
    out[uid_len + 1] = 0x00;
    *out_len = uid_len + 2;
}

static int vicc_apdu(struct vicc_card *vc, const uint8_t *apdu, size_t len, uint8_t *out,
                     size_t cap, size_t *out_len)
{
    int persist = 1;

    vc->apdus++;
    if (len >= 2 && apdu[0] == 0xFF) {
        if (apdu[1] == 0xCA) {
            vicc_get_data(vc, apdu, len, out, cap, out_len);
        } else {
            /* Other reader-level (class FF) commands: class not supported. */
            out[0] = 0x6E;
            out[1] = 0x00;
            *out_len = 2;
        }
        return 0;
    }
    if (len >= 2 && apdu[0] == 0x90) {
        uint8_t ins = apdu[1];
        if (ins != 0xAF)
            vc->chain_ins = ins;
        persist = !vicc_ins_keeps_state(vc->chain_ins);
    }
    int rc = sim_card_transceive(vc->card, apdu, len, out, cap, out_len);
    if (rc < 0) {
        /* Our answer buffer was too small: a bug of ours, not the card's.
         * The reader gets "no precise diagnosis" and the card stays up. */
        log_error("transceive_failed", "err=\"%s\" len=%zu", ota_strerror(rc), len);
        out[0] = 0x6F;
        out[1] = 0x00;
        *out_len = 2;
        return 0;
    }
    if (persist) {
        rc = sim_card_save(vc->card, vc->path);
        if (rc < 0) {
            log_error("card_save_failed", "path=%s err=\"%s\"", vc->path, ota_strerror(rc));
            return rc;
        }
    }
    return 0;
}

int vicc_card_message(struct vicc_card *vc, const uint8_t *msg, size_t len, uint8_t *out,
                      size_t cap, size_t *out_len)
{
    *out_len = 0;
    if (len == 0)
        return 0;
    if (len > 1)
        return vicc_apdu(vc, msg, len, out, cap, out_len);

    switch (msg[0]) {
    case VICC_CTRL_OFF:
    case VICC_CTRL_RESET:
        /* Losing the field: only committed state survives. */
        sim_card_power_cycle(vc->card);
        vc->chain_ins = 0;
        return 0;
    case VICC_CTRL_ON:
        return 0;
    case VICC_CTRL_ATR: {
        size_t n;
        const uint8_t *atr = vicc_atr(&n);
        if (cap < n)
            return OTA_ERR_LENGTH;
        memcpy(out, atr, n);
        *out_len = n;
        return 0;
    }
    default:
        log_warn("unknown_control", "code=%u", (unsigned)msg[0]);
        return 0;
    }
}

static void vicc_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    /* An interrupting signal ends the wait early; the caller rechecks. */
    nanosleep(&ts, NULL);
}

static void vicc_quickack(int fd)
{
    int one = 1;
    /* Linux clears QUICKACK after use, so it is set again after each read;
     * without it every APDU waits for the delayed ACK (~40 ms). */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

static int vicc_connect(const char *host, const char *port)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        vicc_quickack(fd);
    }
    return fd;
}

/* Reads exactly n bytes.  Returns 1 when done, 0 on stop or end of
 * stream, -1 on a socket error. */
static int vicc_read_full(int fd, uint8_t *p, size_t n, const volatile sig_atomic_t *stop)
{
    size_t got = 0;
    while (got < n) {
        if (*stop)
            return 0;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, VICC_POLL_MS);
        if (pr < 0 && errno != EINTR)
            return -1;
        if (pr <= 0)
            continue;
        ssize_t r = recv(fd, p + got, n - got, 0);
        if (r == 0)
            return 0;
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -1;
        }
        got += (size_t)r;
        vicc_quickack(fd);
    }
    return 1;
}

static int vicc_write_full(int fd, const uint8_t *p, size_t n)
{
    size_t sent = 0;
    while (sent < n) {
        ssize_t r = send(fd, p + sent, n - sent, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        sent += (size_t)r;
    }
    return 0;
}

/* Serves one connection until it ends.  Returns 0 when vpcd went away (or
 * on stop), a negative ota_err when the card can no longer be served. */
static int vicc_session(struct vicc_card *vc, const volatile sig_atomic_t *stop)
{
    static uint8_t msg[VICC_MSG_MAX];
    uint8_t frame[2 + VICC_ANSWER_MAX];

    for (;;) {
        uint8_t hdr[2];
        int r = vicc_read_full(vc->fd, hdr, sizeof hdr, stop);
        if (r <= 0)
            return 0;
        size_t len = (size_t)hdr[0] << 8 | hdr[1];
        r = vicc_read_full(vc->fd, msg, len, stop);
        if (r <= 0)
            return 0;

        size_t out_len = 0;
        int rc = vicc_card_message(vc, msg, len, frame + 2, VICC_ANSWER_MAX, &out_len);
        if (rc < 0)
            return rc;
        if (out_len == 0)
            continue;
        frame[0] = (uint8_t)(out_len >> 8);
        frame[1] = (uint8_t)out_len;
        if (vicc_write_full(vc->fd, frame, out_len + 2) < 0)
            return 0;
    }
}

int vicc_serve(struct vicc_card *vc, const char *host, const char *port,
               const volatile sig_atomic_t *stop)
{
    unsigned backoff = VICC_BACKOFF_MIN_MS;
    int waiting_logged = 0;

    while (!*stop) {
        vc->fd = vicc_connect(host, port);
        if (vc->fd < 0) {
            if (!waiting_logged) {
                log_info("vpcd_wait", "host=%s port=%s", host, port);
                waiting_logged = 1;
            }
            vicc_sleep_ms(backoff);
            backoff = backoff * 2 > VICC_BACKOFF_MAX_MS ? VICC_BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        vc->state = VICC_CONNECTED;
        backoff = VICC_BACKOFF_MIN_MS;
        waiting_logged = 0;
        log_info("vpcd_connected", "host=%s port=%s", host, port);

        int rc = vicc_session(vc, stop);

        close(vc->fd);
        vc->fd = -1;
        vc->state = VICC_DISCONNECTED;
        /* Removed from the reader: the field is gone. */
        sim_card_power_cycle(vc->card);
        vc->chain_ins = 0;
        if (rc < 0)
            return rc;
        if (!*stop)
            log_info("vpcd_disconnected", "apdus=%lu", vc->apdus);
    }
    log_info("vicc_stopped", "apdus=%lu", vc->apdus);
    return 0;
}
