/* A service for the composition tests (test_compose.py): its handlers call
 * the service itself over NATS (service "composesvc"), as one service calls
 * another, through svc_req_call, svc_req_then and svc_req_offload. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "svckit.h"

/* ---- the callee ------------------------------------------------------------- */

/* GET /peer/echo: what the caller passed on. */
static svc_outcome peer_echo(svc_req *req, svc_res *res) {
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "authorization"), svc_jw_str(w, svc_req_header(req, "Authorization"));
    svc_jw_key(w, "token_cookie"), svc_jw_str(w, svc_req_cookie(req, "token"));
    svc_jw_key(w, "deadline"), svc_jw_bool(w, svc_req_header(req, "Svc-Deadline") != NULL);
    svc_jw_key(w, "n"), svc_jw_str(w, svc_req_query(req, "n"));
    svc_jw_obj_end(w);
    svc_res_header(res, "X-Peer", "echo");
    return SVC_DONE;
}

/* GET /peer/slow?ms=N: answers after N ms (a loop timer). */
typedef struct slow {
    uv_timer_t timer;
    svc_res *res;
} slow;

static void slow_closed(uv_handle_t *h) { free(h->data); }

static void slow_fire(uv_timer_t *t) {
    slow *s = t->data;
    svc_res_printf(s->res, 200, "application/json", "{\"slow\":true}");
    svc_res_finish(s->res);
    uv_close((uv_handle_t *)t, slow_closed);
}

static svc_outcome peer_slow(svc_req *req, svc_res *res) {
    int64_t ms = 100;
    const char *q = svc_req_query(req, "ms");
    if (q && (svc_parse_i64(q, &ms) != SVC_OK || ms < 0 || ms > 60000))
        return svc_res_error(res, 400, "bad_request", "ms must be 0-60000");
    slow *s = calloc(1, sizeof *s);
    if (!s) return svc_res_error(res, 503, "unavailable", "out of memory");
    s->res = res;
    uv_timer_init(svc_req_loop(req), &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, slow_fire, (uint64_t)ms, 0);
    return SVC_ASYNC;
}

/* ---- the callers -------------------------------------------------------------- */

typedef struct chain {
    int worked;
    int from_work_call;              /* index of the call made by the work */
} chain;

static svc_outcome answer_calls(svc_req *req, svc_res *res, void *ud) {
    chain *c = ud;
    svc_info("step: answer_calls of %s", svc_req_path(req));
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "worked"), svc_jw_bool(w, c && c->worked);
    svc_jw_key(w, "calls");
    svc_jw_arr_begin(w);
    for (int i = 0; svc_call_error(req, i) != SVC_ENOTFOUND; i++) {
        svc_jw_obj_begin(w);
        svc_jw_key(w, "status"), svc_jw_i64(w, svc_call_status(req, i));
        svc_jw_key(w, "peer"), svc_jw_str(w, svc_call_header(req, i, "X-Peer"));
        json_t *j = svc_call_json(req, i);
        svc_jw_key(w, "body");
        if (j) svc_jw_value(w, j);
        else svc_jw_null(w);
        svc_jw_obj_end(w);
    }
    svc_jw_arr_end(w);
    svc_jw_obj_end(w);
    return SVC_DONE;
}

static void work(svc_req *req, void *ud) {
    chain *c = ud;
    svc_info("step: work of %s", svc_req_path(req));
    c->worked = 1;
}

/* GET /chain: a call, then work on the thread pool, then the answer. */
static svc_outcome chain_route(svc_req *req, svc_res *res) {
    chain *c = svc_arena_calloc(svc_req_arena(req), sizeof *c);
    if (!c) return svc_res_error(res, 503, "unavailable", "out of memory");
    svc_req_call(req, "composesvc", "GET", "/peer/echo?n=1", NULL, 0, NULL);
    return svc_req_offload(req, work, c, answer_calls);
}

/* GET /parallel: two calls at once, one answer once both ended. */
static svc_outcome parallel(svc_req *req, svc_res *res) {
    svc_req_call(req, "composesvc", "GET", "/peer/slow?ms=50", NULL, 0, NULL);
    svc_req_call(req, "composesvc", "GET", "/peer/echo?n=2", NULL, 0, NULL);
    return svc_req_then(req, answer_calls, NULL);
}

/* GET /from-work: the work on the thread pool makes the call. */
static void work_calls(svc_req *req, void *ud) {
    chain *c = ud;
    c->worked = 1;
    c->from_work_call = svc_req_call(req, "composesvc", "GET", "/peer/echo?n=3", NULL, 0, NULL);
}

static svc_outcome from_work(svc_req *req, svc_res *res) {
    chain *c = svc_arena_calloc(svc_req_arena(req), sizeof *c);
    if (!c) return svc_res_error(res, 503, "unavailable", "out of memory");
    return svc_req_offload(req, work_calls, c, answer_calls);
}

/* GET /offloaded: an SVC_OFFLOAD handler that calls, then answers on the loop. */
static svc_outcome offloaded(svc_req *req, svc_res *res) {
    svc_req_call(req, "composesvc", "GET", "/peer/echo?n=4", NULL, 0, NULL);
    return svc_req_then(req, answer_calls, NULL);
}

/* GET /wait?ms=N: waits for a slow callee, answering with its status. */
static svc_outcome waited(svc_req *req, svc_res *res, void *ud) {
    int st = svc_call_status(req, 0);
    if (st != 200) return svc_res_error(res, st, "upstream", "the callee answered %d", st);
    return svc_res_printf(res, 200, "application/json", "{\"waited\":true}");
}

static svc_outcome wait_route(svc_req *req, svc_res *res) {
    const char *ms = svc_req_query(req, "ms");
    char *path = svc_arena_printf(svc_req_arena(req), "/peer/slow?ms=%s", ms ? ms : "100");
    svc_call_opts o = {.timeout_ms = 60000};
    svc_req_call(req, "composesvc", "GET", path, NULL, 0, &o);
    return svc_req_then(req, waited, NULL);
}

/* GET /no-wait?ms=N: starts a slow call and answers at once; its reply
 * comes after the request is gone (dropped and counted). */
static svc_outcome no_wait(svc_req *req, svc_res *res) {
    const char *ms = svc_req_query(req, "ms");
    char *path = svc_arena_printf(svc_req_arena(req), "/peer/slow?ms=%s", ms ? ms : "100");
    svc_req_call(req, "composesvc", "GET", path, NULL, 0, NULL);
    return svc_res_status(res, 202);
}

/* GET /forward: calls the echo with the caller's credentials. */
static svc_outcome forward(svc_req *req, svc_res *res) {
    svc_call_opts o = {.flags = SVC_CALL_FORWARD_AUTH};
    svc_req_call(req, "composesvc", "GET", "/peer/echo?n=5", NULL, 0, &o);
    svc_req_call(req, "composesvc", "GET", "/peer/echo?n=6", NULL, 0, NULL);
    return svc_req_then(req, answer_calls, NULL);
}

/* GET /slow-work?ms=N: blocking work of N ms on the thread pool (the sleep
 * is what is tested: work that outlasts the request's deadline), then 200. */
static void sleep_work(svc_req *req, void *ud) {
    (void)req;
    int64_t ms = *(int64_t *)ud;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static svc_outcome slept(svc_req *req, svc_res *res, void *ud) {
    (void)req;
    (void)ud;
    return svc_res_printf(res, 200, "application/json", "{\"slept\":true}");
}

static svc_outcome slow_work(svc_req *req, svc_res *res) {
    int64_t *ms = svc_arena_alloc(svc_req_arena(req), sizeof *ms);
    const char *q = svc_req_query(req, "ms");
    if (!ms || !q || svc_parse_i64(q, ms) != SVC_OK || *ms < 0 || *ms > 60000)
        return svc_res_error(res, 400, "bad_request", "ms must be 0-60000");
    return svc_req_offload(req, sleep_work, ms, slept);
}

/* GET /too-many: more calls than a step takes. */
static svc_outcome too_many(svc_req *req, svc_res *res) {
    int last = 0;
    for (int i = 0; i <= SVC_MAX_CALLS; i++) last = svc_req_call(req, "composesvc", "GET", "/peer/echo", NULL, 0, NULL);
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "last"), svc_jw_i64(w, last);
    svc_jw_obj_end(w);
    return SVC_DONE;
}

/* GET /then-publish: a call, then a continuation that publishes
 * composed.then and answers (the continuation works for the request's span:
 * test_tracing.py follows the trace through it). */
static svc_outcome published(svc_req *req, svc_res *res, void *ud) {
    (void)ud;
    int rc = svc_msg_publish(svc_req_app(req), "composed.then", "{}", 2);
    return svc_res_printf(res, 200, "application/json", "{\"call\":%d,\"published\":%s}", svc_call_status(req, 0),
                          rc == SVC_OK ? "true" : "false");
}

static svc_outcome then_publish(svc_req *req, svc_res *res) {
    (void)res;
    svc_req_call(req, "composesvc", "GET", "/peer/echo?n=7", NULL, 0, NULL);
    return svc_req_then(req, published, NULL);
}

int main(int argc, char **argv) {
    svc_app *app = svc_app_new("composesvc", argc, argv);
    svc_app_get(app, "/then-publish", then_publish, 0);
    svc_app_get(app, "/peer/echo", peer_echo, 0);
    svc_app_get(app, "/peer/slow", peer_slow, 0);
    svc_app_get(app, "/chain", chain_route, 0);
    svc_app_get(app, "/parallel", parallel, 0);
    svc_app_get(app, "/from-work", from_work, 0);
    svc_app_get(app, "/offloaded", offloaded, SVC_OFFLOAD);
    svc_app_get(app, "/wait", wait_route, 0);
    svc_app_get(app, "/no-wait", no_wait, 0);
    svc_app_get(app, "/forward", forward, 0);
    svc_app_get(app, "/too-many", too_many, 0);
    svc_app_get(app, "/slow-work", slow_work, 0);
    return svc_app_run(app);
}
