/*
 * JetStream: durable streams, publishing with a stored ack and
 * de-duplication by Nats-Msg-Id, and durable pull consumers with explicit
 * acks.
 *
 * Stream definitions are remembered and (re)applied whenever they may be
 * missing: when declared while connected, before a consumer binds, before a
 * publish after a reconnect. A consumer runs one fetch thread per instance:
 * it creates (or finds) the durable consumer with js_AddConsumer, binds a
 * pull subscription to it, fetches in batches while fewer than
 * SVC_MSG_STREAM_INFLIGHT messages are being handled, and hands each message
 * to a worker loop. The handler's return value acks, naks (redelivery after
 * SVC_MSG_NAK_DELAY_MS) or terminates it. Anything not acked (a crash, a
 * kill -9) is redelivered by the server after ack_wait to another instance.
 * The subscription is destroyed, never unsubscribed, so the durable consumer
 * outlives the process.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "msg/internal.h"

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int map_status(natsStatus s) {
    switch (s) {
    case NATS_OK: return SVC_OK;
    case NATS_TIMEOUT: return SVC_ETIMEDOUT;
    case NATS_NO_RESPONDERS: return SVC_ENOTFOUND;
    case NATS_NOT_FOUND: return SVC_ENOTFOUND;
    case NATS_CONNECTION_CLOSED: return SVC_ECLOSED;
    case NATS_INSUFFICIENT_BUFFER: return SVC_EAGAIN;
    case NATS_MAX_PAYLOAD: return SVC_ERANGE;
    default: return SVC_EIO;
    }
}

static int apply_stream(svc_msg *m, const msg_stream_def *d) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = d->name;
    cfg.Subjects = (const char **)d->subjects;
    cfg.SubjectsLen = d->nsubjects;
    cfg.Storage = js_FileStorage;
    cfg.Duplicates = d->duplicate_window_ms * 1000000LL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, m->js, &cfg, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) {
        jerr = 0;
        s = js_UpdateStream(&si, m->js, &cfg, NULL, &jerr);
    }
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        svc_error("nats: cannot declare stream %s: %s (JetStream error %d)", d->name, natsStatus_GetText(s),
                  (int)jerr);
        return s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS ? SVC_EAGAIN : map_status(s);
    }
    return SVC_OK;
}

int svc__js_apply_streams(svc_msg *m) {
    if (!atomic_load(&m->connected)) return SVC_EAGAIN;
    atomic_store(&m->streams_dirty, 0);
    int rc = SVC_OK;
    pthread_mutex_lock(&m->streams_lock);
    for (msg_stream_def *d = m->streams; d; d = d->next) {
        int r = apply_stream(m, d);
        if (r != SVC_OK) rc = r;
    }
    pthread_mutex_unlock(&m->streams_lock);
    if (rc != SVC_OK) atomic_store(&m->streams_dirty, 1);
    return rc;
}

static void free_def(msg_stream_def *d) {
    if (!d) return;
    for (int i = 0; i < d->nsubjects; i++) free(d->subjects[i]);
    free(d->subjects);
    free(d->name);
    free(d);
}

int svc_js_stream_ensure(svc_app *app, const char *stream, const char *const *subjects,
                         int64_t duplicate_window_ms) {
    if (!app || !svc__msg_js_name_ok(stream) || !subjects || !subjects[0] || duplicate_window_ms < 0)
        return SVC_EINVAL;
    int n = 0;
    for (; subjects[n]; n++)
        if (n >= 64 || svc__msg_subject_check(subjects[n], 1) != SVC_OK) return SVC_EINVAL;
    svc_msg *m = svc__msg_get(app);
    if (!m) return SVC_ENOMEM;
    msg_stream_def *d = calloc(1, sizeof *d);
    if (!d) return SVC_ENOMEM;
    d->name = strdup(stream);
    d->subjects = calloc((size_t)n, sizeof *d->subjects);
    d->duplicate_window_ms = duplicate_window_ms;
    if (!d->name || !d->subjects) {
        free_def(d);
        return SVC_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        d->subjects[i] = strdup(subjects[i]);
        if (!d->subjects[i]) {
            free_def(d);
            return SVC_ENOMEM;
        }
        d->nsubjects = i + 1;
    }
    pthread_mutex_lock(&m->streams_lock);
    /* A second declaration of the same stream replaces the first. */
    for (msg_stream_def **p = &m->streams; *p; p = &(*p)->next) {
        if (strcmp((*p)->name, stream) == 0) {
            msg_stream_def *old = *p;
            *p = old->next;
            free_def(old);
            break;
        }
    }
    d->next = m->streams;
    m->streams = d;
    int rc = SVC_OK;
    if (m->enabled && m->js && atomic_load(&m->connected)) rc = apply_stream(m, d);
    else atomic_store(&m->streams_dirty, 1);
    pthread_mutex_unlock(&m->streams_lock);
    if (!m->enabled) return SVC_ECLOSED;
    return rc;
}

int svc_js_publish(svc_app *app, const char *subject, const void *data, size_t len, const char *msg_id,
                   int timeout_ms) {
    if (!app || (len && !data) || svc__msg_subject_check(subject, 0) != SVC_OK) return SVC_EINVAL;
    if (msg_id && (!*msg_id || strlen(msg_id) > 256 || !svc__msg_header_value_ok(msg_id))) return SVC_EINVAL;
    svc_msg *m = app->msg;
    if (!m || !m->enabled || !m->js) return SVC_ECLOSED;
    if (len > SVC_MSG_MAX_PAYLOAD) return SVC_ERANGE;
    if (atomic_load(&m->streams_dirty)) svc__js_apply_streams(m);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    po.MaxWait = timeout_ms > 0 ? timeout_ms : SVC_MSG_RPC_TIMEOUT_MS;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_Publish(&ack, m->js, subject, len ? data : NULL, (int)len, &po, &jerr);
    jsPubAck_Destroy(ack);
    if (s != NATS_OK) {
        svc_counter_add(m->s_publish_failed, 1);
        if (svc__msg_log_allowed(m, DROP_REASONS))
        {
            svc_warn("nats: JetStream publish on %s failed: %s (JetStream error %d)", subject,
                     natsStatus_GetText(s), (int)jerr);
            svc__msg_log_release(m);
        }
    }
    return map_status(s);
}

int svc_app_on_stream(svc_app *app, const char *stream, const char *subject, const char *durable,
                      int ack_wait_ms, svc_event_fn handler, unsigned flags, void *ud) {
    if (!app || !handler || !svc__msg_js_name_ok(stream) || !svc__msg_js_name_ok(durable) ||
        svc__msg_subject_check(subject, 1) != SVC_OK || ack_wait_ms < 0)
        return SVC_EINVAL;
    svc_msg *m = svc__msg_get(app);
    if (!m) return SVC_ENOMEM;
    if (atomic_load(&m->started)) return SVC_EINVAL;
    msg_consumer *c = calloc(1, sizeof *c);
    if (!c) return SVC_ENOMEM;
    c->m = m;
    c->stream = strdup(stream);
    c->subject = strdup(subject);
    c->durable = strdup(durable);
    c->ack_wait_ms = ack_wait_ms ? ack_wait_ms : 30000;
    c->handler = handler;
    c->flags = flags;
    c->ud = ud;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->next = m->consumers;
    m->consumers = c;
    if (!c->stream || !c->subject || !c->durable) return SVC_ENOMEM; /* freed with the app */
    return SVC_OK;
}

/* ---- the fetch thread ----------------------------------------------------------- */

static int stopping(msg_consumer *c) { return atomic_load(&c->stop); }

static void pause_ms(msg_consumer *c, int ms) {
    for (int t = 0; t < ms && !stopping(c); t += 50) sleep_ms(50);
}

static natsSubscription *bind_consumer(msg_consumer *c) {
    svc_msg *m = c->m;
    if (atomic_load(&m->streams_dirty)) svc__js_apply_streams(m);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = c->durable;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = (int64_t)c->ack_wait_ms * 1000000LL;
    cc.FilterSubject = c->subject;
    cc.DeliverPolicy = js_DeliverAll;
    cc.MaxAckPending = SVC_MSG_STREAM_INFLIGHT * 4;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddConsumer(&ci, m->js, c->stream, &cc, NULL, &jerr);
    if (s != NATS_OK && jerr != 0) {
        /* It exists with another configuration (say a new ack_wait): update. */
        jsErrCode jerr2 = 0;
        if (js_UpdateConsumer(&ci, m->js, c->stream, &cc, NULL, &jerr2) == NATS_OK) s = NATS_OK;
    }
    jsConsumerInfo_Destroy(ci);
    if (s != NATS_OK) {
        if (svc__msg_log_allowed(m, DROP_REASONS + 1))
            svc_warn("nats: cannot create consumer %s on stream %s: %s (JetStream error %d); retrying",
                     c->durable, c->stream, natsStatus_GetText(s), (int)jerr);
        return NULL;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = c->stream;
    so.Consumer = c->durable;
    so.ManualAck = true;
    natsSubscription *sub = NULL;
    jerr = 0;
    s = js_PullSubscribe(&sub, m->js, c->subject, c->durable, NULL, &so, &jerr);
    if (s != NATS_OK) {
        if (svc__msg_log_allowed(m, DROP_REASONS + 1))
            svc_warn("nats: cannot bind to consumer %s: %s (JetStream error %d); retrying", c->durable,
                     natsStatus_GetText(s), (int)jerr);
        return NULL;
    }
    svc_info("nats: consuming %s from stream %s as %s (ack wait %d ms)", c->subject, c->stream, c->durable,
             c->ack_wait_ms);
    return sub;
}

static void hand_over(msg_consumer *c, natsMsg *msg) {
    svc_msg *m = c->m;
    msg_item *it = malloc(sizeof *it);
    atomic_fetch_add(&c->inflight, 1);
    if (it) {
        *it = (msg_item){.kind = ITEM_STREAM, .msg = msg, .ptr = c};
        if (svc__msg_push(svc__msg_pick(m), it, 0) == SVC_OK) return;
        free(it);
    }
    natsMsg_Nak(msg, NULL);
    natsMsg_Destroy(msg);
    pthread_mutex_lock(&c->lock);
    atomic_fetch_sub(&c->inflight, 1);
    pthread_mutex_unlock(&c->lock);
}

static void *fetch_main(void *arg) {
    msg_consumer *c = arg;
    svc_msg *m = c->m;
    natsSubscription *sub = NULL;
    int errors = 0;
    while (!stopping(c)) {
        if (!atomic_load(&m->connected)) {
            pause_ms(c, 100);
            continue;
        }
        if (!sub && !(sub = bind_consumer(c))) {
            pause_ms(c, 1000);
            continue;
        }
        pthread_mutex_lock(&c->lock);
        while (atomic_load(&c->inflight) >= SVC_MSG_STREAM_INFLIGHT && !stopping(c)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&c->cond, &c->lock, &ts);
        }
        int room = SVC_MSG_STREAM_INFLIGHT - atomic_load(&c->inflight);
        pthread_mutex_unlock(&c->lock);
        if (stopping(c)) break;
        int batch = room < SVC_MSG_FETCH_BATCH ? room : SVC_MSG_FETCH_BATCH;
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, sub, batch, SVC_MSG_FETCH_WAIT_MS, &jerr);
        if (s == NATS_TIMEOUT) {
            errors = 0;
            continue;
        }
        if (s != NATS_OK) {
            /* The consumer or stream may be gone (a server that lost its
             * store): after a few failures, bind again from scratch. */
            if (++errors >= 3) {
                natsSubscription_Destroy(sub);
                sub = NULL;
                atomic_store(&m->streams_dirty, 1);
                errors = 0;
            }
            if (svc__msg_log_allowed(m, DROP_REASONS + 1))
                svc_warn("nats: fetch from %s failed: %s", c->durable, natsStatus_GetText(s));
            pause_ms(c, 250);
            continue;
        }
        errors = 0;
        for (int i = 0; i < list.Count; i++) {
            natsMsg *msg = list.Msgs[i];
            list.Msgs[i] = NULL;
            if (!msg) continue;
            if (stopping(c)) {
                natsMsg_Nak(msg, NULL);
                natsMsg_Destroy(msg);
                continue;
            }
            hand_over(c, msg);
        }
        natsMsgList_Destroy(&list);
    }
    natsSubscription_Destroy(sub);
    nats_ReleaseThreadMemory();
    svc__log_thread_exit();
    return NULL;
}

void svc__js_start(svc_msg *m) {
    for (msg_consumer *c = m->consumers; c; c = c->next) {
        if (pthread_create(&c->thread, NULL, fetch_main, c) == 0) c->started = 1;
        else svc_error("nats: cannot start the fetch thread of %s", c->durable);
    }
}

void svc__js_stop(svc_msg *m, int join) {
    for (msg_consumer *c = m->consumers; c; c = c->next) atomic_store(&c->stop, 1);
    for (msg_consumer *c = join ? m->consumers : NULL; c; c = c->next) {
        if (!c->started) continue;
        pthread_join(c->thread, NULL);
        c->started = 0;
    }
}
