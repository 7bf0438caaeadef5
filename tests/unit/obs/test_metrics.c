/* The metrics registry: registration, validation, series lookup and cap,
 * atomic updates, and the text exposition (checked line by line and by
 * promtool). Each TEST runs in a fresh child process, so the registry starts
 * empty every time. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_util.h"
#include "obs/internal.h"
#include "svckit/obs.h"
#include "../test.h"

#define L(...) ((const char *const[]){__VA_ARGS__})

/* Compares text with expected line by line, reporting the first difference. */
static void check_lines(const char *file, int line, const char *got, const char *want) {
    int n = 1;
    while (*got || *want) {
        const char *ge = strchr(got, '\n'), *we = strchr(want, '\n');
        size_t gl = ge ? (size_t)(ge - got) : strlen(got);
        size_t wl = we ? (size_t)(we - want) : strlen(want);
        if (gl != wl || memcmp(got, want, gl) != 0 || !ge != !we) {
            test_fail(file, line, "line %d: got \"%.*s\", want \"%.*s\"", n, (int)gl, got,
                      (int)wl, want);
            return;
        }
        got += gl + (ge ? 1 : 0);
        want += wl + (we ? 1 : 0);
        n++;
    }
}
#define CHECK_LINES(got, want) check_lines(__FILE__, __LINE__, got, want)

TEST(registration_is_idempotent) {
    svc_metric *c = svc_metric_counter("jobs_total", "Jobs.", 2, L("queue", "result"));
    REQUIRE(c != NULL);
    CHECK(svc_metric_counter("jobs_total", "Other help.", 2, L("queue", "result")) == c);
    svc_metric *g = svc_metric_gauge("temp", "T.", 0, NULL);
    REQUIRE(g != NULL);
    CHECK(svc_metric_gauge("temp", NULL, 0, NULL) == g);
    svc_metric *h = svc_metric_histogram("lat_seconds", "L.", 1, L("route"), NULL, 0);
    REQUIRE(h != NULL);
    CHECK(svc_metric_histogram("lat_seconds", "L.", 1, L("route"), NULL, 0) == h);
    /* The default buckets, spelled out, are the same buckets. */
    double def[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                    0.05,   0.1,     0.25,   0.5,   1,      2.5,    5,     10};
    CHECK(svc_metric_histogram("lat_seconds", "L.", 1, L("route"), def, 16) == h);
    /* Series lookups are idempotent too. */
    svc_series *s = svc_metric_with(c, L("a", "ok"));
    CHECK(s != NULL);
    CHECK(svc_metric_with(c, L("a", "ok")) == s);
    CHECK(svc_metric_with(c, L("a", "fail")) != s);
    CHECK(svc_metric_with(g, NULL) == svc_metric_with(g, NULL));
}

TEST(registration_conflicts_return_null) {
    REQUIRE(svc_metric_counter("jobs_total", "Jobs.", 2, L("queue", "result")) != NULL);
    CHECK(svc_metric_gauge("jobs_total", "Jobs.", 2, L("queue", "result")) == NULL);
    CHECK(svc_metric_histogram("jobs_total", "Jobs.", 2, L("queue", "result"), NULL, 0) == NULL);
    CHECK(svc_metric_counter("jobs_total", "Jobs.", 1, L("queue")) == NULL);
    CHECK(svc_metric_counter("jobs_total", "Jobs.", 2, L("result", "queue")) == NULL);
    CHECK(svc_metric_counter("jobs_total", "Jobs.", 2, L("queue", "status")) == NULL);
    CHECK(svc_metric_counter("jobs_total", "Jobs.", 0, NULL) == NULL);

    double b1[] = {1, 2}, b2[] = {1, 3};
    REQUIRE(svc_metric_histogram("size_bytes", "S.", 0, NULL, b1, 2) != NULL);
    CHECK(svc_metric_histogram("size_bytes", "S.", 0, NULL, b2, 2) == NULL);
    CHECK(svc_metric_histogram("size_bytes", "S.", 0, NULL, b1, 1) == NULL);
    CHECK(svc_metric_histogram("size_bytes", "S.", 0, NULL, NULL, 0) == NULL);

    /* Names that would collide with a histogram's own samples. */
    CHECK(svc_metric_counter("size_bytes_count", "C.", 0, NULL) == NULL);
    CHECK(svc_metric_gauge("size_bytes_sum", "C.", 0, NULL) == NULL);
    CHECK(svc_metric_gauge("size_bytes_bucket", "C.", 0, NULL) == NULL);
    CHECK(svc_metric_gauge("size_bytes_other", "C.", 0, NULL) != NULL);
    REQUIRE(svc_metric_gauge("queue_depth_count", "C.", 0, NULL) != NULL);
    CHECK(svc_metric_histogram("queue_depth", "H.", 0, NULL, NULL, 0) == NULL);

    /* The first family is unharmed by the failed attempts. */
    svc_metric *c = svc_metric_counter("jobs_total", "Jobs.", 2, L("queue", "result"));
    REQUIRE(c != NULL);
    svc_counter_add(svc_metric_with(c, L("q", "ok")), 2);
    CHECK(svc_series_value(svc_metric_with(c, L("q", "ok"))) == 2);
}

TEST(invalid_metric_names_rejected) {
    const char *bad[] = {"",     "1abc", "a-b",  "a b",  "a.b",  "__reserved", "é",
                         "abc\n", "a\"b", "a{b}", "x=y",  "tab\t"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (svc_metric_counter(bad[i], "h", 0, NULL) != NULL)
            test_fail(__FILE__, __LINE__, "accepted metric name \"%s\"", bad[i]);
        CHECK(svc_metric_gauge(bad[i], "h", 0, NULL) == NULL);
        CHECK(svc_metric_histogram(bad[i], "h", 0, NULL, NULL, 0) == NULL);
    }
    CHECK(svc_metric_counter(NULL, "h", 0, NULL) == NULL);
    char long_name[202];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[201] = '\0';
    CHECK(svc_metric_gauge(long_name, "h", 0, NULL) == NULL);
    long_name[200] = '\0';
    CHECK(svc_metric_gauge(long_name, "h", 0, NULL) != NULL);

    const char *good[] = {"a", "_a", ":a", "a:b_c9", "A_b:C", "_"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (svc_metric_gauge(good[i], "h", 0, NULL) == NULL)
            test_fail(__FILE__, __LINE__, "rejected metric name \"%s\"", good[i]);
}

TEST(invalid_label_names_rejected) {
    const char *bad[] = {"", "1a", "a:b", "a-b", "__name__", "__x", "a b", "é"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (svc_metric_counter("ok_total", "h", 1, L(bad[i])) != NULL)
            test_fail(__FILE__, __LINE__, "accepted label name \"%s\"", bad[i]);
    CHECK(svc_metric_counter("ok_total", "h", 1, L(NULL)) == NULL);
    CHECK(svc_metric_counter("ok_total", "h", 2, L("a", "a")) == NULL);
    CHECK(svc_metric_counter("ok_total", "h", 1, NULL) == NULL);
    CHECK(svc_metric_counter("ok_total", "h", -1, NULL) == NULL);
    const char *nine[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    CHECK(svc_metric_counter("ok_total", "h", 9, nine) == NULL);
    CHECK(svc_metric_counter("ok_total", "h", 8, nine) != NULL);
    /* "le" is the histogram's own label, fine elsewhere. */
    CHECK(svc_metric_histogram("h_seconds", "h", 1, L("le"), NULL, 0) == NULL);
    CHECK(svc_metric_gauge("g_le", "h", 1, L("le")) != NULL);
    CHECK(svc_metric_gauge("g_ok", "h", 2, L("_a", "B9_")) != NULL);
}

TEST(invalid_buckets_rejected) {
    double desc[] = {1, 0.5}, dup[] = {1, 1}, nan_[] = {0.1, NAN}, inf[] = {1, INFINITY},
           ninf[] = {-INFINITY, 1}, one[] = {0.5};
    CHECK(svc_metric_histogram("h1", "h", 0, NULL, desc, 2) == NULL);
    CHECK(svc_metric_histogram("h1", "h", 0, NULL, dup, 2) == NULL);
    CHECK(svc_metric_histogram("h1", "h", 0, NULL, nan_, 2) == NULL);
    CHECK(svc_metric_histogram("h1", "h", 0, NULL, inf, 2) == NULL);
    CHECK(svc_metric_histogram("h1", "h", 0, NULL, ninf, 2) == NULL);
    CHECK(svc_metric_histogram("h1", "h", 0, NULL, one, 0) == NULL);
    CHECK(svc_metric_histogram("h1", "h", 0, NULL, one, -1) == NULL);
    double many[SVC_METRIC_MAX_BUCKETS + 1];
    for (int i = 0; i <= SVC_METRIC_MAX_BUCKETS; i++) many[i] = i - 3;
    CHECK(svc_metric_histogram("h1", "h", 0, NULL, many, SVC_METRIC_MAX_BUCKETS + 1) == NULL);
    CHECK(svc_metric_histogram("h1", "h", 0, NULL, many, SVC_METRIC_MAX_BUCKETS) != NULL);
    CHECK(svc_metric_histogram("h2", "h", 0, NULL, one, 1) != NULL);
}

TEST(null_and_mismatched_updates_are_harmless) {
    CHECK(svc_metric_with(NULL, L("x")) == NULL);
    svc_counter_add(NULL, 1);
    svc_gauge_set(NULL, 1);
    svc_gauge_add(NULL, 1);
    svc_histogram_observe(NULL, 1);
    svc__counter_set(NULL, 1);
    CHECK(svc_series_value(NULL) == 0);
    svc_metrics_render(NULL);
    svc_metrics_on_collect(NULL, NULL);

    svc_series *c = svc_metric_with(svc_metric_counter("c_total", "c", 0, NULL), NULL);
    svc_series *g = svc_metric_with(svc_metric_gauge("g", "g", 0, NULL), NULL);
    svc_series *h = svc_metric_with(svc_metric_histogram("h", "h", 0, NULL, NULL, 0), NULL);
    REQUIRE(c && g && h);
    svc_counter_add(c, 5);
    svc_gauge_set(c, 100);
    svc_gauge_add(c, 100);
    svc_histogram_observe(c, 100);
    CHECK(svc_series_value(c) == 5);
    svc_gauge_set(g, 1.5);
    svc_counter_add(g, 100);
    svc_histogram_observe(g, 100);
    CHECK(svc_series_value(g) == 1.5);
    svc__counter_set(g, 7);
    CHECK(svc_series_value(g) == 1.5);
    svc_histogram_observe(h, 0.2);
    svc_counter_add(h, 100);
    svc_gauge_set(h, 100);
    CHECK(svc_series_value(h) == 1);
}

TEST(gauge_and_counter_values) {
    svc_series *g = svc_metric_with(svc_metric_gauge("g", "g", 0, NULL), NULL);
    CHECK(svc_series_value(g) == 0);
    svc_gauge_set(g, 2.5);
    svc_gauge_add(g, -4);
    CHECK(svc_series_value(g) == -1.5);
    svc_series *c = svc_metric_with(svc_metric_counter("c_total", "c", 0, NULL), NULL);
    svc_counter_add(c, 0);
    svc_counter_add(c, UINT64_C(1) << 40);
    svc_counter_add(c, 1);
    CHECK(svc_series_value(c) == (double)((UINT64_C(1) << 40) + 1));
}

TEST(internal_counter_set) {
    svc_series *f = svc_metric_with(svc__metric_counter_f64("cpu_seconds_total", "c", 0, NULL),
                                    NULL);
    REQUIRE(f != NULL);
    svc__counter_set(f, 1.25);
    CHECK(svc_series_value(f) == 1.25);
    svc_counter_add(f, 2);
    CHECK(svc_series_value(f) == 3.25);
    svc_series *c = svc_metric_with(svc_metric_counter("n_total", "c", 0, NULL), NULL);
    svc__counter_set(c, 41.9);
    CHECK(svc_series_value(c) == 41);
    svc__counter_set(c, -3);
    CHECK(svc_series_value(c) == 0);
    svc__counter_set(c, NAN);
    CHECK(svc_series_value(c) == 0);
    /* An f64 counter is still a counter: plain registration returns it. */
    CHECK(svc_metric_counter("cpu_seconds_total", "c", 0, NULL) ==
          svc__metric_counter_f64("cpu_seconds_total", "c", 0, NULL));
    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK(count_lines(text, "# TYPE cpu_seconds_total counter\n") == 1);
    CHECK(count_lines(text, "cpu_seconds_total 3.25\n") == 1);
    free(text);
}

TEST(label_values_escaped) {
    svc_metric *m = svc_metric_counter("esc_total", "h", 2, L("a", "b"));
    svc_counter_add(svc_metric_with(m, L("back\\slash", "quote\"new\nline")), 1);
    svc_counter_add(svc_metric_with(m, L("", "plain")), 2);
    svc_counter_add(svc_metric_with(m, L(NULL, "null")), 3);
    svc_counter_add(svc_metric_with(m, L("tab\there", "{}=,#")), 4);
    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK_LINES(text, "# HELP esc_total h\n"
                      "# TYPE esc_total counter\n"
                      "esc_total{a=\"\",b=\"null\"} 3\n"
                      "esc_total{a=\"\",b=\"plain\"} 2\n"
                      "esc_total{a=\"back\\\\slash\",b=\"quote\\\"new\\nline\"} 1\n"
                      "esc_total{a=\"tab\there\",b=\"{}=,#\"} 4\n");
    free(text);
}

TEST(help_text_escaped) {
    svc_metric_gauge("g1", "a\\b \"quoted\"\nnext", 0, NULL);
    svc_metric_gauge("g2", NULL, 0, NULL);
    svc_metric_gauge("g3", "", 0, NULL);
    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK_LINES(text, "# HELP g1 a\\\\b \"quoted\"\\nnext\n"
                      "# TYPE g1 gauge\n"
                      "g1 0\n"
                      "# TYPE g2 gauge\n"
                      "g2 0\n"
                      "# TYPE g3 gauge\n"
                      "g3 0\n");
    free(text);
}

TEST(hostile_label_values_sanitized) {
    svc_metric *m = svc_metric_counter("u_total", "h", 1, L("v"));
    /* A lone continuation byte, an overlong '/', a surrogate, a truncated
     * sequence: each bad byte becomes U+FFFD. Valid UTF-8 passes as is. */
    svc_series *bad = svc_metric_with(m, L("a\x80" "b\xC0\xAF" "c\xED\xA0\x80" "d\xE2\x82"));
    svc_series *good = svc_metric_with(m, L("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
    CHECK(bad != good);
    CHECK(svc_metric_with(m, L("a\x81" "b\xC0\xAF" "c\xED\xA0\x80" "d\xE2\x82")) == bad);
    CHECK(svc_metric_with(m, L("a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD"
                               "\xEF\xBF\xBD" "d\xEF\xBF\xBD\xEF\xBF\xBD")) == bad);

    /* Long values are cut at SVC_METRIC_MAX_VALUE_LEN bytes, at a character
     * boundary; values equal up to the cut share a series. */
    char v1[300], v2[300], cut[SVC_METRIC_MAX_VALUE_LEN + 1];
    memset(v1, 'x', sizeof v1);
    v1[299] = '\0';
    memcpy(v2, v1, sizeof v2);
    v2[250] = 'y';
    memcpy(cut, v1, SVC_METRIC_MAX_VALUE_LEN);
    cut[SVC_METRIC_MAX_VALUE_LEN] = '\0';
    svc_series *l1 = svc_metric_with(m, L(v1));
    CHECK(svc_metric_with(m, L(v2)) == l1);
    CHECK(svc_metric_with(m, L(cut)) == l1);
    /* A 2-byte character straddling the limit is dropped whole. */
    char straddle[SVC_METRIC_MAX_VALUE_LEN + 2];
    memset(straddle, 'z', SVC_METRIC_MAX_VALUE_LEN - 1);
    memcpy(straddle + SVC_METRIC_MAX_VALUE_LEN - 1, "\xC3\xA9", 3);
    svc_series *st = svc_metric_with(m, L(straddle));
    straddle[SVC_METRIC_MAX_VALUE_LEN - 1] = '\0';
    CHECK(svc_metric_with(m, L(straddle)) == st);

    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK(count_lines(text, "u_total{v=\"a\xEF\xBF\xBD" "b") == 1);
    CHECK(count_lines(text, "u_total{v=\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"} 0") == 1);
    char want[SVC_METRIC_MAX_VALUE_LEN + 32];
    snprintf(want, sizeof want, "u_total{v=\"%s\"} 0\n", cut);
    CHECK(count_lines(text, want) == 1);
    char diag[4096];
    int rc = promtool_check(text, diag, sizeof diag);
    if (rc != 0) test_fail(__FILE__, __LINE__, "promtool exit %d: %s", rc, diag);
    free(text);
}

TEST(overflow_series_after_cap) {
    svc_metric *m = svc_metric_counter("paths_total", "h", 2, L("path", "code"));
    svc_series *first = NULL, *last = NULL;
    char v[32];
    for (int i = 0; i < SVC_METRIC_MAX_SERIES; i++) {
        snprintf(v, sizeof v, "/p/%d", i);
        svc_series *s = svc_metric_with(m, L(v, "200"));
        REQUIRE(s != NULL);
        svc_counter_add(s, 1);
        if (i == 0) first = s;
        last = s;
    }
    svc_series *o1 = svc_metric_with(m, L("/new/1", "200"));
    svc_series *o2 = svc_metric_with(m, L("/new/2", "500"));
    REQUIRE(o1 != NULL);
    CHECK(o1 == o2);
    CHECK(o1 != first && o1 != last);
    CHECK(svc_metric_with(m, L("_overflow", "_overflow")) == o1);
    /* Existing combinations still resolve to their own series. */
    CHECK(svc_metric_with(m, L("/p/0", "200")) == first);
    snprintf(v, sizeof v, "/p/%d", SVC_METRIC_MAX_SERIES - 1);
    CHECK(svc_metric_with(m, L(v, "200")) == last);
    svc_counter_add(o1, 1);
    svc_counter_add(o2, 1);

    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK_EQ(count_lines(text, "paths_total{"), SVC_METRIC_MAX_SERIES + 1);
    CHECK(sample(text, "paths_total{path=\"_overflow\",code=\"_overflow\"}") == 2);
    CHECK(sample(text, "paths_total{path=\"/p/7\",code=\"200\"}") == 1);
    CHECK(count_lines(text, "paths_total{path=\"/new/") == 0);
    /* Each lookup the cap folded is counted, per family; the ones that found
     * an existing series (the overflow series by its own name too) are not. */
    CHECK(sample(text, "svckit_metric_series_overflow_total{family=\"paths_total\"}") == 2);
    free(text);
}

TEST(overflow_reuses_client_sent_overflow_series) {
    svc_metric *m = svc_metric_gauge("g", "h", 1, L("k"));
    svc_series *early = svc_metric_with(m, L("_overflow"));
    char v[32];
    for (int i = 0; i < SVC_METRIC_MAX_SERIES + 10; i++) {
        snprintf(v, sizeof v, "%d", i);
        svc_metric_with(m, L(v));
    }
    CHECK(svc_metric_with(m, L("another")) == early);
    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK_EQ(count_lines(text, "g{k=\"_overflow\"}"), 1);
    CHECK_EQ(count_lines(text, "g{"), SVC_METRIC_MAX_SERIES);
    free(text);
}

TEST(label_less_family_has_one_series) {
    svc_metric *m = svc_metric_counter("once_total", "h", 0, NULL);
    svc_series *s = svc_metric_with(m, NULL);
    CHECK(s != NULL);
    CHECK(svc_metric_with(m, L("ignored")) == s);
}

TEST(histogram_bucket_edges) {
    double b[] = {-1, 0, 1, 2.5, 5};
    svc_metric *m = svc_metric_histogram("edge", "h", 0, NULL, b, 5);
    svc_series *s = svc_metric_with(m, NULL);
    REQUIRE(s != NULL);
    const double obs[] = {-2, -1, -0.5, 0, 1, 1.0000000001, 2.5, 2.6, 5, 5.0000001, 1e300, INFINITY};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++) svc_histogram_observe(s, obs[i]);
    char *text = render_all();
    REQUIRE(text != NULL);
    /* -2,-1 | -0.5,0 | 1 | 1.0000000001,2.5 | 2.6,5 | 5.0000001,1e300,+Inf */
    CHECK_LINES(text, "# HELP edge h\n"
                      "# TYPE edge histogram\n"
                      "edge_bucket{le=\"-1\"} 2\n"
                      "edge_bucket{le=\"0\"} 4\n"
                      "edge_bucket{le=\"1\"} 5\n"
                      "edge_bucket{le=\"2.5\"} 7\n"
                      "edge_bucket{le=\"5\"} 9\n"
                      "edge_bucket{le=\"+Inf\"} 12\n"
                      "edge_sum +Inf\n"
                      "edge_count 12\n");
    free(text);
    CHECK(svc_series_value(s) == 12);
}

TEST(histogram_nan_goes_to_inf_bucket) {
    double b[] = {1};
    svc_series *s = svc_metric_with(svc_metric_histogram("n", "h", 1, L("x"), b, 1), L("y"));
    svc_histogram_observe(s, NAN);
    svc_histogram_observe(s, 0.5);
    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK(sample(text, "n_bucket{x=\"y\",le=\"1\"}") == 1);
    CHECK(sample(text, "n_bucket{x=\"y\",le=\"+Inf\"}") == 2);
    CHECK(count_lines(text, "n_sum{x=\"y\"} NaN\n") == 1);
    CHECK(sample(text, "n_count{x=\"y\"}") == 2);
    free(text);
}

TEST(default_histogram_buckets) {
    svc_series *s = svc_metric_with(svc_metric_histogram("d_seconds", "h", 0, NULL, NULL, 0), NULL);
    svc_histogram_observe(s, 0.0001);
    svc_histogram_observe(s, 10);
    svc_histogram_observe(s, 10.5);
    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK_EQ(count_lines(text, "d_seconds_bucket{"), 17);
    CHECK(sample(text, "d_seconds_bucket{le=\"0.0001\"}") == 1);
    CHECK(sample(text, "d_seconds_bucket{le=\"0.00025\"}") == 1);
    CHECK(sample(text, "d_seconds_bucket{le=\"5\"}") == 1);
    CHECK(sample(text, "d_seconds_bucket{le=\"10\"}") == 2);
    CHECK(sample(text, "d_seconds_bucket{le=\"+Inf\"}") == 3);
    free(text);
}

TEST(render_exact_output) {
    svc_metric *req = svc_metric_counter("http_requests_total", "Requests served.", 2,
                                         L("method", "code"));
    svc_metric_gauge("http_in_flight", "In flight.", 0, NULL);
    svc_metric_gauge("conns", "Open connections.", 1, L("pool"));
    double b[] = {0.1, 1};
    svc_metric *lat = svc_metric_histogram("latency_seconds", "Latency.", 0, NULL, b, 2);
    svc_metric *rt = svc_metric_histogram("route_seconds", "Per route.", 1, L("route"), b, 2);
    svc_metric *temp = svc_metric_gauge("a_temperature_celsius", "T.", 1, L("room"));
    svc_counter_add(svc_metric_with(req, L("GET", "200")), 3);
    svc_counter_add(svc_metric_with(req, L("GET", "404")), 1);
    svc_counter_add(svc_metric_with(req, L("DELETE", "200")), 2);
    svc_histogram_observe(svc_metric_with(lat, NULL), 0.0625);
    svc_histogram_observe(svc_metric_with(lat, NULL), 0.5);
    svc_histogram_observe(svc_metric_with(lat, NULL), 3);
    svc_histogram_observe(svc_metric_with(rt, L("/items/:id")), 0.1);
    svc_gauge_set(svc_metric_with(temp, L("kitchen")), 21.5);
    svc_gauge_set(svc_metric_with(temp, L("attic")), -0.1);
    svc_gauge_set(svc_metric_with(temp, L("lab")), 1.0 / 3.0);
    svc_gauge_set(svc_metric_with(temp, L("sun")), 5.5e9);
    svc_gauge_set(svc_metric_with(temp, L("void")), -INFINITY);
    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK_LINES(text, "# HELP a_temperature_celsius T.\n"
                      "# TYPE a_temperature_celsius gauge\n"
                      "a_temperature_celsius{room=\"attic\"} -0.1\n"
                      "a_temperature_celsius{room=\"kitchen\"} 21.5\n"
                      "a_temperature_celsius{room=\"lab\"} 0.3333333333333333\n"
                      "a_temperature_celsius{room=\"sun\"} 5500000000\n"
                      "a_temperature_celsius{room=\"void\"} -Inf\n"
                      "# HELP conns Open connections.\n"
                      "# TYPE conns gauge\n"
                      "# HELP http_in_flight In flight.\n"
                      "# TYPE http_in_flight gauge\n"
                      "http_in_flight 0\n"
                      "# HELP http_requests_total Requests served.\n"
                      "# TYPE http_requests_total counter\n"
                      "http_requests_total{method=\"DELETE\",code=\"200\"} 2\n"
                      "http_requests_total{method=\"GET\",code=\"200\"} 3\n"
                      "http_requests_total{method=\"GET\",code=\"404\"} 1\n"
                      "# HELP latency_seconds Latency.\n"
                      "# TYPE latency_seconds histogram\n"
                      "latency_seconds_bucket{le=\"0.1\"} 1\n"
                      "latency_seconds_bucket{le=\"1\"} 2\n"
                      "latency_seconds_bucket{le=\"+Inf\"} 3\n"
                      "latency_seconds_sum 3.5625\n"
                      "latency_seconds_count 3\n"
                      "# HELP route_seconds Per route.\n"
                      "# TYPE route_seconds histogram\n"
                      "route_seconds_bucket{route=\"/items/:id\",le=\"0.1\"} 1\n"
                      "route_seconds_bucket{route=\"/items/:id\",le=\"1\"} 1\n"
                      "route_seconds_bucket{route=\"/items/:id\",le=\"+Inf\"} 1\n"
                      "route_seconds_sum{route=\"/items/:id\"} 0.1\n"
                      "route_seconds_count{route=\"/items/:id\"} 1\n");
    free(text);
}

TEST(empty_registry_renders_nothing) {
    svc_buf b = {0};
    svc_metrics_render(&b);
    CHECK_EQ(b.len, 0);
    CHECK(!b.oom);
    svc_buf_free(&b);
}

TEST(render_appends) {
    svc_metric_gauge("g", "h", 0, NULL);
    svc_buf b = {0};
    svc_buf_puts(&b, "prefix\n");
    svc_metrics_render(&b);
    REQUIRE(b.data != NULL);
    CHECK_STR(b.data, "prefix\n# HELP g h\n# TYPE g gauge\ng 0\n");
    svc_buf_free(&b);
}

TEST(number_formatting) {
    struct {
        double v;
        const char *want;
    } cases[] = {
        {0, "0"},           {-0.0, "-0"},         {1, "1"},
        {0.1, "0.1"},       {1e-5, "1e-05"},      {123456789012345678.0, "1.2345678901234568e+17"},
        {NAN, "NaN"},       {INFINITY, "+Inf"},   {-INFINITY, "-Inf"},
        {0.3, "0.3"},       {0.1 + 0.2, "0.30000000000000004"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {5e-324, "4.94065645841247e-324"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[SVC__DOUBLE_STR_MAX];
        size_t n = svc__metric_format_double(out, cases[i].v);
        CHECK_STR(out, cases[i].want);
        CHECK_EQ(n, strlen(cases[i].want));
        if (!isnan(cases[i].v)) CHECK(strtod(out, NULL) == cases[i].v);
    }
    /* Integer counters print in full, no exponent. */
    svc_series *c = svc_metric_with(svc_metric_counter("big_total", "h", 0, NULL), NULL);
    svc_counter_add(c, UINT64_MAX);
    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK(count_lines(text, "big_total 18446744073709551615\n") == 1);
    free(text);
}

TEST(families_sorted_by_name) {
    const char *names[] = {"zeta", "alpha", "mid_b", "mid_a", "Upper", "_under", ":colon"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        REQUIRE(svc_metric_gauge(names[i], "h", 0, NULL) != NULL);
    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK_LINES(text, "# HELP :colon h\n# TYPE :colon gauge\n:colon 0\n"
                      "# HELP Upper h\n# TYPE Upper gauge\nUpper 0\n"
                      "# HELP _under h\n# TYPE _under gauge\n_under 0\n"
                      "# HELP alpha h\n# TYPE alpha gauge\nalpha 0\n"
                      "# HELP mid_a h\n# TYPE mid_a gauge\nmid_a 0\n"
                      "# HELP mid_b h\n# TYPE mid_b gauge\nmid_b 0\n"
                      "# HELP zeta h\n# TYPE zeta gauge\nzeta 0\n");
    free(text);
}

/* ---- concurrency ----------------------------------------------------------- */

#define THREADS 4
#define ITERS 200000

static svc_metric *conc_counter, *conc_gauge, *conc_hist;

static void *hammer(void *arg) {
    long id = (long)arg;
    char own[16];
    snprintf(own, sizeof own, "t%ld", id);
    svc_series *c = svc_metric_with(conc_counter, L("shared"));
    svc_series *g = svc_metric_with(conc_gauge, NULL);
    svc_series *h = svc_metric_with(conc_hist, L("shared"));
    for (int i = 0; i < ITERS; i++) {
        svc_counter_add(c, 1);
        svc_gauge_add(g, 0.5);
        svc_histogram_observe(h, (i & 1) ? 0.25 : 4);
        if (i % 1000 == 0) {
            /* Lookups race with each other and with the render thread. */
            svc_counter_add(svc_metric_with(conc_counter, L(own)), 1);
            char v[32];
            snprintf(v, sizeof v, "k%d", i / 1000);
            svc_counter_add(svc_metric_with(conc_counter, L(v)), 1);
        }
    }
    return NULL;
}

static atomic_int conc_done;

static void *renderer(void *arg) {
    long *bad = arg;
    while (!conc_done) {
        char *text = render_all();
        if (!text) continue;
        /* _count is derived from the same loads as the buckets. */
        if (sample(text, "conc_h_count{k=\"shared\"}") !=
            sample(text, "conc_h_bucket{k=\"shared\",le=\"+Inf\"}"))
            (*bad)++;
        free(text);
    }
    return NULL;
}

TEST(concurrent_updates_sum_exactly) {
    double b[] = {1};
    conc_counter = svc_metric_counter("conc_total", "h", 1, L("k"));
    conc_gauge = svc_metric_gauge("conc_g", "h", 0, NULL);
    conc_hist = svc_metric_histogram("conc_h", "h", 1, L("k"), b, 1);
    REQUIRE(conc_counter && conc_gauge && conc_hist);
    pthread_t t[THREADS], r;
    long bad = 0;
    REQUIRE(pthread_create(&r, NULL, renderer, &bad) == 0);
    for (long i = 0; i < THREADS; i++) REQUIRE(pthread_create(&t[i], NULL, hammer, (void *)i) == 0);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    conc_done = 1;
    pthread_join(r, NULL);
    CHECK_EQ(bad, 0);

    CHECK_EQ(svc_series_value(svc_metric_with(conc_counter, L("shared"))), THREADS * ITERS);
    CHECK(svc_series_value(svc_metric_with(conc_gauge, NULL)) == THREADS * ITERS * 0.5);
    for (int i = 0; i < THREADS; i++) {
        char own[16];
        snprintf(own, sizeof own, "t%d", i);
        CHECK_EQ(svc_series_value(svc_metric_with(conc_counter, L(own))), ITERS / 1000);
    }
    CHECK_EQ(svc_series_value(svc_metric_with(conc_counter, L("k0"))), THREADS);
    CHECK_EQ(svc_series_value(svc_metric_with(conc_counter, L("k199"))), THREADS);
    char *text = render_all();
    REQUIRE(text != NULL);
    /* shared + 4 own + 200 k<n>: every racing lookup found or made one series. */
    CHECK_EQ(count_lines(text, "conc_total{"), 1 + THREADS + ITERS / 1000);
    CHECK_EQ(sample(text, "conc_h_bucket{k=\"shared\",le=\"1\"}"), THREADS * ITERS / 2);
    CHECK_EQ(sample(text, "conc_h_count{k=\"shared\"}"), THREADS * ITERS);
    CHECK(sample(text, "conc_h_sum{k=\"shared\"}") == THREADS * (ITERS / 2) * (0.25 + 4));
    free(text);
}

/* ---- collectors ------------------------------------------------------------- */

static int collect_calls;

static void collect_second(void *ud) {
    svc_gauge_set(svc_metric_with(svc_metric_gauge("second", "h", 0, NULL), NULL), 7);
}

static void collect_first(void *ud) {
    collect_calls++;
    /* Registers, looks up and updates, and even adds a collector, all of
     * which would deadlock if the render held a registry lock here. */
    svc_metric *m = svc_metric_gauge("collected", "Collected on demand.", 1, L("src"));
    svc_gauge_set(svc_metric_with(m, L((const char *)ud)), collect_calls);
    svc_metrics_on_collect(collect_second, NULL);
}

TEST(collectors_run_before_render) {
    svc_metrics_on_collect(collect_first, "x");
    svc_metrics_on_collect(collect_first, "x"); /* the same pair counts once */
    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK_EQ(collect_calls, 1);
    CHECK(sample(text, "collected{src=\"x\"}") == 1);
    free(text);
    text = render_all();
    REQUIRE(text != NULL);
    CHECK_EQ(collect_calls, 2);
    CHECK(sample(text, "collected{src=\"x\"}") == 2);
    CHECK(sample(text, "second") == 7);
    free(text);
    /* A different ud is a different collector. */
    svc_metrics_on_collect(collect_first, "y");
    text = render_all();
    REQUIRE(text != NULL);
    CHECK_EQ(collect_calls, 4);
    CHECK(sample(text, "collected{src=\"y\"}") == 4);
    free(text);
}

TEST(reset_forgets_everything) {
    svc_metric *m = svc_metric_counter("r_total", "h", 1, L("a"));
    svc_counter_add(svc_metric_with(m, L("x")), 1);
    svc_metrics_on_collect(collect_first, "x");
    svc_metrics_reset();
    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK_STR(text, "");
    CHECK_EQ(collect_calls, 0);
    free(text);
    /* The name is free again, for any type. */
    svc_metric *g = svc_metric_gauge("r_total", "h", 0, NULL);
    REQUIRE(g != NULL);
    svc_gauge_set(svc_metric_with(g, NULL), 3);
    text = render_all();
    REQUIRE(text != NULL);
    CHECK_STR(text, "# HELP r_total h\n# TYPE r_total gauge\nr_total 3\n");
    free(text);
    svc_metrics_reset();
}

/* ---- promtool ---------------------------------------------------------------- */

TEST(promtool_rejects_broken_text) {
    /* Proves the check below can fail: promtool is there and strict. */
    char diag[4096];
    CHECK(promtool_check("# HELP x_total h\n# TYPE x_total counter\nx_total{a=\"1\" 1\n", diag,
                         sizeof diag) != 0);
    CHECK(promtool_check("# TYPE x counter\nx 1\n", diag, sizeof diag) != 0);
}

TEST(promtool_accepts_render) {
    svc_metrics_register_process();
    svc_metric *req = svc_metric_counter("http_requests_total", "Requests served.", 4,
                                         L("service", "route", "method", "code"));
    svc_counter_add(svc_metric_with(req, L("products", "/products/:id", "GET", "200")), 12);
    svc_counter_add(svc_metric_with(req, L("products", "/a\\b\"c\nd", "G\xFF" "ET", "500")), 1);
    svc_metric *dur = svc_metric_histogram("http_request_duration_seconds", "Request latency.",
                                           2, L("route", "method"), NULL, 0);
    for (int i = 0; i < 100; i++)
        svc_histogram_observe(svc_metric_with(dur, L("/products", "GET")), i * 0.003);
    svc_histogram_observe(svc_metric_with(dur, L("/x", "POST")), NAN);
    svc_metric_histogram("empty_seconds", "Never observed.", 0, NULL, NULL, 0);
    svc_metric_histogram("empty_labelled_seconds", "Never observed.", 1, L("x"), NULL, 0);
    svc_metric_gauge("labelled_no_series", "Only HELP and TYPE.", 1, L("x"));
    svc_metric *g = svc_metric_gauge("odd_values", "Help with \\ and\nnewline.", 1, L("v"));
    svc_gauge_set(svc_metric_with(g, L("nan")), NAN);
    svc_gauge_set(svc_metric_with(g, L("pinf")), INFINITY);
    svc_gauge_set(svc_metric_with(g, L("ninf")), -INFINITY);
    svc_gauge_set(svc_metric_with(g, L("tiny")), 5e-324);
    svc_gauge_set(svc_metric_with(g, L("huge")), 1.7976931348623157e308);
    svc_gauge_set(svc_metric_with(g, L("negzero")), -0.0);
    svc_counter_add(svc_metric_with(svc_metric_counter("big_total", "Big.", 0, NULL), NULL),
                    UINT64_MAX);
    svc_metric *in = svc_metric_gauge("http_requests_in_flight", "In flight.", 0, NULL);
    svc_gauge_add(svc_metric_with(in, NULL), 3);
    svc_metric *over = svc_metric_counter("overflowing_total", "Capped.", 1, L("id"));
    char v[16];
    for (int i = 0; i < SVC_METRIC_MAX_SERIES + 5; i++) {
        snprintf(v, sizeof v, "%d", i);
        svc_counter_add(svc_metric_with(over, L(v)), 1);
    }

    char *text = render_all();
    REQUIRE(text != NULL);
    char diag[8192];
    int rc = promtool_check(text, diag, sizeof diag);
    if (rc != 0) test_fail(__FILE__, __LINE__, "promtool check metrics exit %d: %s", rc, diag);
    CHECK(count_lines(text, "# TYPE labelled_no_series gauge") == 1);
    CHECK(count_lines(text, "labelled_no_series{") == 0);
    CHECK(count_lines(text, "empty_seconds_count 0") == 1);
    free(text);
}
