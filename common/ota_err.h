/* ota_err: the project's one error-code enum and its string table.
 * Functions return 0 (OTA_OK) or one of these negative codes; the edge that
 * decides what to do logs it once with ota_strerror(). */
#ifndef OTA_ERR_H
#define OTA_ERR_H

enum ota_err {
    OTA_OK = 0,
    OTA_ERR_INVAL = -1,       /* bad argument from our own code */
    OTA_ERR_NOMEM = -2,       /* allocation failed */
    OTA_ERR_CRYPTO = -3,      /* the crypto library failed */
    OTA_ERR_LENGTH = -4,      /* a length is wrong or exceeds a limit */
    OTA_ERR_MAC = -5,         /* a CMAC did not verify (integrity) */
    OTA_ERR_CRC = -6,         /* a CRC or padding did not verify (integrity) */
    OTA_ERR_CARD_STATUS = -7, /* the card answered an error status */
    OTA_ERR_SW1 = -8,         /* the answer's SW1 is not 0x91 */
    OTA_ERR_STATE = -9,       /* call not valid in the current state */
    OTA_ERR_AUTH = -10,       /* authentication failed (card said AE, or RndA' wrong) */
    OTA_ERR_PARSE = -11,      /* malformed input */
    OTA_ERR_IO = -12,         /* file or socket error */
    OTA_ERR_LIMIT = -13,      /* a configured limit was reached */
    OTA_ERR_NOT_FOUND = -14,  /* no such thing */
    OTA_ERR_INTERNAL = -15,   /* a bug: an invariant of our own was broken */
};

/* Static, never NULL, never contains secrets. */
const char *ota_strerror(int err);

#endif
