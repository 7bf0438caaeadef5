/* Conditional requests (src/runtime/conditional.c): HTTP-dates and RFC 9110 13.2.2. */
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"
#include "../test.h"

static svc_worker worker;

static svc_req *request(const char *method, const char *const *fields, size_t n) {
    svc_req *req = svc__req_new_worker(&worker);
    if (!req) return NULL;
    req->method = method;
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

/* RFC 9110 5.6.7's example, in its three forms. */
#define SUNDAY 784111777

static int64_t parse(const char *s) {
    int64_t t;
    return svc__http_date_parse(s, &t) == SVC_OK ? t : -1;
}

TEST(http_dates_in_all_three_forms) {
    CHECK_EQ(parse("Sun, 06 Nov 1994 08:49:37 GMT"), SUNDAY);
    CHECK_EQ(parse("Sunday, 06-Nov-94 08:49:37 GMT"), SUNDAY);
    CHECK_EQ(parse("Sun Nov  6 08:49:37 1994"), SUNDAY);
    CHECK_EQ(parse("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    CHECK_EQ(parse("Tue, 29 Feb 2000 23:59:59 GMT"), 951868799);
    CHECK_EQ(parse("Fri, 31 Dec 9999 23:59:59 GMT"), 253402300799LL);
    /* rfc850's two-digit year: never more than 50 years ahead ("94" is 1994
     * until 2044, "00" is 2000). */
    CHECK_EQ(parse("Saturday, 01-Jan-00 00:00:00 GMT"), 946684800);
    const char *bad[] = {"", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 08:49:37 GMT ",
                         "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 nov 1994 08:49:37 GMT",
                         "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 29 Feb 1900 08:49:37 GMT",
                         "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:00 GMT",
                         "Sun, 06 Nov 94 08:49:37 GMT", "Sunday, 06-Nov-1994 08:49:37 GMT",
                         "Sun Nov 6 08:49:37 1994", "Xyz, 06 Nov 1994 08:49:37 GMT", "1994-11-06T08:49:37Z",
                         "Sun, 06 Nov 1994 08:49:37", "Sun, 00 Nov 1994 08:49:37 GMT"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (parse(bad[i]) != -1) test_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
}

TEST(http_date_format) {
    char d[SVC__HTTP_DATE_MAX];
    CHECK_EQ(svc__http_date(SUNDAY, d), 29);
    CHECK_STR(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK_EQ(svc__http_date(0, d), 29);
    CHECK_STR(d, "Thu, 01 Jan 1970 00:00:00 GMT");
    CHECK_EQ(svc__http_date(253402300800LL, d), 0); /* year 10000 */
    CHECK_STR(d, "");
    for (int64_t t = 0; t < 4000000000LL; t += 86399 * 37) {
        REQUIRE(svc__http_date(t, d) == 29);
        CHECK_EQ(parse(d), t);
    }
}

/* The status svc_req_preconditions answers for method and fields, with the
 * resource at ETag "p1-v1" (or none) and Last-Modified SUNDAY. */
static int eval(const char *method, const char *etag, const char *const *fields, size_t n, svc_req **keep) {
    svc_req *req = request(method, fields, n);
    if (!req) return -1;
    int st = svc_req_preconditions(req, &req->res, etag, SUNDAY);
    if (keep) *keep = req;
    else release(req);
    return st;
}
#define EVAL(method, ...)                                                                  \
    ({                                                                                     \
        const char *f_[] = {__VA_ARGS__};                                                  \
        eval(method, "\"p1-v1\"", f_, sizeof f_ / sizeof f_[0] / 2, NULL);                 \
    })

TEST(if_match_compares_strongly) {
    CHECK_EQ(eval("PUT", "\"p1-v1\"", NULL, 0, NULL), 0);
    CHECK_EQ(EVAL("PUT", "If-Match", "\"p1-v1\""), 0);
    CHECK_EQ(EVAL("PUT", "If-Match", "\"p1-v1-gzip\""), 0);
    CHECK_EQ(EVAL("PUT", "If-Match", "\"x\", \"p1-v1\""), 0);
    CHECK_EQ(EVAL("PUT", "If-Match", "\"x\"", "if-match", "\"p1-v1\""), 0);
    CHECK_EQ(EVAL("PUT", "If-Match", "*"), 0);
    CHECK_EQ(EVAL("DELETE", "If-Match", "\"p1-v2\""), 412);
    CHECK_EQ(EVAL("PUT", "If-Match", "W/\"p1-v1\""), 412);
    CHECK_EQ(EVAL("PUT", "If-Match", "p1-v1"), 412);
    CHECK_EQ(EVAL("PUT", "If-Match", "\"p1-v1"), 412);
    CHECK_EQ(EVAL("PUT", "If-Match", "\"p1\""), 412);
    CHECK_EQ(EVAL("PUT", "If-Match", "\"p1-v1-gzipx\""), 412);
    CHECK_EQ(EVAL("PUT", "If-Match", ""), 412);
    CHECK_EQ(EVAL("GET", "If-Match", "\"other\""), 412);
    /* Found by the review: a tag followed by junk matched; a member ends at
     * OWS and a comma, or it is malformed and matches nothing. */
    CHECK_EQ(EVAL("PUT", "If-Match", "\"p1-v1\"junk"), 412);
    CHECK_EQ(EVAL("PUT", "If-Match", "\"p1-v1\"\"x\""), 412);
    CHECK_EQ(EVAL("PUT", "If-Match", "*x"), 412);
    CHECK_EQ(EVAL("PUT", "If-Match", "\"p1-v1\" \t, \"x\""), 0);
    CHECK_EQ(EVAL("PUT", "If-Match", "\"p1-v1\"junk, \"p1-v1\""), 0);
    CHECK_EQ(EVAL("PUT", "If-Match", "* "), 0);
    /* No current representation: only If-Match fails, "*" included. */
    const char *star[] = {"If-Match", "*"};
    CHECK_EQ(eval("PUT", NULL, star, 1, NULL), 412);
    const char *none_star[] = {"If-None-Match", "*"};
    CHECK_EQ(eval("PUT", NULL, none_star, 1, NULL), 0);
    /* A weak current tag never matches If-Match. */
    const char *weak[] = {"If-Match", "W/\"w\""};
    CHECK_EQ(eval("PUT", "W/\"w\"", weak, 1, NULL), 412);
}

TEST(the_412_is_a_json_error) {
    const char *f[] = {"If-Match", "\"old\""};
    svc_req *req;
    REQUIRE(eval("PATCH", "\"p1-v1\"", f, 1, &req) == 412);
    size_t len;
    const char *body = svc_res_get_body(&req->res, &len);
    CHECK_EQ(svc_res_get_status(&req->res), 412);
    CHECK(strstr(body, "\"code\":\"precondition_failed\"") != NULL);
    CHECK_STR(req->res.content_type, "application/json");
    release(req);
}

TEST(if_unmodified_since) {
    CHECK_EQ(EVAL("PUT", "If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"), 0);
    CHECK_EQ(EVAL("PUT", "If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:38 GMT"), 0);
    CHECK_EQ(EVAL("PUT", "If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:36 GMT"), 412);
    CHECK_EQ(EVAL("PUT", "If-Unmodified-Since", "Sunday, 06-Nov-94 08:49:36 GMT"), 412);
    /* Ignored: not a date, or If-Match decides. */
    CHECK_EQ(EVAL("PUT", "If-Unmodified-Since", "yesterday"), 0);
    CHECK_EQ(EVAL("PUT", "If-Match", "\"p1-v1\"", "If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:36 GMT"), 0);
    CHECK_EQ(EVAL("PUT", "If-Match", "\"nope\"", "If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:38 GMT"), 412);
    /* No modification date known: ignored. */
    const char *f[] = {"If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:36 GMT"};
    svc_req *req = request("PUT", f, 1);
    REQUIRE(req);
    CHECK_EQ(svc_req_preconditions(req, &req->res, "\"p1-v1\"", -1), 0);
    release(req);
}

TEST(if_none_match_compares_weakly) {
    CHECK_EQ(EVAL("GET", "If-None-Match", "\"p1-v1\""), 304);
    CHECK_EQ(EVAL("HEAD", "If-None-Match", "W/\"p1-v1\""), 304);
    CHECK_EQ(EVAL("GET", "If-None-Match", "\"a\", W/\"p1-v1-gzip\""), 304);
    CHECK_EQ(EVAL("GET", "If-None-Match", "*"), 304);
    CHECK_EQ(EVAL("GET", "If-None-Match", "\"p1-v2\""), 0);
    CHECK_EQ(EVAL("GET", "If-None-Match", "\"p1-v1\"x"), 304); /* the tag before the junk counts */
    /* Other methods: 412. */
    CHECK_EQ(EVAL("PUT", "If-None-Match", "*"), 412);
    CHECK_EQ(EVAL("DELETE", "If-None-Match", "\"p1-v1\""), 412);
    CHECK_EQ(EVAL("PUT", "If-None-Match", "\"p1-v0\""), 0);
    /* If-Modified-Since is ignored when If-None-Match is present. */
    CHECK_EQ(EVAL("GET", "If-None-Match", "\"p1-v0\"", "If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"), 0);
    /* If-Match first. */
    CHECK_EQ(EVAL("GET", "If-Match", "\"x\"", "If-None-Match", "\"p1-v1\""), 412);
}

TEST(if_modified_since) {
    CHECK_EQ(EVAL("GET", "If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"), 304);
    CHECK_EQ(EVAL("GET", "If-Modified-Since", "Sun, 06 Nov 1994 09:00:00 GMT"), 304);
    CHECK_EQ(EVAL("GET", "If-Modified-Since", "Sun, 06 Nov 1994 08:49:36 GMT"), 0);
    CHECK_EQ(EVAL("GET", "If-Modified-Since", "garbage"), 0);
    CHECK_EQ(EVAL("PUT", "If-Modified-Since", "Sun, 06 Nov 1994 09:00:00 GMT"), 0);
}

TEST(the_304_names_what_the_client_holds) {
    const char *f[] = {"If-None-Match", "\"p1-v1\""};
    svc_req *req;
    REQUIRE(eval("GET", "\"p1-v1\"", f, 1, &req) == 304);
    CHECK_STR(svc__res_header_get(&req->res, "ETag"), "\"p1-v1\"");
    CHECK_STR(svc__res_header_get(&req->res, "Last-Modified"), "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK(svc__res_header_get(&req->res, "Vary") == NULL);
    CHECK_EQ(req->res.body.len, 0);
    release(req);
    const char *g[] = {"If-None-Match", "\"p1-v1-gzip\""};
    REQUIRE(eval("GET", "\"p1-v1\"", g, 1, &req) == 304);
    CHECK_STR(svc__res_header_get(&req->res, "ETag"), "\"p1-v1-gzip\"");
    CHECK_STR(svc__res_header_get(&req->res, "Vary"), "Accept-Encoding");
    release(req);
    /* Both held (a shared cache): the one it would get now. */
    const char *both[] = {"If-None-Match", "\"p1-v1\", \"p1-v1-gzip\""};
    req = request("GET", both, 1);
    REQUIRE(req);
    CHECK_EQ(svc__preconditions(req, &req->res, "\"p1-v1\"", SUNDAY, 1, 1), 304);
    CHECK_STR(svc__res_header_get(&req->res, "ETag"), "\"p1-v1-gzip\"");
    release(req);
    req = request("GET", both, 1);
    REQUIRE(req);
    CHECK_EQ(svc__preconditions(req, &req->res, "\"p1-v1\"", SUNDAY, 0, 1), 304);
    CHECK_STR(svc__res_header_get(&req->res, "ETag"), "\"p1-v1\"");
    CHECK_STR(svc__res_header_get(&req->res, "Vary"), "Accept-Encoding");
    release(req);
}

TEST(validators_on_a_response) {
    svc_req *req = request("GET", NULL, 0);
    REQUIRE(req);
    CHECK_EQ(svc_res_validators(&req->res, "\"p1-v2\"", SUNDAY), SVC_OK);
    CHECK_STR(svc__res_header_get(&req->res, "ETag"), "\"p1-v2\"");
    CHECK_STR(svc__res_header_get(&req->res, "Last-Modified"), "Sun, 06 Nov 1994 08:49:37 GMT");
    release(req);
    req = request("GET", NULL, 0);
    REQUIRE(req);
    CHECK_EQ(svc_res_validators(&req->res, NULL, -1), SVC_OK);
    CHECK_EQ(req->res.nheaders, 0);
    release(req);
}
