/*
 * Configuration from the environment (12-factor), validated once at start.
 * A bad value stops the service with one line naming the variable; nothing is
 * silently clamped or defaulted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/internal.h"
#include "svckit/store.h"

/* The runtime's own variables; each transport and module declares its own
 * (svc_transport.vars, svc_module.vars) and reads them in its configure. */
static const svc_config_var core_vars[] = {
    {"WORKERS", NULL, "event-loop threads (default: CPUs available)"},
    {"DATA_DIR", "./var", "where SQLite files live"},
    {"DATABASE_URL", NULL, "postgres://user:password@host:port/db: the store on PostgreSQL (programs built with make PG=1)"},
    {"LOG_LEVEL", "info", "debug, info, warn or error"},
    {"LOG_FORMAT", NULL, "json or text (default: text on a terminal, else json)"},
    {"LOG_COLOR", "auto", "text logs in colour: auto (on a terminal), always or never; NO_COLOR=1 is never"},
    {"SHUTDOWN_TIMEOUT", "10", "seconds to drain on SIGTERM"},
    {"REQUEST_TIMEOUT", "30", "seconds a request may take before it is answered 504"},
    {"DRAIN_DELAY", "1", "seconds new connections are still accepted after SIGTERM"},
    {"HTTP_MAX_HEADER_BYTES", "16384", "request line plus headers, bytes"},
    {"HTTP_MAX_HEADERS", "100", "header fields per request"},
    {"HTTP_MAX_BODY_BYTES", "1048576", "request body, bytes"},
    {"HTTP_COMPRESS", "1", "gzip JSON and text responses for clients that accept it: 1 or 0"},
    {"TRACE_SAMPLE", "1.0", "share of new traces recorded, 0 to 1 (a caller's sampled flag is obeyed)"},
    {"TRACE_SLOW_MS", "1000", "requests at least this slow keep their span even when not sampled"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT", NULL, "http://host:port of an OTLP/HTTP collector; spans go to <it>/v1/traces"},
};

int svc__config_fail(char *err, size_t errlen, const char *var, const char *val, const char *why) {
    snprintf(err, errlen, "invalid configuration: %s=\"%.64s\": %s", var, val, why);
    return SVC_EINVAL;
}

int svc__config_int(const char *var, long lo, long hi, long def, long *out, char *err, size_t errlen) {
    const char *v = getenv(var);
    if (!v || !*v) {
        *out = def;
        return SVC_OK;
    }
    int64_t n;
    if (svc_parse_i64(v, &n) != SVC_OK || n < lo || n > hi) {
        char why[96];
        snprintf(why, sizeof why, "expected an integer from %ld to %ld", lo, hi);
        return svc__config_fail(err, errlen, var, v, why);
    }
    *out = (long)n;
    return SVC_OK;
}

/* Seconds, possibly fractional ("0.5"), into milliseconds. */
int svc__config_seconds(const char *var, double hi, int def_ms, int *out_ms, char *err, size_t errlen) {
    const char *v = getenv(var);
    if (!v || !*v) {
        *out_ms = def_ms;
        return SVC_OK;
    }
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || *end || end == v || !isfinite(d) || d < 0 || d > hi) {
        char why[96];
        snprintf(why, sizeof why, "expected seconds from 0 to %g", hi);
        return svc__config_fail(err, errlen, var, v, why);
    }
    *out_ms = (int)(d * 1000.0 + 0.5);
    return SVC_OK;
}

static const char *get_str(const char *var, const char *def) {
    const char *v = getenv(var);
    return v && *v ? v : def;
}

static int cpus_available(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* DATA_DIR, and any missing parent, created 0700 (the service's files are
 * its own): SVC_OK, or SVC_EIO with errno set. */
static int make_dir(const char *path) {
    char p[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof p) {
        errno = ENAMETOOLONG;
        return SVC_EIO;
    }
    memcpy(p, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) return SVC_EIO;
        p[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0) return SVC_EIO;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return SVC_EIO;
    }
    return SVC_OK;
}

int svc__config_load(svc_app *app, char *err, size_t errlen) {
    svc_config *c = &app->cfg;
    long v;
    int rc;
    memset(c, 0, sizeof *c);
    c->service = app->name;

    int ncpu = cpus_available();
    if ((rc = svc__config_int("WORKERS", 1, 256, ncpu, &v, err, errlen))) return rc;
    c->workers = (int)v;
    c->data_dir = get_str("DATA_DIR", "./var");
    if (make_dir(c->data_dir) != SVC_OK) return svc__config_fail(err, errlen, "DATA_DIR", c->data_dir, strerror(errno));
    /* Checked here so a bad URL stops the service at start, before any
     * database is opened; never echoed (it may hold a password). */
    char why[256];
    if (svc_db_url_check(getenv("DATABASE_URL"), why, sizeof why) != SVC_OK) {
        snprintf(err, errlen, "invalid configuration: DATABASE_URL: %s", why);
        return SVC_EINVAL;
    }

    const char *lvl = get_str("LOG_LEVEL", "info");
    if (svc_log_level_parse(lvl, &c->log_level) != SVC_OK)
        return svc__config_fail(err, errlen, "LOG_LEVEL", lvl, "expected debug, info, warn or error");
    const char *fmt = getenv("LOG_FORMAT");
    if (!fmt || !*fmt) c->log_json = !isatty(STDOUT_FILENO);
    else if (strcmp(fmt, "json") == 0) c->log_json = 1;
    else if (strcmp(fmt, "text") == 0) c->log_json = 0;
    else return svc__config_fail(err, errlen, "LOG_FORMAT", fmt, "expected json or text");
    /* NO_COLOR (no-color.org) wins over everything; svckit run passes
     * LOG_COLOR=always when the terminal is at the other end of its pipe. */
    const char *color = get_str("LOG_COLOR", "auto"), *no_color = getenv("NO_COLOR"), *term = getenv("TERM");
    if (strcmp(color, "always") == 0) c->log_color = 1;
    else if (strcmp(color, "never") == 0) c->log_color = 0;
    else if (strcmp(color, "auto") == 0)
        c->log_color = isatty(STDOUT_FILENO) && !(term && strcmp(term, "dumb") == 0);
    else return svc__config_fail(err, errlen, "LOG_COLOR", color, "expected auto, always or never");
    if (no_color && *no_color) c->log_color = 0;
    if (c->log_json) c->log_color = 0;

    if ((rc = svc__config_seconds("SHUTDOWN_TIMEOUT", 3600, SVC_SHUTDOWN_TIMEOUT_MS,
                          &c->shutdown_timeout_ms, err, errlen))) return rc;
    if ((rc = svc__config_seconds("REQUEST_TIMEOUT", 3600, SVC_REQUEST_TIMEOUT_MS, &c->request_timeout_ms, err,
                          errlen))) return rc;
    if (c->request_timeout_ms <= 0)
        return svc__config_fail(err, errlen, "REQUEST_TIMEOUT", getenv("REQUEST_TIMEOUT"), "must be more than 0");
    if ((rc = svc__config_seconds("DRAIN_DELAY", 600, SVC_DRAIN_DELAY_MS, &c->drain_delay_ms, err, errlen)))
        return rc;

    if ((rc = svc__config_int("HTTP_MAX_HEADER_BYTES", 1024, 1024 * 1024, SVC_HTTP_MAX_HEADER_BYTES, &v,
                      err, errlen))) return rc;
    c->max_header_bytes = (size_t)v;
    if ((rc = svc__config_int("HTTP_MAX_HEADERS", 8, SVC_HTTP_MAX_HEADERS, SVC_HTTP_MAX_HEADERS, &v, err,
                      errlen))) return rc;
    c->max_headers = (int)v;
    if ((rc = svc__config_int("HTTP_MAX_BODY_BYTES", 0, 1L << 30, SVC_HTTP_MAX_BODY_BYTES, &v, err,
                      errlen))) return rc;
    c->max_body_bytes = (size_t)v;
    if ((rc = svc__config_int("HTTP_COMPRESS", 0, 1, 1, &v, err, errlen))) return rc;
    c->compress = (int)v;
    const char *ts = getenv("TRACE_SAMPLE");
    c->trace_sample = 1.0;
    if (ts && *ts) {
        char *end;
        errno = 0;
        c->trace_sample = strtod(ts, &end);
        if (errno || *end || end == ts || !(c->trace_sample >= 0 && c->trace_sample <= 1))
            return svc__config_fail(err, errlen, "TRACE_SAMPLE", ts, "expected a number from 0 to 1");
    }
    if ((rc = svc__config_int("TRACE_SLOW_MS", 1, 3600 * 1000, SVC_TRACE_SLOW_MS, &v, err, errlen))) return rc;
    c->trace_slow_ms = (int)v;
    const char *ep = getenv("OTEL_EXPORTER_OTLP_ENDPOINT");
    if (ep && *ep) {
        if (strncmp(ep, "http://", 7) != 0 || strlen(ep) > SVC_OTLP_ENDPOINT_MAX)
            return svc__config_fail(err, errlen, "OTEL_EXPORTER_OTLP_ENDPOINT", ep,
                                    "expected http://host[:port][/path] (https is not supported)");
        c->otlp_endpoint = ep;
    }
    /* Then each transport's and module's own variables. */
    for (int i = 0; i < app->ntransports; i++) {
        const svc_transport *t = app->transports[i].ops;
        if (t->configure && (rc = t->configure(app, app->transports[i].state, err, errlen)) != SVC_OK) return rc;
    }
    for (int i = 0; i < app->nmodules; i++) {
        const svc_module *m = app->modules[i].ops;
        if (m->configure && (rc = m->configure(app, app->modules[i].state, err, errlen)) != SVC_OK) return rc;
    }
    return SVC_OK;
}

/* PORT's default is the service's (svc_app_default_port), whoever reads it. */
static void help_vars(const svc_app *app, FILE *out, const svc_config_var *vars, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char def[64];
        if (strcmp(vars[i].name, "PORT") == 0) snprintf(def, sizeof def, "%d", app->default_port);
        else snprintf(def, sizeof def, "%s", vars[i].def ? vars[i].def : "unset");
        fprintf(out, "  %-24s %s [default: %s]\n", vars[i].name, vars[i].help, def);
    }
}

void svc__config_help(const svc_app *app, FILE *out) {
    fprintf(out, "usage: %s [--help] [--version]\n\n", app->argv && app->argv[0] ? app->argv[0] : app->name);
    fprintf(out, "%s: an svckit service. Configuration comes from the environment:\n\n", app->name);
    help_vars(app, out, core_vars, sizeof core_vars / sizeof core_vars[0]);
    for (int i = 0; i < app->ntransports; i++)
        help_vars(app, out, app->transports[i].ops->vars, app->transports[i].ops->nvars);
    for (int i = 0; i < app->nmodules; i++)
        help_vars(app, out, app->modules[i].ops->vars, app->modules[i].ops->nvars);
    if (app->nenv) fprintf(out, "\n%s-specific:\n\n", app->name);
    for (int i = 0; i < app->nenv; i++)
        fprintf(out, "  %-24s %s [default: %s]\n", app->env[i].name, app->env[i].help,
                app->env[i].def ? app->env[i].def : "unset");
    fprintf(out, "\nEndpoints: GET /healthz, GET /readyz, GET /metrics, GET /openapi.json. SIGTERM drains and exits.\n");
}
