/*
 * Internal: the route table and path normalisation (not part of the public API).
 *
 * A router maps (method, normalised path) to the data given at registration.
 * Patterns are "/"-separated segments: literal text, ":name" (one segment), or a
 * final "*name" (the rest of the path, possibly empty). Matching prefers, at
 * every segment, a literal over a parameter over a catch-all, backtracking
 * when a preferred branch fails deeper down. A branch "fails" when it holds no
 * route for the request's method, so each method behaves as if it had a trie of
 * its own. Lookup is allocation-free except for parameter values, which are
 * copied into the caller's arena; it visits each trie node at most once
 * (usually one per path segment).
 *
 * Matching rules, all on the normalised (percent-decoded) path:
 *  - literals compare bytes exactly (case-sensitive);
 *  - a trailing slash is significant: "/products/" does not match "/products"
 *    nor the reverse; register both if both should answer;
 *  - ":name" matches one non-empty segment ("/users/" does not match
 *    "/users/:id");
 *  - "*name" matches everything after the preceding "/", which may be empty or
 *    contain more slashes: the pattern "/files/" + "*p" matches "/files/"
 *    (p = "") and "/files/a/b" (p = "a/b") but not "/files".
 *
 * Thread-safety: svc__router_add must not run concurrently with anything else
 * on the same router; once the table is built, svc__router_match and
 * svc__router_allow only read it and may run from any number of threads.
 */
#ifndef SVC_HTTP_ROUTER_H
#define SVC_HTTP_ROUTER_H

#include <stddef.h>

#include "svckit/core.h"

#define SVC_ROUTER_MAX_PARAMS 16
#define SVC_ROUTER_MAX_SEGMENTS 64
#define SVC_ROUTER_MAX_METHODS 16

typedef struct svc_router svc_router;

typedef struct svc_route_param {
    const char *name;   /* owned by the router */
    const char *value;  /* in the arena passed to match */
} svc_route_param;

typedef struct svc_route_match {
    void *data;            /* what svc__router_add was given */
    const char *pattern;   /* the template, owned by the router */
    size_t nparams;
    svc_route_param params[SVC_ROUTER_MAX_PARAMS];
} svc_route_match;

/* A new, empty router, or NULL on out-of-memory. Freed with svc__router_free
 * (NULL is a no-op), which frees every pattern and name it handed out; the
 * data pointers are the caller's. */
svc_router *svc__router_new(void);
void svc__router_free(svc_router *r);

/*
 * Adds a route. method is an upper-case token ("GET"); pattern and method are
 * copied. Returns SVC_OK,
 * SVC_EEXIST (same method and same shape of pattern, parameter names aside:
 *            "/u/:id" and "/u/:uid" are the same shape),
 * SVC_EINVAL (a NULL argument, a method that is not an upper-case token of at
 *            most 32 bytes, a pattern not starting with '/', an empty
 *            parameter name, "*" not last, more than SVC_ROUTER_MAX_PARAMS
 *            parameters or SVC_ROUTER_MAX_SEGMENTS segments, the same
 *            parameter name twice, or a segment a normalised path never has:
 *            an empty one other than the last ("//"), "." or ".."),
 * SVC_ERANGE (the pattern's shape already has SVC_ROUTER_MAX_METHODS methods,
 *            or the router already knows 64 distinct methods) or SVC_ENOMEM.
 * On failure the table matches exactly what it matched before.
 */
int svc__router_add(svc_router *r, const char *method, const char *pattern, void *data);

/*
 * Looks up a normalised path (as produced by svc__path_normalize). Returns:
 *  SVC_OK        m is filled: data, pattern, nparams and params[0..nparams)
 *                in pattern order; values are copied into arena a (which
 *                must not be NULL);
 *  SVC_ENOTFOUND no pattern matches the path (404), or path is NULL or does
 *                not start with '/';
 *  SVC_EAGAIN    the path matches but not for this method (405): allow gets
 *                the comma-separated methods that would match, sorted by
 *                byte order, e.g. "GET, HEAD, POST" (HEAD listed whenever GET
 *                is; OPTIONS never listed, even if registered, because the
 *                server adds it itself; so the list may be "");
 *  SVC_ENOMEM    copying a parameter value failed.
 * A HEAD request that no HEAD route matches is looked up again as GET. allow
 * may be NULL; allow_len is its size; whenever allow_len > 0 it is
 * NUL-terminated ("" unless SVC_EAGAIN), and a list too long for it is cut
 * after the last whole method that fits.
 */
int svc__router_match(const svc_router *r, const char *method, const char *path,
                      svc_arena *a, svc_route_match *m, char *allow, size_t allow_len);

/*
 * The methods (comma-separated, formatted exactly as for SVC_EAGAIN above)
 * that any route serves for path, for OPTIONS: SVC_OK, or SVC_ENOTFOUND if no
 * route matches the path. a is unused (kept for symmetry); it may be NULL.
 */
int svc__router_allow(const svc_router *r, const char *path, svc_arena *a,
                      char *allow, size_t allow_len);

/*
 * Splits a request-target (origin-form, as received: "/a/b%20c?x=1") into a
 * normalised, percent-decoded path and the raw query (without '?', "" if none),
 * both allocated in a. Normalisation: "//" collapses, "." segments vanish, ".."
 * removes the previous segment, all after decoding (so "%2e%2e" is ".."). The
 * result always starts with "/" and keeps a trailing "/" if the target had one.
 * A final "." or ".." segment leaves a trailing "/" (RFC 3986 5.2.4):
 * "/a/b/.." is "/a/", "/a/." is "/a/". Empty segments collapse before ".."
 * applies: "/a//../b" is "/b". Examples: "/a/%2e%2e/b" -> "/b",
 * "//a///b" -> "/a/b", "/a/./b/" -> "/a/b/".
 * Returns SVC_EINVAL (the request gets 400) for: a NULL argument, an empty
 * target or one not starting with '/' (the server handles "*" itself), an
 * invalid %-escape in the path, an encoded '/' (%2F) or NUL (%00) or any
 * control byte (< 0x20 or 0x7F) in the path whether raw or decoded, a raw
 * control byte in the query, ".." above the root, or a fragment ('#'
 * anywhere). SVC_ENOMEM if the arena is exhausted. target need not be
 * NUL-terminated and may hold NUL bytes (which are refused); the server
 * enforces the length limit. On failure *path and *query are untouched.
 */
int svc__path_normalize(const char *target, size_t len, svc_arena *a,
                        char **path, char **query);

/*
 * Finds the first query parameter called name in a raw query string and
 * returns its value percent-decoded ('+' as space) in arena a, "" for "name" or
 * "name=", NULL if absent or if the value has an invalid escape or decodes to
 * a NUL byte. Names are compared after decoding: name "a b" finds "a+b=1" and
 * "a%20b=1"; a key with an invalid escape matches nothing. Pairs are split on
 * '&' only; the first '=' splits a pair. NULL as well for a NULL argument or
 * an empty name.
 */
const char *svc__query_get(const char *query, const char *name, svc_arena *a);
/* Every value of the query parameter name, decoded as svc__query_get
 * decodes one, joined by ',' in their order ("a=x&a=y,z" -> "x,y,z"); NULL
 * if absent, if any value does not decode, or out of memory. */
const char *svc__query_get_all(const char *query, const char *name, svc_arena *a);

#endif
