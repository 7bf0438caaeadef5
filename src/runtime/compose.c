/*
 * Composition: a request that goes on in steps (svckit/app.h, svckit/msg.h).
 * A step is the calls started in it (svc_req_call), an optional work on the
 * thread pool, and a continuation on the loop, run once the work returned
 * and every call ended. The state lives in one malloc'd block, apart from
 * the request, because calls may outlive their request: each call holds a
 * reference, and a reply for a request that is gone is dropped and counted.
 *
 * Threads: everything here runs on the request's loop, except svc_req_call
 * and the svc_call_* readers from a work on the thread pool, while the loop
 * does not touch the request (only the calls' callbacks run then, and they
 * write only their own slot, with malloc, never the request's arena).
 * Requests waiting for a step are on their worker's list, which its tick
 * walks for deadlines and clients gone away.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "runtime/internal.h"
#include "svckit/msg.h"

typedef struct call_slot {
    struct svc_compose *c;
    int err;                         /* SVC_OK: replied */
    int status;
    char *body;                      /* malloc'd, NUL-terminated */
    size_t len;
    char **hdrs;                     /* name, value, name, value...; one malloc'd block */
    size_t nhdrs;
    json_t *json;
} call_slot;

struct svc_compose {
    atomic_int refs;                 /* the request's, and one per call in flight */
    svc_app *app;
    svc_req *req;                    /* NULL once the request is gone */
    call_slot calls[SVC_MAX_CALLS];
    atomic_int ncalls;               /* calls of the current step */
    atomic_int pending;              /* of those, not ended yet */
    int closed;                      /* the step's continuation is set: the next call opens a step */
    int waiting;                     /* a continuation waits */
    int working;                     /* the work is on the thread pool */
    int listed;                      /* on the worker's waiting list */
    svc_work_fn work;
    svc_then_fn then;
    void *ud;
    uint64_t deadline_ms;            /* svc_now_ns() / 1e6 */
    uv_work_t uvw;
    svc_compose *prev, *next;        /* the worker's waiting list */
};

static uint64_t now_ms(void) { return svc_now_ns() / 1000000u; }

/* The request's deadline: REQUEST_TIMEOUT from its first byte, or the
 * caller's deadline its transport carries (a NATS request's Svc-Deadline,
 * wall-clock ms) when that is sooner. */
static uint64_t deadline_of(svc_req *req) {
    int timeout = req->app->cfg.request_timeout_ms > 0 ? req->app->cfg.request_timeout_ms : SVC_REQUEST_TIMEOUT_MS;
    uint64_t d = req->start_ns / 1000000u + (uint64_t)timeout;
    const char *hd = req->transport ? req->transport->deadline_header : NULL;
    const char *sd = hd ? svc_req_header(req, hd) : NULL;
    int64_t wall;
    if (sd && svc_parse_i64(sd, &wall) == SVC_OK && wall > 0) {
        int64_t left = wall - svc_wall_ms();
        uint64_t d2 = now_ms() + (uint64_t)(left > 0 ? left : 0);
        if (d2 < d) d = d2;
    }
    return d;
}

static void slot_clear(call_slot *s) {
    free(s->body);
    free(s->hdrs);
    if (s->json) json_decref(s->json);
    svc_compose *c = s->c;
    memset(s, 0, sizeof *s);
    s->c = c;
}

static void unref(svc_compose *c) {
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    for (int i = 0; i < SVC_MAX_CALLS; i++) slot_clear(&c->calls[i]);
    free(c);
}

/* The request's state, made on first use (loop, or its work: the loop does
 * not touch the request then). */
static svc_compose *state(svc_req *req) {
    if (req->compose) return req->compose;
    svc_compose *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    atomic_init(&c->refs, 1);
    c->app = req->app;
    c->req = req;
    for (int i = 0; i < SVC_MAX_CALLS; i++) c->calls[i].c = c;
    c->deadline_ms = deadline_of(req);
    req->compose = c;
    return c;
}

static void list_add(svc_compose *c) {
    if (c->listed) return;
    svc_worker *w = c->req->w;
    c->prev = NULL;
    c->next = w->waiting;
    if (w->waiting) w->waiting->prev = c;
    w->waiting = c;
    c->listed = 1;
}

static void list_remove(svc_compose *c, svc_worker *w) {
    if (!c->listed) return;
    if (c->prev) c->prev->next = c->next;
    else w->waiting = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->listed = 0;
}

/* ---- requests a handler answers later ---------------------------------------
 *
 * A handler (or continuation) that returns plain SVC_ASYNC answers later
 * itself, with svc_res_finish: the runtime cannot know when. Its request is
 * kept on its worker's held list, an intrusive list (no allocation), which
 * the tick walks: at the deadline the request is answered 504 with one log
 * line, as a step past its deadline is. Its handler may still hold it, so
 * it is not freed then (abandoned): the transport only lets go of it, a
 * late answer is dropped, and the handler's svc_res_finish frees it (or the
 * worker's exit, for a handler that never answers at all).
 */

static void held_add(svc_req *req) {
    if (req->held || req->res.finished || req->res.streaming) return;
    svc_worker *w = req->w;
    req->held = 1;
    req->held_deadline_ms = req->compose ? req->compose->deadline_ms : deadline_of(req);
    req->held_prev = NULL;
    req->held_next = w->held;
    if (w->held) w->held->held_prev = req;
    w->held = req;
}

static void held_remove(svc_req *req) {
    if (!req->held) return;
    if (req->held_prev) req->held_prev->held_next = req->held_next;
    else req->w->held = req->held_next;
    if (req->held_next) req->held_next->held_prev = req->held_prev;
    req->held_prev = req->held_next = NULL;
    req->held = 0;
}

/* Steps go on from callbacks (a call's reply, the thread pool, the tick),
 * and the tick answers held requests, outside the handler: each runs in its
 * request's scope (svc__req_scope), so what it logs, calls and publishes
 * belongs to the request's trace. */

static void held_expired(svc_req *req) {
    svc_res *res = &req->res;
    svc__req_scope sc;
    svc__req_scope_enter(&sc, req);
    svc_warn("%s %s: the handler did not answer by the deadline (it returned SVC_ASYNC); answered 504, "
             "its answer will be dropped",
             req->method, req->route ? req->route->pattern : req->path);
    svc_counter_add(req->app->s_deadline, 1);
    req->abandoned = 1;
    /* What the handler may have begun is replaced. */
    res->answered = 0;
    res->contract = 0;
    res->nheaders = 0;
    svc__res_set_error(res, 504, "deadline_exceeded", "the request took too long");
    svc__request_finish(req);
    svc__req_scope_exit(&sc);
}

void svc__compose_worker_exit(svc_worker *w) {
    svc_req *req = w->held;
    while (req) {
        svc_req *next = req->held_next;
        if (req->abandoned) svc__req_free(req);
        req = next;
    }
}

/* The request is being freed (request.c): calls still in flight find no
 * request and drop their replies. */
void svc__compose_release(svc_req *req) {
    held_remove(req);
    svc_compose *c = req->compose;
    if (!c) return;
    list_remove(c, req->w);
    c->req = NULL;
    req->compose = NULL;
    unref(c);
}

static void kick(svc_compose *c);

/* Ends a request whose chain cannot go on, with an answer of its own. */
static void end_chain(svc_compose *c, int status, const char *code, const char *msg);

static void deadline_exceeded(svc_compose *c) {
    svc_req *req = c->req;
    svc__req_scope sc;
    svc__req_scope_enter(&sc, req);
    svc_warn("%s %s: deadline exceeded", req->method, req->route->pattern);
    svc_counter_add(req->app->s_deadline, 1);
    end_chain(c, 504, "deadline_exceeded", "the request took too long");
    svc__req_scope_exit(&sc);
}

static void end_chain(svc_compose *c, int status, const char *code, const char *msg) {
    svc_req *req = c->req;
    svc__req_scope sc;
    svc__req_scope_enter(&sc, req);
    c->waiting = 0;
    c->then = NULL;
    c->work = NULL;
    list_remove(c, req->w);
    svc__res_set_error(&req->res, status, code, msg);
    svc__request_finish(req);
    svc__req_scope_exit(&sc);
}

/* The client is gone (a reset, a closed connection), or has sent its FIN
 * while a step waits: TCP cannot tell a half-close from a close without a
 * write, and a chain is worth going on only for someone listening (nginx
 * takes a FIN during a proxied request as an abort too). The 499 still goes
 * to a client that only half-closed. A plain handler, which answers on its
 * own, still answers a half-closed client. */
static int client_gone(const svc_req *req) { return req->client_gone || req->client_eof; }

/* The step's continuation, on the loop: its outcome decides what follows,
 * as a handler's does. */
static void run_then_traced(svc_compose *c);

static void run_then(svc_compose *c) {
    svc__req_scope sc;
    svc__req_scope_enter(&sc, c->req);
    run_then_traced(c);
    svc__req_scope_exit(&sc);
}

static void run_then_traced(svc_compose *c) {
    svc_req *req = c->req;
    if (now_ms() >= c->deadline_ms) {
        deadline_exceeded(c);
        return;
    }
    svc_then_fn then = c->then;
    void *ud = c->ud;
    c->waiting = 0;
    c->then = NULL;
    list_remove(c, req->w);
    if (client_gone(req)) {
        svc_info("%s %s: the client went away; the chain ends", req->method, req->route->pattern);
        svc__res_set_error(&req->res, 499, "client_closed", "the client went away");
        svc__request_finish(req);
        return;
    }
    /* As around a handler: a finish inside waits for the return. */
    int nested = req->in_handler;
    req->in_handler = 1;
    svc_outcome rc = then(req, &req->res, ud);
    if (rc == SVC_ASYNC && c->waiting) {
        req->res.async = 1;
        kick(c);
    } else if (rc != SVC_ASYNC) {
        svc__handler_outcome(req, rc);
        svc__request_finish(req);
    } else {
        req->res.async = 1;
        held_add(req);
    }
    req->in_handler = nested;
    if (!nested && req->release_pending) svc__request_release(req);
}

static void work_run(uv_work_t *uvw) {
    svc_compose *c = uvw->data;
    svc_req *req = c->req;
    svc__req_scope sc;
    svc__req_scope_enter(&sc, req);
    c->work(req, c->ud);
    svc__req_scope_exit(&sc);
}

static void work_done(uv_work_t *uvw, int status) {
    svc_compose *c = uvw->data;
    svc_req *req = c->req;
    c->working = 0;
    req->offloaded = 0;
    c->work = NULL;
    if (status == UV_ECANCELED) {
        end_chain(c, 503, "unavailable", "service is shutting down");
        return;
    }
    if (now_ms() >= c->deadline_ms) {
        deadline_exceeded(c);
        return;
    }
    if (atomic_load(&c->pending) == 0) run_then(c);
}

/* Goes on with a waiting step when nothing holds it: its work to the
 * thread pool, or, every call ended, its continuation. Loop thread. */
static void kick(svc_compose *c) {
    if (!c->waiting) return;
    list_add(c);
    if (c->working || atomic_load(&c->pending) > 0) return;
    svc_req *req = c->req;
    if (c->work) {
        c->working = 1;
        req->offloaded = 1;
        c->uvw.data = c;
        if (uv_queue_work(&req->w->loop, &c->uvw, work_run, work_done) == 0) return;
        c->working = 0;
        req->offloaded = 0;
        end_chain(c, 503, "unavailable", "cannot schedule the request");
        return;
    }
    run_then(c);
}

/* A handler returned SVC_ASYNC (dispatch.c): a step set with svc_req_then
 * & co goes on now if nothing holds it; else the handler answers later
 * itself, and the request is held for its deadline. */
void svc__compose_started(svc_req *req) {
    if (req->compose && req->compose->waiting) kick(req->compose);
    else held_add(req);
}

static svc_outcome wait_step(svc_req *req, svc_work_fn work, void *ud, svc_then_fn then) {
    svc_compose *c = state(req);
    if (!c || !then) {
        svc__res_contract_error(&req->res, c ? "a continuation that is NULL" : "out of memory for a continuation");
        return SVC_DONE;
    }
    c->work = work;
    c->then = then;
    c->ud = ud;
    c->waiting = 1;
    c->closed = 1;
    return SVC_ASYNC;
}

int svc__compose_waiting(const svc_req *req) { return req->compose && req->compose->waiting; }

svc_outcome svc_req_then(svc_req *req, svc_then_fn then, void *ud) { return wait_step(req, NULL, ud, then); }

svc_outcome svc_req_offload(svc_req *req, svc_work_fn work, void *ud, svc_then_fn done) {
    if (!work) {
        svc__res_contract_error(&req->res, "svc_req_offload without work");
        return SVC_DONE;
    }
    return wait_step(req, work, ud, done);
}

int64_t svc_req_remaining_ms(const svc_req *req) {
    svc_compose *c = req->compose;
    uint64_t d = c ? c->deadline_ms : deadline_of((svc_req *)req);
    uint64_t now = now_ms();
    return d > now ? (int64_t)(d - now) : 0;
}

/* The worker's tick: requests past their deadline are answered 504 (steps
 * and held requests alike); chains whose client went away end. Work on the
 * thread pool finishes first (work_done looks again). */
void svc__compose_tick(svc_worker *w) {
    uint64_t now = now_ms();
    svc_compose *c = w->waiting;
    while (c) {
        svc_compose *next = c->next;
        svc_req *req = c->req;
        if (!c->working && now >= c->deadline_ms) {
            deadline_exceeded(c);
        } else if (!c->working && client_gone(req)) {
            svc__req_scope sc;
            svc__req_scope_enter(&sc, req);
            svc_info("%s %s: the client went away; the chain ends", req->method, req->route->pattern);
            end_chain(c, 499, "client_closed", "the client went away");
            svc__req_scope_exit(&sc);
        }
        c = next;
    }
    for (svc_req *req = w->held, *next; req; req = next) {
        next = req->held_next;
        if (!req->abandoned && !req->res.finished && !req->res.streaming && !req->offloaded &&
            now >= req->held_deadline_ms)
            held_expired(req);
    }
}

/* ---- calls ------------------------------------------------------------------- */

static void copy_reply(call_slot *s, const svc_rpc_reply *r) {
    s->status = r->status;
    s->body = malloc(r->body_len + 1);
    if (s->body) {
        if (r->body_len) memcpy(s->body, r->body, r->body_len);
        s->body[r->body_len] = '\0';
        s->len = r->body_len;
    }
    size_t n = 0, bytes = 0;
    const char *name, *value;
    while (r->header_at && r->header_at(r, n, &name, &value) == SVC_OK) {
        bytes += strlen(name) + strlen(value) + 2;
        n++;
    }
    if (!n) return;
    char **h = malloc(2 * n * sizeof *h + bytes);
    if (!h) return;
    char *p = (char *)(h + 2 * n);
    for (size_t i = 0; i < n && r->header_at(r, i, &name, &value) == SVC_OK; i++) {
        size_t nl = strlen(name) + 1, vl = strlen(value) + 1;
        h[2 * i] = memcpy(p, name, nl);
        p += nl;
        h[2 * i + 1] = memcpy(p, value, vl);
        p += vl;
    }
    s->hdrs = h;
    s->nhdrs = n;
}

static void on_reply(int err, const svc_rpc_reply *r, void *ud) {
    call_slot *s = ud;
    svc_compose *c = s->c;
    if (!c->req) {
        /* Its request was answered (a deadline) or is gone. */
        svc_counter_add(c->app->s_calls_dropped, 1);
    } else {
        s->err = err;
        if (err == SVC_OK && r) copy_reply(s, r);
        if (atomic_fetch_sub(&c->pending, 1) == 1) kick(c);
    }
    unref(c);
}

/* "Authorization: ..." or "Cookie: token=..." of the caller, or NULL. */
static const char *auth_header(svc_req *req) {
    const char *a = svc_req_header(req, "Authorization");
    if (a) return svc_arena_printf(req->arena, "Authorization: %s", a);
    const char *t = svc_req_cookie(req, "token");
    if (t) return svc_arena_printf(req->arena, "Cookie: token=%s", t);
    return NULL;
}

/* A call through the first transport that makes calls (module.h): NATS
 * request-reply with the default transports. SVC_ECLOSED when none does. */
static int start_call(svc_req *req, const char *service, const char *method, const char *path,
                      const void *body, size_t len, const svc_rpc_opts *ro, call_slot *s) {
    svc_app *app = req->app;
    for (int k = 0; k < app->ntransports; k++) {
        const svc_transport *t = app->transports[k].ops;
        if (t->call) return t->call(app, req, service, method, path, body, len, ro, on_reply, s);
    }
    return SVC_ECLOSED;
}

int svc_req_call(svc_req *req, const char *service, const char *method, const char *path, const void *body,
                 size_t len, const svc_call_opts *opts) {
    if (!req) return SVC_EINVAL;
    svc_compose *c = state(req);
    if (!c) return SVC_ENOMEM;
    if (c->closed) {
        /* A new step: the last one's results go. Its calls have all ended. */
        for (int i = 0; i < atomic_load(&c->ncalls); i++) slot_clear(&c->calls[i]);
        atomic_store(&c->ncalls, 0);
        c->closed = 0;
    }
    int i = atomic_fetch_add(&c->ncalls, 1);
    if (i >= SVC_MAX_CALLS) {
        atomic_fetch_sub(&c->ncalls, 1);
        return SVC_ERANGE;
    }
    call_slot *s = &c->calls[i];
    int64_t left = svc_req_remaining_ms(req);
    int timeout = opts && opts->timeout_ms > 0 ? opts->timeout_ms : SVC_MSG_RPC_TIMEOUT_MS;
    if (left < timeout) timeout = (int)left;
    if (timeout <= 0) {
        s->err = SVC_ETIMEDOUT;
        return i;
    }
    /* The caller's headers, and its credentials when asked. */
    size_t n = 0;
    for (const char *const *h = opts ? opts->headers : NULL; h && *h; h++) n++;
    const char **hdrs = svc_arena_alloc(req->arena, (n + 2) * sizeof *hdrs);
    if (!hdrs) {
        s->err = SVC_ENOMEM;
        return i;
    }
    for (size_t k = 0; k < n; k++) hdrs[k] = opts->headers[k];
    if (opts && (opts->flags & SVC_CALL_FORWARD_AUTH)) {
        const char *a = auth_header(req);
        if (a) hdrs[n++] = a;
    }
    hdrs[n] = NULL;
    svc_rpc_opts ro = {.timeout_ms = timeout, .headers = hdrs};
    atomic_fetch_add(&c->refs, 1);
    atomic_fetch_add(&c->pending, 1);
    int rc = start_call(req, service, method, path, body, len, &ro, s);
    if (rc != SVC_OK) {
        atomic_fetch_sub(&c->pending, 1);
        atomic_fetch_sub(&c->refs, 1);
        s->err = rc;
    }
    return i;
}

static const call_slot *slot(const svc_req *req, int i) {
    const svc_compose *c = req ? req->compose : NULL;
    if (!c || i < 0 || i >= atomic_load(&((svc_compose *)c)->ncalls)) return NULL;
    return &c->calls[i];
}

int svc_call_error(const svc_req *req, int i) {
    const call_slot *s = slot(req, i);
    return s ? s->err : SVC_ENOTFOUND;
}

int svc_call_status(const svc_req *req, int i) {
    const call_slot *s = slot(req, i);
    if (!s) return 500;
    switch (s->err) {
    case SVC_OK: return s->body ? s->status : 500;
    case SVC_ETIMEDOUT: return 504;
    case SVC_EAGAIN:
    case SVC_ECLOSED: return 503;
    default: return 500;
    }
}

const char *svc_call_body(const svc_req *req, int i, size_t *len) {
    const call_slot *s = slot(req, i);
    if (len) *len = s && s->body ? s->len : 0;
    return s && s->body ? s->body : "";
}

json_t *svc_call_json(svc_req *req, int i) {
    call_slot *s = (call_slot *)slot(req, i);
    if (!s || !s->body || !s->len) return NULL;
    /* Another service's bytes: parsed with the same limits as a request body. */
    if (!s->json && svc_json_parse(s->body, s->len, NULL, &s->json, NULL, 0) != SVC_OK) s->json = NULL;
    return s->json;
}

const char *svc_call_header(const svc_req *req, int i, const char *name) {
    const call_slot *s = slot(req, i);
    if (!s || !name) return NULL;
    for (size_t k = 0; k < s->nhdrs; k++)
        if (strcasecmp(s->hdrs[2 * k], name) == 0) return s->hdrs[2 * k + 1];
    return NULL;
}
