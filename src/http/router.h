/*
 * Internal: the route table and path normalisation (not part of the public API).
 *
 * A router maps (method, normalised path) to the data given at registration.
 * Patterns are "/"-separated segments: literal text, ":name" (one segment), or a
 * final "*name" (the rest of the path, possibly empty). Matching prefers, at
 * every segment, a literal over a parameter over a catch-all, backtracking
 * when a preferred branch fails deeper down. Lookup is O(depth), allocation-free
 * except for parameter values, which point into the caller's arena.
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

svc_router *svc__router_new(void);
void svc__router_free(svc_router *r);

/*
 * Adds a route. method is an upper-case token ("GET"). Returns SVC_OK,
 * SVC_EEXIST (same method and same shape of pattern, parameter names aside),
 * SVC_EINVAL (pattern not starting with '/', empty parameter name, "*" not
 * last, more than SVC_ROUTER_MAX_PARAMS parameters) or SVC_ENOMEM.
 */
int svc__router_add(svc_router *r, const char *method, const char *pattern, void *data);

/*
 * Looks up a normalised path (as produced by svc__path_normalize). Returns:
 *  SVC_OK        m is filled; parameter values are copied into arena a;
 *  SVC_ENOTFOUND no pattern matches the path (404);
 *  SVC_EAGAIN    the path matches but not for this method (405): allow gets
 *                the comma-separated methods that would match, e.g.
 *                "GET, HEAD, POST" (HEAD listed whenever GET is).
 * A HEAD request matches a GET route when no HEAD route exists. allow may be
 * NULL; allow_len is its size.
 */
int svc__router_match(const svc_router *r, const char *method, const char *path,
                      svc_arena *a, svc_route_match *m, char *allow, size_t allow_len);

/*
 * The methods (comma-separated like Allow) that any route serves for path, for
 * OPTIONS; SVC_ENOTFOUND if none.
 */
int svc__router_allow(const svc_router *r, const char *path, svc_arena *a,
                      char *allow, size_t allow_len);

/*
 * Splits a request-target (origin-form, as received: "/a/b%20c?x=1") into a
 * normalised, percent-decoded path and the raw query (without '?', "" if none),
 * both allocated in a. Normalisation: "//" collapses, "." segments vanish, ".."
 * removes the previous segment, all after decoding (so "%2e%2e" is ".."). The
 * result always starts with "/" and keeps a trailing "/" if the target had one.
 * Returns SVC_EINVAL (the request gets 400) for: a target not starting with
 * '/', an invalid %-escape, an encoded '/' (%2F) or NUL (%00) or any control
 * byte, ".." above the root, or a fragment. 
 */
int svc__path_normalize(const char *target, size_t len, svc_arena *a,
                        char **path, char **query);

/*
 * Finds the first query parameter called name in a raw query string and
 * returns its value percent-decoded ('+' as space) in arena a, "" for "name" or
 * "name=", NULL if absent or if the value has an invalid escape or decodes to
 * a NUL byte. Names are compared after decoding.
 */
const char *svc__query_get(const char *query, const char *name, svc_arena *a);

#endif
