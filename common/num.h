/* num: strict decimal integers from text (configuration values, command
 * line options, database fields): the whole string, nothing before or
 * after, in range.  One place for what strtol leaves to every caller. */
#ifndef OTA_NUM_H
#define OTA_NUM_H

/* Parses s as a decimal integer in [min, max] into *out.  Returns 0, or
 * OTA_ERR_PARSE (NULL or empty, junk after the digits, overflow, out of
 * range) leaving *out untouched. */
int num_parse_ll(const char *s, long long min, long long max, long long *out);

#endif
