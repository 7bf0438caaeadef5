/*
 * The metrics registry and its Prometheus text exposition (format 0.0.4).
 *
 * Locks, and the only order in which two are ever held:
 *   registry_mu  the family list (kept sorted by name, so output is stable);
 *   m->mu        one family's series table, taken by svc_metric_with and,
 *                under registry_mu, by the render to snapshot the series;
 *   collect_mu   the collector list, never held while a collector runs,
 *                because collectors register families and look up series.
 *
 * Series live until svc_metrics_reset, so a pointer handed out stays valid
 * and every update is one relaxed atomic (or a CAS loop for doubles) on
 * memory no lock guards. Fields other than the atomics are written before the
 * series is published under m->mu and never change afterwards.
 *
 * A histogram keeps one non-cumulative count per bucket, so an observation
 * touches a single counter; the render accumulates them and derives _count
 * from the same loads, which keeps _count equal to the le="+Inf" bucket even
 * while observations race with the scrape.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "svckit/obs.h"

/* Longer names are a bug, not a use case; the limit keeps hostile-length
 * strings out of every later strcmp and buffer. */
#define NAME_MAX_LEN 200
#define TABLE_INITIAL_SIZE 8
#define OVERFLOW_VALUE "_overflow"
/* Counts, per family, the lookups of a new label set that the cap folded
 * into the overflow series: a family at its cap is visible without reading
 * every one of its series. */
#define FOLDED_FAMILY "svckit_metric_series_overflow_total"
#define FOLDED_HELP "Lookups of a new label set folded into the _overflow series of a family at its series cap"
#define FNV_OFFSET SVC__FNV1A_SEED

enum series_kind { KIND_COUNTER, KIND_COUNTER_F64, KIND_GAUGE, KIND_HISTOGRAM };

struct svc_series {
    /* Counter count, or the bits of a double: gauge value, float counter,
     * histogram sum. First, so the hot field starts the cache line. */
    _Atomic uint64_t value;
    uint8_t kind;
    uint8_t nbounds;
    const double *bounds;   /* the family's, which outlives the series */
    svc_series *next;       /* insertion order */
    svc_series *chain;      /* hash bucket chain */
    uint64_t hash;
    const char *values;     /* label values, NUL-terminated, back to back */
    const char *labels;     /* a="x",b="y" escaped for output; "" without labels */
    _Atomic uint64_t buckets[]; /* histograms: nbounds + 1 (the last is +Inf) */
};

struct svc_metric {
    svc_metric *next;
    char *name;
    char *help;
    svc_metric_type type;
    enum series_kind kind;
    int nlabels;
    char *label_names[SVC_METRIC_MAX_LABELS];
    int nbounds;
    double bounds[SVC_METRIC_MAX_BUCKETS];
    char (*le)[SVC__DOUBLE_STR_MAX]; /* histograms: the bounds as le="" text */
    svc_series *single;    /* label-less families: the one series, made at registration */

    pthread_mutex_t mu;    /* guards the fields below */
    svc_series **table;
    size_t table_size;     /* a power of two */
    size_t nseries;        /* in the table, the overflow series included */
    svc_series *head, *tail;
    svc_series *overflow;  /* once the cap is reached */
    svc_series *spare;     /* the overflow series, allocated up front so that
                              running out of memory still yields a series */
    bool warned;           /* the cap was logged */
    _Atomic(svc_series *) folded; /* this family's FOLDED_FAMILY series */
};

struct collector {
    svc_metrics_collect_fn fn;
    void *ud;
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static svc_metric *families;

static pthread_mutex_t collect_mu = PTHREAD_MUTEX_INITIALIZER;
static struct collector *collectors;
static size_t ncollectors, collectors_cap;

static const double default_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                         0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                         1,      2.5,     5,      10};

/* ---- doubles in atomics ------------------------------------------------- */

static inline uint64_t double_bits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static inline double bits_double(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static inline void atomic_add_double(_Atomic uint64_t *p, double d) {
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, double_bits(bits_double(old) + d),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* ---- updates: the hot path ---------------------------------------------- */

void svc_counter_add(svc_series *s, uint64_t n) {
    if (!s) return;
    if (s->kind == KIND_COUNTER)
        atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
    else if (s->kind == KIND_COUNTER_F64)
        atomic_add_double(&s->value, (double)n);
}

void svc_gauge_set(svc_series *s, double v) {
    if (s && s->kind == KIND_GAUGE)
        atomic_store_explicit(&s->value, double_bits(v), memory_order_relaxed);
}

void svc_gauge_add(svc_series *s, double delta) {
    if (s && s->kind == KIND_GAUGE) atomic_add_double(&s->value, delta);
}

void svc_histogram_observe(svc_series *s, double v) {
    if (!s || s->kind != KIND_HISTOGRAM) return;
    /* First bound >= v, so a value equal to a bound counts in that bucket;
     * NaN compares false everywhere and lands in +Inf. */
    unsigned lo = 0, hi = s->nbounds;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (v <= s->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&s->buckets[lo], 1, memory_order_relaxed);
    atomic_add_double(&s->value, v);
}

void svc__counter_set(svc_series *s, double v) {
    if (!s) return;
    if (s->kind == KIND_COUNTER_F64) {
        atomic_store_explicit(&s->value, double_bits(v), memory_order_relaxed);
    } else if (s->kind == KIND_COUNTER) {
        uint64_t u = 0;
        if (v >= 18446744073709551616.0)
            u = UINT64_MAX;
        else if (v >= 0)
            u = (uint64_t)v;
        atomic_store_explicit(&s->value, u, memory_order_relaxed);
    }
}

static uint64_t histogram_count(const svc_series *s) {
    uint64_t n = 0;
    for (unsigned i = 0; i <= s->nbounds; i++)
        n += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
    return n;
}

double svc_series_value(const svc_series *s) {
    if (!s) return 0;
    uint64_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    switch ((enum series_kind)s->kind) {
    case KIND_COUNTER: return (double)v;
    case KIND_COUNTER_F64:
    case KIND_GAUGE: return bits_double(v);
    case KIND_HISTOGRAM: return (double)histogram_count(s);
    }
    return 0;
}

/* ---- names and label values ---------------------------------------------- */

static bool is_alpha_(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names the same without ':'.
 * A "__" prefix is reserved for Prometheus's own use in both. */
static bool valid_name(const char *s, bool colon) {
    if (!s || !*s || (s[0] == '_' && s[1] == '_')) return false;
    size_t i = 0;
    for (; s[i]; i++) {
        int c = (unsigned char)s[i];
        if (!(is_alpha_(c) || (colon && c == ':') || (i > 0 && is_digit(c)))) return false;
        if (i >= NAME_MAX_LEN) return false;
    }
    return true;
}

/* Length of the well-formed UTF-8 character at p (1 to 4), or 0. p is
 * NUL-terminated and NUL is never a continuation byte, so no check reads
 * past the terminator. Rejects overlong forms, surrogates and > U+10FFFF,
 * as Prometheus does. */
static size_t utf8_char_len(const unsigned char *p) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return (p[1] & 0xC0) == 0x80 ? 2 : 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (p[1] < lo || p[1] > hi) return 0;
        return (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        if (p[1] < lo || p[1] > hi) return 0;
        if ((p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        return 4;
    }
    return 0;
}

/* True when v can be used as is: well-formed UTF-8 within the length limit.
 * The common case, short ASCII, costs one pass with one compare per byte. */
static bool value_clean(const char *v) {
    const unsigned char *p = (const unsigned char *)v;
    size_t i = 0;
    while (p[i]) {
        if (i >= SVC_METRIC_MAX_VALUE_LEN) return false;
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_char_len(p + i);
        if (n == 0 || i + n > SVC_METRIC_MAX_VALUE_LEN) return false;
        i += n;
    }
    return true;
}

/* Copies v into out, replacing each ill-formed byte with U+FFFD and cutting
 * at a character boundary before SVC_METRIC_MAX_VALUE_LEN bytes. */
static void value_sanitize(const char *v, char out[SVC_METRIC_MAX_VALUE_LEN + 1]) {
    const unsigned char *p = (const unsigned char *)v;
    size_t o = 0;
    while (*p) {
        size_t n = utf8_char_len(p);
        const unsigned char *src = p;
        size_t adv = n;
        if (n == 0) {
            src = (const unsigned char *)"\xEF\xBF\xBD";
            n = 3;
            adv = 1;
        }
        if (o + n > SVC_METRIC_MAX_VALUE_LEN) break;
        memcpy(out + o, src, n);
        o += n;
        p += adv;
    }
    out[o] = '\0';
}

static uint64_t hash_value(uint64_t h, const char *v) {
    /* A 0xFF after each value (never in UTF-8), so ("ab","c") and ("a","bc") differ. */
    static const unsigned char sep = 0xFF;
    return svc__fnv1a(&sep, 1, svc__fnv1a(v, strlen(v), h));
}

static size_t escaped_len(const char *s, bool quote) {
    size_t n = 0;
    for (; *s; s++) n += (*s == '\\' || *s == '\n' || (quote && *s == '"')) ? 2 : 1;
    return n;
}

/* Label values escape \, " and newline; help text only \ and newline. */
static char *escape_into(char *dst, const char *s, bool quote) {
    for (; *s; s++) {
        if (*s == '\\' || (quote && *s == '"')) {
            *dst++ = '\\';
            *dst++ = *s;
        } else if (*s == '\n') {
            *dst++ = '\\';
            *dst++ = 'n';
        } else {
            *dst++ = *s;
        }
    }
    return dst;
}

size_t svc__metric_format_double(char out[SVC__DOUBLE_STR_MAX], double v) {
    if (isnan(v)) {
        memcpy(out, "NaN", 4);
        return 3;
    }
    if (isinf(v)) {
        memcpy(out, v > 0 ? "+Inf" : "-Inf", 5);
        return 4;
    }
    /* The shortest of 15, 16, 17 significant digits that reads back exactly:
     * 0.1 stays "0.1", and no value loses a bit. */
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, SVC__DOUBLE_STR_MAX, "%.*g", prec, v);
        if (strtod(out, NULL) == v) break;
    }
    return (size_t)n;
}

/* ---- series --------------------------------------------------------------- */

static svc_series *series_new(const svc_metric *m, uint64_t hash, const char *const *vals) {
    size_t nbuckets = m->kind == KIND_HISTOGRAM ? (size_t)m->nbounds + 1 : 0;
    size_t vlen = 0, llen = 0;
    for (int i = 0; i < m->nlabels; i++) {
        vlen += strlen(vals[i]) + 1;
        /* name="value", */
        llen += strlen(m->label_names[i]) + 4 + escaped_len(vals[i], true);
    }
    size_t head = sizeof(svc_series) + nbuckets * sizeof(_Atomic uint64_t);
    svc_series *s = calloc(1, head + vlen + llen + 1);
    if (!s) return NULL;
    s->kind = (uint8_t)m->kind;
    s->nbounds = (uint8_t)m->nbounds;
    s->bounds = m->bounds;
    s->hash = hash;
    char *v = (char *)s + head;
    char *l = v + vlen;
    s->values = v;
    s->labels = l;
    for (int i = 0; i < m->nlabels; i++) {
        size_t n = strlen(vals[i]) + 1;
        memcpy(v, vals[i], n);
        v += n;
        if (i) *l++ = ',';
        size_t nl = strlen(m->label_names[i]);
        memcpy(l, m->label_names[i], nl);
        l += nl;
        *l++ = '=';
        *l++ = '"';
        l = escape_into(l, vals[i], true);
        *l++ = '"';
    }
    *l = '\0';
    atomic_init(&s->value, m->kind == KIND_COUNTER ? 0 : double_bits(0.0));
    for (size_t i = 0; i < nbuckets; i++) atomic_init(&s->buckets[i], 0);
    return s;
}

static bool series_matches(const svc_series *s, int nlabels, const char *const *vals) {
    const char *p = s->values;
    for (int i = 0; i < nlabels; i++) {
        if (strcmp(p, vals[i]) != 0) return false;
        p += strlen(p) + 1;
    }
    return true;
}

/* Callers hold m->mu. */
static svc_series *table_find(const svc_metric *m, uint64_t hash, const char *const *vals) {
    for (svc_series *s = m->table[hash & (m->table_size - 1)]; s; s = s->chain)
        if (s->hash == hash && series_matches(s, m->nlabels, vals)) return s;
    return NULL;
}

static void table_grow(svc_metric *m) {
    size_t size = m->table_size * 2;
    svc_series **t = calloc(size, sizeof *t);
    if (!t) return; /* longer chains, still correct */
    for (size_t i = 0; i < m->table_size; i++) {
        for (svc_series *s = m->table[i], *next; s; s = next) {
            next = s->chain;
            s->chain = t[s->hash & (size - 1)];
            t[s->hash & (size - 1)] = s;
        }
    }
    free(m->table);
    m->table = t;
    m->table_size = size;
}

/* Links s into the table and the insertion list. Callers hold m->mu. */
static void table_add(svc_metric *m, svc_series *s) {
    if (m->nseries >= m->table_size) table_grow(m);
    size_t i = s->hash & (m->table_size - 1);
    s->chain = m->table[i];
    m->table[i] = s;
    if (m->tail)
        m->tail->next = s;
    else
        m->head = s;
    m->tail = s;
    m->nseries++;
}

/* The series every label combination past the cap shares. If a client sent
 * "_overflow" values before the cap, that series is the overflow series, so
 * the output never holds the same label set twice. Callers hold m->mu. */
static svc_series *overflow_series(svc_metric *m) {
    if (m->overflow) return m->overflow;
    const char *vals[SVC_METRIC_MAX_LABELS];
    for (int i = 0; i < m->nlabels; i++) vals[i] = OVERFLOW_VALUE;
    svc_series *s = table_find(m, m->spare->hash, vals);
    if (!s) {
        s = m->spare;
        m->spare = NULL;
        table_add(m, s);
    }
    m->overflow = s;
    return s;
}

/* m's series of FOLDED_FAMILY, registered on first use. No lock is held
 * here, and the family's own overflow is not counted in itself, so the
 * lookup cannot recurse. */
static svc_series *folded_series(svc_metric *m) {
    svc_series *s = atomic_load_explicit(&m->folded, memory_order_acquire);
    if (s) return s;
    static const char *const label[] = {"family"};
    svc_metric *f = svc_metric_counter(FOLDED_FAMILY, FOLDED_HELP, 1, label);
    if (!f || f == m) return NULL;
    const char *name[] = {m->name};
    s = svc_metric_with(f, name);
    atomic_store_explicit(&m->folded, s, memory_order_release);
    return s;
}

svc_series *svc_metric_with(svc_metric *m, const char *const *label_values) {
    if (!m) return NULL;
    if (m->single) return m->single;

    const char *vals[SVC_METRIC_MAX_LABELS];
    char fixed[SVC_METRIC_MAX_LABELS][SVC_METRIC_MAX_VALUE_LEN + 1];
    uint64_t hash = FNV_OFFSET;
    for (int i = 0; i < m->nlabels; i++) {
        const char *v = label_values && label_values[i] ? label_values[i] : "";
        if (!value_clean(v)) {
            value_sanitize(v, fixed[i]);
            v = fixed[i];
        }
        vals[i] = v;
        hash = hash_value(hash, v);
    }

    pthread_mutex_lock(&m->mu);
    svc_series *s = table_find(m, hash, vals);
    bool folded = false, warn = false;
    if (!s && m->nseries < SVC_METRIC_MAX_SERIES) {
        s = series_new(m, hash, vals);
        if (s) table_add(m, s);
    }
    if (!s) {
        s = overflow_series(m);
        folded = true;
        warn = !m->warned;
        m->warned = true;
    }
    pthread_mutex_unlock(&m->mu);
    if (warn)
        svc_warn("metrics: %s reached %d series; new label sets are counted in its _overflow series "
                 "(%s)", m->name, SVC_METRIC_MAX_SERIES, FOLDED_FAMILY);
    if (folded) svc_counter_add(folded_series(m), 1);
    return s;
}

/* ---- families ------------------------------------------------------------- */

static void series_free_list(svc_series *s) {
    while (s) {
        svc_series *next = s->next;
        free(s);
        s = next;
    }
}

static void family_free(svc_metric *m) {
    if (!m) return;
    series_free_list(m->head);
    free(m->spare);
    free(m->table);
    free(m->le);
    for (int i = 0; i < m->nlabels; i++) free(m->label_names[i]);
    free(m->name);
    free(m->help);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static svc_metric *family_new(const char *name, const char *help, svc_metric_type type,
                              enum series_kind kind, int nlabels, const char *const *label_names,
                              const double *bounds, int nbounds) {
    svc_metric *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    m->type = type;
    m->kind = kind;
    m->nlabels = nlabels;
    m->nbounds = nbounds;
    if (nbounds) memcpy(m->bounds, bounds, (size_t)nbounds * sizeof *bounds);
    m->name = dup_str(name);
    m->help = help && *help ? dup_str(help) : NULL;
    bool ok = m->name && (m->help || !help || !*help);
    for (int i = 0; i < nlabels; i++) ok = (m->label_names[i] = dup_str(label_names[i])) && ok;
    if (ok && type == SVC_HISTOGRAM) {
        ok = (m->le = malloc((size_t)nbounds * sizeof *m->le)) != NULL;
        for (int i = 0; ok && i < nbounds; i++) svc__metric_format_double(m->le[i], bounds[i]);
    }
    if (ok && nlabels == 0) {
        ok = (m->single = series_new(m, FNV_OFFSET, NULL)) != NULL;
        if (ok) {
            m->head = m->tail = m->single;
            m->nseries = 1;
        }
    } else if (ok) {
        const char *vals[SVC_METRIC_MAX_LABELS];
        uint64_t hash = FNV_OFFSET;
        for (int i = 0; i < nlabels; i++) {
            vals[i] = OVERFLOW_VALUE;
            hash = hash_value(hash, OVERFLOW_VALUE);
        }
        m->table_size = TABLE_INITIAL_SIZE;
        ok = (m->table = calloc(m->table_size, sizeof *m->table)) &&
             (m->spare = series_new(m, hash, vals));
    }
    if (!ok) {
        family_free(m);
        return NULL;
    }
    return m;
}

static bool same_labels(const svc_metric *m, int nlabels, const char *const *label_names) {
    if (m->nlabels != nlabels) return false;
    for (int i = 0; i < nlabels; i++)
        if (strcmp(m->label_names[i], label_names[i]) != 0) return false;
    return true;
}

/* True when full is base followed by a suffix a histogram's samples use. */
static bool is_histogram_sample(const char *full, const char *base) {
    size_t n = strlen(base);
    if (strncmp(full, base, n) != 0) return false;
    full += n;
    return strcmp(full, "_bucket") == 0 || strcmp(full, "_sum") == 0 ||
           strcmp(full, "_count") == 0;
}

static svc_metric *metric_register(const char *name, const char *help, svc_metric_type type,
                                   enum series_kind kind, int nlabels,
                                   const char *const *label_names, const double *buckets,
                                   int nbuckets) {
    if (!valid_name(name, true)) return NULL;
    if (nlabels < 0 || nlabels > SVC_METRIC_MAX_LABELS || (nlabels > 0 && !label_names))
        return NULL;
    for (int i = 0; i < nlabels; i++) {
        if (!valid_name(label_names[i], false)) return NULL;
        if (type == SVC_HISTOGRAM && strcmp(label_names[i], "le") == 0) return NULL;
        for (int j = 0; j < i; j++)
            if (strcmp(label_names[i], label_names[j]) == 0) return NULL;
    }
    if (type == SVC_HISTOGRAM) {
        if (!buckets) {
            buckets = default_buckets;
            nbuckets = (int)(sizeof default_buckets / sizeof default_buckets[0]);
        }
        if (nbuckets < 1 || nbuckets > SVC_METRIC_MAX_BUCKETS) return NULL;
        for (int i = 0; i < nbuckets; i++) {
            if (!isfinite(buckets[i])) return NULL;
            if (i > 0 && !(buckets[i] > buckets[i - 1])) return NULL;
        }
    } else {
        buckets = NULL;
        nbuckets = 0;
    }

    svc_metric *found = NULL, **at = &families;
    bool conflict = false;
    pthread_mutex_lock(&registry_mu);
    for (svc_metric *m = families; m; m = m->next) {
        int c = strcmp(m->name, name);
        if (c == 0) {
            found = m;
            conflict = m->type != type || !same_labels(m, nlabels, label_names) ||
                       m->nbounds != nbuckets ||
                       (nbuckets && memcmp(m->bounds, buckets, (size_t)nbuckets * sizeof *buckets));
            break;
        }
        if ((m->type == SVC_HISTOGRAM && is_histogram_sample(name, m->name)) ||
            (type == SVC_HISTOGRAM && is_histogram_sample(m->name, name)))
            conflict = true;
        if (c < 0) at = &m->next;
    }
    if (!found && !conflict) {
        found = family_new(name, help, type, kind, nlabels, label_names, buckets, nbuckets);
        if (found) {
            found->next = *at;
            *at = found;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    return conflict ? NULL : found;
}

svc_metric *svc_metric_counter(const char *name, const char *help, int nlabels,
                               const char *const *label_names) {
    return metric_register(name, help, SVC_COUNTER, KIND_COUNTER, nlabels, label_names, NULL, 0);
}

svc_metric *svc__metric_counter_f64(const char *name, const char *help, int nlabels,
                                    const char *const *label_names) {
    return metric_register(name, help, SVC_COUNTER, KIND_COUNTER_F64, nlabels, label_names,
                           NULL, 0);
}

svc_metric *svc_metric_gauge(const char *name, const char *help, int nlabels,
                             const char *const *label_names) {
    return metric_register(name, help, SVC_GAUGE, KIND_GAUGE, nlabels, label_names, NULL, 0);
}

svc_metric *svc_metric_histogram(const char *name, const char *help, int nlabels,
                                 const char *const *label_names, const double *buckets,
                                 int nbuckets) {
    return metric_register(name, help, SVC_HISTOGRAM, KIND_HISTOGRAM, nlabels, label_names,
                           buckets, nbuckets);
}

/* ---- collectors ----------------------------------------------------------- */

void svc_metrics_on_collect(svc_metrics_collect_fn fn, void *ud) {
    if (!fn) return;
    pthread_mutex_lock(&collect_mu);
    bool have = false;
    for (size_t i = 0; i < ncollectors && !have; i++)
        have = collectors[i].fn == fn && collectors[i].ud == ud;
    if (!have && ncollectors == collectors_cap) {
        size_t cap = collectors_cap ? collectors_cap * 2 : 8;
        struct collector *c = realloc(collectors, cap * sizeof *c);
        if (c) {
            collectors = c;
            collectors_cap = cap;
        }
    }
    if (!have && ncollectors < collectors_cap) {
        collectors[ncollectors].fn = fn;
        collectors[ncollectors].ud = ud;
        ncollectors++;
    }
    pthread_mutex_unlock(&collect_mu);
}

static void run_collectors(void) {
    pthread_mutex_lock(&collect_mu);
    size_t n = ncollectors;
    struct collector *copy = n ? malloc(n * sizeof *copy) : NULL;
    if (copy) memcpy(copy, collectors, n * sizeof *copy);
    pthread_mutex_unlock(&collect_mu);
    if (!copy) return;
    for (size_t i = 0; i < n; i++) copy[i].fn(copy[i].ud);
    free(copy);
}

/* ---- rendering ------------------------------------------------------------ */

static void put_double(svc_buf *out, double v) {
    char tmp[SVC__DOUBLE_STR_MAX];
    svc_buf_append(out, tmp, svc__metric_format_double(tmp, v));
}

/* name{labels} or name{labels,extra} or name, then a space. */
static void put_sample_name(svc_buf *out, const svc_metric *m, const char *suffix,
                            const svc_series *s, const char *le) {
    svc_buf_puts(out, m->name);
    if (suffix) svc_buf_puts(out, suffix);
    if (*s->labels || le) {
        svc_buf_putc(out, '{');
        svc_buf_puts(out, s->labels);
        if (le) {
            if (*s->labels) svc_buf_putc(out, ',');
            svc_buf_puts(out, "le=\"");
            svc_buf_puts(out, le);
            svc_buf_putc(out, '"');
        }
        svc_buf_putc(out, '}');
    }
    svc_buf_putc(out, ' ');
}

static void render_series(svc_buf *out, const svc_metric *m, const svc_series *s) {
    uint64_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    if (s->kind != KIND_HISTOGRAM) {
        put_sample_name(out, m, NULL, s, NULL);
        if (s->kind == KIND_COUNTER)
            svc_buf_put_u64(out, v);
        else
            put_double(out, bits_double(v));
        svc_buf_putc(out, '\n');
        return;
    }
    uint64_t cum = 0;
    for (int i = 0; i <= m->nbounds; i++) {
        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        put_sample_name(out, m, "_bucket", s, i < m->nbounds ? m->le[i] : "+Inf");
        svc_buf_put_u64(out, cum);
        svc_buf_putc(out, '\n');
    }
    put_sample_name(out, m, "_sum", s, NULL);
    put_double(out, bits_double(v));
    svc_buf_putc(out, '\n');
    put_sample_name(out, m, "_count", s, NULL);
    svc_buf_put_u64(out, cum);
    svc_buf_putc(out, '\n');
}

static int series_cmp(const void *a, const void *b) {
    const svc_series *x = *(const svc_series *const *)a, *y = *(const svc_series *const *)b;
    return strcmp(x->labels, y->labels);
}

static const char *type_name(svc_metric_type t) {
    switch (t) {
    case SVC_COUNTER: return "counter";
    case SVC_GAUGE: return "gauge";
    case SVC_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

/* Callers hold registry_mu. */
static void render_family(svc_buf *out, svc_metric *m) {
    if (m->help) {
        svc_buf_printf(out, "# HELP %s ", m->name);
        size_t n = escaped_len(m->help, false);
        if (svc_buf_reserve(out, n + 1) != SVC_OK) return;
        escape_into(out->data + out->len, m->help, false);
        out->len += n;
        svc_buf_putc(out, '\n');
    }
    svc_buf_printf(out, "# TYPE %s %s\n", m->name, type_name(m->type));

    /* Snapshot the list so lookups wait only for a copy, not for the
     * formatting; the first nseries nodes are complete and never change. */
    pthread_mutex_lock(&m->mu);
    size_t n = m->nseries;
    svc_series **arr = n ? malloc(n * sizeof *arr) : NULL;
    if (arr) {
        svc_series *s = m->head;
        for (size_t i = 0; i < n; i++, s = s->next) arr[i] = s;
    }
    pthread_mutex_unlock(&m->mu);
    if (!arr) {
        if (n) out->oom = 1;
        return;
    }
    qsort(arr, n, sizeof *arr, series_cmp);
    for (size_t i = 0; i < n; i++) render_series(out, m, arr[i]);
    free(arr);
}

void svc_metrics_render(svc_buf *out) {
    if (!out) return;
    run_collectors();
    pthread_mutex_lock(&registry_mu);
    for (svc_metric *m = families; m; m = m->next) render_family(out, m);
    pthread_mutex_unlock(&registry_mu);
}

/* ---- reading back: live snapshots ------------------------------------------ */

svc_metric *svc__metric_find(const char *name) {
    if (!name) return NULL;
    pthread_mutex_lock(&registry_mu);
    svc_metric *m = families;
    while (m && strcmp(m->name, name) != 0) m = m->next;
    pthread_mutex_unlock(&registry_mu);
    return m;
}

const double *svc__metric_bounds(const svc_metric *m, int *n) {
    *n = m && m->kind == KIND_HISTOGRAM ? m->nbounds : 0;
    return *n ? m->bounds : NULL;
}

size_t svc__metric_foreach(svc_metric *m, size_t max, svc__series_fn fn, void *ud) {
    if (!m || !fn) return 0;
    /* The same snapshot as the render: only the copy waits for the lock. */
    pthread_mutex_lock(&m->mu);
    size_t n = m->nseries < max ? m->nseries : max;
    svc_series **arr = n ? malloc(n * sizeof *arr) : NULL;
    if (arr) {
        svc_series *s = m->head;
        for (size_t i = 0; i < n; i++, s = s->next) arr[i] = s;
    }
    pthread_mutex_unlock(&m->mu);
    if (!arr) return 0;
    for (size_t i = 0; i < n; i++) {
        const char *vals[SVC_METRIC_MAX_LABELS];
        const char *v = arr[i]->values;
        for (int k = 0; k < m->nlabels; k++) {
            vals[k] = v;
            v += strlen(v) + 1;
        }
        fn(ud, vals, arr[i]);
    }
    free(arr);
    return n;
}

int svc__series_histogram(const svc_series *s, uint64_t *buckets, int cap, double *sum) {
    if (!s || s->kind != KIND_HISTOGRAM || cap < s->nbounds + 1) return 0;
    for (int i = 0; i <= s->nbounds; i++)
        buckets[i] = atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
    *sum = bits_double(atomic_load_explicit(&s->value, memory_order_relaxed));
    return s->nbounds + 1;
}

void svc_metrics_reset(void) {
    pthread_mutex_lock(&registry_mu);
    svc_metric *list = families;
    families = NULL;
    pthread_mutex_unlock(&registry_mu);
    while (list) {
        svc_metric *next = list->next;
        family_free(list);
        list = next;
    }
    pthread_mutex_lock(&collect_mu);
    free(collectors);
    collectors = NULL;
    ncollectors = collectors_cap = 0;
    pthread_mutex_unlock(&collect_mu);
}
