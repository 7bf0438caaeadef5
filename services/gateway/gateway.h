/*
 * gateway: the one public entry point. Internal interfaces between its files,
 * in reading order:
 *
 *   main.c       the app: catch-all routes, start-up, metrics, the CORS hook
 *   proxy.c      one request: limits, route, edge auth, forward over NATS,
 *                retry, reply
 *   config.c     the route table and settings (GATEWAY_CONFIG JSON), validated
 *   forward.c    what crosses the gateway: request and response header
 *                allow-lists, path re-encoding, idempotent methods
 *   cors.c       allowed origins and preflight answers
 *   breaker.c    a circuit breaker per service (lock-free, shared by workers)
 *   budget.c     the retry budget (per worker, sliding window)
 *   instances.c  live instances per service: the shared directory discovery
 *                fills, and each worker's copy it balances over
 *   discovery.c  the $SRV.PING scatter-gather (svc_msg_request_all) that keeps
 *                the directory fresh
 *   dashboard.c  /dashboard: the page, $SRV.LIVE rounds, snapshots, SSE
 *   live.c       what the dashboard keeps of one $SRV.LIVE answer
 *   openapi.c    /openapi.json: the services' documents, merged
 *   explorer.c   /docs: the API explorer, a page over /openapi.json
 *   page.c       what the pages share: security headers, embedded files
 *
 * config.c, forward.c, cors.c, breaker.c, budget.c, instances.c and live.c are pure
 * (no NATS, no loop): the unit tests in tests/unit/gateway compile them
 * directly. Times are passed in as milliseconds of a monotonic clock.
 */
#ifndef GATEWAY_H
#define GATEWAY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include "svckit.h"

/* ---- limits ---------------------------------------------------------------- */

#define GW_MAX_ROUTES 64
#define GW_MAX_SERVICES 32
/* Bytes of a route prefix: its metric label, the prefix and a '*', must be
 * a label value that is never cut. */
#define GW_MAX_PREFIX (SVC_METRIC_MAX_VALUE_LEN - 1)
#define GW_MAX_SERVICE_NAME 64       /* [A-Za-z0-9_-]{1,64}, as msg.h wants */
#define GW_MAX_ORIGINS 32
#define GW_MAX_ORIGIN 255            /* bytes of one allowed origin */
#define GW_CONFIG_MAX_BYTES (256 * 1024)
#define GW_MAX_TIMEOUT_MS 600000
#define GW_BUDGET_MAX_WINDOW_S 60
#define GW_MAX_INSTANCES 32          /* per service; more are not balanced over */
#define GW_INSTANCE_ID_MAX 63        /* bytes of an instance id (svckit's are 22) */
/* An instance that timed out or answered 5xx is skipped this long (per worker). */
#define GW_INSTANCE_SKIP_MS 2000
/* Discovery rounds an instance may miss before it is dropped (it is out of
 * rotation from the first: instances.c): one late PING answer under load
 * must not drop a live instance and move the calls it holds. */
#define GW_DISCOVERY_MISSES 2
/* How long one discovery round gathers PING answers. */
#define GW_DISCOVERY_GATHER_MS 100
/* Asked-for rounds (a service with no instance, an instance gone) are at
 * least this far apart, so a stream of requests to a missing service costs
 * NATS one PING per interval, not one per request. */
#define GW_DISCOVERY_MIN_GAP_MS 100
/* Times one request may be sent again because nobody received it (no
 * responders, or an instance answered that it is shutting down): free of
 * the retry budget, as nothing ran. The last one goes to the service's queue
 * subject, which only live instances listen on. */
#define GW_MAX_RESENDS 3
/* While a worker has calls in flight, it looks at the directory this often:
 * calls stranded on an instance that discovery dropped move even when no
 * new request comes to that worker to notice. */
#define GW_STRANDED_CHECK_MS 100

/* ---- configuration (config.c) --------------------------------------------- */

enum { GW_AUTH_NONE = 0, GW_AUTH_USER = 1, GW_AUTH_ADMIN = 2 };

typedef struct gw_route {
    char prefix[GW_MAX_PREFIX + 1];
    size_t prefix_len;
    /* Its requests' route label in the metrics: the prefix and a '*'
     * ("/products" gives "/products*"); declared at start
     * (svc_app_route_label). */
    char label[GW_MAX_PREFIX + 2];
    int service;                     /* index into gw_config.services */
    int auth;                        /* GW_AUTH_* */
    int timeout_ms;
    int retry;                       /* idempotent requests may be retried */
} gw_route;

typedef struct gw_config {
    gw_route routes[GW_MAX_ROUTES];  /* longest prefix first */
    int nroutes;
    char services[GW_MAX_SERVICES][GW_MAX_SERVICE_NAME + 1];
    int nservices;
    char origins[GW_MAX_ORIGINS][GW_MAX_ORIGIN + 1];
    int norigins;
    int cors_max_age_s;
    double rate_per_s;               /* per client; 0: no rate limit */
    double burst;
    int max_concurrency;             /* proxied requests in flight; 0: no cap */
    double retry_ratio;              /* retries / requests over the window */
    int retry_window_s;
    int breaker_failures;            /* consecutive failures that open it */
    int breaker_open_ms;
    int discovery_interval_ms;
} gw_config;

/* The built-in configuration, identical to deploy/gateway.json. */
extern const char gw_default_config[];

/*
 * Parses and validates a configuration document (see README.md for the
 * format). Strict: unknown keys, wrong types, out-of-range values, bad or
 * duplicate prefixes, bad service names and bad origins are refused. Returns
 * SVC_OK with *out filled, or SVC_EINVAL with a one-line reason naming the
 * offending field in err ("routes[2].timeout_ms: must be 1..600000").
 */
int gw_config_parse(const char *json, size_t len, gw_config *out, char *err, size_t errlen);
/* Reads and parses the file at path (NULL or "": the built-in table).
 * SVC_EINVAL with the reason in err, for an unreadable file too. */
int gw_config_load(const char *path, gw_config *out, char *err, size_t errlen);
/* The route for a normalised path: the longest prefix that matches, where a
 * prefix ending in '/' matches any path starting with it and any other
 * matches the path itself or the path followed by '/' ("/products" matches
 * "/products" and "/products/7", not "/productsX"). NULL if none. */
const gw_route *gw_route_find(const gw_config *c, const char *path);

/* ---- what crosses the gateway (forward.c) ---------------------------------- */

/* 1 if a request header of this name is passed to services. Every other
 * header is dropped: Svc-*, X-Forwarded-*, X-Real-IP, Forwarded and anything
 * unknown never reach a service from a client. */
int gw_forward_request_header(const char *name);
/* 1 if a service's reply header of this name is passed to the client. */
int gw_forward_response_header(const char *name);
/* The same list, NULL-terminated, Content-Type first. */
extern const char *const gw_response_headers[];
/* 1 if a request may be sent again after an attempt that may have run: its
 * method is idempotent (RFC 9110: GET, HEAD, PUT, DELETE, OPTIONS), and a
 * write carries no precondition (headers: "Name: value", NULL-terminated;
 * an If-Match write that ran once fails its condition the second time, and
 * the client would get 412 for a write that landed). */
int gw_may_run_twice(const char *method, const char *const *headers);
/*
 * Re-encodes a normalised, decoded path (svc_req_path) and a raw query
 * (svc_req_query_string) as the target svc_rpc_call wants: every path byte
 * outside RFC 3986 pchar and '/' percent-encoded, the query's bytes outside
 * printable ASCII (and space, '#') percent-encoded, joined by '?' when the
 * query is not empty. Returns an arena string, or NULL on out-of-memory.
 */
char *gw_target_encode(svc_arena *a, const char *path, const char *query);

/* ---- CORS (cors.c) ----------------------------------------------------------- */

#define GW_CORS_METHODS "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
#define GW_CORS_HEADERS "Authorization, Content-Type, Accept, If-None-Match, If-Match, X-Request-Id, traceparent"
#define GW_CORS_EXPOSE "X-Request-Id, ETag, Location, Retry-After, WWW-Authenticate"

/* 1 if origin (the Origin header, may be NULL) is one of the configured
 * origins, compared exactly (scheme and host are case-insensitive). */
int gw_cors_allowed(const gw_config *c, const char *origin);
/* 1 if the request is a CORS preflight: OPTIONS with Origin and
 * Access-Control-Request-Method. */
int gw_cors_is_preflight(const char *method, const char *origin, const char *request_method);

/* ---- circuit breaker (breaker.c) ------------------------------------------- */

enum { GW_BREAKER_CLOSED = 0, GW_BREAKER_OPEN = 1, GW_BREAKER_HALF_OPEN = 2 };
enum { GW_OUTCOME_SUCCESS, GW_OUTCOME_FAILURE, GW_OUTCOME_NEUTRAL };

/*
 * Closed -> open after `failures` consecutive failed requests -> (fail fast)
 * -> half-open once open_ms have passed: exactly one trial request goes
 * through -> closed if it succeeds, open again if it fails, half-open
 * waiting for a new trial if it ended neutral (the gateway's own NATS was
 * down). State and open time share one atomic word, so transitions are
 * single compare-and-swaps: any thread, no lock.
 */
typedef struct gw_breaker {
    _Atomic uint64_t word;           /* opened_ms << 3 | state */
    atomic_int failures;             /* consecutive, while closed */
    int threshold;
    int open_ms;
} gw_breaker;

void gw_breaker_init(gw_breaker *b, int threshold, int open_ms);
/* May a request go through now? 1 yes (*trial set to 1 when it is the
 * half-open trial, whose gw_breaker_record decides the state), 0 fail fast. */
int gw_breaker_allow(gw_breaker *b, uint64_t now_ms, int *trial);
/* A request's final outcome (GW_OUTCOME_*), with the trial flag allow gave. */
void gw_breaker_record(gw_breaker *b, int outcome, int trial, uint64_t now_ms);
/* GW_BREAKER_CLOSED, _OPEN or _HALF_OPEN. */
int gw_breaker_state(const gw_breaker *b);

/* ---- retry budget (budget.c) ----------------------------------------------- */

/*
 * Retries may be at most ratio x requests over the last window_s seconds:
 * per-second buckets, so the window slides a second at a time. One budget
 * per service per worker (no sharing, no lock); as each worker's retries stay
 * within its own requests' ratio, so do the process's.
 */
typedef struct gw_budget {
    double ratio;
    int window_s;
    uint64_t second[GW_BUDGET_MAX_WINDOW_S];
    uint32_t requests[GW_BUDGET_MAX_WINDOW_S];
    uint32_t retries[GW_BUDGET_MAX_WINDOW_S];
} gw_budget;

void gw_budget_init(gw_budget *b, double ratio, int window_s);
/* Counts one request. */
void gw_budget_request(gw_budget *b, uint64_t now_ms);
/* 1 and counts the retry if one more keeps retries <= ratio x requests. */
int gw_budget_take(gw_budget *b, uint64_t now_ms);

/* ---- instances (instances.c) ------------------------------------------------ */

/*
 * The directory: live instance ids per configured service, written by
 * discovery (and by workers that saw an instance vanish), read by workers.
 * A mutex guards it, but workers only take it when `version` moved, i.e.
 * when an instance came or went: the request path reads one atomic.
 */
typedef struct gw_dir_entry {
    char id[GW_INSTANCE_ID_MAX + 1];
    int misses;                      /* discovery rounds without an answer;
                                        > 0: silent, sent nothing new */
    int leaving;                     /* said it drains: answers what it has,
                                        is sent nothing new, dropped once it
                                        stops answering PINGs */
} gw_dir_entry;

typedef struct gw_directory {
    pthread_mutex_t mu;
    atomic_uint version;
    int nservices;
    gw_dir_entry entries[GW_MAX_SERVICES][GW_MAX_INSTANCES];
    int count[GW_MAX_SERVICES];
    atomic_int wanted;               /* a worker asked for a round now */
} gw_directory;

/* Bytes of a discovery answer we read. */
#define GW_PING_MAX_BYTES (64 * 1024)

/* The service name and instance id of a $SRV.PING answer
 * (io.nats.micro.v1.ping_response), copied into name and id: 1, or 0 if data
 * is not such an answer, or its name or id does not fit, or the id is not
 * [A-Za-z0-9_-]{1,} (ids end up in subjects). */
int gw_ping_parse(const char *data, size_t len, char *name, size_t namelen, char *id, size_t idlen);

void gw_directory_init(gw_directory *d, int nservices);
void gw_directory_destroy(gw_directory *d);
/* The service and instance of a leave notice's subject
 * (SVC_MSG_LEAVE_PREFIX.<service>.<id>), copied into name and id: 1, or 0 if
 * the subject is not one, or a part does not fit or is not
 * [A-Za-z0-9_-]{1,}. */
int gw_leave_parse(const char *subject, char *name, size_t namelen, char *id, size_t idlen);

/* One discovery round's answers for service: ids seen (n of them) are kept or
 * added, those missing this round silent (picked no more until they answer
 * again), those missing more than GW_DISCOVERY_MISSES rounds in a row dropped.
 * Returns the number of instances now known (leaving ones included). */
int gw_directory_update(gw_directory *d, int service, const char *const *ids, int n);
/* An instance is certainly gone (no responders on its own subject). */
void gw_directory_forget(gw_directory *d, int service, const char *id);
/* An instance is leaving (its leave notice, or a draining reply): marked so,
 * or added marked when unknown, so that a PING answer it still gives does
 * not bring it back into rotation. */
void gw_directory_leave(gw_directory *d, int service, const char *id);
/* Instances of service that are neither leaving nor silent. */
int gw_directory_count(gw_directory *d, int service);

/* A worker's view of one service: its own copy of the ids, where it is in the
 * rotation, and which instances it is skipping after a failure. */
typedef struct gw_pool {
    struct {
        char id[GW_INSTANCE_ID_MAX + 1];
        uint64_t skip_until_ms;
        int leaving;                 /* never picked; calls on it wait for it */
        int silent;                  /* missed the last discovery round: never picked */
    } inst[GW_MAX_INSTANCES];
    int n;
    unsigned next;
} gw_pool;

typedef struct gw_pools {
    unsigned version;                /* of the directory copied */
    int nservices;
    gw_pool pool[GW_MAX_SERVICES];
} gw_pools;

/* Copies the directory into the pools if it changed, keeping skip marks of
 * instances still present. Cheap when nothing changed (one atomic load).
 * Returns 1 when it copied, 0 when nothing changed. */
int gw_pools_sync(gw_pools *p, gw_directory *d);
/* 1 if id is in this worker's pool of service (leaving or not). */
int gw_pool_has(const gw_pools *p, int service, const char *id);
/* Instances of service in this worker's pool that are not leaving. */
int gw_pool_live(const gw_pools *p, int service);
/*
 * Round robin over the instances of service that are not leaving or silent, not being
 * skipped and are not `exclude` (may be NULL). Returns the id (owned by the pool, valid
 * until the next sync: copy it) or NULL when there is none, in which case
 * the caller uses the service's queue subject.
 */
const char *gw_pool_pick(gw_pools *p, int service, uint64_t now_ms, const char *exclude);
/* Skip this instance for GW_INSTANCE_SKIP_MS. */
void gw_pool_skip(gw_pools *p, int service, const char *id, uint64_t now_ms);
/* Removes it from this worker's pool at once (no responders). */
void gw_pool_remove(gw_pools *p, int service, const char *id);

/* ---- discovery (discovery.c) ------------------------------------------------ */

/* Schedules discovery on the first worker's loop: a $SRV.PING round every
 * discovery_interval_ms, and sooner when a worker asks. From on_start.
 * SVC_OK (also when NATS_URL=none: no discovery) or SVC_ERR. */
int gw_discovery_start(svc_app *app, const gw_config *c, gw_directory *d);
/* Asks for a round now (any thread; cheap; rounds stay GW_DISCOVERY_MIN_GAP_MS apart). */
void gw_discovery_wake(gw_directory *d);
/* After the workers stopped. */
void gw_discovery_stop(void);
/* Subscribes to the services' leave notices (SVC_MSG_LEAVE_PREFIX.>), which
 * mark an instance leaving at once. Before svc_app_run. */
int gw_discovery_listen(svc_app *app);

/* ---- the pages: /dashboard and /docs (page.c) -------------------------------------- */

/* A file of a page, compiled into the binary: the tables (gw_dashboard_files,
 * gw_explorer_files) are generated by tools/svckit/embed.sh from the page's
 * folder, services/gateway/dashboard/ or explorer/. */
typedef struct gw_file {
    const char *path;           /* "index.html", "app.js", "app.css" */
    const unsigned char *data;  /* NUL-terminated */
    size_t len;
} gw_file;

/* Adds the headers every response of a page carries: a strict
 * Content-Security-Policy (the page's own script, style and requests only;
 * nothing inline, no framing), nosniff, no Referer. Caching is the page's. */
void gw_page_headers(svc_res *res);
/* Answers with the file `name` of files (count entries), its Content-Type
 * from its extension; 404 when there is none. etag (quoted, strong) or
 * NULL: with one, Cache-Control: no-cache, the ETag, and 304 to a request
 * whose If-None-Match names it. */
svc_outcome gw_page_send(svc_req *req, svc_res *res, const gw_file *files, size_t count, const char *name,
                         const char *etag);

/* ---- the dashboard (dashboard.c, live.c) ------------------------------------------ */

#define GW_DASH_INTERVAL_MS 1000      /* a $SRV.LIVE round, and a snapshot, this often */
#define GW_DASH_GATHER_MS 500         /* how long a round gathers answers */
#define GW_DASH_IDLE_MS 10000         /* rounds go on this long after the last page or snapshot */
#define GW_DASH_MAX_STREAMS 16        /* event streams at once; more are answered 503 */
#define GW_DASH_KEEPALIVE_MS 15000    /* a comment line on a stream with nothing new */
/* A stream whose reader took nothing for this long is ended: its writes
 * are refused once the transport holds SVC_OUTPUT_HIGH_WATER (1 MiB)
 * unsent, which with one snapshot is all a stream ever buffers. */
#define GW_DASH_STALL_MS 60000
#define GW_DASH_MAX_INSTANCES 256     /* answers kept per round; more are dropped, counted */
#define GW_DASH_MAX_ROUND_BYTES (8 * 1024 * 1024) /* bytes of answers kept per round */
#define GW_LIVE_MAX_BYTES (256 * 1024)/* one answer larger than this is dropped */
#define GW_LIVE_STR_MAX 128           /* bytes kept of any string of an answer */
#define GW_DASH_TOKEN_MIN 16          /* DASHBOARD_TOKEN bytes */
#define GW_DASH_TOKEN_MAX 256
#define GW_DASH_COOKIE "svckit_dashboard" /* set by /dashboard?token=DASHBOARD_TOKEN */

/* The page's files (services/gateway/dashboard/), generated by embed.sh. */
extern const gw_file gw_dashboard_files[];
extern const size_t gw_dashboard_files_count;

/* A $SRV.LIVE answer (hostile bytes) reduced to a new object of its known
 * fields, typed and capped (live.c); NULL when it is not a live answer. */
json_t *gw_live_clean(const char *data, size_t len);

#define GW_TRACE_GATHER_MS 300        /* how long a traces request gathers answers */
#define GW_TRACE_MAX_REPLY_BYTES (1024 * 1024) /* one instance's span answer (256 spans is ~100 KB) */
#define GW_TRACE_MAX_BYTES (8 * 1024 * 1024)   /* answers read per traces request */
#define GW_TRACE_MAX_SPANS 8192       /* spans kept per traces request */
#define GW_TRACE_LIST 20              /* traces in each of the recent and slowest lists */
#define GW_TRACE_MAX_GATHERS 8        /* traces requests gathering at once; more are answered 503 */

/* One span of a traces request as kept: ids, times and offsets of its
 * strings in the request's text. Measured with 8192 spans of 256-span
 * answers: 138 bytes a span with its strings, where a jansson object of the
 * same fields took 1.8 KB (1.1 MB against 14.7 MB a request). */
typedef struct gw_span {
    char trace_id[33], span_id[17], parent_id[17]; /* lowercase hex; parent_id "" for a root */
    int error;
    int64_t start_ns, duration_ns;  /* >= 0 */
    uint32_t service, instance, name, kind; /* offsets into gw_spans.text; 0: absent */
} gw_span;

/* The spans of a traces request. Zero-initialise; gw_spans_free. */
typedef struct gw_spans {
    gw_span *v;
    size_t n, cap;
    svc_buf text; /* the spans' strings, NUL-terminated, from offset 1 */
} gw_spans;

/* The string at offset off of the spans' text; "" when absent. */
const char *gw_span_str(const gw_spans *s, uint32_t off);
void gw_spans_free(gw_spans *s);

/* The spans of one svckit.trace answer (hostile bytes, docs/observability.md)
 * appended to into as records of their known fields (ids checked as hex,
 * times non-negative integers, strings cut like gw_live_clean's, each with the
 * answer's service and instance), only those of trace_id when it is not NULL,
 * until into holds max. Returns how many were appended (0 for a bad answer,
 * or out of memory). */
size_t gw_trace_clean(const char *data, size_t len, const char *trace_id, gw_spans *into, size_t max);

typedef struct gw_state gw_state;
/* Declares DASHBOARD_TOKEN and the /dashboard routes. Before svc_app_run. */
void gw_dashboard_routes(svc_app *app);
/* openapi.c: GET /openapi.json, the merged document of the services' routes
 * the route table exposes (asked of each service when requested). */
void gw_openapi_route(svc_app *app);
/* explorer.c: GET /docs, the API explorer (its files: gw_explorer_files,
 * from services/gateway/explorer/), open to anyone. Before svc_app_run. */
void gw_explorer_routes(svc_app *app);
extern const gw_file gw_explorer_files[];
extern const size_t gw_explorer_files_count;
/* Reads DASHBOARD_TOKEN: SVC_EINVAL, logged, when malformed. From on_start,
 * before anything is allocated. */
int gw_dashboard_config(svc_app *app);
/* Starts the rounds on the first worker's loop. From on_start, after edge
 * auth. */
int gw_dashboard_start(svc_app *app, gw_state *g);
/* Frees the snapshot, after the workers stopped. */
void gw_dashboard_stop(void);

/* ---- the proxy (proxy.c) ------------------------------------------------------ */

/* Outcomes of one call to a service; GW_UP_DRAINING: a 503 with
 * Svc-Draining (the instance shuts down and did not run the request). */
enum { GW_UP_OK, GW_UP_ERROR_5XX, GW_UP_NO_RESPONDERS, GW_UP_TIMEOUT, GW_UP_CLOSED, GW_UP_ERROR, GW_UP_DRAINING,
       GW_UP_COUNT };

/* Everything the request path reads, built once by main.c's on_start. */
typedef struct gw_metrics {
    svc_series *retries, *resends, *moved, *budget_exhausted, *rate_limited, *concurrency_rejected, *requests;
    svc_series *breaker_rejected[GW_MAX_SERVICES];
    /* gateway_upstream_requests_total{service,outcome}, by GW_UP_* */
    svc_series *upstream[GW_MAX_SERVICES][GW_UP_COUNT];
    /* gauges set at scrape time (main.c's collect) */
    svc_series *breaker_state[GW_MAX_SERVICES];
    svc_series *instances[GW_MAX_SERVICES];
} gw_metrics;


typedef struct gw_state {
    gw_config cfg;
    svc_app *app;
    svc_ratelimit *rl;               /* NULL: no rate limit */
    atomic_int inflight;
    pthread_mutex_t workers_mu;      /* guards workers (proxy.c) */
    struct gw_worker *workers;       /* every worker thread's proxy state */
    gw_breaker breakers[GW_MAX_SERVICES];
    gw_directory dir;
    int dir_ready;
    gw_metrics m;
    int auth_installed;
} gw_state;

/* The catch-all route of every method, and its handler (SVC_ASYNC). */
#define GW_PROXY_ROUTE "/*path"
svc_outcome gw_proxy(svc_req *req, svc_res *res);
/* The head hook: rate limit and edge auth, before the body is read. */
svc_outcome gw_edge_check(svc_req *req, svc_res *res, void *ud);
/* The after-hook that adds CORS headers for allowed origins. */
void gw_cors_after(svc_req *req, svc_res *res, void *ud);
/* Frees the per-worker states (after the workers stopped). */
void gw_proxy_release(gw_state *g);
/* Milliseconds of the monotonic clock. */
uint64_t gw_now_ms(void);

#endif
