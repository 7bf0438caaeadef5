/*
 * orders-lite: the worked example of docs/api.md ("A worked example").
 * POST /orders {"product_id": 7, "quantity": 2} with a user's token:
 * validates the body, asks products over NATS whether the product exists,
 * inserts the order into SQLite off the loop, publishes orders.created,
 * answers 201. No globals: the database is the app's data.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svckit.h"

static const svc_migration migrations[] = {
    {1, "orders", "CREATE TABLE orders (id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL,"
                  " quantity INTEGER NOT NULL, user_id TEXT NOT NULL)", NULL},
};

typedef struct order {
    json_int_t id, product_id, quantity;
    const char *user_id;
    int rc;
} order;

/* The thread pool: the database may block. */
static void insert(svc_req *req, void *ud) {
    order *o = ud;
    svc_db *db = svc_req_app_data(req);
    svc_stmt *st = svc_db_stmt(db, "INSERT INTO orders (product_id, quantity, user_id) VALUES (?, ?, ?) RETURNING id");
    if (!st) {
        o->rc = SVC_EIO;
        return;
    }
    svc_stmt_bind_i64(st, 1, o->product_id);
    svc_stmt_bind_i64(st, 2, o->quantity);
    svc_stmt_bind_text(st, 3, o->user_id);
    int rc = svc_stmt_step(st);
    if (rc == SVC_DB_ROW) o->id = svc_stmt_i64(st, 0);
    svc_stmt_reset(st);
    o->rc = rc == SVC_DB_ROW ? SVC_OK : rc < 0 ? rc : SVC_EIO;
}

/* The loop, once the row is in: the event, then the answer. */
static svc_outcome inserted(svc_req *req, svc_res *res, void *ud) {
    order *o = ud;
    if (o->rc != SVC_OK) return svc_res_error(res, 503, "unavailable", "the order could not be stored");
    json_t *doc = json_pack("{sIsIsIss}", "id", o->id, "product_id", o->product_id, "quantity", o->quantity,
                            "user_id", o->user_id);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) return svc_res_error(res, 503, "unavailable", "out of memory");
    svc_msg_publish(svc_req_app(req), "orders.created", text, strlen(text));
    svc_res_header(res, "Location", svc_arena_printf(svc_req_arena(req), "/orders/%lld", (long long)o->id));
    svc_outcome rc = svc_res_body(res, 201, "application/json", text, strlen(text));
    free(text);
    return rc;
}

/* The loop, once products answered. */
static svc_outcome product_checked(svc_req *req, svc_res *res, void *ud) {
    order *o = ud;
    int status = svc_call_status(req, 0);
    if (status == 404)
        return svc_res_error(res, 422, "unknown_product", "product %lld does not exist", (long long)o->product_id);
    if (status != 200) return svc_res_error(res, 502, "upstream", "products answered %d", status);
    return svc_req_offload(req, insert, o, inserted);
}

static svc_outcome create_order(svc_req *req, svc_res *res) {
    json_t *body = svc_req_json(req, res);
    if (!body) return SVC_DONE; /* the 400 or 415 is written */
    order *o = svc_arena_calloc(svc_req_arena(req), sizeof *o);
    if (!o) return svc_res_error(res, 503, "unavailable", "out of memory");
    if (json_unpack(body, "{s:I, s:I !}", "product_id", &o->product_id, "quantity", &o->quantity) != 0 ||
        o->product_id < 1 || o->quantity < 1 || o->quantity > 1000)
        return svc_res_error(res, 400, "bad_request", "expected {\"product_id\": >= 1, \"quantity\": 1-1000}");
    o->user_id = svc_req_claims(req)->sub;
    char *path = svc_arena_printf(svc_req_arena(req), "/products/%lld", (long long)o->product_id);
    svc_call_opts opts = {.flags = SVC_CALL_FORWARD_AUTH};
    svc_req_call(req, "products", "GET", path, NULL, 0, &opts);
    return svc_req_then(req, product_checked, o);
}

static int on_start(svc_app *app, void *ud) {
    char path[4096];
    snprintf(path, sizeof path, "%s/orders-lite.db", svc_app_config(app)->data_dir);
    svc_db *db;
    if (svc_db_open(path, migrations, 1, &db) != SVC_OK) return SVC_EIO;
    svc_app_set_data(app, db);
    return SVC_OK;
}

static void on_stop(svc_app *app, void *ud) { svc_db_close(svc_app_data(app)); }

int main(int argc, char **argv) {
    svc_app *app = svc_app_new("orders-lite", argc, argv);
    svc_app_default_port(app, 8093);
    svc_app_on_start(app, on_start, NULL);
    svc_app_on_stop(app, on_stop, NULL);
    svc_app_post(app, "/orders", create_order, SVC_AUTH_USER);
    return svc_app_run(app);
}
