/* sim_store: a simulated card's committed state in a small binary file.
 * Layout (little-endian): "OTASIMCD", version (2), UID, PICC key, then each
 * application with its keys and files, then a 32-byte BLAKE2b of all that.
 * Written to a temporary file in the same directory (mode 0600: the file
 * holds card keys), fsynced, then renamed over the old one.  Loading checks
 * the hash and every length and limit before it trusts a byte.  Must never
 * save pending (uncommitted) changes or session state. */
#include "sim_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "ota_err.h"

#define STORE_MAGIC "OTASIMCD"
#define STORE_MAGIC_LEN 8
#define STORE_VERSION 1
#define STORE_HASH_LEN 32
#define STORE_MAX_FILE (1u << 20)

struct wbuf {
    uint8_t *p;
    size_t n, cap;
    int err;
};

static void w_bytes(struct wbuf *w, const void *d, size_t n)
{
    uint8_t *np;
    size_t cap;

    if (w->err)
        return;
    if (w->n + n > w->cap) {
        cap = w->cap ? w->cap : 1024;
        while (cap < w->n + n)
            cap *= 2;
        np = malloc(cap);
        if (np == NULL) {
            w->err = 1;
            return;
        }
        if (w->p != NULL) {
            memcpy(np, w->p, w->n);
            dfc_wipe(w->p, w->cap);
            free(w->p);
        }
        w->p = np;
        w->cap = cap;
    }
    if (n > 0)
        memcpy(w->p + w->n, d, n);
    w->n += n;
}

static void w_u8(struct wbuf *w, uint8_t v)
{
    w_bytes(w, &v, 1);
}

static void w_u16(struct wbuf *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    w_bytes(w, b, 2);
}

static void w_u24(struct wbuf *w, uint32_t v)
{
    uint8_t b[3];
    sim_put_le24(b, v);
    w_bytes(w, b, 3);
}

static void w_u32(struct wbuf *w, uint32_t v)
{
    uint8_t b[4];
    dfc_put_le32(b, v);
    w_bytes(w, b, 4);
}

static void w_file(struct wbuf *w, uint8_t no, const struct sim_file *f)
{
    w_u8(w, no);
    w_u8(w, f->type);
    w_u8(w, f->comm);
    w_u16(w, f->access);
    w_u8(w, (uint8_t)f->has_fid);
    w_u16(w, f->iso_fid);
    switch (f->type) {
    case SIM_FT_STD:
    case SIM_FT_BACKUP:
        w_u24(w, f->size);
        w_bytes(w, f->data, f->size);
        break;
    case SIM_FT_VALUE:
        w_u32(w, (uint32_t)f->lower);
        w_u32(w, (uint32_t)f->upper);
        w_u32(w, (uint32_t)f->value);
        w_u32(w, (uint32_t)f->limit);
        w_u8(w, f->lc_flags);
        break;
    default:
        w_u24(w, f->rec_size);
        w_u24(w, f->max_recs);
        w_u24(w, f->count);
        w_bytes(w, f->recs, (size_t)f->count * f->rec_size);
        break;
    }
}

static void w_keys(struct wbuf *w, const struct sim_app *a)
{
    int i;

    for (i = 0; i < a->nkeys; i++) {
        w_bytes(w, a->keys[i].key, DFC_MAX_KEY);
        w_u8(w, a->keys[i].aes_version);
    }
}

static void serialize(const struct sim_card *c, struct wbuf *w)
{
    uint8_t napps = 0, nfiles;
    int i, j;

    w_bytes(w, STORE_MAGIC, STORE_MAGIC_LEN);
    w_u16(w, STORE_VERSION);
    w_u8(w, (uint8_t)c->uid_len);
    w_bytes(w, c->uid, c->uid_len);
    w_u8(w, c->picc.settings);
    w_u8(w, c->picc.key_type);
    w_keys(w, &c->picc);
    for (i = 0; i < SIM_MAX_APPS; i++)
        napps = (uint8_t)(napps + (c->apps[i] != NULL));
    w_u8(w, napps);
    for (i = 0; i < SIM_MAX_APPS; i++) {
        const struct sim_app *a = c->apps[i];
        if (a == NULL)
            continue;
        w_u24(w, a->aid);
        w_u8(w, a->settings);
        w_u8(w, a->nkeys);
        w_u8(w, a->key_type);
        w_u8(w, a->iso_flag);
        w_u8(w, (uint8_t)a->has_fid);
        w_u16(w, a->iso_fid);
        w_u8(w, a->dfname_len);
        w_bytes(w, a->dfname, a->dfname_len);
        w_keys(w, a);
        nfiles = 0;
        for (j = 0; j < SIM_MAX_FILES; j++)
            nfiles = (uint8_t)(nfiles + (a->files[j] != NULL));
        w_u8(w, nfiles);
        for (j = 0; j < SIM_MAX_FILES; j++)
            if (a->files[j] != NULL)
                w_file(w, (uint8_t)j, a->files[j]);
    }
}

static int fsync_dir(const char *path)
{
    char *copy = strdup(path);
    int fd, rc = 0;

    if (copy == NULL)
        return OTA_ERR_NOMEM;
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return OTA_ERR_IO;
    if (fsync(fd) != 0)
        rc = OTA_ERR_IO;
    close(fd);
    return rc;
}

int sim_card_save(const struct sim_card *card, const char *path)
{
    struct wbuf w = {0};
    uint8_t hash[STORE_HASH_LEN];
    char *tmp = NULL;
    size_t off = 0;
    int fd = -1, rc = OTA_ERR_IO;

    if (card == NULL || path == NULL)
        return OTA_ERR_INVAL;
    if (sodium_init() < 0)
        return OTA_ERR_CRYPTO;
    serialize(card, &w);
    if (!w.err) {
        crypto_generichash(hash, sizeof hash, w.p, w.n, NULL, 0);
        w_bytes(&w, hash, sizeof hash);
    }
    if (w.err) {
        rc = OTA_ERR_NOMEM;
        goto out;
    }
    if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0) {
        tmp = NULL;
        rc = OTA_ERR_NOMEM;
        goto out;
    }
    fd = mkstemp(tmp);
    if (fd < 0)
        goto out;
    if (fchmod(fd, 0600) != 0)
        goto out;
    while (off < w.n) {
        ssize_t k = write(fd, w.p + off, w.n - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            goto out;
        off += (size_t)k;
    }
    if (fsync(fd) != 0)
        goto out;
    if (close(fd) != 0) {
        fd = -1;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto out;
    free(tmp);
    tmp = NULL;
    rc = fsync_dir(path);
out:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL) {
        unlink(tmp);
        free(tmp);
    }
    if (w.p != NULL) {
        dfc_wipe(w.p, w.cap);
        free(w.p);
    }
    return rc;
}

/* --- loading --- */

struct rbuf {
    const uint8_t *p;
    size_t n, off;
    int err;
};

static const uint8_t *r_bytes(struct rbuf *r, size_t n)
{
    const uint8_t *q;

    if (r->err || n > r->n - r->off) {
        r->err = 1;
        return NULL;
    }
    q = r->p + r->off;
    r->off += n;
    return q;
}

static uint8_t r_u8(struct rbuf *r)
{
    const uint8_t *q = r_bytes(r, 1);
    return q ? q[0] : 0;
}

static uint16_t r_u16(struct rbuf *r)
{
    const uint8_t *q = r_bytes(r, 2);
    return q ? (uint16_t)(q[0] | (q[1] << 8)) : 0;
}

static uint32_t r_u24(struct rbuf *r)
{
    const uint8_t *q = r_bytes(r, 3);
    return q ? sim_le24(q) : 0;
}

static int valid_key_type(uint8_t t)
{
    return t == SIM_KT_DES || t == SIM_KT_3K || t == SIM_KT_AES;
}

static int r_keys(struct rbuf *r, struct sim_app *a)
{
    int i;

    for (i = 0; i < a->nkeys; i++) {
        const uint8_t *k = r_bytes(r, DFC_MAX_KEY);
        if (k == NULL)
            return -1;
        memcpy(a->keys[i].key, k, DFC_MAX_KEY);
        a->keys[i].aes_version = r_u8(r);
    }
    return r->err ? -1 : 0;
}

/* Rebuilds one file through the same constructor CreateXxxFile uses. */
static int r_file(struct rbuf *r, struct sim_app *a)
{
    uint8_t no = r_u8(r), type = r_u8(r), comm = r_u8(r);
    uint16_t access = r_u16(r);
    uint8_t has_fid = r_u8(r);
    uint16_t fid = r_u16(r);
    uint8_t params[13];
    struct sim_file *f;
    const uint8_t *q = NULL;
    uint32_t count = 0;

    if (r->err || type > SIM_FT_CYCLIC || has_fid > 1)
        return -1;
    memset(params, 0, sizeof params);
    switch (type) {
    case SIM_FT_STD:
    case SIM_FT_BACKUP:
        sim_put_le24(params, r_u24(r));
        break;
    case SIM_FT_VALUE:
        /* lower, upper, value, limited-credit value, flags */
        q = r_bytes(r, 17);
        if (q == NULL)
            return -1;
        memcpy(params, q, 12);
        params[12] = q[16];
        break;
    default:
        sim_put_le24(params, r_u24(r));
        sim_put_le24(params + 3, r_u24(r));
        count = r_u24(r);
        break;
    }
    if (r->err || sim_file_new(a, no, type, comm, access, params, &f) != 0)
        return -1;
    f->has_fid = has_fid;
    f->iso_fid = fid;
    a->files[no] = f;
    switch (type) {
    case SIM_FT_STD:
    case SIM_FT_BACKUP:
        q = r_bytes(r, f->size);
        if (q == NULL)
            return -1;
        memcpy(f->data, q, f->size);
        break;
    case SIM_FT_VALUE:
        f->limit = (int32_t)dfc_get_le32(q + 12);
        break;
    default:
        if (count > (type == SIM_FT_CYCLIC ? f->max_recs - 1 : f->max_recs))
            return -1;
        q = r_bytes(r, (size_t)count * f->rec_size);
        if (q == NULL)
            return -1;
        memcpy(f->recs, q, (size_t)count * f->rec_size);
        f->count = count;
        break;
    }
    sim_file_discard(f);
    return 0;
}

static int r_app(struct rbuf *r, struct sim_card *c, int slot)
{
    struct sim_app *a = calloc(1, sizeof *a);
    const uint8_t *q;
    int j, nfiles;

    if (a == NULL)
        return -1;
    c->apps[slot] = a;
    a->aid = r_u24(r);
    a->settings = r_u8(r);
    a->nkeys = r_u8(r);
    a->key_type = r_u8(r);
    a->iso_flag = r_u8(r);
    a->has_fid = r_u8(r);
    a->iso_fid = r_u16(r);
    a->dfname_len = r_u8(r);
    if (r->err || a->aid == 0 || a->aid > 0xFFFFFF || a->nkeys > SIM_MAX_KEYS ||
        !valid_key_type(a->key_type) || (a->iso_flag != 0 && a->iso_flag != 0x20) ||
        a->has_fid > 1 || a->dfname_len > SIM_MAX_DFNAME)
        return -1;
    q = r_bytes(r, a->dfname_len);
    if (q == NULL)
        return -1;
    memcpy(a->dfname, q, a->dfname_len);
    for (j = 0; j < slot; j++)
        if (c->apps[j]->aid == a->aid)
            return -1;
    if (r_keys(r, a) != 0)
        return -1;
    nfiles = r_u8(r);
    if (r->err || nfiles > SIM_MAX_FILES)
        return -1;
    for (j = 0; j < nfiles; j++)
        if (r_file(r, a) != 0)
            return -1;
    return 0;
}

static struct sim_card *deserialize(struct rbuf *r)
{
    const uint8_t *magic = r_bytes(r, STORE_MAGIC_LEN);
    const uint8_t *uid;
    struct sim_card *c;
    uint8_t uid_len, napps;
    int i;

    if (magic == NULL || memcmp(magic, STORE_MAGIC, STORE_MAGIC_LEN) != 0 ||
        r_u16(r) != STORE_VERSION)
        return NULL;
    uid_len = r_u8(r);
    uid = r_bytes(r, uid_len);
    if (uid == NULL)
        return NULL;
    c = sim_card_new(uid, uid_len, SIM_PICC_DES0);
    if (c == NULL)
        return NULL;
    c->picc.settings = r_u8(r);
    c->picc.key_type = r_u8(r);
    if (!valid_key_type(c->picc.key_type) || r_keys(r, &c->picc) != 0)
        goto fail;
    napps = r_u8(r);
    if (r->err || napps > SIM_MAX_APPS)
        goto fail;
    for (i = 0; i < napps; i++)
        if (r_app(r, c, i) != 0)
            goto fail;
    if (r->err || r->off != r->n || sim_mem_used(c) > SIM_MEM_TOTAL)
        goto fail;
    return c;
fail:
    sim_card_free(c);
    return NULL;
}

struct sim_card *sim_card_load(const char *path)
{
    uint8_t *buf = NULL;
    uint8_t hash[STORE_HASH_LEN];
    struct sim_card *c = NULL;
    struct stat st;
    size_t off = 0, len;
    int fd;

    if (path == NULL || sodium_init() < 0)
        return NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 || st.st_size < STORE_MAGIC_LEN + STORE_HASH_LEN ||
        (uint64_t)st.st_size > STORE_MAX_FILE)
        goto out;
    len = (size_t)st.st_size;
    buf = malloc(len);
    if (buf == NULL)
        goto out;
    while (off < len) {
        ssize_t k = read(fd, buf + off, len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            goto out;
        off += (size_t)k;
    }
    crypto_generichash(hash, sizeof hash, buf, len - STORE_HASH_LEN, NULL, 0);
    if (sodium_memcmp(hash, buf + len - STORE_HASH_LEN, STORE_HASH_LEN) != 0)
        goto out;
    {
        struct rbuf r = {buf, len - STORE_HASH_LEN, 0, 0};
        c = deserialize(&r);
    }
out:
    close(fd);
    if (buf != NULL) {
        dfc_wipe(buf, len);
        free(buf);
    }
    return c;
}
