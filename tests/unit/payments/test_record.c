/* payments' write of a charge (services/payments/store.c): the inbox claim
 * of the event id and the one charge per order, each on its own. */
#include <stdlib.h>
#include <unistd.h>

#include "../../../services/payments/store.c"
#include "../test.h"
#include "../../tmpdb.h"

static svc_db *db;
static char dir[64];

static void open_db(void) {
    REQUIRE(tmpdb_dir(dir, sizeof dir, "payments") == 0);
    REQUIRE(payments_open(dir, &db) == SVC_OK);
}

static void close_db(void) {
    svc_db_close(db);
    tmpdb_remove(dir, "payments.db");
}

/* payments_record for event id msg_id charging order_id, committed. */
static charge record(const char *msg_id, int64_t order_id) {
    svc_event ev = {.subject = "stock.reserved", .msg_id = msg_id};
    charge c = {.ev = &ev, .order_id = order_id, .user = "ann", .amount_cents = 500, .succeeded = 1};
    CHECK_EQ(svc_db_begin(db), SVC_OK);
    CHECK_EQ(payments_record(db, &c), SVC_OK);
    CHECK_EQ(svc_db_commit(db), SVC_OK);
    c.ev = NULL;
    return c;
}

static int64_t count(const char *sql) {
    svc_stmt *s = svc_db_stmt(db, sql);
    int64_t n = svc_stmt_step(s) == SVC_DB_ROW ? svc_stmt_i64(s, 0) : -1;
    svc_stmt_reset(s);
    return n;
}

TEST(an_event_id_charges_once) {
    open_db();
    charge c = record("0123456789abcdef.1", 1);
    CHECK(!c.duplicate && !c.charged_before);
    /* The same id again, even naming another order: the inbox drops it. */
    c = record("0123456789abcdef.1", 2);
    CHECK(c.duplicate);
    CHECK_EQ(count("SELECT count(*) FROM payments"), 1);
    CHECK_EQ(count("SELECT count(*) FROM svc_outbox WHERE subject = 'payment.succeeded'"), 1);
    close_db();
}

TEST(an_order_is_charged_once) {
    open_db();
    charge c = record("0123456789abcdef.1", 1);
    CHECK(!c.duplicate && !c.charged_before);
    /* Another id for the same order (a replay): no second charge, no event. */
    c = record("0123456789abcdef.2", 1);
    CHECK(!c.duplicate && c.charged_before);
    CHECK_EQ(count("SELECT count(*) FROM payments"), 1);
    CHECK_EQ(count("SELECT count(*) FROM svc_outbox"), 1);
    close_db();
}
