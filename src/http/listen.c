/*
 * The HTTP/1.1 transport as the runtime sees it (svc__http_transport,
 * runtime/module.h): one listening socket per worker, bound with
 * SO_REUSEPORT before the workers start, the worker hooks that drive conn.c,
 * and its metrics. The bytes themselves are conn.c's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/internal.h"

#define LISTEN_BACKLOG 4096

/* ---- listening sockets ---------------------------------------------------- */

static int make_sockaddr(const char *host, int port, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return SVC_OK;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return SVC_OK;
    return SVC_EINVAL;
}

static int open_listener(const struct sockaddr_storage *ss, int reuseport) {
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ss->ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    socklen_t len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/*
 * One listening socket per worker, bound with SO_REUSEPORT so the kernel
 * spreads connections over the workers. A probe bind without SO_REUSEPORT
 * first makes "port in use" fail loudly instead of silently joining another
 * process's reuseport group.
 */
static int open_listeners(http_state *hs) {
    svc_app *app = hs->app;
    struct sockaddr_storage ss;
    if (make_sockaddr(app->cfg.host, app->cfg.port, &ss) != SVC_OK) return SVC_EINVAL;
    int port = app->cfg.port;
    int probe = open_listener(&ss, 0);
    if (probe < 0) {
        svc_error("cannot listen on %s:%d: %s", app->cfg.host, port, strerror(-probe));
        return SVC_EIO;
    }
    if (port == 0) {
        struct sockaddr_storage got;
        socklen_t gl = sizeof got;
        getsockname(probe, (struct sockaddr *)&got, &gl);
        port = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                              : ((struct sockaddr_in6 *)&got)->sin6_port);
        make_sockaddr(app->cfg.host, port, &ss);
        app->cfg.port = port;
    }
    if (app->nworkers == 1) {
        hs->workers[0].listen_fd = probe;
        return SVC_OK;
    }
    close(probe);
    for (int i = 0; i < app->nworkers; i++) {
        int fd = open_listener(&ss, 1);
        if (fd < 0) {
            svc_error("cannot listen on %s:%d: %s", app->cfg.host, port, strerror(-fd));
            for (int j = 0; j < i; j++) {
                close(hs->workers[j].listen_fd);
                hs->workers[j].listen_fd = -1;
            }
            return SVC_EIO;
        }
        hs->workers[i].listen_fd = fd;
    }
    return SVC_OK;
}

/*
 * Descriptors. The soft RLIMIT_NOFILE is raised to the hard one, then each
 * worker gets an equal share of what SVC_FD_RESERVE leaves: at the share it
 * stops accepting until a connection closes, and HTTP_MAX_CONNECTIONS is
 * lowered to leave an eighth of the share for the 503s answered above it. So
 * the service sheds load itself before the kernel refuses a descriptor.
 */
static void fit_fd_limit(http_state *hs) {
    svc_app *app = hs->app;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        hs->accept_cap = INT_MAX;
        return;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {rl.rlim_max, rl.rlim_max};
        /* An unlimited hard limit is no value the kernel takes (fs.nr_open). */
        if (want.rlim_cur == RLIM_INFINITY || want.rlim_cur > (1u << 20)) want.rlim_cur = 1u << 20;
        if (want.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &want) == 0) rl.rlim_cur = want.rlim_cur;
    }
    long long limit = rl.rlim_cur == RLIM_INFINITY ? INT_MAX : (long long)rl.rlim_cur;
    long long reserve = limit / 2 < SVC_FD_RESERVE ? limit / 2 : SVC_FD_RESERVE;
    long long share = (limit - reserve) / app->cfg.workers;
    if (share > INT_MAX) share = INT_MAX;
    if (share < 1) share = 1;
    hs->accept_cap = (int)share;
    int fit = (int)(share - share / 8);
    if (fit < 1) fit = 1;
    if (app->cfg.max_connections > fit) {
        svc_info("RLIMIT_NOFILE is %lld: HTTP_MAX_CONNECTIONS lowered from %d to %d per worker "
                 "(a worker stops accepting at %d open connections)",
                 limit, app->cfg.max_connections, fit, hs->accept_cap);
        app->cfg.max_connections = fit;
    }
}

/* ---- metrics ----------------------------------------------------------------- */

void svc__http_metrics_setup(http_state *hs) {
    static const char *labels[] = {"service"};
    static const char *accept_labels[] = {"service", "reason"};
    static const char *const reasons[] = {[ACCEPT_ERR_EMFILE] = "emfile", [ACCEPT_ERR_ENFILE] = "enfile",
                                          [ACCEPT_ERR_OTHER] = "other"};
    const char *name = svc_app_name(hs->app);
    hs->s_rejected = svc_metric_with(svc_metric_counter("http_connections_rejected_total",
                                                        "Connections refused with 503 at HTTP_MAX_CONNECTIONS",
                                                        1, labels),
                                     &name);
    svc_metric *accept_errors = svc_metric_counter(
        "http_accept_errors_total", "Failed accepts (each pauses accepting briefly), by reason", 2, accept_labels);
    for (int i = 0; i < 3; i++) {
        const char *v[] = {name, reasons[i]};
        hs->s_accept_errors[i] = svc_metric_with(accept_errors, v);
    }
}

/* ---- the transport ------------------------------------------------------------ */

static const svc_config_var http_vars[] = {
    {"PORT", NULL, "HTTP listen port (per service default)"},
    {"HOST", "0.0.0.0", "listen address"},
    {"HTTP_MAX_BUFFERED_BODY_BYTES", "67108864",
     "request bodies in memory at once, process-wide, bytes (>= HTTP_MAX_BODY_BYTES); more get 503"},
    {"HTTP_HEADER_TIMEOUT", "10", "seconds to receive a request's headers"},
    {"HTTP_BODY_TIMEOUT", "30", "seconds to receive a request's body"},
    {"HTTP_IDLE_TIMEOUT", "60", "seconds a keep-alive connection may idle"},
    {"HTTP_MAX_CONNECTIONS", "10000", "open connections per worker; more get 503 (lowered to fit RLIMIT_NOFILE)"},
};

/* The server's own variables (the request limits that every transport
 * enforces, HTTP_MAX_HEADER_BYTES & co, are the runtime's). */
static int http_configure(svc_app *app, void *state, char *err, size_t errlen) {
    svc_config *c = svc__app_config_edit(app);
    long v;
    int rc;
    if ((rc = svc__config_int("PORT", 0, 65535, app->default_port, &v, err, errlen))) return rc;
    c->port = (int)v;
    const char *host = getenv("HOST");
    c->host = host && *host ? host : "0.0.0.0";
    /* Checked now: a typo should not surface as a bind error later. */
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    if (uv_ip4_addr(c->host, 0, &a4) != 0 && uv_ip6_addr(c->host, 0, &a6) != 0)
        return svc__config_fail(err, errlen, "HOST", c->host, "expected an IPv4 or IPv6 address");
    long def_budget = c->max_body_bytes > SVC_HTTP_MAX_BUFFERED_BODY_BYTES ? (long)c->max_body_bytes
                                                                         : SVC_HTTP_MAX_BUFFERED_BODY_BYTES;
    if ((rc = svc__config_int("HTTP_MAX_BUFFERED_BODY_BYTES", 0, 1LL << 40, def_budget, &v, err, errlen))) return rc;
    c->max_buffered_body_bytes = (size_t)v;
    if (c->max_buffered_body_bytes < c->max_body_bytes)
        return svc__config_fail(err, errlen, "HTTP_MAX_BUFFERED_BODY_BYTES", getenv("HTTP_MAX_BUFFERED_BODY_BYTES"),
                                "must be at least HTTP_MAX_BODY_BYTES");
    static const struct {
        const char *var;
        double hi;
        int def_ms;
        size_t off;
    } timeouts[] = {
        {"HTTP_HEADER_TIMEOUT", 3600, SVC_HTTP_HEADER_TIMEOUT_MS, offsetof(svc_config, header_timeout_ms)},
        {"HTTP_BODY_TIMEOUT", 3600, SVC_HTTP_BODY_TIMEOUT_MS, offsetof(svc_config, body_timeout_ms)},
        {"HTTP_IDLE_TIMEOUT", 86400, SVC_HTTP_IDLE_TIMEOUT_MS, offsetof(svc_config, idle_timeout_ms)},
    };
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        int *ms = (int *)((char *)c + timeouts[i].off);
        if ((rc = svc__config_seconds(timeouts[i].var, timeouts[i].hi, timeouts[i].def_ms, ms, err, errlen)))
            return rc;
        if (*ms == 0) return svc__config_fail(err, errlen, timeouts[i].var, getenv(timeouts[i].var), "must be > 0");
    }
    if ((rc = svc__config_int("HTTP_MAX_CONNECTIONS", 1, 1000000, SVC_HTTP_MAX_CONNECTIONS, &v, err, errlen)))
        return rc;
    c->max_connections = (int)v;
    /* http_parser has a process-wide header limit of its own (80 KiB by
     * default). conn.c enforces HTTP_MAX_HEADER_BYTES itself, so the
     * parser's is only ever raised, with room to spare, for a larger
     * configured limit. */
    if (c->max_header_bytes + 1024 > HTTP_MAX_HEADER_SIZE)
        http_parser_set_max_header_size((uint32_t)c->max_header_bytes + 1024);
    return SVC_OK;
}

static void *http_create(svc_app *app) {
    http_state *hs = calloc(1, sizeof *hs);
    if (hs) hs->app = app;
    return hs;
}

/* After on_start: the listeners, so that a service that fails to start never
 * binds its port. */
static int http_open(svc_app *app, void *state) {
    http_state *hs = state;
    hs->nworkers = app->nworkers;
    hs->workers = calloc((size_t)hs->nworkers, sizeof *hs->workers);
    if (!hs->workers) return SVC_ENOMEM;
    for (int i = 0; i < hs->nworkers; i++) {
        hs->workers[i].hs = hs;
        hs->workers[i].w = &app->workers[i];
        hs->workers[i].listen_fd = -1;
    }
    svc__http_metrics_setup(hs);
    fit_fd_limit(hs);
    return open_listeners(hs);
}

static void http_worker_start(svc_worker *w, void *state) {
    http_state *hs = state;
    http_worker *hw = &hs->workers[w->id];
    svc__http_date_tick(hw); /* the Date header before the first request */
    int rc = svc__http_listen(hw);
    if (rc != 0) {
        svc_error("worker %d: cannot listen: %s", w->id, uv_strerror(rc));
        svc_app_stop(w->app);
    }
}

static void http_start(svc_app *app, void *state) {
    const svc_config *cfg = svc_app_config(app);
    svc_info("listening on http://%s:%d with %d worker%s", cfg->host, cfg->port, app->nworkers,
             app->nworkers == 1 ? "" : "s");
}

static void http_worker_tick(svc_worker *w, void *state) {
    http_state *hs = state;
    if (hs->workers) svc__http_tick(&hs->workers[w->id]);
}

static void http_worker_stop(svc_worker *w, void *state, int force) {
    http_state *hs = state;
    if (!hs->workers) return;
    http_worker *hw = &hs->workers[w->id];
    svc__http_stop_accepting(hw);
    svc__http_close_idle(hw, force);
}

static int http_worker_busy(svc_worker *w, void *state) {
    http_state *hs = state;
    if (!hs->workers) return 0;
    http_worker *hw = &hs->workers[w->id];
    return hw->listening || hw->nconns > 0;
}

static void http_free(svc_app *app, void *state) {
    http_state *hs = state;
    if (!hs) return;
    for (int i = 0; i < hs->nworkers; i++) {
        if (hs->workers[i].listen_fd >= 0 && !hs->workers[i].listening) close(hs->workers[i].listen_fd);
        free(hs->workers[i].readbuf);
    }
    free(hs->workers);
    free(hs);
}

const svc_transport svc__http_transport = {
    .name = "http",
    .vars = http_vars,
    .nvars = sizeof http_vars / sizeof http_vars[0],
    .create = http_create,
    .configure = http_configure,
    .open = http_open,
    .worker_start = http_worker_start,
    .start = http_start,
    .worker_tick = http_worker_tick,
    .worker_stop = http_worker_stop,
    .worker_busy = http_worker_busy,
    .free = http_free,
};
