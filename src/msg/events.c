/*
 * Events: publish (core NATS, at most once) and subscribe, in queue groups
 * so that each event is handled once per service. Handlers run on a worker
 * loop (events of one subject on one loop, in order) or, with SVC_OFFLOAD,
 * on the thread pool. A flood on one subscription fills that subscription's
 * bounded queue and is dropped there (logged, counted); other subscriptions
 * and requests keep flowing because each loop alternates between requests
 * and events. The same runner serves JetStream messages (jetstream.c), whose
 * handler's return value decides ack, nak or term.
 */
#include <stdlib.h>
#include <string.h>

#include "msg/internal.h"

typedef struct ev_run {
    struct ev_run *next;             /* waiting in its offload slot */
    svc_event ev;
    msg_worker *mw;
    natsMsg *msg;
    msg_sub *sub;                    /* core events */
    msg_consumer *consumer;          /* JetStream */
    svc_event_fn handler;
    void *ud;
    int rc;
    int slot;                        /* -1: runs on the loop */
    uv_work_t work;
} ev_run;

static const char *event_header(const svc_event *e, const char *name) {
    if (!e || !e->impl || !name) return NULL;
    const ev_run *r = e->impl;
    return svc__msg_header(r->msg, name);
}

static void settle_stream(ev_run *r) {
    msg_consumer *c = r->consumer;
    svc_msg *m = r->mw->m;
    natsStatus s;
    if (r->rc == SVC_OK) {
        s = natsMsg_Ack(r->msg, NULL);
    } else if (r->rc == SVC_EAGAIN) {
        s = natsMsg_NakWithDelay(r->msg, SVC_MSG_NAK_DELAY_MS, NULL);
    } else {
        if (svc__msg_log_allowed(m, DROP_MALFORMED))
            svc_warn("nats: %s on %s refused by its handler (%s); terminated, never redelivered",
                     r->ev.msg_id ? r->ev.msg_id : "message", r->ev.subject, svc_status_str(r->rc));
        s = natsMsg_Term(r->msg, NULL);
    }
    if (s != NATS_OK && svc__msg_log_allowed(m, DROP_REASONS))
        svc_warn("nats: cannot acknowledge a message of %s: %s (it will be redelivered)", c->durable,
                 natsStatus_GetText(s));
    pthread_mutex_lock(&c->lock);
    atomic_fetch_sub(&c->inflight, 1);
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void start_offloaded(ev_run *r);

static void run_done(ev_run *r) {
    msg_worker *mw = r->mw;
    int slot = r->slot;
    if (r->consumer) {
        settle_stream(r);
    } else {
        atomic_fetch_sub(&r->sub->queued, 1);
        atomic_fetch_sub(&r->sub->queued_bytes, (long long)r->ev.len);
    }
    natsMsg_Destroy(r->msg);
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

static void work_cb(uv_work_t *w) {
    ev_run *r = w->data;
    r->rc = r->handler(r->mw->m->app, &r->ev, r->ud);
}

static void after_work_cb(uv_work_t *w, int status) {
    ev_run *r = w->data;
    /* Cancelled at shutdown: never handled, so a stream message is
     * redelivered (nak) rather than acked. */
    if (status == UV_ECANCELED) r->rc = SVC_EAGAIN;
    run_done(r);
}

static void start_offloaded(ev_run *r) {
    msg_worker *mw = r->mw;
    mw->slots[r->slot].running++;
    r->work.data = r;
    if (uv_queue_work(&mw->w->loop, &r->work, work_cb, after_work_cb) == 0) return;
    r->rc = r->handler(mw->m->app, &r->ev, r->ud);
    run_done(r);
}

static void run(msg_worker *mw, natsMsg *msg, msg_sub *sub, msg_consumer *c, svc_event_fn handler,
                unsigned flags, void *ud, int slot) {
    ev_run *r = calloc(1, sizeof *r);
    if (!r) {
        svc__msg_drop(mw->m, DROP_OVERFLOW, "event on %s dropped: out of memory", natsMsg_GetSubject(msg));
        if (c) {
            natsMsg_Nak(msg, NULL);
            pthread_mutex_lock(&c->lock);
            atomic_fetch_sub(&c->inflight, 1);
            pthread_cond_signal(&c->cond);
            pthread_mutex_unlock(&c->lock);
        } else {
            atomic_fetch_sub(&sub->queued, 1);
            atomic_fetch_sub(&sub->queued_bytes, (long long)natsMsg_GetDataLength(msg));
        }
        natsMsg_Destroy(msg);
        return;
    }
    r->mw = mw;
    r->msg = msg;
    r->sub = sub;
    r->consumer = c;
    r->handler = handler;
    r->ud = ud;
    r->slot = (flags & SVC_OFFLOAD) && slot >= 0 && slot < mw->nslots ? slot : -1;
    r->ev.subject = natsMsg_GetSubject(msg);
    r->ev.data = natsMsg_GetData(msg);
    if (!r->ev.data) r->ev.data = "";
    r->ev.len = (size_t)natsMsg_GetDataLength(msg);
    r->ev.msg_id = svc__msg_header(msg, "Nats-Msg-Id");
    r->ev.header = event_header;
    r->ev.impl = r;
    if (c) {
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
            r->ev.delivered = meta->NumDelivered;
            jsMsgMetaData_Destroy(meta);
        }
    }
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
    r->rc = handler(mw->m->app, &r->ev, ud);
    run_done(r);
}

void svc__event_handle(msg_worker *mw, msg_sub *s, natsMsg *msg) {
    msg_event_reg *ev = s->ev;
    run(mw, msg, s, NULL, ev->handler, ev->flags, ev->ud, s->slot);
}

void svc__stream_handle(msg_worker *mw, msg_consumer *c, natsMsg *msg) {
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
    /* Appended: subscriptions are made in declaration order. */
    msg_event_reg **p = &m->events;
    while (*p) p = &(*p)->next;
    *p = r;
    return SVC_OK;
}

int svc__msg_publish_status(svc_msg *m, natsStatus s) {
    switch (s) {
    case NATS_OK: return SVC_OK;
    case NATS_INSUFFICIENT_BUFFER:
        svc_counter_add(m->s_publish_failed, 1);
        return SVC_EAGAIN;
    case NATS_MAX_PAYLOAD: return SVC_ERANGE;
    case NATS_CONNECTION_CLOSED:
        svc_counter_add(m->s_publish_failed, 1);
        return SVC_ECLOSED;
    default:
        svc_counter_add(m->s_publish_failed, 1);
        return SVC_EIO;
    }
}

int svc_msg_publish(svc_app *app, const char *subject, const void *data, size_t len) {
    if (!app || (len && !data)) return SVC_EINVAL;
    svc_msg *m = app->msg;
    if (svc__msg_subject_check(subject, 0) != SVC_OK) return SVC_EINVAL;
    if (!m || !m->enabled || !m->nc) return SVC_ECLOSED;
    if (len > SVC_MSG_MAX_PAYLOAD) return SVC_ERANGE;
    natsStatus s = natsConnection_Publish(m->nc, subject, len ? data : NULL, (int)len);
    int rc = svc__msg_publish_status(m, s);
    if (rc != SVC_OK && svc__msg_log_allowed(m, DROP_REASONS))
    {
        svc_warn("nats: publish on %s failed: %s", subject, natsStatus_GetText(s));
        svc__msg_log_release(m);
    }
    return rc;
}
