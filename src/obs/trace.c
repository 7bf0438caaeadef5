/*
 * Spans (svckit/trace.h, docs/observability.md): W3C trace context parsing
 * and formatting, head sampling, the ring of finished spans, and the two
 * encodings that read it: the NATS query's JSON and OTLP/HTTP's JSON.
 *
 * The ring is one static array of SVC_TRACE_RING_SPANS slots. A writer takes
 * the next index with one atomic add and claims its slot by moving the slot's
 * sequence number to 2*index+1 (odd while written) with a compare-and-swap,
 * so recording takes no lock and allocates nothing. The claim keeps two
 * writers out of one slot: a writer that stalled for a whole lap of the ring
 * finds a newer index there (or one still being written) and drops its span,
 * rather than copy over a span a reader has already validated. A reader copies
 * a slot, keeps the copy only if the sequence number is the one it expected
 * before and after, and ends every string of the copy with a NUL whatever it
 * holds. The oldest span is overwritten when the ring is full. What was
 * recorded and overwritten is read off the head when the metrics are
 * rendered, not counted per span.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "svckit/json.h"

_Static_assert((SVC_TRACE_RING_SPANS & (SVC_TRACE_RING_SPANS - 1)) == 0, "ring size is a power of two");

typedef struct {
    _Atomic uint64_t seq; /* 2*index+1 while written, 2*index+2 when done */
    svc_span span;
} slot;

static slot ring[SVC_TRACE_RING_SPANS];
static _Atomic uint64_t ring_head;
static _Atomic uint64_t ring_lost; /* spans dropped for a slot another writer held */

static struct {
    _Atomic uint64_t sample_scaled; /* ratio * 2^32 */
    _Atomic uint64_t slow_ns;
    char service[65];
    char instance[65];
    svc_series *recorded, *overwritten, *bad_traceparent, *bad_tracestate;
    svc_metric *dropped;
} g = {.sample_scaled = 1ull << 32, .slow_ns = (uint64_t)SVC_TRACE_SLOW_MS * 1000000};

static _Thread_local uint64_t tl_rng;
static _Thread_local const svc_trace_ctx *tl_current;

static uint64_t rand64(void) {
    if (!tl_rng) {
        svc_random(&tl_rng, sizeof tl_rng);
        tl_rng |= 1;
    }
    uint64_t x = tl_rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    tl_rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint64_t svc__trace_unix_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* ---- configuration and metrics ---- */

void svc__trace_configure(double sample, int slow_ms, const char *service, const char *instance) {
    if (!(sample >= 0)) sample = 0;
    if (sample > 1) sample = 1;
    atomic_store(&g.sample_scaled, (uint64_t)(sample * 4294967296.0));
    if (slow_ms > 0) atomic_store(&g.slow_ns, (uint64_t)slow_ms * 1000000);
    snprintf(g.service, sizeof g.service, "%s", service ? service : "");
    snprintf(g.instance, sizeof g.instance, "%s", instance ? instance : "");
    svc__trace_metrics();
}

/* The ring's counters, from its head: every index taken was a span
 * recorded, and every index a lap behind the head one overwritten. */
static void collect_ring(void *ud) {
    (void)ud;
    uint64_t head = svc__trace_ring_head();
    uint64_t lost = atomic_load_explicit(&ring_lost, memory_order_relaxed);
    svc__counter_set(g.recorded, (double)head);
    svc__counter_set(g.overwritten, (double)((head > SVC_TRACE_RING_SPANS ? head - SVC_TRACE_RING_SPANS : 0) + lost));
}

void svc__trace_metrics(void) {
    svc_metric *rec = svc_metric_counter("trace_spans_recorded_total", "Spans written to this instance's ring", 0, NULL);
    static const char *const reason[] = {"reason"};
    g.dropped = svc_metric_counter("trace_spans_dropped_total",
                                   "Spans lost: overwritten in the ring before export, or an export batch that failed",
                                   1, reason);
    static const char *const header[] = {"header"};
    svc_metric *bad = svc_metric_counter("trace_context_invalid_total",
                                         "Incoming traceparent or tracestate values ignored as malformed", 1, header);
    g.recorded = svc_metric_with(rec, NULL);
    g.overwritten = svc_metric_with(g.dropped, (const char *const[]){"overwritten"});
    g.bad_traceparent = svc_metric_with(bad, (const char *const[]){"traceparent"});
    g.bad_tracestate = svc_metric_with(bad, (const char *const[]){"tracestate"});
    svc_metrics_on_collect(collect_ring, NULL);
}

void svc__trace_count_dropped(const char *reason, uint64_t n) {
    if (n && g.dropped) svc_counter_add(svc_metric_with(g.dropped, (const char *const[]){reason}), n);
}

void svc__trace_count_invalid(int tracestate) {
    svc_counter_add(tracestate ? g.bad_tracestate : g.bad_traceparent, 1);
}

void svc__trace_set_instance(const char *instance) { snprintf(g.instance, sizeof g.instance, "%s", instance); }
const char *svc__trace_service(void) { return g.service; }
const char *svc__trace_instance(void) { return g.instance; }
uint64_t svc__trace_slow_ns(void) { return atomic_load_explicit(&g.slow_ns, memory_order_relaxed); }

/* ---- W3C trace context ---- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1; /* uppercase is invalid in traceparent */
}

static int unhex(const char *s, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void svc__trace_hex(char *out, const uint8_t *p, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int svc__traceparent_parse(const char *s, size_t n, svc_trace_ctx *out) {
    /* version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 = 55. */
    uint8_t version;
    if (!s || n < 55 || n > SVC_TRACEPARENT_MAX) return SVC_EINVAL;
    if (unhex(s, &version, 1) || version == 0xff) return SVC_EINVAL;
    /* Version 00 is exactly 55 bytes; a later version may add fields after
     * a "-", which are ignored (W3C trace context 4.3). */
    if ((version == 0 && n != 55) || (n > 55 && s[55] != '-')) return SVC_EINVAL;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-') return SVC_EINVAL;
    svc_trace_ctx c;
    if (unhex(s + 3, c.trace_id, 16) || unhex(s + 36, c.span_id, 8) || unhex(s + 53, &c.flags, 1))
        return SVC_EINVAL;
    if (zero(c.trace_id, 16) || zero(c.span_id, 8)) return SVC_EINVAL;
    c.flags &= SVC_TRACE_SAMPLED;
    *out = c;
    return SVC_OK;
}

void svc__traceparent_format(char out[SVC_TRACEPARENT_LEN + 1], const svc_trace_ctx *c) {
    memcpy(out, "00-", 3);
    svc__trace_hex(out + 3, c->trace_id, 16);
    out[35] = '-';
    svc__trace_hex(out + 36, c->span_id, 8);
    out[52] = '-';
    out[53] = '0';
    out[54] = (c->flags & SVC_TRACE_SAMPLED) ? '1' : '0';
    out[55] = '\0';
}

/* W3C tracestate: up to 32 list members "key=value" separated by commas,
 * with optional whitespace (spaces and tabs) around each member; empty
 * members are allowed. Keys lowercase [a-z0-9_*-/@], values printable ASCII
 * but "," and "=", not ending in a space (a space before the next comma or
 * the end is whitespace, not the value's). Checked so that it can be passed
 * on in a header as it came; its meaning is the vendors'. */
static int ows(char c) { return c == ' ' || c == '\t'; }

int svc__tracestate_ok(const char *s, size_t n) {
    if (!s || n == 0 || n > SVC_TRACESTATE_MAX) return 0;
    int members = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && ows(s[i])) i++;
        if (i == n) break;
        if (s[i] == ',') { /* empty member */
            i++;
            continue;
        }
        size_t k = i;
        while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
                         s[i] == '-' || s[i] == '*' || s[i] == '/' || s[i] == '@'))
            i++;
        if (i == k || i - k > 256 || i == n || s[i] != '=') return 0;
        size_t v = ++i;
        while (i < n && s[i] >= 0x20 && s[i] <= 0x7e && s[i] != ',' && s[i] != '=') i++;
        size_t end = i;
        while (end > v && s[end - 1] == ' ') end--;
        if (end == v || end - v > 256) return 0;
        while (i < n && ows(s[i])) i++;
        if (i < n && s[i] != ',') return 0;
        if (++members > 32) return 0;
        if (i < n) i++;
    }
    return members > 0;
}

/* ---- sampling and context ---- */

static int draw(void) {
    uint64_t scaled = atomic_load_explicit(&g.sample_scaled, memory_order_relaxed);
    if (scaled >= 1ull << 32) return 1;
    return (rand64() >> 32) < scaled;
}

void svc__trace_new_id(uint8_t span_id[8]) {
    do {
        uint64_t r = rand64();
        memcpy(span_id, &r, 8);
    } while (zero(span_id, 8));
}

void svc__trace_root(svc_trace_ctx *c) {
    do {
        uint64_t a = rand64(), b = rand64();
        memcpy(c->trace_id, &a, 8);
        memcpy(c->trace_id + 8, &b, 8);
    } while (zero(c->trace_id, 16));
    svc__trace_new_id(c->span_id);
    c->flags = draw() ? SVC_TRACE_SAMPLED : 0;
}

const svc_trace_ctx *svc__trace_swap(const svc_trace_ctx *c) {
    const svc_trace_ctx *prev = tl_current;
    tl_current = c;
    return prev;
}

const svc_trace_ctx *svc__trace_current(void) { return tl_current; }

/* ---- spans ---- */

void svc_span_set(char *dst, size_t cap, const char *src) {
    if (!dst || !cap) return;
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80) n--; /* not inside a character */
    }
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

int svc_span_begin(svc_span *s, const svc_trace_ctx *parent, svc_span_kind kind, const char *name) {
    memset(s, 0, offsetof(svc_span, name));
    s->name[0] = s->peer[0] = s->detail[0] = s->code[0] = '\0';
    if (parent && !zero(parent->trace_id, 16)) {
        memcpy(s->trace_id, parent->trace_id, 16);
        memcpy(s->parent_id, parent->span_id, 8);
        s->flags = parent->flags & SVC_TRACE_SAMPLED;
        svc__trace_new_id(s->span_id);
    } else {
        svc_trace_ctx c;
        svc__trace_root(&c);
        memcpy(s->trace_id, c.trace_id, 16);
        memcpy(s->span_id, c.span_id, 8);
        s->flags = c.flags;
    }
    s->kind = (uint8_t)kind;
    svc_span_set(s->name, sizeof s->name, name);
    s->mono_ns = svc_now_ns();
    s->start_ns = svc__trace_unix_ns();
    return s->flags & SVC_TRACE_SAMPLED;
}

svc_trace_ctx svc_span_ctx(const svc_span *s) {
    svc_trace_ctx c;
    memcpy(c.trace_id, s->trace_id, 16);
    memcpy(c.span_id, s->span_id, 8);
    c.flags = s->flags;
    return c;
}

void svc_span_end(svc_span *s) {
    s->dur_ns = svc_now_ns() - s->mono_ns;
    if (s->flags & SVC_TRACE_SAMPLED) svc__trace_record(s);
}

void svc__trace_record(const svc_span *s) {
    uint64_t idx = atomic_fetch_add_explicit(&ring_head, 1, memory_order_relaxed);
    slot *sl = &ring[idx & (SVC_TRACE_RING_SPANS - 1)];
    /* Free for index idx: done with an older lap (even, below 2*idx+1). */
    uint64_t seq = atomic_load_explicit(&sl->seq, memory_order_relaxed);
    do {
        if ((seq & 1) || seq > 2 * idx) {
            atomic_fetch_add_explicit(&ring_lost, 1, memory_order_relaxed);
            return;
        }
    } while (!atomic_compare_exchange_weak_explicit(&sl->seq, &seq, 2 * idx + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    atomic_thread_fence(memory_order_release);
    memcpy(&sl->span, s, sizeof *s);
    atomic_store_explicit(&sl->seq, 2 * idx + 2, memory_order_release);
}

uint64_t svc__trace_ring_head(void) { return atomic_load_explicit(&ring_head, memory_order_acquire); }

int svc__trace_ring_read(uint64_t idx, svc_span *out) {
    const slot *sl = &ring[idx & (SVC_TRACE_RING_SPANS - 1)];
    uint64_t s1 = atomic_load_explicit(&sl->seq, memory_order_acquire);
    if (s1 != 2 * idx + 2) return 0;
    memcpy(out, &sl->span, sizeof *out);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&sl->seq, memory_order_relaxed) != s1) return 0;
    /* The encodings read these as C strings: bounded whatever the writer left. */
    out->name[sizeof out->name - 1] = '\0';
    out->peer[sizeof out->peer - 1] = '\0';
    out->detail[sizeof out->detail - 1] = '\0';
    out->code[sizeof out->code - 1] = '\0';
    return 1;
}

void svc__trace_ring_reset(void) {
    memset(ring, 0, sizeof ring);
    atomic_store(&ring_head, 0);
    atomic_store(&ring_lost, 0);
}

/* ---- the NATS query's JSON ---- */

static const char *kind_name(int k) {
    switch (k) {
    case SVC_SPAN_SERVER: return "server";
    case SVC_SPAN_CLIENT: return "client";
    case SVC_SPAN_PRODUCER: return "producer";
    case SVC_SPAN_CONSUMER: return "consumer";
    default: return "internal";
    }
}

static const char *detail_key(int d) {
    switch (d) {
    case SVC_SPAN_DETAIL_ROUTE: return "route";
    case SVC_SPAN_DETAIL_SQL: return "sql";
    case SVC_SPAN_DETAIL_SUBJECT: return "subject";
    default: return NULL;
    }
}

static void put_span(svc_jw *w, const svc_span *s) {
    char hex[33];
    svc_jw_obj_begin(w);
    svc__trace_hex(hex, s->trace_id, 16);
    svc_jw_key(w, "trace_id"), svc_jw_str(w, hex);
    svc__trace_hex(hex, s->span_id, 8);
    svc_jw_key(w, "span_id"), svc_jw_str(w, hex);
    if (!zero(s->parent_id, 8)) {
        svc__trace_hex(hex, s->parent_id, 8);
        svc_jw_key(w, "parent_id"), svc_jw_str(w, hex);
    }
    svc_jw_key(w, "name"), svc_jw_str(w, s->name);
    svc_jw_key(w, "kind"), svc_jw_str(w, kind_name(s->kind));
    svc_jw_key(w, "start_ns"), svc_jw_i64(w, (int64_t)s->start_ns);
    svc_jw_key(w, "duration_ns"), svc_jw_i64(w, (int64_t)s->dur_ns);
    svc_jw_key(w, "error"), svc_jw_bool(w, s->error);
    if (s->status) svc_jw_key(w, "status"), svc_jw_i64(w, s->status);
    if (s->code[0]) svc_jw_key(w, "code"), svc_jw_str(w, s->code);
    if (s->peer[0]) svc_jw_key(w, "peer"), svc_jw_str(w, s->peer);
    const char *dk = detail_key(s->detail_is);
    if (dk && s->detail[0]) svc_jw_key(w, dk), svc_jw_str(w, s->detail);
    svc_jw_obj_end(w);
}

static int span_matches(const svc_span *s, const svc_trace_query *q) {
    if (q->has_trace && memcmp(s->trace_id, q->trace_id, 16) != 0) return 0;
    if (q->slowest && s->kind != SVC_SPAN_SERVER) return 0;
    return 1;
}

int svc__trace_query_parse(const char *data, size_t len, svc_trace_query *q, char *err, size_t errlen) {
    memset(q, 0, sizeof *q);
    q->limit = SVC_TRACE_QUERY_DEFAULT;
    if (len == 0) return SVC_OK;
    svc_json_limits lim = {.max_bytes = SVC_TRACE_QUERY_REQ_MAX, .max_depth = 2, .max_string = 64};
    json_t *doc = NULL;
    int rc = svc_json_parse(data, len, &lim, &doc, err, errlen);
    if (rc != SVC_OK) return rc;
    static const char *const keys[] = {"trace_id", "limit", "slowest", NULL};
    const char *unknown = NULL;
    if (!json_is_object(doc) || svc_json_only_keys(doc, keys, &unknown) != SVC_OK) {
        snprintf(err, errlen, "%s%s", unknown ? "unknown field " : "the query is a JSON object",
                 unknown ? unknown : "");
        json_decref(doc);
        return SVC_EINVAL;
    }
    json_t *t = json_object_get(doc, "trace_id"), *l = json_object_get(doc, "limit"),
           *sl = json_object_get(doc, "slowest");
    rc = SVC_OK;
    if (t && (!json_is_string(t) || json_string_length(t) != 32 || unhex(json_string_value(t), q->trace_id, 16))) {
        snprintf(err, errlen, "trace_id is 32 lowercase hex digits");
        rc = SVC_EINVAL;
    }
    q->has_trace = t != NULL;
    if (l && (!json_is_integer(l) || json_integer_value(l) < 1 || json_integer_value(l) > SVC_TRACE_QUERY_MAX)) {
        snprintf(err, errlen, "limit is an integer from 1 to %d", SVC_TRACE_QUERY_MAX);
        rc = SVC_EINVAL;
    } else if (l) {
        q->limit = (int)json_integer_value(l);
    }
    if (sl && !json_is_boolean(sl)) {
        snprintf(err, errlen, "slowest is true or false");
        rc = SVC_EINVAL;
    }
    q->slowest = sl && json_is_true(sl);
    json_decref(doc);
    return rc;
}

/* A span kept for "slowest": where its copy is, and what ranks it. */
typedef struct {
    uint64_t dur_ns;
    uint64_t idx; /* its ring index: the newer of two as long ranks higher */
    int copy;
} ranked;

static int ranks_above(const ranked *a, const ranked *b) {
    return a->dur_ns != b->dur_ns ? a->dur_ns > b->dur_ns : a->idx > b->idx;
}

/* Restores the min-heap h[0..n) below i (the lowest-ranked span at h[0]). */
static void sift_down(ranked *h, int n, int i) {
    for (;;) {
        int low = i, l = 2 * i + 1, r = l + 1;
        if (l < n && ranks_above(&h[low], &h[l])) low = l;
        if (r < n && ranks_above(&h[low], &h[r])) low = r;
        if (low == i) return;
        ranked t = h[i];
        h[i] = h[low], h[low] = t;
        i = low;
    }
}

static void sift_up(ranked *h, int i) {
    while (i > 0 && ranks_above(&h[(i - 1) / 2], &h[i])) {
        ranked t = h[i];
        h[i] = h[(i - 1) / 2], h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

/* Picks what q asks for from the ring into found (limit + 1 copies: one to
 * read into), ordered in order[0..n): newest first, or for "slowest" the
 * limit longest server spans, longest first (as long: newest first), kept
 * in a min-heap of their ranks, so a span read is copied once and a longer
 * one costs a few swaps of small entries, not a shift of copies. */
static int pick(const svc_trace_query *q, svc_span *found, ranked *order) {
    int n = 0, spare = 0;
    if (q->limit < 1) return 0;
    uint64_t head = svc__trace_ring_head();
    uint64_t lo = head > SVC_TRACE_RING_SPANS ? head - SVC_TRACE_RING_SPANS : 0;
    for (uint64_t i = head; i > lo && (q->slowest || n < q->limit); i--) {
        svc_span *s = &found[spare];
        if (!svc__trace_ring_read(i - 1, s) || !span_matches(s, q)) continue;
        ranked r = {s->dur_ns, i - 1, spare};
        if (n < q->limit) {
            order[n] = r;
            if (q->slowest) sift_up(order, n);
            spare = ++n;
        } else if (ranks_above(&r, &order[0])) {
            spare = order[0].copy;
            order[0] = r;
            sift_down(order, n, 0);
        }
    }
    /* Heap sort: the lowest-ranked to the end, one at a time. */
    for (int k = q->slowest ? n - 1 : 0; k > 0; k--) {
        ranked t = order[0];
        order[0] = order[k], order[k] = t;
        sift_down(order, k, 0);
    }
    return n;
}

void svc__trace_query(const svc_trace_query *q, svc_buf *out) {
    svc_span *found = malloc(((size_t)q->limit + 1) * sizeof *found);
    ranked *order = malloc(((size_t)q->limit + 1) * sizeof *order);
    if (!found || !order) {
        free(found);
        free(order);
        out->oom = 1;
        return;
    }
    int n = pick(q, found, order);
    svc_jw w;
    svc_jw_init(&w, out);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "service"), svc_jw_str(&w, g.service);
    svc_jw_key(&w, "instance"), svc_jw_str(&w, g.instance);
    svc_jw_key(&w, "spans");
    svc_jw_arr_begin(&w);
    for (int i = 0; i < n; i++) put_span(&w, &found[order[i].copy]);
    svc_jw_arr_end(&w);
    svc_jw_obj_end(&w);
    free(found);
    free(order);
}

/* ---- OTLP/HTTP JSON (opentelemetry-proto, JSON protobuf encoding) ---- */

static void attr_str(svc_jw *w, const char *key, const char *v) {
    svc_jw_obj_begin(w);
    svc_jw_key(w, "key"), svc_jw_str(w, key);
    svc_jw_key(w, "value");
    svc_jw_obj_begin(w);
    svc_jw_key(w, "stringValue"), svc_jw_str(w, v);
    svc_jw_obj_end(w);
    svc_jw_obj_end(w);
}

static void u64_str(svc_jw *w, uint64_t v) {
    char num[24];
    size_t n = svc__fmt_u64(num, v);
    svc_jw_strn(w, num, n); /* int64 fields are strings in OTLP JSON */
}

static void attr_int(svc_jw *w, const char *key, int64_t v) {
    svc_jw_obj_begin(w);
    svc_jw_key(w, "key"), svc_jw_str(w, key);
    svc_jw_key(w, "value");
    svc_jw_obj_begin(w);
    svc_jw_key(w, "intValue"), u64_str(w, (uint64_t)v);
    svc_jw_obj_end(w);
    svc_jw_obj_end(w);
}

static const char *otlp_detail_key(int d) {
    switch (d) {
    case SVC_SPAN_DETAIL_ROUTE: return "http.route";
    case SVC_SPAN_DETAIL_SQL: return "db.query.text";
    case SVC_SPAN_DETAIL_SUBJECT: return "messaging.destination.name";
    default: return NULL;
    }
}

void svc__trace_otlp_encode(const svc_span *spans, size_t n, svc_buf *out) {
    char hex[33];
    svc_jw w;
    svc_jw_init(&w, out);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "resourceSpans");
    svc_jw_arr_begin(&w);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "resource");
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "attributes");
    svc_jw_arr_begin(&w);
    attr_str(&w, "service.name", g.service);
    attr_str(&w, "service.instance.id", g.instance);
    attr_str(&w, "telemetry.sdk.name", "svckit");
    svc_jw_arr_end(&w);
    svc_jw_obj_end(&w);
    svc_jw_key(&w, "scopeSpans");
    svc_jw_arr_begin(&w);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "scope");
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "name"), svc_jw_str(&w, "svckit");
    svc_jw_obj_end(&w);
    svc_jw_key(&w, "spans");
    svc_jw_arr_begin(&w);
    for (size_t i = 0; i < n; i++) {
        const svc_span *s = &spans[i];
        svc_jw_obj_begin(&w);
        svc__trace_hex(hex, s->trace_id, 16);
        svc_jw_key(&w, "traceId"), svc_jw_str(&w, hex);
        svc__trace_hex(hex, s->span_id, 8);
        svc_jw_key(&w, "spanId"), svc_jw_str(&w, hex);
        if (!zero(s->parent_id, 8)) {
            svc__trace_hex(hex, s->parent_id, 8);
            svc_jw_key(&w, "parentSpanId"), svc_jw_str(&w, hex);
        }
        svc_jw_key(&w, "name"), svc_jw_str(&w, s->name);
        svc_jw_key(&w, "kind"), svc_jw_i64(&w, s->kind);
        svc_jw_key(&w, "startTimeUnixNano"), u64_str(&w, s->start_ns);
        svc_jw_key(&w, "endTimeUnixNano"), u64_str(&w, s->start_ns + s->dur_ns);
        svc_jw_key(&w, "attributes");
        svc_jw_arr_begin(&w);
        const char *dk = otlp_detail_key(s->detail_is);
        if (dk && s->detail[0]) attr_str(&w, dk, s->detail);
        if (s->status) attr_int(&w, "http.response.status_code", s->status);
        if (s->peer[0]) attr_str(&w, "peer.service", s->peer);
        if (s->code[0]) attr_str(&w, "error.type", s->code);
        svc_jw_arr_end(&w);
        if (s->error) {
            svc_jw_key(&w, "status");
            svc_jw_obj_begin(&w);
            svc_jw_key(&w, "code"), svc_jw_i64(&w, 2); /* STATUS_CODE_ERROR */
            if (s->code[0]) svc_jw_key(&w, "message"), svc_jw_str(&w, s->code);
            svc_jw_obj_end(&w);
        }
        svc_jw_obj_end(&w);
    }
    svc_jw_arr_end(&w);
    svc_jw_obj_end(&w);
    svc_jw_arr_end(&w);
    svc_jw_obj_end(&w);
    svc_jw_arr_end(&w);
    svc_jw_obj_end(&w);
}
