/* ctl_operator: `ota-ctl operator token-hash`: reads an operator token on
 * stdin (first line) and prints its crypto_pwhash_str hash for
 * worker.operator_token_hash.  The worker verifies tokens with
 * crypto_pwhash_str_verify.  Must never print or keep the token (read into
 * sodium_malloc memory, wiped). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

#define TOKEN_MAX 1024

int ctl_cmd_operator(struct ctl *c, int argc, char **argv)
{
    (void)c;
    if (argc != 1 || strcmp(argv[0], "token-hash") != 0) {
        fprintf(stderr, "usage: ota-ctl operator token-hash < TOKEN_FILE\n");
        return CTL_EXIT_USAGE;
    }
    if (sodium_init() < 0)
        return CTL_EXIT_FAIL;
    char *tok = sodium_malloc(TOKEN_MAX + 2);
    if (tok == NULL) {
        fprintf(stderr, "ota-ctl: out of locked memory\n");
        return CTL_EXIT_FAIL;
    }
    int rc = CTL_EXIT_FAIL;
    if (fgets(tok, TOKEN_MAX + 2, stdin) == NULL) {
        fprintf(stderr, "ota-ctl: no token on stdin\n");
    } else if (strlen(tok) > TOKEN_MAX && tok[TOKEN_MAX] != '\n') {
        fprintf(stderr, "ota-ctl: the token is longer than %d bytes\n", TOKEN_MAX);
    } else {
        tok[strcspn(tok, "\r\n")] = '\0';
        size_t n = strlen(tok);
        char out[crypto_pwhash_STRBYTES];
        if (n < 16)
            fprintf(stderr, "ota-ctl: an operator token needs at least 16 characters\n");
        else if (crypto_pwhash_str(out, tok, n, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                   crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
            fprintf(stderr, "ota-ctl: hashing failed (out of memory)\n");
        else {
            puts(out);
            rc = CTL_EXIT_OK;
        }
    }
    sodium_free(tok);
    return rc;
}
