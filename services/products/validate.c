/* What products' routes take and answer (svckit/schema.h): the library checks
 * each request against it and reads a checked body into a product. */
#include <string.h>
#include <strings.h>

#include "products.h"

#define TEXT(max, ...) &(const svc_schema)SVC_TEXT(0, max, __VA_ARGS__)
#define RANGE(type, lo, hi, ...) &(const svc_schema)SVC_RANGE(type, lo, hi, __VA_ARGS__)
#define LIST(item, n, ...) &(const svc_schema){.type = SVC_ARRAY, .items = (item), .max_items = (n), __VA_ARGS__}
#define OBJECT(...) .type = SVC_OBJECT, .properties = (const svc_field[]){__VA_ARGS__, {0}}
#define AT(member) .at = SVC_AT(product, member)

static const svc_schema url = SVC_TEXT(0, PRODUCTS_URL_MAX), text = {.type = SVC_STRING};
static const svc_schema weight = SVC_RANGE(SVC_NUMBER, 0, PRODUCTS_WEIGHT_MAX), count = {.type = SVC_INTEGER};
static const svc_schema timestamp = {.type = SVC_STRING, .read_only = 1, .description = "RFC 3339, UTC"};
static const svc_schema date = {.type = SVC_STRING, .max_length = 40, .text = 1,
                                .description = "when, as the client writes it (RFC 3339 advised)"};
static const svc_schema review = {
    OBJECT({"rating", RANGE(SVC_INTEGER, 1, 5)}, {"comment", TEXT(PRODUCTS_COMMENT_MAX)}, {"date", &date},
           {"reviewerName", TEXT(PRODUCTS_NAME_MAX)}, {"reviewerEmail", TEXT(PRODUCTS_EMAIL_MAX)}),
    .required = (const char *const[]){"rating", "comment", NULL}};
#define DIMENSIONS OBJECT({"width", &weight}, {"height", &weight}, {"depth", &weight}), \
                   .required = (const char *const[]){"width", "height", "depth", NULL}

/* In the order of the F_* fields, each with the product member it is read into. */
const svc_field products_fields[F_COUNT + 1] = {
    {"id", &(const svc_schema){.type = SVC_INTEGER, .read_only = 1, .has_min = 1, .minimum = 1}},
    {"title", &(const svc_schema)SVC_TEXT(1, PRODUCTS_TITLE_MAX, AT(title))},
    {"description", TEXT(PRODUCTS_DESCRIPTION_MAX, AT(description))},
    {"category", &(const svc_schema){.type = SVC_STRING, .min_length = 1, .max_length = PRODUCTS_CATEGORY_MAX,
                                     .pattern = "^[a-z0-9-]+$", .description = "a slug: a-z, 0-9 and -", AT(category)}},
    {"brand", TEXT(PRODUCTS_BRAND_MAX, AT(brand))},
    {"price", RANGE(SVC_NUMBER, 0, PRODUCTS_PRICE_MAX, AT(price))},
    {"stock", RANGE(SVC_INTEGER, 0, PRODUCTS_STOCK_MAX, AT(stock))},
    {"rating", RANGE(SVC_NUMBER, 0, 5, AT(rating))},
    {"created_at", &timestamp},
    {"updated_at", &timestamp},
    {"discountPercentage", RANGE(SVC_NUMBER, 0, PRODUCTS_DISCOUNT_MAX, AT(discount))},
    {"sku", TEXT(PRODUCTS_SKU_MAX, AT(sku))},
    {"tags", LIST(&(const svc_schema)SVC_TEXT(1, PRODUCTS_TAG_MAX), PRODUCTS_TAGS_MAX, AT(tags))},
    {"thumbnail", TEXT(PRODUCTS_URL_MAX, AT(thumbnail))},
    {"images", LIST(&url, PRODUCTS_IMAGES_MAX, AT(images))},
    {"availabilityStatus", &(const svc_schema){
        .type = SVC_STRING, .read_only = 1, .description = "from stock: In Stock, Low Stock (under 10), Out of Stock",
        .enum_values = (const char *const[]){"In Stock", "Low Stock", "Out of Stock", NULL}}},
    {"meta", &(const svc_schema){OBJECT({"createdAt", &timestamp}, {"updatedAt", &timestamp}), .read_only = 1,
                                 .description = "createdAt and updatedAt, as created_at and updated_at"}},
    {"weight", RANGE(SVC_NUMBER, 0, PRODUCTS_WEIGHT_MAX, AT(weight))},
    {"dimensions", &(const svc_schema){DIMENSIONS, AT(dimensions)}},
    {"warrantyInformation", TEXT(PRODUCTS_POLICY_MAX, AT(warranty))},
    {"shippingInformation", TEXT(PRODUCTS_POLICY_MAX, AT(shipping))},
    {"returnPolicy", TEXT(PRODUCTS_POLICY_MAX, AT(return_policy))},
    {"minimumOrderQuantity", RANGE(SVC_INTEGER, 1, PRODUCTS_MIN_ORDER_MAX, AT(min_order))},
    {"reviews", LIST(&review, PRODUCTS_REVIEWS_MAX, AT(reviews))},
    {0},
};
const svc_schema products_product = {.type = SVC_OBJECT, .properties = products_fields, .open = 1};
const svc_schema products_new = {.type = SVC_OBJECT, .properties = products_fields,
                                 .required = (const char *const[]){"title", "category", "price", NULL},
                                 .description = "a whole product (POST)"};
const svc_schema products_change = {.type = SVC_OBJECT, .properties = products_fields, .min_properties = 1,
                                    .description = "the fields to change (PUT, PATCH)"};
const svc_schema products_categories = {.type = SVC_ARRAY, .items = &(const svc_schema){
                                            OBJECT({"slug", &text}, {"name", &text}, {"url", &text})}};
const svc_schema products_category_list = {.type = SVC_ARRAY, .items = &text};
const svc_schema products_page = {OBJECT({"products", LIST(&products_product, 0)}, {"total", &count},
                                         {"skip", &count}, {"limit", &count})};

/* As DummyJSON: a name that is no field is ignored (select drops it, sortBy
 * sorts by id), and order's case does not matter. */
static const svc_schema field_name = {.type = SVC_STRING, .max_length = PRODUCTS_FIELD_NAME_MAX,
                                      .description = "a field's name; other names are ignored"};
#define SELECT {"select", LIST(&field_name, PRODUCTS_SELECT_MAX, .repeat = 1), 0, "the fields to return (id always; other names ignored)"}
#define LIST_QUERY                                                                                          \
    {"limit", RANGE(SVC_INTEGER, 0, PRODUCTS_MAX_LIMIT), 0, "products per page (default 30; 0: the most, 100)"}, \
    {"skip", RANGE(SVC_INTEGER, 0, PRODUCTS_MAX_SKIP), 0, "products to skip"}, SELECT,                           \
    {"sortBy", &field_name, 0, "the field to sort by (default id, also for other names)"},                      \
    {"order", &(const svc_schema){.type = SVC_STRING, .pattern = "^([aA][sS][cC]|[dD][eE][sS][cC])$",          \
                                  .description = "asc or desc, in any case"}, 0, "asc (default) or desc"}
const svc_param products_list_query[] = {LIST_QUERY, {0}};
const svc_param products_get_query[] = {SELECT, {0}};
const svc_param products_search_query[] = {
    {"q", &text, 0, "what to look for in title, description, brand and category"}, LIST_QUERY, {0}};
const svc_param products_id_path[] = {
    {"id", &(const svc_schema){.type = SVC_INTEGER, .has_min = 1, .minimum = 1}, 1, NULL}, {0}};

unsigned products_select_read(svc_req *req) {
    const char *select = svc_req_query_all(req, "select");
    if (!select || !*select) return F_ALL;
    unsigned mask = 1u << F_ID;
    for (const char *p = select; *p; p += *p == ',') {
        size_t n = strcspn(p, ",");
        int f = svc_field_index(products_fields, p, n);
        mask |= f >= 0 ? 1u << f : 0;
        p += n;
    }
    return mask;
}

void products_list_query_read(svc_req *req, list_query *q) {
    const char *limit = svc_req_query(req, "limit"), *skip = svc_req_query(req, "skip");
    const char *sort = svc_req_query(req, "sortBy"), *order = svc_req_query(req, "order");
    *q = (list_query){.limit = PRODUCTS_DEFAULT_LIMIT, .select = products_select_read(req), .sort_field = F_ID};
    if (limit) svc_parse_i64(limit, &q->limit);
    if (q->limit == 0) q->limit = PRODUCTS_MAX_LIMIT;
    if (skip) svc_parse_i64(skip, &q->skip);
    int f = sort ? svc_field_index(products_fields, sort, strlen(sort)) : -1;
    q->sort_field = f >= 0 ? f : F_ID;
    q->desc = order && strcasecmp(order, "desc") == 0;
}

unsigned products_body_read(const json_t *body, product *p) { return (unsigned)svc_json_read(&products_new, body, p); }
