/* `svckit status`: every live instance of every service on NATS, gathered
 * with the services discovery protocol ($SRV.INFO and $SRV.STATS, answered
 * by every instance; docs/messaging.md), on svckit's own NATS client and a
 * private loop. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli.h"
#include "net/nats.h"
#include "svckit/client.h"

#define STATUS_DEFAULT_WAIT_MS 500
#define STATUS_READY_TIMEOUT_MS 300

static const char status_usage[] =
    "usage: svckit status [options]\n"
    "\n"
    "Lists every live svckit instance on NATS ($SRV.INFO and $SRV.STATS):\n"
    "service, instance id, version, HTTP address, health, requests, errors,\n"
    "average latency.\n"
    "\n"
    "options:\n"
    "  --nats URL      NATS server; default $NATS_URL, else " SVC__GATHER_DEFAULT_URL "\n"
    "  --wait MS       how long to gather replies (1-60000); default 500\n"
    "  --no-ready      do not ask each instance's /readyz over HTTP\n"
    "  --json          print the gathered documents as one JSON array\n"
    "  -h, --help      this text\n"
    "\n"
    "Exit status: 0 some instance answered, 1 none did, 2 bad arguments or NATS\n"
    "unreachable.\n";

/* Strings as shown: cleaned (svc__gather_clean), so that what an answer says
 * reaches the terminal as printable ASCII of bounded width. */
typedef struct instance {
    char name[SVC__GATHER_FIELD_MAX + 1], id[SVC__GATHER_FIELD_MAX + 1], version[SVC__GATHER_FIELD_MAX + 1];
    char http[300]; /* "host:port" or "-", as the answer says: what /readyz is asked at */
    char http_shown[SVC__GATHER_FIELD_MAX + 1];
    char hostname[SVC__GATHER_FIELD_MAX + 1]; /* the machine's name, "-" when not said */
    const char *host, *port;
    int stats; /* answered STATS */
    uint64_t requests, errors, time_ns; /* saturated sums */
    const char *health;
} instance;

static const char *str_or(json_t *o, const char *key, const char *dflt) {
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : dflt;
}

/* A counter: an integer >= 0, else 0. */
static uint64_t count_of(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static int is_type(json_t *doc, const char *suffix) {
    const char *t = str_or(doc, "type", "");
    size_t tl = strlen(t), sl = strlen(suffix);
    return tl >= sl && strcmp(t + tl - sl, suffix) == 0;
}

static int cmp_instance(const void *a, const void *b) {
    const instance *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->id, y->id);
}

/* One row per (name, id), from its INFO and STATS documents. */
static size_t collect(json_t *docs, instance *out) {
    size_t n = 0, i;
    json_t *doc;
    json_array_foreach(docs, i, doc) {
        char name[SVC__GATHER_FIELD_MAX + 1], id[SVC__GATHER_FIELD_MAX + 1];
        svc__gather_clean(name, str_or(doc, "name", ""));
        svc__gather_clean(id, str_or(doc, "id", ""));
        instance *in = NULL;
        for (size_t k = 0; k < n; k++)
            if (!strcmp(out[k].name, name) && !strcmp(out[k].id, id)) in = &out[k];
        if (!in) {
            in = &out[n++];
            memset(in, 0, sizeof *in);
            memcpy(in->name, name, sizeof name);
            memcpy(in->id, id, sizeof id);
            svc__gather_clean(in->version, str_or(doc, "version", "-"));
            json_t *md = json_object_get(doc, "metadata");
            in->host = json_string_value(json_object_get(md, "host"));
            in->port = json_string_value(json_object_get(md, "http_port"));
            if (in->host && *in->host && in->port && *in->port)
                snprintf(in->http, sizeof in->http, "%s%s%s:%s", strchr(in->host, ':') ? "[" : "",
                         in->host, strchr(in->host, ':') ? "]" : "", in->port);
            else
                snprintf(in->http, sizeof in->http, "-"), in->host = in->port = NULL;
            svc__gather_clean(in->http_shown, in->http);
            svc__gather_clean(in->hostname, str_or(md, "hostname", ""));
            if (!in->hostname[0]) memcpy(in->hostname, "-", 2);
        }
        if (!is_type(doc, "stats_response") || in->stats) continue;
        in->stats = 1;
        size_t e;
        json_t *ep;
        json_array_foreach(json_object_get(doc, "endpoints"), e, ep) {
            /* A route's endpoint counts its requests over both transports;
             * "http" and "instance" count those same requests again by the
             * subject they came on. */
            const char *en = str_or(ep, "name", "");
            if (!strcmp(en, "http") || !strcmp(en, "instance")) continue;
            in->requests = svc__gather_sum(in->requests, count_of(ep, "num_requests"));
            in->errors = svc__gather_sum(in->errors, count_of(ep, "num_errors"));
            in->time_ns = svc__gather_sum(in->time_ns, count_of(ep, "processing_time"));
        }
    }
    return n;
}

static void probe_ready(instance *in) {
    char url[400];
    if (!in->host) return;
    snprintf(url, sizeof url, "http://%s/readyz", in->http);
    int status = 0;
    int rc = svc_http_fetch("GET", url, NULL, NULL, 0, STATUS_READY_TIMEOUT_MS, &status, NULL, NULL);
    in->health = rc == SVC_OK && status == 200 ? "ready" : "not-ready";
}

static void print_table(instance *rows, size_t n) {
    int wn = 7, wi = 2, wv = 7, wm = 4, wh = 4;
    for (size_t i = 0; i < n; i++) {
        int l;
        if ((l = (int)strlen(rows[i].name)) > wn) wn = l;
        if ((l = (int)strlen(rows[i].id)) > wi) wi = l;
        if ((l = (int)strlen(rows[i].version)) > wv) wv = l;
        if ((l = (int)strlen(rows[i].hostname)) > wm) wm = l;
        if ((l = (int)strlen(rows[i].http_shown)) > wh) wh = l;
    }
    printf("%-*s  %-*s  %-*s  %-*s  %-*s  %-9s  %8s  %6s  %11s\n", wn, "SERVICE", wi, "ID", wv, "VERSION", wm,
           "HOST", wh, "HTTP", "HEALTH", "REQUESTS", "ERRORS", "AVG-LATENCY");
    for (size_t i = 0; i < n; i++) {
        instance *r = &rows[i];
        char req[32] = "-", err[32] = "-", avg[32] = "-";
        if (r->stats) {
            snprintf(req, sizeof req, "%" PRIu64, r->requests);
            snprintf(err, sizeof err, "%" PRIu64, r->errors);
            if (r->requests > 0)
                snprintf(avg, sizeof avg, "%.3fms", (double)r->time_ns / (double)r->requests / 1e6);
        }
        printf("%-*s  %-*s  %-*s  %-*s  %-*s  %-9s  %8s  %6s  %11s\n", wn, r->name, wi, r->id, wv, r->version,
               wm, r->hostname, wh, r->http_shown, r->health, req, err, avg);
    }
}

int svc__cmd_status(int argc, char **argv) {
    const char *url = svc__gather_default_url();
    int wait_ms = STATUS_DEFAULT_WAIT_MS, as_json = 0, ready = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(status_usage, stdout);
            return SVC__EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            as_json = 1;
        } else if (!strcmp(a, "--no-ready")) {
            ready = 0;
        } else if ((v = svc__opt_value(argc, argv, &i, "--nats", &missing))) {
            url = v;
        } else if ((v = svc__opt_value(argc, argv, &i, "--wait", &missing))) {
            if (svc__gather_parse_ms(v, SVC__GATHER_MAX_WAIT_MS, &wait_ms) != SVC_OK) {
                fprintf(stderr, "svckit status: --wait must be a number of ms from 1 to %d, got '%s'\n",
                        SVC__GATHER_MAX_WAIT_MS, v);
                return SVC__EXIT_USAGE;
            }
        } else if (missing) {
            fprintf(stderr, "svckit status: %s needs a value\n", a);
            return SVC__EXIT_USAGE;
        } else {
            fprintf(stderr, "svckit status: unknown option '%s'\n\n%s", a, status_usage);
            return SVC__EXIT_USAGE;
        }
    }
    const svc__nats_env *env = svc__gather_env("status", url);
    if (!env) return SVC__EXIT_USAGE;
    /* The client's retry warnings would land on stdout, amid the table or the
     * JSON; our own line on stderr says what matters. */
    svc_log_setup("svckit", SVC_LOG_ERROR, 0);
    static const char *const verbs[] = {"INFO", "STATS", NULL};
    json_t *docs;
    if (svc__gather_round("status", url, env, verbs, wait_ms, &docs) != SVC_OK)
        return SVC__EXIT_USAGE;
    size_t ndocs = json_array_size(docs);
    instance *rows = calloc(ndocs ? ndocs : 1, sizeof *rows);
    if (!rows) {
        json_decref(docs);
        return SVC__EXIT_FAIL;
    }
    size_t n = collect(docs, rows);
    qsort(rows, n, sizeof *rows, cmp_instance);
    if (as_json) {
        char *s = json_dumps(docs, JSON_COMPACT);
        if (s) puts(s);
        free(s);
    } else if (n > 0) {
        for (size_t i = 0; i < n; i++) {
            rows[i].health = rows[i].stats ? "up" : "-";
            if (ready && rows[i].stats) probe_ready(&rows[i]);
        }
        print_table(rows, n);
    }
    if (n == 0) fprintf(stderr, "no svckit instances on %s\n", url);
    free(rows);
    json_decref(docs);
    return n > 0 ? SVC__EXIT_OK : SVC__EXIT_FAIL;
}
