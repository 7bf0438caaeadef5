/*
 * The in-process test harness (svckit/test.h): a third transport beside the
 * HTTP connection and NATS request-reply. A request is built the way the NATS
 * transport builds one (svc__req_new_worker, then method, target, headers,
 * body), handed to the same svc__dispatch, and its final response comes back
 * through svc_req_ops.finish, copied for the caller. The harness owns one
 * worker whose loop it runs until that happens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "runtime/internal.h"
#include "svckit/test.h"

/* A method is a short upper-case token, as svc_app_route takes them. */
#define TEST_METHOD_MAX 20

struct svc_test {
    svc_app *app;
    svc_worker w;
    uv_timer_t timeout;
    int timed_out;
    uint64_t seq;                    /* of the request being waited for */
    svc_test_res *done;              /* its response, once final */
};

struct svc_test_res {
    int status;
    size_t nheaders;
    char **names, **values;
    char *body;
    size_t len;
    json_t *json;
};

/* Where a request's response goes: the request it answers, by number, so
 * the late response of an abandoned request is dropped. */
typedef struct test_ctx {
    svc_test *t;
    uint64_t seq;
} test_ctx;

void svc_test_res_free(svc_test_res *r) {
    if (!r) return;
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->names[i]);
        free(r->values[i]);
    }
    free(r->names);
    free(r->values);
    free(r->body);
    if (r->json) json_decref(r->json);
    free(r);
}

static int res_add_header(svc_test_res *r, const char *name, const char *value) {
    char *n = strdup(name), *v = strdup(value ? value : "");
    if (!n || !v) {
        free(n);
        free(v);
        return SVC_ENOMEM;
    }
    r->names[r->nheaders] = n;
    r->values[r->nheaders++] = v;
    return SVC_OK;
}

/* A copy of the final response, with the headers the HTTP serialiser adds
 * from the response (Content-Type, X-Request-Id); NULL when out of memory. */
static svc_test_res *res_copy(const svc_req *req) {
    const svc_res *res = &req->res;
    svc_test_res *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->status = res->status;
    size_t cap = res->nheaders + 2; /* and Content-Type, X-Request-Id */
    r->names = calloc(cap, sizeof *r->names);
    r->values = calloc(cap, sizeof *r->values);
    int status_has_body = res->status != 204 && res->status != 304;
    size_t len;
    const char *body = svc_res_get_body(res, &len);
    r->len = req->head || !status_has_body ? 0 : len;
    r->body = malloc(r->len + 1);
    if (!r->names || !r->values || !r->body) goto nomem;
    if (r->len) memcpy(r->body, body, r->len);
    r->body[r->len] = '\0';
    if (res->content_type && !svc__res_header_get(res, "Content-Type") &&
        res_add_header(r, "Content-Type", res->content_type) != SVC_OK)
        goto nomem;
    if (req->id && res_add_header(r, "X-Request-Id", req->id) != SVC_OK) goto nomem;
    for (size_t i = 0; i < res->nheaders; i++)
        if (res_add_header(r, res->headers[i].name, res->headers[i].value) != SVC_OK) goto nomem;
    return r;
nomem:
    svc_test_res_free(r);
    return NULL;
}

static void test_finish(svc_req *req) {
    test_ctx *x = req->transport_data;
    svc_test *t = x->t;
    if (x->seq == t->seq && !t->done) {
        t->done = res_copy(req);
        if (!t->done) fprintf(stderr, "svc_test: out of memory copying a response\n");
        t->seq++; /* answered, copied or not: nothing more to wait for */
    }
    svc__req_done(req);
}

static const svc_req_ops test_transport = {.name = "test", .deadline_header = "Svc-Deadline", .finish = test_finish};

svc_test *svc_test_new(svc_app *app) {
    if (!app) return NULL;
    svc_test *t = calloc(1, sizeof *t);
    if (!t) {
        svc__app_free(app);
        return NULL;
    }
    t->app = app;
    int rc = svc__app_prepare(app);
    if (rc == 0 && app->on_start && (rc = app->on_start(app, app->on_start_ud)) != SVC_OK)
        svc_error("start-up failed: %s", svc_status_str(rc));
    if (rc != 0) {
        svc_log_flush();
        svc__app_free(app);
        svc_metrics_reset();
        free(t);
        return NULL;
    }
    svc_worker *w = &t->w;
    w->app = app;
    uv_loop_init(&w->loop);
    w->loop.data = w;
    uv_timer_init(&w->loop, &t->timeout);
    t->timeout.data = t;
    /* The bound of a wait, not a reason for the loop to run. */
    uv_unref((uv_handle_t *)&t->timeout);
    return t;
}

static void close_cb(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void svc_test_free(svc_test *t) {
    if (!t) return;
    svc_app *app = t->app;
    svc_worker *w = &t->w;
    /* As a worker exits: every handle closed (an abandoned request's timer
     * too), offloaded work still queued completes; then on_stop, as after
     * svc_app_run's workers have stopped. */
    uv_walk(&w->loop, close_cb, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    svc__compose_worker_exit(w);
    if (app->on_stop) app->on_stop(app, app->on_stop_ud);
    svc__worker_pools_free(w, 0);
    svc_log_flush();
    svc__app_free(app);
    svc_metrics_reset();
    free(t);
}

static int method_ok(const char *m) {
    size_t n = 0;
    for (; m[n]; n++)
        if (m[n] < 'A' || m[n] > 'Z' || n >= TEST_METHOD_MAX) return 0;
    return n > 0;
}

/* Fills req from the arguments, as the NATS transport fills it from a message:
 * SVC_OK, SVC_ENOMEM, or SVC_EINVAL for an odd header list. Limits the HTTP
 * transport enforces become the same refusals. */
static int fill(svc_req *req, const char *method, const char *target, const char *const *headers,
                const void *body, size_t len) {
    const svc_config *cfg = &req->app->cfg;
    size_t nh = 0;
    if (headers) {
        while (headers[2 * nh]) {
            if (!headers[2 * nh + 1]) return SVC_EINVAL;
            nh++;
        }
    }
    req->method = svc_arena_strdup(req->arena, method);
    req->http_major = 1;
    req->http_minor = 1;
    req->keep_alive = 1;
    req->head = strcmp(method, "HEAD") == 0;
    req->peer = "127.0.0.1";
    if (nh) req->headers = svc_arena_alloc(req->arena, nh * sizeof *req->headers);
    if (!req->method || (nh && !req->headers)) return SVC_ENOMEM;
    for (size_t i = 0; i < nh; i++) {
        /* Copies: an abandoned request may outlive the caller's strings. */
        const char *name = svc_arena_strdup(req->arena, headers[2 * i]);
        const char *value = svc_arena_strdup(req->arena, headers[2 * i + 1]);
        if (!name || !value) return SVC_ENOMEM;
        size_t nl = strlen(name);
        req->headers[i] = (svc_hdr){name, value, nl};
        svc__req_note_header(req, name, nl, value);
        if (nl == 4 && strcasecmp(name, "host") == 0 && req->host_count < 3) req->host_count++;
    }
    req->nheaders = nh;
    svc_buf_append(&req->raw, target, strlen(target));
    req->url_len = req->raw.len;
    if (len) svc_buf_append(&req->body, body, len);
    if (req->raw.oom || req->body.oom) return SVC_ENOMEM;
    if (nh > (size_t)cfg->max_headers) {
        req->error_status = 431;
        req->error_code = "headers_too_large";
        req->error_msg = "too many header fields";
    } else if (len > cfg->max_body_bytes) {
        req->error_status = 413;
        req->error_code = "payload_too_large";
        req->error_msg = "request body too large";
    }
    return SVC_OK;
}

static void timeout_cb(uv_timer_t *timer) {
    svc_test *t = timer->data;
    t->timed_out = 1;
}

svc_test_res *svc_test_request(svc_test *t, const char *method, const char *target,
                               const char *const *headers, const void *body, size_t len) {
    if (!t || !method || !target || !method_ok(method) || (len && !body)) return NULL;
    svc_req *req = svc__req_new_worker(&t->w);
    if (!req) return NULL;
    test_ctx *x = svc_arena_alloc(req->arena, sizeof *x);
    int rc = x ? fill(req, method, target, headers, body, len) : SVC_ENOMEM;
    if (rc != SVC_OK) {
        svc__req_free(req);
        return NULL;
    }
    *x = (test_ctx){t, t->seq};
    req->transport = &test_transport;
    req->transport_data = x;
    t->done = NULL;
    t->timed_out = 0;
    uint64_t seq = t->seq;
    svc__dispatch(req);
    if (t->seq == seq) {
        uv_timer_start(&t->timeout, timeout_cb, SVC_TEST_TIMEOUT_MS, 0);
        while (t->seq == seq && !t->timed_out) {
            /* 0: nothing left that could finish it (an SVC_ASYNC handler that
             * arranged nothing); the timer alone does not keep the loop. */
            if (uv_run(&t->w.loop, UV_RUN_ONCE) == 0 && t->seq == seq) break;
        }
        uv_timer_stop(&t->timeout);
        if (t->seq == seq && !t->timed_out) {
            /* Nothing can finish it any more: answered as a handler past its
             * deadline is, which frees it. */
            svc_error("%s %s: the handler returned SVC_ASYNC and left nothing that would finish it", method,
                      target);
            svc__res_set_error(&req->res, 504, "timeout", "the handler never answered");
            svc__request_finish(req);
        } else if (t->seq == seq) {
            /* Still pending work may hold it: abandoned, not freed. */
            t->seq++;
            fprintf(stderr, "svc_test: %s %s: no response within %d ms\n", method, target, SVC_TEST_TIMEOUT_MS);
            svc_log_flush();
            return NULL;
        }
    }
    svc_test_res *r = t->done;
    t->done = NULL;
    svc_log_flush();
    return r;
}

svc_app *svc_test_app(const svc_test *t) { return t ? t->app : NULL; }

int svc_test_res_status(const svc_test_res *r) { return r ? r->status : 0; }

const char *svc_test_res_header(const svc_test_res *r, const char *name) {
    if (!r || !name) return NULL;
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->names[i], name) == 0) return r->values[i];
    return NULL;
}

const char *svc_test_res_body(const svc_test_res *r, size_t *len) {
    if (len) *len = r ? r->len : 0;
    return r ? r->body : NULL;
}

json_t *svc_test_res_json(svc_test_res *r) {
    if (!r) return NULL;
    if (!r->json && r->len) r->json = json_loadb(r->body, r->len, 0, NULL);
    return r->json;
}
