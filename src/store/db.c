/*
 * The store's connections: per-thread connections (SQLite, or PostgreSQL
 * through pg.c), a statement cache, migrations.
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

int svc__db_status(int rc) {
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

static int exec_logged(sqlite3 *db, const char *sql) {
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
    if (exec_logged(db, "PRAGMA journal_mode=WAL") != SQLITE_OK ||
        exec_logged(db, "PRAGMA synchronous=FULL") != SQLITE_OK ||
        exec_logged(db, "PRAGMA foreign_keys=ON") != SQLITE_OK ||
        exec_logged(db, "PRAGMA temp_store=MEMORY") != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* evicted: dropped from a cache whose connection goes on. */
static void stmt_free(svc_stmt *s, bool evicted) {
    if (!s) return;
    if (s->pg) svc__pg.finalize(s->pg, evicted);
    sqlite3_finalize(s->lite);
    free(s);
}

static void conn_free(db_conn *c) {
    if (!c) return;
    for (int i = 0; i < c->nstmts; i++) stmt_free(c->stmts[i], false);
    sqlite3_close(c->db);
    if (c->pg) svc__pg.disconnect(c->pg);
    free(c);
}

/* A PostgreSQL connection for this thread: lock waits bounded as SQLite's
 * busy waits are. The first connection of a db creates its schema. */
static int pg_connect(svc_db *db, db_conn *c) {
    c->pg = svc__pg.connect(db->url, db->schema, db->nconns == 0,
                            tl_loop ? SVC_DB_LOOP_BUSY_TIMEOUT_MS : SVC_DB_BUSY_TIMEOUT_MS, &db->changes);
    return c->pg ? SVC_OK : SVC_EIO;
}

db_conn *svc__db_thread_conn(svc_db *db) {
    db_conn *c = pthread_getspecific(db->key);
    if (c) return c;
    c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (db->url ? pg_connect(db, c) != SVC_OK : !(c->db = open_connection(db->path))) {
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
        /* PostgreSQL: its lock_timeout ends the wait (svc_stmt_step counts). */
        if (c->db) sqlite3_busy_handler(c->db, loop_busy, c);
    }
    if (c->db) sqlite3_commit_hook(c->db, count_commit, c);
    pthread_mutex_lock(&db->lock);
    int ok = db->nconns < SVC_DB_MAX_CONNECTIONS;
    if (ok) db->conns[db->nconns++] = c;
    pthread_mutex_unlock(&db->lock);
    if (!ok) {
        svc_error("store: more than %d threads use %s", SVC_DB_MAX_CONNECTIONS, db->path);
        conn_free(c);
        return NULL;
    }
    pthread_setspecific(db->key, c);
    return c;
}

bool svc_db_is_pg(const svc_db *db) { return db->url != NULL; }

svc_stmt *svc_db_stmt(svc_db *db, const char *sql) {
    db_conn *c = svc__db_thread_conn(db);
    if (!c) return NULL;
    for (int i = 0; i < c->nstmts; i++) {
        svc_stmt *s = c->stmts[i];
        if (s->key == sql) {
            svc_stmt_reset(s);
            if (s->lite) sqlite3_clear_bindings(s->lite);
            else for (int p = 1; p <= SVC_DB_MAX_PARAMS; p++) svc_stmt_bind_null(s, p);
            return s;
        }
    }
    svc_stmt *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->key = sql;
    s->conn = c;
    if (c->pg) {
        s->pg = svc__pg.prepare(c->pg, sql);
    } else if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->lite, NULL) != SQLITE_OK) {
        svc_error("sqlite: prepare failed: %s: %s", sqlite3_errmsg(c->db), sql);
    }
    if (!s->pg && !s->lite) {
        free(s);
        return NULL;
    }
    if (c->nstmts < SVC_DB_MAX_STATEMENTS) {
        c->stmts[c->nstmts++] = s;
    } else {
        /* A full cache means the caller builds SQL dynamically; recycle the
         * oldest slot rather than growing without bound. */
        stmt_free(c->stmts[0], true);
        memmove(c->stmts, c->stmts + 1, sizeof c->stmts[0] * (SVC_DB_MAX_STATEMENTS - 1));
        c->stmts[SVC_DB_MAX_STATEMENTS - 1] = s;
    }
    return s;
}

int svc_db_exec(svc_db *db, const char *sql) {
    db_conn *c = svc__db_thread_conn(db);
    if (!c) return SVC_EIO;
    if (c->pg) return svc__pg.exec(c->pg, sql);
    return svc__db_status(exec_logged(c->db, sql));
}

/* SQLite: take the write lock at once, so a transaction never fails to
 * upgrade a read lock halfway; PostgreSQL locks rows as it goes. */
int svc_db_begin(svc_db *db) { return svc_db_exec(db, db->url ? "BEGIN" : "BEGIN IMMEDIATE"); }
int svc_db_commit(svc_db *db) { return svc_db_exec(db, "COMMIT"); }

void svc_db_rollback(svc_db *db) {
    if (svc_db_in_transaction(db)) svc_db_exec(db, "ROLLBACK");
}

bool svc_db_in_transaction(svc_db *db) {
    db_conn *c = svc__db_thread_conn(db);
    if (!c) return false;
    return c->pg ? svc__pg.in_transaction(c->pg) : !sqlite3_get_autocommit(c->db);
}

/* One row, one integer column: *out. SVC_OK, SVC_ENOTFOUND (no row), or an
 * error. */
static int query_i64(svc_db *db, const char *sql, int64_t *out) {
    svc_stmt *s = svc_db_stmt(db, sql);
    if (!s) return SVC_EIO;
    int rc = svc_stmt_step(s);
    if (rc == SVC_DB_ROW) *out = svc_stmt_i64(s, 0);
    svc_stmt_reset(s);
    return rc == SVC_DB_ROW ? SVC_OK : rc == SVC_DB_DONE ? SVC_ENOTFOUND : rc;
}

/* FNV-1a, 62 bits: a version from PostgreSQL's snapshot text. */
static int64_t hash62(const char *p) {
    uint64_t h = 14695981039346656037ull;
    for (; p && *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (int64_t)(h >> 2);
}

int64_t svc_db_version(svc_db *db) {
    db_conn *c = svc__db_thread_conn(db);
    if (!c) return -1;
    if (c->pg) {
        /* A counter in the process (this process's commits, and the
         * notifications of every process's: the triggers of
         * notify_changes), while the listener listens... */
        if (atomic_load(&db->listening)) return atomic_load(&db->changes);
        /* ...else the server's snapshot (xmin:xmax:in-progress ids): it changes whenever a
         * transaction that wrote commits: it was in progress (listed), or
         * not started yet (its id will be >= xmax). It also changes when one
         * merely starts; a cache then misses once, which is harmless. */
        svc_stmt *s = svc_db_stmt(db, "SELECT pg_current_snapshot()::text");
        if (!s) return -1;
        int64_t v = svc_stmt_step(s) == SVC_DB_ROW ? hash62(svc_stmt_text(s, 0)) : -1;
        svc_stmt_reset(s);
        return v;
    }
    int64_t v;
    /* data_version moves for other connections' commits; our own are counted
     * by the commit hook. Their sum moves for every commit. */
    return query_i64(db, "PRAGMA data_version", &v) == SVC_OK ? v + c->own_commits : -1;
}

int svc_db_integrity_check(svc_db *db) {
    if (db->url) {
        /* The server checks its own pages (data checksums, amcheck); here:
         * that it answers. */
        int64_t one;
        return query_i64(db, "SELECT 1", &one) == SVC_OK ? SVC_OK : SVC_EIO;
    }
    svc_stmt *s = svc_db_stmt(db, "PRAGMA integrity_check");
    if (!s) return SVC_EIO;
    int ok = svc_stmt_step(s) == SVC_DB_ROW && strcmp(svc_stmt_text(s, 0), "ok") == 0;
    svc_stmt_reset(s);
    return ok ? SVC_OK : SVC_EIO;
}

/* The service's schema version: SQLite's user_version, or on PostgreSQL a
 * row of the schema's svc_meta (made by svc__db_library_migrate). */
static int user_version(svc_db *db, int64_t *v) {
    if (!db->url) return query_i64(db, "PRAGMA user_version", v);
    int rc = query_i64(db, "SELECT value FROM svc_meta WHERE key = 'user_version'", v);
    if (rc == SVC_ENOTFOUND) *v = 0, rc = SVC_OK;
    return rc;
}

static int set_user_version(svc_db *db, int v) {
    char sql[128];
    snprintf(sql, sizeof sql,
             db->url ? "INSERT INTO svc_meta (key, value) VALUES ('user_version', %d) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                     : "PRAGMA user_version=%d",
             v);
    return svc_db_exec(db, sql);
}

static int migrate(svc_db *db, const svc_migration *m, size_t n) {
    int64_t current;
    if (user_version(db, &current) != SVC_OK) return SVC_EIO;
    int latest = n ? m[n - 1].version : 0;
    if (current > latest) {
        svc_error("database %s is at schema version %d, newer than this build knows (%d)", db->path, (int)current,
                  latest);
        return SVC_EIO;
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i].version != (int)i + 1) {
            svc_error("migration %zu has version %d; versions must be 1, 2, 3, ...", i, m[i].version);
            return SVC_EINVAL;
        }
        if (m[i].version <= current) continue;
        const char *sql = db->url && m[i].pg_sql ? m[i].pg_sql : m[i].sql;
        if (svc_db_begin(db) != SVC_OK) return SVC_EIO;
        if (svc_db_exec(db, sql) != SVC_OK || set_user_version(db, m[i].version) != SVC_OK) {
            svc_db_rollback(db);
            svc_error("migration %d (%s) failed", m[i].version, m[i].name);
            return SVC_EIO;
        }
        if (svc_db_commit(db) != SVC_OK) return SVC_EIO;
        svc_info("database %s: applied migration %d (%s)", db->path, m[i].version, m[i].name);
    }
    return SVC_OK;
}

static bool has_prefix(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

int svc_db_url_check(const char *url, char *err, size_t errlen) {
    if (!url || !*url) return SVC_OK;
    if (strnlen(url, SVC_DB_URL_MAX + 1) > SVC_DB_URL_MAX) {
        snprintf(err, errlen, "longer than %d bytes", SVC_DB_URL_MAX);
        return SVC_EINVAL;
    }
    if (!has_prefix(url, "postgres://") && !has_prefix(url, "postgresql://")) {
        snprintf(err, errlen, "must be a postgres:// URL (or unset: SQLite under DATA_DIR)");
        return SVC_EINVAL;
    }
    if (!&svc__pg) {
        snprintf(err, errlen, "this program is built without PostgreSQL (make PG=1)");
        return SVC_EINVAL;
    }
    return svc__pg.url_check(url, err, errlen);
}

/* The PostgreSQL schema path names: its base name without ".db", which must
 * be 1..63 of [a-z0-9_] (an identifier that needs no quoting anywhere). */
static char *schema_of(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".db") == 0) n -= 3;
    if (n < 1 || n > 63) return NULL;
    for (size_t i = 0; i < n; i++)
        if (!((base[i] >= 'a' && base[i] <= 'z') || (base[i] >= '0' && base[i] <= '9') || base[i] == '_')) return NULL;
    return strndup(base, n);
}

/* SQLite: the file, created 0600 (not umask-wide). PostgreSQL: the URL and
 * the schema. */
static int locate(svc_db *db, const char *path) {
    const char *url = getenv("DATABASE_URL");
    if (!url || !*url) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            svc_error("cannot open database %s: %s", path, strerror(errno));
            return SVC_EIO;
        }
        close(fd);
        return SVC_OK;
    }
    char err[256];
    if (svc_db_url_check(url, err, sizeof err) != SVC_OK) {
        svc_error("DATABASE_URL: %s", err);
        return SVC_EINVAL;
    }
    db->schema = schema_of(path);
    if (!db->schema) {
        svc_error("database %s: on PostgreSQL its name must be 1-63 of a-z 0-9 _ (it names the schema)", path);
        return SVC_EINVAL;
    }
    db->url = strdup(url);
    return db->url ? SVC_OK : SVC_ENOMEM;
}

/* The library's tables, then the service's migrations. On PostgreSQL,
 * instances starting together take turns (an advisory lock per schema), so
 * that each step runs once. */
/* PostgreSQL: every table of the schema notifies the schema's channel at the
 * end of each statement that changes it (delivered at commit, once per
 * transaction), for the change listeners of svc_db_version. Made again at
 * each open: a migration may have added tables. */
static int notify_changes(svc_db *db) {
    return svc_db_exec(db,
                       "CREATE OR REPLACE FUNCTION svc_notify_change() RETURNS trigger LANGUAGE plpgsql AS "
                       "$f$ BEGIN PERFORM pg_notify(TG_TABLE_SCHEMA, ''); RETURN NULL; END $f$;"
                       "DO $d$ DECLARE t text; BEGIN"
                       " FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP"
                       "  EXECUTE format('DROP TRIGGER IF EXISTS svc_notify_change ON %I', t);"
                       "  EXECUTE format('CREATE TRIGGER svc_notify_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
                       " ON %I FOR EACH STATEMENT EXECUTE FUNCTION svc_notify_change()', t);"
                       " END LOOP; END $d$");
}

static int migrate_all(svc_db *db, const svc_migration *migrations, size_t n) {
    if (db->url && svc_db_exec(db, "SELECT pg_advisory_lock(hashtext(current_schema()))") != SVC_OK) return SVC_EIO;
    int rc = svc__db_library_migrate(db);
    if (rc == SVC_OK) rc = migrate(db, migrations, n);
    if (rc == SVC_OK && db->url) rc = notify_changes(db);
    if (db->url && svc_db_exec(db, "SELECT pg_advisory_unlock_all()") != SVC_OK && rc == SVC_OK) rc = SVC_EIO;
    return rc;
}

int svc_db_open(const char *path, const svc_migration *migrations, size_t n, svc_db **out) {
    *out = NULL;
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
    int rc = locate(db, path);
    if (rc == SVC_OK && sodium_init() < 0) rc = SVC_EIO;
    if (rc == SVC_OK) {
        unsigned char epoch[8];
        randombytes_buf(epoch, sizeof epoch);
        sodium_bin2hex(db->epoch, sizeof db->epoch, epoch, sizeof epoch);
        rc = migrate_all(db, migrations, n);
    }
    if (rc == SVC_OK && db->url &&
        !(db->listener = svc__pg.listen_start(db->url, db->schema, &db->changes, &db->listening)))
        rc = SVC_EIO;
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
    if (db->listener) svc__pg.listen_stop(db->listener);
    for (int i = 0; i < db->nconns; i++) conn_free(db->conns[i]);
    pthread_key_delete(db->key);
    pthread_mutex_destroy(&db->lock);
    free(db->path);
    free(db->url);
    free(db->schema);
    free(db);
}
