/* The response cache (src/runtime/cache.c): both forms of a body, validators, 304s. */
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"
#include "svckit/cache.h"
#include "../test.h"

static svc_app app = {.cfg.compress = 1};
static svc_worker worker = {.app = &app};

static svc_req *request(const char *path, const char *const *fields, size_t n) {
    svc_req *req = svc__req_new_worker(&worker);
    if (!req) return NULL;
    req->path = (char *)path;
    if (n) {
        req->headers = svc_arena_alloc(req->arena, n * sizeof *req->headers);
        for (size_t i = 0; i < n; i++) req->headers[i] = (svc_hdr){fields[2 * i], fields[2 * i + 1], 0};
        req->nheaders = n;
    }
    return req;
}

static void release(svc_req *req) {
    svc__req_free(req);
    svc__worker_pools_free(&worker, 1);
}

static char *json_body(size_t n) {
    char *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++) b[i] = "{\"title\":\"Classic Lipstick\",\"price\":2.99},"[i % 41];
    b[n] = '\0';
    return b;
}

/* A miss rendering len bytes at version, stored with the given validators. */
static svc_req *store(const char *path, size_t len, int64_t version, const char *etag, int64_t lm,
                      const char *const *fields, size_t n) {
    svc_req *req = request(path, fields, n);
    if (!req) return NULL;
    if (svc_cache_serve(req, &req->res, version)) {
        test_fail(__FILE__, __LINE__, "a hit where a miss was expected");
        return req;
    }
    char *b = json_body(len);
    svc_res_body(&req->res, 200, "application/json", b, len);
    free(b);
    svc_cache_store_tagged(req, &req->res, version, etag, lm);
    return req;
}

static svc_req *serve(const char *path, int64_t version, const char *const *fields, size_t n, int *hit) {
    svc_req *req = request(path, fields, n);
    if (req) *hit = svc_cache_serve(req, &req->res, version);
    return req;
}

static const char *hdr(svc_req *req, const char *name) { return svc__res_header_get(&req->res, name); }

static size_t body_len(svc_req *req) {
    size_t n;
    svc_res_get_body(&req->res, &n);
    return n;
}

/* A hit sends the entry's bytes, not a copy; an entry replaced while a
 * response holds them stays readable until that response is done (ASan
 * would see a use after free in the SAN build). */
TEST(hits_share_the_entry_which_outlives_its_replacement) {
    svc_req *first = store("/shared", 9000, 1, NULL, -1, NULL, 0);
    REQUIRE(first);
    int hit;
    svc_req *a = serve("/shared", 1, NULL, 0, &hit);
    REQUIRE(a && hit);
    svc_req *b = serve("/shared", 1, NULL, 0, &hit);
    REQUIRE(b && hit);
    const char *pa = svc_res_get_body(&a->res, NULL);
    CHECK(pa == svc_res_get_body(&b->res, NULL));
    CHECK(pa == svc_res_get_body(&first->res, NULL)); /* the miss sends it too */
    char *want = json_body(9000);
    svc_req *newer = store("/shared", 300, 2, NULL, -1, NULL, 0); /* replaces the entry */
    REQUIRE(newer);
    CHECK(memcmp(pa, want, 9000) == 0);
    free(want);
    release(newer);
    release(first);
    release(a);
    CHECK_EQ(body_len(b), 9000);
    release(b);
}

TEST(both_forms_are_kept_and_each_client_gets_its_own) {
    const char *gz[] = {"Accept-Encoding", "gzip"};
    svc_req *req = store("/list", 9000, 7, NULL, -1, gz, 1);
    REQUIRE(req);
    /* The miss itself is answered compressed, with the ETag's gzip form. */
    CHECK_STR(hdr(req, "Content-Encoding"), "gzip");
    CHECK_STR(hdr(req, "Vary"), "Accept-Encoding");
    const char *tag = hdr(req, "ETag");
    REQUIRE(tag && strlen(tag) == 23 && strstr(tag, "-gzip\""));
    char plain_tag[24];
    memcpy(plain_tag, tag, 17);
    plain_tag[17] = '"';
    plain_tag[18] = '\0';
    size_t gzlen = body_len(req);
    CHECK(gzlen < 1000);
    CHECK(req->res.coded);
    release(req);

    int hit;
    req = serve("/list", 7, NULL, 0, &hit);
    REQUIRE(req && hit);
    CHECK(hdr(req, "Content-Encoding") == NULL);
    CHECK_STR(hdr(req, "Vary"), "Accept-Encoding");
    CHECK_STR(hdr(req, "ETag"), plain_tag);
    CHECK_EQ(body_len(req), 9000);
    CHECK(req->res.coded); /* finish must not compress it again */
    release(req);

    req = serve("/list", 7, gz, 1, &hit);
    REQUIRE(req && hit);
    CHECK_STR(hdr(req, "Content-Encoding"), "gzip");
    CHECK_EQ(body_len(req), gzlen);
    release(req);

    /* 304 for either form, from a client of either kind; its ETag names what
     * the client holds. */
    const char *inm_plain_gz[] = {"Accept-Encoding", "gzip", "If-None-Match", plain_tag};
    req = serve("/list", 7, inm_plain_gz, 2, &hit);
    REQUIRE(req && hit);
    CHECK_EQ(req->res.status, 304);
    CHECK_STR(hdr(req, "ETag"), plain_tag);
    CHECK_STR(hdr(req, "Vary"), "Accept-Encoding");
    CHECK_EQ(body_len(req), 0);
    release(req);
    char gz_tag[32];
    snprintf(gz_tag, sizeof gz_tag, "%.17s-gzip\"", plain_tag);
    const char *inm_gz_plain[] = {"If-None-Match", gz_tag};
    req = serve("/list", 7, inm_gz_plain, 1, &hit);
    REQUIRE(req && hit);
    CHECK_EQ(req->res.status, 304);
    CHECK_STR(hdr(req, "ETag"), gz_tag);
    release(req);

    /* Another version is a miss. */
    req = serve("/list", 8, gz, 1, &hit);
    REQUIRE(req);
    CHECK(!hit);
    release(req);
}

/* HTTP_COMPRESS=0: the entry keeps no gzip form, hits are plain, no Vary. */
TEST(compression_switched_off_stores_and_serves_plain) {
    app.cfg.compress = 0;
    const char *gz[] = {"Accept-Encoding", "gzip"};
    svc_req *req = store("/off", 9000, 3, NULL, -1, gz, 1);
    REQUIRE(req);
    CHECK(hdr(req, "Content-Encoding") == NULL && hdr(req, "Vary") == NULL);
    CHECK_EQ(body_len(req), 9000);
    release(req);
    int hit;
    req = serve("/off", 3, gz, 1, &hit);
    REQUIRE(req && hit);
    CHECK(hdr(req, "Content-Encoding") == NULL && hdr(req, "Vary") == NULL);
    CHECK_EQ(body_len(req), 9000);
    release(req);
    app.cfg.compress = 1;
}

TEST(small_bodies_stay_plain_without_vary) {
    const char *gz[] = {"Accept-Encoding", "gzip"};
    svc_req *req = store("/one", 300, 1, NULL, -1, gz, 1);
    REQUIRE(req);
    CHECK(hdr(req, "Content-Encoding") == NULL && hdr(req, "Vary") == NULL);
    CHECK_EQ(body_len(req), 300);
    release(req);
    int hit;
    req = serve("/one", 1, gz, 1, &hit);
    REQUIRE(req && hit);
    CHECK(hdr(req, "Content-Encoding") == NULL && hdr(req, "Vary") == NULL);
    CHECK_EQ(body_len(req), 300);
    release(req);
}

TEST(caller_validators) {
    svc_req *req = store("/products/7", 300, 3, "\"p7-v2\"", 784111777, NULL, 0);
    REQUIRE(req);
    CHECK_STR(hdr(req, "ETag"), "\"p7-v2\"");
    CHECK_STR(hdr(req, "Last-Modified"), "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK_STR(hdr(req, "Cache-Control"), "private, no-cache");
    release(req);
    int hit;
    const char *ims[] = {"If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"};
    req = serve("/products/7", 3, ims, 1, &hit);
    REQUIRE(req && hit);
    CHECK_EQ(req->res.status, 304);
    CHECK_STR(hdr(req, "ETag"), "\"p7-v2\"");
    release(req);
    /* If-Match on a GET is evaluated too. */
    const char *im[] = {"If-Match", "\"p7-v1\""};
    req = serve("/products/7", 3, im, 1, &hit);
    REQUIRE(req && hit);
    CHECK_EQ(req->res.status, 412);
    release(req);
    /* A tag that is not a quoted strong tag is replaced by the body's hash. */
    const char *bad[] = {"W/\"x\"", "p7", "\"a b\"", "\"" "0123456789012345678901234567890123456789012345678901234567890123" "\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        req = store("/bad", 300, 10 + (int64_t)i, bad[i], -1, NULL, 0);
        REQUIRE(req);
        const char *t = hdr(req, "ETag");
        CHECK(t && strlen(t) == 18 && t[0] == '"');
        CHECK(hdr(req, "Last-Modified") == NULL);
        release(req);
    }
}

TEST(uncacheable_bodies_are_left_to_finish) {
    /* Larger than SVC_CACHE_MAX_BODY: not kept, answered plain with its ETag;
     * svc__res_encode then compresses it for this client. */
    const char *gz[] = {"Accept-Encoding", "gzip"};
    svc_req *req = store("/big", SVC_CACHE_MAX_BODY + 1, 1, NULL, -1, gz, 1);
    REQUIRE(req);
    CHECK(!req->res.coded);
    CHECK_EQ(body_len(req), SVC_CACHE_MAX_BODY + 1);
    const char *tag = hdr(req, "ETag");
    REQUIRE(tag);
    char plain_tag[32];
    snprintf(plain_tag, sizeof plain_tag, "%s", tag);
    svc__res_encode(req, &req->res);
    CHECK_STR(hdr(req, "Content-Encoding"), "gzip");
    const char *after = hdr(req, "ETag");
    CHECK(after && strncmp(after, plain_tag, strlen(plain_tag) - 1) == 0 && strstr(after, "-gzip\""));
    release(req);
    int hit;
    req = serve("/big", 1, gz, 1, &hit);
    REQUIRE(req);
    CHECK(!hit);
    release(req);
}
