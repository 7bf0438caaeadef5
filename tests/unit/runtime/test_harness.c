/* The in-process harness (svckit/test.h, src/runtime/harness.c): requests take
 * dispatch's path (routing, hooks, offload, async, after-hooks, auth) and
 * come back as status, headers and body. */
#include <stdlib.h>
#include <string.h>

#include "svckit.h"
#include "svckit/test.h"
#include "../test.h"

static svc_outcome hello(svc_req *req, svc_res *res) {
    const char *name = svc_req_query(req, "name");
    json_t *j = json_pack("{s:s}", "hello", name ? name : "world");
    svc_outcome rc = svc_res_json(res, 200, j);
    json_decref(j);
    return rc;
}

static svc_outcome echo(svc_req *req, svc_res *res) {
    size_t len;
    const char *body = svc_req_body(req, &len);
    const char *ct = svc_req_header(req, "content-type");
    return svc_res_body(res, 201, ct ? ct : "application/octet-stream", body, len);
}

/* Offloaded: runs on the thread pool, where svc_req_loop is NULL. */
static svc_outcome offloaded(svc_req *req, svc_res *res) {
    return svc_res_printf(res, 200, "text/plain", "loop=%s", svc_req_loop(req) ? "yes" : "no");
}

/* Async: answers from a timer on the request's loop. */
static void later(uv_timer_t *t) {
    svc_res *res = t->data;
    svc_res_printf(res, 202, "text/plain", "later");
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
    svc_res_finish(res);
}

static svc_outcome async_handler(svc_req *req, svc_res *res) {
    uv_timer_t *t = malloc(sizeof *t);
    if (!t) return svc_res_error(res, 503, "unavailable", "out of memory");
    uv_timer_init(svc_req_loop(req), t);
    t->data = res;
    uv_timer_start(t, later, 1, 0);
    return SVC_ASYNC;
}

/* Says it will answer, arranges nothing. */
static svc_outcome never(svc_req *req, svc_res *res) {
    (void)req;
    (void)res;
    return SVC_ASYNC;
}

static svc_outcome refuse_teapots(svc_req *req, svc_res *res, void *ud) {
    (void)ud;
    if (svc_req_header(req, "x-teapot")) return svc_res_error(res, 418, "teapot", "short and stout");
    return SVC_NEXT;
}

static void stamp(svc_req *req, svc_res *res, void *ud) {
    (void)req;
    svc_res_header(res, "X-Stamp", ud);
}

static int started, stopped;
static int on_start(svc_app *app, void *ud) {
    (void)app;
    (void)ud;
    started++;
    return SVC_OK;
}
static void on_stop(svc_app *app, void *ud) {
    (void)app;
    (void)ud;
    stopped++;
}

static svc_test *make(void) {
    setenv("LOG_LEVEL", "error", 1);
    setenv("NATS_URL", "none", 1);
    /* /me checks tokens: the library has no default key source. */
    setenv("JWT_SECRET", "0123456789abcdef0123456789abcdef-harness", 1);
    svc_app *app = svc_app_new("harness", 0, NULL);
    svc_app_get(app, "/hello", hello, 0);
    svc_app_route(app, "POST", "/echo", echo, 0);
    svc_app_get(app, "/offloaded", offloaded, SVC_OFFLOAD);
    svc_app_get(app, "/async", async_handler, 0);
    svc_app_get(app, "/never", never, 0);
    svc_app_get(app, "/me", hello, SVC_AUTH_USER);
    svc_app_use(app, refuse_teapots, stamp, "stamped");
    svc_app_on_start(app, on_start, NULL);
    svc_app_on_stop(app, on_stop, NULL);
    return svc_test_new(app);
}

TEST(get_answers_json_through_hooks) {
    svc_test *t = make();
    REQUIRE(t);
    CHECK_EQ(started, 1);
    svc_test_res *r = svc_test_request(t, "GET", "/hello?name=ada", NULL, NULL, 0);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 200);
    CHECK_STR(svc_test_res_header(r, "content-type"), "application/json");
    CHECK_STR(svc_test_res_header(r, "X-Stamp"), "stamped");
    CHECK(svc_test_res_header(r, "X-Request-Id") != NULL);
    json_t *j = svc_test_res_json(r);
    CHECK_STR(json_string_value(json_object_get(j, "hello")), "ada");
    svc_test_res_free(r);
    svc_test_free(t);
    CHECK_EQ(stopped, 1);
}

TEST(routing_errors_are_the_servers) {
    svc_test *t = make();
    REQUIRE(t);
    svc_test_res *r = svc_test_request(t, "GET", "/nope", NULL, NULL, 0);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 404);
    CHECK(strstr(svc_test_res_body(r, NULL), "\"not_found\"") != NULL);
    svc_test_res_free(r);
    r = svc_test_request(t, "DELETE", "/hello", NULL, NULL, 0);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 405);
    CHECK(svc_test_res_header(r, "Allow") != NULL);
    svc_test_res_free(r);
    r = svc_test_request(t, "GET", "no-slash", NULL, NULL, 0);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 400);
    svc_test_res_free(r);
    /* Builtins answer too. */
    r = svc_test_request(t, "GET", "/healthz", NULL, NULL, 0);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 200);
    svc_test_res_free(r);
    svc_test_free(t);
}

TEST(headers_and_body_reach_the_handler) {
    svc_test *t = make();
    REQUIRE(t);
    const char *h[] = {"Content-Type", "text/plain", "X-Request-Id", "abc-123", NULL};
    svc_test_res *r = svc_test_request(t, "POST", "/echo", h, "ping", 4);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 201);
    size_t len;
    CHECK_STR(svc_test_res_body(r, &len), "ping");
    CHECK_EQ(len, 4);
    CHECK_STR(svc_test_res_header(r, "X-Request-Id"), "abc-123");
    svc_test_res_free(r);
    /* HEAD: the GET route, no body. */
    r = svc_test_request(t, "HEAD", "/hello", NULL, NULL, 0);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 200);
    svc_test_res_body(r, &len);
    CHECK_EQ(len, 0);
    svc_test_res_free(r);
    svc_test_free(t);
}

TEST(before_hook_refusal_skips_the_handler) {
    svc_test *t = make();
    REQUIRE(t);
    const char *h[] = {"X-Teapot", "1", NULL};
    svc_test_res *r = svc_test_request(t, "GET", "/hello", h, NULL, 0);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 418);
    CHECK_STR(svc_test_res_header(r, "X-Stamp"), "stamped");
    svc_test_res_free(r);
    svc_test_free(t);
}

TEST(offloaded_and_async_handlers_finish) {
    svc_test *t = make();
    REQUIRE(t);
    svc_test_res *r = svc_test_request(t, "GET", "/offloaded", NULL, NULL, 0);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 200);
    CHECK_STR(svc_test_res_body(r, NULL), "loop=no");
    svc_test_res_free(r);
    r = svc_test_request(t, "GET", "/async", NULL, NULL, 0);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 202);
    CHECK_STR(svc_test_res_body(r, NULL), "later");
    CHECK_STR(svc_test_res_header(r, "X-Stamp"), "stamped");
    svc_test_res_free(r);
    svc_test_free(t);
}

TEST(auth_routes_need_a_token) {
    svc_test *t = make();
    REQUIRE(t);
    svc_test_res *r = svc_test_request(t, "GET", "/me", NULL, NULL, 0);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 401);
    svc_test_res_free(r);
    const char *h[] = {"Authorization", "Bearer not.a.token", NULL};
    r = svc_test_request(t, "GET", "/me", h, NULL, 0);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 401);
    svc_test_res_free(r);
    svc_test_free(t);
}

TEST(bad_arguments_and_limits) {
    svc_test *t = make();
    REQUIRE(t);
    CHECK(svc_test_request(t, "get", "/hello", NULL, NULL, 0) == NULL);
    CHECK(svc_test_request(t, "GET", NULL, NULL, NULL, 0) == NULL);
    CHECK(svc_test_request(t, NULL, "/hello", NULL, NULL, 0) == NULL);
    CHECK(svc_test_request(t, "POST", "/echo", NULL, NULL, 3) == NULL);
    const char *odd[] = {"X-Only-Name", NULL, NULL};
    CHECK(svc_test_request(t, "GET", "/hello", odd, NULL, 0) == NULL);
    size_t big = svc_app_config(svc_test_app(t))->max_body_bytes + 1;
    char *body = calloc(1, big);
    REQUIRE(body);
    svc_test_res *r = svc_test_request(t, "POST", "/echo", NULL, body, big);
    free(body);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 413);
    svc_test_res_free(r);
    svc_test_free(t);
}

TEST(a_handler_that_never_answers_is_reported_and_the_next_request_works) {
    svc_test *t = make();
    REQUIRE(t);
    svc_test_res *never_r = svc_test_request(t, "GET", "/never", NULL, NULL, 0);
    REQUIRE(never_r);
    CHECK_EQ(svc_test_res_status(never_r), 504);
    CHECK_STR(svc_test_res_header(never_r, "X-Stamp"), "stamped");
    svc_test_res_free(never_r);
    svc_test_res *r = svc_test_request(t, "GET", "/hello", NULL, NULL, 0);
    REQUIRE(r);
    CHECK_EQ(svc_test_res_status(r), 200);
    svc_test_res_free(r);
    svc_test_free(t);
}

TEST(bad_configuration_gives_null) {
    setenv("PORT", "not-a-port", 1);
    svc_test *t = make();
    CHECK(t == NULL);
    unsetenv("PORT");
}
