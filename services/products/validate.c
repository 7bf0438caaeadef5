/* What products' routes take and answer, declared (svckit/schema.h): the
 * library checks every request against it before a handler runs, so what is
 * left here reads checked values into C structs. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "products.h"

#define NUMBER(lo, hi) .has_min = 1, .has_max = 1, .minimum = (lo), .maximum = (hi)

static const svc_schema id = {.type = SVC_INTEGER, .read_only = 1, .has_min = 1, .minimum = 1};
static const svc_schema title = {.type = SVC_STRING, .min_length = 1, .max_length = PRODUCTS_TITLE_MAX, .text = 1};
static const svc_schema description = {.type = SVC_STRING, .max_length = PRODUCTS_DESCRIPTION_MAX, .text = 1};
static const svc_schema category = {.type = SVC_STRING, .min_length = 1, .max_length = PRODUCTS_CATEGORY_MAX,
                                    .pattern = "^[a-z0-9-]+$", .description = "a slug: a-z, 0-9 and -"};
static const svc_schema brand = {.type = SVC_STRING, .max_length = PRODUCTS_BRAND_MAX, .text = 1};
static const svc_schema price = {.type = SVC_NUMBER, NUMBER(0, PRODUCTS_PRICE_MAX)};
static const svc_schema stock = {.type = SVC_INTEGER, NUMBER(0, PRODUCTS_STOCK_MAX)};
static const svc_schema rating = {.type = SVC_NUMBER, NUMBER(0, 5)};
static const svc_schema timestamp = {.type = SVC_STRING, .read_only = 1, .description = "RFC 3339, UTC"};
static const svc_schema discount = {.type = SVC_NUMBER, NUMBER(0, PRODUCTS_DISCOUNT_MAX)};
static const svc_schema sku = {.type = SVC_STRING, .max_length = PRODUCTS_SKU_MAX, .text = 1};
static const svc_schema tag = {.type = SVC_STRING, .min_length = 1, .max_length = PRODUCTS_TAG_MAX, .text = 1};
static const svc_schema tags = {.type = SVC_ARRAY, .items = &tag, .max_items = PRODUCTS_TAGS_MAX};
static const svc_schema url = {.type = SVC_STRING, .max_length = PRODUCTS_URL_MAX, .text = 1};
static const svc_schema images = {.type = SVC_ARRAY, .items = &url, .max_items = PRODUCTS_IMAGES_MAX};
static const svc_schema availability = {
    .type = SVC_STRING, .read_only = 1, .description = "from stock: In Stock, Low Stock (under 10), Out of Stock",
    .enum_values = (const char *const[]){"In Stock", "Low Stock", "Out of Stock", NULL}};
static const svc_schema meta = {
    .type = SVC_OBJECT, .read_only = 1, .description = "createdAt and updatedAt, as created_at and updated_at",
    .properties = (const svc_field[]){{"createdAt", &timestamp}, {"updatedAt", &timestamp}, {0}}};

static const svc_schema weight = {.type = SVC_NUMBER, NUMBER(0, PRODUCTS_WEIGHT_MAX)};
static const char *const dimension_names[] = {"width", "height", "depth", NULL};
static const svc_schema dimensions = {
    .type = SVC_OBJECT, .required = dimension_names,
    .properties = (const svc_field[]){{"width", &weight}, {"height", &weight}, {"depth", &weight}, {0}}};
static const svc_schema policy = {.type = SVC_STRING, .max_length = PRODUCTS_POLICY_MAX, .text = 1};
static const svc_schema min_order = {.type = SVC_INTEGER, NUMBER(1, PRODUCTS_MIN_ORDER_MAX)};
static const svc_schema stars = {.type = SVC_INTEGER, NUMBER(1, 5)};
static const svc_schema comment = {.type = SVC_STRING, .max_length = PRODUCTS_COMMENT_MAX, .text = 1};
static const svc_schema review_date = {.type = SVC_STRING, .max_length = 40, .text = 1,
                                       .description = "when, as the client writes it (RFC 3339 advised)"};
static const svc_schema reviewer = {.type = SVC_STRING, .max_length = PRODUCTS_NAME_MAX, .text = 1};
static const svc_schema email = {.type = SVC_STRING, .max_length = PRODUCTS_EMAIL_MAX, .text = 1};
static const svc_schema review = {
    .type = SVC_OBJECT, .required = (const char *const[]){"rating", "comment", NULL},
    .properties = (const svc_field[]){{"rating", &stars}, {"comment", &comment}, {"date", &review_date},
                                      {"reviewerName", &reviewer}, {"reviewerEmail", &email}, {0}}};
static const svc_schema reviews = {.type = SVC_ARRAY, .items = &review, .max_items = PRODUCTS_REVIEWS_MAX};

/* In the order of the F_* fields. */
static const svc_field fields[] = {
    {"id", &id}, {"title", &title}, {"description", &description}, {"category", &category},
    {"brand", &brand}, {"price", &price}, {"stock", &stock}, {"rating", &rating},
    {"created_at", &timestamp}, {"updated_at", &timestamp},
    {"discountPercentage", &discount}, {"sku", &sku}, {"tags", &tags}, {"thumbnail", &url},
    {"images", &images}, {"availabilityStatus", &availability}, {"meta", &meta},
    {"weight", &weight}, {"dimensions", &dimensions}, {"warrantyInformation", &policy},
    {"shippingInformation", &policy}, {"returnPolicy", &policy}, {"minimumOrderQuantity", &min_order},
    {"reviews", &reviews}, {0},
};
static const char *const required[] = {"title", "category", "price", NULL};
const svc_schema products_product = {.type = SVC_OBJECT, .properties = fields, .open = 1};
const svc_schema products_new = {.type = SVC_OBJECT, .properties = fields, .required = required,
                                 .description = "a whole product (POST)"};
const svc_schema products_change = {.type = SVC_OBJECT, .properties = fields, .min_properties = 1,
                                    .description = "the fields to change (PUT, PATCH)"};

/* As DummyJSON: a name that is no field is ignored (select drops it, sortBy
 * sorts by id), and order's case does not matter. */
static const svc_schema field_name = {.type = SVC_STRING, .max_length = PRODUCTS_FIELD_NAME_MAX,
                                      .description = "a field's name; other names are ignored"};
static const svc_schema limit = {.type = SVC_INTEGER, NUMBER(0, PRODUCTS_MAX_LIMIT)};
static const svc_schema skip = {.type = SVC_INTEGER, NUMBER(0, PRODUCTS_MAX_SKIP)};
static const svc_schema select_ = {.type = SVC_ARRAY, .items = &field_name, .max_items = PRODUCTS_SELECT_MAX,
                                   .repeat = 1};
static const svc_schema order = {.type = SVC_STRING, .pattern = "^([aA][sS][cC]|[dD][eE][sS][cC])$",
                                 .description = "asc or desc, in any case"};
#define SELECT {"select", &select_, 0, "the fields to return (id always; other names ignored)"}
#define LIST_QUERY                                                                      \
    {"limit", &limit, 0, "products per page (default 30; 0: the most, 100)"},           \
    {"skip", &skip, 0, "products to skip"},                                             \
    SELECT,                                                                             \
    {"sortBy", &field_name, 0, "the field to sort by (default id, also for other names)"}, \
    {"order", &order, 0, "asc (default) or desc"}
const svc_param products_list_query[] = {LIST_QUERY, {0}};
const svc_param products_get_query[] = {SELECT, {0}};
static const svc_schema words = {.type = SVC_STRING};
const svc_param products_search_query[] = {
    {"q", &words, 0, "what to look for in title, description, brand and category"}, LIST_QUERY, {0}};
static const svc_schema id_param = {.type = SVC_INTEGER, .has_min = 1, .minimum = 1};
const svc_param products_id_path[] = {{"id", &id_param, 1, NULL}, {0}};

static const svc_schema count = {.type = SVC_INTEGER};
static const svc_schema product_list = {.type = SVC_ARRAY, .items = &products_product};
static const svc_schema text = {.type = SVC_STRING};
const svc_schema products_categories = {
    .type = SVC_ARRAY,
    .items = &(const svc_schema){.type = SVC_OBJECT,
                                 .properties = (const svc_field[]){{"slug", &text}, {"name", &text}, {"url", &text}, {0}}},
};
const svc_schema products_category_list = {.type = SVC_ARRAY, .items = &text};
const svc_schema products_page = {
    .type = SVC_OBJECT,
    .properties = (const svc_field[]){{"products", &product_list}, {"total", &count}, {"skip", &count},
                                      {"limit", &count}, {0}},
};

/* The F_* of a field's name, or -1. */
static int field_index(const char *name, size_t len) {
    for (int f = 0; f < F_COUNT; f++)
        if (strlen(product_fields[f]) == len && memcmp(product_fields[f], name, len) == 0) return f;
    return -1;
}

static int64_t query_i64(svc_req *req, const char *name, int64_t def) {
    const char *v = svc_req_query(req, name);
    int64_t n = def;
    if (v) svc_parse_i64(v, &n);
    return n;
}

unsigned products_select_read(svc_req *req) {
    const char *select = svc_req_query_all(req, "select");
    if (!select || !*select) return F_ALL;
    unsigned mask = 1u << F_ID;
    for (const char *p = select; *p; p += *p == ',') {
        size_t n = strcspn(p, ",");
        int f = field_index(p, n);
        if (f >= 0) mask |= 1u << f;
        p += n;
    }
    return mask;
}

void products_list_query_read(svc_req *req, list_query *q) {
    memset(q, 0, sizeof *q);
    q->limit = query_i64(req, "limit", PRODUCTS_DEFAULT_LIMIT);
    if (q->limit == 0) q->limit = PRODUCTS_MAX_LIMIT;
    q->skip = query_i64(req, "skip", 0);
    q->select = products_select_read(req);
    const char *sort = svc_req_query(req, "sortBy");
    int f = sort ? field_index(sort, strlen(sort)) : -1;
    q->sort_field = f >= 0 ? f : F_ID;
    const char *o = svc_req_query(req, "order");
    q->desc = o && strcasecmp(o, "desc") == 0;
}

/* A checked array or object as compact JSON in out (n bytes), which the
 * declared limits make big enough (products.h sizes each buffer). */
static void value_json(const json_t *v, char *out, size_t n, const char *empty) {
    size_t len = json_dumpb(v, out, n - 1, JSON_COMPACT);
    if (len >= n) len = (size_t)snprintf(out, n, "%s", empty); /* unreachable within the limits */
    out[len] = '\0';
}

unsigned products_body_read(const json_t *body, product *p) {
    unsigned set = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        int f = field_index(key, strlen(key));
        char *s = f == F_TITLE ? p->title : f == F_DESCRIPTION ? p->description : f == F_CATEGORY ? p->category
                : f == F_BRAND ? p->brand : f == F_SKU ? p->sku : f == F_THUMBNAIL ? p->thumbnail
                : f == F_WARRANTY ? p->warranty : f == F_SHIPPING ? p->shipping
                : f == F_RETURN_POLICY ? p->return_policy : NULL;
        if (s) memcpy(s, json_string_value(v), json_string_length(v) + 1);
        else if (f == F_TAGS) value_json(v, p->tags, sizeof p->tags, "[]");
        else if (f == F_IMAGES) value_json(v, p->images, sizeof p->images, "[]");
        else if (f == F_REVIEWS) value_json(v, p->reviews, sizeof p->reviews, "[]");
        else if (f == F_DIMENSIONS) value_json(v, p->dimensions, sizeof p->dimensions, "{}");
        else if (f == F_WEIGHT) p->weight = json_number_value(v);
        else if (f == F_MIN_ORDER) p->min_order = json_integer_value(v);
        else if (f == F_DISCOUNT) p->discount = json_number_value(v);
        else if (f == F_PRICE) p->price = json_number_value(v);
        else if (f == F_RATING) p->rating = json_number_value(v);
        else if (f == F_STOCK) p->stock = json_integer_value(v);
        set |= 1u << f;
    }
    return set;
}
