/*
 * The NATS client (nats.h): messages, the protocol parser, and the
 * connection on a libuv loop.
 *
 * A connection moves through: IDLE (waiting to retry) -> RESOLVING ->
 * CONNECTING (TCP) -> HANDSHAKE (INFO read, CONNECT + PING sent) ->
 * CONNECTED (the PONG came: SUBs and the reconnect buffer go out) and, when
 * the socket fails, back to IDLE through DOWN (the TCP handle closing).
 * Output is appended to `out` and written from the prepare and check
 * handles, once per loop iteration, one uv_write at a time: publishes made
 * in one iteration leave in one write.
 */
#define _GNU_SOURCE /* memmem */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "net/nats.h"
#include "net/tls.h"
#include "svckit/json.h"

#ifndef SVC_VERSION
#define SVC_VERSION "0.0.0"
#endif

/* A header field name: an RFC 9110 token. */
int svc__nats_header_name_ok(const char *s) {
    if (!s || !*s) return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) && !strchr("!#$%&'*+-.^_`|~", c)) return 0;
    }
    return 1;
}

/* ---- byte buffers that, unlike svc_buf, recover from a failed allocation ---- */

typedef struct nbuf {
    char *data;
    size_t len, cap;
} nbuf;

static int nbuf_reserve(nbuf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

static void nbuf_free(nbuf *b) {
    free(b->data);
    *b = (nbuf){0};
}

/* ---- messages --------------------------------------------------------------- */

static int ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

/* Parses the header block copied at h (NUL-terminated, len bytes) in place. */
static int parse_headers(svc_nats_msg *m, char *h, size_t len, size_t maxn) {
    if (len < 8 || strncmp(h, "NATS/1.0", 8) != 0) return -1;
    char *p = h + 8, *end = h + len;
    char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) return -1;
    /* "NATS/1.0 503" or "NATS/1.0 408 Request Timeout" */
    char *q = p;
    while (q < eol && (*q == ' ' || *q == '\t')) q++;
    if (q > p && q + 3 <= eol && q[0] >= '0' && q[0] <= '9' && q[1] >= '0' && q[1] <= '9' && q[2] >= '0' &&
        q[2] <= '9')
        m->status = (q[0] - '0') * 100 + (q[1] - '0') * 10 + (q[2] - '0');
    p = eol + 1;
    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        char *le = eol ? eol : end;
        char *lend = le;
        if (lend > p && lend[-1] == '\r') lend--;
        if (lend == p) break; /* the empty line that ends the block */
        char *colon = memchr(p, ':', (size_t)(lend - p));
        if (!colon || colon == p) return -1;
        for (char *c = p; c < colon; c++)
            if (ctl((unsigned char)*c) || *c == ' ') return -1;
        char *v = colon + 1, *ve = lend;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        if (memchr(v, '\0', (size_t)(ve - v)) || memchr(v, '\r', (size_t)(ve - v))) return -1;
        if (m->nhdrs >= maxn) return -1;
        *colon = '\0';
        *ve = '\0';
        m->names[m->nhdrs] = p;
        m->values[m->nhdrs] = v;
        m->name_lens[m->nhdrs] = (size_t)(colon - p);
        m->nhdrs++;
        if (!eol) break;
        p = eol + 1;
    }
    return 0;
}

int svc__nats_msg_new(const char *subject, size_t subject_len, const char *reply, size_t reply_len,
                      const char *hdr, size_t hdr_len, const char *data, size_t len, svc_nats_msg **out) {
    *out = NULL;
    size_t maxn = 0;
    /* No headers: hdr may be NULL, and NULL + 0 is undefined behaviour. */
    for (const char *p = hdr, *end = hdr ? hdr + hdr_len : hdr; p && p < end; maxn++) {
        p = memchr(p, '\n', (size_t)(end - p));
        if (!p) break;
        p++;
    }
    if (maxn > SVC_NATS_MAX_HEADERS) maxn = SVC_NATS_MAX_HEADERS + 1;
    size_t arrays = 3 * maxn * sizeof(char *);
    size_t size = sizeof(svc_nats_msg) + arrays + subject_len + 1 + (reply ? reply_len + 1 : 0) + hdr_len + 1 +
                  len + 1;
    svc_nats_msg *m = malloc(size);
    if (!m) return SVC_ENOMEM;
    memset(m, 0, sizeof *m);
    char *p = (char *)(m + 1);
    m->names = (const char **)p;
    m->values = m->names + maxn;
    m->name_lens = (size_t *)(m->values + maxn);
    p += arrays;
    m->subject = p;
    memcpy(p, subject, subject_len);
    p[subject_len] = '\0';
    p += subject_len + 1;
    if (reply) {
        m->reply = p;
        memcpy(p, reply, reply_len);
        p[reply_len] = '\0';
        p += reply_len + 1;
    }
    char *h = p;
    if (hdr_len) memcpy(h, hdr, hdr_len);
    h[hdr_len] = '\0';
    p += hdr_len + 1;
    m->data = p;
    if (len) memcpy(p, data, len);
    p[len] = '\0';
    m->len = len;
    m->wire_bytes = hdr_len + len;
    if (hdr_len && parse_headers(m, h, hdr_len, maxn > SVC_NATS_MAX_HEADERS ? SVC_NATS_MAX_HEADERS : maxn) != 0) {
        free(m);
        return SVC_EINVAL;
    }
    *out = m;
    return SVC_OK;
}

void svc__nats_msg_free(svc_nats_msg *m) { free(m); }

const char *svc__nats_msg_header(const svc_nats_msg *m, const char *name) {
    if (!m || !name) return NULL;
    size_t n = strlen(name);
    for (size_t i = 0; i < m->nhdrs; i++)
        if (m->name_lens[i] == n && strcasecmp(m->names[i], name) == 0) return m->values[i];
    return NULL;
}

void svc__nats_hdr_begin(svc_buf *b) { svc_buf_append(b, "NATS/1.0\r\n", 10); }

void svc__nats_hdr_put(svc_buf *b, const char *name, size_t name_len, const char *value, size_t value_len) {
    if (svc_buf_reserve(b, name_len + value_len + 4) != SVC_OK) return;
    char *o = b->data + b->len;
    memcpy(o, name, name_len);
    o += name_len;
    *o++ = ':';
    *o++ = ' ';
    memcpy(o, value, value_len);
    o += value_len;
    *o++ = '\r';
    *o++ = '\n';
    *o = '\0';
    b->len += name_len + value_len + 4;
}

int svc__nats_hdr_add(svc_buf *b, const char *name, const char *value) {
    if (!value || !svc__nats_header_name_ok(name)) return SVC_EINVAL;
    size_t nl = strlen(name);
    size_t vl = strcspn(value, "\r\n");
    if (value[vl]) return SVC_EINVAL;
    svc__nats_hdr_put(b, name, nl, value, vl);
    return SVC_OK;
}

void svc__nats_hdr_end(svc_buf *b) { svc_buf_append(b, "\r\n", 2); }

/* ---- the parser ------------------------------------------------------------------ */

enum { P_LINE, P_PAYLOAD };

void svc__nats_parser_init(svc_nats_parser *p, size_t max_payload) {
    free(p->line);
    free(p->payload);
    memset(p, 0, sizeof *p);
    p->max_payload = max_payload;
}

void svc__nats_parser_free(svc_nats_parser *p) {
    free(p->line);
    free(p->payload);
    memset(p, 0, sizeof *p);
}

static int perr(svc_nats_parser *p, const char *why) {
    snprintf(p->error, sizeof p->error, "%s", why);
    return -1;
}

/* A decimal number of at most 18 digits. */
static int parse_num(const char *s, uint64_t *out) {
    uint64_t v = 0;
    size_t n = 0;
    for (; s[n]; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= 18) return -1;
        v = v * 10 + (uint64_t)(s[n] - '0');
    }
    if (!n) return -1;
    *out = v;
    return 0;
}

/* Splits the argument part of a line in place; tokens must be printable. */
static int split_args(char *s, char **tok, int max) {
    int n = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) break;
        if (n == max) return -1;
        tok[n++] = s;
        while (*s && *s != ' ' && *s != '\t') {
            if (ctl((unsigned char)*s)) return -1;
            s++;
        }
        if (*s) *s++ = '\0';
    }
    return n;
}

static int op_is(const char *line, size_t oplen, const char *op) {
    return strlen(op) == oplen && strncasecmp(line, op, oplen) == 0;
}

/* A complete control line (without CRLF, NUL-terminated, in p->line). */
static int parse_line(svc_nats_parser *p, svc_nats_op_fn fn, void *ud) {
    char *line = p->line;
    size_t oplen = 0;
    while (line[oplen] && line[oplen] != ' ' && line[oplen] != '\t') oplen++;
    char *rest = line + oplen;
    while (*rest == ' ' || *rest == '\t') rest++;
    svc_nats_op op = {0};
    if (op_is(line, oplen, "MSG") || op_is(line, oplen, "HMSG")) {
        int h = oplen == 4;
        char *t[5];
        int n = split_args(rest, t, 5);
        if (n < 0 || n < 3 + h || n > 4 + h) return perr(p, "bad MSG arguments");
        uint64_t sid, hdr = 0, total;
        if (parse_num(t[1], &sid) || parse_num(t[n - 1], &total) || (h && parse_num(t[n - 2], &hdr)))
            return perr(p, "bad number in MSG");
        if (total > p->max_payload) return perr(p, "message larger than max_payload");
        if (hdr > total || (h && hdr < 10)) return perr(p, "bad header size in HMSG");
        p->subject = t[0];
        p->reply = n == 4 + h ? t[2] : NULL;
        p->sid = sid;
        p->hdr_len = (size_t)hdr;
        p->total = (size_t)total;
        p->got = 0;
        p->state = P_PAYLOAD;
        return 0;
    }
    if (op_is(line, oplen, "PING")) op.type = SVC_NATS_OP_PING;
    else if (op_is(line, oplen, "PONG")) op.type = SVC_NATS_OP_PONG;
    else if (op_is(line, oplen, "+OK")) op.type = SVC_NATS_OP_OK;
    else if (op_is(line, oplen, "INFO")) op.type = SVC_NATS_OP_INFO;
    else if (op_is(line, oplen, "-ERR")) op.type = SVC_NATS_OP_ERR;
    else return perr(p, "unknown protocol operation");
    if ((op.type == SVC_NATS_OP_PING || op.type == SVC_NATS_OP_PONG || op.type == SVC_NATS_OP_OK) && *rest)
        return perr(p, "unexpected argument");
    size_t alen = strlen(rest);
    if (op.type == SVC_NATS_OP_ERR && alen >= 2 && rest[0] == '\'' && rest[alen - 1] == '\'') {
        rest++;
        alen -= 2;
    }
    op.arg = rest;
    op.arg_len = alen;
    return fn(ud, &op);
}

static int deliver(svc_nats_parser *p, const char *payload, svc_nats_op_fn fn, void *ud) {
    if (payload[p->total] != '\r' || payload[p->total + 1] != '\n') return perr(p, "payload not followed by CRLF");
    svc_nats_op op = {
        .type = SVC_NATS_OP_MSG,
        .subject = p->subject,
        .subject_len = strlen(p->subject),
        .reply = p->reply,
        .reply_len = p->reply ? strlen(p->reply) : 0,
        .sid = p->sid,
        .hdr = p->hdr_len ? payload : NULL,
        .hdr_len = p->hdr_len,
        .data = payload + p->hdr_len,
        .len = p->total - p->hdr_len,
    };
    p->state = P_LINE;
    p->line_len = 0;
    return fn(ud, &op);
}

int svc__nats_parse(svc_nats_parser *p, const char *buf, size_t len, svc_nats_op_fn fn, void *ud) {
    size_t i = 0;
    if (!p->line && !(p->line = malloc(SVC_NATS_MAX_LINE + 1))) return perr(p, "out of memory");
    while (i < len) {
        if (p->state == P_LINE) {
            const char *nl = memchr(buf + i, '\n', len - i);
            size_t take = nl ? (size_t)(nl - (buf + i)) : len - i;
            if (p->line_len + take > SVC_NATS_MAX_LINE) return perr(p, "protocol line too long");
            memcpy(p->line + p->line_len, buf + i, take);
            p->line_len += take;
            i += take;
            if (!nl) break;
            i++; /* the '\n' */
            size_t l = p->line_len;
            if (l && p->line[l - 1] == '\r') l--;
            p->line[l] = '\0';
            if (memchr(p->line, '\0', l)) return perr(p, "NUL in a protocol line");
            p->line_len = 0;
            if (l == 0) return perr(p, "empty protocol line");
            int rc = parse_line(p, fn, ud);
            if (rc) return rc;
            continue;
        }
        /* P_PAYLOAD: the payload and its CRLF, from buf when all there. */
        size_t need = p->total + 2;
        if (p->got == 0 && len - i >= need) {
            int rc = deliver(p, buf + i, fn, ud);
            i += need;
            if (rc) return rc;
            continue;
        }
        if (p->got == 0) {
            /* The subject and reply live in p->line, which the next line
             * would overwrite only after this payload; the payload needs its
             * own room. */
            char *np = realloc(p->payload, need);
            if (!np) return perr(p, "out of memory");
            p->payload = np;
        }
        size_t take = need - p->got < len - i ? need - p->got : len - i;
        memcpy(p->payload + p->got, buf + i, take);
        p->got += take;
        i += take;
        if (p->got == need) {
            int rc = deliver(p, p->payload, fn, ud);
            if (p->total > 65536) {
                free(p->payload);
                p->payload = NULL;
            }
            if (rc) return rc;
        }
    }
    return 0;
}

/* ---- URLs --------------------------------------------------------------------------- */

int svc__nats_url_parse(const char *url, svc_nats_server *out) {
    memset(out, 0, sizeof *out);
    if (!url || strlen(url) > SVC_NATS_MAX_URL) return SVC_EINVAL;
    if (strncmp(url, "tls://", 6) == 0) out->tls = 1;
    else if (strncmp(url, "nats://", 7) != 0) return SVC_EINVAL;
    const char *p = url + (out->tls ? 6 : 7);
    const char *end = p + strcspn(p, "/?#");
    if (*end && strcmp(end, "/") != 0) return SVC_EINVAL;
    const char *at = NULL;
    for (const char *c = p; c < end; c++)
        if (*c == '@') at = c;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ul = (size_t)((colon ? colon : at) - p);
        if (ul >= sizeof out->user) return SVC_EINVAL;
        memcpy(out->user, p, ul);
        if (colon) {
            size_t pl = (size_t)(at - colon - 1);
            if (pl >= sizeof out->pass) return SVC_EINVAL;
            memcpy(out->pass, colon + 1, pl);
        }
        p = at + 1;
    }
    const char *hs = p, *he, *port = NULL;
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (!he) return SVC_EINVAL;
        if (he + 1 < end) {
            if (he[1] != ':') return SVC_EINVAL;
            port = he + 2;
        }
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (he) port = he + 1;
        else he = end;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof out->host) return SVC_EINVAL;
    memcpy(out->host, hs, hl);
    for (size_t i = 0; i < hl; i++)
        if (ctl((unsigned char)out->host[i]) || out->host[i] == ' ' || out->host[i] == '@') return SVC_EINVAL;
    out->port = 4222;
    if (port) {
        long v = 0;
        if (port >= end) return SVC_EINVAL;
        for (const char *c = port; c < end; c++) {
            if (*c < '0' || *c > '9' || v > 65535) return SVC_EINVAL;
            v = v * 10 + (*c - '0');
        }
        if (v < 1 || v > 65535) return SVC_EINVAL;
        out->port = (int)v;
    }
    return SVC_OK;
}

int svc__nats_urls_parse(const char *list, svc_nats_server *out, int max, int *n) {
    *n = 0;
    for (const char *p = list ? list : ""; *p;) {
        size_t len = strcspn(p, ",");
        const char *s = p, *e = p + len;
        p = *e ? e + 1 : e;
        while (s < e && *s == ' ') s++;
        while (e > s && e[-1] == ' ') e--;
        if (s == e) continue;
        if (*n == max) return SVC_ERANGE;
        char url[SVC_NATS_MAX_URL + 1];
        if ((size_t)(e - s) > SVC_NATS_MAX_URL) return SVC_EINVAL;
        memcpy(url, s, (size_t)(e - s));
        url[e - s] = '\0';
        if (svc__nats_url_parse(url, &out[*n]) != SVC_OK) return SVC_EINVAL;
        (*n)++;
    }
    return *n > 0 ? SVC_OK : SVC_EINVAL;
}

/* ---- the connection --------------------------------------------------------------------- */

enum { ST_IDLE, ST_RESOLVING, ST_CONNECTING, ST_HANDSHAKE, ST_CONNECTED, ST_DOWN };

typedef struct nsub {
    char *subject, *queue;
    svc_nats_msg_fn fn;
    void *ud;
    int gone;                        /* unsubscribed: not sent again on reconnect */
} nsub;

typedef struct pong_wait {
    svc_nats_flush_fn fn;            /* NULL: a keepalive or the handshake */
    void *ud;
} pong_wait;

struct svc_nats {
    uv_loop_t *loop;
    svc_nats_opts o;
    svc_nats_server *servers;        /* the pool: SVC_NATS_MAX_SERVERS places */
    int nservers, nexplicit;         /* in the pool; configured (the first nexplicit) */
    char *name;
    int cur, state, was_connected, closing, failures;
    int hold;                        /* keep publishes in pend even when connected */
    int tls_required, tls_offered;   /* what the server's INFO says */
    svc_tls *tls;                    /* this socket's TLS session; freed once the socket is closed */
    nbuf sealed;                     /* ciphertext being made from out */
    atomic_int connected;
    atomic_size_t max_payload, buffered;
    uv_tcp_t tcp;
    int tcp_init;                    /* tcp initialised and not yet closed */
    uv_getaddrinfo_t gai;
    int gai_live;
    uv_connect_t creq;
    uv_timer_t timer;                /* reconnect wait, connect timeout, close deadline */
    uv_timer_t ping;
    uv_prepare_t prep;
    uv_check_t check;
    int handles;                     /* timer, ping, prep, check (+ tcp) not yet closed */
    char *rbuf;
    svc_nats_parser parser;
    nbuf out, pend, wbuf;
    int writing;
    uv_write_t wreq;
    pong_wait *pongs;                /* FIFO: head .. head+npongs */
    size_t pong_head, npongs, pong_cap;
    int pings_out;
    nsub *subs;                      /* index sid - 1 */
    size_t nsubs, subs_cap;
    uint64_t err_logged_ms;          /* loop time of the last -ERR line logged */
    int err_logged;                  /* one was logged */
    unsigned long err_suppressed;    /* -ERR not logged since that one */
    char url[300];
    char nonce[SVC_NATS_MAX_NONCE + 1]; /* of this connection's INFO; "" without one */
};

#define READ_BUFFER (64 * 1024)

static void start_attempt(svc_nats *nc);
static void lost(svc_nats *nc, const char *why);
static void maybe_free(svc_nats *nc);

void *svc__nats_ud(const svc_nats *nc) { return nc->o.ud; }
int svc__nats_connected(const svc_nats *nc) { return nc && atomic_load(&((svc_nats *)nc)->connected); }
size_t svc__nats_max_payload(const svc_nats *nc) { return atomic_load(&((svc_nats *)nc)->max_payload); }
size_t svc__nats_buffered(const svc_nats *nc) { return atomic_load(&((svc_nats *)nc)->buffered); }
const char *svc__nats_url(const svc_nats *nc) { return nc->url; }

static void on_written(uv_write_t *req, int status);
static void finish_close(svc_nats *nc);

static int tls_seal(svc_nats *nc);

static void write_now(svc_nats *nc) {
    if (nc->writing || !nc->tcp_init || (nc->state != ST_HANDSHAKE && nc->state != ST_CONNECTED)) return;
    if (nc->tls && tls_seal(nc) != 0) return;
    if (!nc->out.len) return;
    /* Nothing is in flight: write what the socket takes now. Output that goes
     * whole (the usual case) needs no write request, and spares the epoll
     * change libuv makes after every completed uv_write. */
    uv_buf_t now = uv_buf_init(nc->out.data, (unsigned)nc->out.len);
    int n = uv_try_write((uv_stream_t *)&nc->tcp, &now, 1);
    if (n < 0 && n != UV_EAGAIN) {
        lost(nc, uv_strerror(n));
        return;
    }
    size_t sent = n > 0 ? (size_t)n : 0;
    if (sent == nc->out.len) {
        nc->out.len = 0;
        if (nc->out.cap > 1024 * 1024) nbuf_free(&nc->out);
        return;
    }
    nbuf t = nc->wbuf;
    nc->wbuf = nc->out;
    nc->out = t;
    nc->out.len = 0;
    uv_buf_t b = uv_buf_init(nc->wbuf.data + sent, (unsigned)(nc->wbuf.len - sent));
    int rc = uv_write(&nc->wreq, (uv_stream_t *)&nc->tcp, &b, 1, on_written);
    if (rc < 0) {
        nc->wbuf.len = 0;
        lost(nc, uv_strerror(rc));
        return;
    }
    nc->writing = 1;
}

static void on_written(uv_write_t *req, int status) {
    svc_nats *nc = req->data;
    nc->writing = 0;
    nc->wbuf.len = 0;
    /* A large buffer used once is not kept for the life of the connection. */
    if (nc->wbuf.cap > 1024 * 1024) nbuf_free(&nc->wbuf);
    if (nc->closing) {
        /* Written (or failed) what a closing connection held: go on closing. */
        if (status >= 0) write_now(nc);
        if (!nc->writing) finish_close(nc);
        maybe_free(nc);
        return;
    }
    if (status < 0) {
        if (status != UV_ECANCELED) lost(nc, uv_strerror(status));
        return;
    }
    write_now(nc);
}

static void on_prepare(uv_prepare_t *h) {
    svc_nats *nc = h->data;
    uv_prepare_stop(&nc->prep);
    uv_check_stop(&nc->check);
    write_now(nc);
}

static void on_check(uv_check_t *h) {
    svc_nats *nc = h->data;
    uv_prepare_stop(&nc->prep);
    uv_check_stop(&nc->check);
    write_now(nc);
}

/* Output appended: write it at the end of this loop iteration (check) or
 * before the next poll (prepare, for output made in timer callbacks). */
static void want_write(svc_nats *nc) {
    if (nc->writing) return;
    uv_prepare_start(&nc->prep, on_prepare);
    uv_check_start(&nc->check, on_check);
}

static int append(nbuf *b, const void *data, size_t n) {
    if (nbuf_reserve(b, n) != 0) return -1;
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

static int append_str(nbuf *b, const char *s) { return append(b, s, strlen(s)); }

/* ---- pong waiters ---- */

static int push_pong(svc_nats *nc, svc_nats_flush_fn fn, void *ud) {
    if (nc->pong_head + nc->npongs == nc->pong_cap) {
        if (nc->pong_head > 0) {
            memmove(nc->pongs, nc->pongs + nc->pong_head, nc->npongs * sizeof *nc->pongs);
            nc->pong_head = 0;
        } else {
            size_t cap = nc->pong_cap ? nc->pong_cap * 2 : 8;
            pong_wait *p = realloc(nc->pongs, cap * sizeof *p);
            if (!p) return -1;
            nc->pongs = p;
            nc->pong_cap = cap;
        }
    }
    nc->pongs[nc->pong_head + nc->npongs++] = (pong_wait){fn, ud};
    return 0;
}

static void fail_pongs(svc_nats *nc) {
    /* Callbacks may add waiters (answered at once, ok 0): take the list. */
    while (nc->npongs) {
        pong_wait w = nc->pongs[nc->pong_head++];
        nc->npongs--;
        if (w.fn) w.fn(nc, 0, w.ud);
    }
    nc->pong_head = 0;
}

/* ---- subscriptions ---- */

static int write_sub(nbuf *b, uint64_t sid, const nsub *s) {
    char num[32];
    snprintf(num, sizeof num, " %llu\r\n", (unsigned long long)sid);
    if (append_str(b, "SUB ") || append_str(b, s->subject)) return -1;
    if (s->queue && (append_str(b, " ") || append_str(b, s->queue))) return -1;
    return append_str(b, num);
}

/* The length of s if it is a non-empty printable token without spaces,
 * else 0. */
static size_t token_len(const char *s) {
    if (!s) return 0;
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] == 0x7f) return 0;
    return n;
}

static int printable_token(const char *s) { return token_len(s) > 0; }

uint64_t svc__nats_sub(svc_nats *nc, const char *subject, const char *queue, svc_nats_msg_fn fn, void *ud) {
    if (!printable_token(subject) || (queue && !printable_token(queue)) || !fn) return 0;
    if (nc->nsubs == nc->subs_cap) {
        size_t cap = nc->subs_cap ? nc->subs_cap * 2 : 16;
        nsub *s = realloc(nc->subs, cap * sizeof *s);
        if (!s) return 0;
        nc->subs = s;
        nc->subs_cap = cap;
    }
    nsub *s = &nc->subs[nc->nsubs];
    *s = (nsub){strdup(subject), queue ? strdup(queue) : NULL, fn, ud, 0};
    if (!s->subject || (queue && !s->queue)) {
        free(s->subject);
        free(s->queue);
        return 0;
    }
    uint64_t sid = ++nc->nsubs;
    if (nc->state == ST_CONNECTED) {
        /* On failure the SUB goes out with the next reconnection at worst. */
        if (write_sub(&nc->out, sid, s) == 0) want_write(nc);
    }
    return sid;
}

void svc__nats_unsub(svc_nats *nc, uint64_t sid) {
    if (sid == 0 || sid > nc->nsubs || !nc->subs[sid - 1].fn || nc->subs[sid - 1].gone) return;
    nc->subs[sid - 1].gone = 1;
    if (nc->state == ST_CONNECTED) {
        char line[48];
        snprintf(line, sizeof line, "UNSUB %llu\r\n", (unsigned long long)sid);
        if (append_str(&nc->out, line) == 0) want_write(nc);
    }
}

/* ---- publishing ---- */

static int publish(svc_nats *nc, const char *subject, const char *reply, const char *hdr, size_t hdr_len,
                   const void *data, size_t len, int past_hold) {
    if (nc->closing) return SVC_ECLOSED;
    size_t sl = token_len(subject), rl = reply ? token_len(reply) : 0;
    if (!sl || (reply && !rl)) return SVC_EINVAL;
    if (len + hdr_len > atomic_load(&nc->max_payload)) return SVC_ERANGE;
    /* " <hdr_len> <total>\r\n" or " <len>\r\n", by hand: once per message. */
    char head[64];
    size_t hn = 0;
    head[hn++] = ' ';
    if (hdr_len) {
        hn += svc__fmt_u64(head + hn, hdr_len);
        head[hn++] = ' ';
    }
    hn += svc__fmt_u64(head + hn, hdr_len + len);
    head[hn++] = '\r';
    head[hn++] = '\n';
    size_t size = 5 + sl + (reply ? rl + 1 : 0) + hn + hdr_len + len + 2;
    int live = nc->state == ST_CONNECTED && (!nc->hold || past_hold);
    nbuf *b = live ? &nc->out : &nc->pend;
    if (live ? b->len + nc->wbuf.len + size > SVC_NATS_MAX_OUTPUT : b->len + size > nc->o.reconnect_buffer)
        return SVC_EAGAIN;
    if (nbuf_reserve(b, size) != 0) return SVC_ENOMEM;
    append_str(b, hdr_len ? "HPUB " : "PUB ");
    append(b, subject, sl);
    if (reply) {
        append(b, " ", 1);
        append(b, reply, rl);
    }
    append(b, head, hn);
    if (hdr_len) append(b, hdr, hdr_len);
    if (len) append(b, data, len);
    append(b, "\r\n", 2);
    if (live) want_write(nc);
    else atomic_store(&nc->buffered, nc->pend.len);
    return SVC_OK;
}

int svc__nats_pub(svc_nats *nc, const char *subject, const char *reply, const char *hdr, size_t hdr_len,
                  const void *data, size_t len) {
    return publish(nc, subject, reply, hdr, hdr_len, data, len, 0);
}

int svc__nats_reply(svc_nats *nc, const char *subject, const char *hdr, size_t hdr_len, const void *data,
                    size_t len) {
    return publish(nc, subject, NULL, hdr, hdr_len, data, len, 1);
}

int svc__nats_flush(svc_nats *nc, svc_nats_flush_fn fn, void *ud) {
    if (nc->state != ST_CONNECTED || nc->closing) {
        if (fn) fn(nc, 0, ud);
        return SVC_OK;
    }
    if (push_pong(nc, fn, ud) != 0) return SVC_ENOMEM;
    if (append_str(&nc->out, "PING\r\n") != 0) {
        nc->npongs--;
        return SVC_ENOMEM;
    }
    want_write(nc);
    return SVC_OK;
}

/* ---- input ---- */

/* Process-wide, so that a process with a connection per worker says it once. */
static atomic_int said_ignored, said_refused, said_full;

static int same_server(const svc_nats_server *a, const svc_nats_server *b) {
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/*
 * The servers the cluster announces ("host:port" each) replace those it
 * announced before: the pool is the configured servers, then these, each
 * validated as a configured URL (without credentials: they come from the
 * server connected to), at most SVC_NATS_MAX_SERVERS in all. The server
 * connected to stays in the pool even when the list leaves it out.
 */
static void learn_servers(svc_nats *nc, json_t *urls) {
    if (nc->o.no_advertised) {
        if (json_array_size(urls) && !atomic_exchange(&said_ignored, 1))
            svc_info("nats: %s announces %zu cluster server(s); not followed (NATS_NO_ADVERTISED)", nc->url,
                     json_array_size(urls));
        return;
    }
    svc_nats_server cur = nc->servers[nc->cur];
    int n = nc->nexplicit, have_cur = nc->cur < nc->nexplicit, before = nc->nservers;
    size_t i;
    json_t *v;
    json_array_foreach(urls, i, v) {
        const char *u = json_string_value(v);
        char url[SVC_NATS_MAX_URL + 8];
        svc_nats_server s;
        if (!u || strlen(u) > SVC_NATS_MAX_URL || strchr(u, '@') || strchr(u, '/') ||
            (snprintf(url, sizeof url, "nats://%s", u), svc__nats_url_parse(url, &s) != SVC_OK)) {
            if (!atomic_exchange(&said_refused, 1))
                svc_warn("nats: %s announces a server that is not a valid host:port: \"%.64s\"; refused", nc->url,
                         u ? u : "(not a string)");
            continue;
        }
        int dup = 0;
        for (int k = 0; k < n && !dup; k++) dup = same_server(&nc->servers[k], &s);
        if (dup) continue;
        if (n == SVC_NATS_MAX_SERVERS) {
            if (!atomic_exchange(&said_full, 1))
                svc_warn("nats: %s announces more servers than fit in the pool (%d); the rest are not used",
                         nc->url, SVC_NATS_MAX_SERVERS);
            break;
        }
        memcpy(s.user, cur.user, sizeof s.user);
        memcpy(s.pass, cur.pass, sizeof s.pass);
        s.tls = cur.tls; /* TLS to one member of a cluster means TLS to all */
        if (!have_cur && same_server(&s, &cur)) {
            have_cur = 1;
            nc->cur = n;
        }
        nc->servers[n++] = s;
    }
    if (!have_cur) {
        if (n == SVC_NATS_MAX_SERVERS) n--;
        nc->servers[n] = cur;
        nc->cur = n++;
    }
    nc->nservers = n;
    if (n != before) svc_info("nats: %d server(s) in the pool (%d configured)", n, nc->nexplicit);
}

/* -1: an INFO to refuse (the connection is then dropped). */
static int on_info(svc_nats *nc, const char *json, size_t len) {
    json_error_t err;
    json_t *doc = json_loadb(json, len, 0, &err);
    nc->tls_required = nc->tls_offered = 0;
    if (!doc) return 0;
    nc->tls_required = json_is_true(json_object_get(doc, "tls_required"));
    nc->tls_offered = nc->tls_required || json_is_true(json_object_get(doc, "tls_available"));
    json_t *mp = json_object_get(doc, "max_payload");
    if (json_is_integer(mp) && json_integer_value(mp) > 0) {
        json_int_t v = json_integer_value(mp);
        size_t max = v > SVC_NATS_MAX_PAYLOAD_CAP ? SVC_NATS_MAX_PAYLOAD_CAP : (size_t)v;
        atomic_store(&nc->max_payload, max);
        nc->parser.max_payload = max;
    }
    if (nc->state == ST_HANDSHAKE && !json_is_true(json_object_get(doc, "headers")))
        svc_warn("nats: %s does not support headers (nats-server 2.2 or later needed)", nc->url);
    int rc = 0;
    if (nc->state == ST_HANDSHAKE) {
        json_t *nonce = json_object_get(doc, "nonce");
        size_t nl = json_string_length(nonce);
        if (nonce && (!json_is_string(nonce) || nl > SVC_NATS_MAX_NONCE || strlen(json_string_value(nonce)) != nl))
            rc = -1;
        else
            snprintf(nc->nonce, sizeof nc->nonce, "%s", nonce ? json_string_value(nonce) : "");
    }
    json_t *urls = json_object_get(doc, "connect_urls");
    if (rc == 0 && json_is_array(urls)) learn_servers(nc, urls);
    json_decref(doc);
    return rc;
}

static void send_connect(svc_nats *nc) {
    const svc_nats_server *s = &nc->servers[nc->cur];
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "verbose"), svc_jw_bool(&w, 0);
    svc_jw_key(&w, "pedantic"), svc_jw_bool(&w, 0);
    svc_jw_key(&w, "headers"), svc_jw_bool(&w, 1);
    svc_jw_key(&w, "no_responders"), svc_jw_bool(&w, 1);
    svc_jw_key(&w, "lang"), svc_jw_str(&w, "c");
    svc_jw_key(&w, "version"), svc_jw_str(&w, "svckit-" SVC_VERSION);
    svc_jw_key(&w, "name"), svc_jw_str(&w, nc->name ? nc->name : "");
    svc_jw_key(&w, "protocol"), svc_jw_i64(&w, 1);
    if (s->user[0] && s->pass[0]) {
        svc_jw_key(&w, "user"), svc_jw_str(&w, s->user);
        svc_jw_key(&w, "pass"), svc_jw_str(&w, s->pass);
    } else if (s->user[0]) {
        svc_jw_key(&w, "auth_token"), svc_jw_str(&w, s->user);
    }
    const svc_nkey_creds *c = nc->o.creds;
    if (c) {
        if (c->jwt[0]) svc_jw_key(&w, "jwt"), svc_jw_str(&w, c->jwt);
        else svc_jw_key(&w, "nkey"), svc_jw_str(&w, c->pub);
        char sig[SVC_NKEY_SIG_LEN + 1];
        svc__nkey_sign(c, nc->nonce, strlen(nc->nonce), sig);
        svc_jw_key(&w, "sig"), svc_jw_str(&w, sig);
    }
    svc_jw_obj_end(&w);
    int ok = !b.oom && append_str(&nc->out, "CONNECT ") == 0 && append(&nc->out, b.data, b.len) == 0 &&
             append_str(&nc->out, "\r\nPING\r\n") == 0 && push_pong(nc, NULL, NULL) == 0;
    svc_buf_free(&b);
    if (!ok) {
        lost(nc, "out of memory");
        return;
    }
    want_write(nc);
}

static void on_ping_timer(uv_timer_t *t);

/* ---- TLS (tls.h): the hooks of the connect, read and write paths ---- */

/* What the TLS callbacks return to stop: on purpose (the connection is
 * gone, or no memory), or for the parser's protocol error. */
enum { READ_STOP = 1, READ_PROTOCOL_ERROR = 2 };

static int on_op(void *ud, const svc_nats_op *op);

static int seal_append(void *ud, const char *data, size_t len) { return append(ud, data, len) ? READ_STOP : 0; }

/* Replaces the plaintext in out by its ciphertext, after what the handshake
 * queued. 0, or -1 once the connection is lost. */
static int tls_seal(svc_nats *nc) {
    int rc = svc__tls.output(nc->tls, nc->out.data, nc->out.len, seal_append, &nc->sealed);
    if (rc) {
        nc->sealed.len = 0;
        lost(nc, rc == READ_STOP ? "out of memory" : svc__tls.error(nc->tls));
        return -1;
    }
    nbuf t = nc->out;
    nc->out = nc->sealed;
    nc->sealed = t;
    nc->sealed.len = 0;
    return 0;
}

static int tls_ready(void *ud) {
    svc_nats *nc = ud;
    send_connect(nc);
    return nc->state == ST_DOWN ? READ_STOP : 0;
}

static int tls_plain(void *ud, const char *data, size_t len) {
    svc_nats *nc = ud;
    int rc = svc__nats_parse(&nc->parser, data, len, on_op, nc);
    return rc < 0 ? READ_PROTOCOL_ERROR : rc ? READ_STOP : 0;
}

/*
 * After the server's first INFO, which nats-server sends in the clear: TLS
 * when this server is configured for it (tls://, NATS_TLS_*) and offers it.
 * When only one side wants TLS, a refusal: credentials and messages never go
 * out in plaintext to a server that should have had TLS, whoever asked for
 * it. Returns 1 (TLS begun), 0 (plaintext) or -1 (refused: lost).
 */
static int tls_begin(svc_nats *nc) {
    const svc_nats_server *s = &nc->servers[nc->cur];
    const char *refusal = NULL;
    if (!s->tls && !nc->tls_required) return 0;
    if (!s->tls) refusal = "the server requires TLS: use a tls:// URL or set NATS_TLS_CA";
    else if (!nc->tls_offered)
        refusal = "TLS is configured but the server does not offer it (no tls_required in its INFO); "
                  "refusing plaintext";
    else if (!nc->o.tls) refusal = "tls:// needs a TLS configuration, which this program has not made";
    else if (!(nc->tls = svc__tls.session_new(nc->o.tls, s->host))) refusal = "out of memory";
    if (refusal) {
        lost(nc, refusal);
        return -1;
    }
    /* What was queued before INFO (a PONG) is not sent after the handshake. */
    nc->out.len = 0;
    want_write(nc);
    return 1;
}

static void tls_end(svc_nats *nc) {
    if (!nc->tls) return;
    svc__tls.session_free(nc->tls);
    nc->tls = NULL;
}

static int move_pending(svc_nats *nc) {
    if (!nc->pend.len) return 0;
    if (append(&nc->out, nc->pend.data, nc->pend.len) != 0) return -1;
    nc->pend.len = 0;
    if (nc->pend.cap > 1024 * 1024) nbuf_free(&nc->pend);
    atomic_store(&nc->buffered, 0);
    return 0;
}

void svc__nats_hold(svc_nats *nc) { nc->hold = 1; }

int svc__nats_sending(const svc_nats *nc) { return nc && nc->state == ST_CONNECTED && !nc->hold; }

void svc__nats_release(svc_nats *nc) {
    if (!nc->hold) return;
    nc->hold = 0;
    if (nc->state != ST_CONNECTED) return;
    if (move_pending(nc) != 0) {
        lost(nc, "out of memory");
        return;
    }
    want_write(nc);
}

/* The PONG of our CONNECT: subscribe, send what waited, tell the owner. */
static void established(svc_nats *nc) {
    uv_timer_stop(&nc->timer);
    nc->state = ST_CONNECTED;
    nc->pings_out = 0;
    nc->failures = 0;
    for (size_t i = 0; i < nc->nsubs; i++)
        if (nc->subs[i].fn && !nc->subs[i].gone && write_sub(&nc->out, i + 1, &nc->subs[i]) != 0) {
            lost(nc, "out of memory");
            return;
        }
    if (!nc->hold && move_pending(nc) != 0) {
        lost(nc, "out of memory");
        return;
    }
    want_write(nc);
    int ping = nc->o.ping_ms > 0 ? nc->o.ping_ms : SVC_NATS_PING_MS;
    uv_timer_start(&nc->ping, on_ping_timer, (uint64_t)ping, (uint64_t)ping);
    atomic_store(&nc->connected, 1);
    int event = nc->was_connected ? SVC_NATS_RECONNECTED : SVC_NATS_CONNECTED;
    nc->was_connected = 1;
    if (nc->o.on_event) nc->o.on_event(nc, event, nc->o.ud);
}

int svc__nats_err_denied_sub(const char *msg, size_t len, char *out, size_t cap) {
    static const char lead[] = "Permissions Violation for Subscription to \"";
    const char *at = memmem(msg, len, lead, sizeof lead - 1);
    if (!at || cap == 0) return 0;
    const char *p = at + sizeof lead - 1, *end = msg + len;
    size_t n = 0;
    for (; p < end && *p != '"' && n + 1 < cap; p++)
        out[n++] = *p > 0x20 && *p < 0x7f ? *p : '?';
    out[n] = '\0';
    return n > 0;
}

/* The server sends an -ERR for each operation it refuses and goes on (a
 * publish without permission, say), so a busy service could log thousands
 * of lines a second: one per SVC_NATS_ERR_LOG_INTERVAL_MS, saying how many
 * were left out since the last; the counter sees them all. */
static void server_error(svc_nats *nc, const char *msg, size_t len) {
    svc_counter_add(nc->o.server_errors, 1);
    char denied[SVC_NATS_MAX_DENIED_SUBJECT];
    if (nc->o.on_sub_denied && svc__nats_err_denied_sub(msg, len, denied, sizeof denied)) {
        nc->o.on_sub_denied(nc, denied, nc->o.ud);
        return;
    }
    uint64_t now = uv_now(nc->loop);
    if (nc->err_logged && now - nc->err_logged_ms < SVC_NATS_ERR_LOG_INTERVAL_MS) {
        nc->err_suppressed++;
        return;
    }
    int n = (int)(len > 200 ? 200 : len);
    if (nc->err_suppressed)
        svc_warn("nats: server %s says: %.*s (and %lu more errors since the last line; at most one line per %d ms)",
                 nc->url, n, msg, nc->err_suppressed, SVC_NATS_ERR_LOG_INTERVAL_MS);
    else
        svc_warn("nats: server %s says: %.*s", nc->url, n, msg);
    nc->err_logged = 1;
    nc->err_logged_ms = now;
    nc->err_suppressed = 0;
}

static int on_op(void *ud, const svc_nats_op *op) {
    svc_nats *nc = ud;
    if (nc->closing || nc->state == ST_DOWN) return 1;
    switch (op->type) {
    case SVC_NATS_OP_INFO:
        if (on_info(nc, op->arg, op->arg_len) != 0) {
            snprintf(nc->parser.error, sizeof nc->parser.error, "INFO with a nonce that is not a string of at most %d bytes",
                     SVC_NATS_MAX_NONCE);
            return -1;
        }
        if (nc->state == ST_HANDSHAKE && nc->npongs == 0 && !nc->tls) {
            /* Once TLS begins, the bytes after this INFO are TLS's. */
            if (tls_begin(nc) != 0) return 1;
            send_connect(nc);
        }
        break;
    case SVC_NATS_OP_PING:
        /* A peer that pings without reading would grow out without bound:
         * past the cap, no answer (it then drops us as stale). */
        if (nc->out.len + nc->wbuf.len < SVC_NATS_MAX_OUTPUT && append_str(&nc->out, "PONG\r\n") == 0)
            want_write(nc);
        break;
    case SVC_NATS_OP_PONG: {
        nc->pings_out = 0;
        if (!nc->npongs) break;
        pong_wait w = nc->pongs[nc->pong_head++];
        if (--nc->npongs == 0) nc->pong_head = 0;
        if (nc->state == ST_HANDSHAKE) established(nc);
        else if (w.fn) w.fn(nc, 1, w.ud);
        break;
    }
    case SVC_NATS_OP_OK:
        break;
    case SVC_NATS_OP_ERR:
        server_error(nc, op->arg, op->arg_len);
        break;
    case SVC_NATS_OP_MSG: {
        if (nc->state != ST_CONNECTED) {
            snprintf(nc->parser.error, sizeof nc->parser.error, "message before CONNECT was answered");
            return -1;
        }
        if (op->sid == 0 || op->sid > nc->nsubs || !nc->subs[op->sid - 1].fn) break; /* unsubscribed */
        nsub *s = &nc->subs[op->sid - 1];
        svc_nats_msg *m = NULL;
        int rc = svc__nats_msg_new(op->subject, op->subject_len, op->reply, op->reply_len, op->hdr, op->hdr_len,
                                   op->data, op->len, &m);
        if (rc == SVC_EINVAL) {
            /* A malformed header block: delivered without headers, marked, so
             * that the owner can answer or count it. */
            rc = svc__nats_msg_new(op->subject, op->subject_len, op->reply, op->reply_len, NULL, 0, op->data,
                                   op->len, &m);
            if (m) m->status = -1;
        }
        if (rc != SVC_OK || !m) break;
        s->fn(nc, m, s->ud);
        break;
    }
    }
    return nc->closing || nc->state == ST_DOWN ? 1 : 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    svc_nats *nc = h->data;
    if (!nc->rbuf) nc->rbuf = malloc(READ_BUFFER);
    *buf = uv_buf_init(nc->rbuf, nc->rbuf ? READ_BUFFER : 0);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    svc_nats *nc = st->data;
    if (n < 0) {
        lost(nc, n == UV_EOF ? "connection closed by the server" : uv_strerror((int)n));
        return;
    }
    if (n == 0) return;
    int rc;
    if (!nc->tls) rc = svc__nats_parse(&nc->parser, buf->base, (size_t)n, on_op, nc) < 0 ? READ_PROTOCOL_ERROR : 0;
    else if ((rc = svc__tls.input(nc->tls, buf->base, (size_t)n, tls_ready, tls_plain, nc)) == -1) {
        lost(nc, svc__tls.error(nc->tls));
        return;
    }
    if (rc == READ_PROTOCOL_ERROR) {
        char why[192];
        snprintf(why, sizeof why, "protocol error: %s", nc->parser.error);
        lost(nc, why);
        return;
    }
    /* What the handshake queued: after it, a read rarely makes output, so
     * most reads start no write. */
    if (nc->tls && svc__tls.pending(nc->tls)) want_write(nc);
}

/* ---- connecting ---- */

static void on_timer_retry(uv_timer_t *t) { start_attempt(t->data); }

static void on_tcp_closed(uv_handle_t *h) {
    svc_nats *nc = h->data;
    nc->tcp_init = 0;
    nc->handles--;
    tls_end(nc);
    if (nc->closing) {
        maybe_free(nc);
        return;
    }
    nc->state = ST_IDLE;
    /* Each failure of a row waits a little longer, up to four times the
     * base wait; the first retry after a loss is quick. */
    int wait = nc->o.reconnect_wait_ms;
    if (nc->failures > 1) wait *= nc->failures < 4 ? nc->failures : 4;
    unsigned char r[2];
    svc_random(r, sizeof r);
    wait += (int)(((unsigned)r[0] << 8 | r[1]) % (SVC_NATS_RECONNECT_JITTER_MS + 1));
    uv_timer_start(&nc->timer, on_timer_retry, (uint64_t)wait, 0);
}

/* The socket is gone (or must go): forget what it held and retry later.
 * why NULL: a deliberate close. */
static void lost(svc_nats *nc, const char *why) {
    if (nc->state == ST_DOWN) return;
    int was = nc->state == ST_CONNECTED;
    if (why && !nc->closing && !was && nc->failures++ == 0)
        svc_warn("nats: cannot connect to %s: %s; retrying every %d ms", nc->url, why, nc->o.reconnect_wait_ms);
    else if (why && was && !nc->closing)
        svc_warn("nats: connection to %s lost: %s", nc->url, why);
    nc->state = ST_DOWN;
    atomic_store(&nc->connected, 0);
    uv_timer_stop(&nc->ping);
    uv_timer_stop(&nc->timer);
    /* What was written or queued for the dead socket is lost (at most once,
     * as core NATS is); publishes made from now on wait in pend. */
    nc->out.len = 0;
    svc__nats_parser_init(&nc->parser, atomic_load(&nc->max_payload));
    nc->pings_out = 0;
    fail_pongs(nc);
    if (was && !nc->closing && nc->o.on_event) nc->o.on_event(nc, SVC_NATS_DISCONNECTED, nc->o.ud);
    if (nc->tcp_init) {
        if (!uv_is_closing((uv_handle_t *)&nc->tcp)) uv_close((uv_handle_t *)&nc->tcp, on_tcp_closed);
    } else {
        nc->handles++; /* balanced by on_tcp_closed's decrement */
        on_tcp_closed((uv_handle_t *)&nc->tcp);
    }
}

static void on_connect_timeout(uv_timer_t *t) {
    svc_nats *nc = t->data;
    lost(nc, "timed out");
}

static void on_connected(uv_connect_t *req, int status) {
    svc_nats *nc = req->data;
    if (nc->state != ST_CONNECTING) return; /* abandoned (closing) */
    if (status < 0) {
        lost(nc, uv_strerror(status));
        return;
    }
    nc->state = ST_HANDSHAKE;
    uv_read_start((uv_stream_t *)&nc->tcp, alloc_cb, on_read);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    svc_nats *nc = req->data;
    nc->gai_live = 0;
    if (nc->closing) {
        if (res) uv_freeaddrinfo(res);
        maybe_free(nc);
        return;
    }
    if (status < 0 || !res) {
        if (res) uv_freeaddrinfo(res);
        nc->state = ST_CONNECTING; /* so that lost() takes the retry path */
        lost(nc, uv_strerror(status < 0 ? status : UV_EAI_NONAME));
        return;
    }
    uv_tcp_init(nc->loop, &nc->tcp);
    nc->tcp.data = nc;
    nc->tcp_init = 1;
    nc->handles++;
    nc->state = ST_CONNECTING;
    uv_tcp_nodelay(&nc->tcp, 1);
    nc->creq.data = nc;
    int rc = uv_tcp_connect(&nc->creq, &nc->tcp, res->ai_addr, on_connected);
    uv_freeaddrinfo(res);
    if (rc < 0) {
        lost(nc, uv_strerror(rc));
        return;
    }
    uv_timer_start(&nc->timer, on_connect_timeout, SVC_NATS_CONNECT_TIMEOUT_MS, 0);
}

static void start_attempt(svc_nats *nc) {
    if (nc->closing) return;
    if (nc->was_connected || nc->failures) nc->cur = (nc->cur + 1) % nc->nservers;
    const svc_nats_server *s = &nc->servers[nc->cur];
    snprintf(nc->url, sizeof nc->url, "%s:%d", s->host, s->port);
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    nc->state = ST_RESOLVING;
    nc->gai.data = nc;
    int rc = uv_getaddrinfo(nc->loop, &nc->gai, on_resolved, s->host, port, &hints);
    if (rc < 0) {
        nc->state = ST_CONNECTING;
        lost(nc, uv_strerror(rc));
        return;
    }
    nc->gai_live = 1;
}

void svc__nats_retry_now(svc_nats *nc) {
    if (nc->closing || nc->state != ST_IDLE || !uv_is_active((uv_handle_t *)&nc->timer)) return;
    uv_timer_stop(&nc->timer);
    start_attempt(nc);
}

static void on_ping_timer(uv_timer_t *t) {
    svc_nats *nc = t->data;
    if (nc->state != ST_CONNECTED) return;
    if (nc->pings_out >= SVC_NATS_MAX_PINGS_OUT) {
        lost(nc, "no answer to PING (stale connection)");
        return;
    }
    if (push_pong(nc, NULL, NULL) != 0) return;
    if (append_str(&nc->out, "PING\r\n") != 0) {
        nc->npongs--; /* no PING went out: no PONG to wait for */
        return;
    }
    nc->pings_out++;
    want_write(nc);
}

svc_nats *svc__nats_new(uv_loop_t *loop, const svc_nats_opts *o) {
    if (!o || o->nservers < 1) return NULL;
    svc_nats *nc = calloc(1, sizeof *nc);
    if (!nc) return NULL;
    nc->loop = loop;
    nc->o = *o;
    nc->servers = calloc(SVC_NATS_MAX_SERVERS, sizeof *nc->servers);
    nc->name = o->name ? strdup(o->name) : NULL;
    if (!nc->servers || (o->name && !nc->name)) {
        free(nc->servers);
        free(nc->name);
        free(nc);
        return NULL;
    }
    nc->nservers = nc->nexplicit = o->nservers < SVC_NATS_MAX_SERVERS ? o->nservers : SVC_NATS_MAX_SERVERS;
    memcpy(nc->servers, o->servers, (size_t)nc->nservers * sizeof *nc->servers);
    nc->o.servers = nc->servers;
    if (nc->o.reconnect_wait_ms <= 0) nc->o.reconnect_wait_ms = 250;
    atomic_store(&nc->max_payload, SVC_NATS_DEFAULT_MAX_PAYLOAD);
    svc__nats_parser_init(&nc->parser, SVC_NATS_DEFAULT_MAX_PAYLOAD);
    nc->wreq.data = nc;
    uv_timer_init(loop, &nc->timer);
    uv_timer_init(loop, &nc->ping);
    uv_prepare_init(loop, &nc->prep);
    uv_check_init(loop, &nc->check);
    nc->timer.data = nc->ping.data = nc->prep.data = nc->check.data = nc;
    nc->handles = 4;
    start_attempt(nc);
    return nc;
}

/* ---- closing ---- */

static void on_handle_closed(uv_handle_t *h) {
    svc_nats *nc = h->data;
    nc->handles--;
    maybe_free(nc);
}

static void maybe_free(svc_nats *nc) {
    if (!nc->closing || nc->handles > 0 || nc->gai_live || nc->writing) return;
    for (size_t i = 0; i < nc->nsubs; i++) {
        free(nc->subs[i].subject);
        free(nc->subs[i].queue);
    }
    free(nc->subs);
    free(nc->pongs);
    nbuf_free(&nc->out);
    nbuf_free(&nc->pend);
    nbuf_free(&nc->wbuf);
    nbuf_free(&nc->sealed);
    svc__nats_parser_free(&nc->parser);
    free(nc->rbuf);
    free(nc->servers);
    free(nc->name);
    free(nc);
}

static void close_handles(svc_nats *nc) {
    if (uv_is_closing((uv_handle_t *)&nc->timer)) return;
    uv_close((uv_handle_t *)&nc->timer, on_handle_closed);
    uv_close((uv_handle_t *)&nc->ping, on_handle_closed);
    uv_close((uv_handle_t *)&nc->prep, on_handle_closed);
    uv_close((uv_handle_t *)&nc->check, on_handle_closed);
}

static void finish_close(svc_nats *nc) {
    lost(nc, NULL);
    close_handles(nc);
}

static void on_close_deadline(uv_timer_t *t) { finish_close(t->data); }

void svc__nats_close(svc_nats *nc) {
    if (!nc || nc->closing) return;
    nc->closing = 1;
    atomic_store(&nc->connected, 0);
    fail_pongs(nc);
    uv_timer_stop(&nc->ping);
    uv_timer_stop(&nc->timer);
    if (nc->gai_live) uv_cancel((uv_req_t *)&nc->gai);
    if (nc->tcp_init && nc->state == ST_CONNECTED && (nc->out.len || nc->writing)) {
        /* Replies and acks still queued go out first, within a deadline. */
        uv_read_stop((uv_stream_t *)&nc->tcp);
        uv_prepare_stop(&nc->prep);
        uv_check_stop(&nc->check);
        write_now(nc);
        if (nc->writing) {
            uv_timer_start(&nc->timer, on_close_deadline, SVC_NATS_CLOSE_FLUSH_MS, 0);
            return;
        }
    }
    finish_close(nc);
}
