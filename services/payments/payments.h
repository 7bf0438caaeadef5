/*
 * payments: charges the orders whose stock is reserved, through a simulated
 * provider, and announces the outcome. Internal interfaces between its files:
 *
 *   main.c      configuration, GET /payments, start-up
 *   charge.c    the simulated provider and the stock.reserved batch consumer
 *   store.c     the SQLite schema, the charge's write and the query
 */
#ifndef PAYMENTS_H
#define PAYMENTS_H

#include "svckit.h"
#include "svckit/outbox.h"

#include "../saga.h"

#define PAYMENTS_DEFAULT_PORT 8084
#define PAYMENTS_MAX_LATENCY_MS 1000    /* PAYMENT_LATENCY_MS: well under the consumer's ack wait (SAGA_ACK_WAIT_MS) */
#define PAYMENTS_DURABLE "payments-stock"
#define PAYMENTS_RETRY_AFTER_S "1"      /* Retry-After of a 503 when the database is busy */

/* The service's state, the app's data (no globals). */
typedef struct payments_app {
    svc_db *db;                 /* NULL until on_start opened it */
    svc_outbox_relay *relay;
    double fail_rate;           /* PAYMENT_FAIL_RATE */
    int64_t latency_ms;         /* PAYMENT_LATENCY_MS */
} payments_app;

/* A charge to make for a stock.reserved event, and what became of it. */
typedef struct charge {
    const svc_event *ev;
    int64_t order_id;
    const char *user;
    int64_t amount_cents;
    int succeeded;              /* the provider's answer */
    /* results of the write */
    int duplicate;              /* the event id was claimed already */
    int charged_before;         /* the order has a charge already */
} charge;

/* charge.c. The stock.reserved consumer (svc_event_batch_fn, ud a
 * payments_app): charges the orders of evs[0..n) that have none yet and
 * sets rcs[i] (each SVC_EAGAIN on entry) for each message on its own: SVC_OK (acked: charged, or
 * dropped as a replay), SVC_EAGAIN (redelivered: storage busy or failing,
 * or the database not open yet), or another status (refused: malformed,
 * forged or missing id). */
void payments_on_stock_reserved(svc_app *app, const svc_event *evs, size_t n, int *rcs, void *ud);

/* store.c */
int payments_open(const char *data_dir, svc_db **out);
/* SVC_OK and *found (0 or 1): whether order_id has a charge. */
int payments_exists(svc_db *db, int64_t order_id, int *found);
/* The write closure of a charge: the inbox claim of the event id, the
 * payment row and payment.succeeded or payment.declined in the outbox. */
int payments_record(svc_db *db, void *ud);
/* Writes {"payments":[...]} of order_id, those of user only (NULL: any). */
int payments_list(svc_db *db, int64_t order_id, const char *user, svc_jw *w);

#endif
