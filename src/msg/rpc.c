/*
 * svc_rpc_call: service-to-service requests over NATS.
 *
 * Each worker owns one wildcard inbox subscription, "_INBOX.<nuid>.*",
 * created at start; a call publishes its request with the reply subject
 * "<inbox>.<seq>" and waits on the caller's loop, with a uv timer for the
 * deadline. Replies reach the loop through the worker's queue and are matched
 * by seq in a small hash table; one that finds no call (its deadline passed)
 * is dropped and counted. When nobody listens on the subject the server
 * answers at once with a no-responders status, which becomes SVC_EAGAIN
 * without waiting for the deadline. The callback runs exactly once, always
 * from the loop, never from inside svc_rpc_call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg/internal.h"

struct rpc_call {
    rpc_call *next;                  /* hash chain */
    msg_worker *mw;
    uint64_t seq;
    natsMsg *out;                    /* the request, until published */
    uv_timer_t timer;
    int timer_live;
    svc_rpc_cb cb;
    void *ud;
    int timeout_ms;
    char service[65];
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
    if (!c) return;
    natsMsg_Destroy(c->out);
    free(c);
}

static void free_after_close(uv_handle_t *h) { svc__rpc_free_call(h->data); }

static const char *reply_header(const svc_rpc_reply *r, const char *name) {
    return r && r->impl && name ? svc__msg_header(r->impl, name) : NULL;
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

/* Runs the callback once, then forgets the call. reply may be NULL. */
static void complete(rpc_call *c, int err, natsMsg *reply) {
    msg_worker *mw = c->mw;
    svc_msg *m = mw->m;
    unlink_call(mw, c);
    svc_rpc_reply r = {0};
    if (reply) {
        const char *st = svc__msg_header(reply, "Svc-Status");
        int64_t status = 200;
        /* A responder that is not svckit may omit Svc-Status: its data is the answer. */
        if (st && (svc_parse_i64(st, &status) != SVC_OK || status < 100 || status > 599)) status = 502;
        const char *inst = svc__msg_header(reply, "Svc-Instance");
        r.status = (int)status;
        r.body = natsMsg_GetData(reply);
        if (!r.body) r.body = "";
        r.body_len = (size_t)natsMsg_GetDataLength(reply);
        r.instance = inst ? inst : "";
        r.header = reply_header;
        r.impl = reply;
    }
    const char *labels[] = {c->service, outcome_of(err)};
    svc_counter_add(svc_metric_with(m->m_rpc, labels), 1);
    c->cb(err, reply ? &r : NULL, c->ud);
    if (c->timer_live) {
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *)&c->timer, free_after_close);
    } else {
        svc__rpc_free_call(c);
    }
    svc__msg_worker_done(mw);
}

static void on_timeout(uv_timer_t *t) { complete(t->data, SVC_ETIMEDOUT, NULL); }

void svc__rpc_start_call(msg_worker *mw, rpc_call *c) {
    svc_msg *m = mw->m;
    c->next = *bucket(mw, c->seq);
    *bucket(mw, c->seq) = c;
    mw->ncalls++;
    pthread_mutex_lock(&mw->lock);
    int closed = mw->closed;
    pthread_mutex_unlock(&mw->lock);
    if (closed || !mw->inbox_sub) {
        complete(c, SVC_ECLOSED, NULL);
        return;
    }
    /* Fail fast while disconnected: a caller (the gateway) answers 503 now
     * rather than after its deadline. */
    if (!atomic_load(&m->connected)) {
        complete(c, SVC_ECLOSED, NULL);
        return;
    }
    uv_timer_init(&mw->w->loop, &c->timer);
    c->timer.data = c;
    c->timer_live = 1;
    uv_timer_start(&c->timer, on_timeout, (uint64_t)c->timeout_ms, 0);
    natsStatus s = natsConnection_PublishMsg(m->nc, c->out);
    natsMsg_Destroy(c->out);
    c->out = NULL;
    if (s != NATS_OK) {
        svc_counter_add(m->s_publish_failed, 1);
        complete(c, s == NATS_INSUFFICIENT_BUFFER ? SVC_EAGAIN : SVC_ECLOSED, NULL);
    }
}

void svc__rpc_on_reply(msg_worker *mw, natsMsg *msg) {
    const char *subj = natsMsg_GetSubject(msg);
    const char *dot = subj ? strrchr(subj, '.') : NULL;
    int64_t seq = -1;
    if (!dot || svc_parse_i64(dot + 1, &seq) != SVC_OK || seq < 0) {
        svc__msg_drop(mw->m, DROP_MALFORMED, "reply on %s without a call sequence", subj ? subj : "?");
        natsMsg_Destroy(msg);
        return;
    }
    rpc_call *c = find_call(mw, (uint64_t)seq);
    if (!c) {
        svc__msg_drop(mw->m, DROP_LATE_REPLY, "reply on %s arrived after its call ended", subj);
        natsMsg_Destroy(msg);
        return;
    }
    complete(c, natsMsg_IsNoResponders(msg) ? SVC_EAGAIN : SVC_OK, natsMsg_IsNoResponders(msg) ? NULL : msg);
    natsMsg_Destroy(msg);
}

void svc__rpc_fail_all(msg_worker *mw, int err) {
    for (int i = 0; i < SVC_MSG_RPC_BUCKETS; i++)
        while (mw->calls[i]) complete(mw->calls[i], err, NULL);
}

/* "Name: value" from svc_rpc_opts.headers onto msg; SVC_EINVAL if malformed. */
static int add_opt_header(natsMsg *msg, const char *line) {
    const char *colon = strchr(line, ':');
    if (!colon || colon == line || colon - line > 128) return SVC_EINVAL;
    char name[129];
    memcpy(name, line, (size_t)(colon - line));
    name[colon - line] = '\0';
    const char *value = colon + 1;
    while (*value == ' ' || *value == '\t') value++;
    if (!svc__msg_header_name_ok(name) || !svc__msg_header_value_ok(value)) return SVC_EINVAL;
    return natsMsgHeader_Add(msg, name, value) == NATS_OK ? SVC_OK : SVC_ENOMEM;
}

int svc_rpc_call(svc_app *app, svc_req *from, const char *service, const char *method, const char *path,
                 const void *body, size_t body_len, const svc_rpc_opts *opts, svc_rpc_cb cb, void *ud) {
    if (!app || !service || !method || !path || !cb || (body_len && !body)) return SVC_EINVAL;
    svc_msg *m = app->msg;
    if (!m || !m->enabled || !m->started) return SVC_ECLOSED;
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
    msg_worker *mw = NULL;
    if (from && from->w && from->w->id < m->nworkers) mw = &m->workers[from->w->id];
    if (!mw) mw = svc__msg_current(m);
    if (!mw) mw = &m->workers[0];

    rpc_call *c = calloc(1, sizeof *c);
    if (!c) return SVC_ENOMEM;
    c->mw = mw;
    c->cb = cb;
    c->ud = ud;
    c->timeout_ms = timeout;
    snprintf(c->service, sizeof c->service, "%s", service);
    pthread_mutex_lock(&mw->lock);
    c->seq = ++mw->rpc_seq;
    pthread_mutex_unlock(&mw->lock);

    char subject[SVC_MSG_MAX_SUBJECT], reply[128], buf[64];
    if (instance) snprintf(subject, sizeof subject, "svc.%s.%s.http", service, instance);
    else snprintf(subject, sizeof subject, "svc.%s.http", service);
    snprintf(reply, sizeof reply, "%s.%llu", mw->inbox, (unsigned long long)c->seq);
    natsStatus s = natsMsg_Create(&c->out, subject, reply, body_len ? body : NULL, (int)body_len);
    int rc = s == NATS_OK ? SVC_OK : SVC_ENOMEM;
    char *pathcopy = rc == SVC_OK ? strndup(path, plen) : NULL;
    if (rc == SVC_OK && !pathcopy) rc = SVC_ENOMEM;
    if (rc == SVC_OK) {
        natsMsgHeader_Set(c->out, "Svc-Method", method);
        natsMsgHeader_Set(c->out, "Svc-Path", pathcopy);
        if (q && q[1]) natsMsgHeader_Set(c->out, "Svc-Query", q + 1);
        snprintf(buf, sizeof buf, "%lld", (long long)(svc_wall_ms() + timeout));
        natsMsgHeader_Set(c->out, "Svc-Deadline", buf);
        if (from) {
            char tp[64];
            snprintf(tp, sizeof tp, "00-%s-%s-01", svc_req_trace_id(from), from->span_id);
            if (strlen(svc_req_trace_id(from)) == 32 && strlen(from->span_id) == 16)
                natsMsgHeader_Set(c->out, "traceparent", tp);
            if (*svc_req_id(from)) natsMsgHeader_Set(c->out, "X-Request-Id", svc_req_id(from));
            if (*svc_req_peer(from) && svc__msg_client_ok(svc_req_peer(from)))
                natsMsgHeader_Set(c->out, "Svc-Client", svc_req_peer(from));
        }
        for (const char *const *h = opts ? opts->headers : NULL; h && *h && rc == SVC_OK; h++)
            rc = add_opt_header(c->out, *h);
    }
    free(pathcopy);
    if (rc != SVC_OK) {
        svc__rpc_free_call(c);
        return rc;
    }
    msg_item *it = malloc(sizeof *it);
    if (!it) {
        svc__rpc_free_call(c);
        return SVC_ENOMEM;
    }
    /* Always through the queue, even from the caller's own loop: the
     * callback must never run inside svc_rpc_call. */
    *it = (msg_item){.kind = ITEM_RPC, .ptr = c};
    if (svc__msg_push(mw, it, 1) != SVC_OK) {
        free(it);
        svc__rpc_free_call(c);
        return SVC_ECLOSED;
    }
    return SVC_OK;
}
