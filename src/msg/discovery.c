/*
 * Discovery: the NATS services protocol (the one `nats micro` and the NATS
 * "micro" libraries speak), so every live instance can be listed with its
 * version, endpoints and request counts.
 *
 *   $SRV.<VERB>                 every service answers
 *   $SRV.<VERB>.<name>          every instance of that service
 *   $SRV.<VERB>.<name>.<id>     that instance
 *
 * with VERB one of PING, INFO, STATS and the JSON documents of type
 * io.nats.micro.v1.{ping,info,stats}_response (docs/messaging.md), and
 * svckit's LIVE, the live snapshot (io.svckit.v1.live_response) that
 * `svckit top` and the gateway's dashboard read. Worker
 * 0's connection subscribes, and answers at once on its loop: building a
 * document only reads atomics and immutable tables.
 *
 * svckit's one addition: an instance that drains publishes a leave notice,
 * $SRV.LEAVE.<name>.<id> (the PING document, type
 * io.svckit.v1.leave_notice), before it unsubscribes, so a caller that
 * balances over instances (the gateway) stops choosing it at once rather
 * than after missed PING rounds or a failed request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msg/internal.h"
#include "obs/internal.h"

/* Series of one family read for a live snapshot: the registry's cap. */
#define LIVE_MAX_SERIES SVC_METRIC_MAX_SERIES
#define LIVE_MAX_BUCKETS (SVC_METRIC_MAX_BUCKETS + 1)

/* "host": where the instance's HTTP listens (its listen address, or the
 * machine's name for a wildcard one, which tells a reader nothing);
 * "hostname": the machine's (or pod's, or network namespace's UTS) name,
 * what status, top and the dashboard show as the instance's host. */
static void metadata(svc_msg *m, svc_jw *w) {
    const svc_config *cfg = &m->app->cfg;
    char name[256], host[256];
    if (gethostname(name, sizeof name) != 0) name[0] = '\0';
    name[sizeof name - 1] = '\0';
    if (!cfg->host || strcmp(cfg->host, "0.0.0.0") == 0 || strcmp(cfg->host, "::") == 0)
        memcpy(host, name, sizeof host);
    else
        snprintf(host, sizeof host, "%s", cfg->host);
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    svc_jw_key(w, "metadata");
    svc_jw_obj_begin(w);
    svc_jw_key(w, "transport"), svc_jw_str(w, "http+nats");
    svc_jw_key(w, "host"), svc_jw_str(w, host);
    svc_jw_key(w, "hostname"), svc_jw_str(w, name);
    svc_jw_key(w, "http_port"), svc_jw_str(w, port);
    svc_jw_key(w, "revision"), svc_jw_str(w, SVC_GIT_REV);
    svc_jw_obj_end(w);
}

/* ---- the live snapshot ($SRV.LIVE) ------------------------------------------
 * Built from the metrics registry the way /metrics renders it: the request
 * path pays nothing, a snapshot costs one pass over this service's series. */

typedef struct live_route {
    const char *route, *method; /* label values: live until svc_metrics_reset */
    long long requests, e4xx, e5xx;
    uint64_t hist[LIVE_MAX_BUCKETS];
    int nhist;
    double sum;
} live_route;

typedef struct live_call {
    const char *peer;                /* the callee, or an event's source */
    int event;                       /* 1: events consumed from peer; 0: RPC calls to it */
    long long calls, errors;
} live_call;

typedef struct live_doc {
    const char *service;
    live_route routes[SVC_MSG_LIVE_MAX_ROUTES];
    int nroutes;
    live_call calls[SVC_MSG_LIVE_MAX_CALLS];
    int ncalls;
    int truncated;
} live_doc;

static live_route *live_route_of(live_doc *l, const char *route, const char *method) {
    for (int i = 0; i < l->nroutes; i++)
        if (!strcmp(l->routes[i].route, route) && !strcmp(l->routes[i].method, method)) return &l->routes[i];
    if (l->nroutes == SVC_MSG_LIVE_MAX_ROUTES) {
        l->truncated = 1;
        return NULL;
    }
    live_route *r = &l->routes[l->nroutes++];
    r->route = route, r->method = method;
    return r;
}

/* http_requests_total{service,route,method,code} */
static void live_on_requests(void *ud, const char *const *v, const svc_series *s) {
    live_doc *l = ud;
    if (strcmp(v[0], l->service) != 0) return;
    live_route *r = live_route_of(l, v[1], v[2]);
    if (!r) return;
    long long n = (long long)svc_series_value(s);
    r->requests += n;
    if (v[3][0] == '4') r->e4xx += n;
    if (v[3][0] == '5') r->e5xx += n;
}

/* http_request_duration_seconds{service,route,method} */
static void live_on_duration(void *ud, const char *const *v, const svc_series *s) {
    live_doc *l = ud;
    if (strcmp(v[0], l->service) != 0) return;
    live_route *r = live_route_of(l, v[1], v[2]);
    if (r) r->nhist = svc__series_histogram(s, r->hist, LIVE_MAX_BUCKETS, &r->sum);
}

static void live_count(live_doc *l, const char *peer, int event, const char *outcome, const svc_series *s) {
    live_call *c = NULL;
    for (int i = 0; i < l->ncalls && !c; i++)
        if (l->calls[i].event == event && !strcmp(l->calls[i].peer, peer)) c = &l->calls[i];
    if (!c && l->ncalls == SVC_MSG_LIVE_MAX_CALLS) {
        l->truncated = 1;
        return;
    }
    if (!c) c = &l->calls[l->ncalls++], c->peer = peer, c->event = event;
    long long n = (long long)svc_series_value(s);
    c->calls += n;
    if (strcmp(outcome, "ok") != 0) c->errors += n;
}

/* rpc_calls_total{service (the callee),outcome} */
static void live_on_rpc(void *ud, const char *const *v, const svc_series *s) { live_count(ud, v[0], 0, v[1], s); }

/* events_consumed_total{source,subject,outcome}: summed over subjects. */
static void live_on_event(void *ud, const char *const *v, const svc_series *s) { live_count(ud, v[0], 1, v[2], s); }

static void live_body(svc_msg *m, svc_jw *w) {
    svc_app *app = m->app;
    int64_t now = svc_wall_ms();
    svc_jw_key(w, "now_ms"), svc_jw_i64(w, now);
    svc_jw_key(w, "uptime_s"), svc_jw_f64(w, (double)(now - m->started_ms) / 1000.0);
    const char *check;
    char reason[256];
    int ready = svc__app_ready(app, &check, reason, sizeof reason);
    svc_jw_key(w, "ready"), svc_jw_bool(w, ready);
    if (!ready) {
        char why[320];
        snprintf(why, sizeof why, "%s%s%s", check ? check : "", check ? ": " : "", reason);
        svc_jw_key(w, "not_ready"), svc_jw_str(w, why);
    }
    double cpu = 0, rss = 0;
    if (svc__process_usage(&cpu, &rss) == SVC_OK) {
        svc_jw_key(w, "cpu_seconds"), svc_jw_f64(w, cpu);
        svc_jw_key(w, "rss_bytes"), svc_jw_i64(w, (int64_t)rss);
    }
    svc_jw_key(w, "in_flight"), svc_jw_i64(w, atomic_load(&app->inflight));
    svc_jw_key(w, "connections"), svc_jw_i64(w, atomic_load(&app->connections));

    live_doc *l = calloc(1, sizeof *l);
    if (!l) return;
    l->service = app->name;
    svc__metric_foreach(app->m_requests, LIVE_MAX_SERIES, live_on_requests, l);
    svc__metric_foreach(app->m_duration, LIVE_MAX_SERIES, live_on_duration, l);
    svc__metric_foreach(m->m_rpc, LIVE_MAX_SERIES, live_on_rpc, l);
    svc__metric_foreach(m->m_events, LIVE_MAX_SERIES, live_on_event, l);
    int nb;
    const double *bounds = svc__metric_bounds(app->m_duration, &nb);
    svc_jw_key(w, "buckets");
    svc_jw_arr_begin(w);
    for (int i = 0; i < nb; i++) svc_jw_f64(w, bounds[i]);
    svc_jw_arr_end(w);
    svc_jw_key(w, "routes");
    svc_jw_arr_begin(w);
    for (int i = 0; i < l->nroutes; i++) {
        live_route *r = &l->routes[i];
        svc_jw_obj_begin(w);
        svc_jw_key(w, "route"), svc_jw_str(w, r->route);
        svc_jw_key(w, "method"), svc_jw_str(w, r->method);
        svc_jw_key(w, "requests"), svc_jw_i64(w, r->requests);
        svc_jw_key(w, "errors_4xx"), svc_jw_i64(w, r->e4xx);
        svc_jw_key(w, "errors_5xx"), svc_jw_i64(w, r->e5xx);
        svc_jw_key(w, "duration_sum"), svc_jw_f64(w, r->sum);
        svc_jw_key(w, "duration_buckets");
        svc_jw_arr_begin(w);
        for (int b = 0; b < r->nhist; b++) svc_jw_i64(w, (int64_t)r->hist[b]);
        svc_jw_arr_end(w);
        svc_jw_obj_end(w);
    }
    svc_jw_arr_end(w);
    svc_jw_key(w, "calls");
    svc_jw_arr_begin(w);
    for (int i = 0; i < l->ncalls; i++) {
        svc_jw_obj_begin(w);
        svc_jw_key(w, l->calls[i].event ? "from" : "to"), svc_jw_str(w, l->calls[i].peer);
        svc_jw_key(w, "kind"), svc_jw_str(w, l->calls[i].event ? "event" : "rpc");
        svc_jw_key(w, "calls"), svc_jw_i64(w, l->calls[i].calls);
        svc_jw_key(w, "errors"), svc_jw_i64(w, l->calls[i].errors);
        svc_jw_obj_end(w);
    }
    svc_jw_arr_end(w);
    svc_jw_key(w, "truncated"), svc_jw_bool(w, l->truncated);
    free(l);
}

static void endpoint_head(const msg_endpoint *ep, svc_jw *w) {
    svc_jw_key(w, "name"), svc_jw_str(w, ep->name);
    svc_jw_key(w, "subject"), svc_jw_str(w, ep->subject);
    svc_jw_key(w, "queue_group"), svc_jw_str(w, ep->queue);
}

void svc__discovery_doc(svc_msg *m, const char *verb, svc_buf *out) {
    svc_jw w;
    svc_jw_init(&w, out);
    int info = strcmp(verb, "INFO") == 0, stats = strcmp(verb, "STATS") == 0;
    int live = strcmp(verb, SVC_MSG_LIVE_VERB) == 0;
    char type[64];
    if (strcmp(verb, SVC_MSG_LEAVE_VERB) == 0)
        snprintf(type, sizeof type, "io.svckit.v1.leave_notice");
    else if (live)
        snprintf(type, sizeof type, "io.svckit.v1.live_response");
    else
        snprintf(type, sizeof type, "io.nats.micro.v1.%s_response", info ? "info" : stats ? "stats" : "ping");
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "type"), svc_jw_str(&w, type);
    svc_jw_key(&w, "name"), svc_jw_str(&w, m->app->name);
    svc_jw_key(&w, "id"), svc_jw_str(&w, m->instance);
    svc_jw_key(&w, "version"), svc_jw_str(&w, SVC_VERSION);
    metadata(m, &w);
    if (info) {
        char desc[128];
        snprintf(desc, sizeof desc, "svckit service %s", m->app->name);
        svc_jw_key(&w, "description"), svc_jw_str(&w, desc);
    }
    if (stats || live) {
        char started[SVC_TIME_RFC3339_MAX];
        svc_time_rfc3339(m->started_ms, started);
        svc_jw_key(&w, "started"), svc_jw_str(&w, started);
    }
    if (info || stats) {
        svc_jw_key(&w, "endpoints");
        svc_jw_arr_begin(&w);
        for (int i = 0; i < m->nendpoints; i++) {
            msg_endpoint *ep = &m->endpoints[i];
            svc_jw_obj_begin(&w);
            endpoint_head(ep, &w);
            if (info) {
                svc_jw_key(&w, "metadata");
                svc_jw_obj_begin(&w);
                svc_jw_key(&w, "method"), svc_jw_str(&w, ep->route ? ep->route->method : "*");
                svc_jw_key(&w, "path"), svc_jw_str(&w, ep->route ? ep->route->pattern : "*");
                svc_jw_obj_end(&w);
            } else {
                long long n = atomic_load(&ep->requests), t = atomic_load(&ep->time_ns);
                int last = atomic_load(&ep->last_error);
                char err[64] = "";
                if (last) snprintf(err, sizeof err, "%d %s", last, svc__status_reason(last));
                svc_jw_key(&w, "num_requests"), svc_jw_i64(&w, n);
                svc_jw_key(&w, "num_errors"), svc_jw_i64(&w, atomic_load(&ep->errors));
                svc_jw_key(&w, "last_error"), svc_jw_str(&w, err);
                svc_jw_key(&w, "processing_time"), svc_jw_i64(&w, t);
                svc_jw_key(&w, "average_processing_time"), svc_jw_i64(&w, n ? t / n : 0);
                svc_jw_key(&w, "data");
                svc_jw_obj_begin(&w);
                svc_jw_key(&w, "nats_requests"), svc_jw_i64(&w, atomic_load(&ep->nats_requests));
                svc_jw_obj_end(&w);
            }
            svc_jw_obj_end(&w);
        }
        svc_jw_arr_end(&w);
    }
    if (live) live_body(m, &w);
    svc_jw_obj_end(&w);
}

/* "$SRV.VERB[.name[.id]]" addressed to us: the verb, else NULL. */
static const char *addressed_verb(svc_msg *m, const char *subject) {
    static const char *const verbs[] = {"PING", "INFO", "STATS", SVC_MSG_LIVE_VERB};
    /* The server delivers by sid: a subject that is not ours must not send
     * the scan past its end. */
    size_t pl = strlen(SVC_MSG_DISCOVERY_PREFIX);
    if (strncmp(subject, SVC_MSG_DISCOVERY_PREFIX, pl) != 0 || subject[pl] != '.') return NULL;
    const char *p = subject + pl + 1;
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++) {
        size_t vl = strlen(verbs[i]);
        if (strncmp(p, verbs[i], vl) != 0) continue;
        const char *rest = p + vl;
        if (*rest == '\0') return verbs[i];
        if (*rest != '.') return NULL;
        rest++;
        size_t nl = strlen(m->app->name);
        if (strncmp(rest, m->app->name, nl) != 0) return NULL;
        rest += nl;
        if (*rest == '\0') return verbs[i];
        if (*rest == '.' && strcmp(rest + 1, m->instance) == 0) return verbs[i];
        return NULL;
    }
    return NULL;
}

void svc__discovery_on_msg(svc_nats *nc, svc_nats_msg *msg, void *ud) {
    msg_sub *s = ud;
    svc_msg *m = s->m;
    msg_worker *mw = svc__nats_ud(nc);
    /* No verb: not a question for us (our own leave notice comes back here). */
    const char *verb = addressed_verb(m, msg->subject);
    if (msg->reply && verb) {
        svc_buf b = {0};
        svc__discovery_doc(m, verb, &b);
        if (!b.oom) svc__msg_pub(mw, msg->reply, NULL, NULL, 0, b.data, b.len);
        svc_buf_free(&b);
    } else if (verb) {
        svc__msg_drop(m, DROP_NO_REPLY, "discovery request on %s without a reply subject", msg->subject);
    }
    svc__nats_msg_free(msg);
}

void svc__discovery_leave(msg_worker *mw) {
    svc_msg *m = mw->m;
    char subject[SVC_MSG_MAX_SUBJECT];
    snprintf(subject, sizeof subject, "%s.%s.%s", SVC_MSG_LEAVE_PREFIX, m->app->name, m->instance);
    svc_buf b = {0};
    svc__discovery_doc(m, SVC_MSG_LEAVE_VERB, &b);
    int rc = b.oom ? SVC_ENOMEM : svc__msg_pub(mw, subject, NULL, NULL, 0, b.data, b.len);
    svc_buf_free(&b);
    if (rc != SVC_OK) svc_warn("nats: leave notice not sent: %s", svc_status_str(rc));
}

int svc__discovery_subscribe(svc_msg *m) {
    const char *name = m->app->name, *p = SVC_MSG_DISCOVERY_PREFIX;
    int rc = SVC_OK;
    for (int i = 0; i < 6; i++) {
        char subject[SVC_MSG_MAX_SUBJECT];
        switch (i) {
        case 0: snprintf(subject, sizeof subject, "%s.PING", p); break;
        case 1: snprintf(subject, sizeof subject, "%s.INFO", p); break;
        case 2: snprintf(subject, sizeof subject, "%s.STATS", p); break;
        case 3: snprintf(subject, sizeof subject, "%s.%s", p, SVC_MSG_LIVE_VERB); break;
        case 4: snprintf(subject, sizeof subject, "%s.*.%.64s", p, name); break;
        default: snprintf(subject, sizeof subject, "%s.*.%.64s.%s", p, name, m->instance); break;
        }
        /* Worker 0 only: one answer per instance. */
        if (!svc__msg_add_sub(m, SUB_DISCOVERY, subject, NULL, 0)) rc = SVC_ENOMEM;
    }
    return rc;
}
