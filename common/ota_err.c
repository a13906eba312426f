/* ota_err: string table for enum ota_err. */
#include "ota_err.h"

const char *ota_strerror(int err)
{
    switch (err) {
    case OTA_OK:
        return "ok";
    case OTA_ERR_INVAL:
        return "invalid argument";
    case OTA_ERR_NOMEM:
        return "out of memory";
    case OTA_ERR_CRYPTO:
        return "crypto library failure";
    case OTA_ERR_LENGTH:
        return "bad length";
    case OTA_ERR_MAC:
        return "MAC verification failed";
    case OTA_ERR_CRC:
        return "CRC or padding verification failed";
    case OTA_ERR_CARD_STATUS:
        return "card answered an error status";
    case OTA_ERR_SW1:
        return "answer SW1 is not 0x91";
    case OTA_ERR_STATE:
        return "invalid state";
    case OTA_ERR_AUTH:
        return "authentication failed";
    case OTA_ERR_PARSE:
        return "malformed input";
    case OTA_ERR_IO:
        return "I/O error";
    case OTA_ERR_LIMIT:
        return "limit reached";
    case OTA_ERR_NOT_FOUND:
        return "not found";
    case OTA_ERR_INTERNAL:
        return "internal error";
    }
    return "unknown error";
}
