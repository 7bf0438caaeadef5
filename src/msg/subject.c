/*
 * The subject scheme and the validation of everything that arrives from NATS.
 * Pure functions (no libnats, no I/O), unit-tested and fuzzed.
 *
 * A route's subject carries one token per path segment, so no byte that NATS
 * gives a meaning to ('.', '*', '>', whitespace) may come through: literal
 * segments keep [A-Za-z0-9_-] and percent-encode everything else, parameters
 * become "{name}" and catch-alls "{*name}" (braces never survive encoding,
 * so the three forms cannot collide). Concrete paths never appear in
 * subjects; they travel in the Svc-Path header and are checked there.
 */
#include <stdlib.h>
#include <string.h>

#include "msg/internal.h"

static int is_alnum(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_name_char(unsigned char c) { return is_alnum(c) || c == '_' || c == '-'; }

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int svc__msg_name_ok(const char *name) {
    if (!name) return 0;
    size_t n = 0;
    for (; name[n]; n++)
        if (n >= 64 || !is_name_char((unsigned char)name[n])) return 0;
    return n > 0;
}

int svc__msg_js_name_ok(const char *s) { return svc__msg_name_ok(s); }

/* A tiny bounded writer: every put checks room; one overflow poisons it. */
typedef struct sw {
    char *out;
    size_t len, cap;
    int over;
} sw;

static void sw_putc(sw *w, char c) {
    if (w->len + 1 >= w->cap) {
        w->over = 1;
        return;
    }
    w->out[w->len++] = c;
    w->out[w->len] = '\0';
}

static void sw_puts(sw *w, const char *s) {
    while (*s) sw_putc(w, *s++);
}

static void sw_encoded(sw *w, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_name_char(c)) {
            sw_putc(w, (char)c);
        } else {
            sw_putc(w, '%');
            sw_putc(w, hex[c >> 4]);
            sw_putc(w, hex[c & 15]);
        }
    }
}

int svc__msg_route_subject(const char *service, const char *method, const char *pattern,
                           char *out, size_t outlen) {
    if (!out || outlen == 0) return SVC_ERANGE;
    out[0] = '\0';
    if (!svc__msg_name_ok(service) || svc__msg_method_check(method) != SVC_OK || !pattern ||
        pattern[0] != '/')
        return SVC_EINVAL;
    sw w = {out, 0, outlen, 0};
    sw_puts(&w, "svc.");
    sw_puts(&w, service);
    sw_putc(&w, '.');
    sw_puts(&w, method);
    const char *p = pattern + 1;
    /* "/" alone is the root: no segment token at all. */
    if (*p == '\0') return w.over ? SVC_ERANGE : SVC_OK;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        sw_putc(&w, '.');
        if (n == 0) {
            sw_puts(&w, "{}"); /* an empty segment: the trailing slash of "/a/" */
        } else if (p[0] == ':') {
            sw_putc(&w, '{');
            sw_encoded(&w, p + 1, n - 1);
            sw_putc(&w, '}');
        } else if (p[0] == '*') {
            sw_puts(&w, "{*");
            sw_encoded(&w, p + 1, n - 1);
            sw_putc(&w, '}');
        } else {
            sw_encoded(&w, p, n);
        }
        if (!end) break;
        p = end + 1;
    }
    return w.over ? SVC_ERANGE : SVC_OK;
}

void svc__msg_endpoint_name(const char *method, const char *pattern, char *out, size_t outlen) {
    if (!out || outlen == 0) return;
    sw w = {out, 0, outlen, 0};
    out[0] = '\0';
    for (const char *m = method ? method : ""; *m; m++) sw_putc(&w, is_name_char((unsigned char)*m) ? *m : '_');
    int sep = 1;
    for (const char *p = pattern ? pattern : ""; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '/') {
            sep = 1;
            continue;
        }
        if (sep) sw_putc(&w, '-');
        sep = 0;
        sw_putc(&w, is_name_char(c) ? (char)c : '_');
    }
    if (w.len == 0) sw_puts(&w, "endpoint");
}

int svc__msg_subject_check(const char *s, int wildcards) {
    if (!s) return SVC_EINVAL;
    size_t n = strlen(s);
    if (n == 0 || n > SVC_MSG_MAX_SUBJECT) return SVC_EINVAL;
    size_t tok = 0; /* start of the current token */
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.' || c == '\0') {
            size_t tl = i - tok;
            if (tl == 0) return SVC_EINVAL;
            /* As NATS reads subjects: '*' and '>' are wildcards only as a
             * whole token ("{*rest}" is literal); '>' only as the last. */
            if (tl == 1 && (s[tok] == '*' || s[tok] == '>')) {
                if (!wildcards || (s[tok] == '>' && c != '\0')) return SVC_EINVAL;
            }
            tok = i + 1;
            continue;
        }
        if (c <= 0x20 || c >= 0x7f) return SVC_EINVAL;
    }
    return SVC_OK;
}

int svc__msg_queue_check(const char *s) {
    if (!s) return SVC_EINVAL;
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= SVC_MSG_MAX_SUBJECT || c <= 0x20 || c >= 0x7f) return SVC_EINVAL;
    }
    return n ? SVC_OK : SVC_EINVAL;
}

/* RFC 3986 pchar without pct-encoded: unreserved, sub-delims, ':' and '@'. */
static int is_pchar(unsigned char c) {
    if (is_alnum(c)) return 1;
    return c && strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

int svc__msg_path_check(const char *p, size_t len, size_t max) {
    if (!p || len == 0 || len > max || p[0] != '/') return SVC_EINVAL;
    size_t dots = 0;       /* '.' bytes (plain or %2E) in the segment */
    size_t decoded = 0;    /* decoded length of the segment */
    for (size_t i = 1; i <= len; i++) {
        if (i == len || p[i] == '/') {
            if (decoded == 0 && i < len) return SVC_EINVAL;  /* "//" */
            if (decoded > 0 && decoded == dots && dots <= 2) return SVC_EINVAL; /* "." or ".." */
            dots = decoded = 0;
            continue;
        }
        unsigned char c = (unsigned char)p[i];
        if (c == '%') {
            if (i + 2 >= len) return SVC_EINVAL;
            int hi = hexval((unsigned char)p[i + 1]), lo = hi < 0 ? -1 : hexval((unsigned char)p[i + 2]);
            if (hi < 0 || lo < 0) return SVC_EINVAL;
            unsigned char d = (unsigned char)(hi * 16 + lo);
            if (d == '/' || d < 0x20 || d == 0x7f) return SVC_EINVAL;
            if (d == '.') dots++;
            decoded++;
            i += 2;
            continue;
        }
        if (!is_pchar(c)) return SVC_EINVAL;
        if (c == '.') dots++;
        decoded++;
    }
    return SVC_OK;
}

int svc__msg_query_check(const char *q, size_t len, size_t max) {
    if (!q || len > max) return SVC_EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)q[i];
        if (c <= 0x20 || c >= 0x7f || c == '#') return SVC_EINVAL;
    }
    return SVC_OK;
}

int svc__msg_method_check(const char *m) {
    if (!m) return SVC_EINVAL;
    size_t n = 0;
    for (; m[n]; n++)
        if (n >= SVC_MSG_MAX_METHOD || m[n] < 'A' || m[n] > 'Z') return SVC_EINVAL;
    return n ? SVC_OK : SVC_EINVAL;
}

static int value_byte_ok(unsigned char c) { return !((c < 0x20 && c != '\t') || c == 0x7f); }

int svc__msg_header_value_ok(const char *s) {
    if (!s) return 0;
    /* Values run to hundreds of bytes (a bearer token) on every proxied
     * request: eight at a time, bytes below 0x20 or equal to 0x7f flag a
     * word (never a miss; now and then a false alarm), and only a flagged
     * word is looked at byte by byte. */
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t n = strlen(s), i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        uint64_t del = x ^ (0x7f * ones);
        if ((((x - 0x20 * ones) & ~x) | ((del - ones) & ~del)) & highs) {
            for (size_t k = i; k < i + 8; k++)
                if (!value_byte_ok((unsigned char)s[k])) return 0;
        }
    }
    for (; i < n; i++)
        if (!value_byte_ok((unsigned char)s[i])) return 0;
    return 1;
}

int svc__msg_deadline_passed(const char *v, int64_t now_ms) {
    int64_t d;
    if (!v || svc_parse_i64(v, &d) != SVC_OK || d <= 0) return 0;
    return d < now_ms;
}

int svc__msg_client_ok(const char *v) {
    if (!v || !*v) return 0;
    size_t n = 0;
    for (; v[n]; n++) {
        unsigned char c = (unsigned char)v[n];
        if (n >= SVC_MSG_MAX_CLIENT || !(hexval(c) >= 0 || c == '.' || c == ':' || c == '[' || c == ']'))
            return 0;
    }
    return 1;
}

