/*
 * Internal to src/runtime, and what the transports above it (src/http,
 * src/msg) use to make requests: the app, its workers, requests and
 * responses. The runtime knows no transport and no module by name: they
 * plug in through runtime/module.h. Reading order: app.c (registry,
 * configuration, workers, shutdown), dispatch.c (routing, middleware,
 * handlers, offloading), request.c and response.c (the handler API),
 * compose.c (calls, offloaded work, continuations, deadlines), encoding.c
 * (gzip) and conditional.c (If-Match & co), cache.c (the response cache),
 * builtin.c (/healthz, /readyz, /metrics, the access log), harness.c (the
 * in-process transport of svckit/test.h).
 */
#ifndef SVC_RUNTIME_INTERNAL_H
#define SVC_RUNTIME_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <uv.h>

#include "runtime/module.h"
#include "runtime/router.h"
#include "runtime/schema.h"
#include "svckit/app.h"
#include "svckit/obs.h"
#include "svckit/trace.h"

#define SVC_MAX_MIDDLEWARE 16
#define SVC_MAX_READY_CHECKS 16
#define SVC_MAX_ENV_VARS 32
/* Each worker's tick: transports' timeouts, deadlines, the log's flush. */
#define SVC_TICK_MS 100
#define SVC_ARENA_POOL 64
/* Empty buffers a worker keeps for the next requests (request line and
 * headers, body, response body) and responses (connection output), and the
 * largest it keeps. Idle connections hold none. */
#define SVC_BUF_POOL 32
#define SVC_BUF_POOL_MAX_CAP (64 * 1024)
#define SVC_STATUS_CODES 600
/* Memory returned to the system. Allocations from this size on are mmapped,
 * so a large body buffer goes back when freed (glibc's own threshold rises
 * to the largest size freed and stops doing so); what smaller ones leave in
 * the allocator's arenas is trimmed, at most once per SVC_TRIM_INTERVAL_MS,
 * once the connections or buffered bodies have fallen this far below their
 * peak since the last trim. */
#define SVC_MMAP_THRESHOLD (128 * 1024)
/* Free memory at the top of an arena kept for the next allocations instead
 * of being given back at once. Fixing the mmap threshold above also fixes
 * glibc's trim threshold at its 128 KiB default (it no longer rises with
 * the mmap threshold), and a thread whose free top crosses it on every
 * request (SQLite refills a connection's page cache after every commit by
 * another one, and frees it) gave it back each time: an madvise, so a TLB
 * flush on every CPU running the process, then page faults to take it
 * again (bench/README.md, "Orders end to end"). The bursts are still
 * trimmed below. */
#define SVC_TRIM_THRESHOLD (1024 * 1024)
#define SVC_TRIM_INTERVAL_MS 1000
#define SVC_TRIM_CONNECTIONS 256
#define SVC_TRIM_BODY_BYTES (16 * 1024 * 1024)

typedef struct svc_compose svc_compose; /* a request that goes on in steps (compose.c) */
typedef struct svc_req_value svc_req_value; /* svc_req_set (request.c) */

typedef struct svc_route_entry {
    char *method;
    char *pattern;
    svc_handler handler;
    unsigned flags;
    void *data;                      /* svc_app_route_data */
    const svc_route_spec *spec;      /* svc_app_route_spec, or NULL */
    /* Metric series cached per status code so the hot path never looks up
     * labels; filled on first use. */
    _Atomic(svc_series *) requests[SVC_STATUS_CODES];
    svc_series *duration;
    struct svc_route_entry *next;
} svc_route_entry;

/* Method labels of the request metrics: the methods RFC 9110 and RFC 5789
 * define, then "other" (builtin.c), so a client cannot raise cardinality. */
#define SVC_METRIC_METHODS 10

/* A declared route label (svc_app_route_label): an entry per method label,
 * made on first use, with the entry's metric cache. */
typedef struct svc_route_label {
    char *label;
    _Atomic(svc_route_entry *) by_method[SVC_METRIC_METHODS];
} svc_route_label;

typedef struct svc_middleware {
    svc_before_fn before;
    svc_after_fn after;
    void *ud;
} svc_middleware;

typedef struct svc_ready_check {
    char *name;
    svc_ready_fn fn;
    void *ud;
} svc_ready_check;

typedef struct svc_env_var {
    char *name;
    char *def;
    char *help;
} svc_env_var;

struct svc_app {
    char *name;
    int argc;
    char **argv;
    int default_port;
    svc_router *router;
    svc_route_entry *routes;
    svc_route_entry unmatched;       /* metrics for 404/405/400 */
    svc_route_label labels[SVC_MAX_ROUTE_LABELS];
    int nlabels;                     /* fixed once the workers start */
    svc_middleware mw[SVC_MAX_MIDDLEWARE];
    int nmw;
    svc_middleware head[SVC_MAX_MIDDLEWARE]; /* head hooks (before only) */
    int nhead;
    svc_ready_check checks[SVC_MAX_READY_CHECKS];
    int nchecks;
    svc_env_var env[SVC_MAX_ENV_VARS];
    int nenv;
    svc_start_fn on_start;
    void *on_start_ud;
    struct svc__otlp *otlp;          /* OTEL_EXPORTER_OTLP_ENDPOINT set */
    svc_stop_fn on_stop;
    void *on_stop_ud;
    void *data;
    svc_config cfg;
    char *cfg_strings;               /* storage for cfg's strings */
    svc_worker *workers;
    int nworkers;
    uv_loop_t main_loop;
    uv_async_t stop_async;
    atomic_int draining;             /* readyz answers 503 */
    atomic_int stop_requested;
    int force;                       /* second signal: skip the drain */
    atomic_int workers_running;
    /* Standard metric families. */
    svc_metric *m_requests;
    svc_metric *m_duration;
    svc_series *s_inflight;
    svc_series *s_connections;
    atomic_long inflight;
    atomic_long connections;         /* client connections of every transport */
    atomic_llong body_bytes;         /* request bodies buffered (or reserved) */
    svc_series *s_body_bytes;
    svc_series *s_body_budget;       /* 503s at HTTP_MAX_BUFFERED_BODY_BYTES */
    svc_series *s_gzip_responses;    /* responses sent gzip-compressed */
    svc_series *s_gzip_saved;        /* plain minus compressed bytes of those */
    svc_series *s_contract_errors;   /* handler/hook contract errors (dispatch.c) */
    svc_series *s_deadline;          /* requests answered 504 at their deadline (compose.c) */
    svc_series *s_calls_dropped;     /* call replies for requests already answered */
    /* The highest values since memory was last trimmed (app.c). */
    atomic_llong peak_connections;
    atomic_llong peak_body_bytes;
    /* Transports and modules (module.h), in registration order. */
    struct {
        const svc_transport *ops;
        void *state;
    } transports[SVC_MAX_TRANSPORTS];
    int ntransports;
    struct {
        const svc_module *ops;
        void *state;
    } modules[SVC_MAX_MODULES];
    int nmodules;
    int started;                     /* prepared: registrations are closed */
    svc__schema_set schemas;         /* the declarations' compiled patterns */
    char spec_orphan[160];           /* the first svc_app_route_spec for no route */
    svc_buf openapi;                 /* GET /openapi.json, made at start */
};

struct svc_worker {
    svc_app *app;
    int id;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wakeup;
    uv_timer_t tick;
    int ticks;
    atomic_int cmd;                  /* WORKER_CMD_* from the main thread */
    int stopping;                    /* no new requests; exit when idle */
    svc_arena *arena_pool[SVC_ARENA_POOL];
    int narena_pool;
    svc_buf buf_pool[SVC_BUF_POOL];  /* empty, allocated buffers */
    int nbuf_pool;
    uint64_t next_request_id;
    char id_prefix[17];
    svc_buf logline;                 /* scratch for access-log lines */
    svc_compose *waiting;            /* requests waiting for a step (compose.c) */
    svc_req *held;                   /* requests a handler answers later (compose.c) */
};

enum {
    WORKER_CMD_NONE = 0,
    WORKER_CMD_STOP_ACCEPTING = 1,   /* drain: close the listener and idle conns */
    WORKER_CMD_FORCE = 2,            /* deadline: close everything */
};

typedef struct svc_hdr {
    const char *name;
    const char *value;
    size_t name_len;                 /* request headers: strlen(name); 0: not known */
} svc_hdr;

/* An immutable body the response cache shares with the responses it answers
 * (cache.c): a hit takes a reference instead of copying the bytes; the last
 * reference frees it. */
typedef struct svc__shared {
    atomic_int refs;
    size_t len;
    char data[];
} svc__shared;

/* A copy of data with one reference; NULL: out of memory. */
svc__shared *svc__shared_new(const void *data, size_t len);
void svc__shared_unref(svc__shared *s);

struct svc_res {
    svc_req *req;
    int status;
    const char *content_type;
    svc_buf body;
    svc__shared *shared;             /* the body when set (svc__res_shared); body is then empty */
    svc_hdr *headers;
    size_t nheaders, cap_headers;
    svc_jw jw;
    size_t streamed;                 /* body bytes sent by svc_res_stream_write */
    unsigned jw_used : 1;
    unsigned has_body : 1;
    unsigned async : 1;
    unsigned streaming : 1;          /* headers sent, chunks follow */
    unsigned stream_chunked : 1;
    unsigned finished : 1;
    unsigned oom : 1;
    unsigned coded : 1;              /* content coding chosen (cache.c): leave it */
    unsigned contract : 1;           /* a contract error: answered 500 at finish */
    unsigned answered : 1;           /* an svc_res_* answer was written */
};

struct svc_req {
    svc_arena *arena;
    svc_worker *w;
    svc_app *app;
    const char *method;
    unsigned http_major, http_minor;
    svc_buf raw;                     /* url, then header names/values, NUL-separated */
    size_t url_len;
    size_t nhdr_parts;               /* name/value parts seen (offsets in hdr_off) */
    int last_was_value;
    svc_hdr *headers;
    size_t nheaders;
    /* The first value of the fields the core itself reads, noted once by
     * svc__req_note_header instead of a scan of every field per lookup. */
    const char *hdr_expect, *hdr_request_id, *hdr_traceparent, *hdr_tracestate;
    char *path;
    char *query;
    svc_buf body;
    svc_route_entry *route;
    /* Set by the NATS transport for a route's own subject: the route the
     * request must match (dispatch answers 400 otherwise); NULL: any. */
    const svc_route_entry *want_route;
    /* svc_req_set_route_label's entry: counted under it instead of route. */
    svc_route_entry *label_route;
    svc_route_match match;
    json_t *json;
    const void *claims;              /* set by the auth module only (module.h) */
    svc_req_value *values;           /* svc_req_set, in the arena */
    const char *id;
    const char *peer;
    char trace_id[33];               /* tctx's, in hex, for logs */
    char span_id[17];
    svc_trace_ctx tctx;              /* this request's server span */
    uint8_t parent_span[8];          /* the caller's span (traceparent), zero when none */
    const char *tracestate;          /* the client's, well-formed, passed on; NULL: none */
    uint64_t start_ns;
    int error_status;                /* framing/limit error found while parsing */
    const char *error_code;
    const char *error_msg;
    unsigned keep_alive : 1;
    unsigned head : 1;
    unsigned offloaded : 1;
    unsigned dispatched : 1;         /* a handler or hook may hold it */
    unsigned in_handler : 1;         /* hooks or the handler are on the stack */
    unsigned release_pending : 1;    /* finished while in_handler: release on return */
    unsigned te_count : 2;           /* Transfer-Encoding fields, saturating at 3 */
    unsigned te_other : 1;           /* a Transfer-Encoding other than "chunked" */
    unsigned host_count : 2;
    unsigned host_bad : 1;           /* a Host value that is no uri-host[:port] */
    unsigned prepared : 1;           /* ids and peer assigned */
    unsigned head_checked : 1;       /* routed, head hooks run */
    unsigned head_answered : 1;      /* ... and they wrote the response */
    unsigned discard_body : 1;       /* answered at the head: drop the body */
    unsigned client_gone : 1;        /* set by the transport: no one awaits the answer */
    unsigned client_eof : 1;         /* set by the transport: the client sent all it will
                                        (HTTP: a FIN); a chain takes it as gone (compose.c) */
    unsigned held : 1;               /* on its worker's held list (compose.c) */
    unsigned abandoned : 1;          /* answered at its deadline while its handler held it */
    size_t body_reserved;            /* of app->body_bytes, given back when freed */
    int mw_index;                    /* next before-hook to run */
    uv_work_t work;
    svc_outcome handler_rc;
    char *cache_key;                 /* cache.c's key, made on first use */
    const svc_req_ops *transport;    /* where it came from (module.h) */
    void *transport_data;            /* the transport's (HTTP: the connection) */
    svc_compose *compose;            /* compose.c's state, made on first use */
    /* A handler that returned plain SVC_ASYNC holds the request: it is on
     * its worker's held list until answered, for its deadline (compose.c). */
    svc_req *held_prev, *held_next;
    uint64_t held_deadline_ms;
    svc_res res;
    char peer_buf[48];               /* the peer, copied (a handler may outlive its connection) */
    /* Last, and not zeroed when a request is made: only ever read below
     * nhdr_parts, each slot written first (SVC_REQ_ZEROED says how much is). */
    size_t hdr_off[2 * SVC_HTTP_MAX_HEADERS + 2];  /* offsets into raw */
};

#define SVC_REQ_ZEROED offsetof(svc_req, hdr_off)

/* trace_export.c: OTLP/HTTP export of the span ring on a thread of its own. */
#define SVC_OTLP_ENDPOINT_MAX 512     /* bytes of OTEL_EXPORTER_OTLP_ENDPOINT */
#define SVC_OTLP_BATCH 512            /* spans per POST at most */
#define SVC_OTLP_INTERVAL_MS 1000     /* a partial batch waits at most this long */
#define SVC_OTLP_TIMEOUT_MS 2000      /* a POST without its answer by then is dropped */
typedef struct svc__otlp svc__otlp;
svc__otlp *svc__otlp_start(const char *endpoint); /* NULL: out of memory or no thread */
void svc__otlp_stop(svc__otlp *x);    /* sends what is left, joins (at most one POST's timeout) */

/* app.c */
svc_route_entry *svc__app_unmatched(svc_app *app);
/* What svc_app_run does before it touches the network: loads the
 * configuration, sets up logging, metrics, the builtin routes and, if a route
 * asks for it, token verification. 0, or the exit code for svc_app_run (2:
 * bad configuration, said on stderr; 1: other, logged). */
int svc__app_prepare(svc_app *app);
/* Frees the app and all it owns (not its workers' loops: they are closed). */
void svc__app_free(svc_app *app);
/* Raises *peak to v if v is higher (any thread); what the trim compares. */
void svc__peak_note(atomic_llong *peak, long long v);

/* A new app with no transport and no module (svc_app_new, in
 * src/svc/app_default.c, adds the defaults). Exits on out of memory. */
svc_app *svc__app_new(const char *name, int argc, char **argv);
/* Worker loop: 1 while a transport other than except still holds work on w
 * (a messaging transport waits for 0 before it closes: a handler of another
 * transport may still await one of its calls). */
int svc__worker_busy(svc_worker *w, const svc_transport *except);
/* Worker loop: once stopping and no transport is busy, closes the worker's
 * own handles so that its loop ends. Transports call it when they let go of
 * something (a connection closed). */
void svc__worker_maybe_exit(svc_worker *w);
/* The worker's buffer pool (w's loop thread only). take: gives b, if it
 * has no memory yet, an empty pooled buffer (no-op if the pool is empty).
 * give: puts b's memory back in the pool, or frees it (too large, out of
 * memory, pool full); b is zeroed either way. free: at worker exit. */
void svc__worker_buf_take(svc_worker *w, svc_buf *b);
void svc__worker_buf_give(svc_worker *w, svc_buf *b);
void svc__worker_buf_pool_free(svc_worker *w);
/* Frees what w keeps for its next requests: pooled arenas and buffers, its
 * log line. reopen: the pools take entries again (a test reusing w); else
 * they stay closed and what is given back later is freed (a worker exiting). */
void svc__worker_pools_free(svc_worker *w, int reopen);

/* dispatch.c */
/* Routing and the head hooks, run once per request, when its header section
 * is complete (conn.c, when a body follows) or else at dispatch: 1 if they
 * wrote the response, which svc__dispatch then finishes. */
int svc__dispatch_head(svc_req *req);
void svc__dispatch(svc_req *req);
/*
 * Where a request's code runs: between enter and exit, on this thread, log
 * lines carry its trace id and new spans (calls, publishes, outbox events,
 * SQL) are children of its server span, sampled or not. Handlers, hooks,
 * work on the thread pool, continuations, chain ends and deadline answers all
 * run inside one. It holds copies, as finishing may free the request. Scopes
 * nest; exit in the reverse order.
 */
typedef struct svc__req_scope {
    char trace_id[sizeof ((svc_req *)0)->trace_id];
    svc_trace_ctx tctx;
    const char *prev_trace_id;
    const svc_trace_ctx *prev_tctx;
} svc__req_scope;
void svc__req_scope_enter(svc__req_scope *sc, const svc_req *req);
void svc__req_scope_exit(svc__req_scope *sc);
/* Runs the remaining before-hooks and the handler (after async middleware). */
void svc__dispatch_continue(svc_req *req);
void svc__request_finish(svc_req *req);
/* Hands a finished request back to its transport, which frees it. */
void svc__request_release(svc_req *req);
/* A handler's (or continuation's) outcome other than SVC_ASYNC: checks it,
 * turning a contract error into a 500. */
void svc__handler_outcome(svc_req *req, svc_outcome rc);

/* compose.c */
/* A handler returned SVC_ASYNC: a step it set goes on (loop thread). */
void svc__compose_started(svc_req *req);
/* 1 when a step of req waits for its continuation. */
int svc__compose_waiting(const svc_req *req);
/* The request is freed: its calls in flight will find it gone. */
void svc__compose_release(svc_req *req);
/* The worker's tick: deadlines and clients gone away. */
void svc__compose_tick(svc_worker *w);
/* The worker is exiting: frees the requests answered at their deadline
 * whose handler never let go of them (no loop is left to answer from). */
void svc__compose_worker_exit(svc_worker *w);

/* request.c */
/* A request on worker w, from its arena pool; the transport sets
 * transport (and transport_data) before it dispatches it. */
svc_req *svc__req_new_worker(svc_worker *w);
void svc__req_free(svc_req *req);
/* What a transport calls at the end of its finish, instead of
 * svc__req_free: frees the request, unless its handler still holds it (it
 * was answered 504 at its deadline): then it is only detached from the
 * transport, and freed by the handler's svc_res_finish or at worker exit. */
void svc__req_done(svc_req *req);
int svc__req_headers_done(svc_req *req);
/* Notes a field in the request's index (hdr_expect & co) if it is one of
 * those and the first of its name; every transport calls it for each field,
 * in order. nlen is strlen(name). */
void svc__req_note_header(svc_req *req, const char *name, size_t nlen, const char *value);

/* response.c */
void svc__res_init(svc_res *res, svc_req *req);
/* Answers status with s as the body (a reference taken), as svc_res_body
 * would with a copy of its bytes. */
svc_outcome svc__res_shared(svc_res *res, int status, const char *content_type, svc__shared *s);
int svc__res_set_error(svc_res *res, int status, const char *code, const char *msg);
void svc__res_contract_error(svc_res *res, const char *what);
const char *svc__status_reason(int status);

/* encoding.c: gzip (see app.h) */
/* 1 if the request's Accept-Encoding fields give gzip (or x-gzip, else "*")
 * a nonzero q-value. */
int svc__accepts_gzip(const svc_req *req);
/* 1 for a Content-Type worth compressing: JSON (+json), text, JavaScript, XML. */
int svc__compressible(const char *content_type);
/* Appends data[0..len) gzip-compressed (level SVC_GZIP_LEVEL) to out:
 * SVC_OK, SVC_ENOMEM, or SVC_ERANGE (out unchanged) when that would not be
 * smaller. Uses a zlib stream kept per thread. */
int svc__gzip(const void *data, size_t len, svc_buf *out);
/* "abc" -> "abc-gzip" in a, for a strong tag; NULL for anything else. */
char *svc__etag_gzip(svc_arena *a, const char *etag);
/* Called by svc__request_finish once the response is final: compresses it
 * for the client, or leaves it plain, and sets Vary, Content-Encoding and the
 * ETag's form (app.h). */
void svc__res_encode(svc_req *req, svc_res *res);
/* Counts a response sent compressed: plain bytes became gz. */
void svc__compressed(const svc_app *app, size_t plain, size_t gz);
/* The first value of the response header name (any case), or NULL. */
const char *svc__res_header_get(const svc_res *res, const char *name);

/* conditional.c */
/* svc_req_preconditions for a resource whose 200 would be sent gzip (gz 1),
 * plain (0) or either (-1: not known). The 304 names the form the client
 * holds, or, when it holds both or matched by date, the one it would get;
 * varies: the 200 would carry Vary: Accept-Encoding, so the 304 does too. */
int svc__preconditions(svc_req *req, svc_res *res, const char *etag, int64_t last_modified, int gz, int varies);
/* IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") of secs; "" and 0 if out of
 * range. */
#define SVC__HTTP_DATE_MAX 32
size_t svc__http_date(int64_t secs, char out[SVC__HTTP_DATE_MAX]);
/* Parses an HTTP-date in any of its three forms (RFC 9110 5.6.7): SVC_OK
 * and the seconds since the epoch, or SVC_EINVAL. */
int svc__http_date_parse(const char *s, int64_t *out);

/* builtin.c */
void svc__builtin_routes(svc_app *app);
/* openapi.c: app->openapi from the routes and their declarations. */
int svc__openapi_build(svc_app *app);
/* schema.c: checks every route's declaration and compiles its patterns
 * (SVC_EINVAL with err naming the route and the problem); and validates a
 * request of a declared route, SVC_OK, or else with its 400 (or 415)
 * written. */
int svc__schema_prepare_app(svc_app *app, char *err, size_t errlen);
int svc__schema_request(svc_req *req);
void svc__access_log(svc_req *req, double seconds, size_t bytes);
void svc__metrics_observe(svc_req *req, double seconds);
/* 1 when /readyz would answer 200; else 0 with the failing check's name in
 * *check (NULL while draining) and its reason (NUL-terminated) in reason.
 * Runs the readiness checks: call on a worker loop. */
int svc__app_ready(svc_app *app, const char **check, char *reason, size_t reason_len);
void svc__metrics_setup(svc_app *app);
/* The entry a request is counted under: its label's, its route's, or the
 * app's "unmatched". */
svc_route_entry *svc__req_metric_route(svc_req *req);
/* The method label of a request: a method of SVC_METRIC_METHODS, the method
 * of the route it matched, or "other". */
const char *svc__metric_method(const svc_req *req);
/* Frees the declared route labels (app_free). */
void svc__route_labels_free(svc_app *app);

/* config.c */
int svc__config_load(svc_app *app, char *err, size_t errlen);
void svc__config_help(const svc_app *app, FILE *out);

#endif
