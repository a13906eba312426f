/* proxy: PROXY protocol v1 (text) and v2 (binary) parsing; see proxy.h.
 * Every address is re-validated through inet_pton/inet_ntop, so what
 * reaches the logs and the workers is a canonical address or nothing.
 * This file must never read past len. */
#include "proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define V1_MAX 107
#define V2_SIG "\r\n\r\n\0\r\nQUIT\n"
#define V2_SIG_LEN 12
#define V2_MAX_BODY 1024

static enum pp_status bad(struct pp_result *r, const char *why)
{
    r->why = why;
    return PP_ERROR;
}

static int parse_port(const char *s, uint16_t *out)
{
    if (!*s || strlen(s) > 5 || (s[0] == '0' && s[1]))
        return -1;
    unsigned long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static enum pp_status parse_v1(const uint8_t *buf, size_t len, struct pp_result *r)
{
    size_t n = len < V1_MAX ? len : V1_MAX;
    const uint8_t *cr = NULL;
    for (size_t i = 0; i + 1 < n; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n') {
            cr = buf + i;
            break;
        }
    }
    if (!cr)
        return len >= V1_MAX ? bad(r, "PROXY v1 line too long") : PP_NEED_MORE;
    char line[V1_MAX + 1];
    size_t ln = (size_t)(cr - buf);
    memcpy(line, buf, ln);
    line[ln] = '\0';
    for (size_t i = 0; i < ln; i++)
        if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] > 0x7e)
            return bad(r, "PROXY v1 bad character");
    r->consumed = ln + 2;
    char *f[7];
    int nf = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        if (nf == 6)
            return bad(r, "PROXY v1 too many fields");
        f[nf++] = t;
    }
    if (nf < 2 || strcmp(f[0], "PROXY") != 0)
        return bad(r, "PROXY v1 malformed");
    if (strcmp(f[1], "UNKNOWN") == 0) {
        r->has_addr = 0;
        return PP_OK;
    }
    int af;
    if (strcmp(f[1], "TCP4") == 0)
        af = AF_INET;
    else if (strcmp(f[1], "TCP6") == 0)
        af = AF_INET6;
    else
        return bad(r, "PROXY v1 unknown protocol");
    if (nf != 6)
        return bad(r, "PROXY v1 malformed");
    unsigned char a[16];
    uint16_t sport, dport;
    if (inet_pton(af, f[2], a) != 1 || inet_pton(af, f[3], a) != 1 ||
        parse_port(f[4], &sport) != 0 || parse_port(f[5], &dport) != 0)
        return bad(r, "PROXY v1 bad address or port");
    inet_pton(af, f[2], a);
    if (!inet_ntop(af, a, r->addr, sizeof r->addr))
        return bad(r, "PROXY v1 bad address");
    r->port = sport;
    r->has_addr = 1;
    return PP_OK;
}

static enum pp_status parse_v2(const uint8_t *buf, size_t len, struct pp_result *r)
{
    if (len < 16)
        return PP_NEED_MORE;
    uint8_t ver_cmd = buf[12], fam = buf[13];
    size_t body = (size_t)buf[14] << 8 | buf[15];
    if ((ver_cmd >> 4) != 2)
        return bad(r, "PROXY v2 bad version");
    if (body > V2_MAX_BODY)
        return bad(r, "PROXY v2 header too long");
    if (len < 16 + body)
        return PP_NEED_MORE;
    r->consumed = 16 + body;
    uint8_t cmd = ver_cmd & 0x0f;
    if (cmd == 0) { /* LOCAL: the balancer's own health check */
        r->has_addr = 0;
        return PP_OK;
    }
    if (cmd != 1)
        return bad(r, "PROXY v2 bad command");
    const uint8_t *p = buf + 16;
    switch (fam) {
    case 0x11: /* TCP over IPv4 */
    case 0x12: /* UDP over IPv4 */
        if (body < 12)
            return bad(r, "PROXY v2 short IPv4 block");
        if (!inet_ntop(AF_INET, p, r->addr, sizeof r->addr))
            return bad(r, "PROXY v2 bad address");
        r->port = (uint16_t)(p[8] << 8 | p[9]);
        break;
    case 0x21:
    case 0x22:
        if (body < 36)
            return bad(r, "PROXY v2 short IPv6 block");
        if (!inet_ntop(AF_INET6, p, r->addr, sizeof r->addr))
            return bad(r, "PROXY v2 bad address");
        r->port = (uint16_t)(p[32] << 8 | p[33]);
        break;
    case 0x00:
        r->has_addr = 0;
        return PP_OK;
    default:
        return bad(r, "PROXY v2 unsupported address family");
    }
    r->has_addr = 1;
    return PP_OK;
}

enum pp_status pp_parse(const uint8_t *buf, size_t len, struct pp_result *r)
{
    memset(r, 0, sizeof *r);
    size_t cmp = len < V2_SIG_LEN ? len : V2_SIG_LEN;
    if (memcmp(buf, V2_SIG, cmp) == 0) {
        if (len < V2_SIG_LEN)
            return PP_NEED_MORE;
        return parse_v2(buf, len, r);
    }
    cmp = len < 6 ? len : 6;
    if (memcmp(buf, "PROXY ", cmp) == 0) {
        if (len < 6)
            return PP_NEED_MORE;
        return parse_v1(buf, len, r);
    }
    return bad(r, "no PROXY header from a proxy peer");
}
