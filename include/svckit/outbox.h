/*
 * svckit/outbox.h: the messaging half of the transactional outbox and of
 * idempotent consumers (the storage half is in svckit/store.h).
 *
 *   svc_outbox_relay   publishes the events a service stored with
 *                      svc_db_outbox_add to JetStream, in id order, with
 *                      Nats-Msg-Id = msg_id, and deletes them once acked.
 *   svc_app_on_stream_db  a durable consumer whose handler's effect and the
 *                      inbox claim of the message id commit together, a
 *                      batch of messages in one svc_db_write: each id's
 *                      effect happens once, one fsync per batch.
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

#define SVC_OUTBOX_BATCH 64                /* events sent per round, awaiting their acks together */
#define SVC_OUTBOX_POLL_MS 1000            /* wakes at least this often (retry after a failure) */
#define SVC_OUTBOX_PUBLISH_TIMEOUT_MS 5000 /* one publish's wait for its ack */
#define SVC_OUTBOX_DELETE_MS 1000          /* acknowledged events are deleted at most this often */
/* The duplicate window to declare a relay's stream with
 * (svc_js_stream_ensure): two resends' time after an unanswered publish
 * (SVC_OUTBOX_PUBLISH_TIMEOUT_MS, then SVC_OUTBOX_POLL_MS) and a quick
 * restart; a copy sent later reaches the consumers, whose inbox drops it. No
 * longer: nats-server holds every id of the window in its heap
 * (docs/messaging.md, "Transactional outbox"). */
#define SVC_OUTBOX_DUPLICATE_WINDOW_MS 15000

typedef struct svc_outbox_relay svc_outbox_relay;

/*
 * Starts a relay thread for db's outbox: it wakes on every commit of db's
 * group-commit writer (svc_db_on_commit) and every SVC_OUTBOX_POLL_MS, reads
 * up to SVC_OUTBOX_BATCH events in id order, sends them all with
 * svc_js_publish_async (one connection, in id order, so JetStream stores
 * them in that order) and awaits their acks together. It goes on after the
 * highest id whose predecessors were all acked; after a failure (no
 * connection, no stream, a timeout) it waits SVC_OUTBOX_POLL_MS and sends
 * again from the first event not acked (those after it that were stored are
 * dropped by JetStream as duplicates of their Nats-Msg-Id). Acked events are
 * deleted at most every SVC_OUTBOX_DELETE_MS, in one svc_db_write, so a
 * busy relay costs its database one commit a second rather than one per
 * round; after a crash the relay resumes from what is committed and not
 * deleted, and JetStream drops what it had already stored (within the
 * stream's duplicate window: SVC_OUTBOX_DUPLICATE_WINDOW_MS). An event NATS can never
 * take (a malformed subject, over max_payload) is logged, counted
 * (outbox_dropped_total) and skipped, so it cannot block the ones after it.
 * Call from on_start (events wait until NATS is connected). SVC_OK and
 * *out, SVC_EINVAL, SVC_ENOMEM, SVC_ERANGE (db has SVC_DB_MAX_COMMIT_HOOKS
 * hooks already).
 * Metrics: outbox_published_total, outbox_publish_failures_total (rounds
 * ended by a failure), outbox_dropped_total.
 */
int svc_outbox_relay_start(svc_app *app, svc_db *db, svc_outbox_relay **out);

/* Stops and frees the relay (waits for the acks of a round in flight, up to
 * SVC_OUTBOX_PUBLISH_TIMEOUT_MS, and deletes what was acked). Call from
 * on_stop, before svc_db_close. NULL is a no-op. */
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
 * A durable consumer (svc_app_on_stream_batch) that applies the messages of
 * each batch in one svc_db_write_wait: per message, in a SAVEPOINT of its
 * own, svc_db_inbox_claim(durable, ev->msg_id) and, the first time only,
 * c->effect; then one COMMIT (one fsync for the whole batch), then every
 * message is settled. An effect that returns an error rolls back its own
 * message only (its claim with it): SVC_EAGAIN naks it (redelivered), any
 * other error terminates it; the others of the batch commit. A message id
 * already claimed is acked without its effect. A message without a usable
 * Nats-Msg-Id (missing, empty, longer than SVC_DB_MSG_ID_MAX) is
 * terminated, logged and counted (db_consumer_events_total{durable,
 * outcome="no_id"}); a full write queue or a failed commit naks the whole
 * batch. Outcomes counted: applied, duplicate, refused, retry, no_id. Same
 * arguments and returns as svc_app_on_stream, plus SVC_EINVAL for a NULL c
 * or c->effect.
 */
int svc_app_on_stream_db(svc_app *app, const char *stream, const char *subject, const char *durable,
                         int ack_wait_ms, svc_db_consumer *c);

#ifdef __cplusplus
}
#endif
#endif
