/* What orders' routes take (declared, svckit/schema.h: the library checks
 * it), checked bodies -> lines; products' prices -> integer cents. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orders.h"

#define PRICE_MAX 1e13 /* past any catalog price (products caps at 1e9) */
/* An order's total (store.c: the sum of price_cents x quantity over its lines)
 * cannot overflow: 1e15 x 100 x 50 = 5e18 < 2^63. */
_Static_assert((int64_t)PRICE_MAX * 100 <= INT64_MAX / ORDERS_MAX_QUANTITY / ORDERS_MAX_LINES,
               "PRICE_MAX, ORDERS_MAX_QUANTITY and ORDERS_MAX_LINES let an order's total overflow");

#define RANGE(lo, hi) .has_min = 1, .has_max = 1, .minimum = (lo), .maximum = (hi)

static const svc_schema product_id = {.type = SVC_INTEGER, RANGE(1, ORDERS_MAX_PRODUCT_ID)};
static const svc_schema quantity = {.type = SVC_INTEGER, RANGE(1, ORDERS_MAX_QUANTITY)};
static const char *const line_required[] = {"product_id", "quantity", NULL};
static const svc_schema line = {
    .type = SVC_OBJECT,
    .properties = (const svc_field[]){{"product_id", &product_id}, {"quantity", &quantity}, {0}},
    .required = line_required,
};
static const svc_schema lines_schema = {.type = SVC_ARRAY, .items = &line, .min_items = 1,
                                        .max_items = ORDERS_MAX_LINES};
static const char *const body_required[] = {"items", NULL};
const svc_schema orders_new = {
    .type = SVC_OBJECT,
    .properties = (const svc_field[]){{"items", &lines_schema}, {0}},
    .required = body_required,
};

static const svc_schema limit = {.type = SVC_INTEGER, RANGE(0, ORDERS_MAX_LIMIT)};
static const svc_schema skip = {.type = SVC_INTEGER, RANGE(0, ORDERS_MAX_SKIP)};
const svc_param orders_list_query[] = {
    {"limit", &limit, 0, "orders per page (default 30)"},
    {"skip", &skip, 0, "orders to skip"},
    {0},
};
/* The Idempotency-Key the store takes (svc_db_idem_key_valid): 1 to
 * SVC_DB_IDEM_KEY_MAX printable ASCII characters. */
static const svc_schema idempotency_key = {.type = SVC_STRING, .min_length = 1, .max_length = SVC_DB_IDEM_KEY_MAX,
                                           .pattern = "^[ -~]*$", .description = "printable ASCII"};
const svc_param orders_new_headers[] = {
    {"Idempotency-Key", &idempotency_key, 1, "the same key and body give the same order"},
    {0},
};
static const svc_schema id = {.type = SVC_INTEGER, .has_min = 1, .minimum = 1};
const svc_param orders_id_path[] = {{"id", &id, 1, NULL}, {0}};

int orders_parse_body(const json_t *body, order_line *lines, int *n, char *err, size_t errlen) {
    const json_t *items = json_object_get(body, "items");
    size_t count = json_array_size(items);
    for (size_t i = 0; i < count; i++) {
        const json_t *it = json_array_get(items, i);
        order_line *l = &lines[i];
        l->product_id = json_integer_value(json_object_get(it, "product_id"));
        l->quantity = json_integer_value(json_object_get(it, "quantity"));
        l->price_cents = 0;
        for (size_t j = 0; j < i; j++)
            if (lines[j].product_id == l->product_id) {
                snprintf(err, errlen, "items[%zu]: product %lld is already in items[%zu]", i,
                         (long long)l->product_id, j);
                return SVC_EINVAL;
            }
    }
    *n = (int)count;
    return SVC_OK;
}

/* The shortest "%.*e" text that reads back as v: the decimal products wrote
 * (its JSON writer prints the shortest round-trip form). */
static void shortest(double v, char out[40]) {
    for (int prec = 0; prec < 17; prec++) {
        snprintf(out, 40, "%.*e", prec, v);
        if (strtod(out, NULL) == v) return;
    }
    snprintf(out, 40, "%.16e", v);
}

int orders_price_cents(const json_t *price, int64_t *cents) {
    if (json_is_integer(price)) {
        json_int_t v = json_integer_value(price);
        if (v < 0 || v > (json_int_t)PRICE_MAX) return SVC_EINVAL;
        *cents = (int64_t)v * 100;
        return SVC_OK;
    }
    if (!json_is_real(price)) return SVC_EINVAL;
    double v = json_real_value(price);
    if (!isfinite(v) || v < 0 || v > PRICE_MAX) return SVC_EINVAL;
    /* "d.ddde+XX": digits D (k of them), value = D x 10^(XX - k + 1),
     * cents = D x 10^(XX - k + 3). */
    char text[40];
    shortest(v, text);
    int64_t digits = 0;
    int k = 0;
    const char *p = text;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits = digits * 10 + (*p - '0'), k++;
    if (*p != 'e') return SVC_EINVAL;
    int shift = atoi(p + 1) - k + 3;
    if (shift >= 0) {
        for (int i = 0; i < shift; i++) digits *= 10; /* <= 1e15: no overflow */
        *cents = digits;
        return SVC_OK;
    }
    if (-shift > 17) { /* below half a cent: digits < 10^17 */
        *cents = 0;
        return SVC_OK;
    }
    int64_t div = 1;
    for (int i = 0; i < -shift; i++) div *= 10;
    *cents = digits / div + (digits % div * 2 >= div ? 1 : 0); /* half up */
    return SVC_OK;
}
