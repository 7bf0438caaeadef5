/*
 * svckit/msg.h: messaging over NATS (Debian's libnats, the official C client).
 *
 * Every service connects to NATS_URL at start (NATS_URL=none: HTTP only) and,
 * while connected:
 *  - serves every route it declared over NATS request-reply as well as HTTP
 *    (one handler, two transports; subjects below);
 *  - answers the NATS services discovery protocol ($SRV.PING / INFO / STATS,
 *    with and without the service name and instance id), so `nats micro ls`,
 *    the gateway and `svckit status` see every live instance;
 *  - can call other services (svc_rpc_call), publish events, and consume
 *    events (core NATS with queue groups, or JetStream with explicit acks).
 * While disconnected, /readyz answers 503 and the client reconnects on its own
 * (resubscribing); publishes during the outage wait in a bounded buffer
 * (SVC_MSG_RECONNECT_BUFFER) or fail with SVC_EAGAIN, never vanish silently.
 *
 * Threading: message handlers run on the worker loops, like HTTP handlers
 * (libnats delivers on its own threads; svckit hands each message to a loop).
 * Publishing is thread-safe and never blocks on the network.
 *
 * Subjects (the scheme the gateway and other services rely on):
 *
 *   svc.<service>.<METHOD>[.<segment>...]  one route, queue group <service>
 *   svc.<service>.http                      any route, chosen by the Svc-Method
 *                                           and Svc-Path headers (queue group)
 *   svc.<service>.<instance-id>.http        the same, on that instance only
 *
 * where each segment of the route template is written as-is when it is a
 * literal of [A-Za-z0-9_-], "{name}" for ":name", "{*name}" for "*name", and
 * otherwise percent-encoded (so no path can inject "." or a wildcard).
 * Example: GET /products/:id on products -> svc.products.GET.products.{id}.
 *
 * Request headers (all optional unless said): Svc-Method (required on the
 * .http subjects), Svc-Path (the concrete path,
 * percent-encoded; required), Svc-Query (raw query string), Authorization,
 * Cookie, Content-Type, X-Request-Id, traceparent, Svc-Client (the original
 * client's address, as seen by the gateway), Svc-Deadline (ms since the epoch
 * after which the caller no longer waits). Path parameters are recovered by
 * matching Svc-Path against the route, exactly as over HTTP.
 * Reply headers: Svc-Status (the HTTP status), Svc-Instance (who answered),
 * Content-Type, and the handler's response headers. Body: the response body.
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
#define SVC_MSG_DISCOVERY_PREFIX "$SRV"

/* ---- calling other services ------------------------------------------------ */

typedef struct svc_rpc_reply {
    int status;                 /* Svc-Status, e.g. 200 */
    const char *body;           /* valid during the callback */
    size_t body_len;
    const char *instance;       /* Svc-Instance of the responder, or "" */
    /* Header lookup on the reply (case-insensitive); NULL if absent. */
    const char *(*header)(const struct svc_rpc_reply *r, const char *name);
    void *impl;
} svc_rpc_reply;

/*
 * err: SVC_OK with reply set; SVC_EAGAIN when no instance is listening (NATS
 * no-responders, reported at once, not after the deadline); SVC_ETIMEDOUT;
 * SVC_ECLOSED when not connected. The callback runs exactly once, on the loop
 * of the request (or of the app's first worker when called off a request).
 */
typedef void (*svc_rpc_cb)(int err, const svc_rpc_reply *reply, void *ud);

typedef struct svc_rpc_opts {
    int timeout_ms;             /* 0: SVC_MSG_RPC_TIMEOUT_MS */
    const char *instance;       /* NULL: any instance (queue group); else that id */
    const char *const *headers; /* NULL or a NULL-terminated "Name: value" list */
} svc_rpc_opts;

/*
 * Calls `method path` on service over NATS, passing the trace context and
 * request id of `from` (may be NULL). path may carry a query ("/products?x=1").
 * It goes to svc.<service>.http (or the instance's subject), so the callee's
 * router picks the route exactly as over HTTP. Copies everything. SVC_OK if started (cb will run), else
 * an error and cb never runs.
 */
int svc_rpc_call(svc_app *app, svc_req *from, const char *service, const char *method,
                 const char *path, const void *body, size_t body_len,
                 const svc_rpc_opts *opts, svc_rpc_cb cb, void *ud);

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
 * Event handler. For core subscriptions the return value is ignored. For
 * JetStream: SVC_OK acks; SVC_EAGAIN naks (redelivered after a delay); any
 * other value terminates the message (never redelivered; logged).
 */
typedef int (*svc_event_fn)(svc_app *app, const svc_event *ev, void *ud);

/*
 * Subscribes handler to subject (wildcards allowed) in a queue group (NULL:
 * the service name, so each event is handled once per service however many
 * instances run; "" for no group: every instance gets every event). flags:
 * SVC_OFFLOAD runs the handler on the thread pool. Call before svc_app_run.
 */
int svc_app_on_event(svc_app *app, const char *subject, const char *queue_group,
                     svc_event_fn handler, unsigned flags, void *ud);

/* Publishes data on subject (core NATS: at most once). Thread-safe. SVC_OK,
 * SVC_EAGAIN (reconnect buffer full), SVC_ECLOSED (NATS disabled), SVC_EINVAL
 * (bad subject: empty, spaces, wildcards). */
int svc_msg_publish(svc_app *app, const char *subject, const void *data, size_t len);

/* ---- JetStream: events that must not be lost ----------------------------------- */

/*
 * Ensures a stream exists (file storage, the given subjects, a duplicate
 * window for Nats-Msg-Id de-duplication). Blocking: call from on_start or
 * SVC_OFFLOAD code.
 */
int svc_js_stream_ensure(svc_app *app, const char *stream, const char *const *subjects,
                         int64_t duplicate_window_ms);

/*
 * Publishes to JetStream and waits for the server's ack (so the event is
 * stored before this returns SVC_OK). msg_id (may be NULL) de-duplicates
 * retries within the stream's window. Blocking: call from SVC_OFFLOAD code.
 */
int svc_js_publish(svc_app *app, const char *subject, const void *data, size_t len,
                   const char *msg_id, int timeout_ms);

/*
 * A durable consumer with explicit acks on stream, filtered by subject: each
 * message goes to one instance of the service; unacked ones are redelivered
 * (after ack_wait_ms) to another, including after a crash. Call before
 * svc_app_run; it binds once connected.
 */
int svc_app_on_stream(svc_app *app, const char *stream, const char *subject,
                      const char *durable, int ack_wait_ms, svc_event_fn handler,
                      unsigned flags, void *ud);

/* ---- state --------------------------------------------------------------------- */

/* 1 while connected to NATS, 0 otherwise (also when NATS_URL=none). */
int svc_msg_connected(const svc_app *app);
/* This instance's id (the discovery "id"); stable for the process's life. */
const char *svc_app_instance_id(const svc_app *app);

#ifdef __cplusplus
}
#endif
#endif
