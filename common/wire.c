/* wire: encoders and decoders of the gateway <-> worker frames; see wire.h.
 * Every length and enum is checked here so neither side has to trust the
 * other's framing. */
#include "wire.h"

#include <string.h>

#include <sodium.h>

#include "buf.h"
#include "ota_err.h"

_Static_assert(WIRE_SEAL_PK_LEN == crypto_box_PUBLICKEYBYTES, "seal public key size");
_Static_assert(WIRE_SEAL_SK_LEN == crypto_box_SECRETKEYBYTES, "seal secret key size");
_Static_assert(WIRE_SEAL_OVERHEAD == crypto_box_SEALBYTES, "sealed box overhead");

static int type_known(uint8_t t)
{
    switch (t) {
    case WIRE_READY:
    case WIRE_HEARTBEAT:
    case WIRE_STATS:
    case WIRE_OPEN:
    case WIRE_CARD_RESPONSE:
    case WIRE_CLIENT_ERROR:
    case WIRE_CLIENT_GONE:
    case WIRE_COMMAND:
    case WIRE_MODAL:
    case WIRE_RESULT:
    case WIRE_PHASE:
    case WIRE_CARD_RESPONSES:
    case WIRE_COMMANDS:
        return 1;
    }
    return 0;
}

/* Writes the header with a zero length, then patches it in finish(). */
static void begin(struct wbuf *w, uint8_t *out, size_t cap, uint8_t type, uint64_t session)
{
    wbuf_init(w, out, cap);
    wbuf_u8(w, WIRE_VERSION);
    wbuf_u8(w, type);
    wbuf_u16(w, 0);
    wbuf_u32(w, 0);
    wbuf_u64(w, session);
}

static int finish(struct wbuf *w)
{
    if (w->err)
        return w->err;
    size_t payload = w->len - WIRE_HDR_LEN;
    if (payload > WIRE_MAX_PAYLOAD)
        return OTA_ERR_LENGTH;
    w->p[4] = (uint8_t)(payload >> 24);
    w->p[5] = (uint8_t)(payload >> 16);
    w->p[6] = (uint8_t)(payload >> 8);
    w->p[7] = (uint8_t)payload;
    return (int)w->len;
}

int wire_encode_ready(uint8_t *out, size_t cap, const struct wire_ready *m)
{
    struct wbuf w;
    begin(&w, out, cap, WIRE_READY, 0);
    wbuf_u32(&w, m->pid);
    wbuf_u32(&w, m->capacity);
    wbuf_bytes(&w, m->seal_pk, WIRE_SEAL_PK_LEN);
    return finish(&w);
}

int wire_encode_heartbeat(uint8_t *out, size_t cap, const struct wire_heartbeat *m)
{
    struct wbuf w;
    begin(&w, out, cap, WIRE_HEARTBEAT, 0);
    wbuf_u32(&w, m->sessions);
    wbuf_u8(&w, m->db_ok ? 1 : 0);
    wbuf_u8(&w, m->draining ? 1 : 0);
    wbuf_u64(&w, m->gateway);
    return finish(&w);
}

const uint32_t wire_stats_db_bounds_us[WIRE_STATS_DB_BUCKETS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000};

int wire_encode_stats(uint8_t *out, size_t cap, const struct wire_stats *m)
{
    struct wbuf w;
    begin(&w, out, cap, WIRE_STATS, 0);
    wbuf_u8(&w, WIRE_STATS_DB_BUCKETS);
    wbuf_u8(&w, WIRE_SIGN_COUNT);
    wbuf_u64(&w, m->db_count);
    wbuf_u64(&w, m->db_sum_us);
    for (size_t i = 0; i < WIRE_STATS_DB_BUCKETS; i++)
        wbuf_u64(&w, m->db_buckets[i]);
    wbuf_u64(&w, m->db_errors);
    wbuf_u64(&w, m->integrity_failures);
    wbuf_u64(&w, m->freezes);
    for (size_t i = 0; i < WIRE_SIGN_COUNT; i++)
        wbuf_u64(&w, m->signs[i]);
    wbuf_u8(&w, m->counts_ok ? 1 : 0);
    if (m->counts_ok) {
        wbuf_u32(&w, m->counts_age_ms);
        wbuf_u64(&w, m->in_doubt);
        wbuf_u64(&w, m->in_doubt_old);
        wbuf_u64(&w, m->in_doubt_oldest_s);
        wbuf_u64(&w, m->codes_reserved);
        wbuf_u64(&w, m->cards_frozen);
    }
    return finish(&w);
}

int wire_encode_open(uint8_t *out, size_t cap, uint64_t session, const struct wire_open *m,
                     const uint8_t seal_pk[WIRE_SEAL_PK_LEN])
{
    if (m->uid_len > WIRE_MAX_UID || m->authcode_len > WIRE_MAX_AUTHCODE ||
        m->peer_len > WIRE_MAX_PEER || m->batch > WIRE_MAX_BATCH)
        return OTA_ERR_LENGTH;
    uint8_t sealed[WIRE_MAX_AUTHCODE + WIRE_SEAL_OVERHEAD];
    size_t sealed_len = 0;
    if (m->authcode_len) {
        if (crypto_box_seal(sealed, (const uint8_t *)m->authcode, m->authcode_len, seal_pk) != 0)
            return OTA_ERR_INVAL;
        sealed_len = m->authcode_len + (size_t)WIRE_SEAL_OVERHEAD;
    }
    struct wbuf w;
    begin(&w, out, cap, WIRE_OPEN, session);
    wbuf_u8(&w, m->op);
    wbuf_u8(&w, m->listener);
    wbuf_u8(&w, m->uid_len);
    wbuf_bytes(&w, m->uid, m->uid_len);
    wbuf_u16(&w, (uint16_t)sealed_len);
    wbuf_bytes(&w, sealed, sealed_len);
    wbuf_u8(&w, m->peer_len);
    wbuf_bytes(&w, m->peer, m->peer_len);
    wbuf_u8(&w, m->batch ? m->batch : 1);
    return finish(&w);
}

int wire_encode_bytes(uint8_t *out, size_t cap, enum wire_type type, uint64_t session,
                      const uint8_t *data, size_t len)
{
    if (type != WIRE_CARD_RESPONSE && type != WIRE_COMMAND && type != WIRE_MODAL)
        return OTA_ERR_INVAL;
    if (len > WIRE_MAX_APDU || (type == WIRE_MODAL && len > WIRE_MAX_TEXT))
        return OTA_ERR_LENGTH;
    struct wbuf w;
    begin(&w, out, cap, (uint8_t)type, session);
    wbuf_u16(&w, (uint16_t)len);
    wbuf_bytes(&w, data, len);
    return finish(&w);
}

static int apdus_valid(enum wire_type type, const struct wire_apdus *m)
{
    if (type == WIRE_COMMANDS)
        return m->n >= 1 && m->n <= WIRE_MAX_BATCH && m->err == 0;
    if (type == WIRE_CARD_RESPONSES)
        return m->n <= WIRE_MAX_BATCH && m->err <= WIRE_CERR_TIMEOUT && (m->n > 0 || m->err != 0);
    return 0;
}

int wire_encode_apdus(uint8_t *out, size_t cap, enum wire_type type, uint64_t session,
                      const struct wire_apdus *m)
{
    if (!apdus_valid(type, m))
        return OTA_ERR_INVAL;
    struct wbuf w;
    begin(&w, out, cap, (uint8_t)type, session);
    wbuf_u8(&w, m->n);
    wbuf_u8(&w, m->err);
    for (size_t i = 0; i < m->n; i++) {
        if (m->a[i].len > WIRE_MAX_APDU)
            return OTA_ERR_LENGTH;
        wbuf_u16(&w, m->a[i].len);
        wbuf_bytes(&w, m->a[i].data, m->a[i].len);
    }
    return finish(&w);
}

int wire_encode_client_error(uint8_t *out, size_t cap, uint64_t session,
                             const struct wire_client_error *m)
{
    struct wbuf w;
    begin(&w, out, cap, WIRE_CLIENT_ERROR, session);
    wbuf_u8(&w, m->kind);
    return finish(&w);
}

int wire_encode_empty(uint8_t *out, size_t cap, enum wire_type type, uint64_t session)
{
    if (type != WIRE_CLIENT_GONE)
        return OTA_ERR_INVAL;
    struct wbuf w;
    begin(&w, out, cap, (uint8_t)type, session);
    return finish(&w);
}

int wire_encode_phase(uint8_t *out, size_t cap, uint64_t session, const struct wire_phase *m)
{
    struct wbuf w;
    begin(&w, out, cap, WIRE_PHASE, session);
    wbuf_u8(&w, m->at_risk ? 1 : 0);
    return finish(&w);
}

int wire_encode_result(uint8_t *out, size_t cap, uint64_t session, const struct wire_result *m)
{
    struct wbuf w;
    begin(&w, out, cap, WIRE_RESULT, session);
    wbuf_u8(&w, m->op);
    wbuf_u8(&w, m->status);
    wbuf_u8(&w, m->error);
    wbuf_u8(&w, m->has);
    wbuf_u64(&w, (uint64_t)m->balance);
    wbuf_u64(&w, (uint64_t)m->amount);
    wbuf_bytes(&w, m->txn, sizeof m->txn);
    return finish(&w);
}

int wire_decode_hdr(const uint8_t *frame, size_t len, struct wire_hdr *h)
{
    struct rbuf r;
    rbuf_init(&r, frame, len);
    h->version = rbuf_u8(&r);
    h->type = rbuf_u8(&r);
    h->flags = rbuf_u16(&r);
    h->len = rbuf_u32(&r);
    h->session = rbuf_u64(&r);
    if (r.err || h->version != WIRE_VERSION || h->flags != 0 || !type_known(h->type) ||
        h->len > WIRE_MAX_PAYLOAD || h->len != len - WIRE_HDR_LEN)
        return OTA_ERR_PARSE;
    return 0;
}

/* Checks the decoded header is of the expected type and positions r at
 * the payload it bounds. */
static int payload(const struct wire_hdr *h, const uint8_t *frame, uint8_t type, struct rbuf *r)
{
    if (h->type != type)
        return OTA_ERR_PARSE;
    rbuf_init(r, frame + WIRE_HDR_LEN, h->len);
    return 0;
}

static int done(const struct rbuf *r)
{
    return rbuf_end(r) ? OTA_ERR_PARSE : 0;
}

int wire_decode_ready(const struct wire_hdr *h, const uint8_t *frame, struct wire_ready *m)
{
    struct rbuf r;
    if (payload(h, frame, WIRE_READY, &r))
        return OTA_ERR_PARSE;
    m->pid = rbuf_u32(&r);
    m->capacity = rbuf_u32(&r);
    rbuf_bytes(&r, m->seal_pk, sizeof m->seal_pk, WIRE_SEAL_PK_LEN);
    return done(&r);
}

int wire_decode_heartbeat(const struct wire_hdr *h, const uint8_t *frame, struct wire_heartbeat *m)
{
    struct rbuf r;
    if (payload(h, frame, WIRE_HEARTBEAT, &r))
        return OTA_ERR_PARSE;
    m->sessions = rbuf_u32(&r);
    m->db_ok = rbuf_u8(&r);
    m->draining = rbuf_u8(&r);
    m->gateway = rbuf_u64(&r);
    if (m->db_ok > 1 || m->draining > 1)
        return OTA_ERR_PARSE;
    return done(&r);
}

int wire_decode_stats(const struct wire_hdr *h, const uint8_t *frame, struct wire_stats *m)
{
    struct rbuf r;
    if (payload(h, frame, WIRE_STATS, &r))
        return OTA_ERR_PARSE;
    memset(m, 0, sizeof *m);
    /* Both sides must agree on the layout: no guessing at other sizes. */
    if (rbuf_u8(&r) != WIRE_STATS_DB_BUCKETS || rbuf_u8(&r) != WIRE_SIGN_COUNT)
        return OTA_ERR_PARSE;
    m->db_count = rbuf_u64(&r);
    m->db_sum_us = rbuf_u64(&r);
    uint64_t in_buckets = 0;
    for (size_t i = 0; i < WIRE_STATS_DB_BUCKETS; i++) {
        m->db_buckets[i] = rbuf_u64(&r);
        if (m->db_buckets[i] > m->db_count - in_buckets)
            return OTA_ERR_PARSE;
        in_buckets += m->db_buckets[i];
    }
    m->db_errors = rbuf_u64(&r);
    m->integrity_failures = rbuf_u64(&r);
    m->freezes = rbuf_u64(&r);
    for (size_t i = 0; i < WIRE_SIGN_COUNT; i++)
        m->signs[i] = rbuf_u64(&r);
    m->counts_ok = rbuf_u8(&r);
    if (m->counts_ok > 1 || m->db_errors > m->db_count)
        return OTA_ERR_PARSE;
    if (m->counts_ok) {
        m->counts_age_ms = rbuf_u32(&r);
        m->in_doubt = rbuf_u64(&r);
        m->in_doubt_old = rbuf_u64(&r);
        m->in_doubt_oldest_s = rbuf_u64(&r);
        m->codes_reserved = rbuf_u64(&r);
        m->cards_frozen = rbuf_u64(&r);
        if (m->in_doubt_old > m->in_doubt)
            return OTA_ERR_PARSE;
    }
    if (r.err)
        return OTA_ERR_PARSE;
    return done(&r);
}

/* The sealed authCode (0 bytes: none) into m->authcode. */
static int open_authcode(struct rbuf *r, struct wire_open *m, const struct wire_seal_key *k)
{
    uint8_t sealed[WIRE_MAX_AUTHCODE + WIRE_SEAL_OVERHEAD];
    size_t n = rbuf_u16(r);
    if (n == 0)
        return 0;
    if (n <= WIRE_SEAL_OVERHEAD || n > sizeof sealed)
        return OTA_ERR_PARSE;
    rbuf_bytes(r, sealed, sizeof sealed, n);
    if (r->err || crypto_box_seal_open((uint8_t *)m->authcode, sealed, n, k->pk, k->sk) != 0)
        return OTA_ERR_PARSE;
    m->authcode_len = (uint16_t)(n - WIRE_SEAL_OVERHEAD);
    return 0;
}

int wire_decode_open(const struct wire_hdr *h, const uint8_t *frame, struct wire_open *m,
                     const struct wire_seal_key *k)
{
    struct rbuf r;
    if (payload(h, frame, WIRE_OPEN, &r))
        return OTA_ERR_PARSE;
    memset(m, 0, sizeof *m);
    m->op = rbuf_u8(&r);
    m->listener = rbuf_u8(&r);
    m->uid_len = rbuf_u8(&r);
    rbuf_bytes(&r, m->uid, sizeof m->uid, m->uid_len);
    if (open_authcode(&r, m, k) != 0)
        return OTA_ERR_PARSE;
    m->peer_len = rbuf_u8(&r);
    rbuf_bytes(&r, m->peer, WIRE_MAX_PEER, m->peer_len);
    m->batch = rbuf_left(&r) > 0 ? rbuf_u8(&r) : 1;
    if (m->batch < 1 || m->batch > WIRE_MAX_BATCH)
        return OTA_ERR_PARSE;
    if (m->op < WIRE_OP_CHECK || m->op > WIRE_OP_PERSONALIZE || m->listener > 1 ||
        (m->uid_len != 4 && m->uid_len != 7) || memchr(m->authcode, 0, m->authcode_len) ||
        memchr(m->peer, 0, m->peer_len))
        return OTA_ERR_PARSE;
    return done(&r);
}

int wire_decode_bytes(const struct wire_hdr *h, const uint8_t *frame, struct wire_bytes *m)
{
    if (h->type != WIRE_CARD_RESPONSE && h->type != WIRE_COMMAND && h->type != WIRE_MODAL)
        return OTA_ERR_PARSE;
    struct rbuf r;
    rbuf_init(&r, frame + WIRE_HDR_LEN, h->len);
    m->len = rbuf_u16(&r);
    size_t max = h->type == WIRE_MODAL ? WIRE_MAX_TEXT : WIRE_MAX_APDU;
    if (m->len > max)
        return OTA_ERR_PARSE;
    rbuf_bytes(&r, m->data, sizeof m->data, m->len);
    return done(&r);
}

int wire_decode_apdus(const struct wire_hdr *h, const uint8_t *frame, struct wire_apdus *m)
{
    if (h->type != WIRE_COMMANDS && h->type != WIRE_CARD_RESPONSES)
        return OTA_ERR_PARSE;
    struct rbuf r;
    rbuf_init(&r, frame + WIRE_HDR_LEN, h->len);
    m->n = rbuf_u8(&r);
    m->err = rbuf_u8(&r);
    if (!apdus_valid((enum wire_type)h->type, m))
        return OTA_ERR_PARSE;
    for (size_t i = 0; i < m->n; i++) {
        m->a[i].len = rbuf_u16(&r);
        if (m->a[i].len > WIRE_MAX_APDU)
            return OTA_ERR_PARSE;
        rbuf_bytes(&r, m->a[i].data, sizeof m->a[i].data, m->a[i].len);
    }
    return done(&r);
}

int wire_decode_client_error(const struct wire_hdr *h, const uint8_t *frame,
                             struct wire_client_error *m)
{
    struct rbuf r;
    if (payload(h, frame, WIRE_CLIENT_ERROR, &r))
        return OTA_ERR_PARSE;
    m->kind = rbuf_u8(&r);
    if (m->kind < WIRE_CERR_LOST_TAG || m->kind > WIRE_CERR_TIMEOUT)
        return OTA_ERR_PARSE;
    return done(&r);
}

int wire_decode_phase(const struct wire_hdr *h, const uint8_t *frame, struct wire_phase *m)
{
    struct rbuf r;
    if (payload(h, frame, WIRE_PHASE, &r))
        return OTA_ERR_PARSE;
    m->at_risk = rbuf_u8(&r);
    if (m->at_risk > 1)
        return OTA_ERR_PARSE;
    return done(&r);
}

int wire_decode_result(const struct wire_hdr *h, const uint8_t *frame, struct wire_result *m)
{
    struct rbuf r;
    if (payload(h, frame, WIRE_RESULT, &r))
        return OTA_ERR_PARSE;
    m->op = rbuf_u8(&r);
    m->status = rbuf_u8(&r);
    m->error = rbuf_u8(&r);
    m->has = rbuf_u8(&r);
    m->balance = (int64_t)rbuf_u64(&r);
    m->amount = (int64_t)rbuf_u64(&r);
    rbuf_bytes(&r, m->txn, sizeof m->txn, sizeof m->txn);
    if (m->op < WIRE_OP_CHECK || m->op > WIRE_OP_PERSONALIZE || m->status > WIRE_ST_PENDING ||
        m->error >= WIRE_E_COUNT || (m->has & ~7u) ||
        (m->status == WIRE_ST_OK) != (m->error == WIRE_E_NONE))
        return OTA_ERR_PARSE;
    return done(&r);
}

static const char *const error_names[WIRE_E_COUNT] = {
    [WIRE_E_NONE] = "",
    [WIRE_E_BAD_REQUEST] = "bad-request",
    [WIRE_E_UNSUPPORTED_CARD] = "unsupported-card",
    [WIRE_E_AUTH_FAILED] = "auth-failed",
    [WIRE_E_CARD_ERROR] = "card-error",
    [WIRE_E_INTEGRITY] = "integrity",
    [WIRE_E_CODE_INVALID] = "code-invalid",
    [WIRE_E_CODE_USED] = "code-used",
    [WIRE_E_LIMIT_EXCEEDED] = "limit-exceeded",
    [WIRE_E_CARD_BUSY] = "card-busy",
    [WIRE_E_TIMEOUT] = "timeout",
    [WIRE_E_LOST_TAG] = "lost-tag",
    [WIRE_E_OVERLOADED] = "overloaded",
    [WIRE_E_INTERNAL] = "internal",
};

const char *wire_error_name(uint8_t error)
{
    return error < WIRE_E_COUNT ? error_names[error] : "internal";
}

const char *wire_status_name(uint8_t status)
{
    switch (status) {
    case WIRE_ST_OK:
        return "ok";
    case WIRE_ST_FAILED:
        return "failed";
    case WIRE_ST_PENDING:
        return "pending";
    }
    return "failed";
}

const char *wire_op_name(uint8_t op)
{
    switch (op) {
    case WIRE_OP_CHECK:
        return "check";
    case WIRE_OP_TOPUP:
        return "topup";
    case WIRE_OP_PERSONALIZE:
        return "personalize";
    }
    return "unknown";
}

uint8_t wire_op_parse(const char *name)
{
    for (uint8_t op = WIRE_OP_CHECK; op <= WIRE_OP_PERSONALIZE; op++)
        if (strcmp(name, wire_op_name(op)) == 0)
            return op;
    return 0;
}
