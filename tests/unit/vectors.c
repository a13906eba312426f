/* vectors: loader of the public DESFire EV1 vector files for unit tests.
 * Reads and converts only; never skips an entry or a file on its own. */
#include "vectors.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"

#ifndef OTA_SRCDIR
#define OTA_SRCDIR "."
#endif

int vec_dir(char *buf, size_t cap)
{
    const char *src = getenv("OTA_SRCDIR");
    int n;

    if (src == NULL || src[0] == '\0')
        src = OTA_SRCDIR;
    n = snprintf(buf, cap, "%s/tests/vectors", src);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int vec_list(const char *dir, char ***names)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **v = NULL, **nv;
    int n = 0;
    size_t len;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        len = strlen(e->d_name);
        if (len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        nv = realloc(v, (size_t)(n + 1) * sizeof *v);
        if (nv == NULL)
            goto fail;
        v = nv;
        v[n] = strdup(e->d_name);
        if (v[n] == NULL)
            goto fail;
        n++;
    }
    closedir(d);
    if (n > 0)
        qsort(v, (size_t)n, sizeof *v, cmp_names);
    *names = v;
    return n;
fail:
    closedir(d);
    vec_list_free(v, n);
    return -1;
}

void vec_list_free(char **names, int n)
{
    int i;

    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

json_t *vec_load(const char *dir, const char *name)
{
    char path[4096];
    json_error_t err;
    json_t *root;

    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return NULL;
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (root == NULL) {
        fprintf(stderr, "%s:%d: %s\n", path, err.line, err.text);
        return NULL;
    }
    if (!json_is_object(root) || !json_is_array(json_object_get(root, "entries"))) {
        fprintf(stderr, "%s: no \"entries\" array\n", path);
        json_decref(root);
        return NULL;
    }
    return root;
}

int vec_hex_value(const json_t *v, uint8_t *out, size_t cap)
{
    const char *s;
    int n;

    if (v == NULL || json_is_null(v))
        return VEC_ABSENT;
    if (!json_is_string(v))
        return VEC_BAD;
    s = json_string_value(v);
    if (s[0] == '\0')
        return 0;
    n = hex_decode(s, strlen(s), out, cap);
    return n < 0 ? VEC_BAD : n;
}

int vec_hex(const json_t *obj, const char *key, uint8_t *out, size_t cap)
{
    return vec_hex_value(json_object_get(obj, key), out, cap);
}

const char *vec_str(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

int vec_int(const json_t *obj, const char *key, long long *out)
{
    const json_t *v = json_object_get(obj, key);

    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return VEC_BAD;
    *out = json_integer_value(v);
    return 1;
}

uint8_t *vec_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL, *nb;
    size_t cap = 0, n = 0, got;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}
