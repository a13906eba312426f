/* card_result: what a `result` message means to a person and to a shell.
 * The stable error codes of docs/PROTOCOL.md §4, a sentence for each, the human
 * line ota-card run prints, and the exit status it returns.  Shared with
 * ota-load (code names for its failure table).  It must never print a
 * code or token: results carry none. */
#ifndef CARD_RESULT_H
#define CARD_RESULT_H

#include <stddef.h>

#include <jansson.h>

/* Exit statuses of ota-card run (card_cmd.h has 0, 1 and 2). */
#define CARD_EXIT_PENDING 3
#define CARD_EXIT_CONN 4

/* The sentence for an error code of docs/PROTOCOL.md §4, or NULL if unknown. */
const char *card_result_explain(const char *code);
/* The number of codes and the i-th one (for tables). */
int card_result_code_count(void);
const char *card_result_code(int i);

/* Writes one line for a result object (no newline).  Returns the exit
 * status it stands for: 0 ok, 1 failed, 3 pending, or 4 when the result
 * is malformed (no status string, or an unknown status). */
int card_result_format(const json_t *result, char *out, size_t cap);

#endif
