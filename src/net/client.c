/*
 * Outbound HTTP/1.1 client on libuv and http-parser (see svckit/client.h).
 *
 * Objects and their lifetimes:
 *  - svc_http_client: reference-counted. The user holds one reference (dropped
 *    by svc_http_client_free) and every libuv handle or request that may still
 *    call back into us holds one, so a close callback that runs after
 *    svc_http_client_free still finds its client.
 *  - request: one per svc_http_client_request. It owns a uv_timer_t (the total
 *    deadline, also used to deliver errors found synchronously, so the user
 *    callback never runs inside svc_http_client_request) and is freed by that
 *    timer's close callback, never inside one of its own callbacks.
 *  - conn: a TCP connection with a uv_timer_t for the connect deadline and,
 *    when pooled, the idle deadline. Freed once both handles have closed.
 *  - resolver: one uv_getaddrinfo in flight. The request may finish (timeout,
 *    free) before the resolver answers, so the resolver is a separate object
 *    that outlives it and frees itself in its callback.
 *
 * Every path that calls a user callback does so last and returns at once,
 * because the callback may start requests or free the client.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <http_parser.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "obs/internal.h"
#include "svckit/client.h"

/* One read buffer per client: libuv calls alloc_cb and then read_cb for the
 * same stream before any other read, and read_cb parses the bytes at once. */
#define CLIENT_READ_BUFFER (64 * 1024)
#define CLIENT_MAX_HOST 253

typedef struct conn conn;
typedef struct request request;
typedef struct resolver resolver;
typedef struct pool pool;

enum conn_state { CONN_CONNECTING, CONN_ACTIVE, CONN_IDLE };

struct conn {
    svc_http_client *c;
    conn *next, *prev;           /* every open conn of the client */
    conn *pnext, *pprev;         /* idle list of its pool */
    char *key;                   /* "host:port", the pool it returns to */
    uv_tcp_t tcp;
    uv_timer_t timer;            /* connect deadline, then idle deadline */
    uv_connect_t creq;
    uv_write_t wreq;
    svc_buf out;                 /* bytes of the write in flight */
    http_parser parser;
    request *req;                /* attached request, NULL when idle */
    enum conn_state state;
    int closing;
    int writing;
    int handles_open;
};

struct pool {
    pool *next;
    conn *idle;                  /* most recently used first */
    int nidle;
    char key[];
};

struct resolver {
    uv_getaddrinfo_t gai;
    svc_http_client *c;
    request *req;                /* NULL once the request gave up on it */
};

struct request {
    svc_http_client *c;
    int traced;                  /* span: a client span of a sampled trace */
    svc_span span;
    request *next, *prev;
    uv_timer_t timer;
    svc_http_client_cb cb;
    void *ud;
    char *host;                  /* for getaddrinfo; IPv6 without brackets */
    char *key;
    int port;
    int is_ip;
    struct sockaddr_storage addr;/* when is_ip */
    struct addrinfo *ai;         /* when resolved */
    struct addrinfo *ai_next;    /* next address to try */
    resolver *gai;
    conn *conn;
    svc_buf wire;                /* the serialised request */
    int head;
    int idempotent;
    int no_reuse;                /* the caller sent "Connection: close" */
    int reused;                  /* on a conn taken from the pool */
    int retried;
    int got_bytes;               /* some response byte arrived on this conn */
    int deferred_err;
    int done;
    /* Response under construction. Header names and values live in hbuf as
     * "name\0value\0..."; hoff holds their offsets (two per header) because
     * hbuf moves as it grows. */
    int status;
    svc_buf hbuf;
    size_t *hoff;
    size_t nhdr, hcap;
    int hstate;                  /* 0: none open, 1: in a name, 2: in a value */
    svc_buf body;
    int perr;                    /* status set by a parser callback */
    int complete;
    int keep_alive;
};

struct svc_http_client {
    uv_loop_t *loop;
    int refs;
    int closing;
    int connect_timeout_ms;
    int max_idle;
    int idle_timeout_ms;
    size_t max_response;
    request *reqs;
    conn *conns;
    pool *pools;
    char rbuf[CLIENT_READ_BUFFER];
};

static void client_unref(svc_http_client *c) {
    if (--c->refs > 0) return;
    while (c->pools) {
        pool *p = c->pools;
        c->pools = p->next;
        free(p);
    }
    free(c);
}

/* ---- pools ---------------------------------------------------------------- */

static pool *pool_find(svc_http_client *c, const char *key, pool ***link) {
    pool **pp = &c->pools;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->key, key) == 0) break;
    if (link) *link = pp;
    return *pp;
}

static void pool_remove(svc_http_client *c, conn *cn) {
    pool **link;
    pool *p = pool_find(c, cn->key, &link);
    if (!p) return;
    if (cn->pprev) cn->pprev->pnext = cn->pnext;
    else p->idle = cn->pnext;
    if (cn->pnext) cn->pnext->pprev = cn->pprev;
    cn->pnext = cn->pprev = NULL;
    /* Empty pools go away so that a long-lived client talking to many
     * short-lived instances does not accumulate them. */
    if (--p->nidle == 0) {
        *link = p->next;
        free(p);
    }
}

/* ---- connections ---------------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h) {
    conn *cn = h->data;
    if (--cn->handles_open > 0) return;
    svc_http_client *c = cn->c;
    svc_buf_free(&cn->out);
    free(cn->key);
    free(cn);
    client_unref(c);
}

/* Closes a conn that no longer has a request attached (callers detach first).
 * Pending connect and write callbacks run with UV_ECANCELED before the close
 * callbacks, and see `closing`. */
static void conn_close(conn *cn) {
    if (cn->closing) return;
    svc_http_client *c = cn->c;
    cn->closing = 1;
    if (cn->state == CONN_IDLE) pool_remove(c, cn);
    if (cn->prev) cn->prev->next = cn->next;
    else c->conns = cn->next;
    if (cn->next) cn->next->prev = cn->prev;
    cn->next = cn->prev = NULL;
    uv_close((uv_handle_t *)&cn->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&cn->timer, conn_handle_closed);
}

static conn *conn_new(svc_http_client *c, const char *key) {
    conn *cn = calloc(1, sizeof *cn);
    if (!cn) return NULL;
    cn->key = strdup(key);
    if (!cn->key || uv_tcp_init(c->loop, &cn->tcp) != 0) {
        free(cn->key);
        free(cn);
        return NULL;
    }
    uv_timer_init(c->loop, &cn->timer); /* cannot fail */
    cn->c = c;
    cn->tcp.data = cn;
    cn->timer.data = cn;
    cn->creq.data = cn;
    cn->wreq.data = cn;
    cn->handles_open = 2;
    cn->state = CONN_CONNECTING;
    cn->next = c->conns;
    if (c->conns) c->conns->prev = cn;
    c->conns = cn;
    c->refs++;
    return cn;
}

static void on_idle_timeout(uv_timer_t *t) { conn_close(t->data); }

/* Puts a conn whose exchange ended cleanly into its pool, or closes it. Idle
 * conns keep reading so that a close by the server is noticed at once, and are
 * unref'd so that they alone do not keep the loop running. */
static void conn_release(conn *cn, int reusable) {
    svc_http_client *c = cn->c;
    pool **link;
    pool *p = pool_find(c, cn->key, &link);
    if (!reusable || c->closing || (p && p->nidle >= c->max_idle)) {
        conn_close(cn);
        return;
    }
    if (!p) {
        size_t klen = strlen(cn->key);
        p = calloc(1, sizeof *p + klen + 1);
        if (!p) {
            conn_close(cn);
            return;
        }
        memcpy(p->key, cn->key, klen + 1);
        *link = p;
    }
    cn->state = CONN_IDLE;
    cn->pnext = p->idle;
    cn->pprev = NULL;
    if (p->idle) p->idle->pprev = cn;
    p->idle = cn;
    p->nidle++;
    uv_timer_start(&cn->timer, on_idle_timeout, (uint64_t)c->idle_timeout_ms, 0);
    uv_unref((uv_handle_t *)&cn->tcp);
    uv_unref((uv_handle_t *)&cn->timer);
}

static conn *pool_take(svc_http_client *c, const char *key) {
    pool *p = pool_find(c, key, NULL);
    if (!p) return NULL;
    conn *cn = p->idle;
    pool_remove(c, cn);
    uv_timer_stop(&cn->timer);
    uv_ref((uv_handle_t *)&cn->tcp);
    uv_ref((uv_handle_t *)&cn->timer);
    cn->state = CONN_ACTIVE;
    return cn;
}

/* ---- requests: completion ------------------------------------------------- */

static void request_closed(uv_handle_t *h) {
    request *r = h->data;
    svc_http_client *c = r->c;
    if (r->ai) uv_freeaddrinfo(r->ai);
    free(r->host);
    free(r->key);
    svc_buf_free(&r->wire);
    svc_buf_free(&r->hbuf);
    svc_buf_free(&r->body);
    free(r->hoff);
    free(r);
    client_unref(c);
}

/* Ends a request: detaches it from whatever it was waiting on and runs the
 * callback, exactly once. Must be the caller's last action. */
static void finish(request *r, int err) {
    svc_http_client *c = r->c;
    if (r->done) return;
    r->done = 1;
    if (r->prev) r->prev->next = r->next;
    else c->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    r->next = r->prev = NULL;
    uv_timer_stop(&r->timer);
    if (r->gai) {
        r->gai->req = NULL;
        uv_cancel((uv_req_t *)&r->gai->gai);
        r->gai = NULL;
    }
    if (r->conn) {
        conn *cn = r->conn;
        cn->req = NULL;
        r->conn = NULL;
        conn_close(cn); /* mid-exchange: its state is unknown */
    }
    /* The memory stays valid until the close callback, after the user's. */
    uv_close((uv_handle_t *)&r->timer, request_closed);

    svc_http_response resp;
    const char **names = NULL, **values = NULL;
    if (err == SVC_OK) {
        if (r->hbuf.oom || r->body.oom) err = SVC_ENOMEM;
        size_t n = r->nhdr;
        if (err == SVC_OK && n) {
            names = malloc(n * sizeof *names);
            values = malloc(n * sizeof *values);
            if (!names || !values) err = SVC_ENOMEM;
        }
        if (err == SVC_OK) {
            for (size_t i = 0; i < n; i++) {
                char *name = r->hbuf.data + r->hoff[2 * i];
                for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
                names[i] = name;
                values[i] = r->hbuf.data + r->hoff[2 * i + 1];
            }
            resp.status = r->status;
            resp.body = r->body.len ? r->body.data : ""; /* NUL-terminated only when len > 0 */
            resp.body_len = r->body.len;
            resp.nheaders = n;
            resp.header_names = names;
            resp.header_values = values;
        }
    }
    if (r->traced) {
        r->span.status = err == SVC_OK ? (int16_t)r->status : 0;
        r->span.error = err != SVC_OK || r->status >= 500;
        if (err != SVC_OK) svc_span_set(r->span.code, sizeof r->span.code, svc_status_str(err));
        svc_span_end(&r->span);
    }
    r->cb(err, err == SVC_OK ? &resp : NULL, r->ud);
    free(names);
    free(values);
}

static void on_request_timer(uv_timer_t *t) {
    request *r = t->data;
    finish(r, r->deferred_err ? r->deferred_err : SVC_ETIMEDOUT);
}

/* Reports an error found while the caller is still inside
 * svc_http_client_request: the callback runs on the next loop iteration. */
static void defer_fail(request *r, int err) {
    r->deferred_err = err;
    uv_timer_start(&r->timer, on_request_timer, 0, 0);
}

/* ---- response parsing ------------------------------------------------------ */

static void response_reset(request *r) {
    r->status = 0;
    svc_buf_reset(&r->hbuf);
    r->nhdr = 0;
    r->hstate = 0;
    svc_buf_reset(&r->body);
}

static int over_cap(request *r, size_t more) {
    size_t have = r->hbuf.len + r->body.len;
    if (more > r->c->max_response || have > r->c->max_response - more) {
        r->perr = SVC_ERANGE;
        return 1;
    }
    return 0;
}

static int begin_header(request *r) {
    if (r->nhdr == SVC_CLIENT_MAX_HEADERS) {
        r->perr = SVC_ERANGE;
        return -1;
    }
    if (r->nhdr == r->hcap) {
        size_t cap = r->hcap ? r->hcap * 2 : 16;
        if (cap > SVC_CLIENT_MAX_HEADERS) cap = SVC_CLIENT_MAX_HEADERS;
        size_t *h = realloc(r->hoff, cap * 2 * sizeof *h);
        if (!h) {
            r->perr = SVC_ENOMEM;
            return -1;
        }
        r->hoff = h;
        r->hcap = cap;
    }
    r->hoff[2 * r->nhdr] = r->hbuf.len;
    r->hoff[2 * r->nhdr + 1] = r->hbuf.len; /* set properly by begin_value */
    r->nhdr++;
    r->hstate = 1;
    return 0;
}

/* Ends the open name (if any) and opens its value. */
static void begin_value(request *r) {
    svc_buf_append(&r->hbuf, "", 1);
    r->hoff[2 * (r->nhdr - 1) + 1] = r->hbuf.len;
    r->hstate = 2;
}

static void end_header(request *r) {
    if (r->hstate == 1) begin_value(r);
    if (r->hstate == 2) svc_buf_append(&r->hbuf, "", 1);
    r->hstate = 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    request *r = ((conn *)p->data)->req;
    if (r->hstate != 1) {
        end_header(r);
        if (begin_header(r) != 0) return -1;
    }
    if (over_cap(r, len + 2)) return -1;
    svc_buf_append(&r->hbuf, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    request *r = ((conn *)p->data)->req;
    if (r->hstate == 1) begin_value(r);
    if (over_cap(r, len + 1)) return -1;
    svc_buf_append(&r->hbuf, at, len);
    return 0;
}

static int on_headers_complete(http_parser *p) {
    request *r = ((conn *)p->data)->req;
    end_header(r);
    r->status = (int)p->status_code;
    /* The parser takes any 1 to 3 digits; a status is 3 (RFC 9112 4), and
     * "HTTP/1.1 42" passed on would be a broken response of ours. No protocol
     * switch is ever asked for, so a 101 is a broken peer too. */
    if (r->status < 100 || r->status == 101) return -1;
    int interim = r->status / 100 == 1;
    int no_body = r->head || interim || r->status == 204 || r->status == 304;
    if (!no_body && !(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX) {
        /* Refuse an announced oversize body before reading any of it. */
        if (p->content_length > (uint64_t)r->c->max_response ||
            over_cap(r, (size_t)p->content_length)) {
            r->perr = SVC_ERANGE;
            return -1;
        }
        if (svc_buf_reserve(&r->body, (size_t)p->content_length) != SVC_OK) {
            r->perr = SVC_ENOMEM;
            return -1;
        }
    }
    /* 1 tells the parser there is no body whatever the headers say: it knows
     * nothing of HEAD and reads a Content-Length on a 304. */
    return no_body ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    request *r = ((conn *)p->data)->req;
    if (over_cap(r, len)) return -1;
    svc_buf_append(&r->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p) {
    request *r = ((conn *)p->data)->req;
    if (r->status / 100 == 1) {
        /* Interim (100 Continue, 103 Early Hints): the final response follows. */
        response_reset(r);
        return 0;
    }
    r->complete = 1;
    r->keep_alive = http_should_keep_alive(p);
    /* Stop here: bytes after the response are not ours to parse. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- the exchange ---------------------------------------------------------- */

static int dispatch(request *r, int allow_pool);

/* A conn failed (connect, write, read or parse). Tries the next address, or a
 * fresh connection when a reused one died before answering, else fails. */
static void conn_failed(conn *cn, int err) {
    request *r = cn->req;
    int was_connecting = cn->state == CONN_CONNECTING;
    cn->req = NULL;
    conn_close(cn);
    if (!r) return;
    r->conn = NULL;
    if (was_connecting && r->ai_next) {
        if (dispatch(r, 0) == SVC_OK) return;
    } else if (r->reused && !r->got_bytes && !r->retried && r->idempotent) {
        /* The server most likely closed the idle conn just as we reused it;
         * the request never reached it, so a replay is safe for idempotent
         * methods. */
        r->retried = 1;
        r->reused = 0;
        if (r->ai) r->ai_next = r->ai;
        if (dispatch(r, 0) == SVC_OK) return;
        err = SVC_EIO;
    }
    finish(r, err);
}

static void on_write(uv_write_t *w, int status) {
    conn *cn = w->data;
    cn->writing = 0;
    svc_buf_free(&cn->out);
    if (status < 0 && !cn->closing && cn->req) conn_failed(cn, SVC_EIO);
}

static int start_exchange(conn *cn, request *r) {
    cn->req = r;
    r->conn = cn;
    r->got_bytes = 0;
    r->complete = 0;
    r->perr = 0;
    response_reset(r);
    http_parser_init(&cn->parser, HTTP_RESPONSE);
    cn->parser.data = cn;
    /* The conn keeps its own copy: a write may outlive the request (timeout)
     * and the request may need its bytes again (retry). */
    svc_buf_reset(&cn->out);
    svc_buf_append(&cn->out, r->wire.data, r->wire.len);
    if (cn->out.oom) return SVC_ENOMEM;
    uv_buf_t b = uv_buf_init(cn->out.data, (unsigned)cn->out.len);
    if (uv_write(&cn->wreq, (uv_stream_t *)&cn->tcp, &b, 1, on_write) != 0) return SVC_EIO;
    cn->writing = 1;
    return SVC_OK;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    conn *cn = h->data;
    *buf = uv_buf_init(cn->c->rbuf, sizeof cn->c->rbuf);
}

static void response_done(conn *cn, request *r, int reusable) {
    cn->req = NULL;
    r->conn = NULL;
    conn_release(cn, reusable && r->keep_alive && !r->no_reuse && !cn->writing);
    finish(r, SVC_OK);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    conn *cn = s->data;
    if (cn->closing || nread == 0) return;
    request *r = cn->req;
    if (!r) {
        /* Idle: EOF, a reset, or bytes nobody asked for. Either way the conn
         * cannot carry another request. */
        conn_close(cn);
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF && r->got_bytes && !r->perr) {
            /* Tells the parser the body ends here (responses without length). */
            http_parser_execute(&cn->parser, &parser_settings, NULL, 0);
            if (r->complete) {
                response_done(cn, r, 0);
                return;
            }
        }
        conn_failed(cn, r->perr ? r->perr : SVC_EIO);
        return;
    }
    r->got_bytes = 1;
    size_t n = http_parser_execute(&cn->parser, &parser_settings, buf->base, (size_t)nread);
    if (r->complete) {
        response_done(cn, r, n == (size_t)nread);
        return;
    }
    if (r->perr) conn_failed(cn, r->perr);
    else if (HTTP_PARSER_ERRNO(&cn->parser) != HPE_OK) conn_failed(cn, SVC_EIO);
}

static void on_connect(uv_connect_t *creq, int status) {
    conn *cn = creq->data;
    if (cn->closing) return;
    uv_timer_stop(&cn->timer);
    if (status < 0) {
        conn_failed(cn, SVC_EIO);
        return;
    }
    cn->state = CONN_ACTIVE;
    uv_tcp_nodelay(&cn->tcp, 1);
    if (uv_read_start((uv_stream_t *)&cn->tcp, on_alloc, on_read) != 0 ||
        start_exchange(cn, cn->req) != SVC_OK)
        conn_failed(cn, SVC_EIO);
}

static void on_connect_timeout(uv_timer_t *t) { conn_failed(t->data, SVC_ETIMEDOUT); }

static int connect_addr(request *r, const struct sockaddr *sa) {
    conn *cn = conn_new(r->c, r->key);
    if (!cn) return SVC_ENOMEM;
    if (uv_tcp_connect(&cn->creq, &cn->tcp, sa, on_connect) != 0) {
        conn_close(cn);
        return SVC_EIO;
    }
    cn->req = r;
    r->conn = cn;
    uv_timer_start(&cn->timer, on_connect_timeout, (uint64_t)r->c->connect_timeout_ms, 0);
    return SVC_OK;
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai) {
    resolver *rs = g->data;
    svc_http_client *c = rs->c;
    request *r = rs->req;
    free(rs);
    if (!r) {
        if (ai) uv_freeaddrinfo(ai);
        client_unref(c);
        return;
    }
    r->gai = NULL;
    if (status < 0 || !ai) {
        if (ai) uv_freeaddrinfo(ai);
        finish(r, SVC_EIO);
    } else {
        r->ai = ai;
        r->ai_next = ai;
        int rc = dispatch(r, 0);
        if (rc != SVC_OK) finish(r, rc);
    }
    client_unref(c); /* last: the callback above may have freed the client */
}

static int resolve(request *r) {
    resolver *rs = calloc(1, sizeof *rs);
    if (!rs) return SVC_ENOMEM;
    rs->c = r->c;
    rs->req = r;
    rs->gai.data = rs;
    char port[8];
    snprintf(port, sizeof port, "%d", r->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    if (uv_getaddrinfo(r->c->loop, &rs->gai, on_resolved, r->host, port, &hints) != 0) {
        free(rs);
        return SVC_EIO;
    }
    r->c->refs++;
    r->gai = rs;
    return SVC_OK;
}

/* Gets the request onto a connection: an idle one from the pool if allowed,
 * else a new one to the next address (resolving the name first if needed).
 * Never calls the user callback. */
static int dispatch(request *r, int allow_pool) {
    if (allow_pool) {
        conn *cn;
        while ((cn = pool_take(r->c, r->key))) {
            r->reused = 1;
            if (start_exchange(cn, r) == SVC_OK) return SVC_OK;
            cn->req = NULL;
            r->conn = NULL;
            r->reused = 0;
            conn_close(cn);
        }
    }
    if (r->is_ip) return connect_addr(r, (const struct sockaddr *)&r->addr);
    if (!r->ai) return resolve(r);
    while (r->ai_next) {
        struct addrinfo *ai = r->ai_next;
        r->ai_next = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        if (connect_addr(r, ai->ai_addr) == SVC_OK) return SVC_OK;
    }
    return SVC_EIO;
}

/* ---- request building ------------------------------------------------------ */

static int is_tchar(unsigned char ch) {
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int is_host_char(unsigned char ch) {
    return isalnum(ch) || ch == '-' || ch == '.' || ch == '_';
}

/* Splits "http://host[:port][/path][?query][#fragment]" into its parts and
 * fills the request's host, port, key and address. *path and *plen point into url
 * (without the fragment). */
static int parse_url(request *r, const char *url, const char **path, size_t *plen) {
    if (strncasecmp(url, "http://", 7) != 0) return SVC_EINVAL;
    const char *p = url + 7, *h, *hend;
    char host[CLIENT_MAX_HOST + 1];
    if (*p == '[') {
        h = p + 1;
        hend = strchr(h, ']');
        if (!hend || hend == h || (size_t)(hend - h) >= INET6_ADDRSTRLEN) return SVC_EINVAL;
        p = hend + 1;
    } else {
        h = p;
        while (is_host_char((unsigned char)*p)) p++;
        hend = p;
        if (hend == h || (size_t)(hend - h) > CLIENT_MAX_HOST) return SVC_EINVAL;
    }
    size_t hlen = (size_t)(hend - h);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    for (char *q = host; *q; q++) *q = (char)tolower((unsigned char)*q);

    int port = 80;
    if (*p == ':') {
        p++;
        port = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            port = port * 10 + (*p++ - '0');
            if (++digits > 5) return SVC_EINVAL;
        }
        if (digits == 0 || port < 1 || port > 65535) return SVC_EINVAL;
    }
    if (*p && *p != '/' && *p != '?' && *p != '#') return SVC_EINVAL;
    const char *ps = p;
    /* The target goes on the request line verbatim: printable ASCII only. */
    while (*p && *p != '#') {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) return SVC_EINVAL;
        p++;
    }
    *path = ps;
    *plen = (size_t)(p - ps);

    memset(&r->addr, 0, sizeof r->addr);
    if (h[-1] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&r->addr;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) return SVC_EINVAL;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        r->is_ip = 1;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&r->addr;
        if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
            a4->sin_family = AF_INET;
            a4->sin_port = htons((uint16_t)port);
            r->is_ip = 1;
        }
    }
    r->port = port;
    r->host = strdup(host);
    size_t klen = hlen + 16;
    r->key = malloc(klen);
    if (!r->host || !r->key) return SVC_ENOMEM;
    if (h[-1] == '[') snprintf(r->key, klen, "[%s]:%d", host, port);
    else snprintf(r->key, klen, "%s:%d", host, port);
    return SVC_OK;
}

/* Length of the header name if h is a valid "Name: value" line, else 0. */
static size_t check_header(const char *h) {
    const char *colon = strchr(h, ':');
    if (!colon || colon == h) return 0;
    for (const char *p = h; p < colon; p++)
        if (!is_tchar((unsigned char)*p)) return 0;
    for (const char *p = colon + 1; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return 0;
    }
    return (size_t)(colon - h);
}

static int name_is(const char *h, size_t n, const char *name) {
    return strlen(name) == n && strncasecmp(h, name, n) == 0;
}

static int build_wire(request *r, const char *method, const char *path, size_t plen,
                      const char *const *headers, const void *body, size_t body_len) {
    svc_buf *w = &r->wire;
    int have_host = 0;
    for (size_t i = 0; headers && headers[i]; i++) {
        const char *h = headers[i];
        size_t n = check_header(h);
        if (n == 0) return SVC_EINVAL;
        /* Framing is the client's job; a caller's copy could contradict it. */
        if (name_is(h, n, "content-length") || name_is(h, n, "transfer-encoding"))
            return SVC_EINVAL;
        if (name_is(h, n, "host")) have_host = 1;
        if (name_is(h, n, "connection")) {
            for (const char *v = h + n + 1; *v; v++)
                if (strncasecmp(v, "close", 5) == 0) r->no_reuse = 1;
        }
    }
    svc_buf_printf(w, "%s ", method);
    if (plen == 0 || path[0] == '?') svc_buf_putc(w, '/');
    svc_buf_append(w, path, plen);
    svc_buf_puts(w, " HTTP/1.1\r\n");
    if (!have_host) {
        int v6 = strchr(r->host, ':') != NULL;
        svc_buf_printf(w, "Host: %s%s%s", v6 ? "[" : "", r->host, v6 ? "]" : "");
        if (r->port != 80) svc_buf_printf(w, ":%d", r->port);
        svc_buf_puts(w, "\r\n");
    }
    for (size_t i = 0; headers && headers[i]; i++) {
        svc_buf_puts(w, headers[i]);
        svc_buf_puts(w, "\r\n");
    }
    int wants_length = !strcmp(method, "POST") || !strcmp(method, "PUT") ||
                       !strcmp(method, "PATCH");
    if (body_len > 0 || wants_length) {
        svc_buf_puts(w, "Content-Length: ");
        svc_buf_put_u64(w, body_len);
        svc_buf_puts(w, "\r\n");
    }
    svc_buf_puts(w, "\r\n");
    svc_buf_append(w, body, body_len);
    return w->oom ? SVC_ENOMEM : SVC_OK;
}

/* ---- public API ------------------------------------------------------------ */

svc_http_client *svc_http_client_new(uv_loop_t *loop, const svc_http_client_opts *opts) {
    if (!loop) return NULL;
    svc_http_client_opts o = {0};
    if (opts) o = *opts;
    if (o.connect_timeout_ms < 0 || o.max_idle_per_host < 0 || o.idle_timeout_ms < 0)
        return NULL;
    svc_http_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->loop = loop;
    c->refs = 1;
    c->connect_timeout_ms = o.connect_timeout_ms ? o.connect_timeout_ms : SVC_CLIENT_CONNECT_TIMEOUT_MS;
    c->max_idle = o.max_idle_per_host ? o.max_idle_per_host : SVC_CLIENT_MAX_IDLE_PER_HOST;
    c->idle_timeout_ms = o.idle_timeout_ms ? o.idle_timeout_ms : SVC_CLIENT_IDLE_TIMEOUT_MS;
    c->max_response = o.max_response ? o.max_response : SVC_CLIENT_MAX_RESPONSE;
    /* A write to a peer that has gone away raises SIGPIPE, and libuv cannot
     * pass MSG_NOSIGNAL; left at its default it would kill the process on an
     * ordinary network event. A handler someone installed is left alone. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
        sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    return c;
}

void svc_http_client_free(svc_http_client *c) {
    if (!c || c->closing) return;
    c->closing = 1;
    /* One at a time from the head: each callback may finish others. */
    while (c->reqs) finish(c->reqs, SVC_ECLOSED);
    while (c->conns) {
        conn *cn = c->conns;
        if (cn->req) cn->req->conn = NULL;
        cn->req = NULL;
        conn_close(cn);
    }
    client_unref(c);
}

const char *svc_http_response_header(const svc_http_response *r, const char *name) {
    if (!r || !name) return NULL;
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->header_names[i], name) == 0) return r->header_values[i];
    return NULL;
}

int svc_http_client_request(svc_http_client *c, const char *method, const char *url,
                            const char *const *headers, const void *body, size_t body_len,
                            int timeout_ms, svc_http_client_cb cb, void *ud) {
    if (!c || !method || !url || !cb || timeout_ms < 0 || (body_len && !body))
        return SVC_EINVAL;
    if (c->closing) return SVC_ECLOSED;
    if (!*method) return SVC_EINVAL;
    for (const char *m = method; *m; m++)
        if (!is_tchar((unsigned char)*m)) return SVC_EINVAL;

    request *r = calloc(1, sizeof *r);
    if (!r) return SVC_ENOMEM;
    r->c = c;
    r->cb = cb;
    r->ud = ud;
    r->head = strcmp(method, "HEAD") == 0;
    r->idempotent = !strcmp(method, "GET") || r->head || !strcmp(method, "PUT") ||
                    !strcmp(method, "DELETE") || !strcmp(method, "OPTIONS");
    const char *path;
    size_t plen;
    int rc = parse_url(r, url, &path, &plen);
    /* A client span when the calling thread works for one (a handler, an
     * event handler), its id sent on as traceparent unless the caller sets
     * one. The OTLP exporter's thread has none: its POSTs are not traced. */
    const svc_trace_ctx *parent = svc__trace_current();
    const char **with_tp = NULL;
    char tp[sizeof "traceparent: " + SVC_TRACEPARENT_LEN];
    if (rc == SVC_OK && parent) {
        size_t n = 0;
        int has = 0;
        for (const char *const *h = headers; h && *h; h++, n++)
            if (strncasecmp(*h, "traceparent:", 12) == 0) has = 1;
        char name[SVC_TRACE_NAME_MAX];
        snprintf(name, sizeof name, "%s %s", method, r->host);
        r->traced = svc_span_begin(&r->span, parent, SVC_SPAN_CLIENT, name);
        svc_span_set(r->span.peer, sizeof r->span.peer, r->key);
        if (!has && (with_tp = malloc((n + 2) * sizeof *with_tp))) {
            svc_trace_ctx ctx = svc_span_ctx(&r->span);
            memcpy(tp, "traceparent: ", 13);
            svc__traceparent_format(tp + 13, &ctx);
            for (size_t i = 0; i < n; i++) with_tp[i] = headers[i];
            with_tp[n] = tp;
            with_tp[n + 1] = NULL;
        }
    }
    if (rc == SVC_OK)
        rc = build_wire(r, method, path, plen, with_tp ? (const char *const *)with_tp : headers, body, body_len);
    free(with_tp);
    if (rc != SVC_OK) {
        free(r->host);
        free(r->key);
        svc_buf_free(&r->wire);
        free(r);
        return rc;
    }
    uv_timer_init(c->loop, &r->timer);
    r->timer.data = r;
    c->refs++;
    r->next = c->reqs;
    if (c->reqs) c->reqs->prev = r;
    c->reqs = r;
    uv_timer_start(&r->timer, on_request_timer,
                   (uint64_t)(timeout_ms ? timeout_ms : SVC_CLIENT_TOTAL_TIMEOUT_MS), 0);
    rc = dispatch(r, 1);
    if (rc != SVC_OK) defer_fail(r, rc);
    return SVC_OK;
}

/* ---- blocking helper ------------------------------------------------------- */

typedef struct fetch_state {
    int done;
    int err;
    int status;
    char *body;
    size_t body_len;
    int want_body;
} fetch_state;

static void fetch_cb(int err, const svc_http_response *resp, void *ud) {
    fetch_state *st = ud;
    st->done = 1;
    st->err = err;
    if (err != SVC_OK) return;
    st->status = resp->status;
    st->body_len = resp->body_len;
    if (st->want_body) {
        st->body = malloc(resp->body_len + 1);
        if (!st->body) {
            st->err = SVC_ENOMEM;
            return;
        }
        memcpy(st->body, resp->body, resp->body_len);
        st->body[resp->body_len] = '\0';
    }
}

int svc_http_fetch(const char *method, const char *url, const char *const *headers,
                   const void *body, size_t body_len, int timeout_ms,
                   int *status, char **body_out, size_t *body_len_out) {
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) return SVC_EIO;
    fetch_state st = {.want_body = body_out != NULL};
    int rc = SVC_ENOMEM;
    svc_http_client *c = svc_http_client_new(&loop, NULL);
    if (c) {
        rc = svc_http_client_request(c, method, url, headers, body, body_len, timeout_ms,
                                     fetch_cb, &st);
        while (rc == SVC_OK && !st.done) uv_run(&loop, UV_RUN_ONCE);
        svc_http_client_free(c);
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* lets every handle close */
    uv_loop_close(&loop);
    if (rc != SVC_OK) return rc;
    if (st.err != SVC_OK) {
        free(st.body);
        return st.err;
    }
    if (status) *status = st.status;
    if (body_out) *body_out = st.body;
    if (body_len_out) *body_len_out = st.body_len;
    return SVC_OK;
}
