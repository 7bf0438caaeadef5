/* Payments in SQLite: schema, the charge's write, the list (all bound). */
#include <stdio.h>
#include <string.h>

#include "payments.h"

static const svc_migration migrations[] = {
    {1, "payments",
     "CREATE TABLE payments ("
     "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
     "  order_id INTEGER NOT NULL UNIQUE,"
     "  user TEXT NOT NULL,"
     "  amount_cents INTEGER NOT NULL CHECK (amount_cents >= 0),"
     "  status TEXT NOT NULL CHECK (status IN ('succeeded', 'declined', 'refunded')),"
     "  created_at TEXT NOT NULL);", NULL},
};

int payments_open(const char *data_dir, svc_db **out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/payments.db", data_dir);
    return svc_db_open(path, migrations, sizeof migrations / sizeof migrations[0], out);
}

int payments_exists(svc_db *db, int64_t order_id, int *found) {
    sqlite3_stmt *s = svc_db_prepare(db, "SELECT 1 FROM payments WHERE order_id = ?1");
    if (!s) return SVC_EIO;
    sqlite3_bind_int64(s, 1, order_id);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    *found = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SVC_OK : svc_db_status(rc);
}

int payments_record(svc_db *db, void *ud) {
    charge *c = ud;
    int rc = svc_db_inbox_claim(db, PAYMENTS_DURABLE, c->ev->msg_id);
    if (rc == SVC_EEXIST) {
        c->duplicate = 1;
        return SVC_OK;
    }
    if (rc != SVC_OK) return rc;
    /* A redelivery under another id may have raced this one: one charge per order. */
    if ((rc = payments_exists(db, c->order_id, &c->charged_before)) != SVC_OK || c->charged_before) return rc;
    sqlite3_stmt *s = svc_db_prepare(db, "INSERT INTO payments (order_id, user, amount_cents, status, created_at)"
                                         " VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!s) return SVC_EIO;
    char now[SVC_TIME_RFC3339_MAX];
    svc_time_rfc3339(svc_wall_ms(), now);
    const char *status = c->succeeded ? "succeeded" : "declined";
    sqlite3_bind_int64(s, 1, c->order_id);
    sqlite3_bind_text(s, 2, c->user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, c->amount_cents);
    sqlite3_bind_text(s, 4, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, now, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return svc_db_status(rc);
    char body[96];
    int len = snprintf(body, sizeof body, "{\"order_id\":%lld,\"amount_cents\":%lld}", (long long)c->order_id,
                       (long long)c->amount_cents);
    return svc_db_outbox_add(db, c->succeeded ? "payment.succeeded" : "payment.declined", body, (size_t)len, NULL);
}

int payments_list(svc_db *db, int64_t order_id, const char *user, svc_jw *w) {
    sqlite3_stmt *s = svc_db_prepare(db, "SELECT id, order_id, amount_cents, status, created_at FROM payments"
                                         " WHERE order_id = ?1 AND (?2 IS NULL OR user = ?2) ORDER BY id");
    if (!s) return SVC_EIO;
    sqlite3_bind_int64(s, 1, order_id);
    if (user) sqlite3_bind_text(s, 2, user, -1, SQLITE_STATIC);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "payments");
    svc_jw_arr_begin(w);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        svc_jw_obj_begin(w);
        svc_jw_key(w, "id"), svc_jw_i64(w, sqlite3_column_int64(s, 0));
        svc_jw_key(w, "order_id"), svc_jw_i64(w, sqlite3_column_int64(s, 1));
        svc_jw_key(w, "amount_cents"), svc_jw_i64(w, sqlite3_column_int64(s, 2));
        svc_jw_key(w, "status"), svc_jw_str(w, (const char *)sqlite3_column_text(s, 3));
        svc_jw_key(w, "created_at"), svc_jw_str(w, (const char *)sqlite3_column_text(s, 4));
        svc_jw_obj_end(w);
    }
    sqlite3_reset(s);
    svc_jw_arr_end(w);
    svc_jw_obj_end(w);
    return rc == SQLITE_DONE ? SVC_OK : svc_db_status(rc);
}
