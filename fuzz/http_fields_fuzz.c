/*
 * Fuzzes the parsers of request fields that decide a response without
 * touching the connection (src/runtime/encoding.c, src/runtime/conditional.c):
 * Accept-Encoding, the entity-tag lists of If-Match and If-None-Match, and
 * HTTP-dates. Byte 0 picks the method and the field, the rest (up to its
 * first NUL) is the field's value.
 *
 * Besides the sanitizers it checks, on every input:
 *
 *  1. Accept-Encoding: the answer is 0 or 1, and the value followed by
 *     ", gzip" (its own member, weight 1) is always accepted.
 *  2. A precondition answers 0, 304 or 412, and a 412 or 304 comes with a
 *     response; the value followed by ", <the current ETag>" always passes
 *     If-Match, and always matches If-None-Match (304 on GET, 412 on PUT).
 *  3. HTTP-date: what parses and is in the years 0..9999 formats as an
 *     IMF-fixdate that parses back to the same second; the formatted form
 *     has the fixed length of RFC 9110 5.6.7.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"

#include "fuzz_util.h"

/* Longer values add nothing the parsers have not seen at this size. */
#define FUZZ_MAX_VALUE 4096

static const char etag[] = "\"p1-v1\"";
static svc_worker worker;

static svc_req *request(const char *method, const char *name, const char *value) {
    svc_req *req = svc__req_new_worker(&worker);
    CHECK(req);
    req->method = method;
    req->head = strcmp(method, "HEAD") == 0;
    req->headers = svc_arena_alloc(req->arena, sizeof *req->headers);
    CHECK(req->headers);
    req->headers[0] = (svc_hdr){name, value, 0};
    req->nheaders = 1;
    return req;
}

static void release(svc_req *req) {
    svc__req_free(req);
    svc__worker_pools_free(&worker, 1);
}

static int accepts(const char *value) {
    svc_req *req = request("GET", "Accept-Encoding", value);
    int a = svc__accepts_gzip(req);
    release(req);
    CHECK(a == 0 || a == 1);
    return a;
}

static int precondition(const char *method, const char *name, const char *value, int64_t last_modified) {
    svc_req *req = request(method, name, value);
    int st = svc_req_preconditions(req, &req->res, etag, last_modified);
    CHECK(st == 0 || st == 304 || st == 412);
    if (st) CHECK(req->res.status == st);
    release(req);
    return st;
}

static void dates(const char *value) {
    int64_t t;
    if (svc__http_date_parse(value, &t) != SVC_OK) return;
    char out[SVC__HTTP_DATE_MAX];
    size_t n = svc__http_date(t, out);
    if (!n) return; /* outside the years an IMF-fixdate can say */
    CHECK(n == 29 && strlen(out) == n);
    int64_t back;
    CHECK(svc__http_date_parse(out, &back) == SVC_OK && back == t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > FUZZ_MAX_VALUE) return 0;
    static const char *const methods[] = {"GET", "HEAD", "PUT", "DELETE"};
    const char *method = methods[data[0] & 3];
    char *value = malloc(size + 32), *more = malloc(size + 32);
    CHECK(value && more);
    memcpy(value, data + 1, size - 1);
    value[size - 1] = '\0';

    switch ((data[0] >> 2) % 4) {
    case 0:
        accepts(value);
        snprintf(more, size + 32, "%s, gzip", value);
        CHECK(accepts(more) == 1);
        break;
    case 1:
        precondition(method, "If-Match", value, -1);
        snprintf(more, size + 32, "%s, %s", value, etag);
        CHECK(precondition(method, "If-Match", more, -1) == 0);
        break;
    case 2: {
        int read = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
        precondition(method, "If-None-Match", value, -1);
        snprintf(more, size + 32, "%s, W/%s", value, etag);
        CHECK(precondition(method, "If-None-Match", more, -1) == (read ? 304 : 412));
        break;
    }
    default:
        dates(value);
        precondition(method, "If-Unmodified-Since", value, 784111777);
        precondition(method, "If-Modified-Since", value, 784111777);
        break;
    }
    free(value);
    free(more);
    return 0;
}
