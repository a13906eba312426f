/* sim_priv: the simulator's internal model, shared by the sim_*.c files
 * only (never included outside the simulator).  The card keeps committed
 * state and pending (transaction) state side by side in each file; the
 * session, the handshake and the frame chaining live in struct sim_card.
 * Nothing here may call the reader side (desfire_session/desfire_auth):
 * the simulator is the reader's oracle and shares only the block-cipher
 * primitives of desfire_crypto.h. */
#ifndef SIM_PRIV_H
#define SIM_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "desfire_crypto.h"
#include "sim_card.h"

#define SIM_MAX_APPS 28
#define SIM_MAX_FILES 32
#define SIM_MAX_KEYS 14
#define SIM_MAX_UID 10
/* Free memory of a fresh 8 KB EV1 as GetFreeMemory reports it. */
#define SIM_MEM_TOTAL 7936u
#define SIM_MEM_UNIT 32u
#define SIM_APP_OVERHEAD 32u
/* Largest logical command or answer (the whole EEPROM plus protection). */
#define SIM_BUF_MAX (8192 + 64)
/* Frame limits (INS + data per command frame, data per answer frame). */
#define SIM_CMD_FRAME_MAX 55
#define SIM_RESP_FRAME_MAX 59
#define SIM_MAX_DFNAME 16

/* Native status codes (the card's SW2). */
enum sim_status {
    SIM_OK = 0x00,
    SIM_NO_CHANGES = 0x0C,
    SIM_OUT_OF_EEPROM = 0x0E,
    SIM_ILLEGAL_COMMAND = 0x1C,
    SIM_INTEGRITY = 0x1E,
    SIM_NO_SUCH_KEY = 0x40,
    SIM_LENGTH = 0x7E,
    SIM_PERMISSION = 0x9D,
    SIM_PARAMETER = 0x9E,
    SIM_APP_NOT_FOUND = 0xA0,
    SIM_AUTH = 0xAE,
    SIM_MORE = 0xAF,
    SIM_BOUNDARY = 0xBE,
    SIM_ABORTED = 0xCA,
    SIM_COUNT = 0xCE,
    SIM_DUPLICATE = 0xDE,
    SIM_FILE_NOT_FOUND = 0xF0,
};

/* Key types as the key-number byte of ChangeKey at PICC level and the
 * NumKeys byte of CreateApplication encode them. */
enum sim_key_type {
    SIM_KT_DES = 0x00, /* DES or 2-key TDEA, stored as 16 bytes */
    SIM_KT_3K = 0x40,  /* 3-key TDEA, 24 bytes */
    SIM_KT_AES = 0x80, /* AES-128, 16 bytes plus a version byte */
};

enum sim_file_type {
    SIM_FT_STD = 0x00,
    SIM_FT_BACKUP = 0x01,
    SIM_FT_VALUE = 0x02,
    SIM_FT_LINEAR = 0x03,
    SIM_FT_CYCLIC = 0x04,
};

/* Communication modes as the card applies them. */
enum sim_comm { SIM_COMM_PLAIN = 0, SIM_COMM_MAC = 1, SIM_COMM_ENC = 3 };

/* Access-right needs, as a mask of the nibbles that grant an operation. */
#define SIM_NEED_R 1u
#define SIM_NEED_W 2u
#define SIM_NEED_RW 4u
#define SIM_NEED_CHANGE 8u

struct sim_key {
    uint8_t key[DFC_MAX_KEY];
    uint8_t aes_version; /* DES-type keys carry their version in parity bits */
};

struct sim_file {
    uint8_t type; /* enum sim_file_type */
    uint8_t comm; /* 0x00, 0x01 or 0x03 as created */
    uint16_t access;
    int has_fid;
    uint16_t iso_fid;
    /* data files */
    uint32_t size;
    uint8_t *data;   /* committed */
    uint8_t *shadow; /* backup file: the image pending commit */
    int data_dirty;
    /* value file */
    int32_t lower, upper, value, limit;
    uint8_t lc_flags; /* bit0 limited credit enabled, bit1 free GetValue */
    int32_t pend_value;
    int64_t pend_debits;
    int value_dirty, lc_used;
    /* record files */
    uint32_t rec_size, max_recs, count; /* count: committed records */
    uint8_t *recs;                      /* count records, oldest first */
    uint8_t *pend_rec;                  /* the record being written */
    int rec_dirty, clear_pending;
};

struct sim_app {
    uint32_t aid;     /* 0 = PICC level */
    uint8_t settings; /* key settings */
    uint8_t nkeys;    /* 0..14 (PICC: 1) */
    uint8_t key_type; /* enum sim_key_type, for all keys of the app */
    uint8_t iso_flag; /* NumKeys bit 5: files carry ISO file ids */
    int has_fid;
    uint16_t iso_fid;
    uint8_t dfname[SIM_MAX_DFNAME];
    uint8_t dfname_len;
    struct sim_key keys[SIM_MAX_KEYS];
    struct sim_file *files[SIM_MAX_FILES];
};

enum sim_sess_kind { SIM_SESS_NONE = 0, SIM_SESS_EV1, SIM_SESS_LEGACY };

struct sim_session {
    enum sim_sess_kind kind;
    enum dfc_cipher cipher;
    uint8_t key[DFC_MAX_KEY];
    uint8_t iv[DFC_MAX_BLOCK];
    uint8_t keyno;
};

/* Where the frame exchange stands. */
enum sim_io_state {
    SIM_IO_IDLE = 0,
    SIM_IO_AUTH,     /* waiting for the reader's token (AF) */
    SIM_IO_CMD_MORE, /* waiting for continuation frames of a command */
    SIM_IO_RESP_MORE /* answer frames left to send */
};

struct sim_handshake {
    uint8_t ins; /* 0xAA, 0x1A or 0x0A */
    uint8_t keyno;
    enum dfc_cipher cipher;
    uint8_t key[DFC_MAX_KEY];
    uint8_t rndb[16];
    uint8_t iv[DFC_MAX_BLOCK];
};

struct sim_card {
    uint8_t uid[SIM_MAX_UID];
    size_t uid_len;
    uint8_t random_id[4]; /* SIM_FLAG_RANDOM_UID: this power-up's ID */
    struct sim_app picc;
    struct sim_app *apps[SIM_MAX_APPS]; /* in creation order, packed */
    struct sim_app *sel;                /* &picc at PICC level */
    unsigned flags;
    void (*rng)(void *ctx, uint8_t *p, size_t n);
    void *rng_ctx;

    struct sim_session s;
    struct sim_handshake hs;
    enum sim_io_state io;

    /* Logical command: INS at cmd[0], then all data received so far. */
    uint8_t cmd[SIM_BUF_MAX];
    size_t cmd_len, cmd_expect;
    /* Logical answer data (protection applied) and its framing. */
    uint8_t out[SIM_BUF_MAX];
    size_t out_len, out_off;
    uint8_t out_status;
    size_t split[3]; /* fixed sizes of the first frames (GetVersion) */
    size_t nsplit, split_idx;
};

/* sim_card.c */
void sim_random(struct sim_card *c, uint8_t *p, size_t n);
struct sim_app *sim_find_app(struct sim_card *c, uint32_t aid);
struct sim_file *sim_find_file(struct sim_card *c, uint8_t fileno);
size_t sim_mem_used(const struct sim_card *c);
void sim_app_free(struct sim_app *a);
void sim_file_free(struct sim_file *f);
/* Ends the session (key and IV wiped). */
void sim_session_end(struct sim_card *c);
/* Status-only answer; ends the session and discards pending changes. */
int sim_fail(struct sim_card *c, uint8_t status);
/* Sets the answer: data (already protected) and status 00. */
int sim_answer_raw(struct sim_card *c, const uint8_t *data, size_t n);
uint32_t sim_le24(const uint8_t *p);
void sim_put_le24(uint8_t *p, uint32_t v);
size_t sim_key_len(uint8_t key_type);
enum dfc_cipher sim_key_cipher(uint8_t key_type);
uint8_t sim_key_version(const struct sim_app *a, uint8_t keyno);
int sim_auth_is_master(const struct sim_card *c);

/* sim_sm.c: card-side secure messaging */
int sim_session_active(const struct sim_card *c);
/* The command carries no protection (reads, management): MACed into the
 * IV in an EV1 session. */
int sim_sm_plain_cmd(struct sim_card *c);
/* Unwraps a write-type command: cmd[1..1+hdr) is the clear header, the
 * rest carries plen payload bytes protected by comm.  The payload is
 * written to out.  Returns 0 or a status (7E, 1E). */
int sim_sm_unwrap(struct sim_card *c, enum sim_comm comm, size_t hdr, size_t plen, uint8_t *out);
/* Length on the wire of plen payload bytes under comm in this session. */
size_t sim_sm_wire_len(const struct sim_card *c, enum sim_comm comm, size_t plen);
/* Answer data protected by comm, status 00. */
int sim_sm_reply(struct sim_card *c, enum sim_comm comm, const uint8_t *data, size_t n);
/* Which mode a file's data travels in, and whether access is granted. */
int sim_file_access(const struct sim_card *c, const struct sim_file *f, unsigned need,
                    enum sim_comm *comm);
/* Enciphered payload of ChangeKey/ChangeKeySettings: decrypts the n bytes
 * after the hdr clear bytes into out (n bytes) with this session's rules. */
int sim_sm_decrypt_payload(struct sim_card *c, size_t hdr, uint8_t *out, size_t *n);

/* sim_auth.c */
int sim_cmd_auth_start(struct sim_card *c);
int sim_cmd_auth_token(struct sim_card *c, const uint8_t *d, size_t n);

/* sim_keys.c */
int sim_cmd_get_key_settings(struct sim_card *c);
int sim_cmd_change_key_settings(struct sim_card *c);
int sim_cmd_get_key_version(struct sim_card *c);
int sim_cmd_change_key(struct sim_card *c);

/* sim_picc.c */
int sim_cmd_get_version(struct sim_card *c);
int sim_cmd_select(struct sim_card *c);
int sim_cmd_get_app_ids(struct sim_card *c);
int sim_cmd_create_app(struct sim_card *c);
int sim_cmd_delete_app(struct sim_card *c);
int sim_cmd_format(struct sim_card *c);
int sim_cmd_free_memory(struct sim_card *c);
int sim_cmd_get_card_uid(struct sim_card *c);

/* sim_files.c */
int sim_cmd_get_file_ids(struct sim_card *c);
int sim_cmd_get_file_settings(struct sim_card *c);
int sim_cmd_change_file_settings(struct sim_card *c);
int sim_cmd_create_file(struct sim_card *c);
int sim_cmd_delete_file(struct sim_card *c);
int sim_file_settings_bytes(const struct sim_file *f, uint8_t *out, size_t *n);
int sim_file_new(struct sim_app *a, uint8_t no, uint8_t type, uint8_t comm, uint16_t access,
                 const uint8_t *params, struct sim_file **out);

/* sim_data.c: data, value and record operations, transactions */
/* Expected total data length of a chained WriteData/WriteRecord from its
 * first frame; returns 0 (*expect set) or a status. */
int sim_write_expect(struct sim_card *c, size_t *expect);
int sim_cmd_read_data(struct sim_card *c);
int sim_cmd_write_data(struct sim_card *c);
int sim_cmd_get_value(struct sim_card *c);
int sim_cmd_value_op(struct sim_card *c);
int sim_cmd_write_record(struct sim_card *c);
int sim_cmd_read_records(struct sim_card *c);
int sim_cmd_clear_records(struct sim_card *c);
int sim_cmd_commit(struct sim_card *c);
int sim_cmd_abort(struct sim_card *c);
void sim_txn_discard(struct sim_card *c);
void sim_file_discard(struct sim_file *f);

#endif
