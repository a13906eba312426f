/* fuzz_gw_climsg: libFuzzer target for the gateway's JSON client message
 * parser (gateway/climsg.c), fed exactly what the connection hands it: a
 * text message that wslay reassembled and gateway/utf8.c accepted.  On
 * success the parsed fields must respect their bounds, and the messages
 * built from them (command, modal, result with the echoed requestId) must
 * be valid JSON again.  Must never allocate without a bound or leak.
 *
 * Build and run: tests/fuzz/run.sh fuzz_gw_climsg
 * Seeds: tests/fuzz/corpus/fuzz_gw_climsg/ */
// FUZZ-SOURCES: gateway/climsg.c gateway/utf8.c common/hex.c common/wire.c common/buf.c
// FUZZ-SOURCES: common/ota_err.c
// FUZZ-LIBS: -ljansson -lsodium
// FUZZ-MAX-LEN: 8192
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "climsg.h"
#include "utf8.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parses text again and requires an object with the given type (a modal
 * may carry U+0000: JSON escapes it as \u0000). */
static void must_reparse(char *text, const char *type)
{
    if (!text)
        return; /* out of memory (or a modal that is not UTF-8) */
    json_error_t e;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    const char *t = o && json_is_object(o) ? json_string_value(json_object_get(o, "type")) : NULL;
    if (!t || strcmp(t, type) != 0)
        abort();
    json_decref(o);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* conn.c only hands over what utf8_valid accepted; the parser must be
     * safe on anything anyway, so invalid UTF-8 is parsed too. */
    int valid = utf8_valid(data, size);
    struct cm_msg m;
    const char *why = NULL;
    int rc = cm_parse(data, size, &m, &why);
    if (rc != 0) {
        if (!why || m.request_id || m.authcode_len)
            abort();
        return 0;
    }
    switch (m.type) {
    case CM_OPERATION:
        if (m.op < WIRE_OP_CHECK || m.op > WIRE_OP_PERSONALIZE)
            abort();
        if (m.uid_len != 4 && m.uid_len != 7)
            abort();
        if (m.batch < 1 || m.batch > WIRE_MAX_BATCH)
            abort();
        if (m.authcode_len > WIRE_MAX_AUTHCODE || m.authcode[m.authcode_len] != '\0' ||
            strlen(m.authcode) != m.authcode_len)
            abort();
        if (m.request_id && !json_is_string(m.request_id) && !json_is_number(m.request_id))
            abort();
        break;
    case CM_RESPONSE:
        if (m.data_len > WIRE_MAX_APDU)
            abort();
        must_reparse(cm_build_command(m.data, m.data_len), "command");
        break;
    case CM_RESPONSES:
        /* v2: at most a batch of answers, each an APDU answer, and a
         * client error only of a known kind. */
        if (m.n_answers > WIRE_MAX_BATCH)
            abort();
        for (unsigned i = 0; i < m.n_answers; i++)
            if (m.answers[i].len > WIRE_MAX_APDU)
                abort();
        if (m.err_kind != 0 && m.err_kind != WIRE_CERR_LOST_TAG && m.err_kind != WIRE_CERR_IO &&
            m.err_kind != WIRE_CERR_TIMEOUT)
            abort();
        break;
    case CM_ERROR:
        if (m.err_kind != WIRE_CERR_LOST_TAG && m.err_kind != WIRE_CERR_IO &&
            m.err_kind != WIRE_CERR_TIMEOUT)
            abort();
        break;
    default:
        abort();
    }
    struct wire_result r;
    memset(&r, 0, sizeof r);
    r.op = m.op;
    r.status = WIRE_ST_FAILED;
    r.error = WIRE_E_BAD_REQUEST;
    must_reparse(cm_build_result(&r, m.request_id), "result");
    if (valid)
        must_reparse(cm_build_modal((const char *)data, size), "modal");
    cm_msg_clear(&m);
    if (m.request_id || m.authcode_len)
        abort();
    return 0;
}
