/*
 * demo: the smallest useful svckit service, and the one the benchmark measures.
 * A read-only catalog of 30 products held in memory:
 *
 *   GET /products?limit=&skip=   {"products":[...],"total":30,"skip":0,"limit":30}
 *   GET /products/:id            one product, or 404
 *
 * plus /healthz, /readyz and /metrics, which every svckit service has.
 * Responses are rendered once per distinct path and query and then served
 * from the worker's response cache with an ETag (the catalog never changes:
 * its version is 0); DEMO_CACHE=0 renders every response, which is what the
 * benchmark's "svckit-render" row measures.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "svckit.h"

#define NPRODUCTS 30

typedef struct product {
    int64_t id;
    char title[48];
    char category[24];
    char brand[24];
    double price;
    int64_t stock;
    double rating;
} product;

static product catalog[NPRODUCTS];
static int use_cache = 1;

static void seed(void) {
    static const char *categories[] = {"beauty", "fragrances", "furniture", "groceries", "laptops"};
    static const char *brands[] = {"Essence", "Glamour", "Velvet", "Annibale", "Chic"};
    for (int i = 0; i < NPRODUCTS; i++) {
        product *p = &catalog[i];
        p->id = i + 1;
        snprintf(p->title, sizeof p->title, "Product %d of the demo catalog", i + 1);
        snprintf(p->category, sizeof p->category, "%s", categories[i % 5]);
        snprintf(p->brand, sizeof p->brand, "%s", brands[(i * 3) % 5]);
        p->price = round((4.99 + i * 7.25) * 100) / 100;
        p->stock = 10 + (i * 37) % 90;
        p->rating = 2.5 + (i % 25) / 10.0;
    }
}

static void write_product(svc_jw *w, const product *p) {
    svc_jw_obj_begin(w);
    svc_jw_key(w, "id"), svc_jw_i64(w, p->id);
    svc_jw_key(w, "title"), svc_jw_str(w, p->title);
    svc_jw_key(w, "description"), svc_jw_str(w, "A product of the svckit demo catalog, served from memory.");
    svc_jw_key(w, "category"), svc_jw_str(w, p->category);
    svc_jw_key(w, "brand"), svc_jw_str(w, p->brand);
    svc_jw_key(w, "price"), svc_jw_f64(w, p->price);
    svc_jw_key(w, "stock"), svc_jw_i64(w, p->stock);
    svc_jw_key(w, "rating"), svc_jw_f64(w, p->rating);
    svc_jw_obj_end(w);
}

static int query_int(svc_req *req, const char *name, int64_t def, int64_t lo, int64_t hi, int64_t *out) {
    const char *v = svc_req_query(req, name);
    *out = def;
    if (!v) return SVC_OK;
    if (svc_parse_i64(v, out) != SVC_OK || *out < lo || *out > hi) return SVC_EINVAL;
    return SVC_OK;
}

static svc_outcome list_products(svc_req *req, svc_res *res) {
    if (use_cache && svc_cache_serve(req, res, 0)) return SVC_DONE;
    int64_t limit, skip;
    if (query_int(req, "limit", NPRODUCTS, 0, 100, &limit) || query_int(req, "skip", 0, 0, 1000000, &skip))
        return svc_res_error(res, 400, "bad_request", "limit must be 0-100 and skip >= 0");
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "products");
    svc_jw_arr_begin(w);
    for (int64_t i = skip; i < NPRODUCTS && i < skip + limit; i++) write_product(w, &catalog[i]);
    svc_jw_arr_end(w);
    svc_jw_key(w, "total"), svc_jw_i64(w, NPRODUCTS);
    svc_jw_key(w, "skip"), svc_jw_i64(w, skip);
    svc_jw_key(w, "limit"), svc_jw_i64(w, limit);
    svc_jw_obj_end(w);
    if (use_cache) svc_cache_store(req, res, 0);
    return SVC_DONE;
}

static svc_outcome get_product(svc_req *req, svc_res *res) {
    int64_t id;
    if (svc_req_param_i64(req, "id", &id) != SVC_OK)
        return svc_res_error(res, 400, "bad_request", "id must be an integer");
    if (id < 1 || id > NPRODUCTS)
        return svc_res_error(res, 404, "not_found", "product %lld not found", (long long)id);
    write_product(svc_res_jw(res, 200), &catalog[id - 1]);
    return SVC_DONE;
}

static int on_start(svc_app *app, void *ud) {
    (void)ud;
    const char *c = svc_app_env(app, "DEMO_CACHE");
    if (strcmp(c, "0") != 0 && strcmp(c, "1") != 0) {
        svc_error("invalid configuration: DEMO_CACHE=\"%.20s\": expected 0 or 1", c);
        return SVC_EINVAL;
    }
    use_cache = c[0] == '1';
    return SVC_OK;
}

int main(int argc, char **argv) {
    seed();
    svc_app *app = svc_app_new("demo", argc, argv);
    svc_app_env_declare(app, "DEMO_CACHE", "1", "serve rendered lists from the response cache (0 or 1)");
    svc_app_on_start(app, on_start, NULL);
    svc_app_default_port(app, 8090);
    svc_app_get(app, "/products", list_products, 0);
    svc_app_get(app, "/products/:id", get_product, 0);
    return svc_app_run(app);
}
