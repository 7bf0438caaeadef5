/* Internal to svckit's obs layer: not part of the public API. */
#ifndef SVC_OBS_INTERNAL_H
#define SVC_OBS_INTERNAL_H

#include "svckit/obs.h"

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

#endif
