/* Responses: what handlers write. Their framing on the wire is the transport's
 * (src/http/serialize.c, src/msg/request.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"

void svc__res_init(svc_res *res, svc_req *req) {
    memset(res, 0, sizeof *res);
    res->req = req;
}

svc__shared *svc__shared_new(const void *data, size_t len) {
    svc__shared *s = malloc(sizeof *s + (len ? len : 1));
    if (!s) return NULL;
    atomic_init(&s->refs, 1);
    s->len = len;
    if (len) memcpy(s->data, data, len);
    return s;
}

void svc__shared_unref(svc__shared *s) {
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) free(s);
}

/* Every body starts empty: the pooled buffer emptied, a shared one let go. */
static void body_reset(svc_res *res) {
    svc_buf_reset(&res->body);
    svc__shared_unref(res->shared);
    res->shared = NULL;
}

svc_req *svc_res_req(svc_res *res) { return res->req; }

const char *svc__status_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
    }
}

static int valid_status(int status) { return status >= 200 && status <= 599; }

static int header_text_ok(const char *s) {
    for (; *s; s++)
        if (*s == '\r' || *s == '\n') return 0;
    return 1;
}

/* Writers copy what they are given: the content type too, checked like any
 * header value (it may come from another service, through the gateway). */
static int set_content_type(svc_res *res, const char *content_type) {
    if (!content_type) {
        res->content_type = NULL;
        return SVC_OK;
    }
    if (!header_text_ok(content_type)) return SVC_EINVAL;
    const char *ct = svc_arena_strdup(res->req->arena, content_type);
    if (!ct) return SVC_ENOMEM;
    res->content_type = ct;
    return SVC_OK;
}

int svc_res_header(svc_res *res, const char *name, const char *value) {
    if (!name || !value || !*name || !header_text_ok(name) || !header_text_ok(value) || strchr(name, ':'))
        return SVC_EINVAL;
    if (res->nheaders == res->cap_headers) {
        size_t cap = res->cap_headers ? res->cap_headers * 2 : 8;
        svc_hdr *h = svc_arena_alloc(res->req->arena, cap * sizeof *h);
        if (!h) return SVC_ENOMEM;
        if (res->nheaders) memcpy(h, res->headers, res->nheaders * sizeof *h);
        res->headers = h;
        res->cap_headers = cap;
    }
    const char *n = svc_arena_strdup(res->req->arena, name);
    const char *v = svc_arena_strdup(res->req->arena, value);
    if (!n || !v) return SVC_ENOMEM;
    res->headers[res->nheaders++] = (svc_hdr){n, v, 0};
    return SVC_OK;
}

/*
 * A contract error of the code that answers (dispatch.c's too): one log
 * line naming the route, a count, and a 500 when the request finishes.
 */
void svc__res_contract_error(svc_res *res, const char *what) {
    svc_req *req = res->req;
    if (!res->contract) {
        svc_error("%s %s: %s", req->method ? req->method : "?",
                  req->route ? req->route->pattern : (req->path ? req->path : "?"), what);
        if (req->app) svc_counter_add(req->app->s_contract_errors, 1);
    }
    res->contract = 1;
}

/* Every answer starts here: a response has one. A body being built with
 * svc_res_jw is no answer yet: an error may replace it. */
static int answer_begin(svc_res *res, int status) {
    /* Answered 504 at its deadline while the handler held it (compose.c):
     * a late answer is dropped, quietly (the 504 was logged). */
    if (res->req->abandoned) return SVC_ECLOSED;
    if (res->answered) {
        svc__res_contract_error(res, "a response answered twice");
        return SVC_EINVAL;
    }
    if (!valid_status(status)) {
        svc__res_contract_error(res, "an answer with an invalid status");
        return SVC_EINVAL;
    }
    res->answered = 1;
    return SVC_OK;
}

/* A whole body written at once (svc_res_body, svc_res_printf): begin checks
 * and sets the status and type and empties the body, which the caller then
 * fills; end marks the response complete, or out of memory. */
static int body_begin(svc_res *res, int status, const char *content_type) {
    if (answer_begin(res, status) != SVC_OK) return SVC_EINVAL;
    int rc = set_content_type(res, content_type);
    if (rc == SVC_EINVAL) svc__res_contract_error(res, "an answer with an invalid Content-Type");
    if (rc == SVC_ENOMEM) res->oom = 1;
    if (rc != SVC_OK) return rc;
    res->status = status;
    res->jw_used = 0;
    body_reset(res);
    return SVC_OK;
}

static void body_end(svc_res *res) {
    res->has_body = 1;
    if (res->body.oom) res->oom = 1;
}

svc_outcome svc_res_body(svc_res *res, int status, const char *content_type, const void *body, size_t len) {
    if (body_begin(res, status, content_type) != SVC_OK) return SVC_DONE;
    svc_buf_append(&res->body, body, len);
    body_end(res);
    return SVC_DONE;
}

svc_outcome svc__res_shared(svc_res *res, int status, const char *content_type, svc__shared *s) {
    if (body_begin(res, status, content_type) != SVC_OK) return SVC_DONE;
    atomic_fetch_add(&s->refs, 1);
    res->shared = s;
    body_end(res);
    return SVC_DONE;
}

svc_outcome svc_res_printf(svc_res *res, int status, const char *content_type, const char *fmt, ...) {
    if (body_begin(res, status, content_type) != SVC_OK) return SVC_DONE;
    va_list ap;
    va_start(ap, fmt);
    svc_buf_vprintf(&res->body, fmt, ap);
    va_end(ap);
    body_end(res);
    return SVC_DONE;
}

svc_outcome svc_res_json(svc_res *res, int status, const json_t *json) {
    if (answer_begin(res, status) != SVC_OK) return SVC_DONE;
    svc_jw *w = svc_res_jw(res, status);
    svc_jw_value(w, json);
    return SVC_DONE; /* a failed writer is a 500 at finish */
}

svc_jw *svc_res_jw(svc_res *res, int status) {
    res->status = valid_status(status) ? status : 500;
    res->content_type = "application/json";
    body_reset(res);
    svc_jw_init(&res->jw, &res->body);
    res->jw_used = 1;
    res->has_body = 1;
    return &res->jw;
}

int svc__res_set_error(svc_res *res, int status, const char *code, const char *msg) {
    svc_jw *w = svc_res_jw(res, status);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "error");
    svc_jw_obj_begin(w);
    svc_jw_key(w, "code");
    svc_jw_str(w, code);
    svc_jw_key(w, "message");
    svc_jw_str(w, msg);
    svc_jw_obj_end(w);
    svc_jw_obj_end(w);
    return svc_jw_ok(w);
}

svc_outcome svc_res_error(svc_res *res, int status, const char *code, const char *fmt, ...) {
    if (answer_begin(res, status) != SVC_OK) return SVC_DONE;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    svc__res_set_error(res, status, code, msg);
    return SVC_DONE;
}

svc_outcome svc_res_status(svc_res *res, int status) {
    if (answer_begin(res, status) != SVC_OK) return SVC_DONE;
    res->status = status;
    res->jw_used = 0;
    body_reset(res);
    res->has_body = 1; /* a complete, empty response */
    res->content_type = NULL;
    return SVC_DONE;
}

int svc_res_get_status(const svc_res *res) { return res->status; }

const char *svc_res_get_body(const svc_res *res, size_t *len) {
    if (res->shared) {
        if (len) *len = res->shared->len;
        return res->shared->data;
    }
    if (len) *len = res->body.len;
    return res->body.len ? res->body.data : "";
}

/* ---- streaming ------------------------------------------------------------ */

int svc_res_stream_start(svc_res *res, int status, const char *content_type) {
    svc_req *req = res->req;
    if (answer_begin(res, status) != SVC_OK) return SVC_EINVAL;
    if (req->client_gone || !req->transport || !req->transport->stream_start) return SVC_ECLOSED;
    int rc = set_content_type(res, content_type);
    if (rc != SVC_OK) return rc;
    res->status = status;
    res->streaming = 1;
    res->has_body = 1;
    /* HTTP/1.0 has no chunked coding: the body ends when the connection does. */
    res->stream_chunked = req->http_minor >= 1;
    if (!res->stream_chunked) req->keep_alive = 0;
    body_reset(res);
    return req->transport->stream_start(req);
}

int svc_res_stream_write(svc_res *res, const void *data, size_t len) {
    svc_req *req = res->req;
    if (!res->streaming) return SVC_EINVAL;
    if (req->client_gone || !req->transport || !req->transport->stream_write) return SVC_ECLOSED;
    if (len == 0 || req->head) return SVC_OK;
    int rc = req->transport->stream_write(req, data, len);
    if (rc == SVC_OK) res->streamed += len;
    return rc;
}

int svc_res_stream_end(svc_res *res) {
    if (!res->streaming) return SVC_EINVAL;
    svc_res_finish(res);
    return SVC_OK;
}

void svc_res_finish(svc_res *res) {
    if (res->finished) {
        /* The handler lets go of a request answered at its deadline. */
        if (res->req->abandoned && !res->req->transport_data) svc__req_free(res->req);
        return;
    }
    svc__request_finish(res->req);
}
