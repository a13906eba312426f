/* card_profile: the card layout of docs/PROTOCOL.md section 5, in one place.
 * Every other module (worker, simulator, ota-card, tests) takes these
 * values from here. */
#ifndef CARD_PROFILE_H
#define CARD_PROFILE_H

#include <stdint.h>

/* Application C0FFEE, sent LSB first. */
#define PROF_AID_0 0xEE
#define PROF_AID_1 0xFF
#define PROF_AID_2 0xC0
#define PROF_AID_U32 0xC0FFEEu

#define PROF_KEY_MASTER 0 /* application master key */
#define PROF_KEY_READ 1   /* GetValue; Debit at terminals */
#define PROF_KEY_CREDIT 2 /* the server: GetValue, Credit, WriteRecord, ReadRecords */
#define PROF_KEY_DEBIT 3  /* terminals; never used by the server */
#define PROF_NUM_KEYS 4
/* The fifth master key: diversified into the PICC master key at
 * personalization (index in the key file). */
#define PROF_MASTER_PICC 4
#define PROF_NUM_MASTERS 5

/* Application key settings: keys changed only under the master key (high
 * nibble 0), configuration changeable, create/delete files needs the master
 * key, free directory listing (so GetFileSettings works under key 2),
 * master key changeable. */
#define PROF_APP_KEY_SETTINGS 0x0B
/* PICC key settings after personalization: changeable master key, listing
 * and create/delete need the PICC master key, settings changeable. */
#define PROF_PICC_KEY_SETTINGS 0x09

#define PROF_FILE_VALUE 1
#define PROF_FILE_RECORDS 2
#define PROF_COMM_ENC 0x03
/* Access rights as 16 bits: Read<<12 | Write<<8 | ReadWrite<<4 | Change
 * (wire order: byte0 = ReadWrite<<4|Change, byte1 = Read<<4|Write). */
#define PROF_VALUE_ACCESS 0x1320  /* Read=1 Write=3 RW=2 Change=0 */
#define PROF_RECORD_ACCESS 0x22F0 /* Read=2 Write=2 RW=never Change=0 */
#define PROF_VALUE_LOWER 0
#define PROF_VALUE_UPPER 1000000
#define PROF_VALUE_INITIAL 0
#define PROF_LIMITED_CREDIT 0
#define PROF_RECORD_SIZE 32
#define PROF_RECORD_COUNT 8

/* Record: txn_id(16) || amount(int32 LE) || balance_after(int32 LE) ||
 * unix_time(uint32 LE) || 4 zero bytes. */
#define PROF_REC_TXN 0
#define PROF_REC_AMOUNT 16
#define PROF_REC_BALANCE 20
#define PROF_REC_TIME 24

#define PROF_SYSTEM_ID_DEFAULT "OTA1"
#define PROF_UID_LEN 7

#endif
