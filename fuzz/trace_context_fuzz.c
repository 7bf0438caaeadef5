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
 *     passed on in a header as it came.
 *  3. A query that parses has its limit within 1..SVC_TRACE_QUERY_MAX.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "obs/internal.h"

#include "fuzz_util.h"

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
    case 1:
        if (svc__tracestate_ok(s, n)) {
            CHECK(n <= SVC_TRACESTATE_MAX);
            for (size_t i = 0; i < n; i++) CHECK((s[i] >= 0x20 && s[i] <= 0x7e) || s[i] == '\t');
        }
        break;
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
