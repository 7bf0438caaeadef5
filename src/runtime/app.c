/*
 * The application: route table, the registry of transports and modules,
 * configuration, worker threads, signals and the graceful shutdown sequence.
 * The transports (module.h) do the I/O: the HTTP server binds its listeners
 * in its open, NATS connects in its setup; here they are only called.
 *
 * Shutdown (SIGTERM/SIGINT or svc_app_stop):
 *   t=0            /readyz turns 503; connections are still accepted, so a load
 *                  balancer that has not yet seen the 503 loses nothing.
 *   DRAIN_DELAY    each worker closes its listener and its idle connections;
 *                  busy connections finish their request, answer with
 *                  "Connection: close", then close.
 *   all closed     workers exit, on_stop runs, svc_app_run returns 0.
 *   SHUTDOWN_TIMEOUT (from t=0), or a second signal: whatever is still open is
 *                  closed at once and svc_app_run returns 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "runtime/internal.h"
#include "store/internal.h"

/* After a forced close, how long the main thread still waits for workers
 * (a handler stuck on the thread pool) before exiting anyway. */
#define FORCE_GRACE_MS 1000

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n, size);
    if (!p) {
        fprintf(stderr, "svckit: out of memory\n");
        exit(1);
    }
    return p;
}

static char *xstrdup(const char *s) {
    char *p = strdup(s ? s : "");
    if (!p) {
        fprintf(stderr, "svckit: out of memory\n");
        exit(1);
    }
    return p;
}

svc_app *svc__app_new(const char *name, int argc, char **argv) {
    svc_app *app = xcalloc(1, sizeof *app);
    app->name = xstrdup(name);
    app->argc = argc;
    app->argv = argv;
    app->default_port = SVC_DEFAULT_PORT; /* each service sets its own */
    app->router = svc__router_new();
    if (!app->router) {
        fprintf(stderr, "svckit: out of memory\n");
        exit(1);
    }
    app->unmatched.method = xstrdup("");
    app->unmatched.pattern = xstrdup("unmatched");
    return app;
}

void svc_app_default_port(svc_app *app, int port) { app->default_port = port; }

/* ---- transports and modules (module.h) ------------------------------------ */

/* What registering a transport or a module has in common: dup says whether
 * one of that name (or that very one) is registered already. */
static int registry_add(svc_app *app, const char *kind, const char *name, int dup, int n, int max,
                        void *(*create)(svc_app *), void **state) {
    if (dup) {
        svc_error("%s \"%s\" registered twice on app %s: the second is refused", kind, name, app->name);
        return SVC_EEXIST;
    }
    if (n == max) return SVC_ERANGE;
    *state = NULL;
    if (create && !(*state = create(app))) return SVC_ENOMEM;
    return SVC_OK;
}

int svc__app_transport_add(svc_app *app, const svc_transport *t) {
    if (!app || !t || !t->name || app->started) return SVC_EINVAL;
    int dup = 0;
    for (int i = 0; i < app->ntransports; i++)
        dup |= app->transports[i].ops == t || strcmp(app->transports[i].ops->name, t->name) == 0;
    void *state;
    int rc = registry_add(app, "transport", t->name, dup, app->ntransports, SVC_MAX_TRANSPORTS, t->create, &state);
    if (rc != SVC_OK) return rc;
    app->transports[app->ntransports].ops = t;
    app->transports[app->ntransports++].state = state;
    return SVC_OK;
}

int svc__app_module_add(svc_app *app, const svc_module *m) {
    if (!app || !m || !m->name || app->started) return SVC_EINVAL;
    int dup = 0;
    for (int i = 0; i < app->nmodules; i++)
        dup |= app->modules[i].ops == m || strcmp(app->modules[i].ops->name, m->name) == 0;
    void *state;
    int rc = registry_add(app, "module", m->name, dup, app->nmodules, SVC_MAX_MODULES, m->create, &state);
    if (rc != SVC_OK) return rc;
    app->modules[app->nmodules].ops = m;
    app->modules[app->nmodules++].state = state;
    return SVC_OK;
}

void *svc__app_transport_state(const svc_app *app, const svc_transport *t) {
    for (int i = 0; app && i < app->ntransports; i++)
        if (app->transports[i].ops == t) return app->transports[i].state;
    return NULL;
}

void *svc__app_module_state(const svc_app *app, const svc_module *m) {
    for (int i = 0; app && i < app->nmodules; i++)
        if (app->modules[i].ops == m) return app->modules[i].state;
    return NULL;
}

svc_config *svc__app_config_edit(svc_app *app) { return &app->cfg; }

/* Calls a transport callback, by member, on every transport that has it. */
#define EACH_TRANSPORT(app, fn, ...)                                                   \
    for (int ti_ = 0; ti_ < (app)->ntransports; ti_++)                                 \
        if ((app)->transports[ti_].ops->fn)                                            \
            (app)->transports[ti_].ops->fn(__VA_ARGS__, (app)->transports[ti_].state)


int svc_app_route(svc_app *app, const char *method, const char *pattern, svc_handler h,
                  unsigned flags) {
    return svc_app_route_data(app, method, pattern, h, flags, NULL);
}

int svc_app_route_data(svc_app *app, const char *method, const char *pattern, svc_handler h,
                       unsigned flags, void *data) {
    if (!method || !pattern || !h) return SVC_EINVAL;
    for (const char *m = method; *m; m++)
        if (*m < 'A' || *m > 'Z') return SVC_EINVAL;
    svc_route_entry *e = calloc(1, sizeof *e);
    if (!e) return SVC_ENOMEM;
    e->method = strdup(method);
    e->pattern = strdup(pattern);
    e->handler = h;
    e->flags = flags;
    e->data = data;
    if (!e->method || !e->pattern) goto nomem;
    int rc = svc__router_add(app->router, method, pattern, e);
    if (rc != SVC_OK) {
        free(e->method);
        free(e->pattern);
        free(e);
        return rc;
    }
    e->next = app->routes;
    app->routes = e;
    return SVC_OK;
nomem:
    free(e->method);
    free(e->pattern);
    free(e);
    return SVC_ENOMEM;
}

int svc_app_use(svc_app *app, svc_before_fn before, svc_after_fn after, void *ud) {
    if (app->nmw == SVC_MAX_MIDDLEWARE) return SVC_ERANGE;
    app->mw[app->nmw++] = (svc_middleware){before, after, ud};
    return SVC_OK;
}

int svc_app_use_head(svc_app *app, svc_before_fn head, void *ud) {
    if (!head) return SVC_EINVAL;
    if (app->nhead == SVC_MAX_MIDDLEWARE) return SVC_ERANGE;
    app->head[app->nhead++] = (svc_middleware){head, NULL, ud};
    return SVC_OK;
}

int svc_app_ready_check(svc_app *app, const char *name, svc_ready_fn fn, void *ud) {
    if (app->nchecks == SVC_MAX_READY_CHECKS) return SVC_ERANGE;
    app->checks[app->nchecks++] = (svc_ready_check){xstrdup(name), fn, ud};
    return SVC_OK;
}

int svc_app_env_declare(svc_app *app, const char *name, const char *def, const char *help) {
    if (app->nenv == SVC_MAX_ENV_VARS) return SVC_ERANGE;
    app->env[app->nenv++] = (svc_env_var){xstrdup(name), def ? xstrdup(def) : NULL,
                                          xstrdup(help ? help : "")};
    return SVC_OK;
}

const char *svc_app_env(const svc_app *app, const char *name) {
    const char *v = getenv(name);
    if (v && *v) return v;
    for (int i = 0; i < app->nenv; i++)
        if (strcmp(app->env[i].name, name) == 0) return app->env[i].def;
    return NULL;
}

void svc_app_on_start(svc_app *app, svc_start_fn fn, void *ud) {
    app->on_start = fn;
    app->on_start_ud = ud;
}

void svc_app_on_stop(svc_app *app, svc_stop_fn fn, void *ud) {
    app->on_stop = fn;
    app->on_stop_ud = ud;
}

void svc_app_set_data(svc_app *app, void *data) { app->data = data; }
void *svc_app_data(const svc_app *app) { return app->data; }
const svc_config *svc_app_config(const svc_app *app) { return &app->cfg; }
const char *svc_app_name(const svc_app *app) { return app->name; }
svc_route_entry *svc__app_unmatched(svc_app *app) { return &app->unmatched; }

void svc_app_stop(svc_app *app) {
    atomic_store(&app->stop_requested, 1);
    uv_async_send(&app->stop_async);
}

int svc_app_draining(const svc_app *app) { return app && atomic_load(&app->draining) ? 1 : 0; }

/* ---- memory ---------------------------------------------------------------- */

void svc__peak_note(atomic_llong *peak, long long v) {
    long long p = atomic_load(peak);
    while (v > p && !atomic_compare_exchange_weak(peak, &p, v)) {
    }
}

/*
 * glibc keeps what is freed in its arenas for the next allocations, so a
 * burst (thousands of slow connections, each with its request's arena and
 * buffers; many bodies at once) would leave the process at its peak size for
 * good. Large buffers are mmapped (SVC_MMAP_THRESHOLD) and go back when
 * freed; after a burst, malloc_trim gives back the free pages of the arenas.
 */
static void trim_memory(uv_timer_t *t) {
    svc_app *app = t->data;
    long long conns = atomic_load(&app->connections), body = atomic_load(&app->body_bytes);
    if (atomic_load(&app->peak_connections) - conns < SVC_TRIM_CONNECTIONS &&
        atomic_load(&app->peak_body_bytes) - body < SVC_TRIM_BODY_BYTES)
        return;
    atomic_store(&app->peak_connections, conns);
    atomic_store(&app->peak_body_bytes, body);
    malloc_trim(0);
}

/* ---- workers -------------------------------------------------------------- */

static void close_walk_cb(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

int svc__worker_busy(svc_worker *w, const svc_transport *except) {
    svc_app *app = w->app;
    for (int i = 0; i < app->ntransports; i++) {
        const svc_transport *t = app->transports[i].ops;
        if (t != except && t->worker_busy && t->worker_busy(w, app->transports[i].state)) return 1;
    }
    return 0;
}

void svc__worker_maybe_exit(svc_worker *w) {
    if (!w->stopping || svc__worker_busy(w, NULL)) return;
    if (!uv_is_closing((uv_handle_t *)&w->tick)) uv_close((uv_handle_t *)&w->tick, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->wakeup)) uv_close((uv_handle_t *)&w->wakeup, NULL);
}

static void worker_tick(uv_timer_t *t) {
    svc_worker *w = t->data;
    svc_log_flush();
    EACH_TRANSPORT(w->app, worker_tick, w);
    svc__compose_tick(w);
    svc__worker_maybe_exit(w);
}

static void worker_wakeup(uv_async_t *a) {
    svc_worker *w = a->data;
    int cmd = atomic_exchange(&w->cmd, WORKER_CMD_NONE);
    if (cmd == WORKER_CMD_NONE) return;
    w->stopping = 1;
    svc_app *app = w->app;
    for (int i = 0; i < app->ntransports; i++)
        if (app->transports[i].ops->worker_stop)
            app->transports[i].ops->worker_stop(w, app->transports[i].state, cmd == WORKER_CMD_FORCE);
    svc__worker_maybe_exit(w);
}

static void worker_main(void *arg) {
    svc_worker *w = arg;
    svc_app *app = w->app;
    svc__log_set_buffered(1);
    svc__db_thread_is_loop(); /* its SQLite reads wait briefly: the whole loop waits with them */
    uv_loop_init(&w->loop);
    w->loop.data = w;
    uv_async_init(&w->loop, &w->wakeup, worker_wakeup);
    w->wakeup.data = w;
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, worker_tick, SVC_TICK_MS, SVC_TICK_MS);
    EACH_TRANSPORT(app, worker_start, w);

    uv_run(&w->loop, UV_RUN_DEFAULT);

    uv_walk(&w->loop, close_walk_cb, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    svc__compose_worker_exit(w);
    svc__worker_pools_free(w, 0);
    svc__log_thread_exit();
    atomic_fetch_sub(&app->workers_running, 1);
    uv_async_send(&app->stop_async);
}

static void send_workers(svc_app *app, int cmd) {
    for (int i = 0; i < app->nworkers; i++) {
        svc_worker *w = &app->workers[i];
        int cur = atomic_load(&w->cmd);
        if (cmd > cur) atomic_store(&w->cmd, cmd);
        uv_async_send(&w->wakeup);
    }
}

/* ---- the main thread: signals and the shutdown sequence ------------------- */

typedef struct main_state {
    svc_app *app;
    uv_signal_t sigterm, sigint;
    uv_timer_t drain_timer, deadline_timer, grace_timer, trim_timer;
    int draining, forced, exit_code;
} main_state;

static void main_close_all(main_state *ms) {
    uv_walk(&ms->app->main_loop, close_walk_cb, NULL);
}

static void force_stop(main_state *ms, const char *why) {
    if (ms->forced) return;
    ms->forced = 1;
    ms->exit_code = 1;
    svc_warn("shutdown: %s; closing every connection now", why);
    send_workers(ms->app, WORKER_CMD_FORCE);
    EACH_TRANSPORT(ms->app, force, ms->app);
}

static void grace_expired(uv_timer_t *t) {
    (void)t;
    svc_error("shutdown: workers did not stop %d ms after the deadline; exiting", FORCE_GRACE_MS);
    svc_log_flush();
    _exit(1);
}

static void deadline_expired(uv_timer_t *t) {
    main_state *ms = t->data;
    force_stop(ms, "SHUTDOWN_TIMEOUT reached");
    uv_timer_start(&ms->grace_timer, grace_expired, FORCE_GRACE_MS, 0);
}

static void drain_delay_over(uv_timer_t *t) {
    main_state *ms = t->data;
    svc_info("shutdown: no longer accepting connections");
    send_workers(ms->app, WORKER_CMD_STOP_ACCEPTING);
    EACH_TRANSPORT(ms->app, drain, ms->app);
}

static void begin_drain(main_state *ms, const char *why) {
    svc_app *app = ms->app;
    if (ms->draining) {
        force_stop(ms, "second stop request");
        uv_timer_start(&ms->grace_timer, grace_expired, FORCE_GRACE_MS, 0);
        return;
    }
    ms->draining = 1;
    atomic_store(&app->draining, 1);
    svc_info("shutdown: %s; draining (readyz now 503, drain delay %d ms, timeout %d ms)", why,
             app->cfg.drain_delay_ms, app->cfg.shutdown_timeout_ms);
    uv_timer_start(&ms->deadline_timer, deadline_expired, (uint64_t)app->cfg.shutdown_timeout_ms, 0);
    if (app->cfg.drain_delay_ms > 0)
        uv_timer_start(&ms->drain_timer, drain_delay_over, (uint64_t)app->cfg.drain_delay_ms, 0);
    else
        drain_delay_over(&ms->drain_timer);
}

static void on_signal(uv_signal_t *s, int signum) {
    main_state *ms = s->data;
    begin_drain(ms, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_stop_async(uv_async_t *a) {
    main_state *ms = a->data;
    svc_app *app = ms->app;
    if (atomic_load(&app->workers_running) == 0) {
        main_close_all(ms);
        return;
    }
    if (atomic_exchange(&app->stop_requested, 0)) begin_drain(ms, "stop requested");
}

void svc__app_free(svc_app *app) {
    /* Each state is forgotten once freed: a later look-up finds none. */
    for (int i = 0; i < app->ntransports; i++) {
        if (app->transports[i].ops->free) app->transports[i].ops->free(app, app->transports[i].state);
        app->transports[i].state = NULL;
    }
    for (int i = 0; i < app->nmodules; i++)
        if (app->modules[i].ops->free) app->modules[i].ops->free(app, app->modules[i].state);
    svc_route_entry *e = app->routes;
    while (e) {
        svc_route_entry *n = e->next;
        free(e->method);
        free(e->pattern);
        free(e);
        e = n;
    }
    free(app->unmatched.method);
    free(app->unmatched.pattern);
    svc__route_labels_free(app);
    for (int i = 0; i < app->nchecks; i++) free(app->checks[i].name);
    for (int i = 0; i < app->nenv; i++) {
        free(app->env[i].name);
        free(app->env[i].def);
        free(app->env[i].help);
    }
    svc__router_free(app->router);
    svc__schema_set_free(&app->schemas);
    svc_buf_free(&app->openapi);
    free(app->workers);
    free(app->name);
    free(app);
}

/* Start-up short of the network, shared by svc_app_run and the in-process
 * harness (harness.c). */
int svc__app_prepare(svc_app *app) {
    char err[256];
    app->started = 1;
    if (svc__config_load(app, err, sizeof err) != SVC_OK) {
        /* One line, naming the variable, on stderr (and nothing else). */
        fprintf(stderr, "%s: %s\n", app->name, err);
        return 2;
    }
    svc_log_setup(app->name, app->cfg.log_level, app->cfg.log_json);
    /* Under svckit run, its prefix names the process on every line already. */
    svc_log_text_style(app->cfg.log_color, getenv("SVCKIT_PROCESS") == NULL);
    signal(SIGPIPE, SIG_IGN);
    mallopt(M_MMAP_THRESHOLD, SVC_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, SVC_TRIM_THRESHOLD);

    svc__metrics_setup(app);
    svc__trace_configure(app->cfg.trace_sample, app->cfg.trace_slow_ms, app->name, NULL);
    svc__builtin_routes(app);

    /* Size libuv's thread pool for offloaded handlers before its first use. */
    if (!getenv("UV_THREADPOOL_SIZE")) {
        char n[16];
        int size = app->cfg.workers * 2 < 4 ? 4 : app->cfg.workers * 2;
        snprintf(n, sizeof n, "%d", size > 64 ? 64 : size);
        setenv("UV_THREADPOOL_SIZE", n, 0);
    }

    /* The modules see the routes, then install what those ask of them. */
    for (int i = 0; i < app->nmodules; i++) {
        const svc_module *m = app->modules[i].ops;
        if (!m->route) continue;
        for (const svc_route_entry *e = app->routes; e; e = e->next)
            m->route(app, app->modules[i].state, e->method, e->pattern, e->flags);
    }
    for (int i = 0; i < app->nmodules; i++) {
        const svc_module *m = app->modules[i].ops;
        int mrc = m->init ? m->init(app, app->modules[i].state) : SVC_OK;
        if (mrc != SVC_OK) {
            /* SVC_EINVAL: bad configuration, logged naming the variable (exit 2). */
            if (mrc != SVC_EINVAL) svc_error("module %s: cannot start: %s", m->name, svc_status_str(mrc));
            svc_log_flush();
            return mrc == SVC_EINVAL ? 2 : 1;
        }
    }
    /* The declarations, once every route is in (exit 2, as for bad
     * configuration), and the OpenAPI document made from them. */
    if (svc__schema_prepare_app(app, err, sizeof err) != SVC_OK) {
        fprintf(stderr, "%s: %s\n", app->name, err);
        return 2;
    }
    if (svc__openapi_build(app) != SVC_OK) {
        fprintf(stderr, "%s: out of memory making /openapi.json\n", app->name);
        return 1;
    }
    return 0;
}

int svc_app_run(svc_app *app) {
    for (int i = 1; i < app->argc; i++) {
        const char *a = app->argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            svc__config_help(app, stdout);
            svc__app_free(app);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("%s (svckit %s, %s)\n", app->name, SVC_VERSION, SVC_GIT_REV);
            svc__app_free(app);
            return 0;
        }
        fprintf(stderr, "%s: unknown argument \"%s\" (configuration comes from the environment; see --help)\n",
                app->name, a);
        svc__app_free(app);
        return 2;
    }

    int rc = svc__app_prepare(app);
    if (rc != 0) {
        svc__app_free(app);
        return rc;
    }
    int exit_code = 0;
    for (int i = 0; i < app->ntransports; i++) {
        const svc_transport *t = app->transports[i].ops;
        if (t->setup && t->setup(app, app->transports[i].state) != SVC_OK) {
            svc_log_flush();
            svc__app_free(app);
            return 1;
        }
    }
    if (app->on_start) {
        rc = app->on_start(app, app->on_start_ud);
        if (rc != SVC_OK) {
            /* SVC_EINVAL means bad configuration: the same exit as a bad core variable. */
            if (rc != SVC_EINVAL) svc_error("start-up failed: %s", svc_status_str(rc));
            svc_log_flush();
            svc__app_free(app);
            return rc == SVC_EINVAL ? 2 : 1;
        }
    }

    app->nworkers = app->cfg.workers;
    app->workers = xcalloc((size_t)app->nworkers, sizeof *app->workers);
    for (int i = 0; i < app->nworkers; i++) {
        app->workers[i].app = app;
        app->workers[i].id = i;
    }
    for (int i = 0; i < app->ntransports; i++) {
        const svc_transport *t = app->transports[i].ops;
        if (t->open && t->open(app, app->transports[i].state) != SVC_OK) {
            svc_log_flush();
            if (app->on_stop) app->on_stop(app, app->on_stop_ud);
            svc__app_free(app);
            return 1;
        }
    }

    main_state ms = {.app = app};
    uv_loop_init(&app->main_loop);
    uv_async_init(&app->main_loop, &app->stop_async, on_stop_async);
    app->stop_async.data = &ms;
    uv_signal_init(&app->main_loop, &ms.sigterm);
    uv_signal_init(&app->main_loop, &ms.sigint);
    ms.sigterm.data = ms.sigint.data = &ms;
    uv_signal_start(&ms.sigterm, on_signal, SIGTERM);
    uv_signal_start(&ms.sigint, on_signal, SIGINT);
    uv_timer_init(&app->main_loop, &ms.drain_timer);
    uv_timer_init(&app->main_loop, &ms.deadline_timer);
    uv_timer_init(&app->main_loop, &ms.grace_timer);
    ms.drain_timer.data = ms.deadline_timer.data = ms.grace_timer.data = &ms;
    uv_timer_init(&app->main_loop, &ms.trim_timer);
    ms.trim_timer.data = app;
    uv_timer_start(&ms.trim_timer, trim_memory, SVC_TRIM_INTERVAL_MS, SVC_TRIM_INTERVAL_MS);

    atomic_store(&app->workers_running, app->nworkers);
    for (int i = 0; i < app->nworkers; i++) {
        if (uv_thread_create(&app->workers[i].thread, worker_main, &app->workers[i]) != 0) {
            svc_error("cannot start worker thread %d", i);
            _exit(1);
        }
    }
    EACH_TRANSPORT(app, start, app);
    if (app->cfg.otlp_endpoint && !(app->otlp = svc__otlp_start(app->cfg.otlp_endpoint)))
        svc_error("tracing: cannot start the OTLP exporter; spans stay queryable over NATS only");
    else if (app->otlp)
        svc_info("tracing: exporting spans to %s/v1/traces (OTLP/HTTP JSON)", app->cfg.otlp_endpoint);
    svc_log_flush();

    uv_run(&app->main_loop, UV_RUN_DEFAULT);

    for (int i = 0; i < app->nworkers; i++) uv_thread_join(&app->workers[i].thread);
    uv_run(&app->main_loop, UV_RUN_DEFAULT);
    uv_loop_close(&app->main_loop);
    exit_code = ms.exit_code;
    if (app->on_stop) app->on_stop(app, app->on_stop_ud);
    EACH_TRANSPORT(app, stop, app);
    svc__otlp_stop(app->otlp);
    app->otlp = NULL;
    svc_info("stopped%s", exit_code ? " (connections were cut at the deadline)" : " cleanly");
    svc_log_flush();
    svc_metrics_reset();
    svc__app_free(app);
    return exit_code;
}
