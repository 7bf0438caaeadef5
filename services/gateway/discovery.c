/*
 * Discovery: which instances of each configured service are alive, by the
 * NATS services protocol every svckit service answers (docs/messaging.md):
 * publish $SRV.PING.<service> with a reply inbox, gather the answers for
 * GW_DISCOVERY_GATHER_MS, and hand the ids to the directory. One thread does
 * this every discovery.interval_ms, and at once (rounds at least
 * GW_DISCOVERY_MIN_GAP_MS apart) when a worker asks: a service nobody knows
 * of yet, or an instance that just vanished.
 *
 * The scatter-gather needs several answers to one request, which
 * svc_rpc_call (one reply) does not give, so this thread keeps a small NATS
 * connection of its own for it, with the same NATS_URL. While it is not
 * connected the directory is left as it is: requests then fail on the
 * gateway's main connection anyway, and the instances known are the best
 * guess for when it comes back.
 */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway.h"
#include "svckit/msg.h"

#define MAX_URLS 16

static struct {
    pthread_t thread;
    int running;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int stop;                        /* under mu */
    gw_directory *dir;
    const gw_config *cfg;
    natsOptions *opts;
    natsConnection *nc;
    char *urls_buf;
    const char *urls[MAX_URLS];
    int nurls;
} D = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- one round ------------------------------------------------------------- */

static void round_once(void) {
    const gw_config *c = D.cfg;
    if (natsConnection_Status(D.nc) != NATS_CONN_STATUS_CONNECTED) return;
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    char wildcard[128];
    if (natsInbox_Create(&inbox) != NATS_OK) return;
    snprintf(wildcard, sizeof wildcard, "%s.*", (const char *)inbox);
    if (natsConnection_SubscribeSync(&sub, D.nc, wildcard) != NATS_OK) {
        natsInbox_Destroy(inbox);
        return;
    }
    for (int i = 0; i < c->nservices; i++) {
        char subject[128], reply[128];
        snprintf(subject, sizeof subject, "%s.PING.%s", SVC_MSG_DISCOVERY_PREFIX, c->services[i]);
        snprintf(reply, sizeof reply, "%s.%d", (const char *)inbox, i);
        natsConnection_PublishRequest(D.nc, subject, reply, NULL, 0);
    }
    natsConnection_FlushTimeout(D.nc, GW_DISCOVERY_GATHER_MS);

    /* Answers per service; the tables are small and this thread's own. */
    static char ids[GW_MAX_SERVICES][GW_MAX_INSTANCES][GW_INSTANCE_ID_MAX + 1];
    int n[GW_MAX_SERVICES] = {0};
    size_t prefix = strlen((const char *)inbox) + 1;
    uint64_t deadline = gw_now_ms() + GW_DISCOVERY_GATHER_MS;
    for (;;) {
        uint64_t now = gw_now_ms();
        if (now >= deadline) break;
        natsMsg *msg = NULL;
        if (natsSubscription_NextMsg(&msg, sub, (int64_t)(deadline - now)) != NATS_OK) break;
        const char *subj = natsMsg_GetSubject(msg);
        char name[GW_MAX_SERVICE_NAME + 1];
        int64_t idx = -1;
        if (subj && strlen(subj) > prefix && svc_parse_i64(subj + prefix, &idx) == SVC_OK && idx >= 0 &&
            idx < c->nservices && n[idx] < GW_MAX_INSTANCES &&
            gw_ping_parse(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), name, sizeof name,
                          ids[idx][n[idx]], sizeof ids[0][0]) &&
            strcmp(name, c->services[idx]) == 0)
            n[idx]++;
        natsMsg_Destroy(msg);
    }
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    /* A round cut short by a disconnection says nothing about the services. */
    if (natsConnection_Status(D.nc) != NATS_CONN_STATUS_CONNECTED) return;
    for (int i = 0; i < c->nservices; i++) {
        const char *list[GW_MAX_INSTANCES];
        for (int k = 0; k < n[i]; k++) list[k] = ids[i][k];
        gw_directory_update(D.dir, i, list, n[i]);
    }
}

/* ---- the thread ---------------------------------------------------------------- */

static void deadline_in(struct timespec *ts, uint64_t ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *run(void *arg) {
    (void)arg;
    uint64_t last = 0;
    pthread_mutex_lock(&D.mu);
    while (!D.stop) {
        uint64_t now = gw_now_ms();
        uint64_t due = last + (uint64_t)D.cfg->discovery_interval_ms;
        if (atomic_load(&D.dir->wanted)) {
            uint64_t soon = last + GW_DISCOVERY_MIN_GAP_MS;
            if (soon < due) due = soon;
        }
        if (last && now < due) {
            struct timespec ts;
            deadline_in(&ts, due - now);
            pthread_cond_timedwait(&D.cond, &D.mu, &ts);
            continue;
        }
        atomic_store(&D.dir->wanted, 0);
        pthread_mutex_unlock(&D.mu);
        round_once();
        last = gw_now_ms();
        pthread_mutex_lock(&D.mu);
    }
    pthread_mutex_unlock(&D.mu);
    return NULL;
}

void gw_discovery_wake(gw_directory *d) {
    /* Many workers may ask at once; one signal is enough. */
    if (atomic_exchange(&d->wanted, 1) || !D.running) return;
    pthread_mutex_lock(&D.mu);
    pthread_cond_signal(&D.cond);
    pthread_mutex_unlock(&D.mu);
}

static int split_urls(const char *list) {
    if (!(D.urls_buf = strdup(list))) return SVC_ENOMEM;
    D.nurls = 0;
    for (char *save = NULL, *tok = strtok_r(D.urls_buf, ",", &save); tok && D.nurls < MAX_URLS;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (*tok) D.urls[D.nurls++] = tok;
    }
    return D.nurls ? SVC_OK : SVC_EINVAL;
}

int gw_discovery_start(svc_app *app, const gw_config *c, gw_directory *d) {
    const svc_config *cfg = svc_app_config(app);
    D.dir = d;
    D.cfg = c;
    if (!cfg->nats_url || strcmp(cfg->nats_url, "none") == 0 || c->nservices == 0) {
        svc_info("gateway: no discovery (NATS_URL=none or no routes)");
        return SVC_OK;
    }
    if (split_urls(cfg->nats_url) != SVC_OK) return SVC_ERR;
    char name[96];
    snprintf(name, sizeof name, "%s-discovery", svc_app_name(app));
    if (natsOptions_Create(&D.opts) != NATS_OK || natsOptions_SetServers(D.opts, D.urls, D.nurls) != NATS_OK ||
        natsOptions_SetName(D.opts, name) != NATS_OK || natsOptions_SetMaxReconnect(D.opts, -1) != NATS_OK ||
        natsOptions_SetReconnectWait(D.opts, SVC_MSG_RECONNECT_WAIT_MS) != NATS_OK ||
        natsOptions_SetRetryOnFailedConnect(D.opts, true, NULL, NULL) != NATS_OK ||
        /* A service with no instance must not end the gathering for the others. */
        natsOptions_DisableNoResponders(D.opts, true) != NATS_OK) {
        svc_error("gateway: cannot set up the discovery connection");
        return SVC_ERR;
    }
    natsStatus s = natsConnection_Connect(&D.nc, D.opts);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        svc_error("gateway: discovery connection: %s", natsStatus_GetText(s));
        return SVC_ERR;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&D.cond, &ca);
    pthread_condattr_destroy(&ca);
    D.stop = 0;
    if (pthread_create(&D.thread, NULL, run, NULL) != 0) {
        svc_error("gateway: cannot start the discovery thread");
        return SVC_ERR;
    }
    D.running = 1;
    return SVC_OK;
}

void gw_discovery_stop(void) {
    if (D.running) {
        pthread_mutex_lock(&D.mu);
        D.stop = 1;
        pthread_cond_signal(&D.cond);
        pthread_mutex_unlock(&D.mu);
        pthread_join(D.thread, NULL);
        pthread_cond_destroy(&D.cond);
        D.running = 0;
    }
    natsConnection_Destroy(D.nc);
    D.nc = NULL;
    natsOptions_Destroy(D.opts);
    D.opts = NULL;
    free(D.urls_buf);
    D.urls_buf = NULL;
}
