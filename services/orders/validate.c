/* POST /orders bodies -> checked lines; products' prices -> integer cents. */
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

static int want_int(const json_t *v, const char *name, int i, int64_t min, int64_t max, int64_t *out, char *err,
                    size_t errlen) {
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(err, errlen, "items[%d].%s must be an integer from %lld to %lld", i, name, (long long)min,
                 (long long)max);
        return SVC_EINVAL;
    }
    *out = (int64_t)json_integer_value(v);
    return SVC_OK;
}

int orders_parse_body(const json_t *body, order_line *lines, int *n, char *err, size_t errlen) {
    static const char *const top[] = {"items", NULL};
    static const char *const line_keys[] = {"product_id", "quantity", NULL};
    const char *unknown = NULL;
    if (!json_is_object(body) || svc_json_only_keys(body, top, &unknown) != SVC_OK) {
        if (unknown) snprintf(err, errlen, "unknown field \"%.40s\"", unknown);
        else snprintf(err, errlen, "request body must be a JSON object {\"items\":[...]}");
        return SVC_EINVAL;
    }
    const json_t *items = json_object_get(body, "items");
    size_t count = json_array_size(items);
    if (!json_is_array(items) || count < 1 || count > ORDERS_MAX_LINES) {
        snprintf(err, errlen, "items must be an array of 1 to %d lines", ORDERS_MAX_LINES);
        return SVC_EINVAL;
    }
    for (size_t i = 0; i < count; i++) {
        const json_t *it = json_array_get(items, i);
        unknown = NULL;
        if (!json_is_object(it) || svc_json_only_keys(it, line_keys, &unknown) != SVC_OK) {
            if (unknown) snprintf(err, errlen, "items[%zu]: unknown field \"%.40s\"", i, unknown);
            else snprintf(err, errlen, "items[%zu] must be an object {\"product_id\",\"quantity\"}", i);
            return SVC_EINVAL;
        }
        order_line *l = &lines[i];
        if (want_int(json_object_get(it, "product_id"), "product_id", (int)i, 1, ORDERS_MAX_PRODUCT_ID,
                     &l->product_id, err, errlen) != SVC_OK ||
            want_int(json_object_get(it, "quantity"), "quantity", (int)i, 1, ORDERS_MAX_QUANTITY, &l->quantity, err,
                     errlen) != SVC_OK)
            return SVC_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (lines[j].product_id == l->product_id) {
                snprintf(err, errlen, "items[%zu]: product %lld is already in items[%zu]", i,
                         (long long)l->product_id, j);
                return SVC_EINVAL;
            }
        l->price_cents = 0;
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
