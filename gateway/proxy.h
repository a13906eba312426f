/* proxy: the PROXY protocol header (HAProxy, versions 1 and 2) that a load
 * balancer puts before the client's bytes.  Pure: bytes in, the client
 * address out.  Only consulted for peers in gateway.proxy_protocol_from. */
#ifndef GW_PROXY_H
#define GW_PROXY_H

#include <stddef.h>
#include <stdint.h>

#define PP_ADDR_MAX 46 /* INET6_ADDRSTRLEN */

enum pp_status { PP_NEED_MORE = 0, PP_OK = 1, PP_ERROR = 2 };

struct pp_result {
    size_t consumed; /* header bytes to drop */
    int has_addr;    /* 0: LOCAL / UNKNOWN: keep the TCP peer's address */
    char addr[PP_ADDR_MAX];
    uint16_t port;
    const char *why; /* on PP_ERROR */
};

enum pp_status pp_parse(const uint8_t *buf, size_t len, struct pp_result *r);

#endif
