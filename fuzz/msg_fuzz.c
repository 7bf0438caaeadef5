/*
 * Fuzzes the conversion of a NATS request message into an svc_req
 * (svc__msg_req_fill: the Svc-* headers, other headers, limits) and the
 * subject scheme (svc__msg_route_subject, svc__msg_endpoint_name).
 *
 * Input layout: byte 0 selects the subject kind (bit 0: a per-route subject
 * for GET, bit 1: that route has no parameters, so Svc-Path may be absent);
 * then header lines "Name: value" separated by '\n' up to an empty line; the
 * rest is the payload. The first header line's name, when it starts with
 * '/', is also used as a route pattern for the subject functions.
 *
 * Besides the sanitizers, it checks:
 *  - an accepted request has a valid method (the route's, or HEAD for GET),
 *    a target that is its Svc-Path (+ '?' + Svc-Query), which passes
 *    svc__msg_path_check and normalises without change in its segment count
 *    (no "." or ".." or "//" can slip through), and a body within limits;
 *  - a refused one has one of the documented statuses and an error code;
 *  - a route subject is a valid literal subject (no wildcard token, no empty
 *    token, printable) with one token per segment after svc.<service>.<METHOD>;
 *    an endpoint name is non-empty [A-Za-z0-9_-].
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg/internal.h"

#include "fuzz_util.h"

#define MAX_HDRS 40

static size_t count_segments(const char *p, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += p[i] == '/';
    return k;
}

static void check_subject(const char *pattern) {
    char out[SVC_MSG_MAX_SUBJECT];
    int rc = svc__msg_route_subject("svc1", "GET", pattern, out, sizeof out);
    if (rc == SVC_OK) {
        CHECK(svc__msg_subject_check(out, 0) == SVC_OK);
        size_t tokens = 1;
        for (const char *p = out; *p; p++) tokens += *p == '.';
        size_t segs = strcmp(pattern, "/") == 0 ? 0 : count_segments(pattern, strlen(pattern));
        CHECK(tokens == 3 + segs);
        CHECK(strncmp(out, "svc.svc1.GET", 12) == 0);
    } else {
        CHECK(rc == SVC_ERANGE || rc == SVC_EINVAL);
    }
    char name[96];
    svc__msg_endpoint_name("GET", pattern, name, sizeof name);
    CHECK(name[0]);
    for (const char *p = name; *p; p++)
        CHECK((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned mode = data[0];
    char *copy = malloc(size);
    if (!copy) return 0;
    memcpy(copy, data + 1, size - 1);
    size_t len = size - 1;

    const char *names[MAX_HDRS], *values[MAX_HDRS];
    size_t n = 0, pos = 0;
    const char *body = "";
    size_t body_len = 0;
    while (pos < len) {
        char *nl = memchr(copy + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - copy) : len;
        if (end == pos) { /* the empty line: payload follows */
            body = copy + pos + 1;
            body_len = len - pos - 1;
            break;
        }
        copy[end] = '\0';
        char *line = copy + pos;
        char *colon = strchr(line, ':');
        if (n < MAX_HDRS) {
            if (colon) {
                *colon = '\0';
                char *v = colon + 1;
                while (*v == ' ') v++;
                names[n] = line;
                values[n] = v;
            } else {
                names[n] = line;
                values[n] = "";
            }
            n++;
        }
        pos = end + 1;
        if (!nl) break;
    }
    if (n && names[0][0] == '/') check_subject(names[0]);

    svc_arena *a = svc_arena_new(0);
    svc_req *req = svc_arena_calloc(a, sizeof *req);
    req->arena = a;
    const char *route_method = (mode & 1) ? "GET" : NULL;
    svc__msg_in in = {names, values, n, body, body_len, route_method, (mode & 2) ? "/fixed" : NULL};
    svc__msg_limits lim = {.max_headers = 16, .max_header_bytes = 2048, .max_body = 256};
    int st = svc__msg_req_fill(req, &in, &lim);
    if (st == 0) {
        CHECK(req->error_status == 0);
        CHECK(svc__msg_method_check(req->method) == SVC_OK);
        if (route_method) CHECK(strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0);
        CHECK(req->head == (strcmp(req->method, "HEAD") == 0));
        CHECK(req->raw.data && req->url_len == req->raw.len && strlen(req->raw.data) == req->url_len);
        CHECK(req->body.len == body_len && body_len <= lim.max_body);
        CHECK(req->nheaders <= lim.max_headers);
        const char *q = memchr(req->raw.data, '?', req->url_len);
        size_t plen = q ? (size_t)(q - req->raw.data) : req->url_len;
        CHECK(svc__msg_path_check(req->raw.data, plen, lim.max_header_bytes) == SVC_OK);
        char *path = NULL, *query = NULL;
        int nrc = svc__path_normalize(req->raw.data, req->url_len, a, &path, &query);
        CHECK(nrc == SVC_OK || nrc == SVC_ENOMEM);
        if (nrc == SVC_OK) {
            CHECK(count_segments(path, strlen(path)) == count_segments(req->raw.data, plen));
            CHECK(strstr(path, "//") == NULL);
        }
        if (req->peer) CHECK(svc__msg_client_ok(req->peer));
    } else {
        CHECK(st == 400 || st == 405 || st == 413 || st == 431 || st == 503);
        CHECK(req->error_status == st && req->error_code && req->error_msg && req->method);
    }
    svc_buf_free(&req->raw);
    svc_buf_free(&req->body);
    svc_arena_free(a);
    free(copy);
    return 0;
}
