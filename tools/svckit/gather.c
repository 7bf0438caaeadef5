/* Asking every svckit instance on NATS: the connection, the reply inbox and
 * the bounded collection of answers that `svckit status` and `svckit top`
 * share (cli.h). Answers are hostile input: anyone on NATS may reply. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "svckit/client.h"

#define GATHER_INBOX "_INBOX.svckit."

static void on_event(svc_nats *nc, int event, void *ud) {
    svc__gather *g = ud;
    if (event == SVC_NATS_CONNECTED || event == SVC_NATS_RECONNECTED) {
        g->connected = 1;
        if (g->stop_on_connect) uv_stop(g->loop);
    } else if (event == SVC_NATS_DISCONNECTED) {
        g->lost = 1;
    }
}

static void on_reply(svc_nats *nc, svc_nats_msg *msg, void *ud) {
    svc__gather *g = ud;
    /* A no-responders status or an empty body is not an instance. */
    if (msg->status != 0 || msg->len == 0) {
        svc__nats_msg_free(msg);
        return;
    }
    json_t *doc = NULL;
    if (json_array_size(g->docs) < SVC__GATHER_MAX_DOCS && msg->len <= SVC__GATHER_MAX_BYTES - g->bytes) {
        g->bytes += msg->len;
        json_error_t jerr;
        doc = json_loadb(msg->data, msg->len, JSON_REJECT_DUPLICATES, &jerr);
    }
    if (json_is_object(doc) && json_is_string(json_object_get(doc, "name")) &&
        json_is_string(json_object_get(doc, "id"))) {
        json_array_append_new(g->docs, doc);
    } else {
        json_decref(doc);
        g->dropped++;
    }
    svc__nats_msg_free(msg);
}

void svc__gather_clean(char out[SVC__GATHER_FIELD_MAX + 1], const char *s) {
    svc__clean(out, SVC__GATHER_FIELD_MAX + 1, s);
}

void svc__clean(char *out, size_t size, const char *s) {
    size_t i = 0;
    for (; s && s[i] && i + 1 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[i] = '\0';
}

const char *svc__gather_default_url(void) {
    const char *url = getenv("NATS_URL");
    return url && *url ? url : SVC__GATHER_DEFAULT_URL;
}

static svc__nats_env gather_env;

static void free_env(void) { svc__nats_env_free(&gather_env); }

const svc__nats_env *svc__gather_env(const char *cmd, const char *url) {
    if (!strcmp(url, "none")) {
        fprintf(stderr, "svckit %s: NATS_URL is 'none': messaging is off, nothing to ask\n", cmd);
        return NULL;
    }
    if (gather_env.servers) return &gather_env;
    char err[512];
    atexit(free_env);
    if (svc__nats_env_load(&gather_env, url, err, sizeof err) != SVC_OK) {
        fprintf(stderr, "svckit %s: %s\n", cmd, err);
        svc__nats_env_free(&gather_env);
        return NULL;
    }
    return &gather_env;
}

int svc__gather_parse_ms(const char *s, int max, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > max) return SVC_EINVAL;
    *out = (int)v;
    return SVC_OK;
}

static void on_timer(uv_timer_t *t) { uv_stop(t->loop); }
static void close_cb(uv_handle_t *h) { (void)h; }

void svc__gather_run_for(uv_loop_t *loop, int ms) {
    uv_timer_t timer;
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, on_timer, (uint64_t)ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&timer, close_cb);
    uv_run(loop, UV_RUN_NOWAIT); /* the close completes while timer lives */
}

int svc__gather_open(svc__gather *g, uv_loop_t *loop, const svc__nats_env *env, const char *client_name) {
    return svc__gather_connect(g, loop, env, client_name, on_reply, g);
}

int svc__gather_connect(svc__gather *g, uv_loop_t *loop, const svc__nats_env *env, const char *client_name,
                        svc_nats_msg_fn on_msg, void *ud) {
    memset(g, 0, sizeof *g);
    g->loop = loop;
    g->docs = json_array();
    if (!g->docs) return SVC_ENOMEM;
    svc_nats_opts o = {.servers = env->servers, .nservers = env->nservers, .name = client_name,
                       .reconnect_wait_ms = 250, .reconnect_buffer = 64 * 1024,
                       .creds = env->creds, .no_advertised = env->no_advertised, .tls = env->tls,
                       .on_event = on_event, .ud = g};
    g->nc = svc__nats_new(loop, &o);
    if (!g->nc) return SVC_ENOMEM;
    /* From the first attempt: a NATS that does not answer by then is unreachable. */
    g->stop_on_connect = 1;
    svc__gather_run_for(loop, SVC_NATS_CONNECT_TIMEOUT_MS);
    g->stop_on_connect = 0;
    if (!g->connected) return SVC_ETIMEDOUT;
    unsigned char rnd[12];
    svc_random(rnd, sizeof rnd);
    char subj[80];
    /* "_INBOX.svckit.<hex>": the inboxes NATS permissions give the ops user
     * (docs/messaging.md, "Permissions"). */
    memcpy(g->inbox, GATHER_INBOX, sizeof GATHER_INBOX);
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(g->inbox + sizeof GATHER_INBOX - 1 + 2 * i, 3, "%02x", rnd[i]);
    snprintf(subj, sizeof subj, "%s.*", g->inbox);
    return svc__nats_sub(g->nc, subj, NULL, on_msg, ud) ? SVC_OK : SVC_ENOMEM;
}

int svc__gather_ask(svc__gather *g, const char *verb) {
    char req[64], reply[96];
    snprintf(req, sizeof req, "$SRV.%s", verb);
    snprintf(reply, sizeof reply, "%s.%s", g->inbox, verb);
    return svc__nats_pub(g->nc, req, reply, NULL, 0, "", 0);
}

json_t *svc__gather_take(svc__gather *g) {
    json_t *fresh = json_array();
    if (!fresh) return NULL;
    json_t *docs = g->docs;
    g->docs = fresh;
    g->bytes = 0;
    return docs;
}

void svc__gather_close(svc__gather *g) {
    svc__nats_close(g->nc);
    g->nc = NULL;
    json_decref(g->docs);
    g->docs = NULL;
}

int svc__gather_round(const char *cmd, const char *url, const svc__nats_env *env, const char *const verbs[],
                      int wait_ms, json_t **docs) {
    *docs = NULL;
    uv_loop_t loop;
    int rc = uv_loop_init(&loop) == 0 ? SVC_OK : SVC_EIO;
    if (rc == SVC_OK) {
        char name[64];
        snprintf(name, sizeof name, "svckit %s", cmd);
        svc__gather g;
        rc = svc__gather_open(&g, &loop, env, name);
        for (size_t i = 0; rc == SVC_OK && verbs[i]; i++) rc = svc__gather_ask(&g, verbs[i]);
        if (rc == SVC_OK) {
            svc__gather_run_for(&loop, wait_ms);
            *docs = svc__gather_take(&g);
            if (!*docs) rc = SVC_ENOMEM;
        }
        if (rc == SVC_OK && g.lost)
            fprintf(stderr, "svckit %s: connection to NATS lost meanwhile; the list may be incomplete\n", cmd);
        if (rc == SVC_OK && g.dropped)
            fprintf(stderr,
                    "svckit %s: %zu answers dropped (malformed, or past %d answers or %d KiB); the list may be "
                    "incomplete\n",
                    cmd, g.dropped, SVC__GATHER_MAX_DOCS, SVC__GATHER_MAX_BYTES / 1024);
        svc__gather_close(&g);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    char shown[256];
    svc__nats_url_shown(url, shown, sizeof shown);
    if (rc == SVC_ETIMEDOUT)
        fprintf(stderr, "svckit %s: cannot connect to NATS at %s\n", cmd, shown);
    else if (rc != SVC_OK)
        fprintf(stderr, "svckit %s: asking NATS at %s failed (error %d)\n", cmd, shown, rc);
    return rc;
}
