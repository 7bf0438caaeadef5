/*
 * Internal to src/msg: NATS for svckit. Reading order: conn.c (the
 * connection, its callbacks, the hand-off of messages to the worker loops, the
 * life cycle hooks app.c calls), request.c (a NATS request becomes an svc_req;
 * its response becomes the reply), subject.c (the subject scheme and every
 * validation of outside input, pure functions), rpc.c (svc_rpc_call),
 * events.c (publish and subscribe), jetstream.c (streams, durable
 * consumers), discovery.c ($SRV.PING/INFO/STATS).
 *
 * Threads: libnats delivers messages on its own threads (the global delivery
 * pool); the callbacks only validate cheaply and queue the message on one
 * worker's msg_worker, then wake the loop with uv_async_send. Everything
 * after that (dispatch, handlers, RPC replies and timers) runs on the worker
 * loop, like HTTP. Discovery answers directly on the delivery thread (it only
 * reads atomics). JetStream consumers fetch on one thread each.
 */
#ifndef SVC_MSG_INTERNAL_H
#define SVC_MSG_INTERNAL_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>

#include "http/internal.h"
#include "svckit/msg.h"

/* Bytes of queued messages per subscription before drops (with the count
 * limit SVC_MSG_MAX_PENDING_PER_SUB), in libnats and again in our queues. */
#define SVC_MSG_MAX_PENDING_BYTES_PER_SUB (64 * 1024 * 1024)
/* Items a worker takes from each queue per wake-up before it lets the loop
 * serve other I/O: an event flood never starves requests or HTTP. */
#define SVC_MSG_BATCH 64
#define SVC_MSG_INSTANCE_ID_LEN 22
/* Longest subject we build, publish to or subscribe to. */
#define SVC_MSG_MAX_SUBJECT 512
#define SVC_MSG_MAX_METHOD 16
/* A Svc-Client longer than this, or with other than address bytes, is ignored. */
#define SVC_MSG_MAX_CLIENT 64
#define SVC_MSG_FETCH_BATCH 32
#define SVC_MSG_FETCH_WAIT_MS 500
/* Messages of one JetStream consumer being handled at once per instance
 * (also the consumer's MaxAckPending). */
#define SVC_MSG_STREAM_INFLIGHT 256
#define SVC_MSG_RPC_BUCKETS 1024
/* Drop and error lines: at most one per reason per interval (with a count). */
#define SVC_MSG_LOG_INTERVAL_MS 1000
/* While draining, how often a worker checks whether it may close its handles. */
#define SVC_MSG_DRAIN_POLL_MS 20
/* SVC_OFFLOAD event and stream handlers of one subscription running at once
 * on the thread pool, per worker: a flood on one subscription cannot fill the
 * pool that offloaded HTTP routes and other subscriptions share, and one
 * subject's events stay in order. */
#define SVC_MSG_OFFLOAD_PER_SUB 1
/* At stop, how long we wait in all for drained subscriptions and queued
 * replies to reach the server. */
#define SVC_MSG_FLUSH_TIMEOUT_MS 1000
/* libnats's own limit for one subscription's drain. */
#define SVC_MSG_DRAIN_TIMEOUT_MS 2000

typedef struct svc_msg svc_msg;
typedef struct msg_worker msg_worker;
typedef struct msg_sub msg_sub;

/* Reasons for nats_messages_dropped_total{reason}. */
enum {
    DROP_NO_REPLY,      /* a request without a reply subject */
    DROP_OVERFLOW,      /* our per-subscription queue was full */
    DROP_SLOW_CONSUMER, /* libnats's pending limit was hit */
    DROP_EXPIRED,       /* Svc-Deadline already passed */
    DROP_LATE_REPLY,    /* an RPC reply after its deadline */
    DROP_SHUTDOWN,      /* arrived while the worker was closing */
    DROP_MALFORMED,     /* an event or reply we could not read */
    DROP_REASONS
};

/* A declared endpoint, for discovery: one per route, plus "http" and
 * "instance". Counters are updated from any thread. */
typedef struct msg_endpoint {
    char name[96];
    char subject[SVC_MSG_MAX_SUBJECT];
    const char *queue;               /* NULL: none */
    svc_route_entry *route;          /* NULL for http / instance */
    atomic_llong requests, errors, time_ns;
    atomic_llong nats_requests;      /* of requests, how many came over NATS */
    atomic_int last_error;           /* status of the last 5xx, 0: none */
} msg_endpoint;

enum { SUB_ROUTE, SUB_HTTP, SUB_DISCOVERY, SUB_EVENT, SUB_INBOX };

typedef struct msg_event_reg {
    char *subject;
    char *queue;                     /* NULL: none */
    svc_event_fn handler;
    unsigned flags;
    void *ud;
    struct msg_event_reg *next;
} msg_event_reg;

typedef struct msg_stream_def {
    char *name;
    char **subjects;
    int nsubjects;
    int64_t duplicate_window_ms;
    struct msg_stream_def *next;
} msg_stream_def;

typedef struct msg_consumer {
    svc_msg *m;
    char *stream, *subject, *durable;
    int ack_wait_ms;
    int slot;                        /* index into msg_worker.slots */
    svc_event_fn handler;
    unsigned flags;
    void *ud;
    pthread_t thread;
    int started;
    atomic_int stop;
    atomic_int inflight;             /* handed to a loop, not yet acked */
    pthread_mutex_t lock;
    pthread_cond_t cond;             /* signalled when inflight drops */
    struct msg_consumer *next;
} msg_consumer;

struct msg_sub {
    svc_msg *m;
    int kind;
    char subject[SVC_MSG_MAX_SUBJECT];
    const char *queue;
    msg_endpoint *ep;                /* SUB_ROUTE, SUB_HTTP */
    const char *default_path;        /* SUB_ROUTE without parameters, else NULL */
    msg_event_reg *ev;               /* SUB_EVENT */
    msg_worker *owner;               /* SUB_INBOX */
    natsSubscription *sub;
    atomic_long queued;              /* in our queues or being handled */
    atomic_llong queued_bytes;
    int slot;                        /* SUB_EVENT: index into msg_worker.slots */
    atomic_llong dropped_seen;       /* libnats's drop count already counted */
    struct msg_sub *next;
};

enum { ITEM_MSG, ITEM_STREAM, ITEM_RPC };

typedef struct msg_item {
    struct msg_item *next;
    int kind;
    natsMsg *msg;
    msg_sub *sub;                    /* ITEM_MSG */
    void *ptr;                       /* ITEM_STREAM: msg_consumer; ITEM_RPC: rpc_call */
    size_t bytes;
} msg_item;

typedef struct rpc_call rpc_call;
struct ev_run;

/* Offloaded handlers of one subscription on one worker (loop thread only). */
typedef struct offload_slot {
    int running;
    struct ev_run *head, *tail;      /* waiting for a turn */
} offload_slot;

struct msg_worker {
    svc_msg *m;
    svc_worker *w;
    int id;
    pthread_mutex_t lock;            /* the queues and the two flags below */
    msg_item *hi_head, *hi_tail;     /* requests, replies, calls */
    msg_item *lo_head, *lo_tail;     /* events, stream messages */
    int ready;                       /* async initialised: wake-ups allowed */
    int closed;                      /* handles closing: pushes refused */
    uv_async_t async;
    uv_timer_t drain_timer;
    uv_thread_t tid;
    atomic_int draining, forced;     /* set by the main thread */
    int drain_started;
    long inflight;                   /* requests and events being handled (loop) */
    /* RPC: "_INBOX.<nuid>"; replies come to <inbox>.<seq>. */
    char inbox[64];
    msg_sub *inbox_sub;
    uint64_t rpc_seq;
    rpc_call *calls[SVC_MSG_RPC_BUCKETS];
    long ncalls;
    offload_slot *slots;             /* one per event subscription and consumer */
    int nslots;
};

struct svc_msg {
    svc_app *app;
    int enabled;                     /* NATS_URL is not "none" (set up) */
    atomic_int started;              /* subscriptions made */
    atomic_int streams_dirty;        /* stream definitions to (re)apply */
    natsConnection *nc;
    natsOptions *opts;
    jsCtx *js;
    atomic_int connected;
    atomic_int draining;
    atomic_int closing;              /* svc__msg_stop began: quiet callbacks */
    char instance[SVC_MSG_INSTANCE_ID_LEN + 1];
    int64_t started_ms;              /* wall clock at setup, for STATS */
    msg_worker *workers;
    int nworkers;
    atomic_uint rr;
    msg_sub *subs;                   /* built by start, freed by stop */
    atomic_int subs_live;            /* subscriptions libnats has not completed */
    msg_endpoint *endpoints;
    int nendpoints;
    msg_event_reg *events;           /* registered before run */
    msg_consumer *consumers;
    pthread_mutex_t streams_lock;
    msg_stream_def *streams;
    /* Metrics. */
    svc_series *s_connected;
    svc_series *s_reconnects;
    svc_series *s_dropped[DROP_REASONS];
    svc_series *s_publish_failed;
    svc_metric *m_rpc;
    svc_metric *m_nats_requests;
    atomic_llong last_log_ms[DROP_REASONS + 2];
};

/* ---- subject.c: the scheme and the validation of outside input ---------- */

/* Service names, as used in subjects and discovery: [A-Za-z0-9_-]{1,64}. */
int svc__msg_name_ok(const char *name);
/*
 * Writes the subject of one route (see msg.h) to out: svc.<service>.<METHOD>
 * then one token per segment of pattern. SVC_OK; SVC_EINVAL for a bad
 * service, method or pattern; SVC_ERANGE when out is too small.
 */
int svc__msg_route_subject(const char *service, const char *method, const char *pattern,
                           char *out, size_t outlen);
/* The discovery endpoint name of a route: METHOD-seg-seg, [A-Za-z0-9_-]. */
void svc__msg_endpoint_name(const char *method, const char *pattern, char *out, size_t outlen);
/*
 * A subject for publishing (wildcards 0) or subscribing (wildcards 1): 1 to
 * SVC_MSG_MAX_SUBJECT bytes of printable ASCII without spaces, tokens
 * separated by single dots, no empty token. A token that is exactly "*" or
 * ">" is a wildcard: refused for publishing; for subscribing "*" anywhere and
 * ">" last. Inside a longer token both are plain bytes, as NATS reads them.
 * SVC_OK or SVC_EINVAL.
 */
int svc__msg_subject_check(const char *s, int wildcards);
/* SVC_OK if list is a comma-separated list of nats:// or tls:// URLs with a
 * non-empty, printable, space-free rest (NATS_URL; config.c uses it). */
int svc__msg_url_check(const char *list);
/* A queue group name: 1..SVC_MSG_MAX_SUBJECT printable bytes, no space. */
int svc__msg_queue_check(const char *s);
/* A JetStream stream or durable name: [A-Za-z0-9_-]{1,64}. */
int svc__msg_js_name_ok(const char *s);

/*
 * Svc-Path: an absolute, already normalised, percent-encoded path. Refused
 * (SVC_EINVAL): empty, not starting with '/', longer than max, a byte outside
 * RFC 3986 pchar and '/', a bad %-escape, an escape decoding to '/', NUL or
 * a control byte, an empty segment before the last ("//"), or a "." or ".."
 * segment, whether written plainly or escaped.
 */
int svc__msg_path_check(const char *p, size_t len, size_t max);
/* Svc-Query: printable ASCII other than space and '#', at most max bytes. */
int svc__msg_query_check(const char *q, size_t len, size_t max);
/* Svc-Method: 1..SVC_MSG_MAX_METHOD upper-case letters. */
int svc__msg_method_check(const char *m);
/* A header field name (RFC 9110 token) and value (no control bytes but tab). */
int svc__msg_header_name_ok(const char *s);
int svc__msg_header_value_ok(const char *s);
/* 1 if v is a valid Svc-Deadline (ms since the epoch) earlier than now_ms. */
int svc__msg_deadline_passed(const char *v, int64_t now_ms);
/* 1 if v is a plausible address for Svc-Client (hex digits, '.', ':', '[', ']'). */
int svc__msg_client_ok(const char *v);

/* ---- request.c ------------------------------------------------------------- */

/* A NATS request as seen by svc__msg_req_fill: header pairs and payload. */
typedef struct svc__msg_in {
    const char *const *names;
    const char *const *values;
    size_t nhdrs;
    const char *data;
    size_t len;
    const char *route_method;        /* per-route subject: its method, else NULL */
    const char *default_path;        /* per-route subject without parameters */
} svc__msg_in;

typedef struct svc__msg_limits {
    size_t max_headers;
    size_t max_header_bytes;
    size_t max_body;
} svc__msg_limits;

/*
 * Fills req (which needs only its arena; the rest zeroed) from a NATS
 * request: method, request target (req->raw, url_len), headers, body, peer,
 * head. Returns 0, or the HTTP status the request must be answered with
 * (400, 405, 413, 431 or 503), having stored status, code and message in
 * req->error_* so svc__dispatch answers it. Never reads past the arrays.
 */
int svc__msg_req_fill(svc_req *req, const svc__msg_in *in, const svc__msg_limits *lim);

/* Turns a queued NATS request into a dispatched svc_req (loop thread). */
void svc__msg_handle_request(msg_worker *mw, msg_sub *s, natsMsg *msg);
/* Publishes a bare error reply (when no request can be made). Any thread. */
void svc__msg_reply_error(svc_msg *m, natsMsg *req, int status, const char *code, const char *message);
/* The after-hook that counts requests per route for discovery. */
void svc__msg_after_hook(svc_req *req, svc_res *res, void *ud);

/* ---- conn.c ---------------------------------------------------------------- */

svc_msg *svc__msg_get(svc_app *app);   /* creates the state on first use */
/* Queues an item on a worker; SVC_ECLOSED if that worker is closing (the
 * caller keeps the item). hi: the request class. Any thread. */
int svc__msg_push(msg_worker *mw, msg_item *it, int hi);
msg_worker *svc__msg_pick(svc_msg *m);        /* round robin */
void svc__msg_drop(svc_msg *m, int reason, const char *fmt, ...) SVC_PRINTF(3, 4);
/* Logs at most once per SVC_MSG_LOG_INTERVAL_MS for slot (rate limit). */
int svc__msg_log_allowed(svc_msg *m, int slot);
/* Frees the log buffer of a thread that is not a worker loop (libnats's). */
void svc__msg_log_release(svc_msg *m);
/* A loop finished one handled item: maybe close the worker (draining). */
void svc__msg_worker_done(msg_worker *mw);
/* The loop the caller is on, or NULL. */
msg_worker *svc__msg_current(svc_msg *m);
natsStatus svc__msg_subscribe(svc_msg *m, msg_sub *s);
const char *svc__msg_drop_reason(int reason);
/* A header of msg by case-insensitive name (first value), or NULL. */
const char *svc__msg_header(natsMsg *msg, const char *name);

/* ---- rpc.c / events.c / jetstream.c / discovery.c -------------------------- */

void svc__rpc_start_call(msg_worker *mw, rpc_call *c);   /* loop thread */
void svc__rpc_on_reply(msg_worker *mw, natsMsg *msg);    /* loop thread */
void svc__rpc_fail_all(msg_worker *mw, int err);         /* loop thread */
void svc__rpc_free_call(rpc_call *c);                    /* never started */
/* Maps a libnats publish status to ours, counting failures. */
int svc__msg_publish_status(svc_msg *m, natsStatus s);
void svc__event_handle(msg_worker *mw, msg_sub *s, natsMsg *msg);
void svc__stream_handle(msg_worker *mw, msg_consumer *c, natsMsg *msg);
int svc__js_apply_streams(svc_msg *m);
void svc__js_start(svc_msg *m);
/* Tells the fetch threads to stop; join: also waits for them. */
void svc__js_stop(svc_msg *m, int join);
void svc__discovery_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);
int svc__discovery_subscribe(svc_msg *m);
/* The JSON document for verb (PING, INFO or STATS) into out. */
void svc__discovery_doc(svc_msg *m, const char *verb, svc_buf *out);

#endif
