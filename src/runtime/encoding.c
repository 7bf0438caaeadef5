/*
 * Content coding: gzip for the clients that accept it (app.h says which
 * responses). The per-worker cache (cache.c) keeps the compressed form of
 * what it stores, so a hot read is compressed once; everything else that
 * qualifies is compressed here, once the response is final, for HTTP and
 * NATS alike.
 */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "runtime/internal.h"

/* ---- Accept-Encoding (RFC 9110 12.5.3) --------------------------------------- */

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/* A qvalue (RFC 9110 12.4.2) in thousandths: "0", "0.5", "1.000"; -1 if it
 * is not one. */
static int qvalue(const char *s, size_t n) {
    if (n == 0 || (s[0] != '0' && s[0] != '1')) return -1;
    int whole = s[0] - '0', frac = 0;
    if (n == 1) return whole * 1000;
    if (s[1] != '.' || n > 5) return -1;
    for (size_t i = 2; i < 5; i++) {
        int d = 0;
        if (i < n) {
            if (s[i] < '0' || s[i] > '9') return -1;
            d = s[i] - '0';
        }
        frac = frac * 10 + d;
    }
    if (whole == 1 && frac != 0) return -1;
    return whole * 1000 + frac;
}

/* One member, "coding *( OWS ; OWS name=value )", in s[0..n), its coding
 * the first cl bytes: its weight, 1000 without one, -1 when malformed (the
 * member is then ignored). Reads only s[0..n): the field goes on past the
 * member, and a scan to its end per member would make a long list cost its
 * length squared. */
static int member_weight(const char *s, size_t n, size_t cl) {
    int q = 1000;
    size_t i = cl;
    while (i < n && is_ows(s[i])) i++;
    if (i < n && s[i] != ';') return -1; /* "gzip junk" */
    while (i < n) {
        size_t b = i + 1;
        while (b < n && is_ows(s[b])) b++;
        size_t e = b;
        while (e < n && s[e] != ';') e++;
        i = e;
        while (e > b && is_ows(s[e - 1])) e--;
        if (e - b >= 2 && (s[b] == 'q' || s[b] == 'Q') && s[b + 1] == '=') {
            q = qvalue(s + b + 2, e - b - 2);
            if (q < 0) return -1;
        }
    }
    return q;
}

static int coding_is(const char *s, size_t n, const char *name) {
    size_t l = strlen(name);
    return n == l && strncasecmp(s, name, l) == 0;
}

int svc__accepts_gzip(const svc_req *req) {
    int gzip = -1, star = -1;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (strcasecmp(req->headers[i].name, "accept-encoding") != 0) continue;
        const char *v = req->headers[i].value;
        while (*v) {
            const char *s = v, *e = v;
            while (*e && *e != ',') e++;
            v = *e ? e + 1 : e;
            while (s < e && is_ows(*s)) s++;
            while (e > s && is_ows(e[-1])) e--;
            size_t cl = 0;
            while (s + cl < e && s[cl] != ';' && !is_ows(s[cl])) cl++;
            if (cl == 0) continue;
            int q = member_weight(s, (size_t)(e - s), cl);
            if (q < 0) continue;
            if (coding_is(s, cl, "gzip") || coding_is(s, cl, "x-gzip")) {
                if (q > gzip) gzip = q;
            } else if (coding_is(s, cl, "*")) {
                if (q > star) star = q;
            }
        }
    }
    return (gzip >= 0 ? gzip : star) > 0;
}

/* ---- what is worth compressing ------------------------------------------------ */

int svc__compressible(const char *ct) {
    if (!ct) return 0;
    size_t n = strcspn(ct, ";");
    while (n && is_ows(ct[n - 1])) n--;
    if (n > 5 && strncasecmp(ct, "text/", 5) == 0) return 1;
    static const char *const types[] = {"application/json", "application/javascript", "application/xml",
                                        "image/svg+xml", NULL};
    for (const char *const *t = types; *t; t++)
        if (coding_is(ct, n, *t)) return 1;
    return (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0) || (n > 4 && strncasecmp(ct + n - 4, "+xml", 4) == 0);
}

/* ---- gzip ---------------------------------------------------------------------- */

/* One deflate stream per thread, reset between uses: its state is about
 * 270 KiB (a 32 KiB window at memLevel 8), which deflateInit and deflateEnd
 * per response would allocate and fault in again each time. Freed when the
 * thread exits. */
static pthread_key_t gz_key;
static pthread_once_t gz_once = PTHREAD_ONCE_INIT;

static void gz_free(void *p) {
    deflateEnd(p);
    free(p);
}

static void gz_init(void) { pthread_key_create(&gz_key, gz_free); }

static z_stream *gz_stream(void) {
    pthread_once(&gz_once, gz_init);
    z_stream *z = pthread_getspecific(gz_key);
    if (z) return z;
    if (!(z = calloc(1, sizeof *z))) return NULL;
    /* 15 + 16: a 32 KiB window, with the gzip header and trailer. */
    if (deflateInit2(z, SVC_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    if (pthread_setspecific(gz_key, z) != 0) {
        gz_free(z);
        return NULL;
    }
    return z;
}

int svc__gzip(const void *data, size_t len, svc_buf *out) {
    if (len < 2 || len > UINT_MAX) return SVC_ERANGE;
    z_stream *z = gz_stream();
    if (!z) return SVC_ENOMEM;
    /* Room for one byte less than the input: output that does not fit is
     * output not worth sending. */
    size_t room = len - 1;
    if (svc_buf_reserve(out, room) != SVC_OK) return SVC_ENOMEM;
    z->next_in = (Bytef *)(uintptr_t)data;
    z->avail_in = (uInt)len;
    z->next_out = (Bytef *)out->data + out->len;
    z->avail_out = (uInt)room;
    int rc = deflate(z, Z_FINISH);
    size_t produced = room - z->avail_out;
    deflateReset(z);
    if (rc != Z_STREAM_END) return rc == Z_MEM_ERROR ? SVC_ENOMEM : SVC_ERANGE;
    out->len += produced;
    out->data[out->len] = '\0';
    return SVC_OK;
}

char *svc__etag_gzip(svc_arena *a, const char *etag) {
    size_t n = etag ? strlen(etag) : 0;
    if (n < 2 || etag[0] != '"' || etag[n - 1] != '"') return NULL;
    return svc_arena_printf(a, "%.*s" SVC_ETAG_GZIP_SUFFIX "\"", (int)(n - 1), etag);
}

/* ---- the response -------------------------------------------------------------- */

const char *svc__res_header_get(const svc_res *res, const char *name) {
    for (size_t i = 0; i < res->nheaders; i++)
        if (strcasecmp(res->headers[i].name, name) == 0) return res->headers[i].value;
    return NULL;
}

/* A Vary field already lists Accept-Encoding (a service's, passed on by the
 * gateway) or "*". */
static int varies_already(const svc_res *res) {
    for (size_t i = 0; i < res->nheaders; i++) {
        if (strcasecmp(res->headers[i].name, "vary") != 0) continue;
        const char *v = res->headers[i].value;
        while (*v) {
            size_t len = strcspn(v, ",");
            const char *s = v, *e = v + len;
            v = *e ? e + 1 : e;
            while (s < e && is_ows(*s)) s++;
            while (e > s && is_ows(e[-1])) e--;
            if (coding_is(s, (size_t)(e - s), "accept-encoding") || coding_is(s, (size_t)(e - s), "*")) return 1;
        }
    }
    return 0;
}

void svc__compressed(const svc_app *app, size_t plain, size_t gz) {
    svc_counter_add(app->s_gzip_responses, 1);
    if (plain > gz) svc_counter_add(app->s_gzip_saved, plain - gz);
}

void svc__res_encode(svc_req *req, svc_res *res) {
    if (!req->app->cfg.compress || res->coded || res->streaming || res->status == 204 || res->status == 304 || res->status < 200) return;
    if (res->body.len < SVC_GZIP_MIN_BYTES || !svc__compressible(res->content_type)) return;
    if (svc__res_header_get(res, "Content-Encoding")) return;
    if (!varies_already(res) && svc_res_header(res, "Vary", "Accept-Encoding") != SVC_OK) return;
    if (!svc__accepts_gzip(req)) return;
    /* The compressed body is another representation: a strong ETag gets
     * its gzip form (made first, so that running out of memory leaves the
     * response plain and consistent). */
    size_t etag = 0;
    while (etag < res->nheaders && strcasecmp(res->headers[etag].name, "etag") != 0) etag++;
    const char *gz_etag = NULL;
    if (etag < res->nheaders && res->headers[etag].value[0] == '"' &&
        !(gz_etag = svc__etag_gzip(req->arena, res->headers[etag].value)))
        return;
    svc_buf out = {0};
    svc__worker_buf_take(req->w, &out);
    if (svc__gzip(res->body.data, res->body.len, &out) != SVC_OK ||
        svc_res_header(res, "Content-Encoding", "gzip") != SVC_OK) {
        svc__worker_buf_give(req->w, &out);
        return;
    }
    svc__compressed(req->app, res->body.len, out.len);
    svc__worker_buf_give(req->w, &res->body);
    res->body = out;
    if (gz_etag) res->headers[etag].value = gz_etag;
}
