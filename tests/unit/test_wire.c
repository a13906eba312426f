/* Tests for common/wire.c, common/buf.c and common/hex.c: round trips of
 * every frame type, and rejection of truncated, padded and out-of-range
 * frames (the worker must never trust the gateway's framing). */
#include <check.h>
#include <string.h>

#include <sodium.h>

#include "buf.h"
#include "hex.h"
#include "num.h"
#include "ota_err.h"
#include "wire.h"

/* Header, then payload: what a receiver does with a frame. */
#define RECV_DECODER(name, type)                                                                   \
    static int recv_##name(const uint8_t *f, size_t len, struct type *m)                           \
    {                                                                                              \
        struct wire_hdr h;                                                                         \
        if (wire_decode_hdr(f, len, &h) != 0)                                                      \
            return OTA_ERR_PARSE;                                                                  \
        return wire_decode_##name(&h, f, m);                                                       \
    }
RECV_DECODER(ready, wire_ready)
RECV_DECODER(heartbeat, wire_heartbeat)
RECV_DECODER(bytes, wire_bytes)
RECV_DECODER(result, wire_result)
RECV_DECODER(stats, wire_stats)
RECV_DECODER(apdus, wire_apdus)

static uint8_t frame[WIRE_MAX_FRAME];
static struct wire_seal_key seal; /* the receiving worker's (main makes it) */

static int recv_open(const uint8_t *f, size_t len, struct wire_open *m)
{
    struct wire_hdr h;
    if (wire_decode_hdr(f, len, &h) != 0)
        return OTA_ERR_PARSE;
    return wire_decode_open(&h, f, m, &seal);
}

static struct wire_open sample_open(void)
{
    struct wire_open o;
    memset(&o, 0, sizeof o);
    o.op = WIRE_OP_TOPUP;
    o.listener = WIRE_LISTENER_PUBLIC;
    o.uid_len = 7;
    memcpy(o.uid, "\x04\x11\x22\x33\x44\x55\x66", 7);
    o.authcode_len = 21;
    memcpy(o.authcode, "ABCD-EFGH-JKMN-PQRS-T", 21);
    o.peer_len = 9;
    memcpy(o.peer, "127.0.0.1", 9);
    return o;
}

START_TEST(open_round_trip)
{
    struct wire_open o = sample_open(), d;
    int n = wire_encode_open(frame, sizeof frame, 0x1122334455667788ull, &o, seal.pk);
    ck_assert_int_gt(n, WIRE_HDR_LEN);
    struct wire_hdr h;
    ck_assert_int_eq(wire_decode_hdr(frame, (size_t)n, &h), 0);
    ck_assert_uint_eq(h.type, WIRE_OPEN);
    ck_assert_uint_eq(h.session, 0x1122334455667788ull);
    ck_assert_int_eq(recv_open(frame, (size_t)n, &d), 0);
    ck_assert_uint_eq(d.op, o.op);
    ck_assert_uint_eq(d.uid_len, 7);
    ck_assert_mem_eq(d.uid, o.uid, 7);
    ck_assert_str_eq(d.authcode, "ABCD-EFGH-JKMN-PQRS-T");
    ck_assert_str_eq(d.peer, "127.0.0.1");
}
END_TEST

/* The authCode crosses sealed to the worker's READY key: no plaintext in
 * the frame (ZeroMQ keeps copies of frames), only that key opens it, and
 * a changed box is refused. */
START_TEST(sealed_authcode)
{
    struct wire_ready rd = {.pid = 42, .capacity = 8}, rdd;
    memcpy(rd.seal_pk, seal.pk, sizeof rd.seal_pk);
    int n = wire_encode_ready(frame, sizeof frame, &rd);
    ck_assert_int_eq(recv_ready(frame, (size_t)n, &rdd), 0);
    ck_assert_mem_eq(rdd.seal_pk, seal.pk, sizeof seal.pk);
    ck_assert_int_eq(recv_ready(frame, (size_t)n - 1, &rdd), OTA_ERR_PARSE);

    struct wire_open o = sample_open(), d;
    n = wire_encode_open(frame, sizeof frame, 7, &o, seal.pk);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_null(memmem(frame, (size_t)n, "ABCD", 4));
    ck_assert_ptr_null(memmem(frame, (size_t)n, "PQRS-T", 6));
    ck_assert_int_eq(recv_open(frame, (size_t)n, &d), 0);
    ck_assert_uint_eq(d.authcode_len, 21);
    ck_assert_str_eq(d.authcode, "ABCD-EFGH-JKMN-PQRS-T");

    struct wire_seal_key other;
    crypto_box_keypair(other.pk, other.sk);
    struct wire_hdr h;
    ck_assert_int_eq(wire_decode_hdr(frame, (size_t)n, &h), 0);
    ck_assert_int_eq(wire_decode_open(&h, frame, &d, &other), OTA_ERR_PARSE);
    /* op, listener, uid_len, uid (7), sealed length (2): the box's first byte */
    size_t box = WIRE_HDR_LEN + 3 + 7 + 2;
    frame[box + 40] ^= 1;
    ck_assert_int_eq(recv_open(frame, (size_t)n, &d), OTA_ERR_PARSE);

    /* No authCode: nothing sealed, and it decodes as none. */
    o.authcode_len = 0;
    n = wire_encode_open(frame, sizeof frame, 7, &o, seal.pk);
    ck_assert_int_eq(recv_open(frame, (size_t)n, &d), 0);
    ck_assert_uint_eq(d.authcode_len, 0);
    /* A key that is no point of the curve (all zero) seals nothing. */
    static const uint8_t zero[WIRE_SEAL_PK_LEN];
    o = sample_open();
    ck_assert_int_eq(wire_encode_open(frame, sizeof frame, 7, &o, zero), OTA_ERR_INVAL);
}
END_TEST

START_TEST(every_truncation_rejected)
{
    struct wire_open o = sample_open(), d;
    int n = wire_encode_open(frame, sizeof frame, 7, &o, seal.pk);
    for (int len = 0; len < n; len++)
        ck_assert_int_eq(recv_open(frame, (size_t)len, &d), OTA_ERR_PARSE);
    /* One extra byte after a valid frame is also refused. */
    frame[n] = 0;
    ck_assert_int_eq(recv_open(frame, (size_t)n + 1, &d), OTA_ERR_PARSE);
}
END_TEST

START_TEST(bad_fields_rejected)
{
    struct wire_open o = sample_open(), d;
    o.uid_len = 5; /* only 4 or 7 */
    int n = wire_encode_open(frame, sizeof frame, 7, &o, seal.pk);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(recv_open(frame, (size_t)n, &d), OTA_ERR_PARSE);
    o = sample_open();
    o.op = 9;
    n = wire_encode_open(frame, sizeof frame, 7, &o, seal.pk);
    ck_assert_int_eq(recv_open(frame, (size_t)n, &d), OTA_ERR_PARSE);
    o = sample_open();
    o.authcode[3] = '\0'; /* embedded NUL */
    n = wire_encode_open(frame, sizeof frame, 7, &o, seal.pk);
    ck_assert_int_eq(recv_open(frame, (size_t)n, &d), OTA_ERR_PARSE);
    o = sample_open();
    o.authcode_len = WIRE_MAX_AUTHCODE + 1;
    ck_assert_int_eq(wire_encode_open(frame, sizeof frame, 7, &o, seal.pk), OTA_ERR_LENGTH);
}
END_TEST

START_TEST(batches_round_trip_and_checks)
{
    uint8_t f[WIRE_MAX_FRAME];
    static struct wire_apdus b, d;
    memset(&b, 0, sizeof b);
    b.n = WIRE_MAX_BATCH;
    for (int i = 0; i < WIRE_MAX_BATCH; i++) {
        b.a[i].len = WIRE_MAX_APDU; /* the largest batch fits the payload bound */
        memset(b.a[i].data, i, WIRE_MAX_APDU);
    }
    int n = wire_encode_apdus(f, sizeof f, WIRE_COMMANDS, 9, &b);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(recv_apdus(f, (size_t)n, &d), 0);
    ck_assert_uint_eq(d.n, WIRE_MAX_BATCH);
    ck_assert_mem_eq(d.a[15].data, b.a[15].data, WIRE_MAX_APDU);
    /* Every truncation is refused. */
    for (int cut = WIRE_HDR_LEN; cut < n; cut += 97) {
        uint8_t g[WIRE_MAX_FRAME];
        memcpy(g, f, (size_t)cut);
        uint32_t pl = (uint32_t)(cut - WIRE_HDR_LEN);
        g[4] = (uint8_t)(pl >> 24);
        g[5] = (uint8_t)(pl >> 16);
        g[6] = (uint8_t)(pl >> 8);
        g[7] = (uint8_t)pl;
        ck_assert_int_ne(recv_apdus(g, (size_t)cut, &d), 0);
    }
    /* Responses: fewer answers, an error, none with an error. */
    b.n = 3;
    b.err = WIRE_CERR_LOST_TAG;
    n = wire_encode_apdus(f, sizeof f, WIRE_CARD_RESPONSES, 9, &b);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(recv_apdus(f, (size_t)n, &d), 0);
    ck_assert_uint_eq(d.n, 3);
    ck_assert_uint_eq(d.err, WIRE_CERR_LOST_TAG);
    b.n = 0;
    ck_assert_int_gt(wire_encode_apdus(f, sizeof f, WIRE_CARD_RESPONSES, 9, &b), 0);
    /* Refused: no answer and no error, an error on commands, an empty or
     * oversize batch, an unknown error kind. */
    b.err = 0;
    ck_assert_int_lt(wire_encode_apdus(f, sizeof f, WIRE_CARD_RESPONSES, 9, &b), 0);
    b.n = 1;
    b.err = WIRE_CERR_IO;
    ck_assert_int_lt(wire_encode_apdus(f, sizeof f, WIRE_COMMANDS, 9, &b), 0);
    b.err = 0;
    b.n = 0;
    ck_assert_int_lt(wire_encode_apdus(f, sizeof f, WIRE_COMMANDS, 9, &b), 0);
    b.n = WIRE_MAX_BATCH + 1;
    ck_assert_int_lt(wire_encode_apdus(f, sizeof f, WIRE_COMMANDS, 9, &b), 0);
    b.n = 1;
    n = wire_encode_apdus(f, sizeof f, WIRE_CARD_RESPONSES, 9, &b);
    f[WIRE_HDR_LEN + 1] = 7; /* err */
    ck_assert_int_ne(recv_apdus(f, (size_t)n, &d), 0);
    f[WIRE_HDR_LEN + 1] = 0;
    f[WIRE_HDR_LEN] = WIRE_MAX_BATCH + 1; /* n */
    ck_assert_int_ne(recv_apdus(f, (size_t)n, &d), 0);

    /* OPEN carries the batch size; a frame without it is v1. */
    struct wire_open o, od;
    memset(&o, 0, sizeof o);
    o.op = WIRE_OP_CHECK;
    o.uid_len = 7;
    o.batch = 16;
    n = wire_encode_open(f, sizeof f, 3, &o, seal.pk);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(recv_open(f, (size_t)n, &od), 0);
    ck_assert_uint_eq(od.batch, 16);
    f[n - 1] = 0;
    ck_assert_int_ne(recv_open(f, (size_t)n, &od), 0);
    f[n - 1] = 17;
    ck_assert_int_ne(recv_open(f, (size_t)n, &od), 0);
    f[7]--; /* drop the byte: an older gateway's frame */
    ck_assert_int_eq(recv_open(f, (size_t)n - 1, &od), 0);
    ck_assert_uint_eq(od.batch, 1);
}
END_TEST

START_TEST(header_checks)
{
    struct wire_heartbeat hb = {.sessions = 3, .db_ok = 1, .gateway = 0x8877665544332211ull}, d;
    int n = wire_encode_heartbeat(frame, sizeof frame, &hb);
    ck_assert_int_eq(recv_heartbeat(frame, (size_t)n, &d), 0);
    ck_assert_uint_eq(d.sessions, 3);
    ck_assert_uint_eq(d.db_ok, 1);
    ck_assert(d.gateway == 0x8877665544332211ull);
    struct wire_hdr h;
    frame[0] = WIRE_VERSION + 1; /* version */
    ck_assert_int_eq(wire_decode_hdr(frame, (size_t)n, &h), OTA_ERR_PARSE);
    frame[0] = WIRE_VERSION;
    frame[1] = 99; /* unknown type */
    ck_assert_int_eq(wire_decode_hdr(frame, (size_t)n, &h), OTA_ERR_PARSE);
    frame[1] = WIRE_HEARTBEAT;
    frame[7] ^= 1; /* length disagrees with the frame */
    ck_assert_int_eq(wire_decode_hdr(frame, (size_t)n, &h), OTA_ERR_PARSE);
    frame[7] ^= 1;
    /* A heartbeat is not a ready message. */
    struct wire_ready r;
    ck_assert_int_eq(recv_ready(frame, (size_t)n, &r), OTA_ERR_PARSE);
}
END_TEST

START_TEST(bytes_and_result)
{
    uint8_t apdu[WIRE_MAX_APDU];
    for (size_t i = 0; i < sizeof apdu; i++)
        apdu[i] = (uint8_t)i;
    int n = wire_encode_bytes(frame, sizeof frame, WIRE_COMMAND, 5, apdu, sizeof apdu);
    struct wire_bytes b;
    ck_assert_int_eq(recv_bytes(frame, (size_t)n, &b), 0);
    ck_assert_uint_eq(b.len, sizeof apdu);
    ck_assert_mem_eq(b.data, apdu, sizeof apdu);
    ck_assert_int_eq(
        wire_encode_bytes(frame, sizeof frame, WIRE_COMMAND, 5, apdu, WIRE_MAX_APDU + 1),
        OTA_ERR_LENGTH);
    ck_assert_int_eq(wire_encode_bytes(frame, sizeof frame, WIRE_MODAL, 5, apdu, WIRE_MAX_TEXT + 1),
                     OTA_ERR_LENGTH);

    struct wire_result res = {.op = WIRE_OP_TOPUP,
                              .status = WIRE_ST_OK,
                              .has = WIRE_RES_HAS_BALANCE | WIRE_RES_HAS_AMOUNT,
                              .balance = 1500,
                              .amount = -1},
                       d;
    memset(res.txn, 0xab, sizeof res.txn);
    n = wire_encode_result(frame, sizeof frame, 9, &res);
    ck_assert_int_eq(recv_result(frame, (size_t)n, &d), 0);
    ck_assert_int_eq(d.balance, 1500);
    ck_assert_int_eq(d.amount, -1);
    ck_assert_mem_eq(d.txn, res.txn, 16);
    /* ok with an error code is inconsistent */
    res.error = WIRE_E_CODE_USED;
    n = wire_encode_result(frame, sizeof frame, 9, &res);
    ck_assert_int_eq(recv_result(frame, (size_t)n, &d), OTA_ERR_PARSE);
    ck_assert_str_eq(wire_error_name(WIRE_E_CODE_USED), "code-used");
    ck_assert_str_eq(wire_error_name(200), "internal");
    ck_assert_uint_eq(wire_op_parse("personalize"), WIRE_OP_PERSONALIZE);
    ck_assert_uint_eq(wire_op_parse("debit"), 0);
}
END_TEST

START_TEST(every_bit_flip_is_safe)
{
    /* Flipping any bit either is rejected or decodes to in-range values. */
    struct wire_open o = sample_open(), d;
    int n = wire_encode_open(frame, sizeof frame, 7, &o, seal.pk);
    int rejected = 0;
    for (int i = 0; i < n * 8; i++) {
        frame[i / 8] ^= (uint8_t)(1 << (i % 8));
        if (recv_open(frame, (size_t)n, &d) != 0)
            rejected++;
        else
            ck_assert(d.uid_len == 4 || d.uid_len == 7);
        frame[i / 8] ^= (uint8_t)(1 << (i % 8));
    }
    ck_assert_int_gt(rejected, 0);
}
END_TEST

static struct wire_stats sample_stats(void)
{
    struct wire_stats st;
    memset(&st, 0, sizeof st);
    st.db_count = 100;
    st.db_sum_us = 123456;
    st.db_buckets[0] = 60;
    st.db_buckets[3] = 30;
    st.db_buckets[WIRE_STATS_DB_BUCKETS - 1] = 9; /* one slower than every bound */
    st.db_errors = 2;
    st.integrity_failures = 5;
    st.freezes = 1;
    st.signs[WIRE_SIGN_SETTLED_LATER] = 3;
    st.signs[WIRE_SIGN_SETTLE_CONFLICT] = 1;
    st.counts_ok = 1;
    st.counts_age_ms = 2500;
    st.in_doubt = 7;
    st.in_doubt_old = 2;
    st.in_doubt_oldest_s = 3600;
    st.codes_reserved = 7;
    st.cards_frozen = 4;
    return st;
}

START_TEST(stats_round_trip_and_checks)
{
    struct wire_stats st = sample_stats(), d;
    int n = wire_encode_stats(frame, sizeof frame, &st);
    ck_assert_int_gt(n, WIRE_HDR_LEN);
    struct wire_hdr h;
    ck_assert_int_eq(wire_decode_hdr(frame, (size_t)n, &h), 0);
    ck_assert_uint_eq(h.type, WIRE_STATS);
    ck_assert_uint_eq(h.session, 0);
    ck_assert_int_eq(recv_stats(frame, (size_t)n, &d), 0);
    ck_assert_mem_eq(&d, &st, sizeof d);
    /* Every truncation and one byte too many are refused. */
    for (int len = 0; len < n; len++)
        ck_assert_int_eq(recv_stats(frame, (size_t)len, &d), OTA_ERR_PARSE);
    frame[n] = 0;
    ck_assert_int_eq(recv_stats(frame, (size_t)n + 1, &d), OTA_ERR_PARSE);
    /* Not a heartbeat, and a heartbeat is not stats. */
    struct wire_heartbeat hb;
    ck_assert_int_eq(recv_heartbeat(frame, (size_t)n, &hb), OTA_ERR_PARSE);

    /* Buckets adding up to more than the count. */
    st = sample_stats();
    st.db_buckets[5] = 2;
    n = wire_encode_stats(frame, sizeof frame, &st);
    ck_assert_int_eq(recv_stats(frame, (size_t)n, &d), OTA_ERR_PARSE);
    /* More errors than requests; more old in-doubt entries than in doubt. */
    st = sample_stats();
    st.db_errors = 101;
    n = wire_encode_stats(frame, sizeof frame, &st);
    ck_assert_int_eq(recv_stats(frame, (size_t)n, &d), OTA_ERR_PARSE);
    st = sample_stats();
    st.in_doubt_old = 8;
    n = wire_encode_stats(frame, sizeof frame, &st);
    ck_assert_int_eq(recv_stats(frame, (size_t)n, &d), OTA_ERR_PARSE);

    /* Without counts the frame is shorter and decodes to zero counts. */
    st = sample_stats();
    st.counts_ok = 0;
    int m = wire_encode_stats(frame, sizeof frame, &st);
    ck_assert_int_eq(m, n - 44);
    ck_assert_int_eq(recv_stats(frame, (size_t)m, &d), 0);
    ck_assert_uint_eq(d.counts_ok, 0);
    ck_assert_uint_eq(d.in_doubt, 0);
    ck_assert_uint_eq(d.codes_reserved, 0);
    ck_assert_uint_eq(d.signs[WIRE_SIGN_SETTLED_LATER], 3);
    /* counts_ok must be 0 or 1, and with 0 nothing may follow. */
    size_t flag = (size_t)m - 1;
    frame[flag] = 2;
    ck_assert_int_eq(recv_stats(frame, (size_t)m, &d), OTA_ERR_PARSE);
    st = sample_stats();
    n = wire_encode_stats(frame, sizeof frame, &st);
    frame[flag] = 0;
    ck_assert_int_eq(recv_stats(frame, (size_t)n, &d), OTA_ERR_PARSE);
    /* Another bucket or sign count is another layout: refused. */
    st = sample_stats();
    n = wire_encode_stats(frame, sizeof frame, &st);
    frame[WIRE_HDR_LEN] = WIRE_STATS_DB_BUCKETS + 1;
    ck_assert_int_eq(recv_stats(frame, (size_t)n, &d), OTA_ERR_PARSE);
    frame[WIRE_HDR_LEN] = WIRE_STATS_DB_BUCKETS;
    frame[WIRE_HDR_LEN + 1] = WIRE_SIGN_COUNT - 1;
    ck_assert_int_eq(recv_stats(frame, (size_t)n, &d), OTA_ERR_PARSE);
    /* Bounds ascend. */
    for (size_t i = 1; i < WIRE_STATS_DB_BUCKETS; i++)
        ck_assert_uint_gt(wire_stats_db_bounds_us[i], wire_stats_db_bounds_us[i - 1]);
}
END_TEST

START_TEST(hex_strict)
{
    uint8_t out[4];
    ck_assert_int_eq(hex_decode("0aFf", 4, out, sizeof out), 2);
    ck_assert_uint_eq(out[0], 0x0a);
    ck_assert_uint_eq(out[1], 0xff);
    ck_assert_int_eq(hex_decode("0a0", 3, out, sizeof out), OTA_ERR_PARSE);
    ck_assert_int_eq(hex_decode("0g", 2, out, sizeof out), OTA_ERR_PARSE);
    ck_assert_int_eq(hex_decode(" 0a", 2, out, sizeof out), OTA_ERR_PARSE);
    ck_assert_int_eq(hex_decode("0011223344", 10, out, sizeof out), OTA_ERR_LENGTH);
    char s[5];
    hex_encode((const uint8_t *)"\xAB\x01", 2, s);
    ck_assert_str_eq(s, "ab01");
}
END_TEST

START_TEST(buf_bounds)
{
    uint8_t b[3];
    struct wbuf w;
    wbuf_init(&w, b, sizeof b);
    wbuf_u16(&w, 0x0102);
    ck_assert_int_eq(w.err, 0);
    wbuf_u16(&w, 0x0304);
    ck_assert_int_eq(w.err, OTA_ERR_LENGTH);
    ck_assert_uint_eq(w.len, 2);
    struct rbuf r;
    rbuf_init(&r, b, 2);
    ck_assert_uint_eq(rbuf_u16(&r), 0x0102);
    ck_assert_int_eq(rbuf_end(&r), 0);
    ck_assert_uint_eq(rbuf_u8(&r), 0);
    ck_assert_int_eq(rbuf_end(&r), OTA_ERR_PARSE);
    uint8_t small[1];
    rbuf_init(&r, b, 2);
    rbuf_bytes(&r, small, sizeof small, 2); /* larger than the destination */
    ck_assert_int_eq(r.err, OTA_ERR_PARSE);
}
END_TEST

START_TEST(buf_little_endian)
{
    /* A DESFire record file's settings: type, comm, access(2), then the
     * record size, max and current records, 24 bits little-endian each. */
    static const uint8_t s[] = {0x04, 0x03, 0x10, 0x32, 0x20, 0x00, 0x00, 0x0a, 0x00, 0x00,
                                0x03, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12, 0xff, 0xfe, 0x01};
    struct rbuf r;
    rbuf_init(&r, s, sizeof s);
    ck_assert_uint_eq(rbuf_u8(&r), 0x04);
    ck_assert_uint_eq(rbuf_u8(&r), 0x03);
    ck_assert_uint_eq(rbuf_u16le(&r), 0x3210);
    ck_assert_uint_eq(rbuf_u24le(&r), 32);
    ck_assert_uint_eq(rbuf_u24le(&r), 10);
    ck_assert_uint_eq(rbuf_u24le(&r), 3);
    ck_assert_uint_eq(rbuf_u32le(&r), 0x12345678);
    ck_assert_uint_eq(rbuf_left(&r), 3);
    ck_assert_uint_eq(rbuf_u24le(&r), 0x01feff);
    ck_assert_int_eq(rbuf_end(&r), 0);
    /* Past the end: 0 and a sticky error. */
    ck_assert_uint_eq(rbuf_u24le(&r), 0);
    ck_assert_int_eq(rbuf_end(&r), OTA_ERR_PARSE);
    rbuf_init(&r, s, 3);
    ck_assert_uint_eq(rbuf_u32le(&r), 0);
    ck_assert_int_eq(r.err, OTA_ERR_PARSE);
}
END_TEST

START_TEST(num_strict)
{
    long long v = 7;
    ck_assert_int_eq(num_parse_ll("42", 0, 100, &v), 0);
    ck_assert_int_eq(v, 42);
    ck_assert_int_eq(num_parse_ll("-5", -10, 10, &v), 0);
    ck_assert_int_eq(v, -5);
    ck_assert_int_eq(num_parse_ll("100", 0, 100, &v), 0);
    ck_assert_int_eq(v, 100);
    v = 7;
    static const char *const bad[] = {
        "", "x", "12x", "1 ", "101", "-1", "0x10", "99999999999999999999999", "1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(num_parse_ll(bad[i], 0, 100, &v) == OTA_ERR_PARSE, "accepted '%s'", bad[i]);
    ck_assert_int_eq(num_parse_ll(NULL, 0, 100, &v), OTA_ERR_PARSE);
    ck_assert_int_eq(v, 7); /* untouched on failure */
}
END_TEST

int main(void)
{
    if (sodium_init() < 0 || crypto_box_keypair(seal.pk, seal.sk) != 0)
        return 1;
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, open_round_trip);
    tcase_add_test(tc, sealed_authcode);
    tcase_add_test(tc, every_truncation_rejected);
    tcase_add_test(tc, bad_fields_rejected);
    tcase_add_test(tc, header_checks);
    tcase_add_test(tc, batches_round_trip_and_checks);
    tcase_add_test(tc, bytes_and_result);
    tcase_add_test(tc, every_bit_flip_is_safe);
    tcase_add_test(tc, stats_round_trip_and_checks);
    tcase_add_test(tc, hex_strict);
    tcase_add_test(tc, buf_bounds);
    tcase_add_test(tc, buf_little_endian);
    tcase_add_test(tc, num_strict);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
