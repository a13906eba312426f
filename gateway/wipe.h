/* wipe: memory that may have held a client's authCode is wiped before it
 * is reused.  A wiping free and realloc for the libraries that take an
 * allocator (libevent's buffers: event_set_mem_functions), and a stack
 * scrub for the copies that no free ever sees: the frames of the calls
 * that parsed, encoded and sent the operation message, and the vector
 * registers the dynamic linker or a signal saves below them.  Blocks must
 * come from malloc (their size is malloc_usable_size). */
#ifndef GW_WIPE_H
#define GW_WIPE_H

#include <stddef.h>

/* Bytes of stack wipe_stack clears below its caller: more than the
 * deepest call chain of the gateway's event loop (about 22 KB measured
 * under a client message, including a lazily bound call's saved
 * registers). */
#define WIPE_STACK_BYTES (64 * 1024)

void wipe_free(void *p);
/* realloc that never leaves the old block's bytes in freed memory. */
void *wipe_realloc(void *p, size_t n);
/* Zeroes WIPE_STACK_BYTES of the stack below the caller's frame. */
void wipe_stack(void);

#endif
