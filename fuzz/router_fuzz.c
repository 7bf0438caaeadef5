/*
 * Fuzzes the request-target path of every request: svc__path_normalize, then
 * svc__router_match with several methods against a fixed table, and
 * svc__query_get.
 *
 * Besides the sanitizers, it checks:
 *  - a normalised path starts with '/', has no "//", no "." or ".." segment, no
 *    control byte, is no longer than the target, and normalises to itself
 *    when it holds no '%', '?' or '#' (which can only come from escapes);
 *  - the query has no '#' or control byte;
 *  - the route found is the one a naive reference matcher picks (every route
 *    tried in turn, literal < parameter < catch-all compared segment by
 *    segment), with the same parameter values; ':' values are non-empty and
 *    hold no '/'; a 405's methods are exactly the reference's; matching twice
 *    gives the same answer; svc__router_allow agrees with match;
 *  - svc__query_get agrees with a naive reference and is stable.
 *
 * Input layout: the whole input is the target. For the query test the input
 * is split at its first '\n' (or in the middle): query, then name.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/router.h"

#include "fuzz_util.h"

typedef struct fixed_route {
    const char *method;
    const char *pattern;
} fixed_route;

static const fixed_route ROUTES[] = {
    {"GET", "/"},
    {"GET", "/healthz"},
    {"GET", "/products"},
    {"POST", "/products"},
    {"GET", "/products/"},
    {"GET", "/products/search"},
    {"GET", "/products/categories"},
    {"GET", "/products/category/:name"},
    {"GET", "/products/:id"},
    {"PUT", "/products/:pid"},
    {"DELETE", "/products/:id"},
    {"GET", "/products/:id/reviews/:rid"},
    {"GET", "/a/b/c"},
    {"GET", "/a/:x/d"},
    {"POST", "/a/:x/:y"},
    {"GET", "/a/*rest"},
    {"HEAD", "/a/b/c"},
    {"OPTIONS", "/opt"},
    {"GET", "/static/*path"},
    {"GET", "/u/:id/"},
    {"PATCH", "/u/:id/*tail"},
    {"GET", "/%41/:p"},
    {"GET", "/ /:p"},
    {"DELETE", "/*all"},
};
#define NROUTES (sizeof ROUTES / sizeof *ROUTES)

static const char *METHODS[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"};
#define NMETHODS (sizeof METHODS / sizeof *METHODS)

static svc_router *router;
static svc_arena *arena;

static void setup(void) {
    router = svc__router_new();
    arena = svc_arena_new(0);
    CHECK(router && arena);
    for (size_t i = 0; i < NROUTES; i++)
        CHECK(svc__router_add(router, ROUTES[i].method, ROUTES[i].pattern,
                              (void *)&ROUTES[i]) == SVC_OK);
}

/* ---- the reference matcher ---------------------------------------------- */

typedef struct ref_result {
    size_t nparams;
    const char *val[SVC_ROUTER_MAX_PARAMS];
    size_t len[SVC_ROUTER_MAX_PARAMS];
    int rank[SVC_ROUTER_MAX_SEGMENTS + 1]; /* 0 literal, 1 param, 2 catch-all */
    size_t nrank;
} ref_result;

/* Whether pattern matches path (both start with '/'); fills res. */
static int ref_matches(const char *pattern, const char *path, ref_result *res) {
    const char *p = pattern + 1, *s = path + 1;
    res->nparams = 0;
    res->nrank = 0;
    for (;;) {
        const char *pe = strchr(p, '/');
        if (!pe) pe = p + strlen(p);
        if (!s) return 0; /* path used up, pattern not */
        if (*p == '*') {
            res->val[res->nparams] = s;
            res->len[res->nparams++] = strlen(s);
            res->rank[res->nrank++] = 2;
            return 1;
        }
        const char *se = strchr(s, '/');
        if (!se) se = s + strlen(s);
        if (*p == ':') {
            if (se == s) return 0;
            res->val[res->nparams] = s;
            res->len[res->nparams++] = (size_t)(se - s);
            res->rank[res->nrank++] = 1;
        } else {
            if (pe - p != se - s || memcmp(p, s, (size_t)(pe - p)) != 0) return 0;
            res->rank[res->nrank++] = 0;
        }
        s = *se ? se + 1 : NULL;
        if (!*pe) return s == NULL;
        p = pe + 1;
    }
}

static int rank_less(const ref_result *a, const ref_result *b) {
    for (size_t i = 0; i < a->nrank && i < b->nrank; i++)
        if (a->rank[i] != b->rank[i]) return a->rank[i] < b->rank[i];
    return 0;
}

/* The index of the route for method, or -1. */
static int ref_find(const char *method, const char *path, ref_result *best) {
    int found = -1;
    ref_result cur;
    for (size_t i = 0; i < NROUTES; i++) {
        if (strcmp(ROUTES[i].method, method) != 0) continue;
        if (!ref_matches(ROUTES[i].pattern, path, &cur)) continue;
        if (found < 0 || rank_less(&cur, best)) {
            *best = cur;
            found = (int)i;
        }
    }
    return found;
}

static int ref_lookup(const char *method, const char *path, ref_result *best) {
    int i = ref_find(method, path, best);
    if (i < 0 && strcmp(method, "HEAD") == 0) i = ref_find("GET", path, best);
    return i;
}

/* The Allow text the reference expects: sorted, HEAD with GET, no OPTIONS. */
static void ref_allow(const char *path, char *out, size_t cap) {
    const char *names[NROUTES + 1];
    size_t n = 0;
    int get = 0;
    ref_result tmp;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!ref_matches(ROUTES[i].pattern, path, &tmp)) continue;
        if (strcmp(ROUTES[i].method, "OPTIONS") == 0) continue;
        if (strcmp(ROUTES[i].method, "GET") == 0) get = 1;
        names[n++] = ROUTES[i].method;
    }
    if (get) names[n++] = "HEAD";
    /* insertion sort and de-duplication */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0) continue;
        if (out[0]) strncat(out, ", ", cap - strlen(out) - 1);
        strncat(out, names[i], cap - strlen(out) - 1);
    }
}

/* ---- checks ---------------------------------------------------------------- */

static void check_path(const char *path, const char *query, size_t target_len) {
    size_t n = strlen(path);
    CHECK(path[0] == '/');
    CHECK(n <= target_len);
    CHECK(strstr(path, "//") == NULL);
    CHECK(strstr(path, "/./") == NULL);
    CHECK(strstr(path, "/../") == NULL);
    CHECK(!(n >= 2 && strcmp(path + n - 2, "/.") == 0));
    CHECK(!(n >= 3 && strcmp(path + n - 3, "/..") == 0));
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        CHECK(*p >= 0x20 && *p != 0x7F);
    for (const unsigned char *p = (const unsigned char *)query; *p; p++)
        CHECK(*p >= 0x20 && *p != 0x7F && *p != '#');

    /* '%', '?' and '#' come from escapes and mean something else the second
     * time round. */
    if (!strpbrk(path, "%?#")) {
        char *p2, *q2;
        CHECK(svc__path_normalize(path, n, arena, &p2, &q2) == SVC_OK);
        CHECK(strcmp(p2, path) == 0);
        CHECK(q2[0] == '\0');
    }
}

static void check_match(const char *path) {
    char allow[256], allow2[256], want_allow[256];
    svc_route_match m, m2;
    int any = 0;
    for (size_t k = 0; k < NMETHODS; k++) {
        const char *method = METHODS[k];
        int rc = svc__router_match(router, method, path, arena, &m, allow, sizeof allow);
        int rc2 = svc__router_match(router, method, path, arena, &m2, allow2, sizeof allow2);
        CHECK(rc == rc2);
        CHECK(strcmp(allow, allow2) == 0);
        ref_result ref;
        int want = ref_lookup(method, path, &ref);
        if (want >= 0) {
            CHECK(rc == SVC_OK);
            any = 1;
            const fixed_route *got = m.data;
            CHECK(got == &ROUTES[want]);
            CHECK(m2.data == m.data);
            CHECK(strcmp(m.pattern, got->pattern) == 0);
            CHECK(m.nparams == ref.nparams && m2.nparams == m.nparams);
            for (size_t i = 0; i < m.nparams; i++) {
                const char *v = m.params[i].value;
                CHECK(strlen(v) == ref.len[i] && memcmp(v, ref.val[i], ref.len[i]) == 0);
                CHECK(strcmp(m2.params[i].value, v) == 0);
                CHECK(strcmp(m2.params[i].name, m.params[i].name) == 0);
                /* the pattern names this parameter ":name" or "*name" */
                char tag[64];
                snprintf(tag, sizeof tag, "/:%s", m.params[i].name);
                if (strstr(got->pattern, tag)) {
                    CHECK(v[0] != '\0');
                    CHECK(strchr(v, '/') == NULL);
                } else {
                    snprintf(tag, sizeof tag, "/*%s", m.params[i].name);
                    CHECK(strstr(got->pattern, tag) != NULL);
                    CHECK(i == m.nparams - 1);
                }
            }
            CHECK(allow[0] == '\0');
            continue;
        }
        ref_allow(path, want_allow, sizeof want_allow);
        ref_result tmp;
        int matches_any = 0;
        for (size_t i = 0; i < NROUTES && !matches_any; i++)
            matches_any = ref_matches(ROUTES[i].pattern, path, &tmp);
        if (matches_any) {
            CHECK(rc == SVC_EAGAIN);
            CHECK(strcmp(allow, want_allow) == 0);
            any = 1;
        } else {
            CHECK(rc == SVC_ENOTFOUND);
            CHECK(allow[0] == '\0');
        }
    }
    int arc = svc__router_allow(router, path, arena, allow, sizeof allow);
    CHECK(arc == (any ? SVC_OK : SVC_ENOTFOUND));
    ref_allow(path, want_allow, sizeof want_allow);
    CHECK(strcmp(allow, want_allow) == 0);
}

/* ---- query reference ------------------------------------------------------- */

static int ref_hex(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes s[0..n) into out; returns the decoded length or -1 on a bad escape. */
static long ref_decode(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            if (i + 2 >= n) return -1;
            int h = ref_hex((unsigned char)s[i + 1]), l = ref_hex((unsigned char)s[i + 2]);
            if (h < 0 || l < 0) return -1;
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    return (long)o;
}

static void check_query(const char *query, const char *name) {
    const char *got = svc__query_get(query, name, arena);
    const char *again = svc__query_get(query, name, arena);
    CHECK((got == NULL) == (again == NULL));
    if (got) CHECK(strcmp(got, again) == 0);

    /* the reference: split with strchr, decode into malloc'd buffers */
    const char *want = NULL;
    int decided = 0;
    char *buf = malloc(strlen(query) + 1);
    CHECK(buf);
    const char *p = query;
    while (*name && !decided) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t)(eq - p) : plen;
        long k = ref_decode(p, klen, buf);
        if (k >= 0 && (size_t)k == strlen(name) && memcmp(buf, name, (size_t)k) == 0) {
            decided = 1;
            const char *v = eq ? eq + 1 : p + plen;
            size_t vlen = (size_t)(p + plen - v);
            long d = ref_decode(v, vlen, buf);
            if (d >= 0 && memchr(buf, 0, (size_t)d) == NULL) {
                buf[d] = '\0';
                want = buf;
            }
        }
        if (!amp) break;
        p = amp + 1;
    }
    if (want) {
        CHECK(got != NULL);
        CHECK(strcmp(got, want) == 0);
    } else {
        CHECK(got == NULL);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!router) setup();
    svc_arena_reset(arena);

    char *path, *query;
    int rc = svc__path_normalize((const char *)data, size, arena, &path, &query);
    CHECK(rc == SVC_OK || rc == SVC_EINVAL);
    if (rc == SVC_OK) {
        check_path(path, query, size);
        check_match(path);
    }
    /* Every match path, even one the normaliser would refuse, must be safe. */
    char *raw = malloc(size + 2);
    CHECK(raw);
    raw[0] = '/';
    memcpy(raw + 1, data, size);
    raw[size + 1] = '\0';
    svc_route_match m;
    char allow[64];
    for (size_t k = 0; k < NMETHODS; k++)
        (void)svc__router_match(router, METHODS[k], raw, arena, &m, allow, sizeof allow);

    /* Query: split at the first '\n', else in the middle. */
    const uint8_t *nl = memchr(data, '\n', size);
    size_t qlen = nl ? (size_t)(nl - data) : size / 2;
    size_t nstart = nl ? qlen + 1 : qlen;
    char *q = malloc(qlen + 1), *name = malloc(size - nstart + 1);
    CHECK(q && name);
    memcpy(q, data, qlen);
    q[qlen] = '\0';
    memcpy(name, data + nstart, size - nstart);
    name[size - nstart] = '\0';
    check_query(q, name);
    free(q);
    free(name);
    free(raw);
    return 0;
}
