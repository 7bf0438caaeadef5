/*
 * testsvc: a service whose routes exercise the svckit core for the integration
 * tests (tests/integration/test_http_*.py). Not an example: its routes exist to
 * be attacked.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "svckit.h"

/* POST /echo: the JSON body back, wrapped. */
static svc_outcome echo(svc_req *req, svc_res *res) {
    json_t *body = svc_req_json(req, res);
    if (!body) return SVC_DONE;
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "echo");
    svc_jw_value(w, body);
    svc_jw_obj_end(w);
    return SVC_DONE;
}

/* POST /raw: byte count of the body, whatever it is. */
static svc_outcome raw(svc_req *req, svc_res *res) {
    size_t len;
    svc_req_body(req, &len);
    return svc_res_printf(res, 200, "application/json", "{\"bytes\":%zu}", len);
}

/* GET /items/:id and friends: which route matched, with which parameters. */
static svc_outcome show_route(svc_req *req, svc_res *res) {
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "route"), svc_jw_str(w, svc_req_route(req));
    svc_jw_key(w, "path"), svc_jw_str(w, svc_req_path(req));
    svc_jw_key(w, "id"), svc_jw_str(w, svc_req_param(req, "id"));
    svc_jw_key(w, "rest"), svc_jw_str(w, svc_req_param(req, "rest"));
    svc_jw_key(w, "q"), svc_jw_str(w, svc_req_query(req, "q"));
    svc_jw_key(w, "cookie"), svc_jw_str(w, svc_req_cookie(req, "token"));
    svc_jw_key(w, "agent"), svc_jw_str(w, svc_req_header(req, "user-agent"));
    svc_jw_key(w, "request_id"), svc_jw_str(w, svc_req_id(req));
    svc_jw_key(w, "trace_id"), svc_jw_str(w, svc_req_trace_id(req));
    svc_jw_obj_end(w);
    return SVC_DONE;
}

static svc_outcome item_put(svc_req *req, svc_res *res) { return show_route(req, res); }

/* GET /slow?ms=N: blocks a thread-pool thread, never the loop. */
static svc_outcome slow(svc_req *req, svc_res *res) {
    const char *ms = svc_req_query(req, "ms");
    int64_t n = 0;
    if (ms) svc_parse_i64(ms, &n);
    if (n < 0 || n > 30000) n = 0;
    usleep((useconds_t)n * 1000);
    return svc_res_printf(res, 200, "application/json", "{\"slept_ms\":%lld}", (long long)n);
}

/* GET /async?ms=N: finishes later from a loop timer (SVC_ASYNC). */
typedef struct later {
    uv_timer_t timer;
    svc_res *res;
} later;

static void later_closed(uv_handle_t *h) { free(h->data); }

static void later_fire(uv_timer_t *t) {
    later *l = t->data;
    svc_res_printf(l->res, 200, "application/json", "{\"async\":true}");
    svc_debug("async: the handler answers now");
    svc_res_finish(l->res);
    uv_close((uv_handle_t *)&l->timer, later_closed);
}

static svc_outcome async_route(svc_req *req, svc_res *res) {
    const char *ms = svc_req_query(req, "ms");
    int64_t n = 10;
    if (ms) svc_parse_i64(ms, &n);
    if (n < 0 || n > 30000) n = 10;
    later *l = calloc(1, sizeof *l);
    if (!l) return svc_res_error(res, 503, "unavailable", "out of memory");
    l->res = res;
    uv_timer_init(svc_req_loop(req), &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, later_fire, (uint64_t)n, 0);
    return SVC_ASYNC;
}

/* GET /stream?n=N: N chunks, one per millisecond, then the end. */
typedef struct streamer {
    uv_timer_t timer;
    svc_res *res;
    int left, i;
} streamer;

static void stream_tick(uv_timer_t *t) {
    streamer *s = t->data;
    char line[64];
    int n = snprintf(line, sizeof line, "{\"chunk\":%d}\n", s->i++);
    if (svc_res_stream_write(s->res, line, (size_t)n) != SVC_OK || --s->left <= 0) {
        svc_res_stream_end(s->res);
        uv_timer_stop(&s->timer);
        uv_close((uv_handle_t *)&s->timer, later_closed);
    }
}

static svc_outcome stream(svc_req *req, svc_res *res) {
    const char *q = svc_req_query(req, "n");
    int64_t n = 5;
    if (q) svc_parse_i64(q, &n);
    if (n < 1 || n > 1000) n = 5;
    streamer *s = calloc(1, sizeof *s);
    if (!s) return svc_res_error(res, 503, "unavailable", "out of memory");
    s->res = res;
    s->left = (int)n;
    svc_res_stream_start(res, 200, "application/x-ndjson");
    uv_timer_init(svc_req_loop(req), &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, stream_tick, 1, 1);
    return SVC_ASYNC;
}

/* GET /stream-now: a whole stream, ended before the handler returns
 * SVC_ASYNC (as when every chunk is at hand). */
static svc_outcome stream_now(svc_req *req, svc_res *res) {
    (void)req;
    svc_res_stream_start(res, 200, "text/plain");
    svc_res_stream_write(res, "one\n", 4);
    svc_res_stream_write(res, "two\n", 4);
    svc_res_stream_end(res);
    return SVC_ASYNC;
}

/* GET /finish-now: an "async" handler whose completion fires at once. */
static svc_outcome finish_now(svc_req *req, svc_res *res) {
    (void)req;
    svc_res_printf(res, 200, "application/json", "{\"now\":true}");
    svc_res_finish(res);
    return SVC_ASYNC;
}

/* GET /big?kb=N: a large body. */
static svc_outcome big(svc_req *req, svc_res *res) {
    const char *q = svc_req_query(req, "kb");
    int64_t kb = 512;
    if (q) svc_parse_i64(q, &kb);
    if (kb < 1 || kb > 16384) kb = 512;
    size_t n = (size_t)kb * 1024;
    char *p = svc_arena_alloc(svc_req_arena(req), n);
    if (!p) return svc_res_error(res, 503, "unavailable", "out of memory");
    memset(p, 'x', n);
    return svc_res_body(res, 200, "text/plain", p, n);
}

/* GET /fds?ms=N: opens descriptors until the process has none left, holds
 * them for N ms (from a loop timer), then closes them: the service out of
 * descriptors, as a flood of connections or a leak would leave it. */
typedef struct fd_hold {
    uv_timer_t timer;
    int n;
    int fds[];
} fd_hold;

static void fds_release(uv_timer_t *t) {
    fd_hold *h = t->data;
    for (int i = 0; i < h->n; i++) close(h->fds[i]);
    h->n = 0;
    uv_close((uv_handle_t *)&h->timer, later_closed);
}

static svc_outcome fds(svc_req *req, svc_res *res) {
    const char *q = svc_req_query(req, "ms");
    int64_t ms = 1000;
    if (q) svc_parse_i64(q, &ms);
    if (ms < 1 || ms > 30000) ms = 1000;
    enum { MAX_HELD = 1 << 16 };
    fd_hold *h = malloc(sizeof *h + MAX_HELD * sizeof(int));
    if (!h) return svc_res_error(res, 503, "unavailable", "out of memory");
    h->n = 0;
    while (h->n < MAX_HELD) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) break;
        h->fds[h->n++] = fd;
    }
    uv_timer_init(svc_req_loop(req), &h->timer);
    h->timer.data = h;
    uv_timer_start(&h->timer, fds_release, (uint64_t)ms, 0);
    /* The response needs no descriptor: the connection has its own. */
    return svc_res_printf(res, 200, "application/json", "{\"held\":%d}", h->n);
}

/* GET /forgot: a handler bug, answered as a 500. */
static svc_outcome forgot(svc_req *req, svc_res *res) {
    (void)req;
    (void)res;
    return SVC_DONE;
}

/* GET /contract/:how: handlers that break their contract, each answered
 * 500 with one log line and a count: an outcome that is none ("invalid"),
 * SVC_NEXT from a handler ("next"), two answers ("twice"), an answer with
 * an invalid status ("status"), SVC_ASYNC from the thread pool
 * ("/contract-offload/async"). */
static svc_outcome contract(svc_req *req, svc_res *res) {
    const char *how = svc_req_param(req, "how");
    if (strcmp(how, "invalid") == 0) return (svc_outcome)SVC_ENOMEM;
    if (strcmp(how, "next") == 0) return SVC_NEXT;
    if (strcmp(how, "twice") == 0) {
        svc_res_status(res, 204);
        return svc_res_error(res, 404, "not_found", "second answer");
    }
    if (strcmp(how, "status") == 0) return svc_res_status(res, 42);
    if (strcmp(how, "async") == 0) return SVC_ASYNC;
    return svc_res_status(res, 204);
}

/* GET /log?msg=...: logs msg from the handler, on the loop or (/log-offload)
 * on the thread pool, so tests see what a handler's line carries. */
static svc_outcome log_route(svc_req *req, svc_res *res) {
    const char *msg = svc_req_query(req, "msg");
    svc_warn("handler says: %s", msg ? msg : "");
    return svc_res_printf(res, 200, "application/json", "{\"trace_id\":\"%s\"}", svc_req_trace_id(req));
}

/* A readiness check that files can toggle: ready unless $TESTSVC_NOT_READY exists. */
static int ready_file(void *ud, char *reason, size_t len) {
    const char *f = ud;
    if (f && access(f, F_OK) == 0) {
        snprintf(reason, len, "marker file %s exists", f);
        return SVC_ERR;
    }
    return SVC_OK;
}

static svc_outcome then_answer(svc_req *req, svc_res *res, void *ud) { return svc_res_status(res, 204); }

/* A hook that breaks its contract when X-Hook-Bug names how: "answer-next"
 * (answers, then says SVC_NEXT), "done-empty" (SVC_DONE without an answer),
 * "invalid" (no outcome at all), "async" (SVC_ASYNC from a head hook),
 * "then" (a continuation, which only handlers may set). */
static int hook_bug(const char *kind, svc_req *req, svc_res *res, svc_outcome *out) {
    const char *b = svc_req_header(req, "x-hook-bug");
    if (!b || strncmp(b, kind, strlen(kind)) != 0 || b[strlen(kind)] != ':') return 0;
    b += strlen(kind) + 1;
    if (strcmp(b, "answer-next") == 0) {
        svc_res_status(res, 204);
        *out = SVC_NEXT;
    } else if (strcmp(b, "done-empty") == 0) {
        *out = SVC_DONE;
    } else if (strcmp(b, "async") == 0) {
        *out = SVC_ASYNC;
    } else if (strcmp(b, "then") == 0) {
        *out = svc_req_then(req, then_answer, NULL);
    } else {
        *out = (svc_outcome)0;
    }
    return 1;
}

/* A typed per-request value, set by the before-hook from X-Value (a
 * malloc'd copy, freed with the request), read by GET /value. */
static const svc_key value_key = {"testsvc.value"};

/* GET /value: the hook's value, and whether the request has claims (never:
 * the route is public, and no hook can set them). */
static svc_outcome value_route(svc_req *req, svc_res *res) {
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "value"), svc_jw_str(w, svc_req_get(req, &value_key));
    svc_jw_key(w, "claims"), svc_jw_bool(w, svc_req_claims(req) != NULL);
    svc_jw_key(w, "route_data"), svc_jw_str(w, svc_req_route_data(req));
    svc_jw_obj_end(w);
    return SVC_DONE;
}

/* Middleware: adds X-Middleware to every response; rejects X-Block: yes. */
static svc_outcome before(svc_req *req, svc_res *res, void *ud) {
    (void)ud;
    svc_outcome bug;
    if (hook_bug("before", req, res, &bug)) return bug;
    const char *v = svc_req_header(req, "x-value");
    if (v) {
        svc_req_set(req, &value_key, strdup("replaced"), free);
        svc_req_set(req, &value_key, strdup(v), free);
    }
    const char *b = svc_req_header(req, "x-block");
    if (b && strcmp(b, "yes") == 0) return svc_res_error(res, 403, "forbidden", "blocked by middleware");
    return SVC_NEXT;
}

/* Head hook: refuses X-Deny: head before the body is read. */
static svc_outcome head_check(svc_req *req, svc_res *res, void *ud) {
    (void)ud;
    svc_outcome bug;
    if (hook_bug("head", req, res, &bug)) return bug;
    const char *d = svc_req_header(req, "x-deny");
    if (d && strcmp(d, "head") == 0)
        return svc_res_error(res, 403, "forbidden", "refused at the head of %s", svc_req_route(req));
    return SVC_NEXT;
}

static void after(svc_req *req, svc_res *res, void *ud) {
    (void)req;
    (void)ud;
    svc_res_header(res, "X-Middleware", "after");
}

/* TESTSVC_BAD_SCHEMA: a declaration the start must refuse (exit 2). */
static const svc_schema any_text = {.type = SVC_STRING};
static const svc_param not_in_pattern[] = {{"nope", &any_text, 1, NULL}, {0}};
static const svc_route_spec bad_spec = {.path = not_in_pattern};

int main(int argc, char **argv) {
    svc_app *app = svc_app_new("testsvc", argc, argv);
    svc_app_env_declare(app, "TESTSVC_NOT_READY", NULL, "readiness fails while this file exists");
    svc_app_use(app, before, after, NULL);
    svc_app_use_head(app, head_check, NULL);
    svc_app_post(app, "/echo", echo, 0);
    svc_app_post(app, "/raw", raw, 0);
    svc_app_get(app, "/items/:id", show_route, 0);
    svc_app_put(app, "/items/:id", item_put, 0);
    svc_app_get(app, "/items/special", show_route, 0);
    svc_app_get(app, "/files/*rest", show_route, 0);
    svc_app_get(app, "/slow", slow, SVC_OFFLOAD);
    svc_app_get(app, "/async", async_route, 0);
    svc_app_get(app, "/stream", stream, 0);
    svc_app_get(app, "/stream-now", stream_now, 0);
    svc_app_get(app, "/finish-now", finish_now, 0);
    svc_app_get(app, "/big", big, 0);
    svc_app_get(app, "/forgot", forgot, 0);
    svc_app_get(app, "/contract/:how", contract, 0);
    svc_app_route_data(app, "GET", "/value", value_route, 0, "the /value route's data");
    svc_app_get(app, "/contract-offload/:how", contract, SVC_OFFLOAD);
    svc_app_get(app, "/log", log_route, 0);
    svc_app_get(app, "/log-offload", log_route, SVC_OFFLOAD);
    svc_app_get(app, "/fds", fds, 0);
    /* With a secret to verify tokens with (without, the service would wait
     * for the JWKS of an auth service to be ready). */
    if (getenv("JWT_SECRET")) svc_app_post(app, "/private", raw, SVC_AUTH_USER);
    if (getenv("TESTSVC_BAD_SCHEMA")) svc_app_route_spec(app, "GET", "/items/:id", &bad_spec);
    svc_app_ready_check(app, "marker", ready_file, getenv("TESTSVC_NOT_READY"));
    return svc_app_run(app);
}
