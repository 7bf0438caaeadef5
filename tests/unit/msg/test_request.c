/* A NATS request becomes an svc_req (src/msg/request.c: svc__msg_req_fill). */
#include <stdlib.h>
#include <string.h>

#include "msg/internal.h"
#include "../test.h"

static svc_req *new_req(void) {
    svc_arena *a = svc_arena_new(0);
    svc_req *req = svc_arena_calloc(a, sizeof *req);
    req->arena = a;
    return req;
}

static void free_req(svc_req *req) {
    svc_buf_free(&req->raw);
    svc_buf_free(&req->body);
    svc_arena_free(req->arena);
}

static const svc__msg_limits LIM = {.max_headers = 8, .max_header_bytes = 512, .max_body = 100};

/* Fills from "Name", "value", ... NULL; returns the status (0 = accepted). */
static int fill(svc_req *req, const char *route_method, const char *default_path, const char *body,
                const char *const *pairs) {
    const char *names[32], *values[32];
    size_t n = 0;
    for (; pairs && pairs[2 * n]; n++) {
        names[n] = pairs[2 * n];
        values[n] = pairs[2 * n + 1];
    }
    svc__msg_in in = {names, values, n, body, body ? strlen(body) : 0, route_method, default_path};
    return svc__msg_req_fill(req, &in, &LIM);
}

TEST(http_subject_request_is_filled) {
    svc_req *req = new_req();
    const char *h[] = {"Svc-Method", "POST", "Svc-Path", "/a/b%20c", "Svc-Query", "x=1&y=2",
                       "Authorization", "Bearer t", "svc-client", "10.0.0.9", NULL};
    CHECK_EQ(fill(req, NULL, NULL, "{\"k\":1}", h), 0);
    CHECK_STR(req->method, "POST");
    CHECK_STR(req->raw.data, "/a/b%20c?x=1&y=2");
    CHECK_EQ(req->url_len, strlen("/a/b%20c?x=1&y=2"));
    CHECK_STR(req->body.data, "{\"k\":1}");
    CHECK_STR(req->peer, "10.0.0.9");
    CHECK_EQ(req->nheaders, 5);
    CHECK_STR(svc_req_header(req, "authorization"), "Bearer t");
    CHECK_EQ(req->head, 0);
    CHECK_EQ(req->error_status, 0);
    free_req(req);
}

TEST(route_subject_defaults_and_method_rules) {
    svc_req *req = new_req();
    CHECK_EQ(fill(req, "GET", "/health", NULL, NULL), 0);
    CHECK_STR(req->method, "GET");
    CHECK_STR(req->raw.data, "/health");
    free_req(req);

    req = new_req();
    const char *head[] = {"Svc-Method", "HEAD", NULL};
    CHECK_EQ(fill(req, "GET", "/health", NULL, head), 0);
    CHECK_EQ(req->head, 1);
    free_req(req);

    req = new_req();
    const char *post[] = {"Svc-Method", "POST", NULL};
    CHECK_EQ(fill(req, "GET", "/health", NULL, post), 405);
    CHECK_STR(req->error_code, "method_not_allowed");
    free_req(req);

    /* A parameterised route needs Svc-Path. */
    req = new_req();
    CHECK_EQ(fill(req, "GET", NULL, NULL, NULL), 400);
    free_req(req);
}

TEST(missing_or_bad_framing_headers_are_400) {
    const char *cases[][7] = {
        {"Svc-Path", "/x", NULL},                                   /* no method on .http */
        {"Svc-Method", "GET", NULL},                                /* no path */
        {"Svc-Method", "get", "Svc-Path", "/x", NULL},
        {"Svc-Method", "GET", "Svc-Path", "/a/../b", NULL},
        {"Svc-Method", "GET", "Svc-Path", "/a%2Fb", NULL},
        {"Svc-Method", "GET", "Svc-Path", "/a", "Svc-Query", "a b", NULL},
        {"Svc-Method", "GET", "Svc-Path", "/a", "svc-path", "/b", NULL},
        {"Svc-Method", "GET", "Svc-Path", "/a", "Bad Name", "v", NULL},
        {"Svc-Method", "GET", "Svc-Path", "/a", "X", "v\x01", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        svc_req *req = new_req();
        CHECK_EQ(fill(req, NULL, NULL, NULL, cases[i]), 400);
        CHECK_EQ(req->error_status, 400);
        CHECK_STR(req->error_code, "bad_request");
        CHECK(req->method != NULL);
        free_req(req);
    }
}

TEST(limits_413_and_431) {
    svc_req *req = new_req();
    char body[200];
    memset(body, 'x', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    const char *h[] = {"Svc-Method", "POST", "Svc-Path", "/raw", NULL};
    CHECK_EQ(fill(req, NULL, NULL, body, h), 413);
    free_req(req);

    req = new_req();
    const char *many[] = {"A", "1", "B", "2", "C", "3", "D", "4", "E", "5", "F", "6", "G", "7", "H", "8", "I", "9", NULL};
    CHECK_EQ(fill(req, NULL, NULL, NULL, many), 431);
    free_req(req);

    req = new_req();
    char big[600];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *large[] = {"Svc-Method", "GET", "Svc-Path", "/x", "X-Big", big, NULL};
    CHECK_EQ(fill(req, NULL, NULL, NULL, large), 431);
    free_req(req);
}

TEST(null_entries_and_odd_clients) {
    svc_req *req = new_req();
    const char *names[] = {"Svc-Method", NULL};
    const char *values[] = {"GET", "x"};
    svc__msg_in in = {names, values, 2, NULL, 0, NULL, NULL};
    CHECK_EQ(svc__msg_req_fill(req, &in, &LIM), 400);
    free_req(req);

    req = new_req();
    const char *h[] = {"Svc-Method", "GET", "Svc-Path", "/x", "Svc-Client", "x\"}", NULL};
    CHECK_EQ(fill(req, NULL, NULL, NULL, h), 0);
    CHECK(req->peer == NULL);
    free_req(req);
}
