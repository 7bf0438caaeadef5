/*
 * msgsvc: a service for the messaging tests (tests/integration/test_msg_*.py).
 * Its routes answer the same way over HTTP and NATS, call other services
 * with svc_rpc_call, publish events, and count the events and JetStream
 * messages it handles. Not an example: it exists to be attacked.
 *
 * Environment (besides svckit's): MSGSVC_JS=1 declares stream ORDERS
 * (orders.>) and consumes it as durable "msgsvc", appending each handled
 * message's id to $DATA_DIR/processed.log; MSGSVC_ACK_WAIT_MS (2000) and
 * MSGSVC_STREAM_SLEEP_MS (0) tune that consumer; MSGSVC_FLOOD_SPIN_US (20)
 * is the CPU time each flood.> event takes on the loop. With MSGSVC_JS it
 * also declares stream PUBS (pubs.>), which POST /jsasync/start fills with
 * svc_js_publish_async from a thread of its own (see test_msg_js_async.py).
 * An event on relay.<x> is published again on relayed.<x>.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "svckit.h"
#include "svckit/msg.h"

static atomic_long events_seen, broadcasts_seen, flood_seen, slow_seen, stream_seen, outage_seen;
static char processed_path[4096];

static svc_outcome hello(svc_req *req, svc_res *res) {
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "hello"), svc_jw_str(w, svc_req_param(req, "name"));
    svc_jw_key(w, "q"), svc_jw_str(w, svc_req_query(req, "q"));
    svc_jw_key(w, "method"), svc_jw_str(w, svc_req_method(req));
    svc_jw_key(w, "route"), svc_jw_str(w, svc_req_route(req));
    svc_jw_key(w, "path"), svc_jw_str(w, svc_req_path(req));
    svc_jw_key(w, "cookie"), svc_jw_str(w, svc_req_cookie(req, "c"));
    svc_jw_obj_end(w);
    return SVC_DONE;
}

static svc_outcome echo(svc_req *req, svc_res *res) {
    json_t *body = svc_req_json(req, res);
    if (!body) return SVC_DONE;
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "echo"), svc_jw_value(w, body);
    svc_jw_obj_end(w);
    return SVC_DONE;
}

static svc_outcome raw(svc_req *req, svc_res *res) {
    size_t len;
    svc_req_body(req, &len);
    return svc_res_printf(res, 200, "application/json", "{\"bytes\":%zu}", len);
}

static svc_outcome private_route(svc_req *req, svc_res *res) {
    (void)req;
    return svc_res_printf(res, 200, "application/json", "{\"private\":true}");
}

/* Identity of whoever answered, for distribution tests (differs per instance). */
static svc_outcome whoami(svc_req *req, svc_res *res) {
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "instance"), svc_jw_str(w, svc_app_instance_id(svc_req_app(req)));
    svc_jw_key(w, "peer"), svc_jw_str(w, svc_req_peer(req));
    svc_jw_key(w, "request_id"), svc_jw_str(w, svc_req_id(req));
    svc_jw_key(w, "trace_id"), svc_jw_str(w, svc_req_trace_id(req));
    svc_jw_obj_end(w);
    return SVC_DONE;
}

static svc_outcome status_route(svc_req *req, svc_res *res) {
    int64_t code;
    if (svc_req_param_i64(req, "code", &code) != SVC_OK || code < 200 || code > 599)
        return svc_res_error(res, 400, "bad_request", "code must be 200-599");
    svc_res_header(res, "X-Test", "yes");
    return svc_res_printf(res, (int)code, "application/json", "{\"status\":%d}", (int)code);
}

static svc_outcome slow(svc_req *req, svc_res *res) {
    const char *ms = svc_req_query(req, "ms");
    int64_t n = 0;
    if (ms) svc_parse_i64(ms, &n);
    if (n < 0 || n > 30000) n = 0;
    usleep((useconds_t)n * 1000);
    return svc_res_printf(res, 200, "application/json", "{\"slept_ms\":%lld}", (long long)n);
}

/* GET /call/:service?path=/x&timeout=ms&instance=id: one svc_rpc_call, reported. */
typedef struct call_ctx {
    svc_res *res;
    uint64_t start;
} call_ctx;

static void call_done(int err, const svc_rpc_reply *r, void *ud) {
    call_ctx *c = ud;
    svc_jw *w = svc_res_jw(c->res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "err"), svc_jw_str(w, err == SVC_OK ? "ok" : svc_status_str(err));
    svc_jw_key(w, "code"), svc_jw_i64(w, err);
    svc_jw_key(w, "ms"), svc_jw_f64(w, (double)(svc_now_ns() - c->start) / 1e6);
    if (r) {
        svc_jw_key(w, "status"), svc_jw_i64(w, r->status);
        svc_jw_key(w, "body"), svc_jw_strn(w, r->body, r->body_len);
        svc_jw_key(w, "instance"), svc_jw_str(w, r->instance);
        svc_jw_key(w, "content_type"), svc_jw_str(w, r->header(r, "content-type"));
    }
    svc_jw_obj_end(w);
    svc_res_finish(c->res);
}

static svc_outcome call(svc_req *req, svc_res *res) {
    const char *path = svc_req_query(req, "path");
    const char *t = svc_req_query(req, "timeout");
    const char *auth = svc_req_query(req, "auth");
    int64_t timeout = 0;
    if (t) svc_parse_i64(t, &timeout);
    call_ctx *c = svc_arena_alloc(svc_req_arena(req), sizeof *c);
    c->res = res;
    c->start = svc_now_ns();
    const char *hdrs[3] = {NULL, NULL, NULL};
    int nh = 0;
    if (auth) hdrs[nh++] = svc_arena_printf(svc_req_arena(req), "Authorization: Bearer %s", auth);
    const char *ct = svc_req_header(req, "content-type");
    if (ct) hdrs[nh++] = svc_arena_printf(svc_req_arena(req), "Content-Type: %s", ct);
    svc_rpc_opts o = {.timeout_ms = (int)timeout, .instance = svc_req_query(req, "instance"), .headers = hdrs};
    const char *method = svc_req_query(req, "method");
    size_t blen;
    const char *body = svc_req_body(req, &blen);
    int rc = svc_rpc_call(svc_req_app(req), req, svc_req_param(req, "service"), method ? method : "GET",
                          path ? path : "/", body, blen, &o, call_done, c);
    if (rc != SVC_OK) return svc_res_printf(res, 200, "application/json", "{\"err\":\"%s\",\"code\":%d,\"sync\":true}",
                                            svc_status_str(rc), rc);
    return SVC_ASYNC;
}

/* POST /publish?subject=s&n=N: N publishes, outcome counts. */
static svc_outcome publish(svc_req *req, svc_res *res) {
    const char *subject = svc_req_query(req, "subject");
    const char *ns = svc_req_query(req, "n");
    int64_t n = 1;
    if (ns) svc_parse_i64(ns, &n);
    size_t len;
    const char *body = svc_req_body(req, &len);
    long ok = 0, eagain = 0, closed = 0, other = 0;
    for (int64_t i = 0; i < n; i++) {
        int rc = svc_msg_publish(svc_req_app(req), subject ? subject : "", body, len);
        if (rc == SVC_OK) ok++;
        else if (rc == SVC_EAGAIN) eagain++;
        else if (rc == SVC_ECLOSED) closed++;
        else other++;
        if (rc == SVC_EINVAL) return svc_res_error(res, 400, "bad_subject", "bad subject");
    }
    return svc_res_printf(res, 200, "application/json", "{\"ok\":%ld,\"eagain\":%ld,\"closed\":%ld,\"other\":%ld}",
                          ok, eagain, closed, other);
}

/* POST /jspublish?subject=s&id=x (offloaded: waits for the stored ack). */
static svc_outcome jspublish(svc_req *req, svc_res *res) {
    size_t len;
    const char *body = svc_req_body(req, &len);
    int rc = svc_js_publish(svc_req_app(req), svc_req_query(req, "subject"), body, len, svc_req_query(req, "id"),
                            2000);
    return svc_res_printf(res, rc == SVC_OK ? 200 : 503, "application/json", "{\"rc\":\"%s\"}",
                          rc == SVC_OK ? "ok" : svc_status_str(rc));
}

static svc_outcome counts(svc_req *req, svc_res *res) {
    (void)req;
    return svc_res_printf(res, 200, "application/json",
                          "{\"events\":%ld,\"broadcast\":%ld,\"flood\":%ld,\"slow\":%ld,\"outage\":%ld,"
                          "\"stream\":%ld,\"connected\":%d}",
                          atomic_load(&events_seen), atomic_load(&broadcasts_seen), atomic_load(&flood_seen),
                          atomic_load(&slow_seen), atomic_load(&outage_seen),
                          atomic_load(&stream_seen), svc_msg_connected(svc_req_app(req)));
}

static int on_event(svc_app *app, const svc_event *ev, void *ud) {
    (void)app;
    atomic_fetch_add((atomic_long *)ud, 1);
    (void)ev;
    return SVC_OK;
}

/* relay.<x>: published again as relayed.<x> (the trace context of a
 * consumer's own publishes, test_tracing.py). */
static int on_relay(svc_app *app, const svc_event *ev, void *ud) {
    (void)ud;
    char subject[256];
    snprintf(subject, sizeof subject, "relayed.%s", ev->subject + strlen("relay."));
    return svc_msg_publish(app, subject, ev->data, ev->len);
}

/* flood.>: on the loop, a little CPU each (a spin, not a sleep, to be exact). */
static int on_flood(svc_app *app, const svc_event *ev, void *ud) {
    (void)app;
    (void)ev;
    (void)ud;
    const char *us = getenv("MSGSVC_FLOOD_SPIN_US");
    uint64_t until = svc_now_ns() + (uint64_t)(us ? atoi(us) : 20) * 1000;
    while (svc_now_ns() < until) {
    }
    atomic_fetch_add(&flood_seen, 1);
    return SVC_OK;
}

/* slowev.>: offloaded, 5 ms each. */
static int on_slowev(svc_app *app, const svc_event *ev, void *ud) {
    (void)app;
    (void)ev;
    (void)ud;
    usleep(5000);
    atomic_fetch_add(&slow_seen, 1);
    return SVC_OK;
}

static int on_order(svc_app *app, const svc_event *ev, void *ud) {
    (void)app;
    (void)ud;
    const char *sleep_ms = getenv("MSGSVC_STREAM_SLEEP_MS");
    if (sleep_ms) usleep((useconds_t)atoi(sleep_ms) * 1000);
    /* MSGSVC_STREAM_GATE: a file; handlers wait while it exists (the test
     * holds the consumer's messages in flight, then lets them go). */
    const char *gate = getenv("MSGSVC_STREAM_GATE");
    while (gate && access(gate, F_OK) == 0) usleep(5000);
    char line[300];
    int n = snprintf(line, sizeof line, "%s %llu\n", ev->msg_id ? ev->msg_id : "-", (unsigned long long)ev->delivered);
    int fd = open(processed_path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) return SVC_EAGAIN;
    ssize_t w = write(fd, line, (size_t)n);
    close(fd);
    if (w != n) return SVC_EAGAIN;
    atomic_fetch_add(&stream_seen, 1);
    return SVC_OK;
}

/* ---- svc_js_publish_async from a thread: pubs.<n> with Nats-Msg-Id p-<n>,
 * without end until stopped; each outcome is a line "<n> <status code> <seq> <duplicate>" of
 * $DATA_DIR/jsasync.log, written by the callback (on a loop). */
static pthread_mutex_t ja_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ja_cond = PTHREAD_COND_INITIALIZER;
static struct {
    pthread_t thread;
    int running, stop;
    long sent, acked, failed, eagain, refused; /* refused: returned an error, no callback */
    FILE *log;
    svc_app *app;
} ja;

static void ja_acked(int err, const svc_js_ack *ack, void *ud) {
    long n = (long)(intptr_t)ud;
    pthread_mutex_lock(&ja_lock);
    if (err == SVC_OK) ja.acked++;
    else ja.failed++;
    fprintf(ja.log, "%ld %d %llu %d\n", n, err, ack ? (unsigned long long)ack->seq : 0ULL,
            ack ? ack->duplicate : 0);
    pthread_cond_broadcast(&ja_cond);
    pthread_mutex_unlock(&ja_lock);
}

static void *ja_main(void *arg) {
    (void)arg;
    long seen_failed = 0;
    for (long n = 0;; n++) {
        pthread_mutex_lock(&ja_lock);
        int stop = ja.stop;
        long failed = ja.failed;
        pthread_mutex_unlock(&ja_lock);
        if (stop) break;
        /* Pacing while publishes fail (the server is down), not synchronisation. */
        if (failed > seen_failed) usleep(1000);
        seen_failed = failed;
        char subject[64], id[64], body[32];
        snprintf(subject, sizeof subject, "pubs.%ld", n);
        snprintf(id, sizeof id, "p-%ld", n);
        int len = snprintf(body, sizeof body, "%ld", n);
        int rc = svc_js_publish_async(ja.app, subject, body, (size_t)len, id, 2000, ja_acked, (void *)(intptr_t)n);
        pthread_mutex_lock(&ja_lock);
        if (rc == SVC_OK) {
            ja.sent++;
        } else if (rc == SVC_EAGAIN) {
            /* SVC_JS_MAX_ASYNC in flight: wait for a callback, then again. */
            ja.eagain++;
            n--;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&ja_cond, &ja_lock, &ts);
        } else {
            ja.refused++;
            fprintf(ja.log, "%ld refused%d 0 0\n", n, rc);
        }
        pthread_mutex_unlock(&ja_lock);
    }
    return NULL;
}

static svc_outcome jsasync_start(svc_req *req, svc_res *res) {
    pthread_mutex_lock(&ja_lock);
    int ok = !ja.running;
    if (ok) {
        char path[4200];
        const char *dir = getenv("DATA_DIR");
        snprintf(path, sizeof path, "%s/jsasync.log", dir && *dir ? dir : ".");
        ja.log = fopen(path, "w");
        ja.app = svc_req_app(req);
        ja.running = 1;
        ok = ja.log && pthread_create(&ja.thread, NULL, ja_main, NULL) == 0;
    }
    pthread_mutex_unlock(&ja_lock);
    if (!ok) return svc_res_error(res, 409, "conflict", "already running or cannot start");
    return svc_res_printf(res, 200, "application/json", "{\"started\":true}");
}

static svc_outcome jsasync_state(svc_req *req, svc_res *res) {
    (void)req;
    pthread_mutex_lock(&ja_lock);
    svc_outcome o = svc_res_printf(res, 200, "application/json",
                                   "{\"sent\":%ld,\"acked\":%ld,\"failed\":%ld,\"eagain\":%ld,\"refused\":%ld}",
                                   ja.sent, ja.acked, ja.failed, ja.eagain, ja.refused);
    pthread_mutex_unlock(&ja_lock);
    return o;
}

/* Stops publishing, waits for every callback (each publish reports once). */
static svc_outcome jsasync_stop(svc_req *req, svc_res *res) {
    pthread_mutex_lock(&ja_lock);
    int running = ja.running;
    ja.stop = 1;
    pthread_mutex_unlock(&ja_lock);
    if (!running) return svc_res_error(res, 409, "conflict", "not running");
    pthread_join(ja.thread, NULL);
    pthread_mutex_lock(&ja_lock);
    while (ja.acked + ja.failed < ja.sent) pthread_cond_wait(&ja_cond, &ja_lock);
    fflush(ja.log);
    pthread_mutex_unlock(&ja_lock);
    return jsasync_state(req, res);
}

/* GET /jsasync/refused: what svc_js_publish_async answers bad arguments
 * with (each at once, no callback). */
static svc_outcome jsasync_refused(svc_req *req, svc_res *res) {
    svc_app *app = svc_req_app(req);
    static char big[SVC_MSG_MAX_PAYLOAD + 1];
    int no_cb = svc_js_publish_async(app, "pubs.x", "x", 1, "i", 0, NULL, NULL);
    int wildcard = svc_js_publish_async(app, "pubs.*", "x", 1, "i", 0, ja_acked, NULL);
    int empty = svc_js_publish_async(app, "", "x", 1, "i", 0, ja_acked, NULL);
    int bad_id = svc_js_publish_async(app, "pubs.x", "x", 1, "a\x01b", 0, ja_acked, NULL);
    int too_big = svc_js_publish_async(app, "pubs.x", big, sizeof big, "i", 0, ja_acked, NULL);
    return svc_res_printf(res, 200, "application/json",
                          "{\"no_cb\":%d,\"wildcard\":%d,\"empty\":%d,\"bad_id\":%d,\"too_big\":%d}", no_cb,
                          wildcard, empty, bad_id, too_big);
}

/* GET /jsstream/refused: what svc_js_stream_ensure answers duplicate
 * windows out of range with. */
static svc_outcome jsstream_refused(svc_req *req, svc_res *res) {
    svc_app *app = svc_req_app(req);
    const char *subjects[] = {"refused.>", NULL};
    int negative = svc_js_stream_ensure(app, "REFUSED", subjects, -1);
    int too_long = svc_js_stream_ensure(app, "REFUSED", subjects, SVC_JS_MAX_DUPLICATE_WINDOW_MS + 1);
    return svc_res_printf(res, 200, "application/json", "{\"negative\":%d,\"too_long\":%d}", negative, too_long);
}

static int start(svc_app *app, void *ud) {
    (void)ud;
    if (!getenv("MSGSVC_JS")) return SVC_OK;
    const char *subjects[] = {"orders.>", NULL};
    int rc = svc_js_stream_ensure(app, "ORDERS", subjects, 120000);
    if (rc != SVC_OK) svc_warn("stream ORDERS not declared yet: %s", svc_status_str(rc));
    const char *pubs[] = {"pubs.>", NULL};
    rc = svc_js_stream_ensure(app, "PUBS", pubs, 120000);
    if (rc != SVC_OK) svc_warn("stream PUBS not declared yet: %s", svc_status_str(rc));
    return SVC_OK;
}

int main(int argc, char **argv) {
    svc_app *app = svc_app_new("msgsvc", argc, argv);
    const char *dir = getenv("DATA_DIR");
    snprintf(processed_path, sizeof processed_path, "%s/processed.log", dir && *dir ? dir : ".");
    svc_app_get(app, "/hello/:name", hello, 0);
    svc_app_post(app, "/echo", echo, 0);
    svc_app_post(app, "/raw", raw, 0);
    svc_app_get(app, "/private", private_route, SVC_AUTH_USER);
    svc_app_get(app, "/whoami", whoami, 0);
    svc_app_get(app, "/status/:code", status_route, 0);
    svc_app_get(app, "/slow", slow, SVC_OFFLOAD);
    svc_app_get(app, "/call/:service", call, 0);
    svc_app_post(app, "/call/:service", call, 0);
    svc_app_post(app, "/publish", publish, 0);
    svc_app_post(app, "/jspublish", jspublish, SVC_OFFLOAD);
    svc_app_get(app, "/counts", counts, 0);
    svc_app_post(app, "/jsasync/start", jsasync_start, 0);
    svc_app_get(app, "/jsasync", jsasync_state, 0);
    svc_app_get(app, "/jsasync/refused", jsasync_refused, 0);
    svc_app_get(app, "/jsstream/refused", jsstream_refused, 0);
    svc_app_post(app, "/jsasync/stop", jsasync_stop, SVC_OFFLOAD);
    svc_app_get(app, "/files/*rest", hello, 0);
    svc_app_on_event(app, "ev.>", NULL, on_event, 0, &events_seen);
    svc_app_on_event(app, "bc.>", "", on_event, 0, &broadcasts_seen);
    svc_app_on_event(app, "out.>", NULL, on_event, 0, &outage_seen);
    svc_app_on_event(app, "flood.>", NULL, on_flood, 0, NULL);
    svc_app_on_event(app, "slowev.>", NULL, on_slowev, SVC_OFFLOAD, NULL);
    svc_app_on_event(app, "relay.>", NULL, on_relay, 0, NULL);
    if (getenv("MSGSVC_JS")) {
        const char *aw = getenv("MSGSVC_ACK_WAIT_MS");
        svc_app_on_stream(app, "ORDERS", "orders.>", "msgsvc", aw ? atoi(aw) : 2000, on_order, SVC_OFFLOAD,
                          NULL);
    }
    svc_app_on_start(app, start, NULL);
    return svc_app_run(app);
}
