/*
 * What crosses the gateway, in both directions. Allow-lists, not deny-lists:
 * a header the gateway does not know is not forwarded, so a client can never
 * smuggle one that a service trusts because "only the gateway sets it"
 * (Svc-Client, X-Forwarded-For, Forwarded, X-Real-IP, Svc-Deadline, ...).
 */
#include <string.h>
#include <strings.h>

#include "gateway.h"

/* X-Forwarded-Proto is forwarded as the client sent it: a service believes
 * it only when Svc-Client (the peer the gateway saw, e.g. a TLS ingress) is
 * one of its TRUSTED_PROXIES (services/auth/cookie.c).
 * X-Request-Id and traceparent are not here: the core keeps a sane client
 * X-Request-Id (or makes one) and continues the client's trace, and
 * svc_rpc_call sends those, with Svc-Client, from the request itself.
 * Idempotency-Key makes a client's retry of a POST /orders safe; the
 * service scopes it by the token's user, so it trusts nothing else in it. */
static const char *const request_headers[] = {
    "Authorization", "Cookie", "Content-Type", "Accept", "Accept-Language",
    "If-None-Match", "If-Match", "If-Modified-Since", "If-Unmodified-Since", "Accept-Encoding",
    "X-Forwarded-Proto", "Idempotency-Key", NULL,
};

const char *const gw_response_headers[] = {
    "Content-Type", "ETag", "Cache-Control", "Set-Cookie", "Location", "Retry-After",
    "WWW-Authenticate", "Allow", "Last-Modified", "Content-Encoding", "Vary", NULL,
};

static int lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int listed(const char *const *list, const char *name) {
    if (!name) return 0;
    /* Every request and reply header comes through here: names whose first
     * letter differs are passed over without a full compare. */
    int first = lower((unsigned char)name[0]);
    for (const char *const *p = list; *p; p++)
        if (lower((unsigned char)(*p)[0]) == first && strcasecmp(*p, name) == 0) return 1;
    return 0;
}

int gw_forward_request_header(const char *name) { return listed(request_headers, name); }

int gw_forward_response_header(const char *name) { return listed(gw_response_headers, name); }

int gw_may_run_twice(const char *method, const char *const *headers) {
    static const char *const reads[] = {"GET", "HEAD", "OPTIONS", NULL}, *const writes[] = {"PUT", "DELETE", NULL};
    for (const char *const *p = reads; *p; p++)
        if (strcmp(*p, method) == 0) return 1;
    for (const char *const *p = writes; *p; p++) {
        if (strcmp(*p, method) != 0) continue;
        for (const char *const *h = headers; h && *h; h++)
            if (strncasecmp(*h, "If-", 3) == 0) return 0;
        return 1;
    }
    return 0;
}

/* RFC 3986 pchar less pct-encoded, plus '/'. */
static int path_plain(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    switch (c) {
    case '-': case '.': case '_': case '~': case '!': case '$': case '&': case '\'': case '(':
    case ')': case '*': case '+': case ',': case ';': case '=': case ':': case '@': case '/':
        return 1;
    default:
        return 0;
    }
}

/* What msg.h accepts in Svc-Query: printable ASCII but space and '#'. A raw
 * '%' stays as it is: the query is passed through, not re-encoded. */
static int query_plain(unsigned char c) { return c > 0x20 && c < 0x7f && c != '#'; }

char *gw_target_encode(svc_arena *a, const char *path, const char *query) {
    static const char hex[] = "0123456789ABCDEF";
    size_t need = 1;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) need += path_plain(*p) ? 1 : 3;
    if (query && *query) {
        need += 1;
        for (const unsigned char *q = (const unsigned char *)query; *q; q++) need += query_plain(*q) ? 1 : 3;
    }
    char *out = svc_arena_alloc(a, need);
    if (!out) return NULL;
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (path_plain(*p)) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    if (query && *query) {
        *o++ = '?';
        for (const unsigned char *q = (const unsigned char *)query; *q; q++) {
            if (query_plain(*q)) {
                *o++ = (char)*q;
            } else {
                *o++ = '%';
                *o++ = hex[*q >> 4];
                *o++ = hex[*q & 15];
            }
        }
    }
    *o = '\0';
    return out;
}
