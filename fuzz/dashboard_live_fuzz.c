/*
 * Fuzzes what the gateway's dashboard keeps of a $SRV.LIVE answer, which
 * anyone on NATS may send (services/gateway/live.c, included here: the
 * Makefile links a fuzz target with the library only).
 *
 * Besides the sanitizers it checks, on every input that is kept:
 *
 *  1. name and id are non-empty strings of at most GW_LIVE_STR_MAX bytes,
 *     every other string too; ready and truncated are booleans.
 *  2. At most SVC_MSG_LIVE_MAX_ROUTES routes and SVC_MSG_LIVE_MAX_CALLS
 *     calls; every count kept is an integer >= 0.
 *
 * The same bytes as an svckit.trace answer (gw_trace_clean): at most the cap
 * of spans is appended, each with a 32-hex trace id (the one asked for, when
 * one is), a 16-hex span id, times >= 0 and strings within GW_LIVE_STR_MAX.
 */
#include <stdint.h>
#include <string.h>

#include "../services/gateway/live.c"

#include "fuzz_util.h"

static void check_strings(json_t *o) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (json_is_string(v)) CHECK(json_string_length(v) <= GW_LIVE_STR_MAX);
        if (json_is_integer(v)) CHECK(json_integer_value(v) >= 0);
        if (json_is_real(v)) CHECK(json_real_value(v) >= 0);
    }
}

static int hex_of(const char *s, size_t n) {
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static void check_traces(const uint8_t *data, size_t size) {
    static const char want[] = "4bf92f3577b34da6a3ce929d0e0e4736";
    for (int one = 0; one < 2; one++) {
        gw_spans into = {0};
        size_t n = gw_trace_clean((const char *)data, size, one ? want : NULL, &into, 3);
        CHECK(n == into.n && n <= 3);
        for (size_t i = 0; i < into.n; i++) {
            const gw_span *s = &into.v[i];
            CHECK(hex_of(s->trace_id, 32) && (!one || strcmp(s->trace_id, want) == 0));
            CHECK(hex_of(s->span_id, 16) && (!s->parent_id[0] || hex_of(s->parent_id, 16)));
            CHECK(s->start_ns >= 0 && s->duration_ns >= 0);
            const uint32_t offs[] = {s->service, s->instance, s->name, s->kind};
            for (int k = 0; k < 4; k++) {
                CHECK(offs[k] < into.text.len || (!offs[k] && !into.text.len));
                size_t l = strlen(gw_span_str(&into, offs[k]));
                CHECK(l <= GW_LIVE_STR_MAX && (l > 0) == (offs[k] != 0));
            }
        }
        gw_spans_free(&into);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_traces(data, size);
    json_t *o = gw_live_clean((const char *)data, size);
    if (!o) return 0;
    CHECK(json_is_object(o));
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *id = json_string_value(json_object_get(o, "id"));
    CHECK(name && *name && id && *id);
    CHECK(json_is_boolean(json_object_get(o, "ready")) && json_is_boolean(json_object_get(o, "truncated")));
    check_strings(o);
    json_t *routes = json_object_get(o, "routes"), *calls = json_object_get(o, "calls");
    CHECK(json_is_array(routes) && json_array_size(routes) <= SVC_MSG_LIVE_MAX_ROUTES);
    CHECK(json_is_array(calls) && json_array_size(calls) <= SVC_MSG_LIVE_MAX_CALLS);
    size_t i;
    json_t *r;
    json_array_foreach(routes, i, r) check_strings(r);
    json_array_foreach(calls, i, r) check_strings(r);
    json_decref(o);
    return 0;
}
