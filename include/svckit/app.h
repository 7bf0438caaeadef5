/*
 * svckit/app.h: a service, its routes, requests and responses.
 *
 *     static svc_outcome hello(svc_req *req, svc_res *res) {
 *         return svc_res_printf(res, 200, "text/plain", "hi %s\n",
 *                               svc_req_param(req, "name"));
 *     }
 *     int main(int argc, char **argv) {
 *         svc_app *app = svc_app_new("hello", argc, argv);
 *         svc_app_get(app, "/hello/:name", hello, 0);
 *         return svc_app_run(app);
 *     }
 *
 * Threading model: svc_app_run starts WORKERS threads, each with its own libuv
 * loop and its own SO_REUSEPORT listener. A request lives on one worker from
 * its first byte to its last; its handler runs on that worker's loop unless the
 * route is declared SVC_OFFLOAD, in which case it runs on libuv's thread pool
 * (for blocking work: SQLite, files, password hashing) and the response is sent
 * back on the loop. A handler that needs other services or blocking work
 * before it answers goes on in steps (svc_req_call, svc_req_then,
 * svc_req_offload: "composition" below), each on the thread named there. At
 * any moment one thread holds a request, so handlers never need locks for
 * the request, the response or the request's arena.
 */
#ifndef SVCKIT_APP_H
#define SVCKIT_APP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "svckit/core.h"
#include "svckit/json.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct svc_app svc_app;
typedef struct svc_req svc_req;
typedef struct svc_res svc_res;

/*
 * What a handler or hook says when it returns: one thing, never "a status
 * code, and the dispatcher looks at whether a body was written".
 *
 *   SVC_NEXT   (hooks only) the request goes on: no response was written.
 *   SVC_DONE   the response is written and complete. Every svc_res_* answer
 *              (svc_res_error, svc_res_json, svc_res_body, svc_res_printf,
 *              svc_res_status) returns SVC_DONE, so `return svc_res_error(...)`
 *              is the whole refusal; when such a writer fails (out of memory,
 *              an invalid status or type) it logs the reason and the answer
 *              becomes a 500 (503 when out of memory) by itself.
 *   SVC_ASYNC  (handlers and before-hooks on the loop) the answer comes later,
 *              from the same loop, with svc_res_finish() or a stream. A
 *              handler's answer that has not come by the request's deadline
 *              (REQUEST_TIMEOUT, see svc_req_then) is replaced: the client
 *              gets 504 "deadline_exceeded" with one log line; the request
 *              stays valid for its handler, whose late answer is dropped and
 *              whose svc_res_finish() then frees it.
 *
 * A contract error never crashes the process: a value outside these three,
 * SVC_NEXT from a handler, SVC_DONE without a response, a response written
 * by a hook that returned SVC_NEXT, or an answer written twice (a second
 * svc_res_* answer on a response that has one) each turn the response into
 * a 500 with one log line naming the route and count in
 * svc_contract_errors_total. The values are not SVC_OK nor an error code, so
 * a forgotten conversion (`return SVC_OK;`, `return rc;`) is caught too.
 */
typedef enum svc_outcome {
    SVC_NEXT = 1,
    SVC_DONE = 2,
    SVC_ASYNC = 3,
} svc_outcome;

/* A handler reads the request and answers it (see svc_outcome). */
typedef svc_outcome (*svc_handler)(svc_req *req, svc_res *res);

/* Route flags. */
enum {
    SVC_OFFLOAD = 1u << 0,     /* run the handler on the thread pool */
    SVC_AUTH_USER = 1u << 1,   /* require a valid token (any role) */
    SVC_AUTH_ADMIN = 1u << 2,  /* require a valid token with role "admin" */
    SVC_NO_LOG = 1u << 3,      /* no access-log line and no span (probes) */
};

/* ---- limits (named, documented, overridable from the environment) ------- */

#define SVC_HTTP_MAX_HEADER_BYTES (16 * 1024)   /* HTTP_MAX_HEADER_BYTES */
#define SVC_HTTP_MAX_HEADERS 100                 /* HTTP_MAX_HEADERS */
#define SVC_HTTP_MAX_BODY_BYTES (1024 * 1024)    /* HTTP_MAX_BODY_BYTES */
/* Request bodies buffered by the whole process at once (a Content-Length
 * body counts whole from its head on); past it a request gets 503 with
 * Retry-After. At least HTTP_MAX_BODY_BYTES. */
#define SVC_HTTP_MAX_BUFFERED_BODY_BYTES (64 * 1024 * 1024) /* HTTP_MAX_BUFFERED_BODY_BYTES */
#define SVC_HTTP_HEADER_TIMEOUT_MS 10000         /* HTTP_HEADER_TIMEOUT (s) */
#define SVC_HTTP_BODY_TIMEOUT_MS 30000           /* HTTP_BODY_TIMEOUT (s) */
#define SVC_HTTP_IDLE_TIMEOUT_MS 60000           /* HTTP_IDLE_TIMEOUT (s) */
#define SVC_HTTP_MAX_CONNECTIONS 10000           /* HTTP_MAX_CONNECTIONS, per worker */
#define SVC_DRAIN_DELAY_MS 1000                  /* DRAIN_DELAY (s) */
#define SVC_SHUTDOWN_TIMEOUT_MS 10000            /* SHUTDOWN_TIMEOUT (s) */
/* A request's deadline (the incoming Svc-Deadline of a NATS request may
 * shorten it): a composed request still waiting then is answered 504. */
#define SVC_REQUEST_TIMEOUT_MS 30000             /* REQUEST_TIMEOUT (s) */

/* Content coding (gzip, RFC 9110 8.4). A response with a JSON or text body of
 * at least SVC_GZIP_MIN_BYTES is sent gzip-compressed (level SVC_GZIP_LEVEL)
 * to a client whose Accept-Encoding gives gzip (or x-gzip, or "*") a nonzero
 * q-value, over HTTP and NATS alike, with `Vary: Accept-Encoding` whether or
 * not this client got it. Left alone: bodies of 204, 304 and streams, a body
 * whose Content-Encoding the handler set, other types (images, archives). A
 * HEAD gets the headers of the GET, the compressed Content-Length included.
 * HTTP_COMPRESS=0 turns it off for the process (no gzip, no Vary; what a
 * service behind a gateway compressed still passes through it untouched).
 * Counted in http_compressed_responses_total and
 * http_compression_saved_bytes_total (plain minus gzip bytes).
 * A strong ETag of a compressed response gets SVC_ETAG_GZIP_SUFFIX inside its
 * quotes ("abc" -> "abc-gzip"): the two forms are different representations
 * (RFC 9110 8.8.3), of the same state (svc_req_preconditions accepts both). */
#define SVC_GZIP_MIN_BYTES 1024
#define SVC_GZIP_LEVEL 6                         /* zlib's default */
#define SVC_ETAG_GZIP_SUFFIX "-gzip"

/* The validated configuration; svc_app_config() returns it after start. */
typedef struct svc_config {
    const char *service;
    const char *host;               /* HOST */
    int port;                       /* PORT */
    int workers;                    /* WORKERS */
    const char *nats_url;           /* NATS_URL */
    const char *data_dir;           /* DATA_DIR */
    svc_log_level log_level;        /* LOG_LEVEL */
    int log_json;                   /* LOG_FORMAT */
    int log_color;                  /* LOG_COLOR, NO_COLOR: text logs in colour */
    int shutdown_timeout_ms;        /* SHUTDOWN_TIMEOUT */
    int request_timeout_ms;         /* REQUEST_TIMEOUT */
    int drain_delay_ms;             /* DRAIN_DELAY */
    const char *jwt_secret;         /* JWT_SECRET or SECRET_KEY */
    const char *jwks_url;           /* AUTH_JWKS_URL */
    int64_t jwt_max_lifetime_s;     /* AUTH_MAX_TOKEN_LIFETIME */
    size_t max_header_bytes;
    int max_headers;
    size_t max_body_bytes;
    int header_timeout_ms;
    int body_timeout_ms;
    int idle_timeout_ms;
    int max_connections;            /* lowered at start to fit RLIMIT_NOFILE */
    size_t max_buffered_body_bytes;
    int compress;                   /* HTTP_COMPRESS: gzip for clients that take it */
    double trace_sample;            /* TRACE_SAMPLE: head sampling ratio, 0..1 */
    int trace_slow_ms;              /* TRACE_SLOW_MS: kept even when not sampled */
    const char *otlp_endpoint;      /* OTEL_EXPORTER_OTLP_ENDPOINT, NULL: no export */
} svc_config;

/* ---- the application ----------------------------------------------------- */

/*
 * A new service named `name` (used in logs, metrics and discovery). argv is
 * kept for --help and --version, handled by svc_app_run. Never returns NULL
 * (exits with a message on out-of-memory). Freed by svc_app_run.
 */
svc_app *svc_app_new(const char *name, int argc, char **argv);

/*
 * Declares a route. method is "GET", "POST", ...; pattern is a path template
 * whose segments are literal or ":name" parameters ("/products/:id"); a
 * trailing "*name" segment captures the rest of the path. Static segments win
 * over parameters. HEAD is answered for every GET, OPTIONS for every path.
 * Returns SVC_EEXIST for a duplicate and SVC_EINVAL for a bad pattern. Must be
 * called before svc_app_run.
 */
int svc_app_route(svc_app *app, const char *method, const char *pattern,
                  svc_handler h, unsigned flags);
/* The same with per-route user data, for the handler (svc_req_route_data):
 * the state a handler needs without a file-scope global. */
int svc_app_route_data(svc_app *app, const char *method, const char *pattern,
                       svc_handler h, unsigned flags, void *data);
#define svc_app_get(a, p, h, f) svc_app_route((a), "GET", (p), (h), (f))
#define svc_app_post(a, p, h, f) svc_app_route((a), "POST", (p), (h), (f))
#define svc_app_put(a, p, h, f) svc_app_route((a), "PUT", (p), (h), (f))
#define svc_app_patch(a, p, h, f) svc_app_route((a), "PATCH", (p), (h), (f))
#define svc_app_delete(a, p, h, f) svc_app_route((a), "DELETE", (p), (h), (f))

/*
 * Route labels, for a handler that serves many routes of its own behind one
 * declared route (a proxy's catch-all): it may count each request
 * under a label of its choosing instead of the template that matched, in
 * http_requests_total, http_request_duration_seconds, nats_requests_total
 * and the access log's "route". Labels are declared up front and a request
 * can only pick one of them, so a client can never add a label value.
 *
 * svc_app_route_label declares one: 1 to 128 bytes (SVC_METRIC_MAX_VALUE_LEN)
 * of printable ASCII, at most SVC_MAX_ROUTE_LABELS, before the workers start
 * (before svc_app_run, or from on_start). SVC_OK, SVC_EEXIST (declared
 * already), SVC_ERANGE (too many), SVC_ENOMEM, or SVC_EINVAL (a bad label, or
 * the workers run).
 *
 * svc_req_set_route_label counts req under a declared label (the last call
 * wins): SVC_OK, SVC_EINVAL for a label never declared (req keeps its
 * template), SVC_ENOMEM. Any thread that holds the request.
 */
#define SVC_MAX_ROUTE_LABELS 64
int svc_app_route_label(svc_app *app, const char *label);
int svc_req_set_route_label(svc_req *req, const char *label);

/*
 * Middleware. `before` runs ahead of the handler, in registration order. It
 * returns SVC_NEXT to let the request go on, SVC_DONE when it answered
 * (`return svc_res_error(...)`: the chain ends there and the handler is
 * skipped), or SVC_ASYNC to answer or go on later from the loop. `after`
 * runs once the response is final and before it is sent (both may be NULL).
 * Hooks run on the loop thread.
 */
typedef svc_outcome (*svc_before_fn)(svc_req *req, svc_res *res, void *ud);
typedef void (*svc_after_fn)(svc_req *req, svc_res *res, void *ud);
int svc_app_use(svc_app *app, svc_before_fn before, svc_after_fn after, void *ud);

/*
 * A head hook: a check that needs only the request's head. It runs as soon
 * as the header section has arrived, after routing and before any byte of
 * the body is read, buffered, or asked for with "100 Continue", so that a
 * refusal (401, 403, 429...) never waits for an upload nor holds its memory.
 * It may look at the method, path, route, parameters, query and headers,
 * never at the body (svc_req_body is empty then; do not call svc_req_json);
 * it must not return SVC_ASYNC (a contract error: 500) nor call
 * svc_res_finish. It answers as a before-hook does: SVC_NEXT lets the
 * request go on; SVC_DONE is the answer, and the request's body is then not
 * kept: a small Content-Length body is read and
 * dropped, otherwise the connection closes after the response. Head hooks
 * run on the loop thread, for requests of every transport, in registration
 * order, before every before-hook; the token check of SVC_AUTH_USER and
 * SVC_AUTH_ADMIN routes is one (svc_auth_install). At most 16 of each kind.
 */
int svc_app_use_head(svc_app *app, svc_before_fn head, void *ud);

/*
 * Readiness checks, polled by GET /readyz: return SVC_OK when ready, else fill
 * reason (NUL-terminated, at most reason_len bytes) and return nonzero. They
 * run on a worker loop and must not block.
 */
typedef int (*svc_ready_fn)(void *ud, char *reason, size_t reason_len);
int svc_app_ready_check(svc_app *app, const char *name, svc_ready_fn fn, void *ud);

/*
 * A service-specific environment variable, listed by --help. Declare before
 * svc_app_run; read with svc_app_env() from on_start or handlers. The returned
 * string is the environment's value or the default, owned by the app.
 */
int svc_app_env_declare(svc_app *app, const char *name, const char *def,
                        const char *help);
const char *svc_app_env(const svc_app *app, const char *name);

/*
 * Called once after the configuration is validated and before the first
 * connection is accepted. A nonzero return stops the service: SVC_EINVAL
 * means bad configuration (exit 2, as for the core variables: log one line
 * naming the variable first), anything else exit 1. Use it to check the
 * service's own variables, open databases and seed data.
 */
typedef int (*svc_start_fn)(svc_app *app, void *ud);
void svc_app_on_start(svc_app *app, svc_start_fn fn, void *ud);
/* Called once after the last worker stopped, before svc_app_run returns. */
typedef void (*svc_stop_fn)(svc_app *app, void *ud);
void svc_app_on_stop(svc_app *app, svc_stop_fn fn, void *ud);

/* The PORT used when the environment sets none (default SVC_DEFAULT_PORT):
 * each service chooses its own; the library knows no service by name. */
#define SVC_DEFAULT_PORT 8080
void svc_app_default_port(svc_app *app, int port);

/* Service-wide user data, for handlers (svc_req_app_data). */
void svc_app_set_data(svc_app *app, void *data);
void *svc_app_data(const svc_app *app);
const svc_config *svc_app_config(const svc_app *app);
const char *svc_app_name(const svc_app *app);

/*
 * Runs the service: handles --help/--version, reads and validates the
 * environment (exit 2 with one line naming the variable on a bad value), calls
 * on_start, serves until SIGTERM/SIGINT, drains (readyz 503 at once, accept
 * for DRAIN_DELAY, finish in-flight requests, close idle connections), calls
 * on_stop, frees the app. Returns the process exit status (0 after a clean
 * drain).
 */
int svc_app_run(svc_app *app);

/* Asks a running app to drain and stop, as SIGTERM does. Thread-safe. */
void svc_app_stop(svc_app *app);

/* 1 from the first moment of a shutdown drain (when /readyz turns 503), else
 * 0: a handler that streams without end (server-sent events) ends its
 * stream then, so that the drain need not wait for SHUTDOWN_TIMEOUT.
 * Thread-safe. */
int svc_app_draining(const svc_app *app);

/* ---- requests ------------------------------------------------------------
 * Every pointer returned by svc_req_* is owned by the request and valid until
 * the response has been sent. */

const char *svc_req_method(const svc_req *req);
/* Normalised, percent-decoded path ("/products/7"); never NULL. */
const char *svc_req_path(const svc_req *req);
/* The route template that matched ("/products/:id"), or NULL if none did. */
const char *svc_req_route(const svc_req *req);
unsigned svc_req_route_flags(const svc_req *req);
/* Path parameter by name, percent-decoded; NULL if absent. */
const char *svc_req_param(const svc_req *req, const char *name);
/* SVC_OK, SVC_ENOTFOUND (absent) or SVC_EINVAL (not a 64-bit integer). */
int svc_req_param_i64(const svc_req *req, const char *name, int64_t *out);
/* First query parameter by name, percent-decoded ('+' is a space); NULL if absent
 * or if its value does not decode (a bad percent-escape, or %00). */
const char *svc_req_query(const svc_req *req, const char *name);
/* Every value of a query parameter, percent-decoded, joined by ',' in order
 * (select=title&select=price,stock -> "title,price,stock"); NULL if absent or
 * if any value does not decode. For a declared parameter that may repeat
 * (an array schema with .repeat). */
const char *svc_req_query_all(const svc_req *req, const char *name);
/* Raw query string without '?', or "" */
const char *svc_req_query_string(const svc_req *req);
/* Header value by case-insensitive name (first occurrence); NULL if absent. */
const char *svc_req_header(const svc_req *req, const char *name);
/* Iterates headers: index from 0; returns SVC_ENOTFOUND past the end. */
int svc_req_header_at(const svc_req *req, size_t i, const char **name, const char **value);
/* Cookie value by name from the Cookie header(s); NULL if absent. */
const char *svc_req_cookie(const svc_req *req, const char *name);
/* Body bytes (NUL-terminated for convenience) and length; "" if none. */
const char *svc_req_body(const svc_req *req, size_t *len);
/*
 * The body parsed as JSON with the app's limits. Returns a borrowed value
 * (freed with the request), or NULL after writing a 400 (invalid or empty
 * JSON, saying where) or 415 (a Content-Type other than application/json or
 * application/<x>+json, or none) to res: a handler then returns SVC_DONE.
 */
json_t *svc_req_json(svc_req *req, svc_res *res);
/*
 * Conditional requests (RFC 9110 13.2.2): evaluates If-Match,
 * If-Unmodified-Since, If-None-Match and If-Modified-Since, in that order,
 * against the target resource as it is now. Call it once the request would
 * otherwise succeed (a 404 or 400 stays that), and for a write inside the
 * transaction that makes the write, with what the transaction read, so that
 * two clients holding the same ETag cannot both write.
 *
 * etag: the current representation's strong entity tag with its quotes
 * ("\"7-v3\""), or NULL when the resource has no current representation
 * (If-Match then fails and If-None-Match: * holds). last_modified: seconds
 * since the epoch, or -1 if unknown (the date conditions are then ignored).
 * If-Match compares strongly (a weak tag never matches), If-None-Match
 * weakly; a tag matches etag or its gzip form (SVC_ETAG_GZIP_SUFFIX).
 * If-Unmodified-Since is ignored when If-Match is present, If-Modified-Since
 * when If-None-Match is, and either when it is not a valid HTTP-date.
 *
 * Returns 0: go on (no condition, or all hold). Otherwise it wrote the
 * response and returns its status: 412 (error code "precondition_failed"),
 * or 304 for a GET or HEAD, with ETag (the form the client named) and
 * Last-Modified.
 */
int svc_req_preconditions(svc_req *req, svc_res *res, const char *etag, int64_t last_modified);
/* The request id (X-Request-Id as sent, if sane, else generated). */
const char *svc_req_id(const svc_req *req);
/* The W3C trace id (32 hex) from traceparent, or generated. */
const char *svc_req_trace_id(const svc_req *req);
/* The request's server span (svckit/trace.h): the parent of the spans a
 * handler makes with svc_span_begin. Valid until the response is finished. */
struct svc_trace_ctx;
const struct svc_trace_ctx *svc_req_trace(const svc_req *req);
/* Peer address as text ("127.0.0.1"); "" when unknown. */
const char *svc_req_peer(const svc_req *req);
/* The request's arena: allocations live until the response has been sent. */
svc_arena *svc_req_arena(svc_req *req);
svc_app *svc_req_app(const svc_req *req);
void *svc_req_app_data(const svc_req *req);
/* The loop the request lives on (NULL while running offloaded). */
uv_loop_t *svc_req_loop(const svc_req *req);
/* The data of the route that matched (svc_app_route_data), or NULL. */
void *svc_req_route_data(const svc_req *req);
/*
 * Typed per-request values, for middleware that hands something to the
 * handler: keyed by the address of a `static const svc_key` of the module
 * that owns the value, so two modules never collide and no string is
 * compared:
 *
 *     static const svc_key tenant_key = {"tenant"};
 *     svc_req_set(req, &tenant_key, t, NULL);         // a hook
 *     tenant *t = svc_req_get(req, &tenant_key);      // the handler
 *
 * svc_req_set replaces a value already set (calling its free_fn);
 * free_fn (may be NULL) runs when the request is freed. SVC_OK, SVC_ENOMEM
 * or SVC_EINVAL. svc_req_get returns NULL when unset. Whoever holds the
 * request (its loop, or its work on the thread pool). The caller's identity
 * is not one of these: only the auth module sets what svc_req_claims reads.
 */
typedef struct svc_key {
    const char *name;            /* for debugging */
} svc_key;
int svc_req_set(svc_req *req, const svc_key *key, void *value, void (*free_fn)(void *));
void *svc_req_get(const svc_req *req, const svc_key *key);

/* ---- composition: blocking work and continuations ----------------------------
 *
 * A handler that needs blocking work (SQLite, files, password hashing) or
 * other services' answers (svc_req_call, svc/msg.h) before it can answer
 * goes on in steps, each returned as an outcome, with no libuv in sight:
 *
 *     static void insert(svc_req *req, void *ud) { ... SQLite ... }   // thread pool
 *     static svc_outcome inserted(svc_req *req, svc_res *res, void *ud) {  // loop
 *         return svc_res_json(res, 201, ud);
 *     }
 *     static svc_outcome checked(svc_req *req, svc_res *res, void *ud) {   // loop
 *         if (svc_call_status(req, 0) != 200) return svc_res_error(res, 422, ...);
 *         return svc_req_offload(req, insert, ud, inserted);
 *     }
 *     static svc_outcome create(svc_req *req, svc_res *res) {              // loop
 *         svc_req_call(req, "products", "GET", path, NULL, 0, NULL);
 *         return svc_req_then(req, checked, ud);
 *     }
 *
 * What runs where. A handler of a route without SVC_OFFLOAD, every svc_then_fn,
 * and every svc_rpc/svc_req_call callback run on the request's loop thread, one
 * at a time. A svc_work_fn runs on libuv's thread pool while nothing else
 * touches the request: it may read the request, use its arena and its typed
 * values, start calls (svc_req_call), and must not write the response (its
 * continuation does). A step's continuation runs once, on the loop, after its
 * work returned and every call started in the step (from the loop or from the
 * work) has ended (a reply, an error, or a timeout).
 *
 * Deadlines: every request has one, REQUEST_TIMEOUT (default 30 s) from its
 * first byte, or the incoming Svc-Deadline of a NATS request when that is
 * sooner. A request still waiting for a step at its deadline is answered 504
 * "deadline_exceeded" with one log line (work already running finishes
 * first, its continuation does not run); calls are given at most the time
 * left. A reply that arrives after its request was answered is dropped and
 * counted (svc_calls_dropped_total). A client that goes away while a request
 * waits ends its chain: no further continuation runs, the request is freed.
 * Over HTTP a client's FIN counts as going away (TCP cannot tell a
 * half-close from a close without writing): the chain ends with 499
 * "client_closed", which a client that only half-closed still receives.
 * Every svc_req_* below returns SVC_ASYNC: `return svc_req_then(...)`; on a
 * failure to schedule it has answered (503) and still returns an outcome
 * the dispatcher understands. Handlers and continuations only, never hooks.
 */
typedef void (*svc_work_fn)(svc_req *req, void *ud);
typedef svc_outcome (*svc_then_fn)(svc_req *req, svc_res *res, void *ud);

/* Once the calls started in this step have ended, runs work(req, ud) on the
 * thread pool, then done(req, res, ud) on the loop once work returned and the
 * calls it started have ended. Loop thread. */
svc_outcome svc_req_offload(svc_req *req, svc_work_fn work, void *ud, svc_then_fn done);
/* Runs then(req, res, ud) on the loop once every call started in this step
 * has ended (at once, after the handler returns, when there are none). */
svc_outcome svc_req_then(svc_req *req, svc_then_fn then, void *ud);
/* Milliseconds left before the request's deadline (0 when past it). */
int64_t svc_req_remaining_ms(const svc_req *req);

/* ---- responses -------------------------------------------------------------
 * Writers copy what they are given. The answers (svc_res_body, _printf,
 * _json, _error, _status) return SVC_DONE whatever happens: a failure is
 * logged and answered 500 (503 when out of memory) when the request
 * finishes. A response has one answer: a second one on the same response is
 * a contract error (500). svc_req_json and svc_req_preconditions answer when
 * they refuse: the handler then returns SVC_DONE. */

/* Adds a header; names and values with CR, LF or NUL are refused (SVC_EINVAL). */
int svc_res_header(svc_res *res, const char *name, const char *value);
svc_outcome svc_res_body(svc_res *res, int status, const char *content_type,
                         const void *body, size_t len);
svc_outcome svc_res_printf(svc_res *res, int status, const char *content_type,
                           const char *fmt, ...) SVC_PRINTF(4, 5);
/* Serialises json (compact) as application/json; does not take the reference. */
svc_outcome svc_res_json(svc_res *res, int status, const json_t *json);
/*
 * The fast path: a writer into the response body, Content-Type
 * application/json. Fill it and return SVC_DONE; an unbalanced or failed
 * writer turns into a 500.
 */
svc_jw *svc_res_jw(svc_res *res, int status);
/* {"error":{"code":code,"message":message}} with the status. */
svc_outcome svc_res_error(svc_res *res, int status, const char *code, const char *fmt, ...)
    SVC_PRINTF(4, 5);
/* The representation's validators, for the client's next conditional
 * request (svc_req_preconditions): ETag as given (NULL: none) and
 * Last-Modified, seconds since the epoch written as an HTTP-date (-1: none). */
int svc_res_validators(svc_res *res, const char *etag, int64_t last_modified);
/* 304/204-style: status with no body. */
svc_outcome svc_res_status(svc_res *res, int status);
int svc_res_get_status(const svc_res *res);
/* The body written so far (for middleware such as ETag). */
const char *svc_res_get_body(const svc_res *res, size_t *len);

/*
 * Streaming (chunked) responses, used from an SVC_ASYNC handler: start, write
 * any number of chunks as data becomes available, end. HTTP/1.0 clients get
 * the stream unchunked with Connection: close. Loop thread only.
 */
int svc_res_stream_start(svc_res *res, int status, const char *content_type);
/* SVC_OK (queued), SVC_EAGAIN (over 1 MiB is still unsent: nothing was queued;
 * try again later, e.g. from a timer), or SVC_ECLOSED (the client is gone:
 * end the stream). */
int svc_res_stream_write(svc_res *res, const void *data, size_t len);
int svc_res_stream_end(svc_res *res);

/* Completes a response after the handler returned SVC_ASYNC. Loop thread only. */
void svc_res_finish(svc_res *res);

/* The request a response belongs to. */
svc_req *svc_res_req(svc_res *res);

#ifdef __cplusplus
}
#endif
#endif
