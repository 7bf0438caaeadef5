/*
 * What the runtime offers the layers above it beyond the public API: the
 * interfaces by which transports (src/http, src/msg) and modules (src/auth)
 * plug into an app, and the identity of a request's caller.
 *
 * The shape is h2o's: a transport fills an svc_req and calls svc__dispatch
 * (runtime/internal.h); the runtime reaches it back only through the
 * function pointers here (svc_req_ops per request, svc_transport per app),
 * never by name. So src/runtime includes and calls nothing above it, and a
 * new transport is a new folder, not an edit of the runtime. Which
 * transports and modules an app has is decided by the one file above them
 * all, src/svc/app_default.c (svc_app_new).
 *
 * Registration is made before svc_app_run (or svc_test_new), from one
 * thread; the registry is then read-only, so any thread may look a state up.
 */
#ifndef SVC_RUNTIME_MODULE_H
#define SVC_RUNTIME_MODULE_H

#include <stddef.h>

#include "svckit/app.h"
#include "svckit/msg.h"

/* Transports and modules an app may have (the defaults take 2 and 1). */
#define SVC_MAX_TRANSPORTS 4
#define SVC_MAX_MODULES 8

typedef struct svc_worker svc_worker;

/* A configuration variable, as --help lists it: a transport or module
 * declares those it reads. def NULL: shown as "unset". */
typedef struct svc_config_var {
    const char *name;
    const char *def;
    const char *help;
} svc_config_var;

/*
 * Per request: how the runtime reaches the transport a request came from
 * (h2o_conn_callbacks_t). Set by the transport when it makes the request.
 */
typedef struct svc_req_ops {
    /* The access log's "transport" field; NULL: not logged (HTTP, the
     * default a reader assumes). */
    const char *name;
    /* A request header that carries the caller's deadline (wall-clock ms
     * since the epoch), which shortens REQUEST_TIMEOUT; NULL: none. */
    const char *deadline_header;
    /* The response is final (after-hooks, encoding, metrics and the access
     * log have run): send it, then free the request (svc__req_free). The
     * request's loop thread; once per request. */
    void (*finish)(svc_req *req);
    /* svc_res_stream_start and _write: send the response head (the
     * transport frames it), then chunks of the body. SVC_OK; SVC_ECLOSED
     * when the client is gone or the transport cannot stream (NULL);
     * SVC_EAGAIN (write) when output waits beyond the transport's limit. */
    int (*stream_start)(svc_req *req);
    int (*stream_write)(svc_req *req, const void *data, size_t len);
} svc_req_ops;

/*
 * A transport: something that brings requests to the app's routes (the
 * HTTP/1.1 server, NATS request-reply). Every callback may be NULL. "Main"
 * is svc_app_run's thread; "worker" is the named worker's loop thread.
 */
typedef struct svc_transport {
    const char *name;
    const svc_config_var *vars;      /* the variables it reads, for --help */
    size_t nvars;
    /* At registration: its state, reached with svc__app_transport_state
     * (NULL: out of memory, the registration fails). */
    void *(*create)(svc_app *app);
    /* The core configuration is loaded (svc_app_run and the harness): reads
     * and checks its own variables. SVC_OK, or SVC_EINVAL with one line in
     * err naming the variable (the service exits 2). */
    int (*configure)(svc_app *app, void *state, char *err, size_t errlen);
    /* Main, before on_start: what needs no socket of its own yet (NATS
     * connects in the background). Not an SVC_OK: svc_app_run returns 1. */
    int (*setup)(svc_app *app, void *state);
    /* Main, after on_start, the workers allocated but not started: what
     * the workers will serve (HTTP binds its listeners). Not an SVC_OK:
     * on_stop runs and svc_app_run returns 1. */
    int (*open)(svc_app *app, void *state);
    /* Worker, once its loop exists, before it runs. */
    void (*worker_start)(svc_worker *w, void *state);
    /* Main, once every worker thread runs. */
    void (*start)(svc_app *app, void *state);
    /* Worker, every SVC_TICK_MS: timeouts, periodic work. */
    void (*worker_tick)(svc_worker *w, void *state);
    /* Worker, as a drain (force 0) or the shutdown deadline (force 1)
     * reaches it: stop taking new work, close what is idle (everything when
     * forced). w->stopping is set. */
    void (*worker_stop)(svc_worker *w, void *state, int force);
    /* Worker: 1 while it still holds work or handles the worker must wait
     * for before it exits (connections, a listener in its grace). */
    int (*worker_busy)(svc_worker *w, void *state);
    /* Main: the drain has reached the point where listeners close (after
     * DRAIN_DELAY); force: the shutdown deadline. */
    void (*drain)(svc_app *app, void *state);
    void (*force)(svc_app *app, void *state);
    /* Main, after the workers exited. */
    void (*stop)(svc_app *app, void *state);
    /* When the app is freed (also after a failed start). */
    void (*free)(svc_app *app, void *state);
    /* svc_req_call & co (compose.c): starts a call to another service, with
     * svc_rpc_call's contract (svckit/msg.h). NULL: this transport makes no
     * calls. The runtime uses the first registered transport that does. */
    int (*call)(svc_app *app, svc_req *req, const char *service, const char *method, const char *path,
                const void *body, size_t len, const svc_rpc_opts *opts, svc_rpc_cb done, void *ud);
} svc_transport;

/*
 * A module: a feature that plugs into the runtime with hooks (auth). Every
 * callback may be NULL; all run on the main thread.
 */
typedef struct svc_module {
    const char *name;
    const svc_config_var *vars;
    size_t nvars;
    void *(*create)(svc_app *app);   /* as svc_transport.create */
    /* As svc_transport.configure. */
    int (*configure)(svc_app *app, void *state, char *err, size_t errlen);
    /* Once per route the app has when it starts (svc_app_run, the harness),
     * before init: the module notes what the routes ask of it. */
    void (*route)(svc_app *app, void *state, const char *method, const char *pattern, unsigned flags);
    /* Start-up, after the routes were shown: installs its hooks. SVC_OK;
     * SVC_EINVAL: bad configuration, already logged naming the variable
     * (exit 2); else a failure (exit 1). */
    int (*init)(svc_app *app, void *state);
    void (*free)(svc_app *app, void *state);
} svc_module;

/* Registers t (or m) on app, calling its create. SVC_OK; SVC_EEXIST if it
 * is registered already (logged: a programming error, never a second
 * state); SVC_ERANGE beyond SVC_MAX_TRANSPORTS (SVC_MAX_MODULES); SVC_ENOMEM;
 * SVC_EINVAL for NULL arguments or once the app has started. */
int svc__app_transport_add(svc_app *app, const svc_transport *t);
int svc__app_module_add(svc_app *app, const svc_module *m);
/* The state create made, or NULL if t (m) is not registered on app. Any
 * thread. */
void *svc__app_transport_state(const svc_app *app, const svc_transport *t);
void *svc__app_module_state(const svc_app *app, const svc_module *m);

/* The configuration a transport's or module's configure fills (its own
 * fields of svc_config). */
svc_config *svc__app_config_edit(svc_app *app);
/* Helpers for configure: an integer variable within [lo, hi] (def when unset
 * or empty), and the error line "invalid configuration: VAR=\"...\": why". */
int svc__config_int(const char *var, long lo, long hi, long def, long *out, char *err, size_t errlen);
int svc__config_fail(char *err, size_t errlen, const char *var, const char *val, const char *why);
/* Seconds, possibly fractional ("0.5"), from 0 to hi, into milliseconds. */
int svc__config_seconds(const char *var, double hi, int def_ms, int *out_ms, char *err, size_t errlen);

/* The verified claims (owned by the request: its arena); any thread that
 * holds the request. Only the auth module sets them, so a handler that
 * reads svc_req_claims knows a verified token put them there: no hook or
 * handler can (the public API has no setter). */
void svc__req_set_claims(svc_req *req, const void *claims);
const void *svc__req_claims(const svc_req *req);

#endif
