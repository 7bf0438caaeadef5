/*
 * What every service serves without being asked: /healthz, /readyz, /metrics,
 * /openapi.json (made by openapi.c),
 * the standard metric families, and one access-log line per request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "runtime/internal.h"

static svc_outcome healthz(svc_req *req, svc_res *res) {
    (void)req;
    static const char ok[] = "{\"status\":\"ok\"}";
    return svc_res_body(res, 200, "application/json", ok, sizeof ok - 1);
}

int svc__app_ready(svc_app *app, const char **check, char *reason, size_t reason_len) {
    *check = NULL;
    if (atomic_load(&app->draining)) {
        snprintf(reason, reason_len, "shutting down");
        return 0;
    }
    for (int i = 0; i < app->nchecks; i++) {
        reason[0] = '\0';
        if (app->checks[i].fn(app->checks[i].ud, reason, reason_len) != SVC_OK) {
            *check = app->checks[i].name;
            if (!reason[0]) snprintf(reason, reason_len, "not ready");
            return 0;
        }
    }
    return 1;
}

static svc_outcome readyz(svc_req *req, svc_res *res) {
    const char *check;
    char reason[256];
    if (!svc__app_ready(req->app, &check, reason, sizeof reason)) {
        svc_jw *w = svc_res_jw(res, 503);
        svc_jw_obj_begin(w);
        svc_jw_key(w, "status");
        svc_jw_str(w, "unavailable");
        if (check) svc_jw_key(w, "check"), svc_jw_str(w, check);
        svc_jw_key(w, "reason");
        svc_jw_str(w, reason);
        svc_jw_obj_end(w);
        return SVC_DONE;
    }
    static const char ok[] = "{\"status\":\"ready\"}";
    return svc_res_body(res, 200, "application/json", ok, sizeof ok - 1);
}

static void collect_http(void *ud) {
    svc_app *app = ud;
    svc_gauge_set(app->s_inflight, (double)atomic_load(&app->inflight));
    svc_gauge_set(app->s_connections, (double)atomic_load(&app->connections));
    svc_gauge_set(app->s_body_bytes, (double)atomic_load(&app->body_bytes));
}

static svc_outcome openapi(svc_req *req, svc_res *res) {
    const svc_buf *doc = &req->app->openapi;
    return svc_res_body(res, 200, "application/json", doc->data, doc->len);
}

static svc_outcome metrics(svc_req *req, svc_res *res) {
    (void)req;
    svc_res_body(res, 200, "text/plain; version=0.0.4; charset=utf-8", "", 0);
    svc_metrics_render(&res->body);
    if (res->body.oom) res->oom = 1;
    return SVC_DONE;
}

void svc__builtin_routes(svc_app *app) {
    svc_app_get(app, "/healthz", healthz, SVC_NO_LOG);
    svc_app_get(app, "/readyz", readyz, SVC_NO_LOG);
    svc_app_get(app, "/metrics", metrics, SVC_NO_LOG);
    svc_app_get(app, "/openapi.json", openapi, 0);
}

/* The app's one series of a metric labelled by service alone. */
static svc_series *counter(const svc_app *app, const char *name, const char *help) {
    static const char *label[] = {"service"};
    const char *v[] = {app->name};
    return svc_metric_with(svc_metric_counter(name, help, 1, label), v);
}

static svc_series *gauge(const svc_app *app, const char *name, const char *help) {
    static const char *label[] = {"service"};
    const char *v[] = {app->name};
    return svc_metric_with(svc_metric_gauge(name, help, 1, label), v);
}

void svc__metrics_setup(svc_app *app) {
    static const char *req_labels[] = {"service", "route", "method", "code"};
    static const char *dur_labels[] = {"service", "route", "method"};
    static const char *build_labels[] = {"service", "version", "revision"};
    app->m_requests = svc_metric_counter("http_requests_total", "HTTP requests answered, by route template",
                                         4, req_labels);
    app->m_duration = svc_metric_histogram("http_request_duration_seconds",
                                           "Time from the first byte of a request to its response",
                                           3, dur_labels, NULL, 0);
    app->s_inflight = gauge(app, "http_requests_in_flight", "Requests being handled");
    app->s_connections = gauge(app, "http_connections_open", "Open client connections");
    app->s_body_bytes = gauge(app, "http_buffered_body_bytes",
                              "Request bodies held in memory (Content-Length ones whole from their head)");
    app->s_body_budget = counter(app, "http_body_budget_rejected_total",
                                 "Requests answered 503 at HTTP_MAX_BUFFERED_BODY_BYTES");
    app->s_gzip_responses = counter(app, "http_compressed_responses_total",
                                    "Responses sent gzip-compressed (HTTP_COMPRESS), cached forms included");
    app->s_gzip_saved = counter(app, "http_compression_saved_bytes_total",
                                "Body bytes gzip saved: plain minus compressed, summed over those responses");
    app->s_contract_errors = counter(app, "svc_contract_errors_total",
                                     "Responses turned into a 500 because a handler or hook broke its contract "
                                     "(invalid outcome, no answer, two answers)");
    app->s_deadline = counter(app, "svc_request_deadline_exceeded_total",
                              "Requests answered 504 at their deadline (REQUEST_TIMEOUT or Svc-Deadline)");
    app->s_calls_dropped = counter(app, "svc_calls_dropped_total",
                                   "Replies to svc_req_call that came after their request was answered");
    const char *build[] = {app->name, SVC_VERSION, SVC_GIT_REV};
    svc_gauge_set(svc_metric_with(svc_metric_gauge("svckit_build_info",
                                                   "Build information; the value is always 1", 3,
                                                   build_labels),
                                  build),
                  1);
    svc_metrics_register_process();
    svc_metrics_on_collect(collect_http, app);
}

/* ---- request metrics: labels from a fixed set ------------------------------
 *
 * Every label value of the request metrics comes from a set fixed at start,
 * whatever a client sends, over HTTP or NATS: the route is a declared
 * template, a declared route label or "unmatched"; the method one of
 * method_labels or the matched route's own; the code a status the response
 * writers accept (200..599, response.c). */

static const char *const method_labels[SVC_METRIC_METHODS] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "other",
};
#define METHOD_OTHER (SVC_METRIC_METHODS - 1)

static int method_index(const char *method) {
    for (int i = 0; i < METHOD_OTHER; i++)
        if (strcmp(method_labels[i], method) == 0) return i;
    return METHOD_OTHER;
}

const char *svc__metric_method(const svc_req *req) {
    int i = method_index(req->method);
    if (i != METHOD_OTHER) return method_labels[i];
    if (req->route && strcmp(req->route->method, req->method) == 0) return req->route->method;
    return method_labels[METHOD_OTHER];
}

svc_route_entry *svc__req_metric_route(svc_req *req) {
    if (req->label_route) return req->label_route;
    return req->route ? req->route : svc__app_unmatched(req->app);
}

int svc_app_route_label(svc_app *app, const char *label) {
    /* The workers read the table without a lock. */
    if (!app || app->workers || !label || !*label || strlen(label) > SVC_METRIC_MAX_VALUE_LEN) return SVC_EINVAL;
    for (const char *p = label; *p; p++)
        if (*p < 0x20 || *p > 0x7e) return SVC_EINVAL;
    for (int i = 0; i < app->nlabels; i++)
        if (strcmp(app->labels[i].label, label) == 0) return SVC_EEXIST;
    if (app->nlabels == SVC_MAX_ROUTE_LABELS) return SVC_ERANGE;
    char *copy = strdup(label);
    if (!copy) return SVC_ENOMEM;
    app->labels[app->nlabels++].label = copy;
    return SVC_OK;
}

/* The entry of label l for method index mi, made on first use; two workers
 * racing keep the first one published. */
static svc_route_entry *label_entry(svc_route_label *l, int mi) {
    svc_route_entry *e = atomic_load_explicit(&l->by_method[mi], memory_order_acquire);
    if (e) return e;
    svc_route_entry *made = calloc(1, sizeof *made);
    if (!made) return NULL;
    /* Borrowed: the label and method_labels outlive the entry. */
    made->method = (char *)method_labels[mi];
    made->pattern = l->label;
    if (atomic_compare_exchange_strong_explicit(&l->by_method[mi], &e, made, memory_order_acq_rel,
                                                memory_order_acquire))
        return made;
    free(made);
    return e;
}

int svc_req_set_route_label(svc_req *req, const char *label) {
    if (!req || !label) return SVC_EINVAL;
    svc_app *app = req->app;
    for (int i = 0; i < app->nlabels; i++) {
        if (strcmp(app->labels[i].label, label) != 0) continue;
        svc_route_entry *e = label_entry(&app->labels[i], method_index(req->method));
        if (!e) return SVC_ENOMEM;
        req->label_route = e;
        return SVC_OK;
    }
    return SVC_EINVAL;
}

void svc__route_labels_free(svc_app *app) {
    for (int i = 0; i < app->nlabels; i++) {
        for (int m = 0; m < SVC_METRIC_METHODS; m++) free(atomic_load(&app->labels[i].by_method[m]));
        free(app->labels[i].label);
    }
    app->nlabels = 0;
}

static svc_series *requests_series(svc_req *req, svc_route_entry *e, int code) {
    svc_app *app = req->app;
    /* The per-route cache holds the series for the route's own method; the
     * labels are made only when the cache cannot answer. */
    int cached = code >= 0 && code < SVC_STATUS_CODES && strcmp(e->method, req->method) == 0;
    svc_series *s = cached ? atomic_load_explicit(&e->requests[code], memory_order_acquire) : NULL;
    if (s) return s;
    char codes[24];
    svc__fmt_i64(codes, code);
    const char *labels[] = {app->name, e->pattern, svc__metric_method(req), codes};
    s = svc_metric_with(app->m_requests, labels);
    if (cached) atomic_store_explicit(&e->requests[code], s, memory_order_release);
    return s;
}

void svc__metrics_observe(svc_req *req, double seconds) {
    svc_app *app = req->app;
    svc_route_entry *e = svc__req_metric_route(req);
    svc_counter_add(requests_series(req, e, req->res.status), 1);
    const char *labels[] = {app->name, e->pattern, svc__metric_method(req)};
    svc_series *d;
    if (strcmp(e->method, req->method) == 0) {
        if (!e->duration) e->duration = svc_metric_with(app->m_duration, labels);
        d = e->duration;
    } else {
        d = svc_metric_with(app->m_duration, labels);
    }
    svc_histogram_observe(d, seconds);
}

/* A string literal, its length known at compile time. */
#define PUT_LIT(b, s) svc_buf_append((b), (s), sizeof(s) - 1)

/* One line per request. JSON fields: time, level, service, msg, method, path,
 * route, status, duration_ms, bytes, request_id, trace_id, peer, and
 * transport ("nats") for requests that did not come over HTTP. */
void svc__access_log(svc_req *req, double seconds, size_t bytes) {
    int status = req->res.status;
    svc_log_level lvl = status >= 500 ? SVC_LOG_ERROR : SVC_LOG_INFO;
    if (!svc_log_enabled(lvl)) return;
    svc_buf *b = &req->w->logline;
    svc_buf_reset(b);
    svc__log_line_begin(b, lvl);
    const char *path = req->path ? req->path : "";
    if (req->error_status && req->raw.data && req->url_len) path = "";
    if (svc__log_json()) {
        PUT_LIT(b, ",\"msg\":\"request\",\"method\":\"");
        svc_buf_puts(b, req->method);
        PUT_LIT(b, "\",\"path\":");
        svc_json_escape(b, path, strlen(path));
        PUT_LIT(b, ",\"route\":");
        const svc_route_entry *r = req->label_route ? req->label_route : req->route;
        if (r) svc_json_escape(b, r->pattern, strlen(r->pattern));
        else PUT_LIT(b, "null");
        /* Hand-formatted: the same bytes as ",\"status\":%d,\"duration_ms\":%.3f,
         * \"bytes\":%zu,\"request_id\":\"%s\",\"trace_id\":\"%s\",\"peer\":\"%s\""
         * without printf's cost on every request. */
        PUT_LIT(b, ",\"status\":");
        svc_buf_put_i64(b, status);
        PUT_LIT(b, ",\"duration_ms\":");
        svc__buf_put_fixed(b, seconds * 1e3, 3);
        PUT_LIT(b, ",\"bytes\":");
        svc_buf_put_u64(b, bytes);
        PUT_LIT(b, ",\"request_id\":\"");
        svc_buf_puts(b, req->id ? req->id : "");
        PUT_LIT(b, "\",\"trace_id\":\"");
        svc_buf_puts(b, req->trace_id);
        PUT_LIT(b, "\",\"peer\":\"");
        svc_buf_puts(b, req->peer ? req->peer : "");
        svc_buf_putc(b, '"');
        if (req->transport && req->transport->name) {
            PUT_LIT(b, ",\"transport\":\"");
            svc_buf_puts(b, req->transport->name);
            svc_buf_putc(b, '"');
        }
        svc_buf_putc(b, '}');
    } else {
        svc__log_text_access(b, req->method, path, status, seconds * 1e3, req->trace_id,
                             req->transport ? req->transport->name : NULL);
    }
    if (!b->oom) svc_log_raw(b->data, b->len);
    if (lvl >= SVC_LOG_ERROR) svc_log_flush();
}
