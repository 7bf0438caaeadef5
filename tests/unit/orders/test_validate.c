/* orders' checks of outside input: POST bodies, prices to integer cents,
 * and saga event ids (services/orders/validate.c, services/saga.h). */
#include "../../../services/orders/validate.c"
#include "runtime/schema.h"
#include "../test.h"

static int64_t cents_of(const char *json_number) {
    json_t *v = NULL;
    CHECK_EQ(svc_json_parse(json_number, strlen(json_number), NULL, &v, NULL, 0), SVC_OK);
    int64_t c = -1;
    int rc = orders_price_cents(v, &c);
    json_decref(v);
    return rc == SVC_OK ? c : -1;
}

TEST(prices_are_exact_cents) {
    CHECK_EQ(cents_of("19.99"), 1999);      /* 19.99 * 100 is 1998.9999999999998 in binary */
    CHECK_EQ(cents_of("0.29"), 29);         /* and 0.29 * 100 is 28.999999999999996 */
    CHECK_EQ(cents_of("1.005"), 101);       /* half a cent rounds up, from the decimal text */
    CHECK_EQ(cents_of("0.125"), 13);
    CHECK_EQ(cents_of("0.124"), 12);
    CHECK_EQ(cents_of("335.99"), 33599);
    CHECK_EQ(cents_of("12.0"), 1200);
    CHECK_EQ(cents_of("7"), 700);
    CHECK_EQ(cents_of("0"), 0);
    CHECK_EQ(cents_of("1e9"), 100000000000LL);
    CHECK_EQ(cents_of("1e-300"), 0);
    CHECK_EQ(cents_of("-1.5"), -1);         /* refused */
    CHECK_EQ(cents_of("1e14"), -1);         /* past any price */
}

/* As a request: the declaration's check (the library's), then the rule
 * orders_parse_body adds; err gets the first problem. */
static int parse(const char *body, order_line *lines, int *n, char *err) {
    json_t *v = NULL;
    CHECK_EQ(svc_json_parse(body, strlen(body), NULL, &v, NULL, 0), SVC_OK);
    svc__schema_set set = {0};
    CHECK_EQ(svc__schema_prepare(&set, &orders_new, err, 160), SVC_OK);
    svc__problems p = {0};
    svc__schema_validate(&set, &orders_new, v, "body", &p);
    svc__schema_set_free(&set);
    int rc = SVC_EINVAL;
    if (p.n) svc__problems_message(&p, err, 160);
    else rc = orders_parse_body(v, lines, n, err, 160);
    json_decref(v);
    return rc;
}

TEST(bodies) {
    order_line lines[ORDERS_MAX_LINES];
    int n = 0;
    char err[160];
    CHECK_EQ(parse("{\"items\":[{\"product_id\":3,\"quantity\":2},{\"product_id\":4,\"quantity\":100}]}", lines, &n,
                   err),
             SVC_OK);
    CHECK_EQ(n, 2);
    CHECK_EQ(lines[1].product_id, 4);
    CHECK_EQ(lines[1].quantity, 100);
    static const char *const bad[] = {
        "{\"items\":[]}",
        "{\"items\":[{\"product_id\":1,\"quantity\":0}]}",
        "{\"items\":[{\"product_id\":1,\"quantity\":101}]}",
        "{\"items\":[{\"product_id\":1,\"quantity\":1e9}]}",
        "{\"items\":[{\"product_id\":1,\"quantity\":2.0}]}",
        "{\"items\":[{\"product_id\":-7,\"quantity\":1}]}",
        "{\"items\":[{\"product_id\":\"7\",\"quantity\":1}]}",
        "{\"items\":[{\"product_id\":9007199254740992,\"quantity\":1}]}",
        "{\"items\":[{\"product_id\":1,\"quantity\":1},{\"product_id\":1,\"quantity\":1}]}",
        "{\"items\":[{\"product_id\":1,\"quantity\":1,\"note\":\"x\"}]}",
        "{\"items\":[{\"product_id\":1}]}",
        "{\"items\":{}}",
        "{\"lines\":[]}",
        "[]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK_EQ(parse(bad[i], lines, &n, err), SVC_EINVAL);
        CHECK(err[0] != '\0');
    }
    /* 51 lines: one past the limit. */
    svc_buf b = {0};
    svc_buf_puts(&b, "{\"items\":[");
    for (int i = 1; i <= ORDERS_MAX_LINES + 1; i++)
        svc_buf_printf(&b, "%s{\"product_id\":%d,\"quantity\":1}", i > 1 ? "," : "", i);
    svc_buf_puts(&b, "]}");
    CHECK_EQ(parse(b.data, lines, &n, err), SVC_EINVAL);
    CHECK_STR(err, "items must have 1 to 50 items");
    svc_buf_free(&b);
}

TEST(event_ids) {
    CHECK(saga_event_id_ok("0123456789abcdef.1"));
    CHECK(saga_event_id_ok("0123456789ABCDEF.123456789"));
    CHECK(!saga_event_id_ok(NULL));
    CHECK(!saga_event_id_ok(""));
    CHECK(!saga_event_id_ok("forged-1"));
    CHECK(!saga_event_id_ok("0123456789abcdef."));
    CHECK(!saga_event_id_ok("0123456789abcdef.1x"));
    CHECK(!saga_event_id_ok("0123456789abcdeg.1"));
    CHECK(!saga_event_id_ok("0123456789abcdef.12345678901234567890123456"));
}
