/* Metric labels of requests (src/runtime/builtin.c): declared route labels, and
 * method labels from a fixed set whatever the client sent. */
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"
#include "../test.h"

static svc_worker worker;

static svc_outcome handler(svc_req *req, svc_res *res) {
    (void)req;
    return svc_res_status(res, 204);
}

/* svc_app_run frees the app; with --version it does only that. */
static void app_free(svc_app *app) {
    fflush(stdout);
    CHECK_EQ(svc_app_run(app), 0);
}

static svc_app *new_app(void) {
    static char *argv[] = {"labels", "--version", NULL};
    svc_app *app = svc_app_new("labels", 2, argv);
    worker.app = app;
    return app;
}

static svc_req *request(const char *method, svc_route_entry *route) {
    svc_req *req = svc__req_new_worker(&worker);
    if (req) {
        req->method = method;
        req->route = route;
    }
    return req;
}

static void release(svc_req *req) {
    svc__req_free(req);
    svc__worker_pools_free(&worker, 1);
}

TEST(route_labels_are_declared_up_front_and_checked) {
    svc_app *app = new_app();
    CHECK_EQ(svc_app_route_label(app, "/products*"), SVC_OK);
    CHECK_EQ(svc_app_route_label(app, "/products*"), SVC_EEXIST);
    CHECK_EQ(svc_app_route_label(app, ""), SVC_EINVAL);
    CHECK_EQ(svc_app_route_label(app, NULL), SVC_EINVAL);
    CHECK_EQ(svc_app_route_label(app, "a\nb"), SVC_EINVAL);
    CHECK_EQ(svc_app_route_label(app, "caf\xC3\xA9"), SVC_EINVAL);
    char long_label[SVC_METRIC_MAX_VALUE_LEN + 2];
    memset(long_label, 'a', sizeof long_label - 1);
    long_label[sizeof long_label - 1] = '\0';
    CHECK_EQ(svc_app_route_label(app, long_label), SVC_EINVAL);
    long_label[SVC_METRIC_MAX_VALUE_LEN] = '\0';
    CHECK_EQ(svc_app_route_label(app, long_label), SVC_OK);
    for (int i = app->nlabels; i < SVC_MAX_ROUTE_LABELS; i++) {
        char l[16];
        snprintf(l, sizeof l, "/l%d", i);
        CHECK_EQ(svc_app_route_label(app, l), SVC_OK);
    }
    CHECK_EQ(svc_app_route_label(app, "/one-more"), SVC_ERANGE);
    app_free(app);
}

TEST(a_request_picks_a_declared_label_only) {
    svc_app *app = new_app();
    REQUIRE(svc_app_route(app, "GET", "/*path", handler, 0) == SVC_OK);
    REQUIRE(svc_app_route_label(app, "/products*") == SVC_OK);
    svc_route_entry *route = app->routes;
    svc_req *req = request("GET", route);
    REQUIRE(req);
    CHECK(svc__req_metric_route(req) == route);
    CHECK_EQ(svc_req_set_route_label(req, "/made-up*"), SVC_EINVAL);
    CHECK(svc__req_metric_route(req) == route);
    CHECK_EQ(svc_req_set_route_label(req, "/products*"), SVC_OK);
    svc_route_entry *e = svc__req_metric_route(req);
    CHECK_STR(e->pattern, "/products*");
    CHECK_STR(e->method, "GET");
    /* One entry per label and method label, shared by every request. */
    svc_req *again = request("GET", route);
    REQUIRE(again);
    CHECK_EQ(svc_req_set_route_label(again, "/products*"), SVC_OK);
    CHECK(svc__req_metric_route(again) == e);
    release(again);
    svc_req *odd = request("FROB", route);
    REQUIRE(odd);
    CHECK_EQ(svc_req_set_route_label(odd, "/products*"), SVC_OK);
    CHECK_STR(svc__req_metric_route(odd)->method, "other");
    CHECK_STR(svc__metric_method(odd), "other");
    release(odd);
    release(req);
    /* Once the workers run, the set is fixed. */
    app->workers = (svc_worker *)&worker;
    CHECK_EQ(svc_app_route_label(app, "/late*"), SVC_EINVAL);
    app->workers = NULL;
    app_free(app);
}

TEST(method_labels_come_from_a_fixed_set) {
    svc_app *app = new_app();
    REQUIRE(svc_app_route(app, "PURGE", "/cache", handler, 0) == SVC_OK);
    REQUIRE(svc_app_route(app, "GET", "/x", handler, 0) == SVC_OK);
    svc_route_entry *get = app->routes, *purge = app->routes->next;
    const struct {
        const char *method;
        svc_route_entry **route;
        const char *label;
    } cases[] = {
        {"GET", NULL, "GET"},           {"HEAD", NULL, "HEAD"},       {"OPTIONS", NULL, "OPTIONS"},
        {"TRACE", NULL, "TRACE"},       {"PROPFIND", NULL, "other"},  {"XYZZY", NULL, "other"},
        {"PURGE", NULL, "other"},       {"PURGE", &purge, "PURGE"},   {"PURGE", &get, "other"},
        {"get", NULL, "other"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        svc_req *req = request(cases[i].method, cases[i].route ? *cases[i].route : NULL);
        REQUIRE(req);
        const char *got = svc__metric_method(req);
        if (strcmp(got, cases[i].label) != 0)
            test_fail(__FILE__, __LINE__, "%s: %s, want %s", cases[i].method, got, cases[i].label);
        release(req);
    }
    app_free(app);
}
