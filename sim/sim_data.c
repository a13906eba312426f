/* sim_data: data, value and record operations of the simulated card, and
 * its transactions.  Standard files change at once; backup files, value
 * files and record files change a pending copy that CommitTransaction
 * applies all at once and AbortTransaction (or select, authentication,
 * any error, power loss) throws away.  Reads (ReadData of a backup file,
 * GetValue, ReadRecords) see committed state only, like a real EV1.
 * Must never let a pending change reach committed state other than through
 * sim_cmd_commit. */
#include "sim_priv.h"

#include <stdint.h>
#include <string.h>

#define INS_CREDIT 0x0C
#define INS_DEBIT 0xDC
#define INS_LIMITED_CREDIT 0x1C
#define INS_WRITE_DATA 0x3D

static int is_data_file(const struct sim_file *f)
{
    return f->type == SIM_FT_STD || f->type == SIM_FT_BACKUP;
}

static int is_record_file(const struct sim_file *f)
{
    return f->type == SIM_FT_LINEAR || f->type == SIM_FT_CYCLIC;
}

static int is_value_file(const struct sim_file *f)
{
    return f->type == SIM_FT_VALUE;
}

/* The file the command names (its byte 1), if it is of the kind the
 * command works on; else NULL with the status to answer in *st. */
static struct sim_file *file_of_kind(struct sim_card *c, int (*is_kind)(const struct sim_file *),
                                     int *st)
{
    struct sim_file *f;

    if (c->cmd_len < 2) {
        *st = SIM_LENGTH;
        return NULL;
    }
    f = sim_find_file(c, c->cmd[1]);
    if (f == NULL) {
        *st = SIM_FILE_NOT_FOUND;
        return NULL;
    }
    if (!is_kind(f)) {
        *st = SIM_PARAMETER;
        return NULL;
    }
    *st = 0;
    return f;
}

/* Records a file can hold: a cyclic file keeps one slot for the
 * transaction mechanism (a real EV1 created with 10 reports at most 9). */
static uint32_t record_capacity(const struct sim_file *f)
{
    return f->type == SIM_FT_CYCLIC ? f->max_recs - 1 : f->max_recs;
}

/* --- transactions --- */

void sim_file_discard(struct sim_file *f)
{
    if (f == NULL)
        return;
    f->data_dirty = 0;
    f->pend_value = f->value;
    f->pend_debits = 0;
    f->value_dirty = 0;
    f->lc_used = 0;
    f->rec_dirty = 0;
    f->clear_pending = 0;
}

static void for_each_file(struct sim_card *c, void (*fn)(struct sim_file *f))
{
    int i, j;

    for (i = 0; i < SIM_MAX_APPS; i++) {
        if (c->apps[i] == NULL)
            continue;
        for (j = 0; j < SIM_MAX_FILES; j++)
            if (c->apps[i]->files[j] != NULL)
                fn(c->apps[i]->files[j]);
    }
}

void sim_txn_discard(struct sim_card *c)
{
    for_each_file(c, sim_file_discard);
}

static void commit_file(struct sim_file *f)
{
    if (f->type == SIM_FT_BACKUP && f->data_dirty)
        memcpy(f->data, f->shadow, f->size);
    if (f->type == SIM_FT_VALUE && f->value_dirty) {
        f->value = f->pend_value;
        /* The next LimitedCredit may give back what this transaction
         * debited; a used LimitedCredit is not available again. */
        if (f->pend_debits > 0)
            f->limit = f->pend_debits > INT32_MAX ? INT32_MAX : (int32_t)f->pend_debits;
        else if (f->lc_used)
            f->limit = 0;
    }
    if (is_record_file(f)) {
        if (f->clear_pending)
            f->count = 0;
        if (f->rec_dirty) {
            if (f->count >= record_capacity(f)) {
                /* Cyclic: the oldest record makes room. */
                memmove(f->recs, f->recs + f->rec_size, (size_t)(f->count - 1) * f->rec_size);
                f->count--;
            }
            memcpy(f->recs + (size_t)f->count * f->rec_size, f->pend_rec, f->rec_size);
            f->count++;
        }
    }
    sim_file_discard(f);
}

int sim_cmd_commit(struct sim_card *c)
{
    int st;

    if (c->cmd_len != 1)
        return SIM_LENGTH;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    /* In memory and between two APDUs: atomic against power loss. */
    for_each_file(c, commit_file);
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}

int sim_cmd_abort(struct sim_card *c)
{
    int st;

    if (c->cmd_len != 1)
        return SIM_LENGTH;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    sim_txn_discard(c);
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}

/* --- data files --- */

int sim_write_expect(struct sim_card *c, size_t *expect)
{
    struct sim_file *f;
    enum sim_comm comm;
    uint32_t off, len, limit;
    size_t total;
    int data = c->cmd[0] == INS_WRITE_DATA;

    *expect = c->cmd_len - 1;
    if (c->cmd_len < 8)
        return SIM_LENGTH;
    f = sim_find_file(c, c->cmd[1]);
    if (f == NULL)
        return SIM_FILE_NOT_FOUND;
    /* The handler reports type and access errors once all is known. */
    if ((data ? !is_data_file(f) : !is_record_file(f)) ||
        sim_file_access(c, f, SIM_NEED_W | SIM_NEED_RW, &comm) != 0)
        return 0;
    off = sim_le24(c->cmd + 2);
    len = sim_le24(c->cmd + 5);
    limit = data ? f->size : f->rec_size;
    if (len == 0)
        return SIM_LENGTH;
    if (off >= limit || len > limit - off)
        return SIM_BOUNDARY;
    total = 7 + sim_sm_wire_len(c, comm, len);
    if (1 + total > SIM_BUF_MAX)
        return SIM_BOUNDARY;
    *expect = total;
    return 0;
}

int sim_cmd_read_data(struct sim_card *c)
{
    struct sim_file *f;
    enum sim_comm comm;
    uint32_t off, len;
    int st;

    if (c->cmd_len != 8)
        return SIM_LENGTH;
    f = file_of_kind(c, is_data_file, &st);
    if (f == NULL)
        return st;
    st = sim_file_access(c, f, SIM_NEED_R | SIM_NEED_RW, &comm);
    if (st != 0)
        return st;
    off = sim_le24(c->cmd + 2);
    len = sim_le24(c->cmd + 5);
    if (off >= f->size)
        return SIM_BOUNDARY;
    if (len == 0)
        len = f->size - off;
    else if (len > f->size - off)
        return SIM_BOUNDARY;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    return sim_sm_reply(c, comm, f->data + off, len);
}

int sim_cmd_write_data(struct sim_card *c)
{
    uint8_t buf[SIM_BUF_MAX];
    struct sim_file *f;
    enum sim_comm comm;
    uint32_t off, len;
    int st;

    if (c->cmd_len < 8)
        return SIM_LENGTH;
    f = file_of_kind(c, is_data_file, &st);
    if (f == NULL)
        return st;
    st = sim_file_access(c, f, SIM_NEED_W | SIM_NEED_RW, &comm);
    if (st != 0)
        return st;
    off = sim_le24(c->cmd + 2);
    len = sim_le24(c->cmd + 5);
    if (len == 0)
        return SIM_LENGTH;
    if (off >= f->size || len > f->size - off)
        return SIM_BOUNDARY;
    st = sim_sm_unwrap(c, comm, 7, len, buf);
    if (st == 0) {
        if (f->type == SIM_FT_STD) {
            memcpy(f->data + off, buf, len);
        } else {
            if (!f->data_dirty)
                memcpy(f->shadow, f->data, f->size);
            memcpy(f->shadow + off, buf, len);
            f->data_dirty = 1;
        }
    }
    dfc_wipe(buf, len);
    if (st != 0)
        return st;
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}

/* --- value files --- */

int sim_cmd_get_value(struct sim_card *c)
{
    struct sim_file *f;
    enum sim_comm comm;
    uint8_t v[4];
    int st;

    if (c->cmd_len != 2)
        return SIM_LENGTH;
    f = file_of_kind(c, is_value_file, &st);
    if (f == NULL)
        return st;
    st = sim_file_access(c, f, SIM_NEED_R | SIM_NEED_W | SIM_NEED_RW, &comm);
    if (st != 0 && (f->lc_flags & 0x02)) {
        /* EV1 "free GetValue" */
        comm = SIM_COMM_PLAIN;
        st = 0;
    }
    if (st != 0)
        return st;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    /* Committed value: pending credits and debits are not visible. */
    dfc_put_le32(v, (uint32_t)f->value);
    return sim_sm_reply(c, comm, v, sizeof v);
}

int sim_cmd_value_op(struct sim_card *c)
{
    uint8_t ins = c->cmd[0];
    struct sim_file *f;
    enum sim_comm comm;
    unsigned need;
    uint8_t p[4];
    int64_t amount, next;
    int st;

    f = file_of_kind(c, is_value_file, &st);
    if (f == NULL)
        return st;
    if (ins == INS_CREDIT)
        need = SIM_NEED_RW;
    else if (ins == INS_DEBIT)
        need = SIM_NEED_R | SIM_NEED_W | SIM_NEED_RW;
    else
        need = SIM_NEED_W | SIM_NEED_RW;
    st = sim_file_access(c, f, need, &comm);
    if (st != 0)
        return st;
    if (ins == INS_LIMITED_CREDIT && !(f->lc_flags & 0x01))
        return SIM_PERMISSION;
    st = sim_sm_unwrap(c, comm, 1, 4, p);
    if (st != 0)
        return st;
    amount = (int32_t)dfc_get_le32(p);
    if (amount < 0)
        return SIM_PARAMETER;
    switch (ins) {
    case INS_CREDIT:
        next = (int64_t)f->pend_value + amount;
        if (next > f->upper)
            return SIM_BOUNDARY;
        break;
    case INS_DEBIT:
        next = (int64_t)f->pend_value - amount;
        if (next < f->lower)
            return SIM_BOUNDARY;
        f->pend_debits += amount;
        break;
    default:
        next = (int64_t)f->pend_value + amount;
        if (f->lc_used || amount > f->limit || next > f->upper)
            return SIM_BOUNDARY;
        f->lc_used = 1;
        break;
    }
    f->pend_value = (int32_t)next;
    f->value_dirty = 1;
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}

/* --- record files --- */

int sim_cmd_write_record(struct sim_card *c)
{
    uint8_t buf[SIM_BUF_MAX];
    struct sim_file *f;
    enum sim_comm comm;
    uint32_t off, len;
    int st;

    if (c->cmd_len < 8)
        return SIM_LENGTH;
    f = file_of_kind(c, is_record_file, &st);
    if (f == NULL)
        return st;
    st = sim_file_access(c, f, SIM_NEED_W | SIM_NEED_RW, &comm);
    if (st != 0)
        return st;
    off = sim_le24(c->cmd + 2);
    len = sim_le24(c->cmd + 5);
    if (len == 0)
        return SIM_LENGTH;
    if (off >= f->rec_size || len > f->rec_size - off)
        return SIM_BOUNDARY;
    st = sim_sm_unwrap(c, comm, 7, len, buf);
    if (st != 0) {
        dfc_wipe(buf, len);
        return st;
    }
    if (f->clear_pending) {
        dfc_wipe(buf, len);
        return SIM_PERMISSION;
    }
    if (!f->rec_dirty) {
        if (f->type == SIM_FT_LINEAR && f->count >= record_capacity(f)) {
            dfc_wipe(buf, len);
            return SIM_BOUNDARY;
        }
        /* One new record per transaction; later writes fill it in. */
        memset(f->pend_rec, 0, f->rec_size);
        f->rec_dirty = 1;
    }
    memcpy(f->pend_rec + off, buf, len);
    dfc_wipe(buf, len);
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}

int sim_cmd_read_records(struct sim_card *c)
{
    struct sim_file *f;
    enum sim_comm comm;
    uint32_t off, cnt, first;
    int st;

    if (c->cmd_len != 8)
        return SIM_LENGTH;
    f = file_of_kind(c, is_record_file, &st);
    if (f == NULL)
        return st;
    st = sim_file_access(c, f, SIM_NEED_R | SIM_NEED_RW, &comm);
    if (st != 0)
        return st;
    off = sim_le24(c->cmd + 2);
    cnt = sim_le24(c->cmd + 5);
    /* Offset 0 is the newest record; count 0 means down to the oldest. */
    if (f->count == 0 || off >= f->count)
        return SIM_BOUNDARY;
    if (cnt == 0)
        cnt = f->count - off;
    else if (cnt > f->count - off)
        return SIM_BOUNDARY;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    first = f->count - off - cnt;
    /* Oldest of the requested records first. */
    return sim_sm_reply(c, comm, f->recs + (size_t)first * f->rec_size, (size_t)cnt * f->rec_size);
}

int sim_cmd_clear_records(struct sim_card *c)
{
    struct sim_file *f;
    enum sim_comm comm;
    int st;

    if (c->cmd_len != 2)
        return SIM_LENGTH;
    f = file_of_kind(c, is_record_file, &st);
    if (f == NULL)
        return st;
    st = sim_file_access(c, f, SIM_NEED_RW, &comm);
    if (st != 0)
        return st;
    st = sim_sm_plain_cmd(c);
    if (st != 0)
        return st;
    f->clear_pending = 1;
    f->rec_dirty = 0;
    return sim_sm_reply(c, SIM_COMM_PLAIN, NULL, 0);
}
