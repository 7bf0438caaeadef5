/*
 * The NATS connection and its life cycle, and the hand-off of messages from
 * libnats's threads to the worker loops.
 *
 *   setup   (before on_start) options, metrics, endpoints, connect. With
 *           RetryOnFailedConnect the service starts while NATS is down and
 *           connects later; /readyz says "nats" until then.
 *   start   (workers running) subscribe: one subject per route, the .http
 *           subjects, discovery, events, one RPC inbox per worker, and the
 *           JetStream consumers. libnats resubscribes on every reconnect.
 *   drain   (when the HTTP listeners close) drain the request, event and
 *           discovery subscriptions; what is already queued is still served;
 *           each worker closes its handles once it has nothing in flight.
 *   stop    (workers joined) flush the replies, close, free.
 *
 * Why a queue per worker rather than libnats's libuv adapter: the adapter
 * drives the socket from one loop, but message callbacks still run on libnats
 * threads, and a single connection cannot belong to several loops. One
 * connection per process, and a cheap hand-off (a mutex-protected list and a
 * uv_async_send, which coalesces wake-ups), keeps every handler on a worker
 * loop without a connection per worker.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "msg/internal.h"

static const char *const drop_reasons[DROP_REASONS] = {
    "no_reply", "overflow", "slow_consumer", "expired", "late_reply", "shutdown", "malformed",
};

const char *svc__msg_drop_reason(int reason) {
    return reason >= 0 && reason < DROP_REASONS ? drop_reasons[reason] : "other";
}

svc_msg *svc__msg_get(svc_app *app) {
    if (!app->msg) {
        svc_msg *m = calloc(1, sizeof *m);
        if (!m) return NULL;
        m->app = app;
        pthread_mutex_init(&m->streams_lock, NULL);
        app->msg = m;
    }
    return app->msg;
}

int svc__msg_log_allowed(svc_msg *m, int slot) {
    int64_t now = svc_wall_ms();
    long long last = atomic_load(&m->last_log_ms[slot]);
    if (now - last < SVC_MSG_LOG_INTERVAL_MS) return 0;
    return atomic_compare_exchange_strong(&m->last_log_ms[slot], &last, now);
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
    svc__msg_log_release(m);
}

/* The log keeps a buffer per thread, freed only by threads that say they
 * exit; libnats's threads never do, so ours give it back after each line. */
void svc__msg_log_release(svc_msg *m) {
    if (!svc__msg_current(m)) svc__log_thread_exit();
}

const char *svc__msg_header(natsMsg *msg, const char *name) {
    const char *v = NULL;
    if (natsMsgHeader_Get(msg, name, &v) == NATS_OK) return v;
    const char **keys = NULL;
    int n = 0;
    if (natsMsgHeader_Keys(msg, &keys, &n) != NATS_OK) return NULL;
    for (int i = 0; i < n && !v; i++)
        if (strcasecmp(keys[i], name) == 0 && natsMsgHeader_Get(msg, keys[i], &v) != NATS_OK) v = NULL;
    free((void *)keys);
    return v;
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

msg_worker *svc__msg_current(svc_msg *m) {
    if (!m || !m->workers) return NULL;
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

static uint32_t fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Disposes of an item that no loop will handle (worker closing). */
static void refuse_item(svc_msg *m, msg_item *it) {
    if (it->kind == ITEM_MSG) {
        msg_sub *s = it->sub;
        if (s->kind == SUB_ROUTE || s->kind == SUB_HTTP)
            svc__msg_reply_error(m, it->msg, 503, "unavailable", "service is shutting down");
        else
            svc__msg_drop(m, DROP_SHUTDOWN, "message on %s dropped: shutting down", natsMsg_GetSubject(it->msg));
        atomic_fetch_sub(&s->queued, 1);
        atomic_fetch_sub(&s->queued_bytes, (long long)it->bytes);
        natsMsg_Destroy(it->msg);
    } else if (it->kind == ITEM_STREAM) {
        msg_consumer *c = it->ptr;
        /* Redelivered at once to another instance rather than after ack_wait. */
        natsMsg_Nak(it->msg, NULL);
        natsMsg_Destroy(it->msg);
        pthread_mutex_lock(&c->lock);
        atomic_fetch_sub(&c->inflight, 1);
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
    }
    free(it);
}

/* libnats's delivery thread: validate cheaply, pick a loop, queue. */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    (void)nc;
    (void)sub;
    msg_sub *s = closure;
    svc_msg *m = s->m;
    int request = s->kind == SUB_ROUTE || s->kind == SUB_HTTP;
    size_t len = (size_t)natsMsg_GetDataLength(msg);
    if (request) {
        const char *reply = natsMsg_GetReply(msg);
        if (!reply || !*reply) {
            svc__msg_drop(m, DROP_NO_REPLY, "request on %s without a reply subject dropped", natsMsg_GetSubject(msg));
            natsMsg_Destroy(msg);
            return;
        }
    }
    if (atomic_load(&s->queued) >= SVC_MSG_MAX_PENDING_PER_SUB ||
        atomic_load(&s->queued_bytes) + (long long)len > SVC_MSG_MAX_PENDING_BYTES_PER_SUB) {
        if (request) svc__msg_reply_error(m, msg, 503, "unavailable", "too many requests queued");
        svc__msg_drop(m, DROP_OVERFLOW, "message on %s dropped: %s queue full", natsMsg_GetSubject(msg), s->subject);
        natsMsg_Destroy(msg);
        return;
    }
    msg_item *it = malloc(sizeof *it);
    if (!it) {
        if (request) svc__msg_reply_error(m, msg, 503, "unavailable", "out of memory");
        svc__msg_drop(m, DROP_OVERFLOW, "message on %s dropped: out of memory", natsMsg_GetSubject(msg));
        natsMsg_Destroy(msg);
        return;
    }
    *it = (msg_item){.kind = ITEM_MSG, .msg = msg, .sub = s, .bytes = len};
    atomic_fetch_add(&s->queued, 1);
    atomic_fetch_add(&s->queued_bytes, (long long)len);
    msg_worker *mw;
    int hi = 1;
    if (s->kind == SUB_INBOX) {
        mw = s->owner;
    } else if (s->kind == SUB_EVENT) {
        /* By subject: one subject's events stay in order on one loop. */
        mw = &m->workers[fnv1a(natsMsg_GetSubject(msg)) % (unsigned)m->nworkers];
        hi = 0;
    } else {
        mw = svc__msg_pick(m);
    }
    if (svc__msg_push(mw, it, hi) != SVC_OK) {
        if (s->kind == SUB_INBOX) {
            atomic_fetch_sub(&s->queued, 1);
            atomic_fetch_sub(&s->queued_bytes, (long long)len);
            natsMsg_Destroy(msg);
            free(it);
            return;
        }
        refuse_item(m, it);
    }
}

/* A subscription is closed and libnats will deliver nothing more for it. */
static void on_sub_complete(void *closure) {
    svc_msg *m = closure;
    atomic_fetch_sub(&m->subs_live, 1);
}

natsStatus svc__msg_subscribe(svc_msg *m, msg_sub *s) {
    natsStatus st;
    natsMsgHandler cb = s->kind == SUB_DISCOVERY ? svc__discovery_on_msg : on_msg;
    if (s->queue) st = natsConnection_QueueSubscribe(&s->sub, m->nc, s->subject, s->queue, cb, s);
    else st = natsConnection_Subscribe(&s->sub, m->nc, s->subject, cb, s);
    if (st == NATS_OK) {
        natsSubscription_SetPendingLimits(s->sub, SVC_MSG_MAX_PENDING_PER_SUB, SVC_MSG_MAX_PENDING_BYTES_PER_SUB);
        if (natsSubscription_SetOnCompleteCB(s->sub, on_sub_complete, m) == NATS_OK)
            atomic_fetch_add(&m->subs_live, 1);
    }
    if (st != NATS_OK) {
        svc_error("nats: cannot subscribe to %s: %s", s->subject, natsStatus_GetText(st));
        s->sub = NULL;
        return st;
    } else {
        s->next = m->subs;
        m->subs = s;
    }
    return st;
}

/* ---- the worker side ---------------------------------------------------------- */

static void process(msg_worker *mw, msg_item *it) {
    switch (it->kind) {
    case ITEM_MSG: {
        msg_sub *s = it->sub;
        if (s->kind == SUB_INBOX) {
            svc__rpc_on_reply(mw, it->msg);
            atomic_fetch_sub(&s->queued, 1);
            atomic_fetch_sub(&s->queued_bytes, (long long)it->bytes);
        } else if (s->kind == SUB_EVENT) {
            svc__event_handle(mw, s, it->msg);
        } else {
            svc__msg_handle_request(mw, s, it->msg);
        }
        break;
    }
    case ITEM_STREAM:
        svc__stream_handle(mw, it->ptr, it->msg);
        break;
    case ITEM_RPC:
        svc__rpc_start_call(mw, it->ptr);
        break;
    }
    free(it);
}

static void close_handles(msg_worker *mw) {
    msg_item *left = NULL;
    pthread_mutex_lock(&mw->lock);
    if (mw->closed) {
        pthread_mutex_unlock(&mw->lock);
        return;
    }
    mw->closed = 1;
    /* Whatever is still queued (only on a forced stop) is refused. */
    msg_item *lists[2] = {mw->hi_head, mw->lo_head};
    mw->hi_head = mw->hi_tail = mw->lo_head = mw->lo_tail = NULL;
    pthread_mutex_unlock(&mw->lock);
    for (int k = 0; k < 2; k++) {
        msg_item *it = lists[k];
        while (it) {
            msg_item *next = it->next;
            if (it->kind == ITEM_RPC) {
                it->next = left;
                left = it;
            } else if (it->kind == ITEM_MSG && it->sub->kind == SUB_INBOX) {
                atomic_fetch_sub(&it->sub->queued, 1);
                natsMsg_Destroy(it->msg);
                free(it);
            } else {
                refuse_item(mw->m, it);
            }
            it = next;
        }
    }
    /* Calls queued but not started still get their one callback. */
    while (left) {
        msg_item *next = left->next;
        svc__rpc_start_call(mw, left->ptr); /* sees the worker closed: fails at once */
        free(left);
        left = next;
    }
    svc__rpc_fail_all(mw, SVC_ECLOSED);
    if (!uv_is_closing((uv_handle_t *)&mw->async)) uv_close((uv_handle_t *)&mw->async, NULL);
    if (!uv_is_closing((uv_handle_t *)&mw->drain_timer)) uv_close((uv_handle_t *)&mw->drain_timer, NULL);
}

static int worker_closed(msg_worker *mw) {
    pthread_mutex_lock(&mw->lock);
    int c = mw->closed;
    pthread_mutex_unlock(&mw->lock);
    return c;
}

/* Closes the worker's handles once draining and idle: no HTTP connection
 * (an HTTP handler may still await an RPC reply), no NATS request, event or
 * call in flight, nothing queued. */
static void maybe_close(msg_worker *mw) {
    if (!mw->drain_started || worker_closed(mw)) return;
    svc_worker *w = mw->w;
    if (!w->stopping || w->nconns > 0 || mw->inflight > 0 || mw->ncalls > 0) return;
    pthread_mutex_lock(&mw->lock);
    int empty = !mw->hi_head && !mw->lo_head;
    pthread_mutex_unlock(&mw->lock);
    if (empty) close_handles(mw);
}

void svc__msg_worker_done(msg_worker *mw) { maybe_close(mw); }

static void drain_poll(uv_timer_t *t) { maybe_close(t->data); }

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
    if (atomic_load(&mw->draining) && !mw->drain_started) {
        mw->drain_started = 1;
        uv_timer_start(&mw->drain_timer, drain_poll, SVC_MSG_DRAIN_POLL_MS, SVC_MSG_DRAIN_POLL_MS);
    }
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

void svc__msg_worker_start(svc_worker *w) {
    svc_msg *m = w->app->msg;
    if (!m || !m->enabled) return;
    msg_worker *mw = &m->workers[w->id];
    mw->w = w;
    mw->tid = uv_thread_self();
    uv_async_init(&w->loop, &mw->async, on_async);
    mw->async.data = mw;
    uv_timer_init(&w->loop, &mw->drain_timer);
    mw->drain_timer.data = mw;
    pthread_mutex_lock(&mw->lock);
    mw->ready = 1;
    /* Messages may have arrived before the loop existed; a drain too. */
    if (mw->hi_head || mw->lo_head || atomic_load(&mw->draining) || atomic_load(&mw->forced))
        uv_async_send(&mw->async);
    pthread_mutex_unlock(&mw->lock);
}

/* ---- connection callbacks (libnats threads) ------------------------------------- */

static void log_url(natsConnection *nc, const char *what) {
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    svc_info("nats: %s %s", what, url);
}

static void on_connected(natsConnection *nc, void *closure) {
    svc_msg *m = closure;
    atomic_store(&m->connected, 1);
    svc_gauge_set(m->s_connected, 1);
    log_url(nc, "connected to");
    svc__log_thread_exit();
}

static void on_disconnected(natsConnection *nc, void *closure) {
    (void)nc;
    svc_msg *m = closure;
    if (!atomic_exchange(&m->connected, 0) || atomic_load(&m->closing)) return;
    svc_gauge_set(m->s_connected, 0);
    svc_warn("nats: disconnected; reconnecting every %d ms (publishes are buffered up to %d bytes)",
             SVC_MSG_RECONNECT_WAIT_MS, SVC_MSG_RECONNECT_BUFFER);
    svc__log_thread_exit();
}

static void on_reconnected(natsConnection *nc, void *closure) {
    svc_msg *m = closure;
    /* The server may have restarted without its store: re-declare streams. */
    atomic_store(&m->streams_dirty, 1);
    atomic_store(&m->connected, 1);
    svc_gauge_set(m->s_connected, 1);
    svc_counter_add(m->s_reconnects, 1);
    log_url(nc, "reconnected to");
    svc__log_thread_exit();
}

/* libnats counts what it drops per subscription (over its pending limits);
 * this adds what it dropped since the last look to our drop counter. Runs at
 * every /metrics render and on each slow-consumer event. */
static _Atomic(svc_msg *) collect_target;

static void sync_dropped(svc_msg *m) {
    for (msg_sub *s = m->subs; s; s = s->next) {
        int64_t d = 0;
        if (!s->sub || natsSubscription_GetDropped(s->sub, &d) != NATS_OK) continue;
        long long prev = atomic_load(&s->dropped_seen);
        if (d > prev && atomic_compare_exchange_strong(&s->dropped_seen, &prev, d))
            svc_counter_add(m->s_dropped[DROP_SLOW_CONSUMER], (uint64_t)(d - prev));
    }
}

static void collect(void *ud) {
    (void)ud;
    svc_msg *m = atomic_load(&collect_target);
    if (m && atomic_load(&m->started)) sync_dropped(m);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure) {
    (void)nc;
    svc_msg *m = closure;
    if (err == NATS_SLOW_CONSUMER) {
        if (atomic_load(&m->started)) sync_dropped(m);
        const char *subject = sub ? natsSubscription_GetSubject(sub) : "?";
        if (svc__msg_log_allowed(m, DROP_SLOW_CONSUMER))
            svc_warn("nats: slow consumer on %s: libnats dropped messages over its pending limit "
                     "(counted in nats_messages_dropped_total{reason=\"slow_consumer\"})", subject ? subject : "?");
        svc__log_thread_exit();
        return;
    }
    if (svc__msg_log_allowed(m, DROP_REASONS + 1))
        svc_warn("nats: asynchronous error: %s", natsStatus_GetText(err));
    svc__log_thread_exit();
}

static int ready_check(void *ud, char *reason, size_t reason_len) {
    svc_msg *m = ud;
    if (atomic_load(&m->connected)) return SVC_OK;
    snprintf(reason, reason_len, "not connected to NATS");
    return SVC_ERR;
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
                           "Publishes and replies refused (not connected, reconnect buffer full)", 1, svc_label),
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

/* "nats://a:4222, nats://b:4222" -> libnats's server array (one malloc). */
static char **split_servers(const char *list, int *count) {
    size_t n = 1, len = strlen(list);
    for (const char *p = list; *p; p++) n += *p == ',';
    char **arr = malloc(n * sizeof *arr + len + 1);
    if (!arr) return NULL;
    char *copy = (char *)(arr + n);
    memcpy(copy, list, len + 1);
    int k = 0;
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        while (*tok == ' ') tok++;
        char *end = tok + strlen(tok);
        while (end > tok && end[-1] == ' ') *--end = '\0';
        if (*tok) arr[k++] = tok;
    }
    *count = k;
    return arr;
}

int svc__msg_setup(svc_app *app) {
    const char *url = app->cfg.nats_url;
    if (!url || strcmp(url, "none") == 0) {
        if (app->msg && (app->msg->events || app->msg->consumers))
            svc_warn("nats: NATS_URL=none; event and stream handlers will not run");
        return SVC_OK;
    }
    svc_msg *m = svc__msg_get(app);
    if (!m) return SVC_ENOMEM;
    if (!svc__msg_name_ok(app->name)) {
        svc_error("nats: service name \"%s\" cannot appear in subjects (expected 1-64 of A-Z a-z 0-9 _ -); "
                  "set NATS_URL=none to run without NATS", app->name);
        return SVC_EINVAL;
    }
    make_instance_id(m->instance);
    m->started_ms = svc_wall_ms();
    setup_metrics(m);
    if (build_endpoints(m) != SVC_OK) return SVC_ERR;
    atomic_store(&collect_target, m);
    svc_metrics_on_collect(collect, NULL);
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
        natsInbox *inbox = NULL;
        if (natsInbox_Create(&inbox) != NATS_OK) return SVC_ENOMEM;
        snprintf(mw->inbox, sizeof mw->inbox, "%s", inbox);
        natsInbox_Destroy(inbox);
    }

    int nservers = 0;
    char **servers = split_servers(url, &nservers);
    if (!servers) return SVC_ENOMEM;
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetServers(o, (const char **)servers, nservers);
    free(servers);
    if (s == NATS_OK) s = natsOptions_SetName(o, app->name);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, SVC_MSG_RECONNECT_WAIT_MS);
    if (s == NATS_OK) s = natsOptions_SetReconnectJitter(o, 100, 1000);
    if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(o, SVC_MSG_RECONNECT_BUFFER);
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, 2000);
    /* A dead peer that sends no RST is noticed within ~15 s. */
    if (s == NATS_OK) s = natsOptions_SetPingInterval(o, 5000);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(o, 2);
    if (s == NATS_OK) s = natsOptions_SetMaxPendingMsgs(o, SVC_MSG_MAX_PENDING_PER_SUB);
    /* Our callbacks only queue: one shared delivery thread, not one per subscription. */
    if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(o, true);
    /* Replies and calls go out at once: libnats's default of batching
     * writes in a flusher thread cost ~1 ms per request-reply round. */
    if (s == NATS_OK) s = natsOptions_SetSendAsap(o, true);
    if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, m);
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(o, on_disconnected, m);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(o, on_reconnected, m);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, on_error, m);
    if (s != NATS_OK) {
        svc_error("nats: cannot set up the connection options: %s", natsStatus_GetText(s));
        natsOptions_Destroy(o);
        return SVC_ERR;
    }
    m->opts = o;
    m->enabled = 1;
    s = natsConnection_Connect(&m->nc, o);
    if (s == NATS_OK) {
        atomic_store(&m->connected, 1);
        svc_gauge_set(m->s_connected, 1);
        log_url(m->nc, "connected to");
    } else if (s == NATS_NOT_YET_CONNECTED) {
        svc_warn("nats: %s not reachable yet; retrying in the background (readyz 503 until then)", url);
    } else {
        svc_error("nats: cannot connect to %s: %s", url, natsStatus_GetText(s));
        m->nc = NULL;
        return SVC_ERR;
    }
    s = natsConnection_JetStream(&m->js, m->nc, NULL);
    if (s != NATS_OK) {
        svc_error("nats: cannot create the JetStream context: %s", natsStatus_GetText(s));
        return SVC_ERR;
    }
    return SVC_OK;
}

/* ---- start, drain, stop ------------------------------------------------------------ */

static msg_sub *new_sub(svc_msg *m, int kind, const char *subject, const char *queue) {
    msg_sub *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->kind = kind;
    snprintf(s->subject, sizeof s->subject, "%s", subject);
    s->queue = queue;
    return s;
}

static msg_sub *add_sub(svc_msg *m, msg_sub *s, int *failed) {
    if (!s || svc__msg_subscribe(m, s) != NATS_OK) {
        free(s);
        (*failed)++;
        return NULL;
    }
    return s;
}

void svc__msg_start(svc_app *app) {
    svc_msg *m = app->msg;
    if (!m || !m->enabled) return;
    int failed = 0, nroutes = 0;
    for (int i = 0; i < m->nendpoints; i++) {
        msg_endpoint *ep = &m->endpoints[i];
        msg_sub *s = new_sub(m, ep->route ? SUB_ROUTE : SUB_HTTP, ep->subject, ep->queue);
        if (s) {
            s->ep = ep;
            if (ep->route && !has_params(ep->route->pattern)) s->default_path = ep->route->pattern;
        }
        add_sub(m, s, &failed);
        if (ep->route) nroutes++;
    }
    /* One offload slot per event subscription and consumer, on every worker. */
    int nslots = 0;
    for (msg_event_reg *ev = m->events; ev; ev = ev->next) nslots++;
    for (msg_consumer *c = m->consumers; c; c = c->next) c->slot = nslots++;
    for (int i = 0; i < m->nworkers && nslots; i++) {
        m->workers[i].slots = calloc((size_t)nslots, sizeof *m->workers[i].slots);
        m->workers[i].nslots = m->workers[i].slots ? nslots : 0;
    }
    int slot = 0;
    for (msg_event_reg *ev = m->events; ev; ev = ev->next) {
        msg_sub *s = new_sub(m, SUB_EVENT, ev->subject, ev->queue);
        if (s) {
            s->ev = ev;
            s->slot = slot;
        }
        slot++;
        add_sub(m, s, &failed);
    }
    for (int i = 0; i < m->nworkers; i++) {
        msg_worker *mw = &m->workers[i];
        char subj[96];
        snprintf(subj, sizeof subj, "%s.*", mw->inbox);
        msg_sub *s = new_sub(m, SUB_INBOX, subj, NULL);
        if (s) s->owner = mw;
        mw->inbox_sub = add_sub(m, s, &failed);
    }
    if (svc__discovery_subscribe(m) != SVC_OK) failed++;
    svc__js_start(m);
    atomic_store(&m->started, 1);
    svc_info("nats: instance %s serves %d route%s on svc.%s.* (and svc.%s.http)%s", m->instance, nroutes,
             nroutes == 1 ? "" : "s", app->name, app->name, failed ? "; some subscriptions failed" : "");
}

void svc__msg_drain(svc_app *app) {
    svc_msg *m = app->msg;
    if (!m || !m->enabled || atomic_exchange(&m->draining, 1)) return;
    /* Stop taking new work; what libnats already holds is still delivered. */
    int connected = atomic_load(&m->connected);
    for (msg_sub *s = m->subs; s; s = s->next) {
        if (s->kind == SUB_INBOX || !s->sub) continue;
        /* A drain waits for the server to confirm; disconnected, there is no
         * server to ask and nothing more will arrive: just unsubscribe. */
        if (!connected || natsSubscription_DrainTimeout(s->sub, SVC_MSG_DRAIN_TIMEOUT_MS) != NATS_OK)
            natsSubscription_Unsubscribe(s->sub);
    }
    svc__js_stop(m, 0);
    for (int i = 0; i < m->nworkers; i++) {
        msg_worker *mw = &m->workers[i];
        atomic_store(&mw->draining, 1);
        pthread_mutex_lock(&mw->lock);
        if (mw->ready && !mw->closed) uv_async_send(&mw->async);
        pthread_mutex_unlock(&mw->lock);
    }
}

void svc__msg_force(svc_app *app) {
    svc_msg *m = app->msg;
    if (!m || !m->enabled) return;
    svc__msg_drain(app);
    for (int i = 0; i < m->nworkers; i++) {
        msg_worker *mw = &m->workers[i];
        atomic_store(&mw->forced, 1);
        pthread_mutex_lock(&mw->lock);
        if (mw->ready && !mw->closed) uv_async_send(&mw->async);
        pthread_mutex_unlock(&mw->lock);
    }
}

static void free_items(msg_item *it) {
    while (it) {
        msg_item *next = it->next;
        if (it->kind == ITEM_RPC) svc__rpc_free_call(it->ptr);
        else natsMsg_Destroy(it->msg);
        free(it);
        it = next;
    }
}

void svc__msg_stop(svc_app *app) {
    svc_msg *m = app->msg;
    if (!m || !m->nc) return;
    svc__js_stop(m, 1);
    atomic_store(&m->started, 0);
    atomic_store(&m->closing, 1);
    /* Drain every subscription (the request ones already are): libnats hands
     * over what it still holds, which our callbacks now refuse properly.
     * Closing with messages still in libnats's delivery queue would leak them.
     * (Not natsConnection_Drain: draining a drained subscription a second
     * time frees it twice in libnats 3.4.) */
    int connected = atomic_load(&m->connected);
    for (msg_sub *s = m->subs; s; s = s->next) {
        if (!s->sub || s->kind != SUB_INBOX) continue;
        if (!connected || natsSubscription_DrainTimeout(s->sub, SVC_MSG_DRAIN_TIMEOUT_MS) != NATS_OK)
            natsSubscription_Unsubscribe(s->sub);
    }
    /* One deadline for all of it: stopping must not take longer when NATS
     * is down (a subscription that is not draining returns at once). */
    int64_t deadline = nats_Now() + SVC_MSG_FLUSH_TIMEOUT_MS;
    for (msg_sub *s = m->subs; s && connected; s = s->next) {
        int64_t left = deadline - nats_Now();
        if (left <= 0) break;
        if (s->sub) natsSubscription_WaitForDrainCompletion(s->sub, left);
    }
    int64_t left = deadline - nats_Now();
    if (connected && left > 0) natsConnection_FlushTimeout(m->nc, left);
    natsConnection_Close(m->nc);
    /* Closing queues one last control message per subscription on libnats's
     * delivery thread; shutting the library down before that thread has
     * handled them all leaks them. Wait (bounded) until every subscription
     * reports it is complete. */
    for (int i = 0; i < 200 && atomic_load(&m->subs_live) > 0; i++) nats_Sleep(5);
    for (msg_sub *s = m->subs; s; s = s->next) natsSubscription_Destroy(s->sub);
    jsCtx_Destroy(m->js);
    m->js = NULL;
    natsConnection_Destroy(m->nc);
    m->nc = NULL;
    natsOptions_Destroy(m->opts);
    m->opts = NULL;
    /* Every library thread has stopped once this returns: no callback can
     * touch m after. */
    nats_CloseAndWait(2000);
    msg_sub *s = m->subs;
    while (s) {
        msg_sub *next = s->next;
        free(s);
        s = next;
    }
    m->subs = NULL;
    for (int i = 0; i < m->nworkers; i++) {
        msg_worker *mw = &m->workers[i];
        free_items(mw->hi_head);
        free_items(mw->lo_head);
        mw->hi_head = mw->hi_tail = mw->lo_head = mw->lo_tail = NULL;
    }
    atomic_store(&m->connected, 0);
}

void svc__msg_free(svc_app *app) {
    svc_msg *m = app->msg;
    if (!m) return;
    svc__msg_stop(app);
    svc_msg *expected = m;
    atomic_compare_exchange_strong(&collect_target, &expected, NULL);
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
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
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
    }
    free(m->workers);
    free(m->endpoints);
    pthread_mutex_destroy(&m->streams_lock);
    free(m);
    app->msg = NULL;
}

/* ---- public state -------------------------------------------------------------------- */

int svc_msg_connected(const svc_app *app) {
    const svc_msg *m = app ? app->msg : NULL;
    return m && m->enabled && atomic_load(&((svc_msg *)m)->connected);
}

const char *svc_app_instance_id(const svc_app *app) {
    const svc_msg *m = app ? app->msg : NULL;
    return m && m->enabled ? m->instance : "";
}
