/*
 * bench/trace_ring.c: the span ring's two costs (src/obs/trace.c).
 *
 *   record   ns per svc__trace_record of a finished span, one thread, the
 *            ring full (every write overwrites), median of ROUNDS rounds
 *   slowest  ms per span query {"slowest":true,"limit":256} over a full
 *            ring of server spans whose durations grow with age: the worst
 *            order for a sorted insertion (every span read is longer than all
 *            kept), median of ROUNDS rounds
 *
 *     cc -std=gnu11 -O2 -Iinclude -Isrc bench/trace_ring.c build/lib/libsvckit.a \
 *        $(pkg-config --libs libuv jansson libsodium sqlite3 zlib) -lhttp_parser -lpthread -lm
 *     ./a.out [ROUNDS=9]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs/internal.h"

#define RECORDS (1 << 22)

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, by_value);
    return v[n / 2];
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 9;
    if (rounds < 1 || rounds > 1000) rounds = 9;
    double *rec = calloc((size_t)rounds, sizeof *rec), *slow = calloc((size_t)rounds, sizeof *slow);
    if (!rec || !slow) return 1;
    svc__trace_configure(1, 0, "bench", "1");
    svc_trace_ctx parent = {.trace_id = {1}, .span_id = {1}, .flags = SVC_TRACE_SAMPLED};
    svc_span s;
    svc_span_begin(&s, &parent, SVC_SPAN_SERVER, "GET /products/:id");
    svc_span_set(s.detail, sizeof s.detail, "/products/:id");
    for (int i = 0; i < SVC_TRACE_RING_SPANS; i++) svc__trace_record(&s); /* full: every slot touched */
    for (int r = 0; r < rounds; r++) {
        double t0 = now_ns();
        for (int i = 0; i < RECORDS; i++) {
            s.dur_ns = (uint64_t)i;
            svc__trace_record(&s);
        }
        rec[r] = (now_ns() - t0) / RECORDS;
    }
    svc_trace_query q = {.limit = SVC_TRACE_QUERY_MAX, .slowest = 1};
    svc_buf out = {0};
    for (int r = 0; r < rounds; r++) {
        svc__trace_ring_reset();
        for (int i = 0; i < SVC_TRACE_RING_SPANS; i++) {
            s.dur_ns = (uint64_t)(SVC_TRACE_RING_SPANS - i); /* older is longer */
            svc__trace_record(&s);
        }
        out.len = 0;
        double t0 = now_ns();
        svc__trace_query(&q, &out);
        slow[r] = (now_ns() - t0) / 1e6;
    }
    printf("| measure | median of %d rounds |\n|---|---:|\n", rounds);
    printf("| svc__trace_record, ns per span (ring full) | %.1f |\n", median(rec, rounds));
    printf("| slowest query, limit %d over %d server spans, ms | %.3f |\n", SVC_TRACE_QUERY_MAX,
           SVC_TRACE_RING_SPANS, median(slow, rounds));
    svc_buf_free(&out);
    free(rec);
    free(slow);
    return 0;
}
