/* orders' effects of the saga's events (services/orders/store.c): only the
 * event that matches a pending order moves it, and a decline hands the
 * stock back through orders.cancelled. Each effect runs in a transaction of
 * its own, as svc_app_on_stream_db runs it. */
#include <stdlib.h>
#include <unistd.h>

#include "../../../services/orders/store.c"
#include "../test.h"
#include "../../tmpdb.h"

#define GOOD_ID "0123456789abcdef.1"

static svc_db *db;
static char dir[64];

static void open_db(void) {
    REQUIRE(tmpdb_dir(dir, sizeof dir, "orders-saga") == 0);
    REQUIRE(orders_open(dir, &db) == SVC_OK);
    /* Orders 1..3 pending, each of total 500. */
    REQUIRE(svc_db_exec(db, "INSERT INTO orders (id, user, status, total_cents, created_at, updated_at) VALUES"
                            " (1, 'ann', 'pending', 500, 'x', 'x'), (2, 'ann', 'pending', 500, 'x', 'x'),"
                            " (3, 'ann', 'pending', 500, 'x', 'x');") == SVC_OK);
}

static void close_db(void) {
    svc_db_close(db);
    tmpdb_remove(dir, "orders.db");
}

static const char *no_header(const svc_event *e, const char *name) {
    (void)e, (void)name;
    return NULL;
}

/* The effect for subject and body, committed when it returns SVC_OK. */
static int apply(svc_db_event_fn fn, const char *subject, const char *msg_id, const char *body) {
    svc_event ev = {.subject = subject, .msg_id = msg_id, .data = body, .len = strlen(body), .delivered = 1,
                    .header = no_header};
    CHECK_EQ(svc_db_begin(db), SVC_OK);
    int rc = fn(db, &ev, NULL);
    if (rc == SVC_OK) CHECK_EQ(svc_db_commit(db), SVC_OK);
    else svc_db_rollback(db);
    return rc;
}

static const char *status_of(int64_t id) {
    static char out[32];
    svc_stmt *s = svc_db_stmt(db, "SELECT status || coalesce('/' || reason, '') FROM orders WHERE id = ?1");
    svc_stmt_bind_i64(s, 1, id);
    snprintf(out, sizeof out, "%s", svc_stmt_step(s) == SVC_DB_ROW ? svc_stmt_text(s, 0) : "?");
    svc_stmt_reset(s);
    return out;
}

static int64_t outbox(const char *subject) {
    svc_stmt *s = svc_db_stmt(db, "SELECT count(*) FROM svc_outbox WHERE subject = ?1");
    svc_stmt_bind_text(s, 1, subject);
    int64_t n = svc_stmt_step(s) == SVC_DB_ROW ? svc_stmt_i64(s, 0) : -1;
    svc_stmt_reset(s);
    return n;
}

TEST(a_payment_of_another_amount_changes_nothing) {
    open_db();
    CHECK_EQ(apply(orders_on_payment, "payment.succeeded", GOOD_ID, "{\"order_id\":1,\"amount_cents\":499}"),
             SVC_EINVAL);
    CHECK_EQ(apply(orders_on_payment, "payment.succeeded", GOOD_ID, "{\"order_id\":1,\"amount_cents\":\"500\"}"),
             SVC_EINVAL);
    CHECK_EQ(apply(orders_on_payment, "payment.declined", GOOD_ID, "{\"order_id\":1,\"amount_cents\":501}"),
             SVC_EINVAL);
    CHECK_STR(status_of(1), "pending");
    CHECK_EQ(outbox("orders.cancelled"), 0);
    /* The order's total confirms it, once: a replay is acked and changes nothing. */
    CHECK_EQ(apply(orders_on_payment, "payment.succeeded", GOOD_ID, "{\"order_id\":1,\"amount_cents\":500}"),
             SVC_OK);
    CHECK_STR(status_of(1), "confirmed");
    CHECK_EQ(apply(orders_on_payment, "payment.declined", GOOD_ID, "{\"order_id\":1,\"amount_cents\":500}"),
             SVC_OK);
    CHECK_STR(status_of(1), "confirmed");
    CHECK_EQ(outbox("orders.cancelled"), 0);
    close_db();
}

TEST(a_decline_cancels_and_releases_the_stock_once) {
    open_db();
    CHECK_EQ(apply(orders_on_payment, "payment.declined", GOOD_ID, "{\"order_id\":2,\"amount_cents\":500}"),
             SVC_OK);
    CHECK_STR(status_of(2), "cancelled/payment_declined");
    CHECK_EQ(outbox("orders.cancelled"), 1);
    CHECK_EQ(apply(orders_on_payment, "payment.declined", GOOD_ID, "{\"order_id\":2,\"amount_cents\":500}"),
             SVC_OK);
    CHECK_EQ(outbox("orders.cancelled"), 1);
    close_db();
}

TEST(bad_events_change_nothing) {
    open_db();
    static const struct {
        svc_db_event_fn fn;
        const char *subject, *id, *body;
        int rc;
    } bad[] = {
        {orders_on_payment, "payment.refunded", GOOD_ID, "{\"order_id\":3,\"amount_cents\":500}", SVC_EINVAL},
        {orders_on_payment, "payment.succeeded", "forged-1", "{\"order_id\":3,\"amount_cents\":500}", SVC_EINVAL},
        {orders_on_payment, "payment.succeeded", NULL, "{\"order_id\":3,\"amount_cents\":500}", SVC_EINVAL},
        {orders_on_payment, "payment.succeeded", GOOD_ID, "{\"order_id\":3,\"amount_cents\":500,\"x\":1}",
         SVC_EINVAL},
        {orders_on_payment, "payment.succeeded", GOOD_ID, "{\"order_id\":-3,\"amount_cents\":500}", SVC_EINVAL},
        {orders_on_payment, "payment.succeeded", GOOD_ID, "{\"order_id\":4,\"amount_cents\":500}", SVC_EINVAL},
        {orders_on_payment, "payment.succeeded", GOOD_ID, "[3]", SVC_EINVAL},
        {orders_on_stock_rejected, "stock.rejected", GOOD_ID, "{\"order_id\":3,\"reason\":\"because\"}", SVC_EINVAL},
        {orders_on_stock_rejected, "stock.rejected", GOOD_ID, "{\"order_id\":3}", SVC_EINVAL},
        {orders_on_stock_rejected, "stock.rejected", "0123456789abcdef.", "{\"order_id\":3,\"reason\":\"out_of_stock\"}",
         SVC_EINVAL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = apply(bad[i].fn, bad[i].subject, bad[i].id, bad[i].body);
        if (rc != bad[i].rc) fprintf(stderr, "# case %zu: %d\n", i, rc);
        CHECK_EQ(rc, bad[i].rc);
        CHECK_STR(status_of(3), "pending");
    }
    CHECK_EQ(outbox("orders.cancelled"), 0);
    CHECK_EQ(apply(orders_on_stock_rejected, "stock.rejected", GOOD_ID, "{\"order_id\":3,\"reason\":\"out_of_stock\"}"),
             SVC_OK);
    CHECK_STR(status_of(3), "cancelled/out_of_stock");
    CHECK_EQ(outbox("orders.cancelled"), 0); /* nothing was reserved */
    close_db();
}
