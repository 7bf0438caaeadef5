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

static void check_traces(const uint8_t *data, size_t size) {
    static const char want[] = "4bf92f3577b34da6a3ce929d0e0e4736";
    for (int one = 0; one < 2; one++) {
        json_t *into = json_array();
        size_t n = gw_trace_clean((const char *)data, size, one ? want : NULL, into, 3);
        CHECK(n == json_array_size(into) && n <= 3);
        size_t i;
        json_t *s;
        json_array_foreach(into, i, s) {
            const char *tid = json_string_value(json_object_get(s, "trace_id"));
            CHECK(tid && strlen(tid) == 32 && (!one || strcmp(tid, want) == 0));
            const char *sid = json_string_value(json_object_get(s, "span_id"));
            CHECK(sid && strlen(sid) == 16);
            CHECK(json_is_integer(json_object_get(s, "start_ns")) && json_is_integer(json_object_get(s, "duration_ns")));
            check_strings(s);
        }
        json_decref(into);
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
