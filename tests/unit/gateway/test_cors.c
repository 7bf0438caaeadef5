/* CORS decisions. */
#include "../../../services/gateway/config.c"
#include "../../../services/gateway/cors.c"
#include "../test.h"

TEST(only_listed_origins) {
    gw_config c;
    char err[256];
    const char *doc = "{\"routes\":[],\"cors\":{\"origins\":[\"https://shop.example\",\"http://localhost:3000\"]}}";
    REQUIRE(gw_config_parse(doc, strlen(doc), &c, err, sizeof err) == SVC_OK);
    CHECK(gw_cors_allowed(&c, "https://shop.example"));
    CHECK(gw_cors_allowed(&c, "HTTPS://SHOP.EXAMPLE"));
    CHECK(gw_cors_allowed(&c, "http://localhost:3000"));
    CHECK(!gw_cors_allowed(&c, "http://localhost:3001"));
    CHECK(!gw_cors_allowed(&c, "https://shop.example.evil"));
    CHECK(!gw_cors_allowed(&c, "https://evil.example"));
    CHECK(!gw_cors_allowed(&c, "null"));
    CHECK(!gw_cors_allowed(&c, ""));
    CHECK(!gw_cors_allowed(&c, NULL));
}

TEST(preflight_needs_options_origin_and_method) {
    CHECK(gw_cors_is_preflight("OPTIONS", "https://a", "GET"));
    CHECK(!gw_cors_is_preflight("OPTIONS", "https://a", NULL));
    CHECK(!gw_cors_is_preflight("OPTIONS", NULL, "GET"));
    CHECK(!gw_cors_is_preflight("OPTIONS", "", "GET"));
    CHECK(!gw_cors_is_preflight("GET", "https://a", "GET"));
}
