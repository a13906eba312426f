/* engine_cfg: struct eng_config from the configuration; see engine_cfg.h. */
#include "engine_cfg.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "config.h"

int eng_config_read(const struct cfg *c, struct eng_config *ec, char *err, size_t cap)
{
    memset(ec, 0, sizeof *ec);
    const char *sysid = cfg_str(c, "card.system_id");
    size_t n = strlen(sysid);
    if (n == 0 || n > ENG_SYSTEM_ID_MAX) {
        snprintf(err, cap, "key=card.system_id detail=\"1 to %d bytes\"", ENG_SYSTEM_ID_MAX);
        return -1;
    }
    memcpy(ec->system_id, sysid, n + 1);
    const char *picc = cfg_str(c, "card.picc_key");
    if (strcmp(picc, "des0") == 0) {
        ec->picc_key = ENG_PICC_DES0;
    } else if (strcmp(picc, "aes0") == 0) {
        ec->picc_key = ENG_PICC_AES0;
    } else {
        snprintf(err, cap, "key=card.picc_key value=%s", picc);
        return -1;
    }
    struct {
        const char *key;
        uint32_t *dst;
    } u32[] = {
        {"worker.response_timeout_ms", &ec->response_timeout_ms},
        {"worker.operation_timeout_ms", &ec->operation_timeout_ms},
        {"worker.lease_ms", &ec->lease_ms},
        {"worker.code_failures_per_card", &ec->code_failures_per_card},
        {"worker.code_failures_per_peer", &ec->code_failures_per_peer},
        {"worker.code_failure_window_s", &ec->code_failure_window_s},
        {"worker.code_failure_delay_ms", &ec->code_failure_delay_ms},
        /* The engine's closing grace outlasts the ledger's own timeout. */
        {"db.request_timeout_ms", &ec->ledger_timeout_ms},
    };
    for (size_t i = 0; i < sizeof u32 / sizeof u32[0]; i++) {
        long long v = cfg_int(c, u32[i].key);
        if (v <= 0 || v > UINT32_MAX) {
            snprintf(err, cap, "key=%s value=%lld", u32[i].key, v);
            return -1;
        }
        *u32[i].dst = (uint32_t)v;
    }
    ec->max_amount = cfg_int(c, "topup.max_amount");
    randombytes_buf(ec->instance, sizeof ec->instance);
    return 0;
}
