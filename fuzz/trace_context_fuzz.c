/*
 * Fuzzes the W3C trace context parsers (src/obs/trace.c): traceparent,
 * tracestate, and the NATS span query, all outside bytes. Byte 0 picks
 * which; the rest is the value.
 *
 * Besides the sanitizers it checks, on every input:
 *
 *  1. A traceparent that parses has non-zero ids, formats to a 55-byte
 *     version-00 value that parses back to the same context, and for
 *     version 00 formats back to the input itself up to the flags' other bits.
 *  2. A tracestate that is accepted is at most SVC_TRACESTATE_MAX bytes of
 *     printable ASCII and tabs (W3C's OWS between members), so it can be
 *     passed on in a header as it came; and the parser agrees with a second
 *     reading written here the plain way (split at commas, trim the optional
 *     whitespace, check each member), so OWS around members is accepted and
 *     nothing else is. Whitespace added around every comma and at both ends
 *     changes nothing either way.
 *  3. A query that parses has its limit within 1..SVC_TRACE_QUERY_MAX.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "obs/internal.h"

#include "fuzz_util.h"

static int is_ows(char c) { return c == ' ' || c == '\t'; }

static int key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/' ||
           c == '@';
}

/* W3C tracestate the plain way: members between commas, each trimmed of
 * OWS, empty or key=value (1..256 key characters, 1..256 value characters
 * of 0x20..0x7e but "," and "=", the last not a space); 1..32 of them. */
static int tracestate_plain(const char *s, size_t n) {
    if (n == 0 || n > SVC_TRACESTATE_MAX) return 0;
    int members = 0;
    for (size_t a = 0; a <= n;) {
        size_t b = a;
        while (b < n && s[b] != ',') b++;
        size_t x = a, y = b;
        while (x < y && is_ows(s[x])) x++;
        while (y > x && is_ows(s[y - 1])) y--;
        if (x < y) {
            size_t eq = x;
            while (eq < y && s[eq] != '=') eq++;
            if (eq == x || eq + 1 >= y || eq - x > 256 || y - eq - 1 > 256 || s[y - 1] == ' ') return 0;
            for (size_t i = x; i < eq; i++)
                if (!key_char(s[i])) return 0;
            for (size_t i = eq + 1; i < y; i++)
                if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '=') return 0;
            members++;
        }
        a = b + 1;
    }
    return members >= 1 && members <= 32;
}

/* s with " \t" before and after every comma and at both ends, into out. */
static size_t pad(const char *s, size_t n, char *out) {
    size_t k = 0;
    out[k++] = ' ', out[k++] = '\t';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ',') out[k++] = ' ', out[k++] = '\t';
        out[k++] = s[i];
        if (s[i] == ',') out[k++] = '\t', out[k++] = ' ';
    }
    out[k++] = '\t', out[k++] = ' ';
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0: {
        svc_trace_ctx c, back;
        if (svc__traceparent_parse(s, n, &c) != SVC_OK) break;
        int nz = 0;
        for (int i = 0; i < 16; i++) nz |= c.trace_id[i];
        CHECK(nz);
        nz = 0;
        for (int i = 0; i < 8; i++) nz |= c.span_id[i];
        CHECK(nz);
        char out[SVC_TRACEPARENT_LEN + 1];
        svc__traceparent_format(out, &c);
        CHECK(strlen(out) == SVC_TRACEPARENT_LEN);
        CHECK(svc__traceparent_parse(out, SVC_TRACEPARENT_LEN, &back) == SVC_OK);
        CHECK(memcmp(&c, &back, sizeof c) == 0);
        if (s[0] == '0' && s[1] == '0') CHECK(memcmp(out, s, 53) == 0);
        break;
    }
    case 1: {
        int ok = svc__tracestate_ok(s, n);
        if (ok) {
            CHECK(n <= SVC_TRACESTATE_MAX);
            for (size_t i = 0; i < n; i++) CHECK((s[i] >= 0x20 && s[i] <= 0x7e) || s[i] == '\t');
        }
        CHECK(ok == tracestate_plain(s, n));
        if (n <= SVC_TRACESTATE_MAX) {
            char padded[5 * SVC_TRACESTATE_MAX + 4];
            size_t pn = pad(s, n, padded);
            if (pn <= SVC_TRACESTATE_MAX) CHECK(svc__tracestate_ok(padded, pn) == ok);
        }
        break;
    }
    default: {
        svc_trace_query q;
        char err[160];
        if (svc__trace_query_parse(s, n, &q, err, sizeof err) == SVC_OK)
            CHECK(q.limit >= 1 && q.limit <= SVC_TRACE_QUERY_MAX);
        break;
    }
    }
    return 0;
}
