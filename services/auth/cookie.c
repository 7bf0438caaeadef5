/*
 * The login cookie, and whether it gets Secure.
 *
 * svckit serves plain HTTP; TLS ends in front of it, at a proxy that says so
 * with X-Forwarded-Proto. Anyone can send that header, so it counts only
 * from a peer listed in TRUSTED_PROXIES: svc_req_peer, which is the TCP peer
 * over HTTP and, over NATS, the address the gateway saw (Svc-Client, which
 * the gateway never takes from a client). A client talking to auth or the
 * gateway directly is not a trusted proxy, so it can neither add Secure nor
 * take it away.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth_service.h"

typedef cookie_network network;

void cookie_declare(svc_app *app) {
    svc_app_env_declare(app, "COOKIE_SECURE", "auto",
                        "Secure on the login cookie: always, never, or auto (when a trusted proxy says https)");
    svc_app_env_declare(app, "TRUSTED_PROXIES", NULL,
                        "addresses or networks (a.b.c.d/n, ipv6/n), comma-separated, whose X-Forwarded-Proto "
                        "is believed");
}

/* An address as 4 or 16 bytes; an IPv4-mapped IPv6 address is IPv4. */
static int parse_addr(const char *s, int *family, unsigned char addr[16]) {
    if (inet_pton(AF_INET, s, addr) == 1) {
        *family = AF_INET;
        return 1;
    }
    if (inet_pton(AF_INET6, s, addr) != 1) return 0;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(addr, mapped, sizeof mapped) == 0) {
        memmove(addr, addr + 12, 4);
        *family = AF_INET;
    } else {
        *family = AF_INET6;
    }
    return 1;
}

static int parse_network(const char *s, size_t len, network *n) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    if (slash) *slash = '\0';
    if (!parse_addr(buf, &n->family, n->addr)) return 0;
    int bits = n->family == AF_INET ? 32 : 128;
    n->prefix = bits;
    if (slash) {
        int64_t p;
        if (svc_parse_i64(slash + 1, &p) != SVC_OK || p < 0 || p > bits) return 0;
        n->prefix = (int)p;
    }
    return 1;
}

int cookie_configure(svc_app *app, cookie_config *cc) {
    const char *m = svc_app_env(app, "COOKIE_SECURE");
    if (strcmp(m, "auto") == 0) cc->mode = SECURE_AUTO;
    else if (strcmp(m, "always") == 0) cc->mode = SECURE_ALWAYS;
    else if (strcmp(m, "never") == 0) cc->mode = SECURE_NEVER;
    else {
        svc_error("invalid configuration: COOKIE_SECURE=\"%.40s\": expected auto, always or never", m);
        return SVC_EINVAL;
    }
    const char *list = svc_app_env(app, "TRUSTED_PROXIES");
    cc->nproxies = 0;
    for (const char *p = list ? list : ""; *p;) {
        p += strspn(p, " ");
        size_t n = strcspn(p, ",");
        size_t len = n;
        while (len > 0 && p[len - 1] == ' ') len--;
        if (cc->nproxies == AUTH_TRUSTED_PROXIES_MAX || !parse_network(p, len, &cc->proxies[cc->nproxies])) {
            svc_error("invalid configuration: TRUSTED_PROXIES=\"%.80s\": expected at most %d addresses or "
                      "networks (a.b.c.d[/n], ipv6[/n]), comma-separated",
                      list, AUTH_TRUSTED_PROXIES_MAX);
            return SVC_EINVAL;
        }
        cc->nproxies++;
        p += n;
        if (*p == ',') p++;
    }
    return SVC_OK;
}

static int in_network(const network *n, int family, const unsigned char *addr) {
    if (n->family != family) return 0;
    int whole = n->prefix / 8, rest = n->prefix % 8;
    if (memcmp(n->addr, addr, (size_t)whole) != 0) return 0;
    if (!rest) return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (n->addr[whole] & mask) == (addr[whole] & mask);
}

static int trusted(const cookie_config *cc, const char *peer) {
    int family;
    unsigned char addr[16];
    if (!cc->nproxies || !parse_addr(peer, &family, addr)) return 0;
    for (int i = 0; i < cc->nproxies; i++)
        if (in_network(&cc->proxies[i], family, addr)) return 1;
    return 0;
}

/* What the nearest proxy said: the last X-Forwarded-Proto field, and in it
 * the last element (a proxy that appends puts its own view last; what comes
 * before may be the client's). */
static int forwarded_https(svc_req *req) {
    const char *name, *value, *last = NULL;
    for (size_t i = 0; svc_req_header_at(req, i, &name, &value) == SVC_OK; i++)
        if (strcasecmp(name, "X-Forwarded-Proto") == 0) last = value;
    if (!last) return 0;
    const char *comma = strrchr(last, ',');
    const char *p = comma ? comma + 1 : last;
    p += strspn(p, " \t");
    size_t n = strcspn(p, " \t");
    return n == 5 && strncasecmp(p, "https", 5) == 0 && p[n + strspn(p + n, " \t")] == '\0';
}

static int secure(svc_req *req, const cookie_config *cc) {
    if (cc->mode != SECURE_AUTO) return cc->mode == SECURE_ALWAYS;
    return trusted(cc, svc_req_peer(req)) && forwarded_https(req);
}

const char *cookie_for(svc_req *req, const cookie_config *cc, const char *token, int64_t ttl) {
    return svc_arena_printf(svc_req_arena(req), "token=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%lld%s",
                            token, (long long)ttl, secure(req, cc) ? "; Secure" : "");
}
