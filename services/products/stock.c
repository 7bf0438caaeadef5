/*
 * Stock reservations for the checkout saga (services/saga.h): products owns
 * stock. orders.created reserves every line of an order or none, in the
 * consumer's transaction (stock CHECK >= 0), and announces stock.reserved or
 * stock.rejected through the outbox; orders.cancelled releases a
 * reservation once. Both are idempotent by order id (a reservation row per
 * order) on top of the inbox's idempotency by event id.
 */
#include <stdio.h>
#include <string.h>

#include "products.h"

static int step_done(svc_stmt *s) {
    int rc = svc_stmt_step(s);
    svc_stmt_reset(s);
    return rc < 0 ? rc : SVC_OK;
}

/* The reservation's status ("reserved", "rejected", "released"), or "" when
 * the order has none. */
static int reservation_status(svc_db *db, int64_t order_id, char out[16]) {
    svc_stmt *s = svc_db_stmt(db, "SELECT status FROM reservations WHERE order_id = ?1");
    if (!s) return SVC_EIO;
    svc_stmt_bind_i64(s, 1, order_id);
    int rc = svc_stmt_step(s);
    out[0] = '\0';
    if (rc == SVC_DB_ROW) snprintf(out, 16, "%s", svc_stmt_text(s, 0));
    svc_stmt_reset(s);
    return rc < 0 ? rc : SVC_OK;
}

/* Moves a product's stock by delta (negative: take), with its version and
 * updated_at, as any write of the product does. */
static int move_stock(svc_db *db, int64_t product_id, int64_t delta, const char *now) {
    svc_stmt *s = svc_db_stmt(db, "UPDATE products SET stock = stock + ?2, version = version + 1,"
                                  " updated_at = ?3 WHERE id = ?1");
    if (!s) return SVC_EIO;
    svc_stmt_bind_i64(s, 1, product_id);
    svc_stmt_bind_i64(s, 2, delta);
    svc_stmt_bind_text(s, 3, now);
    return step_done(s);
}

/* "" when every line can be taken, else why not. On PostgreSQL the rows are
 * locked until the commit: another instance's consumer reserving the same
 * products waits, then reads the stock this one left (SQLite has one
 * writer). */
static int check_lines(svc_db *db, const json_t *items, const char **reason) {
    svc_stmt *s = svc_db_stmt(db, svc_db_is_pg(db) ? "SELECT stock FROM products WHERE id = ?1 FOR UPDATE"
                                                   : "SELECT stock FROM products WHERE id = ?1");
    if (!s) return SVC_EIO;
    *reason = NULL;
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it) {
        svc_stmt_bind_i64(s, 1, saga_id(it, "product_id"));
        int rc = svc_stmt_step(s);
        int64_t stock = rc == SVC_DB_ROW ? svc_stmt_i64(s, 0) : -1;
        svc_stmt_reset(s);
        if (rc < 0) return rc;
        if (rc == SVC_DB_DONE) *reason = "unknown_product";
        else if (stock < saga_id(it, "quantity")) *reason = "out_of_stock";
        if (*reason) return SVC_OK;
    }
    return SVC_OK;
}

/* items: 1..SAGA_MAX_ITEMS of {product_id >= 1, quantity 1..SAGA_MAX_QUANTITY}, distinct. */
static int items_ok(const json_t *items) {
    static const char *const keys[] = {"product_id", "quantity", NULL};
    size_t n = json_array_size(items), i, j;
    if (!json_is_array(items) || n < 1 || n > SAGA_MAX_ITEMS) return 0;
    for (i = 0; i < n; i++) {
        const json_t *it = json_array_get(items, i);
        int64_t q = saga_id(it, "quantity"), id = saga_id(it, "product_id");
        if (svc_json_only_keys(it, keys, NULL) != SVC_OK || !id || q > SAGA_MAX_QUANTITY || !q) return 0;
        for (j = 0; j < i; j++)
            if (saga_id(json_array_get(items, j), "product_id") == id) return 0;
    }
    return 1;
}

static int reserve(svc_db *db, const svc_event *ev, const json_t *doc, int64_t order_id) {
    const json_t *items = json_object_get(doc, "items");
    const char *user = json_string_value(json_object_get(doc, "user"));
    const json_t *total = json_object_get(doc, "total_cents");
    if (!items_ok(items) || !user || !*user || strlen(user) > SAGA_USER_MAX || !json_is_integer(total) ||
        json_integer_value(total) < 0) {
        saga_drop(ev, "malformed", "orders.created needs user, items and total_cents");
        return SVC_EINVAL;
    }
    const char *reason;
    int rc = check_lines(db, items, &reason);
    if (rc != SVC_OK) return rc;
    char now[SVC_TIME_RFC3339_MAX];
    svc_time_rfc3339(svc_wall_ms(), now);
    svc_stmt *s = svc_db_stmt(db, "INSERT INTO reservations (order_id, status, reason, created_at, updated_at)"
                                  " VALUES (?1, ?2, ?3, ?4, ?4)");
    if (!s) return SVC_EIO;
    svc_stmt_bind_i64(s, 1, order_id);
    svc_stmt_bind_text(s, 2, reason ? "rejected" : "reserved");
    svc_stmt_bind_text(s, 3, reason);
    svc_stmt_bind_text(s, 4, now);
    if ((rc = step_done(s)) != SVC_OK) return rc;
    char body[256];
    if (reason) {
        int len = snprintf(body, sizeof body, "{\"order_id\":%lld,\"reason\":\"%s\"}", (long long)order_id, reason);
        svc_info("order %lld: stock rejected (%s)", (long long)order_id, reason);
        return svc_db_outbox_add(db, "stock.rejected", body, (size_t)len, NULL);
    }
    s = svc_db_stmt(db, "INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES (?1, ?2, ?3)");
    if (!s) return SVC_EIO;
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it) {
        int64_t id = saga_id(it, "product_id"), q = saga_id(it, "quantity");
        svc_stmt_bind_i64(s, 1, order_id);
        svc_stmt_bind_i64(s, 2, id);
        svc_stmt_bind_i64(s, 3, q);
        if ((rc = step_done(s)) != SVC_OK || (rc = move_stock(db, id, -q, now)) != SVC_OK) return rc;
    }
    /* user is 1..127 bytes of a token's sub: escape it as JSON. */
    svc_buf b = {0};
    svc_buf_printf(&b, "{\"order_id\":%lld,\"user\":", (long long)order_id);
    svc_json_escape(&b, user, strlen(user));
    svc_buf_printf(&b, ",\"total_cents\":%lld}", (long long)json_integer_value(total));
    rc = b.oom ? SVC_ENOMEM : svc_db_outbox_add(db, "stock.reserved", b.data, b.len, NULL);
    svc_buf_free(&b);
    return rc;
}

static int release(svc_db *db, int64_t order_id) {
    svc_stmt *s = svc_db_stmt(db, "SELECT product_id, quantity FROM reservation_lines WHERE order_id = ?1");
    if (!s) return SVC_EIO;
    char now[SVC_TIME_RFC3339_MAX];
    svc_time_rfc3339(svc_wall_ms(), now);
    svc_stmt_bind_i64(s, 1, order_id);
    int rc = SVC_OK, step;
    while ((step = svc_stmt_step(s)) == SVC_DB_ROW)
        if ((rc = move_stock(db, svc_stmt_i64(s, 0), svc_stmt_i64(s, 1), now)) != SVC_OK) break;
    svc_stmt_reset(s);
    if (step != SVC_DB_DONE) return step == SVC_DB_ROW ? rc : step;
    s = svc_db_stmt(db, "UPDATE reservations SET status = 'released', updated_at = ?2 WHERE order_id = ?1");
    if (!s) return SVC_EIO;
    svc_stmt_bind_i64(s, 1, order_id);
    svc_stmt_bind_text(s, 2, now);
    svc_info("order %lld: stock released", (long long)order_id);
    return step_done(s);
}

int stock_on_order_event(svc_db *db, const svc_event *ev, void *ud) {
    (void)ud;
    static const char *const created_keys[] = {"order_id", "user", "items", "total_cents", NULL};
    static const char *const cancelled_keys[] = {"order_id", NULL};
    int created = strcmp(ev->subject, "orders.created") == 0;
    if (!created && strcmp(ev->subject, "orders.cancelled") != 0) {
        saga_drop(ev, "unknown_subject", NULL);
        return SVC_EINVAL;
    }
    if (!saga_event_id_ok(ev->msg_id)) {
        saga_drop(ev, "forged_id", "not an outbox id");
        return SVC_EINVAL;
    }
    json_t *doc = saga_event_json(ev, created ? created_keys : cancelled_keys);
    if (!doc) return SVC_EINVAL;
    int64_t order_id = saga_id(doc, "order_id");
    char status[16], detail[64];
    int rc = order_id ? reservation_status(db, order_id, status) : SVC_EINVAL;
    snprintf(detail, sizeof detail, "order %lld", (long long)order_id);
    if (rc == SVC_EINVAL) {
        saga_drop(ev, "malformed", "order_id must be a positive integer");
    } else if (rc != SVC_OK) {
        rc = SVC_EAGAIN;
    } else if (created && *status) {
        saga_drop(ev, "replay", detail); /* reserved (or rejected) once already */
    } else if (created) {
        rc = reserve(db, ev, doc, order_id);
    } else if (!*status) {
        saga_drop(ev, "unknown_order", detail);
        rc = SVC_ENOTFOUND;
    } else if (strcmp(status, "reserved") != 0) {
        saga_drop(ev, "replay", detail); /* released already, or never taken */
    } else {
        rc = release(db, order_id);
    }
    json_decref(doc);
    return rc;
}
