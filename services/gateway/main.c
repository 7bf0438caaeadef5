/*
 * gateway: the one public entry point (port 8080). Every path but the
 * gateway's own /healthz, /readyz, /metrics, /dashboard (dashboard.c),
 * /openapi.json (openapi.c) and /docs (explorer.c) goes through gw_proxy
 * (proxy.c) to the service the route table (config.c) names, over NATS
 * request-reply.
 * README.md has the configuration format, the resilience rules and the
 * metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"


static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", NULL};

/* Breaker states are read at scrape time: a gauge set at each transition
 * could be left showing a stale state by two racing transitions. The series
 * are looked up once, in register_metrics: renders may run on several
 * threads at once. */
static void collect(void *ud) {
    gw_state *g = ud;
    for (int i = 0; i < g->cfg.nservices; i++) {
        svc_gauge_set(g->m.breaker_state[i], (double)gw_breaker_state(&g->breakers[i]));
        svc_gauge_set(g->m.instances[i], (double)gw_directory_count(&g->dir, i));
    }
}

static void register_metrics(gw_state *g) {
    static const char *const outcomes[GW_UP_COUNT] = {"ok",     "error_5xx", "no_responders", "timeout",
                                                      "closed", "error",     "draining"};
    gw_metrics *m = &g->m;
    m->retries = svc_metric_with(
        svc_metric_counter("gateway_retries_total", "Requests retried on another instance", 0, NULL), NULL);
    m->resends = svc_metric_with(
        svc_metric_counter("gateway_resends_total",
                           "Requests sent again because no instance received them (no responders, or a draining "
                           "instance); free of the retry budget (also in gateway_retries_total)",
                           0, NULL),
        NULL);
    m->moved = svc_metric_with(
        svc_metric_counter("gateway_moved_total",
                           "In-flight requests moved to another instance when theirs was found gone (also retries)",
                           0, NULL),
        NULL);
    m->budget_exhausted = svc_metric_with(
        svc_metric_counter("gateway_retry_budget_exhausted_total",
                           "Retries not made because the retry budget was spent", 0, NULL),
        NULL);
    m->rate_limited = svc_metric_with(
        svc_metric_counter("gateway_rate_limited_total", "Requests refused by the per-client rate limit (429)", 0,
                           NULL),
        NULL);
    m->concurrency_rejected = svc_metric_with(
        svc_metric_counter("gateway_concurrency_rejected_total",
                           "Requests refused by the concurrency cap (503)", 0, NULL),
        NULL);
    m->requests = svc_metric_with(
        svc_metric_counter("gateway_requests_total", "Requests forwarded to a service (first attempts)", 0, NULL),
        NULL);
    const char *l1[] = {"service"}, *l2[] = {"service", "outcome"};
    svc_metric *up = svc_metric_counter("gateway_upstream_requests_total",
                                        "Calls to services (attempts, retries included) by outcome", 2, l2);
    svc_metric *br = svc_metric_counter("gateway_breaker_rejected_total",
                                        "Requests failed fast while a service's breaker was open", 1, l1);
    svc_metric *bs = svc_metric_gauge("gateway_breaker_state",
                                      "Circuit breaker per service: 0 closed, 1 open, 2 half-open", 1, l1);
    svc_metric *in = svc_metric_gauge("gateway_instances", "Live instances known per service", 1, l1);
    for (int s = 0; s < g->cfg.nservices; s++) {
        const char *v1[] = {g->cfg.services[s]};
        m->breaker_rejected[s] = svc_metric_with(br, v1);
        m->breaker_state[s] = svc_metric_with(bs, v1);
        m->instances[s] = svc_metric_with(in, v1);
        for (int o = 0; o < GW_UP_COUNT; o++) {
            const char *v2[] = {g->cfg.services[s], outcomes[o]};
            m->upstream[s][o] = svc_metric_with(up, v2);
        }
    }
    svc_metrics_on_collect(collect, g);
}

static int on_start(svc_app *app, void *ud) {
    gw_state *g = ud;
    const char *path = svc_app_env(app, "GATEWAY_CONFIG");
    char err[256];
    if (gw_config_load(path, &g->cfg, err, sizeof err) != SVC_OK) {
        svc_error("GATEWAY_CONFIG: %s", err);
        fprintf(stderr, "gateway: GATEWAY_CONFIG: %s\n", err);
        return SVC_EINVAL;
    }
    /* The gateway serves its routes over NATS too (every svckit service does):
     * a route to itself would forward each request back to itself. */
    for (int i = 0; i < g->cfg.nservices; i++) {
        if (strcmp(g->cfg.services[i], svc_app_name(app)) == 0) {
            svc_error("GATEWAY_CONFIG: a route to \"%s\" would call the gateway itself", g->cfg.services[i]);
            fprintf(stderr, "gateway: GATEWAY_CONFIG: a route to \"%s\" would call the gateway itself\n",
                    g->cfg.services[i]);
            return SVC_EINVAL;
        }
    }
    if (gw_dashboard_config(app) != SVC_OK) return SVC_EINVAL;
    g->app = app;
    if (g->cfg.rate_per_s > 0 && !(g->rl = svc_ratelimit_new(g->cfg.burst, g->cfg.rate_per_s))) return SVC_ENOMEM;
    for (int i = 0; i < g->cfg.nservices; i++)
        gw_breaker_init(&g->breakers[i], g->cfg.breaker_failures, g->cfg.breaker_open_ms);
    gw_directory_init(&g->dir, g->cfg.nservices);
    g->dir_ready = 1;
    register_metrics(g);
    for (int i = 0; i < g->cfg.nroutes; i++) {
        int rc = svc_app_route_label(app, g->cfg.routes[i].label);
        if (rc != SVC_OK) {
            svc_error("gateway: cannot declare the route label %s: %s", g->cfg.routes[i].label, svc_status_str(rc));
            return SVC_ERR;
        }
    }
    /* Edge auth: installed here, after the configuration is loaded, so that
     * the JWKS is fetched before the first request (svc_auth_install blocks
     * for it at most SVC_AUTH_JWKS_TIMEOUT_MS). */
    for (int i = 0; i < g->cfg.nroutes; i++) {
        if (g->cfg.routes[i].auth != GW_AUTH_NONE && !g->auth_installed) {
            int arc = svc_auth_install(app);
            if (arc != SVC_OK) return arc == SVC_EINVAL ? SVC_EINVAL : SVC_ERR; /* EINVAL: logged, exit 2 */
            g->auth_installed = 1;
        }
    }
    if (gw_discovery_start(app, &g->cfg, &g->dir) != SVC_OK) return SVC_ERR;
    if (gw_dashboard_start(app, g) != SVC_OK) return SVC_ERR;
    svc_info("gateway: %d route%s to %d service%s (%s)", g->cfg.nroutes, g->cfg.nroutes == 1 ? "" : "s",
             g->cfg.nservices, g->cfg.nservices == 1 ? "" : "s", path && *path ? path : "built-in table");
    return SVC_OK;
}

static void on_stop(svc_app *app, void *ud) {
    (void)app;
    gw_state *g = ud;
    gw_discovery_stop();
    gw_dashboard_stop();
    gw_proxy_release(g);
    svc_ratelimit_free(g->rl);
    g->rl = NULL;
}

int main(int argc, char **argv) {
    svc_app *app = svc_app_new("gateway", argc, argv);
    svc_app_default_port(app, 8080);
    svc_app_env_declare(app, "GATEWAY_CONFIG", "",
                        "route table and limits, a JSON file (empty: the built-in table, deploy/gateway.json)");
    /* The state is large (fixed tables) and lives as long as the process. */
    gw_state *state = calloc(1, sizeof *state);
    if (!state) {
        fprintf(stderr, "gateway: out of memory\n");
        return 1;
    }
    pthread_mutex_init(&state->workers_mu, NULL);
    svc_app_set_data(app, state);
    for (const char *const *m = methods; *m; m++) svc_app_route(app, *m, GW_PROXY_ROUTE, gw_proxy, 0);
    gw_dashboard_routes(app);
    gw_openapi_route(app);
    gw_explorer_routes(app);
    svc_app_use_head(app, gw_edge_check, state);
    svc_app_use(app, NULL, gw_cors_after, state);
    if (gw_discovery_listen(app) != SVC_OK) {
        fprintf(stderr, "gateway: cannot subscribe to leave notices\n");
        free(state);
        return 1;
    }
    svc_app_on_start(app, on_start, state);
    svc_app_on_stop(app, on_stop, state);
    int rc = svc_app_run(app);
    if (state->dir_ready) gw_directory_destroy(&state->dir);
    pthread_mutex_destroy(&state->workers_mu);
    free(state);
    return rc;
}
