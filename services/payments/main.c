/*
 * payments: configuration, GET /payments and start-up. The stock.reserved
 * consumer, which charges orders through the simulated provider, is in
 * charge.c; the SQLite side in store.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments.h"

/* ---- GET /payments?order_id=N ------------------------------------------------------ */

/* The charges of an order: the owner's or, for an admin, anyone's. Someone
 * else's order lists nothing, exactly as an order without charges does. */
static svc_outcome list_payments(svc_req *req, svc_res *res) {
    int64_t order_id = 0;
    svc_parse_i64(svc_req_query(req, "order_id"), &order_id); /* declared: required, a positive integer */
    const svc_claims *cl = svc_req_claims(req);
    payments_app *pa = svc_req_app_data(req);
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    int rc = payments_list(pa->db, order_id, strcmp(cl->role, "admin") == 0 ? NULL : cl->sub, &w);
    if (rc == SVC_OK) rc = svc_jw_ok(&w);
    svc_outcome out;
    if (rc == SVC_OK) {
        out = svc_res_body(res, 200, "application/json", b.data, b.len);
    } else if (rc == SVC_EAGAIN) { /* busy or locked past SVC_DB_LOOP_BUSY_TIMEOUT_MS */
        svc_res_header(res, "Retry-After", PAYMENTS_RETRY_AFTER_S);
        out = svc_res_error(res, 503, "unavailable", "payments storage is busy, retry");
    } else {
        out = svc_res_error(res, 500, "internal", "payments storage error");
    }
    svc_buf_free(&b);
    return out;
}

/* ---- start-up ------------------------------------------------------------------------ */

/* PAYMENT_FAIL_RATE and PAYMENT_LATENCY_MS: SVC_EINVAL after one line naming
 * the variable (the service stops, exit 2). */
static int read_config(svc_app *app, payments_app *pa) {
    const char *rate = svc_app_env(app, "PAYMENT_FAIL_RATE");
    char *end = NULL;
    pa->fail_rate = rate && *rate ? strtod(rate, &end) : NAN;
    if (!end || *end || !(pa->fail_rate >= 0 && pa->fail_rate <= 1)) {
        svc_error("PAYMENT_FAIL_RATE must be a number from 0 to 1, got '%.64s'", rate ? rate : "");
        return SVC_EINVAL;
    }
    const char *lat = svc_app_env(app, "PAYMENT_LATENCY_MS");
    if (!lat || svc_parse_i64(lat, &pa->latency_ms) != SVC_OK || pa->latency_ms < 0 ||
        pa->latency_ms > PAYMENTS_MAX_LATENCY_MS) {
        svc_error("PAYMENT_LATENCY_MS must be an integer from 0 to %d, got '%.64s'", PAYMENTS_MAX_LATENCY_MS,
                  lat ? lat : "");
        return SVC_EINVAL;
    }
    return SVC_OK;
}

static int db_ready(void *ud, char *reason, size_t len) {
    payments_app *pa = ud;
    if (!pa->db || svc_db_version(pa->db) < 0) {
        snprintf(reason, len, "payments database unavailable");
        return SVC_ERR;
    }
    return SVC_OK;
}

static int on_start(svc_app *app, void *ud) {
    payments_app *pa = ud;
    int rc = read_config(app, pa);
    if (rc != SVC_OK) return rc;
    svc_db *db;
    if (payments_open(svc_app_config(app)->data_dir, &db) != SVC_OK) return SVC_ERR;
    saga_stream_ensure(app);
    rc = svc_outbox_relay_start(app, db, &pa->relay);
    pa->db = db; /* the consumer starts charging from here */
    return rc;
}

static void on_stop(svc_app *app, void *ud) {
    (void)app;
    payments_app *pa = ud;
    svc_outbox_relay_stop(pa->relay);
    pa->relay = NULL;
    svc_db *db = pa->db;
    pa->db = NULL;
    svc_db_close(db);
}

static const svc_schema positive = {.type = SVC_INTEGER, .has_min = 1, .minimum = 1};
static const svc_route_spec list_spec = {
    "An order's payments (the caller's own order, or any for an admin)",
    .query = (const svc_param[]){{"order_id", &positive, 1, "the order"}, {0}},
    .responses = (const svc_response[]){{200, "{\"payments\":[{\"id\",\"order_id\",\"amount_cents\",\"status\",\"created_at\"}]}", NULL},
                                        {0}},
};

int main(int argc, char **argv) {
    svc_app *app = svc_app_new("payments", argc, argv);
    svc_app_default_port(app, PAYMENTS_DEFAULT_PORT);
    payments_app pa = {0};
    svc_app_set_data(app, &pa);
    svc_app_env_declare(app, "PAYMENT_FAIL_RATE", "0", "share of charges the simulated provider declines, 0 to 1");
    svc_app_env_declare(app, "PAYMENT_LATENCY_MS", "0", "milliseconds each simulated charge takes");
    svc_app_get(app, "/payments", list_payments, SVC_AUTH_USER);
    svc_app_route_spec(app, "GET", "/payments", &list_spec);
    svc_app_on_stream_batch(app, SAGA_STREAM, "stock.reserved", PAYMENTS_DURABLE, SAGA_ACK_WAIT_MS,
                            payments_on_stock_reserved, &pa);
    svc_app_ready_check(app, "payments", db_ready, &pa);
    svc_app_on_start(app, on_start, &pa);
    svc_app_on_stop(app, on_stop, &pa);
    int rc = svc_app_run(app);
    on_stop(NULL, &pa);
    return rc;
}
