/*
 * Internal to src/msg: the NATS transport of svckit. Reading order:
 * net/nats.h (the protocol client below: one connection on one libuv loop),
 * conn.c (a connection per worker loop, the transport's hooks the runtime
 * calls, svc__nats_transport, the hand-off from other threads), request.c (a NATS request becomes an svc_req; its response
 * becomes the reply), subject.c (the subject scheme and every validation of
 * outside input, pure functions), rpc.c (svc_rpc_call, and the request-reply
 * that JetStream uses), events.c (publish and subscribe), jetstream.c
 * (streams, durable pull consumers), discovery.c ($SRV.PING/INFO/STATS).
 *
 * Threads: each worker loop owns one NATS connection. The server delivers a
 * request to one connection of the queue group; that worker handles it and
 * publishes the reply on the same connection, with no thread hop.
 * svc_rpc_call publishes on the caller's loop and gets its reply there;
 * svc_msg_request_all (scatter-gather) is the same call, kept for a window.
 *
 * Which connection subscribes to what:
 *   every worker   route subjects, svc.<service>.http (queue group <service>),
 *                  svc.<service>.<id>.http (queue group <id>: once per
 *                  instance), and its own RPC inbox _INBOX.<service>.<random>.*
 *   worker 0 only  discovery $SRV.* (answered once per instance), events
 *                  (both kinds: the server delivers one subject's events in
 *                  order on one connection, and msg.h promises that order;
 *                  each event is then handed to the loop its subject hashes
 *                  to, as before), JetStream fetches and acks.
 * Other threads (thread-pool handlers) publish, call and use JetStream by
 * queueing an item on a worker (a mutex-protected list + uv_async_send);
 * the blocking JetStream calls wait on a condition variable.
 *
 * Readiness: ready while every worker's connection is up (a request or call
 * can land on any worker) and worker 0's subscriptions are confirmed (the
 * others hold their publishes until then); /readyz says "nats" otherwise.
 */
#ifndef SVC_MSG_INTERNAL_H
#define SVC_MSG_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "net/natsenv.h"
#include "net/nats.h"
#include "runtime/internal.h"
#include "svckit/msg.h"

/* Bytes of queued messages per subscription before drops (with the count
 * limit SVC_MSG_MAX_PENDING_PER_SUB). */
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
#define SVC_MSG_FETCH_BATCH 16
/* A pull (CONSUMER.MSG.NEXT) waits at most this long on the server. One
 * still open SVC_MSG_FETCH_RENEW_MS before that is replaced by a new pull:
 * a pull that expires while messages arrive can end on the server without
 * its 408 (seen with nats-server 2.9: the consumer then got nothing until
 * a watchdog 1.5 s later), so its end is never waited for. */
#define SVC_MSG_FETCH_WAIT_MS 500
#define SVC_MSG_FETCH_RENEW_MS 50
/* Messages of one JetStream consumer fetched and not yet acked, per
 * instance. Small on purpose: they are handled one subscription at a time,
 * and one that waits here longer than ack_wait is redelivered meanwhile.
 * A batch consumer keeps 2 * SVC_MSG_STREAM_BATCH (msg.h): it handles them
 * a batch at a time. */
#define SVC_MSG_STREAM_INFLIGHT 32
#define SVC_MSG_RPC_BUCKETS 1024
/* Bytes of publishes that other threads have handed to one worker loop and
 * that loop has not taken yet (msg_worker.handed_bytes). Beyond it a publish
 * fails at once with SVC_EAGAIN (counted in nats_publish_failures_total),
 * connected or not: a loop that falls behind cannot pile up memory without
 * bound. The reconnect buffer's size, which holds them while disconnected. */
#define SVC_MSG_MAX_HANDED_BYTES SVC_MSG_RECONNECT_BUFFER
/* Drop and error lines: at most one per reason per interval (with a count). */
#define SVC_MSG_LOG_INTERVAL_MS 1000
/* While draining, how often a worker checks whether it may close its handles. */
#define SVC_MSG_DRAIN_POLL_MS 20
/* SVC_OFFLOAD event and stream handlers of one subscription running at once
 * on the thread pool, per worker: a flood on one subscription cannot fill the
 * pool that offloaded HTTP routes and other subscriptions share, and one
 * subject's events stay in order. */
#define SVC_MSG_OFFLOAD_PER_SUB 1
/* After a connection is lost, svc_rpc_call waits this long (its request in
 * the reconnect buffer) before it fails fast with SVC_ECLOSED: a blip that
 * heals at once costs no call, and a caller still learns of an outage in a
 * tenth of a second rather than at its deadline. */
#define SVC_MSG_DISCONNECT_GRACE_MS 100
/* JetStream API requests (stream and consumer declarations). */
#define SVC_MSG_JS_API_TIMEOUT_MS 5000
/* After a failed declaration or bind, before the next try. */
#define SVC_MSG_JS_RETRY_MS 1000
/* How often worker 0 asks the server for each bound consumer's info, for
 * jetstream_consumer_pending_messages: a backlog that grows while nothing is
 * delivered (a stuck or saturated consumer) shows within this. */
#define SVC_MSG_JS_LAG_MS 5000
/* A blocking call waits this much longer than its own deadline for the loop
 * to answer (the loop may be busy), then gives up with SVC_ETIMEDOUT. */
#define SVC_MSG_SYNC_GRACE_MS 2000

typedef struct svc_msg svc_msg;
typedef struct msg_worker msg_worker;
typedef struct msg_sub msg_sub;

/* Reasons for nats_messages_dropped_total{reason}. */
enum {
    DROP_NO_REPLY,      /* a request without a reply subject */
    DROP_OVERFLOW,      /* our per-subscription queue was full */
    DROP_SLOW_CONSUMER, /* kept for the metric's labels: the server drops for
                           a slow client, and tells only that client's peer */
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
    const char *queue;               /* the subscription's queue group */
    svc_route_entry *route;          /* NULL for http / instance */
    atomic_llong requests, errors, time_ns;
    atomic_llong nats_requests;      /* of requests, how many came over NATS */
    atomic_int last_error;           /* status of the last 5xx, 0: none */
} msg_endpoint;

enum { SUB_ROUTE, SUB_HTTP, SUB_DISCOVERY, SUB_EVENT, SUB_TRACE };

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

/* A durable pull consumer; runs on worker 0's loop (jetstream.c). */
typedef struct msg_consumer {
    svc_msg *m;
    char *stream, *subject, *durable;
    int ack_wait_ms;
    int slot;                        /* index into msg_worker.slots */
    svc_event_fn handler;
    svc_event_batch_fn batch;        /* svc_app_on_stream_batch: instead of handler */
    unsigned flags;
    void *ud;
    int max_inflight;                /* SVC_MSG_STREAM_INFLIGHT, or 2 batches */
    int bound;                       /* the server has the consumer */
    int binding;                     /* a CREATE request is out */
    int fetching;                    /* a MSG.NEXT request is out */
    unsigned pull;                   /* the newest request's number: the last token of its reply subject */
    int fetch_left;                  /* messages that request may still bring */
    int inflight;                    /* being handled, not yet acked */
    int errors;
    svc_series *s_pending;           /* jetstream_consumer_pending_messages */
    uv_timer_t lag_timer;            /* asks for its info every SVC_MSG_JS_LAG_MS */
    int lag_init, lag_asking;
    uv_timer_t timer;                /* fetch deadline and retries */
    int timer_init;
    struct msg_consumer *next;
} msg_consumer;

/* A subscription as declared: the same on every connection that makes it. */
struct msg_sub {
    svc_msg *m;
    int kind;
    char subject[SVC_MSG_MAX_SUBJECT];
    const char *queue;
    int every_worker;                /* else worker 0's connection only */
    msg_endpoint *ep;                /* SUB_ROUTE, SUB_HTTP */
    const char *default_path;        /* SUB_ROUTE without parameters, else NULL */
    msg_event_reg *ev;               /* SUB_EVENT */
    atomic_long queued;              /* in our queues or being handled */
    atomic_llong queued_bytes;
    int slot;                        /* SUB_EVENT: index into msg_worker.slots */
    struct msg_sub *next;
};

enum { ITEM_MSG, ITEM_RPC, ITEM_PUB, ITEM_SYNC, ITEM_START, ITEM_RELEASE, ITEM_RETRY, ITEM_CALL };

typedef struct msg_item {
    struct msg_item *next;
    int kind;
    svc_nats_msg *msg;               /* ITEM_MSG */
    msg_sub *sub;                    /* ITEM_MSG */
    void *ptr;                       /* ITEM_RPC, ITEM_SYNC: rpc_call; ITEM_PUB: msg_pub;
                                        ITEM_CALL: fn's ud */
    svc_msg_loop_fn fn;              /* ITEM_CALL (svc_msg_run_on_loop) */
    size_t bytes;
} msg_item;

/* A publish handed over by another thread: one allocation. */
typedef struct msg_pub {
    char *subject, *reply;           /* reply may be NULL */
    char *hdr;
    size_t hdr_len;
    char *data;
    size_t len;
} msg_pub;

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
    msg_item *hi_head, *hi_tail;     /* calls, publishes from other threads */
    msg_item *lo_head, *lo_tail;     /* events */
    int ready;                       /* async initialised: wake-ups allowed */
    int closed;                      /* handles closing: pushes refused */
    uv_async_t async;
    uv_timer_t drain_timer;
    uv_timer_t grace_timer;          /* running: lost the connection < grace ago */
    uv_thread_t tid;
    atomic_int draining, forced;     /* set by the main thread */
    int drain_started, drain_flushed;
    long inflight;                   /* requests and events being handled (loop) */
    svc_nats *nc;                    /* this loop's connection (loop thread) */
    atomic_int connected;
    unsigned disconnects;            /* connections lost so far (loop thread) */
    atomic_llong handed_bytes;       /* ITEM_PUB bytes queued, not yet taken by
                                        the loop (at most SVC_MSG_MAX_HANDED_BYTES) */
    uint64_t *sids;                  /* subscriptions to drain */
    int nsids;
    /* Calls: "_INBOX.<service>.<random>"; replies come to <inbox>.<seq>.
     * The service's name in it lets NATS permissions give each service its
     * own inboxes, "_INBOX.<service>.>", and no other's replies. */
    char inbox[sizeof "_INBOX.." + 64 + SVC_MSG_INSTANCE_ID_LEN];
    atomic_ullong rpc_seq;
    rpc_call *calls[SVC_MSG_RPC_BUCKETS];
    long ncalls;
    offload_slot *slots;             /* one per event subscription and consumer */
    int nslots;
};

/* NATS_JS_REPLICAS at most (JetStream's own limit). */
#define SVC_MSG_MAX_JS_REPLICAS 5

/* What a declared stream keeps (NATS_JS_MAX_AGE, NATS_JS_MAX_BYTES): events
 * older, or beyond the size (the oldest first), are dropped by the server,
 * so a stream never fills its server's store. A consumer that falls further
 * behind than that misses them. */
#define SVC_MSG_JS_MAX_AGE_S (7 * 24 * 3600)    /* default: a week */
#define SVC_MSG_JS_MAX_AGE_MIN_S 3600           /* at least an hour: above any duplicate window */
#define SVC_MSG_JS_MAX_AGE_MAX_S (3650L * 24 * 3600)
#define SVC_MSG_JS_MAX_BYTES (1L << 30)         /* default: 1 GiB per copy */
#define SVC_MSG_JS_MAX_BYTES_MIN (1L << 20)
#define SVC_MSG_JS_MAX_BYTES_MAX (1L << 50)

struct svc_msg {
    svc_app *app;
    int enabled;                     /* NATS_URL is not "none" (set up) */
    atomic_int started;              /* subscriptions declared */
    atomic_int streams_dirty;        /* stream definitions to (re)apply */
    svc__nats_env env;               /* NATS_URL, TLS, sign-in (natsenv.h) */
    int js_replicas;                 /* NATS_JS_REPLICAS */
    long js_max_age_s;               /* NATS_JS_MAX_AGE */
    long js_max_bytes;               /* NATS_JS_MAX_BYTES */
    atomic_int nconnected;           /* workers whose connection is up */
    atomic_int w0_subs_ready;        /* worker 0's subscriptions confirmed */
    atomic_int draining;
    /* The server refused one of our subscriptions: 0 none, 1 being noted,
     * 2 denied_subject holds the first refused (not ready until a restart). */
    atomic_int denied;
    char denied_subject[SVC_NATS_MAX_DENIED_SUBJECT];
    char instance[SVC_MSG_INSTANCE_ID_LEN + 1];
    int64_t started_ms;              /* wall clock at setup, for STATS */
    msg_worker *workers;
    int nworkers;
    atomic_uint rr;
    msg_sub *subs;                   /* built by start, freed by free */
    msg_endpoint *endpoints;
    int nendpoints;
    msg_event_reg *events;           /* registered before run */
    msg_consumer *consumers;
    pthread_mutex_t streams_lock;
    msg_stream_def *streams;
    int js_applying;                 /* worker 0: a declaration round is out */
    int js_stopping;                 /* worker 0: draining, no more pulls */
    atomic_int js_async;             /* svc_js_publish_async awaiting their ack */
    /* Metrics. */
    svc_series *s_connected;
    svc_series *s_reconnects;
    svc_series *s_dropped[DROP_REASONS];
    svc_series *s_publish_failed;
    svc_series *s_server_errors;     /* -ERR lines from the server */
    svc_series *s_subs_denied;       /* of them, refused subscriptions */
    svc_metric *m_rpc;
    svc_metric *m_nats_requests;
    svc_metric *m_events;            /* events_consumed_total: set when a consumer is declared */
    /* Svc-Source names seen by the consumers (events.c, under its lock):
     * the stable label values of m_events. */
    char sources[SVC_MSG_MAX_EVENT_SOURCES][65];
    int nsources;
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
/* A header field value (no control bytes but tab); names: svc__nats_header_name_ok. */
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

/* Turns a NATS request into a dispatched svc_req (loop thread; takes msg). */
void svc__msg_handle_request(msg_worker *mw, msg_sub *s, svc_nats_msg *msg);
/* Publishes a bare error reply (when no request can be made). Loop thread. */
void svc__msg_reply_error(msg_worker *mw, const svc_nats_msg *req, int status, const char *code,
                          const char *message);
/* The after-hook that counts requests per route for discovery. */
void svc__msg_after_hook(svc_req *req, svc_res *res, void *ud);

/* ---- conn.c ---------------------------------------------------------------- */

/* The NATS transport (runtime/module.h), which svc_app_new registers. */
extern const svc_transport svc__nats_transport;
svc_msg *svc__msg_get(const svc_app *app); /* the transport's state; NULL: not registered */
/* Queues an item on a worker; SVC_ECLOSED if that worker is closing (the
 * caller keeps the item). hi: the request class. Any thread. */
int svc__msg_push(msg_worker *mw, msg_item *it, int hi);
msg_worker *svc__msg_pick(svc_msg *m);        /* round robin */
void svc__msg_drop(svc_msg *m, int reason, const char *fmt, ...) SVC_PRINTF(3, 4);
/* Logs at most once per SVC_MSG_LOG_INTERVAL_MS for slot (rate limit). */
int svc__msg_log_allowed(svc_msg *m, int slot);
/* A loop finished one handled item: maybe close the worker (draining). */
void svc__msg_worker_done(msg_worker *mw);
/* The worker whose loop the caller runs on, or NULL. */
msg_worker *svc__msg_current(svc_msg *m);
const char *svc__msg_drop_reason(int reason);
/* Declares a subscription (appended to m->subs; made by each worker at
 * start, or by worker 0 only). NULL: no memory. Before nats_start's
 * ITEM_START only. */
msg_sub *svc__msg_add_sub(svc_msg *m, int kind, const char *subject, const char *queue, int every_worker);
/* Publishes on mw's connection (loop thread), counting failures in
 * nats_publish_failures_total; returns svc__nats_pub's status. */
int svc__msg_pub(msg_worker *mw, const char *subject, const char *reply, const char *hdr, size_t hdr_len,
                 const void *data, size_t len);
/* The same for a reply to a message mw's connection received
 * (svc__nats_reply: not held behind worker 0's subscriptions). */
int svc__msg_reply(msg_worker *mw, const char *subject, const char *hdr, size_t hdr_len, const void *data,
                   size_t len);
/* The same from any thread: directly on the caller's own loop, else handed
 * to the loop that subject hashes to (same order for one subject). */
int svc__msg_pub_any(svc_msg *m, const char *subject, const char *reply, const char *hdr, size_t hdr_len,
                     const void *data, size_t len);

/* ---- rpc.c ------------------------------------------------------------------- */

/* A request-reply exchange on a worker's inbox. done runs once on the loop:
 * err SVC_OK with reply (done owns it), SVC_EAGAIN (no responders, or the
 * reconnect buffer is full), SVC_ETIMEDOUT, SVC_ECLOSED. */
typedef void (*rpc_done_fn)(int err, svc_nats_msg *reply, void *ud);

void svc__rpc_start_call(msg_worker *mw, rpc_call *c);   /* loop thread */
/* A message on mw's inbox: a reply to a call. */
void svc__rpc_on_inbox(svc_nats *nc, svc_nats_msg *msg, void *ud);
/* Ends the calls of mw with err (only those that fail fast, svc_rpc_call's,
 * when only_fast: a lost connection). Loop thread. */
void svc__rpc_fail_all(msg_worker *mw, int err, int only_fast);
void svc__rpc_free_call(rpc_call *c);                    /* never started */
/* An internal request (JetStream API) from the loop: SVC_OK (done will
 * run), else an error and done never runs. hdr: a header block or NULL. */
int svc__rpc_request(msg_worker *mw, const char *subject, const char *hdr, size_t hdr_len, const void *data,
                     size_t len, int timeout_ms, rpc_done_fn done, void *ud);
/* The same from any thread (mw's loop included), not waiting: the request
 * is handed to mw's loop and done runs there, never inside this call.
 * strict: never buffered while mw cannot send (done gets SVC_ECLOSED), and
 * failed with SVC_ECLOSED when the connection is lost while it waits. */
int svc__rpc_request_async(msg_worker *mw, const char *subject, const char *hdr, size_t hdr_len,
                           const void *data, size_t len, int timeout_ms, int strict, rpc_done_fn done, void *ud);
/* The same from any thread but mw's loop, waiting for the reply: returns
 * the error and, with SVC_OK, the reply in *out (free with
 * svc__nats_msg_free). */
int svc__rpc_request_sync(msg_worker *mw, const char *subject, const char *hdr, size_t hdr_len,
                          const void *data, size_t len, int timeout_ms, svc_nats_msg **out);

/* ---- events.c / jetstream.c / discovery.c -------------------------------------- */

void svc__event_handle(msg_worker *mw, msg_sub *s, svc_nats_msg *msg);
void svc__stream_handle(msg_worker *mw, msg_consumer *c, svc_nats_msg *msg);
/* Declares events_consumed_total (m->m_events) as a consumer is declared. */
void svc__event_metric(svc_msg *m);
/* After a stream message's handler (rc): ack, nak or term it. Worker 0. */
void svc__stream_settle(msg_worker *mw, msg_consumer *c, const svc_nats_msg *msg, int rc, const char *msg_id,
                        const char *subject);
/* The delivery count in a $JS.ACK reply subject (0 if it is not one). */
uint64_t svc__js_delivered(const char *reply);
/* The consumer's pending messages in a $JS.ACK reply subject, as the server
 * counted them at this delivery; -1 if it is not one, or not of that stream
 * and durable consumer (a peer publishing into the consumer's inbox cannot
 * set another's gauge). */
int64_t svc__js_pending(const char *reply, const char *stream, const char *durable);
/* At start, once every consumer is declared: their series of
 * jetstream_consumer_pending_messages. */
void svc__js_metrics(svc_msg *m);
/* Worker 0, loop thread: (re)declare streams and bind the consumers (after
 * each connection), stop fetching (drain), free timers (close). */
void svc__js_on_connected(msg_worker *mw);
void svc__js_stop(msg_worker *mw);
void svc__js_close(msg_worker *mw);
/* Messages being handled by the consumers (worker 0's drain waits for 0). */
int svc__js_inflight(svc_msg *m);
/* Worker 0 at start: the consumers' pull inboxes. */
void svc__js_subscribe(msg_worker *mw);
void svc__discovery_on_msg(svc_nats *nc, svc_nats_msg *msg, void *ud);
int svc__discovery_subscribe(svc_msg *m);
/* trace.c: the span query, answered by worker 0. */
void svc__trace_on_msg(svc_nats *nc, svc_nats_msg *msg, void *ud);
int svc__trace_subscribe(svc_msg *m);
/* trace.c: the headers of a publish on subject (svc_msg_publish,
 * svc_js_publish and the outbox relay through it), added to h (the header
 * section begun first when h is empty; the caller ends it): always
 * SVC_MSG_SOURCE_HEADER with m's service name; and the producer span's
 * traceparent, a child of the span this thread works for
 * (svc__trace_current), sampled or not: the consumers' parent. Returns 1
 * with span begun, or 0 with span empty when the thread works for no span. */
int svc__msg_producer_begin(svc_msg *m, svc_span *span, const char *subject, svc_buf *h);
/* Ends a span of svc__msg_producer_begin with the publish's outcome rc
 * (recorded when sampled); nothing for an empty one. */
void svc__msg_producer_end(svc_span *span, int rc);

/* The JSON document for verb (PING, INFO or STATS) into out. */
void svc__discovery_doc(svc_msg *m, const char *verb, svc_buf *out);
/* Worker 0, loop thread, as the drain begins: publishes the leave notice
 * (SVC_MSG_LEAVE_PREFIX.<service>.<id>) before the unsubscriptions. */
void svc__discovery_leave(msg_worker *mw);

#endif
