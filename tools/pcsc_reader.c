/* pcsc_reader: PC/SC access for ota-card run (see pcsc_reader.h).  Opened
 * with the shared mode so that pcscd's other clients are not locked out
 * between sessions; each exchange is one SCardTransmit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <winscard.h>

#include "ota_err.h"
#include "pcsc_reader.h"

#define PCSC_READER_NAME_MAX 256

struct pcsc_reader {
    SCARDCONTEXT ctx;
    SCARDHANDLE card;
    DWORD proto;
    int connected;
    char name[PCSC_READER_NAME_MAX];
};

/* Picks a reader from the multi-string list (names separated by NULs). */
static const char *pcsc_pick(const char *list, DWORD len, const char *want)
{
    const char *p, *end = list + len;
    if (want == NULL)
        return list[0] != '\0' ? list : NULL;
    for (p = list; p < end && *p != '\0'; p += strlen(p) + 1)
        if (strcmp(p, want) == 0)
            return p;
    for (p = list; p < end && *p != '\0'; p += strlen(p) + 1)
        if (strstr(p, want) != NULL)
            return p;
    return NULL;
}

int pcsc_reader_open(const char *name, struct pcsc_reader **out, char *err, size_t errlen)
{
    struct pcsc_reader *r = calloc(1, sizeof *r);
    char *list = NULL;
    DWORD len = 0;
    LONG rv;
    const char *pick;
    int ret = OTA_ERR_IO;

    *out = NULL;
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return OTA_ERR_NOMEM;
    }
    rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &r->ctx);
    if (rv != SCARD_S_SUCCESS) {
        snprintf(err, errlen, "cannot reach pcscd: %s", pcsc_stringify_error(rv));
        free(r);
        return OTA_ERR_IO;
    }
    rv = SCardListReaders(r->ctx, NULL, NULL, &len);
    if (rv == SCARD_S_SUCCESS && len > 0) {
        list = calloc(1, len + 1);
        if (list == NULL) {
            ret = OTA_ERR_NOMEM;
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        rv = SCardListReaders(r->ctx, NULL, list, &len);
    }
    if (rv == (LONG)SCARD_E_NO_READERS_AVAILABLE || (rv == SCARD_S_SUCCESS && list == NULL)) {
        snprintf(err, errlen, "no PC/SC reader found");
        ret = OTA_ERR_NOT_FOUND;
        goto fail;
    }
    if (rv != SCARD_S_SUCCESS) {
        snprintf(err, errlen, "cannot list readers: %s", pcsc_stringify_error(rv));
        goto fail;
    }
    pick = pcsc_pick(list, len, name);
    if (pick == NULL) {
        snprintf(err, errlen, "no reader named '%s'", name != NULL ? name : "");
        ret = OTA_ERR_NOT_FOUND;
        goto fail;
    }
    snprintf(r->name, sizeof r->name, "%s", pick);
    rv = SCardConnect(r->ctx, r->name, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                      &r->card, &r->proto);
    if (rv != SCARD_S_SUCCESS) {
        snprintf(err, errlen, "no card in reader '%s': %s", r->name, pcsc_stringify_error(rv));
        goto fail;
    }
    r->connected = 1;
    free(list);
    *out = r;
    return 0;
fail:
    free(list);
    pcsc_reader_close(r);
    return ret;
}

static enum pcsc_status pcsc_classify(LONG rv)
{
    switch (rv) {
    case SCARD_W_REMOVED_CARD:
    case SCARD_W_RESET_CARD:
    case SCARD_W_UNPOWERED_CARD:
    case SCARD_E_NO_SMARTCARD:
        return PCSC_LOST_TAG;
    default:
        return PCSC_IO;
    }
}

enum pcsc_status pcsc_reader_transceive(struct pcsc_reader *r, const uint8_t *apdu, size_t len,
                                        uint8_t *resp, size_t cap, size_t *resp_len, char *err,
                                        size_t errlen)
{
    const SCARD_IO_REQUEST *pci = r->proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
    DWORD rlen = (DWORD)cap;
    LONG rv = SCardTransmit(r->card, pci, apdu, (DWORD)len, NULL, resp, &rlen);

    *resp_len = 0;
    if (rv != SCARD_S_SUCCESS) {
        snprintf(err, errlen, "reader: %s", pcsc_stringify_error(rv));
        return pcsc_classify(rv);
    }
    if (rlen < 2 || rlen > cap) {
        snprintf(err, errlen, "reader returned %lu bytes", (unsigned long)rlen);
        return PCSC_IO;
    }
    *resp_len = rlen;
    return PCSC_OK;
}

int pcsc_reader_uid(struct pcsc_reader *r, uint8_t *uid, size_t cap, size_t *len, char *err,
                    size_t errlen)
{
    static const uint8_t get_uid[] = {0xFF, 0xCA, 0x00, 0x00, 0x00};
    uint8_t resp[32];
    size_t n = 0;

    if (pcsc_reader_transceive(r, get_uid, sizeof get_uid, resp, sizeof resp, &n, err, errlen) !=
        PCSC_OK)
        return OTA_ERR_IO;
    if (resp[n - 2] != 0x90 || resp[n - 1] != 0x00) {
        snprintf(err, errlen, "the reader refused GET DATA (UID): SW %02X%02X", resp[n - 2],
                 resp[n - 1]);
        return OTA_ERR_CARD_STATUS;
    }
    n -= 2;
    if ((n != 4 && n != 7 && n != 10) || n > cap) {
        snprintf(err, errlen, "the reader returned a %zu-byte UID", n);
        return OTA_ERR_LENGTH;
    }
    memcpy(uid, resp, n);
    *len = n;
    return 0;
}

const char *pcsc_reader_name(const struct pcsc_reader *r)
{
    return r->name;
}

void pcsc_reader_close(struct pcsc_reader *r)
{
    if (r == NULL)
        return;
    if (r->connected)
        SCardDisconnect(r->card, SCARD_LEAVE_CARD);
    SCardReleaseContext(r->ctx);
    free(r);
}
