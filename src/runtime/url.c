/*
 * Request-target handling: splitting a target into path and query, normalising
 * the path, and looking up query parameters. Every byte here comes straight
 * from the network, so the functions reject rather than repair anything odd.
 */
#include <stddef.h>
#include <string.h>

#include "runtime/router.h"

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20; /* folds 'A'-'F' onto 'a'-'f' and nothing else onto that range */
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Control bytes never belong in a path: they end up in logs, file names and
 * headers, where they do harm. */
static int is_control(unsigned char c) { return c < 0x20 || c == 0x7F; }

int svc__path_normalize(const char *target, size_t len, svc_arena *a,
                        char **path, char **query) {
    if (!target || !a || !path || !query || len == 0 || target[0] != '/')
        return SVC_EINVAL;
    const unsigned char *t = (const unsigned char *)target;
    const unsigned char *qmark = memchr(t, '?', len);
    size_t plen = qmark ? (size_t)(qmark - t) : len;

    /* The query stays raw (svc__query_get decodes it per parameter), but it is
     * still checked: a fragment or a control byte means a broken or hostile
     * client, and the raw query is exposed to handlers and logs. */
    for (size_t i = plen; i < len; i++)
        if (is_control(t[i]) || t[i] == '#') return SVC_EINVAL;

    /* Decoding only shrinks, and each output '/' stands for an input '/', so
     * the result fits in plen bytes plus the NUL. */
    char *out = svc_arena_alloc(a, plen + 1);
    if (!out) return SVC_ENOMEM;
    size_t o = 1;
    out[0] = '/';

    /* One pass: decode a segment straight into the output, then decide what
     * it was. Dots are recognised after decoding, so "%2e%2e" is "..", and
     * because an encoded '/' is refused, decoding never creates a segment
     * boundary the client did not send. Invariant: out[o-1] == '/'. */
    size_t i = 1;
    for (;;) {
        size_t s = o;
        while (i < plen && t[i] != '/') {
            unsigned char c = t[i];
            if (c == '%') {
                int hi, lo;
                if (plen - i < 3 || (hi = hex_value(t[i + 1])) < 0 ||
                    (lo = hex_value(t[i + 2])) < 0)
                    return SVC_EINVAL;
                c = (unsigned char)(hi << 4 | lo);
                if (c == '/' || is_control(c)) return SVC_EINVAL;
                i += 3;
            } else {
                if (is_control(c) || c == '#') return SVC_EINVAL;
                i++;
            }
            out[o++] = (char)c;
        }
        size_t n = o - s;
        int last = i >= plen;
        if (n == 0) {
            /* Empty segment: "//" collapses; a final one keeps the '/'. */
        } else if (n == 1 && out[s] == '.') {
            o = s;
        } else if (n == 2 && out[s] == '.' && out[s + 1] == '.') {
            if (s == 1) return SVC_EINVAL; /* above the root */
            o = s - 1;
            while (out[o - 1] != '/') o--;
        } else if (!last) {
            out[o++] = '/';
        }
        /* A final "." or ".." leaves the '/' in place, as RFC 3986 section
         * 5.2.4 does: "/a/b/.." is "/a/". */
        if (last) break;
        i++; /* the '/' */
    }
    out[o] = '\0';

    char *q = qmark ? svc_arena_strndup(a, (const char *)qmark + 1, len - plen - 1)
                    : svc_arena_strndup(a, "", 0);
    if (!q) return SVC_ENOMEM;
    *path = out;
    *query = q;
    return SVC_OK;
}

/*
 * Whether the raw key [k, end) decodes to exactly name[0..nlen). Decodes on the
 * fly so that skipping the other parameters costs no allocation; a key with a
 * bad escape matches nothing.
 */
static int key_equals(const char *k, const char *end, const char *name, size_t nlen) {
    size_t j = 0;
    while (k < end) {
        unsigned char c = (unsigned char)*k;
        if (c == '+') {
            c = ' ';
            k++;
        } else if (c == '%') {
            int hi, lo;
            if (end - k < 3 || (hi = hex_value((unsigned char)k[1])) < 0 ||
                (lo = hex_value((unsigned char)k[2])) < 0)
                return 0;
            c = (unsigned char)(hi << 4 | lo);
            k += 3;
        } else {
            k++;
        }
        if (j == nlen || (unsigned char)name[j] != c) return 0;
        j++;
    }
    return j == nlen;
}

/* Decodes [v, end) into out (room for end - v bytes, no NUL added): the
 * length, or -1 on a bad escape or a NUL byte. */
static ptrdiff_t decode_into(const char *v, const char *end, char *out) {
    ptrdiff_t o = 0;
    while (v < end) {
        unsigned char c = (unsigned char)*v;
        if (c == '+') {
            c = ' ';
            v++;
        } else if (c == '%') {
            int hi, lo;
            if (end - v < 3 || (hi = hex_value((unsigned char)v[1])) < 0 ||
                (lo = hex_value((unsigned char)v[2])) < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            if (c == 0) return -1;
            v += 3;
        } else {
            v++;
        }
        out[o++] = (char)c;
    }
    return o;
}

/* Decodes [v, end) into a; NULL on a bad escape, a NUL byte or no memory. */
static char *decode_value(const char *v, const char *end, svc_arena *a) {
    char *out = svc_arena_alloc(a, (size_t)(end - v) + 1);
    if (!out) return NULL;
    ptrdiff_t n = decode_into(v, end, out);
    if (n < 0) return NULL;
    out[n] = '\0';
    return out;
}

const char *svc__query_get(const char *query, const char *name, svc_arena *a) {
    if (!query || !name || !*name || !a) return NULL;
    size_t nlen = strlen(name);
    const char *p = query;
    for (;;) {
        /* One scan per pair finds both its '=' and its end. */
        const char *eq = NULL, *e = p;
        while (*e && *e != '&') {
            if (*e == '=' && !eq) eq = e;
            e++;
        }
        const char *kend = eq ? eq : e;
        if (key_equals(p, kend, name, nlen)) return decode_value(eq ? eq + 1 : e, e, a);
        if (!*e) return NULL;
        p = e + 1;
    }
}

const char *svc__query_get_all(const char *query, const char *name, svc_arena *a) {
    if (!query || !name || !*name || !a) return NULL;
    size_t nlen = strlen(name), o = 0, found = 0;
    /* The values and the commas between them fit in the query's length:
     * each value decodes to at most its bytes, each comma replaces a '&'. */
    char *out = NULL;
    for (const char *p = query;;) {
        const char *eq = NULL, *e = p;
        while (*e && *e != '&') {
            if (*e == '=' && !eq) eq = e;
            e++;
        }
        if (key_equals(p, eq ? eq : e, name, nlen)) {
            if (!out && !(out = svc_arena_alloc(a, strlen(query) + 1))) return NULL;
            if (found++) out[o++] = ',';
            ptrdiff_t n = decode_into(eq ? eq + 1 : e, e, out + o);
            if (n < 0) return NULL;
            o += (size_t)n;
        }
        if (!*e) break;
        p = e + 1;
    }
    if (out) out[o] = '\0';
    return out;
}
