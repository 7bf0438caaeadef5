/* The gateway's configuration: the built-in table, validation, route lookup. */
#include <stdio.h>
#include <stdlib.h>

#include "../../../services/gateway/config.c"
#include "../test.h"

static int parse(const char *json, gw_config *c, char *err, size_t errlen) {
    return gw_config_parse(json, strlen(json), c, err, errlen);
}

/* Parses a config that is valid but for one snippet, and checks the error names the field. */
static void check_refused(const char *json, const char *expect) {
    gw_config c;
    char err[256];
    int rc = parse(json, &c, err, sizeof err);
    if (rc != SVC_EINVAL) test_fail(__FILE__, __LINE__, "accepted: %s", json);
    else if (!strstr(err, expect)) test_fail(__FILE__, __LINE__, "error \"%s\" lacks \"%s\"", err, expect);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(GW_CONFIG_MAX_BYTES);
    *len = buf ? fread(buf, 1, GW_CONFIG_MAX_BYTES, f) : 0;
    fclose(f);
    return buf;
}

TEST(builtin_table_equals_deploy_file) {
    size_t len = 0;
    char *text = read_file("deploy/gateway.json", &len);
    if (!text) text = read_file("../../../deploy/gateway.json", &len);
    REQUIRE(text);
    json_t *a = json_loadb(text, len, 0, NULL), *b = json_loads(gw_default_config, 0, NULL);
    free(text);
    REQUIRE(a && b);
    CHECK(json_equal(a, b));
    json_decref(a);
    json_decref(b);
}

TEST(builtin_defaults) {
    gw_config c;
    char err[256];
    REQUIRE(gw_config_load(NULL, &c, err, sizeof err) == SVC_OK);
    CHECK_EQ(c.nroutes, 6);
    CHECK_EQ(c.nservices, 5);
    const gw_route *r = gw_route_find(&c, "/auth/login");
    REQUIRE(r);
    CHECK_STR(c.services[r->service], "auth");
    CHECK_EQ(r->auth, GW_AUTH_NONE);
    r = gw_route_find(&c, "/.well-known/jwks.json");
    REQUIRE(r);
    CHECK_STR(c.services[r->service], "auth");
    r = gw_route_find(&c, "/products/7");
    REQUIRE(r);
    CHECK_STR(c.services[r->service], "products");
    CHECK_EQ(r->auth, GW_AUTH_USER);
    CHECK_EQ(r->retry, 1);
    r = gw_route_find(&c, "/orders");
    REQUIRE(r);
    CHECK_STR(c.services[r->service], "orders");
    r = gw_route_find(&c, "/payments");
    REQUIRE(r);
    CHECK_STR(c.services[r->service], "payments");
    CHECK_EQ(r->auth, GW_AUTH_USER);
    r = gw_route_find(&c, "/recommendations/7");
    REQUIRE(r);
    CHECK_STR(c.services[r->service], "recommendations");
    CHECK_EQ(r->auth, GW_AUTH_USER);
    CHECK(c.retry_ratio == 0.2);
    CHECK_EQ(c.retry_window_s, 10);
    CHECK_EQ(c.breaker_failures, 5);
    CHECK_EQ(c.norigins, 2);
}

TEST(prefix_matching_respects_segments) {
    gw_config c;
    char err[256];
    REQUIRE(gw_config_load(NULL, &c, err, sizeof err) == SVC_OK);
    CHECK(gw_route_find(&c, "/products") != NULL);
    CHECK(gw_route_find(&c, "/products/") != NULL);
    CHECK(gw_route_find(&c, "/products/a/b") != NULL);
    CHECK(gw_route_find(&c, "/productsX") == NULL);
    CHECK(gw_route_find(&c, "/product") == NULL);
    CHECK(gw_route_find(&c, "/auth") == NULL); /* the prefix is "/auth/" */
    CHECK(gw_route_find(&c, "/auth/") != NULL);
    CHECK(gw_route_find(&c, "/") == NULL);
    CHECK(gw_route_find(&c, "/healthz") == NULL);
}

TEST(longest_prefix_wins_whatever_the_order) {
    gw_config c;
    char err[256];
    REQUIRE(parse("{\"routes\":[{\"prefix\":\"/\",\"service\":\"web\"},"
                  "{\"prefix\":\"/a\",\"service\":\"a\"},"
                  "{\"prefix\":\"/a/b/\",\"service\":\"ab\",\"auth\":\"admin\",\"timeout_ms\":7,\"retry\":false}]}",
                  &c, err, sizeof err) == SVC_OK);
    const gw_route *r = gw_route_find(&c, "/a/b/c");
    REQUIRE(r);
    CHECK_STR(c.services[r->service], "ab");
    CHECK_EQ(r->auth, GW_AUTH_ADMIN);
    CHECK_EQ(r->timeout_ms, 7);
    CHECK_EQ(r->retry, 0);
    r = gw_route_find(&c, "/a/b");
    REQUIRE(r);
    CHECK_STR(c.services[r->service], "a");
    r = gw_route_find(&c, "/x");
    REQUIRE(r);
    CHECK_STR(c.services[r->service], "web");
    CHECK_EQ(r->timeout_ms, 5000); /* default */
    CHECK_EQ(r->retry, 1);
    /* Two routes, one service: one entry. */
    REQUIRE(parse("{\"routes\":[{\"prefix\":\"/x\",\"service\":\"s\"},{\"prefix\":\"/y\",\"service\":\"s\"}]}",
                  &c, err, sizeof err) == SVC_OK);
    CHECK_EQ(c.nservices, 1);
}

TEST(sections_override_defaults) {
    gw_config c;
    char err[256];
    REQUIRE(parse("{\"routes\":[],\"cors\":{\"origins\":[\"https://Shop.Example:8443\"],\"max_age_s\":5},"
                  "\"limits\":{\"rate_per_client_per_s\":0,\"burst\":3,\"max_concurrency\":0},"
                  "\"retry_budget\":{\"ratio\":0.5,\"window_s\":3},\"breaker\":{\"failures\":2,\"open_ms\":300},"
                  "\"discovery\":{\"interval_ms\":250}}",
                  &c, err, sizeof err) == SVC_OK);
    CHECK_EQ(c.nroutes, 0);
    CHECK_EQ(c.norigins, 1);
    CHECK_EQ(c.cors_max_age_s, 5);
    CHECK(c.rate_per_s == 0);
    CHECK(c.burst == 3);
    CHECK_EQ(c.max_concurrency, 0);
    CHECK(c.retry_ratio == 0.5);
    CHECK_EQ(c.retry_window_s, 3);
    CHECK_EQ(c.breaker_failures, 2);
    CHECK_EQ(c.breaker_open_ms, 300);
    CHECK_EQ(c.discovery_interval_ms, 250);
}

TEST(refuses_bad_documents_naming_the_field) {
    check_refused("", "invalid JSON");
    check_refused("[]", "must be a JSON object");
    check_refused("{}", "routes: required");
    check_refused("{\"routes\":[],\"extra\":1}", "unknown key \"extra\"");
    check_refused("{\"routes\":[{\"prefix\":\"/a\",\"service\":\"a\",\"timout_ms\":5}]}",
                  "routes[0]: unknown key \"timout_ms\"");
    check_refused("{\"routes\":[{\"service\":\"a\"}]}", "routes[0].prefix: required");
    check_refused("{\"routes\":[{\"prefix\":\"a\",\"service\":\"a\"}]}", "routes[0].prefix");
    check_refused("{\"routes\":[{\"prefix\":\"/a//b\",\"service\":\"a\"}]}", "routes[0].prefix");
    check_refused("{\"routes\":[{\"prefix\":\"/a/../b\",\"service\":\"a\"}]}", "routes[0].prefix");
    check_refused("{\"routes\":[{\"prefix\":\"/a/./\",\"service\":\"a\"}]}", "routes[0].prefix");
    check_refused("{\"routes\":[{\"prefix\":\"/a%2Fb\",\"service\":\"a\"}]}", "routes[0].prefix");
    check_refused("{\"routes\":[{\"prefix\":\"/a b\",\"service\":\"a\"}]}", "routes[0].prefix");
    check_refused("{\"routes\":[{\"prefix\":\"/a\",\"service\":\"a\"},{\"prefix\":\"/a\",\"service\":\"b\"}]}",
                  "routes[1].prefix: \"/a\" is listed twice");
    check_refused("{\"routes\":[{\"prefix\":\"/a\",\"service\":\"a.b\"}]}", "routes[0].service");
    check_refused("{\"routes\":[{\"prefix\":\"/a\",\"service\":\"*\"}]}", "routes[0].service");
    check_refused("{\"routes\":[{\"prefix\":\"/a\",\"service\":\"\"}]}", "routes[0].service");
    check_refused("{\"routes\":[{\"prefix\":\"/a\"}]}", "routes[0].service");
    check_refused("{\"routes\":[{\"prefix\":\"/a\",\"service\":\"a\",\"auth\":\"root\"}]}", "routes[0].auth");
    check_refused("{\"routes\":[{\"prefix\":\"/a\",\"service\":\"a\",\"timeout_ms\":0}]}", "routes[0].timeout_ms");
    check_refused("{\"routes\":[{\"prefix\":\"/a\",\"service\":\"a\",\"timeout_ms\":\"5\"}]}",
                  "routes[0].timeout_ms");
    check_refused("{\"routes\":[{\"prefix\":\"/a\",\"service\":\"a\",\"timeout_ms\":1.5}]}", "routes[0].timeout_ms");
    check_refused("{\"routes\":[{\"prefix\":\"/a\",\"service\":\"a\",\"retry\":1}]}", "routes[0].retry");
    check_refused("{\"routes\":[],\"cors\":{\"origins\":[\"*\"]}}", "cors.origins[0]");
    check_refused("{\"routes\":[],\"cors\":{\"origins\":[\"https://a.example/\"]}}", "cors.origins[0]");
    check_refused("{\"routes\":[],\"cors\":{\"origins\":[\"null\"]}}", "cors.origins[0]");
    check_refused("{\"routes\":[],\"cors\":{\"origins\":\"https://a\"}}", "cors.origins");
    check_refused("{\"routes\":[],\"limits\":{\"burst\":0}}", "limits.burst");
    check_refused("{\"routes\":[],\"limits\":{\"rate_per_client_per_s\":-1}}", "limits.rate_per_client_per_s");
    check_refused("{\"routes\":[],\"limits\":{\"max_concurrency\":-1}}", "limits.max_concurrency");
    check_refused("{\"routes\":[],\"retry_budget\":{\"ratio\":1.5}}", "retry_budget.ratio");
    check_refused("{\"routes\":[],\"retry_budget\":{\"window_s\":0}}", "retry_budget.window_s");
    check_refused("{\"routes\":[],\"breaker\":{\"failures\":0}}", "breaker.failures");
    check_refused("{\"routes\":[],\"breaker\":7}", "breaker: must be an object");
    check_refused("{\"routes\":[],\"discovery\":{\"interval_ms\":5}}", "discovery.interval_ms");
}

TEST(refuses_too_many_routes) {
    svc_buf b = {0};
    svc_buf_puts(&b, "{\"routes\":[");
    for (int i = 0; i <= GW_MAX_ROUTES; i++) svc_buf_printf(&b, "%s{\"prefix\":\"/r%d\",\"service\":\"s\"}", i ? "," : "", i);
    svc_buf_puts(&b, "]}");
    check_refused(b.data, "routes: at most");
    svc_buf_free(&b);
}

TEST(load_reports_missing_file) {
    gw_config c;
    char err[256];
    CHECK_EQ(gw_config_load("/nonexistent/gateway.json", &c, err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "/nonexistent/gateway.json") != NULL);
}
