/* What crosses the gateway: header allow-lists, target re-encoding, idempotency. */
#include "../../../services/gateway/forward.c"
#include "../test.h"

TEST(request_headers_allow_list) {
    CHECK(gw_forward_request_header("Authorization"));
    CHECK(gw_forward_request_header("cookie"));
    CHECK(gw_forward_request_header("CONTENT-TYPE"));
    CHECK(gw_forward_request_header("If-None-Match"));
    /* Conditional requests and content coding reach the service, which
     * evaluates them (and compresses once, in its cache). */
    CHECK(gw_forward_request_header("if-match"));
    CHECK(gw_forward_request_header("If-Unmodified-Since"));
    CHECK(gw_forward_request_header("If-Modified-Since"));
    CHECK(gw_forward_request_header("Accept-Encoding"));
    /* A client's retry of POST /orders names its first attempt. */
    CHECK(gw_forward_request_header("idempotency-key"));
    CHECK(!gw_forward_request_header("Svc-Client"));
    CHECK(!gw_forward_request_header("svc-deadline"));
    CHECK(!gw_forward_request_header("Svc-Method"));
    CHECK(!gw_forward_request_header("X-Forwarded-For"));
    CHECK(!gw_forward_request_header("X-Real-IP"));
    CHECK(!gw_forward_request_header("Forwarded"));
    CHECK(!gw_forward_request_header("X-Request-Id")); /* sent by svc_rpc_call from the request */
    CHECK(!gw_forward_request_header("traceparent"));
    CHECK(!gw_forward_request_header("Host"));
    CHECK(!gw_forward_request_header(NULL));
}

TEST(response_headers_allow_list) {
    CHECK(gw_forward_response_header("Set-Cookie"));
    CHECK(gw_forward_response_header("etag"));
    CHECK(gw_forward_response_header("Location"));
    CHECK(gw_forward_response_header("WWW-Authenticate"));
    CHECK(gw_forward_response_header("Allow"));
    CHECK(gw_forward_response_header("Retry-After"));
    CHECK(gw_forward_response_header("Last-Modified"));
    CHECK(gw_forward_response_header("content-encoding"));
    CHECK(gw_forward_response_header("Vary"));
    CHECK(!gw_forward_response_header("Svc-Status"));
    CHECK(!gw_forward_response_header("Svc-Instance"));
    CHECK(!gw_forward_response_header("X-Request-Id")); /* the core writes the gateway's own */
    CHECK(!gw_forward_response_header("Content-Length"));
    CHECK(!gw_forward_response_header("Connection"));
}

TEST(idempotent_methods) {
    const char *none[] = {NULL};
    CHECK(gw_may_run_twice("GET", none));
    CHECK(gw_may_run_twice("HEAD", none));
    CHECK(gw_may_run_twice("PUT", none));
    CHECK(gw_may_run_twice("DELETE", NULL));
    CHECK(gw_may_run_twice("OPTIONS", none));
    CHECK(!gw_may_run_twice("POST", none));
    CHECK(!gw_may_run_twice("PATCH", none));
    CHECK(!gw_may_run_twice("get", none));
}

/* Found by the review: a PUT with If-Match retried after a timeout (the
 * first attempt committed) answered 412 for the write that landed. */
TEST(conditional_writes_are_not_run_twice) {
    const char *cond[] = {"Authorization: Bearer x", "If-Match: \"p1-v1\"", NULL};
    const char *ius[] = {"if-unmodified-since: Sun, 06 Nov 1994 08:49:37 GMT", NULL};
    const char *plain[] = {"Authorization: Bearer x", "Content-Type: application/json", NULL};
    CHECK(!gw_may_run_twice("PUT", cond));
    CHECK(!gw_may_run_twice("DELETE", ius));
    CHECK(gw_may_run_twice("PUT", plain));
    /* A conditional read runs twice harmlessly. */
    CHECK(gw_may_run_twice("GET", cond));
    CHECK(gw_may_run_twice("HEAD", ius));
}

TEST(target_encoding) {
    svc_arena *a = svc_arena_new(0);
    REQUIRE(a);
    CHECK_STR(gw_target_encode(a, "/products/7", ""), "/products/7");
    CHECK_STR(gw_target_encode(a, "/products", "limit=5&skip=10"), "/products?limit=5&skip=10");
    CHECK_STR(gw_target_encode(a, "/products/a.b", NULL), "/products/a.b");
    CHECK_STR(gw_target_encode(a, "/products/*", ""), "/products/*");
    CHECK_STR(gw_target_encode(a, "/products/>", ""), "/products/%3E");
    CHECK_STR(gw_target_encode(a, "/a b/%/?#", ""), "/a%20b/%25/%3F%23");
    CHECK_STR(gw_target_encode(a, "/caf\xc3\xa9", ""), "/caf%C3%A9");
    CHECK_STR(gw_target_encode(a, "/", "q=caf\xc3\xa9 x%20y"), "/?q=caf%C3%A9%20x%20y");
    CHECK_STR(gw_target_encode(a, "/x/", ""), "/x/");
    svc_arena_free(a);
}
