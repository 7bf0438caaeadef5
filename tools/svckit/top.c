/* `svckit top`: the live picture of every svckit instance on NATS, in a
 * terminal: services and their instances (version, host, uptime, ready),
 * requests per second, error ratio, p50/p99, CPU and RSS, refreshed in place.
 *
 * Every interval it asks $SRV.LIVE (docs/messaging.md, "Live snapshot"); the
 * answers that came in until the next tick are one round. Rates and
 * quantiles are the difference between an instance's last two snapshots,
 * over the time between them by the instance's own clock (now_ms), so a
 * slow reply does not skew a rate. Latency quantiles interpolate linearly
 * inside the http_request_duration_seconds bucket they fall in, as
 * Prometheus's histogram_quantile does.
 *
 * Everything an instance sends is hostile (anyone on NATS can answer):
 * strings are cut and stripped of control bytes before they reach the
 * terminal (svc__gather_clean), numbers are checked and their sums saturate,
 * and instances and bytes per round are capped (gather.c, TOP_MAX_INSTANCES). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cli.h"
#include "svckit/msg.h"
#include "svckit/obs.h"

#define TOP_DEFAULT_INTERVAL_MS 1000
#define TOP_MIN_INTERVAL_MS 100
#define TOP_MAX_INTERVAL_MS 60000
#define TOP_MAX_INSTANCES 1024   /* instances tracked; answers from more are ignored */
#define TOP_MISSED_ROUNDS 3      /* rounds without an answer before an instance is forgotten */
#define TOP_BUCKETS (SVC_METRIC_MAX_BUCKETS + 1)
#define TOP_DEFAULT_COLS 120
#define TOP_DEFAULT_ROWS 40

static const char top_usage[] =
    "usage: svckit top [options]\n"
    "\n"
    "The live picture of every svckit instance on NATS ($SRV.LIVE), refreshed\n"
    "in place: per service and instance the version, host, uptime, ready state,\n"
    "requests/s, error % (5xx), p50/p99 latency, CPU % and RSS. q quits.\n"
    "\n"
    "options:\n"
    "  --nats URL        NATS server; default $NATS_URL, else " SVC__GATHER_DEFAULT_URL "\n"
    "  --interval SECS   time between refreshes (0.1-60); default 1\n"
    "  --once            print one table after two rounds and exit (no screen control)\n"
    "  --json            the same as --once, as one JSON document\n"
    "  -h, --help        this text\n"
    "\n"
    "Exit status: 0 done (q, a signal, or --once), 1 --once found no instance,\n"
    "2 bad arguments or NATS unreachable.\n";

typedef struct top_inst {
    char name[SVC__GATHER_FIELD_MAX + 1], id[SVC__GATHER_FIELD_MAX + 1], version[SVC__GATHER_FIELD_MAX + 1], host[SVC__GATHER_FIELD_MAX + 1];
    int live;    /* tracked */
    int missed;  /* rounds since its last answer */
    int ready;
    double uptime_s;
    /* the last snapshot */
    long long now_ms;
    uint64_t req, e5; /* saturated sums over the routes */
    double cpu, rss;
    int cpu_known;
    double bounds[TOP_BUCKETS];
    int nbounds; /* finite bounds; hist has nbounds + 1 */
    uint64_t hist[TOP_BUCKETS];
    /* the one before */
    int have_prev;
    long long p_now_ms;
    uint64_t p_req, p_e5;
    double p_cpu;
    uint64_t p_hist[TOP_BUCKETS];
    /* from the two */
    int has_rate;
    double rps, err_ratio, cpu_pct;
    uint64_t d_hist[TOP_BUCKETS];
    uint64_t d_req, d_e5;
} top_inst;

typedef struct top_service {
    const char *name;
    int first, n; /* its instances, contiguous after sorting */
    int ready, rated;
    double rps, cpu_pct, rss;
    uint64_t d_req, d_e5, d_hist[TOP_BUCKETS];
    int nbounds;
    const double *bounds;
    int hist_ok;
} top_service;

typedef struct top {
    uv_loop_t *loop;
    svc__gather g;
    uv_timer_t timer;
    uv_signal_t sigs[4];
    uv_poll_t keys;
    int keys_on, screen_on, termios_saved;
    struct termios saved;
    int stdin_flags; /* fcntl flags of fd 0 before uv_poll made it non-blocking; -1: untouched */
    int once, json, rounds, quit, interval_ms;
    const char *url;
    top_inst *inst; /* TOP_MAX_INSTANCES */
    size_t ignored; /* answers past TOP_MAX_INSTANCES */
} top;

static top *the_top; /* for the atexit restore */

/* ---- hostile numbers ---------------------------------------------------------- */

static long long num_ll(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v) && json_integer_value(v) >= 0) return (long long)json_integer_value(v);
    return -1;
}

static double num_d(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    double d = json_is_number(v) ? json_number_value(v) : -1;
    return isfinite(d) && d >= 0 ? d : -1;
}

/* ---- from snapshots to numbers --------------------------------------------- */

/* The quantile q (0-1) of a non-cumulative histogram over bounds, in
 * seconds; -1 when it is empty. In the +Inf bucket: the last bound. */
static double quantile(const uint64_t *h, const double *bounds, int nbounds, double q) {
    uint64_t total = 0;
    for (int i = 0; i <= nbounds; i++) total = svc__gather_sum(total, h[i]);
    if (total == 0 || nbounds == 0) return -1;
    double rank = q * (double)total, cum = 0;
    for (int i = 0; i <= nbounds; i++) {
        if (cum + (double)h[i] >= rank && h[i] > 0) {
            if (i == nbounds) return bounds[nbounds - 1];
            double lo = i == 0 ? 0 : bounds[i - 1], hi = bounds[i];
            return lo + (hi - lo) * (rank - cum) / (double)h[i];
        }
        cum += (double)h[i];
    }
    return bounds[nbounds - 1];
}

/* Routes every service answers for its platform, not its users. */
static int is_builtin(const char *route) {
    return !strcmp(route, "/healthz") || !strcmp(route, "/readyz") || !strcmp(route, "/metrics");
}

static top_inst *find_inst(top *t, const char *name, const char *id) {
    top_inst *free_slot = NULL;
    for (int i = 0; i < TOP_MAX_INSTANCES; i++) {
        top_inst *in = &t->inst[i];
        if (!in->live) {
            if (!free_slot) free_slot = in;
            continue;
        }
        if (!strcmp(in->name, name) && !strcmp(in->id, id)) return in;
    }
    if (!free_slot) return NULL;
    memset(free_slot, 0, sizeof *free_slot);
    free_slot->live = 1;
    free_slot->missed = 1; /* not yet answered this round */
    snprintf(free_slot->name, sizeof free_slot->name, "%s", name);
    snprintf(free_slot->id, sizeof free_slot->id, "%s", id);
    return free_slot;
}

/* Takes one live document into its instance. */
static void take_doc(top *t, json_t *doc) {
    const char *type = json_string_value(json_object_get(doc, "type"));
    if (!type || strcmp(type, "io.svckit.v1.live_response") != 0) return;
    char name[SVC__GATHER_FIELD_MAX + 1], id[SVC__GATHER_FIELD_MAX + 1];
    svc__gather_clean(name, json_string_value(json_object_get(doc, "name")));
    svc__gather_clean(id, json_string_value(json_object_get(doc, "id")));
    long long now = num_ll(doc, "now_ms");
    if (!name[0] || !id[0] || now < 0) return;
    top_inst *in = find_inst(t, name, id);
    if (!in) {
        t->ignored++;
        return;
    }
    if (in->missed == 0) return; /* a second answer in one round: a duplicate or a forgery */
    in->missed = 0;
    svc__gather_clean(in->version, json_string_value(json_object_get(doc, "version")));
    json_t *md = json_object_get(doc, "metadata");
    /* The machine's name (an older instance without one: its HTTP host) and
     * the HTTP port, which tells instances on one machine apart. */
    char host[SVC__GATHER_FIELD_MAX + 1], port[SVC__GATHER_FIELD_MAX + 1];
    svc__gather_clean(host, json_string_value(json_object_get(md, "hostname")));
    if (!host[0]) svc__gather_clean(host, json_string_value(json_object_get(md, "host")));
    svc__gather_clean(port, json_string_value(json_object_get(md, "http_port")));
    snprintf(in->host, sizeof in->host, "%.*s:%.8s", SVC__GATHER_FIELD_MAX - 9, host[0] ? host : "-", port[0] ? port : "-");
    in->ready = json_is_true(json_object_get(doc, "ready"));
    in->uptime_s = num_d(doc, "uptime_s");

    /* The buckets: at most TOP_BUCKETS - 1 finite, ascending bounds. */
    json_t *b = json_object_get(doc, "buckets");
    int nb = json_is_array(b) && json_array_size(b) < TOP_BUCKETS ? (int)json_array_size(b) : 0;
    double bounds[TOP_BUCKETS];
    for (int i = 0; i < nb; i++) {
        json_t *v = json_array_get(b, (size_t)i);
        bounds[i] = json_is_number(v) ? json_number_value(v) : NAN;
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) nb = 0;
    }
    uint64_t req = 0, e5 = 0, hist[TOP_BUCKETS] = {0};
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(doc, "routes"), i, r) {
        const char *route = json_string_value(json_object_get(r, "route"));
        if (!route || is_builtin(route)) continue;
        long long n = num_ll(r, "requests"), e = num_ll(r, "errors_5xx");
        if (n > 0) req = svc__gather_sum(req, (uint64_t)n);
        if (e > 0) e5 = svc__gather_sum(e5, (uint64_t)e);
        json_t *h = json_object_get(r, "duration_buckets");
        if (!json_is_array(h) || (int)json_array_size(h) != nb + 1) continue;
        for (int k = 0; k <= nb; k++) {
            json_t *v = json_array_get(h, (size_t)k);
            if (json_is_integer(v) && json_integer_value(v) > 0)
                hist[k] = svc__gather_sum(hist[k], (uint64_t)json_integer_value(v));
        }
    }
    double cpu = num_d(doc, "cpu_seconds"), rss = num_d(doc, "rss_bytes");

    /* The last snapshot becomes the previous one; a counter that went back
     * (a restart reusing the id, or a forged answer) starts over. */
    in->have_prev = in->now_ms > 0 && now > in->now_ms && req >= in->req && e5 >= in->e5 &&
                    nb == in->nbounds && (!in->cpu_known || cpu >= in->cpu);
    in->p_now_ms = in->now_ms, in->p_req = in->req, in->p_e5 = in->e5, in->p_cpu = in->cpu;
    memcpy(in->p_hist, in->hist, sizeof in->hist);
    in->now_ms = now, in->req = req, in->e5 = e5, in->cpu = cpu, in->rss = rss;
    in->cpu_known = cpu >= 0;
    in->nbounds = nb;
    memcpy(in->bounds, bounds, sizeof(double) * (size_t)nb);
    memcpy(in->hist, hist, sizeof hist);
    in->has_rate = 0;
    if (in->have_prev) {
        double dt = (double)(now - in->p_now_ms) / 1000.0;
        in->d_req = req - in->p_req;
        in->d_e5 = e5 - in->p_e5;
        in->rps = (double)in->d_req / dt;
        in->err_ratio = in->d_req ? (double)in->d_e5 / (double)in->d_req : 0;
        in->cpu_pct = in->cpu_known ? (cpu - in->p_cpu) / dt * 100.0 : -1;
        for (int k = 0; k <= nb; k++) in->d_hist[k] = hist[k] >= in->p_hist[k] ? hist[k] - in->p_hist[k] : 0;
        in->has_rate = 1;
    }
}

/* Ends a round: its answers in, instances that stopped answering out. */
static void end_round(top *t, json_t *docs) {
    for (int i = 0; i < TOP_MAX_INSTANCES; i++)
        if (t->inst[i].live) t->inst[i].missed++;
    size_t k;
    json_t *doc;
    json_array_foreach(docs, k, doc) take_doc(t, doc);
    for (int i = 0; i < TOP_MAX_INSTANCES; i++)
        if (t->inst[i].live && t->inst[i].missed >= TOP_MISSED_ROUNDS) t->inst[i].live = 0;
    t->rounds++;
}

static int cmp_inst(const void *a, const void *b) {
    const top_inst *x = a, *y = b;
    if (x->live != y->live) return y->live - x->live;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->id, y->id);
}

/* Sorts the instances (live first, by service and id) and sums each service;
 * returns the number of services. Only instances that answered in the last
 * round count. */
static int summarise(top *t, top_service *svcs, int *ninst) {
    qsort(t->inst, TOP_MAX_INSTANCES, sizeof *t->inst, cmp_inst);
    int n = 0, k = 0;
    for (; k < TOP_MAX_INSTANCES && t->inst[k].live; k++) {
        top_inst *in = &t->inst[k];
        if (n == 0 || strcmp(svcs[n - 1].name, in->name) != 0) {
            memset(&svcs[n], 0, sizeof svcs[n]);
            svcs[n].name = in->name, svcs[n].first = k, svcs[n].hist_ok = 1;
            svcs[n].nbounds = in->nbounds, svcs[n].bounds = in->bounds;
            n++;
        }
        top_service *s = &svcs[n - 1];
        s->n++;
        s->ready += in->ready && in->missed == 0;
        if (in->rss > 0) s->rss += in->rss;
        if (!in->has_rate || in->missed) continue;
        s->rated++;
        s->rps += in->rps;
        if (in->cpu_pct > 0) s->cpu_pct += in->cpu_pct;
        s->d_req = svc__gather_sum(s->d_req, in->d_req), s->d_e5 = svc__gather_sum(s->d_e5, in->d_e5);
        if (in->nbounds != s->nbounds) s->hist_ok = 0;
        for (int b = 0; s->hist_ok && b <= in->nbounds; b++) s->d_hist[b] = svc__gather_sum(s->d_hist[b], in->d_hist[b]);
    }
    *ninst = k;
    return n;
}

/* ---- output ------------------------------------------------------------------ */

static void fmt_ms(char *out, size_t len, double s) {
    if (s < 0)
        snprintf(out, len, "-");
    else if (s < 1)
        snprintf(out, len, "%.1fms", s * 1000);
    else
        snprintf(out, len, "%.2fs", s);
}

static void fmt_bytes(char *out, size_t len, double b) {
    if (b <= 0)
        snprintf(out, len, "-");
    else if (b < 1024 * 1024)
        snprintf(out, len, "%.0fK", b / 1024);
    else if (b < 1024.0 * 1024 * 1024)
        snprintf(out, len, "%.1fM", b / (1024 * 1024));
    else
        snprintf(out, len, "%.1fG", b / (1024.0 * 1024 * 1024));
}

static void fmt_uptime(char *out, size_t len, double s) {
    long long v = s < 0 ? -1 : (long long)s;
    if (v < 0)
        snprintf(out, len, "-");
    else if (v < 3600)
        snprintf(out, len, "%lldm%02llds", v / 60, v % 60);
    else if (v < 86400)
        snprintf(out, len, "%lldh%02lldm", v / 3600, v / 60 % 60);
    else
        snprintf(out, len, "%lldd%02lldh", v / 86400, v / 3600 % 24);
}

/* Appends one line, cut to cols, ended by "clear to end of line" on a screen. */
static void put_line(svc_buf *b, int cols, int screen, const char *fmt, ...) SVC_PRINTF(4, 5);
static void put_line(svc_buf *b, int cols, int screen, const char *fmt, ...) {
    size_t start = b->len;
    va_list ap;
    va_start(ap, fmt);
    svc_buf_vprintf(b, fmt, ap);
    va_end(ap);
    /* Every byte is one column: what instances sent is printable ASCII. */
    if (!b->oom && cols > 0 && b->len - start > (size_t)cols) b->len = start + (size_t)cols;
    svc_buf_puts(b, screen ? "\x1b[K\r\n" : "\n");
}

#define ROW_FMT "%-26s %-9s %-22s %-8s %-7s %8s %6s %8s %8s %6s %7s"

static void row_numbers(double rps, uint64_t dreq, uint64_t de5, const uint64_t *h, const double *bounds,
                        int nb, int known, char rate[16], char err[16], char p50[16], char p99[16]) {
    if (!known) {
        strcpy(rate, "-"), strcpy(err, "-"), strcpy(p50, "-"), strcpy(p99, "-");
        return;
    }
    snprintf(rate, 16, "%.1f", rps);
    if (dreq)
        snprintf(err, 16, "%.1f%%", 100.0 * (double)de5 / (double)dreq);
    else
        strcpy(err, "-");
    fmt_ms(p50, 16, h ? quantile(h, bounds, nb, 0.5) : -1);
    fmt_ms(p99, 16, h ? quantile(h, bounds, nb, 0.99) : -1);
}

static void render_table(top *t, svc_buf *b, int screen, int cols, int rows) {
    top_service *svcs = calloc(TOP_MAX_INSTANCES, sizeof *svcs);
    if (!svcs) {
        b->oom = 1;
        return;
    }
    int ninst, nsvc = summarise(t, svcs, &ninst);
    char clock[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(clock, sizeof clock, "%H:%M:%S", localtime_r(&now, &tm));
    int used = 0;
    put_line(b, cols, screen, "svckit top - %s - %d service%s, %d instance%s - %s%s", t->url, nsvc,
             nsvc == 1 ? "" : "s", ninst, ninst == 1 ? "" : "s", clock, screen ? " - q quits" : "");
    put_line(b, cols, screen, "%s", "");
    put_line(b, cols, screen, ROW_FMT, "SERVICE / INSTANCE", "VERSION", "HOST", "UPTIME", "READY", "REQ/S",
             "ERR%", "P50", "P99", "CPU%", "RSS");
    used = 3;
    if (nsvc == 0) put_line(b, cols, screen, "%s", t->rounds < 2 ? "(asking...)" : "(no svckit instance answers)");
    for (int s = 0; s < nsvc; s++) {
        top_service *sv = &svcs[s];
        if (rows > 0 && used >= rows - 1) break;
        char rate[16], err[16], p50[16], p99[16], cpu[16], rss[16], ready[16];
        row_numbers(sv->rps, sv->d_req, sv->d_e5, sv->hist_ok ? sv->d_hist : NULL, sv->bounds, sv->nbounds,
                    sv->rated > 0, rate, err, p50, p99);
        snprintf(cpu, sizeof cpu, sv->rated ? "%.1f" : "-", sv->cpu_pct);
        fmt_bytes(rss, sizeof rss, sv->rss);
        snprintf(ready, sizeof ready, "%d/%d", sv->ready, sv->n);
        put_line(b, cols, screen, ROW_FMT, sv->name, "", "", "", ready, rate, err, p50, p99, cpu, rss);
        used++;
        for (int k = sv->first; k < sv->first + sv->n; k++) {
            if (rows > 0 && used >= rows - 1) break;
            top_inst *in = &t->inst[k];
            char up[48], id[30];
            int known = in->has_rate && !in->missed;
            row_numbers(in->rps, in->d_req, in->d_e5, in->d_hist, in->bounds, in->nbounds, known, rate, err,
                        p50, p99);
            snprintf(cpu, sizeof cpu, known && in->cpu_pct >= 0 ? "%.1f" : "-", in->cpu_pct);
            fmt_bytes(rss, sizeof rss, in->rss);
            fmt_uptime(up, sizeof up, in->uptime_s);
            snprintf(id, sizeof id, "  %.24s", in->id);
            put_line(b, cols, screen, ROW_FMT, id, in->version, in->host, up,
                     in->missed ? "silent" : in->ready ? "ready" : "NOT", rate, err, p50, p99, cpu, rss);
            used++;
        }
    }
    if (t->ignored) put_line(b, cols, screen, "(%zu answers from instances past %d ignored)", t->ignored,
                             TOP_MAX_INSTANCES);
    if (t->g.dropped)
        put_line(b, cols, screen, "(%zu answers dropped: malformed, or past %d answers or %d KiB a round)",
                 t->g.dropped, SVC__GATHER_MAX_DOCS, SVC__GATHER_MAX_BYTES / 1024);
    free(svcs);
}

static json_t *num_or_null(int known, double v) { return known ? json_real(v) : json_null(); }

static void print_json(top *t) {
    top_service *svcs = calloc(TOP_MAX_INSTANCES, sizeof *svcs);
    if (!svcs) return;
    int ninst, nsvc = summarise(t, svcs, &ninst);
    json_t *out = json_array();
    for (int s = 0; s < nsvc; s++) {
        top_service *sv = &svcs[s];
        json_t *list = json_array();
        for (int k = sv->first; k < sv->first + sv->n; k++) {
            top_inst *in = &t->inst[k];
            int known = in->has_rate && !in->missed;
            double p50 = known ? quantile(in->d_hist, in->bounds, in->nbounds, 0.5) : -1;
            double p99 = known ? quantile(in->d_hist, in->bounds, in->nbounds, 0.99) : -1;
            json_array_append_new(
                list, json_pack("{s:s, s:s, s:s, s:o, s:b, s:o, s:o, s:o, s:o, s:o, s:o}", "id", in->id,
                                "version", in->version, "host", in->host, "uptime_s",
                                num_or_null(in->uptime_s >= 0, in->uptime_s), "ready", in->ready && !in->missed,
                                "rps", num_or_null(known, in->rps), "error_ratio",
                                num_or_null(known && in->d_req, in->err_ratio), "p50_s", num_or_null(p50 >= 0, p50),
                                "p99_s", num_or_null(p99 >= 0, p99), "cpu_percent",
                                num_or_null(known && in->cpu_pct >= 0, in->cpu_pct), "rss_bytes",
                                num_or_null(in->rss > 0, in->rss)));
        }
        double p50 = sv->rated && sv->hist_ok ? quantile(sv->d_hist, sv->bounds, sv->nbounds, 0.5) : -1;
        double p99 = sv->rated && sv->hist_ok ? quantile(sv->d_hist, sv->bounds, sv->nbounds, 0.99) : -1;
        json_array_append_new(
            out, json_pack("{s:s, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "name", sv->name, "instances",
                           sv->n, "ready", sv->ready, "rps", num_or_null(sv->rated, sv->rps), "error_ratio",
                           num_or_null(sv->d_req, sv->d_req ? (double)sv->d_e5 / (double)sv->d_req : 0), "p50_s",
                           num_or_null(p50 >= 0, p50), "p99_s", num_or_null(p99 >= 0, p99), "cpu_percent",
                           num_or_null(sv->rated, sv->cpu_pct), "rss_bytes", num_or_null(sv->rss > 0, sv->rss),
                           "instance_list", list));
    }
    json_t *doc = json_pack("{s:o, s:I, s:I}", "services", out, "ignored", (json_int_t)t->ignored, "dropped",
                            (json_int_t)t->g.dropped);
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (s) puts(s);
    free(s);
    json_decref(doc);
    free(svcs);
}

static void term_size(int *cols, int *rows) {
    struct winsize ws;
    *cols = TOP_DEFAULT_COLS, *rows = TOP_DEFAULT_ROWS;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0)
        *cols = ws.ws_col, *rows = ws.ws_row;
}

static void write_all(const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w, n -= (size_t)w;
    }
}

static void draw(top *t) {
    svc_buf b = {0};
    int cols, rows;
    term_size(&cols, &rows);
    svc_buf_puts(&b, "\x1b[H");
    render_table(t, &b, 1, cols, rows);
    svc_buf_puts(&b, "\x1b[J");
    if (!b.oom) write_all(b.data, b.len);
    svc_buf_free(&b);
}

/* ---- the terminal ------------------------------------------------------------ */

/* Back to the normal screen, cursor shown, line discipline as it was. Safe to
 * call twice. */
static void screen_restore(top *t) {
    if (t->screen_on) {
        static const char leave[] = "\x1b[?1049l\x1b[?25h";
        write_all(leave, sizeof leave - 1);
        t->screen_on = 0;
    }
    if (t->termios_saved) {
        tcsetattr(STDIN_FILENO, TCSANOW, &t->saved);
        t->termios_saved = 0;
    }
    /* The terminal's file description is shared with the shell that runs
     * next: left non-blocking, its reads fail with EAGAIN. */
    if (t->stdin_flags >= 0) {
        fcntl(STDIN_FILENO, F_SETFL, t->stdin_flags);
        t->stdin_flags = -1;
    }
}

static void restore_at_exit(void) {
    if (the_top) screen_restore(the_top);
}

static void screen_enter(top *t) {
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &t->saved) == 0) {
        struct termios raw = t->saved;
        /* Keys one at a time, not echoed; ^C still a signal. */
        raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
        raw.c_cc[VMIN] = 1, raw.c_cc[VTIME] = 0;
        if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) t->termios_saved = 1;
    }
    static const char enter[] = "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J";
    write_all(enter, sizeof enter - 1);
    t->screen_on = 1;
}

static void stop_all(top *t) {
    t->quit = 1;
    uv_timer_stop(&t->timer);
    uv_stop(t->loop);
}

static void on_key(uv_poll_t *p, int status, int events) {
    top *t = p->data;
    char buf[64];
    ssize_t n = status == 0 ? read(STDIN_FILENO, buf, sizeof buf) : -1;
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        /* The terminal went away: nothing more can be shown. */
        uv_poll_stop(p);
        stop_all(t);
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == 'q' || buf[i] == 'Q') stop_all(t);
}

static void on_signal(uv_signal_t *s, int signum) {
    top *t = s->data;
    if (signum == SIGWINCH) {
        if (t->screen_on) draw(t);
        return;
    }
    stop_all(t);
}

static void on_tick(uv_timer_t *timer) {
    top *t = timer->data;
    json_t *docs = svc__gather_take(&t->g);
    if (docs) end_round(t, docs);
    json_decref(docs);
    if (t->once) {
        if (t->rounds >= 2) {
            stop_all(t);
            return;
        }
    } else {
        draw(t);
    }
    svc__gather_ask(&t->g, SVC_MSG_LIVE_VERB);
}

static void close_cb(uv_handle_t *h) { (void)h; }

static int parse_interval(const char *s, int *ms) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return SVC_EINVAL;
    double m = v * 1000.0;
    if (m < TOP_MIN_INTERVAL_MS || m > TOP_MAX_INTERVAL_MS) return SVC_EINVAL;
    *ms = (int)m;
    return SVC_OK;
}

int svc__cmd_top(int argc, char **argv) {
    const char *url = svc__gather_default_url();
    int interval_ms = TOP_DEFAULT_INTERVAL_MS, once = 0, as_json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(top_usage, stdout);
            return SVC__EXIT_OK;
        } else if (!strcmp(a, "--once")) {
            once = 1;
        } else if (!strcmp(a, "--json")) {
            once = as_json = 1;
        } else if ((v = svc__opt_value(argc, argv, &i, "--nats", &missing))) {
            url = v;
        } else if ((v = svc__opt_value(argc, argv, &i, "--interval", &missing))) {
            if (parse_interval(v, &interval_ms) != SVC_OK) {
                fprintf(stderr, "svckit top: --interval must be seconds from 0.1 to 60, got '%s'\n", v);
                return SVC__EXIT_USAGE;
            }
        } else if (missing) {
            fprintf(stderr, "svckit top: %s needs a value\n", a);
            return SVC__EXIT_USAGE;
        } else {
            fprintf(stderr, "svckit top: unknown option '%s'\n\n%s", a, top_usage);
            return SVC__EXIT_USAGE;
        }
    }
    const svc__nats_env *env = svc__gather_env("top", url);
    if (!env) return SVC__EXIT_USAGE;
    /* The client's retry warnings would land amid the screen. */
    svc_log_setup("svckit", SVC_LOG_ERROR, 0);
    top t = {.once = once, .json = as_json, .interval_ms = interval_ms, .url = url, .stdin_flags = -1};
    t.inst = calloc(TOP_MAX_INSTANCES, sizeof *t.inst);
    uv_loop_t loop;
    if (!t.inst || uv_loop_init(&loop) != 0) {
        free(t.inst);
        return SVC__EXIT_FAIL;
    }
    t.loop = &loop;
    int rc = svc__gather_open(&t.g, &loop, env, "svckit top");
    int exit_code = SVC__EXIT_OK;
    if (rc != SVC_OK) {
        if (rc == SVC_ETIMEDOUT)
            fprintf(stderr, "svckit top: cannot connect to NATS at %s\n", url);
        else
            fprintf(stderr, "svckit top: asking NATS at %s failed (error %d)\n", url, rc);
        exit_code = SVC__EXIT_USAGE;
        goto out;
    }
    static const int signums[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};
    for (int i = 0; i < 4; i++) {
        uv_signal_init(&loop, &t.sigs[i]);
        t.sigs[i].data = &t;
        uv_signal_start(&t.sigs[i], on_signal, signums[i]);
    }
    if (!once) {
        the_top = &t;
        atexit(restore_at_exit);
        screen_enter(&t);
        t.stdin_flags = t.termios_saved ? fcntl(STDIN_FILENO, F_GETFL) : -1;
        if (t.stdin_flags >= 0 && uv_poll_init(&loop, &t.keys, STDIN_FILENO) == 0) {
            t.keys.data = &t;
            uv_poll_start(&t.keys, UV_READABLE, on_key);
            t.keys_on = 1;
        }
        draw(&t);
    }
    uv_timer_init(&loop, &t.timer);
    t.timer.data = &t;
    svc__gather_ask(&t.g, SVC_MSG_LIVE_VERB);
    uv_timer_start(&t.timer, on_tick, (uint64_t)interval_ms, (uint64_t)interval_ms);
    while (!t.quit) uv_run(&loop, UV_RUN_DEFAULT);
    screen_restore(&t);
    the_top = NULL;
    if (once) {
        int ninst = 0;
        for (int i = 0; i < TOP_MAX_INSTANCES; i++) ninst += t.inst[i].live;
        if (as_json) {
            print_json(&t);
        } else {
            svc_buf b = {0};
            render_table(&t, &b, 0, 0, 0);
            if (!b.oom) write_all(b.data, b.len);
            svc_buf_free(&b);
        }
        if (ninst == 0) {
            fprintf(stderr, "no svckit instances on %s\n", url);
            exit_code = SVC__EXIT_FAIL;
        }
    }
    for (int i = 0; i < 4; i++) uv_close((uv_handle_t *)&t.sigs[i], close_cb);
    if (t.keys_on) uv_close((uv_handle_t *)&t.keys, close_cb);
    uv_close((uv_handle_t *)&t.timer, close_cb);
out:
    svc__gather_close(&t.g);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(t.inst);
    return exit_code;
}
