/*
 * products: the catalog (DummyJSON-shaped), reads for any valid token, writes
 * for admins.
 *
 * Reads run on the event loop against the worker's own SQLite connection and
 * go through a small per-worker response cache, validated on every request by
 * svc_db_version (which moves on any commit, from any thread or process), so
 * a hot list costs a memcpy. Writes run on the thread pool (SVC_OFFLOAD):
 * they wait for fsync, and check the request's preconditions (If-Match & co)
 * inside their transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "products.h"

typedef svc_outcome (*render_fn)(svc_req *req, svc_res *res, svc_jw *w, const void *arg);

/*
 * Serves a read: from the cache when the database has not changed since it was
 * rendered, else renders it (render fills the 200 JSON body, or answers an
 * error instead), caches a 200 and adds an ETag.
 */
/* The catalog database of the service handling req. */
static svc_db *db_of(const svc_req *req) { return ((products_app *)svc_req_app_data(req))->db; }

static svc_outcome cached_read(svc_req *req, svc_res *res, render_fn render, const void *arg) {
    int64_t version = svc_db_version(db_of(req));
    if (svc_cache_serve(req, res, version)) return SVC_DONE;
    svc_jw *w = svc_res_jw(res, 200);
    svc_outcome rc = render(req, res, w, arg);
    if (svc_res_get_status(res) == 200 && svc_jw_ok(w) == SVC_OK) svc_cache_store(req, res, version);
    return rc;
}

static svc_outcome storage_error(svc_res *res, int rc) {
    if (rc == SVC_EAGAIN) return svc_res_error(res, 503, "unavailable", "the catalog is busy, retry");
    return svc_res_error(res, 500, "internal", "catalog storage error");
}

/* ---- reads ---------------------------------------------------------------- */

static svc_outcome render_list(svc_req *req, svc_res *res, svc_jw *w, const void *arg) {
    (void)arg;
    list_query q;
    products_list_query_read(req, &q);
    const char *name = svc_req_param(req, "name");
    if (name) {
        if (strlen(name) > PRODUCTS_CATEGORY_MAX) return svc_res_error(res, 404, "not_found", "no such category");
        q.category = name;
    }
    products_app *pa = svc_req_app_data(req);
    bool search = strcmp(svc_req_route(req), "/products/search") == 0;
    if (search && search_query(req, res, pa->search_limit, &q) != SVC_OK) return SVC_DONE; /* 400 or 429 written */
    int rc = catalog_list(pa->db, &q, w);
    if (search && q.steps > 0) svc_counter_add(pa->search_steps, (uint64_t)q.steps);
    return rc == SVC_OK ? SVC_DONE : storage_error(res, rc);
}

static svc_outcome list_products(svc_req *req, svc_res *res) { return cached_read(req, res, render_list, NULL); }

static svc_outcome render_categories(svc_req *req, svc_res *res, svc_jw *w, const void *slugs_only) {
    int rc = catalog_categories(db_of(req), slugs_only != NULL, w);
    return rc == SVC_OK ? SVC_DONE : storage_error(res, rc);
}

static svc_outcome list_categories(svc_req *req, svc_res *res) {
    return cached_read(req, res, render_categories, NULL);
}

/* DummyJSON's category-list: the slugs alone. */
static svc_outcome list_category_slugs(svc_req *req, svc_res *res) {
    return cached_read(req, res, render_categories, "slugs only");
}

/* DummyJSON's 404 body, {"message":"Product with id '9999' not found"},
 * beside svckit's error object, so clients of either read it. */
static svc_outcome not_found(svc_res *res, int64_t id) {
    char message[64];
    snprintf(message, sizeof message, "Product with id '%lld' not found", (long long)id);
    svc_jw *w = svc_res_jw(res, 404);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "error"), svc_jw_obj_begin(w);
    svc_jw_key(w, "code"), svc_jw_str(w, "not_found");
    svc_jw_key(w, "message"), svc_jw_str(w, message);
    svc_jw_obj_end(w);
    svc_jw_key(w, "message"), svc_jw_str(w, message);
    svc_jw_obj_end(w);
    return SVC_DONE;
}

/* The declared id: a positive integer, checked before the handler. */
static int64_t param_id(svc_req *req) {
    int64_t id = 0;
    svc_req_param_i64(req, "id", &id);
    return id;
}

/* A product's ETag comes from its version, the same in the answer to a write,
 * so a client can GET, edit, and write back with If-Match. */
static svc_outcome get_product(svc_req *req, svc_res *res) {
    int64_t id = param_id(req);
    svc_db *db = db_of(req);
    int64_t version = svc_db_version(db);
    if (svc_cache_serve(req, res, version)) return SVC_DONE;
    product *p = svc_arena_alloc(svc_req_arena(req), sizeof *p);
    if (!p) return svc_res_error(res, 503, "unavailable", "out of memory");
    int rc = catalog_get(db, id, p);
    if (rc == SVC_ENOTFOUND) return not_found(res, id);
    if (rc != SVC_OK) return storage_error(res, rc);
    product_write(svc_res_jw(res, 200), p, products_select_read(req));
    char etag[PRODUCT_ETAG_MAX];
    product_etag(p, etag);
    svc_cache_store_tagged(req, res, version, etag, product_last_modified(p));
    return SVC_DONE;
}

/* ---- writes (thread pool) ------------------------------------------------- */

/* The request's If-Match & co against the product as the write's transaction
 * read it (ud: the response): 0, or 412 written. */
static int check_preconditions(const product *current, void *ud) {
    svc_res *res = ud;
    char etag[PRODUCT_ETAG_MAX];
    product_etag(current, etag);
    return svc_req_preconditions(svc_res_req(res), res, etag, product_last_modified(current));
}

static svc_outcome write_result(svc_res *res, int rc, int status, const product *p, int64_t id) {
    if (rc > 0) return SVC_DONE; /* a precondition failed: answered */
    if (rc == SVC_ENOTFOUND) return not_found(res, id);
    if (rc != SVC_OK) return storage_error(res, rc);
    char etag[PRODUCT_ETAG_MAX];
    product_etag(p, etag);
    svc_res_validators(res, etag, product_last_modified(p));
    product_write(svc_res_jw(res, status), p, F_ALL);
    return SVC_DONE;
}

/* Two products from the request's arena: the body read into the first (every
 * field empty until then), the stored product into the second (catalog_get
 * fills it whole). Not calloc: zeroing 2 x sizeof(product), about 150 KB,
 * cost a write 150,000 instructions. */
static product *new_products(svc_req *req) {
    product *p = svc_arena_alloc(svc_req_arena(req), 2 * sizeof *p);
    if (p) product_clear(p);
    return p;
}

static svc_outcome create_product(svc_req *req, svc_res *res) {
    product *in = new_products(req);
    if (!in) return svc_res_error(res, 503, "unavailable", "out of memory");
    products_body_read(svc_req_json(req, res), in);
    int rc = catalog_create(db_of(req), in, in + 1);
    if (rc == SVC_OK) {
        char loc[48];
        snprintf(loc, sizeof loc, "/products/%lld", (long long)in[1].id);
        svc_res_header(res, "Location", loc);
    }
    return write_result(res, rc, 201, in + 1, 0);
}

/* PUT and PATCH change the fields they carry (DummyJSON merges both). */
static svc_outcome update_product(svc_req *req, svc_res *res) {
    int64_t id = param_id(req);
    product *in = new_products(req);
    if (!in) return svc_res_error(res, 503, "unavailable", "out of memory");
    unsigned set = products_body_read(svc_req_json(req, res), in);
    return write_result(res, catalog_update(db_of(req), id, in, set, check_preconditions, res, in + 1), 200, in + 1, id);
}

static svc_outcome delete_product(svc_req *req, svc_res *res) {
    int64_t id = param_id(req);
    product *p = svc_arena_alloc(svc_req_arena(req), sizeof *p);
    if (!p) return svc_res_error(res, 503, "unavailable", "out of memory");
    int rc = catalog_delete(db_of(req), id, check_preconditions, res, p);
    if (rc != SVC_OK) return write_result(res, rc, 200, p, id);
    /* DummyJSON answers a delete with the product and isDeleted/deletedOn. */
    char now[32];
    catalog_now(now);
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    product_write_fields(w, p, F_ALL);
    svc_jw_key(w, "isDeleted"), svc_jw_bool(w, 1);
    svc_jw_key(w, "deletedOn"), svc_jw_str(w, now);
    svc_jw_obj_end(w);
    return SVC_DONE;
}

/* ---- start-up ------------------------------------------------------------- */

static int db_ready(void *ud, char *reason, size_t len) {
    products_app *pa = ud;
    if (!pa->db || svc_db_version(pa->db) < 0) {
        snprintf(reason, len, "catalog database unavailable");
        return SVC_ERR;
    }
    return SVC_OK;
}

static int on_start(svc_app *app, void *ud) {
    products_app *pa = ud;
    const svc_config *cfg = svc_app_config(app);
    int rc = search_start(app, &pa->search_limit);
    if (rc != SVC_OK) return rc;
    if (catalog_open(cfg->data_dir, &pa->db) != SVC_OK) return SVC_ERR;
    if ((rc = catalog_seed_if_empty(pa->db)) != SVC_OK) return rc;
    pa->orders.db = pa->db;
    saga_stream_ensure(app);
    return svc_outbox_relay_start(app, pa->db, &pa->relay);
}

/* on_stop, and after svc_app_run whatever happened (a failed on_start has no
 * on_stop): each part may be released already. */
static void on_stop(svc_app *app, void *ud) {
    (void)app;
    products_app *pa = ud;
    svc_outbox_relay_stop(pa->relay);
    pa->relay = NULL;
    pa->orders.db = NULL;
    svc_db_close(pa->db);
    pa->db = NULL;
    svc_ratelimit_free(pa->search_limit);
    pa->search_limit = NULL;
}

/* ---- the routes ------------------------------------------------------------- */

typedef struct route {
    const char *method, *pattern;
    svc_handler handler;
    unsigned flags;
    svc_route_spec spec;
} route;

#define ANSWERS(status, what, schema) \
    (const svc_response[]) { {status, what, schema}, {404, "no such product", NULL}, {0} }
#define WRITE (SVC_AUTH_ADMIN | SVC_OFFLOAD)
#define CREATE                                   \
    {"Create a product", .body = &products_new, \
     .responses = (const svc_response[]){{201, "the product created", &products_product}, {0}}}

static const route routes[] = {
    {"GET", "/products", list_products, SVC_AUTH_USER,
     {"List products", .query = products_list_query,
      .responses = (const svc_response[]){{200, "a page of products", &products_page}, {0}}}},
    {"GET", "/products/search", list_products, SVC_AUTH_USER,
     {"Search products", .query = products_search_query,
      .responses = (const svc_response[]){{200, "a page of the products found", &products_page}, {0}}}},
    {"GET", "/products/categories", list_categories, SVC_AUTH_USER,
     {"List the categories",
      .responses = (const svc_response[]){{200, "every category", &products_categories}, {0}}}},
    {"GET", "/products/category-list", list_category_slugs, SVC_AUTH_USER,
     {"List the categories' slugs",
      .responses = (const svc_response[]){{200, "every category's slug", &products_category_list}, {0}}}},
    {"GET", "/products/category/:name", list_products, SVC_AUTH_USER,
     {"List a category's products", .query = products_list_query,
      .responses = ANSWERS(200, "a page of the category's products", &products_page)}},
    {"GET", "/products/:id", get_product, SVC_AUTH_USER,
     {"Get a product", .path = products_id_path, .query = products_get_query, .responses = ANSWERS(200, "the product", &products_product)}},
    {"POST", "/products", create_product, WRITE, CREATE},
    {"POST", "/products/add", create_product, WRITE, CREATE},   /* DummyJSON's path */
    {"PUT", "/products/:id", update_product, WRITE,
     {"Change some fields of a product", .path = products_id_path, .body = &products_change,
      .responses = ANSWERS(200, "the product as stored", &products_product)}},
    {"PATCH", "/products/:id", update_product, WRITE,
     {"Change some fields of a product", .path = products_id_path, .body = &products_change,
      .responses = ANSWERS(200, "the product as stored", &products_product)}},
    {"DELETE", "/products/:id", delete_product, WRITE,
     {"Delete a product", .path = products_id_path,
      .responses = ANSWERS(200, "the product deleted, with isDeleted and deletedOn", &products_product)}},
    {0},
};

int main(int argc, char **argv) {
    svc_app *app = svc_app_new("products", argc, argv);
    svc_app_default_port(app, 8082);
    products_app pa = {
        .orders = {.effect = stock_on_order_event},
        .search_steps = svc_metric_with(svc_metric_counter("products_search_steps_total",
                                                           "SQLite virtual-machine steps of searches: their work,"
                                                           " which follows the matches (0 on PostgreSQL)",
                                                           0, NULL),
                                        NULL),
    };
    svc_app_set_data(app, &pa);
    for (const route *r = routes; r->method; r++) {
        svc_app_route(app, r->method, r->pattern, r->handler, r->flags);
        svc_app_route_spec(app, r->method, r->pattern, &r->spec);
    }
    svc_app_on_stream_db(app, SAGA_STREAM, "orders.>", "products-stock", SAGA_ACK_WAIT_MS, &pa.orders);
    svc_app_ready_check(app, "catalog", db_ready, &pa);
    search_declare(app);
    svc_app_on_start(app, on_start, &pa);
    svc_app_on_stop(app, on_stop, &pa);
    int rc = svc_app_run(app);
    on_stop(NULL, &pa);
    return rc;
}
