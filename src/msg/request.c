/*
 * NATS request-reply: a request message becomes an svc_req that goes through
 * the same dispatch as HTTP (routing, middleware such as auth, handler,
 * after-hooks, metrics, access log), and its final response becomes the reply
 * message (svc_req_ops.finish). Only the framing differs: the method, path
 * and query come from Svc-* headers instead of a request line (msg.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "msg/internal.h"

static int fail(svc_req *req, int status, const char *code, const char *msg) {
    req->error_status = status;
    req->error_code = code;
    req->error_msg = msg;
    return status;
}

int svc__msg_req_fill(svc_req *req, const svc__msg_in *in, const svc__msg_limits *lim) {
    const char *method = NULL, *path = NULL, *query = NULL, *client = NULL;
    /* Until the method is known, an error is answered as the subject's. */
    req->method = in->route_method ? in->route_method : "GET";
    req->path = "/";
    req->query = "";
    if (in->nhdrs > lim->max_headers) return fail(req, 431, "headers_too_large", "too many header fields");
    if (in->nhdrs) {
        req->headers = svc_arena_alloc(req->arena, in->nhdrs * sizeof *req->headers);
        if (!req->headers) return fail(req, 503, "unavailable", "out of memory");
    }
    size_t bytes = 0;
    for (size_t i = 0; i < in->nhdrs; i++) {
        const char *name = in->names[i], *value = in->values[i];
        if (!name || !value) return fail(req, 400, "bad_request", "malformed header field");
        size_t nl = strlen(name), vl = strlen(value);
        bytes += nl + vl + 4;
        if (bytes > lim->max_header_bytes) return fail(req, 431, "headers_too_large", "header section too large");
        if (!svc__nats_header_name_ok(name) || !svc__msg_header_value_ok(value))
            return fail(req, 400, "bad_request", "malformed header field");
        const char **slot = NULL;
        if (strcasecmp(name, "svc-method") == 0) slot = &method;
        else if (strcasecmp(name, "svc-path") == 0) slot = &path;
        else if (strcasecmp(name, "svc-query") == 0) slot = &query;
        else if (strcasecmp(name, "svc-client") == 0) slot = &client;
        if (slot) {
            if (*slot) return fail(req, 400, "bad_request", "a Svc-* header appears twice");
            *slot = value;
        }
        req->headers[req->nheaders++] = (svc_hdr){name, value, nl};
        svc__req_note_header(req, name, nl, value);
    }
    if (in->len > lim->max_body) return fail(req, 413, "payload_too_large", "request body too large");

    if (method) {
        if (svc__msg_method_check(method) != SVC_OK) return fail(req, 400, "bad_request", "malformed Svc-Method");
    } else if (in->route_method) {
        method = in->route_method;
    } else {
        return fail(req, 400, "bad_request", "missing Svc-Method header");
    }
    if (in->route_method && strcmp(method, in->route_method) != 0 &&
        !(strcmp(method, "HEAD") == 0 && strcmp(in->route_method, "GET") == 0))
        return fail(req, 405, "method_not_allowed", "this subject serves one method only");
    req->method = svc_arena_strdup(req->arena, method);
    if (!req->method) {
        req->method = "GET";
        return fail(req, 503, "unavailable", "out of memory");
    }
    req->head = strcmp(method, "HEAD") == 0;

    if (!path) path = in->default_path;
    if (!path) return fail(req, 400, "bad_request", "missing Svc-Path header");
    size_t plen = strlen(path);
    if (svc__msg_path_check(path, plen, lim->max_header_bytes) != SVC_OK)
        return fail(req, 400, "bad_request", "malformed Svc-Path: expected a normalised, percent-encoded path");
    size_t qlen = query ? strlen(query) : 0;
    if (query && svc__msg_query_check(query, qlen, lim->max_header_bytes) != SVC_OK)
        return fail(req, 400, "bad_request", "malformed Svc-Query");
    if (client && svc__msg_client_ok(client)) req->peer = svc_arena_strdup(req->arena, client);

    svc_buf_append(&req->raw, path, plen);
    if (qlen) {
        svc_buf_putc(&req->raw, '?');
        svc_buf_append(&req->raw, query, qlen);
    }
    req->url_len = req->raw.len;
    if (in->len) svc_buf_append(&req->body, in->data, in->len);
    if (req->raw.oom || req->body.oom) return fail(req, 503, "unavailable", "out of memory");
    return 0;
}

/* ---- the transport ---------------------------------------------------------- */

typedef struct nats_ctx {
    msg_worker *mw;
    msg_sub *sub;
    svc_nats_msg *msg;
} nats_ctx;

static void nats_finish(svc_req *req);
static const svc_req_ops nats_transport = {.name = "nats", .deadline_header = "Svc-Deadline", .finish = nats_finish};

/* Bytes of an error description in Nats-Service-Error. */
#define SERVICE_ERROR_MAX 256
/* A JSON error body longer than this is not parsed for its message (the
 * reason phrase stands in). */
#define SERVICE_ERROR_BODY_MAX (64 * 1024)

/* desc as a header value: control bytes become spaces, cut at a character
 * boundary to fit out (SERVICE_ERROR_MAX + 1). */
static void service_error_text(const char *desc, char *out) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)desc; *p && n < SERVICE_ERROR_MAX; p++)
        out[n++] = (*p < 0x20 || *p == 0x7f) ? ' ' : (char)*p;
    /* A multi-byte character cut in half: drop its lead and continuation bytes. */
    if (desc[n]) {
        size_t end = n;
        while (end > 0 && ((unsigned char)out[end - 1] & 0xC0) == 0x80) end--;
        if (end > 0 && (unsigned char)out[end - 1] >= 0xC0) n = end - 1;
    }
    out[n] = '\0';
}

/* Publishes a reply: status, instance, request id, content type, for an
 * error (status >= 400) the NATS services error headers (ADR-32: the
 * description desc and the status as code, which micro-aware clients read),
 * the given extra headers, body. Returns svc__msg_reply's status. */
static int publish_reply(msg_worker *mw, const char *reply, int status, const char *rid, const char *ctype,
                         const char *desc, const svc_hdr *hdrs, size_t nhdrs, const char *body, size_t len) {
    svc_buf h = {0};
    char st[8];
    snprintf(st, sizeof st, "%d", status);
    svc__nats_hdr_begin(&h);
    svc__nats_hdr_add(&h, "Svc-Status", st);
    svc__nats_hdr_add(&h, "Svc-Instance", mw->m->instance);
    if (rid && *rid) svc__nats_hdr_add(&h, "X-Request-Id", rid);
    if (ctype && len) svc__nats_hdr_add(&h, "Content-Type", ctype);
    if (status >= 400) {
        char text[SERVICE_ERROR_MAX + 1];
        service_error_text(desc && *desc ? desc : svc__status_reason(status), text);
        svc__nats_hdr_add(&h, "Nats-Service-Error", text);
        svc__nats_hdr_add(&h, "Nats-Service-Error-Code", st);
    }
    /* A header the handler set with a CR or LF in it is left out. */
    for (size_t i = 0; i < nhdrs; i++) svc__nats_hdr_add(&h, hdrs[i].name, hdrs[i].value);
    svc__nats_hdr_end(&h);
    int rc = h.oom ? SVC_ENOMEM : svc__msg_reply(mw, reply, h.data, h.len, body, len);
    svc_buf_free(&h);
    return rc;
}

static void error_body(svc_buf *b, const char *code, const char *message) {
    svc_jw w;
    svc_jw_init(&w, b);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "error");
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "code");
    svc_jw_str(&w, code);
    svc_jw_key(&w, "message");
    svc_jw_str(&w, message);
    svc_jw_obj_end(&w);
    svc_jw_obj_end(&w);
}

void svc__msg_reply_error(msg_worker *mw, const svc_nats_msg *req, int status, const char *code,
                          const char *message) {
    if (!req->reply) return;
    svc_buf b = {0};
    error_body(&b, code, message);
    /* Refused for the shutdown: the handler never ran, so the caller may
     * send the request to another instance, whatever its method. */
    svc_hdr draining = {"Svc-Draining", "1", 12};
    int leaving = status == 503 && atomic_load(&mw->m->draining);
    if (!b.oom)
        publish_reply(mw, req->reply, status, NULL, "application/json", message, leaving ? &draining : NULL,
                      leaving ? 1 : 0, b.data, b.len);
    svc_buf_free(&b);
}

/* The message of an error response: "message" of svckit's JSON error body,
 * else the status's reason phrase. Into the request's arena. */
static const char *error_description(svc_req *req, int status, const char *body, size_t len) {
    const char *desc = svc__status_reason(status);
    const char *ct = req->res.content_type;
    if (!len || len > SERVICE_ERROR_BODY_MAX || !ct || strncmp(ct, "application/json", 16) != 0) return desc;
    svc_json_limits lim = {.max_bytes = len, .max_depth = 8};
    json_t *doc = NULL;
    if (svc_json_parse(body, len, &lim, &doc, NULL, 0) != SVC_OK) return desc;
    const char *m = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    if (m && *m) {
        const char *copy = svc_arena_strdup(req->arena, m);
        if (copy) desc = copy;
    }
    json_decref(doc);
    return desc;
}

static int status_has_body(int status) { return status != 204 && status != 304; }

static void nats_finish(svc_req *req) {
    nats_ctx *x = req->transport_data;
    msg_worker *mw = x->mw;
    svc_msg *m = mw->m;
    svc_res *res = &req->res;
    int status = res->status ? res->status : 500;
    size_t full;
    const char *body = svc_res_get_body(res, &full), *whole = body;
    size_t len = full;
    if (req->head || !status_has_body(status)) len = 0;

    size_t maxp = mw->nc ? svc__nats_max_payload(mw->nc) : SVC_NATS_DEFAULT_MAX_PAYLOAD;
    svc_buf err = {0};
    if (len + 4096 > maxp) {
        /* The reply would not fit in one NATS message: say so instead of
         * letting the caller time out. */
        error_body(&err, "response_too_large", "response too large for NATS; use HTTP");
        status = 502;
        body = err.data ? err.data : "";
        len = err.len;
        svc__msg_drop(m, DROP_MALFORMED, "reply to %s too large (%zu bytes)", req->path, full);
    }
    int replaced = err.len > 0;
    const char *desc = NULL;
    if (replaced) desc = "response too large for NATS; use HTTP";
    else if (status >= 400) desc = error_description(req, status, whole, full);
    int rc = publish_reply(mw, x->msg->reply, status, req->id, replaced ? "application/json" : res->content_type,
                           desc, replaced ? NULL : res->headers, replaced ? 0 : res->nheaders, body, len);
    svc_buf_free(&err);
    if (rc != SVC_OK && svc__msg_log_allowed(m, DROP_REASONS))
        svc_warn("nats: reply to %s %s not sent: %s", req->method, req->path, svc_status_str(rc));

    msg_endpoint *ep = x->sub->ep;
    if (ep && !ep->route) {
        atomic_fetch_add(&ep->requests, 1);
        atomic_fetch_add(&ep->nats_requests, 1);
        atomic_fetch_add(&ep->time_ns, (long long)(svc_now_ns() - req->start_ns));
        if (status >= 500) {
            atomic_fetch_add(&ep->errors, 1);
            atomic_store(&ep->last_error, status);
        }
    }
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    const char *labels[] = {m->app->name, svc__req_metric_route(req)->pattern, svc__metric_method(req), code};
    svc_counter_add(svc_metric_with(m->m_nats_requests, labels), 1);

    atomic_fetch_sub(&x->sub->queued, 1);
    atomic_fetch_sub(&x->sub->queued_bytes, (long long)x->msg->wire_bytes);
    svc__nats_msg_free(x->msg);
    svc__req_done(req);
    mw->inflight--;
    svc__msg_worker_done(mw);
}

void svc__msg_handle_request(msg_worker *mw, msg_sub *s, svc_nats_msg *msg) {
    svc_msg *m = mw->m;
    svc_app *app = m->app;
    const char *dl = svc__nats_msg_header(msg, "Svc-Deadline");
    if (dl && svc__msg_deadline_passed(dl, svc_wall_ms())) {
        svc__msg_drop(m, DROP_EXPIRED, "request on %s dropped: its Svc-Deadline passed", msg->subject);
        goto drop;
    }
    svc_req *req = svc__req_new_worker(mw->w);
    if (!req) {
        svc__msg_reply_error(mw, msg, 503, "unavailable", "out of memory");
        goto drop;
    }
    nats_ctx *x = svc_arena_alloc(req->arena, sizeof *x);
    if (!x) {
        svc__req_free(req);
        svc__msg_reply_error(mw, msg, 503, "unavailable", "out of memory");
        goto drop;
    }
    *x = (nats_ctx){mw, s, msg};
    req->transport = &nats_transport;
    req->transport_data = x;
    mw->inflight++;

    const svc_config *cfg = &app->cfg;
    /* One more pair than allowed is enough for the fill to refuse. */
    size_t n = msg->nhdrs;
    if (n > (size_t)cfg->max_headers + 1) n = (size_t)cfg->max_headers + 1;
    svc__msg_in in = {
        .names = msg->names,
        .values = msg->values,
        .nhdrs = n,
        .data = msg->data,
        .len = msg->len,
        .route_method = s->kind == SUB_ROUTE ? s->ep->route->method : NULL,
        .default_path = s->default_path,
    };
    svc__msg_limits lim = {
        .max_headers = (size_t)cfg->max_headers,
        .max_header_bytes = cfg->max_header_bytes,
        .max_body = cfg->max_body_bytes < SVC_MSG_MAX_PAYLOAD ? cfg->max_body_bytes : SVC_MSG_MAX_PAYLOAD,
    };
    if (msg->status < 0) in.nhdrs = 0;
    int st = svc__msg_req_fill(req, &in, &lim);
    if (msg->status < 0) st = fail(req, 400, "bad_request", "malformed NATS header block");
    /* A route's subject serves that route only: NATS permissions granted per
     * subject must mean what they say. Dispatch checks it when it routes. */
    if (st == 0 && s->kind == SUB_ROUTE) req->want_route = s->ep->route;
    svc__dispatch(req);
    return;
drop:
    atomic_fetch_sub(&s->queued, 1);
    atomic_fetch_sub(&s->queued_bytes, (long long)msg->wire_bytes);
    svc__nats_msg_free(msg);
}

/* Runs after every request, HTTP or NATS: per-route counts for $SRV.STATS. */
void svc__msg_after_hook(svc_req *req, svc_res *res, void *ud) {
    svc_msg *m = ud;
    if (!req->route) return;
    for (int i = 0; i < m->nendpoints; i++) {
        msg_endpoint *ep = &m->endpoints[i];
        if (ep->route != req->route) continue;
        atomic_fetch_add(&ep->requests, 1);
        if (req->transport == &nats_transport) atomic_fetch_add(&ep->nats_requests, 1);
        atomic_fetch_add(&ep->time_ns, (long long)(svc_now_ns() - req->start_ns));
        if (res->status >= 500) {
            atomic_fetch_add(&ep->errors, 1);
            atomic_store(&ep->last_error, res->status);
        }
        return;
    }
}
