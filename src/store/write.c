/*
 * Group commit: one writer thread per database runs queued write closures,
 * up to SVC_DB_MAX_BATCH of them in one transaction, each in its own
 * SAVEPOINT, and commits once. With synchronous=FULL a commit costs an fsync
 * (a few milliseconds on a disk); a batch shares that cost among its writes,
 * so durable writes per second grow with the load instead of being capped by
 * the disk's fsync rate.
 *
 * The queue is a fixed ring: a full queue refuses at once (SVC_EAGAIN) rather
 * than letting callers pile up behind a slow disk. Closing drains it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "store/internal.h"

static const double batch_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

void svc__db_write_init(svc_db *db) {
    db->retention_s = SVC_DB_RETENTION_S;
    pthread_mutex_init(&db->wlock, NULL);
    pthread_mutex_init(&db->hook_lock, NULL);
    pthread_cond_init(&db->wcond, NULL);
    const char *base = strrchr(db->path, '/');
    base = base ? base + 1 : db->path;
    static const char *const label[] = {"db"};
    static const char *const labels_result[] = {"db", "result"};
    const char *v[] = {base};
    db->m_batches = svc_metric_with(
        svc_metric_counter("db_write_batches_total", "Transactions committed by the group-commit writer", 1, label),
        v);
    svc_metric *writes = svc_metric_counter("db_writes_total", "Write closures completed, by result", 2, labels_result);
    db->m_writes_ok = svc_metric_with(writes, (const char *[]){base, "ok"});
    db->m_writes_failed = svc_metric_with(writes, (const char *[]){base, "error"});
    db->m_batch_size = svc_metric_with(
        svc_metric_histogram("db_write_batch_size", "Write closures per committed transaction", 1, label,
                             batch_buckets, (int)(sizeof batch_buckets / sizeof batch_buckets[0])),
        v);
    db->m_queue_full = svc_metric_with(
        svc_metric_counter("db_write_queue_full_total", "Writes refused because the write queue was full", 1, label),
        v);
}

int svc_db_on_commit(svc_db *db, svc_db_commit_fn fn, void *ud) {
    if (!db || !fn) return SVC_EINVAL;
    pthread_mutex_lock(&db->hook_lock);
    int rc = SVC_ERANGE;
    if (db->nhooks < SVC_DB_MAX_COMMIT_HOOKS) {
        db->hooks[db->nhooks++] = (db_hook){fn, ud};
        rc = SVC_OK;
    }
    pthread_mutex_unlock(&db->hook_lock);
    return rc;
}

int svc_db_on_commit_remove(svc_db *db, svc_db_commit_fn fn, void *ud) {
    if (!db) return SVC_EINVAL;
    pthread_mutex_lock(&db->hook_lock);
    int rc = SVC_ENOTFOUND;
    for (int i = 0; i < db->nhooks; i++) {
        if (db->hooks[i].fn == fn && db->hooks[i].ud == ud) {
            memmove(&db->hooks[i], &db->hooks[i + 1], sizeof db->hooks[0] * (size_t)(db->nhooks - i - 1));
            db->nhooks--;
            rc = SVC_OK;
            break;
        }
    }
    pthread_mutex_unlock(&db->hook_lock);
    return rc;
}

/* Runs one statement from the writer's statement cache (errors logged). */
static int step_once(svc_db *db, const char *sql) {
    svc_stmt *s = svc_db_stmt(db, sql);
    if (!s) return SVC_EIO;
    int rc = svc_stmt_step(s);
    svc_stmt_reset(s);
    return rc < 0 ? rc : SVC_OK;
}

/* BEGIN as a cached statement: SQLite's takes the write lock at once. */
static int begin(svc_db *db) { return step_once(db, svc_db_is_pg(db) ? "BEGIN" : "BEGIN IMMEDIATE"); }

/* One transaction for ws[0..n): each closure's status lands in st[]. */
static void run_batch(svc_db *db, db_write *ws, int *st, size_t n) {
    int rc = begin(db);
    if (rc != SVC_OK) {
        for (size_t i = 0; i < n; i++) st[i] = rc;
        return;
    }
    bool lost = false;
    for (size_t i = 0; i < n && !lost; i++) {
        if (step_once(db, "SAVEPOINT svc_write") != SVC_OK) {
            lost = true;
            break;
        }
        const svc_trace_ctx *prev = svc__trace_swap(ws[i].traced ? &ws[i].tctx : NULL);
        st[i] = ws[i].fn(db, ws[i].ud);
        svc__trace_swap(prev);
        if (!svc_db_in_transaction(db)) {
            /* SQLite rolled the whole transaction back (disk full, I/O
             * error), or PostgreSQL's connection broke: everything before
             * this closure is gone too. */
            lost = true;
            break;
        }
        if (st[i] != SVC_OK && step_once(db, "ROLLBACK TO svc_write") != SVC_OK) lost = true;
        else if (step_once(db, "RELEASE svc_write") != SVC_OK) lost = true;
    }
    if (!lost && step_once(db, "COMMIT") == SVC_OK) return;
    svc_db_rollback(db);
    svc_error("database %s: a batch of %zu writes was not committed", db->path, n);
    for (size_t i = 0; i < n; i++)
        if (st[i] == SVC_OK) st[i] = SVC_EIO; /* its changes are gone with the batch */
}

int svc_db_set_retention(svc_db *db, int64_t seconds) {
    if (!db || seconds < 1) return SVC_EINVAL;
    db->retention_s = seconds;
    return SVC_OK;
}

/* The retention sweep, in its own transaction, at most every
 * SVC_DB_SWEEP_INTERVAL_S; bounded per call, so a large backlog goes over
 * several intervals rather than holding the writer. */
static void maybe_sweep(svc_db *db) {
    int64_t now = (int64_t)time(NULL);
    if (now - db->last_sweep < SVC_DB_SWEEP_INTERVAL_S) return;
    db->last_sweep = now;
    if (begin(db) != SVC_OK) return;
    int n = svc_db_sweep(db, now - db->retention_s);
    if (n < 0 || step_once(db, "COMMIT") != SVC_OK) {
        svc_db_rollback(db);
        return;
    }
    if (n > 0) svc_info("database %s: swept %d inbox and idempotency rows", db->path, n);
}

static void *writer_main(void *arg) {
    svc_db *db = arg;
    db_write batch[SVC_DB_MAX_BATCH];
    int st[SVC_DB_MAX_BATCH];
    pthread_mutex_lock(&db->wlock);
    for (;;) {
        while (db->count == 0 && !db->closing) pthread_cond_wait(&db->wcond, &db->wlock);
        if (db->count == 0) break; /* closing, and drained */
        size_t n = db->count < SVC_DB_MAX_BATCH ? db->count : SVC_DB_MAX_BATCH;
        for (size_t i = 0; i < n; i++) batch[i] = db->queue[(db->head + i) % SVC_DB_WRITE_QUEUE];
        db->head = (db->head + n) % SVC_DB_WRITE_QUEUE;
        db->count -= n;
        pthread_mutex_unlock(&db->wlock);

        memset(st, 0, sizeof st[0] * n);
        run_batch(db, batch, st, n);
        size_t ok = 0;
        for (size_t i = 0; i < n; i++) ok += st[i] == SVC_OK;
        if (ok) {
            svc_counter_add(db->m_batches, 1);
            svc_histogram_observe(db->m_batch_size, (double)ok);
        }
        svc_counter_add(db->m_writes_ok, ok);
        svc_counter_add(db->m_writes_failed, n - ok);
        /* Hooks first: whoever a done callback wakes may rely on them having run. */
        if (ok) {
            pthread_mutex_lock(&db->hook_lock);
            for (int i = 0; i < db->nhooks; i++) db->hooks[i].fn(db, db->hooks[i].ud);
            pthread_mutex_unlock(&db->hook_lock);
        }
        for (size_t i = 0; i < n; i++)
            if (batch[i].done) batch[i].done(st[i], batch[i].done_ud);
        maybe_sweep(db);

        pthread_mutex_lock(&db->wlock);
    }
    pthread_mutex_unlock(&db->wlock);
    svc__log_thread_exit();
    return NULL;
}

/* Queues ws[0..n) together (consecutive in the queue, so the writer takes
 * them into one batch when they fit), or none: SVC_EAGAIN when the queue
 * has no room for all of them. traced: ws carry their trace contexts; else
 * each works for the caller's. */
static int queue_writes(svc_db *db, const db_write *ws, size_t n, bool traced) {
    pthread_mutex_lock(&db->wlock);
    int rc = SVC_OK;
    if (db->closing) {
        rc = SVC_ECLOSED;
    } else if (!db->writer_started) {
        db->queue = calloc(SVC_DB_WRITE_QUEUE, sizeof *db->queue);
        if (!db->queue) {
            rc = SVC_ENOMEM;
        } else if (pthread_create(&db->writer, NULL, writer_main, db) != 0) {
            free(db->queue);
            db->queue = NULL;
            rc = SVC_EIO;
        } else {
            db->writer_started = true;
        }
    }
    if (rc == SVC_OK && SVC_DB_WRITE_QUEUE - db->count < n) {
        svc_counter_add(db->m_queue_full, 1);
        rc = SVC_EAGAIN;
    }
    if (rc == SVC_OK) {
        /* The caller's trace goes along: its SQL and outbox events are its children. */
        const svc_trace_ctx *cur = svc__trace_current();
        for (size_t i = 0; i < n; i++) {
            db_write w = ws[i];
            if (!traced) {
                w.traced = cur != NULL;
                if (cur) w.tctx = *cur;
            }
            db->queue[(db->head + db->count + i) % SVC_DB_WRITE_QUEUE] = w;
        }
        db->count += n;
        pthread_cond_signal(&db->wcond);
    }
    pthread_mutex_unlock(&db->wlock);
    return rc;
}

int svc_db_write(svc_db *db, svc_db_write_fn fn, void *ud, svc_db_done_fn done, void *done_ud) {
    if (!db || !fn) return SVC_EINVAL;
    db_write w = {.fn = fn, .ud = ud, .done = done, .done_ud = done_ud};
    return queue_writes(db, &w, 1, false);
}

/* The closures of one svc_db_write_wait_all: done when left reaches 0. */
typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t left;
} waiter;

typedef struct waiting_write {
    waiter *w;
    int *status;
} waiting_write;

static void wake_waiter(int status, void *ud) {
    waiting_write *ww = ud;
    waiter *w = ww->w;
    pthread_mutex_lock(&w->lock);
    *ww->status = status;
    if (--w->left == 0) pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int svc_db_write_wait_all(svc_db *db, svc_db_write_fn fn, void *const *uds, const svc_trace_ctx *const *parents,
                          size_t n, int *st) {
    if (!db || !fn || !st || n < 1 || n > SVC_DB_MAX_BATCH) return SVC_EINVAL;
    pthread_mutex_lock(&db->wlock);
    bool on_writer = db->writer_started && pthread_equal(db->writer, pthread_self());
    pthread_mutex_unlock(&db->wlock);
    if (on_writer) return SVC_EINVAL;
    waiter w = {.left = n};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    db_write ws[SVC_DB_MAX_BATCH];
    waiting_write wws[SVC_DB_MAX_BATCH];
    for (size_t i = 0; i < n; i++) {
        wws[i] = (waiting_write){&w, &st[i]};
        ws[i] = (db_write){.fn = fn, .ud = uds ? uds[i] : NULL, .done = wake_waiter, .done_ud = &wws[i]};
        if (parents && parents[i]) {
            ws[i].traced = true;
            ws[i].tctx = *parents[i];
        }
    }
    int rc = queue_writes(db, ws, n, parents != NULL);
    if (rc == SVC_OK) {
        pthread_mutex_lock(&w.lock);
        while (w.left) pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
    } else {
        for (size_t i = 0; i < n; i++) st[i] = rc;
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return rc;
}

int svc_db_write_wait(svc_db *db, svc_db_write_fn fn, void *ud) {
    int st;
    int rc = svc_db_write_wait_all(db, fn, &ud, NULL, 1, &st);
    return rc == SVC_OK ? st : rc;
}

void svc__db_write_stop(svc_db *db) {
    pthread_mutex_lock(&db->wlock);
    db->closing = true;
    bool started = db->writer_started;
    pthread_cond_signal(&db->wcond);
    pthread_mutex_unlock(&db->wlock);
    if (started) pthread_join(db->writer, NULL);
    free(db->queue);
    pthread_cond_destroy(&db->wcond);
    pthread_mutex_destroy(&db->hook_lock);
    pthread_mutex_destroy(&db->wlock);
}
