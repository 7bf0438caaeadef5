/*
 * Fuzzes orders' handling of the saga's events (services/orders/store.c,
 * services/saga.h), the bytes any publisher on SHOP's subjects controls:
 * byte 0 picks the subject (payment.succeeded, payment.declined,
 * stock.rejected, or one orders does not know) and whether the Nats-Msg-Id
 * has the outbox's form; the rest is the body. Each input runs the
 * consumer's effect on seeded orders inside a transaction that is rolled
 * back afterwards, so every input starts from the same state.
 *
 * Besides the sanitizers it checks, on every input:
 *
 *  1. An event with a forged id, or refused, changes no order and adds no
 *     outbox event.
 *  2. An applied one moves at most one order, out of pending only, and a
 *     payment only when its amount is the order's total; it adds an
 *     orders.cancelled only for an order it cancelled with payment_declined.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../services/orders/store.c"

#include "fuzz_db.h"

#define FUZZ_MAX_BODY 4096

static void setup(void) {
    fuzz_db_open("orders_saga_fuzz", orders_open, "orders.db");
    /* Orders 1..3 pending (totals 500, 0, 9007199254740993), 4 confirmed, 5 cancelled. */
    CHECK(svc_db_exec(db, "INSERT INTO orders (id, user, status, reason, total_cents, created_at, updated_at) VALUES"
                          " (1, 'ann', 'pending', NULL, 500, 'x', 'x'), (2, 'ann', 'pending', NULL, 0, 'x', 'x'),"
                          " (3, 'bob', 'pending', NULL, 9007199254740993, 'x', 'x'),"
                          " (4, 'bob', 'confirmed', NULL, 500, 'x', 'x'),"
                          " (5, 'bob', 'cancelled', 'out_of_stock', 500, 'x', 'x');") == SVC_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const subjects[] = {"payment.succeeded", "payment.declined", "stock.rejected",
                                           "payment.refunded"};
    if (!db) setup();
    if (size < 1 || size > FUZZ_MAX_BODY) return 0;
    const char *subject = subjects[data[0] & 3];
    int forged = data[0] & 4;
    svc_event ev = {.subject = subject,
                    .msg_id = forged ? "forged-1" : "0123456789abcdef.42",
                    .data = (const char *)data + 1,
                    .len = size - 1,
                    .delivered = 1,
                    .header = no_header};
    CHECK(svc_db_begin(db) == SVC_OK);
    int rc = strcmp(subject, "stock.rejected") == 0 ? orders_on_stock_rejected(db, &ev, NULL)
                                                     : orders_on_payment(db, &ev, NULL);
    int64_t moved = one("SELECT count(*) FROM orders WHERE updated_at != 'x'");
    int64_t from_pending = one("SELECT count(*) FROM orders WHERE updated_at != 'x' AND id <= 3");
    int64_t cancelled_events = one("SELECT count(*) FROM svc_outbox WHERE subject = 'orders.cancelled'");
    int64_t events = one("SELECT count(*) FROM svc_outbox");
    if (forged || rc != SVC_OK) CHECK(moved == 0 && events == 0);
    CHECK(moved <= 1 && moved == from_pending && events == cancelled_events);
    if (moved && strcmp(subject, "stock.rejected") != 0) { /* a payment of the order's total */
        json_t *doc = json_loadb(ev.data, ev.len, 0, NULL);
        const json_t *amount = json_object_get(doc, "amount_cents");
        CHECK(json_is_integer(amount));
        CHECK(one("SELECT total_cents FROM orders WHERE updated_at != 'x'") == json_integer_value(amount));
        json_decref(doc);
    }
    CHECK(cancelled_events == one("SELECT count(*) FROM orders WHERE updated_at != 'x' AND status = 'cancelled'"
                                  " AND reason = 'payment_declined'"));
    CHECK(one("SELECT count(*) FROM orders WHERE updated_at != 'x' AND status = 'pending'") == 0);
    svc_db_rollback(db);
    return 0;
}
