/*
 * The gateway's configuration: a JSON document (GATEWAY_CONFIG names the
 * file; without it, the built-in table below, which is deploy/gateway.json).
 * Validation is strict and total at start-up, so that a typo ("timout_ms")
 * stops the gateway with a line naming it instead of silently routing with a
 * default; the request path then reads plain, immutable values.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway.h"

const char gw_default_config[] =
    "{\n"
    "  \"routes\": [\n"
    "    {\"prefix\": \"/auth/\", \"service\": \"auth\", \"auth\": \"none\", \"timeout_ms\": 5000, \"retry\": true},\n"
    "    {\"prefix\": \"/.well-known/\", \"service\": \"auth\", \"auth\": \"none\", \"timeout_ms\": 2000, \"retry\": true},\n"
    "    {\"prefix\": \"/products\", \"service\": \"products\", \"auth\": \"user\", \"timeout_ms\": 3000, \"retry\": true},\n"
    "    {\"prefix\": \"/orders\", \"service\": \"orders\", \"auth\": \"user\", \"timeout_ms\": 5000, \"retry\": true},\n"
    "    {\"prefix\": \"/payments\", \"service\": \"payments\", \"auth\": \"user\", \"timeout_ms\": 3000, \"retry\": true},\n"
    "    {\"prefix\": \"/recommendations\", \"service\": \"recommendations\", \"auth\": \"user\", \"timeout_ms\": 2000, "
    "\"retry\": true}\n"
    "  ],\n"
    "  \"cors\": {\"origins\": [\"http://localhost:3000\", \"http://127.0.0.1:3000\"], \"max_age_s\": 600},\n"
    "  \"limits\": {\"rate_per_client_per_s\": 1000, \"burst\": 2000, \"max_concurrency\": 2048},\n"
    "  \"retry_budget\": {\"ratio\": 0.2, \"window_s\": 10},\n"
    "  \"breaker\": {\"failures\": 5, \"open_ms\": 2000},\n"
    "  \"discovery\": {\"interval_ms\": 1000}\n"
    "}\n";

/* Defaults for keys a file leaves out (the built-in table sets them all). */
#define DEF_TIMEOUT_MS 5000
#define DEF_MAX_AGE_S 600
#define DEF_RATE 1000.0
#define DEF_BURST 2000.0
#define DEF_CONCURRENCY 2048
#define DEF_RETRY_RATIO 0.2
#define DEF_RETRY_WINDOW_S 10
#define DEF_BREAKER_FAILURES 5
#define DEF_BREAKER_OPEN_MS 2000
#define DEF_DISCOVERY_MS 1000
#define MAX_MAX_AGE_S 86400
#define MAX_RATE 1e9
#define MAX_CONCURRENCY 1000000
#define MAX_BREAKER_FAILURES 1000000
#define MAX_BREAKER_OPEN_MS 600000
#define MIN_DISCOVERY_MS 100
#define MAX_DISCOVERY_MS 60000

static int fail(char *err, size_t errlen, const char *fmt, ...) SVC_PRINTF(3, 4);
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return SVC_EINVAL;
}

/* Every key of the object obj must be one of allowed (NULL-terminated). */
static int only_keys(json_t *obj, const char *const *allowed, const char *where, char *err, size_t errlen) {
    const char *k;
    if (svc_json_only_keys(obj, allowed, &k) != SVC_OK)
        return fail(err, errlen, "%s: unknown key \"%.64s\"", where, k ? k : "");
    return SVC_OK;
}

/* An optional integer member in [lo, hi]; *out keeps its default when absent. */
static int get_int(json_t *obj, const char *key, int lo, int hi, int *out, const char *where, char *err,
                   size_t errlen) {
    json_t *v = json_object_get(obj, key);
    if (!v) return SVC_OK;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return fail(err, errlen, "%s.%s: must be an integer %d..%d", where, key, lo, hi);
    *out = (int)json_integer_value(v);
    return SVC_OK;
}

/* An optional number member in [lo, hi] (lo itself allowed only if lo_ok). */
static int get_num(json_t *obj, const char *key, double lo, int lo_ok, double hi, double *out,
                   const char *where, char *err, size_t errlen) {
    json_t *v = json_object_get(obj, key);
    if (!v) return SVC_OK;
    double d = json_is_number(v) ? json_number_value(v) : -1;
    if (!json_is_number(v) || d < lo || (d == lo && !lo_ok) || d > hi)
        return fail(err, errlen, "%s.%s: must be a number %s%g..%g", where, key, lo_ok ? "" : "above ", lo, hi);
    *out = d;
    return SVC_OK;
}

static int is_pchar_or_slash(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return strchr("-._~!$&'()*+,;=:@/", c) != NULL && c != '\0';
}

/* A prefix is compared with normalised, decoded paths, so it must look like
 * one: absolute, no empty, "." or ".." segment, no '%' (a decoded path holds
 * the byte itself), only plain path characters. */
static int prefix_ok(const char *p, size_t n) {
    if (n == 0 || n > GW_MAX_PREFIX || p[0] != '/') return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_pchar_or_slash((unsigned char)p[i])) return 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && p[j] != '/') j++;
        size_t seg = j - i - 1;
        int last = j >= n;
        if (seg == 0 && !last) return 0;
        if ((seg == 1 && p[i + 1] == '.') || (seg == 2 && p[i + 1] == '.' && p[i + 2] == '.')) return 0;
        i = j;
    }
    return 1;
}

static int service_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > GW_MAX_SERVICE_NAME) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* An origin as browsers send it: http(s)://host[:port], nothing after. */
static int origin_ok(const char *o) {
    size_t n = strlen(o);
    if (n == 0 || n > GW_MAX_ORIGIN) return 0;
    const char *rest;
    if (strncasecmp(o, "http://", 7) == 0) rest = o + 7;
    else if (strncasecmp(o, "https://", 8) == 0) rest = o + 8;
    else return 0;
    if (!*rest) return 0;
    for (const char *p = rest; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '.' || c == ':' || c == '[' || c == ']'))
            return 0;
    }
    return 1;
}

static int service_index(gw_config *c, const char *name) {
    for (int i = 0; i < c->nservices; i++)
        if (strcmp(c->services[i], name) == 0) return i;
    if (c->nservices == GW_MAX_SERVICES) return -1;
    snprintf(c->services[c->nservices], sizeof c->services[0], "%s", name);
    return c->nservices++;
}

static int parse_route(json_t *r, int i, gw_config *c, char *err, size_t errlen) {
    char where[32];
    snprintf(where, sizeof where, "routes[%d]", i);
    if (!json_is_object(r)) return fail(err, errlen, "%s: must be an object", where);
    static const char *const keys[] = {"prefix", "service", "auth", "timeout_ms", "retry", NULL};
    if (only_keys(r, keys, where, err, errlen) != SVC_OK) return SVC_EINVAL;
    gw_route *rt = &c->routes[c->nroutes];
    memset(rt, 0, sizeof *rt);

    json_t *p = json_object_get(r, "prefix");
    if (!json_is_string(p)) return fail(err, errlen, "%s.prefix: required, a string", where);
    /* svc_json_parse refuses NUL in strings: plen is the C string's length. */
    const char *prefix = json_string_value(p);
    size_t plen = json_string_length(p);
    if (!prefix_ok(prefix, plen))
        return fail(err, errlen,
                    "%s.prefix: must be an absolute path of at most %d plain characters, "
                    "without empty, \".\" or \"..\" segments",
                    where, GW_MAX_PREFIX);
    for (int j = 0; j < c->nroutes; j++)
        if (strcmp(c->routes[j].prefix, prefix) == 0)
            return fail(err, errlen, "%s.prefix: \"%s\" is listed twice", where, prefix);
    memcpy(rt->prefix, prefix, plen + 1);
    rt->prefix_len = plen;
    memcpy(rt->label, prefix, plen);
    memcpy(rt->label + plen, "*", 2);

    json_t *s = json_object_get(r, "service");
    if (!json_is_string(s) || !service_name_ok(json_string_value(s)))
        return fail(err, errlen, "%s.service: required, 1 to %d of A-Z a-z 0-9 _ -", where, GW_MAX_SERVICE_NAME);
    rt->service = service_index(c, json_string_value(s));
    if (rt->service < 0) return fail(err, errlen, "%s.service: more than %d services", where, GW_MAX_SERVICES);

    json_t *a = json_object_get(r, "auth");
    rt->auth = GW_AUTH_NONE;
    if (a) {
        const char *v = json_is_string(a) ? json_string_value(a) : "";
        if (strcmp(v, "none") == 0) rt->auth = GW_AUTH_NONE;
        else if (strcmp(v, "user") == 0) rt->auth = GW_AUTH_USER;
        else if (strcmp(v, "admin") == 0) rt->auth = GW_AUTH_ADMIN;
        else return fail(err, errlen, "%s.auth: must be \"none\", \"user\" or \"admin\"", where);
    }
    rt->timeout_ms = DEF_TIMEOUT_MS;
    if (get_int(r, "timeout_ms", 1, GW_MAX_TIMEOUT_MS, &rt->timeout_ms, where, err, errlen) != SVC_OK)
        return SVC_EINVAL;
    json_t *re = json_object_get(r, "retry");
    rt->retry = 1;
    if (re) {
        if (!json_is_boolean(re)) return fail(err, errlen, "%s.retry: must be true or false", where);
        rt->retry = json_is_true(re);
    }
    c->nroutes++;
    return SVC_OK;
}

static int section(json_t *root, const char *name, const char *const *keys, json_t **out, char *err,
                   size_t errlen) {
    *out = json_object_get(root, name);
    if (!*out) return SVC_OK;
    if (!json_is_object(*out)) return fail(err, errlen, "%s: must be an object", name);
    return only_keys(*out, keys, name, err, errlen);
}

static int by_prefix_length(const void *a, const void *b) {
    const gw_route *x = a, *y = b;
    if (x->prefix_len != y->prefix_len) return x->prefix_len > y->prefix_len ? -1 : 1;
    return strcmp(x->prefix, y->prefix);
}

static int parse_root(json_t *root, gw_config *c, char *err, size_t errlen) {
    if (!json_is_object(root)) return fail(err, errlen, "the configuration must be a JSON object");
    static const char *const top[] = {"routes", "cors", "limits", "retry_budget", "breaker", "discovery", NULL};
    if (only_keys(root, top, "configuration", err, errlen) != SVC_OK) return SVC_EINVAL;

    json_t *routes = json_object_get(root, "routes");
    if (!json_is_array(routes)) return fail(err, errlen, "routes: required, an array");
    if (json_array_size(routes) > GW_MAX_ROUTES)
        return fail(err, errlen, "routes: at most %d routes", GW_MAX_ROUTES);
    for (size_t i = 0; i < json_array_size(routes); i++)
        if (parse_route(json_array_get(routes, i), (int)i, c, err, errlen) != SVC_OK) return SVC_EINVAL;
    qsort(c->routes, (size_t)c->nroutes, sizeof c->routes[0], by_prefix_length);

    json_t *sec;
    static const char *const cors_keys[] = {"origins", "max_age_s", NULL};
    if (section(root, "cors", cors_keys, &sec, err, errlen) != SVC_OK) return SVC_EINVAL;
    if (sec) {
        json_t *o = json_object_get(sec, "origins");
        if (o) {
            if (!json_is_array(o)) return fail(err, errlen, "cors.origins: must be an array of strings");
            if (json_array_size(o) > GW_MAX_ORIGINS)
                return fail(err, errlen, "cors.origins: at most %d origins", GW_MAX_ORIGINS);
            for (size_t i = 0; i < json_array_size(o); i++) {
                json_t *v = json_array_get(o, i);
                if (!json_is_string(v) || !origin_ok(json_string_value(v)))
                    return fail(err, errlen,
                                "cors.origins[%zu]: must be an origin such as \"https://shop.example:8443\" "
                                "(scheme://host[:port], no path; \"*\" is not allowed with credentials)",
                                i);
                snprintf(c->origins[c->norigins++], sizeof c->origins[0], "%s", json_string_value(v));
            }
        }
        if (get_int(sec, "max_age_s", 0, MAX_MAX_AGE_S, &c->cors_max_age_s, "cors", err, errlen) != SVC_OK)
            return SVC_EINVAL;
    }

    static const char *const limit_keys[] = {"rate_per_client_per_s", "burst", "max_concurrency", NULL};
    if (section(root, "limits", limit_keys, &sec, err, errlen) != SVC_OK) return SVC_EINVAL;
    if (sec) {
        if (get_num(sec, "rate_per_client_per_s", 0, 1, MAX_RATE, &c->rate_per_s, "limits", err, errlen) != SVC_OK ||
            get_num(sec, "burst", 1, 1, MAX_RATE, &c->burst, "limits", err, errlen) != SVC_OK ||
            get_int(sec, "max_concurrency", 0, MAX_CONCURRENCY, &c->max_concurrency, "limits", err, errlen) != SVC_OK)
            return SVC_EINVAL;
    }

    static const char *const budget_keys[] = {"ratio", "window_s", NULL};
    if (section(root, "retry_budget", budget_keys, &sec, err, errlen) != SVC_OK) return SVC_EINVAL;
    if (sec) {
        if (get_num(sec, "ratio", 0, 1, 1, &c->retry_ratio, "retry_budget", err, errlen) != SVC_OK ||
            get_int(sec, "window_s", 1, GW_BUDGET_MAX_WINDOW_S, &c->retry_window_s, "retry_budget", err, errlen) !=
                SVC_OK)
            return SVC_EINVAL;
    }

    static const char *const breaker_keys[] = {"failures", "open_ms", NULL};
    if (section(root, "breaker", breaker_keys, &sec, err, errlen) != SVC_OK) return SVC_EINVAL;
    if (sec) {
        if (get_int(sec, "failures", 1, MAX_BREAKER_FAILURES, &c->breaker_failures, "breaker", err, errlen) !=
                SVC_OK ||
            get_int(sec, "open_ms", 1, MAX_BREAKER_OPEN_MS, &c->breaker_open_ms, "breaker", err, errlen) != SVC_OK)
            return SVC_EINVAL;
    }

    static const char *const disc_keys[] = {"interval_ms", NULL};
    if (section(root, "discovery", disc_keys, &sec, err, errlen) != SVC_OK) return SVC_EINVAL;
    if (sec && get_int(sec, "interval_ms", MIN_DISCOVERY_MS, MAX_DISCOVERY_MS, &c->discovery_interval_ms,
                       "discovery", err, errlen) != SVC_OK)
        return SVC_EINVAL;
    return SVC_OK;
}

int gw_config_parse(const char *json, size_t len, gw_config *out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!json || !out) return fail(err, errlen, "no configuration");
    memset(out, 0, sizeof *out);
    out->cors_max_age_s = DEF_MAX_AGE_S;
    out->rate_per_s = DEF_RATE;
    out->burst = DEF_BURST;
    out->max_concurrency = DEF_CONCURRENCY;
    out->retry_ratio = DEF_RETRY_RATIO;
    out->retry_window_s = DEF_RETRY_WINDOW_S;
    out->breaker_failures = DEF_BREAKER_FAILURES;
    out->breaker_open_ms = DEF_BREAKER_OPEN_MS;
    out->discovery_interval_ms = DEF_DISCOVERY_MS;

    svc_json_limits lim = {.max_bytes = GW_CONFIG_MAX_BYTES};
    json_t *root = NULL;
    char why[160];
    if (svc_json_parse(json, len, &lim, &root, why, sizeof why) != SVC_OK)
        return fail(err, errlen, "%s", why);
    int rc = parse_root(root, out, err, errlen);
    json_decref(root);
    if (rc != SVC_OK) memset(out, 0, sizeof *out);
    return rc;
}

int gw_config_load(const char *path, gw_config *out, char *err, size_t errlen) {
    if (!path || !*path) return gw_config_parse(gw_default_config, strlen(gw_default_config), out, err, errlen);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, errlen, "cannot read %s: %s", path, strerror(errno));
    char *buf = malloc(GW_CONFIG_MAX_BYTES + 1);
    if (!buf) {
        fclose(f);
        return fail(err, errlen, "out of memory");
    }
    size_t n = fread(buf, 1, GW_CONFIG_MAX_BYTES + 1, f);
    int rerr = ferror(f);
    fclose(f);
    int rc;
    if (rerr) rc = fail(err, errlen, "cannot read %s", path);
    else if (n > GW_CONFIG_MAX_BYTES) rc = fail(err, errlen, "%s: larger than %d bytes", path, GW_CONFIG_MAX_BYTES);
    else rc = gw_config_parse(buf, n, out, err, errlen);
    free(buf);
    return rc;
}

const gw_route *gw_route_find(const gw_config *c, const char *path) {
    size_t n = strlen(path);
    for (int i = 0; i < c->nroutes; i++) {
        const gw_route *r = &c->routes[i];
        size_t p = r->prefix_len;
        if (n < p || memcmp(path, r->prefix, p) != 0) continue;
        if (r->prefix[p - 1] == '/' || path[p] == '\0' || path[p] == '/') return r;
    }
    return NULL;
}
