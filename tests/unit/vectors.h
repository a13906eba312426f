/* vectors: loader of the public DESFire EV1 vector files
 * (tests/vectors/\*.json) for unit tests.  Any test may reuse it; it only
 * reads files and converts hex, it never decides what a vector means. */
#ifndef OTA_TEST_VECTORS_H
#define OTA_TEST_VECTORS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define VEC_ABSENT (-1)
#define VEC_BAD (-2)

/* Writes $OTA_SRCDIR/tests/vectors (or the source dir compiled in) to buf.
 * Returns 0, or -1 if it does not fit. */
int vec_dir(char *buf, size_t cap);
/* Sorted names (not paths) of the *.json files in dir.  Returns the count
 * and *names (free with vec_list_free), or -1. */
int vec_list(const char *dir, char ***names);
void vec_list_free(char **names, int n);
/* Parses dir/name and checks it is {"entries": [...]}.  NULL (with a
 * message on stderr) on error; json_decref the result. */
json_t *vec_load(const char *dir, const char *name);
/* Decodes the hex string field key of obj into out.  Returns the byte
 * count, VEC_ABSENT (missing or null) or VEC_BAD (not hex, too long). */
int vec_hex(const json_t *obj, const char *key, uint8_t *out, size_t cap);
/* Decodes a hex JSON string (an array element). */
int vec_hex_value(const json_t *v, uint8_t *out, size_t cap);
/* String field or NULL. */
const char *vec_str(const json_t *obj, const char *key);
/* Integer field: 1 and *out if present, 0 if missing or null, VEC_BAD if
 * not an integer. */
int vec_int(const json_t *obj, const char *key, long long *out);
/* Whole file into malloc'ed memory; NULL on error. */
uint8_t *vec_read_file(const char *path, size_t *len);

#endif
