/*
 * JSON writing: string escaping and the streaming writer svc_jw.
 *
 * Every response and every JSON log line goes through svc_json_escape, so it
 * copies runs of bytes that need no escaping with one memcpy and finds the end
 * of a run eight bytes at a time. Invalid UTF-8 becomes U+FFFD, one per
 * "maximal subpart" as Unicode recommends (a truncated sequence is one
 * replacement, a stray continuation byte is one each), so the output is always
 * valid JSON whatever the bytes were.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svckit/json.h"

/* Appends with the common case (room already there) inlined. Keeps the
 * buffer's NUL terminator and honours its sticky oom flag. */
static inline void put(svc_buf *b, const void *d, size_t n) {
    if (!b->oom && b->len + n < b->cap) {
        memcpy(b->data + b->len, d, n);
        b->len += n;
        b->data[b->len] = '\0';
    } else {
        svc_buf_append(b, d, n);
    }
}

static inline void put1(svc_buf *b, char c) {
    if (!b->oom && b->len + 1 < b->cap) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
    } else {
        svc_buf_append(b, &c, 1);
    }
}

/* ---- escaping ------------------------------------------------------------ */

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Nonzero if any of the eight bytes is < 0x20, '"', '\\' or >= 0x80. It may
 * say yes when the answer is no (then the byte loop just finds nothing). */
static inline uint64_t word_needs_care(uint64_t x) {
    uint64_t q = x ^ (ONES * '"');
    uint64_t s = x ^ (ONES * '\\');
    uint64_t ctl = (x - ONES * 0x20) & ~x;
    uint64_t zq = (q - ONES) & ~q;
    uint64_t zs = (s - ONES) & ~s;
    return (ctl | zq | zs | x) & HIGHS;
}

/* 1: must be escaped; 2: starts a multi-byte sequence to validate. */
static const unsigned char byte_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

/* Length of the well-formed UTF-8 sequence at p (2..4), or 0 with *bad set to
 * the length of its longest valid prefix (at least 1), which is what one
 * U+FFFD replaces. The second-byte ranges exclude overlong forms (E0, F0),
 * surrogates (ED) and code points above U+10FFFF (F4); C0, C1 and F5..FF
 * never start a sequence. */
static size_t utf8_seq(const unsigned char *p, size_t avail, size_t *bad) {
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (i >= avail || p[i] < lo || p[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return n;
}

static void put_escape(svc_buf *b, unsigned char c) {
    static const char hex[] = "0123456789abcdef";
    char e[6] = {'\\', 0, 0, 0, 0, 0};
    switch (c) {
    case '"': e[1] = '"'; break;
    case '\\': e[1] = '\\'; break;
    case '\b': e[1] = 'b'; break;
    case '\f': e[1] = 'f'; break;
    case '\n': e[1] = 'n'; break;
    case '\r': e[1] = 'r'; break;
    case '\t': e[1] = 't'; break;
    default:
        e[1] = 'u';
        e[2] = '0';
        e[3] = '0';
        e[4] = hex[c >> 4];
        e[5] = hex[c & 15];
        put(b, e, 6);
        return;
    }
    put(b, e, 2);
}

void svc_json_escape(svc_buf *b, const char *s, size_t len) {
    static const char replacement[3] = {'\xEF', '\xBF', '\xBD'};
    if (!s) s = "", len = 0;
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
    /* One reservation covers the usual string with nothing to escape. */
    if (svc_buf_reserve(b, len + 2) != SVC_OK) return;
    put1(b, '"');
    for (;;) {
        while (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            if (word_needs_care(x)) break;
            p += 8;
        }
        while (p < end && byte_class[*p] == 0) p++;
        if (p == end) break;
        if (byte_class[*p] == 2) {
            size_t bad, n = utf8_seq(p, (size_t)(end - p), &bad);
            if (n) {
                p += n; /* valid: stays part of the run */
                continue;
            }
            put(b, run, (size_t)(p - run));
            put(b, replacement, 3);
            p += bad;
        } else {
            put(b, run, (size_t)(p - run));
            put_escape(b, *p);
            p++;
        }
        run = p;
    }
    put(b, run, (size_t)(p - run));
    put1(b, '"');
}

/* ---- the streaming writer ------------------------------------------------- */

void svc_jw_init(svc_jw *w, svc_buf *buf) {
    w->buf = buf;
    w->depth = 0;
    w->err = buf ? SVC_OK : SVC_EINVAL;
    w->need_comma[0] = 0;
    w->in_object[0] = 0;
    w->after_key = 0;
}

/* Common prologue of every value: separator, and the grammar check. Returns 0
 * (and writes nothing) if the writer has failed or the value is misplaced. */
static int begin_value(svc_jw *w) {
    if (w->err) return 0;
    if (w->buf->oom) {
        w->err = SVC_ENOMEM;
        return 0;
    }
    if (w->after_key) {
        w->after_key = 0;
        return 1;
    }
    int d = w->depth;
    if (w->in_object[d]) {
        w->err = SVC_EINVAL; /* a value where a key is needed */
        return 0;
    }
    if (w->need_comma[d]) {
        if (d == 0) {
            w->err = SVC_EINVAL; /* a second top-level value */
            return 0;
        }
        put1(w->buf, ',');
    }
    w->need_comma[d] = 1;
    return 1;
}

static void open_container(svc_jw *w, char c, unsigned char is_obj) {
    if (w->err) return;
    if (w->depth >= SVC_JW_MAX_DEPTH) {
        w->err = SVC_ERANGE;
        return;
    }
    if (!begin_value(w)) return;
    int d = ++w->depth;
    w->need_comma[d] = 0;
    w->in_object[d] = is_obj;
    put1(w->buf, c);
}

static void close_container(svc_jw *w, char c, unsigned char is_obj) {
    if (w->err) return;
    if (w->depth == 0 || w->in_object[w->depth] != is_obj || w->after_key) {
        w->err = SVC_EINVAL;
        return;
    }
    w->depth--;
    put1(w->buf, c);
}

void svc_jw_obj_begin(svc_jw *w) { open_container(w, '{', 1); }
void svc_jw_obj_end(svc_jw *w) { close_container(w, '}', 1); }
void svc_jw_arr_begin(svc_jw *w) { open_container(w, '[', 0); }
void svc_jw_arr_end(svc_jw *w) { close_container(w, ']', 0); }

void svc_jw_keyn(svc_jw *w, const char *key, size_t len) {
    if (w->err) return;
    int d = w->depth;
    if (!key || !w->in_object[d] || w->after_key) {
        w->err = SVC_EINVAL;
        return;
    }
    if (w->need_comma[d]) put1(w->buf, ',');
    w->need_comma[d] = 1;
    svc_json_escape(w->buf, key, len);
    put1(w->buf, ':');
    w->after_key = 1;
}

void svc_jw_key(svc_jw *w, const char *key) {
    svc_jw_keyn(w, key, key ? strlen(key) : 0);
}

void svc_jw_strn(svc_jw *w, const char *s, size_t len) {
    if (!s) {
        svc_jw_null(w);
        return;
    }
    if (begin_value(w)) svc_json_escape(w->buf, s, len);
}

void svc_jw_str(svc_jw *w, const char *s) { svc_jw_strn(w, s, s ? strlen(s) : 0); }

void svc_jw_i64(svc_jw *w, int64_t v) {
    if (begin_value(w)) svc_buf_put_i64(w->buf, v);
}

/* The fewest significant digits that read back as the same double. For normal
 * numbers a value whose shortest form has at most 15 digits prints exactly so
 * with %.15g (a double has 15.95 digits of precision), so trying 15, 16 and 17
 * finds the shortest. Subnormals have fewer digits and get a full search; they
 * are rare. An integral value gets ".0" so that it reads back as a real, as
 * jansson and Python print it: jansson would parse "12" as an integer, which
 * json_equal() does not consider equal to 12.0. */
static size_t format_f64_slow(char out[40], double v) {
    int n = 0;
    int first = (v != 0 && fabs(v) < DBL_MIN) ? 1 : 15;
    for (int prec = first; prec <= 17; prec++) {
        n = snprintf(out, 32, "%.*g", prec, v);
        if (strtod(out, NULL) == v) break;
    }
    int plain = 1;
    for (int i = 0; i < n; i++) {
        char c = out[i];
        if (c == 'e') {
            plain = 0;
        } else if ((c < '0' || c > '9') && c != '-' && c != '+') {
            out[i] = '.'; /* the decimal point, even if a locale made it ',' */
            plain = 0;
        }
    }
    if (plain) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = '\0';
    }
    return (size_t)n;
}

#define F64_FAST_DECIMALS 8

/* snprintf plus strtod cost about 250 ns, most of a small object's time.
 * Prices, ratings and the like have a few decimals, so first look for the
 * fewest decimals k (up to F64_FAST_DECIMALS) such that an integer m gives
 * m / 10^k == |v| exactly. Both are exact doubles (m < 2^53, 10^k <= 10^22),
 * so the division and strtod("m e-k") round the same real number the same
 * way: the digits read back as v, and the smallest k gives the fewest
 * digits. The range is where %g would not use an exponent either. Returns 0
 * when it does not apply. */
static size_t format_f64_fast(char out[40], double v) {
    static const double p10[F64_FAST_DECIMALS + 1] = {1e0, 1e1, 1e2, 1e3, 1e4,
                                                      1e5, 1e6, 1e7, 1e8};
    double a = fabs(v);
    if (!(a >= 1e-4 && a < 1e15)) return 0;
    for (int k = 0; k <= F64_FAST_DECIMALS; k++) {
        double m = a * p10[k];
        if (m >= 9007199254740992.0) return 0; /* 2^53 */
        double r = (double)(uint64_t)(m + 0.5);
        if (r / p10[k] != a) continue;
        char digits[24];
        int nd = 0;
        uint64_t im = (uint64_t)r;
        do {
            digits[nd++] = (char)('0' + im % 10);
            im /= 10;
        } while (im);
        while (nd <= k) digits[nd++] = '0'; /* 0.05: at least one integer digit */
        char *o = out;
        if (v < 0) *o++ = '-';
        for (int i = nd - 1; i >= k; i--) *o++ = digits[i];
        *o++ = '.';
        if (k == 0) *o++ = '0';
        for (int i = k - 1; i >= 0; i--) *o++ = digits[i];
        *o = '\0';
        return (size_t)(o - out);
    }
    return 0;
}

static size_t format_f64(char out[40], double v) {
    size_t n = format_f64_fast(out, v);
    return n ? n : format_f64_slow(out, v);
}

void svc_jw_f64(svc_jw *w, double v) {
    if (!isfinite(v)) {
        svc_jw_null(w);
        return;
    }
    if (!begin_value(w)) return;
    char tmp[40];
    size_t n = format_f64(tmp, v);
    put(w->buf, tmp, n);
}

void svc_jw_bool(svc_jw *w, int v) {
    if (!begin_value(w)) return;
    if (v) put(w->buf, "true", 4);
    else put(w->buf, "false", 5);
}

void svc_jw_null(svc_jw *w) {
    if (begin_value(w)) put(w->buf, "null", 4);
}

void svc_jw_raw(svc_jw *w, const char *json, size_t len) {
    if (w->err) return;
    if (!json || len == 0) {
        w->err = SVC_EINVAL;
        return;
    }
    if (begin_value(w)) put(w->buf, json, len);
}

/* Recursion is bounded: once the writer's depth limit is hit, w->err is set
 * and every level returns at once, so a deep (or cyclic) tree cannot blow the
 * stack. */
static void write_value(svc_jw *w, const json_t *v) {
    if (!v) {
        svc_jw_null(w);
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        /* jansson's iteration API takes a non-const object but does not
         * modify it. */
        json_t *o = (json_t *)v;
        svc_jw_obj_begin(w);
        for (void *it = json_object_iter(o); it && !w->err;
             it = json_object_iter_next(o, it)) {
            svc_jw_keyn(w, json_object_iter_key(it), json_object_iter_key_len(it));
            write_value(w, json_object_iter_value(it));
        }
        svc_jw_obj_end(w);
        break;
    }
    case JSON_ARRAY: {
        svc_jw_arr_begin(w);
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n && !w->err; i++) write_value(w, json_array_get(v, i));
        svc_jw_arr_end(w);
        break;
    }
    case JSON_STRING:
        svc_jw_strn(w, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        svc_jw_i64(w, (int64_t)json_integer_value(v));
        break;
    case JSON_REAL:
        svc_jw_f64(w, json_real_value(v));
        break;
    case JSON_TRUE:
        svc_jw_bool(w, 1);
        break;
    case JSON_FALSE:
        svc_jw_bool(w, 0);
        break;
    case JSON_NULL:
        svc_jw_null(w);
        break;
    }
}

void svc_jw_value(svc_jw *w, const json_t *v) { write_value(w, v); }

int svc_jw_ok(const svc_jw *w) {
    if (w->err) return w->err;
    if (!w->buf || w->buf->oom) return SVC_ENOMEM;
    if (w->depth != 0 || w->after_key) return SVC_EINVAL;
    return SVC_OK;
}
