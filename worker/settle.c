/* settle: the decision of docs/PROTOCOL.md §6 step 3, as a pure function of
 * what the card showed (records, balance) and what the ledger holds.
 *
 * - A card without ledger history must have a zero balance and no records
 *   (else it is not one of ours: unsupported).
 * - Each in-doubt txn: its record on the card -> committed; none -> voided.
 * - The records must agree with the ledger: every record is a committed
 *   txn of this card (after settlement) with the same amount, and each of
 *   the newest ENG_RECORDS_KEPT committed txns has its record.  Records
 *   cannot vanish (no ClearRecordFile right), so any disagreement freezes.
 *
 * Must never decide from anything but MAC/CRC-verified card data and the
 * ledger's reply. */
#include <stdio.h>
#include <string.h>

#include "desfire_crypto.h"
#include "engine_int.h"

static int find_record(const struct eng_card_view *v, const uint8_t *txn)
{
    for (int i = 0; i < v->n_records; i++)
        if (memcmp(v->records[i] + PROF_REC_TXN, txn, LEDGER_TXN_ID_LEN) == 0)
            return i;
    return -1;
}

static int32_t rec_i32(const uint8_t *rec, size_t off)
{
    return (int32_t)dfc_get_le32(rec + off);
}

void settle_plan(const struct eng_card_view *v, const struct ledger_card_state *st,
                 struct eng_settle_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    if (!st->has_history) {
        if (v->n_records > 0 || v->balance != 0) {
            plan->unsupported = 1;
            snprintf(plan->detail, sizeof(plan->detail),
                     "no ledger history but balance %ld and %d records", (long)v->balance,
                     v->n_records);
        }
        return;
    }
    for (int i = 0; i < v->n_records; i++) {
        static const uint8_t zero[4];
        if (memcmp(v->records[i] + 28, zero, sizeof(zero)) != 0) {
            plan->freeze = 1;
            snprintf(plan->detail, sizeof(plan->detail), "malformed record %d", i);
            return;
        }
    }

    /* Effective committed list, newest first: in-doubt txns proven by
     * their record (newer than every committed one: a card's next top-up
     * is reserved only after its previous one settled), then the ledger's. */
    struct ledger_txn eff[LEDGER_MAX_IN_DOUBT + LEDGER_MAX_COMMITTED];
    int neff = 0;
    int nd = st->n_in_doubt < LEDGER_MAX_IN_DOUBT ? st->n_in_doubt : LEDGER_MAX_IN_DOUBT;
    for (int i = 0; i < nd; i++) {
        const struct ledger_txn *t = &st->in_doubt[i];
        int r = find_record(v, t->txn_id);
        if (r < 0) {
            plan->outcome[i] = LEDGER_VOIDED;
            continue;
        }
        const uint8_t *rec = v->records[r];
        if (rec_i32(rec, PROF_REC_AMOUNT) != t->amount) {
            plan->freeze = 1;
            snprintf(plan->detail, sizeof(plan->detail), "record amount differs from in-doubt txn");
            return;
        }
        plan->outcome[i] = LEDGER_COMMITTED;
        plan->flags[i] = LEDGER_FLAG_SETTLED_LATER | (t->flags & LEDGER_FLAG_INTEGRITY);
        /* The record says what the balance became; if the newest record's
         * balance is still the one before it, its Credit never got
         * committed (a relay's commit between WriteRecord and Credit). */
        if (r == v->n_records - 1 &&
            (int64_t)v->balance == (int64_t)rec_i32(rec, PROF_REC_BALANCE) - t->amount)
            plan->flags[i] |= LEDGER_FLAG_CREDIT_MISSING;
    }
    plan->n = nd;
    for (int i = nd - 1; i >= 0; i--)
        if (plan->outcome[i] == LEDGER_COMMITTED)
            eff[neff++] = st->in_doubt[i];
    int nc = st->n_committed < LEDGER_MAX_COMMITTED ? st->n_committed : LEDGER_MAX_COMMITTED;
    for (int i = 0; i < nc; i++)
        eff[neff++] = st->committed[i];

    for (int r = 0; r < v->n_records; r++) {
        const uint8_t *rec = v->records[r];
        int k = -1;
        for (int i = 0; i < neff && k < 0; i++)
            if (memcmp(eff[i].txn_id, rec + PROF_REC_TXN, LEDGER_TXN_ID_LEN) == 0)
                k = i;
        if (k < 0) {
            plan->freeze = 1;
            snprintf(plan->detail, sizeof(plan->detail), "record %d has an unknown txn_id", r);
            return;
        }
        if (rec_i32(rec, PROF_REC_AMOUNT) != eff[k].amount) {
            plan->freeze = 1;
            snprintf(plan->detail, sizeof(plan->detail), "record %d amount differs", r);
            return;
        }
    }
    int must = neff < ENG_RECORDS_KEPT ? neff : ENG_RECORDS_KEPT;
    for (int i = 0; i < must; i++) {
        if (find_record(v, eff[i].txn_id) < 0) {
            plan->freeze = 1;
            snprintf(plan->detail, sizeof(plan->detail),
                     "committed txn %d (newest first) has no record", i);
            return;
        }
    }
}
