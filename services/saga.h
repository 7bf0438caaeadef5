/*
 * saga.h: what the shop's checkout services (products, orders, payments)
 * share about the events between them (docs/messaging.md, "The checkout
 * saga"). Header-only: each service includes it as "../saga.h".
 *
 * One JetStream stream, SHOP (file storage), holds every saga event:
 *
 *   orders.created    orders   -> products  {order_id, user, items[{product_id,quantity}], total_cents}
 *   stock.reserved    products -> payments  {order_id, user, total_cents}
 *   stock.rejected    products -> orders    {order_id, reason: "out_of_stock"|"unknown_product"}
 *   payment.succeeded payments -> orders    {order_id, amount_cents}
 *   payment.declined  payments -> orders    {order_id, amount_cents}
 *   orders.cancelled  orders   -> products  {order_id}   (only after a payment.declined:
 *                                                         the stock was reserved)
 *
 * Every service of the saga declares the stream the same way at start, so
 * none depends on another having started first. Each event is written with
 * svc_db_outbox_add in the transaction of its state change and relayed with
 * its outbox msg_id as Nats-Msg-Id; each consumer claims that id in its
 * inbox in the transaction of its effect (svckit/outbox.h).
 */
#ifndef SVCKIT_SAGA_H
#define SVCKIT_SAGA_H

#include <string.h>

#include "svckit.h"

#define SAGA_STREAM "SHOP"
#define SAGA_ACK_WAIT_MS 5000                /* redelivery of an unacked event (a crash): the saga resumes within it */
#define SAGA_MAX_ITEMS 50                    /* lines of one order */
#define SAGA_MAX_QUANTITY 100                /* of one line */
#define SAGA_USER_MAX 127                    /* a token's sub */
#define SAGA_EVENT_MAX_BYTES (16 * 1024)     /* an event body: 50 lines fit in 4 KB */

/* Declares stream SAGA_STREAM (from on_start). Not connected yet: the library
 * applies it once connected, before consumers bind. */
static inline int saga_stream_ensure(svc_app *app) {
    static const char *const subjects[] = {"orders.>", "stock.>", "payment.>", NULL};
    int rc = svc_js_stream_ensure(app, SAGA_STREAM, subjects, SVC_OUTBOX_DUPLICATE_WINDOW_MS);
    if (rc != SVC_OK && rc != SVC_ECLOSED)
        svc_warn("stream %s not declared yet (%s); it is declared again on reconnect", SAGA_STREAM,
                 svc_status_str(rc));
    return rc == SVC_ECLOSED ? SVC_OK : rc; /* NATS_URL=none: no saga, the HTTP API still serves */
}

/* True for an id the outbox makes ("<16 hex>.<decimal id>"): anything else
 * on a saga subject was not written by a saga service's outbox (forged). */
static inline int saga_event_id_ok(const char *id) {
    if (!id) return 0;
    const char *p = id;
    while (p - id < 16 && ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'))) p++;
    if (p - id != 16 || *p != '.') return 0;
    const char *digits = ++p;
    while (*p >= '0' && *p <= '9') p++;
    return p > digits && p - digits <= 24 && *p == '\0';
}

/* An event dropped without a state change: one log line and
 * saga_events_dropped_total{subject,reason}. reason is a fixed word
 * (malformed, forged_id, unknown_order, replay, ...). */
static inline void saga_drop(const svc_event *ev, const char *reason, const char *detail) {
    static const char *const labels[] = {"subject", "reason"};
    svc_metric *m = svc_metric_counter("saga_events_dropped_total",
                                       "saga events dropped without a state change, by reason", 2, labels);
    /* The saga's subjects by name; anything else a publisher made up counts
     * as "other", so no publisher can grow the label set. */
    static const char *const known[] = {"orders.created", "orders.cancelled", "stock.reserved",
                                        "stock.rejected", "payment.succeeded", "payment.declined"};
    const char *subject = "other";
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(ev->subject, known[i]) == 0) subject = known[i];
    const char *values[] = {subject, reason};
    svc_counter_add(svc_metric_with(m, values), 1);
    svc_warn("saga: dropped %s (msg id %.64s): %s%s%s", ev->subject, ev->msg_id ? ev->msg_id : "none", reason,
             detail ? ": " : "", detail ? detail : "");
}

/* The event's body as a JSON object with the given keys only (NULL after
 * saga_drop "malformed"). The caller json_decref()s. */
static inline json_t *saga_event_json(const svc_event *ev, const char *const *keys) {
    svc_json_limits lim = {.max_bytes = SAGA_EVENT_MAX_BYTES, .max_depth = 4, .max_string = 256};
    json_t *doc = NULL;
    char err[160] = "";
    const char *unknown = NULL;
    if (svc_json_parse(ev->data, ev->len, &lim, &doc, err, sizeof err) != SVC_OK) {
        saga_drop(ev, "malformed", err);
        return NULL;
    }
    if (!json_is_object(doc) || svc_json_only_keys(doc, keys, &unknown) != SVC_OK) {
        saga_drop(ev, "malformed", unknown ? "unknown field" : "not an object");
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* A positive integer member of an event (0 when absent or not one). */
static inline int64_t saga_id(const json_t *doc, const char *key) {
    const json_t *v = json_object_get(doc, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

#endif
