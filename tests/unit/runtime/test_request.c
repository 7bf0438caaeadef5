/* Request header indexing and lookup (src/runtime/request.c). */
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"
#include "../test.h"

static svc_worker worker;

/* A request whose raw buffer holds "url\0name\0value\0..." as the parser
 * callbacks leave it, with the offsets they record. */
static svc_req *request_with(const char *const *fields, size_t n) {
    svc_req *req = svc__req_new_worker(&worker);
    if (!req) return NULL;
    svc_buf_append(&req->raw, "/x", 2);
    req->url_len = 2;
    for (size_t i = 0; i < 2 * n; i++) {
        svc_buf_putc(&req->raw, '\0');
        req->hdr_off[req->nhdr_parts++] = req->raw.len;
        svc_buf_puts(&req->raw, fields[i]);
    }
    svc_buf_putc(&req->raw, '\0');
    return req;
}

static void release(svc_req *req) {
    svc__req_free(req);
    svc__worker_pools_free(&worker, 1);
}

TEST(core_fields_are_indexed_once_first_value_wins) {
    const char *f[] = {"Host", "h", "x-REQUEST-id", "abc  ", "Traceparent", "00-tp", "X-Request-Id", "second",
                       "Expect", "100-continue", "traceparent", "later"};
    svc_req *req = request_with(f, 6);
    REQUIRE(req);
    REQUIRE(svc__req_headers_done(req) == SVC_OK);
    CHECK_EQ(req->nheaders, 6);
    CHECK_EQ(req->host_count, 1);
    CHECK_STR(req->hdr_request_id, "abc"); /* trailing whitespace trimmed */
    CHECK_STR(req->hdr_traceparent, "00-tp");
    CHECK_STR(req->hdr_expect, "100-continue");
    /* The same answers as a lookup by name. */
    CHECK(req->hdr_request_id == svc_req_header(req, "X-Request-Id"));
    CHECK(req->hdr_traceparent == svc_req_header(req, "traceparent"));
    CHECK(req->hdr_expect == svc_req_header(req, "expect"));
    release(req);
}

TEST(lookups_match_case_insensitively_and_only_whole_names) {
    const char *f[] = {"Host", "h", "Accept", "a", "Accept-Language", "en", "X", "", "Cookie", "c=1"};
    svc_req *req = request_with(f, 5);
    REQUIRE(req);
    REQUIRE(svc__req_headers_done(req) == SVC_OK);
    CHECK_STR(svc_req_header(req, "ACCEPT"), "a");
    CHECK_STR(svc_req_header(req, "accept-language"), "en");
    CHECK_STR(svc_req_header(req, "x"), "");
    CHECK(svc_req_header(req, "Accep") == NULL);
    CHECK(svc_req_header(req, "Accept-") == NULL);
    CHECK(svc_req_header(req, "") == NULL);
    CHECK(req->hdr_request_id == NULL && req->hdr_traceparent == NULL && req->hdr_expect == NULL);
    CHECK_STR(svc_req_cookie(req, "c"), "1");
    for (size_t i = 0; i < req->nheaders; i++) CHECK_EQ(req->headers[i].name_len, strlen(req->headers[i].name));
    release(req);
}

TEST(fields_of_unknown_name_length_are_still_found) {
    /* Other transports may leave name_len 0: the lookup then compares. */
    svc_req *req = svc__req_new_worker(&worker);
    REQUIRE(req);
    svc_hdr h[2] = {{"Svc-Client", "10.0.0.1", 0}, {"X-Request-Id", "r1", 0}};
    req->headers = h;
    req->nheaders = 2;
    CHECK_STR(svc_req_header(req, "svc-client"), "10.0.0.1");
    CHECK_STR(svc_req_header(req, "x-request-id"), "r1");
    svc__req_note_header(req, "X-Request-Id", 12, "r1");
    svc__req_note_header(req, "x-request-id", 12, "r2");
    CHECK_STR(req->hdr_request_id, "r1");
    req->headers = NULL;
    req->nheaders = 0;
    release(req);
}

TEST(request_buffers_come_back_to_the_pool) {
    const char *f[] = {"Host", "h"};
    svc_req *req = request_with(f, 1);
    REQUIRE(req);
    svc_buf_puts(&req->res.body, "{}");
    svc__req_free(req);
    CHECK_EQ(worker.nbuf_pool, 2); /* raw and the response body; the empty request body had none */
    for (int i = 0; i < worker.nbuf_pool; i++) CHECK_EQ(worker.buf_pool[i].len, 0);
    req = svc__req_new_worker(&worker);
    REQUIRE(req);
    CHECK_EQ(worker.nbuf_pool, 0);
    CHECK(req->raw.cap > 0 && req->raw.len == 0);
    CHECK(req->res.body.cap > 0 && req->res.body.len == 0);
    release(req);
}
