/* Group commit: svc_db_write, svc_db_write_wait(_all), svc_db_on_commit. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

#include "store_util.h"
#include "svckit/obs.h"

/* Holds the writer thread inside a closure until opened, so the closures
 * queued meanwhile are committed together, in the next batch. */
typedef struct gate {
    pthread_mutex_t m;
    pthread_cond_t c;
    int entered, open;
} gate;

#define GATE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0}

static int gate_closure(svc_db *db, void *ud) {
    gate *g = ud;
    pthread_mutex_lock(&g->m);
    g->entered = 1;
    pthread_cond_broadcast(&g->c);
    while (!g->open) pthread_cond_wait(&g->c, &g->m);
    pthread_mutex_unlock(&g->m);
    return SVC_OK;
}

static void gate_wait_entered(gate *g) {
    pthread_mutex_lock(&g->m);
    while (!g->entered) pthread_cond_wait(&g->c, &g->m);
    pthread_mutex_unlock(&g->m);
}

/* Queues the gate and waits until the writer is inside it. */
static int hold_writer(svc_db *db, gate *g) {
    if (svc_db_write(db, gate_closure, g, NULL, NULL) != SVC_OK) return 0;
    gate_wait_entered(g);
    return 1;
}

static void gate_open(gate *g) {
    pthread_mutex_lock(&g->m);
    g->open = 1;
    pthread_cond_broadcast(&g->c);
    pthread_mutex_unlock(&g->m);
}

/* Collects done callbacks. */
#define MAX_DONE 8192
typedef struct done_log {
    pthread_mutex_t m;
    pthread_cond_t c;
    int n;
    int status[MAX_DONE];
    int order[MAX_DONE];
} done_log;

static done_log dl = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0}, {0}};

static void on_done(int status, void *ud) {
    int i = (int)(intptr_t)ud;
    pthread_mutex_lock(&dl.m);
    dl.status[i] = status;
    dl.order[dl.n++] = i;
    pthread_cond_broadcast(&dl.c);
    pthread_mutex_unlock(&dl.m);
}

static void wait_done(int n) {
    pthread_mutex_lock(&dl.m);
    while (dl.n < n) pthread_cond_wait(&dl.c, &dl.m);
    pthread_mutex_unlock(&dl.m);
}

static svc_series *series(const char *family, svc_metric_type type, int nlabels, const char *const *names,
                          const char *const *values) {
    static const double b[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    svc_metric *m = type == SVC_COUNTER ? svc_metric_counter(family, NULL, nlabels, names)
                                        : svc_metric_histogram(family, NULL, nlabels, names, b, 9);
    return svc_metric_with(m, values);
}

static double writes_metric(const char *result) {
    static const char *const names[] = {"db", "result"};
    const char *v[] = {test_db_label(), result};
    return svc_series_value(series("db_writes_total", SVC_COUNTER, 2, names, v));
}

static double db_metric(const char *family, svc_metric_type type) {
    static const char *const names[] = {"db"};
    const char *v[] = {test_db_label()};
    return svc_series_value(series(family, type, 1, names, v));
}

TEST(write_wait_commits_before_returning) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    CHECK_EQ(svc_db_write_wait(db, test_insert_item, "a"), SVC_OK);
    /* Visible to another connection (this thread's) at once: committed. */
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM items WHERE name = 'a'"), 1);
    CHECK_EQ(svc_db_write_wait(db, test_insert_item, "a"), SVC_EEXIST);
    CHECK_EQ(writes_metric("ok"), 1);
    CHECK_EQ(writes_metric("error"), 1);
    svc_db_close(db);
    test_remove_db(path);
}

static int insert_then_fail(svc_db *db, void *ud) {
    int rc = test_insert_item(db, ud);
    return rc == SVC_OK ? SVC_ERANGE : rc;
}

TEST(failing_closure_rolls_back_only_itself) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    gate g = GATE_INIT;
    REQUIRE(svc_db_write(db, gate_closure, &g, on_done, (void *)0) == SVC_OK);
    gate_wait_entered(&g);
    /* Queued while the writer is held: one batch of four. */
    CHECK_EQ(svc_db_write(db, test_insert_item, "good1", on_done, (void *)1), SVC_OK);
    CHECK_EQ(svc_db_write(db, insert_then_fail, "bad", on_done, (void *)2), SVC_OK);
    CHECK_EQ(svc_db_write(db, test_insert_item, "good1", on_done, (void *)3), SVC_OK); /* duplicate */
    CHECK_EQ(svc_db_write(db, test_insert_item, "good2", on_done, (void *)4), SVC_OK);
    gate_open(&g);
    wait_done(5);
    CHECK_EQ(dl.status[1], SVC_OK);
    CHECK_EQ(dl.status[2], SVC_ERANGE);
    CHECK_EQ(dl.status[3], SVC_EEXIST);
    CHECK_EQ(dl.status[4], SVC_OK);
    for (int i = 0; i < 5; i++) CHECK_EQ(dl.order[i], i); /* completed in queue order */
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM items"), 2);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM items WHERE name = 'bad'"), 0);
    CHECK_EQ(db_metric("db_write_batches_total", SVC_COUNTER), 2);
    CHECK_EQ(db_metric("db_write_batch_size", SVC_HISTOGRAM), 2);
    svc_db_close(db);
    test_remove_db(path);
}

/* Closures queued together share one commit; each gets its own status. */
TEST(write_wait_all_shares_one_commit_and_reports_each) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    CHECK_EQ(svc_db_write_wait(db, test_insert_item, "first"), SVC_OK); /* the writer is up and idle */
    double batches = db_metric("db_write_batches_total", SVC_COUNTER);
    char names[8][16];
    void *uds[8];
    for (int i = 0; i < 8; i++) {
        snprintf(names[i], sizeof names[i], "n%d", i == 5 ? 4 : i); /* the sixth repeats the fifth */
        uds[i] = names[i];
    }
    int st[8];
    CHECK_EQ(svc_db_write_wait_all(db, test_insert_item, uds, NULL, 8, st), SVC_OK);
    for (int i = 0; i < 8; i++) CHECK_EQ(st[i], i == 5 ? SVC_EEXIST : SVC_OK);
    CHECK_EQ(db_metric("db_write_batches_total", SVC_COUNTER), batches + 1);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM items"), 8);
    CHECK_EQ(svc_db_write_wait_all(db, test_insert_item, uds, NULL, 0, st), SVC_EINVAL);
    CHECK_EQ(svc_db_write_wait_all(db, test_insert_item, uds, NULL, SVC_DB_MAX_BATCH + 1, st), SVC_EINVAL);
    CHECK_EQ(svc_db_write_wait_all(NULL, test_insert_item, uds, NULL, 1, st), SVC_EINVAL);
    svc_db_close(db);
    test_remove_db(path);
}

TEST(full_queue_refuses_at_once_and_counts) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    gate g = GATE_INIT;
    REQUIRE(hold_writer(db, &g));
    static char names[SVC_DB_WRITE_QUEUE][16];
    for (int i = 0; i < SVC_DB_WRITE_QUEUE; i++) {
        snprintf(names[i], sizeof names[i], "n%d", i);
        CHECK_EQ(svc_db_write(db, test_insert_item, names[i], on_done, (void *)(intptr_t)i), SVC_OK);
    }
    CHECK_EQ(svc_db_write(db, test_insert_item, "over", on_done, (void *)(intptr_t)(MAX_DONE - 1)), SVC_EAGAIN);
    CHECK_EQ(db_metric("db_write_queue_full_total", SVC_COUNTER), 1);
    gate_open(&g);
    wait_done(SVC_DB_WRITE_QUEUE);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM items"), SVC_DB_WRITE_QUEUE);
    /* At most SVC_DB_MAX_BATCH per transaction: the gate's batch and at least 16 more. */
    CHECK(db_metric("db_write_batches_total", SVC_COUNTER) >= 1 + SVC_DB_WRITE_QUEUE / SVC_DB_MAX_BATCH);
    svc_db_close(db);
    test_remove_db(path);
}

typedef struct counter_arg {
    svc_db *db;
    int thread;
    int failures;
} counter_arg;

#define THREADS 8
#define PER_THREAD 300

static int bump(svc_db *db, void *ud) {
    (void)ud;
    return svc_db_exec(db, "UPDATE items SET name = CAST(CAST(name AS INTEGER) + 1 AS TEXT) WHERE id = 1");
}

static void *writer_thread(void *ud) {
    counter_arg *a = ud;
    for (int i = 0; i < PER_THREAD; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d-%d", a->thread, i);
        if (svc_db_write_wait(a->db, test_insert_item, name) != SVC_OK) a->failures++;
        if (svc_db_write_wait(a->db, bump, NULL) != SVC_OK) a->failures++;
    }
    return NULL;
}

TEST(many_threads_write_concurrently) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    REQUIRE(svc_db_exec(db, "INSERT INTO items (name) VALUES ('0')") == SVC_OK); /* id 1 */
    pthread_t t[THREADS];
    counter_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (counter_arg){db, i, 0};
        REQUIRE(pthread_create(&t[i], NULL, writer_thread, &args[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(args[i].failures, 0);
    }
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM items"), 1 + THREADS * PER_THREAD);
    /* Every increment applied exactly once: no lost update between batches. */
    CHECK_EQ(test_db_count(db, "SELECT CAST(name AS INTEGER) FROM items WHERE id = 1"), THREADS * PER_THREAD);
    CHECK_EQ(writes_metric("ok"), 2 * THREADS * PER_THREAD);
    CHECK_EQ(svc_db_integrity_check(db), SVC_OK);
    svc_db_close(db);
    test_remove_db(path);
}

TEST(close_drains_the_queue) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    gate g = GATE_INIT;
    REQUIRE(hold_writer(db, &g));
    static char names[500][16];
    for (int i = 0; i < 500; i++) {
        snprintf(names[i], sizeof names[i], "n%d", i);
        REQUIRE(svc_db_write(db, test_insert_item, names[i], on_done, (void *)(intptr_t)i) == SVC_OK);
    }
    gate_open(&g);
    svc_db_close(db);
    CHECK_EQ(dl.n, 500);
    for (int i = 0; i < 500; i++) CHECK_EQ(dl.status[i], SVC_OK);
    db = test_db_open(path);
    REQUIRE(db);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM items"), 500);
    svc_db_close(db);
    test_remove_db(path);
}

static int nested_wait(svc_db *db, void *ud) {
    return svc_db_write_wait(db, test_insert_item, ud) == SVC_EINVAL ? SVC_OK : SVC_ERR;
}

TEST(write_wait_on_the_writer_thread_is_refused) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    CHECK_EQ(svc_db_write_wait(db, nested_wait, "x"), SVC_OK);
    CHECK_EQ(svc_db_write(db, NULL, NULL, NULL, NULL), SVC_EINVAL);
    svc_db_close(db);
    test_remove_db(path);
}

typedef struct hook_state {
    int calls;
    long long rows_seen;
} hook_state;

static void on_commit(svc_db *db, void *ud) {
    hook_state *h = ud;
    h->calls++;
    /* Called after the commit: the rows are there for any connection. */
    h->rows_seen = test_db_count(db, "SELECT count(*) FROM items");
}

TEST(commit_hook_runs_after_each_durable_batch) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    hook_state h = {0, 0};
    REQUIRE(svc_db_on_commit(db, on_commit, &h) == SVC_OK);
    for (int i = 1; i < SVC_DB_MAX_COMMIT_HOOKS; i++) CHECK_EQ(svc_db_on_commit(db, on_commit, &h), SVC_OK);
    CHECK_EQ(svc_db_on_commit(db, on_commit, &h), SVC_ERANGE);
    hook_state removed = {0, 0};
    CHECK_EQ(svc_db_on_commit_remove(db, on_commit, &removed), SVC_ENOTFOUND);
    CHECK_EQ(svc_db_on_commit_remove(db, on_commit, &h), SVC_OK); /* one of them */
    CHECK_EQ(svc_db_on_commit(db, on_commit, &removed), SVC_OK);
    CHECK_EQ(svc_db_write_wait(db, test_insert_item, "a"), SVC_OK);
    CHECK_EQ(svc_db_on_commit_remove(db, on_commit, &removed), SVC_OK);
    CHECK_EQ(svc_db_write_wait(db, test_insert_item, "b"), SVC_OK); /* removed: not called */
    /* A batch that commits nothing calls no hook. */
    CHECK_EQ(svc_db_write_wait(db, test_insert_item, "a"), SVC_EEXIST);
    svc_db_close(db); /* joins the writer: the hooks have run */
    CHECK_EQ(h.calls, 2 * (SVC_DB_MAX_COMMIT_HOOKS - 1));
    CHECK_EQ(h.rows_seen, 2);
    CHECK_EQ(removed.calls, 1);
    CHECK_EQ(removed.rows_seen, 1);
    test_remove_db(path);
}

/* The child queues writes and dies (_exit, no close) inside the done callback
 * of the 50th; every write reported done before that must be on disk. */
static int crash_pipe = -1;

static void report_then_maybe_die(int status, void *ud) {
    int i = (int)(intptr_t)ud;
    if (status == SVC_OK && write(crash_pipe, &i, sizeof i) != sizeof i) _exit(3);
    if (i == 50) _exit(0);
}

TEST(done_writes_survive_a_crash) {
    const char *path = test_db_path();
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        crash_pipe = p[1];
        svc_db *db = test_db_open(path);
        if (!db) _exit(2);
        static char names[200][16];
        for (int i = 0; i < 200; i++) {
            snprintf(names[i], sizeof names[i], "c%d", i);
            if (svc_db_write(db, test_insert_item, names[i], report_then_maybe_die, (void *)(intptr_t)i) != SVC_OK)
                _exit(4);
        }
        for (;;) pause(); /* the writer thread ends the process */
    }
    close(p[1]);
    int reported[200], n = 0, v;
    while (n < 200 && read(p[0], &v, sizeof v) == sizeof v) reported[n++] = v;
    close(p[0]);
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(n >= 51);
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    for (int i = 0; i < n; i++) {
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM items WHERE name = 'c%d'", reported[i]);
        CHECK_EQ(test_db_count(db, sql), 1);
    }
    CHECK_EQ(svc_db_integrity_check(db), SVC_OK);
    svc_db_close(db);
    test_remove_db(path);
}

/* The same, killed from outside (SIGKILL) at whatever point the writer is,
 * commit included, while 4 threads keep writing. */
static void report_done(int status, void *ud) {
    int i = (int)(intptr_t)ud;
    if (status == SVC_OK && write(crash_pipe, &i, sizeof i) != sizeof i) _exit(3);
}

static svc_db *crash_db;

static void *crash_writer(void *arg) {
    int base = (int)(intptr_t)arg;
    for (int i = 0;; i++) {
        char *name = malloc(16);
        if (!name) _exit(5);
        int id = base + i;
        snprintf(name, 16, "k%d", id);
        /* the name leaks on purpose: the process is about to be killed */
        while (svc_db_write(crash_db, test_insert_item, name, report_done, (void *)(intptr_t)id) == SVC_EAGAIN)
            sched_yield(); /* the queue is full: let the writer work */
    }
    return NULL;
}

TEST(done_writes_survive_a_sigkill_mid_commit) {
    const char *path = test_db_path();
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        crash_pipe = p[1];
        crash_db = test_db_open(path);
        if (!crash_db) _exit(2);
        pthread_t t;
        for (int i = 0; i < 4; i++)
            if (pthread_create(&t, NULL, crash_writer, (void *)(intptr_t)(i * 10000000)) != 0) _exit(4);
        for (;;) pause();
    }
    close(p[1]);
    enum { WANT = 2000 };
    static int reported[WANT];
    int n = 0, v;
    while (n < WANT && read(p[0], &v, sizeof v) == sizeof v) reported[n++] = v;
    kill(pid, SIGKILL);
    int st;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    close(p[0]);
    CHECK_EQ(n, WANT);
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    CHECK_EQ(svc_db_integrity_check(db), SVC_OK);
    long long rows = test_db_count(db, "SELECT count(*) FROM items");
    CHECK(rows >= WANT);
    for (int i = 0; i < n; i++) {
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM items WHERE name = 'k%d'", reported[i]);
        if (test_db_count(db, sql) != 1) {
            CHECK_EQ(reported[i], -1); /* names the missing one */
            break;
        }
    }
    svc_db_close(db);
    test_remove_db(path);
}
