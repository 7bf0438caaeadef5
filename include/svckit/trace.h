/*
 * svckit/trace.h: distributed tracing (docs/observability.md).
 *
 * Every request a service handles (HTTP or NATS) is a server span; every
 * svc_rpc_call is a client span and every SQL statement of a sampled request
 * an internal span under it. W3C traceparent / tracestate are read from and
 * written to HTTP and NATS headers, so one trace follows a request across
 * services. Finished spans go to a bounded per-process ring
 * (SVC_TRACE_RING_SPANS, the oldest overwritten and counted), which answers
 * the NATS query svckit.trace.<service>.<instance> and feeds the OTLP/HTTP
 * exporter when OTEL_EXPORTER_OTLP_ENDPOINT is set.
 *
 * Sampling (TRACE_SAMPLE, 0..1, default 1.0 as OpenTelemetry's
 * parentbased_always_on): a request with a valid traceparent follows its
 * sampled flag; one without draws against the ratio. A server span of an
 * unsampled trace is still kept when it ends in a 5xx or takes at least
 * TRACE_SLOW_MS (default SVC_TRACE_SLOW_MS); its children are not.
 *
 * A handler may time its own work as a child span:
 *
 *     svc_span s;
 *     svc_span_begin(&s, svc_req_trace(req), SVC_SPAN_INTERNAL, "price rules");
 *     ...
 *     svc_span_end(&s);
 *
 * All functions are thread-safe and allocate nothing.
 */
#ifndef SVCKIT_TRACE_H
#define SVCKIT_TRACE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_TRACE_RING_SPANS 4096     /* finished spans kept per process (~1.5 MB) */
#define SVC_TRACE_SLOW_MS 1000        /* default of TRACE_SLOW_MS: kept even unsampled */
#define SVC_TRACE_NAME_MAX 64         /* bytes of a span name, cut beyond */
#define SVC_TRACE_PEER_MAX 32         /* bytes of the peer service */
#define SVC_TRACE_DETAIL_MAX 192      /* bytes of the route, subject or SQL text */
#define SVC_TRACE_CODE_MAX 24         /* bytes of an error code */
#define SVC_TRACESTATE_MAX 512        /* a longer tracestate is dropped (W3C: at least 512 kept) */

/* OTLP's numbering. */
typedef enum {
    SVC_SPAN_INTERNAL = 1,
    SVC_SPAN_SERVER = 2,
    SVC_SPAN_CLIENT = 3,
    SVC_SPAN_PRODUCER = 4,
    SVC_SPAN_CONSUMER = 5,
} svc_span_kind;

/* What svc_span.detail holds (its OTLP attribute). */
enum { SVC_SPAN_DETAIL_NONE = 0, SVC_SPAN_DETAIL_ROUTE, SVC_SPAN_DETAIL_SQL, SVC_SPAN_DETAIL_SUBJECT };

#define SVC_TRACE_SAMPLED 0x01        /* the W3C trace-flags bit */

/* Where a span sits: its trace, its own id, its flags. */
typedef struct svc_trace_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags;                    /* SVC_TRACE_SAMPLED */
} svc_trace_ctx;

/* A span. Fill with svc_span_begin; the caller may then set error, status,
 * code, peer and detail (NUL-terminated, cut to fit) before svc_span_end. */
typedef struct svc_span {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_id[8];             /* all zero: a root */
    uint8_t kind;                     /* svc_span_kind */
    uint8_t flags;                    /* SVC_TRACE_SAMPLED: recorded at the end */
    uint8_t error;                    /* 1: the span failed */
    uint8_t detail_is;                /* SVC_SPAN_DETAIL_*: what detail holds */
    int16_t status;                   /* HTTP status, 0 when none */
    uint64_t start_ns;                /* unix time, ns */
    uint64_t dur_ns;
    uint64_t mono_ns;                 /* monotonic start (svc_now_ns), for the duration */
    char name[SVC_TRACE_NAME_MAX];
    char peer[SVC_TRACE_PEER_MAX];    /* the other service (client spans) */
    char detail[SVC_TRACE_DETAIL_MAX];/* route template, subject or SQL text */
    char code[SVC_TRACE_CODE_MAX];    /* error code ("timeout", "not_found") */
} svc_span;

/*
 * Starts a span as a child of parent (NULL or a zero trace id: a new trace,
 * sampled by TRACE_SAMPLE). kind is an svc_span_kind; name is cut to
 * SVC_TRACE_NAME_MAX - 1 bytes. Returns 1 when the span will be recorded
 * (its trace is sampled), else 0; either way s is a valid context for its
 * own children (svc_span_ctx).
 */
int svc_span_begin(svc_span *s, const svc_trace_ctx *parent, svc_span_kind kind, const char *name);

/* The context of s, for its children. */
svc_trace_ctx svc_span_ctx(const svc_span *s);

/* Ends s now and records it when sampled. Call once. */
void svc_span_end(svc_span *s);

/* Sets dst to src cut to cap - 1 bytes at a UTF-8 boundary, NUL-terminated
 * (for the char fields above). */
void svc_span_set(char *dst, size_t cap, const char *src);

#ifdef __cplusplus
}
#endif
#endif
