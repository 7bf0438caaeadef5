/*
 * Fuzzes the HTTP/1.1 connection state machine: the real conn.c, dispatch.c,
 * request.c and response.c code, from bytes read off a socket to bytes written
 * back, with the real parser settings, header scanner, pipelining, limits,
 * timeouts and drain.
 *
 * Design (the smallest that runs the real code): one svc_app with a few
 * trivial routes, one svc_worker whose loop this thread runs, and for every
 * input a socketpair. One end is handed to the server with svc__conn_open_fd
 * (the same entry the accept-queue drain uses); the harness writes the input
 * into the other end in up to three pieces, running the loop between them so
 * that each piece is a separate read (partial requests, split headers, split
 * chunks), then half-closes and runs the loop until the connection is gone,
 * reading the responses as it goes so the server never blocks on a full
 * socket buffer. No listener, no threads, no sleeping.
 *
 * Input layout: byte 0 is a set of flags, bytes 1 and 2 pick the split
 * offsets (as fractions of the rest), the rest is what the client sends.
 *   flag 1: fire the timeouts (as the 100 ms tick would once they expire)
 *           before the half-close: 408s and idle closes;
 *   flag 2: start a drain (as SIGTERM does after DRAIN_DELAY) after the first
 *           piece;
 *   flag 4: force-close every connection (the SHUTDOWN_TIMEOUT path) after
 *           the second piece.
 *
 * Besides the sanitizers it checks: the connection always ends (no hang, no
 * leaked connection), and whatever the server sent starts with a status line.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/internal.h"
#include "http/internal.h"

#include "fuzz_util.h"

/* Loop turns allowed for one input before we call it a hang. */
#define MAX_TURNS 100000
/* Output kept for the status-line check. */
#define KEEP_OUTPUT 16

static svc_app *app;
static svc_worker worker;
static http_worker *hw;     /* the HTTP transport on worker */

static svc_outcome item(svc_req *req, svc_res *res) {
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "id");
    svc_jw_str(w, svc_req_param(req, "id"));
    svc_jw_key(w, "q");
    svc_jw_str(w, svc_req_query(req, "q"));
    svc_jw_key(w, "c");
    svc_jw_str(w, svc_req_cookie(req, "c"));
    svc_jw_obj_end(w);
    return SVC_DONE;
}

static svc_outcome echo(svc_req *req, svc_res *res) {
    json_t *v = svc_req_json(req, res);
    if (!v) return SVC_DONE;
    return svc_res_json(res, 201, v);
}

/* A stream finished before the handler returns SVC_ASYNC. */
static svc_outcome stream(svc_req *req, svc_res *res) {
    (void)req;
    svc_res_stream_start(res, 200, "text/plain");
    svc_res_stream_write(res, "a", 1);
    svc_res_stream_write(res, "bc", 2);
    svc_res_stream_end(res);
    return SVC_ASYNC;
}

static svc_outcome nothing(svc_req *req, svc_res *res) {
    (void)req;
    (void)res;
    return SVC_DONE; /* a handler bug: 500 */
}

static svc_outcome block(svc_req *req, svc_res *res, void *ud) {
    (void)ud;
    if (svc_req_header(req, "x-block")) return svc_res_error(res, 403, "forbidden", "blocked");
    return SVC_NEXT;
}

static void setup(void) {
    /* Access-log lines would drown libFuzzer's output. */
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    signal(SIGPIPE, SIG_IGN);
    /* The configuration is the environment's: pin what could make it fail. */
    static const char *const unset[] = {"PORT", "HOST", "WORKERS", "NATS_URL", "LOG_FORMAT", "JWT_SECRET",
                                        "SECRET_KEY", "AUTH_JWKS_URL", "SHUTDOWN_TIMEOUT", "DRAIN_DELAY",
                                        "HTTP_HEADER_TIMEOUT", "HTTP_BODY_TIMEOUT", "HTTP_IDLE_TIMEOUT",
                                        "HTTP_MAX_CONNECTIONS", "HTTP_COMPRESS"};
    for (size_t i = 0; i < sizeof unset / sizeof unset[0]; i++) unsetenv(unset[i]);
    /* Small limits reach every limit branch with small inputs. */
    setenv("HTTP_MAX_HEADER_BYTES", "1024", 1);
    setenv("HTTP_MAX_HEADERS", "8", 1);
    setenv("HTTP_MAX_BODY_BYTES", "256", 1);
    setenv("LOG_LEVEL", "error", 1);
    app = svc_app_new("fuzz", 0, NULL);
    char err[256];
    CHECK(svc__config_load(app, err, sizeof err) == SVC_OK);
    svc_log_setup(app->name, app->cfg.log_level, 1);
    svc__metrics_setup(app);
    svc__builtin_routes(app);
    svc_app_use(app, block, NULL, NULL);
    svc_app_get(app, "/items/:id", item, 0);
    svc_app_put(app, "/items/:id", item, 0);
    svc_app_post(app, "/echo", echo, 0);
    svc_app_get(app, "/stream", stream, 0);
    svc_app_get(app, "/nothing", nothing, 0);
    worker.app = app;
    /* The app's HTTP transport, on this one worker, without a listener. */
    http_state *hs = svc__app_transport_state(app, &svc__http_transport);
    CHECK(hs != NULL);
    CHECK((hs->workers = calloc(1, sizeof *hs->workers)) != NULL);
    hs->nworkers = 1;
    hs->accept_cap = INT_MAX;
    svc__http_metrics_setup(hs);
    hw = &hs->workers[0];
    hw->hs = hs;
    hw->w = &worker;
    hw->listen_fd = -1;
    CHECK(uv_loop_init(&worker.loop) == 0);
    worker.loop.data = &worker;
}

static void on_wakeup(uv_async_t *a) { (void)a; }

/* The worker's own handles, which a drain closes: fresh for every input. The
 * tick timer is never started; the harness calls the tick function itself. */
static void worker_handles_open(void) {
    CHECK(uv_timer_init(&worker.loop, &worker.tick) == 0);
    worker.tick.data = &worker;
    CHECK(uv_async_init(&worker.loop, &worker.wakeup, on_wakeup) == 0);
    worker.wakeup.data = &worker;
    svc__http_tick(hw); /* the Date header */
}

static void worker_handles_close(void) {
    if (!uv_is_closing((uv_handle_t *)&worker.tick)) uv_close((uv_handle_t *)&worker.tick, NULL);
    if (!uv_is_closing((uv_handle_t *)&worker.wakeup)) uv_close((uv_handle_t *)&worker.wakeup, NULL);
    uv_run(&worker.loop, UV_RUN_NOWAIT);
}

/* What the 100 ms tick does once every deadline has passed. */
static void expire_deadlines(void) {
    for (svc_conn *c = hw->conns; c; c = c->next)
        if (c->deadline) c->deadline = 1;
    svc__http_tick(hw);
}

/* Reads what the server wrote, keeping the first bytes. */
static void drain_client(int fd, char *keep, size_t *kept) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) return;
        if (*kept < KEEP_OUTPUT) {
            size_t k = KEEP_OUTPUT - *kept < (size_t)n ? KEEP_OUTPUT - *kept : (size_t)n;
            memcpy(keep + *kept, buf, k);
            *kept += k;
        }
    }
}

/* Runs the loop until it has nothing left to do for now. */
static void turn(int client, char *keep, size_t *kept, int *turns) {
    for (int i = 0; i < 4; i++) {
        uv_run(&worker.loop, UV_RUN_NOWAIT);
        drain_client(client, keep, kept);
        (*turns)++;
    }
}

/* Writes all of data (the server reads as the loop turns). */
static void send_piece(int client, const uint8_t *data, size_t len, char *keep, size_t *kept, int *turns) {
    while (len > 0 && *turns < MAX_TURNS) {
        ssize_t n = write(client, data, len);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return; /* the server closed its end */
        }
        turn(client, keep, kept, turns);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!app) setup();
    uint8_t flags = 0;
    size_t cut1 = 0, cut2 = 0;
    if (size >= 3) {
        flags = data[0];
        size_t rest = size - 3;
        cut1 = rest * data[1] / 256;
        cut2 = cut1 + (rest - cut1) * data[2] / 256;
        data += 3;
        size = rest;
    } else {
        cut1 = cut2 = size;
    }

    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    int client = sv[0];
    worker.stopping = 0;
    worker_handles_open();
    CHECK(svc__conn_open_fd(hw, sv[1]) == SVC_OK);

    char keep[KEEP_OUTPUT];
    size_t kept = 0;
    int turns = 0;
    send_piece(client, data, cut1, keep, &kept, &turns);
    if (flags & 2) {
        worker.stopping = 1;
        svc__http_close_idle(hw, 0);
    }
    turn(client, keep, &kept, &turns);
    send_piece(client, data + cut1, cut2 - cut1, keep, &kept, &turns);
    if (flags & 4) svc__http_close_idle(hw, 1);
    turn(client, keep, &kept, &turns);
    send_piece(client, data + cut2, size - cut2, keep, &kept, &turns);
    turn(client, keep, &kept, &turns);
    if (flags & 1) {
        expire_deadlines();
        turn(client, keep, &kept, &turns);
    }
    shutdown(client, SHUT_WR);
    while (hw->nconns > 0 && turns < MAX_TURNS) {
        turn(client, keep, &kept, &turns);
        /* A lingering close waits for the client's EOF (sent) or its 2 s
         * deadline: expire deadlines as the tick would, so no input waits. */
        if (turns % 64 == 0) expire_deadlines();
    }
    CHECK(hw->nconns == 0);
    worker_handles_close();
    drain_client(client, keep, &kept);
    close(client);
    if (kept >= 9) CHECK(memcmp(keep, "HTTP/1.1 ", 9) == 0);
    return 0;
}
