/*
 * gathersvc: the helper of tests/integration/test_msg_scatter.py. Exposes
 * svc_msg_request_all over HTTP, reporting each callback as it came:
 *
 *   GET /gather?subject=S&ms=N[&data=D]
 *     -> {"rc":0,"replies":[{"data":..,"at_ms":..,"instance":..}],
 *         "end":{"err":"ok","at_ms":..},"inside_call":false,"same_thread":true}
 *     ("rc" not 0: the call refused it, with no callback at all.)
 *   GET /startup
 *     -> what a gather started from on_start (before any loop existed) and
 *        svc_msg_run_on_loop saw: {"ran_on_loop":true,"replies":N,"end":"ok"}
 *
 * GATHERSVC_START_SUBJECT names the subject of the on_start gather (default
 * "$SRV.PING.gathersvc": this instance answers it itself).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "svckit.h"
#include "svckit/msg.h"

typedef struct gather_ctx {
    svc_res *res;
    svc_jw *w;
    uint64_t start_ns;
    int in_call;                     /* svc_msg_request_all has not returned yet */
    int inside_call;                 /* a callback ran while it had not */
    int other_thread;                /* a callback ran on another thread */
    pthread_t thread;
} gather_ctx;

static void gathered(int err, const svc_msg_reply *r, void *ud) {
    gather_ctx *c = ud;
    if (c->in_call) c->inside_call = 1;
    if (!pthread_equal(pthread_self(), c->thread)) c->other_thread = 1;
    double at = (double)(svc_now_ns() - c->start_ns) / 1e6;
    svc_jw *w = c->w;
    if (r) {
        const char *inst = r->header(r, "Svc-Instance");
        svc_jw_obj_begin(w);
        svc_jw_key(w, "data"), svc_jw_strn(w, r->data, r->len);
        svc_jw_key(w, "at_ms"), svc_jw_f64(w, at);
        svc_jw_key(w, "header"), svc_jw_str(w, inst);
        svc_jw_obj_end(w);
        return;
    }
    svc_jw_arr_end(w);
    svc_jw_key(w, "end");
    svc_jw_obj_begin(w);
    svc_jw_key(w, "err"), svc_jw_str(w, svc_status_str(err));
    svc_jw_key(w, "at_ms"), svc_jw_f64(w, at);
    svc_jw_obj_end(w);
    svc_jw_key(w, "rc"), svc_jw_i64(w, 0);
    svc_jw_key(w, "inside_call"), svc_jw_bool(w, c->inside_call);
    svc_jw_key(w, "same_thread"), svc_jw_bool(w, !c->other_thread);
    svc_jw_obj_end(w);
    svc_res_finish(c->res);
}

static svc_outcome gather(svc_req *req, svc_res *res) {
    const char *subject = svc_req_query(req, "subject");
    const char *ms = svc_req_query(req, "ms");
    const char *data = svc_req_query(req, "data");
    int64_t window = 0;
    if (ms && svc_parse_i64(ms, &window) != SVC_OK) return svc_res_error(res, 400, "bad_request", "ms");
    if (window < -1 || window > 1000000) return svc_res_error(res, 400, "bad_request", "ms");
    gather_ctx *c = svc_arena_alloc(svc_req_arena(req), sizeof *c);
    if (!c) return svc_res_error(res, 500, "internal", "out of memory");
    memset(c, 0, sizeof *c);
    c->res = res;
    c->thread = pthread_self();
    c->start_ns = svc_now_ns();
    c->w = svc_res_jw(res, 200);
    svc_jw_obj_begin(c->w);
    svc_jw_key(c->w, "replies");
    svc_jw_arr_begin(c->w);
    c->in_call = 1;
    int rc = svc_msg_request_all(svc_req_app(req), subject ? subject : "", data, data ? strlen(data) : 0,
                                 (int)window, gathered, c);
    c->in_call = 0;
    if (rc != SVC_OK) {
        svc_jw_arr_end(c->w);
        svc_jw_key(c->w, "rc"), svc_jw_i64(c->w, rc);
        svc_jw_key(c->w, "inside_call"), svc_jw_bool(c->w, c->inside_call);
        svc_jw_obj_end(c->w);
        return SVC_DONE;
    }
    return SVC_ASYNC;
}

/* ---- a gather started from on_start ------------------------------------------ */

static atomic_int ran_on_loop, start_replies, start_end = -1000;

static void start_gathered(int err, const svc_msg_reply *r, void *ud) {
    (void)ud;
    if (r) atomic_fetch_add(&start_replies, 1);
    else atomic_store(&start_end, err);
}

static void on_loop(uv_loop_t *loop, void *ud) {
    (void)ud;
    atomic_store(&ran_on_loop, loop != NULL);
}

static svc_outcome startup(svc_req *req, svc_res *res) {
    int end = atomic_load(&start_end);
    return svc_res_printf(res, 200, "application/json", "{\"ran_on_loop\":%s,\"replies\":%d,\"end\":\"%s\"}",
                          atomic_load(&ran_on_loop) ? "true" : "false", atomic_load(&start_replies),
                          end == -1000 ? "pending" : svc_status_str(end));
}

static int start(svc_app *app, void *ud) {
    (void)ud;
    if (strcmp(svc_app_config(app)->nats_url, "none") == 0) return SVC_OK;
    const char *subject = getenv("GATHERSVC_START_SUBJECT");
    if (svc_msg_run_on_loop(app, on_loop, NULL) != SVC_OK) return SVC_ERR;
    /* The window is long enough for the connection to come up first. */
    if (svc_msg_request_all(app, subject ? subject : "$SRV.PING.gathersvc", NULL, 0, 1000, start_gathered, NULL) !=
        SVC_OK)
        return SVC_ERR;
    return SVC_OK;
}

int main(int argc, char **argv) {
    svc_app *app = svc_app_new("gathersvc", argc, argv);
    svc_app_get(app, "/gather", gather, 0);
    svc_app_get(app, "/startup", startup, 0);
    svc_app_on_start(app, start, NULL);
    return svc_app_run(app);
}
