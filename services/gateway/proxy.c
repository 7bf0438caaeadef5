/*
 * One request through the gateway:
 *
 *   rate limit (429) -> route (404; OPTIONS on the gateway's own paths 204)
 *   -> CORS preflight (204/403) -> edge auth (401/403; not for a plain
 *   OPTIONS) -> concurrency cap (503) -> breaker (503) -> svc_rpc_call to one
 *   instance -> resent elsewhere if nobody received it, or maybe one retry on
 *   another -> the service's answer, or 503/504
 *
 * Everything a request needs lives in its arena; the call context too
 * (svc_rpc_call copies what it sends). Only the token an attempt's callback
 * gets is malloc'd: it outlives the request when the request has moved on
 * (below) and its first attempt's callback comes later.
 *
 * When an instance leaves a worker's pool (no responders on its own subject:
 * its process died; or discovery stopped seeing it), the calls this worker has
 * in flight on it move at once to another instance, within the retry budget,
 * instead of waiting for their timeout: an instance SIGKILLed with a GET in
 * flight costs that GET a few milliseconds, not timeout_ms. Only calls that
 * may run twice move (idempotent methods on a route with retries).
 * Shared state is read-only configuration plus atomics (breakers, the
 * in-flight count, the directory's version); the rotation, failure marks and
 * retry budget are per worker thread, so the path takes no lock but the rate
 * limiter's (svckit/limit.h keeps one table for every worker, which is what
 * makes a client's limit the same whichever worker its connections land on).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway.h"
#include "svckit/msg.h"

/* ---- per-worker state ------------------------------------------------------- */

typedef struct gw_call gw_call;

typedef struct gw_worker {
    gw_state *g;
    gw_pools pools;
    gw_call *inflight;               /* calls waiting for a reply, this thread's */
    uv_timer_t check;                /* runs while inflight is not empty */
    /* One budget per service: a failing service with little traffic must not
     * spend the retries a busy healthy one earns. */
    gw_budget budget[GW_MAX_SERVICES];
    struct gw_worker *next;
} gw_worker;

/* This thread's state, a cache of the lookup in g->workers: valid for the
 * gateway it was made for. */
static _Thread_local gw_worker *tls_worker;

static void check_stranded(uv_timer_t *t);

/* Made on the first request a worker thread serves, on its loop; freed by
 * gw_proxy_release once every worker has stopped (the loop closed the timer
 * as it ended: it is unref'd, so it never keeps a stopping worker alive). */
static gw_worker *worker(gw_state *g, uv_loop_t *loop) {
    gw_worker *w = tls_worker;
    if (w && w->g == g) return w;
    if (!loop || !(w = calloc(1, sizeof *w))) return NULL;
    w->g = g;
    uv_timer_init(loop, &w->check);
    w->check.data = w;
    uv_unref((uv_handle_t *)&w->check);
    for (int i = 0; i < g->cfg.nservices; i++)
        gw_budget_init(&w->budget[i], g->cfg.retry_ratio, g->cfg.retry_window_s);
    pthread_mutex_lock(&g->workers_mu);
    w->next = g->workers;
    g->workers = w;
    pthread_mutex_unlock(&g->workers_mu);
    return tls_worker = w;
}

void gw_proxy_release(gw_state *g) {
    pthread_mutex_lock(&g->workers_mu);
    while (g->workers) {
        gw_worker *w = g->workers;
        g->workers = w->next;
        free(w);
    }
    pthread_mutex_unlock(&g->workers_mu);
    tls_worker = NULL;
}

uint64_t gw_now_ms(void) { return svc_now_ns() / 1000000u; }

/* ---- one call --------------------------------------------------------------- */

/* What an attempt's callback gets: the call, or NULL once the call moved on
 * without it (the callback then only frees the token). */
typedef struct gw_attempt {
    struct gw_call *call;
} gw_attempt;

struct gw_call {
    svc_req *req;
    svc_res *res;
    gw_state *g;
    gw_worker *w;
    const gw_route *route;
    const char *method;              /* as sent: HEAD goes as GET */
    const char *target;              /* encoded path?query */
    const char *body;
    size_t body_len;
    const char **headers;            /* "Name: value", NULL-terminated */
    char instance[GW_INSTANCE_ID_MAX + 1]; /* this attempt's, "" for the queue */
    int attempt;                     /* 1 once retried (a retry may follow a run) */
    int resends;                     /* sent again because nobody received it */
    int trial;                       /* the breaker's half-open trial */
    int timeout_ms;                  /* this attempt's: the route's, or less when the request's deadline is nearer */
    int holds_slot;                  /* counted in g->inflight */
    gw_attempt *cur;                 /* the attempt in flight, NULL between attempts */
    gw_call *prev, *next;            /* in w->inflight while an attempt is */
};

static void inflight_add(gw_call *c) {
    gw_worker *w = c->w;
    if (!w->inflight) uv_timer_start(&w->check, check_stranded, GW_STRANDED_CHECK_MS, GW_STRANDED_CHECK_MS);
    c->prev = NULL;
    c->next = w->inflight;
    if (w->inflight) w->inflight->prev = c;
    w->inflight = c;
}

static void inflight_remove(gw_call *c) {
    if (c->prev) c->prev->next = c->next;
    else if (c->w->inflight == c) c->w->inflight = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (!c->w->inflight) uv_timer_stop(&c->w->check);
}

static void release_slot(gw_call *c) {
    if (c->holds_slot) {
        atomic_fetch_sub(&c->g->inflight, 1);
        c->holds_slot = 0;
    }
}

static const char *service_name(const gw_call *c) { return c->g->cfg.services[c->route->service]; }

/* An answer made by the gateway itself when the call could not even start. */
static svc_outcome start_error(gw_call *c, int rc) {
    switch (rc) {
    case SVC_EINVAL:
        return svc_res_error(c->res, 400, "bad_request", "the request cannot be forwarded (path, query or a header)");
    case SVC_ERANGE:
        return svc_res_error(c->res, 413, "payload_too_large", "request body too large");
    case SVC_ECLOSED:
        return svc_res_error(c->res, 503, "unavailable", "the gateway is not connected to the message bus");
    case SVC_ETIMEDOUT:
        return svc_res_error(c->res, 504, "gateway_timeout", "the request's deadline has passed");
    default:
        return svc_res_error(c->res, 503, "unavailable", "cannot forward the request now");
    }
}

static void on_reply(int err, const svc_rpc_reply *reply, void *ud);

/* Sends the current attempt to c->instance (or the queue when it is empty);
 * on SVC_OK, c is in its worker's in-flight list until the reply. */
static int send_attempt(gw_call *c) {
    /* The request's deadline (REQUEST_TIMEOUT, or the caller's) bounds every
     * attempt, retries included: the service gets the true Svc-Deadline and
     * the gateway answers 504 itself, never past the runtime's deadline. */
    int64_t left = svc_req_remaining_ms(c->req);
    c->timeout_ms = left < c->route->timeout_ms ? (int)left : c->route->timeout_ms;
    if (c->timeout_ms <= 0) return SVC_ETIMEDOUT;
    svc_rpc_opts o = {
        .timeout_ms = c->timeout_ms,
        .instance = c->instance[0] ? c->instance : NULL,
        .headers = c->headers,
    };
    gw_attempt *a = malloc(sizeof *a);
    if (!a) return SVC_ENOMEM;
    a->call = c;
    int rc = svc_rpc_call(c->g->app, c->req, service_name(c), c->method, c->target, c->body, c->body_len, &o,
                          on_reply, a);
    if (rc != SVC_OK) {
        free(a);
        return rc;
    }
    c->cur = a;
    if (!c->prev && c->w->inflight != c) inflight_add(c);
    return SVC_OK;
}

static void set_instance(gw_call *c, const char *id) {
    size_t n = id ? strnlen(id, sizeof c->instance - 1) : 0;
    memcpy(c->instance, id ? id : "", n);
    c->instance[n] = '\0';
}

/* The service's reply, as the client gets it. */
static void write_reply(gw_call *c, const svc_rpc_reply *r) {
    svc_res *res = c->res;
    int status = r->status;
    /* A 1xx cannot end an exchange, and anything else out of range is broken. */
    if (status < 200 || status > 599) {
        svc_res_error(res, 502, "bad_gateway", "%s sent an invalid status", service_name(c));
        return;
    }
    for (const char *const *h = gw_response_headers + 1; *h; h++) {
        const char *v = r->header(r, *h);
        if (v) svc_res_header(res, *h, v);
    }
    if (status == 204 || status == 304) {
        svc_res_status(res, status);
        return;
    }
    const char *ct = r->header(r, "Content-Type");
    /* The reply (and its headers) are gone after this callback; the response
     * keeps the content type by pointer, so it goes to the request's arena. */
    if (ct && !(ct = svc_arena_strdup(svc_req_arena(c->req), ct))) {
        svc_res_error(res, 503, "unavailable", "out of memory");
        return;
    }
    svc_res_body(res, status, ct, r->body, r->body_len);
}

static void finish(gw_call *c, int err, const svc_rpc_reply *r, int up, uint64_t now) {
    gw_state *g = c->g;
    int outcome = up == GW_UP_OK ? GW_OUTCOME_SUCCESS
                  : (up == GW_UP_ERROR_5XX || up == GW_UP_NO_RESPONDERS || up == GW_UP_TIMEOUT ||
                     up == GW_UP_DRAINING)
                      ? GW_OUTCOME_FAILURE
                      : GW_OUTCOME_NEUTRAL;
    gw_breaker_record(&g->breakers[c->route->service], outcome, c->trial, now);
    if (err == SVC_OK) {
        write_reply(c, r);
    } else if (up == GW_UP_NO_RESPONDERS) {
        svc_res_header(c->res, "Retry-After", "1");
        svc_res_error(c->res, 503, "unavailable", "%s has no live instance", service_name(c));
    } else if (up == GW_UP_TIMEOUT) {
        svc_res_error(c->res, 504, "gateway_timeout", "%s did not answer within %d ms", service_name(c),
                      c->timeout_ms);
    } else if (up == GW_UP_CLOSED) {
        svc_res_header(c->res, "Retry-After", "1");
        svc_res_error(c->res, 503, "unavailable", "the gateway is not connected to the message bus");
    } else {
        svc_res_error(c->res, 502, "bad_gateway", "%s could not be called", service_name(c));
    }
    inflight_remove(c);
    release_slot(c);
    svc_res_finish(c->res);
}

/*
 * The calls of this worker waiting on an instance that is no longer in its
 * pool, that may run twice and have not been retried yet, go to another
 * instance now (a retry, within the budget). The old attempt is disowned:
 * when its callback comes (at its timeout), it only frees its token. The
 * others wait for their reply or timeout as before.
 */
static void move_stranded(gw_worker *w, uint64_t now) {
    gw_call *next;
    for (gw_call *c = w->inflight; c; c = next) {
        next = c->next;
        int svc = c->route->service;
        if (!c->cur || c->attempt != 0 || !c->instance[0] || !c->route->retry || !gw_may_run_twice(c->method, c->headers) ||
            gw_pool_has(&w->pools, svc, c->instance))
            continue;
        const char *to = gw_pool_pick(&w->pools, svc, now, c->instance);
        if (!to) continue; /* nowhere to go: it waits */
        if (!gw_budget_take(&w->budget[svc], now)) {
            svc_counter_add(c->g->m.budget_exhausted, 1);
            continue;
        }
        gw_attempt *old = c->cur;
        char was[sizeof c->instance];
        memcpy(was, c->instance, sizeof was);
        c->attempt = 1;
        set_instance(c, to);
        if (send_attempt(c) != SVC_OK) {
            /* Could not start: it keeps waiting on the old attempt (c->cur). */
            c->attempt = 0;
            memcpy(c->instance, was, sizeof was);
            continue;
        }
        old->call = NULL;
        svc_counter_add(c->g->m.retries, 1);
        svc_counter_add(c->g->m.moved, 1);
    }
}

static void check_stranded(uv_timer_t *t) {
    gw_worker *w = t->data;
    if (gw_pools_sync(&w->pools, &w->g->dir)) move_stranded(w, gw_now_ms());
}

/* Sends a request nobody received (the instance tried is gone or leaving)
 * again: to another live instance, or, for the last resend or when none is
 * known, to the queue subject, which only live instances listen on. No
 * budget: nothing ran, so this adds no load a service would feel. */
static int resend(gw_call *c, uint64_t now) {
    gw_worker *w = c->w;
    int svc = c->route->service;
    if (gw_pools_sync(&w->pools, &c->g->dir)) move_stranded(w, now);
    const char *next = NULL;
    if (++c->resends < GW_MAX_RESENDS) next = gw_pool_pick(&w->pools, svc, now, c->instance[0] ? c->instance : NULL);
    set_instance(c, next);
    if (send_attempt(c) != SVC_OK) return 0;
    svc_counter_add(c->g->m.resends, 1);
    svc_counter_add(c->g->m.retries, 1);
    return 1;
}

static void on_reply(int err, const svc_rpc_reply *r, void *ud) {
    gw_attempt *a = ud;
    gw_call *c = a->call;
    free(a);
    if (!c) return; /* an attempt the call moved on from */
    c->cur = NULL;
    gw_state *g = c->g;
    gw_worker *w = c->w;
    int svc = c->route->service;
    uint64_t now = gw_now_ms();

    int up, retryable = 0;
    switch (err) {
    case SVC_OK:
        if (r->status == 503 && r->header(r, "Svc-Draining")) {
            up = GW_UP_DRAINING;
        } else {
            up = r->status >= 500 || r->status < 200 ? GW_UP_ERROR_5XX : GW_UP_OK;
            retryable = r->status == 502 || r->status == 503 || r->status == 504;
        }
        break;
    case SVC_EAGAIN: up = GW_UP_NO_RESPONDERS; break;
    case SVC_ETIMEDOUT: up = GW_UP_TIMEOUT, retryable = 1; break;
    case SVC_ECLOSED: up = GW_UP_CLOSED; break;
    default: up = GW_UP_ERROR; break;
    }
    svc_counter_add(g->m.upstream[svc][up], 1);

    /* What this says about the instance. No responders on an instance's own
     * subject is certain: it is gone (its process died or drained), for every
     * worker; a draining reply too, but it still answers what it holds; the
     * others are likely, for a while. */
    if (c->instance[0]) {
        if (up == GW_UP_NO_RESPONDERS) {
            gw_directory_forget(&g->dir, svc, c->instance);
            gw_discovery_wake(&g->dir);
            /* Catch up with the directory first (the forget moved its
             * version), so that one walk moves the calls stranded on any
             * instance gone and the sync below finds nothing new. */
            gw_pools_sync(&w->pools, &g->dir);
            gw_pool_remove(&w->pools, svc, c->instance);
            move_stranded(w, now);
        } else if (up == GW_UP_DRAINING) {
            gw_directory_leave(&g->dir, svc, c->instance);
            gw_discovery_wake(&g->dir);
        } else if (retryable) {
            gw_pool_skip(&w->pools, svc, c->instance, now);
        }
    } else if (up == GW_UP_OK && r->instance[0] && !gw_pool_has(&w->pools, svc, r->instance)) {
        /* The queue subject found an instance discovery has not seen yet (it
         * just started): look now rather than at the next round. */
        gw_discovery_wake(&g->dir);
    }

    /* Nobody received the request: whatever its method, it goes elsewhere,
     * up to GW_MAX_RESENDS times. No responders on the queue subject means
     * no instance at all: nothing to resend to. */
    int unreceived = up == GW_UP_DRAINING || (up == GW_UP_NO_RESPONDERS && c->instance[0]);
    if (unreceived && c->resends < GW_MAX_RESENDS && resend(c, now)) return;

    /* One retry, on another instance, for idempotent requests (they may
     * have run once already). */
    if (retryable && c->attempt == 0 && c->route->retry && gw_may_run_twice(c->method, c->headers)) {
        if (gw_pools_sync(&w->pools, &g->dir)) move_stranded(w, now);
        const char *next = gw_pool_pick(&w->pools, svc, now, c->instance[0] ? c->instance : NULL);
        if (next) {
            if (gw_budget_take(&w->budget[svc], now)) {
                svc_counter_add(g->m.retries, 1);
                c->attempt = 1;
                set_instance(c, next);
                int rc = send_attempt(c);
                if (rc == SVC_OK) return;
                /* Could not even start: answer with the first failure. */
            } else {
                svc_counter_add(g->m.budget_exhausted, 1);
            }
        }
    }
    finish(c, err, r, up, now);
}

/* ---- the handler ------------------------------------------------------------- */

static svc_outcome preflight(gw_state *g, svc_res *res, const char *origin) {
    if (!gw_cors_allowed(&g->cfg, origin)) return svc_res_error(res, 403, "forbidden", "origin not allowed");
    char age[16];
    snprintf(age, sizeof age, "%d", g->cfg.cors_max_age_s);
    svc_res_header(res, "Access-Control-Allow-Methods", GW_CORS_METHODS);
    svc_res_header(res, "Access-Control-Allow-Headers", GW_CORS_HEADERS);
    svc_res_header(res, "Access-Control-Max-Age", age);
    return svc_res_status(res, 204);
}

/* OPTIONS on a path no route takes: answered as a service answers it, 204
 * with the methods of the gateway's own endpoints (the core's /healthz,
 * /readyz, /metrics), 404 for any other path. */
static svc_outcome own_options(const char *path, svc_res *res) {
    static const char *const own[] = {"/healthz", "/readyz", "/metrics", NULL};
    for (const char *const *p = own; *p; p++) {
        if (strcmp(path, *p) != 0) continue;
        svc_res_header(res, "Allow", "GET, HEAD, OPTIONS");
        return svc_res_status(res, 204);
    }
    return svc_res_error(res, 404, "not_found", "no such resource");
}

/* The client's headers that services may see, as "Name: value" lines. */
static const char **forwarded_headers(svc_req *req) {
    svc_arena *a = svc_req_arena(req);
    size_t total = 0;
    const char *name, *value;
    while (svc_req_header_at(req, total, &name, &value) == SVC_OK) total++;
    const char **out = svc_arena_alloc(a, (total + 1) * sizeof *out);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < total && svc_req_header_at(req, i, &name, &value) == SVC_OK; i++) {
        if (!gw_forward_request_header(name)) continue;
        size_t nl = strlen(name), vl = strlen(value);
        char *line = svc_arena_alloc(a, nl + vl + 3);
        if (!line) return NULL;
        memcpy(line, name, nl);
        memcpy(line + nl, ": ", 2);
        memcpy(line + nl + 2, value, vl + 1);
        out[k++] = line;
    }
    out[k] = NULL;
    return out;
}

/* The edge checks that need only the head, run by the core before the body
 * is read (a head hook): the per-client rate limit, then the route's token. */
svc_outcome gw_edge_check(svc_req *req, svc_res *res, void *ud) {
    gw_state *g = ud;
    const char *pattern = svc_req_route(req);
    if (!pattern || strcmp(pattern, GW_PROXY_ROUTE) != 0) return SVC_NEXT; /* /healthz & co */
    if (g->rl) {
        int after = 1;
        const char *peer = svc_req_peer(req);
        char key[SVC_RATELIMIT_PEER_KEY_MAX];
        if (svc_ratelimit_take(g->rl, *peer ? svc_ratelimit_peer_key(peer, key) : "unknown", &after) != SVC_OK) {
            char ra[16];
            snprintf(ra, sizeof ra, "%d", after);
            svc_counter_add(g->m.rate_limited, 1);
            svc_res_header(res, "Retry-After", ra);
            return svc_res_error(res, 429, "too_many_requests", "rate limit exceeded; retry in %d s", after);
        }
    }
    const gw_route *route = gw_route_find(&g->cfg, svc_req_path(req));
    if (!route || route->auth == GW_AUTH_NONE) return SVC_NEXT;
    /* A preflight needs no token; gw_proxy answers it. A plain OPTIONS goes
     * to the service unchecked too: svckit services answer it for every path
     * with 204 and Allow before any auth (a route that declares OPTIONS
     * itself checks its own auth there). */
    const char *method = svc_req_method(req);
    if (strcmp(method, "OPTIONS") == 0) return SVC_NEXT;
    return svc_auth_check(req, res, route->auth == GW_AUTH_ADMIN ? SVC_AUTH_ADMIN : SVC_AUTH_USER);
}

svc_outcome gw_proxy(svc_req *req, svc_res *res) {
    gw_state *g = svc_req_app_data(req);
    gw_worker *w = worker(g, svc_req_loop(req));
    if (!w) return svc_res_error(res, 503, "unavailable", "out of memory");

    const char *path = svc_req_path(req);
    const char *method = svc_req_method(req);
    int options = strcmp(method, "OPTIONS") == 0;
    const gw_route *route = gw_route_find(&g->cfg, path);
    if (!route) return options ? own_options(path, res) : svc_res_error(res, 404, "not_found", "no such resource");
    svc_req_set_route_label(req, route->label);

    const char *origin = svc_req_header(req, "Origin");
    if (gw_cors_is_preflight(method, origin, svc_req_header(req, "Access-Control-Request-Method")))
        return preflight(g, res, origin);

    gw_call *c = svc_arena_calloc(svc_req_arena(req), sizeof *c);
    if (!c) return svc_res_error(res, 503, "unavailable", "out of memory");
    c->req = req;
    c->res = res;
    c->g = g;
    c->w = w;
    c->route = route;

    if (g->cfg.max_concurrency > 0) {
        if (atomic_fetch_add(&g->inflight, 1) >= g->cfg.max_concurrency) {
            atomic_fetch_sub(&g->inflight, 1);
            svc_counter_add(g->m.concurrency_rejected, 1);
            svc_res_header(res, "Retry-After", "1");
            return svc_res_error(res, 503, "overloaded", "too many requests in flight; retry shortly");
        }
        c->holds_slot = 1;
    }

    int svc = route->service;
    uint64_t now = gw_now_ms();
    if (!gw_breaker_allow(&g->breakers[svc], now, &c->trial)) {
        release_slot(c);
        char ra[16];
        snprintf(ra, sizeof ra, "%d", (g->cfg.breaker_open_ms + 999) / 1000);
        svc_counter_add(g->m.breaker_rejected[svc], 1);
        svc_res_header(res, "Retry-After", ra);
        return svc_res_error(res, 503, "unavailable", "%s is failing; try again shortly", g->cfg.services[svc]);
    }

    /* HEAD goes as GET: the core answers HEAD from a GET response with the
     * right Content-Length and no body, which a HEAD reply could not give. */
    c->method = strcmp(method, "HEAD") == 0 ? "GET" : method;
    c->target = gw_target_encode(svc_req_arena(req), path, svc_req_query_string(req));
    c->body = svc_req_body(req, &c->body_len);
    c->headers = forwarded_headers(req);
    int rc = c->target && c->headers ? SVC_OK : SVC_ENOMEM;

    gw_budget_request(&w->budget[svc], now);
    svc_counter_add(g->m.requests, 1);
    if (rc == SVC_OK) {
        if (gw_pools_sync(&w->pools, &g->dir)) move_stranded(w, now);
        const char *id = gw_pool_pick(&w->pools, svc, now, NULL);
        /* Nothing known yet (a service started after us, or every known
         * instance is leaving or skipped): the queue subject still reaches
         * whoever listens, and discovery is asked to look now when no live
         * instance is known. */
        if (!id && gw_pool_live(&w->pools, svc) == 0) gw_discovery_wake(&g->dir);
        set_instance(c, id);
        rc = send_attempt(c);
    }
    if (rc != SVC_OK) {
        gw_breaker_record(&g->breakers[svc], GW_OUTCOME_NEUTRAL, c->trial, now);
        release_slot(c);
        return start_error(c, rc);
    }
    return SVC_ASYNC;
}

/* ---- CORS on every answer ------------------------------------------------------ */

void gw_cors_after(svc_req *req, svc_res *res, void *ud) {
    gw_state *g = ud;
    if (g->cfg.norigins == 0) return;
    const char *origin = svc_req_header(req, "Origin");
    /* Caches must not serve one origin's answer to another. */
    svc_res_header(res, "Vary", "Origin");
    if (!gw_cors_allowed(&g->cfg, origin)) return;
    svc_res_header(res, "Access-Control-Allow-Origin", origin);
    svc_res_header(res, "Access-Control-Allow-Credentials", "true");
    if (strcmp(svc_req_method(req), "OPTIONS") != 0)
        svc_res_header(res, "Access-Control-Expose-Headers", GW_CORS_EXPOSE);
}
