/*
 * Fuzzes products' handling of the saga's events (services/products/stock.c,
 * services/saga.h), the bytes any publisher on SHOP's subjects controls:
 * byte 0 picks the subject (orders.created or orders.cancelled) and whether
 * the Nats-Msg-Id has the outbox's form; the rest is the body. Each input
 * runs the consumer's effect on a seeded catalog inside a transaction that
 * is rolled back afterwards, so every input starts from the same state.
 *
 * Besides the sanitizers it checks, on every input:
 *
 *  1. Stock is conserved: the sum of every product's stock plus the
 *     quantities held by reservations in status "reserved" is what it was.
 *  2. No stock is negative.
 *  3. An event with a forged id, or refused, leaves no reservation and no
 *     outbox event behind; an applied one adds at most one of each.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../services/products/catalog.c"
#include "../services/products/stock.c"
#include "../services/products/validate.c"
#include "../services/products/words.c"

#include "fuzz_db.h"

#define FUZZ_MAX_BODY 4096

static int64_t held(void) {
    return one("SELECT (SELECT coalesce(sum(stock), 0) FROM products) + (SELECT coalesce(sum(l.quantity), 0)"
               " FROM reservation_lines l JOIN reservations r USING (order_id) WHERE r.status = 'reserved')");
}

static void setup(void) {
    fuzz_db_open("saga_fuzz", catalog_open, "products.db");
    CHECK(catalog_seed_if_empty(db) == SVC_OK);
    /* One order reserved already, for orders.cancelled to release. */
    CHECK(svc_db_exec(db, "INSERT INTO reservations VALUES (7, 'reserved', NULL, 'x', 'x');"
                          "INSERT INTO reservation_lines VALUES (7, 2, 3);"
                          "INSERT INTO reservations VALUES (8, 'rejected', 'out_of_stock', 'x', 'x');") == SVC_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!db) setup();
    if (size < 1 || size > FUZZ_MAX_BODY) return 0;
    int64_t before = held(), res0 = one("SELECT count(*) FROM reservations"),
            out0 = one("SELECT count(*) FROM svc_outbox");
    svc_event ev = {.subject = data[0] & 1 ? "orders.cancelled" : "orders.created",
                    .msg_id = data[0] & 2 ? "forged-1" : "0123456789abcdef.42",
                    .data = (const char *)data + 1,
                    .len = size - 1,
                    .delivered = 1,
                    .header = no_header};
    CHECK(svc_db_begin(db) == SVC_OK);
    int rc = stock_on_order_event(db, &ev, NULL);
    CHECK(held() == before);
    CHECK(one("SELECT count(*) FROM products WHERE stock < 0") == 0);
    int64_t res = one("SELECT count(*) FROM reservations") - res0, out = one("SELECT count(*) FROM svc_outbox") - out0;
    if (data[0] & 2) CHECK(rc != SVC_OK && res == 0 && out == 0);
    if (rc == SVC_OK) CHECK(res <= 1 && out <= 1);
    svc_db_rollback(db);
    return 0;
}
