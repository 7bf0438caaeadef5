/*
 * payments' stock.reserved consumer, a batch at a time (thread pool): the
 * events checked and the orders charged already dropped; the simulated
 * provider asked for the others, all at once, outside any transaction; then
 * every charge's write (payments_record) queued together
 * (svc_db_write_wait_all), so a batch shares one commit and the provider
 * never holds the writer. Each message is settled on its own, from its own
 * check and its own write's status: one that fails is redelivered or
 * refused alone, and the rest of its batch is acked.
 *
 * One charge per order: the provider is asked only when the order has none
 * (the simulated one answers the same for the same order, as a provider
 * keyed by an idempotency key does), and the write checks again.
 */
#include <stdio.h>
#include <string.h>

#include "payments.h"

/* svc_app_on_stream_batch hands at most SVC_MSG_STREAM_BATCH events, and
 * svc_db_write_wait_all takes up to SVC_DB_MAX_BATCH closures: a whole batch
 * must fit in one call, or its charges would not share a commit. */
_Static_assert(SVC_MSG_STREAM_BATCH <= SVC_DB_MAX_BATCH,
               "a batch of stock.reserved must fit in one svc_db_write_wait_all");

/* ---- the simulated provider -------------------------------------------------------- */

/* Declines fail_rate of the orders, the same ones every time (a hash of the
 * order id): asked twice for one order, it answers the same. */
static int provider_answer(const payments_app *pa, int64_t order_id) {
    uint64_t z = (uint64_t)order_id + 0x9e3779b97f4a7c15ull; /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    double u = (double)(z >> 11) * 0x1.0p-53; /* [0, 1) */
    return u >= pa->fail_rate;
}

/* Charges cs[0..n) at once: the calls are in flight together, as a client
 * of a real provider sends them all and awaits the answers, so the batch
 * takes PAYMENT_LATENCY_MS once, not n times. */
static void provider_charge_all(const payments_app *pa, charge *const *cs, size_t n) {
    if (pa->latency_ms > 0) uv_sleep((unsigned)pa->latency_ms);
    for (size_t i = 0; i < n; i++) cs[i]->succeeded = provider_answer(pa, cs[i]->order_id);
}

/* ---- the consumer ------------------------------------------------------------------- */

/* db_consumer_events_total, the family svc_app_on_stream_db counts in. */
static void count(const char *outcome) {
    static const char *const labels[] = {"durable", "outcome"};
    const char *v[] = {PAYMENTS_DURABLE, outcome};
    svc_counter_add(svc_metric_with(svc_metric_counter("db_consumer_events_total",
                                                       "JetStream messages of svc_app_on_stream_db consumers, by outcome",
                                                       2, labels),
                                    v),
                    1);
}

/* Checks the event; SVC_OK and c filled, or the consumer's answer (dropped). */
static int read_event(const svc_event *ev, json_t **doc, charge *c) {
    static const char *const keys[] = {"order_id", "user", "total_cents", NULL};
    if (!ev->msg_id || !*ev->msg_id || strlen(ev->msg_id) > SVC_DB_MSG_ID_MAX) {
        saga_drop(ev, "no_id", NULL);
        count("no_id");
        return SVC_EINVAL;
    }
    if (!saga_event_id_ok(ev->msg_id)) {
        saga_drop(ev, "forged_id", "not an outbox id");
        count("refused");
        return SVC_EINVAL;
    }
    if (!(*doc = saga_event_json(ev, keys))) {
        count("refused");
        return SVC_EINVAL;
    }
    const json_t *amount = json_object_get(*doc, "total_cents");
    c->ev = ev;
    c->order_id = saga_id(*doc, "order_id");
    c->user = json_string_value(json_object_get(*doc, "user"));
    c->amount_cents = json_is_integer(amount) ? (int64_t)json_integer_value(amount) : -1;
    if (!c->order_id || !c->user || !*c->user || strlen(c->user) > SAGA_USER_MAX || c->amount_cents < 0) {
        saga_drop(ev, "malformed", "stock.reserved needs order_id, user and total_cents");
        count("refused");
        return SVC_EINVAL;
    }
    return SVC_OK;
}

static void drop_replay(const charge *c) {
    char detail[64];
    snprintf(detail, sizeof detail, "order %lld is charged already", (long long)c->order_id);
    saga_drop(c->ev, "replay", detail);
    count("duplicate");
}

/* The consumer's answer for a charge after its write returned rc. */
static int settle_charge(const charge *c, int rc) {
    if (rc == SVC_OK && c->duplicate) {
        count("duplicate");
    } else if (rc == SVC_OK && c->charged_before) {
        drop_replay(c);
    } else if (rc == SVC_OK) {
        count("applied");
        svc_info("order %lld: payment of %lld cents %s", (long long)c->order_id, (long long)c->amount_cents,
                 c->succeeded ? "succeeded" : "declined");
    } else if (rc == SVC_EAGAIN || rc == SVC_EIO || rc == SVC_ENOMEM || rc == SVC_ECLOSED) {
        count("retry");
        return SVC_EAGAIN; /* redelivered */
    } else {
        count("refused");
        svc_warn("%s: message %s refused: %s", PAYMENTS_DURABLE, c->ev->msg_id, svc_status_str(rc));
    }
    return rc;
}

/* A batch of stock.reserved: the events checked and the orders charged
 * already dropped; the provider asked for the others, all at once, outside
 * any transaction; then every charge (inbox claim, payment row, outbox
 * event; payments_record) queued together, so they share one commit; then
 * each message settled on its own, from its own write's status. */
void payments_on_stock_reserved(svc_app *app, const svc_event *evs, size_t n, int *rcs, void *ud) {
    (void)app;
    payments_app *pa = ud;
    if (!pa->db) return; /* on_start has not opened it yet: every rcs[i] is SVC_EAGAIN */
    charge cs[SVC_MSG_STREAM_BATCH] = {0};
    json_t *docs[SVC_MSG_STREAM_BATCH] = {0};
    charge *todo[SVC_MSG_STREAM_BATCH];
    const svc_trace_ctx *traces[SVC_MSG_STREAM_BATCH]; /* each charge's write joins its event's trace */
    size_t where[SVC_MSG_STREAM_BATCH];
    int st[SVC_MSG_STREAM_BATCH];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = read_event(&evs[i], &docs[i], &cs[i]);
        int found = 0;
        /* Checked again in the write; asking here spares the provider a replay. */
        if (rc == SVC_OK && (rc = payments_exists(pa->db, cs[i].order_id, &found)) != SVC_OK) {
            count("retry");
            rc = SVC_EAGAIN;
        } else if (rc == SVC_OK && found) {
            drop_replay(&cs[i]);
        } else if (rc == SVC_OK) {
            where[m] = i;
            traces[m] = svc_event_trace(&evs[i]);
            todo[m++] = &cs[i];
            continue;
        }
        rcs[i] = rc;
    }
    if (m) {
        provider_charge_all(pa, todo, m);
        svc_db_write_wait_all(pa->db, payments_record, (void *const *)todo, traces, m, st);
        for (size_t k = 0; k < m; k++) rcs[where[k]] = settle_charge(todo[k], st[k]);
    }
    for (size_t i = 0; i < n; i++) json_decref(docs[i]);
}
