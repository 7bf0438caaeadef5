/* The route table: priorities, backtracking, 404 versus 405, patterns. */
#include <stdlib.h>

#include "runtime/router.h"
#include "../test.h"

/* Distinct addresses to hand out as route data. */
static int R[32];

typedef struct fixture {
    svc_router *r;
    svc_arena *a;
    svc_route_match m;
    char allow[128];
} fixture;

static void setup(fixture *f) {
    memset(f, 0, sizeof *f);
    f->r = svc__router_new();
    f->a = svc_arena_new(0);
}

static void teardown(fixture *f) {
    svc__router_free(f->r);
    svc_arena_free(f->a);
}

static int match(fixture *f, const char *method, const char *path) {
    memset(&f->m, 0, sizeof f->m);
    strcpy(f->allow, "untouched");
    return svc__router_match(f->r, method, path, f->a, &f->m, f->allow, sizeof f->allow);
}

static const char *param(const fixture *f, const char *name) {
    for (size_t i = 0; i < f->m.nparams; i++)
        if (strcmp(f->m.params[i].name, name) == 0) return f->m.params[i].value;
    return NULL;
}

TEST(literal_route_matches_exactly) {
    fixture f;
    setup(&f);
    REQUIRE(f.r && f.a);
    CHECK_EQ(svc__router_add(f.r, "GET", "/healthz", &R[0]), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/healthz"), SVC_OK);
    CHECK(f.m.data == &R[0]);
    CHECK_STR(f.m.pattern, "/healthz");
    CHECK_EQ(f.m.nparams, 0);
    CHECK_EQ(match(&f, "GET", "/healthz/x"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/health"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/Healthz"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/healthzz"), SVC_ENOTFOUND);
    teardown(&f);
}

TEST(root_route) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/", &R[0]), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/"), SVC_OK);
    CHECK(f.m.data == &R[0]);
    CHECK_EQ(match(&f, "GET", "/a"), SVC_ENOTFOUND);
    teardown(&f);
}

TEST(parameter_captures_one_segment) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/products/:id", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/users/:uid/orders/:oid", &R[1]), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/products/42"), SVC_OK);
    CHECK(f.m.data == &R[0]);
    CHECK_EQ(f.m.nparams, 1);
    CHECK_STR(f.m.params[0].name, "id");
    CHECK_STR(f.m.params[0].value, "42");
    CHECK_STR(f.m.pattern, "/products/:id");

    CHECK_EQ(match(&f, "GET", "/users/7/orders/a b"), SVC_OK);
    CHECK(f.m.data == &R[1]);
    CHECK_EQ(f.m.nparams, 2);
    CHECK_STR(f.m.params[0].name, "uid");
    CHECK_STR(f.m.params[0].value, "7");
    CHECK_STR(f.m.params[1].name, "oid");
    CHECK_STR(f.m.params[1].value, "a b");

    /* one segment only, never empty */
    CHECK_EQ(match(&f, "GET", "/products/42/x"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/products/"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/products"), SVC_ENOTFOUND);
    teardown(&f);
}

TEST(parameter_values_live_in_the_arena) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/p/:id", &R[0]), SVC_OK);
    char path[] = "/p/abc";
    size_t before = svc_arena_bytes(f.a);
    CHECK_EQ(match(&f, "GET", path), SVC_OK);
    CHECK(svc_arena_bytes(f.a) > before);
    path[3] = 'X'; /* the value is a copy, not a pointer into the path */
    CHECK_STR(f.m.params[0].value, "abc");
    teardown(&f);
}

TEST(static_beats_parameter_beats_catchall) {
    fixture f;
    setup(&f);
    /* registered in the opposite order of priority on purpose */
    CHECK_EQ(svc__router_add(f.r, "GET", "/products/*rest", &R[2]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/products/:id", &R[1]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/products/search", &R[0]), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/products/search"), SVC_OK);
    CHECK(f.m.data == &R[0]);
    CHECK_EQ(f.m.nparams, 0);
    CHECK_EQ(match(&f, "GET", "/products/12"), SVC_OK);
    CHECK(f.m.data == &R[1]);
    CHECK_STR(param(&f, "id"), "12");
    CHECK_EQ(match(&f, "GET", "/products/12/reviews"), SVC_OK);
    CHECK(f.m.data == &R[2]);
    CHECK_STR(param(&f, "rest"), "12/reviews");
    CHECK_EQ(match(&f, "GET", "/products/search/more"), SVC_OK);
    CHECK(f.m.data == &R[2]);
    CHECK_STR(param(&f, "rest"), "search/more");
    teardown(&f);
}

TEST(backtracks_from_literal_to_parameter) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/a/b/c", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/a/:x/d", &R[1]), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/a/b/d"), SVC_OK);
    CHECK(f.m.data == &R[1]);
    CHECK_EQ(f.m.nparams, 1);
    CHECK_STR(param(&f, "x"), "b");
    CHECK_EQ(match(&f, "GET", "/a/b/c"), SVC_OK);
    CHECK(f.m.data == &R[0]);
    CHECK_EQ(f.m.nparams, 0);
    CHECK_EQ(match(&f, "GET", "/a/z/d"), SVC_OK);
    CHECK(f.m.data == &R[1]);
    CHECK_EQ(match(&f, "GET", "/a/z/c"), SVC_ENOTFOUND);
    teardown(&f);
}

TEST(backtracks_to_catchall_and_discards_captures) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/f/:a/:b/end", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/f/*all", &R[1]), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/f/1/2/end"), SVC_OK);
    CHECK(f.m.data == &R[0]);
    CHECK_EQ(f.m.nparams, 2);
    /* the parameter branch fails at its last segment: only the catch-all's
     * value must come back, not the stale a and b */
    CHECK_EQ(match(&f, "GET", "/f/1/2/nope"), SVC_OK);
    CHECK(f.m.data == &R[1]);
    CHECK_EQ(f.m.nparams, 1);
    CHECK_STR(f.m.params[0].name, "all");
    CHECK_STR(f.m.params[0].value, "1/2/nope");
    teardown(&f);
}

TEST(backtracks_past_a_branch_without_the_method) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/items/new", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "DELETE", "/items/:id", &R[1]), SVC_OK);
    CHECK_EQ(match(&f, "DELETE", "/items/new"), SVC_OK);
    CHECK(f.m.data == &R[1]);
    CHECK_STR(param(&f, "id"), "new");
    CHECK_EQ(match(&f, "GET", "/items/new"), SVC_OK);
    CHECK(f.m.data == &R[0]);
    teardown(&f);
}

TEST(catchall_matches_rest_possibly_empty) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/static/*path", &R[0]), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/static/css/site.css"), SVC_OK);
    CHECK_STR(param(&f, "path"), "css/site.css");
    CHECK_EQ(match(&f, "GET", "/static/x"), SVC_OK);
    CHECK_STR(param(&f, "path"), "x");
    CHECK_EQ(match(&f, "GET", "/static/"), SVC_OK);
    CHECK_STR(param(&f, "path"), "");
    CHECK_EQ(match(&f, "GET", "/static/a/"), SVC_OK);
    CHECK_STR(param(&f, "path"), "a/");
    /* the "/" before the catch-all is part of the pattern */
    CHECK_EQ(match(&f, "GET", "/static"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/staticx/a"), SVC_ENOTFOUND);
    teardown(&f);
}

TEST(root_catchall_and_params_before_it) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/*all", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/t/:tenant/files/*path", &R[1]), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/"), SVC_OK);
    CHECK(f.m.data == &R[0]);
    CHECK_STR(param(&f, "all"), "");
    CHECK_EQ(match(&f, "GET", "/anything/at/all"), SVC_OK);
    CHECK(f.m.data == &R[0]);
    CHECK_STR(param(&f, "all"), "anything/at/all");
    CHECK_EQ(match(&f, "GET", "/t/acme/files/a/b"), SVC_OK);
    CHECK(f.m.data == &R[1]);
    CHECK_EQ(f.m.nparams, 2);
    CHECK_STR(f.m.params[0].name, "tenant");
    CHECK_STR(f.m.params[0].value, "acme");
    CHECK_STR(f.m.params[1].name, "path");
    CHECK_STR(f.m.params[1].value, "a/b");
    teardown(&f);
}

TEST(trailing_slash_is_strict) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/products", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/orders/", &R[1]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/u/:id/", &R[2]), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/products"), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/products/"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/orders/"), SVC_OK);
    CHECK(f.m.data == &R[1]);
    CHECK_EQ(match(&f, "GET", "/orders"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/u/5/"), SVC_OK);
    CHECK_STR(param(&f, "id"), "5");
    CHECK_EQ(match(&f, "GET", "/u/5"), SVC_ENOTFOUND);
    /* both forms may be registered side by side */
    CHECK_EQ(svc__router_add(f.r, "GET", "/products/", &R[3]), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/products/"), SVC_OK);
    CHECK(f.m.data == &R[3]);
    teardown(&f);
}

TEST(not_found_versus_method_not_allowed) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "POST", "/products", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/products", &R[1]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "DELETE", "/products/:id", &R[2]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "PUT", "/products/:id", &R[3]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "PATCH", "/products/:id", &R[4]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/products/:id", &R[5]), SVC_OK);

    CHECK_EQ(match(&f, "PUT", "/products"), SVC_EAGAIN);
    CHECK_STR(f.allow, "GET, HEAD, POST");
    CHECK_EQ(match(&f, "POST", "/products/3"), SVC_EAGAIN);
    CHECK_STR(f.allow, "DELETE, GET, HEAD, PATCH, PUT");
    /* a method no route uses at all is still a 405 on a known path */
    CHECK_EQ(match(&f, "BREW", "/products"), SVC_EAGAIN);
    CHECK_STR(f.allow, "GET, HEAD, POST");

    CHECK_EQ(match(&f, "GET", "/nothing"), SVC_ENOTFOUND);
    CHECK_STR(f.allow, "");
    CHECK_EQ(match(&f, "PUT", "/products/3/x"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/products/3"), SVC_OK);
    CHECK_STR(f.allow, "");
    teardown(&f);
}

TEST(allow_unions_every_matching_route) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/a/b", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "PUT", "/a/:x", &R[1]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "DELETE", "/a/*rest", &R[2]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "POST", "/a/c", &R[3]), SVC_OK);
    CHECK_EQ(match(&f, "PATCH", "/a/b"), SVC_EAGAIN);
    CHECK_STR(f.allow, "DELETE, GET, HEAD, PUT");
    CHECK_EQ(match(&f, "PATCH", "/a/b/c"), SVC_EAGAIN);
    CHECK_STR(f.allow, "DELETE");
    teardown(&f);
}

TEST(allow_leaves_out_options_and_lists_head_once) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "OPTIONS", "/x", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "HEAD", "/x", &R[1]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/x", &R[2]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "OPTIONS", "/only-options", &R[3]), SVC_OK);
    CHECK_EQ(match(&f, "POST", "/x"), SVC_EAGAIN);
    CHECK_STR(f.allow, "GET, HEAD");
    CHECK_EQ(match(&f, "POST", "/only-options"), SVC_EAGAIN);
    CHECK_STR(f.allow, "");
    teardown(&f);
}

TEST(allow_buffer_is_cut_on_whole_names) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/x", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "POST", "/x", &R[1]), SVC_OK);
    char small[12];
    CHECK_EQ(svc__router_match(f.r, "PUT", "/x", f.a, &f.m, small, sizeof small), SVC_EAGAIN);
    CHECK_STR(small, "GET, HEAD"); /* "GET, HEAD, POST" needs 16 bytes */
    char tiny[3];
    CHECK_EQ(svc__router_match(f.r, "PUT", "/x", f.a, &f.m, tiny, sizeof tiny), SVC_EAGAIN);
    CHECK_STR(tiny, "");
    CHECK_EQ(svc__router_match(f.r, "PUT", "/x", f.a, &f.m, NULL, 0), SVC_EAGAIN);
    teardown(&f);
}

TEST(router_allow_for_options) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/p/:id", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "DELETE", "/p/:id", &R[1]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "POST", "/p/new", &R[2]), SVC_OK);
    char allow[64];
    CHECK_EQ(svc__router_allow(f.r, "/p/new", f.a, allow, sizeof allow), SVC_OK);
    CHECK_STR(allow, "DELETE, GET, HEAD, POST");
    CHECK_EQ(svc__router_allow(f.r, "/p/7", f.a, allow, sizeof allow), SVC_OK);
    CHECK_STR(allow, "DELETE, GET, HEAD");
    CHECK_EQ(svc__router_allow(f.r, "/q", f.a, allow, sizeof allow), SVC_ENOTFOUND);
    CHECK_STR(allow, "");
    teardown(&f);
}

TEST(head_falls_back_to_get) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/doc/:id", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/other", &R[1]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "HEAD", "/other", &R[2]), SVC_OK);
    CHECK_EQ(match(&f, "HEAD", "/doc/9"), SVC_OK);
    CHECK(f.m.data == &R[0]);
    CHECK_STR(param(&f, "id"), "9");
    /* an explicit HEAD route wins */
    CHECK_EQ(match(&f, "HEAD", "/other"), SVC_OK);
    CHECK(f.m.data == &R[2]);
    CHECK_EQ(match(&f, "GET", "/other"), SVC_OK);
    CHECK(f.m.data == &R[1]);
    CHECK_EQ(match(&f, "HEAD", "/missing"), SVC_ENOTFOUND);
    teardown(&f);
}

TEST(head_without_get_is_405) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "POST", "/login", &R[0]), SVC_OK);
    CHECK_EQ(match(&f, "HEAD", "/login"), SVC_EAGAIN);
    CHECK_STR(f.allow, "POST");
    CHECK_EQ(match(&f, "GET", "/login"), SVC_EAGAIN);
    CHECK_STR(f.allow, "POST");
    teardown(&f);
}

TEST(duplicates_are_refused) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/p/:id", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/p/:id", &R[1]), SVC_EEXIST);
    CHECK_EQ(svc__router_add(f.r, "GET", "/p/:pid", &R[1]), SVC_EEXIST);
    CHECK_EQ(svc__router_add(f.r, "GET", "/s/*a", &R[1]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/s/*b", &R[1]), SVC_EEXIST);
    CHECK_EQ(svc__router_add(f.r, "GET", "/x", &R[1]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/x", &R[1]), SVC_EEXIST);
    /* different method, different shape or trailing slash: not duplicates */
    CHECK_EQ(svc__router_add(f.r, "DELETE", "/p/:pid", &R[2]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/p/*rest", &R[3]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/p/:id/", &R[4]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/p/new", &R[5]), SVC_OK);
    /* the first registration still answers, with its own names */
    CHECK_EQ(match(&f, "GET", "/p/1"), SVC_OK);
    CHECK(f.m.data == &R[0]);
    CHECK_STR(f.m.params[0].name, "id");
    CHECK_EQ(match(&f, "DELETE", "/p/1"), SVC_OK);
    CHECK(f.m.data == &R[2]);
    CHECK_STR(f.m.params[0].name, "pid");
    CHECK_STR(f.m.pattern, "/p/:pid");
    teardown(&f);
}

TEST(bad_patterns_are_refused) {
    fixture f;
    setup(&f);
    const char *bad[] = {
        "",            /* empty */
        "products",    /* no leading slash */
        "/p/:",        /* empty parameter name */
        "/p/:/x",
        "/p/*",        /* empty catch-all name */
        "/p/*rest/x",  /* catch-all not last */
        "/p/*rest/",
        "/a//b",       /* an empty segment never matches */
        "//",
        "/a/./b",      /* dot segments never match */
        "/a/..",
        "/:a/:a",      /* the same name twice */
        "/:a/*a",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = svc__router_add(f.r, "GET", bad[i], &R[0]);
        if (rc != SVC_EINVAL) test_fail(__FILE__, __LINE__, "\"%s\": %d", bad[i], rc);
    }
    CHECK_EQ(svc__router_add(f.r, NULL, "/x", &R[0]), SVC_EINVAL);
    CHECK_EQ(svc__router_add(f.r, "GET", NULL, &R[0]), SVC_EINVAL);
    CHECK_EQ(svc__router_add(NULL, "GET", "/x", &R[0]), SVC_EINVAL);
    CHECK_EQ(svc__router_add(f.r, "", "/x", &R[0]), SVC_EINVAL);
    CHECK_EQ(svc__router_add(f.r, "get", "/x", &R[0]), SVC_EINVAL);
    CHECK_EQ(svc__router_add(f.r, "GE T", "/x", &R[0]), SVC_EINVAL);
    CHECK_EQ(svc__router_add(f.r, "GET/", "/x", &R[0]), SVC_EINVAL);
    CHECK_EQ(svc__router_add(f.r, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "/x", &R[0]), SVC_EINVAL);
    CHECK_EQ(svc__router_add(f.r, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "/x", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "M-SEARCH", "/x", &R[0]), SVC_OK);
    /* the refused patterns left nothing behind */
    CHECK_EQ(match(&f, "GET", "/p/x"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/a/b"), SVC_ENOTFOUND);
    teardown(&f);
}

TEST(parameter_and_segment_limits) {
    fixture f;
    setup(&f);
    char pat[1024] = "", path[1024] = "";
    for (int i = 0; i < SVC_ROUTER_MAX_PARAMS; i++) {
        sprintf(pat + strlen(pat), "/:p%d", i);
        sprintf(path + strlen(path), "/v%d", i);
    }
    CHECK_EQ(svc__router_add(f.r, "GET", pat, &R[0]), SVC_OK);
    CHECK_EQ(match(&f, "GET", path), SVC_OK);
    CHECK_EQ(f.m.nparams, SVC_ROUTER_MAX_PARAMS);
    CHECK_STR(f.m.params[SVC_ROUTER_MAX_PARAMS - 1].name, "p15");
    CHECK_STR(f.m.params[SVC_ROUTER_MAX_PARAMS - 1].value, "v15");
    strcat(pat, "/*more");
    CHECK_EQ(svc__router_add(f.r, "GET", pat, &R[0]), SVC_EINVAL);

    pat[0] = '\0';
    path[0] = '\0';
    for (int i = 0; i < SVC_ROUTER_MAX_SEGMENTS; i++) {
        strcat(pat, "/s");
        strcat(path, "/s");
    }
    CHECK_EQ(svc__router_add(f.r, "GET", pat, &R[1]), SVC_OK);
    CHECK_EQ(match(&f, "GET", path), SVC_OK);
    CHECK(f.m.data == &R[1]);
    strcat(pat, "/s");
    strcat(path, "/s");
    CHECK_EQ(svc__router_add(f.r, "GET", pat, &R[2]), SVC_EINVAL);
    CHECK_EQ(match(&f, "GET", path), SVC_ENOTFOUND);
    teardown(&f);
}

TEST(methods_per_shape_are_limited) {
    fixture f;
    setup(&f);
    char m[16];
    for (int i = 0; i < SVC_ROUTER_MAX_METHODS; i++) {
        snprintf(m, sizeof m, "M%d", i);
        CHECK_EQ(svc__router_add(f.r, m, "/x/:id", &R[0]), SVC_OK);
    }
    CHECK_EQ(svc__router_add(f.r, "GET", "/x/:other", &R[0]), SVC_ERANGE);
    CHECK_EQ(svc__router_add(f.r, "GET", "/x/y", &R[1]), SVC_OK);
    CHECK_EQ(match(&f, "M15", "/x/1"), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/x/1"), SVC_EAGAIN);
    teardown(&f);
}

TEST(literal_children_are_searched_correctly) {
    /* enough siblings, added in scrambled order, to exercise the sorted search */
    fixture f;
    setup(&f);
    const char *names[] = {"m", "a", "zz", "b", "ab", "", "abc", "z", "aa", "c", "ba", "q"};
    size_t n = sizeof names / sizeof *names;
    char pat[16];
    for (size_t i = 0; i < n; i++) {
        snprintf(pat, sizeof pat, "/k/%s", names[i]);
        CHECK_EQ(svc__router_add(f.r, "GET", pat, &R[i]), SVC_OK);
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(pat, sizeof pat, "/k/%s", names[i]);
        CHECK_EQ(match(&f, "GET", pat), SVC_OK);
        CHECK(f.m.data == &R[i]);
    }
    CHECK_EQ(match(&f, "GET", "/k/abd"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/k/zzz"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/k/0"), SVC_ENOTFOUND);
    teardown(&f);
}

TEST(literal_bytes_are_compared_exactly) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/caf\xc3\xa9", &R[0]), SVC_OK);
    CHECK_EQ(svc__router_add(f.r, "GET", "/a:b", &R[1]), SVC_OK);
    CHECK_EQ(match(&f, "GET", "/caf\xc3\xa9"), SVC_OK);
    CHECK(f.m.data == &R[0]);
    CHECK_EQ(match(&f, "GET", "/cafe"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/a:b"), SVC_OK);
    CHECK(f.m.data == &R[1]);
    teardown(&f);
}

TEST(bad_lookup_arguments) {
    fixture f;
    setup(&f);
    CHECK_EQ(svc__router_add(f.r, "GET", "/*all", &R[0]), SVC_OK);
    CHECK_EQ(match(&f, "GET", ""), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "relative"), SVC_ENOTFOUND);
    CHECK_EQ(svc__router_match(f.r, "GET", NULL, f.a, &f.m, NULL, 0), SVC_ENOTFOUND);
    CHECK_EQ(svc__router_match(NULL, "GET", "/", f.a, &f.m, NULL, 0), SVC_ENOTFOUND);
    char allow[8];
    CHECK_EQ(svc__router_allow(f.r, "x", NULL, allow, sizeof allow), SVC_ENOTFOUND);
    svc__router_free(NULL);
    teardown(&f);
}

TEST(empty_router_finds_nothing) {
    fixture f;
    setup(&f);
    CHECK_EQ(match(&f, "GET", "/"), SVC_ENOTFOUND);
    CHECK_EQ(match(&f, "GET", "/a/b"), SVC_ENOTFOUND);
    teardown(&f);
}
