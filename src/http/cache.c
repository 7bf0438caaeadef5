/* The per-worker response cache; see svckit/cache.h. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "http/internal.h"
#include "svckit/cache.h"

typedef struct entry {
    char *key;
    char *body;
    size_t len;
    int64_t version;
    char etag[24];
} entry;

typedef struct cache {
    entry slot[SVC_CACHE_SLOTS];
} cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

/* Runs as each worker thread exits (a _Thread_local array would leak). */
static void cache_free(void *p) {
    cache *c = p;
    for (int i = 0; i < SVC_CACHE_SLOTS; i++) {
        free(c->slot[i].key);
        free(c->slot[i].body);
    }
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

/* If-None-Match: "*" or a list of entity tags, one of which is ours. */
static int client_has(svc_req *req, const char *etag) {
    const char *inm = svc_req_header(req, "if-none-match");
    return inm && (strcmp(inm, "*") == 0 || strstr(inm, etag) != NULL);
}

static int finish(svc_req *req, svc_res *res, const char *etag) {
    svc_res_header(res, "ETag", etag);
    svc_res_header(res, "Cache-Control", "private, no-cache");
    if (client_has(req, etag)) return svc_res_status(res, 304);
    return SVC_OK;
}

int svc_cache_serve(svc_req *req, svc_res *res, int64_t version) {
    if (!svc_req_loop(req) || version < 0) return 0;
    char *key = make_key(req);
    entry *e = key ? slot_for(key, 0) : NULL;
    if (!e || !e->key || e->version != version || strcmp(e->key, key) != 0) return 0;
    svc_res_body(res, 200, "application/json", e->body, e->len);
    finish(req, res, e->etag);
    return 1;
}

void svc_cache_store(svc_req *req, svc_res *res, int64_t version) {
    size_t len;
    const char *body = svc_res_get_body(res, &len);
    if (svc_res_get_status(res) != 200) return;
    char etag[24];
    snprintf(etag, sizeof etag, "\"%016llx\"", (unsigned long long)svc__fnv1a(body, len, SVC__FNV1A_SEED));
    char *key = make_key(req);
    entry *e = key && svc_req_loop(req) && version >= 0 && len <= SVC_CACHE_MAX_BODY ? slot_for(key, 1) : NULL;
    if (e) {
        char *k = strdup(key), *b = malloc(len ? len : 1);
        if (k && b) {
            memcpy(b, body, len);
            free(e->key);
            free(e->body);
            *e = (entry){k, b, len, version, ""};
            memcpy(e->etag, etag, sizeof etag);
        } else {
            free(k);
            free(b);
        }
    }
    finish(req, res, etag);
}
