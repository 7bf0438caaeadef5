/*
 * svc_rpc_call, and the request-reply that JetStream's API uses.
 *
 * Each worker's connection subscribes to its own inbox, "_INBOX.<service>.<random>.*";
 * a call publishes its request with the reply subject "<inbox>.<seq>" on the
 * caller's loop and waits there, with a uv timer for the deadline. Replies
 * arrive on the same loop (same connection) and are matched by seq in a
 * small hash table; one that finds no call (its deadline passed) is dropped
 * and counted. When nobody listens on the subject the server answers at once
 * with a no-responders status (503), which becomes SVC_EAGAIN without
 * waiting for the deadline. A call from the loop itself is published at
 * once; from another thread it is handed to the loop. Its callback runs
 * exactly once, on the loop, never from inside svc_rpc_call.
 *
 * A gather (svc_msg_request_all) is the same call that stays registered
 * for its whole window: each reply goes to its callback as it comes, the
 * no-responders status is ignored (an empty gather is an answer), and the
 * timer ends it. It is also the one place a lost connection matters after
 * the fact: replies sent while the server had forgotten our inbox are gone,
 * so a window that saw a disconnection ends with SVC_ECLOSED rather than
 * pass off a partial list as complete.
 *
 * Blocking requests (svc__rpc_request_sync, for JetStream from the thread
 * pool) are the same calls, handed over, with a condition variable to wait
 * on; the waiter and the loop share the wait object and the last one to let
 * go frees it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "msg/internal.h"
#include "obs/internal.h"

struct rpc_call {
    rpc_call *next;                  /* hash chain */
    msg_worker *mw;
    uint64_t seq;
    char *subject;                   /* the request, one block with hdr and data */
    char *hdr;
    size_t hdr_len;
    char *data;
    size_t len;
    uv_timer_t timer;
    int timer_live;
    int timeout_ms;
    int fail_fast;                   /* svc_rpc_call: SVC_ECLOSED while disconnected */
    int strict;                      /* never buffered: SVC_ECLOSED unless sending now */
    svc_rpc_cb cb;                   /* svc_rpc_call */
    void *ud;
    char service[65];
    rpc_done_fn done;                /* internal requests */
    void *done_ud;
    svc_msg_gather_cb gather;        /* svc_msg_request_all (uses ud) */
    unsigned conn_gen;               /* mw->disconnects when published */
    int traced;                      /* span is a sampled client span, ended at completion */
    svc_span span;
};

static rpc_call **bucket(msg_worker *mw, uint64_t seq) { return &mw->calls[seq % SVC_MSG_RPC_BUCKETS]; }

static void unlink_call(msg_worker *mw, rpc_call *c) {
    for (rpc_call **p = bucket(mw, c->seq); *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            mw->ncalls--;
            return;
        }
    }
}

static rpc_call *find_call(msg_worker *mw, uint64_t seq) {
    for (rpc_call *c = *bucket(mw, seq); c; c = c->next)
        if (c->seq == seq) return c;
    return NULL;
}

void svc__rpc_free_call(rpc_call *c) {
    free(c); /* the request's bytes are in the same block */
}

static void free_after_close(uv_handle_t *h) { svc__rpc_free_call(h->data); }

static const char *reply_header(const svc_rpc_reply *r, const char *name) {
    return r && r->impl && name ? svc__nats_msg_header(r->impl, name) : NULL;
}

static int reply_header_at(const svc_rpc_reply *r, size_t i, const char **name, const char **value) {
    const svc_nats_msg *m = r ? r->impl : NULL;
    if (!m || i >= m->nhdrs) return SVC_ENOTFOUND;
    *name = m->names[i];
    *value = m->values[i];
    return SVC_OK;
}

static const char *gather_header(const svc_msg_reply *r, const char *name) {
    return r && r->impl && name ? svc__nats_msg_header(r->impl, name) : NULL;
}

static const char *outcome_of(int err) {
    switch (err) {
    case SVC_OK: return "ok";
    case SVC_EAGAIN: return "no_responders";
    case SVC_ETIMEDOUT: return "timeout";
    case SVC_ECLOSED: return "closed";
    default: return "error";
    }
}

/* Runs the callback once, then forgets the call. Takes reply (may be NULL). */
static void complete(rpc_call *c, int err, svc_nats_msg *reply) {
    msg_worker *mw = c->mw;
    svc_msg *m = mw->m;
    unlink_call(mw, c);
    if (c->gather) {
        /* The window ending is the normal end; anything else means the
         * request or its replies may not have gone where they should. */
        if (err == SVC_ETIMEDOUT && mw->disconnects == c->conn_gen) err = SVC_OK;
        else err = SVC_ECLOSED;
        c->gather(err, NULL, c->ud);
        svc__nats_msg_free(reply);
    } else if (c->done) {
        c->done(err, reply, c->done_ud);
    } else {
        svc_rpc_reply r = {0};
        if (reply) {
            const char *st = svc__nats_msg_header(reply, "Svc-Status");
            int64_t status = 200;
            /* A responder that is not svckit may omit Svc-Status: its data is the answer. */
            if (st && (svc_parse_i64(st, &status) != SVC_OK || status < 100 || status > 599)) status = 502;
            const char *inst = svc__nats_msg_header(reply, "Svc-Instance");
            r.status = (int)status;
            r.body = reply->data;
            r.body_len = reply->len;
            r.instance = inst ? inst : "";
            r.header = reply_header;
            r.header_at = reply_header_at;
            r.impl = reply;
        }
        const char *labels[] = {c->service, outcome_of(err)};
        svc_counter_add(svc_metric_with(m->m_rpc, labels), 1);
        if (c->traced) {
            c->span.status = (int16_t)r.status;
            c->span.error = err != SVC_OK || r.status >= 500;
            if (err != SVC_OK) svc_span_set(c->span.code, sizeof c->span.code, outcome_of(err));
            svc_span_end(&c->span);
        }
        c->cb(err, reply ? &r : NULL, c->ud);
        svc__nats_msg_free(reply);
    }
    if (c->timer_live) {
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *)&c->timer, free_after_close);
    } else {
        svc__rpc_free_call(c);
    }
    svc__msg_worker_done(mw);
}

static void on_timeout(uv_timer_t *t) { complete(t->data, SVC_ETIMEDOUT, NULL); }

static int worker_is_closed(msg_worker *mw) {
    pthread_mutex_lock(&mw->lock);
    int closed = mw->closed;
    pthread_mutex_unlock(&mw->lock);
    return closed;
}

/* Registers c and publishes its request. SVC_OK: c completes later. Else c
 * was not registered and the caller still owns it. Loop thread. */
static int launch(msg_worker *mw, rpc_call *c) {
    if (!mw->nc || worker_is_closed(mw)) return SVC_ECLOSED;
    /* Connected again, worker 0's subscriptions are back and the item that
     * releases this worker is still queued: release now, so that once
     * /readyz says ready every call goes out. Not while disconnected: worker
     * 0 may not have seen the same loss yet, and what this worker buffered
     * would go out before worker 0 subscribed again. */
    if (mw->id != 0 && svc__nats_connected(mw->nc) && atomic_load(&mw->m->w0_subs_ready))
        svc__nats_release(mw->nc);
    /* Fail fast while the request cannot go out (a caller, the gateway,
     * answers 503 now rather than after its deadline), except within the
     * grace after a loss. That is while disconnected, and also while
     * connected again but holding publishes until worker 0's subscriptions
     * are back: worker 0 may still be waiting out its reconnect pause. */
    if (c->fail_fast && !svc__nats_sending(mw->nc) &&
        (c->strict || !uv_is_active((uv_handle_t *)&mw->grace_timer)))
        return SVC_ECLOSED;
    /* "<inbox>.<seq>", by hand: once per call. */
    char reply[sizeof mw->inbox + 24];
    size_t il = strlen(mw->inbox);
    memcpy(reply, mw->inbox, il);
    reply[il] = '.';
    svc__fmt_u64(reply + il + 1, c->seq);
    int rc = svc__msg_pub(mw, c->subject, reply, c->hdr_len ? c->hdr : NULL, c->hdr_len, c->data, c->len);
    if (rc != SVC_OK) return rc;
    c->conn_gen = mw->disconnects;
    c->next = *bucket(mw, c->seq);
    *bucket(mw, c->seq) = c;
    mw->ncalls++;
    uv_timer_init(&mw->w->loop, &c->timer);
    c->timer.data = c;
    c->timer_live = 1;
    uv_timer_start(&c->timer, on_timeout, (uint64_t)c->timeout_ms, 0);
    return SVC_OK;
}

void svc__rpc_start_call(msg_worker *mw, rpc_call *c) {
    int rc = launch(mw, c);
    if (rc == SVC_OK) return;
    /* Registered only to be completed through the common path. */
    c->next = *bucket(mw, c->seq);
    *bucket(mw, c->seq) = c;
    mw->ncalls++;
    complete(c, rc == SVC_ECLOSED || rc == SVC_EAGAIN ? rc : SVC_EIO, NULL);
}

void svc__rpc_on_inbox(svc_nats *nc, svc_nats_msg *msg, void *ud) {
    (void)nc;
    msg_worker *mw = ud;
    const char *dot = strrchr(msg->subject, '.');
    const char *tok = dot ? dot + 1 : "";
    int64_t seq = -1;
    if (svc_parse_i64(tok, &seq) != SVC_OK || seq < 0) {
        svc__msg_drop(mw->m, DROP_MALFORMED, "reply on %s without a call sequence", msg->subject);
        svc__nats_msg_free(msg);
        return;
    }
    rpc_call *c = find_call(mw, (uint64_t)seq);
    if (!c) {
        svc__msg_drop(mw->m, DROP_LATE_REPLY, "reply on %s arrived after its call ended", msg->subject);
        svc__nats_msg_free(msg);
        return;
    }
    if (c->gather) {
        if (!(msg->status == 503 && msg->len == 0)) {
            svc_msg_reply r = {.subject = msg->subject, .data = msg->data, .len = msg->len,
                               .header = gather_header, .impl = msg};
            c->gather(SVC_OK, &r, c->ud);
        }
        svc__nats_msg_free(msg);
        return;
    }
    if (msg->status == 503 && msg->len == 0) {
        svc__nats_msg_free(msg);
        complete(c, SVC_EAGAIN, NULL);
        return;
    }
    complete(c, SVC_OK, msg);
}

void svc__rpc_fail_all(msg_worker *mw, int err, int only_fast) {
    for (int i = 0; i < SVC_MSG_RPC_BUCKETS; i++) {
        rpc_call **p = &mw->calls[i];
        while (*p) {
            if (only_fast && !(*p)->fail_fast) {
                p = &(*p)->next;
                continue;
            }
            complete(*p, err, NULL); /* unlinks it */
        }
    }
}

/* A call and its request, copied behind it, in one block. */
static rpc_call *new_call(msg_worker *mw, const char *subject, const char *hdr, size_t hdr_len, const void *data,
                          size_t len, int timeout_ms) {
    size_t sl = strlen(subject);
    rpc_call *c = malloc(sizeof *c + sl + 1 + hdr_len + len + 1);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    char *block = (char *)(c + 1);
    c->subject = block;
    memcpy(block, subject, sl + 1);
    c->hdr = block + sl + 1;
    if (hdr_len) memcpy(c->hdr, hdr, hdr_len);
    c->hdr_len = hdr_len;
    c->data = c->hdr + hdr_len;
    if (len) memcpy(c->data, data, len);
    c->len = len;
    c->mw = mw;
    c->timeout_ms = timeout_ms;
    c->seq = atomic_fetch_add(&mw->rpc_seq, 1) + 1;
    return c;
}

static int hand_over(msg_worker *mw, rpc_call *c, int kind) {
    msg_item *it = malloc(sizeof *it);
    if (!it) return SVC_ENOMEM;
    *it = (msg_item){.kind = kind, .ptr = c};
    if (svc__msg_push(mw, it, 1) != SVC_OK) {
        free(it);
        return SVC_ECLOSED;
    }
    return SVC_OK;
}

int svc__rpc_request(msg_worker *mw, const char *subject, const char *hdr, size_t hdr_len, const void *data,
                     size_t len, int timeout_ms, rpc_done_fn done, void *ud) {
    rpc_call *c = new_call(mw, subject, hdr, hdr_len, data, len, timeout_ms);
    if (!c) return SVC_ENOMEM;
    c->done = done;
    c->done_ud = ud;
    int rc = launch(mw, c);
    if (rc != SVC_OK) svc__rpc_free_call(c);
    return rc;
}

int svc__rpc_request_async(msg_worker *mw, const char *subject, const char *hdr, size_t hdr_len,
                           const void *data, size_t len, int timeout_ms, int strict, rpc_done_fn done, void *ud) {
    rpc_call *c = new_call(mw, subject, hdr, hdr_len, data, len, timeout_ms);
    if (!c) return SVC_ENOMEM;
    c->done = done;
    c->done_ud = ud;
    c->fail_fast = c->strict = strict;
    int rc = hand_over(mw, c, ITEM_RPC);
    if (rc != SVC_OK) svc__rpc_free_call(c);
    return rc;
}

/* ---- blocking requests from other threads ---- */

typedef struct sync_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int refs, finished, err;
    svc_nats_msg *reply;
} sync_wait;

static void sync_release(sync_wait *s) {
    pthread_mutex_lock(&s->lock);
    int last = --s->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (!last) return;
    svc__nats_msg_free(s->reply);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

static void sync_done(int err, svc_nats_msg *reply, void *ud) {
    sync_wait *s = ud;
    pthread_mutex_lock(&s->lock);
    s->finished = 1;
    s->err = err;
    s->reply = reply;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    sync_release(s);
}

int svc__rpc_request_sync(msg_worker *mw, const char *subject, const char *hdr, size_t hdr_len,
                          const void *data, size_t len, int timeout_ms, svc_nats_msg **out) {
    *out = NULL;
    sync_wait *s = calloc(1, sizeof *s);
    rpc_call *c = s ? new_call(mw, subject, hdr, hdr_len, data, len, timeout_ms) : NULL;
    if (!c) {
        free(s);
        return SVC_ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    s->refs = 2;
    c->done = sync_done;
    c->done_ud = s;
    int rc = hand_over(mw, c, ITEM_SYNC);
    if (rc != SVC_OK) {
        svc__rpc_free_call(c);
        s->refs = 1;
        sync_release(s);
        return rc;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ms = (int64_t)timeout_ms + SVC_MSG_SYNC_GRACE_MS;
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    while (!s->finished)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT) break;
    rc = s->finished ? s->err : SVC_ETIMEDOUT;
    if (s->finished && rc == SVC_OK) {
        *out = s->reply;
        s->reply = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    sync_release(s);
    return rc;
}

/* ---- svc_rpc_call ---- */

/* "Name: value" from svc_rpc_opts.headers onto the header block. */
static int add_opt_header(svc_buf *h, const char *line) {
    const char *colon = strchr(line, ':');
    if (!colon || colon == line || colon - line > 128) return SVC_EINVAL;
    char name[129];
    size_t nl = (size_t)(colon - line);
    memcpy(name, line, nl);
    name[nl] = '\0';
    const char *value = colon + 1;
    while (*value == ' ' || *value == '\t') value++;
    /* These checks are stricter than svc__nats_hdr_add's, so the field goes
     * in without its second look. */
    if (!svc__nats_header_name_ok(name) || !svc__msg_header_value_ok(value)) return SVC_EINVAL;
    svc__nats_hdr_put(h, name, nl, value, strlen(value));
    return SVC_OK;
}

/* Literal names, their lengths known at compile time. */
#define HDR_PUT(h, name, value, len) svc__nats_hdr_put((h), (name), sizeof(name) - 1, (value), (len))

/*
 * On the caller's own loop and connected: publish now, no hand-off (the
 * callback still runs later, from the loop). Otherwise through mw's queue,
 * where a failure reaches the callback. Frees c when it cannot start.
 */
static int start_call(msg_worker *self, msg_worker *mw, rpc_call *c) {
    int rc;
    if (self == mw && mw->nc) {
        rc = launch(mw, c);
        if (rc == SVC_OK) return SVC_OK;
        if (rc == SVC_ERANGE) {
            svc__rpc_free_call(c);
            return rc;
        }
    }
    rc = hand_over(mw, c, ITEM_RPC);
    if (rc != SVC_OK) svc__rpc_free_call(c);
    return rc;
}

int svc_rpc_call(svc_app *app, svc_req *from, const char *service, const char *method, const char *path,
                 const void *body, size_t body_len, const svc_rpc_opts *opts, svc_rpc_cb cb, void *ud) {
    if (!app || !service || !method || !path || !cb || (body_len && !body)) return SVC_EINVAL;
    svc_msg *m = svc__msg_get(app);
    if (!m || !m->enabled || !atomic_load(&m->started)) return SVC_ECLOSED;
    if (!svc__msg_name_ok(service) || svc__msg_method_check(method) != SVC_OK) return SVC_EINVAL;
    const char *instance = opts ? opts->instance : NULL;
    if (instance && !svc__msg_name_ok(instance)) return SVC_EINVAL;
    if (body_len > SVC_MSG_MAX_PAYLOAD) return SVC_ERANGE;
    const char *q = strchr(path, '?');
    size_t plen = q ? (size_t)(q - path) : strlen(path);
    if (svc__msg_path_check(path, plen, SVC_HTTP_MAX_HEADER_BYTES) != SVC_OK) return SVC_EINVAL;
    if (q && svc__msg_query_check(q + 1, strlen(q + 1), SVC_HTTP_MAX_HEADER_BYTES) != SVC_OK) return SVC_EINVAL;
    int timeout = opts && opts->timeout_ms > 0 ? opts->timeout_ms : SVC_MSG_RPC_TIMEOUT_MS;

    /* The caller's loop: the request's, else the loop we run on, else the first. */
    msg_worker *self = svc__msg_current(m), *mw = NULL;
    if (from && from->w && from->w->id < m->nworkers) mw = &m->workers[from->w->id];
    if (!mw) mw = self;
    if (!mw) mw = &m->workers[0];

    /* "svc.<service>[.<instance>].http": both names checked above (at most
     * 64 bytes each of [A-Za-z0-9_-]), so it fits and needs no escaping. */
    char subject[SVC_MSG_MAX_SUBJECT];
    size_t sl = strlen(service), n = 0;
    memcpy(subject, "svc.", 4), n = 4;
    memcpy(subject + n, service, sl), n += sl;
    if (instance) {
        size_t il = strlen(instance);
        subject[n++] = '.';
        memcpy(subject + n, instance, il), n += il;
    }
    memcpy(subject + n, ".http", 6);

    /* Every value below was checked above or is made here (digits, hex),
     * so the fields go in without svc__nats_hdr_add's second look. */
    svc_buf h = {0};
    size_t extra = 0;
    for (const char *const *hp = opts ? opts->headers : NULL; hp && *hp; hp++) extra += strlen(*hp) + 4;
    svc_buf_reserve(&h, 384 + plen + (q ? strlen(q) : 0) + extra);
    svc__nats_hdr_begin(&h);
    int rc = SVC_OK;
    HDR_PUT(&h, "Svc-Method", method, strlen(method));
    HDR_PUT(&h, "Svc-Path", path, plen);
    if (q && q[1]) HDR_PUT(&h, "Svc-Query", q + 1, strlen(q + 1));
    char buf[24];
    HDR_PUT(&h, "Svc-Deadline", buf, svc__fmt_i64(buf, svc_wall_ms() + timeout));
    /* The call is a client span, child of the request's (or of the span
     * this thread works for); its id goes on as the callee's parent. A
     * caller outside any span makes none: no ids to draw, no clock to read. */
    const svc_trace_ctx *parent = from ? &from->tctx : svc__trace_current();
    svc_span span;
    int traced = 0;
    if (parent) {
        char name[SVC_TRACE_NAME_MAX];
        snprintf(name, sizeof name, "%s %s", method, service);
        traced = svc_span_begin(&span, parent, SVC_SPAN_CLIENT, name);
        svc_span_set(span.peer, sizeof span.peer, service);
        span.detail_is = SVC_SPAN_DETAIL_SUBJECT;
        svc_span_set(span.detail, sizeof span.detail, subject);
        char tp[SVC_TRACEPARENT_LEN + 1];
        svc_trace_ctx ctx = svc_span_ctx(&span);
        svc__traceparent_format(tp, &ctx);
        HDR_PUT(&h, "traceparent", tp, SVC_TRACEPARENT_LEN);
        /* Checked when it came in (svc__tracestate_ok): printable, no CR/LF. */
        if (from && from->tracestate) HDR_PUT(&h, "tracestate", from->tracestate, strlen(from->tracestate));
    }
    if (from) {
        const char *rid = svc_req_id(from);
        if (*rid && svc__msg_header_value_ok(rid)) svc__nats_hdr_add(&h, "X-Request-Id", rid);
        const char *peer = svc_req_peer(from);
        if (*peer && svc__msg_client_ok(peer)) HDR_PUT(&h, "Svc-Client", peer, strlen(peer));
    }
    for (const char *const *hp = opts ? opts->headers : NULL; hp && *hp && rc == SVC_OK; hp++)
        rc = add_opt_header(&h, *hp);
    svc__nats_hdr_end(&h);
    if (rc == SVC_OK && h.oom) rc = SVC_ENOMEM;
    rpc_call *c = rc == SVC_OK ? new_call(mw, subject, h.data, h.len, body, body_len, timeout) : NULL;
    svc_buf_free(&h);
    if (rc != SVC_OK) return rc;
    if (!c) return SVC_ENOMEM;
    memcpy(c->service, service, sl + 1);
    c->traced = traced;
    if (traced) c->span = span;
    c->cb = cb;
    c->ud = ud;
    c->fail_fast = 1;
    return start_call(self, mw, c);
}

/* ---- svc_msg_request_all ---- */

int svc_msg_request_all(svc_app *app, const char *subject, const void *data, size_t len, int gather_ms,
                        svc_msg_gather_cb cb, void *ud) {
    if (!app || !subject || !cb || (len && !data)) return SVC_EINVAL;
    if (gather_ms <= 0 || gather_ms > SVC_MSG_GATHER_MAX_MS) return SVC_EINVAL;
    if (svc__msg_subject_check(subject, 0) != SVC_OK) return SVC_EINVAL;
    if (len > SVC_MSG_MAX_PAYLOAD) return SVC_ERANGE;
    svc_msg *m = svc__msg_get(app);
    if (!m || !m->enabled || !m->workers) return SVC_ECLOSED;
    msg_worker *self = svc__msg_current(m), *mw = self ? self : &m->workers[0];
    rpc_call *c = new_call(mw, subject, NULL, 0, data, len, gather_ms);
    if (!c) return SVC_ENOMEM;
    c->gather = cb;
    c->ud = ud;
    /* Not connected: end at once with SVC_ECLOSED (after the grace of a
     * blip), as svc_rpc_call does, rather than gather nothing for a window. */
    c->fail_fast = 1;
    return start_call(self, mw, c);
}
