/*
 * svckit/outbox.h: the messaging half of the transactional outbox and of
 * idempotent consumers (the storage half is in svckit/store.h).
 *
 *   svc_outbox_relay   publishes the events a service stored with
 *                      svc_db_outbox_add to JetStream, in id order, with
 *                      Nats-Msg-Id = msg_id, and deletes them once acked.
 *   svc_app_on_stream_db  a durable consumer whose handler's effect and the
 *                      inbox claim of the message id commit together, in
 *                      one svc_db_write: each id's effect happens once.
 *
 * docs/messaging.md ("Transactional outbox", "Idempotent consumers").
 */
#ifndef SVCKIT_OUTBOX_H
#define SVCKIT_OUTBOX_H

#include "svckit/msg.h"
#include "svckit/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_OUTBOX_BATCH 64                /* events read per round */
#define SVC_OUTBOX_POLL_MS 1000            /* wakes at least this often (retry after a failure) */
#define SVC_OUTBOX_PUBLISH_TIMEOUT_MS 5000 /* one publish's wait for its ack */

typedef struct svc_outbox_relay svc_outbox_relay;

/*
 * Starts a relay thread for db's outbox: it wakes on every commit of db's
 * group-commit writer (svc_db_on_commit) and every SVC_OUTBOX_POLL_MS, reads
 * up to SVC_OUTBOX_BATCH events in id order, publishes them one after the
 * other (each waits for JetStream's ack, so order is kept), and deletes the
 * acked ones in one svc_db_write. A failed publish (no connection, no
 * stream, timeout) stops the round; the relay retries from the same event
 * after SVC_OUTBOX_POLL_MS, so after a crash it resumes from what is
 * committed (duplicates within the stream's window are dropped by
 * JetStream). An event NATS can never take (a malformed subject, over
 * max_payload) is logged, counted (outbox_dropped_total) and deleted, so it
 * cannot block the ones after it. Call from on_start (events wait until NATS
 * is connected). SVC_OK and *out, SVC_EINVAL, SVC_ENOMEM, SVC_ERANGE (db has
 * SVC_DB_MAX_COMMIT_HOOKS hooks already).
 * Metrics: outbox_published_total, outbox_publish_failures_total,
 * outbox_dropped_total.
 */
int svc_outbox_relay_start(svc_app *app, svc_db *db, svc_outbox_relay **out);

/* Stops and frees the relay (waits for a publish in flight, up to its
 * timeout). Call from on_stop, before svc_db_close. NULL is a no-op. */
void svc_outbox_relay_stop(svc_outbox_relay *r);

/*
 * An effect applied to the database for one message, inside a write closure
 * (so: short, no network). Return SVC_OK to commit it and ack; SVC_EAGAIN to
 * roll it back and have the message redelivered; anything else rolls it
 * back and terminates the message (logged: an event for an order that does
 * not exist, a malformed body).
 */
typedef int (*svc_db_event_fn)(svc_db *db, const svc_event *ev, void *ud);

/* What svc_app_on_stream_db needs; the caller fills effect and ud before,
 * db before the first message can come (in on_start: until then messages are
 * nak'd), and keeps it alive until svc_app_run returns. */
typedef struct svc_db_consumer {
    svc_db *db;
    svc_db_event_fn effect;
    void *ud;
    char durable[65];        /* set by svc_app_on_stream_db */
} svc_db_consumer;

/*
 * svc_app_on_stream (durable pull consumer, SVC_OFFLOAD) whose handler runs
 * svc_db_inbox_claim(durable, ev->msg_id) and c->effect in one
 * svc_db_write_wait: a message id already claimed is acked without its
 * effect. A message without a usable Nats-Msg-Id (missing, empty, longer
 * than SVC_DB_MSG_ID_MAX) is terminated, logged and counted
 * (db_consumer_events_total{durable,outcome="no_id"}); a full write queue or
 * a failed commit naks it (redelivered). Outcomes counted: applied,
 * duplicate, refused, retry, no_id. Same arguments and returns as
 * svc_app_on_stream, plus SVC_EINVAL for a NULL c or c->effect.
 */
int svc_app_on_stream_db(svc_app *app, const char *stream, const char *subject, const char *durable,
                         int ack_wait_ms, svc_db_consumer *c);

#ifdef __cplusplus
}
#endif
#endif
