/* HTTP/1.1 framing of a response: status line, headers, body or chunks. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http/internal.h"

/* A string literal, its length known at compile time. */
#define PUT_LIT(b, s) svc_buf_append((b), (s), sizeof(s) - 1)

static int status_has_body(int status) { return status != 204 && status != 304 && status >= 200; }

/* Status line and headers; the caller appends the body (or the first chunk). */
static void serialize_head(http_worker *hw, svc_res *res, svc_buf *out, int chunked, int streaming_close) {
    svc_req *req = res->req;
    svc_worker *w = req->w;
    /* "HTTP/1.1 %d %s\r\n", by hand: this runs for every response. */
    PUT_LIT(out, "HTTP/1.1 ");
    svc_buf_put_i64(out, res->status);
    svc_buf_putc(out, ' ');
    svc_buf_puts(out, svc__status_reason(res->status));
    PUT_LIT(out, "\r\n");
    svc_buf_append(out, hw->date, hw->date_len);
    /* No browser may guess a type other than the one sent (a JSON error
     * echoing input rendered as HTML, say). */
    PUT_LIT(out, "X-Content-Type-Options: nosniff\r\n");
    if (res->content_type && status_has_body(res->status)) {
        PUT_LIT(out, "Content-Type: ");
        svc_buf_puts(out, res->content_type);
        PUT_LIT(out, "\r\n");
    }
    if (chunked) {
        PUT_LIT(out, "Transfer-Encoding: chunked\r\n");
    } else if (!streaming_close && res->status != 304 && res->status != 204) {
        PUT_LIT(out, "Content-Length: ");
        size_t len;
        svc_res_get_body(res, &len);
        svc_buf_put_u64(out, len);
        PUT_LIT(out, "\r\n");
    }
    if (req->id) {
        PUT_LIT(out, "X-Request-Id: ");
        svc_buf_puts(out, req->id);
        PUT_LIT(out, "\r\n");
    }
    if (!req->keep_alive || w->stopping) PUT_LIT(out, "Connection: close\r\n");
    else if (req->http_minor == 0) PUT_LIT(out, "Connection: keep-alive\r\n");
    for (size_t i = 0; i < res->nheaders; i++) {
        svc_buf_puts(out, res->headers[i].name);
        PUT_LIT(out, ": ");
        svc_buf_puts(out, res->headers[i].value);
        PUT_LIT(out, "\r\n");
    }
    PUT_LIT(out, "\r\n");
}

void svc__http_serialize(http_worker *hw, svc_res *res, svc_buf *out) {
    svc_req *req = res->req;
    if (res->streaming) {
        /* A HEAD response ends with its header section: no last-chunk. */
        if (res->stream_chunked && !req->head) svc_buf_puts(out, "0\r\n\r\n");
        return;
    }
    if (req->w->stopping) req->keep_alive = 0;
    serialize_head(hw, res, out, 0, 0);
    size_t len;
    const char *body = svc_res_get_body(res, &len);
    if (!req->head && status_has_body(res->status)) svc_buf_append(out, body, len);
}

void svc__http_stream_head(http_worker *hw, svc_res *res, svc_buf *out) {
    serialize_head(hw, res, out, res->stream_chunked, !res->stream_chunked);
}

void svc__http_stream_chunk(svc_res *res, svc_buf *out, const void *data, size_t len) {
    if (res->stream_chunked) {
        char size[24];
        int n = snprintf(size, sizeof size, "%zx\r\n", len);
        svc_buf_append(out, size, (size_t)n);
        svc_buf_append(out, data, len);
        svc_buf_append(out, "\r\n", 2);
    } else {
        svc_buf_append(out, data, len);
    }
}

void svc__http_date_tick(http_worker *hw) {
    time_t now_s = time(NULL);
    if (now_s == hw->date_s && hw->date_len) return;
    struct tm tm;
    gmtime_r(&now_s, &tm);
    hw->date_len = strftime(hw->date, sizeof hw->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    hw->date_s = now_s;
}
