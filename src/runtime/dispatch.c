/*
 * Dispatch: from a request to a complete response. Assigns request and
 * trace ids, normalises the target, routes and runs the head hooks (as soon
 * as the header section is in, when a body follows: svc__dispatch_head),
 * then, once the request is complete, runs the before-hooks and the handler
 * (on the loop, or on the thread pool for SVC_OFFLOAD routes), and finishes:
 * after-hooks, metrics, access log, serialisation.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "runtime/internal.h"

static void worker_seed(svc_worker *w) {
    if (w->id_prefix[0]) return;
    uint64_t seed;
    svc_random(&seed, sizeof seed);
    svc__fmt_hex64(w->id_prefix, seed, 16);
}

/* A client's X-Request-Id is kept when it is short and plain; anything else is
 * replaced, so it can go into logs and headers unescaped. */
static int sane_request_id(const char *s) {
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 64) return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return n > 0;
}

static void assign_ids(svc_req *req) {
    svc_worker *w = req->w;
    worker_seed(w);
    const char *rid = req->hdr_request_id;
    if (rid && sane_request_id(rid)) {
        req->id = rid;
    } else {
        /* "<16 hex prefix>-<at least 8 hex of the counter>" */
        char *id = svc_arena_alloc(req->arena, 16 + 1 + 16 + 1);
        if (id) {
            memcpy(id, w->id_prefix, 16);
            id[16] = '-';
            svc__fmt_hex64(id + 17, ++w->next_request_id, 8);
        }
        req->id = id;
    }
    /* W3C trace context: a valid traceparent is continued (its sampled
     * flag obeyed) and its tracestate passed on; anything malformed is
     * ignored, counted, and the request starts a trace of its own. */
    const char *tp = req->hdr_traceparent;
    svc_trace_ctx parent;
    if (tp && svc__traceparent_parse(tp, strlen(tp), &parent) == SVC_OK) {
        req->tctx = parent;
        memcpy(req->parent_span, parent.span_id, 8);
        svc__trace_new_id(req->tctx.span_id);
        const char *ts = req->hdr_tracestate;
        if (ts && svc__tracestate_ok(ts, strlen(ts))) req->tracestate = ts;
        else if (ts) svc__trace_count_invalid(1);
    } else {
        if (tp) svc__trace_count_invalid(0);
        svc__trace_root(&req->tctx);
    }
    svc__trace_hex(req->trace_id, req->tctx.trace_id, 16);
    svc__trace_hex(req->span_id, req->tctx.span_id, 8);
}

/* The request's server span, when its trace is sampled, or it failed (5xx)
 * or was slow: those are kept whatever the sampling said. */
static void record_server_span(svc_req *req, uint64_t dur_ns) {
    int status = req->res.status;
    if (!(req->tctx.flags & SVC_TRACE_SAMPLED) && status < 500 && dur_ns < svc__trace_slow_ns()) return;
    svc_span s;
    memcpy(s.trace_id, req->tctx.trace_id, 16);
    memcpy(s.span_id, req->tctx.span_id, 8);
    memcpy(s.parent_id, req->parent_span, 8);
    s.kind = SVC_SPAN_SERVER;
    s.flags = req->tctx.flags;
    s.error = status >= 500;
    s.detail_is = SVC_SPAN_DETAIL_ROUTE;
    s.status = (int16_t)status;
    s.mono_ns = req->start_ns;
    s.dur_ns = dur_ns;
    s.start_ns = svc__trace_unix_ns() - dur_ns;
    svc_route_entry *e = svc__req_metric_route(req);
    /* "<method> <route template>", cut to fit (no printf on this path). */
    size_t ml = strlen(req->method);
    if (ml > 16) ml = 16;
    memcpy(s.name, req->method, ml);
    s.name[ml] = ' ';
    svc_span_set(s.name + ml + 1, sizeof s.name - ml - 1, e->pattern);
    svc_span_set(s.detail, sizeof s.detail, e->pattern);
    s.peer[0] = '\0';
    s.code[0] = '\0';
    svc__trace_record(&s);
}

/*
 * RFC 9112 3.2.2: a server must accept the absolute-form ("http://host/p?q"),
 * which proxies send. Its path and query route like the origin-form; an empty
 * path is "/". Returns the origin-form target (*len updated), the target
 * itself when it is not http(s) absolute-form (normalisation then refuses
 * anything that is not origin-form), or NULL for an empty authority or out of
 * memory.
 */
static const char *origin_form(svc_req *req, const char *target, size_t *len) {
    size_t skip;
    if (*len >= 7 && strncasecmp(target, "http://", 7) == 0) skip = 7;
    else if (*len >= 8 && strncasecmp(target, "https://", 8) == 0) skip = 8;
    else return target;
    size_t a = skip;
    while (a < *len && target[a] != '/' && target[a] != '?') a++;
    if (a == skip) return NULL;
    if (a < *len && target[a] == '/') {
        *len -= a;
        return target + a;
    }
    char *t = svc_arena_printf(req->arena, "/%.*s", (int)(*len - a), target + a);
    if (t) *len = *len - a + 1;
    return t;
}

/* An Allow value plus OPTIONS, which the server always answers. */
static void allow_with_options(char *allow, size_t cap) {
    size_t n = strlen(allow);
    snprintf(allow + n, cap - n, "%sOPTIONS", n ? ", " : "");
}

/*
 * What a handler's outcome means for its request (SVC_ASYNC aside): SVC_DONE
 * with an answer finishes it; anything else is a contract error, answered
 * 500 with one log line and a count (svc__res_contract_error).
 */
void svc__handler_outcome(svc_req *req, svc_outcome rc) {
    svc_res *res = &req->res;
    if (rc == SVC_NEXT) svc__res_contract_error(res, "handler returned SVC_NEXT");
    else if (rc != SVC_DONE) svc__res_contract_error(res, "handler returned an invalid outcome");
    else if (!res->has_body && !res->streaming)
        svc__res_contract_error(res, "handler returned SVC_DONE without a response");
}

void svc__req_scope_enter(svc__req_scope *sc, const svc_req *req) {
    memcpy(sc->trace_id, req->trace_id, sizeof sc->trace_id);
    sc->tctx = req->tctx;
    sc->prev_trace_id = svc__log_trace_swap(sc->trace_id);
    sc->prev_tctx = svc__trace_swap(&sc->tctx);
}

void svc__req_scope_exit(svc__req_scope *sc) {
    svc__trace_swap(sc->prev_tctx);
    svc__log_trace_swap(sc->prev_trace_id);
}

static void run_handler_offloaded(uv_work_t *work) {
    svc_req *req = work->data;
    svc__req_scope sc;
    svc__req_scope_enter(&sc, req);
    /* A declared route's check runs here too, off the loop: parsing a large
     * body is blocking work like the handler's. */
    if (req->route->spec && svc__schema_request(req) != SVC_OK) req->handler_rc = SVC_DONE;
    else req->handler_rc = req->route->handler(req, &req->res);
    svc__req_scope_exit(&sc);
}

static void after_offload(uv_work_t *work, int status) {
    svc_req *req = work->data;
    svc__req_scope sc;
    svc__req_scope_enter(&sc, req);
    req->offloaded = 0;
    if (status == UV_ECANCELED) {
        svc__res_set_error(&req->res, 503, "unavailable", "service is shutting down");
    } else if (req->handler_rc == SVC_ASYNC && req->compose && svc__compose_waiting(req)) {
        /* It goes on in steps (compose.c). */
        req->res.async = 1;
        svc__compose_started(req);
        svc__req_scope_exit(&sc);
        return;
    } else if (req->handler_rc == SVC_ASYNC) {
        /* Offloaded handlers have no loop to finish from later. */
        svc__res_contract_error(&req->res, "handler returned SVC_ASYNC from the thread pool");
    } else {
        svc__handler_outcome(req, req->handler_rc);
    }
    svc__request_finish(req);
    svc__req_scope_exit(&sc);
}

static void run_handler(svc_req *req) {
    svc_res *res = &req->res;
    if (req->route->flags & SVC_OFFLOAD) {
        req->offloaded = 1;
        req->work.data = req;
        if (uv_queue_work(&req->w->loop, &req->work, run_handler_offloaded, after_offload) == 0) return;
        req->offloaded = 0;
        svc__res_set_error(res, 503, "unavailable", "cannot schedule the request");
        svc__request_finish(req);
        return;
    }
    /* A declared route's request is checked after the hooks (a 401 comes
     * before a 400), on the thread that runs the handler. */
    if (req->route->spec && svc__schema_request(req) != SVC_OK) {
        svc__request_finish(req);
        return;
    }
    svc_outcome rc = req->route->handler(req, res);
    if (rc == SVC_ASYNC) {
        res->async = 1;
        svc__compose_started(req);
        return;
    }
    svc__handler_outcome(req, rc);
    svc__request_finish(req);
}

/* A hook's outcome: 1 when the request goes on, 0 when it has its answer
 * (or a contract error, answered 500). */
static int hook_goes_on(svc_req *req, svc_outcome rc) {
    svc_res *res = &req->res;
    int answered = res->has_body || res->streaming;
    if (rc == SVC_NEXT && !answered) return 1;
    if (rc == SVC_NEXT) svc__res_contract_error(res, "a hook answered and returned SVC_NEXT");
    else if (rc != SVC_DONE) svc__res_contract_error(res, "a hook returned an invalid outcome");
    else if (!answered) svc__res_contract_error(res, "a hook returned SVC_DONE without a response");
    return 0;
}

/*
 * A handler (or hook) may finish its response before it returns: a stream
 * with all its data at hand, or an async call whose callback fires at once.
 * svc__request_finish then must not free the request under the handler's
 * feet, so while hooks and handler are on the stack the release waits for
 * them to return.
 */
static void run_hooks_and_handler(svc_req *req);

/* Hands a finished request back to where it came from, which frees it. A
 * transport's finish may log (a reply it could not send) before and after the
 * free: the scope's copies stay. */
void svc__request_release(svc_req *req) {
    svc__req_scope sc;
    svc__req_scope_enter(&sc, req);
    if (req->transport) req->transport->finish(req);
    else svc__req_free(req); /* made by a test without a transport */
    svc__req_scope_exit(&sc);
}

void svc__dispatch_continue(svc_req *req) {
    svc__req_scope sc;
    svc__req_scope_enter(&sc, req);
    req->in_handler = 1;
    run_hooks_and_handler(req);
    req->in_handler = 0;
    if (req->release_pending) svc__request_release(req);
    svc__req_scope_exit(&sc);
}

static void run_hooks_and_handler(svc_req *req) {
    svc_app *app = req->app;
    while (req->mw_index < app->nmw) {
        svc_middleware *m = &app->mw[req->mw_index++];
        if (!m->before) continue;
        svc_outcome rc = m->before(req, &req->res, m->ud);
        /* SVC_ASYNC: the hook resumes later with svc__dispatch_continue (or
         * ends the request with svc_res_finish). Steps (compose.c) are for
         * handlers: a hook has no continuation to return to. */
        if (rc == SVC_ASYNC && !svc__compose_waiting(req)) return;
        if (rc == SVC_ASYNC) {
            svc__res_contract_error(&req->res, "a hook went on in steps (svc_req_then & co are for handlers)");
            svc__request_finish(req);
            return;
        }
        if (!hook_goes_on(req, rc)) {
            svc__request_finish(req);
            return;
        }
    }
    run_handler(req);
}

/* Once per request: its ids (the transport has set its peer). */
static void prepare(svc_req *req) {
    if (req->prepared) return;
    req->prepared = 1;
    assign_ids(req);
}

/* Normalises the target and routes: 1 with the response written (400, 404,
 * 405, an OPTIONS answered here), 0 with req->route set. */
static int route(svc_req *req) {
    svc_app *app = req->app;
    svc_res *res = &req->res;
    const char *target = req->raw.data ? req->raw.data : "";
    int is_options = strcmp(req->method, "OPTIONS") == 0;
    if (is_options && strcmp(target, "*") == 0) {
        svc_res_header(res, "Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
        svc_res_status(res, 204);
        return 1;
    }
    char *path, *query;
    size_t target_len = req->url_len;
    target = origin_form(req, target, &target_len);
    int nrc = target ? svc__path_normalize(target, target_len, req->arena, &path, &query) : SVC_EINVAL;
    if (nrc != SVC_OK) {
        if (nrc == SVC_ENOMEM) svc_res_error(res, 503, "unavailable", "out of memory");
        else svc_res_error(res, 400, "bad_request", "malformed request target");
        return 1;
    }
    req->path = path;
    req->query = query;

    char allow[160];
    int rc = svc__router_match(app->router, req->method, path, req->arena, &req->match, allow, sizeof allow);
    if (rc != SVC_OK && is_options) {
        if (svc__router_allow(app->router, path, req->arena, allow, sizeof allow) == SVC_OK) {
            allow_with_options(allow, sizeof allow);
            svc_res_header(res, "Allow", allow);
            svc_res_status(res, 204);
        } else {
            svc_res_error(res, 404, "not_found", "no such resource");
        }
        return 1;
    }
    if (rc == SVC_ENOTFOUND) {
        svc_res_error(res, 404, "not_found", "no such resource");
        return 1;
    }
    if (rc == SVC_EAGAIN) {
        allow_with_options(allow, sizeof allow);
        svc_res_header(res, "Allow", allow);
        svc_res_error(res, 405, "method_not_allowed", "method %s not allowed here", req->method);
        return 1;
    }
    if (rc != SVC_OK) {
        svc_res_error(res, 503, "unavailable", "out of memory");
        return 1;
    }
    if (req->want_route && req->match.data != req->want_route) {
        svc_res_error(res, 400, "bad_request", "Svc-Path does not match the route of this subject");
        return 1;
    }
    req->route = req->match.data;
    return 0;
}

int svc__dispatch_head(svc_req *req) {
    if (req->head_checked) return req->head_answered;
    req->head_checked = 1;
    prepare(req);
    int answered = route(req);
    svc_app *app = req->app;
    for (int i = 0; i < app->nhead && !answered; i++) {
        svc_outcome rc = app->head[i].before(req, &req->res, app->head[i].ud);
        if (rc == SVC_ASYNC) {
            svc__res_contract_error(&req->res, "a head hook returned SVC_ASYNC");
            answered = 1;
        } else {
            answered = !hook_goes_on(req, rc);
        }
    }
    req->head_answered = answered != 0;
    return answered;
}

void svc__dispatch(svc_req *req) {
    svc_app *app = req->app;
    svc_res *res = &req->res;
    req->dispatched = 1;
    atomic_fetch_add(&app->inflight, 1);
    prepare(req);

    if (req->error_status) {
        req->keep_alive = 0;
        res->nheaders = 0; /* of a refusal at the head, overtaken by this error */
        svc__res_set_error(res, req->error_status, req->error_code, req->error_msg);
        if (req->error_status == 503) svc_res_header(res, "Retry-After", "1");
        svc__request_finish(req);
        return;
    }
    if (svc__dispatch_head(req)) {
        svc__request_finish(req);
        return;
    }
    svc__dispatch_continue(req);
}

void svc__request_finish(svc_req *req) {
    svc_res *res = &req->res;
    svc_app *app = req->app;
    if (res->finished) return;
    res->finished = 1;
    svc__req_scope sc;
    svc__req_scope_enter(&sc, req);
    if (!res->oom && !res->streaming && (!res->has_body || !res->status))
        svc__res_contract_error(res, "request finished without a response");
    if (res->oom) {
        svc__res_set_error(res, 503, "unavailable", "out of memory");
    } else if (res->contract && !res->streaming) {
        res->nheaders = 0;
        svc__res_set_error(res, 500, "internal", "internal error");
    } else if (res->jw_used && svc_jw_ok(&res->jw) != SVC_OK) {
        svc_error("%s %s: response JSON writer failed", req->method,
                  req->route ? req->route->pattern : req->path);
        svc__res_set_error(res, 500, "internal", "internal error");
    }
    for (int i = app->nmw - 1; i >= 0; i--)
        if (app->mw[i].after) app->mw[i].after(req, res, app->mw[i].ud);
    svc__res_encode(req, res);

    uint64_t dur_ns = svc_now_ns() - req->start_ns;
    double seconds = (double)dur_ns / 1e9;
    if (!(req->route && (req->route->flags & SVC_NO_LOG))) record_server_span(req, dur_ns);
    size_t bytes = res->streamed;
    if (!res->streaming && !req->head) svc_res_get_body(res, &bytes);
    else if (!res->streaming) bytes = 0;
    svc__metrics_observe(req, seconds);
    if (!(req->route && (req->route->flags & SVC_NO_LOG))) svc__access_log(req, seconds, bytes);
    atomic_fetch_sub(&app->inflight, 1);

    svc__req_scope_exit(&sc);
    if (req->in_handler) {
        req->release_pending = 1;
        return;
    }
    svc__request_release(req);
}
