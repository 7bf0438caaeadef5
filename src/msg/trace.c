/*
 * The span query over NATS (docs/observability.md): worker 0 of every
 * instance answers
 *
 *   svckit.trace                          every instance of every service
 *   svckit.trace.<service>                every instance of that service
 *   svckit.trace.<service>.<instance>     that instance
 *
 * A request is an empty payload (the newest SVC_TRACE_QUERY_DEFAULT spans) or
 * a JSON object {"trace_id": "<32 hex>", "limit": 1..SVC_TRACE_QUERY_MAX,
 * "slowest": true}; the reply is {"service","instance","spans":[...]}, newest
 * first (longest first for slowest, which takes server spans only), or
 * an error reply as any NATS request's (svc__msg_reply_error: Svc-Status 400
 * and {"error":{"code":"bad_request","message"}}). Bounded both ways: the
 * query's size and depth by its parser, the reply by limit.
 */
#include <stdio.h>
#include <string.h>

#include "msg/internal.h"
#include "obs/internal.h"

void svc__trace_on_msg(svc_nats *nc, svc_nats_msg *msg, void *ud) {
    msg_sub *s = ud;
    svc_msg *m = s->m;
    msg_worker *mw = svc__nats_ud(nc);
    if (!msg->reply) {
        svc__msg_drop(m, DROP_NO_REPLY, "trace query on %s without a reply subject", msg->subject);
        svc__nats_msg_free(msg);
        return;
    }
    svc_trace_query q;
    char err[160] = "";
    if (svc__trace_query_parse(msg->data, msg->len, &q, err, sizeof err) != SVC_OK) {
        svc__msg_drop(m, DROP_MALFORMED, "trace query on %s refused: %s", msg->subject, err);
        svc__msg_reply_error(mw, msg, 400, "bad_request", err);
        svc__nats_msg_free(msg);
        return;
    }
    svc_buf b = {0};
    svc__trace_query(&q, &b);
    if (!b.oom) svc__msg_pub(mw, msg->reply, NULL, NULL, 0, b.data, b.len);
    else svc__msg_reply_error(mw, msg, 503, "unavailable", "out of memory");
    svc_buf_free(&b);
    svc__nats_msg_free(msg);
}

int svc__msg_producer_begin(svc_msg *m, svc_span *span, const char *subject, svc_buf *h) {
    const svc_trace_ctx *parent = svc__trace_current();
    span->flags = 0;
    if (!h->len) svc__nats_hdr_begin(h);
    svc__nats_hdr_add(h, SVC_MSG_SOURCE_HEADER, m->app->name);
    if (!parent) return 0;
    char name[SVC_TRACE_NAME_MAX], tp[SVC_TRACEPARENT_LEN + 1];
    snprintf(name, sizeof name, "publish %s", subject);
    svc_span_begin(span, parent, SVC_SPAN_PRODUCER, name);
    span->detail_is = SVC_SPAN_DETAIL_SUBJECT;
    svc_span_set(span->detail, sizeof span->detail, subject);
    svc_trace_ctx ctx = svc_span_ctx(span);
    svc__traceparent_format(tp, &ctx);
    svc__nats_hdr_add(h, "traceparent", tp);
    return 1;
}

void svc__msg_producer_end(svc_span *span, int rc) {
    if (!(span->flags & SVC_TRACE_SAMPLED)) return;
    span->error = rc != SVC_OK;
    if (rc != SVC_OK) svc_span_set(span->code, sizeof span->code, svc_status_str(rc));
    svc_span_end(span);
}

int svc__trace_subscribe(svc_msg *m) {
    char subject[SVC_MSG_MAX_SUBJECT];
    int rc = SVC_OK;
    svc__trace_set_instance(m->instance);
    for (int i = 0; i < 3; i++) {
        if (i == 0) snprintf(subject, sizeof subject, "%s", SVC_MSG_TRACE_PREFIX);
        else if (i == 1) snprintf(subject, sizeof subject, "%s.%.64s", SVC_MSG_TRACE_PREFIX, m->app->name);
        else snprintf(subject, sizeof subject, "%s.%.64s.%s", SVC_MSG_TRACE_PREFIX, m->app->name, m->instance);
        /* Worker 0 only: one answer per instance. */
        if (!svc__msg_add_sub(m, SUB_TRACE, subject, NULL, 0)) rc = SVC_ENOMEM;
    }
    return rc;
}
