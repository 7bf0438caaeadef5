/*
 * Fuzzes the validator of declared routes (runtime/schema.h): a JSON body
 * against a schema using every keyword, and the same bytes as the text of
 * query parameters (scalars and comma lists).
 *
 * Besides the sanitizers, it checks:
 *  - at most SVC_SCHEMA_MAX_DETAILS problems are kept, and "more" only once
 *    the list is full;
 *  - every problem has its "in", a non-empty text, and a pointer that is ""
 *    or starts with '/', shorter than SVC__POINTER_MAX;
 *  - validating twice gives the same problems;
 *  - a body with no problem has the declared shape: an object whose
 *    "items" is an array of 1 to 4 objects; svc_json_read puts its note,
 *    price, gift and items (as JSON text) in their members, NUL-terminated,
 *    within them (a guard after them untouched), the items text the same
 *    value.
 * Then the bytes go through dispatch to a declared route (svc_test, in
 * memory): up to the first newline as the query of POST /r/1 and as the
 * value of its declared headers X-Qty and X-Note, the rest as the JSON body.
 * It checks that the answer is 200, 400 or 415, that a 400 is the library's
 * JSON error, and that the handler runs only with a body of the declared
 * shape and a qty (query and header) it can read as declared.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/schema.h"
#include "svckit.h"
#include "svckit/test.h"

#include "fuzz_util.h"

/* The members svc_json_read fills. */
typedef struct read_out {
    char note[4 * 8 + 1];
    double price;
    bool gift;
    char items[2 + 4 * (2 + (2 * 10 + 3 + 20 + 1) + (2 * 8 + 3 + 20 + 1) + 1) + 1];
    char guard[8];
} read_out;

static const svc_schema qty = {.type = SVC_INTEGER, .has_min = 1, .minimum = 1, .has_max = 1, .maximum = 99};
static const svc_schema pid = {.type = SVC_INTEGER, .has_min = 1, .minimum = 1};
static const char *const item_required[] = {"product_id", "quantity", NULL};
static const svc_schema item = {
    .type = SVC_OBJECT,
    .properties = (const svc_field[]){{"product_id", &pid}, {"quantity", &qty}, {0}},
    .required = item_required,
};
static const svc_schema items = {.type = SVC_ARRAY, .items = &item, .min_items = 1, .max_items = 4,
                                 .at = SVC_AT(read_out, items)};
static const svc_schema text = SVC_TEXT(1, 8, .at = SVC_AT(read_out, note));
static const svc_schema slug = {.type = SVC_STRING, .pattern = "^[a-z0-9-]+$"};
static const char *const colours[] = {"red", "green", NULL};
static const svc_schema colour = {.type = SVC_STRING, .enum_values = colours};
static const svc_schema price = SVC_RANGE(SVC_NUMBER, 0, 1e9, .at = SVC_AT(read_out, price));
static const svc_schema flag = {.type = SVC_BOOLEAN, .at = SVC_AT(read_out, gift)};
static const svc_schema id = {.type = SVC_INTEGER, .read_only = 1};
static const svc_schema any = {.type = SVC_ANY};
static const svc_schema tags = {.type = SVC_ARRAY, .items = &slug, .max_items = 3};
static const char *const body_required[] = {"items", NULL};
static const svc_schema body = {
    .type = SVC_OBJECT,
    .properties = (const svc_field[]){{"id", &id}, {"items", &items}, {"note", &text}, {"slug", &slug},
                                      {"colour", &colour}, {"price", &price}, {"gift", &flag},
                                      {"meta", &any}, {"tags", &tags}, {0}},
    .required = body_required,
    .min_properties = 1,
};
static const svc_schema *const params[] = {&qty, &price, &flag, &text, &slug, &colour, &tags};

static svc__schema_set set;

static const svc_route_spec route_spec = {
    .path = (const svc_param[]){{"id", &pid, 1, NULL}, {0}},
    .query = (const svc_param[]){{"qty", &qty, 0, NULL}, {"price", &price, 0, NULL}, {"gift", &flag, 0, NULL},
                                 {"note", &text, 0, NULL}, {"slug", &slug, 0, NULL}, {"colour", &colour, 0, NULL},
                                 {"tags", &tags, 0, NULL}, {0}},
    .header = (const svc_param[]){{"X-Qty", &qty, 0, NULL}, {"X-Note", &text, 0, NULL}, {0}},
    .body = &body,
};

static svc_outcome declared(svc_req *req, svc_res *res) {
    json_t *v = svc_req_json(req, res);
    CHECK(v != NULL);
    json_t *it = json_object_get(v, "items");
    CHECK(json_is_array(it) && json_array_size(it) >= 1 && json_array_size(it) <= 4);
    int64_t n;
    for (int i = 0; i < 2; i++) {
        const char *q = i ? svc_req_header(req, "x-qty") : svc_req_query(req, "qty");
        CHECK(!q || (svc_parse_i64(q, &n) == SVC_OK && n >= 1 && n <= 99));
    }
    return svc_res_printf(res, 200, "text/plain", "ok");
}

static svc_test *test_app(void) {
    setenv("LOG_LEVEL", "error", 1);
    svc_app *a = svc_app_new("schema-fuzz", 0, NULL);
    CHECK(a && svc_app_post(a, "/r/:id", declared, 0) == SVC_OK);
    CHECK(svc_app_route_spec(a, "POST", "/r/:id", &route_spec) == SVC_OK);
    svc_test *t = svc_test_new(a);
    CHECK(t != NULL);
    return t;
}

static void check_problems(const svc__problems *p) {
    CHECK(p->n >= 0 && p->n <= SVC_SCHEMA_MAX_DETAILS);
    CHECK(!p->more || p->n == SVC_SCHEMA_MAX_DETAILS);
    for (int i = 0; i < p->n; i++) {
        const svc__problem *d = &p->list[i];
        CHECK(d->in && d->text[0]);
        CHECK(d->path[0] == '\0' || d->path[0] == '/');
        CHECK(strlen(d->path) < SVC__POINTER_MAX);
    }
    char msg[SVC__PROBLEM_MAX + SVC__POINTER_MAX + 32];
    svc__problems_message(p, msg, sizeof msg);
    CHECK(msg[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!set.npatterns) {
        char err[256];
        CHECK(svc__schema_prepare(&set, &body, err, sizeof err) == SVC_OK);
        for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
            CHECK(svc__schema_prepare(&set, params[i], err, sizeof err) == SVC_OK);
    }
    json_t *v = NULL;
    svc_json_limits lim = {.max_bytes = 64 * 1024};
    if (svc_json_parse((const char *)data, size, &lim, &v, NULL, 0) == SVC_OK) {
        svc__problems a = {0}, b = {0};
        svc__schema_validate(&set, &body, v, "body", &a);
        svc__schema_validate(&set, &body, v, "body", &b);
        check_problems(&a);
        CHECK(memcmp(&a, &b, sizeof a) == 0);
        if (!a.n) {
            json_t *it = json_object_get(v, "items");
            CHECK(json_is_array(it) && json_array_size(it) >= 1 && json_array_size(it) <= 4);
            for (size_t i = 0; i < json_array_size(it); i++) CHECK(json_is_object(json_array_get(it, i)));
            read_out out;
            memset(&out, 0x7F, sizeof out);
            uint64_t got = svc_json_read(&body, v, &out);
            CHECK(got & (1u << 1));
            for (size_t i = 0; i < sizeof out.guard; i++) CHECK(out.guard[i] == 0x7F);
            CHECK(memchr(out.items, '\0', sizeof out.items) != NULL);
            json_t *back = json_loads(out.items, 0, NULL);
            CHECK(back && json_equal(back, it));
            json_decref(back);
            if (got & (1u << 2)) CHECK(memchr(out.note, '\0', sizeof out.note) != NULL);
        }
        json_decref(v);
    }
    /* The bytes as a parameter's text: a C string, as the query gives it. */
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    svc__problems p = {0};
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        svc__schema_validate_text(&set, params[i], "p", s, "query", &p);
    check_problems(&p);
    free(s);

    /* Through dispatch: "/r/1?" the first line, the body the rest. */
    static svc_test *t;
    if (!t) t = test_app();
    const uint8_t *nl = memchr(data, '\n', size);
    size_t qlen = nl ? (size_t)(nl - data) : size;
    char *target = malloc(qlen + 8);
    if (!target) return 0;
    memcpy(target, "/r/1?", 5);
    memcpy(target + 5, data, qlen);
    target[5 + qlen] = '\0';
    const char *const headers[] = {"Content-Type", "application/json", "X-Qty", target + 5, "X-Note", target + 5, NULL};
    const uint8_t *b = nl ? nl + 1 : data + size;
    svc_test_res *r = svc_test_request(t, "POST", target, headers, b, (size_t)(data + size - b));
    free(target);
    CHECK(r != NULL);
    int status = svc_test_res_status(r);
    CHECK(status == 200 || status == 400 || status == 415);
    if (status == 400) {
        json_t *e = json_object_get(svc_test_res_json(r), "error");
        CHECK(json_is_string(json_object_get(e, "code")) && json_is_string(json_object_get(e, "message")));
    }
    svc_test_res_free(r);
    return 0;
}
