/*
 * The NATS connections and their life cycle: one connection per worker loop
 * (internal.h says which subscribes to what), the hand-off from other
 * threads, and the transport hooks the runtime calls (svc__nats_transport, at
 * the end of this file).
 *
 *   setup         (before on_start) servers, metrics, endpoints, instance id.
 *   worker_start  (each worker thread) its connection, which connects in
 *                 the background; /readyz says "nats" until all are up.
 *   start         (workers running) declares the subscriptions; each worker
 *                 makes its own on its connection (ITEM_START).
 *   drain         (the HTTP listeners close) each worker unsubscribes its
 *                 request, event and discovery subscriptions, flushes (the
 *                 PONG means the server sent all it will), serves what came,
 *                 and closes its connection (replies written first) once
 *                 nothing is in flight.
 *   stop / free   (workers joined) free what is left.
 *
 * Why a connection per loop rather than one per process: a request then
 * arrives, is handled and is answered on one thread, and a call's reply
 * comes back to the caller's loop: no hand-off, no lock, no wake-up on the
 * request path. A connection costs a socket and two 64 KiB buffers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "msg/internal.h"

static const char *const drop_reasons[DROP_REASONS] = {
    "no_reply", "overflow", "slow_consumer", "expired", "late_reply", "shutdown", "malformed",
};

const char *svc__msg_drop_reason(int reason) {
    return reason >= 0 && reason < DROP_REASONS ? drop_reasons[reason] : "other";
}

/* The transport's state, made when svc_app_new registers the transport:
 * its registry entry (a look through at most SVC_MAX_TRANSPORTS pointers).
 * NULL on an app without the NATS transport. */
svc_msg *svc__msg_get(const svc_app *app) { return svc__app_transport_state(app, &svc__nats_transport); }

static void *nats_create(svc_app *app) {
    svc_msg *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->app = app;
    pthread_mutex_init(&m->streams_lock, NULL);
    return m;
}

int svc__msg_log_allowed(svc_msg *m, int slot) {
    int64_t now = svc_wall_ms();
    long long last = atomic_load(&m->last_log_ms[slot]);
    if (now - last < SVC_MSG_LOG_INTERVAL_MS) return 0;
    return atomic_compare_exchange_strong(&m->last_log_ms[slot], &last, now);
}

/* The log keeps a buffer per thread, freed only by threads that say they
 * exit; thread-pool threads never do, so they give it back after each line. */
static void log_release(svc_msg *m) {
    if (!svc__msg_current(m)) svc__log_thread_exit();
}

void svc__msg_drop(svc_msg *m, int reason, const char *fmt, ...) {
    svc_counter_add(m->s_dropped[reason], 1);
    if (!svc__msg_log_allowed(m, reason)) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    svc_warn("nats: %s (reason %s; %.0f dropped so far; at most one line per second)", line,
             drop_reasons[reason], svc_series_value(m->s_dropped[reason]));
    log_release(m);
}

/* ---- the queues ----------------------------------------------------------------- */

int svc__msg_push(msg_worker *mw, msg_item *it, int hi) {
    it->next = NULL;
    pthread_mutex_lock(&mw->lock);
    if (mw->closed) {
        pthread_mutex_unlock(&mw->lock);
        return SVC_ECLOSED;
    }
    msg_item **head = hi ? &mw->hi_head : &mw->lo_head, **tail = hi ? &mw->hi_tail : &mw->lo_tail;
    if (*tail) (*tail)->next = it;
    else *head = it;
    *tail = it;
    /* Under the lock: the loop cannot close the handle between our check of
     * `closed` and the send. */
    if (mw->ready) uv_async_send(&mw->async);
    pthread_mutex_unlock(&mw->lock);
    return SVC_OK;
}

msg_worker *svc__msg_pick(svc_msg *m) {
    unsigned i = atomic_fetch_add(&m->rr, 1);
    return &m->workers[i % (unsigned)m->nworkers];
}

/* The worker whose loop runs on this thread, remembered by the thread itself
 * once it is ready (a worker is never un-readied), so that the request path
 * does not lock every worker's mutex to find its own. */
static _Thread_local svc_msg *tl_msg;
static _Thread_local msg_worker *tl_worker;

msg_worker *svc__msg_current(svc_msg *m) {
    if (!m || !m->workers) return NULL;
    if (tl_worker && tl_msg == m) return tl_worker;
    uv_thread_t self = uv_thread_self();
    for (int i = 0; i < m->nworkers; i++) {
        msg_worker *mw = &m->workers[i];
        pthread_mutex_lock(&mw->lock);
        int ready = mw->ready;
        pthread_mutex_unlock(&mw->lock);
        if (ready && uv_thread_equal(&mw->tid, &self)) return mw;
    }
    return NULL;
}

/* The loop a subject's publishes and events go to: always the same one, so
 * that one subject keeps its order. */
static msg_worker *worker_for(svc_msg *m, const char *subject) {
    return &m->workers[svc__fnv1a(subject, strlen(subject), SVC__FNV1A_SEED) % (unsigned)m->nworkers];
}

static int worker_closed(msg_worker *mw) {
    pthread_mutex_lock(&mw->lock);
    int c = mw->closed;
    pthread_mutex_unlock(&mw->lock);
    return c;
}

/* ---- publishing ------------------------------------------------------------------- */

int svc__msg_pub(msg_worker *mw, const char *subject, const char *reply, const char *hdr, size_t hdr_len,
                 const void *data, size_t len) {
    int rc = mw->nc ? svc__nats_pub(mw->nc, subject, reply, hdr, hdr_len, data, len) : SVC_ECLOSED;
    if (rc != SVC_OK && rc != SVC_ERANGE && rc != SVC_EINVAL) svc_counter_add(mw->m->s_publish_failed, 1);
    return rc;
}

int svc__msg_reply(msg_worker *mw, const char *subject, const char *hdr, size_t hdr_len, const void *data,
                   size_t len) {
    int rc = mw->nc ? svc__nats_reply(mw->nc, subject, hdr, hdr_len, data, len) : SVC_ECLOSED;
    if (rc != SVC_OK && rc != SVC_ERANGE && rc != SVC_EINVAL) svc_counter_add(mw->m->s_publish_failed, 1);
    return rc;
}

static void free_pub(msg_pub *p) { free(p); }

int svc__msg_pub_any(svc_msg *m, const char *subject, const char *reply, const char *hdr, size_t hdr_len,
                     const void *data, size_t len) {
    msg_worker *self = svc__msg_current(m);
    if (self) return svc__msg_pub(self, subject, reply, hdr, hdr_len, data, len);
    msg_worker *mw = worker_for(m, subject);
    /* Decided here, so that the caller gets SVC_EAGAIN rather than a
     * publish that fails later on the loop: what other threads hand over
     * and the loop has not taken yet is bounded, connected or not, so that
     * a loop that falls behind cannot pile up memory. The bytes are
     * reserved before the check, so that threads racing for the last room
     * cannot overshoot it together. (The loop's connection is not read from
     * here: it belongs to that thread.) */
    size_t sl = strlen(subject), rl = reply ? strlen(reply) : 0;
    size_t wire = sl + rl + hdr_len + len + 32;
    long long before = atomic_fetch_add(&mw->handed_bytes, (long long)wire);
    if ((size_t)before + wire > SVC_MSG_MAX_HANDED_BYTES) {
        atomic_fetch_sub(&mw->handed_bytes, (long long)wire);
        svc_counter_add(m->s_publish_failed, 1);
        return SVC_EAGAIN;
    }
    msg_pub *p = malloc(sizeof *p + sl + 1 + (reply ? rl + 1 : 0) + hdr_len + len + 1);
    msg_item *it = malloc(sizeof *it);
    if (!p || !it) {
        free(p);
        free(it);
        atomic_fetch_sub(&mw->handed_bytes, (long long)wire);
        return SVC_ENOMEM;
    }
    char *q = (char *)(p + 1);
    p->subject = q;
    memcpy(q, subject, sl + 1);
    q += sl + 1;
    p->reply = NULL;
    if (reply) {
        p->reply = q;
        memcpy(q, reply, rl + 1);
        q += rl + 1;
    }
    p->hdr = q;
    p->hdr_len = hdr_len;
    if (hdr_len) memcpy(q, hdr, hdr_len);
    q += hdr_len;
    p->data = q;
    p->len = len;
    if (len) memcpy(q, data, len);
    *it = (msg_item){.kind = ITEM_PUB, .ptr = p, .bytes = wire};
    if (svc__msg_push(mw, it, 1) != SVC_OK) {
        atomic_fetch_sub(&mw->handed_bytes, (long long)wire);
        free_pub(p);
        free(it);
        svc_counter_add(m->s_publish_failed, 1);
        return SVC_ECLOSED;
    }
    return SVC_OK;
}

static void run_pub(msg_worker *mw, msg_item *it) {
    msg_pub *p = it->ptr;
    atomic_fetch_sub(&mw->handed_bytes, (long long)it->bytes);
    int rc = svc__msg_pub(mw, p->subject, p->reply, p->hdr_len ? p->hdr : NULL, p->hdr_len, p->data, p->len);
    if (rc != SVC_OK && svc__msg_log_allowed(mw->m, DROP_REASONS))
        svc_warn("nats: publish on %s failed after hand-over: %s", p->subject, svc_status_str(rc));
    free_pub(p);
}

/* ---- messages from the connections (loop thread) ------------------------------------- */

static int is_request(const msg_sub *s) { return s->kind == SUB_ROUTE || s->kind == SUB_HTTP; }

static void on_msg(svc_nats *nc, svc_nats_msg *msg, void *ud) {
    msg_sub *s = ud;
    svc_msg *m = s->m;
    msg_worker *mw = svc__nats_ud(nc);
    if (is_request(s)) {
        if (!msg->reply) {
            svc__msg_drop(m, DROP_NO_REPLY, "request on %s without a reply subject dropped", msg->subject);
            svc__nats_msg_free(msg);
            return;
        }
        if (atomic_load(&mw->forced) || worker_closed(mw)) {
            svc__msg_reply_error(mw, msg, 503, "unavailable", "service is shutting down");
            svc__nats_msg_free(msg);
            return;
        }
    }
    if (atomic_load(&s->queued) >= SVC_MSG_MAX_PENDING_PER_SUB ||
        atomic_load(&s->queued_bytes) + (long long)msg->wire_bytes > SVC_MSG_MAX_PENDING_BYTES_PER_SUB) {
        if (is_request(s)) svc__msg_reply_error(mw, msg, 503, "unavailable", "too many requests queued");
        svc__msg_drop(m, DROP_OVERFLOW, "message on %s dropped: %s queue full", msg->subject, s->subject);
        svc__nats_msg_free(msg);
        return;
    }
    atomic_fetch_add(&s->queued, 1);
    atomic_fetch_add(&s->queued_bytes, (long long)msg->wire_bytes);
    if (is_request(s)) {
        svc__msg_handle_request(mw, s, msg);
        return;
    }
    /* An event: to the loop its subject hashes to (one subject, one loop,
     * in order), through the queue even when that is this loop, so that a
     * flood is worked off in batches between other I/O. */
    msg_worker *to = worker_for(m, msg->subject);
    msg_item *it = malloc(sizeof *it);
    if (it) {
        *it = (msg_item){.kind = ITEM_MSG, .msg = msg, .sub = s, .bytes = msg->wire_bytes};
        if (svc__msg_push(to, it, 0) == SVC_OK) return;
        free(it);
    }
    svc__msg_drop(m, it ? DROP_SHUTDOWN : DROP_OVERFLOW, "event on %s dropped: %s", msg->subject,
                  it ? "shutting down" : "out of memory");
    atomic_fetch_sub(&s->queued, 1);
    atomic_fetch_sub(&s->queued_bytes, (long long)msg->wire_bytes);
    svc__nats_msg_free(msg);
}

/* Worker 0's subscriptions are registered (the server answered a PING sent
 * after them): the other workers may send what they buffered. */
static void w0_confirmed(svc_nats *nc, int ok, void *ud) {
    (void)nc;
    msg_worker *mw = ud;
    svc_msg *m = mw->m;
    if (!ok || atomic_exchange(&m->w0_subs_ready, 1)) return;
    for (int i = 1; i < m->nworkers; i++) {
        msg_item *it = calloc(1, sizeof *it);
        if (!it) continue;
        it->kind = ITEM_RELEASE;
        if (svc__msg_push(&m->workers[i], it, 1) != SVC_OK) free(it);
    }
}

static void subscribe_all(msg_worker *mw) {
    svc_msg *m = mw->m;
    if (!mw->nc) return;
    int n = 0;
    for (msg_sub *s = m->subs; s; s = s->next) n++;
    mw->sids = calloc((size_t)n + 1, sizeof *mw->sids);
    int failed = 0;
    for (msg_sub *s = m->subs; s; s = s->next) {
        if (!s->every_worker && mw->id != 0) continue;
        uint64_t sid = svc__nats_sub(mw->nc, s->subject, s->queue,
                                     s->kind == SUB_DISCOVERY ? svc__discovery_on_msg
                                     : s->kind == SUB_TRACE   ? svc__trace_on_msg
                                                              : on_msg,
                                     s);
        if (!sid) failed++;
        else if (mw->sids) mw->sids[mw->nsids++] = sid;
    }
    if (failed) svc_error("nats: worker %d could not subscribe to %d subject%s (out of memory)", mw->id, failed,
                          failed == 1 ? "" : "s");
    if (mw->id == 0) svc__js_subscribe(mw);
    if (mw->id == 0 && svc__nats_connected(mw->nc)) {
        svc__nats_flush(mw->nc, w0_confirmed, mw);
        svc__js_on_connected(mw);
    }
}

/* ---- the worker side ---------------------------------------------------------- */

static void refuse_item(msg_worker *mw, msg_item *it);

static void process(msg_worker *mw, msg_item *it) {
    switch (it->kind) {
    case ITEM_MSG:
        svc__event_handle(mw, it->sub, it->msg);
        break;
    case ITEM_RPC:
    case ITEM_SYNC:
        svc__rpc_start_call(mw, it->ptr);
        break;
    case ITEM_PUB:
        run_pub(mw, it);
        break;
    case ITEM_START:
        subscribe_all(mw);
        break;
    case ITEM_RELEASE:
        if (mw->nc) svc__nats_release(mw->nc);
        break;
    case ITEM_RETRY:
        if (mw->nc) svc__nats_retry_now(mw->nc);
        break;
    case ITEM_CALL:
        it->fn(&mw->w->loop, it->ptr);
        break;
    }
    free(it);
}

/* Disposes of an item that no loop will handle (worker closing). */
static void refuse_item(msg_worker *mw, msg_item *it) {
    svc_msg *m = mw->m;
    switch (it->kind) {
    case ITEM_MSG:
        svc__msg_drop(m, DROP_SHUTDOWN, "message on %s dropped: shutting down", it->msg->subject);
        atomic_fetch_sub(&it->sub->queued, 1);
        atomic_fetch_sub(&it->sub->queued_bytes, (long long)it->bytes);
        svc__nats_msg_free(it->msg);
        break;
    case ITEM_PUB:
        atomic_fetch_sub(&mw->handed_bytes, (long long)it->bytes);
        svc_counter_add(m->s_publish_failed, 1);
        free_pub(it->ptr);
        break;
    case ITEM_RPC:
    case ITEM_SYNC:
        svc__rpc_start_call(mw, it->ptr); /* sees the worker closed: fails at once */
        break;
    default:
        break;
    }
    free(it);
}

static void close_handles(msg_worker *mw) {
    pthread_mutex_lock(&mw->lock);
    if (mw->closed) {
        pthread_mutex_unlock(&mw->lock);
        return;
    }
    mw->closed = 1;
    msg_item *lists[2] = {mw->hi_head, mw->lo_head};
    mw->hi_head = mw->hi_tail = mw->lo_head = mw->lo_tail = NULL;
    pthread_mutex_unlock(&mw->lock);
    for (int k = 0; k < 2; k++) {
        msg_item *it = lists[k];
        while (it) {
            msg_item *next = it->next;
            refuse_item(mw, it);
            it = next;
        }
    }
    svc__rpc_fail_all(mw, SVC_ECLOSED, 0);
    if (mw->id == 0) svc__js_close(mw);
    /* What is still queued (replies, acks) is written before the socket
     * closes; the connection frees itself once its handles are closed. */
    svc__nats_close(mw->nc);
    mw->nc = NULL;
    if (atomic_exchange(&mw->connected, 0)) atomic_fetch_sub(&mw->m->nconnected, 1);
    if (!uv_is_closing((uv_handle_t *)&mw->async)) uv_close((uv_handle_t *)&mw->async, NULL);
    if (!uv_is_closing((uv_handle_t *)&mw->drain_timer)) uv_close((uv_handle_t *)&mw->drain_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&mw->grace_timer)) uv_close((uv_handle_t *)&mw->grace_timer, NULL);
}

/* Closes the worker's handles once drained and idle: the server has
 * confirmed the unsubscriptions, no other transport is busy (an HTTP
 * handler may still await an RPC reply), no NATS request, event or call is
 * in flight, nothing is queued. */
static void maybe_close(msg_worker *mw) {
    if (!mw->drain_started || !mw->drain_flushed || worker_closed(mw)) return;
    svc_worker *w = mw->w;
    if (!w->stopping || svc__worker_busy(w, &svc__nats_transport) || mw->inflight > 0 || mw->ncalls > 0) return;
    if (mw->id == 0 && svc__js_inflight(mw->m) > 0) return;
    pthread_mutex_lock(&mw->lock);
    int empty = !mw->hi_head && !mw->lo_head;
    pthread_mutex_unlock(&mw->lock);
    if (empty) close_handles(mw);
}

void svc__msg_worker_done(msg_worker *mw) { maybe_close(mw); }

static void drain_poll(uv_timer_t *t) { maybe_close(t->data); }

static void drain_flushed(svc_nats *nc, int ok, void *ud) {
    (void)nc;
    (void)ok;
    msg_worker *mw = ud;
    mw->drain_flushed = 1;
}

static void start_drain(msg_worker *mw) {
    mw->drain_started = 1;
    /* Stop taking new work; what the server already sent is still served. */
    if (mw->id == 0) svc__js_stop(mw);
    if (!mw->nc) {
        mw->drain_flushed = 1;
    } else {
        if (mw->id == 0) svc__discovery_leave(mw);
        for (int i = 0; i < mw->nsids; i++) svc__nats_unsub(mw->nc, mw->sids[i]);
        if (svc__nats_flush(mw->nc, drain_flushed, mw) != SVC_OK) mw->drain_flushed = 1;
    }
    uv_timer_start(&mw->drain_timer, drain_poll, SVC_MSG_DRAIN_POLL_MS, SVC_MSG_DRAIN_POLL_MS);
}

static msg_item *take(msg_item **head, msg_item **tail, int max) {
    msg_item *first = *head, *last = NULL, *it = first;
    for (int n = 0; it && n < max; n++) {
        last = it;
        it = it->next;
    }
    if (!last) return NULL;
    *head = it;
    if (!it) *tail = NULL;
    last->next = NULL;
    return first;
}

static void on_async(uv_async_t *a) {
    msg_worker *mw = a->data;
    if (worker_closed(mw)) return;
    if (atomic_load(&mw->forced)) {
        close_handles(mw);
        return;
    }
    if (atomic_load(&mw->draining) && !mw->drain_started) start_drain(mw);
    pthread_mutex_lock(&mw->lock);
    msg_item *hi = take(&mw->hi_head, &mw->hi_tail, SVC_MSG_BATCH);
    msg_item *lo = take(&mw->lo_head, &mw->lo_tail, SVC_MSG_BATCH);
    int more = mw->hi_head || mw->lo_head;
    pthread_mutex_unlock(&mw->lock);
    /* Alternate the two classes so that neither waits for the other's batch. */
    while (hi || lo) {
        if (hi) {
            msg_item *next = hi->next;
            process(mw, hi);
            hi = next;
        }
        if (lo) {
            msg_item *next = lo->next;
            process(mw, lo);
            lo = next;
        }
    }
    /* Yield to the loop's other I/O, then continue. */
    if (more) {
        pthread_mutex_lock(&mw->lock);
        if (!mw->closed) uv_async_send(&mw->async);
        pthread_mutex_unlock(&mw->lock);
    }
    maybe_close(mw);
}

/* ---- connection events (loop thread) ------------------------------------------------ */

static void update_gauge(svc_msg *m) {
    svc_gauge_set(m->s_connected, atomic_load(&m->nconnected) == m->nworkers ? 1 : 0);
}

static void grace_over(uv_timer_t *t);

/* One connection is up: the server is back, so the loops still down try now
 * rather than wait out their pause (up to four times the reconnect wait):
 * until every one is up the instance is not ready, and until worker 0 is,
 * the others hold their publishes and their calls fail. */
static void others_retry(msg_worker *mw) {
    svc_msg *m = mw->m;
    for (int i = 0; i < m->nworkers; i++) {
        if (i == mw->id || atomic_load(&m->workers[i].connected)) continue;
        msg_item *it = calloc(1, sizeof *it);
        if (!it) continue;
        it->kind = ITEM_RETRY;
        if (svc__msg_push(&m->workers[i], it, 1) != SVC_OK) free(it);
    }
}

static void on_conn_event(svc_nats *nc, int event, void *ud) {
    msg_worker *mw = ud;
    svc_msg *m = mw->m;
    if (event == SVC_NATS_DISCONNECTED) {
        if (atomic_exchange(&mw->connected, 0)) atomic_fetch_sub(&m->nconnected, 1);
        mw->disconnects++;
        update_gauge(m);
        if (mw->id == 0) atomic_store(&m->w0_subs_ready, 0);
        else svc__nats_hold(nc);
        svc_warn("nats: disconnected (worker %d); reconnecting every %d ms (publishes are buffered up to %d bytes)",
                 mw->id, SVC_MSG_RECONNECT_WAIT_MS, SVC_MSG_RECONNECT_BUFFER);
        uv_timer_start(&mw->grace_timer, grace_over, SVC_MSG_DISCONNECT_GRACE_MS, 0);
        return;
    }
    if (!atomic_exchange(&mw->connected, 1)) atomic_fetch_add(&m->nconnected, 1);
    update_gauge(m);
    others_retry(mw);
    if (event == SVC_NATS_RECONNECTED) {
        svc_counter_add(m->s_reconnects, 1);
        svc_info("nats: reconnected to %s (worker %d)", svc__nats_url(nc), mw->id);
    } else {
        svc_info("nats: connected to %s (worker %d)", svc__nats_url(nc), mw->id);
    }
    if (mw->id == 0 && atomic_load(&m->started)) {
        svc__nats_flush(nc, w0_confirmed, mw);
        /* The server may have restarted without its store: declare again. */
        atomic_store(&m->streams_dirty, 1);
        svc__js_on_connected(mw);
    } else if (mw->id != 0 && atomic_load(&m->w0_subs_ready)) {
        svc__nats_release(nc);
    }
}

/* A subscription refused (NATS permissions): the instance cannot serve what
 * it declared, so it is not ready, and says so once, whichever worker and
 * however many subjects; the metric counts every refusal. */
static void on_sub_denied(svc_nats *nc, const char *subject, void *ud) {
    (void)nc;
    msg_worker *mw = ud;
    svc_msg *m = mw->m;
    svc_counter_add(m->s_subs_denied, 1);
    int none = 0;
    if (!atomic_compare_exchange_strong(&m->denied, &none, 1)) return;
    snprintf(m->denied_subject, sizeof m->denied_subject, "%s", subject);
    atomic_store(&m->denied, 2);
    svc_error("nats: the server refused the subscription to \"%s\" (Permissions Violation): this service's NATS "
              "user may not subscribe to it; /readyz answers 503 until a restart with that permission",
              subject);
}

static void grace_over(uv_timer_t *t) {
    msg_worker *mw = t->data;
    /* Still down, or back but holding publishes: the calls' replies would
     * come to a subscription the server forgot, or their requests wait
     * behind worker 0; new calls fail fast from now on. */
    if (!svc__nats_sending(mw->nc)) svc__rpc_fail_all(mw, SVC_ECLOSED, 1);
}

/* Ready once every connection is up and worker 0's subscriptions are back:
 * until then the other workers hold what they publish, calls included. */
static int ready_check(void *ud, char *reason, size_t reason_len) {
    svc_msg *m = ud;
    int denied = atomic_load(&m->denied);
    if (denied) {
        snprintf(reason, reason_len, "NATS refused the subscription to %s (permissions)",
                 denied == 2 ? m->denied_subject : "a subject");
        return SVC_ERR;
    }
    if (atomic_load(&m->nconnected) != m->nworkers) {
        snprintf(reason, reason_len, "not connected to NATS");
        return SVC_ERR;
    }
    /* Worker 0 serves every subject: once the server has confirmed its
     * subscriptions, a request sent after a 200 here reaches this instance. */
    if (atomic_load(&m->w0_subs_ready)) return SVC_OK;
    snprintf(reason, reason_len, "NATS subscriptions not confirmed yet");
    return SVC_ERR;
}

static void nats_worker_start(svc_worker *w, void *state) {
    svc_msg *m = state;
    if (!m || !m->enabled) return;
    msg_worker *mw = &m->workers[w->id];
    mw->w = w;
    mw->tid = uv_thread_self();
    uv_async_init(&w->loop, &mw->async, on_async);
    mw->async.data = mw;
    uv_timer_init(&w->loop, &mw->drain_timer);
    mw->drain_timer.data = mw;
    uv_timer_init(&w->loop, &mw->grace_timer);
    mw->grace_timer.data = mw;
    svc_nats_opts o = {
        .servers = m->env.servers,
        .nservers = m->env.nservers,
        .name = m->app->name,
        .reconnect_wait_ms = SVC_MSG_RECONNECT_WAIT_MS,
        .reconnect_buffer = SVC_MSG_RECONNECT_BUFFER,
        .server_errors = m->s_server_errors,
        .on_sub_denied = on_sub_denied,
        .creds = m->env.creds,
        .no_advertised = m->env.no_advertised,
        .tls = m->env.tls,
        .on_event = on_conn_event,
        .ud = mw,
    };
    mw->nc = svc__nats_new(&w->loop, &o);
    if (!mw->nc) svc_error("nats: worker %d cannot create its connection (out of memory)", w->id);
    else {
        /* What it publishes waits until worker 0's subscriptions exist. */
        if (w->id != 0) svc__nats_hold(mw->nc);
        char subj[sizeof mw->inbox + 2];
        snprintf(subj, sizeof subj, "%s.*", mw->inbox);
        svc__nats_sub(mw->nc, subj, NULL, svc__rpc_on_inbox, mw);
    }
    pthread_mutex_lock(&mw->lock);
    mw->ready = 1;
    tl_msg = m;
    tl_worker = mw;
    /* Items may have arrived before the loop existed; a drain too. */
    if (mw->hi_head || mw->lo_head || atomic_load(&mw->draining) || atomic_load(&mw->forced))
        uv_async_send(&mw->async);
    pthread_mutex_unlock(&mw->lock);
}

/* ---- setup ------------------------------------------------------------------------- */

static void make_instance_id(char out[SVC_MSG_INSTANCE_ID_LEN + 1]) {
    static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char r[SVC_MSG_INSTANCE_ID_LEN];
    svc_random(r, sizeof r);
    /* 248 is the largest multiple of 62 below 256: redraw above it (no bias). */
    for (int i = 0; i < SVC_MSG_INSTANCE_ID_LEN; i++) {
        while (r[i] >= 248) svc_random(&r[i], 1);
        out[i] = b62[r[i] % 62];
    }
    out[SVC_MSG_INSTANCE_ID_LEN] = '\0';
}

static int has_params(const char *pattern) { return strchr(pattern, ':') || strchr(pattern, '*'); }

static int build_endpoints(svc_msg *m) {
    svc_app *app = m->app;
    int n = 2;
    for (svc_route_entry *e = app->routes; e; e = e->next) n++;
    m->endpoints = calloc((size_t)n, sizeof *m->endpoints);
    if (!m->endpoints) return SVC_ENOMEM;
    /* app->routes is newest first; list them in declaration order. */
    int nroutes = n - 2, i = nroutes;
    for (svc_route_entry *e = app->routes; e; e = e->next) {
        msg_endpoint *ep = &m->endpoints[--i];
        ep->route = e;
        ep->queue = app->name;
        if (svc__msg_route_subject(app->name, e->method, e->pattern, ep->subject, sizeof ep->subject) != SVC_OK) {
            svc_error("nats: route %s %s has no valid subject", e->method, e->pattern);
            return SVC_EINVAL;
        }
        svc__msg_endpoint_name(e->method, e->pattern, ep->name, sizeof ep->name);
    }
    /* Endpoint names must be unique: suffix repeats ("GET-a-id", "GET-a-id-2"). */
    for (int a = 1; a < nroutes; a++) {
        int dup = 1;
        for (int b = 0; b < a; b++)
            if (strcmp(m->endpoints[a].name, m->endpoints[b].name) == 0) dup++;
        if (dup > 1) {
            size_t l = strlen(m->endpoints[a].name);
            if (l > sizeof m->endpoints[a].name - 12) l = sizeof m->endpoints[a].name - 12;
            snprintf(m->endpoints[a].name + l, 12, "-%d", dup);
        }
    }
    msg_endpoint *http = &m->endpoints[nroutes], *inst = &m->endpoints[nroutes + 1];
    snprintf(http->name, sizeof http->name, "http");
    snprintf(http->subject, sizeof http->subject, "svc.%s.http", app->name);
    http->queue = app->name;
    snprintf(inst->name, sizeof inst->name, "instance");
    snprintf(inst->subject, sizeof inst->subject, "svc.%s.%s.http", app->name, m->instance);
    /* Its own group, the instance id: every worker subscribes, one answers. */
    inst->queue = m->instance;
    m->nendpoints = n;
    return SVC_OK;
}

static void setup_metrics(svc_msg *m) {
    static const char *svc_label[] = {"service"};
    static const char *drop_labels[] = {"service", "reason"};
    static const char *rpc_labels[] = {"service", "outcome"};
    static const char *req_labels[] = {"service", "route", "method", "code"};
    const char *name[] = {m->app->name};
    m->s_connected = svc_metric_with(
        svc_metric_gauge("nats_connected", "1 while connected to NATS", 1, svc_label), name);
    m->s_reconnects = svc_metric_with(
        svc_metric_counter("nats_reconnects_total", "Reconnections to NATS", 1, svc_label), name);
    m->s_publish_failed = svc_metric_with(
        svc_metric_counter("nats_publish_failures_total",
                           "Publishes and replies refused (not connected, reconnect buffer or hand-over queue full)",
                           1, svc_label),
        name);
    m->s_server_errors = svc_metric_with(
        svc_metric_counter("nats_server_errors_total", "-ERR lines received from the NATS server", 1, svc_label),
        name);
    m->s_subs_denied = svc_metric_with(
        svc_metric_counter("nats_subscriptions_denied_total",
                           "Subscriptions the NATS server refused (permissions); any makes /readyz 503", 1, svc_label),
        name);
    svc_metric *drops = svc_metric_counter("nats_messages_dropped_total",
                                           "NATS messages dropped, by reason", 2, drop_labels);
    for (int i = 0; i < DROP_REASONS; i++) {
        const char *l[] = {m->app->name, drop_reasons[i]};
        m->s_dropped[i] = svc_metric_with(drops, l);
    }
    /* rpc_calls_total's "service" is the callee. */
    m->m_rpc = svc_metric_counter("rpc_calls_total", "svc_rpc_call calls by callee and outcome", 2, rpc_labels);
    m->m_nats_requests = svc_metric_counter("nats_requests_total",
                                            "Requests answered over NATS (also in http_requests_total)", 4,
                                            req_labels);
}


static void random_token(char *out, size_t n) {
    static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char r[64];
    if (n > sizeof r) n = sizeof r;
    svc_random(r, n);
    for (size_t i = 0; i < n; i++) out[i] = b62[r[i] % 62];
    out[n] = '\0';
}

static int nats_setup(svc_app *app, void *state) {
    const char *url = app->cfg.nats_url;
    if (!url || strcmp(url, "none") == 0) {
        svc_msg *off = state;
        if (off->events || off->consumers)
            svc_warn("nats: NATS_URL=none; event and stream handlers will not run");
        return SVC_OK;
    }
    svc_msg *m = state;
    if (!svc__msg_name_ok(app->name)) {
        svc_error("nats: service name \"%s\" cannot appear in subjects (expected 1-64 of A-Z a-z 0-9 _ -); "
                  "set NATS_URL=none to run without NATS", app->name);
        return SVC_EINVAL;
    }
    make_instance_id(m->instance);
    m->started_ms = svc_wall_ms();
    setup_metrics(m);
    if (build_endpoints(m) != SVC_OK) return SVC_ERR;
    if (svc_app_use(app, NULL, svc__msg_after_hook, m) != SVC_OK ||
        svc_app_ready_check(app, "nats", ready_check, m) != SVC_OK) {
        svc_error("nats: too many middleware or ready checks");
        return SVC_ERANGE;
    }
    m->nworkers = app->cfg.workers;
    m->workers = calloc((size_t)m->nworkers, sizeof *m->workers);
    if (!m->workers) return SVC_ENOMEM;
    for (int i = 0; i < m->nworkers; i++) {
        msg_worker *mw = &m->workers[i];
        mw->m = m;
        mw->id = i;
        pthread_mutex_init(&mw->lock, NULL);
        char tok[SVC_MSG_INSTANCE_ID_LEN + 1];
        random_token(tok, SVC_MSG_INSTANCE_ID_LEN);
        snprintf(mw->inbox, sizeof mw->inbox, "_INBOX.%s.%s", app->name, tok);
    }
    m->enabled = 1;
    char shown[1024];
    svc__nats_url_shown(url, shown, sizeof shown);
    svc_info("nats: connecting to %s (%d connection%s, one per worker)", shown, m->nworkers,
             m->nworkers == 1 ? "" : "s");
    if (m->env.creds)
        svc_info("nats: signing in as %s (%s)", m->env.creds->pub,
                 m->env.creds->jwt[0] ? "user JWT from NATS_CREDS" : "NKEY from NATS_NKEY_SEED_FILE");
    return SVC_OK;
}

/* ---- start, drain, stop ------------------------------------------------------------ */

msg_sub *svc__msg_add_sub(svc_msg *m, int kind, const char *subject, const char *queue, int every) {
    msg_sub *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->kind = kind;
    snprintf(s->subject, sizeof s->subject, "%s", subject);
    s->queue = queue;
    s->every_worker = every;
    /* Appended: subscriptions are made in declaration order. */
    msg_sub **p = &m->subs;
    while (*p) p = &(*p)->next;
    *p = s;
    return s;
}

static void nats_start(svc_app *app, void *state) {
    svc_msg *m = state;
    if (!m || !m->enabled) return;
    int failed = 0, nroutes = 0;
    for (int i = 0; i < m->nendpoints; i++) {
        msg_endpoint *ep = &m->endpoints[i];
        msg_sub *s = svc__msg_add_sub(m, ep->route ? SUB_ROUTE : SUB_HTTP, ep->subject, ep->queue, 1);
        if (!s) {
            failed++;
            continue;
        }
        s->ep = ep;
        if (ep->route && !has_params(ep->route->pattern)) s->default_path = ep->route->pattern;
        if (ep->route) nroutes++;
    }
    /* One offload slot per event subscription and consumer, on every worker. */
    int nslots = 0;
    for (msg_event_reg *ev = m->events; ev; ev = ev->next) nslots++;
    for (msg_consumer *c = m->consumers; c; c = c->next) c->slot = nslots++;
    svc__js_metrics(m);
    for (int i = 0; i < m->nworkers && nslots; i++) {
        m->workers[i].slots = calloc((size_t)nslots, sizeof *m->workers[i].slots);
        m->workers[i].nslots = m->workers[i].slots ? nslots : 0;
    }
    int slot = 0;
    for (msg_event_reg *ev = m->events; ev; ev = ev->next) {
        msg_sub *s = svc__msg_add_sub(m, SUB_EVENT, ev->subject, ev->queue, 0);
        if (s) {
            s->ev = ev;
            s->slot = slot;
        } else {
            failed++;
        }
        slot++;
    }
    if (svc__discovery_subscribe(m) != SVC_OK) failed++;
    if (svc__trace_subscribe(m) != SVC_OK) failed++;
    atomic_store(&m->started, 1);
    for (int i = 0; i < m->nworkers; i++) {
        msg_item *it = calloc(1, sizeof *it);
        if (!it) {
            failed++;
            continue;
        }
        it->kind = ITEM_START;
        if (svc__msg_push(&m->workers[i], it, 1) != SVC_OK) free(it);
    }
    svc_info("nats: instance %s serves %d route%s on svc.%s.* (and svc.%s.http)%s", m->instance, nroutes,
             nroutes == 1 ? "" : "s", app->name, app->name, failed ? "; some subscriptions failed" : "");
}

static void wake_all(svc_msg *m, int forced) {
    for (int i = 0; i < m->nworkers; i++) {
        msg_worker *mw = &m->workers[i];
        atomic_store(&mw->draining, 1);
        if (forced) atomic_store(&mw->forced, 1);
        pthread_mutex_lock(&mw->lock);
        if (mw->ready && !mw->closed) uv_async_send(&mw->async);
        pthread_mutex_unlock(&mw->lock);
    }
}

static void nats_drain(svc_app *app, void *state) {
    svc_msg *m = state;
    if (!m || !m->enabled || atomic_exchange(&m->draining, 1)) return;
    wake_all(m, 0);
}

static void nats_force(svc_app *app, void *state) {
    svc_msg *m = state;
    if (!m || !m->enabled) return;
    atomic_store(&m->draining, 1);
    wake_all(m, 1);
}

static void free_items(msg_item *it) {
    while (it) {
        msg_item *next = it->next;
        if (it->kind == ITEM_RPC || it->kind == ITEM_SYNC) svc__rpc_free_call(it->ptr);
        else if (it->kind == ITEM_MSG) svc__nats_msg_free(it->msg);
        else if (it->kind == ITEM_PUB) free_pub(it->ptr);
        free(it);
        it = next;
    }
}

/* The workers have exited: their loops closed their connections. What a
 * worker that never ran left queued is freed here. */
static void nats_stop(svc_app *app, void *state) {
    svc_msg *m = state;
    if (!m || !m->enabled) return;
    atomic_store(&m->started, 0);
    for (int i = 0; i < m->nworkers; i++) {
        msg_worker *mw = &m->workers[i];
        pthread_mutex_lock(&mw->lock);
        msg_item *hi = mw->hi_head, *lo = mw->lo_head;
        mw->hi_head = mw->hi_tail = mw->lo_head = mw->lo_tail = NULL;
        mw->closed = 1;
        pthread_mutex_unlock(&mw->lock);
        free_items(hi);
        free_items(lo);
    }
    atomic_store(&m->nconnected, 0);
}

static void nats_free(svc_app *app, void *state) {
    svc_msg *m = state;
    if (!m) return;
    nats_stop(app, m);
    svc__nats_env_free(&m->env);
    for (msg_sub *s = m->subs; s;) {
        msg_sub *next = s->next;
        free(s);
        s = next;
    }
    for (msg_event_reg *ev = m->events; ev;) {
        msg_event_reg *next = ev->next;
        free(ev->subject);
        free(ev->queue);
        free(ev);
        ev = next;
    }
    for (msg_consumer *c = m->consumers; c;) {
        msg_consumer *next = c->next;
        free(c->stream);
        free(c->subject);
        free(c->durable);
        free(c);
        c = next;
    }
    for (msg_stream_def *d = m->streams; d;) {
        msg_stream_def *next = d->next;
        for (int i = 0; i < d->nsubjects; i++) free(d->subjects[i]);
        free(d->subjects);
        free(d->name);
        free(d);
        d = next;
    }
    for (int i = 0; i < m->nworkers; i++) {
        pthread_mutex_destroy(&m->workers[i].lock);
        free(m->workers[i].slots);
        free(m->workers[i].sids);
    }
    free(m->workers);
    free(m->endpoints);
    pthread_mutex_destroy(&m->streams_lock);
    free(m);
}

static const svc_config_var nats_vars[] = {
    {"NATS_URL", "nats://127.0.0.1:4222", "NATS server(s), comma-separated (nats:// or tls://); none: HTTP only"},
    {"NATS_TLS_CA", NULL, "CA file (PEM) that verifies the NATS servers; set: TLS to every server"},
    {"NATS_TLS_CERT", NULL, "client certificate (PEM) presented to NATS servers; with NATS_TLS_KEY"},
    {"NATS_TLS_KEY", NULL, "private key (PEM) of NATS_TLS_CERT"},
    {"NATS_NKEY_SEED_FILE", NULL, "file with an NKEY user seed (SU...), mode 600: sign in with it"},
    {"NATS_CREDS", NULL, "a .creds file (user JWT and seed), mode 600: sign in with it"},
    {"NATS_NO_ADVERTISED", "0", "1: use only the servers of NATS_URL, never those the cluster announces"},
    {"NATS_JS_REPLICAS", "1", "copies of each JetStream stream the service declares (1-5)"},
    {"NATS_JS_MAX_AGE", "604800", "seconds a declared stream keeps an event (3600 to 10 years)"},
    {"NATS_JS_MAX_BYTES", "1073741824", "bytes a declared stream keeps, per copy; the oldest go first (1 MiB to 1 PiB)"},
};

/* NATS_URL and the variables above, read here: the runtime knows no NATS. */
static int nats_configure(svc_app *app, void *state, char *err, size_t errlen) {
    svc_msg *m = state;
    svc_config *c = svc__app_config_edit(app);
    const char *v = getenv("NATS_URL");
    c->nats_url = v && *v ? v : nats_vars[0].def;
    if (strcmp(c->nats_url, "none") == 0) return SVC_OK;
    long replicas = 1;
    int rc = svc__nats_env_load(&m->env, c->nats_url, err, errlen);
    if (rc == SVC_OK) rc = svc__config_int("NATS_JS_REPLICAS", 1, SVC_MSG_MAX_JS_REPLICAS, 1, &replicas, err, errlen);
    if (rc == SVC_OK)
        rc = svc__config_int("NATS_JS_MAX_AGE", SVC_MSG_JS_MAX_AGE_MIN_S, SVC_MSG_JS_MAX_AGE_MAX_S,
                             SVC_MSG_JS_MAX_AGE_S, &m->js_max_age_s, err, errlen);
    if (rc == SVC_OK)
        rc = svc__config_int("NATS_JS_MAX_BYTES", SVC_MSG_JS_MAX_BYTES_MIN, SVC_MSG_JS_MAX_BYTES_MAX,
                             SVC_MSG_JS_MAX_BYTES, &m->js_max_bytes, err, errlen);
    m->js_replicas = (int)replicas;
    return rc;
}

static int nats_call(svc_app *app, svc_req *req, const char *service, const char *method, const char *path,
                     const void *body, size_t len, const svc_rpc_opts *opts, svc_rpc_cb done, void *ud) {
    return svc_rpc_call(app, req, service, method, path, body, len, opts, done, ud);
}

const svc_transport svc__nats_transport = {
    .name = "nats",
    .vars = nats_vars,
    .nvars = sizeof nats_vars / sizeof nats_vars[0],
    .create = nats_create,
    .configure = nats_configure,
    .setup = nats_setup,
    .worker_start = nats_worker_start,
    .start = nats_start,
    .drain = nats_drain,
    .force = nats_force,
    .stop = nats_stop,
    .free = nats_free,
    .call = nats_call,
};

/* ---- svc_msg_run_on_loop ------------------------------------------------------------------ */

int svc_msg_run_on_loop(svc_app *app, svc_msg_loop_fn fn, void *ud) {
    if (!app || !fn) return SVC_EINVAL;
    svc_msg *m = svc__msg_get(app);
    if (!m || !m->enabled || !m->workers) return SVC_ECLOSED;
    msg_item *it = calloc(1, sizeof *it);
    if (!it) return SVC_ENOMEM;
    it->kind = ITEM_CALL;
    it->fn = fn;
    it->ptr = ud;
    /* Through the queue even from worker 0's own loop: never inside the call. */
    if (svc__msg_push(&m->workers[0], it, 1) != SVC_OK) {
        free(it);
        return SVC_ECLOSED;
    }
    return SVC_OK;
}

/* ---- public state -------------------------------------------------------------------- */

int svc_msg_connected(const svc_app *app) {
    svc_msg *m = svc__msg_get(app);
    return m && m->enabled && atomic_load(&m->nconnected) == m->nworkers;
}

const char *svc_app_instance_id(const svc_app *app) {
    const svc_msg *m = svc__msg_get(app);
    return m && m->enabled ? m->instance : "";
}
