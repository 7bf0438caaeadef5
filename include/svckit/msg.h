/*
 * svckit/msg.h: messaging over NATS (svckit's own client on libuv, src/msg/nats.c).
 * docs/messaging.md has the whole protocol with examples.
 *
 * Every service connects to NATS_URL at start (comma-separated list;
 * NATS_URL=none: HTTP only) and, while connected:
 *  - serves every route it declared over NATS request-reply as well as HTTP
 *    (one handler, two transports: routing, middleware such as auth, metrics
 *    and the access log are the same; subjects below);
 *  - answers the NATS services discovery protocol ($SRV.PING / INFO / STATS,
 *    with and without the service name and instance id), so `nats micro ls`,
 *    the gateway and `svckit status` see every live instance;
 *  - can call other services (svc_rpc_call), gather every answer to one
 *    request (svc_msg_request_all), publish events, and consume
 *    events (core NATS with queue groups, or JetStream with explicit acks).
 * The service starts even while NATS is down and connects when it can. While
 * disconnected, /readyz answers 503 (check "nats") and the client reconnects
 * every SVC_MSG_RECONNECT_WAIT_MS, resubscribing; publishes during the outage
 * wait in a bounded buffer (SVC_MSG_RECONNECT_BUFFER) or fail with
 * SVC_EAGAIN, never vanish silently. On SIGTERM the service stops taking NATS
 * requests when it stops accepting connections (publishing a leave notice
 * first, SVC_MSG_LEAVE_PREFIX), answers those in flight, then closes.
 *
 * Threading: message handlers run on the worker loops, like HTTP handlers
 * (each loop has its own NATS connection). Publishing is thread-safe and
 * does not wait for the server.
 *
 * Subjects (the scheme the gateway and other services rely on):
 *
 *   svc.<service>.<METHOD>[.<segment>...]  one route, queue group <service>
 *   svc.<service>.http                      any route, chosen by the Svc-Method
 *                                           and Svc-Path headers (queue group)
 *   svc.<service>.<instance-id>.http        the same, on that instance only
 *
 * where each segment of the route template is written as-is when it is a
 * literal of [A-Za-z0-9_-], "{name}" for ":name", "{*name}" for "*name", "{}"
 * for an empty last segment (a trailing slash), and otherwise percent-encoded
 * ("%2E" for '.'), so no route can put a '.' or a wildcard in a subject. The
 * service name must be [A-Za-z0-9_-]{1,64}. Example: GET /products/:id on
 * products -> svc.products.GET.products.{id}. A route subject serves that
 * route only (another path gets 400, another method 405).
 *
 * Request headers: Svc-Method (required on the .http subjects; on a route
 * subject it defaults to the route's), Svc-Path (the concrete path,
 * percent-encoded and normalised: no "." or ".." segment, no "//", no %2F;
 * required, except on the subject of a route without parameters), Svc-Query
 * (raw query string), Authorization, Cookie, Content-Type, X-Request-Id,
 * traceparent, Svc-Client (the original client's address, as seen by the
 * gateway; svc_req_peer returns it), Svc-Deadline (ms since the epoch after
 * which the caller no longer waits: a request received later is dropped).
 * Path parameters are recovered by matching Svc-Path against the route,
 * exactly as over HTTP. Limits are HTTP's (header count and bytes, body
 * bytes) and SVC_MSG_MAX_PAYLOAD; a refused request gets a 4xx reply, one
 * without a reply subject is dropped (logged, counted).
 * Reply headers: Svc-Status (the HTTP status), Svc-Instance (who answered),
 * X-Request-Id, Content-Type, and the handler's response headers; on an
 * error (status >= 400) also Nats-Service-Error (its message) and
 * Nats-Service-Error-Code (the status), as the NATS services protocol
 * (ADR-32) has them; on a 503 that a shutting-down instance answered without
 * running the request, Svc-Draining: 1 (safe to send to another instance,
 * whatever the method). Body: the response body (none for HEAD, 204, 304).
 * Streaming responses (svc_res_stream_*) are HTTP-only: over NATS
 * stream_start returns SVC_ECLOSED.
 *
 * Metrics: nats_connected, nats_reconnects_total, nats_requests_total{route,
 * method,code} (requests over NATS; http_requests_total counts both
 * transports), nats_messages_dropped_total{reason} (no_reply, overflow,
 * slow_consumer, expired, late_reply, shutdown, malformed),
 * nats_publish_failures_total, nats_server_errors_total (-ERR lines from
 * nats-server; logged at most once a second per connection),
 * rpc_calls_total{service,outcome},
 * events_consumed_total{source,subject,outcome} (events and JetStream
 * messages handled, by publishing service, the subscription's declared
 * subject, and ok or error: a nak or term; svc_event_source).
 */
#ifndef SVCKIT_MSG_H
#define SVCKIT_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "svckit/app.h"
#include "svckit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_MSG_MAX_PAYLOAD (1024 * 1024)       /* bytes of one message we accept */
#define SVC_MSG_RECONNECT_BUFFER (8 * 1024 * 1024)
#define SVC_MSG_RECONNECT_WAIT_MS 250
#define SVC_MSG_RPC_TIMEOUT_MS 5000
#define SVC_MSG_MAX_PENDING_PER_SUB 65536       /* messages queued before drops */
#define SVC_MSG_NAK_DELAY_MS 1000               /* JetStream redelivery after SVC_EAGAIN */
#define SVC_MSG_DISCOVERY_PREFIX "$SRV"
/* The leave notice: an instance that starts draining publishes
 * SVC_MSG_LEAVE_PREFIX.<service>.<instance-id> (no reply subject; the body is
 * its PING document with type "io.svckit.v1.leave_notice") before it
 * unsubscribes; it still answers what it already received. */
#define SVC_MSG_LEAVE_VERB "LEAVE"
#define SVC_MSG_LEAVE_PREFIX SVC_MSG_DISCOVERY_PREFIX "." SVC_MSG_LEAVE_VERB
/* The span query (docs/observability.md): svckit.trace[.<service>[.<instance>]]. */
#define SVC_MSG_TRACE_PREFIX "svckit.trace"

/* The live snapshot: $SRV.LIVE, $SRV.LIVE.<service>, $SRV.LIVE.<service>.<id>
 * answer with one document of type "io.svckit.v1.live_response": version,
 * host, uptime, ready state, CPU seconds, RSS, in-flight requests, and per
 * route (template and method) the request count, 4xx and 5xx counts and the
 * http_request_duration_seconds buckets; per callee the svc_rpc_call counts,
 * and per publishing service the events consumed (events_consumed_total)
 * (docs/messaging.md, "Live snapshot"). Counters are totals since start: a
 * reader takes two snapshots for rates and quantiles. Answering reads the
 * metrics registry as /metrics does; requests pay nothing for it. At most
 * SVC_MSG_LIVE_MAX_ROUTES routes and SVC_MSG_LIVE_MAX_CALLS callees and
 * sources together are listed ("truncated": true says some were left out). */
#define SVC_MSG_LIVE_VERB "LIVE"
#define SVC_MSG_LIVE_MAX_ROUTES 128
#define SVC_MSG_LIVE_MAX_CALLS 32

/* ---- calling other services ------------------------------------------------ */

typedef struct svc_rpc_reply {
    int status;                 /* Svc-Status, e.g. 200 */
    const char *body;           /* valid during the callback */
    size_t body_len;
    const char *instance;       /* Svc-Instance of the responder, or "" */
    /* Header lookup on the reply (case-insensitive); NULL if absent. */
    const char *(*header)(const struct svc_rpc_reply *r, const char *name);
    /* The i-th reply header, from 0: SVC_OK, or SVC_ENOTFOUND past the end. */
    int (*header_at)(const struct svc_rpc_reply *r, size_t i, const char **name, const char **value);
    void *impl;
} svc_rpc_reply;

/*
 * err: SVC_OK with reply set (any status: a 404 is a reply); SVC_EAGAIN when
 * no instance is listening (NATS no-responders, reported at once, not after
 * the deadline) or the reconnect buffer is full; SVC_ETIMEDOUT; SVC_ECLOSED
 * when not connected at the time of the call (at once) or the service is
 * stopping. The callback runs exactly once, on the loop of `from` (or of the
 * calling worker, or the app's first worker), never inside svc_rpc_call.
 * reply->status is the callee's Svc-Status (200 if a non-svckit responder
 * sent none, 502 if it is not a status).
 */
typedef void (*svc_rpc_cb)(int err, const svc_rpc_reply *reply, void *ud);

typedef struct svc_rpc_opts {
    int timeout_ms;             /* 0: SVC_MSG_RPC_TIMEOUT_MS */
    const char *instance;       /* NULL: any instance (queue group); else that id */
    const char *const *headers; /* NULL or a NULL-terminated "Name: value" list */
} svc_rpc_opts;

/*
 * Calls `method path` on service over NATS. path is percent-encoded and
 * normalised, and may carry a query ("/products?x=1"). It goes to
 * svc.<service>.http (or the instance's subject), so the callee's router
 * picks the route exactly as over HTTP. From `from` (may be NULL) it passes
 * traceparent (same trace, this request's span as parent), X-Request-Id and
 * Svc-Client; it never forwards Authorization by itself: put it in
 * opts->headers when the callee needs the caller's token. Svc-Deadline is
 * now + timeout. Copies everything; thread-safe. Inside a request,
 * svc_req_call (below) is simpler: no callback, the request's deadline.
 * Call it from a loop handler that returns SVC_ASYNC and finishes in cb:
 * from an SVC_OFFLOAD
 * handler, cb runs on the loop and may run before that handler returns.
 * Returns SVC_OK if started (cb will run), else an error and cb never
 * runs: SVC_EINVAL (bad service, method, path, instance or header),
 * SVC_ERANGE (body over SVC_MSG_MAX_PAYLOAD), SVC_ENOMEM, SVC_ECLOSED (NATS
 * disabled, not started yet, or this worker is shutting down).
 */
int svc_rpc_call(svc_app *app, svc_req *from, const char *service, const char *method,
                 const char *path, const void *body, size_t body_len,
                 const svc_rpc_opts *opts, svc_rpc_cb cb, void *ud);

/* ---- calls inside a request (composition, see svckit/app.h) -------------------
 *
 * svc_req_call starts `method path` on service for req, as svc_rpc_call does
 * (traceparent, X-Request-Id, Svc-Client), with a timeout of at most what is
 * left of the request's deadline. Call it from a handler or continuation on
 * the loop, or from a svc_work_fn on the thread pool (thread-safe); any
 * number up to SVC_MAX_CALLS per step, then `return svc_req_then(...)` (or,
 * from work, simply return: the offload's done waits for the calls).
 * Returns the call's index in its step (0, 1, ...) for svc_call_*; a call
 * that could not start still has its index and reports its error there.
 * Negative only when it was not even recorded: SVC_ERANGE (more than
 * SVC_MAX_CALLS in a step), SVC_EINVAL (req NULL).
 *
 * In the continuation (or its work), for the step's call i:
 *   svc_call_status  the callee's status; for no reply: 504 (timed out),
 *                    503 (no instance, not connected, stopping), 500 else
 *   svc_call_error   SVC_OK for a reply, else why there was none
 *   svc_call_body    the reply's body (NUL-terminated), "" if none
 *   svc_call_json    the body parsed as JSON (owned by the request; NULL
 *                    if it is not JSON)
 *   svc_call_header  a reply header (case-insensitive), NULL if absent
 * Everything stays valid until the request's next step starts a call, or
 * the request ends.
 */
#define SVC_MAX_CALLS 16
#define SVC_CALL_FORWARD_AUTH (1u << 0) /* pass the caller's Authorization, or its token cookie */

typedef struct svc_call_opts {
    int timeout_ms;              /* 0: SVC_MSG_RPC_TIMEOUT_MS; never past the request's deadline */
    unsigned flags;              /* SVC_CALL_* */
    const char *const *headers;  /* NULL or a NULL-terminated "Name: value" list */
} svc_call_opts;

int svc_req_call(svc_req *req, const char *service, const char *method, const char *path,
                 const void *body, size_t len, const svc_call_opts *opts);
int svc_call_status(const svc_req *req, int i);
int svc_call_error(const svc_req *req, int i);
const char *svc_call_body(const svc_req *req, int i, size_t *len);
json_t *svc_call_json(svc_req *req, int i);
const char *svc_call_header(const svc_req *req, int i, const char *name);

/* ---- events ------------------------------------------------------------------ */

typedef struct svc_event {
    const char *subject;
    const char *data;
    size_t len;
    const char *msg_id;         /* Nats-Msg-Id, or NULL */
    uint64_t delivered;         /* JetStream delivery count (1 = first), 0 for core */
    /* Header lookup (case-insensitive); NULL if absent. */
    const char *(*header)(const struct svc_event *e, const char *name);
    void *impl;
} svc_event;

/*
 * Events carry the publishing service: every publish of svc_msg_publish,
 * svc_js_publish* and the outbox relay sends the header SVC_MSG_SOURCE_HEADER
 * with the service's name. A consumer takes it as outside input: a value
 * that is not a service name ([A-Za-z0-9_-]{1,64}), or none, is "unknown";
 * past SVC_MSG_MAX_EVENT_SOURCES distinct names in one instance, a new one
 * is "other". What it counts (events_consumed_total, the live snapshot's
 * "calls" of kind "event") never grows past that.
 */
#define SVC_MSG_SOURCE_HEADER "Svc-Source"
#define SVC_MSG_MAX_EVENT_SOURCES 32

/*
 * Event handler. For core subscriptions the return value is ignored. For
 * JetStream: SVC_OK acks; SVC_EAGAIN naks (redelivered after a delay); any
 * other value terminates the message (never redelivered; logged).
 */
typedef int (*svc_event_fn)(svc_app *app, const svc_event *ev, void *ud);

/*
 * The consumer span of ev (svckit/trace.h): an event that carried a W3C
 * traceparent (every publish of svc_msg_publish, svc_js_publish* and the
 * outbox relay sends one when the publisher works for a span) is handled
 * under a consumer span, child of the publisher's producer span, recorded
 * when its trace is sampled. A handler parents its own spans on it; those of
 * an unsampled trace stay unsampled in it (parent-based sampling), never a
 * new root. NULL when the event has none. Valid during the handler.
 * Single-event handlers run with it already current (their SQL, calls and
 * publishes are its children).
 */
struct svc_trace_ctx;
const struct svc_trace_ctx *svc_event_trace(const svc_event *ev);

/*
 * Subscribes handler to subject (wildcards allowed) in a queue group (NULL:
 * the service name, so each event is handled once per service however many
 * instances run; "" for no group: every instance gets every event). Events
 * of one subject are handled in order, on one loop; with SVC_OFFLOAD the
 * handler runs on the thread pool, at most one event of this subscription at
 * a time per worker. Each subscription queues at most
 * SVC_MSG_MAX_PENDING_PER_SUB messages: a flood beyond that is dropped
 * (logged, counted) without slowing other subscriptions or requests. Call
 * before svc_app_run (SVC_EINVAL after). Returns SVC_OK, SVC_EINVAL (bad
 * subject or group, NULL handler) or SVC_ENOMEM.
 */
int svc_app_on_event(svc_app *app, const char *subject, const char *queue_group,
                     svc_event_fn handler, unsigned flags, void *ud);

/* Publishes data on subject (core NATS: at most once; while disconnected it
 * waits in the reconnect buffer). Thread-safe. SVC_OK, SVC_EAGAIN (reconnect
 * buffer full, or more than SVC_MSG_RECONNECT_BUFFER bytes handed from other
 * threads still waiting for the worker's loop), SVC_ECLOSED (NATS disabled or closed), SVC_ERANGE (over
 * SVC_MSG_MAX_PAYLOAD), SVC_EINVAL (bad subject: empty, spaces, empty token,
 * a wildcard token). Failures are counted in nats_publish_failures_total. */
int svc_msg_publish(svc_app *app, const char *subject, const void *data, size_t len);

/* ---- scatter-gather: every answer to one request ------------------------------ */

#define SVC_MSG_GATHER_MAX_MS 60000             /* longest gather window */

/* One reply of a gather. */
typedef struct svc_msg_reply {
    const char *subject;        /* where it came (the gather's reply subject) */
    const char *data;           /* valid during the callback; NUL-terminated */
    size_t len;
    /* Header lookup (case-insensitive); NULL if absent or no headers. */
    const char *(*header)(const struct svc_msg_reply *r, const char *name);
    void *impl;
} svc_msg_reply;

/*
 * Runs once per reply with err SVC_OK and r set, then exactly once more with
 * r NULL at the end: err SVC_OK when the window ended normally; SVC_ECLOSED
 * when NATS was not connected at the start (at once, without waiting), the
 * connection was lost during the window (the replies may be incomplete), or
 * the service is stopping. Always on a worker loop, never inside
 * svc_msg_request_all. After the end call nothing more comes (later replies
 * are dropped, counted as late_reply).
 */
typedef void (*svc_msg_gather_cb)(int err, const svc_msg_reply *r, void *ud);

/*
 * Scatter-gather: publishes data on subject (core NATS, a reply subject of
 * this worker's inbox) and hands every reply that arrives within gather_ms
 * to cb, then ends (see svc_msg_gather_cb). Made for questions every instance
 * answers, such as discovery ("$SRV.PING.<service>"): the replies are not
 * counted or limited, and no-responders is not an error (nobody answering
 * is an empty gather: just the end, after the window). Runs on the loop of
 * the calling worker, else the app's first worker (handed over; copies
 * everything; thread-safe). ud must stay valid until the end call.
 * Returns SVC_OK (cb will run, at least for the end), else an error and cb
 * never runs: SVC_EINVAL (NULL app or cb, data NULL with len, a bad
 * subject (wildcards refused), gather_ms outside 1..SVC_MSG_GATHER_MAX_MS),
 * SVC_ERANGE (len over SVC_MSG_MAX_PAYLOAD), SVC_ENOMEM, SVC_ECLOSED (NATS
 * disabled, or that worker is shutting down). Callable from on_start: the
 * request is then published once the worker's loop runs.
 */
int svc_msg_request_all(svc_app *app, const char *subject, const void *data, size_t len, int gather_ms,
                        svc_msg_gather_cb cb, void *ud);

/*
 * Runs fn(loop, ud) once on the loop of the app's first worker (the one that
 * also answers discovery and takes events): the way to start a uv timer or
 * other handles for periodic messaging work from on_start, where no loop
 * exists yet. Thread-safe; never runs fn inside this call; queued until
 * that loop runs. Handles fn starts there should be uv_unref'd, so they do
 * not keep the worker from stopping: the worker closes whatever is left
 * when its loop ends (after svc_app_run's drain, before on_stop), so their
 * memory must outlive on_stop. Returns SVC_OK, or an error and fn never
 * runs: SVC_EINVAL (NULL app or fn), SVC_ENOMEM, SVC_ECLOSED (NATS disabled
 * or not set up yet, i.e. before on_start, or the worker is shutting down).
 * fn may also never run when the service stops before that loop starts.
 */
typedef void (*svc_msg_loop_fn)(uv_loop_t *loop, void *ud);
int svc_msg_run_on_loop(svc_app *app, svc_msg_loop_fn fn, void *ud);

/* ---- JetStream: events that must not be lost ----------------------------------- */

#define SVC_JS_MAX_DUPLICATE_WINDOW_MS (3600 * 1000) /* below any stream's max age (NATS_JS_MAX_AGE) */

/*
 * Declares a stream: file storage, the given subjects (wildcards allowed),
 * a duplicate window for Nats-Msg-Id de-duplication (0 to
 * SVC_JS_MAX_DUPLICATE_WINDOW_MS; nats-server holds every id of the window
 * in memory, so keep it to seconds: docs/messaging.md, "Transactional
 * outbox"), and the service's NATS_JS_REPLICAS copies, each keeping events
 * for NATS_JS_MAX_AGE seconds and up to NATS_JS_MAX_BYTES (the oldest
 * dropped first). Created, or updated if it exists (give every service
 * that declares a stream the same values). The declaration is remembered
 * and applied again after every reconnect (a server may come back without
 * its store) and before consumers bind. Connected: applies it now and
 * returns the result (blocking up to JetStream's API timeout: call from
 * on_start or SVC_OFFLOAD code); not yet connected: SVC_OK, applied once
 * connected. SVC_EINVAL (stream name not [A-Za-z0-9_-]{1,64}, bad subject,
 * window out of range), SVC_ECLOSED (NATS_URL=none), SVC_EIO.
 */
int svc_js_stream_ensure(svc_app *app, const char *stream, const char *const *subjects,
                         int64_t duplicate_window_ms);

/*
 * Publishes to JetStream and waits for the server's ack (so the event is
 * stored before this returns SVC_OK). msg_id (may be NULL) de-duplicates
 * retries within the stream's window (a duplicate also returns SVC_OK).
 * Blocking (up to timeout_ms, 0: SVC_MSG_RPC_TIMEOUT_MS; while disconnected
 * the request waits in the reconnect buffer): call from SVC_OFFLOAD code.
 * SVC_ETIMEDOUT, SVC_ENOTFOUND (no stream takes the subject), SVC_ECLOSED,
 * SVC_EAGAIN, SVC_ERANGE, SVC_EINVAL, SVC_EIO.
 */
int svc_js_publish(svc_app *app, const char *subject, const void *data, size_t len,
                   const char *msg_id, int timeout_ms);

/*
 * Asynchronous JetStream publish: the message goes out with a reply inbox and
 * the server's ack is handed to cb later, so many publishes can await their
 * acks together (the outbox relay sends a whole batch this way).
 *
 *   cb(err, ack, ud) runs exactly once, on a worker loop, never inside
 *   svc_js_publish_async: err SVC_OK with ack set (ack->seq the stream
 *   sequence, ack->duplicate 1 when msg_id was already stored within the
 *   stream's window), else ack NULL and err says why: SVC_ETIMEDOUT (no ack
 *   within timeout_ms: it may or may not be stored, publish again with the
 *   same msg_id), SVC_ECLOSED (not connected when it was to be sent, the
 *   connection was lost while it waited for its ack, or the service is
 *   stopping), SVC_ENOTFOUND (no stream takes the subject), SVC_EAGAIN (the
 *   reconnect buffer is full), SVC_EIO (JetStream refused it; logged).
 *
 * Order: publishes from one thread go out on one connection (the caller's
 * loop, else the app's last worker), in call order, and JetStream stores
 * what it receives on one connection in that order. A publish is never
 * buffered while disconnected (it fails at once with SVC_ECLOSED instead),
 * so what a lost connection took with it cannot be overtaken by a later
 * publish of the same caller: after a failure, publish again from the first
 * one that was not acked, with the same msg_ids (duplicates are dropped).
 * From a thread that is not a worker loop it first re-applies stream
 * declarations pending after a reconnect, as svc_js_publish does (blocking,
 * up to 5 s; on a loop it never blocks).
 *
 * At most SVC_JS_MAX_ASYNC publishes of the app await their ack at once.
 * Returns SVC_OK (cb will run), else cb never runs: SVC_EAGAIN (that many
 * in flight already), SVC_EINVAL (NULL app or cb, bad subject or msg_id),
 * SVC_ERANGE (over SVC_MSG_MAX_PAYLOAD), SVC_ECLOSED (NATS disabled, not
 * started, or stopping), SVC_ENOMEM. Thread-safe. timeout_ms 0:
 * SVC_MSG_RPC_TIMEOUT_MS. Failures are counted in nats_publish_failures_total.
 */
#define SVC_JS_MAX_ASYNC 4096

typedef struct svc_js_ack {
    uint64_t seq;               /* the message's sequence in the stream */
    int duplicate;              /* 1: msg_id was stored before, nothing new */
} svc_js_ack;

typedef void (*svc_js_ack_fn)(int err, const svc_js_ack *ack, void *ud);

int svc_js_publish_async(svc_app *app, const char *subject, const void *data, size_t len,
                         const char *msg_id, int timeout_ms, svc_js_ack_fn cb, void *ud);

/*
 * A durable pull consumer with explicit acks on stream, filtered by subject
 * (created if missing: deliver all, ack wait ack_wait_ms (0: 30 s)): each
 * message goes to one instance of the service; unacked ones are redelivered
 * after ack_wait_ms to another, including after a crash (kill -9). The
 * handler's return: SVC_OK acks, SVC_EAGAIN naks (redelivered after
 * SVC_MSG_NAK_DELAY_MS), anything else terminates it (never redelivered;
 * logged). ev->delivered counts deliveries (1 = first). Handlers may run
 * more than once for one message (a crash between handling and ack): make
 * them idempotent, keyed by ev->msg_id. durable is [A-Za-z0-9_-]{1,64}. Call
 * before svc_app_run; it binds once connected and rebinds after a server
 * loses the consumer.
 */
int svc_app_on_stream(svc_app *app, const char *stream, const char *subject,
                      const char *durable, int ack_wait_ms, svc_event_fn handler,
                      unsigned flags, void *ud);

/*
 * svc_app_on_stream for a handler that takes several messages at once (to
 * apply them in one database transaction: one fsync per batch, not per
 * message). It runs on the thread pool, one call at a time per consumer and
 * worker: the first message that arrives goes alone, and the ones that
 * arrive meanwhile (up to SVC_MSG_STREAM_BATCH) go together in the next
 * call, so a batch grows with the load and a lone message never waits. The
 * handler sets rcs[i] for evs[i] (each starts as SVC_EAGAIN), meaning what
 * svc_event_fn's return does: SVC_OK acks, SVC_EAGAIN naks, anything else
 * terminates; every message of the call is settled after it returns. evs
 * and what they point to are valid during the call only. Same arguments and
 * returns as svc_app_on_stream otherwise.
 */
#define SVC_MSG_STREAM_BATCH 64
typedef void (*svc_event_batch_fn)(svc_app *app, const svc_event *evs, size_t n, int *rcs, void *ud);
int svc_app_on_stream_batch(svc_app *app, const char *stream, const char *subject, const char *durable,
                            int ack_wait_ms, svc_event_batch_fn handler, void *ud);

/* ---- state --------------------------------------------------------------------- */

/* 1 while connected to NATS, 0 otherwise (also when NATS_URL=none). */
int svc_msg_connected(const svc_app *app);
/* This instance's id (the discovery "id": 22 base62 characters); stable for
 * the process's life; "" when NATS is disabled or before svc_app_run. */
const char *svc_app_instance_id(const svc_app *app);

#ifdef __cplusplus
}
#endif
#endif
