/* The per-worker response cache; see svckit/cache.h. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "runtime/internal.h"
#include "svckit/cache.h"

/*
 * An entry keeps both forms of its body: the gzip form is made once, when the
 * entry is stored, and costs a tenth of the plain one for JSON (1,156 bytes
 * for the 9,169 of a products page); keeping only it would mean inflating it
 * for every client that does not take gzip, a cost per request where a hit
 * should cost nothing per byte. Both are shared (svc__shared): a hit's
 * response takes a reference, not a copy, and an entry replaced while a
 * response still holds its body frees it when that response is done.
 */
typedef struct entry {
    char *key;
    svc__shared *body;
    svc__shared *gz;                  /* the gzip form; NULL: the body stays plain */
    size_t len;                       /* the plain body's */
    int64_t version;
    int64_t last_modified;            /* seconds; -1: none */
    char etag[SVC_CACHE_MAX_ETAG + 1];
    char etag_gz[SVC_CACHE_MAX_ETAG + sizeof SVC_ETAG_GZIP_SUFFIX];
    char last_modified_text[SVC__HTTP_DATE_MAX];
} entry;

typedef struct cache {
    entry slot[SVC_CACHE_SLOTS];
} cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void entry_free(entry *e) {
    free(e->key);
    svc__shared_unref(e->body);
    svc__shared_unref(e->gz);
}

/* Runs as each worker thread exits (a _Thread_local array would leak). */
static void cache_free(void *p) {
    cache *c = p;
    for (int i = 0; i < SVC_CACHE_SLOTS; i++) entry_free(&c->slot[i]);
    free(c);
}

static void cache_init(void) { pthread_key_create(&cache_key, cache_free); }

/* The path is percent-decoded and may hold a '?' of its own: its length keeps
 * "/c/a%3Fb" apart from "/c/a" with the query "b". */
static char *make_key(svc_req *req) {
    /* "%zu:%s?%s" of the path's length, the path and the query, formatted
     * once per request (a miss asks again to store) and by hand. */
    if (req->cache_key) return req->cache_key;
    const char *path = svc_req_path(req), *query = svc_req_query_string(req);
    size_t pl = strlen(path), ql = strlen(query);
    char num[21];
    size_t nl = svc__fmt_u64(num, pl);
    char *k = svc_arena_alloc(svc_req_arena(req), nl + 1 + pl + 1 + ql + 1);
    if (!k) return NULL;
    char *o = k;
    memcpy(o, num, nl), o += nl;
    *o++ = ':';
    memcpy(o, path, pl), o += pl;
    *o++ = '?';
    memcpy(o, query, ql + 1);
    return req->cache_key = k;
}

static entry *slot_for(const char *key, int create) {
    pthread_once(&cache_once, cache_init);
    cache *c = pthread_getspecific(cache_key);
    if (!c) {
        if (!create || !(c = calloc(1, sizeof *c))) return NULL;
        pthread_setspecific(cache_key, c);
    }
    return &c->slot[svc__fnv1a(key, strlen(key), SVC__FNV1A_SEED) % SVC_CACHE_SLOTS];
}

/* A strong entity tag with its quotes, short enough to keep. */
static int etag_ok(const char *t) {
    size_t n = t ? strlen(t) : 0;
    if (n < 2 || n > SVC_CACHE_MAX_ETAG || t[0] != '"' || t[n - 1] != '"') return 0;
    for (size_t i = 1; i + 1 < n; i++)
        if ((unsigned char)t[i] < 0x21 || t[i] == '"' || t[i] == 0x7f) return 0;
    return 1;
}

/* The validators of e, from the caller's or a hash of the body. */
static void set_validators(entry *e, const char *body, const char *etag, int64_t last_modified) {
    if (etag_ok(etag)) snprintf(e->etag, sizeof e->etag, "%s", etag);
    else snprintf(e->etag, sizeof e->etag, "\"%016llx\"", (unsigned long long)svc__fnv1a(body, e->len, SVC__FNV1A_SEED));
    size_t n = strlen(e->etag);
    snprintf(e->etag_gz, sizeof e->etag_gz, "%.*s" SVC_ETAG_GZIP_SUFFIX "\"", (int)(n - 1), e->etag);
    e->last_modified = last_modified >= 0 && svc__http_date(last_modified, e->last_modified_text) ? last_modified : -1;
}

/*
 * The answer for e: the conditions' 304 or 412, or a 200 in the form this
 * client takes. kept: e is in the cache, with its gzip form if it has one,
 * and res takes the form it sends (a reference); otherwise (an entry that
 * could not be kept) the plain body is in res and svc__res_encode
 * compresses it as for any response.
 */
static void respond(svc_req *req, svc_res *res, const entry *e, int kept) {
    res->answered = 0; /* the cache's answer replaces the handler's */
    int varies = e->len >= SVC_GZIP_MIN_BYTES && req->app->cfg.compress;
    int accepts = varies && svc__accepts_gzip(req);
    int gz = accepts && (!kept || e->gz);
    int st = svc__preconditions(req, res, e->etag, e->last_modified, gz, varies);
    if (st == 412) return;
    if (st == 0) {
        if (kept) {
            svc__res_shared(res, 200, "application/json", gz ? e->gz : e->body);
            if (gz) {
                svc_res_header(res, "Content-Encoding", "gzip");
                svc__compressed(req->app, e->len, e->gz->len);
            }
            if (varies) svc_res_header(res, "Vary", "Accept-Encoding");
            res->coded = 1;
        }
        svc_res_header(res, "ETag", kept && gz ? e->etag_gz : e->etag);
        if (e->last_modified >= 0) svc_res_header(res, "Last-Modified", e->last_modified_text);
    }
    svc_res_header(res, "Cache-Control", "private, no-cache");
}

int svc_cache_serve(svc_req *req, svc_res *res, int64_t version) {
    if (!svc_req_loop(req) || version < 0) return 0;
    char *key = make_key(req);
    entry *e = key ? slot_for(key, 0) : NULL;
    if (!e || !e->key || e->version != version || strcmp(e->key, key) != 0) return 0;
    respond(req, res, e, 1);
    return 1;
}

void svc_cache_store_tagged(svc_req *req, svc_res *res, int64_t version, const char *etag, int64_t last_modified) {
    if (svc_res_get_status(res) != 200) return;
    entry n = {.version = version};
    const char *body = svc_res_get_body(res, &n.len);
    char *key = make_key(req);
    entry *e = key && svc_req_loop(req) && version >= 0 && n.len <= SVC_CACHE_MAX_BODY ? slot_for(key, 1) : NULL;
    set_validators(&n, body, etag, last_modified);
    if (e) {
        svc_buf gz = {0};
        if (n.len >= SVC_GZIP_MIN_BYTES && req->app->cfg.compress && svc__gzip(body, n.len, &gz) == SVC_OK)
            n.gz = svc__shared_new(gz.data, gz.len); /* NULL: it stays plain */
        svc_buf_free(&gz);
        n.key = strdup(key);
        n.body = svc__shared_new(body, n.len);
        if (!n.key || !n.body) {
            entry_free(&n);
            n.body = n.gz = NULL;
            e = NULL;
        }
    }
    if (!e) {
        respond(req, res, &n, 0);
        return;
    }
    entry_free(e);
    *e = n;
    respond(req, res, e, 1);
}

void svc_cache_store(svc_req *req, svc_res *res, int64_t version) {
    svc_cache_store_tagged(req, res, version, NULL, -1);
}
