/* Declared routes (svckit/schema.h): the validator, the check of
 * declarations, the 400 with details through dispatch, and /openapi.json. */
#include <stdlib.h>
#include <string.h>

#include "runtime/schema.h"
#include "svckit.h"
#include "svckit/test.h"
#include "../test.h"

static const svc_schema qty = {.type = SVC_INTEGER, .has_min = 1, .minimum = 1, .has_max = 1, .maximum = 99};
static const svc_schema pid = {.type = SVC_INTEGER, .has_min = 1, .minimum = 1};
static const char *const item_required[] = {"product_id", "quantity", NULL};
static const svc_schema item = {
    .type = SVC_OBJECT,
    .properties = (const svc_field[]){{"product_id", &pid}, {"quantity", &qty}, {0}},
    .required = item_required,
};
static const svc_schema name = {.type = SVC_STRING, .min_length = 2, .max_length = 5, .text = 1};
static const svc_schema slug = {.type = SVC_STRING, .pattern = "^[a-z]+$"};
static const svc_schema read_only_id = {.type = SVC_INTEGER, .read_only = 1};
static const char *const order_required[] = {"items", NULL};
static const svc_schema order = {
    .type = SVC_OBJECT,
    .properties = (const svc_field[]){{"id", &read_only_id},
                                      {"items", &(const svc_schema){.type = SVC_ARRAY, .items = &item,
                                                                    .min_items = 1, .max_items = 3}},
                                      {"name", &name},
                                      {"slug", &slug},
                                      {"price", &(const svc_schema){.type = SVC_NUMBER}},
                                      {0}},
    .required = order_required,
};

/* Validates text as JSON against s; the problems in *p. */
static void check(const svc_schema *s, const char *text, svc__problems *p) {
    svc__schema_set set = {0};
    char err[256];
    CHECK_EQ(svc__schema_prepare(&set, s, err, sizeof err), SVC_OK);
    json_t *v = NULL;
    CHECK_EQ(svc_json_parse(text, strlen(text), NULL, &v, NULL, 0), SVC_OK);
    memset(p, 0, sizeof *p);
    svc__schema_validate(&set, s, v, "body", p);
    json_decref(v);
    svc__schema_set_free(&set);
}

static int has(const svc__problems *p, const char *path, const char *text) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->list[i].path, path) == 0 && strcmp(p->list[i].text, text) == 0) return 1;
    return 0;
}

TEST(a_valid_body_has_no_problems) {
    svc__problems p;
    check(&order, "{\"items\":[{\"product_id\":7,\"quantity\":2}],\"name\":\"ab\",\"slug\":\"x\",\"price\":1.5}", &p);
    CHECK_EQ(p.n, 0);
    CHECK_EQ(p.more, 0);
}

TEST(every_problem_is_listed_by_json_pointer) {
    svc__problems p;
    check(&order,
          "{\"items\":[{\"product_id\":0,\"quantity\":100},{\"quantity\":\"2\"}],\"id\":1,\"x/y~\":1,"
          "\"name\":\"a\\u0007b\",\"slug\":\"A\",\"price\":\"1\"}",
          &p);
    CHECK(has(&p, "/items/0/product_id", "must be at least 1"));
    CHECK(has(&p, "/items/0/quantity", "must be an integer from 1 to 99"));
    CHECK(has(&p, "/items/1/quantity", "must be an integer"));
    CHECK(has(&p, "/items/1/product_id", "is required"));
    CHECK(has(&p, "/id", "is read-only"));
    CHECK(has(&p, "/x~1y~0", "is an unknown field"));
    CHECK(has(&p, "/name", "must not contain control characters but tab and newline: U+0007 at character 2"));
    CHECK(has(&p, "/slug", "must match ^[a-z]+$"));
    CHECK(has(&p, "/price", "must be a number"));
    CHECK_EQ(p.n, 9);
    char msg[300];
    svc__problems_message(&p, msg, sizeof msg);
    CHECK_STR(msg, "items/0/product_id must be at least 1 (and 8 more problems)");
}

TEST(lengths_count_characters_and_arrays_their_items) {
    svc__problems p;
    check(&order, "{\"items\":[],\"name\":\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}", &p);
    CHECK(has(&p, "/items", "must have 1 to 3 items"));
    CHECK_EQ(p.n, 1); /* five characters (ten bytes) fit max_length 5 */
    check(&order, "{\"items\":[{\"product_id\":1,\"quantity\":1}],\"name\":\"abcdef\"}", &p);
    CHECK(has(&p, "/name", "must be 2 to 5 characters long"));
    check(&order, "[1]", &p);
    CHECK(has(&p, "", "must be an object"));
    char msg[300];
    svc__problems_message(&p, msg, sizeof msg);
    CHECK_STR(msg, "request body must be an object");
}

TEST(integers_beyond_2_53_are_refused) {
    svc__problems p;
    check(&pid, "9007199254740993", &p);
    CHECK(has(&p, "", "must be an integer from -2^53 to 2^53"));
    check(&pid, "9007199254740992", &p);
    CHECK_EQ(p.n, 0);
    check(&(const svc_schema){.type = SVC_NUMBER}, "-9007199254740993", &p);
    CHECK(has(&p, "", "must be a number from -2^53 to 2^53"));
}

TEST(details_are_bounded) {
    svc_buf b = {0};
    svc_buf_puts(&b, "{\"items\":[{\"product_id\":1,\"quantity\":1}]");
    for (int i = 0; i < 100; i++) svc_buf_printf(&b, ",\"k%d\":1", i);
    svc_buf_puts(&b, "}");
    svc__problems p;
    check(&order, b.data, &p);
    CHECK_EQ(p.n, SVC_SCHEMA_MAX_DETAILS);
    CHECK_EQ(p.more, 1);
    char msg[300];
    svc__problems_message(&p, msg, sizeof msg);
    CHECK_STR(msg, "k0 is an unknown field (and more problems)");
    svc_buf_free(&b);
}

TEST(long_pointers_are_cut) {
    char text[600];
    memset(text, 0, sizeof text);
    strcpy(text, "{\"");
    memset(text + 2, 'k', 400);
    strcat(text, "\":1,\"items\":[{\"product_id\":1,\"quantity\":1}]}");
    svc__problems p;
    check(&order, text, &p);
    CHECK_EQ(p.n, 1);
    CHECK(strlen(p.list[0].path) < SVC__POINTER_MAX);
    CHECK(strstr(p.list[0].path, "...") != NULL);
}

TEST(parameters_are_checked_as_text) {
    svc__schema_set set = {0};
    static const svc_schema list = {.type = SVC_ARRAY, .items = &slug, .max_items = 2};
    char err[256];
    CHECK_EQ(svc__schema_prepare(&set, &list, err, sizeof err), SVC_OK);
    svc__problems p = {0};
    svc__schema_validate_text(&set, &qty, "limit", "12x", "query", &p);
    svc__schema_validate_text(&set, &qty, "limit2", "100", "query", &p);
    svc__schema_validate_text(&set, &list, "select", "ab,C", "query", &p);
    svc__schema_validate_text(&set, &list, "many", "a,b,c", "query", &p);
    svc__schema_validate_text(&set, &list, "fine", "ab,c", "query", &p);
    svc__schema_validate_text(&set, &name, "name", "\xc3\x28", "path", &p);
    svc__schema_validate_text(&set, &(const svc_schema){.type = SVC_BOOLEAN}, "b", "yes", "query", &p);
    svc__schema_validate_text(&set, &(const svc_schema){.type = SVC_NUMBER}, "n", "nan", "query", &p);
    svc__schema_validate_text(&set, &(const svc_schema){.type = SVC_NUMBER}, "tab", "\t1", "query", &p);
    svc__schema_validate_text(&set, &(const svc_schema){.type = SVC_NUMBER}, "lf", "\n1.5", "query", &p);
    CHECK(has(&p, "/limit", "must be an integer from 1 to 99"));
    CHECK(has(&p, "/limit2", "must be an integer from 1 to 99"));
    CHECK(has(&p, "/select/1", "must match ^[a-z]+$"));
    CHECK(has(&p, "/many", "must have at most 2 items"));
    CHECK(has(&p, "/name", "must be valid UTF-8 text without NUL"));
    CHECK(has(&p, "/b", "must be true or false"));
    CHECK(has(&p, "/n", "must be a number"));
    CHECK(has(&p, "/tab", "must be a number"));
    CHECK(has(&p, "/lf", "must be a number"));
    CHECK_EQ(p.n, 9);
    svc__schema_set_free(&set);
    /* A pattern regexec matches (not one bracket), on an element of a list too. */
    static const svc_schema pairs = {.type = SVC_STRING, .pattern = "^(ab)+$"};
    static const svc_schema pair_list = {.type = SVC_ARRAY, .items = &pairs};
    static const svc_schema dashed = {.type = SVC_STRING, .pattern = "^[-a-c.]*$"};
    CHECK_EQ(svc__schema_prepare(&set, &pair_list, err, sizeof err), SVC_OK);
    CHECK_EQ(svc__schema_prepare(&set, &dashed, err, sizeof err), SVC_OK);
    memset(&p, 0, sizeof p);
    svc__schema_validate_text(&set, &pair_list, "ok", "abab,ab", "query", &p);
    svc__schema_validate_text(&set, &dashed, "ok2", "-a.c", "query", &p);
    svc__schema_validate_text(&set, &dashed, "empty", "", "query", &p);
    CHECK_EQ(p.n, 0);
    svc__schema_validate_text(&set, &pair_list, "bad", "ab,aba", "query", &p);
    svc__schema_validate_text(&set, &dashed, "bad2", "a-d", "query", &p);
    CHECK(has(&p, "/bad/1", "must match ^(ab)+$"));
    CHECK(has(&p, "/bad2", "must match ^[-a-c.]*$"));
    CHECK_EQ(p.n, 2);
    svc__schema_set_free(&set);
}

/* A schema shared by several places (order's slug in a body, a response
 * and a route's body again) is compiled once, and still checked. */
TEST(a_shared_pattern_is_compiled_once) {
    svc__schema_set set = {0};
    char err[256];
    const svc_route_spec spec = {
        .body = &order,
        .responses = (const svc_response[]){{200, "", &order}, {201, "", &slug}, {0}},
    };
    CHECK_EQ(svc__schema_prepare_route(&set, "/o", &spec, err, sizeof err), SVC_OK);
    CHECK_EQ(svc__schema_prepare_route(&set, "/o2", &spec, err, sizeof err), SVC_OK);
    CHECK_EQ(set.npatterns, 1);
    svc__problems p = {0};
    svc__schema_validate_text(&set, &slug, "s", "Ab", "query", &p);
    CHECK(has(&p, "/s", "must match ^[a-z]+$"));
    svc__schema_set_free(&set);
}

TEST(invalid_declarations_are_named) {
    struct {
        svc_schema s;
        const char *err;
    } cases[] = {
        {{.type = SVC_STRING, .min_length = 3, .max_length = 2}, "bad min_length/max_length"},
        {{.type = SVC_NUMBER, .has_min = 1, .has_max = 1, .minimum = 2, .maximum = 1}, "maximum below minimum"},
        {{.type = (svc_type)42}, "unknown type 42"},
        {{.type = SVC_STRING, .pattern = "(["}, "pattern (["},
        {{.type = SVC_INTEGER, .pattern = "^a$"}, "pattern, enum_values and text are for strings"},
        {{.type = SVC_OBJECT, .required = item_required}, "required \"product_id\" is not among the properties"},
        {{.type = SVC_STRING, .items = &qty}, "items are for arrays"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        svc__schema_set set = {0};
        char err[256] = "";
        CHECK_EQ(svc__schema_prepare(&set, &cases[i].s, err, sizeof err), SVC_EINVAL);
        if (!strstr(err, cases[i].err)) test_fail(__FILE__, __LINE__, "case %zu: %s", i, err);
        svc__schema_set_free(&set);
    }
    svc__schema_set set = {0};
    char err[256] = "";
    const svc_schema *deep = &qty;
    svc_schema chain[SVC_SCHEMA_MAX_DEPTH + 2];
    for (int i = 0; i < SVC_SCHEMA_MAX_DEPTH + 2; i++) {
        chain[i] = (svc_schema){.type = SVC_ARRAY, .items = deep};
        deep = &chain[i];
    }
    CHECK_EQ(svc__schema_prepare(&set, deep, err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "nested deeper than") != NULL);
    svc__schema_set_free(&set);
    static const svc_param uid[] = {{"uid", &pid, 1, NULL}, {0}};
    static const svc_route_spec spec = {.path = uid};
    CHECK_EQ(svc__schema_prepare_route(&set, "/users/:id", &spec, err, sizeof err), SVC_EINVAL);
    CHECK_STR(err, "path parameter \"uid\" is not in the pattern");
    svc__schema_set_free(&set);
}

/* ---- through dispatch ------------------------------------------------------------ */

static svc_outcome create(svc_req *req, svc_res *res) {
    json_t *body = svc_req_json(req, res); /* checked: cannot fail */
    int64_t id;
    CHECK_EQ(svc_req_param_i64(req, "id", &id), SVC_OK);
    return svc_res_printf(res, 201, "text/plain", "%lld %zu", (long long)id,
                          json_array_size(json_object_get(body, "items")));
}

static const svc_route_spec create_spec = {
    .summary = "Create",
    .path = (const svc_param[]){{"id", &pid, 1, NULL}, {0}},
    .query = (const svc_param[]){{"n", &qty, 1, NULL}, {0}},
    .body = &order,
    .responses = (const svc_response[]){{201, "created", NULL}, {0}},
};

static svc_test *app_with(const svc_route_spec *spec) {
    setenv("JWT_SECRET", "0123456789abcdef0123456789abcdef", 1); /* for the SVC_AUTH_USER route */
    svc_app *app = svc_app_new("schema-test", 0, NULL);
    svc_app_post(app, "/things/:id", create, 0);
    svc_app_get(app, "/plain/*rest", create, SVC_AUTH_USER);
    CHECK_EQ(svc_app_route_spec(app, "POST", "/things/:id", spec), SVC_OK);
    return svc_test_new(app);
}

static const char *const json_headers[] = {"Content-Type", "application/json", NULL};

static svc_test_res *post(svc_test *t, const char *target, const char *body) {
    return svc_test_request(t, "POST", target, json_headers, body, strlen(body));
}

TEST(the_handler_runs_only_for_a_valid_request) {
    svc_test *t = app_with(&create_spec);
    CHECK(t != NULL);
    svc_test_res *r = post(t, "/things/4?n=2", "{\"items\":[{\"product_id\":1,\"quantity\":1}]}");
    CHECK_EQ(svc_test_res_status(r), 201);
    CHECK_STR(svc_test_res_body(r, NULL), "4 1");
    svc_test_res_free(r);

    r = post(t, "/things/0?n=2&n=3", "{\"items\":[]}");
    CHECK_EQ(svc_test_res_status(r), 400);
    json_t *doc = svc_test_res_json(r);
    json_t *e = json_object_get(doc, "error");
    CHECK_STR(json_string_value(json_object_get(e, "code")), "bad_request");
    CHECK_STR(json_string_value(json_object_get(e, "message")), "id must be at least 1 (and 1 more problem)");
    json_t *d = json_object_get(e, "details");
    CHECK_EQ(json_array_size(d), 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(d, 1), "path")), "/n");
    CHECK_STR(json_string_value(json_object_get(json_array_get(d, 1), "in")), "query");
    CHECK_STR(json_string_value(json_object_get(json_array_get(d, 1), "problem")), "must not be repeated");
    svc_test_res_free(r);

    r = post(t, "/things/1", "{\"items\":[]}");
    d = json_object_get(json_object_get(svc_test_res_json(r), "error"), "details");
    CHECK_EQ(json_array_size(d), 1); /* the missing parameter; the body waits for it */
    CHECK_STR(json_string_value(json_object_get(json_array_get(d, 0), "path")), "/n");
    CHECK_STR(json_string_value(json_object_get(json_array_get(d, 0), "problem")), "is required");
    svc_test_res_free(r);

    r = svc_test_request(t, "POST", "/things/1?n=1", NULL, "{}", 2);
    CHECK_EQ(svc_test_res_status(r), 415);
    svc_test_res_free(r);
    r = post(t, "/things/1?n=1", "{\"items\":");
    CHECK_EQ(svc_test_res_status(r), 400);
    CHECK_STR(json_string_value(json_object_get(json_object_get(svc_test_res_json(r), "error"), "code")),
              "invalid_json");
    svc_test_res_free(r);
    svc_test_free(t);
}

/* Header parameters: checked like query ones ("in": "header", the name as
 * declared), matched case-insensitively, documented with "in": "header". */
static const svc_schema key_schema = {.type = SVC_STRING, .min_length = 1, .max_length = 4, .pattern = "^[ -~]*$"};
static const svc_route_spec keyed_spec = {
    .path = (const svc_param[]){{"id", &pid, 1, NULL}, {0}},
    .header = (const svc_param[]){{"X-Key", &key_schema, 1, "a key"}, {"X-Count", &qty, 0, NULL}, {0}},
    .body = &order,
};

static svc_test_res *post_keyed(svc_test *t, const char *key, const char *count) {
    const char *h[7] = {"Content-Type", "application/json"};
    int n = 2;
    if (key) h[n++] = "x-KEY", h[n++] = key;
    if (count) h[n++] = "X-Count", h[n++] = count;
    const char *body = "{\"items\":[{\"product_id\":1,\"quantity\":1}]}";
    return svc_test_request(t, "POST", "/things/4", h, body, strlen(body));
}

static void check_header_problem(svc_test_res *r, const char *path, const char *problem) {
    CHECK_EQ(svc_test_res_status(r), 400);
    json_t *d = json_array_get(json_object_get(json_object_get(svc_test_res_json(r), "error"), "details"), 0);
    CHECK_STR(json_string_value(json_object_get(d, "in")), "header");
    CHECK_STR(json_string_value(json_object_get(d, "path")), path);
    CHECK_STR(json_string_value(json_object_get(d, "problem")), problem);
    svc_test_res_free(r);
}

TEST(declared_headers_are_checked_and_documented) {
    svc_test *t = app_with(&keyed_spec);
    CHECK(t != NULL);
    svc_test_res *r = post_keyed(t, "ab c", NULL);
    CHECK_EQ(svc_test_res_status(r), 201);
    svc_test_res_free(r);
    r = post_keyed(t, NULL, "2");
    CHECK_STR(json_string_value(json_object_get(json_object_get(svc_test_res_json(r), "error"), "message")),
              "X-Key is required");
    check_header_problem(r, "/X-Key", "is required");
    check_header_problem(post_keyed(t, "abcde", NULL), "/X-Key", "must be 1 to 4 characters long");
    check_header_problem(post_keyed(t, "\xc3\xa9", NULL), "/X-Key", "must match ^[ -~]*$");
    check_header_problem(post_keyed(t, "k", "100"), "/X-Count", "must be an integer from 1 to 99");

    r = svc_test_request(t, "GET", "/openapi.json", NULL, NULL, 0);
    json_t *op = json_object_get(json_object_get(json_object_get(svc_test_res_json(r), "paths"), "/things/{id}"), "post");
    json_t *params = json_object_get(op, "parameters");
    CHECK_EQ(json_array_size(params), 3);
    json_t *key = json_array_get(params, 1);
    CHECK_STR(json_string_value(json_object_get(key, "name")), "X-Key");
    CHECK_STR(json_string_value(json_object_get(key, "in")), "header");
    CHECK(json_is_true(json_object_get(key, "required")));
    CHECK_STR(json_string_value(json_object_get(json_array_get(params, 2), "in")), "header");
    CHECK(json_is_false(json_object_get(json_array_get(params, 2), "required")));
    svc_test_res_free(r);
    svc_test_free(t);

    static const svc_schema list = {.type = SVC_ARRAY, .items = &key_schema};
    static const svc_param list_header[] = {{"X-List", &list, 0, NULL}, {0}};
    static const svc_route_spec bad = {.header = list_header};
    CHECK(app_with(&bad) == NULL); /* a header is a scalar */
}

/* A query array whose schema has .repeat: its occurrences add up to one list,
 * checked as one (max_items counts them all); svc_req_query_all hands the
 * handler that list. */
static svc_outcome echo_tags(svc_req *req, svc_res *res) {
    const char *v = svc_req_query_all(req, "tags");
    return svc_res_printf(res, 200, "text/plain", "%s", v ? v : "(none)");
}

static const svc_schema tag = {.type = SVC_STRING, .max_length = 3};
static const svc_schema tags = {.type = SVC_ARRAY, .items = &tag, .max_items = 3, .repeat = 1};
static const svc_route_spec tags_spec = {.query = (const svc_param[]){{"tags", &tags, 0, NULL}, {0}}};
static const svc_schema repeated_integer = {.type = SVC_INTEGER, .repeat = 1};
static const svc_route_spec repeated_integer_spec = {
    .query = (const svc_param[]){{"n", &repeated_integer, 0, NULL}, {0}}};

TEST(a_repeatable_query_array_adds_up_its_occurrences) {
    svc_app *app = svc_app_new("schema-test", 0, NULL);
    svc_app_get(app, "/tags", echo_tags, 0);
    CHECK_EQ(svc_app_route_spec(app, "GET", "/tags", &tags_spec), SVC_OK);
    svc_test *t = svc_test_new(app);
    CHECK(t != NULL);
    static const struct { const char *target; int status; const char *body; } cases[] = {
        {"/tags?tags=a&tags=b,c", 200, "a,b,c"},
        {"/tags?tags=a", 200, "a"},
        {"/tags?x=1&tags=a%2Cb&y&tags=", 200, "a,b,"},
        {"/tags", 200, "(none)"},
        {"/tags?tags=a&tags=b&tags=c&tags=d", 400, NULL},    /* 4 items, max 3 */
        {"/tags?tags=abcd&tags=a", 400, NULL},               /* an item too long */
        {"/tags?tags=a&tags=%zz", 400, NULL},                /* does not decode */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        svc_test_res *r = svc_test_request(t, "GET", cases[i].target, NULL, NULL, 0);
        CHECK_EQ(svc_test_res_status(r), cases[i].status);
        if (cases[i].body) CHECK_STR(svc_test_res_body(r, NULL), cases[i].body);
        svc_test_res_free(r);
    }
    svc_test_free(t);

    /* Only a query array may repeat: anything else is a declaration error. */
    svc__schema_set set = {0};
    char err[256] = "";
    CHECK_EQ(svc__schema_prepare_route(&set, "/x", &repeated_integer_spec, err, sizeof err), SVC_EINVAL);
    CHECK_STR(err, "parameter \"n\": only a query array may repeat");
    svc__schema_set_free(&set);
}

/* A declared query parameter whose value does not decode (a bad escape,
 * %00) is a 400 naming it, not a NULL handed to the validator. */
TEST(an_undecodable_query_value_is_a_problem) {
    svc_test *t = app_with(&create_spec);
    CHECK(t != NULL);
    const char *targets[] = {"/things/1?n=%zz", "/things/1?n=%00", "/things/1?%6e=%4", NULL};
    for (const char *const *target = targets; *target; target++) {
        svc_test_res *r = post(t, *target, "{\"items\":[{\"product_id\":1,\"quantity\":1}]}");
        CHECK_EQ(svc_test_res_status(r), 400);
        json_t *d = json_object_get(json_object_get(svc_test_res_json(r), "error"), "details");
        CHECK_EQ(json_array_size(d), 1);
        CHECK_STR(json_string_value(json_object_get(json_array_get(d, 0), "path")), "/n");
        CHECK_STR(json_string_value(json_object_get(json_array_get(d, 0), "problem")),
                  "has a bad percent-escape or %00");
        svc_test_res_free(r);
    }
    svc_test_res *r = post(t, "/things/1?n=%32", "{\"items\":[{\"product_id\":1,\"quantity\":1}]}");
    CHECK_EQ(svc_test_res_status(r), 201);
    svc_test_res_free(r);
    svc_test_free(t);
}

/* A declaration for a route never added (a typo, or before svc_app_route)
 * would leave a handler that relies on the checks unguarded. */
TEST(a_declaration_for_no_route_stops_the_start) {
    svc_app *app = svc_app_new("schema-test", 0, NULL);
    svc_app_post(app, "/things/:id", create, 0);
    CHECK_EQ(svc_app_route_spec(app, "POST", "/things/:id", &create_spec), SVC_OK);
    CHECK_EQ(svc_app_route_spec(app, "GET", "/things/:id", &create_spec), SVC_ENOTFOUND);
    CHECK(svc_test_new(app) == NULL);
}

TEST(an_invalid_declaration_stops_the_start) {
    static const svc_schema bad_pattern = {.type = SVC_STRING, .pattern = "(["};
    static const svc_route_spec bad = {.body = &bad_pattern};
    CHECK(app_with(&bad) == NULL);
}

TEST(openapi_lists_every_route) {
    svc_test *t = app_with(&create_spec);
    svc_test_res *r = svc_test_request(t, "GET", "/openapi.json", NULL, NULL, 0);
    CHECK_EQ(svc_test_res_status(r), 200);
    json_t *doc = svc_test_res_json(r);
    CHECK_STR(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    json_t *paths = json_object_get(doc, "paths");
    CHECK_EQ(json_object_size(paths), 6); /* two routes and four builtins */
    const char *const want[] = {"/things/{id}", "/plain/{rest}", "/healthz", "/readyz", "/metrics", "/openapi.json"};
    for (size_t i = 0; i < 6; i++) CHECK(json_object_get(paths, want[i]) != NULL);
    json_t *op = json_object_get(json_object_get(paths, "/things/{id}"), "post");
    CHECK_STR(json_string_value(json_object_get(op, "summary")), "Create");
    CHECK_EQ(json_array_size(json_object_get(op, "parameters")), 2);
    CHECK(json_object_get(json_object_get(op, "responses"), "400") != NULL);
    json_t *plain = json_object_get(json_object_get(paths, "/plain/{rest}"), "get");
    json_t *param = json_array_get(json_object_get(plain, "parameters"), 0);
    CHECK_STR(json_string_value(json_object_get(param, "name")), "rest");
    CHECK_STR(json_string_value(json_object_get(param, "in")), "path");
    CHECK(json_object_get(plain, "security") != NULL);
    CHECK(json_object_get(json_object_get(plain, "responses"), "default") != NULL);
    svc_test_res_free(r);
    svc_test_free(t);
}

TEST(validate_outside_a_request) {
    char err[200];
    json_t *v = json_pack("{s:[{s:i,s:i}]}", "items", "product_id", 1, "quantity", 0);
    CHECK_EQ(svc_schema_validate(&order, v, err, sizeof err), SVC_EINVAL);
    CHECK_STR(err, "items/0/quantity must be an integer from 1 to 99");
    json_decref(v);
    v = json_string("Ab");
    CHECK_EQ(svc_schema_validate(&slug, v, err, sizeof err), SVC_EINVAL);
    CHECK_STR(err, "value must match ^[a-z]+$");
    json_decref(v);
    v = json_string("ab");
    CHECK_EQ(svc_schema_validate(&slug, v, NULL, 0), SVC_OK);
    static const svc_schema bad = {.type = SVC_STRING, .pattern = "(["};
    CHECK_EQ(svc_schema_validate(&bad, v, err, sizeof err), SVC_EINVAL);
    CHECK(strncmp(err, "invalid schema: pattern ([", 26) == 0);
    json_decref(v);
}

TEST(an_offloaded_route_is_checked_on_the_thread_pool_too) {
    setenv("JWT_SECRET", "0123456789abcdef0123456789abcdef", 1);
    svc_app *app = svc_app_new("schema-test", 0, NULL);
    svc_app_put(app, "/things/:id", create, SVC_OFFLOAD);
    CHECK_EQ(svc_app_route_spec(app, "PUT", "/things/:id", &create_spec), SVC_OK);
    svc_test *t = svc_test_new(app);
    const char *good = "{\"items\":[{\"product_id\":1,\"quantity\":1}]}";
    svc_test_res *r = svc_test_request(t, "PUT", "/things/3?n=1", json_headers, good, strlen(good));
    CHECK_EQ(svc_test_res_status(r), 201);
    CHECK_STR(svc_test_res_body(r, NULL), "3 1");
    svc_test_res_free(r);
    r = svc_test_request(t, "PUT", "/things/3?n=1", json_headers, "{\"items\":[]}", 12);
    CHECK_EQ(svc_test_res_status(r), 400);
    json_t *d = json_object_get(json_object_get(svc_test_res_json(r), "error"), "details");
    CHECK_STR(json_string_value(json_object_get(json_array_get(d, 0), "problem")), "must have 1 to 3 items");
    svc_test_res_free(r);
    svc_test_free(t);
}

/* svc_json_read: a struct filled from a checked object. */
typedef struct thing {
    char name[4 * 5 + 1];
    int64_t n;
    double x;
    bool on;
    char tags[2 + 2 * ((4 * 5 + 2) + 1) + 1];
    char pos[64];
    char free_text[8];
} thing;

static const svc_schema coord = {.type = SVC_INTEGER};
static const svc_schema thing_schema = {
    .type = SVC_OBJECT,
    .properties = (const svc_field[]){
        {"name", &(const svc_schema)SVC_TEXT(1, 5, .at = SVC_AT(thing, name))},
        {"n", &(const svc_schema)SVC_RANGE(SVC_INTEGER, 0, 9, .at = SVC_AT(thing, n))},
        {"x", &(const svc_schema){.type = SVC_NUMBER, .at = SVC_AT(thing, x)}},
        {"on", &(const svc_schema){.type = SVC_BOOLEAN, .at = SVC_AT(thing, on)}},
        {"tags", &(const svc_schema){.type = SVC_ARRAY, .items = &(const svc_schema)SVC_TEXT(0, 5), .max_items = 2,
                                     .at = SVC_AT(thing, tags)}},
        {"pos", &(const svc_schema){.type = SVC_OBJECT,
                                    .properties = (const svc_field[]){{"x", &coord}, {"y", &coord}, {0}},
                                    .at = SVC_AT(thing, pos)}},
        {"note", &name},
        {0}},
};

TEST(a_checked_object_is_read_into_its_members) {
    svc__problems p;
    const char *text = "{\"name\":\"\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\","
                       "\"n\":7,\"x\":2.5,\"on\":true,\"tags\":[\"a\\\"b\",\"\"],\"pos\":{\"x\":-3,\"y\":4},\"note\":\"ab\"}";
    check(&thing_schema, text, &p);
    CHECK_EQ(p.n, 0);
    json_t *v = NULL;
    CHECK_EQ(svc_json_parse(text, strlen(text), NULL, &v, NULL, 0), SVC_OK);
    thing t;
    memset(&t, 0x55, sizeof t);
    CHECK_EQ(svc_json_read(&thing_schema, v, &t), (uint64_t)0x7F); /* note is set, not read */
    CHECK_EQ(strlen(t.name), 20); /* five 4-byte characters: the most, and its NUL, fit */
    CHECK_EQ(t.n, 7);
    CHECK(t.x == 2.5);
    CHECK(t.on);
    CHECK_STR(t.tags, "[\"a\\\"b\",\"\"]");
    CHECK_STR(t.pos, "{\"x\":-3,\"y\":4}");
    CHECK_EQ((unsigned char)t.free_text[0], 0x55); /* no field is read into it */
    json_decref(v);
    v = json_pack("{s:i}", "n", 3);
    CHECK_EQ(svc_json_read(&thing_schema, v, &t), (uint64_t)1 << 1);
    json_decref(v);
}

TEST(members_that_may_not_fit_are_declaration_errors) {
    struct {
        svc_schema s;
        const char *err;
    } cases[] = {
        {SVC_TEXT(0, 6, .at = SVC_AT(thing, name)), "has a member of 21 bytes; it takes up to 25"},
        {{.type = SVC_STRING, .at = SVC_AT(thing, name)}, "nothing limits its length"},
        {{.type = SVC_INTEGER, .at = SVC_AT(thing, x)}, "", /* a double's size matches: the type is not checked */},
        {{.type = SVC_INTEGER, .at = SVC_AT(thing, on)}, "has a member of 1 bytes; it takes 8"},
        {{.type = SVC_BOOLEAN, .at = SVC_AT(thing, n)}, "has a member of 8 bytes; it takes 1"},
        {{.type = SVC_ARRAY, .items = &coord, .at = SVC_AT(thing, tags)}, "nothing limits its length"},
        {{.type = SVC_ARRAY, .items = &(const svc_schema)SVC_TEXT(0, 6), .max_items = 2, .at = SVC_AT(thing, tags)},
         "it takes up to 57"},
        {{.type = SVC_OBJECT, .open = 1, .at = SVC_AT(thing, pos)}, "nothing limits its length"},
        {{.type = SVC_ANY, .at = SVC_AT(thing, pos)}, "nothing limits its length"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        svc_schema object = {.type = SVC_OBJECT, .properties = (const svc_field[]){{"f", &cases[i].s}, {0}}};
        svc__schema_set set = {0};
        char err[256] = "";
        int rc = svc__schema_prepare(&set, &object, err, sizeof err);
        if (*cases[i].err ? rc != SVC_EINVAL || !strstr(err, cases[i].err) : rc != SVC_OK)
            test_fail(__FILE__, __LINE__, "case %zu: %d %s", i, rc, err);
        if (*cases[i].err && !strstr(err, "/properties/f")) test_fail(__FILE__, __LINE__, "case %zu: %s", i, err);
        svc__schema_set_free(&set);
    }
    svc__schema_set set = {0};
    char err[256] = "";
    CHECK_EQ(svc__schema_prepare(&set, &thing_schema, err, sizeof err), SVC_OK);
    svc__schema_set_free(&set);
}

TEST(field_index_matches_whole_names) {
    const svc_field *f = thing_schema.properties;
    CHECK_EQ(svc_field_index(f, "pos", 3), 5);
    CHECK_EQ(svc_field_index(f, "posx", 3), 5); /* the first len bytes */
    CHECK_EQ(svc_field_index(f, "po", 2), -1);
    CHECK_EQ(svc_field_index(f, "nope", 4), -1);
    CHECK_EQ(svc_field_index(NULL, "n", 1), -1);
}
