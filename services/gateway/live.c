/*
 * What the dashboard keeps of a $SRV.LIVE answer (docs/messaging.md, "Live
 * snapshot"). Anyone on NATS may answer, so an answer is hostile bytes: it
 * is parsed with limits, and only the known fields of the expected types
 * are copied into a new object, strings cut (at a UTF-8 boundary) to
 * GW_LIVE_STR_MAX bytes, counters non-negative, lists capped. The browser
 * then escapes every string it shows (textContent only); this keeps what it
 * is sent bounded and well-typed. Pure: jansson, svc_json_parse and svc_buf
 * only (fuzz/dashboard_live_fuzz.c includes it).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

/* The bytes of s kept: at most GW_LIVE_STR_MAX, never cut inside a UTF-8
 * sequence (svc_json_parse guarantees valid UTF-8 without NUL). */
static size_t cut_len(const char *s) {
    size_t n = strlen(s);
    if (n > GW_LIVE_STR_MAX) {
        n = GW_LIVE_STR_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    return n;
}

static json_t *cut_string(const char *s) { return json_stringn(s, cut_len(s)); }

static void copy_str(json_t *to, json_t *from, const char *key) {
    const char *s = json_string_value(json_object_get(from, key));
    if (s) json_object_set_new(to, key, cut_string(s));
}

/* A count: an integer >= 0. */
static void copy_count(json_t *to, json_t *from, const char *key) {
    json_t *v = json_object_get(from, key);
    if (json_is_integer(v) && json_integer_value(v) >= 0) json_object_set(to, key, v);
}

/* A measure: a finite number >= 0. */
static void copy_measure(json_t *to, json_t *from, const char *key) {
    json_t *v = json_object_get(from, key);
    if (json_is_number(v) && isfinite(json_number_value(v)) && json_number_value(v) >= 0)
        json_object_set_new(to, key, json_real(json_number_value(v)));
}

/* An array of at most max numbers of one kind (counts or measures); anything
 * else makes it absent. */
static void copy_numbers(json_t *to, json_t *from, const char *key, size_t max, int counts) {
    json_t *a = json_object_get(from, key);
    if (!json_is_array(a) || json_array_size(a) > max) return;
    json_t *out = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        int ok = counts ? json_is_integer(v) && json_integer_value(v) >= 0
                        : json_is_number(v) && isfinite(json_number_value(v)) && json_number_value(v) >= 0;
        if (!ok) {
            json_decref(out);
            return;
        }
        json_array_append_new(out, counts ? json_integer(json_integer_value(v)) : json_real(json_number_value(v)));
    }
    json_object_set_new(to, key, out);
}

json_t *gw_live_clean(const char *data, size_t len) {
    svc_json_limits lim = {.max_bytes = GW_LIVE_MAX_BYTES, .max_depth = 8, .max_string = 4096};
    json_t *doc = NULL;
    if (len > GW_LIVE_MAX_BYTES || svc_json_parse(data, len, &lim, &doc, NULL, 0) != SVC_OK) return NULL;
    const char *type = json_string_value(json_object_get(doc, "type"));
    const char *name = json_string_value(json_object_get(doc, "name"));
    const char *id = json_string_value(json_object_get(doc, "id"));
    if (!type || strcmp(type, "io.svckit.v1.live_response") != 0 || !name || !*name || !id || !*id) {
        json_decref(doc);
        return NULL;
    }
    json_t *out = json_object();
    copy_str(out, doc, "name");
    copy_str(out, doc, "id");
    copy_str(out, doc, "version");
    copy_str(out, doc, "started");
    copy_str(out, doc, "not_ready");
    json_t *md = json_object_get(doc, "metadata");
    copy_str(out, md, "host");
    copy_str(out, md, "hostname");
    copy_str(out, md, "http_port");
    json_object_set_new(out, "ready", json_boolean(json_is_true(json_object_get(doc, "ready"))));
    copy_count(out, doc, "now_ms");
    copy_measure(out, doc, "uptime_s");
    copy_measure(out, doc, "cpu_seconds");
    copy_count(out, doc, "rss_bytes");
    copy_count(out, doc, "in_flight");
    copy_count(out, doc, "connections");
    copy_numbers(out, doc, "buckets", SVC_METRIC_MAX_BUCKETS, 0);
    json_object_set_new(out, "truncated", json_boolean(json_is_true(json_object_get(doc, "truncated"))));

    json_t *routes = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(doc, "routes"), i, r) {
        if (i >= SVC_MSG_LIVE_MAX_ROUTES) break;
        if (!json_is_string(json_object_get(r, "route")) || !json_is_string(json_object_get(r, "method"))) continue;
        json_t *o = json_object();
        copy_str(o, r, "route");
        copy_str(o, r, "method");
        copy_count(o, r, "requests");
        copy_count(o, r, "errors_4xx");
        copy_count(o, r, "errors_5xx");
        copy_measure(o, r, "duration_sum");
        copy_numbers(o, r, "duration_buckets", SVC_METRIC_MAX_BUCKETS + 1, 1);
        json_array_append_new(routes, o);
    }
    json_object_set_new(out, "routes", routes);

    json_t *calls = json_array();
    json_t *c;
    json_array_foreach(json_object_get(doc, "calls"), i, c) {
        if (i >= SVC_MSG_LIVE_MAX_CALLS) break;
        /* RPC calls name their callee, events their publisher. */
        const char *kind = json_string_value(json_object_get(c, "kind"));
        const char *peer = kind && strcmp(kind, "event") == 0 ? "from" : "to";
        if (!json_is_string(json_object_get(c, peer))) continue;
        json_t *o = json_object();
        copy_str(o, c, peer);
        copy_str(o, c, "kind");
        copy_count(o, c, "calls");
        copy_count(o, c, "errors");
        json_array_append_new(calls, o);
    }
    json_object_set_new(out, "calls", calls);
    json_decref(doc);
    return out;
}

/* A span id of exactly n lowercase hex digits. */
static int is_hex_id(const char *s, size_t n) {
    if (!s || strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

const char *gw_span_str(const gw_spans *s, uint32_t off) { return off ? s->text.data + off : ""; }

void gw_spans_free(gw_spans *s) {
    free(s->v);
    svc_buf_free(&s->text);
    memset(s, 0, sizeof *s);
}

/* s cut, appended to the spans' text: its offset, 0 when absent or empty. */
static uint32_t keep_str(gw_spans *into, const char *s) {
    size_t n = s ? cut_len(s) : 0;
    if (n == 0) return 0;
    if (into->text.len == 0) svc_buf_putc(&into->text, '\0');
    uint32_t off = (uint32_t)into->text.len;
    svc_buf_append(&into->text, s, n);
    svc_buf_putc(&into->text, '\0');
    return into->text.oom ? 0 : off;
}

size_t gw_trace_clean(const char *data, size_t len, const char *trace_id, gw_spans *into, size_t max) {
    svc_json_limits lim = {.max_bytes = GW_TRACE_MAX_REPLY_BYTES, .max_depth = 4, .max_string = 4096};
    json_t *doc = NULL;
    if (len > GW_TRACE_MAX_REPLY_BYTES || svc_json_parse(data, len, &lim, &doc, NULL, 0) != SVC_OK) return 0;
    /* Kept once per answer, at its first span. */
    uint32_t service = 0, instance = 0;
    int named = 0;
    size_t kept = 0, i;
    json_t *s;
    json_array_foreach(json_object_get(doc, "spans"), i, s) {
        if (into->n >= max || into->text.oom) break;
        const char *tid = json_string_value(json_object_get(s, "trace_id"));
        const char *sid = json_string_value(json_object_get(s, "span_id"));
        const char *pid = json_string_value(json_object_get(s, "parent_id"));
        json_t *start = json_object_get(s, "start_ns"), *dur = json_object_get(s, "duration_ns");
        if (!is_hex_id(tid, 32) || !is_hex_id(sid, 16) || (pid && !is_hex_id(pid, 16)) ||
            !json_is_integer(start) || json_integer_value(start) < 0 || !json_is_integer(dur) ||
            json_integer_value(dur) < 0 || (trace_id && strcmp(tid, trace_id) != 0))
            continue;
        if (into->n == into->cap) {
            size_t cap = into->cap ? into->cap * 2 : 64;
            gw_span *v = realloc(into->v, cap * sizeof *v);
            if (!v) break;
            into->v = v, into->cap = cap;
        }
        if (!named) {
            service = keep_str(into, json_string_value(json_object_get(doc, "service")));
            instance = keep_str(into, json_string_value(json_object_get(doc, "instance")));
            named = 1;
        }
        gw_span *o = &into->v[into->n];
        memset(o, 0, sizeof *o);
        memcpy(o->trace_id, tid, 32);
        memcpy(o->span_id, sid, 16);
        if (pid) memcpy(o->parent_id, pid, 16);
        o->service = service, o->instance = instance;
        o->name = keep_str(into, json_string_value(json_object_get(s, "name")));
        o->kind = keep_str(into, json_string_value(json_object_get(s, "kind")));
        o->start_ns = json_integer_value(start);
        o->duration_ns = json_integer_value(dur);
        o->error = json_is_true(json_object_get(s, "error"));
        if (into->text.oom) break;
        into->n++;
        kept++;
    }
    json_decref(doc);
    return kept;
}
