/* payments' stock.reserved batch consumer (services/payments/charge.c): a
 * mixed batch, each message settled on its own and no order charged twice. */
#include <stdlib.h>
#include <unistd.h>

#include "../../../services/payments/charge.c"
#include "../../../services/payments/store.c"
#include "../test.h"
#include "../../tmpdb.h"

static payments_app pa = {.fail_rate = 0.5};
static char dir[64];

static void open_db(void) {
    REQUIRE(tmpdb_dir(dir, sizeof dir, "payments-charge") == 0);
    REQUIRE(payments_open(dir, &pa.db) == SVC_OK);
}

static void close_db(void) {
    svc_db_close(pa.db);
    pa.db = NULL;
    tmpdb_remove(dir, "payments.db");
}

static const char *no_header(const svc_event *e, const char *name) {
    (void)e, (void)name;
    return NULL;
}

static svc_event event(const char *msg_id, const char *body, uint64_t delivered) {
    return (svc_event){.subject = "stock.reserved", .msg_id = msg_id, .data = body, .len = strlen(body),
                       .delivered = delivered, .header = no_header};
}

/* The consumer on evs[0..n), as svc_app_on_stream_batch calls it. */
static void consume(const svc_event *evs, size_t n, int *rcs) {
    for (size_t i = 0; i < n; i++) rcs[i] = SVC_EAGAIN;
    payments_on_stock_reserved(NULL, evs, n, rcs, &pa);
}

static int64_t scalar(const char *sql) {
    svc_stmt *s = svc_db_stmt(pa.db, sql);
    int64_t n = svc_stmt_step(s) == SVC_DB_ROW ? svc_stmt_i64(s, 0) : -1;
    svc_stmt_reset(s);
    return n;
}

/* The first order id from 1 the provider answers ok for (1) or declines (0). */
static int64_t order_answered(int ok) {
    int64_t id = 1;
    while (provider_answer(&pa, id) != ok) id++;
    return id;
}

TEST(a_mixed_batch_is_settled_message_by_message) {
    open_db();
    int64_t paid = order_answered(1), declined = order_answered(0), before = paid + declined + 1;
    while (!provider_answer(&pa, before)) before++;
    char b_paid[96], b_declined[96], b_before[96];
    snprintf(b_paid, sizeof b_paid, "{\"order_id\":%lld,\"user\":\"ann\",\"total_cents\":500}", (long long)paid);
    snprintf(b_declined, sizeof b_declined, "{\"order_id\":%lld,\"user\":\"bob\",\"total_cents\":700}",
             (long long)declined);
    snprintf(b_before, sizeof b_before, "{\"order_id\":%lld,\"user\":\"cy\",\"total_cents\":900}",
             (long long)before);

    /* A first batch charges one order. */
    svc_event first = event("0123456789abcdef.1", b_before, 1);
    int rc1;
    consume(&first, 1, &rc1);
    CHECK_EQ(rc1, SVC_OK);

    svc_event evs[] = {
        event("0123456789abcdef.2", b_paid, 1),     /* new, the provider charges it */
        event("0123456789abcdef.1", b_before, 2),   /* redelivered, charged already */
        event("0123456789abcdef.3", b_declined, 1), /* new, the provider declines it */
        event("0123456789abcdef.4", b_paid, 1),     /* the same order again, another id */
        event("0123456789abcdef.5", "{\"order_id\":", 1), /* malformed */
        event("not-an-outbox-id", b_declined, 1),   /* forged id */
    };
    size_t n = sizeof evs / sizeof evs[0];
    int rcs[sizeof evs / sizeof evs[0]];
    consume(evs, n, rcs);
    /* Acked: charged, declined, or dropped as a replay; the bad ones refused alone. */
    CHECK_EQ(rcs[0], SVC_OK);
    CHECK_EQ(rcs[1], SVC_OK);
    CHECK_EQ(rcs[2], SVC_OK);
    CHECK_EQ(rcs[3], SVC_OK);
    CHECK_EQ(rcs[4], SVC_EINVAL);
    CHECK_EQ(rcs[5], SVC_EINVAL);

    /* One charge per order, each with the provider's answer, one event each. */
    CHECK_EQ(scalar("SELECT count(*) FROM payments"), 3);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM payments WHERE order_id = %lld AND status = 'succeeded'",
             (long long)paid);
    CHECK_EQ(scalar(sql), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM payments WHERE order_id = %lld AND status = 'declined'",
             (long long)declined);
    CHECK_EQ(scalar(sql), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM payments WHERE order_id = %lld", (long long)before);
    CHECK_EQ(scalar(sql), 1);
    CHECK_EQ(scalar("SELECT count(*) FROM svc_outbox WHERE subject = 'payment.succeeded'"), 2);
    CHECK_EQ(scalar("SELECT count(*) FROM svc_outbox WHERE subject = 'payment.declined'"), 1);
    close_db();
}

TEST(a_batch_before_the_database_is_open_is_redelivered) {
    svc_event ev = event("0123456789abcdef.1", "{\"order_id\":1,\"user\":\"ann\",\"total_cents\":1}", 1);
    int rc;
    consume(&ev, 1, &rc);
    CHECK_EQ(rc, SVC_EAGAIN);
}
