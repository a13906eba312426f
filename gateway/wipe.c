/* wipe: wiping free, realloc and stack scrub; see wipe.h.  Never frees a
 * block without zeroing all of it first. */
#include "wipe.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

void wipe_free(void *p)
{
    if (!p)
        return;
    sodium_memzero(p, malloc_usable_size(p));
    free(p);
}

/* Always moves: glibc's realloc may move the block and free the old one
 * unwiped, so the copy is made here. */
void *wipe_realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (n == 0) {
        wipe_free(p);
        return NULL;
    }
    void *q = malloc(n);
    if (!q)
        return NULL;
    size_t old = malloc_usable_size(p);
    memcpy(q, p, old < n ? old : n);
    wipe_free(p);
    return q;
}

/* noinline: the array must lie below the caller's frame, not inside it. */
__attribute__((noinline)) void wipe_stack(void)
{
    unsigned char area[WIPE_STACK_BYTES];
    sodium_memzero(area, sizeof area);
}
