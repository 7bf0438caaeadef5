/*
 * JetStream over plain request-reply on $JS.API.*: durable streams,
 * publishing with a stored ack and de-duplication by Nats-Msg-Id, and
 * durable pull consumers with explicit acks.
 *
 * Stream definitions are remembered and (re)applied whenever they may be
 * missing: when declared while connected, after every (re)connection of
 * worker 0 before its consumers bind, before a publish after a
 * reconnection. STREAM.CREATE.<name>; if the server refuses (it exists with
 * another configuration), STREAM.UPDATE.<name>.
 *
 * Consumers run on worker 0's loop, without a thread: CONSUMER.DURABLE.
 * CREATE.<stream>.<durable> (the same request updates an existing one),
 * then a loop of pull requests, CONSUMER.MSG.NEXT with {"batch","expires"}
 * and the reply subject "<inbox>.F.<slot>.<n>" (n counts the pulls; one
 * subscription "<inbox>.F.<slot>.*" per consumer, out of reach of the
 * calls' "<inbox>.*"), issued while at least half a batch more may be in
 * flight (SVC_MSG_STREAM_INFLIGHT, or two batches). Each message comes
 * with a reply subject $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.
 * <cseq>.<ts>.<pending> (or the longer form with domain and account hash);
 * the handler's return acks (+ACK), naks with a delay (-NAK {"delay":ns}) or
 * terminates (+TERM) it by a publish to that subject. A status message
 * (408 the request expired, 404 nothing there, 409 consumer gone or too
 * many waiting) on the newest pull's subject ends it; a pull still open
 * SVC_MSG_FETCH_RENEW_MS before its expiry is replaced without waiting for
 * that 408, which the server may never send. Anything not acked (a crash, a kill -9) is
 * redelivered by the server after ack_wait, to any instance. The consumer
 * is never deleted, so it outlives the process.
 *
 * The blocking calls (svc_js_publish, svc_js_stream_ensure) hand their
 * request to a worker loop that is not the caller's and wait for the reply.
 * svc_js_publish_async hands it to one loop per calling thread (order) and
 * gives the reply to a callback there; it is a "strict" request: never
 * buffered while that connection cannot send, failed when it is lost.
 *
 * A batch consumer (svc_app_on_stream_batch) pulls up to
 * SVC_MSG_STREAM_BATCH at a time and keeps two batches in flight: events.c
 * hands its handler what queued while the previous call ran.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "msg/internal.h"

#define JS_API "$JS.API."
_Static_assert(SVC_JS_MAX_DUPLICATE_WINDOW_MS <= SVC_MSG_JS_MAX_AGE_MIN_S * 1000L,
               "a duplicate window is never longer than a stream's max age (nats-server refuses it)");
/* The consumer's max_ack_pending: the server never has more of its
 * messages unacknowledged, so more in flight here did not come from it. */
#define JS_MAX_ACK_PENDING(c) ((c)->max_inflight * 4)

/* ---- replies ---------------------------------------------------------------- */

/* SVC_OK, or SVC_EIO with *code the JetStream err_code (and desc). out
 * NULL, or on SVC_OK the parsed answer for the caller to read the rest of
 * (the caller json_decref()s it; NULL on any error). */
static int js_reply(const svc_nats_msg *r, int *code, char *desc, size_t desclen, json_t **out) {
    *code = 0;
    if (desc && desclen) desc[0] = '\0';
    if (out) *out = NULL;
    if (r->status == 503) return SVC_ENOTFOUND; /* no responders: no JetStream or no stream */
    json_error_t e;
    json_t *doc = json_loadb(r->data, r->len, 0, &e);
    if (!doc) return SVC_EIO;
    json_t *err = json_object_get(doc, "error");
    int rc = SVC_OK;
    if (err) {
        rc = SVC_EIO;
        *code = (int)json_integer_value(json_object_get(err, "err_code"));
        const char *d = json_string_value(json_object_get(err, "description"));
        if (desc && d) snprintf(desc, desclen, "%s", d);
    }
    if (out && rc == SVC_OK) *out = doc;
    else json_decref(doc);
    return rc;
}

/* The service's NATS_JS_REPLICAS (a stream's copies in a JetStream
 * cluster), NATS_JS_MAX_AGE and NATS_JS_MAX_BYTES (what it keeps). */
static void stream_body(const msg_stream_def *d, const svc_msg *m, svc_buf *b) {
    svc_jw w;
    svc_jw_init(&w, b);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "name"), svc_jw_str(&w, d->name);
    svc_jw_key(&w, "subjects");
    svc_jw_arr_begin(&w);
    for (int i = 0; i < d->nsubjects; i++) svc_jw_str(&w, d->subjects[i]);
    svc_jw_arr_end(&w);
    svc_jw_key(&w, "retention"), svc_jw_str(&w, "limits");
    svc_jw_key(&w, "storage"), svc_jw_str(&w, "file");
    svc_jw_key(&w, "num_replicas"), svc_jw_i64(&w, m->js_replicas);
    svc_jw_key(&w, "max_age"), svc_jw_i64(&w, (int64_t)m->js_max_age_s * 1000000000LL);
    svc_jw_key(&w, "max_bytes"), svc_jw_i64(&w, m->js_max_bytes);
    svc_jw_key(&w, "discard"), svc_jw_str(&w, "old");
    svc_jw_key(&w, "duplicate_window"), svc_jw_i64(&w, d->duplicate_window_ms * 1000000LL);
    svc_jw_obj_end(&w);
}

/* A $JS.ACK reply subject split at its dots: $JS.ACK.<stream>.<consumer>.
 * <delivered>.<sseq>.<cseq>.<ts>.<pending>, or the longer form with
 * <domain>.<account hash> after ACK and a token at the end; at is the index
 * of <stream>. 0 when reply is not one. */
typedef struct {
    const char *tok[16];
    size_t len[16];
    int n, at;
} js_ack;

static int js_ack_split(const char *reply, js_ack *a) {
    if (!reply || strncmp(reply, "$JS.ACK.", 8) != 0) return 0;
    a->n = 0;
    for (const char *p = reply; a->n < 16;) {
        const char *dot = strchr(p, '.');
        a->tok[a->n] = p;
        a->len[a->n] = dot ? (size_t)(dot - p) : strlen(p);
        a->n++;
        if (!dot) break;
        p = dot + 1;
    }
    a->at = a->n == 9 ? 2 : a->n >= 11 ? 4 : -1;
    return a->at >= 0;
}

/* The numeric token `field` places after <stream> (2 delivered, 6 pending):
 * -1 when it is not a number of at most 18 digits. */
static int64_t js_ack_num(const js_ack *a, int field) {
    int i = a->at + field;
    if (i >= a->n || a->len[i] == 0 || a->len[i] > 18) return -1;
    int64_t v = 0;
    for (size_t k = 0; k < a->len[i]; k++) {
        char ch = a->tok[i][k];
        if (ch < '0' || ch > '9') return -1;
        v = v * 10 + (ch - '0');
    }
    return v;
}

static int js_ack_token_is(const js_ack *a, int field, const char *want) {
    int i = a->at + field;
    return i < a->n && strlen(want) == a->len[i] && memcmp(a->tok[i], want, a->len[i]) == 0;
}

uint64_t svc__js_delivered(const char *reply) {
    js_ack a;
    int64_t v = js_ack_split(reply, &a) ? js_ack_num(&a, 2) : -1;
    return v < 0 ? 0 : (uint64_t)v;
}

int64_t svc__js_pending(const char *reply, const char *stream, const char *durable) {
    js_ack a;
    if (!js_ack_split(reply, &a) || !js_ack_token_is(&a, 0, stream) || !js_ack_token_is(&a, 1, durable))
        return -1;
    return js_ack_num(&a, 6);
}

/* Consumer lag, one series per durable consumer the code declares: a set
 * fixed before start, so its labels stay bounded. Set from every delivery's
 * reply subject, and from the consumer's info: the answer to binding, then
 * every SVC_MSG_JS_LAG_MS (a consumer that is stuck or saturated gets no
 * deliveries while its backlog grows). */
void svc__js_metrics(svc_msg *m) {
    static const char *labels[] = {"service", "stream", "durable"};
    svc_metric *pending = svc_metric_gauge("jetstream_consumer_pending_messages",
                                           "Messages of the stream not yet delivered to this durable consumer, "
                                           "as the server last counted them",
                                           3, labels);
    for (msg_consumer *c = m->consumers; c; c = c->next) {
        const char *v[] = {m->app->name, c->stream, c->durable};
        c->s_pending = svc_metric_with(pending, v);
    }
}

/* ---- blocking, from other threads --------------------------------------------------- */

/* A worker to hand a blocking request to: never the caller's own loop. */
static msg_worker *sync_worker(svc_msg *m) {
    msg_worker *self = svc__msg_current(m);
    msg_worker *mw = svc__msg_pick(m);
    if (mw == self) mw = m->nworkers > 1 ? &m->workers[(self->id + 1) % m->nworkers] : NULL;
    return mw;
}

static int request_sync(svc_msg *m, const char *subject, const char *hdr, size_t hdr_len, const void *data,
                        size_t len, int timeout_ms, svc_nats_msg **out) {
    msg_worker *mw = sync_worker(m);
    if (!mw) {
        if (svc__msg_log_allowed(m, DROP_REASONS + 1))
            svc_warn("nats: a blocking JetStream call on the only worker loop cannot wait for it; "
                     "call it from SVC_OFFLOAD code");
        return SVC_EIO;
    }
    return svc__rpc_request_sync(mw, subject, hdr, hdr_len, data, len, timeout_ms, out);
}

static int apply_stream_sync(svc_msg *m, const msg_stream_def *d) {
    svc_buf b = {0};
    stream_body(d, m, &b);
    if (b.oom) {
        svc_buf_free(&b);
        return SVC_ENOMEM;
    }
    char subject[SVC_MSG_MAX_SUBJECT], desc[160] = "";
    int code = 0, rc = SVC_OK;
    for (int update = 0; update < 2; update++) {
        snprintf(subject, sizeof subject, JS_API "STREAM.%s.%s", update ? "UPDATE" : "CREATE", d->name);
        svc_nats_msg *r = NULL;
        rc = request_sync(m, subject, NULL, 0, b.data, b.len, SVC_MSG_JS_API_TIMEOUT_MS, &r);
        if (rc == SVC_OK) rc = js_reply(r, &code, desc, sizeof desc, NULL);
        svc__nats_msg_free(r);
        if (rc != SVC_EIO) break;
    }
    svc_buf_free(&b);
    if (rc != SVC_OK) {
        svc_error("nats: cannot declare stream %s: %s%s%s (JetStream error %d)", d->name, svc_status_str(rc),
                  desc[0] ? ": " : "", desc, code);
        if (rc == SVC_ETIMEDOUT || rc == SVC_ENOTFOUND) rc = SVC_EAGAIN;
    }
    return rc;
}

static int apply_streams_sync(svc_msg *m) {
    if (atomic_load(&m->nconnected) == 0) return SVC_EAGAIN;
    atomic_store(&m->streams_dirty, 0);
    int rc = SVC_OK;
    pthread_mutex_lock(&m->streams_lock);
    for (msg_stream_def *d = m->streams; d; d = d->next) {
        int r = apply_stream_sync(m, d);
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


static int add_consumer(svc_app *app, const char *stream, const char *subject, const char *durable,
                        int ack_wait_ms, svc_event_fn handler, svc_event_batch_fn batch, unsigned flags, void *ud) {
    if (!app || (!handler == !batch) || !svc__msg_js_name_ok(stream) || !svc__msg_js_name_ok(durable) ||
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
    c->batch = batch;
    c->flags = batch ? SVC_OFFLOAD : flags;
    /* A batch handler has the next batch arrive while it runs. */
    c->max_inflight = batch ? 2 * SVC_MSG_STREAM_BATCH : SVC_MSG_STREAM_INFLIGHT;
    c->ud = ud;
    svc__event_metric(m);
    c->next = m->consumers;
    m->consumers = c;
    if (!c->stream || !c->subject || !c->durable) return SVC_ENOMEM; /* freed with the app */
    return SVC_OK;
}

int svc_app_on_stream(svc_app *app, const char *stream, const char *subject, const char *durable,
                      int ack_wait_ms, svc_event_fn handler, unsigned flags, void *ud) {
    if (!handler) return SVC_EINVAL;
    return add_consumer(app, stream, subject, durable, ack_wait_ms, handler, NULL, flags, ud);
}

int svc_app_on_stream_batch(svc_app *app, const char *stream, const char *subject, const char *durable,
                            int ack_wait_ms, svc_event_batch_fn handler, void *ud) {
    if (!handler) return SVC_EINVAL;
    return add_consumer(app, stream, subject, durable, ack_wait_ms, NULL, handler, SVC_OFFLOAD, ud);
}

int svc_js_stream_ensure(svc_app *app, const char *stream, const char *const *subjects,
                         int64_t duplicate_window_ms) {
    if (!app || !svc__msg_js_name_ok(stream) || !subjects || !subjects[0] || duplicate_window_ms < 0 ||
        duplicate_window_ms > SVC_JS_MAX_DUPLICATE_WINDOW_MS)
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
    /* Connected (only once the workers run): now, blocking. Before that (on_start) worker 0
     * declares it as soon as it connects. */
    if (m->enabled && atomic_load(&m->nconnected) > 0) rc = apply_stream_sync(m, d);
    else atomic_store(&m->streams_dirty, 1);
    pthread_mutex_unlock(&m->streams_lock);
    if (!m->enabled) return SVC_ECLOSED;
    return rc;
}

/* What both publishes check first; builds the header section in h
 * (Nats-Msg-Id, Svc-Source, and the traceparent of the producer span begun
 * in span).
 * Off the loops, re-applies the stream declarations a reconnect left
 * pending (blocking). */
static int publish_prepare(svc_app *app, const char *subject, const void *data, size_t len, const char *msg_id,
                           svc_msg **out, svc_buf *h, svc_span *span) {
    if (!app || (len && !data) || svc__msg_subject_check(subject, 0) != SVC_OK) return SVC_EINVAL;
    if (msg_id && (!*msg_id || strlen(msg_id) > 256 || !svc__msg_header_value_ok(msg_id))) return SVC_EINVAL;
    svc_msg *m = svc__msg_get(app);
    if (!m || !m->enabled || !m->workers || !atomic_load(&m->started)) return SVC_ECLOSED;
    if (len > SVC_MSG_MAX_PAYLOAD) return SVC_ERANGE;
    if (atomic_load(&m->streams_dirty) && !svc__msg_current(m)) apply_streams_sync(m);
    if (msg_id) {
        svc__nats_hdr_begin(h);
        svc__nats_hdr_add(h, "Nats-Msg-Id", msg_id);
    }
    svc__msg_producer_begin(m, span, subject, h);
    svc__nats_hdr_end(h);
    if (h->oom) {
        svc_buf_free(h);
        return SVC_ENOMEM;
    }
    *out = m;
    return SVC_OK;
}

/* The outcome of a publish's request (err, reply: taken): SVC_OK and ack,
 * or the error, counted and logged (rate-limited). */
static int publish_outcome(svc_msg *m, const char *subject, int err, svc_nats_msg *r, svc_js_ack *ack,
                           svc_span *span) {
    int code = 0;
    char desc[160] = "";
    int rc = err;
    if (rc == SVC_EAGAIN && r == NULL) rc = SVC_ENOTFOUND; /* no responders: no stream takes it */
    json_t *doc = NULL;
    if (rc == SVC_OK) rc = js_reply(r, &code, desc, sizeof desc, ack ? &doc : NULL);
    if (rc == SVC_OK && ack) {
        json_int_t seq = json_integer_value(json_object_get(doc, "seq"));
        ack->seq = seq > 0 ? (uint64_t)seq : 0;
        ack->duplicate = json_is_true(json_object_get(doc, "duplicate"));
        json_decref(doc);
    }
    svc__nats_msg_free(r);
    svc__msg_producer_end(span, rc); /* publish and ack, one span */
    if (rc != SVC_OK) {
        svc_counter_add(m->s_publish_failed, 1);
        if (svc__msg_log_allowed(m, DROP_REASONS)) {
            svc_warn("nats: JetStream publish on %s failed: %s%s%s (JetStream error %d)", subject,
                     svc_status_str(rc), desc[0] ? ": " : "", desc, code);
            if (!svc__msg_current(m)) svc__log_thread_exit();
        }
    }
    return rc;
}

int svc_js_publish(svc_app *app, const char *subject, const void *data, size_t len, const char *msg_id,
                   int timeout_ms) {
    svc_msg *m = NULL;
    svc_buf h = {0};
    svc_span span;
    int rc = publish_prepare(app, subject, data, len, msg_id, &m, &h, &span);
    if (rc != SVC_OK) return rc;
    svc_nats_msg *r = NULL;
    rc = request_sync(m, subject, h.data, h.len, data, len, timeout_ms > 0 ? timeout_ms : SVC_MSG_RPC_TIMEOUT_MS, &r);
    svc_buf_free(&h);
    return publish_outcome(m, subject, rc, r, NULL, &span);
}

/* One svc_js_publish_async awaiting its ack; the subject behind it. */
typedef struct js_async {
    svc_msg *m;
    svc_js_ack_fn cb;
    void *ud;
    svc_span span;
    char subject[];
} js_async;

static void async_done(int err, svc_nats_msg *reply, void *ud) {
    js_async *a = ud;
    svc_js_ack ack = {0};
    int rc = publish_outcome(a->m, a->subject, err, reply, &ack, &a->span);
    atomic_fetch_sub(&a->m->js_async, 1);
    a->cb(rc, rc == SVC_OK ? &ack : NULL, a->ud);
    free(a);
}

int svc_js_publish_async(svc_app *app, const char *subject, const void *data, size_t len, const char *msg_id,
                         int timeout_ms, svc_js_ack_fn cb, void *ud) {
    if (!cb) return SVC_EINVAL;
    svc_msg *m = NULL;
    svc_buf h = {0};
    svc_span span;
    int rc = publish_prepare(app, subject, data, len, msg_id, &m, &h, &span);
    if (rc != SVC_OK) return rc;
    size_t sl = strlen(subject);
    js_async *a = malloc(sizeof *a + sl + 1);
    if (!a) {
        svc_buf_free(&h);
        return SVC_ENOMEM;
    }
    a->m = m;
    a->cb = cb;
    a->ud = ud;
    a->span = span;
    memcpy(a->subject, subject, sl + 1);
    if (atomic_fetch_add(&m->js_async, 1) >= SVC_JS_MAX_ASYNC) {
        rc = SVC_EAGAIN;
    } else {
        /* One connection per calling thread keeps the call order. */
        msg_worker *mw = svc__msg_current(m);
        if (!mw) mw = &m->workers[m->nworkers - 1];
        rc = svc__rpc_request_async(mw, subject, h.data, h.len, data, len,
                                    timeout_ms > 0 ? timeout_ms : SVC_MSG_RPC_TIMEOUT_MS, 1, async_done, a);
    }
    svc_buf_free(&h);
    if (rc != SVC_OK) {
        atomic_fetch_sub(&m->js_async, 1);
        svc_counter_add(m->s_publish_failed, 1);
        free(a);
    }
    return rc;
}

/* ---- worker 0: declarations and consumers, on the loop --------------------------------- */

static void bind_consumer(msg_worker *mw, msg_consumer *c);
static void fetch(msg_worker *mw, msg_consumer *c);

typedef struct js_round {
    msg_worker *mw;
    svc_buf *bodies;                 /* one per stream, built under the lock */
    char (*names)[65];
    int n, i, update, failed;
} js_round;

static void round_free(js_round *r) {
    for (int i = 0; i < r->n; i++) svc_buf_free(&r->bodies[i]);
    free(r->bodies);
    free(r->names);
    free(r);
}

static void round_next(js_round *r);

static void round_done(int err, svc_nats_msg *reply, void *ud) {
    js_round *r = ud;
    int code = 0;
    char desc[160] = "";
    int rc = err == SVC_OK ? js_reply(reply, &code, desc, sizeof desc, NULL) : err;
    svc__nats_msg_free(reply);
    if (rc == SVC_EIO && !r->update) {
        r->update = 1; /* exists with another configuration: update it */
    } else {
        if (rc != SVC_OK) {
            r->failed++;
            svc_error("nats: cannot declare stream %s: %s%s%s (JetStream error %d); retrying", r->names[r->i],
                      svc_status_str(rc), desc[0] ? ": " : "", desc, code);
        }
        r->i++;
        r->update = 0;
    }
    round_next(r);
}

static void retry_later(msg_worker *mw, msg_consumer *c);

static void round_next(js_round *r) {
    msg_worker *mw = r->mw;
    svc_msg *m = mw->m;
    while (r->i < r->n) {
        char subject[SVC_MSG_MAX_SUBJECT];
        snprintf(subject, sizeof subject, JS_API "STREAM.%s.%s", r->update ? "UPDATE" : "CREATE", r->names[r->i]);
        if (svc__rpc_request(mw, subject, NULL, 0, r->bodies[r->i].data, r->bodies[r->i].len,
                             SVC_MSG_JS_API_TIMEOUT_MS, round_done, r) == SVC_OK)
            return;
        r->failed++;
        r->i++;
        r->update = 0;
    }
    int failed = r->failed;
    if (failed) atomic_store(&m->streams_dirty, 1);
    m->js_applying = 0;
    round_free(r);
    if (mw->m->js_stopping) return;
    /* Consumers bind after the streams exist (or were tried). */
    for (msg_consumer *c = m->consumers; c; c = c->next) {
        if (failed && !c->bound) retry_later(mw, c);
        else if (!c->bound) bind_consumer(mw, c);
        else fetch(mw, c);
    }
}

/* Declares the streams (when dirty) then binds the consumers. */
static void declare_then_bind(msg_worker *mw) {
    svc_msg *m = mw->m;
    if (m->js_applying || mw->m->js_stopping || !svc__nats_connected(mw->nc)) return;
    js_round *r = calloc(1, sizeof *r);
    if (!r) return;
    r->mw = mw;
    if (atomic_exchange(&m->streams_dirty, 0)) {
        /* Never wait for the lock on the loop: a blocking declaration on
         * another thread may hold it while it waits for this very loop. */
        if (pthread_mutex_trylock(&m->streams_lock) != 0) {
            atomic_store(&m->streams_dirty, 1);
            r->failed = 1;
            m->js_applying = 1;
            round_next(r);
            return;
        }
        for (msg_stream_def *d = m->streams; d; d = d->next) r->n++;
        r->bodies = calloc((size_t)r->n + 1, sizeof *r->bodies);
        r->names = calloc((size_t)r->n + 1, sizeof *r->names);
        int k = 0;
        for (msg_stream_def *d = m->streams; d && r->bodies && r->names; d = d->next, k++) {
            stream_body(d, m, &r->bodies[k]);
            snprintf(r->names[k], sizeof r->names[k], "%s", d->name);
        }
        pthread_mutex_unlock(&m->streams_lock);
        if (!r->bodies || !r->names) {
            r->n = 0;
            r->failed = 1;
        }
    }
    m->js_applying = 1;
    round_next(r);
}

static void on_retry(uv_timer_t *t) {
    msg_consumer *c = t->data;
    msg_worker *mw = &c->m->workers[0];
    if (mw->m->js_stopping) return;
    if (!c->bound) {
        if (atomic_load(&c->m->streams_dirty)) declare_then_bind(mw);
        else bind_consumer(mw, c);
        return;
    }
    /* The pull is about to expire (or its answer was lost): a new one
     * replaces it, and what the old one still says is ignored. */
    c->fetching = 0;
    fetch(mw, c);
}

static void ensure_timer(msg_worker *mw, msg_consumer *c) {
    if (c->timer_init) return;
    uv_timer_init(&mw->w->loop, &c->timer);
    c->timer.data = c;
    c->timer_init = 1;
}

static void retry_later(msg_worker *mw, msg_consumer *c) {
    ensure_timer(mw, c);
    uv_timer_start(&c->timer, on_retry, SVC_MSG_JS_RETRY_MS, 0);
}

/* num_pending of a consumer info answer (CONSUMER.CREATE, CONSUMER.INFO),
 * as js_reply parsed it; takes doc. */
static void pending_from_info(msg_consumer *c, json_t *doc) {
    json_t *np = json_object_get(doc, "num_pending");
    if (json_is_integer(np) && json_integer_value(np) >= 0)
        svc_gauge_set(c->s_pending, (double)json_integer_value(np));
    json_decref(doc);
}

static void lag_done(int err, svc_nats_msg *reply, void *ud) {
    msg_consumer *c = ud;
    c->lag_asking = 0;
    int code = 0;
    json_t *doc;
    if (err == SVC_OK && js_reply(reply, &code, NULL, 0, &doc) == SVC_OK) pending_from_info(c, doc);
    svc__nats_msg_free(reply);
}

static void on_lag_timer(uv_timer_t *t) {
    msg_consumer *c = t->data;
    msg_worker *mw = &c->m->workers[0];
    if (mw->m->js_stopping || !c->bound || c->lag_asking || !svc__nats_connected(mw->nc)) return;
    char subject[SVC_MSG_MAX_SUBJECT];
    snprintf(subject, sizeof subject, JS_API "CONSUMER.INFO.%s.%s", c->stream, c->durable);
    if (svc__rpc_request(mw, subject, NULL, 0, NULL, 0, SVC_MSG_JS_API_TIMEOUT_MS, lag_done, c) == SVC_OK)
        c->lag_asking = 1;
}

static void bound_done(int err, svc_nats_msg *reply, void *ud) {
    msg_consumer *c = ud;
    msg_worker *mw = &c->m->workers[0];
    c->binding = 0;
    int code = 0;
    char desc[160] = "";
    json_t *doc = NULL;
    int rc = err == SVC_OK ? js_reply(reply, &code, desc, sizeof desc, &doc) : err;
    if (rc == SVC_OK) pending_from_info(c, doc); /* the answer is the consumer's info */
    svc__nats_msg_free(reply);
    if (mw->m->js_stopping) return;
    if (rc != SVC_OK) {
        if (svc__msg_log_allowed(c->m, DROP_REASONS + 1))
            svc_warn("nats: cannot create consumer %s on stream %s: %s%s%s (JetStream error %d); retrying",
                     c->durable, c->stream, svc_status_str(rc), desc[0] ? ": " : "", desc, code);
        /* The stream may be missing (a server that lost its store). */
        if (rc == SVC_EIO) atomic_store(&c->m->streams_dirty, 1);
        retry_later(mw, c);
        return;
    }
    c->bound = 1;
    c->errors = 0;
    if (!c->lag_init) {
        uv_timer_init(&mw->w->loop, &c->lag_timer);
        c->lag_timer.data = c;
        c->lag_init = 1;
        uv_timer_start(&c->lag_timer, on_lag_timer, SVC_MSG_JS_LAG_MS, SVC_MSG_JS_LAG_MS);
    }
    svc_info("nats: consuming %s from stream %s as %s (ack wait %d ms)", c->subject, c->stream, c->durable,
             c->ack_wait_ms);
    fetch(mw, c);
}

static void bind_consumer(msg_worker *mw, msg_consumer *c) {
    if (c->binding || mw->m->js_stopping) return;
    char subject[SVC_MSG_MAX_SUBJECT];
    snprintf(subject, sizeof subject, JS_API "CONSUMER.DURABLE.CREATE.%s.%s", c->stream, c->durable);
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "stream_name"), svc_jw_str(&w, c->stream);
    svc_jw_key(&w, "config");
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "durable_name"), svc_jw_str(&w, c->durable);
    svc_jw_key(&w, "deliver_policy"), svc_jw_str(&w, "all");
    svc_jw_key(&w, "ack_policy"), svc_jw_str(&w, "explicit");
    svc_jw_key(&w, "ack_wait"), svc_jw_i64(&w, (int64_t)c->ack_wait_ms * 1000000LL);
    svc_jw_key(&w, "max_deliver"), svc_jw_i64(&w, -1);
    svc_jw_key(&w, "filter_subject"), svc_jw_str(&w, c->subject);
    svc_jw_key(&w, "replay_policy"), svc_jw_str(&w, "instant");
    svc_jw_key(&w, "max_ack_pending"), svc_jw_i64(&w, JS_MAX_ACK_PENDING(c));
    svc_jw_obj_end(&w);
    svc_jw_obj_end(&w);
    int rc = b.oom ? SVC_ENOMEM
                   : svc__rpc_request(mw, subject, NULL, 0, b.data, b.len, SVC_MSG_JS_API_TIMEOUT_MS, bound_done, c);
    svc_buf_free(&b);
    if (rc == SVC_OK) c->binding = 1;
    else retry_later(mw, c);
}

static void fetch(msg_worker *mw, msg_consumer *c) {
    if (mw->m->js_stopping || !c->bound || c->fetching || !svc__nats_connected(mw->nc)) return;
    int room = c->max_inflight - c->inflight;
    int most = c->batch ? SVC_MSG_STREAM_BATCH : SVC_MSG_FETCH_BATCH;
    /* Half a batch of room at least: the settles of those in flight make
     * more, rather than a pull for each. */
    if (room < most / 2) return;
    int batch = room < most ? room : most;
    char subject[SVC_MSG_MAX_SUBJECT], reply[sizeof mw->inbox + 32], body[96];
    snprintf(subject, sizeof subject, JS_API "CONSUMER.MSG.NEXT.%s.%s", c->stream, c->durable);
    snprintf(reply, sizeof reply, "%s.F.%d.%u", mw->inbox, c->slot, c->pull + 1);
    int n = snprintf(body, sizeof body, "{\"batch\":%d,\"expires\":%lld}", batch,
                     (long long)SVC_MSG_FETCH_WAIT_MS * 1000000LL);
    if (svc__msg_pub(mw, subject, reply, NULL, 0, body, (size_t)n) != SVC_OK) {
        retry_later(mw, c);
        return;
    }
    c->pull++;
    c->fetching = 1;
    c->fetch_left = batch;
    ensure_timer(mw, c);
    uv_timer_start(&c->timer, on_retry, SVC_MSG_FETCH_WAIT_MS - SVC_MSG_FETCH_RENEW_MS, 0);
}

/* Deliveries of c's pulls: on their own subscription, because they keep
 * the subject they were published on. */
static void on_fetched(svc_nats *nc, svc_nats_msg *msg, void *ud) {
    msg_consumer *c = ud;
    msg_worker *mw = svc__nats_ud(nc);
    if (!msg->reply || strncmp(msg->reply, "$JS.ACK.", 8) != 0) {
        /* A status: the pull ended (408 expired, 404 nothing, 409 the
         * consumer is gone or too many pulls wait); of a pull replaced
         * since (its number is not the newest), it says nothing. */
        const char *dot = strrchr(msg->subject, '.');
        char *end = NULL;
        bool newest = dot && dot[1] >= '0' && dot[1] <= '9' && strtoul(dot + 1, &end, 10) == c->pull && !*end;
        int status = msg->status;
        svc__nats_msg_free(msg);
        if (!newest) return;
        c->fetching = 0;
        if (c->timer_init) uv_timer_stop(&c->timer);
        if (status == 408 || status == 404 || status == 100) {
            c->errors = 0;
            fetch(mw, c);
        } else {
            /* After a few other answers, bind again from scratch. */
            if (++c->errors >= 3) {
                c->bound = 0;
                c->errors = 0;
                atomic_store(&c->m->streams_dirty, 1);
            }
            retry_later(mw, c);
        }
        return;
    }
    if (mw->m->js_stopping) {
        /* Redelivered at once to another instance rather than after ack_wait. */
        svc__msg_pub(mw, msg->reply, NULL, NULL, 0, "-NAK", 4);
        svc__nats_msg_free(msg);
        return;
    }
    if (c->inflight >= JS_MAX_ACK_PENDING(c)) {
        /* Deliveries nobody pulled (a peer publishing to our inbox): they
         * would queue without bound behind an offloaded handler. Not acked:
         * a real one comes again after ack_wait. */
        svc__msg_drop(mw->m, DROP_OVERFLOW, "message on %s dropped: more in flight than %s may have",
                      msg->subject, c->durable);
        svc__nats_msg_free(msg);
        return;
    }
    c->inflight++;
    int64_t pending = svc__js_pending(msg->reply, c->stream, c->durable);
    if (pending >= 0) svc_gauge_set(c->s_pending, (double)pending);
    if (--c->fetch_left <= 0) {
        c->fetching = 0;
        if (c->timer_init) uv_timer_stop(&c->timer);
    }
    svc__stream_handle(mw, c, msg);
    fetch(mw, c);
}

void svc__stream_settle(msg_worker *mw, msg_consumer *c, const svc_nats_msg *msg, int rc, const char *msg_id,
                        const char *subject) {
    svc_msg *m = mw->m;
    char nak[64];
    const char *ack;
    if (rc == SVC_OK) {
        ack = "+ACK";
    } else if (rc == SVC_EAGAIN) {
        snprintf(nak, sizeof nak, "-NAK {\"delay\":%lld}", (long long)SVC_MSG_NAK_DELAY_MS * 1000000LL);
        ack = nak;
    } else {
        if (svc__msg_log_allowed(m, DROP_MALFORMED))
            svc_warn("nats: %s on %s refused by its handler (%s); terminated, never redelivered",
                     msg_id ? msg_id : "message", subject, svc_status_str(rc));
        ack = "+TERM";
    }
    int s = msg->reply ? svc__msg_pub(mw, msg->reply, NULL, NULL, 0, ack, strlen(ack)) : SVC_EINVAL;
    if (s != SVC_OK && svc__msg_log_allowed(m, DROP_REASONS))
        svc_warn("nats: cannot acknowledge a message of %s: %s (it will be redelivered)", c->durable,
                 svc_status_str(s));
    c->inflight--;
    if (mw->id == 0) fetch(mw, c);
}

void svc__js_subscribe(msg_worker *mw) {
    for (msg_consumer *c = mw->m->consumers; c; c = c->next) {
        char subject[sizeof mw->inbox + 16];
        snprintf(subject, sizeof subject, "%s.F.%d.*", mw->inbox, c->slot);
        if (!svc__nats_sub(mw->nc, subject, NULL, on_fetched, c))
            svc_error("nats: cannot subscribe for consumer %s (out of memory)", c->durable);
    }
}

void svc__js_on_connected(msg_worker *mw) {
    svc_msg *m = mw->m;
    if (!atomic_load(&m->started) || mw->m->js_stopping) return;
    /* Pulls made on the lost connection are gone with it. */
    for (msg_consumer *c = m->consumers; c; c = c->next) {
        c->bound = 0;
        c->fetching = 0;
        if (c->timer_init) uv_timer_stop(&c->timer);
    }
    if (!m->streams && !m->consumers) return;
    declare_then_bind(mw);
}

void svc__js_stop(msg_worker *mw) {
    mw->m->js_stopping = 1;
    for (msg_consumer *c = mw->m->consumers; c; c = c->next) {
        if (c->timer_init) uv_timer_stop(&c->timer);
        if (c->lag_init) uv_timer_stop(&c->lag_timer);
    }
}

void svc__js_close(msg_worker *mw) {
    mw->m->js_stopping = 1;
    for (msg_consumer *c = mw->m->consumers; c; c = c->next) {
        if (c->timer_init && !uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, NULL);
        if (c->lag_init && !uv_is_closing((uv_handle_t *)&c->lag_timer))
            uv_close((uv_handle_t *)&c->lag_timer, NULL);
    }
}

int svc__js_inflight(svc_msg *m) {
    int n = 0;
    for (msg_consumer *c = m->consumers; c; c = c->next) n += c->inflight;
    return n;
}
