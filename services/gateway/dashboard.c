/*
 * The dashboard: GET /dashboard, the page (HTML, CSS, JS from
 * services/gateway/dashboard/, compiled in by tools/svckit/embed.sh), and
 * what it reads:
 *
 *   /dashboard/snapshot   the latest snapshot, JSON
 *   /dashboard/events     the snapshots as server-sent events, one per round
 *   /dashboard/traces     recent and slowest traces, gathered from every
 *                         instance's spans (svckit.trace; format in README.md)
 *   /dashboard/traces/:id one trace's spans, for the waterfall
 *
 * A snapshot is one round of $SRV.LIVE (docs/messaging.md): every instance's
 * live numbers, each answer cleaned by gw_live_clean (live.c), at most
 * GW_DASH_MAX_INSTANCES of them and GW_DASH_MAX_ROUND_BYTES in all, plus the
 * gateway's route table (the edges gateway -> service). Rates and quantiles
 * are left to the page, from two snapshots, so the gateway only relays.
 * Rounds run on the first worker's loop every GW_DASH_INTERVAL_MS, and only
 * while someone watches (a stream open, or a page or snapshot asked for in
 * the last GW_DASH_IDLE_MS): nobody watching costs the instances nothing.
 *
 * Access: an admin token (Authorization: Bearer, or the token cookie, as
 * every verified route), or DASHBOARD_TOKEN (Bearer, or the cookie that
 * /dashboard?token= sets). Without either, 401: nothing is exposed by
 * default. Every response carries a strict Content-Security-Policy: the page
 * runs only its own script and style, and shows what instances sent as
 * text, never as markup.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway.h"
#include "svckit/msg.h"

#define LIVE_SUBJECT SVC_MSG_DISCOVERY_PREFIX "." SVC_MSG_LIVE_VERB

/* Static: the loop's handles must outlive on_stop (msg.h). */
static struct {
    svc_app *app;
    gw_state *g;
    uv_timer_t timer;
    int timer_ready;
    /* the round in progress: the first worker's loop only */
    int gathering;
    json_t *round;
    size_t round_bytes, round_dropped;
    /* the latest snapshot, read by every worker */
    pthread_mutex_t mu;
    char *frame;       /* "event: snapshot\ndata: <json>\n\n" */
    size_t frame_len;
    size_t json_off, json_len; /* the JSON inside frame */
    uint64_t seq;
    atomic_int streams;
    atomic_int trace_gathers; /* traces requests gathering now */
    _Atomic uint64_t watched_until_ms;
    char token[GW_DASH_TOKEN_MAX + 1];
    size_t token_len;
    svc_series *m_streams, *m_shed, *m_refused, *m_rounds, *m_dropped, *m_traces_rejected, *m_stalled;
} DB = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- the rounds (first worker's loop) ------------------------------------------- */

static void on_timer(uv_timer_t *t);

/* A round now, and the next ones an interval apart from it. */
static void kick(uv_loop_t *loop, void *ud) {
    (void)loop, (void)ud;
    if (!DB.timer_ready) return;
    on_timer(&DB.timer);
    uv_timer_start(&DB.timer, on_timer, GW_DASH_INTERVAL_MS, GW_DASH_INTERVAL_MS);
}

/* Someone looks: rounds go on for GW_DASH_IDLE_MS more. A first look after
 * an idle spell starts a round at once, so the page's first snapshot comes
 * one gather window later, not up to an interval more. */
static void watched(void) {
    uint64_t now = gw_now_ms();
    if (atomic_exchange(&DB.watched_until_ms, now + GW_DASH_IDLE_MS) < now) svc_msg_run_on_loop(DB.app, kick, NULL);
}

static json_t *route_table(void) {
    const gw_config *c = &DB.g->cfg;
    json_t *routes = json_array();
    for (int i = 0; i < c->nroutes; i++)
        json_array_append_new(routes, json_pack("{s:s, s:s, s:s, s:s}", "prefix", c->routes[i].prefix, "label",
                                                c->routes[i].label, "service", c->services[c->routes[i].service],
                                                "auth", c->routes[i].auth == GW_AUTH_ADMIN  ? "admin"
                                                        : c->routes[i].auth == GW_AUTH_USER ? "user"
                                                                                            : "none"));
    return routes;
}

/* Makes the round's answers the snapshot every reader sees. */
static void publish_round(void) {
    uint64_t seq;
    pthread_mutex_lock(&DB.mu);
    seq = DB.seq + 1;
    pthread_mutex_unlock(&DB.mu);
    json_t *doc = json_pack("{s:I, s:I, s:i, s:s, s:{s:o}, s:o, s:I}", "seq", (json_int_t)seq, "time_ms",
                            (json_int_t)svc_wall_ms(), "interval_ms", GW_DASH_INTERVAL_MS, "gateway",
                            svc_app_name(DB.app), "routes", "table", route_table(), "instances", DB.round,
                            "dropped", (json_int_t)DB.round_dropped);
    DB.round = NULL;
    char *json = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!json) return;
    static const char head[] = "event: snapshot\ndata: ", tail[] = "\n\n";
    size_t jl = strlen(json), fl = sizeof head - 1 + jl + sizeof tail - 1;
    char *frame = malloc(fl + 1);
    if (frame) {
        memcpy(frame, head, sizeof head - 1);
        memcpy(frame + sizeof head - 1, json, jl);
        memcpy(frame + sizeof head - 1 + jl, tail, sizeof tail);
        pthread_mutex_lock(&DB.mu);
        free(DB.frame);
        DB.frame = frame, DB.frame_len = fl, DB.json_off = sizeof head - 1, DB.json_len = jl;
        DB.seq = seq;
        pthread_mutex_unlock(&DB.mu);
    }
    free(json);
}

static void on_answer(int err, const svc_msg_reply *r, void *ud) {
    (void)ud;
    if (r) {
        json_t *inst = NULL;
        if (json_array_size(DB.round) < GW_DASH_MAX_INSTANCES && r->len <= GW_DASH_MAX_ROUND_BYTES - DB.round_bytes &&
            (inst = gw_live_clean(r->data, r->len)) != NULL) {
            DB.round_bytes += r->len;
            json_array_append_new(DB.round, inst);
        } else {
            DB.round_dropped++;
            svc_counter_add(DB.m_dropped, 1);
        }
        return;
    }
    DB.gathering = 0;
    svc_counter_add(DB.m_rounds, 1);
    /* A round NATS could not carry (err) still says so: no instance. */
    (void)err;
    publish_round();
}

static void on_timer(uv_timer_t *t) {
    (void)t;
    if (DB.gathering || (atomic_load(&DB.streams) == 0 && gw_now_ms() > atomic_load(&DB.watched_until_ms))) return;
    json_decref(DB.round);
    DB.round = json_array();
    DB.round_bytes = DB.round_dropped = 0;
    if (!DB.round) return;
    DB.gathering = 1;
    if (svc_msg_request_all(DB.app, LIVE_SUBJECT, NULL, 0, GW_DASH_GATHER_MS, on_answer, NULL) != SVC_OK) {
        DB.gathering = 0;
        publish_round(); /* NATS down: an empty snapshot rather than a stale one */
    }
}

static void start_timer(uv_loop_t *loop, void *ud) {
    (void)ud;
    uv_timer_init(loop, &DB.timer);
    uv_unref((uv_handle_t *)&DB.timer);
    DB.timer_ready = 1;
    uv_timer_start(&DB.timer, on_timer, 0, GW_DASH_INTERVAL_MS);
}

/* ---- access ------------------------------------------------------------------------ */

static int token_ok(const char *t) {
    return DB.token_len && t && strlen(t) == DB.token_len && sodium_memcmp(t, DB.token, DB.token_len) == 0;
}

static void security_headers(svc_res *res) {
    gw_page_headers(res);
    svc_res_header(res, "Cache-Control", "no-store");
}

/* SVC_NEXT when the caller may see the dashboard; else the refusal is
 * written (401, or 403 for a valid token that is not an admin's). */
static svc_outcome dash_auth(svc_req *req, svc_res *res) {
    security_headers(res);
    const char *h = svc_req_header(req, "Authorization");
    if (h && strncasecmp(h, "Bearer ", 7) == 0 && token_ok(h + 7)) return SVC_NEXT;
    if (token_ok(svc_req_cookie(req, GW_DASH_COOKIE))) return SVC_NEXT;
    if (DB.g->auth_installed) {
        svc_outcome o = svc_auth_check(req, res, SVC_AUTH_ADMIN);
        if (o != SVC_NEXT) svc_counter_add(DB.m_refused, 1);
        return o;
    }
    svc_counter_add(DB.m_refused, 1);
    svc_res_header(res, "WWW-Authenticate", "Bearer realm=\"svckit\"");
    return svc_res_error(res, 401, "unauthorized", "the dashboard needs an admin token or DASHBOARD_TOKEN");
}

/* ---- the page ---------------------------------------------------------------------- */

static svc_outcome send_file(svc_req *req, svc_res *res, const char *name) {
    return gw_page_send(req, res, gw_dashboard_files, gw_dashboard_files_count, name, NULL);
}

static svc_outcome page(svc_req *req, svc_res *res) {
    /* /dashboard?token=DASHBOARD_TOKEN: the token goes into a cookie the
     * page's own requests carry (EventSource cannot send a header), and out
     * of the address bar and the history. */
    const char *q = svc_req_query(req, "token");
    if (q && token_ok(q)) {
        char cookie[GW_DASH_TOKEN_MAX + 128];
        snprintf(cookie, sizeof cookie, "%s=%s; HttpOnly; SameSite=Strict; Path=/dashboard", GW_DASH_COOKIE, q);
        security_headers(res);
        svc_res_header(res, "Set-Cookie", cookie);
        svc_res_header(res, "Location", "/dashboard");
        return svc_res_status(res, 303);
    }
    svc_outcome o = dash_auth(req, res);
    if (o != SVC_NEXT) return o;
    watched();
    return send_file(req, res, "index.html");
}

static svc_outcome script(svc_req *req, svc_res *res) {
    svc_outcome o = dash_auth(req, res);
    return o != SVC_NEXT ? o : send_file(req, res, "app.js");
}

static svc_outcome style(svc_req *req, svc_res *res) {
    svc_outcome o = dash_auth(req, res);
    return o != SVC_NEXT ? o : send_file(req, res, "app.css");
}

static svc_outcome snapshot(svc_req *req, svc_res *res) {
    svc_outcome o = dash_auth(req, res);
    if (o != SVC_NEXT) return o;
    watched();
    pthread_mutex_lock(&DB.mu);
    if (DB.frame)
        o = svc_res_body(res, 200, "application/json", DB.frame + DB.json_off, DB.json_len);
    else
        o = svc_res_printf(res, 200, "application/json",
                           "{\"seq\":0,\"interval_ms\":%d,\"instances\":[],\"dropped\":0}", GW_DASH_INTERVAL_MS);
    pthread_mutex_unlock(&DB.mu);
    return o;
}

/* ---- traces: gathered from every instance's span ring ------------------------------
 *
 * Each request scatters one svckit.trace query (docs/observability.md) and
 * answers when the window ends: the lists from every instance's newest 256
 * spans (the slowest list is the slowest of those), one trace from the
 * spans of its id. What instances answer is cleaned by gw_trace_clean. */

typedef struct trace_gather {
    svc_res *res;
    char trace_id[33];  /* "" for the lists */
    gw_spans spans;
    size_t bytes;
} trace_gather;

static int by_start(const void *a, const void *b) {
    const gw_span *x = a, *y = b;
    return x->start_ns < y->start_ns ? -1 : x->start_ns > y->start_ns;
}

/* One trace, for the waterfall: spans in start order, times in us from the first. */
static void answer_trace(trace_gather *g) {
    gw_spans *sp = &g->spans;
    if (sp->n == 0) {
        svc_res_error(g->res, 404, "not_found", "no spans of trace %s on any instance", g->trace_id);
        return;
    }
    qsort(sp->v, sp->n, sizeof *sp->v, by_start);
    int64_t t0 = sp->v[0].start_ns;
    svc_jw *w = svc_res_jw(g->res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "trace_id"), svc_jw_str(w, g->trace_id);
    svc_jw_key(w, "spans");
    svc_jw_arr_begin(w);
    for (size_t i = 0; i < sp->n; i++) {
        const gw_span *s = &sp->v[i];
        svc_jw_obj_begin(w);
        svc_jw_key(w, "span_id"), svc_jw_str(w, s->span_id);
        if (s->parent_id[0]) svc_jw_key(w, "parent_id"), svc_jw_str(w, s->parent_id);
        const char *keys[] = {"service", "instance", "name", "kind"};
        const uint32_t offs[] = {s->service, s->instance, s->name, s->kind};
        for (int k = 0; k < 4; k++)
            if (offs[k]) svc_jw_key(w, keys[k]), svc_jw_str(w, gw_span_str(sp, offs[k]));
        svc_jw_key(w, "start_us"), svc_jw_i64(w, (s->start_ns - t0) / 1000);
        svc_jw_key(w, "duration_us"), svc_jw_i64(w, s->duration_ns / 1000);
        svc_jw_key(w, "error"), svc_jw_bool(w, s->error);
        svc_jw_obj_end(w);
    }
    svc_jw_arr_end(w);
    svc_jw_obj_end(w);
}

/* One entry of the lists: a trace as the spans gathered show it. */
typedef struct trace_sum {
    const gw_span *first; /* its earliest span */
    const gw_span *named; /* its root span, else its earliest */
    double start_ms, duration_ms;
    int spans, error;
} trace_sum;

static int by_trace_then_start(const void *a, const void *b) {
    const gw_span *x = a, *y = b;
    int c = strcmp(x->trace_id, y->trace_id);
    return c ? c : by_start(a, b);
}

static int by_duration_desc(const void *a, const void *b) {
    const trace_sum *x = a, *y = b;
    return x->duration_ms > y->duration_ms ? -1 : x->duration_ms < y->duration_ms;
}

static int by_start_desc(const void *a, const void *b) {
    const trace_sum *x = a, *y = b;
    return x->start_ms > y->start_ms ? -1 : x->start_ms < y->start_ms;
}

static void write_list(svc_jw *w, const gw_spans *sp, trace_sum *t, size_t n,
                       int (*cmp)(const void *, const void *)) {
    qsort(t, n, sizeof *t, cmp);
    svc_jw_arr_begin(w);
    for (size_t i = 0; i < n && i < GW_TRACE_LIST; i++) {
        svc_jw_obj_begin(w);
        svc_jw_key(w, "trace_id"), svc_jw_str(w, t[i].first->trace_id);
        if (t[i].named->service) svc_jw_key(w, "service"), svc_jw_str(w, gw_span_str(sp, t[i].named->service));
        if (t[i].named->name) svc_jw_key(w, "name"), svc_jw_str(w, gw_span_str(sp, t[i].named->name));
        svc_jw_key(w, "start_ms"), svc_jw_f64(w, t[i].start_ms);
        svc_jw_key(w, "duration_ms"), svc_jw_f64(w, t[i].duration_ms);
        svc_jw_key(w, "spans"), svc_jw_i64(w, t[i].spans);
        svc_jw_key(w, "error"), svc_jw_bool(w, t[i].error);
        svc_jw_obj_end(w);
    }
    svc_jw_arr_end(w);
}

/* The lists: one entry per trace, named by its root span (the earliest span
 * when the root is not among those gathered), lasting from its first start to
 * its last end. Spans are grouped by sorting them by trace, then start. */
static void answer_lists(trace_gather *g) {
    gw_spans *sp = &g->spans;
    trace_sum *t = malloc((sp->n ? sp->n : 1) * sizeof *t);
    if (!t) {
        svc_res_error(g->res, 503, "overloaded", "out of memory");
        return;
    }
    qsort(sp->v, sp->n, sizeof *sp->v, by_trace_then_start);
    size_t n = 0;
    int64_t end_ns = 0;
    for (size_t i = 0; i < sp->n; i++) {
        const gw_span *s = &sp->v[i];
        trace_sum *cur = n ? &t[n - 1] : NULL;
        if (!cur || strcmp(cur->first->trace_id, s->trace_id) != 0) {
            cur = &t[n++];
            *cur = (trace_sum){.first = s, .named = s, .start_ms = (double)s->start_ns / 1e6};
            end_ns = 0;
        }
        cur->spans++;
        cur->error |= s->error;
        /* Saturated: forged times near INT64_MAX must not overflow. */
        int64_t end = s->duration_ns > INT64_MAX - s->start_ns ? INT64_MAX : s->start_ns + s->duration_ns;
        if (end > end_ns) end_ns = end;
        cur->duration_ms = (double)end_ns / 1e6 - cur->start_ms;
        if (!s->parent_id[0] && cur->named->parent_id[0]) cur->named = s;
    }
    svc_jw *w = svc_res_jw(g->res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "enabled"), svc_jw_bool(w, 1);
    svc_jw_key(w, "recent"), write_list(w, sp, t, n, by_start_desc);
    svc_jw_key(w, "slowest"), write_list(w, sp, t, n, by_duration_desc);
    svc_jw_obj_end(w);
    free(t);
}

static void on_trace_answer(int err, const svc_msg_reply *r, void *ud) {
    trace_gather *g = ud;
    if (r) {
        if (g->bytes + r->len > GW_TRACE_MAX_BYTES) return;
        g->bytes += r->len;
        gw_trace_clean(r->data, r->len, g->trace_id[0] ? g->trace_id : NULL, &g->spans, GW_TRACE_MAX_SPANS);
        return;
    }
    if (err == SVC_ECLOSED && g->spans.n == 0)
        svc_res_error(g->res, 503, "unavailable", "NATS is not connected: no instance can be asked");
    else if (g->trace_id[0])
        answer_trace(g);
    else
        answer_lists(g);
    svc_res_finish(g->res);
    gw_spans_free(&g->spans);
    free(g);
    atomic_fetch_sub(&DB.trace_gathers, 1);
}

static svc_outcome gather_traces(svc_res *res, const char *trace_id) {
    if (atomic_fetch_add(&DB.trace_gathers, 1) >= GW_TRACE_MAX_GATHERS) {
        atomic_fetch_sub(&DB.trace_gathers, 1);
        svc_counter_add(DB.m_traces_rejected, 1);
        svc_res_header(res, "Retry-After", "1");
        return svc_res_error(res, 503, "unavailable", "too many trace gathers at once (at most %d)",
                             GW_TRACE_MAX_GATHERS);
    }
    trace_gather *g = calloc(1, sizeof *g);
    if (!g) {
        atomic_fetch_sub(&DB.trace_gathers, 1);
        return svc_res_error(res, 503, "overloaded", "out of memory");
    }
    g->res = res;
    char query[96];
    if (trace_id) {
        snprintf(g->trace_id, sizeof g->trace_id, "%s", trace_id);
        snprintf(query, sizeof query, "{\"trace_id\":\"%s\",\"limit\":256}", trace_id);
    } else {
        snprintf(query, sizeof query, "{\"limit\":256}");
    }
    int rc = svc_msg_request_all(DB.app, SVC_MSG_TRACE_PREFIX, query, strlen(query), GW_TRACE_GATHER_MS,
                                 on_trace_answer, g);
    if (rc != SVC_OK) {
        free(g);
        atomic_fetch_sub(&DB.trace_gathers, 1);
        return svc_res_error(res, 503, "unavailable", "cannot ask the instances (error %d)", rc);
    }
    return SVC_ASYNC;
}

static svc_outcome traces(svc_req *req, svc_res *res) {
    svc_outcome o = dash_auth(req, res);
    if (o != SVC_NEXT) return o;
    return gather_traces(res, NULL);
}

static svc_outcome trace(svc_req *req, svc_res *res) {
    svc_outcome o = dash_auth(req, res);
    if (o != SVC_NEXT) return o;
    const char *id = svc_req_param(req, "id");
    size_t n = id ? strlen(id) : 0;
    int hex = n == 32;
    for (size_t i = 0; hex && i < n; i++) hex = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f');
    if (!hex) return svc_res_error(res, 400, "bad_request", "a trace id is 32 lowercase hex digits");
    return gather_traces(res, id);
}

/* ---- server-sent events ---------------------------------------------------------- */

typedef struct dash_stream {
    uv_timer_t timer;
    svc_res *res;
    uint64_t seq;       /* of the last snapshot sent */
    uint64_t last_ms;   /* of the last write */
} dash_stream;

static void stream_closed(uv_handle_t *h) {
    free(h->data);
}

static void stream_end(dash_stream *s) {
    svc_res_stream_end(s->res);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, stream_closed);
    atomic_fetch_sub(&DB.streams, 1);
    svc_gauge_add(DB.m_streams, -1);
}

static void stream_tick(uv_timer_t *t) {
    dash_stream *s = t->data;
    if (svc_app_draining(DB.app)) {
        stream_end(s);
        return;
    }
    int rc = SVC_OK;
    uint64_t now = gw_now_ms();
    pthread_mutex_lock(&DB.mu);
    if (DB.frame && DB.seq != s->seq) {
        rc = svc_res_stream_write(s->res, DB.frame, DB.frame_len);
        /* SVC_EAGAIN: a reader that is behind skips this snapshot. */
        if (rc == SVC_OK) s->seq = DB.seq, s->last_ms = now;
    }
    pthread_mutex_unlock(&DB.mu);
    if (rc == SVC_OK && now - s->last_ms >= GW_DASH_KEEPALIVE_MS) {
        static const char ka[] = ": keepalive\n\n";
        rc = svc_res_stream_write(s->res, ka, sizeof ka - 1);
        if (rc == SVC_OK) s->last_ms = now;
    }
    /* SVC_EAGAIN since the last write that went through: the reader takes
     * nothing, and the snapshots it missed are not kept for it. */
    if (rc == SVC_EAGAIN && now - s->last_ms >= GW_DASH_STALL_MS) {
        svc_counter_add(DB.m_stalled, 1);
        svc_warn("dashboard: an event stream took nothing for %d s; ended", GW_DASH_STALL_MS / 1000);
        stream_end(s);
    } else if (rc == SVC_ECLOSED || rc == SVC_EINVAL) {
        stream_end(s);
    }
}

static svc_outcome events(svc_req *req, svc_res *res) {
    svc_outcome o = dash_auth(req, res);
    if (o != SVC_NEXT) return o;
    if (atomic_fetch_add(&DB.streams, 1) >= GW_DASH_MAX_STREAMS) {
        atomic_fetch_sub(&DB.streams, 1);
        svc_counter_add(DB.m_shed, 1);
        svc_res_header(res, "Retry-After", "5");
        return svc_res_error(res, 503, "unavailable", "too many dashboard streams (at most %d)", GW_DASH_MAX_STREAMS);
    }
    dash_stream *s = calloc(1, sizeof *s);
    if (!s || svc_res_stream_start(res, 200, "text/event-stream") != SVC_OK) {
        free(s);
        atomic_fetch_sub(&DB.streams, 1);
        if (!s) return svc_res_error(res, 503, "unavailable", "out of memory");
        return svc_res_error(res, 400, "bad_request", "this transport cannot stream");
    }
    svc_gauge_add(DB.m_streams, 1);
    watched();
    s->res = res;
    s->last_ms = gw_now_ms();
    uv_timer_init(svc_req_loop(req), &s->timer);
    s->timer.data = s;
    /* Checked four times per round, so a new snapshot goes out promptly. */
    uv_timer_start(&s->timer, stream_tick, 0, GW_DASH_INTERVAL_MS / 4);
    return SVC_ASYNC;
}

/* ---- setup ---------------------------------------------------------------------- */

void gw_dashboard_routes(svc_app *app) {
    svc_app_env_declare(app, "DASHBOARD_TOKEN", "",
                        "a shared secret (16 to 256 bytes) that opens /dashboard besides an admin token; "
                        "empty: admin tokens only");
    svc_app_get(app, "/dashboard", page, 0);
    svc_app_get(app, "/dashboard/app.js", script, 0);
    svc_app_get(app, "/dashboard/app.css", style, 0);
    svc_app_get(app, "/dashboard/snapshot", snapshot, 0);
    svc_app_get(app, "/dashboard/events", events, 0);
    svc_app_get(app, "/dashboard/traces", traces, 0);
    svc_app_get(app, "/dashboard/traces/:id", trace, 0);
}

int gw_dashboard_config(svc_app *app) {
    const char *t = svc_app_env(app, "DASHBOARD_TOKEN");
    size_t tl = t ? strlen(t) : 0;
    if (tl && (tl < GW_DASH_TOKEN_MIN || tl > GW_DASH_TOKEN_MAX)) {
        svc_error("DASHBOARD_TOKEN: must be %d to %d bytes, got %zu", GW_DASH_TOKEN_MIN, GW_DASH_TOKEN_MAX, tl);
        fprintf(stderr, "gateway: DASHBOARD_TOKEN: must be %d to %d bytes, got %zu\n", GW_DASH_TOKEN_MIN,
                GW_DASH_TOKEN_MAX, tl);
        return SVC_EINVAL;
    }
    for (size_t i = 0; i < tl; i++) {
        unsigned char c = (unsigned char)t[i];
        /* It travels in a header and a cookie. */
        if (c <= 0x20 || c >= 0x7f || c == ';' || c == ',' || c == '"' || c == '\\') {
            svc_error("DASHBOARD_TOKEN: printable ASCII without spaces, ';', ',', '\"' or '\\' only");
            fprintf(stderr, "gateway: DASHBOARD_TOKEN: printable ASCII without spaces, ';', ',', '\"' or '\\' only\n");
            return SVC_EINVAL;
        }
    }
    memcpy(DB.token, t ? t : "", tl);
    DB.token[tl] = '\0';
    DB.token_len = tl;
    return SVC_OK;
}

int gw_dashboard_start(svc_app *app, gw_state *g) {
    DB.app = app, DB.g = g;
    DB.m_streams = svc_metric_with(
        svc_metric_gauge("gateway_dashboard_streams", "Dashboard event streams open", 0, NULL), NULL);
    DB.m_shed = svc_metric_with(svc_metric_counter("gateway_dashboard_streams_rejected_total",
                                                   "Dashboard event streams refused (503) at GW_DASH_MAX_STREAMS",
                                                   0, NULL),
                                NULL);
    DB.m_refused = svc_metric_with(
        svc_metric_counter("gateway_dashboard_refused_total", "Dashboard requests refused (401/403)", 0, NULL), NULL);
    DB.m_rounds = svc_metric_with(
        svc_metric_counter("gateway_dashboard_rounds_total", "$SRV.LIVE rounds gathered for the dashboard", 0, NULL),
        NULL);
    DB.m_dropped = svc_metric_with(
        svc_metric_counter("gateway_dashboard_answers_dropped_total",
                           "$SRV.LIVE answers not kept: malformed, or past the instance or byte cap", 0, NULL),
        NULL);
    DB.m_stalled = svc_metric_with(
        svc_metric_counter("gateway_dashboard_streams_stalled_total",
                           "Dashboard event streams ended after GW_DASH_STALL_MS without the reader taking anything",
                           0, NULL),
        NULL);
    DB.m_traces_rejected = svc_metric_with(
        svc_metric_counter("gateway_dashboard_traces_rejected_total",
                           "Dashboard traces requests refused (503) at GW_TRACE_MAX_GATHERS", 0, NULL),
        NULL);
    int rc = svc_msg_run_on_loop(app, start_timer, NULL);
    return rc == SVC_ECLOSED ? SVC_OK : rc; /* NATS_URL=none: no rounds, empty snapshots */
}

void gw_dashboard_stop(void) {
    pthread_mutex_lock(&DB.mu);
    free(DB.frame);
    DB.frame = NULL;
    pthread_mutex_unlock(&DB.mu);
    json_decref(DB.round);
    DB.round = NULL;
}
