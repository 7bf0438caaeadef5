/*
 * Fuzzes the outbound HTTP client's response parsing (src/net/client.c), the
 * bytes an upstream sends back to the gateway, the JWKS fetch and every
 * svc_http_client user: a hostile or broken server controls all of them.
 *
 * Each input is served, as the whole response, by a loopback server of the
 * target's own (127.0.0.1, an ephemeral port) to one real client request:
 *
 *   byte 0  bit 0: the request is HEAD (else GET)
 *           bit 1: the client's max_response is FUZZ_SMALL_CAP (else default)
 *   byte 1, byte 2: where the response is cut into up to three writes
 *   rest    the response bytes; the server then shuts its side down.
 *
 * Besides the sanitizers it checks, on every input:
 *
 *  1. The callback runs exactly once, before the loop runs out of work.
 *  2. On SVC_OK: a final status (200-999, never 1xx), a NUL-terminated body,
 *     no body for HEAD, headers plus body within max_response, at most
 *     SVC_CLIENT_MAX_HEADERS headers, names lower-case as the header says,
 *     and svc_http_response_header finds each header's first occurrence.
 *  3. Otherwise one of the documented errors, with no response.
 */
#define _GNU_SOURCE /* memmem */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "svckit/client.h"

#include "fuzz_util.h"

#define FUZZ_SMALL_CAP 512
#define FUZZ_MAX_RESPONSE (64 * 1024) /* longer inputs add nothing */
#define FUZZ_TIMEOUT_MS 5000          /* the server always closes: a guard only */

typedef struct {
    const uint8_t *data;
    size_t len, cut1, cut2;
} response;

typedef struct {
    uv_tcp_t tcp;
    uv_shutdown_t shut;
    uv_write_t w;
    char in[4096];
    size_t inlen;
    int answered;
} peer;

static uv_loop_t loop;
static uv_tcp_t server;
static int port;
static response current;
static int calls;
static int head_request;
static size_t cap;

static void peer_closed(uv_handle_t *h) { free(h->data); }

static void peer_close(peer *p) {
    if (!uv_is_closing((uv_handle_t *)&p->tcp)) uv_close((uv_handle_t *)&p->tcp, peer_closed);
}

static void on_shutdown(uv_shutdown_t *s, int status) {
    (void)status;
    peer_close(s->data);
}

static void on_written(uv_write_t *w, int status) {
    peer *p = w->data;
    if (status < 0 || uv_shutdown(&p->shut, (uv_stream_t *)&p->tcp, on_shutdown) != 0) peer_close(p);
}

/* Answers once the request's head has arrived, so the close that follows is a
 * FIN after the response, not a reset over unread bytes. */
static void answer(peer *p) {
    uv_buf_t bufs[3];
    size_t cuts[4] = {0, current.cut1, current.cut2, current.len}, n = 0;
    for (int i = 0; i < 3; i++)
        if (cuts[i + 1] > cuts[i]) bufs[n++] = uv_buf_init((char *)current.data + cuts[i], (unsigned)(cuts[i + 1] - cuts[i]));
    p->answered = 1;
    p->w.data = p;
    p->shut.data = p;
    if (n == 0) {
        on_written(&p->w, 0);
        return;
    }
    /* One write per piece reaches the socket as separate segments often
     * enough to split the parser's input at the fuzzed points. */
    if (uv_write(&p->w, (uv_stream_t *)&p->tcp, bufs, (unsigned)n, on_written) != 0) peer_close(p);
}

static void peer_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    peer *p = h->data;
    *buf = uv_buf_init(p->in + p->inlen, (unsigned)(sizeof p->in - p->inlen));
}

static void peer_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    peer *p = s->data;
    if (nread < 0) {
        peer_close(p);
        return;
    }
    if (p->answered) {
        p->inlen = 0; /* the client sends nothing more; discard */
        return;
    }
    p->inlen += (size_t)nread;
    if (memmem(p->in, p->inlen, "\r\n\r\n", 4) || p->inlen == sizeof p->in) answer(p);
}

static void on_connection(uv_stream_t *srv, int status) {
    CHECK(status == 0);
    peer *p = calloc(1, sizeof *p);
    CHECK(p);
    CHECK(uv_tcp_init(&loop, &p->tcp) == 0);
    p->tcp.data = p;
    CHECK(uv_accept(srv, (uv_stream_t *)&p->tcp) == 0);
    CHECK(uv_read_start((uv_stream_t *)&p->tcp, peer_alloc, peer_read) == 0);
}

static void setup(void) {
    CHECK(uv_loop_init(&loop) == 0);
    CHECK(uv_tcp_init(&loop, &server) == 0);
    struct sockaddr_in sa;
    CHECK(uv_ip4_addr("127.0.0.1", 0, &sa) == 0);
    CHECK(uv_tcp_bind(&server, (const struct sockaddr *)&sa, 0) == 0);
    CHECK(uv_listen((uv_stream_t *)&server, 64, on_connection) == 0);
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    CHECK(uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &sl) == 0);
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_unref((uv_handle_t *)&server); /* uv_run returns when the exchange is done */
}

static void on_response(int err, const svc_http_response *r, void *ud) {
    (void)ud;
    calls++;
    if (err != SVC_OK) {
        CHECK(r == NULL);
        CHECK(err == SVC_EIO || err == SVC_ERANGE || err == SVC_ETIMEDOUT || err == SVC_ENOMEM);
        return;
    }
    CHECK(r);
    CHECK(r->status >= 200 && r->status <= 999);
    CHECK(r->body && r->body[r->body_len] == '\0');
    if (head_request) CHECK(r->body_len == 0);
    CHECK(r->nheaders <= SVC_CLIENT_MAX_HEADERS);
    size_t bytes = r->body_len;
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *name = r->header_names[i], *value = r->header_values[i];
        CHECK(name && value);
        for (const char *c = name; *c; c++) CHECK(!isupper((unsigned char)*c));
        bytes += strlen(name) + strlen(value);
        size_t first = 0;
        while (strcasecmp(r->header_names[first], name) != 0) first++;
        CHECK(svc_http_response_header(r, name) == r->header_values[first]);
    }
    CHECK(bytes <= cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3 || size > 3 + FUZZ_MAX_RESPONSE) return 0;
    if (!port) setup();
    head_request = data[0] & 1;
    cap = (data[0] & 2) ? FUZZ_SMALL_CAP : SVC_CLIENT_MAX_RESPONSE;
    current.data = data + 3;
    current.len = size - 3;
    current.cut1 = current.len * data[1] / 255;
    current.cut2 = current.cut1 + (current.len - current.cut1) * data[2] / 255;

    svc_http_client_opts opts = {.max_response = cap};
    svc_http_client *c = svc_http_client_new(&loop, &opts);
    CHECK(c);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/fuzz", port);
    /* close: no connection outlives its input, so each input meets a fresh one. */
    const char *const headers[] = {"Connection: close", NULL};
    calls = 0;
    CHECK(svc_http_client_request(c, head_request ? "HEAD" : "GET", url, headers, NULL, 0, FUZZ_TIMEOUT_MS,
                                  on_response, NULL) == SVC_OK);
    while (calls == 0 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    CHECK(calls == 1);
    svc_http_client_free(c);
    uv_run(&loop, UV_RUN_DEFAULT); /* the client's and the server side's handles close */
    CHECK(calls == 1);
    return 0;
}
