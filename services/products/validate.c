/* Input checks: every 400 says which field and why. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "products.h"

static int field_index(const char *name, size_t len) {
    for (int f = 0; f < F_COUNT; f++)
        if (strlen(product_fields[f]) == len && memcmp(product_fields[f], name, len) == 0) return f;
    return -1;
}

static int query_i64(svc_req *req, const char *name, int64_t def, int64_t lo, int64_t hi, int64_t *out,
                     char *err, size_t errlen) {
    const char *v = svc_req_query(req, name);
    *out = def;
    if (!v) return SVC_OK;
    if (svc_parse_i64(v, out) != SVC_OK || *out < lo || *out > hi) {
        snprintf(err, errlen, "%s must be an integer from %lld to %lld", name, (long long)lo, (long long)hi);
        return SVC_EINVAL;
    }
    return SVC_OK;
}

/* Characters in a UTF-8 string (the JSON parser has already rejected invalid UTF-8). */
static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

/*
 * The first control character (Unicode category Cc) other than tab and
 * newline: C0 (U+0000..U+001F), DEL (U+007F) and C1 (U+0080..U+009F, which
 * UTF-8 writes as C2 80..C2 9F; U+009B is a terminal's CSI). Returns its code
 * point and sets *at to its position in characters from 1; -1 if none.
 */
static long first_control(const char *s, size_t *at) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t chars = 1; *p; p++) {
        if ((*p & 0xC0) == 0x80) continue; /* inside a character */
        long cp = -1;
        if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7F) cp = *p;
        else if (*p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F) cp = p[1];
        if (cp >= 0) {
            *at = chars;
            return cp;
        }
        chars++;
    }
    return -1;
}

int products_parse_list_query(svc_req *req, list_query *q, char *err, size_t errlen) {
    memset(q, 0, sizeof *q);
    q->select = F_ALL;
    q->sort_field = F_ID;
    if (query_i64(req, "limit", PRODUCTS_DEFAULT_LIMIT, 1, PRODUCTS_MAX_LIMIT, &q->limit, err, errlen) ||
        query_i64(req, "skip", 0, 0, PRODUCTS_MAX_SKIP, &q->skip, err, errlen))
        return SVC_EINVAL;
    const char *select = svc_req_query(req, "select");
    if (select) {
        q->select = 1u << F_ID;
        const char *p = select;
        while (*p) {
            size_t n = strcspn(p, ",");
            int f = field_index(p, n);
            if (f < 0) {
                snprintf(err, errlen, "select: unknown field \"%.*s\"", (int)(n > 40 ? 40 : n), p);
                return SVC_EINVAL;
            }
            q->select |= 1u << f;
            p += n;
            if (*p == ',') p++;
        }
    }
    const char *sort = svc_req_query(req, "sortBy");
    if (sort) {
        int f = field_index(sort, strlen(sort));
        if (f < 0) {
            snprintf(err, errlen, "sortBy: unknown field \"%.40s\"", sort);
            return SVC_EINVAL;
        }
        q->sort_field = f;
    }
    const char *order = svc_req_query(req, "order");
    if (order) {
        if (strcmp(order, "asc") == 0) q->desc = 0;
        else if (strcmp(order, "desc") == 0) q->desc = 1;
        else {
            snprintf(err, errlen, "order must be asc or desc");
            return SVC_EINVAL;
        }
    }
    return SVC_OK;
}

static int want_string(const json_t *v, const char *name, size_t min, size_t max, char *dst, size_t dstlen,
                       char *err, size_t errlen) {
    if (!json_is_string(v)) {
        snprintf(err, errlen, "%s must be a string", name);
        return SVC_EINVAL;
    }
    const char *s = json_string_value(v);
    size_t bytes = json_string_length(v);
    size_t chars = utf8_chars(s);
    if (chars < min || chars > max || bytes >= dstlen) {
        snprintf(err, errlen, "%s must be %zu to %zu characters long", name, min, max);
        return SVC_EINVAL;
    }
    size_t at;
    long cp = first_control(s, &at);
    if (cp >= 0) {
        snprintf(err, errlen, "%s must not contain control characters but tab and newline: U+%04lX at character %zu",
                 name, cp, at);
        return SVC_EINVAL;
    }
    memcpy(dst, s, bytes + 1);
    return SVC_OK;
}

static int want_number(const json_t *v, const char *name, double min, double max, double *out, char *err,
                       size_t errlen) {
    if (!json_is_number(v)) {
        snprintf(err, errlen, "%s must be a number", name);
        return SVC_EINVAL;
    }
    double d = json_number_value(v);
    if (!isfinite(d) || d < min || d > max) {
        snprintf(err, errlen, "%s must be a number from %.15g to %.15g", name, min, max);
        return SVC_EINVAL;
    }
    *out = d;
    return SVC_OK;
}

static int category_ok(const char *s) {
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-')) return 0;
    return 1;
}

int products_parse_body(const json_t *body, unsigned required, product *p, unsigned *set, char *err,
                        size_t errlen) {
    *set = 0;
    const char *key;
    if (svc_json_only_keys(body, product_fields, &key) != SVC_OK) {
        if (key) snprintf(err, errlen, "unknown field \"%.40s\"", key);
        else snprintf(err, errlen, "request body must be a JSON object");
        return SVC_EINVAL;
    }
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        int f = field_index(key, strlen(key)); /* found: every key is a field */
        if (!(F_WRITABLE & (1u << f))) {
            snprintf(err, errlen, "field \"%s\" is read-only", key);
            return SVC_EINVAL;
        }
        int rc = SVC_OK;
        switch (f) {
        case F_TITLE:
            rc = want_string(v, "title", 1, PRODUCTS_TITLE_MAX, p->title, sizeof p->title, err, errlen);
            break;
        case F_DESCRIPTION:
            rc = want_string(v, "description", 0, PRODUCTS_DESCRIPTION_MAX, p->description,
                             sizeof p->description, err, errlen);
            break;
        case F_CATEGORY:
            rc = want_string(v, "category", 1, PRODUCTS_CATEGORY_MAX, p->category, sizeof p->category, err,
                             errlen);
            if (rc == SVC_OK && !category_ok(p->category)) {
                snprintf(err, errlen, "category must use only a-z, 0-9 and -");
                rc = SVC_EINVAL;
            }
            break;
        case F_BRAND:
            rc = want_string(v, "brand", 0, PRODUCTS_BRAND_MAX, p->brand, sizeof p->brand, err, errlen);
            break;
        case F_PRICE: rc = want_number(v, "price", 0, PRODUCTS_PRICE_MAX, &p->price, err, errlen); break;
        case F_RATING: rc = want_number(v, "rating", 0, 5, &p->rating, err, errlen); break;
        case F_STOCK:
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > PRODUCTS_STOCK_MAX) {
                snprintf(err, errlen, "stock must be an integer from 0 to %d", PRODUCTS_STOCK_MAX);
                rc = SVC_EINVAL;
            } else {
                p->stock = json_integer_value(v);
            }
            break;
        }
        if (rc != SVC_OK) return rc;
        *set |= 1u << f;
    }
    unsigned missing = required & ~*set;
    if (missing) {
        for (int f = 0; f < F_COUNT; f++) {
            if (missing & (1u << f)) {
                snprintf(err, errlen, "field \"%s\" is required", product_fields[f]);
                return SVC_EINVAL;
            }
        }
    }
    if (*set == 0) {
        snprintf(err, errlen, "request body must set at least one field");
        return SVC_EINVAL;
    }
    return SVC_OK;
}
