/* Tracing (src/obs/trace.c): traceparent and tracestate parsing and
 * formatting, sampling, the ring's bound, the query and OTLP encodings. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "metrics_util.h"
#include "obs/internal.h"
#include "../test.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static int parse(const char *s, svc_trace_ctx *c) { return svc__traceparent_parse(s, strlen(s), c); }

TEST(traceparent_round_trip) {
    svc_trace_ctx c;
    REQUIRE(parse(TP, &c) == SVC_OK);
    CHECK_EQ(c.trace_id[0], 0x4b);
    CHECK_EQ(c.span_id[7], 0xb7);
    CHECK_EQ(c.flags, SVC_TRACE_SAMPLED);
    char out[SVC_TRACEPARENT_LEN + 1];
    svc__traceparent_format(out, &c);
    CHECK_STR(out, TP);
    /* Unsampled, and unknown flag bits dropped. */
    REQUIRE(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe", &c) == SVC_OK);
    CHECK_EQ(c.flags, 0);
    svc__traceparent_format(out, &c);
    CHECK_STR(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    /* A later version may add fields after a dash. */
    CHECK_EQ(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what", &c), SVC_OK);
}

TEST(traceparent_refusals) {
    static const char *const bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",     /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* 00 is exactly 55 */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", /* later version: "-" follows */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* version ff */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero parent */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* uppercase */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* separator */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", /* not hex */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
    };
    svc_trace_ctx c;
    memset(&c, 0x55, sizeof c);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse(bad[i], &c) != SVC_EINVAL) test_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
    }
    CHECK_EQ(c.flags, 0x55); /* untouched */
    char big[SVC_TRACEPARENT_MAX + 2];
    memset(big, '-', sizeof big - 1);
    memcpy(big, "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 55);
    big[sizeof big - 1] = '\0';
    CHECK_EQ(parse(big, &c), SVC_EINVAL); /* oversized */
    CHECK_EQ(svc__traceparent_parse(NULL, 0, &c), SVC_EINVAL);
}

TEST(tracestate_checks) {
    CHECK(svc__tracestate_ok("rojo=00f067aa0ba902b7", 21));
    const char *two = "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,, tenant@vendor=x";
    CHECK(svc__tracestate_ok(two, strlen(two)));
    /* Optional whitespace (spaces, tabs) around members, as W3C's OWS. */
    static const char *const ows[] = {"k=v ,x=y", "k=v\t,\tx=y", " k=v", "k=v \t", "k=a b ", "\tk=v , , x=y\t"};
    for (size_t i = 0; i < sizeof ows / sizeof ows[0]; i++)
        if (!svc__tracestate_ok(ows[i], strlen(ows[i]))) test_fail(__FILE__, __LINE__, "refused \"%s\"", ows[i]);
    static const char *const bad[] = {"",     "novalue", "=x",    "k=",      "K=v",     "k=v=w",
                                      ",,",   "k=v\x01", "k= ,x=y", "k=a\tb", "k =v",    " \t, "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (svc__tracestate_ok(bad[i], strlen(bad[i]))) test_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
    char many[33 * 4 + 1] = "";
    for (int i = 0; i < 33; i++) strcat(many, "a=b,");
    CHECK(!svc__tracestate_ok(many, strlen(many))); /* 33 members */
    char big[SVC_TRACESTATE_MAX + 2];
    memset(big, 'b', sizeof big - 1);
    memcpy(big, "a=", 2);
    big[sizeof big - 1] = '\0';
    CHECK(!svc__tracestate_ok(big, strlen(big)));
}

TEST(sampling_ratio_and_parent) {
    svc__trace_configure(0, 0, "t", "i");
    svc_span s;
    int kept = 0;
    for (int i = 0; i < 1000; i++) kept += svc_span_begin(&s, NULL, SVC_SPAN_INTERNAL, "x");
    CHECK_EQ(kept, 0);
    svc__trace_configure(1, 0, "t", "i");
    kept = 0;
    for (int i = 0; i < 1000; i++) kept += svc_span_begin(&s, NULL, SVC_SPAN_INTERNAL, "x");
    CHECK_EQ(kept, 1000);
    svc__trace_configure(0.5, 0, "t", "i");
    kept = 0;
    for (int i = 0; i < 10000; i++) kept += svc_span_begin(&s, NULL, SVC_SPAN_INTERNAL, "x");
    CHECK(kept > 4000 && kept < 6000); /* 0.5 of 10000, far outside 10 standard deviations */
    /* A parent's flag wins over the ratio, both ways. */
    svc_trace_ctx p;
    REQUIRE(parse(TP, &p) == SVC_OK);
    svc__trace_configure(0, 0, "t", "i");
    CHECK_EQ(svc_span_begin(&s, &p, SVC_SPAN_CLIENT, "x"), 1);
    CHECK(memcmp(s.trace_id, p.trace_id, 16) == 0 && memcmp(s.parent_id, p.span_id, 8) == 0);
    CHECK(memcmp(s.span_id, p.span_id, 8) != 0);
    p.flags = 0;
    svc__trace_configure(1, 0, "t", "i");
    CHECK_EQ(svc_span_begin(&s, &p, SVC_SPAN_CLIENT, "x"), 0);
}

static void record(int i, int kind, uint64_t dur) {
    svc_span s;
    svc_trace_ctx p = {.flags = SVC_TRACE_SAMPLED};
    p.trace_id[0] = (uint8_t)(i & 0xff);
    p.trace_id[15] = 1;
    p.span_id[0] = 1;
    svc_span_begin(&s, &p, (svc_span_kind)kind, "GET /x");
    s.dur_ns = dur;
    svc__trace_record(&s);
}

TEST(ring_is_bounded_and_counts_overwrites) {
    svc_metrics_reset();
    svc__trace_configure(1, 0, "t", "i");
    svc__trace_ring_reset();
    for (int i = 0; i < SVC_TRACE_RING_SPANS + 100; i++) record(i, SVC_SPAN_SERVER, (uint64_t)i);
    char *text = render_all();
    REQUIRE(text);
    CHECK_EQ(sample(text, "trace_spans_dropped_total{reason=\"overwritten\"}"), 100);
    CHECK_EQ(sample(text, "trace_spans_recorded_total"), SVC_TRACE_RING_SPANS + 100);
    free(text);
    svc_span s;
    CHECK(!svc__trace_ring_read(99, &s));  /* overwritten */
    CHECK(svc__trace_ring_read(100, &s));
    CHECK_EQ(s.dur_ns, 100);
    CHECK(!svc__trace_ring_read(SVC_TRACE_RING_SPANS + 100, &s)); /* not written yet */
}

static json_t *run_query(const char *q) {
    svc_trace_query tq;
    char err[128];
    if (svc__trace_query_parse(q, strlen(q), &tq, err, sizeof err) != SVC_OK) return NULL;
    svc_buf b = {0};
    svc__trace_query(&tq, &b);
    json_t *doc = json_loadb(b.data, b.len, 0, NULL);
    svc_buf_free(&b);
    return doc;
}

TEST(query_recent_slowest_and_by_trace) {
    svc__trace_configure(1, 0, "t", "i");
    svc__trace_ring_reset();
    for (int i = 0; i < 300; i++) record(i, i % 3 ? SVC_SPAN_CLIENT : SVC_SPAN_SERVER, (uint64_t)(i * 7919 % 1000));
    json_t *d = run_query("");
    REQUIRE(d);
    CHECK_EQ(json_array_size(json_object_get(d, "spans")), SVC_TRACE_QUERY_DEFAULT);
    CHECK_STR(json_string_value(json_object_get(d, "service")), "t");
    json_decref(d);
    d = run_query("{\"slowest\":true,\"limit\":10}");
    REQUIRE(d);
    json_t *sp = json_object_get(d, "spans");
    CHECK_EQ(json_array_size(sp), 10);
    for (size_t i = 0; i < json_array_size(sp); i++) {
        json_t *s = json_array_get(sp, i);
        CHECK_STR(json_string_value(json_object_get(s, "kind")), "server");
        if (i) CHECK(json_integer_value(json_object_get(s, "duration_ns")) <=
                     json_integer_value(json_object_get(json_array_get(sp, i - 1), "duration_ns")));
    }
    json_decref(d);
    /* trace ids are <i & 0xff>00..0001: i = 5 and 261 share one. */
    d = run_query("{\"trace_id\":\"05000000000000000000000000000001\"}");
    REQUIRE(d);
    CHECK_EQ(json_array_size(json_object_get(d, "spans")), 2);
    json_decref(d);
    static const char *const bad[] = {"{", "[]", "{\"limit\":0}", "{\"limit\":257}", "{\"trace_id\":\"x\"}",
                                      "{\"slowest\":1}", "{\"other\":1}", "{\"a\":{\"b\":{\"c\":1}}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        svc_trace_query q;
        char err[128];
        if (svc__trace_query_parse(bad[i], strlen(bad[i]), &q, err, sizeof err) == SVC_OK)
            test_fail(__FILE__, __LINE__, "accepted %s", bad[i]);
    }
}

/* The durations of q's spans, in reply order, into d (at most max). */
static size_t query_durations(const svc_trace_query *q, int64_t *d, size_t max) {
    svc_buf b = {0};
    svc__trace_query(q, &b);
    json_t *doc = json_loadb(b.data, b.len, 0, NULL);
    svc_buf_free(&b);
    json_t *sp = json_object_get(doc, "spans");
    size_t n = json_array_size(sp);
    for (size_t i = 0; i < n && i < max; i++) d[i] = json_integer_value(json_object_get(json_array_get(sp, i), "duration_ns"));
    json_decref(doc);
    return doc ? n : (size_t)-1;
}

TEST(query_slowest_ordering) {
    svc__trace_configure(1, 0, "t", "i");
    svc__trace_ring_reset();
    /* Oldest first: 5, 9, 1, 9, 3, 7, 9; a client span longer than all. */
    static const uint64_t durs[] = {5, 9, 1, 9, 3, 7, 9};
    for (int i = 0; i < 7; i++) record(i, SVC_SPAN_SERVER, durs[i]);
    record(7, SVC_SPAN_CLIENT, 100);
    int64_t d[16];
    svc_trace_query q = {.limit = 16, .slowest = 1};
    REQUIRE(query_durations(&q, d, 16) == 7); /* limit above the count: every server span */
    static const int64_t want[] = {9, 9, 9, 7, 5, 3, 1};
    for (int i = 0; i < 7; i++) CHECK_EQ(d[i], want[i]);
    q.limit = 1;
    REQUIRE(query_durations(&q, d, 16) == 1);
    CHECK_EQ(d[0], 9);
    q.limit = 4;
    REQUIRE(query_durations(&q, d, 16) == 4);
    CHECK_EQ(d[2], 9);
    CHECK_EQ(d[3], 7);
    q.limit = 0;
    CHECK_EQ(query_durations(&q, d, 16), 0);
    q.slowest = 0;
    CHECK_EQ(query_durations(&q, d, 16), 0);
    /* Ties: newest first. Trace ids are <i>00..01, span i's. */
    q = (svc_trace_query){.limit = 2, .slowest = 1};
    svc_buf b = {0};
    svc__trace_query(&q, &b);
    json_t *doc = json_loadb(b.data, b.len, 0, NULL);
    svc_buf_free(&b);
    json_t *sp = json_object_get(doc, "spans");
    CHECK_STR(json_string_value(json_object_get(json_array_get(sp, 0), "trace_id")), "06000000000000000000000000000001");
    CHECK_STR(json_string_value(json_object_get(json_array_get(sp, 1), "trace_id")), "03000000000000000000000000000001");
    json_decref(doc);
    /* Newest, without slowest: limit 1 is the client span. */
    q = (svc_trace_query){.limit = 1};
    REQUIRE(query_durations(&q, d, 16) == 1);
    CHECK_EQ(d[0], 100);
}

/* Two writers fill the ring with spans whose strings say who wrote them and
 * how long each is (some fill their field with no NUL, garbage after a
 * NUL in the others); a reader checks every copy it keeps. */
#define TORN_SPANS 400000
static atomic_int torn_writers_done;

static size_t torn_len(size_t cap, uint64_t n) { return 1 + (size_t)(n % cap); } /* 1..cap: cap has no NUL */

static void torn_fill(char *f, size_t cap, char c, uint64_t n) {
    size_t len = torn_len(cap, n);
    memset(f, 0xff, cap);
    memset(f, c, len);
    if (len < cap) f[len] = '\0';
}

static void *torn_writer(void *arg) {
    uint64_t w = (uint64_t)(uintptr_t)arg;
    svc_span s;
    memset(&s, 0, sizeof s);
    s.flags = SVC_TRACE_SAMPLED;
    char c = (char)('a' + w);
    for (uint64_t n = 0; n < TORN_SPANS; n++) {
        s.dur_ns = w << 32 | n;
        torn_fill(s.name, sizeof s.name, c, n);
        torn_fill(s.peer, sizeof s.peer, c, n + 1);
        torn_fill(s.detail, sizeof s.detail, c, n + 2);
        torn_fill(s.code, sizeof s.code, c, n + 3);
        svc__trace_record(&s);
    }
    atomic_fetch_add(&torn_writers_done, 1);
    return NULL;
}

/* 1 when f holds what torn_fill wrote for (c, n), cut to a C string. */
static int torn_ok(const char *f, size_t cap, char c, uint64_t n) {
    size_t len = torn_len(cap, n);
    if (len == cap) len = cap - 1;
    if (strnlen(f, cap) != len) return 0;
    for (size_t i = 0; i < len; i++)
        if (f[i] != c) return 0;
    return 1;
}

TEST(ring_reader_copies_are_whole_and_terminated) {
    svc__trace_configure(1, 0, "t", "i");
    svc__trace_ring_reset();
    atomic_store(&torn_writers_done, 0);
    pthread_t t[2];
    for (uintptr_t w = 0; w < 2; w++) REQUIRE(pthread_create(&t[w], NULL, torn_writer, (void *)w) == 0);
    long kept = 0, bad = 0;
    svc_span s;
    while (atomic_load(&torn_writers_done) < 2) {
        uint64_t head = svc__trace_ring_head();
        for (uint64_t i = head > SVC_TRACE_RING_SPANS ? head - SVC_TRACE_RING_SPANS : 0; i < head; i++) {
            if (!svc__trace_ring_read(i, &s)) continue;
            kept++;
            uint64_t w = s.dur_ns >> 32, n = s.dur_ns & 0xffffffffu;
            char c = (char)('a' + w);
            if (w > 1 || !torn_ok(s.name, sizeof s.name, c, n) || !torn_ok(s.peer, sizeof s.peer, c, n + 1) ||
                !torn_ok(s.detail, sizeof s.detail, c, n + 2) || !torn_ok(s.code, sizeof s.code, c, n + 3))
                bad++;
        }
    }
    for (int w = 0; w < 2; w++) pthread_join(t[w], NULL);
    CHECK(kept > 0);
    CHECK_EQ(bad, 0);
}

TEST(otlp_json_encoding) {
    svc__trace_configure(1, 0, "products", "inst1");
    svc_span s[2];
    svc_trace_ctx p;
    REQUIRE(parse(TP, &p) == SVC_OK);
    svc_span_begin(&s[0], &p, SVC_SPAN_SERVER, "GET /products/:id");
    s[0].status = 503;
    s[0].error = 1;
    s[0].detail_is = SVC_SPAN_DETAIL_ROUTE;
    svc_span_set(s[0].detail, sizeof s[0].detail, "/products/:id");
    svc_span_set(s[0].code, sizeof s[0].code, "unavailable");
    s[0].start_ns = 1700000000123456789ull;
    s[0].dur_ns = 1000;
    svc_span_begin(&s[1], NULL, SVC_SPAN_CLIENT, "sqlite");
    memset(s[1].parent_id, 0, 8);
    s[1].detail_is = SVC_SPAN_DETAIL_SQL;
    svc_span_set(s[1].detail, sizeof s[1].detail, "SELECT * FROM t WHERE id = ?1");
    svc_buf b = {0};
    svc__trace_otlp_encode(s, 2, &b);
    json_t *d = json_loadb(b.data, b.len, 0, NULL);
    REQUIRE(d);
    json_t *rs = json_array_get(json_object_get(d, "resourceSpans"), 0);
    json_t *attr = json_array_get(json_object_get(json_object_get(rs, "resource"), "attributes"), 0);
    CHECK_STR(json_string_value(json_object_get(attr, "key")), "service.name");
    CHECK_STR(json_string_value(json_object_get(json_object_get(attr, "value"), "stringValue")), "products");
    json_t *spans = json_object_get(json_array_get(json_object_get(rs, "scopeSpans"), 0), "spans");
    REQUIRE(json_array_size(spans) == 2);
    json_t *a = json_array_get(spans, 0);
    CHECK_STR(json_string_value(json_object_get(a, "traceId")), "4bf92f3577b34da6a3ce929d0e0e4736");
    CHECK_STR(json_string_value(json_object_get(a, "parentSpanId")), "00f067aa0ba902b7");
    CHECK_EQ(strlen(json_string_value(json_object_get(a, "spanId"))), 16);
    CHECK_EQ(json_integer_value(json_object_get(a, "kind")), 2);
    CHECK_STR(json_string_value(json_object_get(a, "startTimeUnixNano")), "1700000000123456789");
    CHECK_STR(json_string_value(json_object_get(a, "endTimeUnixNano")), "1700000000123457789");
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(a, "status"), "code")), 2);
    json_t *b0 = json_array_get(spans, 1);
    CHECK(json_object_get(b0, "parentSpanId") == NULL); /* a root has none */
    CHECK(strstr(b.data, "\"db.query.text\"") && strstr(b.data, "\"http.route\""));
    CHECK(strstr(b.data, "{\"key\":\"http.response.status_code\",\"value\":{\"intValue\":\"503\"}}"));
    json_decref(d);
    svc_buf_free(&b);
}

TEST(span_set_cuts_at_a_character) {
    char out[5];
    svc_span_set(out, sizeof out, "ab\xc3\xa9\xc3\xa9"); /* "abéé": 4 bytes fit "abé" */
    CHECK_STR(out, "ab\xc3\xa9");
    svc_span_set(out, sizeof out, "abc\xc3\xa9"); /* é would straddle the end */
    CHECK_STR(out, "abc");
    svc_span_set(out, sizeof out, NULL);
    CHECK_STR(out, "");
}
