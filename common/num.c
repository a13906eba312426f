/* num: strict decimal integers from text. */
#include "num.h"

#include <errno.h>
#include <stdlib.h>

#include "ota_err.h"

int num_parse_ll(const char *s, long long min, long long max, long long *out)
{
    if (s == NULL || *s == '\0')
        return OTA_ERR_PARSE;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return OTA_ERR_PARSE;
    *out = v;
    return 0;
}
