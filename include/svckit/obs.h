/*
 * svckit/obs.h: metrics in the Prometheus text exposition format 0.0.4.
 *
 * One process-wide registry. A metric family has a name, help text and a fixed
 * list of label names; a series is one combination of label values. Looking up
 * a series takes a lock (do it once and keep the pointer); updating one is a
 * lock-free atomic, safe from any thread. Each family holds at most
 * SVC_METRIC_MAX_SERIES label combinations; past that, new combinations all map
 * to one more series whose label values are "_overflow", so a client can never
 * make the registry grow without bound. Label values are untrusted: a value
 * that is not well-formed UTF-8 has each bad byte replaced by U+FFFD, and one
 * longer than SVC_METRIC_MAX_VALUE_LEN bytes is cut at a character boundary
 * (so distinct long values may share a series).
 *
 * Every function here is thread-safe. NULL is accepted everywhere: a NULL
 * family yields a NULL series, and updating a NULL series does nothing, so a
 * failed registration never crashes the request path. Updating a series with
 * the wrong kind of call (svc_gauge_set on a counter) does nothing.
 *
 * svc_app_run registers the standard families (http_requests_total,
 * http_request_duration_seconds, http_requests_in_flight, process_*,
 * svckit_build_info) and serves GET /metrics.
 */
#ifndef SVCKIT_OBS_H
#define SVCKIT_OBS_H

#include <stddef.h>
#include <stdint.h>

#include "svckit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_METRIC_MAX_LABELS 8
#define SVC_METRIC_MAX_SERIES 2000
#define SVC_METRIC_MAX_BUCKETS 32
#define SVC_METRIC_MAX_VALUE_LEN 128 /* bytes per label value */

typedef enum { SVC_COUNTER, SVC_GAUGE, SVC_HISTOGRAM } svc_metric_type;

typedef struct svc_metric svc_metric;
typedef struct svc_series svc_series;

/*
 * Registers a family, or returns the existing one of the same name and type
 * (NULL if the name is taken by another type or labels differ, or is not a
 * valid metric name). label_names has nlabels entries. For histograms,
 * buckets are the ascending upper bounds without +Inf (NULL: the default
 * latency buckets, 0.0001 s to 10 s). The registry owns the family.
 *
 * Metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]*, neither starting with "__" nor longer than 200
 * bytes; label names are distinct, and "le" is refused on histograms. Also
 * NULL: nlabels outside 0..SVC_METRIC_MAX_LABELS; buckets not finite and
 * strictly ascending, or nbuckets outside 1..SVC_METRIC_MAX_BUCKETS; an
 * existing histogram with other buckets; a name that would clash with a
 * histogram's samples (a counter "x_count" beside a histogram "x"). The help
 * text of the first registration wins; NULL or "" omits the # HELP line.
 */
svc_metric *svc_metric_counter(const char *name, const char *help, int nlabels,
                               const char *const *label_names);
svc_metric *svc_metric_gauge(const char *name, const char *help, int nlabels,
                             const char *const *label_names);
svc_metric *svc_metric_histogram(const char *name, const char *help, int nlabels,
                                 const char *const *label_names,
                                 const double *buckets, int nbuckets);

/* The series for these label values (nlabels strings, copied; NULL when
 * nlabels is 0; a NULL entry reads as ""). Never NULL for a valid family
 * (falls back to the overflow series, even when out of memory). Label-less
 * families take no lock here. The pointer stays valid until
 * svc_metrics_reset. */
svc_series *svc_metric_with(svc_metric *m, const char *const *label_values);

void svc_counter_add(svc_series *s, uint64_t n);
void svc_gauge_set(svc_series *s, double v);
void svc_gauge_add(svc_series *s, double delta);
void svc_histogram_observe(svc_series *s, double v);

/* Reads back a counter or gauge value (tests, dashboards); for a histogram,
 * the number of observations. 0 for NULL. */
double svc_series_value(const svc_series *s);

/* A callback run at every render, to refresh gauges computed on demand
 * (process RSS, open fds, connection counts). It runs on the rendering thread
 * with no registry lock held, so it may register families, look up series and
 * update them. Registering the same (fn, ud) twice keeps one; NULL fn is
 * ignored. */
typedef void (*svc_metrics_collect_fn)(void *ud);
void svc_metrics_on_collect(svc_metrics_collect_fn fn, void *ud);

/* Runs the collect callbacks, then appends the whole registry in text format
 * 0.0.4 to out: families sorted by name, series sorted by their labels; a
 * label-less family shows its zero value before any update, a labelled one
 * only its # HELP and # TYPE lines. Doubles print in the shortest form that
 * reads back exactly (NaN, +Inf, -Inf spelled so). NULL out is a no-op;
 * out->oom reports an allocation failure. */
void svc_metrics_render(svc_buf *out);

/* Registers process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds, read from /proc at render time. Idempotent. */
void svc_metrics_register_process(void);

/* Frees every family and forgets every collect callback (tests only; no
 * family or series pointer may be used after, and nothing else may touch the
 * registry meanwhile). */
void svc_metrics_reset(void);

#ifdef __cplusplus
}
#endif
#endif
