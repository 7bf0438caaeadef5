/*
 * orders: POST /orders looks its Idempotency-Key up first (a retry of an
 * order placed is answered from the store, without calling anyone), prices
 * the lines at products (NATS RPC), then in one group-committed write
 * stores the order (pending), its lines, its Idempotency-Key with the
 * answer, and orders.created in the outbox. The saga
 * (services/saga.h) settles it: stock.rejected -> cancelled,
 * payment.succeeded -> confirmed, payment.declined -> cancelled (and
 * orders.cancelled, so that products releases the stock).
 *
 * Reads run on the event loop against the worker's own SQLite connection
 * (waiting at most SVC_DB_LOOP_BUSY_TIMEOUT_MS for a busy database: 503);
 * the write runs on the thread pool, waiting for its batch's fsync.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orders.h"

/* The service's state, the app's data: no globals. */
typedef struct orders_app {
    svc_db *db;
    svc_outbox_relay *relay;
    svc_db_consumer stock_rejected; /* stock.rejected */
    svc_db_consumer payments;       /* payment.> */
} orders_app;

static svc_db *db_of(const svc_req *req) { return ((orders_app *)svc_req_app_data(req))->db; }

/* Every 503 of orders says when to come back. */
static svc_outcome unavailable(svc_res *res, const char *message) {
    svc_res_header(res, "Retry-After", ORDERS_RETRY_AFTER_S);
    return svc_res_error(res, 503, "unavailable", "%s", message);
}

static svc_outcome storage_error(svc_res *res, int rc) {
    if (rc == SVC_EAGAIN) return unavailable(res, "orders storage is busy, retry");
    return svc_res_error(res, 500, "internal", "orders storage error");
}

/* The caller's orders only, or every order for an admin (NULL). */
static const char *owner_filter(const svc_req *req) {
    const svc_claims *c = svc_req_claims(req);
    return strcmp(c->role, "admin") == 0 ? NULL : c->sub;
}

/* ---- POST /orders --------------------------------------------------------------- */

static const svc_key order_key = {"new_order"};

static void free_order(void *p) {
    new_order *o = p;
    svc_buf_free(&o->json);
    svc_db_idem_response_free(&o->stored);
    free(o);
}

/* Thread pool: the write, waiting for its group commit. */
static void place(svc_req *req, void *ud) {
    new_order *o = ud;
    int rc = svc_db_write_wait(db_of(req), orders_place, o);
    if (rc != SVC_OK) o->outcome = rc;
}

/* The loop: the answer for what the key holds (o->outcome, from the lookup
 * or the write): the order placed, the stored answer, or a refusal. */
static svc_outcome answer_key(svc_req *req, svc_res *res, void *ud) {
    new_order *o = ud;
    char location[48];
    switch (o->outcome) {
    case SVC_DB_IDEM_NEW:
        snprintf(location, sizeof location, "/orders/%lld", (long long)o->id);
        svc_res_header(res, "Location", location);
        return svc_res_body(res, 201, "application/json", o->json.data, o->json.len);
    case SVC_DB_IDEM_REPLAY: {
        /* The first answer again; a stored 201 is a 200 now: nothing was created. */
        const char *h = o->stored.headers;
        if (h && strncmp(h, "Location: ", 10) == 0) {
            size_t n = strcspn(h + 10, "\r\n");
            svc_res_header(res, "Location", svc_arena_strndup(svc_req_arena(req), h + 10, n));
        }
        int status = o->stored.status == 201 ? 200 : o->stored.status;
        return svc_res_body(res, status, "application/json", o->stored.body, o->stored.len);
    }
    case SVC_DB_IDEM_CONFLICT:
        return svc_res_error(res, 422, "idempotency_key_reused",
                             "this Idempotency-Key was used for another request body");
    case SVC_DB_IDEM_IN_PROGRESS:
        return svc_res_error(res, 409, "in_progress", "a request with this Idempotency-Key is in progress, retry");
    case SVC_EINVAL:
        return svc_res_error(res, 400, "bad_request", "invalid Idempotency-Key");
    default:
        return storage_error(res, o->outcome);
    }
}

static svc_outcome price_lines(svc_req *req, svc_res *res, new_order *o);

/* The loop, once products answered for lines [o->next, o->next + SVC_MAX_CALLS). */
static svc_outcome priced(svc_req *req, svc_res *res, void *ud) {
    new_order *o = ud;
    int count = o->n - o->next < SVC_MAX_CALLS ? o->n - o->next : SVC_MAX_CALLS;
    for (int i = 0; i < count; i++) {
        order_line *l = &o->lines[o->next + i];
        int status = svc_call_status(req, i);
        if (status == 404)
            return svc_res_error(res, 422, "unknown_product", "product %lld does not exist",
                                 (long long)l->product_id);
        if (status == 503 || status == 504) {
            char message[64];
            snprintf(message, sizeof message, "products did not answer (%d), retry", status);
            return unavailable(res, message);
        }
        json_t *p = status == 200 ? svc_call_json(req, i) : NULL;
        if (!p || orders_price_cents(json_object_get(p, "price"), &l->price_cents) != SVC_OK)
            return svc_res_error(res, 502, "bad_gateway", "products answered %d without a usable price for %lld",
                                 status, (long long)l->product_id);
    }
    o->next += count;
    if (o->next < o->n) return price_lines(req, res, o);
    return svc_req_offload(req, place, o, answer_key);
}

/* Asks products for the prices of the next SVC_MAX_CALLS lines, in parallel. */
static svc_outcome price_lines(svc_req *req, svc_res *res, new_order *o) {
    (void)res;
    svc_call_opts opts = {.timeout_ms = ORDERS_PRICE_TIMEOUT_MS, .flags = SVC_CALL_FORWARD_AUTH};
    for (int i = o->next; i < o->n && i < o->next + SVC_MAX_CALLS; i++) {
        char path[48];
        snprintf(path, sizeof path, "/products/%lld?select=price", (long long)o->lines[i].product_id);
        svc_req_call(req, "products", "GET", path, NULL, 0, &opts);
    }
    return svc_req_then(req, priced, o);
}

static svc_outcome create_order(svc_req *req, svc_res *res) {
    const char *key = svc_req_header(req, "idempotency-key"); /* declared: present and valid */
    json_t *body = svc_req_json(req, res);
    if (!body) return SVC_DONE; /* the 400 or 415 is written */
    new_order *o = calloc(1, sizeof *o);
    if (!o || svc_req_set(req, &order_key, o, free_order) != SVC_OK) {
        free(o);
        return unavailable(res, "out of memory");
    }
    char err[160];
    if (orders_parse_body(body, o->lines, &o->n, err, sizeof err) != SVC_OK)
        return svc_res_error(res, 400, "bad_request", "%s", err);
    o->user = svc_req_claims(req)->sub;
    o->key = key;
    o->body = svc_req_body(req, &o->body_len);
    /* What the key holds already, read on the loop without holding it: a key
     * with an answer (or a conflict, or in progress) is answered from the
     * store, without asking products anything; a new one is priced, then
     * placed (the write checks the key again: a concurrent request may have
     * taken it meanwhile). */
    o->outcome = svc_db_idem_lookup(db_of(req), o->user, o->key, "POST", "/orders", o->body, o->body_len,
                                    &o->stored);
    return o->outcome == SVC_DB_IDEM_NEW ? price_lines(req, res, o) : answer_key(req, res, o);
}

/* ---- reads ------------------------------------------------------------------------ */

/* Answers 200 with what render wrote, or the error it returned. */
static svc_outcome answer(svc_res *res, int rc, svc_buf *b, int64_t id) {
    svc_outcome out;
    if (rc == SVC_ENOTFOUND) out = svc_res_error(res, 404, "not_found", "order %lld not found", (long long)id);
    else if (rc != SVC_OK || b->oom) out = storage_error(res, rc == SVC_OK ? SVC_ENOMEM : rc);
    else out = svc_res_body(res, 200, "application/json", b->data, b->len);
    svc_buf_free(b);
    return out;
}

/* Someone else's order is a 404, exactly as one that does not exist. */
static svc_outcome get_order(svc_req *req, svc_res *res) {
    int64_t id = 0;
    svc_req_param_i64(req, "id", &id); /* declared: a positive integer */
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    int rc = orders_get(db_of(req), id, owner_filter(req), &w);
    if (rc == SVC_OK) rc = svc_jw_ok(&w);
    return answer(res, rc, &b, id);
}

/* A declared query integer, checked already; def when absent. */
static int64_t query_int(const svc_req *req, const char *name, int64_t def) {
    const char *v = svc_req_query(req, name);
    int64_t n = def;
    if (v) svc_parse_i64(v, &n);
    return n;
}

static svc_outcome list_orders(svc_req *req, svc_res *res) {
    int64_t limit = query_int(req, "limit", ORDERS_DEFAULT_LIMIT), skip = query_int(req, "skip", 0);
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    int rc = orders_list(db_of(req), owner_filter(req), limit, skip, &w);
    if (rc == SVC_OK) rc = svc_jw_ok(&w);
    return answer(res, rc, &b, 0);
}

/* ---- start-up --------------------------------------------------------------------- */

static int db_ready(void *ud, char *reason, size_t len) {
    orders_app *oa = ud;
    if (!oa->db || svc_db_version(oa->db) < 0) {
        snprintf(reason, len, "orders database unavailable");
        return SVC_ERR;
    }
    return SVC_OK;
}

static int on_start(svc_app *app, void *ud) {
    orders_app *oa = ud;
    if (orders_open(svc_app_config(app)->data_dir, &oa->db) != SVC_OK) return SVC_ERR;
    oa->stock_rejected.db = oa->db;
    oa->payments.db = oa->db;
    saga_stream_ensure(app);
    return svc_outbox_relay_start(app, oa->db, &oa->relay);
}

/* on_stop, and after svc_app_run whatever happened: each part may be gone. */
static void on_stop(svc_app *app, void *ud) {
    (void)app;
    orders_app *oa = ud;
    svc_outbox_relay_stop(oa->relay);
    oa->relay = NULL;
    oa->stock_rejected.db = oa->payments.db = NULL;
    svc_db_close(oa->db);
    oa->db = NULL;
}

static const svc_route_spec create_spec = {
    "Place an order (Idempotency-Key: the same key and body give the same order)",
    .header = orders_new_headers, .body = &orders_new,
    .responses = (const svc_response[]){{201, "the order placed, pending", NULL},
                                        {200, "the order the key placed before", NULL},
                                        {422, "a product does not exist", NULL},
                                        {0}},
};
static const svc_route_spec list_spec = {
    "List orders (the caller's; an admin's: every one)", .query = orders_list_query,
    .responses = (const svc_response[]){{200, "{\"orders\",\"total\",\"skip\",\"limit\"}", NULL}, {0}},
};
static const svc_route_spec get_spec = {
    "Get an order (the caller's own, or any for an admin)", .path = orders_id_path,
    .responses = (const svc_response[]){{200, "the order", NULL}, {404, "no such order of the caller's", NULL}, {0}},
};

int main(int argc, char **argv) {
    setenv("UV_THREADPOOL_SIZE", ORDERS_POOL_THREADS, 0);
    svc_app *app = svc_app_new("orders", argc, argv);
    svc_app_default_port(app, ORDERS_DEFAULT_PORT);
    orders_app oa = {.stock_rejected = {.effect = orders_on_stock_rejected},
                     .payments = {.effect = orders_on_payment}};
    svc_app_set_data(app, &oa);
    svc_app_post(app, "/orders", create_order, SVC_AUTH_USER);
    svc_app_get(app, "/orders", list_orders, SVC_AUTH_USER);
    svc_app_get(app, "/orders/:id", get_order, SVC_AUTH_USER);
    svc_app_route_spec(app, "POST", "/orders", &create_spec);
    svc_app_route_spec(app, "GET", "/orders", &list_spec);
    svc_app_route_spec(app, "GET", "/orders/:id", &get_spec);
    svc_app_on_stream_db(app, SAGA_STREAM, "stock.rejected", "orders-stock", SAGA_ACK_WAIT_MS, &oa.stock_rejected);
    svc_app_on_stream_db(app, SAGA_STREAM, "payment.>", "orders-payments", SAGA_ACK_WAIT_MS, &oa.payments);
    svc_app_ready_check(app, "orders", db_ready, &oa);
    svc_app_on_start(app, on_start, &oa);
    svc_app_on_stop(app, on_stop, &oa);
    int rc = svc_app_run(app);
    on_stop(NULL, &oa);
    return rc;
}
