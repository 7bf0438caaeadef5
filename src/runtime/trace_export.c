/*
 * OTLP/HTTP export (OTEL_EXPORTER_OTLP_ENDPOINT): a thread of its own reads
 * the span ring (src/obs/trace.c) behind the writers with a cursor and POSTs
 * batches of at most SVC_OTLP_BATCH spans as OTLP JSON to <endpoint>/v1/traces,
 * every SVC_OTLP_INTERVAL_MS or sooner when a batch is full. Nothing on the
 * request path waits for it and it holds no queue of its own: the ring is the
 * queue. A collector that is slow or gone only makes the cursor fall behind;
 * spans overwritten before they were sent are counted
 * (trace_spans_dropped_total{reason="export_behind"}), and a batch that fails
 * (no answer within SVC_OTLP_TIMEOUT_MS, or a status other than 2xx) is
 * dropped and counted (reason="export_failed"), never retried, so memory
 * stays what the ring and one batch take. At shutdown what is left goes in
 * one last batch, unless the last POST failed: a collector that is gone
 * must not hold the exit for another timeout (those spans are counted as
 * export_failed).
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "obs/internal.h"
#include "runtime/internal.h"
#include "svckit/client.h"

struct svc__otlp {
    uv_thread_t thread;
    uv_mutex_t lock;
    uv_cond_t cond;
    int stop;
    char url[SVC_OTLP_ENDPOINT_MAX + 16];
    svc_span *batch;
    svc_buf body;
    svc_series *exported;
    int failing;                      /* the last POST failed */
};

/* Up to SVC_OTLP_BATCH spans from *cursor on; counts what the writers
 * overwrote before it was read. */
static size_t collect(svc__otlp *x, uint64_t *cursor) {
    uint64_t head = svc__trace_ring_head();
    if (head - *cursor > SVC_TRACE_RING_SPANS) {
        svc__trace_count_dropped("export_behind", head - *cursor - SVC_TRACE_RING_SPANS);
        *cursor = head - SVC_TRACE_RING_SPANS;
    }
    size_t n = 0;
    while (*cursor < head && n < SVC_OTLP_BATCH) {
        if (svc__trace_ring_read(*cursor, &x->batch[n])) {
            n++;
        } else if (*cursor + SVC_TRACE_RING_SPANS > svc__trace_ring_head()) {
            break; /* still being written: the next round takes it */
        } else {
            svc__trace_count_dropped("export_behind", 1);
        }
        (*cursor)++;
    }
    return n;
}

static void post(svc__otlp *x, size_t n) {
    x->body.len = 0;
    x->body.oom = 0;
    svc__trace_otlp_encode(x->batch, n, &x->body);
    if (x->body.oom) {
        svc__trace_count_dropped("export_failed", n);
        return;
    }
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    int status = 0;
    int rc = svc_http_fetch("POST", x->url, headers, x->body.data, x->body.len, SVC_OTLP_TIMEOUT_MS, &status,
                            NULL, NULL);
    x->failing = rc != SVC_OK || status < 200 || status > 299;
    if (x->failing) svc__trace_count_dropped("export_failed", n);
    else svc_counter_add(x->exported, n);
}

static void run(void *arg) {
    svc__otlp *x = arg;
    uint64_t cursor = 0;
    uv_mutex_lock(&x->lock);
    while (!x->stop) {
        uv_mutex_unlock(&x->lock);
        size_t n = collect(x, &cursor);
        if (n) post(x, n);
        uv_mutex_lock(&x->lock);
        /* A full batch goes at once; otherwise wait for the interval. */
        if (!x->stop && n < SVC_OTLP_BATCH)
            uv_cond_timedwait(&x->cond, &x->lock, (uint64_t)SVC_OTLP_INTERVAL_MS * 1000000);
    }
    uv_mutex_unlock(&x->lock);
    size_t n = collect(x, &cursor);
    if (n && x->failing) svc__trace_count_dropped("export_failed", n);
    else if (n) post(x, n);
}

svc__otlp *svc__otlp_start(const char *endpoint) {
    svc__otlp *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    size_t n = strlen(endpoint);
    while (n && endpoint[n - 1] == '/') n--;
    memcpy(x->url, endpoint, n);
    memcpy(x->url + n, "/v1/traces", 11);
    x->batch = malloc(SVC_OTLP_BATCH * sizeof *x->batch);
    x->exported = svc_metric_with(
        svc_metric_counter("trace_spans_exported_total", "Spans a collector accepted (OTLP/HTTP)", 0, NULL), NULL);
    if (!x->batch || uv_mutex_init(&x->lock) != 0) {
        free(x->batch);
        free(x);
        return NULL;
    }
    uv_cond_init(&x->cond);
    if (uv_thread_create(&x->thread, run, x) != 0) {
        uv_cond_destroy(&x->cond);
        uv_mutex_destroy(&x->lock);
        free(x->batch);
        free(x);
        return NULL;
    }
    return x;
}

void svc__otlp_stop(svc__otlp *x) {
    if (!x) return;
    uv_mutex_lock(&x->lock);
    x->stop = 1;
    uv_cond_signal(&x->cond);
    uv_mutex_unlock(&x->lock);
    uv_thread_join(&x->thread);
    uv_cond_destroy(&x->cond);
    uv_mutex_destroy(&x->lock);
    svc_buf_free(&x->body);
    free(x->batch);
    free(x);
}
