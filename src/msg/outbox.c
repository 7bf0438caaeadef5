/*
 * The messaging half of the transactional outbox (the relay) and of
 * idempotent consumers (svc_app_on_stream_db). Built on the public API
 * only: svc_js_publish_async, svc_app_on_stream_batch, and svckit/store.h.
 *
 * The relay sends a whole batch with svc_js_publish_async from its one
 * thread (so on one connection, in id order: JetStream stores them in that
 * order) and awaits the acks together; it deletes up to the highest id
 * whose predecessors were all acked. After any failure the next round
 * starts again from the first event not acked: those after it that were
 * stored are dropped as duplicates by their Nats-Msg-Id. An async publish
 * is never buffered while disconnected, so a later event cannot overtake
 * one a lost connection took with it.
 *
 * The consumer takes what arrived while its previous batch ran and applies
 * it in one svc_db_write: each message's claim and effect in a SAVEPOINT of
 * their own (a refused one rolls back alone), one COMMIT (one fsync) for
 * all, then every message is acked.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "svckit/obs.h"
#include "svckit/outbox.h"

_Static_assert(SVC_OUTBOX_DUPLICATE_WINDOW_MS >= 2 * (SVC_OUTBOX_PUBLISH_TIMEOUT_MS + SVC_OUTBOX_POLL_MS),
               "the duplicate window covers two resends");

struct svc_outbox_relay {
    svc_app *app;
    svc_db *db;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;     /* woken: a commit, or stop */
    bool stop, dirty, failing;
    /* Relay thread only: acknowledged up to (read on after it), and when
     * the last delete was queued. */
    int64_t acked;
    uint64_t deleted_ms;
    /* Deleted up to (the writer thread stores it when a delete commits);
     * a delete of up to delete_upto queued and not done yet. */
    _Atomic int64_t deleted;
    int64_t delete_upto;
    atomic_bool deleting;
    svc_series *published, *failures, *dropped;
};

/* Outcomes of a relayed event. */
enum { EV_WAITING, EV_ACKED, EV_DROPPED, EV_FAILED };

typedef struct relay_event {
    int64_t id;
    char *subject, *msg_id;
    void *data;
    size_t len;
    int state, rc;
    struct relay_batch *batch;
    svc_trace_ctx tctx;              /* the span that stored it (its traceparent) */
    bool traced;
} relay_event;

/* One round's events; the acks' callbacks and the relay thread share it,
 * and the last of them to let go frees it. */
typedef struct relay_batch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int refs, waiting;
    relay_event ev[SVC_OUTBOX_BATCH];
    int n;
    bool oom;
} relay_batch;

static int copy_event(const svc_db_outbox_msg *m, void *ud) {
    relay_batch *b = ud;
    relay_event *e = &b->ev[b->n];
    e->id = m->id;
    e->subject = strdup(m->subject);
    e->msg_id = strdup(m->msg_id);
    e->data = malloc(m->len ? m->len : 1);
    e->len = m->len;
    if (!e->subject || !e->msg_id || !e->data) {
        free(e->subject), free(e->msg_id), free(e->data);
        b->oom = true;
        return 1;
    }
    if (m->len) memcpy(e->data, m->payload, m->len);
    /* "traceparent: <value>\r\n", as svc_db_outbox_add stored it. */
    const char *tp = m->headers ? strstr(m->headers, "traceparent: ") : NULL;
    e->traced = tp && strnlen(tp + 13, SVC_TRACEPARENT_LEN) == SVC_TRACEPARENT_LEN &&
                svc__traceparent_parse(tp + 13, SVC_TRACEPARENT_LEN, &e->tctx) == SVC_OK;
    b->n++;
    return 0;
}

static void batch_release(relay_batch *b) {
    pthread_mutex_lock(&b->lock);
    bool last = --b->refs == 0;
    pthread_mutex_unlock(&b->lock);
    if (!last) return;
    for (int i = 0; i < b->n; i++) free(b->ev[i].subject), free(b->ev[i].msg_id), free(b->ev[i].data);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static void acked(int err, const svc_js_ack *ack, void *ud) {
    (void)ack;
    relay_event *e = ud;
    relay_batch *b = e->batch;
    pthread_mutex_lock(&b->lock);
    e->rc = err;
    e->state = err == SVC_OK ? EV_ACKED : EV_FAILED;
    if (--b->waiting == 0) pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
    batch_release(b);
}

static int delete_upto(svc_db *db, void *ud) {
    return svc_db_outbox_delete(db, *(const int64_t *)ud);
}

static void wake(svc_db *db, void *ud) {
    (void)db;
    svc_outbox_relay *r = ud;
    pthread_mutex_lock(&r->lock);
    r->dirty = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

/* Logs a change between working and failing once, not every retry. */
static void set_failing(svc_outbox_relay *r, bool failing, const relay_event *e, int rc) {
    if (failing == r->failing) return;
    r->failing = failing;
    if (failing)
        svc_warn("outbox: publishing %s (%s) failed: %s; retrying every %d ms", e->msg_id, e->subject,
                 svc_status_str(rc), SVC_OUTBOX_POLL_MS);
    else
        svc_info("outbox: publishing again");
}

/* Sends the batch's events without waiting, from the first on, until one
 * cannot even be sent: that one and the rest are failed. */
static void send_all(svc_outbox_relay *r, relay_batch *b) {
    for (int i = 0; i < b->n; i++) {
        relay_event *e = &b->ev[i];
        e->batch = b;
        pthread_mutex_lock(&b->lock);
        b->refs++, b->waiting++;
        pthread_mutex_unlock(&b->lock);
        /* Published as a child of the span that stored it (a producer span). */
        const svc_trace_ctx *prev = svc__trace_swap(e->traced ? &e->tctx : NULL);
        int rc = svc_js_publish_async(r->app, e->subject, e->data, e->len, e->msg_id, SVC_OUTBOX_PUBLISH_TIMEOUT_MS,
                                      acked, e);
        svc__trace_swap(prev);
        if (rc == SVC_OK) continue;
        pthread_mutex_lock(&b->lock);
        b->refs--, b->waiting--;
        pthread_mutex_unlock(&b->lock);
        if (rc == SVC_EINVAL || rc == SVC_ERANGE) {
            e->state = EV_DROPPED;
            e->rc = rc;
            continue;
        }
        /* Not sent (not connected, too many in flight): neither are the
         * ones after it, so that none overtakes it. */
        for (int k = i; k < b->n; k++) b->ev[k].state = EV_FAILED, b->ev[k].rc = rc;
        return;
    }
}

enum { ROUND_IDLE, ROUND_AGAIN, ROUND_FAILED };

/* One round: ROUND_AGAIN if it should run again at once (a full batch went
 * out), ROUND_FAILED if it should wait SVC_OUTBOX_POLL_MS whatever commits. */
static int relay_round(svc_outbox_relay *r) {
    relay_batch *b = calloc(1, sizeof *b);
    if (!b) return ROUND_FAILED;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->refs = 1;
    int n = svc_db_outbox_next(r->db, r->acked, SVC_OUTBOX_BATCH, copy_event, b);
    bool full = n == SVC_OUTBOX_BATCH && !b->oom;
    send_all(r, b);
    /* Every publish that went out reports exactly once (an ack, a timeout,
     * a lost connection). */
    pthread_mutex_lock(&b->lock);
    while (b->waiting > 0) pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
    int64_t done = 0;
    int i = 0;
    for (; i < b->n; i++) {
        relay_event *e = &b->ev[i];
        if (e->state == EV_FAILED) break;
        if (e->state == EV_DROPPED) {
            svc_error("outbox: dropping event %s: NATS cannot take it (%s on %s, %zu bytes)", e->msg_id,
                      svc_status_str(e->rc), e->subject, e->len);
            svc_counter_add(r->dropped, 1);
        } else {
            svc_counter_add(r->published, 1);
        }
        done = e->id;
    }
    int next = full ? ROUND_AGAIN : ROUND_IDLE;
    if (i < b->n) {
        /* Those after the first failure are sent again next round, acked or not. */
        svc_counter_add(r->failures, 1);
        set_failing(r, true, &b->ev[i], b->ev[i].rc);
        next = ROUND_FAILED;
    } else if (b->n) {
        set_failing(r, false, NULL, SVC_OK);
    }
    if (done) r->acked = done;
    batch_release(b);
    return next;
}

/* Writer thread: the delete delete_acked queued is done (failed: the next
 * one deletes those rows too). */
static void deleted(int status, void *ud) {
    svc_outbox_relay *r = ud;
    if (status == SVC_OK) atomic_store(&r->deleted, r->delete_upto);
    atomic_store(&r->deleting, false);
}

/* Deletes what was acknowledged, at most every SVC_OUTBOX_DELETE_MS: a
 * delete is a commit, an fsync, which a crash makes unnecessary (the events
 * are sent again and JetStream drops them by their Nats-Msg-Id). Queued
 * without waiting, so that events committed meanwhile are not held back by
 * that commit; force (at stop): now, and waits, for it and any still queued
 * (the writer completes closures in order). */
static void delete_acked(svc_outbox_relay *r, bool force) {
    uint64_t now = svc_now_ns() / 1000000;
    if (force) {
        int64_t upto = r->acked;
        if ((upto > atomic_load(&r->deleted) || atomic_load(&r->deleting)) &&
            svc_db_write_wait(r->db, delete_upto, &upto) == SVC_OK)
            atomic_store(&r->deleted, upto);
        return;
    }
    if (atomic_load(&r->deleting) || r->acked <= atomic_load(&r->deleted) ||
        now - r->deleted_ms < SVC_OUTBOX_DELETE_MS)
        return;
    r->delete_upto = r->acked;
    r->deleted_ms = now;
    atomic_store(&r->deleting, true);
    if (svc_db_write(r->db, delete_upto, &r->delete_upto, deleted, r) != SVC_OK) atomic_store(&r->deleting, false);
}

static void *relay_main(void *arg) {
    svc_outbox_relay *r = arg;
    pthread_mutex_lock(&r->lock);
    int last = ROUND_IDLE;
    while (!r->stop) {
        if (!r->dirty || last == ROUND_FAILED) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += SVC_OUTBOX_POLL_MS / 1000;
            ts.tv_nsec += (long)(SVC_OUTBOX_POLL_MS % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            /* After a failure, the whole pause: commits would wake it at their rate. */
            while (pthread_cond_timedwait(&r->cond, &r->lock, &ts) != ETIMEDOUT && !r->stop && last == ROUND_FAILED) {
            }
            if (r->stop) break;
        }
        r->dirty = false;
        pthread_mutex_unlock(&r->lock);
        last = relay_round(r);
        delete_acked(r, false);
        pthread_mutex_lock(&r->lock);
        if (last == ROUND_AGAIN) r->dirty = true;
    }
    pthread_mutex_unlock(&r->lock);
    delete_acked(r, true);
    svc__log_thread_exit();
    return NULL;
}

int svc_outbox_relay_start(svc_app *app, svc_db *db, svc_outbox_relay **out) {
    if (!app || !db || !out) return SVC_EINVAL;
    *out = NULL;
    svc_outbox_relay *r = calloc(1, sizeof *r);
    if (!r) return SVC_ENOMEM;
    r->app = app;
    r->db = db;
    r->dirty = true; /* what a previous run left */
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    r->published = svc_metric_with(
        svc_metric_counter("outbox_published_total", "Outbox events published and acked", 0, NULL), NULL);
    r->failures = svc_metric_with(
        svc_metric_counter("outbox_publish_failures_total", "Outbox relay rounds ended by a failed publish (retried)",
                           0, NULL),
        NULL);
    r->dropped = svc_metric_with(
        svc_metric_counter("outbox_dropped_total", "Outbox events NATS can never take, deleted", 0, NULL), NULL);
    int rc = svc_db_on_commit(db, wake, r);
    if (rc == SVC_OK && pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        svc_db_on_commit_remove(db, wake, r);
        rc = SVC_ENOMEM;
    }
    if (rc != SVC_OK) {
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return rc;
    }
    *out = r;
    return SVC_OK;
}

void svc_outbox_relay_stop(svc_outbox_relay *r) {
    if (!r) return;
    svc_db_on_commit_remove(r->db, wake, r);
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* ---- idempotent consumers -------------------------------------------------- */

enum { OUT_APPLIED, OUT_DUPLICATE, OUT_REFUSED, OUT_RETRY, OUT_NO_ID, OUT_N };
static const char *const outcome_names[OUT_N] = {"applied", "duplicate", "refused", "retry", "no_id"};

/* One message of a batch: its outcome in rc (OUT_*), its effect's status in st. */
typedef struct consume_item {
    const svc_event *ev;
    int out, st;
} consume_item;

typedef struct consume_job {
    svc_db_consumer *c;
    consume_item *items;
    size_t n;
} consume_job;

static int step_sql(svc_db *db, const char *sql) {
    svc_stmt *s = svc_db_stmt(db, sql);
    if (!s) return SVC_EIO;
    int rc = svc_stmt_step(s);
    svc_stmt_reset(s);
    return rc == SVC_DB_DONE ? SVC_OK : rc < 0 ? rc : SVC_EIO;
}

/* Every message of the batch in one write closure: each claim and effect in
 * a savepoint of its own, so one refused rolls back alone. */
static int consume_closure(svc_db *db, void *ud) {
    consume_job *j = ud;
    for (size_t i = 0; i < j->n; i++) {
        consume_item *it = &j->items[i];
        if (it->out != OUT_APPLIED) continue; /* no id: never claimed */
        if (step_sql(db, "SAVEPOINT svc_msg") != SVC_OK) return SVC_EIO;
        /* Its SQL and the events it stores are its consumer span's children. */
        const svc_trace_ctx *prev = svc__trace_swap(svc_event_trace(it->ev));
        int rc = svc_db_inbox_claim(db, j->c->durable, it->ev->msg_id);
        if (rc == SVC_EEXIST) it->out = OUT_DUPLICATE, rc = SVC_OK;
        else if (rc == SVC_OK) rc = j->c->effect(db, it->ev, j->c->ud);
        svc__trace_swap(prev);
        if (!svc_db_in_transaction(db)) return SVC_EIO; /* the database ended the transaction */
        it->st = rc;
        if (rc != SVC_OK) {
            it->out = rc == SVC_EAGAIN || rc == SVC_EIO || rc == SVC_ENOMEM ? OUT_RETRY : OUT_REFUSED;
            if (step_sql(db, "ROLLBACK TO svc_msg") != SVC_OK) return SVC_EIO;
        }
        if (step_sql(db, "RELEASE svc_msg") != SVC_OK) return SVC_EIO;
    }
    return SVC_OK;
}

static void count_outcome(const svc_db_consumer *c, int outcome) {
    static const char *const labels[] = {"durable", "outcome"};
    const char *v[] = {c->durable, outcome_names[outcome]};
    svc_counter_add(
        svc_metric_with(svc_metric_counter("db_consumer_events_total",
                                           "JetStream messages of svc_app_on_stream_db consumers, by outcome", 2,
                                           labels),
                        v),
        1);
}

static void consume(svc_app *app, const svc_event *evs, size_t n, int *rcs, void *ud) {
    (void)app;
    svc_db_consumer *c = ud;
    consume_item items[SVC_MSG_STREAM_BATCH];
    consume_job j = {c, items, n};
    size_t with_id = 0;
    for (size_t i = 0; i < n; i++) {
        const svc_event *ev = &evs[i];
        items[i] = (consume_item){ev, OUT_APPLIED, SVC_OK};
        if (!ev->msg_id || !*ev->msg_id || strlen(ev->msg_id) > SVC_DB_MSG_ID_MAX) {
            items[i].out = OUT_NO_ID;
            svc_warn("%s: dropping a message on %s without a usable Nats-Msg-Id", c->durable, ev->subject);
        } else {
            with_id++;
        }
    }
    /* On_start has not opened the database yet: those with an id come again. */
    int rc = !with_id ? SVC_OK : c->db ? svc_db_write_wait(c->db, consume_closure, &j) : SVC_EAGAIN;
    for (size_t i = 0; i < n; i++) {
        consume_item *it = &items[i];
        if (it->out == OUT_NO_ID) {
            rcs[i] = SVC_EINVAL; /* terminate: a redelivery would have no id either */
        } else if (rc != SVC_OK) {
            /* Nothing of the batch was kept (a full queue, a failed commit). */
            it->out = OUT_RETRY;
            rcs[i] = SVC_EAGAIN;
        } else if (it->out == OUT_RETRY) {
            rcs[i] = SVC_EAGAIN;
        } else if (it->out == OUT_REFUSED) {
            svc_warn("%s: message %s on %s refused: %s", c->durable, it->ev->msg_id, it->ev->subject,
                     svc_status_str(it->st));
            rcs[i] = it->st;
        } else {
            rcs[i] = SVC_OK;
        }
        count_outcome(c, it->out);
    }
}

int svc_app_on_stream_db(svc_app *app, const char *stream, const char *subject, const char *durable,
                         int ack_wait_ms, svc_db_consumer *c) {
    if (!c || !c->effect || !durable || strlen(durable) >= sizeof c->durable) return SVC_EINVAL;
    snprintf(c->durable, sizeof c->durable, "%s", durable);
    return svc_app_on_stream_batch(app, stream, subject, durable, ack_wait_ms, consume, c);
}
