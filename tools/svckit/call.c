/* `svckit call`: one request to a service over NATS, with the wire
 * conventions of docs/messaging.md ("Request and reply"), the answer printed
 * like curl prints an HTTP response; `svckit routes`: every service's routes
 * from discovery ($SRV.INFO: the endpoints' metadata method and path).
 * Answers are hostile (anyone on NATS may answer): what reaches the terminal
 * is cleaned (svc__clean), and sizes are bounded by the NATS client's
 * max_payload. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cli.h"
#include "net/nats.h"

#define CALL_DEFAULT_TIMEOUT_MS 5000
#define CALL_MAX_TIMEOUT_MS 600000
#define CALL_MAX_HEADERS 64              /* --header options of one call */
#define CALL_SERVICE_MAX 64              /* bytes in SERVICE: [A-Za-z0-9_-] */
#define CALL_METHOD_MAX 16               /* upper-case letters in METHOD */
#define CALL_NAME_SHOWN_MAX 64           /* bytes shown of an answer's header name */
#define CALL_VALUE_SHOWN_MAX 1024        /* bytes shown of an answer's header value */
#define ROUTES_DEFAULT_WAIT_MS 500
#define ROUTES_SHOWN_MAX 256             /* bytes shown of a service name, method or path */

/* Exit codes of `svckit call` beyond SVC__EXIT_* (docs/cli.md). */
enum {
    CALL_EXIT_OTHER = 3,        /* a status that is neither 2xx, 4xx nor 5xx */
    CALL_EXIT_4XX = 4,
    CALL_EXIT_5XX = 5,
    CALL_EXIT_TIMEOUT = 6,      /* no answer within --timeout */
    CALL_EXIT_NO_RESPONDERS = 7 /* nobody serves svc.SERVICE.http */
};

static const char call_usage[] =
    "usage: svckit call [options] SERVICE METHOD PATH [BODY]\n"
    "\n"
    "Sends one request to SERVICE over NATS (svc.SERVICE.http) and prints the\n"
    "answer: the status line and headers on stderr (stdout with -i), the body\n"
    "on stdout. PATH may carry a ?query. A BODY is sent as given, with\n"
    "Content-Type: application/json unless a --header sets one.\n"
    "\n"
    "options:\n"
    "  --nats URL        NATS server; default $NATS_URL, else " SVC__GATHER_DEFAULT_URL "\n"
    "  --token TOKEN     send Authorization: Bearer TOKEN\n"
    "  -H, --header K:V  send a header (repeatable)\n"
    "  --timeout MS      how long to wait for the answer (1-600000); default 5000\n"
    "  -i, --include     status line and headers on stdout, before the body\n"
    "  -h, --help        this text\n"
    "\n"
    "Exit status: 0 a 2xx answer, 4 a 4xx, 5 a 5xx, 3 any other status,\n"
    "6 no answer in time, 7 no responders (nobody serves SERVICE), 1 a\n"
    "malformed answer, 2 bad arguments or NATS unreachable.\n";

static const char routes_usage[] =
    "usage: svckit routes [options]\n"
    "\n"
    "Lists every route of every service on NATS, from discovery ($SRV.INFO):\n"
    "one row per route, SERVICE METHOD PATH, sorted by service, path, method.\n"
    "\n"
    "options:\n"
    "  --nats URL      NATS server; default $NATS_URL, else " SVC__GATHER_DEFAULT_URL "\n"
    "  --wait MS       how long to gather replies (1-60000); default 500\n"
    "  --json          one JSON array of {\"service\",\"method\",\"path\"}\n"
    "  -h, --help      this text\n"
    "\n"
    "Exit status: 0 some route listed, 1 none, 2 bad arguments or NATS\n"
    "unreachable.\n";

/* ---- svckit call ----------------------------------------------------------- */

typedef struct call_ctx {
    uv_loop_t *loop;
    svc_nats_msg *answer; /* the first answer; later ones are dropped */
} call_ctx;

static void on_answer(svc_nats *nc, svc_nats_msg *msg, void *ud) {
    (void)nc;
    call_ctx *c = ud;
    if (c->answer) {
        svc__nats_msg_free(msg);
        return;
    }
    c->answer = msg;
    uv_stop(c->loop);
}

static int service_ok(const char *s) {
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
    return n >= 1 && n <= CALL_SERVICE_MAX && !s[n];
}

static int method_ok(const char *s) {
    size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    return n >= 1 && n <= CALL_METHOD_MAX && !s[n];
}

/* Adds "K:V" or "K: V" to the header block; SVC_EINVAL when malformed. */
static int add_header_arg(svc_buf *h, const char *arg) {
    const char *colon = strchr(arg, ':');
    if (!colon || colon == arg || (size_t)(colon - arg) >= 128) return SVC_EINVAL;
    char name[128];
    memcpy(name, arg, (size_t)(colon - arg));
    name[colon - arg] = '\0';
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    return svc__nats_hdr_add(h, name, v);
}

/* The answer's Svc-Status: 100-999, else 0. */
static int answer_status(const svc_nats_msg *m) {
    const char *s = svc__nats_msg_header(m, "Svc-Status");
    if (!s || strlen(s) != 3 || strspn(s, "0123456789") != 3 || s[0] == '0') return 0;
    return atoi(s);
}

static void print_head(FILE *f, const svc_nats_msg *m, int status) {
    fprintf(f, "status %d\n", status);
    for (size_t i = 0; i < m->nhdrs; i++) {
        char name[CALL_NAME_SHOWN_MAX + 1], value[CALL_VALUE_SHOWN_MAX + 1];
        svc__clean(name, sizeof name, m->names[i]);
        svc__clean(value, sizeof value, m->values[i]);
        fprintf(f, "%s: %s\n", name, value);
    }
    fputc('\n', f);
}

/* The body as bytes; on a terminal, control bytes other than newline and
 * tab (escape sequences) are written as '?'. */
static void print_body(const svc_nats_msg *m) {
    if (!isatty(STDOUT_FILENO)) {
        fwrite(m->data, 1, m->len, stdout);
        return;
    }
    for (size_t i = 0; i < m->len; i++) {
        unsigned char c = (unsigned char)m->data[i];
        putchar((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f ? '?' : c);
    }
}

static int exit_of(int status) {
    if (status >= 200 && status < 300) return SVC__EXIT_OK;
    if (status >= 400 && status < 500) return CALL_EXIT_4XX;
    if (status >= 500 && status < 600) return CALL_EXIT_5XX;
    return CALL_EXIT_OTHER;
}

/* Sends the request and waits for its answer (*answer NULL: none in time). */
static int call_once(const svc__nats_env *env, const char *subject, const svc_buf *hdr,
                     const char *body, int timeout_ms, svc_nats_msg **answer) {
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) return SVC_EIO;
    call_ctx c = {.loop = &loop};
    svc__gather g;
    int rc = svc__gather_connect(&g, &loop, env, "svckit call", on_answer, &c);
    if (rc == SVC_OK) {
        char reply[96];
        snprintf(reply, sizeof reply, "%s.1", g.inbox);
        rc = svc__nats_pub(g.nc, subject, reply, hdr->data, hdr->len, body, strlen(body));
    }
    if (rc == SVC_OK) svc__gather_run_for(&loop, timeout_ms);
    svc__gather_close(&g);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    *answer = c.answer;
    return rc;
}

int svc__cmd_call(int argc, char **argv) {
    const char *url = svc__gather_default_url(), *token = NULL, *pos[4];
    const char *headers[CALL_MAX_HEADERS];
    int npos = 0, nheaders = 0, timeout_ms = CALL_DEFAULT_TIMEOUT_MS, include = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(call_usage, stdout);
            return SVC__EXIT_OK;
        } else if (!strcmp(a, "-i") || !strcmp(a, "--include")) {
            include = 1;
        } else if ((v = svc__opt_value(argc, argv, &i, "--nats", &missing))) {
            url = v;
        } else if ((v = svc__opt_value(argc, argv, &i, "--token", &missing))) {
            token = v;
        } else if ((v = svc__opt_value(argc, argv, &i, "--header", &missing)) ||
                   (!missing && (v = svc__opt_value(argc, argv, &i, "-H", &missing)))) {
            if (nheaders == CALL_MAX_HEADERS) {
                fprintf(stderr, "svckit call: more than %d --header options\n", CALL_MAX_HEADERS);
                return SVC__EXIT_USAGE;
            }
            headers[nheaders++] = v;
        } else if ((v = svc__opt_value(argc, argv, &i, "--timeout", &missing))) {
            if (svc__gather_parse_ms(v, CALL_MAX_TIMEOUT_MS, &timeout_ms) != SVC_OK) {
                fprintf(stderr, "svckit call: --timeout must be a number of ms from 1 to %d, got '%s'\n",
                        CALL_MAX_TIMEOUT_MS, v);
                return SVC__EXIT_USAGE;
            }
        } else if (missing) {
            fprintf(stderr, "svckit call: %s needs a value\n", a);
            return SVC__EXIT_USAGE;
        } else if (a[0] == '-' && a[1] && (npos == 0 || a[1] == '-')) {
            /* Options may follow SERVICE; a BODY may start with one '-'. */
            fprintf(stderr, "svckit call: unknown option '%s'\n\n%s", a, call_usage);
            return SVC__EXIT_USAGE;
        } else if (npos < 4) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "svckit call: too many arguments\n\n%s", call_usage);
            return SVC__EXIT_USAGE;
        }
    }
    if (npos < 3) {
        fprintf(stderr, "svckit call: SERVICE, METHOD and PATH are needed\n\n%s", call_usage);
        return SVC__EXIT_USAGE;
    }
    const char *service = pos[0], *method = pos[1], *path = pos[2], *body = npos == 4 ? pos[3] : "";
    if (!service_ok(service)) {
        fprintf(stderr, "svckit call: bad service name (1-%d of A-Z a-z 0-9 _ -)\n", CALL_SERVICE_MAX);
        return SVC__EXIT_USAGE;
    }
    if (!method_ok(method)) {
        fprintf(stderr, "svckit call: bad method (1-%d upper-case letters)\n", CALL_METHOD_MAX);
        return SVC__EXIT_USAGE;
    }
    if (path[0] != '/') {
        fprintf(stderr, "svckit call: PATH must start with '/'\n");
        return SVC__EXIT_USAGE;
    }
    const svc__nats_env *env = svc__gather_env("call", url);
    if (!env) return SVC__EXIT_USAGE;

    /* The request's headers: ours, then the caller's. */
    svc_buf hdr = {0};
    char path_only[SVC__EXPANDED_MAX];
    const char *q = strchr(path, '?');
    size_t plen = q ? (size_t)(q - path) : strlen(path);
    int bad = plen >= sizeof path_only;
    if (!bad) {
        memcpy(path_only, path, plen);
        path_only[plen] = '\0';
    }
    char deadline[32], auth[32 + 4096];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(deadline, sizeof deadline, "%lld",
             (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 + timeout_ms);
    svc__nats_hdr_begin(&hdr);
    if (!bad) bad = svc__nats_hdr_add(&hdr, "Svc-Method", method) != SVC_OK ||
                    svc__nats_hdr_add(&hdr, "Svc-Path", path_only) != SVC_OK ||
                    (q && svc__nats_hdr_add(&hdr, "Svc-Query", q + 1) != SVC_OK) ||
                    svc__nats_hdr_add(&hdr, "Svc-Deadline", deadline) != SVC_OK;
    if (bad) {
        fprintf(stderr, "svckit call: PATH is too long or holds a control byte\n");
        svc_buf_free(&hdr);
        return SVC__EXIT_USAGE;
    }
    if (token) {
        if ((size_t)snprintf(auth, sizeof auth, "Bearer %s", token) >= sizeof auth ||
            svc__nats_hdr_add(&hdr, "Authorization", auth) != SVC_OK) {
            fprintf(stderr, "svckit call: --token is too long or holds a control byte\n");
            svc_buf_free(&hdr);
            return SVC__EXIT_USAGE;
        }
    }
    int has_type = 0;
    for (int i = 0; i < nheaders; i++) {
        if (add_header_arg(&hdr, headers[i]) != SVC_OK) {
            fprintf(stderr, "svckit call: bad --header '%s' (want NAME:VALUE, NAME a token, no control bytes)\n",
                    headers[i]);
            svc_buf_free(&hdr);
            return SVC__EXIT_USAGE;
        }
        has_type |= !strncasecmp(headers[i], "Content-Type:", 13);
    }
    if (*body && !has_type) svc__nats_hdr_add(&hdr, "Content-Type", "application/json");
    svc__nats_hdr_end(&hdr);

    char subject[CALL_SERVICE_MAX + 16];
    snprintf(subject, sizeof subject, "svc.%s.http", service);
    /* The client's retry warnings would land on stdout, amid the body. */
    svc_log_setup("svckit", SVC_LOG_ERROR, 0);
    svc_nats_msg *m = NULL;
    int rc = call_once(env, subject, &hdr, body, timeout_ms, &m);
    svc_buf_free(&hdr);
    if (rc == SVC_ETIMEDOUT) {
        fprintf(stderr, "svckit call: cannot connect to NATS at %s\n", url);
        return SVC__EXIT_USAGE;
    }
    if (rc == SVC_ERANGE) {
        fprintf(stderr, "svckit call: the request is larger than the NATS server's max_payload\n");
        return SVC__EXIT_USAGE;
    }
    if (rc != SVC_OK) {
        fprintf(stderr, "svckit call: sending on NATS at %s failed (error %d)\n", url, rc);
        svc__nats_msg_free(m);
        return SVC__EXIT_USAGE;
    }
    if (!m) {
        fprintf(stderr, "svckit call: no answer from %s within %d ms\n", service, timeout_ms);
        return CALL_EXIT_TIMEOUT;
    }
    int status = answer_status(m), code;
    if (!status && m->status == 503 && m->len == 0) {
        fprintf(stderr, "svckit call: no responders: nobody serves %s\n", subject);
        code = CALL_EXIT_NO_RESPONDERS;
    } else if (!status) {
        fprintf(stderr, "svckit call: malformed answer (no Svc-Status 100-999)\n");
        code = SVC__EXIT_FAIL;
    } else {
        print_head(include ? stdout : stderr, m, status);
        fflush(stdout);
        print_body(m);
        code = exit_of(status);
    }
    svc__nats_msg_free(m);
    return code;
}

/* ---- svckit routes ------------------------------------------------------------ */

typedef struct route {
    char service[ROUTES_SHOWN_MAX + 1], method[ROUTES_SHOWN_MAX + 1], path[ROUTES_SHOWN_MAX + 1];
} route;

static int cmp_route(const void *a, const void *b) {
    const route *x = a, *y = b;
    int c = strcmp(x->service, y->service);
    if (!c) c = strcmp(x->path, y->path);
    return c ? c : strcmp(x->method, y->method);
}

/* Every endpoint with a method and path of its own (not the "*" of the
 * http and instance subjects), from every INFO answer; sorted, unique. */
static route *collect_routes(json_t *docs, size_t *n) {
    size_t cap = 0, i, e;
    json_t *doc, *ep;
    json_array_foreach(docs, i, doc) cap += json_array_size(json_object_get(doc, "endpoints"));
    route *r = calloc(cap ? cap : 1, sizeof *r);
    if (!r) return NULL;
    *n = 0;
    json_array_foreach(docs, i, doc) {
        json_array_foreach(json_object_get(doc, "endpoints"), e, ep) {
            json_t *md = json_object_get(ep, "metadata");
            const char *method = json_string_value(json_object_get(md, "method"));
            const char *path = json_string_value(json_object_get(md, "path"));
            if (!method || !path || !strcmp(method, "*") || !*method || !*path) continue;
            route *x = &r[*n];
            svc__clean(x->service, sizeof x->service, json_string_value(json_object_get(doc, "name")));
            svc__clean(x->method, sizeof x->method, method);
            svc__clean(x->path, sizeof x->path, path);
            (*n)++;
        }
    }
    qsort(r, *n, sizeof *r, cmp_route);
    size_t u = 0;
    for (size_t k = 0; k < *n; k++)
        if (!u || cmp_route(&r[u - 1], &r[k])) r[u++] = r[k];
    *n = u;
    return r;
}

static void print_routes(const route *r, size_t n, int as_json) {
    if (as_json) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++)
            json_array_append_new(a, json_pack("{s:s,s:s,s:s}", "service", r[i].service, "method", r[i].method,
                                               "path", r[i].path));
        char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
        if (s) puts(s);
        free(s);
        json_decref(a);
        return;
    }
    int ws = 7, wm = 6;
    for (size_t i = 0; i < n; i++) {
        if ((int)strlen(r[i].service) > ws) ws = (int)strlen(r[i].service);
        if ((int)strlen(r[i].method) > wm) wm = (int)strlen(r[i].method);
    }
    printf("%-*s  %-*s  %s\n", ws, "SERVICE", wm, "METHOD", "PATH");
    for (size_t i = 0; i < n; i++) printf("%-*s  %-*s  %s\n", ws, r[i].service, wm, r[i].method, r[i].path);
}

int svc__cmd_routes(int argc, char **argv) {
    const char *url = svc__gather_default_url();
    int wait_ms = ROUTES_DEFAULT_WAIT_MS, as_json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(routes_usage, stdout);
            return SVC__EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            as_json = 1;
        } else if ((v = svc__opt_value(argc, argv, &i, "--nats", &missing))) {
            url = v;
        } else if ((v = svc__opt_value(argc, argv, &i, "--wait", &missing))) {
            if (svc__gather_parse_ms(v, SVC__GATHER_MAX_WAIT_MS, &wait_ms) != SVC_OK) {
                fprintf(stderr, "svckit routes: --wait must be a number of ms from 1 to %d, got '%s'\n",
                        SVC__GATHER_MAX_WAIT_MS, v);
                return SVC__EXIT_USAGE;
            }
        } else if (missing) {
            fprintf(stderr, "svckit routes: %s needs a value\n", a);
            return SVC__EXIT_USAGE;
        } else {
            fprintf(stderr, "svckit routes: unknown option '%s'\n\n%s", a, routes_usage);
            return SVC__EXIT_USAGE;
        }
    }
    const svc__nats_env *env = svc__gather_env("routes", url);
    if (!env) return SVC__EXIT_USAGE;
    svc_log_setup("svckit", SVC_LOG_ERROR, 0);
    static const char *const verbs[] = {"INFO", NULL};
    json_t *docs;
    if (svc__gather_round("routes", url, env, verbs, wait_ms, &docs) != SVC_OK)
        return SVC__EXIT_USAGE;
    size_t n = 0;
    route *r = collect_routes(docs, &n);
    json_decref(docs);
    if (!r) return SVC__EXIT_FAIL;
    if (n > 0 || as_json) print_routes(r, n, as_json);
    if (n == 0) fprintf(stderr, "no routes on %s\n", url);
    free(r);
    return n > 0 ? SVC__EXIT_OK : SVC__EXIT_FAIL;
}
