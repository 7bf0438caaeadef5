/*
 * The messaging half of the transactional outbox (the relay) and of
 * idempotent consumers (svc_app_on_stream_db). Built on the public API
 * only: svc_js_publish, svc_app_on_stream, and svckit/store.h.
 *
 * Why one publish at a time: svc_js_publish waits for each ack, and the next
 * event is sent after it, so the stream stores them in commit order even
 * across a reconnect. Publishing a batch and awaiting the acks together
 * would need an asynchronous JetStream publish (bench/README.md measures
 * what one costs).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "svckit/obs.h"
#include "svckit/outbox.h"

struct svc_outbox_relay {
    svc_app *app;
    svc_db *db;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;     /* woken: a commit, or stop */
    bool stop, dirty, failing;
    svc_series *published, *failures, *dropped;
};

typedef struct relay_event {
    int64_t id;
    char *subject, *msg_id;
    void *data;
    size_t len;
} relay_event;

typedef struct relay_batch {
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
    b->n++;
    return 0;
}

static void batch_free(relay_batch *b) {
    for (int i = 0; i < b->n; i++) free(b->ev[i].subject), free(b->ev[i].msg_id), free(b->ev[i].data);
    b->n = 0;
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

/* One round: returns true if it should run again at once (a full batch
 * went out). */
static bool relay_round(svc_outbox_relay *r) {
    relay_batch *b = calloc(1, sizeof *b);
    if (!b) return false;
    int n = svc_db_outbox_next(r->db, SVC_OUTBOX_BATCH, copy_event, b);
    bool full = n == SVC_OUTBOX_BATCH && !b->oom;
    int64_t done = 0;
    for (int i = 0; i < b->n; i++) {
        relay_event *e = &b->ev[i];
        int rc = svc_js_publish(r->app, e->subject, e->data, e->len, e->msg_id, SVC_OUTBOX_PUBLISH_TIMEOUT_MS);
        if (rc == SVC_EINVAL || rc == SVC_ERANGE) {
            svc_error("outbox: dropping event %s: NATS cannot take it (%s on %s, %zu bytes)", e->msg_id,
                      svc_status_str(rc), e->subject, e->len);
            svc_counter_add(r->dropped, 1);
        } else if (rc != SVC_OK) {
            svc_counter_add(r->failures, 1);
            set_failing(r, true, e, rc);
            full = false;
            break;
        } else {
            svc_counter_add(r->published, 1);
            set_failing(r, false, e, rc);
        }
        done = e->id;
    }
    if (done && svc_db_write_wait(r->db, delete_upto, &done) != SVC_OK) full = false;
    batch_free(b);
    free(b);
    return full;
}

static void *relay_main(void *arg) {
    svc_outbox_relay *r = arg;
    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        if (!r->dirty) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += SVC_OUTBOX_POLL_MS / 1000;
            ts.tv_nsec += (long)(SVC_OUTBOX_POLL_MS % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&r->cond, &r->lock, &ts);
            if (r->stop) break;
        }
        r->dirty = false;
        pthread_mutex_unlock(&r->lock);
        bool again = relay_round(r);
        pthread_mutex_lock(&r->lock);
        if (again) r->dirty = true;
    }
    pthread_mutex_unlock(&r->lock);
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
        svc_metric_counter("outbox_publish_failures_total", "Outbox publishes that failed (retried)", 0, NULL), NULL);
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

typedef struct consume_job {
    svc_db_consumer *c;
    const svc_event *ev;
    bool duplicate;
} consume_job;

static int consume_closure(svc_db *db, void *ud) {
    consume_job *j = ud;
    int rc = svc_db_inbox_claim(db, j->c->durable, j->ev->msg_id);
    if (rc == SVC_EEXIST) {
        j->duplicate = true;
        return SVC_OK;
    }
    if (rc != SVC_OK) return rc;
    return j->c->effect(db, j->ev, j->c->ud);
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

static int consume(svc_app *app, const svc_event *ev, void *ud) {
    (void)app;
    svc_db_consumer *c = ud;
    if (!ev->msg_id || !*ev->msg_id || strlen(ev->msg_id) > SVC_DB_MSG_ID_MAX) {
        count_outcome(c, OUT_NO_ID);
        svc_warn("%s: dropping a message on %s without a usable Nats-Msg-Id", c->durable, ev->subject);
        return SVC_EINVAL; /* terminate: a redelivery would have no id either */
    }
    if (!c->db) return SVC_EAGAIN; /* on_start has not opened it yet */
    consume_job j = {c, ev, false};
    int rc = svc_db_write_wait(c->db, consume_closure, &j);
    if (rc == SVC_OK) {
        count_outcome(c, j.duplicate ? OUT_DUPLICATE : OUT_APPLIED);
        return SVC_OK;
    }
    if (rc == SVC_EAGAIN || rc == SVC_EIO || rc == SVC_ENOMEM) {
        count_outcome(c, OUT_RETRY);
        return SVC_EAGAIN;
    }
    count_outcome(c, OUT_REFUSED);
    svc_warn("%s: message %s on %s refused: %s", c->durable, ev->msg_id, ev->subject, svc_status_str(rc));
    return rc;
}

int svc_app_on_stream_db(svc_app *app, const char *stream, const char *subject, const char *durable,
                         int ack_wait_ms, svc_db_consumer *c) {
    if (!c || !c->effect || !durable || strlen(durable) >= sizeof c->durable) return SVC_EINVAL;
    snprintf(c->durable, sizeof c->durable, "%s", durable);
    return svc_app_on_stream(app, stream, subject, durable, ack_wait_ms, consume, SVC_OFFLOAD, c);
}
