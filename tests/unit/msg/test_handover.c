/* Publishes handed from other threads to a worker loop (src/msg/conn.c,
 * svc__msg_pub_any) are bounded by SVC_MSG_MAX_HANDED_BYTES, connected or
 * not. The worker here has no loop (never ready): what is handed over stays
 * queued, as it would behind a loop that has fallen behind. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "msg/internal.h"
#include "svckit/obs.h"
#include "../test.h"

#define PAYLOAD (64 * 1024)

typedef struct fixture {
    svc_msg m;
    msg_worker w;
} fixture;

static void setup(fixture *f, int connected) {
    memset(f, 0, sizeof *f);
    f->m.workers = &f->w;
    f->m.nworkers = 1;
    f->m.s_publish_failed = svc_metric_with(svc_metric_counter("test_publish_failures_total", "", 0, NULL), NULL);
    f->w.m = &f->m;
    pthread_mutex_init(&f->w.lock, NULL);
    atomic_store(&f->w.connected, connected);
}

/* What the loop does with each handed publish, short of sending it. */
static long take_all(fixture *f) {
    long n = 0;
    msg_item *it = f->w.hi_head;
    f->w.hi_head = f->w.hi_tail = NULL;
    while (it) {
        msg_item *next = it->next;
        atomic_fetch_sub(&f->w.handed_bytes, (long long)it->bytes);
        free(it->ptr);
        free(it);
        it = next;
        n++;
    }
    return n;
}

static double failures(fixture *f) { return svc_series_value(f->m.s_publish_failed); }

/* Publishes PAYLOAD-byte messages until the first refusal; returns how many went. */
static long fill(fixture *f, const char *data, int *refusal) {
    long ok = 0;
    for (;;) {
        int rc = svc__msg_pub_any(&f->m, "ev.handed", NULL, NULL, 0, data, PAYLOAD);
        if (rc != SVC_OK) {
            *refusal = rc;
            return ok;
        }
        ok++;
        if (ok > 10 * (SVC_MSG_MAX_HANDED_BYTES / PAYLOAD)) {
            *refusal = SVC_OK;
            return ok;
        }
    }
}

static void check_bounded_while(int connected) {
    static char data[PAYLOAD];
    fixture f;
    setup(&f, connected);
    double failed0 = failures(&f);
    int refusal = 0;
    long ok = fill(&f, data, &refusal);
    CHECK_EQ(refusal, SVC_EAGAIN);
    long per = PAYLOAD + (long)strlen("ev.handed") + 32;
    CHECK_EQ(ok, SVC_MSG_MAX_HANDED_BYTES / per);
    CHECK(atomic_load(&f.w.handed_bytes) <= SVC_MSG_MAX_HANDED_BYTES);
    CHECK_EQ(atomic_load(&f.w.handed_bytes), ok * per);
    CHECK_EQ(failures(&f) - failed0, 1);
    /* Still full: refused again, counted again; a small one that fits goes. */
    CHECK_EQ(svc__msg_pub_any(&f.m, "ev.handed", NULL, NULL, 0, data, PAYLOAD), SVC_EAGAIN);
    CHECK_EQ(failures(&f) - failed0, 2);
    CHECK_EQ(svc__msg_pub_any(&f.m, "ev.small", NULL, NULL, 0, "x", 1), SVC_OK);
    /* Once the loop takes what waited, there is room again. */
    CHECK_EQ(take_all(&f), ok + 1);
    CHECK_EQ(atomic_load(&f.w.handed_bytes), 0);
    CHECK_EQ(svc__msg_pub_any(&f.m, "ev.handed", NULL, NULL, 0, data, PAYLOAD), SVC_OK);
    take_all(&f);
    pthread_mutex_destroy(&f.w.lock);
}

TEST(handed_publishes_are_bounded_while_connected) { check_bounded_while(1); }

TEST(handed_publishes_are_bounded_while_disconnected) { check_bounded_while(0); }

typedef struct racer {
    fixture *f;
    long ok, eagain;
} racer;

static void *race(void *arg) {
    racer *r = arg;
    static char data[4000];
    for (int i = 0; i < 4000; i++) {
        int rc = svc__msg_pub_any(&r->f->m, "ev.race", NULL, NULL, 0, data, sizeof data);
        if (rc == SVC_OK) r->ok++;
        else if (rc == SVC_EAGAIN) r->eagain++;
    }
    return NULL;
}

/* Four threads after the last room: together they never pass the bound. */
TEST(racing_threads_never_overshoot_the_bound) {
    fixture f;
    setup(&f, 1);
    double failed0 = failures(&f);
    racer r[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (racer){&f, 0, 0};
        pthread_create(&th[i], NULL, race, &r[i]);
    }
    long ok = 0, eagain = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += r[i].ok;
        eagain += r[i].eagain;
    }
    long per = 4000 + (long)strlen("ev.race") + 32;
    CHECK_EQ(ok + eagain, 4 * 4000);
    CHECK_EQ(ok, SVC_MSG_MAX_HANDED_BYTES / per);
    CHECK_EQ(atomic_load(&f.w.handed_bytes), ok * per);
    CHECK_EQ(failures(&f) - failed0, eagain);
    CHECK_EQ(take_all(&f), ok);
    pthread_mutex_destroy(&f.w.lock);
}
