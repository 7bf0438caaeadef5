/* Orders in SQLite: schema, the write closures of the saga, and every query
 * (all bound, never spliced). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orders.h"

static const svc_migration migrations[] = {
    {1, "orders",
     "CREATE TABLE orders ("
     "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
     "  user TEXT NOT NULL,"
     "  status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled')),"
     "  reason TEXT,"
     "  total_cents INTEGER NOT NULL CHECK (total_cents >= 0),"
     "  created_at TEXT NOT NULL,"
     "  updated_at TEXT NOT NULL);"
     "CREATE INDEX orders_by_user ON orders(user, id);"
     "CREATE TABLE order_lines ("
     "  order_id INTEGER NOT NULL REFERENCES orders(id),"
     "  line INTEGER NOT NULL,"
     "  product_id INTEGER NOT NULL CHECK (product_id >= 1),"
     "  quantity INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 100),"
     "  price_cents INTEGER NOT NULL CHECK (price_cents >= 0),"
     "  PRIMARY KEY (order_id, line),"
     "  UNIQUE (order_id, product_id)) WITHOUT ROWID;", NULL},
};

int orders_open(const char *data_dir, svc_db **out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/orders.db", data_dir);
    return svc_db_open(path, migrations, sizeof migrations / sizeof migrations[0], out);
}

static int step_done(sqlite3_stmt *s) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SVC_OK : svc_db_status(rc);
}

/* ---- one order as JSON ------------------------------------------------------ */

#define ORDER_COLUMNS "id, user, status, reason, total_cents, created_at, updated_at"

/* An order as every answer writes it (GET one, the list, POST's): the
 * fields around its items, which the caller writes in between. */
typedef struct order_fields {
    int64_t id;
    const char *status, *reason; /* reason NULL: none */
    int64_t total_cents;
    const char *created_at, *updated_at;
} order_fields;

static void write_head(svc_jw *w, const order_fields *f) {
    svc_jw_obj_begin(w);
    svc_jw_key(w, "id"), svc_jw_i64(w, f->id);
    svc_jw_key(w, "status"), svc_jw_str(w, f->status);
    if (f->reason) svc_jw_key(w, "reason"), svc_jw_str(w, f->reason);
    svc_jw_key(w, "items");
    svc_jw_arr_begin(w);
}

static void write_line(svc_jw *w, int64_t product_id, int64_t quantity, int64_t price_cents) {
    svc_jw_obj_begin(w);
    svc_jw_key(w, "product_id"), svc_jw_i64(w, product_id);
    svc_jw_key(w, "quantity"), svc_jw_i64(w, quantity);
    svc_jw_key(w, "price_cents"), svc_jw_i64(w, price_cents);
    svc_jw_obj_end(w);
}

static void write_tail(svc_jw *w, const order_fields *f) {
    svc_jw_arr_end(w);
    svc_jw_key(w, "total_cents"), svc_jw_i64(w, f->total_cents);
    svc_jw_key(w, "created_at"), svc_jw_str(w, f->created_at);
    svc_jw_key(w, "updated_at"), svc_jw_str(w, f->updated_at);
    svc_jw_obj_end(w);
}

/* The order of row s (ORDER_COLUMNS), its lines read from db. */
static int write_order(svc_db *db, sqlite3_stmt *s, svc_jw *w) {
    order_fields f = {.id = sqlite3_column_int64(s, 0),
                      .status = (const char *)sqlite3_column_text(s, 2),
                      .reason = (const char *)sqlite3_column_text(s, 3),
                      .total_cents = sqlite3_column_int64(s, 4),
                      .created_at = (const char *)sqlite3_column_text(s, 5),
                      .updated_at = (const char *)sqlite3_column_text(s, 6)};
    sqlite3_stmt *l = svc_db_prepare(
        db, "SELECT product_id, quantity, price_cents FROM order_lines WHERE order_id = ?1 ORDER BY line");
    if (!l) return SVC_EIO;
    sqlite3_bind_int64(l, 1, f.id);
    write_head(w, &f);
    int rc;
    while ((rc = sqlite3_step(l)) == SQLITE_ROW)
        write_line(w, sqlite3_column_int64(l, 0), sqlite3_column_int64(l, 1), sqlite3_column_int64(l, 2));
    sqlite3_reset(l);
    if (rc != SQLITE_DONE) return svc_db_status(rc);
    write_tail(w, &f);
    return SVC_OK;
}

int orders_get(svc_db *db, int64_t id, const char *user, svc_jw *w) {
    sqlite3_stmt *s = svc_db_prepare(db, "SELECT " ORDER_COLUMNS " FROM orders WHERE id = ?1 AND (?2 IS NULL OR user = ?2)");
    if (!s) return SVC_EIO;
    sqlite3_bind_int64(s, 1, id);
    if (user) sqlite3_bind_text(s, 2, user, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) rc = write_order(db, s, w);
    else rc = rc == SQLITE_DONE ? SVC_ENOTFOUND : svc_db_status(rc);
    sqlite3_reset(s);
    return rc;
}

int orders_list(svc_db *db, const char *user, int64_t limit, int64_t skip, svc_jw *w) {
    sqlite3_stmt *c = svc_db_prepare(db, "SELECT count(*) FROM orders WHERE ?1 IS NULL OR user = ?1");
    if (!c) return SVC_EIO;
    if (user) sqlite3_bind_text(c, 1, user, -1, SQLITE_STATIC);
    int rc = sqlite3_step(c);
    int64_t total = sqlite3_column_int64(c, 0);
    sqlite3_reset(c);
    if (rc != SQLITE_ROW) return svc_db_status(rc);
    /* Two statements, so that each uses its index (by id; by user and id). */
    sqlite3_stmt *s = svc_db_prepare(
        db, user ? "SELECT " ORDER_COLUMNS " FROM orders WHERE user = ?1 ORDER BY id LIMIT ?2 OFFSET ?3"
                 : "SELECT " ORDER_COLUMNS " FROM orders WHERE ?1 IS NULL ORDER BY id LIMIT ?2 OFFSET ?3");
    if (!s) return SVC_EIO;
    if (user) sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, limit);
    sqlite3_bind_int64(s, 3, skip);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "orders");
    svc_jw_arr_begin(w);
    int64_t count = 0;
    int step;
    rc = SVC_OK;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if ((rc = write_order(db, s, w)) != SVC_OK) break;
        count++;
    }
    sqlite3_reset(s);
    if (rc != SVC_OK) return rc;
    if (step != SQLITE_DONE) return svc_db_status(step);
    svc_jw_arr_end(w);
    svc_jw_key(w, "total"), svc_jw_i64(w, total);
    svc_jw_key(w, "skip"), svc_jw_i64(w, skip);
    svc_jw_key(w, "limit"), svc_jw_i64(w, count);
    svc_jw_obj_end(w);
    return SVC_OK;
}

/* ---- placing an order (the writer thread) -------------------------------------- */

static int insert_order(svc_db *db, new_order *o, int64_t total, const char *now) {
    sqlite3_stmt *s = svc_db_prepare(db, "INSERT INTO orders (user, status, total_cents, created_at, updated_at)"
                                         " VALUES (?1, 'pending', ?2, ?3, ?3)");
    if (!s) return SVC_EIO;
    sqlite3_bind_text(s, 1, o->user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, total);
    sqlite3_bind_text(s, 3, now, -1, SQLITE_STATIC);
    int rc = step_done(s);
    if (rc != SVC_OK) return rc;
    o->id = sqlite3_last_insert_rowid(svc_db_conn(db));
    s = svc_db_prepare(db, "INSERT INTO order_lines (order_id, line, product_id, quantity, price_cents)"
                           " VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!s) return SVC_EIO;
    for (int i = 0; i < o->n && rc == SVC_OK; i++) {
        sqlite3_bind_int64(s, 1, o->id);
        sqlite3_bind_int(s, 2, i);
        sqlite3_bind_int64(s, 3, o->lines[i].product_id);
        sqlite3_bind_int64(s, 4, o->lines[i].quantity);
        sqlite3_bind_int64(s, 5, o->lines[i].price_cents);
        rc = step_done(s);
    }
    return rc;
}

/* orders.created {order_id, user, items[{product_id,quantity}], total_cents} */
static int add_created_event(svc_db *db, const new_order *o, int64_t total) {
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "order_id"), svc_jw_i64(&w, o->id);
    svc_jw_key(&w, "user"), svc_jw_str(&w, o->user);
    svc_jw_key(&w, "items");
    svc_jw_arr_begin(&w);
    for (int i = 0; i < o->n; i++) {
        svc_jw_obj_begin(&w);
        svc_jw_key(&w, "product_id"), svc_jw_i64(&w, o->lines[i].product_id);
        svc_jw_key(&w, "quantity"), svc_jw_i64(&w, o->lines[i].quantity);
        svc_jw_obj_end(&w);
    }
    svc_jw_arr_end(&w);
    svc_jw_key(&w, "total_cents"), svc_jw_i64(&w, total);
    svc_jw_obj_end(&w);
    int rc = svc_jw_ok(&w);
    if (rc == SVC_OK) rc = svc_db_outbox_add(db, "orders.created", b.data, b.len, NULL);
    svc_buf_free(&b);
    return rc;
}

int orders_place(svc_db *db, void *ud) {
    new_order *o = ud;
    int rc = svc_db_idem_check(db, o->user, o->key, "POST", "/orders", o->body, o->body_len, &o->stored);
    if (rc < 0) return rc;
    o->outcome = rc;
    if (rc != SVC_DB_IDEM_NEW) return SVC_OK;
    int64_t total = 0;
    for (int i = 0; i < o->n; i++) total += o->lines[i].price_cents * o->lines[i].quantity;
    char now[SVC_TIME_RFC3339_MAX];
    svc_time_rfc3339(svc_wall_ms(), now);
    if ((rc = insert_order(db, o, total, now)) != SVC_OK) return rc;
    if ((rc = add_created_event(db, o, total)) != SVC_OK) return rc;
    /* The answer, as GET /orders/{id} writes it, from what was just
     * inserted (not read back: this is the writer thread), stored with the key. */
    order_fields f = {.id = o->id, .status = "pending", .total_cents = total, .created_at = now, .updated_at = now};
    svc_jw w;
    svc_jw_init(&w, &o->json);
    write_head(&w, &f);
    for (int i = 0; i < o->n; i++) write_line(&w, o->lines[i].product_id, o->lines[i].quantity, o->lines[i].price_cents);
    write_tail(&w, &f);
    if ((rc = svc_jw_ok(&w)) != SVC_OK) return rc;
    char location[64];
    snprintf(location, sizeof location, "Location: /orders/%lld\r\n", (long long)o->id);
    return svc_db_idem_store(db, o->user, o->key, 201, location, o->json.data, o->json.len);
}

/* ---- the saga's events (the consumers' writes) ---------------------------------- */

/* The order an event names, pending: SVC_OK; else the event is dropped
 * (logged, counted) and the consumer's answer returned in *rc. */
static int pending_order(svc_db *db, const svc_event *ev, const json_t *doc, int64_t *id, int64_t *total, int *rc) {
    *rc = SVC_EINVAL; /* terminate: redelivery cannot make it valid */
    if (!saga_event_id_ok(ev->msg_id)) {
        saga_drop(ev, "forged_id", "not an outbox id");
        return SVC_EINVAL;
    }
    if (!(*id = saga_id(doc, "order_id"))) {
        saga_drop(ev, "malformed", "order_id must be a positive integer");
        return SVC_EINVAL;
    }
    sqlite3_stmt *s = svc_db_prepare(db, "SELECT status, total_cents FROM orders WHERE id = ?1");
    if (!s) return *rc = SVC_EAGAIN;
    sqlite3_bind_int64(s, 1, *id);
    int step = sqlite3_step(s);
    char status[16] = "";
    if (step == SQLITE_ROW) {
        snprintf(status, sizeof status, "%s", (const char *)sqlite3_column_text(s, 0));
        *total = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    if (step != SQLITE_ROW && step != SQLITE_DONE) return *rc = SVC_EAGAIN;
    char detail[64];
    snprintf(detail, sizeof detail, "order %lld", (long long)*id);
    if (step == SQLITE_DONE) {
        saga_drop(ev, "unknown_order", detail);
        return SVC_ENOTFOUND;
    }
    if (strcmp(status, "pending") != 0) {
        snprintf(detail, sizeof detail, "order %lld is %s already", (long long)*id, status);
        saga_drop(ev, "replay", detail);
        *rc = SVC_OK; /* ack: the order has its outcome */
        return SVC_EEXIST;
    }
    return SVC_OK;
}

static int settle(svc_db *db, int64_t id, const char *status, const char *reason) {
    sqlite3_stmt *s = svc_db_prepare(
        db, "UPDATE orders SET status = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1 AND status = 'pending'");
    if (!s) return SVC_EIO;
    char now[SVC_TIME_RFC3339_MAX];
    svc_time_rfc3339(svc_wall_ms(), now);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, status, -1, SQLITE_STATIC);
    if (reason) sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, now, -1, SQLITE_STATIC);
    int rc = step_done(s);
    if (rc == SVC_OK) svc_info("order %lld %s%s%s", (long long)id, status, reason ? ": " : "", reason ? reason : "");
    return rc;
}

int orders_on_stock_rejected(svc_db *db, const svc_event *ev, void *ud) {
    (void)ud;
    static const char *const keys[] = {"order_id", "reason", NULL};
    json_t *doc = saga_event_json(ev, keys);
    if (!doc) return SVC_EINVAL;
    int64_t id, total;
    int rc;
    if (pending_order(db, ev, doc, &id, &total, &rc) == SVC_OK) {
        const char *reason = json_string_value(json_object_get(doc, "reason"));
        if (!reason || (strcmp(reason, "out_of_stock") && strcmp(reason, "unknown_product"))) {
            saga_drop(ev, "malformed", "reason must be out_of_stock or unknown_product");
            rc = SVC_EINVAL;
        } else {
            rc = settle(db, id, "cancelled", reason);
        }
    }
    json_decref(doc);
    return rc;
}

int orders_on_payment(svc_db *db, const svc_event *ev, void *ud) {
    (void)ud;
    static const char *const keys[] = {"order_id", "amount_cents", NULL};
    int succeeded = strcmp(ev->subject, "payment.succeeded") == 0;
    if (!succeeded && strcmp(ev->subject, "payment.declined") != 0) {
        saga_drop(ev, "unknown_subject", NULL);
        return SVC_EINVAL;
    }
    json_t *doc = saga_event_json(ev, keys);
    if (!doc) return SVC_EINVAL;
    int64_t id, total;
    int rc;
    if (pending_order(db, ev, doc, &id, &total, &rc) == SVC_OK) {
        const json_t *amount = json_object_get(doc, "amount_cents");
        if (!json_is_integer(amount) || json_integer_value(amount) != total) {
            saga_drop(ev, "amount_mismatch", "amount_cents is not the order's total");
            rc = SVC_EINVAL;
        } else if (succeeded) {
            rc = settle(db, id, "confirmed", NULL);
        } else {
            rc = settle(db, id, "cancelled", "payment_declined");
            /* The stock was reserved (payments charges only then): products releases it. */
            char ev_body[48];
            int len = snprintf(ev_body, sizeof ev_body, "{\"order_id\":%lld}", (long long)id);
            if (rc == SVC_OK) rc = svc_db_outbox_add(db, "orders.cancelled", ev_body, (size_t)len, NULL);
        }
    }
    json_decref(doc);
    return rc;
}
