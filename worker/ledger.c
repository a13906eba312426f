/* ledger: stable names of the ledger requests and statuses, for logs and
 * metrics.  Knows nothing of SQL or of any ledger implementation. */
#include "ledger.h"

const char *ledger_req_name(enum ledger_req_type t)
{
    switch (t) {
    case LEDGER_LEASE_ACQUIRE:
        return "lease_acquire";
    case LEDGER_LEASE_RELEASE:
        return "lease_release";
    case LEDGER_CARD_STATE:
        return "card_state";
    case LEDGER_SETTLE:
        return "settle";
    case LEDGER_RESERVE:
        return "reserve";
    case LEDGER_CODE_FAILURE:
        return "code_failure";
    case LEDGER_INTEGRITY_FAILURE:
        return "integrity_failure";
    case LEDGER_INTEGRITY_RESET:
        return "integrity_reset";
    case LEDGER_FREEZE:
        return "freeze";
    case LEDGER_PERSONALIZED:
        return "personalized";
    case LEDGER_BEGIN:
        return "begin";
    }
    return "unknown";
}

const char *ledger_status_name(enum ledger_status st)
{
    switch (st) {
    case LEDGER_ST_OK:
        return "ok";
    case LEDGER_ST_BUSY:
        return "busy";
    case LEDGER_ST_CODE_INVALID:
        return "code-invalid";
    case LEDGER_ST_CODE_USED:
        return "code-used";
    case LEDGER_ST_LIMIT_EXCEEDED:
        return "limit-exceeded";
    case LEDGER_ST_CONFLICT:
        return "conflict";
    case LEDGER_ST_ERROR:
        return "error";
    }
    return "unknown";
}
