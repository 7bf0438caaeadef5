/*
 * The route table: a trie with one level per path segment.
 *
 * A node has sorted literal children (binary-searched by exact bytes), at most
 * one parameter child and at most one catch-all child; a pattern's shape, not
 * its parameter names, decides its node, so "/u/:id" and "/u/:uid" share one.
 * The routes that end at a node are kept there, one per method, each with its
 * own parameter names.
 *
 * Methods are interned into a small per-router table so that nodes can carry
 * bit masks: "which methods end here" and "which methods end anywhere below".
 * The second lets a lookup skip whole subtrees that cannot serve the request's
 * method, and the Allow list of a 405 is an OR of masks.
 *
 * A lookup walks the path depth-first, trying literal, then parameter, then
 * catch-all at each level. A node sits at a fixed depth and the path has one
 * segment per depth, so no node is visited twice: backtracking costs at most
 * the size of the trie, and usually one step per segment.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/router.h"

/* Methods are interned router-wide and tracked in 64-bit masks. */
#define MAX_DISTINCT_METHODS 64
/* Longest method token accepted at registration. */
#define MAX_METHOD_LEN 32

typedef struct route {
    unsigned method;  /* index into svc_router.methods */
    void *data;
    const char *pattern;
    size_t nparams;
    const char *names[SVC_ROUTER_MAX_PARAMS];
    /* pattern and names live in this same allocation, after the struct */
} route;

typedef struct node {
    struct node **lits;   /* literal children, sorted by seg_cmp */
    size_t nlits, caplits;
    struct node *param;
    struct node *catchall;
    uint64_t mask;        /* methods of the routes ending here */
    uint64_t below;       /* mask of this node and every descendant */
    size_t nroutes;
    route *routes[SVC_ROUTER_MAX_METHODS];
    size_t seglen;
    char seg[];           /* literal text of a literal child, not NUL-terminated */
} node;

struct svc_router {
    node *root;
    size_t nmethods;
    char *methods[MAX_DISTINCT_METHODS];
};

static node *node_new(const char *seg, size_t len) {
    node *n = calloc(1, sizeof *n + len);
    if (!n) return NULL;
    memcpy(n->seg, seg, len);
    n->seglen = len;
    return n;
}

static void node_free(node *n) {
    if (!n) return;
    for (size_t i = 0; i < n->nlits; i++) node_free(n->lits[i]);
    free(n->lits);
    node_free(n->param);
    node_free(n->catchall);
    for (size_t i = 0; i < n->nroutes; i++) free(n->routes[i]);
    free(n);
}

svc_router *svc__router_new(void) {
    svc_router *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->root = node_new("", 0);
    if (!r->root) {
        free(r);
        return NULL;
    }
    return r;
}

void svc__router_free(svc_router *r) {
    if (!r) return;
    node_free(r->root);
    for (size_t i = 0; i < r->nmethods; i++) free(r->methods[i]);
    free(r);
}

/* Byte order, shorter first on a common prefix: any total order does, this one
 * needs only memcmp. */
static int seg_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

/* Index of the literal child equal to [s, s+len), or where it would go. */
static size_t lit_search(const node *n, const char *s, size_t len, int *found) {
    size_t lo = 0, hi = n->nlits;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const node *c = n->lits[mid];
        int cmp = seg_cmp(c->seg, c->seglen, s, len);
        if (cmp == 0) {
            *found = 1;
            return mid;
        }
        if (cmp < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = 0;
    return lo;
}

static const node *lit_find(const node *n, const char *s, size_t len) {
    if (n->nlits == 0) return NULL;
    int found;
    size_t i = lit_search(n, s, len, &found);
    return found ? n->lits[i] : NULL;
}

static node *lit_get(node *n, const char *s, size_t len) {
    int found;
    size_t i = lit_search(n, s, len, &found);
    if (found) return n->lits[i];
    if (n->nlits == n->caplits) {
        size_t cap = n->caplits ? n->caplits * 2 : 4;
        node **nl = realloc(n->lits, cap * sizeof *nl);
        if (!nl) return NULL;
        n->lits = nl;
        n->caplits = cap;
    }
    node *c = node_new(s, len);
    if (!c) return NULL;
    memmove(n->lits + i + 1, n->lits + i, (n->nlits - i) * sizeof *n->lits);
    n->lits[i] = c;
    n->nlits++;
    return c;
}

/* Index of method in the router's table, or -1. */
static int method_find(const svc_router *r, const char *method) {
    for (size_t i = 0; i < r->nmethods; i++)
        if (strcmp(r->methods[i], method) == 0) return (int)i;
    return -1;
}

/* An upper-case HTTP token: what a request line can carry, minus lower case,
 * so that a misspelt "get" fails at start rather than never matching. */
static int method_valid(const char *m) {
    size_t n = 0;
    for (; m[n]; n++) {
        unsigned char c = (unsigned char)m[n];
        if (n == MAX_METHOD_LEN) return 0;
        if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) continue;
        if (!strchr("!#$%&'*+-.^_`|~", c)) return 0;
    }
    return n > 0;
}

enum { SEG_LITERAL, SEG_PARAM, SEG_CATCHALL };

typedef struct seg {
    const char *p;  /* for parameters, the name (after ':' or '*') */
    size_t n;
    int kind;
} seg;

/* Splits and checks a pattern without touching the router, so that a refused
 * pattern leaves no trace. */
static int pattern_parse(const char *pattern, seg *segs, size_t *nsegs, size_t *nparams) {
    if (pattern[0] != '/') return SVC_EINVAL;
    size_t ns = 0, np = 0;
    const char *p = pattern + 1;
    for (;;) {
        const char *e = p;
        while (*e && *e != '/') e++;
        size_t len = (size_t)(e - p);
        int last = *e == '\0';
        if (ns == SVC_ROUTER_MAX_SEGMENTS) return SVC_EINVAL;
        seg *s = &segs[ns++];
        s->p = p;
        s->n = len;
        s->kind = SEG_LITERAL;
        if (len > 0 && (p[0] == ':' || p[0] == '*')) {
            s->kind = p[0] == ':' ? SEG_PARAM : SEG_CATCHALL;
            s->p = p + 1;
            s->n = len - 1;
            if (s->n == 0) return SVC_EINVAL;
            if (s->kind == SEG_CATCHALL && !last) return SVC_EINVAL;
            if (np == SVC_ROUTER_MAX_PARAMS) return SVC_EINVAL;
            for (size_t i = 0; i < ns - 1; i++)
                if (segs[i].kind != SEG_LITERAL && segs[i].n == s->n &&
                    memcmp(segs[i].p, s->p, s->n) == 0)
                    return SVC_EINVAL; /* the same name twice */
            np++;
        } else if (len == 0 && !last) {
            return SVC_EINVAL; /* "//": never in a normalised path */
        } else if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) {
            return SVC_EINVAL; /* dot segments: likewise */
        }
        if (last) break;
        p = e + 1;
    }
    *nsegs = ns;
    *nparams = np;
    return SVC_OK;
}

/* The route, its pattern and its parameter names in one allocation. */
static route *route_new(const char *pattern, const seg *segs, size_t nsegs, void *data,
                        unsigned method) {
    size_t plen = strlen(pattern);
    route *rt = malloc(sizeof *rt + 2 * (plen + 1));
    if (!rt) return NULL;
    char *pat = (char *)(rt + 1);
    char *names = pat + plen + 1;
    memcpy(pat, pattern, plen + 1);
    memcpy(names, pattern, plen + 1);
    rt->method = method;
    rt->data = data;
    rt->pattern = pat;
    rt->nparams = 0;
    for (size_t i = 0; i < nsegs; i++) {
        if (segs[i].kind == SEG_LITERAL) continue;
        size_t off = (size_t)(segs[i].p - pattern);
        names[off + segs[i].n] = '\0'; /* overwrites a '/' or the NUL */
        rt->names[rt->nparams++] = names + off;
    }
    return rt;
}

int svc__router_add(svc_router *r, const char *method, const char *pattern, void *data) {
    if (!r || !method || !pattern || !method_valid(method)) return SVC_EINVAL;
    seg segs[SVC_ROUTER_MAX_SEGMENTS];
    size_t nsegs, nparams;
    int rc = pattern_parse(pattern, segs, &nsegs, &nparams);
    if (rc != SVC_OK) return rc;

    int id = method_find(r, method);
    if (id < 0) {
        if (r->nmethods == MAX_DISTINCT_METHODS) return SVC_ERANGE;
        char *copy = strdup(method);
        if (!copy) return SVC_ENOMEM;
        id = (int)r->nmethods;
        r->methods[r->nmethods++] = copy;
    }
    uint64_t bit = (uint64_t)1 << id;

    /* Nodes created here and left without a route after a failure below are
     * harmless: an empty subtree matches nothing. */
    node *trail[SVC_ROUTER_MAX_SEGMENTS + 1];
    node *n = r->root;
    trail[0] = n;
    for (size_t i = 0; i < nsegs; i++) {
        node **slot = NULL;
        if (segs[i].kind == SEG_LITERAL) {
            n = lit_get(n, segs[i].p, segs[i].n);
        } else {
            slot = segs[i].kind == SEG_PARAM ? &n->param : &n->catchall;
            if (!*slot) *slot = node_new("", 0);
            n = *slot;
        }
        if (!n) return SVC_ENOMEM;
        trail[i + 1] = n;
    }
    if (n->mask & bit) return SVC_EEXIST;
    if (n->nroutes == SVC_ROUTER_MAX_METHODS) return SVC_ERANGE;
    route *rt = route_new(pattern, segs, nsegs, data, (unsigned)id);
    if (!rt) return SVC_ENOMEM;
    n->routes[n->nroutes++] = rt;
    n->mask |= bit;
    for (size_t i = 0; i <= nsegs; i++) trail[i]->below |= bit;
    return SVC_OK;
}

/* ---- lookup ------------------------------------------------------------- */

typedef struct span {
    const char *p;
    size_t n;
} span;

typedef struct walk {
    const char *end;    /* of the path */
    unsigned id;        /* the method looked for */
    uint64_t bit;
    span caps[SVC_ROUTER_MAX_PARAMS];  /* parameter values along the current branch */
} walk;

static const route *route_at(const node *n, const walk *w) {
    if (!(n->mask & w->bit)) return NULL;
    for (size_t i = 0; i < n->nroutes; i++)
        if (n->routes[i]->method == w->id) return n->routes[i];
    return NULL;
}

/*
 * p is the start of the current segment, or NULL once the path is used up. A
 * parameter never matches an empty segment; a catch-all matches the rest of
 * the path from the current segment on, even when that is empty (the path
 * "/files/" for the pattern "/files/" + "*p"), but not a missing segment
 * ("/files").
 */
static const route *walk_find(const node *n, const char *p, size_t ncap, walk *w) {
    if (!(n->below & w->bit)) return NULL;
    if (!p) return route_at(n, w);
    const char *e = memchr(p, '/', (size_t)(w->end - p));
    if (!e) e = w->end;
    size_t len = (size_t)(e - p);
    const char *next = e < w->end ? e + 1 : NULL;
    const route *rt;
    const node *lit = lit_find(n, p, len);
    if (lit && (rt = walk_find(lit, next, ncap, w))) return rt;
    /* A branch never holds more parameters than the pattern that built it, so
     * the bound on ncap is a guard, not a rule. */
    if (ncap == SVC_ROUTER_MAX_PARAMS) return NULL;
    if (n->param && len > 0) {
        w->caps[ncap] = (span){p, len};
        if ((rt = walk_find(n->param, next, ncap + 1, w))) return rt;
    }
    if (n->catchall && (rt = route_at(n->catchall, w))) {
        w->caps[ncap] = (span){p, (size_t)(w->end - p)};
        return rt;
    }
    return NULL;
}

/* The methods of every route that matches the path, whatever its priority. */
static uint64_t walk_collect(const node *n, const char *p, const char *end) {
    if (!n->below) return 0;
    if (!p) return n->mask;
    const char *e = memchr(p, '/', (size_t)(end - p));
    if (!e) e = end;
    size_t len = (size_t)(e - p);
    const char *next = e < end ? e + 1 : NULL;
    uint64_t m = 0;
    const node *lit = lit_find(n, p, len);
    if (lit) m |= walk_collect(lit, next, end);
    if (n->param && len > 0) m |= walk_collect(n->param, next, end);
    if (n->catchall) m |= n->catchall->mask;
    return m;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Writes the Allow value for mask: names sorted by byte order, HEAD added
 * wherever GET is, OPTIONS left out (the server answers OPTIONS itself and adds
 * it). A list that does not fit is cut after the last whole name that does.
 */
static void allow_format(const svc_router *r, uint64_t mask, char *out, size_t cap) {
    if (!out || cap == 0) return;
    const char *names[MAX_DISTINCT_METHODS + 1];
    size_t n = 0;
    int get = 0, head = 0;
    for (size_t i = 0; i < r->nmethods; i++) {
        if (!(mask & ((uint64_t)1 << i))) continue;
        const char *m = r->methods[i];
        if (strcmp(m, "OPTIONS") == 0) continue;
        if (strcmp(m, "GET") == 0) get = 1;
        if (strcmp(m, "HEAD") == 0) head = 1;
        names[n++] = m;
    }
    if (get && !head) names[n++] = "HEAD";
    qsort(names, n, sizeof *names, by_name);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names[i]), sep = pos ? 2 : 0;
        if (pos + sep + len >= cap) break;
        if (sep) {
            out[pos++] = ',';
            out[pos++] = ' ';
        }
        memcpy(out + pos, names[i], len);
        pos += len;
    }
    out[pos] = '\0';
}

static const route *find(const svc_router *r, int id, const char *path, const char *end,
                         walk *w) {
    if (id < 0) return NULL;
    w->end = end;
    w->id = (unsigned)id;
    w->bit = (uint64_t)1 << id;
    return walk_find(r->root, path + 1, 0, w);
}

int svc__router_match(const svc_router *r, const char *method, const char *path,
                      svc_arena *a, svc_route_match *m, char *allow, size_t allow_len) {
    if (allow && allow_len) allow[0] = '\0';
    if (!r || !method || !path || path[0] != '/') return SVC_ENOTFOUND;
    const char *end = path + strlen(path);
    walk w;
    const route *rt = find(r, method_find(r, method), path, end, &w);
    if (!rt && strcmp(method, "HEAD") == 0) rt = find(r, method_find(r, "GET"), path, end, &w);
    if (rt) {
        for (size_t i = 0; i < rt->nparams; i++) {
            char *v = svc_arena_strndup(a, w.caps[i].p, w.caps[i].n);
            if (!v) return SVC_ENOMEM;
            m->params[i].name = rt->names[i];
            m->params[i].value = v;
        }
        m->data = rt->data;
        m->pattern = rt->pattern;
        m->nparams = rt->nparams;
        return SVC_OK;
    }
    uint64_t mask = walk_collect(r->root, path + 1, end);
    if (!mask) return SVC_ENOTFOUND;
    allow_format(r, mask, allow, allow_len);
    return SVC_EAGAIN;
}

int svc__router_allow(const svc_router *r, const char *path, svc_arena *a,
                      char *allow, size_t allow_len) {
    (void)a;
    if (allow && allow_len) allow[0] = '\0';
    if (!r || !path || path[0] != '/') return SVC_ENOTFOUND;
    uint64_t mask = walk_collect(r->root, path + 1, path + strlen(path));
    if (!mask) return SVC_ENOTFOUND;
    allow_format(r, mask, allow, allow_len);
    return SVC_OK;
}
