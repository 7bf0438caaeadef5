/* Request-target normalisation and query parameters. */
#include "runtime/router.h"
#include "../test.h"

typedef struct norm_case {
    const char *target;
    const char *path;   /* NULL: SVC_EINVAL expected */
    const char *query;
} norm_case;

static const norm_case cases[] = {
    /* plain */
    {"/", "/", ""},
    {"/a", "/a", ""},
    {"/a/b", "/a/b", ""},
    {"/a/b/", "/a/b/", ""},
    /* dot segments */
    {"/a/../b", "/b", ""},
    {"/a/./b", "/a/b", ""},
    {"/a/./b/", "/a/b/", ""},
    {"/a/b/..", "/a/", ""},     /* a final ".." keeps the '/' (RFC 3986) */
    {"/a/b/../", "/a/", ""},
    {"/a/b/.", "/a/b/", ""},
    {"/a/..", "/", ""},
    {"/.", "/", ""},
    {"/./", "/", ""},
    {"/a/b/../../c", "/c", ""},
    {"/..", NULL, NULL},
    {"/../a", NULL, NULL},
    {"/a/../..", NULL, NULL},
    {"/a/../../b", NULL, NULL},
    {"/...", "/...", ""},       /* only "." and ".." are special */
    {"/..a/.b", "/..a/.b", ""},
    {"/a/..b", "/a/..b", ""},
    /* decoded dots count */
    {"/a/%2e%2e/b", "/b", ""},
    {"/a/%2E%2e/b", "/b", ""},
    {"/a/.%2e/b", "/b", ""},
    {"/a/%2e/b", "/a/b", ""},
    {"/%2E%2e/x", NULL, NULL},  /* above the root */
    {"/%2e%2e", NULL, NULL},
    /* collapsing */
    {"//a///b", "/a/b", ""},
    {"//", "/", ""},
    {"///", "/", ""},
    {"/a//", "/a/", ""},
    {"/a//../b", "/b", ""},     /* empty segments collapse first */
    {"//..", NULL, NULL},
    /* decoding */
    {"/a%20b", "/a b", ""},
    {"/%41%62", "/Ab", ""},
    {"/%c3%A9", "/\xc3\xa9", ""},
    {"/%25", "/%", ""},         /* decoded once only */
    {"/%2541", "/%41", ""},
    {"/a+b", "/a+b", ""},       /* '+' is literal in a path */
    {"/%3F", "/?", ""},
    {"/%23", "/#", ""},
    {"/\xc3\xa9", "/\xc3\xa9", ""},
    /* bad escapes */
    {"/%zz", NULL, NULL},
    {"/%", NULL, NULL},
    {"/%4", NULL, NULL},
    {"/%4?x", NULL, NULL},
    {"/a%g1", NULL, NULL},
    {"/%-1", NULL, NULL},
    {"/% 1", NULL, NULL},
    /* encoded slash, NUL and control bytes */
    {"/a%2Fb", NULL, NULL},
    {"/a%2fb", NULL, NULL},
    {"/a%00", NULL, NULL},
    {"/a%0a", NULL, NULL},
    {"/a%0D", NULL, NULL},
    {"/a%1F", NULL, NULL},
    {"/a%7f", NULL, NULL},
    {"/a\x01", NULL, NULL},
    {"/a\tb", NULL, NULL},
    {"/a\x7f", NULL, NULL},
    {"/a%20", "/a ", ""},
    {"/a%80", "/a\x80", ""},
    /* query splitting */
    {"/a?x=1", "/a", "x=1"},
    {"/a?", "/a", ""},
    {"/?", "/", ""},
    {"/a/?x=1&y", "/a/", "x=1&y"},
    {"/a/../b?c=/../&d=%zz", "/b", "c=/../&d=%zz"},  /* the query stays raw */
    {"/a?b?c", "/a", "b?c"},
    {"/a%3Fb?c", "/a?b", "c"},
    {"/a?x=%00", "/a", "x=%00"},                      /* checked by query_get */
    {"/a?x=\x01", NULL, NULL},
    {"/a?x=\x7f", NULL, NULL},
    /* fragments */
    {"/a#f", NULL, NULL},
    {"/a?x#f", NULL, NULL},
    {"/#", NULL, NULL},
    /* not origin-form */
    {"a/b", NULL, NULL},
    {"*", NULL, NULL},
    {"http://h/a", NULL, NULL},
    {"?x", NULL, NULL},
};

TEST(normalisation_table) {
    svc_arena *a = svc_arena_new(0);
    REQUIRE(a);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const norm_case *c = &cases[i];
        char *path = (char *)"unset", *query = (char *)"unset";
        int rc = svc__path_normalize(c->target, strlen(c->target), a, &path, &query);
        if (!c->path) {
            if (rc != SVC_EINVAL)
                test_fail(__FILE__, __LINE__, "\"%s\": rc %d, want EINVAL", c->target, rc);
            else if (strcmp(path, "unset") != 0 || strcmp(query, "unset") != 0)
                test_fail(__FILE__, __LINE__, "\"%s\": outputs written on failure", c->target);
            continue;
        }
        if (rc != SVC_OK) {
            test_fail(__FILE__, __LINE__, "\"%s\": rc %d, want OK", c->target, rc);
            continue;
        }
        if (strcmp(path, c->path) != 0 || strcmp(query, c->query) != 0)
            test_fail(__FILE__, __LINE__, "\"%s\": got \"%s\" ? \"%s\", want \"%s\" ? \"%s\"",
                      c->target, path, query, c->path, c->query);
    }
    svc_arena_free(a);
}

TEST(normalise_uses_len_not_nul) {
    svc_arena *a = svc_arena_new(0);
    char *path, *query;
    /* a NUL byte inside the target is refused, not taken as the end */
    CHECK_EQ(svc__path_normalize("/a\0b", 4, a, &path, &query), SVC_EINVAL);
    CHECK_EQ(svc__path_normalize("/a?x\0", 5, a, &path, &query), SVC_EINVAL);
    /* only len bytes are read */
    CHECK_EQ(svc__path_normalize("/abc?q=1", 3, a, &path, &query), SVC_OK);
    CHECK_STR(path, "/ab");
    CHECK_STR(query, "");
    /* an escape cut by len is incomplete */
    CHECK_EQ(svc__path_normalize("/a%41", 4, a, &path, &query), SVC_EINVAL);
    CHECK_EQ(svc__path_normalize("/a%41", 5, a, &path, &query), SVC_OK);
    CHECK_STR(path, "/aA");
    CHECK_EQ(svc__path_normalize("/", 0, a, &path, &query), SVC_EINVAL);
    CHECK_EQ(svc__path_normalize(NULL, 1, a, &path, &query), SVC_EINVAL);
    CHECK_EQ(svc__path_normalize("/", 1, NULL, &path, &query), SVC_EINVAL);
    svc_arena_free(a);
}

TEST(normalised_output_is_in_the_arena) {
    svc_arena *a = svc_arena_new(0);
    char target[] = "/x/y?z=1";
    char *path, *query;
    CHECK_EQ(svc__path_normalize(target, strlen(target), a, &path, &query), SVC_OK);
    memset(target, 'Q', strlen(target));
    CHECK_STR(path, "/x/y");
    CHECK_STR(query, "z=1");
    svc_arena_free(a);
}

TEST(long_targets) {
    svc_arena *a = svc_arena_new(0);
    char target[8192], want[8192];
    size_t n = 0, w = 0;
    /* many segments, each "seg/../" that cancels, then a real one */
    while (n + 32 < sizeof target) {
        memcpy(target + n, "/seg/%2E%2E", 11);
        n += 11;
    }
    memcpy(target + n, "/end/", 5);
    n += 5;
    memcpy(want + w, "/end/", 6);
    char *path, *query;
    CHECK_EQ(svc__path_normalize(target, n, a, &path, &query), SVC_OK);
    CHECK_STR(path, want);
    svc_arena_free(a);
}

TEST(query_get_decodes) {
    svc_arena *a = svc_arena_new(0);
    const char *q = "q=red+shoes&x=a%20b&sort=price%2Cdesc&utf=%C3%a9&plus=%2B";
    CHECK_STR(svc__query_get(q, "q", a), "red shoes");
    CHECK_STR(svc__query_get(q, "x", a), "a b");
    CHECK_STR(svc__query_get(q, "sort", a), "price,desc");
    CHECK_STR(svc__query_get(q, "utf", a), "\xc3\xa9");
    CHECK_STR(svc__query_get(q, "plus", a), "+");
    CHECK(svc__query_get(q, "missing", a) == NULL);
    CHECK(svc__query_get(q, "Q", a) == NULL); /* names are case-sensitive */
    CHECK(svc__query_get(q, "sor", a) == NULL);
    CHECK(svc__query_get(q, "sorts", a) == NULL);
    svc_arena_free(a);
}

TEST(query_get_first_of_repeated_names) {
    svc_arena *a = svc_arena_new(0);
    CHECK_STR(svc__query_get("id=1&id=2&id=3", "id", a), "1");
    CHECK_STR(svc__query_get("x=0&id=&id=2", "id", a), "");
    svc_arena_free(a);
}

TEST(query_get_all_joins_every_value) {
    svc_arena *a = svc_arena_new(0);
    CHECK_STR(svc__query_get_all("id=1&id=2&x=0&id=3", "id", a), "1,2,3");
    CHECK_STR(svc__query_get_all("s=a%2Cb&s=c+d&%73=e", "s", a), "a,b,c d,e");  /* names decoded too */
    CHECK_STR(svc__query_get_all("s&s=&s=x", "s", a), ",,x");
    CHECK_STR(svc__query_get_all("s=only", "s", a), "only");
    CHECK(svc__query_get_all("x=1", "s", a) == NULL);
    CHECK(svc__query_get_all("s=a&s=%zz", "s", a) == NULL);    /* one value does not decode */
    CHECK(svc__query_get_all("s=a&s=%00", "s", a) == NULL);
    svc_arena_free(a);
}

TEST(query_get_missing_value) {
    svc_arena *a = svc_arena_new(0);
    CHECK_STR(svc__query_get("flag", "flag", a), "");
    CHECK_STR(svc__query_get("a=1&flag&b=2", "flag", a), "");
    CHECK_STR(svc__query_get("flag=", "flag", a), "");
    CHECK_STR(svc__query_get("flag=&b", "flag", a), "");
    CHECK_STR(svc__query_get("k==v", "k", a), "=v"); /* the first '=' splits */
    CHECK_STR(svc__query_get("&&k=v&&", "k", a), "v");
    CHECK(svc__query_get("", "k", a) == NULL);
    CHECK(svc__query_get("=v", "k", a) == NULL);
    svc_arena_free(a);
}

TEST(query_get_invalid_escapes) {
    svc_arena *a = svc_arena_new(0);
    /* a bad value makes the parameter unusable: NULL, not a later duplicate */
    CHECK(svc__query_get("v=%zz", "v", a) == NULL);
    CHECK(svc__query_get("v=%zz&v=ok", "v", a) == NULL);
    CHECK(svc__query_get("v=abc%", "v", a) == NULL);
    CHECK(svc__query_get("v=abc%4", "v", a) == NULL);
    CHECK(svc__query_get("v=%4&x=1", "v", a) == NULL);
    CHECK(svc__query_get("v=a%00b", "v", a) == NULL);
    /* an invalid escape elsewhere does not matter */
    CHECK_STR(svc__query_get("w=%zz&v=ok", "v", a), "ok");
    /* a key with a bad escape matches nothing */
    CHECK_STR(svc__query_get("v%zz=1&v=2", "v", a), "2");
    CHECK(svc__query_get("%=1", "%", a) == NULL);
    svc_arena_free(a);
}

TEST(query_get_compares_decoded_names) {
    svc_arena *a = svc_arena_new(0);
    CHECK_STR(svc__query_get("a+b=1", "a b", a), "1");
    CHECK_STR(svc__query_get("a%20b=2", "a b", a), "2");
    CHECK_STR(svc__query_get("%61=3", "a", a), "3");
    CHECK_STR(svc__query_get("x%3Dy=4", "x=y", a), "4");
    CHECK_STR(svc__query_get("x%26y=5", "x&y", a), "5");
    CHECK(svc__query_get("a%00=1", "a", a) == NULL);
    CHECK(svc__query_get("a b=1", "a+b", a) == NULL);
    svc_arena_free(a);
}

TEST(query_get_bad_arguments) {
    svc_arena *a = svc_arena_new(0);
    CHECK(svc__query_get(NULL, "x", a) == NULL);
    CHECK(svc__query_get("x=1", NULL, a) == NULL);
    CHECK(svc__query_get("x=1", "", a) == NULL);
    CHECK(svc__query_get("x=1", "x", NULL) == NULL);
    svc_arena_free(a);
}

TEST(query_get_after_normalise) {
    svc_arena *a = svc_arena_new(0);
    const char *t = "/products?limit=30&skip=0&select=title,price&sortBy=price&order=asc";
    char *path, *query;
    CHECK_EQ(svc__path_normalize(t, strlen(t), a, &path, &query), SVC_OK);
    CHECK_STR(path, "/products");
    CHECK_STR(svc__query_get(query, "limit", a), "30");
    CHECK_STR(svc__query_get(query, "select", a), "title,price");
    CHECK_STR(svc__query_get(query, "order", a), "asc");
    svc_arena_free(a);
}
