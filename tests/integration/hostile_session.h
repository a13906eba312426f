/* hostile_session: what the hostile relay's parts share (test code only).
 * hostile_relay.c plans and runs sessions and checks the money at the end;
 * hostile_faults.c holds the cards, the bank of earlier answers and
 * commands, the messages and the per-command faults (protocol v1 and
 * single commands of v2); hostile_batch.c the faults inside a v2 batch.
 * It must never be linked into a product binary. */
#ifndef HOSTILE_SESSION_H
#define HOSTILE_SESSION_H

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "hostile_relay.h"
#include "ws_client.h"
#include "ws_proto_msg.h"

#define HR_APDU_MAX 261
#define HR_ANSWER_MAX 300
#define HR_BANK 1024
#define HR_MAX_FAULTS 2
#define HR_FAULT_SPAN 20 /* faults land on commands 1..20 (a top-up has ~17) */
#define HR_MAX_OUTCOMES 64
#define HR_MAX_URLS 4
#define HR_BAD_CODE "ABCD-EFGH-JKMN-PQRS-TVWX"

enum hr_fault {
    HF_NONE = 0,
    HF_TAMPER,       /* run it, flip one byte of the answer */
    HF_REPLAY_SAME,  /* answer with this session's previous answer */
    HF_REPLAY_OTHER, /* answer with an answer of another session */
    HF_DROP_BEFORE,  /* hr_drop the connection, the command not run */
    HF_DROP_AFTER,   /* run the command, hr_drop before answering */
    HF_LOST_TAG,     /* error lost-tag instead of an answer */
    HF_RELAY_COMMIT, /* own CommitTransaction to the card before or after the command */
    HF_RELAY_ABORT,  /* own AbortTransaction likewise */
    HF_STALL,        /* withhold the answer (briefly, or past the response timeout) */
    HF_UNEXPECTED,   /* messages out of order, malformed or unknown */
    HF_TEAR,         /* run it, power-cycle the card, then answer */
    HF_REPLAY_CMD,   /* first send the card an earlier command of the server's */
    HF_LIE_UID,      /* session: another card's UID or a random one */
    HF_PRE_COMMIT,   /* session: own CommitTransaction before the first command */
    HF_POST_COMMIT,  /* session: own CommitTransaction after the session */
    HF_RELAY_CLEAR,  /* own ClearRecordFile (file 2) before or after the command */
    /* Batches only (a v2 session's `commands`): */
    HF_PREFIX,  /* answer only the APDUs before this one (run it or not) */
    HF_MORE,    /* an extra answer at the end, or ignore the stop rule */
    HF_REORDER, /* swap this answer with the next, or run the next APDU first */
    HF_COUNT
};
#define HF_FIRST_V2_ONLY HF_PREFIX

struct hr_opts {
    const char *url[HR_MAX_URLS];
    int nurls;
    const char *cards_dir, *codes_file, *master_keys, *until_file, *log_file;
    const char *race_code;
    int ncards, concurrency, fault_pct, check_pct, bad_code_pct, keep_pending_every, share_pct;
    int race_clients;
    int sweep;  /* the deterministic matrix instead of random plans */
    int v2_pct; /* sessions that announce batches (protocol v2) */
    long sessions, stall_ms, settle_timeout_ms, min_ok;
    uint64_t seed;
    uint8_t uid_base[HR_UID_LEN];
};

struct hr_bank_ent {
    uint8_t ins;
    uint8_t len;
    uint8_t data[HR_ANSWER_MAX];
};

struct hr_outcome {
    char key[64];
    long n;
};

struct hr_relay {
    struct hr_opts o;
    struct hr_run run;
    struct wsc_url url[HR_MAX_URLS]; /* gateways on one database: sessions spread over them */
    char **codes;
    size_t ncodes;
    FILE *log;
    atomic_long next;
    /* Answers and commands seen, for replays across sessions. */
    pthread_mutex_t bank_mu;
    struct hr_bank_ent *bank, *cmds;
    size_t nbank, bank_next, ncmds, cmds_next;
    /* Counters, under run.mu. */
    long started, connected, connect_failed, no_result, ok_topups, ok_checks;
    long faults, fault_kind[HF_COUNT], lie_sessions, power_cycles, settle_checks;
    long batches, batch_apdus, v2_sessions; /* `commands` messages received, their APDUs */
    struct hr_outcome outcome[HR_MAX_OUTCOMES];
    int noutcome;
    int *in_use; /* sessions on each card right now, under run.mu */
    /* Race mode. */
    pthread_barrier_t barrier;
};

enum hs_state { HS_WAIT_SERVER = 0, HS_DONE };

struct hr_fault_at {
    enum hr_fault kind;
    long at;
    uint32_t param;
    int done;
};

struct hr_session {
    enum hs_state state;
    struct hr_relay *R;
    unsigned long idx;
    uint64_t rng;
    int clean;  /* settling / race: no faults */
    int share;  /* may run on a card another session is using */
    int stride; /* claim_card: keep the card's parity (sweep: keep-pending or not) */
    int gw;     /* which --url */
    int race;   /* wait for every racer before the operation */
    int card;
    struct hr_card *c;
    const char *op;
    const char *code;
    int lie;
    int lie_other; /* > 0: lie with another card's UID (picked from this) */
    uint8_t lie_uid[HR_UID_LEN];
    uint8_t uid_sent[HR_UID_LEN];
    struct hr_fault_at f[HR_MAX_FAULTS];
    int nf;
    int pre_commit, post_commit;
    int batch; /* announced batch size; 0 = v1 */
    struct wsc_client *ws;
    long ncmd;
    uint8_t prev[HR_ANSWER_MAX];
    size_t prev_len;
    char end[16];
    char status[12], error[32], txn[40];
    char injected[160];
    void **db;
};

extern const char *const hr_fault_names[HF_COUNT];
extern volatile sig_atomic_t hr_stop;

/* hostile_relay.c */
void hr_sleep_ms(long ms);
uint32_t hr_rnd(struct hr_session *s, uint32_t n);
__attribute__((format(printf, 2, 3))) void hr_violation(struct hr_relay *R, const char *fmt, ...);

/* hostile_faults.c: the card (one APDU at a time, also across sessions) */
int hr_card_xfer(struct hr_card *c, const uint8_t *apdu, size_t len, uint8_t *resp, size_t *rlen);
/* The relay's own command: CommitTransaction (C7), AbortTransaction (A7)
 * or ClearRecordFile of file 2 (EB). */
void hr_card_own(struct hr_card *c, uint8_t ins);
uint8_t hr_relay_ins(enum hr_fault k);
void hr_card_poll_records(struct hr_card *c, int initial);
int32_t hr_card_balance(struct hr_card *c);
/* Runs an APDU on the session's card and banks the answer for replays. */
size_t hr_run_card(struct hr_session *s, const uint8_t *apdu, size_t n, uint8_t *resp);
/* The banks of earlier commands and answers (all sessions). */
void hr_cmd_add(struct hr_relay *R, const uint8_t *apdu, size_t n);
size_t hr_cmd_pick(struct hr_session *s, uint8_t *out);
size_t hr_bank_pick(struct hr_session *s, uint8_t ins, uint8_t *out);

/* hostile_faults.c: messages and faults */
int hr_send_text(struct hr_session *s, const char *text);
int hr_send_operation(struct hr_session *s);
void hr_drop(struct hr_session *s, const char *why);
void hr_note_fault(struct hr_session *s, enum hr_fault k, long at);
struct hr_fault_at *hr_fault_for(struct hr_session *s, long at);
void hr_on_message(struct hr_session *s, const char *text, size_t len);

/* hostile_batch.c */
void hr_on_batch(struct hr_session *s, const struct wsm_batch *b);

#endif
