/*
 * Discovery: which instances of each configured service are alive, by the
 * NATS services protocol every svckit service answers (docs/messaging.md).
 * A round is one svc_msg_request_all of "$SRV.PING.<service>" per configured
 * service, all sent at once and gathered over the same GW_DISCOVERY_GATHER_MS
 * window; the ids that answer go to the directory.
 *
 * Why one PING per service rather than one "$SRV.PING" for all: under the
 * shipped NATS permissions (docs/messaging.md, "Permissions") only the
 * products user may subscribe to "$SRV.PING.products" and "svc.products.>",
 * while the generic "$SRV.PING" is open to every service (svckit status
 * asks it). An answer to "$SRV.PING.products" therefore comes from a
 * products instance, and one whose document names another service, or no
 * valid id, is dropped (counted in gateway_discovery_answers_dropped_total):
 * a forged instance of products is never learnt, so never routed to.
 *
 * Rounds run on the first worker's loop (svc_msg_run_on_loop): a timer every
 * discovery.interval_ms, brought forward (rounds at least
 * GW_DISCOVERY_MIN_GAP_MS apart) when a worker asks: a service nobody knows
 * of yet, or an instance that just vanished. Everything below but
 * gw_discovery_wake therefore runs on that one loop, and needs no lock.
 *
 * A service whose gather ends with SVC_ECLOSED (NATS down at its start, or
 * lost during it) keeps its instances as they are: requests fail at once
 * meanwhile anyway, and the instances known are the best guess for when
 * NATS comes back. The next round then comes after GW_DISCOVERY_MIN_GAP_MS,
 * not an interval.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "svckit/msg.h"

#define PING_SUBJECT SVC_MSG_DISCOVERY_PREFIX ".PING."

/* Static: the loop's handles must outlive on_stop (msg.h). */
static struct {
    svc_app *app;
    gw_directory *dir;
    const gw_config *cfg;
    uv_timer_t timer;
    int timer_ready;
    int in_flight;                   /* gathers of the round not ended yet */
    int failed;                      /* one of them ended with an error */
    int again;                       /* asked for during it: another soon after */
    uint64_t last_start_ms;
    char ids[GW_MAX_SERVICES][GW_MAX_INSTANCES][GW_INSTANCE_ID_MAX + 1];
    int n[GW_MAX_SERVICES];
    svc_series *rounds, *dropped;
} D;

static void on_timer(uv_timer_t *t);

/* The next round as soon as the minimum gap allows. */
static void bring_forward(void) {
    uint64_t now = gw_now_ms(), due = D.last_start_ms + GW_DISCOVERY_MIN_GAP_MS;
    uv_timer_start(&D.timer, on_timer, due > now ? due - now : 0, (uint64_t)D.cfg->discovery_interval_ms);
}

/* A round that could not ask (NATS not connected yet, at start, or lost):
 * the next one after the minimum gap rather than a whole interval later, so
 * instances are known as soon as NATS is. */
static void retry_soon(void) {
    uv_timer_start(&D.timer, on_timer, GW_DISCOVERY_MIN_GAP_MS, (uint64_t)D.cfg->discovery_interval_ms);
}

/* One answer to "$SRV.PING.<services[i]>" (ud is i), or the end of that
 * gather (r NULL). The directory takes each service's list as its gather
 * ends; the round is over when every gather is. */
static void on_answer(int err, const svc_msg_reply *r, void *ud) {
    int i = (int)(intptr_t)ud;
    if (r) {
        char name[GW_MAX_SERVICE_NAME + 1], id[GW_INSTANCE_ID_MAX + 1];
        if (!gw_ping_parse(r->data, r->len, name, sizeof name, id, sizeof id) ||
            strcmp(name, D.cfg->services[i]) != 0) {
            svc_counter_add(D.dropped, 1);
            return;
        }
        if (D.n[i] < GW_MAX_INSTANCES) strcpy(D.ids[i][D.n[i]++], id);
        return;
    }
    if (err == SVC_OK) {
        const char *list[GW_MAX_INSTANCES];
        for (int k = 0; k < D.n[i]; k++) list[k] = D.ids[i][k];
        gw_directory_update(D.dir, i, list, D.n[i]);
    } else {
        D.failed = 1;
    }
    if (--D.in_flight > 0) return;
    svc_counter_add(D.rounds, 1);
    if (D.again) {
        D.again = 0;
        bring_forward();
    } else if (D.failed) {
        retry_soon();
    }
}

static void round_start(void) {
    if (D.in_flight) return;
    atomic_store(&D.dir->wanted, 0);
    memset(D.n, 0, sizeof D.n);
    D.failed = 0;
    D.last_start_ms = gw_now_ms();
    for (int i = 0; i < D.cfg->nservices; i++) {
        char subject[sizeof PING_SUBJECT + GW_MAX_SERVICE_NAME];
        snprintf(subject, sizeof subject, PING_SUBJECT "%s", D.cfg->services[i]);
        if (svc_msg_request_all(D.app, subject, NULL, 0, GW_DISCOVERY_GATHER_MS, on_answer, (void *)(intptr_t)i) ==
            SVC_OK)
            D.in_flight++;
        else
            D.failed = 1;
    }
    if (!D.in_flight) retry_soon();
}

static void on_timer(uv_timer_t *t) {
    (void)t;
    round_start();
}

/* On the loop: start the periodic timer, or bring the next round forward. */
static void on_loop(uv_loop_t *loop, void *ud) {
    int wake = ud != NULL;
    uint64_t interval = (uint64_t)D.cfg->discovery_interval_ms;
    if (!D.timer_ready) {
        uv_timer_init(loop, &D.timer);
        uv_unref((uv_handle_t *)&D.timer);
        D.timer_ready = 1;
        uv_timer_start(&D.timer, on_timer, 0, interval);
        return;
    }
    if (!wake) return;
    /* The round under way may have pinged before the change: one more after it. */
    if (D.in_flight) D.again = 1;
    else bring_forward();
}

int gw_discovery_start(svc_app *app, const gw_config *c, gw_directory *d) {
    const svc_config *cfg = svc_app_config(app);
    D.app = app;
    D.dir = d;
    D.cfg = c;
    D.rounds = svc_metric_with(
        svc_metric_counter("gateway_discovery_rounds_total", "Discovery rounds ended (every service asked)", 0, NULL),
        NULL);
    D.dropped = svc_metric_with(svc_metric_counter("gateway_discovery_answers_dropped_total",
                                                   "Discovery answers not for the service asked, or malformed", 0,
                                                   NULL),
                                NULL);
    if (!cfg->nats_url || strcmp(cfg->nats_url, "none") == 0 || c->nservices == 0) {
        svc_info("gateway: no discovery (NATS_URL=none or no routes)");
        return SVC_OK;
    }
    if (svc_msg_run_on_loop(app, on_loop, NULL) != SVC_OK) {
        svc_error("gateway: cannot schedule discovery");
        return SVC_ERR;
    }
    return SVC_OK;
}

void gw_discovery_wake(gw_directory *d) {
    /* Many workers may ask at once; one hand-over is enough. The flag is
     * cleared when a round starts. */
    if (!D.app || atomic_exchange(&d->wanted, 1)) return;
    if (svc_msg_run_on_loop(D.app, on_loop, (void *)1) != SVC_OK) atomic_store(&d->wanted, 0);
}

/* A leave notice: that instance gets nothing new from now on (the calls
 * already on it wait for its answer: it drains). A worker loop runs this. */
static int on_leave(svc_app *app, const svc_event *ev, void *ud) {
    (void)app;
    (void)ud;
    char name[GW_MAX_SERVICE_NAME + 1], id[GW_INSTANCE_ID_MAX + 1];
    if (!D.cfg || !gw_leave_parse(ev->subject, name, sizeof name, id, sizeof id)) return SVC_OK;
    for (int i = 0; i < D.cfg->nservices; i++) {
        if (strcmp(name, D.cfg->services[i]) != 0) continue;
        gw_directory_leave(D.dir, i, id);
        /* Its replacement may be starting: look soon. */
        gw_discovery_wake(D.dir);
        break;
    }
    return SVC_OK;
}

int gw_discovery_listen(svc_app *app) {
    /* Queue group "": every gateway instance hears every notice. */
    return svc_app_on_event(app, SVC_MSG_LEAVE_PREFIX ".>", "", on_leave, 0, NULL);
}

void gw_discovery_stop(void) {
    /* The worker closed the timer when its loop ended; nothing else is held. */
    D.app = NULL;
}
