/* wire: the one frame format between ota-gateway and ota-worker.
 *
 * This is the security boundary (like OpenSSH's monitor): the gateway parses
 * everything from the network and sends only these small typed frames; the
 * worker trusts nothing in them beyond their types and bounds.  Every frame
 * is built and parsed here and nowhere else.
 *
 * Frame = header (16 bytes, big-endian) || payload:
 *   u8 version (WIRE_VERSION) | u8 type | u16 flags (0) |
 *   u32 payload length | u64 session id (0 for worker-level messages)
 * Over ZeroMQ, one frame is one message part (the ROUTER adds the identity).
 *
 * The client's authCode never crosses in clear: each worker process makes
 * a key pair at start and announces its public key in READY, and the
 * gateway seals the authCode to it (crypto_box_seal).  ZeroMQ copies every
 * frame into buffers of its own that nobody wipes (the I/O thread's
 * encoder buffer keeps the last frames sent to each worker), so the only
 * plaintext copies in the gateway are its own, which it wipes.
 * Version 2: READY carries the key, OPEN the sealed authCode. */
#ifndef WIRE_H
#define WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_VERSION 2
#define WIRE_HDR_LEN 16
/* A batch (WIRE_COMMANDS / WIRE_CARD_RESPONSES) of WIRE_MAX_BATCH APDUs of
 * WIRE_MAX_APDU bytes each must fit: 2 + 16 * (2 + 300) = 4834. */
#define WIRE_MAX_PAYLOAD 5120
#define WIRE_MAX_FRAME (WIRE_HDR_LEN + WIRE_MAX_PAYLOAD)
#define WIRE_MAX_APDU 300 /* a card APDU or answer (hex-decoded) */
#define WIRE_MAX_AUTHCODE 128
#define WIRE_MAX_TEXT 256 /* modal text, client error message */
#define WIRE_MAX_PEER 64  /* client address as text */
#define WIRE_MAX_UID 10
#define WIRE_MAX_BATCH 16     /* APDUs in one batch (PROTOCOL v2: "batch" 2-16) */
#define WIRE_SEAL_PK_LEN 32   /* crypto_box_PUBLICKEYBYTES */
#define WIRE_SEAL_SK_LEN 32   /* crypto_box_SECRETKEYBYTES */
#define WIRE_SEAL_OVERHEAD 48 /* crypto_box_SEALBYTES */

enum wire_type {
    /* worker -> gateway, worker level */
    WIRE_READY = 1,     /* worker started: wire_ready */
    WIRE_HEARTBEAT = 2, /* both ways: wire_heartbeat */
    WIRE_STATS = 3,     /* worker -> gateway, every few seconds: wire_stats */
    /* gateway -> worker, per session */
    WIRE_OPEN = 10,           /* wire_open: the client's operation message */
    WIRE_CARD_RESPONSE = 11,  /* wire_bytes: the card's answer to the last command */
    WIRE_CLIENT_ERROR = 12,   /* wire_client_error: client could not reach the card */
    WIRE_CLIENT_GONE = 13,    /* no payload: connection closed, timed out or drained */
    WIRE_CARD_RESPONSES = 14, /* wire_apdus: the answers to the last WIRE_COMMANDS, in order */
    /* worker -> gateway, per session */
    WIRE_COMMAND = 20,  /* wire_bytes: APDU for the card */
    WIRE_MODAL = 21,    /* wire_bytes: UTF-8 text for a person */
    WIRE_RESULT = 22,   /* wire_result: the outcome; the session is over */
    WIRE_PHASE = 23,    /* wire_phase: entered/left the money-at-risk phase */
    WIRE_COMMANDS = 24, /* wire_apdus: a batch of APDUs for the card (v2 sessions) */
};

enum wire_op { WIRE_OP_CHECK = 1, WIRE_OP_TOPUP = 2, WIRE_OP_PERSONALIZE = 3 };
enum wire_listener { WIRE_LISTENER_PUBLIC = 0, WIRE_LISTENER_OPERATOR = 1 };
enum wire_client_err { WIRE_CERR_LOST_TAG = 1, WIRE_CERR_IO = 2, WIRE_CERR_TIMEOUT = 3 };
enum wire_status { WIRE_ST_OK = 0, WIRE_ST_FAILED = 1, WIRE_ST_PENDING = 2 };

/* Result error codes of PROTOCOL.md section 4, in its order. */
enum wire_error {
    WIRE_E_NONE = 0,
    WIRE_E_BAD_REQUEST,
    WIRE_E_UNSUPPORTED_CARD,
    WIRE_E_AUTH_FAILED,
    WIRE_E_CARD_ERROR,
    WIRE_E_INTEGRITY,
    WIRE_E_CODE_INVALID,
    WIRE_E_CODE_USED,
    WIRE_E_LIMIT_EXCEEDED,
    WIRE_E_CARD_BUSY,
    WIRE_E_TIMEOUT,
    WIRE_E_LOST_TAG,
    WIRE_E_OVERLOADED,
    WIRE_E_INTERNAL,
    WIRE_E_COUNT
};

struct wire_hdr {
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint32_t len;
    uint64_t session;
};

struct wire_ready {
    uint32_t pid;
    uint32_t capacity;                 /* sessions this worker accepts at once */
    uint8_t seal_pk[WIRE_SEAL_PK_LEN]; /* OPEN's authCode is sealed to it */
};

/* A worker's sealing key pair (keep it in sodium_malloc memory). */
struct wire_seal_key {
    uint8_t pk[WIRE_SEAL_PK_LEN];
    uint8_t sk[WIRE_SEAL_SK_LEN];
};

struct wire_heartbeat {
    uint32_t sessions; /* worker: sessions open; gateway: 0 */
    uint8_t db_ok;     /* worker: its database connection is usable */
    uint8_t draining;  /* gateway: no new sessions will come */
    /* gateway: its incarnation, random and new at every start (a worker
     * drops the sessions of any other: their gateway is gone); worker: 0.
     * The gateway's first frame to a worker that said READY is a
     * heartbeat, so the worker knows it before the first OPEN. */
    uint64_t gateway;
};

/* WIRE_STATS: what the worker measures for the gateway's /metrics.
 * Counters are totals since the worker started (a new worker starts from
 * zero); the database counts are the last ones the worker read, database
 * wide, counts_age_ms ago.  Database latency buckets: a request took
 * <= wire_stats_db_bounds_us[i] (and more than the bound before it);
 * requests slower than the last bound are only in db_count. */
#define WIRE_STATS_DB_BUCKETS 12
extern const uint32_t wire_stats_db_bounds_us[WIRE_STATS_DB_BUCKETS];

/* Signs that a relay withheld or altered the answer to a commit (ledger
 * flags of settled transactions, and disagreements with the ledger). */
enum wire_sign {
    WIRE_SIGN_INTEGRITY_AT_RISK = 0, /* integrity failure while a top-up was at risk */
    WIRE_SIGN_SETTLED_LATER,         /* committed only proven by a later session */
    WIRE_SIGN_READBACK,              /* read-back after the commit failed or disagreed */
    WIRE_SIGN_CREDIT_MISSING,        /* record on the card, credit looks missing */
    WIRE_SIGN_SETTLE_CONFLICT,       /* the card's records contradict the ledger */
    WIRE_SIGN_COUNT
};

struct wire_stats {
    uint64_t db_count;                          /* ledger requests answered */
    uint64_t db_sum_us;                         /* their total latency (submit to reply) */
    uint64_t db_buckets[WIRE_STATS_DB_BUCKETS]; /* per bucket, not cumulative */
    uint64_t db_errors;                         /* answered LEDGER_ST_ERROR (outcome unknown) */
    uint64_t integrity_failures;                /* card answers that failed MAC/CRC/length checks */
    uint64_t freezes;                           /* cards this worker froze */
    uint64_t signs[WIRE_SIGN_COUNT];
    uint8_t counts_ok;      /* 1: the four counts below were read */
    uint32_t counts_age_ms; /* how long ago */
    uint64_t in_doubt;      /* reserved entries without a final entry */
    uint64_t in_doubt_old;  /* ... older than WIRE_STATS_OLD_S */
    uint64_t in_doubt_oldest_s;
    uint64_t codes_reserved; /* codes in state reserved */
    uint64_t cards_frozen;
};
#define WIRE_STATS_OLD_S 60

struct wire_open {
    uint8_t op;       /* enum wire_op */
    uint8_t listener; /* enum wire_listener */
    uint8_t uid_len;  /* 4 or 7 */
    uint8_t uid[WIRE_MAX_UID];
    /* In clear here; on the wire sealed to the worker's key (0 bytes: no
     * authCode). */
    uint16_t authcode_len;
    char authcode[WIRE_MAX_AUTHCODE + 1]; /* NUL-terminated after decode */
    uint8_t peer_len;
    char peer[WIRE_MAX_PEER + 1]; /* client address, for rate limits */
    /* APDUs the client takes in one message: 1 = v1 (one `command` at a
     * time), 2..WIRE_MAX_BATCH = v2 batches.  A frame without it (an older
     * gateway) decodes as 1. */
    uint8_t batch;
};

struct wire_bytes {
    uint16_t len;
    uint8_t data[WIRE_MAX_APDU];
};

/* A batch: WIRE_COMMANDS (1..WIRE_MAX_BATCH APDUs, err 0) or
 * WIRE_CARD_RESPONSES (0..WIRE_MAX_BATCH answers in the order of the
 * commands, fewer when the client stopped; err = enum wire_client_err when
 * the client lost the card part-way, else 0; no answer at all needs err). */
struct wire_apdus {
    uint8_t n;
    uint8_t err;
    struct wire_bytes a[WIRE_MAX_BATCH];
};

struct wire_client_error {
    uint8_t kind; /* enum wire_client_err */
};

struct wire_phase {
    uint8_t at_risk; /* 1: a failure now leaves the ledger entry in doubt */
};

#define WIRE_RES_HAS_BALANCE 0x01
#define WIRE_RES_HAS_AMOUNT 0x02
#define WIRE_RES_HAS_TXN 0x04

struct wire_result {
    uint8_t op;     /* enum wire_op */
    uint8_t status; /* enum wire_status */
    uint8_t error;  /* enum wire_error (WIRE_E_NONE when ok) */
    uint8_t has;    /* WIRE_RES_HAS_* */
    int64_t balance;
    int64_t amount;
    uint8_t txn[16]; /* UUID bytes */
};

/* Encoders write header+payload into out (cap >= WIRE_MAX_FRAME is always
 * enough) and return the frame length, or a negative ota_err. */
int wire_encode_ready(uint8_t *out, size_t cap, const struct wire_ready *m);
int wire_encode_heartbeat(uint8_t *out, size_t cap, const struct wire_heartbeat *m);
int wire_encode_stats(uint8_t *out, size_t cap, const struct wire_stats *m);
/* Seals m->authcode to seal_pk (a worker's READY key); fails with
 * OTA_ERR_INVAL when the key is not usable. */
int wire_encode_open(uint8_t *out, size_t cap, uint64_t session, const struct wire_open *m,
                     const uint8_t seal_pk[WIRE_SEAL_PK_LEN]);
int wire_encode_bytes(uint8_t *out, size_t cap, enum wire_type type, uint64_t session,
                      const uint8_t *data, size_t len);
int wire_encode_apdus(uint8_t *out, size_t cap, enum wire_type type, uint64_t session,
                      const struct wire_apdus *m);
int wire_encode_client_error(uint8_t *out, size_t cap, uint64_t session,
                             const struct wire_client_error *m);
int wire_encode_empty(uint8_t *out, size_t cap, enum wire_type type, uint64_t session);
int wire_encode_phase(uint8_t *out, size_t cap, uint64_t session, const struct wire_phase *m);
int wire_encode_result(uint8_t *out, size_t cap, uint64_t session, const struct wire_result *m);

/* Parses and checks the header against the frame length (exact match,
 * version, known type, payload bound).  Returns 0 or OTA_ERR_PARSE. */
int wire_decode_hdr(const uint8_t *frame, size_t len, struct wire_hdr *h);
/* Payload decoders.  The header is decoded once, by whoever routes the
 * frame (wire_decode_hdr), and handed on with the frame it came from (as
 * OpenSSH's monitor hands its handlers a positioned buffer): h bounds the
 * payload, so frame must be the one h was decoded from.  Each checks the
 * type, every length and enum range, and that the payload is consumed
 * exactly.  Return 0 or OTA_ERR_PARSE. */
int wire_decode_ready(const struct wire_hdr *h, const uint8_t *frame, struct wire_ready *m);
int wire_decode_heartbeat(const struct wire_hdr *h, const uint8_t *frame, struct wire_heartbeat *m);
/* Also refuses bucket counts that add up to more than db_count, an age
 * or counts present without counts_ok, and fewer in_doubt than in_doubt_old. */
int wire_decode_stats(const struct wire_hdr *h, const uint8_t *frame, struct wire_stats *m);
/* Opens the sealed authCode with k; a box that does not open (not sealed
 * to k, or changed on the way) is a parse error.  Wipe m after use. */
int wire_decode_open(const struct wire_hdr *h, const uint8_t *frame, struct wire_open *m,
                     const struct wire_seal_key *k);
int wire_decode_bytes(const struct wire_hdr *h, const uint8_t *frame, struct wire_bytes *m);
int wire_decode_apdus(const struct wire_hdr *h, const uint8_t *frame, struct wire_apdus *m);
int wire_decode_client_error(const struct wire_hdr *h, const uint8_t *frame,
                             struct wire_client_error *m);
int wire_decode_phase(const struct wire_hdr *h, const uint8_t *frame, struct wire_phase *m);
int wire_decode_result(const struct wire_hdr *h, const uint8_t *frame, struct wire_result *m);

/* Stable names for logs and the client protocol ("bad-request", "ok", ...). */
const char *wire_error_name(uint8_t error);
const char *wire_status_name(uint8_t status);
const char *wire_op_name(uint8_t op);
/* Parses "check"/"topup"/"personalize"; returns 0 if unknown. */
uint8_t wire_op_parse(const char *name);

#endif
