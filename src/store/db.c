/*
 * SQLite helpers: per-thread connections, a statement cache, migrations.
 *
 * Why per-thread connections instead of one connection behind a mutex: the
 * event-loop workers read on every request, and a shared connection would
 * serialise them (and make a writer on the thread pool stall every loop).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "obs/internal.h"
#include "store/internal.h"

int svc_db_status(int rc) {
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW: return SVC_OK;
    case SQLITE_CONSTRAINT: return SVC_EEXIST;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return SVC_EAGAIN;
    case SQLITE_NOMEM: return SVC_ENOMEM;
    case SQLITE_NOTFOUND: return SVC_ENOTFOUND;
    case SQLITE_TOOBIG:
    case SQLITE_RANGE: return SVC_ERANGE;
    default: return SVC_EIO;
    }
}

static int count_commit(void *arg) {
    db_conn *c = arg;
    c->own_commits++;
    return 0; /* 0: let the commit proceed */
}

int svc__db_exec_logged(sqlite3 *db, const char *sql) {
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        svc_error("sqlite: %s: %s", sql, err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
    }
    return rc;
}

/* A span per statement when this thread works for a sampled trace
 * (svc__trace_current): SQLITE_TRACE_STMT notes when it starts, and
 * SQLITE_TRACE_PROFILE (once, when it ends) records it. SQLite's own run time
 * has the VFS clock's millisecond steps, so the span is timed here. The text
 * is the statement as prepared (sqlite3_sql), never the values bound to it.
 * Unsampled, this costs a thread-local read per statement. */
static _Thread_local sqlite3_stmt *tl_stmt;
static _Thread_local uint64_t tl_stmt_start;

static int trace_statement(unsigned type, void *ud, void *p, void *x) {
    const svc_trace_ctx *ctx = svc__trace_current();
    if (!ctx || !(ctx->flags & SVC_TRACE_SAMPLED)) return 0;
    if (type == SQLITE_TRACE_STMT) {
        if (tl_stmt != p) tl_stmt = p, tl_stmt_start = svc_now_ns();
        return 0;
    }
    if (type != SQLITE_TRACE_PROFILE) return 0;
    uint64_t now = svc_now_ns();
    uint64_t ns = tl_stmt == p ? now - tl_stmt_start : (uint64_t)*(sqlite3_int64 *)x;
    if (tl_stmt == p) tl_stmt = NULL;
    const char *sql = sqlite3_sql((sqlite3_stmt *)p);
    svc_span s;
    svc_span_begin(&s, ctx, SVC_SPAN_CLIENT, "sqlite");
    s.start_ns -= ns;
    s.dur_ns = ns;
    s.detail_is = SVC_SPAN_DETAIL_SQL;
    svc_span_set(s.detail, sizeof s.detail, sql);
    svc_span_set(s.peer, sizeof s.peer, "sqlite");
    svc__trace_record(&s);
    return 0;
}

/* Set on event-loop worker threads (svc__db_thread_is_loop). */
static _Thread_local bool tl_loop;

void svc__db_thread_is_loop(void) { tl_loop = true; }

#define LOOP_BUSY_STEP_MS 5

/* The busy handler of a loop's connection: SVC_DB_LOOP_BUSY_TIMEOUT_MS in
 * steps, then SQLITE_BUSY, counted. */
static int loop_busy(void *ud, int count) {
    db_conn *c = ud;
    if ((count + 1) * LOOP_BUSY_STEP_MS > SVC_DB_LOOP_BUSY_TIMEOUT_MS) {
        svc_counter_add(c->m_loop_busy, 1);
        return 0;
    }
    sqlite3_sleep(LOOP_BUSY_STEP_MS);
    return 1;
}

static sqlite3 *open_connection(const char *path) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        svc_error("sqlite: cannot open %s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, SVC_DB_BUSY_TIMEOUT_MS);
    sqlite3_trace_v2(db, SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE, trace_statement, NULL);
    sqlite3_extended_result_codes(db, 1);
    if (svc__db_exec_logged(db, "PRAGMA journal_mode=WAL") != SQLITE_OK ||
        svc__db_exec_logged(db, "PRAGMA synchronous=FULL") != SQLITE_OK ||
        svc__db_exec_logged(db, "PRAGMA foreign_keys=ON") != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static void conn_free(db_conn *c) {
    if (!c) return;
    for (int i = 0; i < c->nstmts; i++) sqlite3_finalize(c->stmts[i].stmt);
    sqlite3_close(c->db);
    free(c);
}

static db_conn *thread_conn(svc_db *db) {
    db_conn *c = pthread_getspecific(db->key);
    if (c) return c;
    c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->db = open_connection(db->path);
    if (!c->db) {
        free(c);
        return NULL;
    }
    c->owner = pthread_self();
    if (tl_loop) {
        static const char *const label[] = {"db"};
        const char *base = strrchr(db->path, '/');
        const char *v[] = {base ? base + 1 : db->path};
        c->m_loop_busy = svc_metric_with(
            svc_metric_counter("db_loop_busy_total",
                               "Statements on an event-loop worker's connection that gave up on a busy database "
                               "after SVC_DB_LOOP_BUSY_TIMEOUT_MS",
                               1, label),
            v);
        sqlite3_busy_handler(c->db, loop_busy, c);
    }
    sqlite3_commit_hook(c->db, count_commit, c);
    pthread_mutex_lock(&db->lock);
    int ok = db->nconns < SVC_DB_MAX_CONNECTIONS;
    if (ok) db->conns[db->nconns++] = c;
    pthread_mutex_unlock(&db->lock);
    if (!ok) {
        svc_error("sqlite: more than %d threads use %s", SVC_DB_MAX_CONNECTIONS, db->path);
        conn_free(c);
        return NULL;
    }
    pthread_setspecific(db->key, c);
    return c;
}

sqlite3 *svc_db_conn(svc_db *db) {
    db_conn *c = thread_conn(db);
    return c ? c->db : NULL;
}

sqlite3_stmt *svc_db_prepare(svc_db *db, const char *sql) {
    db_conn *c = thread_conn(db);
    if (!c) return NULL;
    for (int i = 0; i < c->nstmts; i++) {
        if (c->stmts[i].key == sql) {
            sqlite3_stmt *s = c->stmts[i].stmt;
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
            return s;
        }
    }
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc != SQLITE_OK) {
        svc_error("sqlite: prepare failed: %s: %s", sqlite3_errmsg(c->db), sql);
        return NULL;
    }
    if (c->nstmts < SVC_DB_MAX_STATEMENTS) {
        c->stmts[c->nstmts++] = (stmt_entry){sql, s};
    } else {
        /* A full cache means the caller builds SQL dynamically; recycle the
         * oldest slot rather than growing without bound. */
        sqlite3_finalize(c->stmts[0].stmt);
        memmove(c->stmts, c->stmts + 1, sizeof c->stmts[0] * (SVC_DB_MAX_STATEMENTS - 1));
        c->stmts[SVC_DB_MAX_STATEMENTS - 1] = (stmt_entry){sql, s};
    }
    return s;
}

int svc_db_exec(svc_db *db, const char *sql) {
    sqlite3 *c = svc_db_conn(db);
    if (!c) return SVC_EIO;
    return svc_db_status(svc__db_exec_logged(c, sql));
}

int svc_db_begin(svc_db *db) { return svc_db_exec(db, "BEGIN IMMEDIATE"); }
int svc_db_commit(svc_db *db) { return svc_db_exec(db, "COMMIT"); }

void svc_db_rollback(svc_db *db) {
    sqlite3 *c = svc_db_conn(db);
    if (c && !sqlite3_get_autocommit(c)) sqlite3_exec(c, "ROLLBACK", NULL, NULL, NULL);
}

bool svc__db_in_transaction(svc_db *db) {
    sqlite3 *c = svc_db_conn(db);
    return c && !sqlite3_get_autocommit(c);
}

int64_t svc_db_version(svc_db *db) {
    db_conn *c = thread_conn(db);
    if (!c) return -1;
    sqlite3_stmt *s = svc_db_prepare(db, "PRAGMA data_version");
    int64_t v = -1;
    if (s && sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
    if (s) sqlite3_reset(s);
    /* data_version moves for other connections' commits; our own are counted
     * by the commit hook. Their sum moves for every commit. */
    return v < 0 ? -1 : v + c->own_commits;
}

int svc_db_integrity_check(svc_db *db) {
    sqlite3_stmt *s = svc_db_prepare(db, "PRAGMA integrity_check");
    if (!s) return SVC_EIO;
    int ok = sqlite3_step(s) == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(s, 0), "ok") == 0;
    sqlite3_reset(s);
    return ok ? SVC_OK : SVC_EIO;
}

static int migrate(svc_db *db, const svc_migration *m, size_t n) {
    sqlite3 *c = svc_db_conn(db);
    if (!c) return SVC_EIO;
    sqlite3_stmt *s = svc_db_prepare(db, "PRAGMA user_version");
    if (!s || sqlite3_step(s) != SQLITE_ROW) return SVC_EIO;
    int current = sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    int latest = n ? m[n - 1].version : 0;
    if (current > latest) {
        svc_error("database %s is at schema version %d, newer than this build knows (%d)", db->path, current,
                  latest);
        return SVC_EIO;
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i].version != (int)i + 1) {
            svc_error("migration %zu has version %d; versions must be 1, 2, 3, ...", i, m[i].version);
            return SVC_EINVAL;
        }
        if (m[i].version <= current) continue;
        if (svc_db_begin(db) != SVC_OK) return SVC_EIO;
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version=%d", m[i].version);
        if (svc__db_exec_logged(c, m[i].sql) != SQLITE_OK || svc__db_exec_logged(c, pragma) != SQLITE_OK) {
            svc_db_rollback(db);
            svc_error("migration %d (%s) failed", m[i].version, m[i].name);
            return SVC_EIO;
        }
        if (svc_db_commit(db) != SVC_OK) return SVC_EIO;
        svc_info("database %s: applied migration %d (%s)", db->path, m[i].version, m[i].name);
    }
    return SVC_OK;
}

int svc_db_open(const char *path, const svc_migration *migrations, size_t n, svc_db **out) {
    *out = NULL;
    /* Create the file ourselves so it starts life as 0600, not umask-wide. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        svc_error("cannot open database %s: %s", path, strerror(errno));
        return SVC_EIO;
    }
    close(fd);
    svc_db *db = calloc(1, sizeof *db);
    if (!db) return SVC_ENOMEM;
    db->path = strdup(path);
    pthread_mutex_init(&db->lock, NULL);
    if (!db->path || pthread_key_create(&db->key, NULL) != 0) {
        pthread_mutex_destroy(&db->lock);
        free(db->path);
        free(db);
        return SVC_ENOMEM;
    }
    svc__db_write_init(db);
    if (sodium_init() < 0) {
        svc_db_close(db);
        return SVC_EIO;
    }
    unsigned char epoch[8];
    randombytes_buf(epoch, sizeof epoch);
    sodium_bin2hex(db->epoch, sizeof db->epoch, epoch, sizeof epoch);
    int rc = svc__db_library_migrate(db);
    if (rc == SVC_OK) rc = migrate(db, migrations, n);
    if (rc != SVC_OK) {
        svc_db_close(db);
        return rc;
    }
    *out = db;
    return SVC_OK;
}

void svc_db_close(svc_db *db) {
    if (!db) return;
    svc__db_write_stop(db);
    for (int i = 0; i < db->nconns; i++) conn_free(db->conns[i]);
    pthread_key_delete(db->key);
    pthread_mutex_destroy(&db->lock);
    free(db->path);
    free(db);
}
