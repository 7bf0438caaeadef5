/*
 * Events: publish (core NATS, at most once) and subscribe, in queue groups
 * so that each event is handled once per service. Handlers run on a worker
 * loop (events of one subject on one loop, in order) or, with SVC_OFFLOAD,
 * on the thread pool. A flood on one subscription fills that subscription's
 * bounded queue and is dropped there (logged, counted); other subscriptions
 * and requests keep flowing because each loop works events off in batches
 * between its other I/O. The same runner serves JetStream messages (jetstream.c), whose
 * handler's return value decides ack, nak or term.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "msg/internal.h"

typedef struct ev_run {
    struct ev_run *next;             /* waiting in its offload slot */
    struct ev_run *more;             /* a batch consumer's: the next of this run */
    svc_event ev;
    msg_worker *mw;
    svc_nats_msg *msg;
    msg_sub *sub;                    /* core events */
    msg_consumer *consumer;          /* JetStream */
    svc_event_fn handler;
    void *ud;
    int rc;
    int slot;                        /* -1: runs on the loop */
    uv_work_t work;
    const char *source;              /* its publisher, a label value (event_source) */
    int traced;                      /* span: a consumer span (recorded when sampled) */
    svc_trace_ctx tctx;              /* span's, the handler's parent */
    svc_span span;
} ev_run;

/* A consumer span for an event that carries a traceparent. An unsampled
 * one is a span too, never recorded: the handler works for it, so what it
 * calls and publishes goes on unsampled in the same trace (parent-based
 * sampling) rather than start a root of its own. */
static void trace_begin(ev_run *r) {
    const char *tp = svc__nats_msg_header(r->msg, "traceparent");
    svc_trace_ctx parent;
    if (!tp) return;
    if (svc__traceparent_parse(tp, strlen(tp), &parent) != SVC_OK) {
        svc__trace_count_invalid(0);
        return;
    }
    char name[SVC_TRACE_NAME_MAX];
    snprintf(name, sizeof name, "consume %s", r->msg->subject);
    svc_span_begin(&r->span, &parent, SVC_SPAN_CONSUMER, name);
    r->traced = 1;
    r->span.detail_is = SVC_SPAN_DETAIL_SUBJECT;
    svc_span_set(r->span.detail, sizeof r->span.detail, r->msg->subject);
    r->tctx = svc_span_ctx(&r->span);
}

const svc_trace_ctx *svc_event_trace(const svc_event *e) {
    const ev_run *r = e ? e->impl : NULL;
    return r && r->traced ? &r->tctx : NULL;
}

/* Ends it: acked (SVC_OK) or redelivered later (SVC_EAGAIN) are not errors. */
static void trace_end(ev_run *r) {
    if (!r->traced) return;
    r->span.error = r->rc != SVC_OK && r->rc != SVC_EAGAIN;
    if (r->rc != SVC_OK) svc_span_set(r->span.code, sizeof r->span.code, svc_status_str(r->rc));
    svc_span_end(&r->span);
}

/* The handler of r, working for its span (SQL, calls and events it makes
 * are the span's children). */
static int call_handler(ev_run *r) {
    const svc_trace_ctx *prev = svc__trace_swap(r->traced ? &r->tctx : NULL);
    int rc = r->handler(r->mw->m->app, &r->ev, r->ud);
    svc__trace_swap(prev);
    return rc;
}

/* The m->sources table: the loops of one process share it. */
static pthread_mutex_t sources_lock = PTHREAD_MUTEX_INITIALIZER;

/* The publisher of msg as a label value: its Svc-Source when that is a
 * service name, one of the first SVC_MSG_MAX_EVENT_SOURCES seen; "other"
 * past them; "unknown" when absent or not a name. */
static const char *event_source(svc_msg *m, const svc_nats_msg *msg) {
    const char *v = svc__nats_msg_header(msg, SVC_MSG_SOURCE_HEADER);
    if (!v || !svc__msg_name_ok(v)) return "unknown";
    const char *out = NULL;
    pthread_mutex_lock(&sources_lock);
    for (int i = 0; i < m->nsources && !out; i++)
        if (strcmp(m->sources[i], v) == 0) out = m->sources[i];
    if (!out && m->nsources < SVC_MSG_MAX_EVENT_SOURCES) {
        snprintf(m->sources[m->nsources], sizeof m->sources[0], "%s", v);
        out = m->sources[m->nsources++];
    }
    pthread_mutex_unlock(&sources_lock);
    return out ? out : "other";
}

void svc__event_metric(svc_msg *m) {
    static const char *const labels[] = {"source", "subject", "outcome"};
    if (!m->m_events)
        m->m_events = svc_metric_counter("events_consumed_total",
                                         "Events and JetStream messages handled, by publishing service, "
                                         "subscription and outcome (error: nak or term)",
                                         3, labels);
}

/* One handled event in events_consumed_total, under its subscription's
 * declared subject (a bounded set, unlike the subjects published). */
static void count_consumed(const ev_run *r) {
    const char *labels[] = {r->source, r->consumer ? r->consumer->subject : r->sub->ev->subject,
                            r->rc == SVC_OK ? "ok" : "error"};
    svc_counter_add(svc_metric_with(r->mw->m->m_events, labels), 1);
}

static const char *event_header(const svc_event *e, const char *name) {
    if (!e || !e->impl || !name) return NULL;
    const ev_run *r = e->impl;
    return svc__nats_msg_header(r->msg, name);
}

static void start_offloaded(ev_run *r);

static void run_done(ev_run *r) {
    msg_worker *mw = r->mw;
    int slot = r->slot;
    /* The others of a batch: settled, and their slot turn is the head's. */
    for (ev_run *x = r->more, *next; x; x = next) {
        next = x->more;
        trace_end(x);
        count_consumed(x);
        svc__stream_settle(mw, x->consumer, x->msg, x->rc, x->ev.msg_id, x->ev.subject);
        svc__nats_msg_free(x->msg);
        free(x);
        mw->inflight--;
    }
    trace_end(r);
    count_consumed(r);
    if (r->consumer) {
        svc__stream_settle(mw, r->consumer, r->msg, r->rc, r->ev.msg_id, r->ev.subject);
    } else {
        atomic_fetch_sub(&r->sub->queued, 1);
        atomic_fetch_sub(&r->sub->queued_bytes, (long long)r->msg->wire_bytes);
    }
    svc__nats_msg_free(r->msg);
    free(r);
    if (slot >= 0) {
        /* Its turn is over: the next handler of the subscription may run;
         * after a forced stop none does. */
        offload_slot *os = &mw->slots[slot];
        os->running--;
        while (os->head && atomic_load(&mw->forced)) {
            ev_run *next = os->head;
            os->head = next->next;
            next->rc = SVC_EAGAIN; /* a stream message goes back (nak) */
            if (!next->consumer)
                svc__msg_drop(mw->m, DROP_SHUTDOWN, "event on %s dropped: stopping", next->ev.subject);
            next->slot = -1;
            run_done(next);
        }
        if (!os->head) os->tail = NULL;
        ev_run *next = os->head;
        if (next) {
            os->head = next->next;
            if (!os->head) os->tail = NULL;
            start_offloaded(next);
        }
    }
    mw->inflight--;
    svc__msg_worker_done(mw);
}

/* A batch consumer's messages of this run, in arrival order. */
static void run_batch(ev_run *r) {
    svc_event evs[SVC_MSG_STREAM_BATCH];
    int rcs[SVC_MSG_STREAM_BATCH];
    size_t n = 0;
    for (ev_run *x = r; x; x = x->more) evs[n] = x->ev, rcs[n++] = SVC_EAGAIN;
    r->consumer->batch(r->mw->m->app, evs, n, rcs, r->ud);
    n = 0;
    for (ev_run *x = r; x; x = x->more) x->rc = rcs[n++];
}

static void work_cb(uv_work_t *w) {
    ev_run *r = w->data;
    if (r->consumer && r->consumer->batch) run_batch(r);
    else r->rc = call_handler(r);
}

static void after_work_cb(uv_work_t *w, int status) {
    ev_run *r = w->data;
    /* Cancelled at shutdown: never handled, so a stream message is
     * redelivered (nak) rather than acked. */
    if (status == UV_ECANCELED)
        for (ev_run *x = r; x; x = x->more) x->rc = SVC_EAGAIN;
    run_done(r);
}

static void start_offloaded(ev_run *r) {
    msg_worker *mw = r->mw;
    offload_slot *os = &mw->slots[r->slot];
    os->running++;
    if (r->consumer && r->consumer->batch) {
        /* What waits in the slot goes along (the slot holds one consumer's). */
        ev_run *last = r;
        for (int n = 1; n < SVC_MSG_STREAM_BATCH && os->head; n++) {
            last->more = os->head;
            last = os->head;
            os->head = os->head->next;
            last->next = NULL;
        }
        if (!os->head) os->tail = NULL;
    }
    r->work.data = r;
    if (uv_queue_work(&mw->w->loop, &r->work, work_cb, after_work_cb) == 0) return;
    work_cb(&r->work);
    run_done(r);
}

static void run(msg_worker *mw, svc_nats_msg *msg, msg_sub *sub, msg_consumer *c, svc_event_fn handler,
                unsigned flags, void *ud, int slot) {
    ev_run *r = calloc(1, sizeof *r);
    if (!r) {
        svc__msg_drop(mw->m, DROP_OVERFLOW, "event on %s dropped: out of memory", msg->subject);
        if (c) {
            svc__stream_settle(mw, c, msg, SVC_EAGAIN, NULL, msg->subject);
        } else {
            atomic_fetch_sub(&sub->queued, 1);
            atomic_fetch_sub(&sub->queued_bytes, (long long)msg->wire_bytes);
        }
        svc__nats_msg_free(msg);
        return;
    }
    r->mw = mw;
    r->msg = msg;
    r->sub = sub;
    r->consumer = c;
    r->handler = handler;
    r->ud = ud;
    r->slot = (flags & SVC_OFFLOAD) && slot >= 0 && slot < mw->nslots ? slot : -1;
    r->ev.subject = msg->subject;
    r->ev.data = msg->data;
    r->ev.len = msg->len;
    r->ev.msg_id = svc__nats_msg_header(msg, "Nats-Msg-Id");
    r->ev.header = event_header;
    r->ev.impl = r;
    if (c) r->ev.delivered = svc__js_delivered(msg->reply);
    r->source = event_source(mw->m, msg);
    trace_begin(r);
    mw->inflight++;
    if (r->slot >= 0) {
        offload_slot *os = &mw->slots[r->slot];
        if (os->running < SVC_MSG_OFFLOAD_PER_SUB) {
            start_offloaded(r);
        } else {
            if (os->tail) os->tail->next = r;
            else os->head = r;
            os->tail = r;
        }
        return;
    }
    r->rc = call_handler(r);
    run_done(r);
}

void svc__event_handle(msg_worker *mw, msg_sub *s, svc_nats_msg *msg) {
    msg_event_reg *ev = s->ev;
    run(mw, msg, s, NULL, ev->handler, ev->flags, ev->ud, s->slot);
}

void svc__stream_handle(msg_worker *mw, msg_consumer *c, svc_nats_msg *msg) {
    run(mw, msg, NULL, c, c->handler, c->flags, c->ud, c->slot);
}

int svc_app_on_event(svc_app *app, const char *subject, const char *queue_group, svc_event_fn handler,
                     unsigned flags, void *ud) {
    if (!app || !handler || svc__msg_subject_check(subject, 1) != SVC_OK) return SVC_EINVAL;
    if (queue_group && *queue_group && svc__msg_queue_check(queue_group) != SVC_OK) return SVC_EINVAL;
    svc_msg *m = svc__msg_get(app);
    if (!m) return SVC_ENOMEM;
    if (atomic_load(&m->started)) return SVC_EINVAL;
    msg_event_reg *r = calloc(1, sizeof *r);
    if (!r) return SVC_ENOMEM;
    r->subject = strdup(subject);
    /* NULL: the service's own group; "": none (every instance). */
    const char *q = queue_group ? queue_group : app->name;
    r->queue = *q ? strdup(q) : NULL;
    if (!r->subject || (*q && !r->queue)) {
        free(r->subject);
        free(r->queue);
        free(r);
        return SVC_ENOMEM;
    }
    r->handler = handler;
    r->flags = flags;
    r->ud = ud;
    svc__event_metric(m);
    /* Appended: subscriptions are made in declaration order. */
    msg_event_reg **p = &m->events;
    while (*p) p = &(*p)->next;
    *p = r;
    return SVC_OK;
}

int svc_msg_publish(svc_app *app, const char *subject, const void *data, size_t len) {
    if (!app || (len && !data)) return SVC_EINVAL;
    svc_msg *m = svc__msg_get(app);
    if (svc__msg_subject_check(subject, 0) != SVC_OK) return SVC_EINVAL;
    if (!m || !m->enabled || !m->workers) return SVC_ECLOSED;
    if (len > SVC_MSG_MAX_PAYLOAD) return SVC_ERANGE;
    /* Fire and forget: the producer span ends when the message is handed
     * to the connection. */
    svc_buf h = {0};
    svc_span span;
    svc__msg_producer_begin(m, &span, subject, &h);
    svc__nats_hdr_end(&h);
    int rc = h.oom ? SVC_ENOMEM : svc__msg_pub_any(m, subject, NULL, h.data, h.len, len ? data : NULL, len);
    svc_buf_free(&h);
    svc__msg_producer_end(&span, rc);
    if (rc != SVC_OK && svc__msg_log_allowed(m, DROP_REASONS)) {
        svc_warn("nats: publish on %s failed: %s", subject, svc_status_str(rc));
        if (!svc__msg_current(m)) svc__log_thread_exit();
    }
    return rc;
}
