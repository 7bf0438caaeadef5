/* Internal to svckit's obs layer: not part of the public API. */
#ifndef SVC_OBS_INTERNAL_H
#define SVC_OBS_INTERNAL_H

#include "svckit/core.h"
#include "svckit/obs.h"

/* Logging (src/obs/log.c). */
void svc__log_set_buffered(int on);          /* this thread's lines wait for a flush */
void svc__log_thread_exit(void);             /* flush and free this thread's buffer */
unsigned long svc__log_dropped(void);        /* lines dropped because stdout blocked */
const char *svc__log_timestamp(char out[32]);/* RFC 3339 UTC with milliseconds */
void svc__log_line_begin(svc_buf *b, svc_log_level level); /* "{"time":..,"service":.." or text prefix */
int svc__log_json(void);                     /* 1 when lines are JSON */
/* The trace id that svc_log adds to every line this thread logs until the
 * next swap (NULL or "": none); returns the one it replaces, to be restored.
 * Dispatch sets it while a request is handled. Only read when a line is
 * logged: it must be valid while lines may be logged, not until restored. */
const char *svc__log_trace_swap(const char *trace_id);
/* The text form of an access line after svc__log_line_begin: method, path,
 * status and duration in aligned columns, then the trace id, then
 * " via <transport>" when via is not NULL. */
void svc__log_text_access(svc_buf *b, const char *method, const char *path, int status, double ms,
                          const char *trace_id, const char *via);

/*
 * A counter family whose series hold a double rather than an integer, for
 * counters read from elsewhere in fractional units (process_cpu_seconds_total).
 * Same rules and idempotence as svc_metric_counter; TYPE is still counter.
 * svc_counter_add works on its series too.
 */
svc_metric *svc__metric_counter_f64(const char *name, const char *help, int nlabels,
                                    const char *const *label_names);

/* Sets a counter series to v, for counters whose source of truth lives
 * outside the process's own code (the kernel's CPU accounting). The caller
 * keeps the value monotonic. Integer counters store v truncated (negative and
 * NaN as 0). No-op on NULL or a series that is not a counter. */
void svc__counter_set(svc_series *s, double v);

/* Formats v as the exposition format spells it: NaN, +Inf, -Inf, or the
 * shortest decimal that reads back as the same double. Returns the length
 * written to out (NUL-terminated). */
#define SVC__DOUBLE_STR_MAX 32
size_t svc__metric_format_double(char out[SVC__DOUBLE_STR_MAX], double v);

/*
 * Tracing (src/obs/trace.c; the public part is svckit/trace.h).
 */
#include "svckit/trace.h"

#define SVC_TRACEPARENT_LEN 55        /* "00-<32 hex>-<16 hex>-<2 hex>" */
#define SVC_TRACEPARENT_MAX 256       /* a longer (future-version) value is ignored */
#define SVC_TRACE_QUERY_DEFAULT 100   /* spans in a query's reply unless limit says */
#define SVC_TRACE_QUERY_MAX 256       /* at most, whatever limit says (~100 KB of JSON) */
#define SVC_TRACE_QUERY_REQ_MAX 1024  /* bytes of a query */

/* Sampling ratio (clamped to 0..1), the slow threshold (<= 0: keep the
 * current), and the resource names the encodings carry. Registers the
 * metrics (svc__trace_metrics) too. */
void svc__trace_configure(double sample, int slow_ms, const char *service, const char *instance);
void svc__trace_metrics(void);        /* (re)registers trace_* metrics; after svc_metrics_reset */
void svc__trace_set_instance(const char *instance); /* the NATS instance id, once known */
const char *svc__trace_service(void);
const char *svc__trace_instance(void);
uint64_t svc__trace_slow_ns(void);
void svc__trace_count_dropped(const char *reason, uint64_t n);
void svc__trace_count_invalid(int tracestate); /* 0: traceparent, 1: tracestate */

/* SVC_OK and *out when s[0..n) is a valid traceparent (version not ff, ids
 * lowercase hex and not all zero, version 00 exactly 55 bytes); else
 * SVC_EINVAL and *out untouched. out->flags keeps only the sampled bit. */
int svc__traceparent_parse(const char *s, size_t n, svc_trace_ctx *out);
void svc__traceparent_format(char out[SVC_TRACEPARENT_LEN + 1], const svc_trace_ctx *c);
/* 1 when s[0..n) is a well-formed tracestate of at most SVC_TRACESTATE_MAX
 * bytes and 32 members, so it may be passed on as it is. */
int svc__tracestate_ok(const char *s, size_t n);
void svc__trace_hex(char *out, const uint8_t *p, size_t n); /* 2n digits + NUL */
uint64_t svc__trace_unix_ns(void);   /* CLOCK_REALTIME in ns */

/* A new trace: random ids, sampled by the ratio. */
void svc__trace_root(svc_trace_ctx *c);
void svc__trace_new_id(uint8_t span_id[8]);
/* The context this thread works for (dispatch sets it around hooks and
 * handlers, the store reads it for SQL spans); returns the one replaced. */
const svc_trace_ctx *svc__trace_swap(const svc_trace_ctx *c);
const svc_trace_ctx *svc__trace_current(void);

/* The ring: record a finished span; read index idx (0 when overwritten or
 * being written); the next index to be written. */
void svc__trace_record(const svc_span *s);
int svc__trace_ring_read(uint64_t idx, svc_span *out);
uint64_t svc__trace_ring_head(void);
void svc__trace_ring_reset(void);     /* tests only */

/* The NATS query (docs/observability.md): a JSON object with optional
 * trace_id (32 hex), limit (1..SVC_TRACE_QUERY_MAX) and slowest (bool); an
 * empty payload asks for the newest SVC_TRACE_QUERY_DEFAULT spans. */
typedef struct svc_trace_query {
    uint8_t trace_id[16];
    int has_trace;
    int limit;
    int slowest;
} svc_trace_query;
int svc__trace_query_parse(const char *data, size_t len, svc_trace_query *q, char *err, size_t errlen);
void svc__trace_query(const svc_trace_query *q, svc_buf *out);
/* OTLP/HTTP JSON (ExportTraceServiceRequest) of n spans of this resource. */
void svc__trace_otlp_encode(const svc_span *spans, size_t n, svc_buf *out);

/*
 * Reading series back, for the live snapshot ($SRV.LIVE, docs/messaging.md):
 * no per-request cost, only what a render already does.
 *
 * svc__metric_find: the family of that name, or NULL. Valid until
 * svc_metrics_reset.
 * svc__metric_bounds: a histogram family's bucket bounds (without +Inf) and
 * their number in *n; NULL and 0 for other families.
 * svc__metric_foreach: calls fn for at most max series of m, in creation
 * order, with the label values (one string per label name) and the series;
 * no lock is held while fn runs. Returns how many it visited.
 * svc__series_histogram: a histogram series' non-cumulative bucket counts
 * (nbounds + 1, the last +Inf) into buckets and the sum of observations into
 * *sum; returns the number of buckets, 0 for another kind or cap too small.
 */
typedef void (*svc__series_fn)(void *ud, const char *const *values, const svc_series *s);
svc_metric *svc__metric_find(const char *name);
const double *svc__metric_bounds(const svc_metric *m, int *n);
size_t svc__metric_foreach(svc_metric *m, size_t max, svc__series_fn fn, void *ud);
int svc__series_histogram(const svc_series *s, uint64_t *buckets, int cap, double *sum);

/* This process's CPU time (user + system, seconds) and resident memory
 * (bytes), read from /proc; SVC_EIO when unreadable. */
int svc__process_usage(double *cpu_seconds, double *rss_bytes);

#endif
