/* Internal to svckit's store layer: not part of the public API. */
#ifndef SVC_STORE_INTERNAL_H
#define SVC_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "svckit/obs.h"
#include "svckit/trace.h"
#include <sqlite3.h>

#include "svckit/store.h"

/* ---- SQLite, below the backend-neutral API ---------------------------------- */

/* Maps an SQLite result code to a status code. */
int svc__db_status(int sqlite_rc);

/* ---- PostgreSQL (pg.c) -------------------------------------------------------
 *
 * Reached only through the weak symbol svc__pg: a program linked without
 * -Wl,--require-defined=svc__pg (what make PG=1 adds, with -lpq) never pulls
 * pg.o out of libsvckit.a, so it carries no libpq, and &svc__pg is NULL: a
 * postgres:// DATABASE_URL then stops it at start (svc_db_url_check).
 * libpq is not linkable statically from Debian's packages (docs/store-postgres.md).
 */
typedef struct pg_conn pg_conn;
typedef struct pg_stmt pg_stmt;
typedef struct pg_listener pg_listener;

enum { DB_NULL, DB_INT, DB_FLOAT, DB_TEXT, DB_BLOB };
typedef struct db_value {
    int type;               /* DB_* */
    int64_t i;
    double f;
    const void *p;          /* DB_TEXT (NUL-terminated), DB_BLOB */
    size_t len;             /* DB_BLOB */
} db_value;

typedef struct db_pg_ops {
    /* As svc_db_url_check, for a postgres:// URL. */
    int (*url_check)(const char *url, char *err, size_t errlen);
    /* A connection whose search_path is schema (created when create);
     * lock_timeout_ms bounds waits for locks; each command of it that
     * commits moves *commits (when not NULL). NULL on failure (logged). */
    pg_conn *(*connect)(const char *url, const char *schema, bool create, int lock_timeout_ms,
                        _Atomic int64_t *commits);
    void (*disconnect)(pg_conn *c);
    /* One or more statements without results: a status (svc_stmt_step's). */
    int (*exec)(pg_conn *c, const char *sql);
    bool (*in_transaction)(pg_conn *c);
    /* The statement for sql (?N parameters), prepared at its first step. */
    pg_stmt *(*prepare)(pg_conn *c, const char *sql);
    /* Frees s; on_server: also closes it on the server (the session goes on). */
    void (*finalize)(pg_stmt *s, bool on_server);
    void (*reset)(pg_stmt *s);
    int (*bind)(pg_stmt *s, int param, const db_value *v);
    int (*step)(pg_stmt *s);
    /* Column col of the current row: DB_NULL, DB_INT (integers, booleans),
     * DB_FLOAT, DB_BLOB (bytea), DB_TEXT (anything else); p valid until the
     * next step or reset. SVC_ERANGE without a row or such a column; SVC_EIO
     * (logged) for a fixed-size value (boolean, integer, float) of another size. */
    int (*column)(pg_stmt *s, int col, db_value *out);
    int64_t (*changes)(pg_stmt *s);
    /* A thread LISTENing on the schema's channel: *version moves for the
     * notifications; *up is true while it listens (it reconnects by itself).
     * Returns listening; NULL on failure (logged). */
    pg_listener *(*listen_start)(const char *url, const char *schema, _Atomic int64_t *version, atomic_bool *up);
    void (*listen_stop)(pg_listener *l);
} db_pg_ops;

extern const db_pg_ops svc__pg __attribute__((weak));

typedef struct db_conn db_conn;

/* A cached statement: SQLite's, or PostgreSQL's. */
struct svc_stmt {
    const char *key;        /* the caller's pointer (a string literal) */
    db_conn *conn;          /* its connection */
    sqlite3_stmt *lite;
    pg_stmt *pg;
    int64_t changes;        /* SQLite: of the last run */
};

struct db_conn {
    sqlite3 *db;
    pg_conn *pg;
    svc_stmt *stmts[SVC_DB_MAX_STATEMENTS]; /* each malloc'd: callers keep pointers */
    int nstmts;
    int64_t own_commits;    /* commits made on this connection (commit hook) */
    pthread_t owner;
    svc_series *m_loop_busy; /* an event-loop worker's connection: its db_loop_busy_total, else NULL */
};

/* One queued write closure. */
typedef struct db_write {
    svc_db_write_fn fn;
    void *ud;
    svc_db_done_fn done;
    void *done_ud;
    svc_trace_ctx tctx;              /* the caller's span: the writer works for it */
    bool traced;
} db_write;

typedef struct db_hook {
    svc_db_commit_fn fn;
    void *ud;
} db_hook;

struct svc_db {
    char *path;
    char *url;              /* DATABASE_URL (PostgreSQL), else NULL */
    char *schema;           /* PostgreSQL: the schema path names */
    /* PostgreSQL: svc_db_version's counter, moved by this process's commits
     * and by the listener's notifications of every process's; trusted only
     * while listening is true. */
    _Atomic int64_t changes;
    atomic_bool listening;
    pg_listener *listener;
    char epoch[17];         /* 16 hex digits, new at every open (outbox msg ids) */
    pthread_key_t key;
    pthread_mutex_t lock;   /* guards conns[] registration only */
    db_conn *conns[SVC_DB_MAX_CONNECTIONS];
    int nconns;

    /* Group commit (write.c). wlock guards everything below it. */
    pthread_mutex_t wlock;
    pthread_cond_t wcond;   /* the queue got an entry, or closing */
    pthread_t writer;
    bool writer_started, closing;
    db_write *queue;        /* ring of SVC_DB_WRITE_QUEUE entries */
    size_t head, count;
    /* Held while the hooks run, so a removed hook is never called after
     * svc_db_on_commit_remove returns. */
    pthread_mutex_t hook_lock;
    db_hook hooks[SVC_DB_MAX_COMMIT_HOOKS];
    int nhooks;
    _Atomic int64_t retention_s;
    int64_t last_sweep;     /* writer thread only */
    svc_series *m_batches, *m_writes_ok, *m_writes_failed, *m_batch_size, *m_queue_full;
};

/* Creates or upgrades the library's own tables (svc_meta, svc_outbox,
 * svc_inbox, svc_idempotency) before the service's migrations run. */
int svc__db_library_migrate(svc_db *db);

/* Starts nothing; registers the write metrics. Stops and drains the writer
 * (svc_db_close). */
void svc__db_write_init(svc_db *db);
void svc__db_write_stop(svc_db *db);

/* Marks the calling thread as an event-loop worker (the runtime, as each
 * worker starts): the connections it opens from then on wait at most
 * SVC_DB_LOOP_BUSY_TIMEOUT_MS for a busy database. */
void svc__db_thread_is_loop(void);

/* This thread's connection, opened on first use; NULL on failure (logged). */
db_conn *svc__db_thread_conn(svc_db *db);


#endif
