/*
 * Connections: bytes in, HTTP/1.1 framing, timeouts, bytes out.
 *
 * One request at a time per connection. When a request is complete the parser
 * pauses and the request is dispatched; input that arrives meanwhile (pipelined
 * requests) waits in `pending` and is parsed once the response is queued, so
 * responses always leave in request order. Responses produced while handling
 * one read are written together with a single uv_write.
 *
 * Framing is http_parser's (Debian's libhttp-parser, built lenient). It
 * tolerates what RFC 9112 tells servers to reject or lets them reject (obs-fold,
 * bare CR or LF, whitespace before a field's colon, whitespace after a chunk
 * size, anything in chunk extensions), so a small scanner (hscan) checks the
 * raw bytes of the header section and of chunked bodies before the parser sees
 * them, and hands it no more than it checked. The scanner also enforces
 * HTTP_MAX_HEADER_BYTES on the raw bytes: the parser's callbacks never see the
 * whitespace and line ends, and its own limit is a fixed 80 KiB.
 *
 * Every framing error gets a JSON 400 (or the specific 408, 413, 414, 417,
 * 431, 501 or 505) with "Connection: close". Every close we initiate after
 * the client may have sent something is a linger: half-close, discard input
 * briefly, then close, so that unread input never turns into a RST that
 * destroys the last response in flight.
 *
 * Idle connections cost only this struct (no request, no buffers): the read
 * buffer is shared by every connection of the worker, and requests are created
 * at their first byte.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <linux/filter.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "http/internal.h"

static int on_message_begin(http_parser *p);
static int on_url(http_parser *p, const char *at, size_t len);
static int on_header_field(http_parser *p, const char *at, size_t len);
static int on_header_value(http_parser *p, const char *at, size_t len);
static int on_headers_complete(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t len);
static int on_message_complete(http_parser *p);

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void conn_close(svc_conn *c);
static void conn_resume(svc_conn *c);
static void resume_once(svc_conn *c);
static void start_linger(svc_conn *c);
static void accept_ready(uv_poll_t *p, int status, int events);
static void accept_resume(http_worker *hw);

/* Answered, without parsing, to a connection over HTTP_MAX_CONNECTIONS. */
static const char busy_body[] =
    "{\"error\":{\"code\":\"unavailable\",\"message\":\"too many connections, retry shortly\"}}";

/* ---- the raw-byte scanner ------------------------------------------------- */

enum {
    HS_START,      /* before the request line; empty lines (CRLF) are skipped */
    HS_START_CR,
    HS_LINE,       /* inside the request line or a field value */
    HS_NAME,       /* inside a field name */
    HS_CR,         /* saw CR inside a line: LF must follow */
    HS_LINE_START, /* at the start of a field line, or of the final empty line */
    HS_END_CR,
    HS_DONE,       /* the header section (or a chunked body's trailers) ended */
    HS_BODY,       /* a Content-Length body: the parser frames it alone */
    CS_SIZE_START, /* a chunked body: the first digit of a chunk size */
    CS_SIZE,
    CS_SIZE_WS,    /* whitespace after the size: only a chunk extension may follow */
    CS_EXT,
    CS_SIZE_CR,
    CS_DATA,
    CS_DATA_CR,
    CS_DATA_LF,
};

enum {
    HSCAN_OK,
    HSCAN_BARE_CR,        /* a CR not followed by LF */
    HSCAN_BARE_LF,        /* a line ended by LF alone */
    HSCAN_OBS_FOLD,       /* a field line starting with whitespace */
    HSCAN_NAME_SPACE,     /* whitespace between a field name and its colon */
    HSCAN_NO_COLON,       /* a field line without a colon */
    HSCAN_CHUNK_SIZE,     /* a chunk size that is not 1*HEXDIG, or too large */
    HSCAN_CHUNK_SPACE,    /* whitespace after a chunk size with no extension */
    HSCAN_CHUNK_EXT,      /* a control byte in a chunk extension, or one too long */
    HSCAN_CHUNK_END,      /* chunk data not followed by CRLF */
    HSCAN_LONG_TARGET,    /* over the limit inside the request line: 414 */
    HSCAN_TOO_LARGE,      /* over the limit in the fields: 431 */
};

/* The message of each refusal; all are 400 but the last two. */
static const char *const hscan_messages[] = {
    [HSCAN_BARE_CR] = "malformed line ending (CR without LF)",
    [HSCAN_BARE_LF] = "malformed line ending (LF without CR)",
    [HSCAN_OBS_FOLD] = "obsolete line folding in a header field",
    [HSCAN_NAME_SPACE] = "whitespace between a header field name and its colon",
    [HSCAN_NO_COLON] = "header field line without a colon",
    [HSCAN_CHUNK_SIZE] = "invalid chunk size",
    [HSCAN_CHUNK_SPACE] = "whitespace after a chunk size",
    [HSCAN_CHUNK_EXT] = "invalid chunk extension",
    [HSCAN_CHUNK_END] = "chunk data longer than its size",
    [HSCAN_LONG_TARGET] = "request target too long",
    [HSCAN_TOO_LARGE] = "header section too large",
};

static void hscan_reset(svc_hscan *s) {
    s->state = HS_START;
    s->first_line = 1;
    s->bytes = 0;
}

/* Where the scanner goes once the header section has been parsed and a body
 * follows. */
static void hscan_body(svc_hscan *s, int chunked) {
    s->state = chunked ? CS_SIZE_START : HS_BODY;
    s->line = 0;
}

static int hex_value(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/*
 * Checks raw request bytes before http_parser sees them, for what the parser
 * tolerates and RFC 9112 lets a server refuse, where a proxy in front could
 * read the message differently: bare CR or LF as a line end, obs-fold,
 * whitespace before a field's colon (the parser takes "Transfer-Encoding :"
 * as the framing header while our own checks look for the exact name), and in
 * a chunked body whitespace after a chunk size, control bytes in chunk
 * extensions, and the same line rules in the trailers. Also enforces
 * HTTP_MAX_HEADER_BYTES on the raw bytes of the header section.
 *
 * Returns HSCAN_OK and sets *used to the bytes checked: the parser is given
 * exactly those, so it stops where the header section ends (state HS_DONE,
 * until the connection sets the body's mode) and where a chunked body's
 * trailers end; a Content-Length body passes through.
 */
static int hscan(svc_hscan *s, const char *data, size_t len, size_t limit, size_t *used) {
    unsigned char st = s->state;
    size_t i = 0;
    int rc = HSCAN_OK;
    while (i < len && st != HS_DONE) {
        if (st == HS_BODY) {
            i = len;
            break;
        }
        if (st == CS_DATA) {
            size_t n = len - i < s->chunk_left ? len - i : (size_t)s->chunk_left;
            i += n;
            s->chunk_left -= n;
            if (s->chunk_left == 0) st = CS_DATA_CR;
            continue;
        }
        if (st < HS_DONE) {
            /* Checked before every step, so that a long request line is a
             * 414 even when the fields arrive in the same read. */
            if (s->bytes >= limit) {
                rc = s->first_line ? HSCAN_LONG_TARGET : HSCAN_TOO_LARGE;
                break;
            }
            if (st == HS_LINE) {
                /* The bulk of the section: find the line's end with memchr
                 * rather than byte by byte, never looking past the limit. */
                size_t n = len - i < limit - s->bytes ? len - i : limit - s->bytes;
                const char *from = data + i;
                const char *lf = memchr(from, '\n', n);
                const char *cr = memchr(from, '\r', lf ? (size_t)(lf - from) : n);
                if (!cr && lf) {
                    rc = HSCAN_BARE_LF;
                    break;
                }
                size_t step = cr ? (size_t)(cr - from) + 1 : n;
                if (cr) st = HS_CR;
                i += step;
                s->bytes += step;
                continue;
            }
            if (st == HS_NAME) {
                /* Up to the colon, or whatever else the switch must see. */
                size_t n = len - i < limit - s->bytes ? len - i : limit - s->bytes, k = 0;
                while (k < n && (unsigned char)data[i + k] > ' ' && data[i + k] != ':') k++;
                i += k;
                s->bytes += k;
                if (k == n) continue;
            }
            s->bytes++;
        } else if (++s->line > SVC_HTTP_MAX_CHUNK_LINE) {
            rc = st == CS_EXT ? HSCAN_CHUNK_EXT : HSCAN_CHUNK_SIZE;
            break;
        }
        char ch = data[i++];
        switch (st) {
        case HS_START:
            if (ch == '\r') st = HS_START_CR;
            else if (ch == '\n') rc = HSCAN_BARE_LF;
            else st = HS_LINE;
            break;
        case HS_START_CR:
            if (ch != '\n') rc = HSCAN_BARE_CR;
            st = HS_START;
            break;
        case HS_NAME:
            if (ch == ':') st = HS_LINE;
            else if (ch == ' ' || ch == '\t') rc = HSCAN_NAME_SPACE;
            else if (ch == '\r' || ch == '\n') rc = HSCAN_NO_COLON;
            break;
        case HS_CR:
            if (ch != '\n') rc = HSCAN_BARE_CR;
            st = HS_LINE_START;
            s->first_line = 0;
            break;
        case HS_LINE_START:
            if (ch == ' ' || ch == '\t') rc = HSCAN_OBS_FOLD;
            else if (ch == '\r') st = HS_END_CR;
            else if (ch == '\n') rc = HSCAN_BARE_LF;
            else st = ch == ':' ? HS_LINE : HS_NAME; /* an empty name: the parser's to refuse */
            break;
        case HS_END_CR:
            if (ch != '\n') rc = HSCAN_BARE_CR;
            st = HS_DONE;
            break;
        case CS_SIZE_START:
        case CS_SIZE: {
            int v = hex_value(ch);
            if (v >= 0) {
                /* A size past 2^60 is no size any limit would let through. */
                if (st == CS_SIZE && s->chunk_left >> 56) rc = HSCAN_CHUNK_SIZE;
                s->chunk_left = (st == CS_SIZE ? s->chunk_left << 4 : 0) | (uint64_t)v;
                st = CS_SIZE;
            } else if (st == CS_SIZE_START) {
                rc = HSCAN_CHUNK_SIZE;
            } else if (ch == ';') {
                st = CS_EXT;
            } else if (ch == ' ' || ch == '\t') {
                st = CS_SIZE_WS;
            } else if (ch == '\r') {
                st = CS_SIZE_CR;
            } else {
                rc = ch == '\n' ? HSCAN_BARE_LF : HSCAN_CHUNK_SIZE;
            }
            break;
        }
        case CS_SIZE_WS:
            /* RFC 9112 allows whitespace before the ";" of an extension
             * (BWS), and nothing else. */
            if (ch == ';') st = CS_EXT;
            else if (ch != ' ' && ch != '\t') rc = HSCAN_CHUNK_SPACE;
            break;
        case CS_EXT:
            if (ch == '\r') st = CS_SIZE_CR;
            else if (ch == '\n') rc = HSCAN_BARE_LF;
            else if (((unsigned char)ch < 0x20 && ch != '\t') || ch == 0x7f) rc = HSCAN_CHUNK_EXT;
            break;
        case CS_SIZE_CR:
            if (ch != '\n') {
                rc = HSCAN_BARE_CR;
            } else if (s->chunk_left == 0) {
                /* The last chunk: trailer fields follow, with the header
                 * section's rules and limit. */
                st = HS_LINE_START;
                s->first_line = 0;
                s->bytes = 0;
            } else {
                st = CS_DATA;
            }
            break;
        case CS_DATA_CR:
            if (ch != '\r') rc = HSCAN_CHUNK_END;
            st = CS_DATA_LF;
            break;
        case CS_DATA_LF:
            if (ch != '\n') rc = HSCAN_BARE_CR;
            st = CS_SIZE_START;
            s->line = 0;
            break;
        }
        if (rc != HSCAN_OK) break;
    }
    s->state = st;
    *used = i;
    return rc;
}

/* ---- helpers -------------------------------------------------------------- */

static svc_conn *parser_conn(http_parser *p) { return p->data; }

static const svc_config *conn_cfg(const svc_conn *c) { return &c->w->app->cfg; }

/* A request on c: the runtime reaches c back through svc__http_req_ops. The
 * peer is copied, since a handler may outlive the connection. */
static svc_req *conn_req_new(svc_conn *c) {
    svc_req *req = svc__req_new_worker(c->w);
    if (!req) return NULL;
    req->transport = &svc__http_req_ops;
    req->transport_data = c;
    memcpy(req->peer_buf, c->peer, sizeof req->peer_buf);
    req->peer = req->peer_buf;
    return req;
}

/* Records a framing or limit error on the current request; the parser stops
 * (the callback returns nonzero) and the request is answered with it. */
static int request_error(svc_req *req, int status, const char *code, const char *msg) {
    if (!req->error_status) {
        req->error_status = status;
        req->error_code = code;
        req->error_msg = msg;
    }
    return -1;
}

static void set_state(svc_conn *c, int state, int timeout_ms) {
    c->state = state;
    c->deadline = timeout_ms > 0 ? uv_now(&c->w->loop) + (uint64_t)timeout_ms : 0;
    c->queued_mark = 0;
}

/* ---- parser callbacks ----------------------------------------------------- */

static int on_message_begin(http_parser *p) {
    svc_conn *c = parser_conn(p);
    if (!c->req) {
        c->req = conn_req_new(c);
        if (!c->req) return -1;
    }
    c->received = 1;
    set_state(c, CONN_HEADERS, conn_cfg(c)->header_timeout_ms);
    return 0;
}

static int header_bytes_ok(svc_conn *c, svc_req *req, size_t more) {
    return req->raw.len + more <= conn_cfg(c)->max_header_bytes;
}

static int on_url(http_parser *p, const char *at, size_t len) {
    svc_conn *c = parser_conn(p);
    svc_req *req = c->req;
    if (!header_bytes_ok(c, req, len))
        return request_error(req, 414, "uri_too_long", "request target too long");
    svc_buf_append(&req->raw, at, len);
    req->url_len += len;
    return req->raw.oom ? request_error(req, 503, "unavailable", "out of memory") : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    svc_conn *c = parser_conn(p);
    svc_req *req = c->req;
    /* Chunked trailer fields come after svc__req_headers_done: appending
     * them could move raw and leave req->headers dangling. Ignored; the
     * parser still bounds their size. */
    if (c->state == CONN_BODY) return 0;
    if (req->nhdr_parts == 0 || req->last_was_value) {
        /* A new field: terminate what came before (the URL or a value). */
        if ((req->nhdr_parts / 2) >= (size_t)conn_cfg(c)->max_headers)
            return request_error(req, 431, "headers_too_large", "too many header fields");
        svc_buf_putc(&req->raw, '\0');
        req->hdr_off[req->nhdr_parts++] = req->raw.len;
        req->last_was_value = 0;
    }
    if (!header_bytes_ok(c, req, len))
        return request_error(req, 431, "headers_too_large", "header section too large");
    svc_buf_append(&req->raw, at, len);
    return req->raw.oom ? request_error(req, 503, "unavailable", "out of memory") : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    svc_conn *c = parser_conn(p);
    svc_req *req = c->req;
    if (c->state == CONN_BODY) return 0; /* a trailer: see on_header_field */
    if (!req->last_was_value) {
        svc_buf_putc(&req->raw, '\0');
        req->hdr_off[req->nhdr_parts++] = req->raw.len;
        req->last_was_value = 1;
    }
    if (!header_bytes_ok(c, req, len))
        return request_error(req, 431, "headers_too_large", "header section too large");
    svc_buf_append(&req->raw, at, len);
    return req->raw.oom ? request_error(req, 503, "unavailable", "out of memory") : 0;
}

static int on_headers_complete(http_parser *p) {
    svc_conn *c = parser_conn(p);
    svc_req *req = c->req;
    const svc_config *cfg = conn_cfg(c);
    /* A field with no value ("Name:" then end) still needs its value slot. */
    if (req->nhdr_parts % 2 == 1) {
        svc_buf_putc(&req->raw, '\0');
        req->hdr_off[req->nhdr_parts++] = req->raw.len;
    }
    svc_buf_putc(&req->raw, '\0');
    if (req->raw.oom) return request_error(req, 503, "unavailable", "out of memory");
    req->method = http_method_str((enum http_method)p->method);
    req->http_major = p->http_major;
    req->http_minor = p->http_minor;
    req->head = p->method == HTTP_HEAD;
    req->keep_alive = http_should_keep_alive(p) != 0;
    /* CONNECT and Upgrade make http_parser treat what follows the message as
     * another protocol. We serve neither: answer (ignoring Upgrade, as RFC
     * 9110 allows) and close, so those bytes are never parsed as requests. */
    if (p->upgrade) req->keep_alive = 0;
    if (svc__req_headers_done(req) != SVC_OK)
        return request_error(req, 503, "unavailable", "out of memory");

    if (p->http_major != 1)
        return request_error(req, 505, "http_version_not_supported", "only HTTP/1.x is served");
    if (p->http_minor >= 1 && req->host_count == 0)
        return request_error(req, 400, "bad_request", "missing Host header");
    if (req->host_count > 1)
        return request_error(req, 400, "bad_request", "more than one Host header");
    if (req->host_bad) return request_error(req, 400, "bad_request", "malformed Host header");
    if (req->te_count) {
        if (p->http_minor == 0)
            return request_error(req, 400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request");
        if (p->flags & F_CONTENTLENGTH)
            return request_error(req, 400, "bad_request", "both Content-Length and Transfer-Encoding");
        if (!(p->flags & F_CHUNKED))
            return request_error(req, 400, "bad_request", "Transfer-Encoding must end in chunked");
        /* Two fields make the list "chunked, chunked": chunked twice. */
        if (req->te_count > 1)
            return request_error(req, 400, "bad_request", "more than one Transfer-Encoding header");
        /* Anything before chunked (gzip, ...) would reach the handler still
         * encoded; RFC 9112 6.1 says 501 for a coding we do not implement. */
        if (req->te_other)
            return request_error(req, 501, "not_implemented", "only the chunked transfer coding is supported");
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > cfg->max_body_bytes)
        return request_error(req, 413, "payload_too_large", "request body too large");

    /* "100 Continue" is sent once the head's checks have passed (head_complete). */
    if (req->hdr_expect && strcasecmp(req->hdr_expect, "100-continue") != 0)
        return request_error(req, 417, "expectation_failed", "only 100-continue is supported");
    set_state(c, CONN_BODY, cfg->body_timeout_ms);
    return 0;
}

/* Takes n bytes of the process-wide budget of buffered request bodies for
 * req; given back when the request is freed. */
static int body_take(svc_conn *c, svc_req *req, size_t n) {
    svc_app *app = c->w->app;
    long long total = atomic_fetch_add(&app->body_bytes, (long long)n) + (long long)n;
    if ((size_t)total > app->cfg.max_buffered_body_bytes) {
        atomic_fetch_sub(&app->body_bytes, (long long)n);
        svc_counter_add(app->s_body_budget, 1);
        return request_error(req, 503, "unavailable", "too many request bodies in memory; retry shortly");
    }
    req->body_reserved += n;
    svc__peak_note(&app->peak_body_bytes, total);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    svc_conn *c = parser_conn(p);
    svc_req *req = c->req;
    if (req->discard_body) return 0;
    if (req->body.len + len > conn_cfg(c)->max_body_bytes)
        return request_error(req, 413, "payload_too_large", "request body too large");
    /* A Content-Length body took its whole length at its head. */
    if ((p->flags & F_CHUNKED) && body_take(c, req, len) != 0) return -1;
    svc_buf_append(&req->body, at, len);
    return req->body.oom ? request_error(req, 503, "unavailable", "out of memory") : 0;
}

static int on_message_complete(http_parser *p) {
    svc_conn *c = parser_conn(p);
    set_state(c, CONN_HANDLING, 0);
    http_parser_pause(p, 1);
    return 0;
}

/* ---- processing input ----------------------------------------------------- */

static const char *parser_error_message(enum http_errno e) {
    switch (e) {
    case HPE_INVALID_METHOD: return "unknown method";
    case HPE_INVALID_URL: return "malformed request target";
    case HPE_INVALID_VERSION: return "malformed HTTP version";
    case HPE_INVALID_HEADER_TOKEN: return "malformed header field";
    case HPE_INVALID_CONTENT_LENGTH: return "invalid Content-Length";
    case HPE_UNEXPECTED_CONTENT_LENGTH: return "conflicting Content-Length";
    case HPE_INVALID_CHUNK_SIZE: return "invalid chunk size";
    case HPE_INVALID_TRANSFER_ENCODING: return "invalid Transfer-Encoding";
    case HPE_HEADER_OVERFLOW: return "header section too large";
    case HPE_LF_EXPECTED: return "malformed line ending";
    default: return "malformed request";
    }
}

/* http_parser counts every header byte, whitespace included, and stops at its
 * own limit: that is the client's header section being too large too. */
static int parser_error_status(enum http_errno e) { return e == HPE_HEADER_OVERFLOW ? 431 : 400; }

static const char *parser_error_code(enum http_errno e) {
    return e == HPE_HEADER_OVERFLOW ? "headers_too_large" : "bad_request";
}

/*
 * The header section is complete and a body follows. What needs only the
 * head runs now (routing, head hooks such as the token check), so that a
 * refusal neither waits for the body nor buffers it, and "100 Continue" goes
 * only to a request whose body will be read. A refused request with a small
 * body reads and drops it, and is answered at its end (the connection
 * stays); otherwise it is answered at once and the connection closes, its
 * body unread (the linger discards what arrives).
 */
static void head_complete(svc_conn *c) {
    svc_req *req = c->req;
    http_parser *p = &c->parser;
    int chunked = (p->flags & F_CHUNKED) != 0;
    hscan_body(&c->scan, chunked);
    if (svc__dispatch_head(req)) {
        if (!chunked && p->content_length <= SVC_HTTP_DISCARD_BODY_BYTES && !req->hdr_expect) {
            req->discard_body = 1;
            return;
        }
    } else if (chunked || body_take(c, req, p->content_length) == 0) {
        /* One allocation of the right size, not a doubling series. */
        if (!chunked) svc_buf_reserve(&req->body, p->content_length);
        if (req->hdr_expect && p->http_minor >= 1) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            svc_buf_append(&c->out, cont, sizeof cont - 1);
        }
        return;
    }
    req->keep_alive = 0;
    set_state(c, CONN_HANDLING, 0);
    svc__dispatch(req);
}

/* Turns the current parse failure into an error response on a request. */
static void fail_request(svc_conn *c, int status, const char *code, const char *msg) {
    if (!c->req) {
        c->req = conn_req_new(c);
        if (!c->req) {
            conn_close(c);
            return;
        }
    }
    request_error(c->req, status, code, msg);
    c->req->keep_alive = 0;
    set_state(c, CONN_HANDLING, 0);
    svc__dispatch(c->req);
}

/*
 * Parses and dispatches requests from data until it is used up, a request is
 * in flight, or the connection is closing. Returns the bytes consumed.
 */
static size_t conn_process(svc_conn *c, const char *data, size_t len) {
    size_t off = 0;
    c->in_process = 1;
    while (off < len && !c->closing) {
        if (c->state == CONN_HANDLING || c->close_after || c->state == CONN_LINGER) break;
        if (c->out.len + c->writing > SVC_OUTPUT_HIGH_WATER) break;
        size_t checked;
        int scan = hscan(&c->scan, data + off, len - off, conn_cfg(c)->max_header_bytes, &checked);
        if (scan != HSCAN_OK) {
            if (!c->req) on_message_begin(&c->parser);
            if (scan == HSCAN_LONG_TARGET) fail_request(c, 414, "uri_too_long", hscan_messages[scan]);
            else if (scan == HSCAN_TOO_LARGE) fail_request(c, 431, "headers_too_large", hscan_messages[scan]);
            else fail_request(c, 400, "bad_request", hscan_messages[scan]);
            off = len;
            break;
        }
        size_t n = http_parser_execute(&c->parser, &parser_settings, data + off, checked);
        off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            hscan_reset(&c->scan);
            svc__dispatch(c->req);
            continue;
        }
        if (e != HPE_OK) {
            if (c->req && c->req->error_status) fail_request(c, c->req->error_status, c->req->error_code, c->req->error_msg);
            else fail_request(c, parser_error_status(e), parser_error_code(e), parser_error_message(e));
            off = len;
            break;
        }
        if (c->scan.state == HS_DONE && c->state == CONN_BODY) head_complete(c);
    }
    c->in_process = 0;
    return off;
}

static void pending_append(svc_conn *c, const char *data, size_t len) {
    if (c->pending_off && c->pending_off == c->pending_len) c->pending_off = c->pending_len = 0;
    if (c->pending_len + len > c->pending_cap) {
        /* Compact first; grow only if that is not enough. */
        if (c->pending_off) {
            memmove(c->pending, c->pending + c->pending_off, c->pending_len - c->pending_off);
            c->pending_len -= c->pending_off;
            c->pending_off = 0;
        }
        if (c->pending_len + len > c->pending_cap) {
            size_t cap = c->pending_cap ? c->pending_cap : 4096;
            while (cap < c->pending_len + len) cap *= 2;
            char *p = realloc(c->pending, cap);
            if (!p) {
                conn_close(c);
                return;
            }
            c->pending = p;
            c->pending_cap = cap;
        }
    }
    memcpy(c->pending + c->pending_len, data, len);
    c->pending_len += len;
}

static size_t pending_size(const svc_conn *c) { return c->pending_len - c->pending_off; }

static void read_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    svc_conn *c = h->data;
    http_worker *hw = c->hw;
    if (!hw->readbuf) hw->readbuf = malloc(SVC_READ_BUFFER);
    buf->base = hw->readbuf;
    buf->len = hw->readbuf ? SVC_READ_BUFFER : 0;
}

static void stop_reading(svc_conn *c) {
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    svc_conn *c = s->data;
    if (nread == 0) return;
    if (nread < 0) {
        /* EOF or error. A request in flight still gets its response, and
         * responses already queued are still delivered (the client may only
         * have half-closed): closing now would cancel the writes and truncate
         * them. Anything else ends here. */
        stop_reading(c);
        if (nread == UV_EOF && (c->state == CONN_HANDLING || pending_size(c) > 0 ||
                                c->writing > 0 || c->out.len > 0)) {
            c->eof = 1;
            /* A handler still answers; a chain of steps takes it as gone. */
            if (c->state == CONN_HANDLING && c->req) c->req->client_eof = 1;
            if (!c->in_process) conn_resume(c);
            return;
        }
        conn_close(c);
        return;
    }
    if (c->state == CONN_LINGER) return; /* discard */
    if (c->state == CONN_HANDLING || pending_size(c) > 0 || c->out.len + c->writing > SVC_OUTPUT_HIGH_WATER) {
        pending_append(c, buf->base, (size_t)nread);
        if (pending_size(c) > SVC_PENDING_HIGH_WATER) stop_reading(c);
        return;
    }
    size_t used = conn_process(c, buf->base, (size_t)nread);
    if (!c->closing && used < (size_t)nread && c->state != CONN_LINGER && !c->close_after)
        pending_append(c, buf->base + used, (size_t)nread - used);
    if (!c->closing) svc__conn_flush(c);
}

static void conn_resume(svc_conn *c) {
    if (c->closing) return;
    c->resuming = 1;
    do {
        c->resume_again = 0;
        resume_once(c);
        /* The flush wrote everything at once: pipelined input held back by
         * the output mark may go on (here, not by recursion). */
    } while (c->resume_again && !c->closing);
    c->resuming = 0;
}

static void resume_once(svc_conn *c) {
    while (pending_size(c) > 0 && !c->closing && c->state != CONN_HANDLING && !c->close_after &&
           c->out.len + c->writing <= SVC_OUTPUT_HIGH_WATER) {
        size_t before = pending_size(c);
        size_t used = conn_process(c, c->pending + c->pending_off, before);
        c->pending_off += used;
        if (used == 0) break;
    }
    if (c->closing) return;
    if (pending_size(c) == 0) c->pending_off = c->pending_len = 0;
    if (c->close_after) {
        c->pending_off = c->pending_len = 0;
    } else if (c->eof && c->state != CONN_HANDLING && pending_size(c) == 0) {
        /* The client half-closed and everything it sent is answered. */
        c->close_after = 1;
    } else if (!c->reading && !c->eof && pending_size(c) <= SVC_PENDING_HIGH_WATER / 2) {
        uv_read_start((uv_stream_t *)&c->tcp, read_alloc, on_read);
        c->reading = 1;
    }
    svc__conn_flush(c);
}

/* ---- output --------------------------------------------------------------- */

typedef struct write_req {
    uv_write_t req;
    svc_buf buf;
    size_t off;                      /* bytes of buf written before the request */
    svc_conn *conn;
} write_req;

/* After output was written (by a uv_write, or at once): timeouts, the close
 * that waited for it, and pipelined input that waited for room. */
static void output_written(svc_conn *c) {
    if (c->state == CONN_IDLE) set_state(c, CONN_IDLE, conn_cfg(c)->idle_timeout_ms);
    if (c->close_after || (c->w->stopping && c->state == CONN_IDLE && pending_size(c) == 0)) {
        c->close_after = 1;
        if (c->writing == 0 && c->out.len == 0) start_linger(c);
        return;
    }
    /* Output drained below the mark: pipelined input can be processed again. */
    if (c->writing + c->out.len <= SVC_OUTPUT_HIGH_WATER / 2 && pending_size(c) > 0 &&
        c->state != CONN_HANDLING && !c->in_process) {
        if (c->resuming) c->resume_again = 1;
        else conn_resume(c);
    }
}

static void on_write(uv_write_t *wr, int status) {
    write_req *r = (write_req *)wr;
    svc_conn *c = r->conn;
    c->writing -= r->buf.len - r->off;
    svc__worker_buf_give(c->w, &r->buf);
    free(r);
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    output_written(c);
}

void svc__conn_flush(svc_conn *c) {
    if (c->closing) return;
    if (c->out.oom) {
        conn_close(c);
        return;
    }
    if (c->out.len == 0) {
        if (c->close_after && c->writing == 0 && c->state != CONN_LINGER && c->state != CONN_HANDLING)
            start_linger(c);
        return;
    }
    size_t sent = 0;
    if (c->writing == 0) {
        /* Nothing in flight: write what the socket takes now. A response that
         * goes whole (the usual case) needs no write request, keeps its
         * buffer for the next one, and spares the epoll change libuv makes
         * after every completed uv_write. */
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        sent = n > 0 ? (size_t)n : 0;
        if (sent == c->out.len) {
            svc__worker_buf_give(c->w, &c->out);
            output_written(c);
            return;
        }
    }
    write_req *r = malloc(sizeof *r);
    if (!r) {
        conn_close(c);
        return;
    }
    r->conn = c;
    r->buf = c->out; /* hand the buffer over; the connection starts a fresh one */
    r->off = sent;
    memset(&c->out, 0, sizeof c->out);
    uv_buf_t b = uv_buf_init(r->buf.data + sent, (unsigned)(r->buf.len - sent));
    c->writing += r->buf.len - sent;
    int rc = uv_write(&r->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc != 0) {
        c->writing -= r->buf.len - sent;
        svc_buf_free(&r->buf);
        free(r);
        conn_close(c);
    }
}

/* ---- closing -------------------------------------------------------------- */

static void stop_listening(http_worker *hw);

/* Once stopping: the listener closes when its grace is over, whatever is
 * still being answered (the tick comes back for that); the worker exits once
 * it is closed, no connection is left and no other transport is busy. */
static void worker_maybe_exit(http_worker *hw) {
    svc_worker *w = hw->w;
    if (!w->stopping) return;
    if (hw->listening && uv_now(&w->loop) >= hw->accept_until) stop_listening(hw);
    svc__worker_maybe_exit(w);
}

static void on_close(uv_handle_t *h) {
    svc_conn *c = h->data;
    http_worker *hw = c->hw;
    if (c->prev) c->prev->next = c->next;
    else hw->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    hw->nconns--;
    atomic_fetch_sub(&hw->w->app->connections, 1);
    free(c->pending);
    svc_buf_free(&c->out);
    free(c);
    accept_resume(hw);
    worker_maybe_exit(hw);
}

static void conn_close(svc_conn *c) {
    if (c->closing) return;
    c->closing = 1;
    c->state = CONN_CLOSED;
    c->deadline = 0;
    if (c->req) {
        svc_req *req = c->req;
        c->req = NULL;
        /* A handler still owns a dispatched request: detach it, and its
         * completion frees it. An undispatched one is ours to free. */
        if (req->dispatched) {
            req->transport_data = NULL;
            req->client_gone = 1;
        } else {
            svc__req_free(req);
        }
    }
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_shutdown(uv_shutdown_t *sr, int status) {
    svc_conn *c = sr->data;
    free(sr);
    if (c->closing) return;
    if (status < 0 || c->eof) {
        conn_close(c);
        return;
    }
    if (!c->reading) {
        uv_read_start((uv_stream_t *)&c->tcp, read_alloc, on_read);
        c->reading = 1;
    }
}

/* Half-close after the final response and discard input for a moment, so the
 * client reads the response before our close can turn into a RST. Also for a
 * connection that has sent nothing yet: its first request may be in flight,
 * and a FIN before any response is a clean "closed between requests" that
 * clients retry, where a RST is not. */
static void start_linger(svc_conn *c) {
    if (c->closing || c->state == CONN_LINGER) return;
    set_state(c, CONN_LINGER, SVC_LINGER_MS);
    c->pending_off = c->pending_len = 0;
    uv_shutdown_t *sr = malloc(sizeof *sr);
    if (!sr) {
        conn_close(c);
        return;
    }
    sr->data = c;
    if (uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(sr);
        conn_close(c);
    }
}

/* Bytes the client sent that we have not read yet: a request on its way in. */
static int input_waiting(svc_conn *c) {
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return 0;
    char b;
    ssize_t n;
    do n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n > 0;
}

/*
 * A drain closes the idle connections, and those it accepts: a FIN, then the
 * linger, so that a request sent as the FIN leaves is discarded and the
 * client sees a clean close it may retry, never a RST (the keep-alive race
 * RFC 9112 9.3.1 tells clients to expect). A request that has already
 * reached us is answered instead, with "Connection: close", once it is read.
 */
static void close_if_idle(svc_conn *c) {
    if (c->state != CONN_IDLE || c->writing > 0 || c->out.len > 0 || pending_size(c) > 0 || input_waiting(c)) return;
    c->close_after = 1;
    start_linger(c);
}

/* ---- request completion --------------------------------------------------- */

/* svc_req_ops.finish: the response goes out, and the connection goes on
 * with its next request (or closes). */
static void http_finish(svc_req *req) {
    svc_conn *c = req->transport_data;
    if (!c) {
        svc__req_done(req);
        return;
    }
    if (!c->closing) {
        svc__worker_buf_take(c->w, &c->out);
        svc__http_serialize(c->hw, &req->res, &c->out);
    }
    c->req = NULL;
    c->nrequests++;
    int keep = req->keep_alive && !c->w->stopping;
    svc__req_done(req);
    c->received = 0;
    if (!keep) {
        c->close_after = 1;
        c->state = CONN_IDLE;
    } else {
        set_state(c, CONN_IDLE, conn_cfg(c)->idle_timeout_ms);
    }
    if (!c->in_process) conn_resume(c);
}

/* ---- accept, timeouts, shutdown ------------------------------------------- */

static void peer_name(svc_conn *c) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    c->peer[0] = '\0';
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
    else if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
}

static svc_conn *conn_new(http_worker *hw) {
    svc_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    svc_worker *w = hw->w;
    c->w = w;
    c->hw = hw;
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    c->next = hw->conns;
    if (hw->conns) hw->conns->prev = c;
    hw->conns = c;
    hw->nconns++;
    svc__peak_note(&w->app->peak_connections, atomic_fetch_add(&w->app->connections, 1) + 1);
    return c;
}

/* A connection whose socket is open: the cap, then reading. */
static void conn_start(svc_conn *c) {
    svc_worker *w = c->w;
    if (c->hw->nconns > conn_cfg(c)->max_connections) {
        /* Answered without parsing, then the usual linger rather than an
         * abrupt close: the request the client has already sent would turn
         * the close into a RST, which can destroy the 503 before it is read. */
        svc_counter_add(c->hw->hs->s_rejected, 1);
        c->close_after = 1;
        svc_buf_printf(&c->out,
                       "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                       "X-Content-Type-Options: nosniff\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\nRetry-After: 1\r\n\r\n%s",
                       sizeof busy_body - 1, busy_body);
        svc__conn_flush(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    hscan_reset(&c->scan);
    peer_name(c);
    set_state(c, CONN_IDLE, conn_cfg(c)->header_timeout_ms);
    if (uv_read_start((uv_stream_t *)&c->tcp, read_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    c->reading = 1;
    if (w->stopping) close_if_idle(c);
}

/*
 * Accepting, with accept4 on the worker's own SO_REUSEPORT socket rather than
 * libuv's uv_listen: when accept fails for want of descriptors, libuv calls
 * back and tries again at once, for ever, and its spare-descriptor trick
 * cannot help when another loop of the process takes the spare first. Here a
 * failure stops watching the listener (connections wait in the kernel's
 * queue) until one of the worker's connections closes or a short timer
 * fires; so does reaching the descriptor share, before the kernel refuses.
 */
static void accept_resume(http_worker *hw) {
    if (!hw->accept_paused || !hw->listening) return;
    hw->accept_paused = 0;
    uv_timer_stop(&hw->accept_retry);
    uv_poll_start(&hw->listener, UV_READABLE, accept_ready);
}

static void accept_retry(uv_timer_t *t) { accept_resume(t->data); }

static void accept_pause(http_worker *hw, int retry_ms) {
    if (!hw->accept_paused) {
        uv_poll_stop(&hw->listener);
        hw->accept_paused = 1;
    }
    if (retry_ms > 0) uv_timer_start(&hw->accept_retry, accept_retry, (uint64_t)retry_ms, 0);
}

/* Counted every time; logged at most once per SVC_ACCEPT_LOG_INTERVAL_MS
 * (over all workers), with how many were left out. */
static void accept_failed(http_worker *hw, int err) {
    http_state *hs = hw->hs;
    int reason = err == EMFILE ? ACCEPT_ERR_EMFILE : err == ENFILE ? ACCEPT_ERR_ENFILE : ACCEPT_ERR_OTHER;
    svc_counter_add(hs->s_accept_errors[reason], 1);
    accept_pause(hw, SVC_ACCEPT_RETRY_MS);
    long long now = (long long)(svc_now_ns() / 1000000u), last = atomic_load(&hs->accept_logged_ms);
    if ((last && now - last < SVC_ACCEPT_LOG_INTERVAL_MS) ||
        !atomic_compare_exchange_strong(&hs->accept_logged_ms, &last, now)) {
        atomic_fetch_add(&hs->accept_unlogged, 1);
        return;
    }
    long more = atomic_exchange(&hs->accept_unlogged, 0);
    char also[64] = "";
    if (more) snprintf(also, sizeof also, " (and %ld more since the last line)", more);
    svc_warn("accept failed: %s%s; new connections wait in the queue until a connection closes, "
             "retrying every %d ms",
             strerror(err), also, SVC_ACCEPT_RETRY_MS);
}

static void accept_ready(uv_poll_t *p, int status, int events) {
    (void)events;
    http_worker *hw = p->data;
    if (status < 0) {
        accept_failed(hw, -status);
        return;
    }
    for (int i = 0; i < SVC_ACCEPT_BATCH; i++) {
        if (hw->nconns >= hw->hs->accept_cap) {
            accept_pause(hw, 0); /* resumed by the next close */
            return;
        }
        int fd = accept4(hw->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) accept_failed(hw, errno);
            return;
        }
        if (svc__conn_open_fd(hw, fd) != SVC_OK) close(fd);
    }
}

int svc__http_listen(http_worker *hw) {
    int rc = uv_poll_init_socket(&hw->w->loop, &hw->listener, hw->listen_fd);
    if (rc != 0) return rc;
    hw->listener.data = hw;
    uv_timer_init(&hw->w->loop, &hw->accept_retry);
    hw->accept_retry.data = hw;
    hw->listening = 1;
    rc = uv_poll_start(&hw->listener, UV_READABLE, accept_ready);
    if (rc != 0) stop_listening(hw);
    return rc;
}

int svc__conn_open_fd(http_worker *hw, int fd) {
    svc_conn *c = conn_new(hw);
    if (!c) return SVC_ENOMEM;
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        conn_close(c); /* the handle has no fd: the caller still owns it */
        return SVC_EIO;
    }
    conn_start(c);
    return SVC_OK;
}

/*
 * Closing a listening socket resets every connection still in its accept
 * queue: clients whose handshake the kernel completed, and which may already
 * have sent a request. So a drain stops accepting in two steps. First a
 * filter on the listener drops new SYNs, while the handshakes already under
 * way complete (their last ACK passes) and are accepted as usual; a client
 * whose SYN was dropped sends it again a second later and finds the port
 * closed, a refusal it may retry elsewhere. Then, SVC_ACCEPT_GRACE_MS later,
 * the queue is emptied and the listener closed, so that new clients are
 * refused at once for the rest of the drain. Closing at once instead would
 * reset the handshakes in flight, and on a busy machine the kernel can take
 * a while to finish them (softirq work waits for a CPU like any thread).
 */
static void refuse_handshakes(int fd) {
    struct sock_filter syn_only[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13), /* the TCP flags (the filter sees the TCP header) */
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1), /* SYN without ACK */
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
    };
    struct sock_fprog prog = {.len = sizeof syn_only / sizeof syn_only[0], .filter = syn_only};
    /* Best effort: without it, the instant above stays. */
    setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
}

void svc__http_stop_accepting(http_worker *hw) {
    if (!hw->listening || hw->accept_until) return; /* once */
    refuse_handshakes(hw->listen_fd);
    hw->accept_until = uv_now(&hw->w->loop) + SVC_ACCEPT_GRACE_MS;
}

static void stop_listening(http_worker *hw) {
    for (;;) {
        int fd = accept4(hw->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            break;
        }
        if (svc__conn_open_fd(hw, fd) != SVC_OK) close(fd);
    }
    /* Closing the handle stops the polling before the socket goes. */
    uv_close((uv_handle_t *)&hw->listener, NULL);
    uv_close((uv_handle_t *)&hw->accept_retry, NULL);
    close(hw->listen_fd);
    hw->listen_fd = -1;
    hw->listening = 0;
}

static void conn_timeout(svc_conn *c) {
    switch (c->state) {
    case CONN_HEADERS:
    case CONN_BODY:
        stop_reading(c);
        c->pending_off = c->pending_len = 0;
        fail_request(c, 408, "request_timeout",
                     c->state == CONN_HEADERS ? "request headers not received in time"
                                              : "request body not received in time");
        if (!c->closing) svc__conn_flush(c);
        break;
    case CONN_IDLE:
        /* A response still being delivered is not idleness, as long as the
         * client keeps taking it: extend while libuv's queue shrinks, so a
         * client that stops reading is still cut off. */
        if (c->writing > 0 && !c->closing) {
            size_t queued = c->tcp.write_queue_size;
            if (c->queued_mark == 0 || queued < c->queued_mark) {
                c->deadline = uv_now(&c->w->loop) + (uint64_t)conn_cfg(c)->idle_timeout_ms;
                c->queued_mark = queued ? queued : 1;
                break;
            }
        }
        conn_close(c);
        break;
    default:
        conn_close(c);
        break;
    }
}

void svc__http_tick(http_worker *hw) {
    svc__http_date_tick(hw);
    uint64_t now = uv_now(&hw->w->loop);
    svc_conn *c = hw->conns;
    while (c) {
        svc_conn *next = c->next;
        if (c->deadline && now >= c->deadline && !c->closing) conn_timeout(c);
        c = next;
    }
    if (hw->w->stopping) worker_maybe_exit(hw);
}

void svc__http_close_idle(http_worker *hw, int force) {
    if (force) hw->accept_until = 0;
    svc_conn *c = hw->conns;
    while (c) {
        svc_conn *next = c->next;
        if (!c->closing) {
            if (force) conn_close(c);
            else close_if_idle(c);
        }
        c = next;
    }
    worker_maybe_exit(hw);
}

/* ---- the request interface (runtime/module.h) ----------------------------- */

static int http_stream_start(svc_req *req) {
    svc_conn *c = req->transport_data;
    if (!c || c->closing) return SVC_ECLOSED;
    svc__http_stream_head(c->hw, &req->res, &c->out);
    svc__conn_flush(c);
    return SVC_OK;
}

static int http_stream_write(svc_req *req, const void *data, size_t len) {
    svc_conn *c = req->transport_data;
    if (!c || c->closing) return SVC_ECLOSED;
    /* Backpressure: a producer faster than its reader is told to wait
     * rather than queueing without bound. */
    if (c->out.len + c->writing > SVC_OUTPUT_HIGH_WATER) return SVC_EAGAIN;
    svc__http_stream_chunk(&req->res, &c->out, data, len);
    svc__conn_flush(c);
    return SVC_OK;
}

const svc_req_ops svc__http_req_ops = {
    .name = NULL,
    .finish = http_finish,
    .stream_start = http_stream_start,
    .stream_write = http_stream_write,
};
