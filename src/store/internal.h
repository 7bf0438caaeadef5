/* Internal to svckit's store layer: not part of the public API. */
#ifndef SVC_STORE_INTERNAL_H
#define SVC_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "svckit/obs.h"
#include "svckit/trace.h"
#include "svckit/store.h"

typedef struct stmt_entry {
    const char *key;        /* the caller's pointer (a string literal) */
    sqlite3_stmt *stmt;
} stmt_entry;

typedef struct db_conn {
    sqlite3 *db;
    stmt_entry stmts[SVC_DB_MAX_STATEMENTS];
    int nstmts;
    int64_t own_commits;    /* commits made on this connection (commit hook) */
    pthread_t owner;
    svc_series *m_loop_busy; /* an event-loop worker's connection: its db_loop_busy_total, else NULL */
} db_conn;

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

/* sqlite3_exec with the error logged; returns the SQLite code. */
int svc__db_exec_logged(sqlite3 *c, const char *sql);

/* Starts nothing; registers the write metrics. Stops and drains the writer
 * (svc_db_close). */
void svc__db_write_init(svc_db *db);
void svc__db_write_stop(svc_db *db);

/* Marks the calling thread as an event-loop worker (the runtime, as each
 * worker starts): the connections it opens from then on wait at most
 * SVC_DB_LOOP_BUSY_TIMEOUT_MS for a busy database. */
void svc__db_thread_is_loop(void);

/* True inside an open transaction on this thread's connection. */
bool svc__db_in_transaction(svc_db *db);

#endif
