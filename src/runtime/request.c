/* Requests: creation from the worker's arena pool, and the accessors handlers use. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"

/* A request and its first allocations fit the first block. */
#define REQUEST_ARENA_BLOCK (8 * 1024)

svc_req *svc__req_new_worker(svc_worker *w) {
    svc_arena *a = w->narena_pool ? w->arena_pool[--w->narena_pool] : svc_arena_new(REQUEST_ARENA_BLOCK);
    if (!a) return NULL;
    /* Zeroed but for the header offsets, which are written before read. */
    svc_req *req = svc_arena_alloc(a, sizeof *req);
    if (req) memset(req, 0, SVC_REQ_ZEROED);
    if (!req) {
        svc_arena_free(a);
        return NULL;
    }
    req->arena = a;
    req->w = w;
    req->app = w->app;
    req->method = "GET";
    req->path = "/";
    req->query = "";
    req->start_ns = svc_now_ns();
    svc__res_init(&req->res, req);
    /* Every request fills these two: start them with pooled memory. */
    svc__worker_buf_take(w, &req->raw);
    svc__worker_buf_take(w, &req->res.body);
    return req;
}

void svc__worker_buf_take(svc_worker *w, svc_buf *b) {
    if (b->cap || w->nbuf_pool <= 0) return; /* empty, or closed (-1) */
    *b = w->buf_pool[--w->nbuf_pool];
}

void svc__worker_buf_give(svc_worker *w, svc_buf *b) {
    if (b->data && !b->oom && b->cap <= SVC_BUF_POOL_MAX_CAP && w->nbuf_pool >= 0 && w->nbuf_pool < SVC_BUF_POOL) {
        svc_buf_reset(b);
        w->buf_pool[w->nbuf_pool++] = *b;
        memset(b, 0, sizeof *b);
    } else {
        svc_buf_free(b);
    }
}

void svc__worker_buf_pool_free(svc_worker *w) {
    while (w->nbuf_pool > 0) svc_buf_free(&w->buf_pool[--w->nbuf_pool]);
    w->nbuf_pool = -1; /* closed: what is given back later is freed */
}

void svc__worker_pools_free(svc_worker *w, int reopen) {
    for (int i = 0; i < w->narena_pool; i++) svc_arena_free(w->arena_pool[i]);
    w->narena_pool = 0;
    svc_buf_free(&w->logline);
    svc__worker_buf_pool_free(w);
    if (reopen) w->nbuf_pool = 0;
}

void svc__req_done(svc_req *req) {
    if (!req->abandoned) {
        svc__req_free(req);
        return;
    }
    req->transport_data = NULL;
    req->client_gone = 1;
}

static void values_free(svc_req *req);

void svc__req_free(svc_req *req) {
    if (!req) return;
    svc_worker *w = req->w;
    if (req->body_reserved) atomic_fetch_sub(&req->app->body_bytes, (long long)req->body_reserved);
    if (req->json) json_decref(req->json);
    values_free(req);
    svc__compose_release(req);
    svc__worker_buf_give(w, &req->res.body);
    svc__shared_unref(req->res.shared);
    svc__worker_buf_give(w, &req->raw);
    svc__worker_buf_give(w, &req->body);
    svc_arena *a = req->arena;
    /* Arenas that grew for a big request are freed, not pooled. */
    if (w->narena_pool < SVC_ARENA_POOL && svc_arena_bytes(a) <= 2 * REQUEST_ARENA_BLOCK) {
        svc_arena_reset(a);
        w->arena_pool[w->narena_pool++] = a;
    } else {
        svc_arena_free(a);
    }
}

static void trim_trailing_ows(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
}

void svc__req_note_header(svc_req *req, const char *name, size_t nlen, const char *value) {
    const char **slot = NULL;
    switch (nlen) {
    case 6: if (strcasecmp(name, "expect") == 0) slot = &req->hdr_expect; break;
    case 10: if (strcasecmp(name, "tracestate") == 0) slot = &req->hdr_tracestate; break;
    case 11: if (strcasecmp(name, "traceparent") == 0) slot = &req->hdr_traceparent; break;
    case 12: if (strcasecmp(name, "x-request-id") == 0) slot = &req->hdr_request_id; break;
    default: break;
    }
    if (slot && !*slot) *slot = value;
}

/* A Host value (RFC 9110 7.2): uri-host [ ":" port ], uri-host an IP-literal
 * ("[...]") or a reg-name (unreserved, pct-encoded, sub-delims), possibly
 * empty. RFC 9112 3.2 has a server answer 400 to anything else, which a
 * proxy in front may read otherwise ("a b", "a@b", "a/b"). */
static int alnum(char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }

static int host_ok(const char *v) {
    const char *p = v;
    if (*p == '[') {
        p++;
        while (*p && *p != ']' && (alnum(*p) || *p == ':' || *p == '.')) p++;
        if (*p++ != ']') return 0;
    } else {
        while (*p && (alnum(*p) || strchr("-._~%!$&'()*+,;=", *p))) p++;
    }
    if (*p == ':')
        for (p++; *p >= '0' && *p <= '9'; p++) {}
    return *p == '\0';
}

/* Turns the offsets gathered while parsing into name/value pointers, and
 * notes the fields that framing depends on. */
int svc__req_headers_done(svc_req *req) {
    size_t n = req->nhdr_parts / 2;
    req->headers = n ? svc_arena_alloc(req->arena, n * sizeof *req->headers) : NULL;
    if (n && !req->headers) return SVC_ENOMEM;
    char *base = req->raw.data;
    for (size_t i = 0; i < n; i++) {
        char *name = base + req->hdr_off[2 * i];
        char *value = base + req->hdr_off[2 * i + 1];
        /* The name ends with the NUL written before its value. */
        size_t nlen = req->hdr_off[2 * i + 1] - req->hdr_off[2 * i] - 1;
        trim_trailing_ows(value);
        req->headers[i] = (svc_hdr){name, value, nlen};
        if (nlen == 4 && strcasecmp(name, "host") == 0) {
            if (req->host_count < 3) req->host_count++;
            if (!host_ok(value)) req->host_bad = 1;
        } else if (nlen == 17 && strcasecmp(name, "transfer-encoding") == 0) {
            if (req->te_count < 3) req->te_count++;
            if (strcasecmp(value, "chunked") != 0) req->te_other = 1;
        } else {
            svc__req_note_header(req, name, nlen, value);
        }
    }
    req->nheaders = n;
    return SVC_OK;
}

const char *svc_req_method(const svc_req *req) { return req->method; }
const char *svc_req_path(const svc_req *req) { return req->path; }
const char *svc_req_route(const svc_req *req) { return req->route ? req->route->pattern : NULL; }
unsigned svc_req_route_flags(const svc_req *req) { return req->route ? req->route->flags : 0; }

const char *svc_req_param(const svc_req *req, const char *name) {
    for (size_t i = 0; i < req->match.nparams; i++)
        if (strcmp(req->match.params[i].name, name) == 0) return req->match.params[i].value;
    return NULL;
}

int svc_req_param_i64(const svc_req *req, const char *name, int64_t *out) {
    const char *v = svc_req_param(req, name);
    if (!v) return SVC_ENOTFOUND;
    return svc_parse_i64(v, out) == SVC_OK ? SVC_OK : SVC_EINVAL;
}

const char *svc_req_query(const svc_req *req, const char *name) {
    if (!req->query || !*req->query) return NULL;
    return svc__query_get(req->query, name, req->arena);
}

const char *svc_req_query_all(const svc_req *req, const char *name) {
    if (!req->query || !*req->query) return NULL;
    return svc__query_get_all(req->query, name, req->arena);
}

const char *svc_req_query_string(const svc_req *req) { return req->query ? req->query : ""; }

const char *svc_req_header(const svc_req *req, const char *name) {
    size_t nlen = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const svc_hdr *h = &req->headers[i];
        /* Names of another length cannot match: skip them without a compare. */
        if (h->name_len && h->name_len != nlen) continue;
        if (strcasecmp(h->name, name) == 0) return h->value;
    }
    return NULL;
}

int svc_req_header_at(const svc_req *req, size_t i, const char **name, const char **value) {
    if (i >= req->nheaders) return SVC_ENOTFOUND;
    *name = req->headers[i].name;
    *value = req->headers[i].value;
    return SVC_OK;
}

/* Cookie: a=1; b=2 (RFC 6265 §5.4; several Cookie fields are searched in order). */
const char *svc_req_cookie(const svc_req *req, const char *name) {
    size_t nlen = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        if (strcasecmp(req->headers[i].name, "cookie") != 0) continue;
        const char *p = req->headers[i].value;
        while (*p) {
            while (*p == ' ' || *p == '\t' || *p == ';') p++;
            const char *eq = strchr(p, '=');
            const char *end = strchr(p, ';');
            if (!end) end = p + strlen(p);
            if (eq && eq < end && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0) {
                const char *v = eq + 1;
                size_t vlen = (size_t)(end - v);
                while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
                if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
                    v++;
                    vlen -= 2;
                }
                return svc_arena_strndup(req->arena, v, vlen);
            }
            p = end;
        }
    }
    return NULL;
}

const char *svc_req_body(const svc_req *req, size_t *len) {
    if (len) *len = req->body.len;
    return req->body.len ? req->body.data : "";
}

static int is_json_type(const char *ct) {
    /* application/json, application/problem+json, with optional parameters. */
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t')) n--;
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0) return 1;
    return n > 17 && strncasecmp(ct, "application/", 12) == 0 && strncasecmp(ct + n - 5, "+json", 5) == 0;
}

json_t *svc_req_json(svc_req *req, svc_res *res) {
    if (req->json) return req->json;
    const char *ct = svc_req_header(req, "content-type");
    if (!ct || !is_json_type(ct)) {
        svc_res_error(res, 415, "unsupported_media_type", "request body must be application/json");
        return NULL;
    }
    if (req->body.len == 0) {
        svc_res_error(res, 400, "bad_request", "request body must be a JSON document");
        return NULL;
    }
    svc_json_limits lim = {.max_bytes = req->app->cfg.max_body_bytes};
    char err[160];
    json_t *v = NULL;
    if (svc_json_parse(req->body.data, req->body.len, &lim, &v, err, sizeof err) != SVC_OK) {
        svc_res_error(res, 400, "invalid_json", "%s", err);
        return NULL;
    }
    req->json = v;
    return v;
}

const char *svc_req_id(const svc_req *req) { return req->id ? req->id : ""; }
const char *svc_req_trace_id(const svc_req *req) { return req->trace_id; }
const svc_trace_ctx *svc_req_trace(const svc_req *req) { return req ? &req->tctx : NULL; }
const char *svc_req_peer(const svc_req *req) { return req->peer ? req->peer : ""; }
svc_arena *svc_req_arena(svc_req *req) { return req->arena; }
svc_app *svc_req_app(const svc_req *req) { return req->app; }
void *svc_req_app_data(const svc_req *req) { return req->app->data; }
uv_loop_t *svc_req_loop(const svc_req *req) { return req->offloaded ? NULL : &req->w->loop; }
void svc__req_set_claims(svc_req *req, const void *claims) { req->claims = claims; }
const void *svc__req_claims(const svc_req *req) { return req->claims; }

void *svc_req_route_data(const svc_req *req) { return req->route ? req->route->data : NULL; }

/* ---- typed per-request values ------------------------------------------------ */

struct svc_req_value {
    const svc_key *key;
    void *value;
    void (*free_fn)(void *);
    svc_req_value *next;
};

int svc_req_set(svc_req *req, const svc_key *key, void *value, void (*free_fn)(void *)) {
    if (!req || !key) return SVC_EINVAL;
    svc_req_value *v = req->values;
    while (v && v->key != key) v = v->next;
    if (!v) {
        v = svc_arena_calloc(req->arena, sizeof *v);
        if (!v) return SVC_ENOMEM;
        v->key = key;
        v->next = req->values;
        req->values = v;
    } else if (v->free_fn && v->value && v->value != value) {
        v->free_fn(v->value);
    }
    v->value = value;
    v->free_fn = free_fn;
    return SVC_OK;
}

void *svc_req_get(const svc_req *req, const svc_key *key) {
    for (const svc_req_value *v = req ? req->values : NULL; v; v = v->next)
        if (v->key == key) return v->value;
    return NULL;
}

static void values_free(svc_req *req) {
    for (svc_req_value *v = req->values; v; v = v->next)
        if (v->free_fn && v->value) v->free_fn(v->value);
    req->values = NULL;
}
