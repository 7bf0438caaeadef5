/*
 * Fuzzes payments' stock.reserved batch consumer (services/payments/charge.c,
 * store.c, services/saga.h), the bytes any publisher on SHOP's subjects
 * controls. An input is a batch: its events are separated by '\n' (up to
 * FUZZ_MAX_EVENTS); each event's first byte picks whether its Nats-Msg-Id
 * has the outbox's form and which of a few ids it is (so ids repeat, as
 * redeliveries do), the rest is its body. Charges are committed (the
 * consumer's writes go through the group-commit writer), so state carries
 * over between inputs as it does between batches.
 *
 * Besides the sanitizers it checks, on every input:
 *
 *  1. Each message is settled on its own: a forged id is refused, never
 *     acked; nothing is redelivered (the database is healthy).
 *  2. No order is charged twice, and every new charge adds exactly one
 *     payment.succeeded or payment.declined event to the outbox.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../services/payments/charge.c"
#include "../services/payments/store.c"

#include "fuzz_db.h"

#define FUZZ_MAX_BODY 4096
#define FUZZ_MAX_EVENTS 8

static payments_app pa = {.fail_rate = 0.5};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const ids[] = {"0123456789abcdef.1", "0123456789abcdef.2", "0123456789abcdef.3",
                                      "0123456789abcdef.4"};
    if (!db) fuzz_db_open("payments_fuzz", payments_open, "payments.db"), pa.db = db;
    if (size > FUZZ_MAX_BODY) return 0;
    svc_event evs[FUZZ_MAX_EVENTS];
    int rcs[FUZZ_MAX_EVENTS], forged[FUZZ_MAX_EVENTS];
    size_t n = 0;
    const char *p = (const char *)data, *end = p + size;
    while (p < end && n < FUZZ_MAX_EVENTS) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        if (stop > p) {
            forged[n] = *p & 4;
            evs[n] = (svc_event){.subject = "stock.reserved",
                                 .msg_id = forged[n] ? "forged-1" : ids[*p & 3],
                                 .data = p + 1,
                                 .len = (size_t)(stop - p - 1),
                                 .delivered = 1,
                                 .header = no_header};
            rcs[n++] = SVC_EAGAIN;
        }
        p = stop + 1;
    }
    if (!n) return 0;
    int64_t charges0 = one("SELECT count(*) FROM payments"), events0 = one("SELECT count(*) FROM svc_outbox");
    payments_on_stock_reserved(NULL, evs, n, rcs, &pa);
    for (size_t i = 0; i < n; i++) {
        CHECK(rcs[i] != SVC_EAGAIN);
        if (forged[i]) CHECK(rcs[i] != SVC_OK);
    }
    int64_t charges = one("SELECT count(*) FROM payments") - charges0;
    CHECK(charges >= 0 && charges <= (int64_t)n);
    CHECK(one("SELECT count(*) FROM svc_outbox") - events0 == charges);
    CHECK(one("SELECT count(*) FROM (SELECT order_id FROM payments GROUP BY order_id HAVING count(*) > 1)") == 0);
    return 0;
}
