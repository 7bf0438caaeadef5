/*
 * orders: the shop's orders and the start and end of the checkout saga.
 * Internal interfaces between its files:
 *
 *   main.c      routes and handlers (HTTP in, JSON out), the saga consumers, start-up
 *   store.c     the SQLite schema, the write closures (an order placed, an event
 *               applied) and every query
 *   validate.c  the routes' declared input, checked body -> lines, a price -> integer cents
 */
#ifndef ORDERS_H
#define ORDERS_H

#include "svckit.h"
#include "svckit/outbox.h"

#include "../saga.h"

#define ORDERS_DEFAULT_PORT 8083
#define ORDERS_MAX_LINES SAGA_MAX_ITEMS       /* lines of one order */
#define ORDERS_MAX_QUANTITY SAGA_MAX_QUANTITY /* of one line */
#define ORDERS_MAX_PRODUCT_ID 9007199254740991LL /* 2^53 - 1: exact in every JSON reader */
#define ORDERS_MAX_LIMIT 100
#define ORDERS_DEFAULT_LIMIT 30
#define ORDERS_MAX_SKIP 1000000
#define ORDERS_PRICE_TIMEOUT_MS 3000          /* one price lookup at products */
#define ORDERS_RETRY_AFTER_S "1"              /* Retry-After of every 503 (storage busy, products or NATS down) */
/* Thread-pool threads (UV_THREADPOOL_SIZE when the environment sets none):
 * every POST waits on one for its group commit, so this bounds how many
 * orders share one fsync. */
#define ORDERS_POOL_THREADS "32"

/* One line of an order. */
typedef struct order_line {
    int64_t product_id;
    int64_t quantity;
    int64_t price_cents;
} order_line;

/* validate.c. What the routes take: the POST /orders body and its
 * Idempotency-Key header, the list's query, an order's id. */
extern const svc_schema orders_new;
extern const svc_param orders_new_headers[];
extern const svc_param orders_list_query[];
extern const svc_param orders_id_path[];
/* The lines of a body checked against orders_new: SVC_OK, or SVC_EINVAL
 * with a message for a 400 when a product is in two lines (the rule the
 * declaration cannot state). lines has ORDERS_MAX_LINES room. */
int orders_parse_body(const json_t *body, order_line *lines, int *n, char *err, size_t errlen);
/* A product's price (a JSON number of products' answer) in integer cents,
 * exactly: the number's shortest decimal text times 100, half-cents and
 * below rounded half up. SVC_EINVAL for a negative, non-finite or absurd
 * price (over 1e13). */
int orders_price_cents(const json_t *price, int64_t *cents);

/* An order being placed (POST /orders), from the handler to the write. */
typedef struct new_order {
    const char *user;           /* the token's sub: owner and idempotency scope */
    const char *key;            /* Idempotency-Key */
    const char *body;           /* the request body, as hashed for the key */
    size_t body_len;
    order_line lines[ORDERS_MAX_LINES];
    int n;
    int next;                   /* the first line not yet priced */
    /* results of the lookup, then of the write */
    int outcome;                /* SVC_DB_IDEM_*, or an error */
    int64_t id;
    svc_db_idem_response stored; /* REPLAY: the first answer */
    svc_buf json;               /* NEW: the order as answered */
} new_order;

/* store.c */
int orders_open(const char *data_dir, svc_db **out);
/* The write closure of POST /orders (svc_db_write_wait): the idempotency
 * check, then for a new key the order, its lines, orders.created in the
 * outbox and the stored answer, all in the caller's transaction. */
int orders_place(svc_db *db, void *ud);
/* Writes one order as JSON; SVC_ENOTFOUND. user NULL: any owner (admin). */
int orders_get(svc_db *db, int64_t id, const char *user, svc_jw *w);
/* Writes {"orders":[...],"total","skip","limit"}; user NULL: every order. */
int orders_list(svc_db *db, const char *user, int64_t limit, int64_t skip, svc_jw *w);
/* The saga's effects (svc_db_event_fn), in the consumer's write. */
int orders_on_stock_rejected(svc_db *db, const svc_event *ev, void *ud);
int orders_on_payment(svc_db *db, const svc_event *ev, void *ud);

#endif
