/*
 * products: the catalog service. Internal interfaces between its files:
 *
 *   main.c      routes and handlers (HTTP in, JSON out), the response cache
 *   catalog.c   the SQLite schema, seed data and every query
 *   validate.c  the routes' declared parameters, bodies and answers; checked values -> structs
 *   search.c    the search query, and the per-user limit on uncached searches
 *   stock.c     stock reservations of the checkout saga (orders.created, orders.cancelled)
 */
#ifndef PRODUCTS_H
#define PRODUCTS_H

#include "svckit.h"
#include "svckit/outbox.h"

#include "../saga.h"

#define PRODUCTS_MAX_LIMIT 100
#define PRODUCTS_DEFAULT_LIMIT 30
#define PRODUCTS_MAX_SKIP 1000000
#define PRODUCTS_SEED_COUNT 120
#define PRODUCTS_MAX_QUERY 100          /* bytes of a search string */
#define PRODUCTS_TITLE_MAX 200          /* characters */
#define PRODUCTS_DESCRIPTION_MAX 2000
#define PRODUCTS_CATEGORY_MAX 50
#define PRODUCTS_BRAND_MAX 100
#define PRODUCTS_PRICE_MAX 1e9
#define PRODUCTS_STOCK_MAX 1000000000
#define PRODUCTS_DISCOUNT_MAX 100       /* discountPercentage, a percentage */
#define PRODUCTS_SKU_MAX 50             /* characters */
#define PRODUCTS_TAGS_MAX 20            /* tags of a product */
#define PRODUCTS_TAG_MAX 50             /* characters of a tag */
#define PRODUCTS_IMAGES_MAX 10          /* images of a product */
#define PRODUCTS_URL_MAX 500            /* characters of thumbnail or an image's URL */
#define PRODUCTS_WEIGHT_MAX 1e6         /* weight, and each of dimensions' width, height, depth */
#define PRODUCTS_POLICY_MAX 200         /* characters of warrantyInformation, shippingInformation, returnPolicy */
#define PRODUCTS_MIN_ORDER_MAX 1000000  /* minimumOrderQuantity */
#define PRODUCTS_REVIEWS_MAX 10         /* reviews of a product */
#define PRODUCTS_COMMENT_MAX 500        /* characters of a review's comment */
#define PRODUCTS_NAME_MAX 100           /* characters of a reviewer's name */
#define PRODUCTS_EMAIL_MAX 254          /* characters of a reviewer's email */
#define PRODUCTS_LOW_STOCK 10           /* availabilityStatus: "Low Stock" under it, "Out of Stock" at 0 */
/* Bytes of a stored JSON array of n strings of len characters (4 bytes each). */
#define PRODUCTS_ARRAY_JSON_MAX(n, len) ((n) * (4 * (len) + 3) + 3)
#define PRODUCTS_FIELD_NAME_MAX 64      /* bytes of a name in select or sortBy */
#define PRODUCTS_SELECT_MAX 64          /* names in select */

/* The fields of a product, in output order. Bit i of a field mask is field i. */
enum {
    F_ID, F_TITLE, F_DESCRIPTION, F_CATEGORY, F_BRAND, F_PRICE, F_STOCK, F_RATING,
    F_CREATED_AT, F_UPDATED_AT,
    /* DummyJSON's (migration 5); availabilityStatus and meta follow stock and the times */
    F_DISCOUNT, F_SKU, F_TAGS, F_THUMBNAIL, F_IMAGES, F_AVAILABILITY, F_META,
    F_WEIGHT, F_DIMENSIONS, F_WARRANTY, F_SHIPPING, F_RETURN_POLICY, F_MIN_ORDER, F_REVIEWS,   /* migration 6 */
    F_COUNT
};
extern const svc_field products_fields[F_COUNT + 1];   /* validate.c: their names, schemas, members */
#define F_ALL ((1u << F_COUNT) - 1)
/* Fields a client may write. */
#define F_WRITABLE ((1u << F_TITLE) | (1u << F_DESCRIPTION) | (1u << F_CATEGORY) | (1u << F_BRAND) | \
                    (1u << F_PRICE) | (1u << F_STOCK) | (1u << F_RATING) | (1u << F_DISCOUNT) | (1u << F_SKU) | \
                    (1u << F_TAGS) | (1u << F_THUMBNAIL) | (1u << F_IMAGES) | (1u << F_WEIGHT) |             \
                    (1u << F_DIMENSIONS) | (1u << F_WARRANTY) | (1u << F_SHIPPING) | (1u << F_RETURN_POLICY) | \
                    (1u << F_MIN_ORDER) | (1u << F_REVIEWS))

typedef struct product {
    int64_t id;
    char title[4 * PRODUCTS_TITLE_MAX + 1];
    char description[4 * PRODUCTS_DESCRIPTION_MAX + 1];
    char category[4 * PRODUCTS_CATEGORY_MAX + 1];
    char brand[4 * PRODUCTS_BRAND_MAX + 1];
    double price;
    int64_t stock;
    double rating;
    char created_at[32];
    char updated_at[32];
    double discount;                                              /* discountPercentage */
    char sku[4 * PRODUCTS_SKU_MAX + 1];
    char tags[PRODUCTS_ARRAY_JSON_MAX(PRODUCTS_TAGS_MAX, PRODUCTS_TAG_MAX)];  /* a JSON array */
    char thumbnail[4 * PRODUCTS_URL_MAX + 1];
    char images[PRODUCTS_ARRAY_JSON_MAX(PRODUCTS_IMAGES_MAX, PRODUCTS_URL_MAX)];  /* a JSON array */
    double weight;
    char dimensions[160];                                         /* {"width","height","depth"} as JSON */
    char warranty[4 * PRODUCTS_POLICY_MAX + 1];                   /* warrantyInformation */
    char shipping[4 * PRODUCTS_POLICY_MAX + 1];                   /* shippingInformation */
    char return_policy[4 * PRODUCTS_POLICY_MAX + 1];
    int64_t min_order;                                            /* minimumOrderQuantity */
    /* A JSON array of reviews: each at most its comment, name and email
     * (4 bytes a character, 2 for an escape) and 128 bytes of keys and numbers. */
    char reviews[PRODUCTS_REVIEWS_MAX * (4 * (PRODUCTS_COMMENT_MAX + PRODUCTS_NAME_MAX + PRODUCTS_EMAIL_MAX + 40) + 200) + 3];
    int64_t version;        /* 1 when created, +1 on every update; not in the JSON */
} product;

/* A product's validators (svc_req_preconditions): the strong ETag
 * "p<id>-v<version>", which every write moves and a GET and the write's
 * answer share, and Last-Modified, updated_at in seconds (-1 if unparsable). */
#define PRODUCT_ETAG_MAX 48
void product_etag(const product *p, char out[PRODUCT_ETAG_MAX]);
int64_t product_last_modified(const product *p);

/* Called by a write inside its transaction with the product as stored now:
 * SVC_OK lets the write go on; anything else rolls it back and is what the
 * write returns (a positive status: the check wrote the answer, e.g. 412). */
typedef int (*catalog_check_fn)(const product *current, void *ud);

/* What a list request asks for. */
typedef struct list_query {
    int64_t limit, skip;
    unsigned select;        /* field mask to output; id is always included */
    int sort_field;         /* F_*; F_ID by default */
    int desc;
    const char *search;     /* NULL: no search */
    const char *category;   /* NULL: every category */
    int64_t steps;          /* out: the work of the list's statements (svc_stmt_steps) */
} list_query;

/* validate.c: what the routes take and answer (svckit/schema.h), and
 * readers of what the library has checked against it. */
extern const svc_schema products_product;    /* a product, as answered */
extern const svc_schema products_new;        /* POST body: a whole product */
extern const svc_schema products_change;     /* PUT, PATCH body: some fields */
extern const svc_schema products_page;       /* {"products","total","skip","limit"} */
extern const svc_schema products_categories; /* [{"slug","name","url"}] */
extern const svc_schema products_category_list; /* ["slug", ...] */
extern const svc_param products_list_query[];
extern const svc_param products_get_query[];   /* GET /products/{id}: select */
extern const svc_param products_search_query[];
extern const svc_param products_id_path[];
/* The list request's parameters, checked against products_list_query. */
void products_list_query_read(svc_req *req, list_query *q);
/* The fields the request's select names (unknown names ignored; absent or
 * empty: F_ALL), id always. */
unsigned products_select_read(svc_req *req);
/* Copies the fields of a body checked against products_new or
 * products_change into *p; returns their bits. */
unsigned products_body_read(const json_t *body, product *p);

/* search.c. Declares SEARCH_RATE_PER_MIN (before svc_app_run), reads it
 * (on_start: SVC_EINVAL after logging a bad value) and frees the limiter.
 * search_query is called on a cache miss of /products/search: sets q->search,
 * or writes a 400 (q too long) or a 429 (the user is out of uncached
 * searches) and returns an error. */
void search_declare(svc_app *app);
int search_start(svc_app *app, svc_ratelimit **limit);
int search_query(svc_req *req, svc_res *res, svc_ratelimit *limit, list_query *q);

/* words.c. The words of a search q (runs of ASCII letters and digits and
 * of non-ASCII bytes; any other byte separates them) as a full-text query
 * in which each word must be a prefix of a word of the product: FTS5
 * ("classic"* "notebook"*) or, pg, tsquery ('classic':* & 'notebook':*).
 * Returns the number of words (0: out is ""), or -1 when out (n bytes) is
 * too small; SEARCH_WORDS_MAX holds any q of PRODUCTS_MAX_QUERY bytes. */
#define SEARCH_WORDS_MAX (8 * PRODUCTS_MAX_QUERY + 1)
int search_words(const char *q, bool pg, char *out, size_t n);

/* The service's state, the app's data (svc_app_set_data): no globals. */
typedef struct products_app {
    svc_db *db;
    svc_ratelimit *search_limit;     /* uncached searches per user */
    svc_series *search_steps;        /* products_search_steps_total */
    svc_outbox_relay *relay;         /* stock.reserved, stock.rejected */
    svc_db_consumer orders;          /* orders.created, orders.cancelled */
} products_app;

/* stock.c: the effect of the saga's orders.* events (svc_db_event_fn). */
int stock_on_order_event(svc_db *db, const svc_event *ev, void *ud);

/* catalog.c */
int catalog_open(const char *data_dir, svc_db **out);
int catalog_seed_if_empty(svc_db *db);
/* Writes {"products":[...],"total":N,"skip":S,"limit":L} for q; sets q->steps. */
int catalog_list(svc_db *db, list_query *q, svc_jw *w);
/* Writes [{"slug","name","url"}, ...], or with slugs_only ["slug", ...]. */
int catalog_categories(svc_db *db, bool slugs_only, svc_jw *w);
/* SVC_OK and *p, or SVC_ENOTFOUND. */
int catalog_get(svc_db *db, int64_t id, product *p);
int catalog_create(svc_db *db, const product *in, product *out);
/* Updates the fields in set, in one transaction with check (NULL: none);
 * SVC_ENOTFOUND if there is no such product. */
int catalog_update(svc_db *db, int64_t id, const product *in, unsigned set, catalog_check_fn check, void *ud,
                   product *out);
/* Deletes, in one transaction with check; *out is the product deleted. */
int catalog_delete(svc_db *db, int64_t id, catalog_check_fn check, void *ud, product *out);
/* Empties *p (every number 0, every string ""), without zeroing its buffers. */
void product_clear(product *p);
/* A product as a JSON object with the fields in select (id always). */
void product_write(svc_jw *w, const product *p, unsigned select);
/* The same fields without the braces, to extend the object. */
void product_write_fields(svc_jw *w, const product *p, unsigned select);
/* Now as RFC 3339 UTC with milliseconds. */
void catalog_now(char out[32]);

#endif
