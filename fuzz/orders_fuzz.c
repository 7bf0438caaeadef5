/*
 * Fuzzes what orders makes of outside bytes (services/orders/validate.c,
 * included here: the Makefile links a fuzz target with the library only):
 * a POST /orders body through svc_json_parse, the declared schema's check
 * (orders_new, as the library makes it before the handler) and
 * orders_parse_body, and
 * any JSON number as a price through orders_price_cents.
 *
 * Besides the sanitizers it checks, on every input:
 *
 *  1. An accepted body (both checks) has 1..ORDERS_MAX_LINES lines, each product_id in
 *     1..2^53-1 and quantity in 1..100, no product twice; a refused one
 *     says why (a non-empty message).
 *  2. A price that converts is within half a cent (plus the double's own
 *     rounding) of price x 100, never negative.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../services/orders/validate.c"
#include "runtime/schema.h"

#include "fuzz_util.h"

static void check_price(const json_t *v) {
    int64_t cents = -1;
    if (orders_price_cents(v, &cents) != SVC_OK) return;
    CHECK(cents >= 0);
    double exact = json_number_value(v) * 100;
    CHECK(fabs((double)cents - exact) <= 0.5 + fabs(exact) * 1e-15 + 1e-9);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *doc = NULL;
    if (svc_json_parse((const char *)data, size, NULL, &doc, NULL, 0) != SVC_OK) return 0;
    if (json_is_number(doc)) check_price(doc);
    order_line lines[ORDERS_MAX_LINES];
    int n = -1;
    char err[160] = "";
    /* As a request: the declaration's check (the library's), then the rule
     * orders_parse_body adds. */
    static svc__schema_set set;
    static int prepared;
    if (!prepared) {
        CHECK(svc__schema_prepare(&set, &orders_new, err, sizeof err) == SVC_OK);
        prepared = 1;
    }
    svc__problems problems = {0};
    svc__schema_validate(&set, &orders_new, doc, "body", &problems);
    if (problems.n) {
        svc__problems_message(&problems, err, sizeof err);
        CHECK(err[0] != '\0');
    } else if (orders_parse_body(doc, lines, &n, err, sizeof err) == SVC_OK) {
        CHECK(n >= 1 && n <= ORDERS_MAX_LINES);
        for (int i = 0; i < n; i++) {
            CHECK(lines[i].product_id >= 1 && lines[i].product_id <= ORDERS_MAX_PRODUCT_ID);
            CHECK(lines[i].quantity >= 1 && lines[i].quantity <= ORDERS_MAX_QUANTITY);
            for (int j = 0; j < i; j++) CHECK(lines[j].product_id != lines[i].product_id);
        }
    } else {
        CHECK(err[0] != '\0');
    }
    /* Every member of every line, as a price (numbers only). */
    const json_t *items = json_object_get(doc, "items");
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it) {
        check_price(json_object_get(it, "product_id"));
        check_price(json_object_get(it, "quantity"));
    }
    json_decref(doc);
    return 0;
}
