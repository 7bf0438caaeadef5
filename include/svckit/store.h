/*
 * svckit/store.h: SQLite for services — one file per service under DATA_DIR,
 * WAL mode, migrations at start, one connection per thread, cached statements.
 * Or, with DATABASE_URL=postgres://..., the same on PostgreSQL (libpq): see
 * svc_db_open and the statement API svc_stmt, which runs on both
 * (docs/store-postgres.md).
 *
 * Threading: an svc_db is shared by every thread of the service. Each thread
 * (an event-loop worker or a thread-pool thread running an SVC_OFFLOAD
 * handler) gets its own connection on first use, so no connection is
 * ever shared and no lock is taken on the read path. WAL lets readers run while
 * one writer commits; writers wait up to SVC_DB_BUSY_TIMEOUT_MS for each other
 * (svc_db_write has one writer thread, which never waits for its own kind).
 * An event-loop worker's connection waits only SVC_DB_LOOP_BUSY_TIMEOUT_MS
 * (a locked database, a recovery by another process), since every request
 * of its loop waits with it: its statement then fails with SVC_EAGAIN
 * (for a 503 with Retry-After), counted in
 * db_loop_busy_total{db}.
 *
 * Durability: synchronous=FULL, so a write that was acknowledged survives a
 * crash of the process (and of the machine). Temporary data (the statement
 * journal of a batch's savepoints, sorts) stays in memory (temp_store=MEMORY).
 *
 * Writes that must be durable and fast go through svc_db_write: one writer
 * thread per database runs queued closures in batches, one transaction and
 * one fsync per batch (group commit). On top of it, in tables the library
 * creates itself: a transactional outbox, an inbox for idempotent consumers,
 * and idempotency keys for HTTP handlers (docs/messaging.md).
 */
#ifndef SVCKIT_STORE_H
#define SVCKIT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svckit/core.h"
#include "svckit/trace.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_DB_BUSY_TIMEOUT_MS 5000
#define SVC_DB_LOOP_BUSY_TIMEOUT_MS 50 /* the same, on an event-loop worker's connection */
/* PostgreSQL: the server ends a session idle inside a transaction this long
 * (idle_in_transaction_session_timeout, unless the URL sets its own options),
 * so an instance cut off mid-transaction holds its row and advisory locks
 * (the outbox's, which every instance's writes take) no longer than this,
 * however late the server notices the silent peer. */
#define SVC_DB_PG_IDLE_TX_TIMEOUT_MS 3000 /* below SVC_DB_BUSY_TIMEOUT_MS: a waiting writer gets the lock */
#define SVC_DB_MAX_STATEMENTS 64     /* cached prepared statements per thread */
#define SVC_DB_MAX_CONNECTIONS 128   /* threads that may use one svc_db */
#define SVC_DB_WRITE_QUEUE 4096      /* queued write closures; more: SVC_EAGAIN */
#define SVC_DB_MAX_BATCH 256         /* closures committed in one transaction */
#define SVC_DB_MAX_COMMIT_HOOKS 4    /* svc_db_on_commit registrations */
#define SVC_DB_RETENTION_S 86400     /* default age of inbox and idempotency rows to sweep */
#define SVC_DB_SUBJECT_MAX 256       /* outbox subject length */
#define SVC_DB_PAYLOAD_MAX (1024 * 1024) /* outbox payload bytes (NATS' default max_payload) */
#define SVC_DB_MSG_ID_MAX 128        /* inbox message id length */
#define SVC_DB_CONSUMER_MAX 128      /* inbox consumer name length */
#define SVC_DB_IDEM_KEY_MAX 64       /* Idempotency-Key length (printable ASCII) */
#define SVC_DB_IDEM_SCOPE_MAX 128    /* idempotency scope (user) length */
#define SVC_DB_IDEM_BODY_MAX (1024 * 1024) /* stored response body bytes */
#define SVC_DB_IDEM_LEASE_S 60       /* an in-progress key older than this is taken over */

typedef struct svc_db svc_db;

/* One schema step. Versions start at 1 and increase by 1; each step runs in
 * its own transaction and sets PRAGMA user_version, so a crash mid-migration
 * leaves the previous version intact. */
typedef struct svc_migration {
    int version;
    const char *name;
    const char *sql;    /* one or more statements */
    const char *pg_sql; /* the same step on PostgreSQL; NULL: sql runs there too */
} svc_migration;

/* Longest DATABASE_URL accepted. */
#define SVC_DB_URL_MAX 1024
/* Parameters of one statement (?1 .. ?SVC_DB_MAX_PARAMS). */
#define SVC_DB_MAX_PARAMS 32

/*
 * Checks a DATABASE_URL: SVC_OK for NULL or "" (SQLite under DATA_DIR) and for
 * a postgres:// or postgresql:// URL that libpq parses, in a program linked
 * with PostgreSQL (make PG=1); else SVC_EINVAL with the reason in err (never
 * the password). The runtime calls it at start (a bad URL stops the service).
 */
int svc_db_url_check(const char *url, char *err, size_t errlen);

/*
 * Opens (creating, mode 0600) the database at path, switches it to WAL, and
 * applies the migrations newer than its user_version. Returns SVC_OK and *out,
 * or SVC_EIO (log says why; e.g. a database newer than the migrations). The
 * caller frees with svc_db_close.
 *
 * With DATABASE_URL set to a postgres:// URL, path names a schema instead:
 * its base name without ".db" (".../orders.db": schema "orders", letters,
 * digits and _ only), created if missing, on every connection's search_path;
 * the migrations' pg_sql run there, their version kept in the schema's
 * svc_meta table. SVC_EINVAL for a bad URL or schema name.
 */
int svc_db_open(const char *path, const svc_migration *migrations, size_t n, svc_db **out);

/* Closes every thread's connection. No thread may use db during or after. */
void svc_db_close(svc_db *db);

/* True when db runs on PostgreSQL. */
bool svc_db_is_pg(const svc_db *db);

/* ---- Statements on either backend -----------------------------------------
 *
 * A statement of this thread's connection, cached by the pointer of its SQL
 * (pass string literals), reset and with its bindings cleared. Parameters are
 * ?1 .. ?N (SVC_DB_MAX_PARAMS), bound by number (a bare ? takes the next
 * number). On PostgreSQL a parameter's type is fixed when the statement is
 * first run: by its binding then, else by the SQL, else text. Bound text and blobs are read at the first step: they must stay
 * valid until then. Columns are valid until the next step or reset. NULL
 * (logged with the SQL) when the statement does not prepare.
 */
typedef struct svc_stmt svc_stmt;
svc_stmt *svc_db_stmt(svc_db *db, const char *sql);

/* SVC_OK, or SVC_ERANGE for a parameter number out of 1..SVC_DB_MAX_PARAMS.
 * text NULL binds NULL. */
int svc_stmt_bind_i64(svc_stmt *s, int param, int64_t v);
int svc_stmt_bind_f64(svc_stmt *s, int param, double v);
int svc_stmt_bind_text(svc_stmt *s, int param, const char *text);
int svc_stmt_bind_blob(svc_stmt *s, int param, const void *p, size_t len);
int svc_stmt_bind_null(svc_stmt *s, int param);

/* Runs the statement (first call) or moves to its next row: SVC_DB_ROW with
 * a row to read, SVC_DB_DONE at the end, or a negative status: SVC_EEXIST (a
 * constraint), SVC_EAGAIN (busy, a lock timeout, a serialization failure),
 * SVC_ERANGE, SVC_ENOMEM, SVC_EIO (logged). On PostgreSQL an error aborts
 * the transaction until its savepoint is rolled back (write closures: return
 * the error). */
enum { SVC_DB_DONE = 0, SVC_DB_ROW = 1 };
int svc_stmt_step(svc_stmt *s);

/* Column col (from 0) of the current row. NULL reads as 0, 0.0, NULL; a
 * double read as an integer is truncated, clamped to int64_t's range (NaN:
 * 0), on both backends. */
int64_t svc_stmt_i64(svc_stmt *s, int col);
double svc_stmt_f64(svc_stmt *s, int col);
const char *svc_stmt_text(svc_stmt *s, int col);
const void *svc_stmt_blob(svc_stmt *s, int col, size_t *len);
bool svc_stmt_is_null(svc_stmt *s, int col);

/* Rows inserted, updated or deleted by the statement's last run. */
int64_t svc_stmt_changes(svc_stmt *s);

/* Ends the current run (releases its rows and locks); the next step runs the
 * statement again with the same bindings. */
void svc_stmt_reset(svc_stmt *s);

/* The work the statement did since the last call (or since it was
 * prepared): SQLite's virtual-machine steps (SQLITE_STMTSTATUS_VM_STEP),
 * a count that grows with the rows a query visits, not with the time it
 * took; the count starts again from 0. -1 on PostgreSQL, which does not
 * count. For metrics and tests of a query's cost. */
int64_t svc_stmt_steps(svc_stmt *s);

/* True inside an open transaction on this thread's connection. */
bool svc_db_in_transaction(svc_db *db);

/* Runs SQL without results. SVC_OK, SVC_EEXIST (unique constraint),
 * SVC_EAGAIN (busy), or SVC_EIO. */
int svc_db_exec(svc_db *db, const char *sql);


/* BEGIN IMMEDIATE / COMMIT / ROLLBACK on this thread's connection. */
int svc_db_begin(svc_db *db);
int svc_db_commit(svc_db *db);
void svc_db_rollback(svc_db *db);

/*
 * A number that changes whenever any connection (any thread, any process)
 * commits a change to the database. Cheap: use it to validate caches. On
 * PostgreSQL a counter moved by LISTEN/NOTIFY (another process's commit shows
 * when its notification arrives), the server's snapshot while the listener
 * is down (docs/store-postgres.md, "The version"); -1 when it cannot tell.
 */
int64_t svc_db_version(svc_db *db);

/* PRAGMA integrity_check: SVC_OK if "ok". */
int svc_db_integrity_check(svc_db *db);

/* ---- Group commit ---------------------------------------------------------
 *
 * A write closure runs on the database's writer thread, inside its own
 * SAVEPOINT of a transaction shared with up to SVC_DB_MAX_BATCH - 1 other
 * closures. It uses the db as usual (svc_db_stmt: the writer's connection) and returns SVC_OK to keep its changes, or an error to roll back
 * only its own changes (the others of the batch commit). It must not begin,
 * commit or roll back the transaction, nor call svc_db_write_wait, nor block on
 * anything slow: every closure of the batch waits for it.
 */
typedef int (*svc_db_write_fn)(svc_db *db, void *ud);

/* Called once per queued closure, on the writer thread, after the batch's
 * COMMIT is durable (status SVC_OK), or with the closure's own error, or with
 * the batch's error (SVC_EIO, SVC_EAGAIN: the commit failed and nothing of
 * the closure was kept). It must not block; hand the result to a loop with
 * uv_async_send or similar. */
typedef void (*svc_db_done_fn)(int status, void *done_ud);

/*
 * Queues fn for the writer thread (started on the first call). SVC_OK: queued,
 * done (may be NULL) will be called exactly once. SVC_EAGAIN at once when
 * SVC_DB_WRITE_QUEUE closures are already queued (counted in
 * db_write_queue_full_total), SVC_ECLOSED while the db closes, SVC_EINVAL
 * (NULL db or fn), SVC_ENOMEM or SVC_EIO (the writer could not start): then
 * done is never called. Closures run, commit and complete in the order queued.
 */
int svc_db_write(svc_db *db, svc_db_write_fn fn, void *ud, svc_db_done_fn done, void *done_ud);

/* svc_db_write, then blocks until done: for a thread-pool thread (an
 * SVC_OFFLOAD handler). Returns the status done would get, or svc_db_write's
 * error. SVC_EINVAL on the writer thread itself (it would wait for itself). */
int svc_db_write_wait(svc_db *db, svc_db_write_fn fn, void *ud);

/* svc_db_write_wait for n (1..SVC_DB_MAX_BATCH) closures fn(db, uds[i]),
 * queued together or not at all, so they are consecutive in the queue and
 * share one transaction (one fsync) unless the writer's batch is full; each
 * still runs in its own SAVEPOINT. Blocks until every one is done; st[i]
 * gets what done would get for uds[i]. Returns SVC_OK once all completed (read
 * st), or the queueing error, also put in every st[i], when none was queued
 * (SVC_EAGAIN: no room for n in the queue; SVC_ECLOSED, SVC_ENOMEM, SVC_EIO;
 * SVC_EINVAL for a bad argument or on the writer thread).
 * parents: NULL, and every closure works for the caller's trace (as
 * svc_db_write does); else closure i works for parents[i] (may be NULL: none),
 * so its SQL spans and outbox events join that trace: a batch consumer passes
 * each event's svc_event_trace. */
int svc_db_write_wait_all(svc_db *db, svc_db_write_fn fn, void *const *uds, const svc_trace_ctx *const *parents,
                          size_t n, int *st);

/* fn(db, ud) runs on the writer thread after each batch that committed at
 * least one closure, before their done callbacks (the outbox relay wakes on
 * it; a svc_db_write_wait that returned saw its batch's hooks run). It must not block nor call these two functions. Up to
 * SVC_DB_MAX_COMMIT_HOOKS; SVC_ERANGE beyond. svc_db_on_commit_remove takes
 * the (fn, ud) registration back (SVC_ENOTFOUND if none): once it returns,
 * fn is not running and will not run again. */
typedef void (*svc_db_commit_fn)(svc_db *db, void *ud);
int svc_db_on_commit(svc_db *db, svc_db_commit_fn fn, void *ud);
int svc_db_on_commit_remove(svc_db *db, svc_db_commit_fn fn, void *ud);

/* ---- Transactional outbox -------------------------------------------------
 *
 * An event stored in the same transaction as the state change it announces,
 * so both happen or neither does; a relay publishes stored events to
 * JetStream later, at least once, in id order, with Nats-Msg-Id = msg_id so
 * JetStream drops the duplicates a crashed relay sends again.
 */

/* Adds an event inside the caller's transaction (a write closure, or between
 * svc_db_begin and svc_db_commit): SVC_EINVAL outside one, or for a subject
 * empty or over SVC_DB_SUBJECT_MAX, or a payload over SVC_DB_PAYLOAD_MAX.
 * msg_id is "<epoch>.<id>", the epoch being 16 random hex digits drawn at
 * every svc_db_open, the id never reused within the database, so no two
 * events share a msg_id even after the database is restored from a backup or
 * recreated. *id_out (may be NULL) gets the row id. */
int svc_db_outbox_add(svc_db *db, const char *subject, const void *payload, size_t len, int64_t *id_out);

typedef struct svc_db_outbox_msg {
    int64_t id;
    const char *subject;
    const char *msg_id;
    const void *payload;
    size_t len;
    const char *headers;     /* NULL: none */
    int64_t created_at;      /* unix seconds */
} svc_db_outbox_msg;

/* Called per stored event; the pointers are valid during the call only.
 * Return 0 to go on, anything else to stop. */
typedef int (*svc_db_outbox_fn)(const svc_db_outbox_msg *m, void *ud);

/* The oldest max (1..SVC_DB_MAX_BATCH) stored events with an id above
 * after_id (0: from the first), in id order: a relay that deletes what was
 * acknowledged only now and then reads on from the last acknowledged id.
 * Returns how many cb saw, or an error (SVC_EINVAL, SVC_EIO). */
int svc_db_outbox_next(svc_db *db, int64_t after_id, int max, svc_db_outbox_fn cb, void *ud);

/* Deletes the stored events with id <= upto_id (published and acknowledged).
 * In the caller's transaction if one is open, else its own. */
int svc_db_outbox_delete(svc_db *db, int64_t upto_id);

/* ---- Inbox: idempotent consumers ------------------------------------------
 *
 * Inside the transaction that applies a message's effect: SVC_OK the first
 * time (consumer, msg_id) is claimed, SVC_EEXIST if it was already (the caller
 * skips the effect and acks), SVC_EINVAL outside a transaction or for an
 * empty or over-long consumer (SVC_DB_CONSUMER_MAX) or msg_id
 * (SVC_DB_MSG_ID_MAX). A claim is remembered until svc_db_sweep removes it:
 * keep retention longer than any redelivery (the stream's max age).
 */
int svc_db_inbox_claim(svc_db *db, const char *consumer, const char *msg_id);

/* ---- Idempotency keys for HTTP handlers -----------------------------------
 *
 * A key is scoped (usually by user) and bound to a request: the SHA-256 of
 * method, path and body. svc_db_idem_check, in a write closure:
 *   SVC_DB_IDEM_NEW         first use: the key is now held "in progress"; do
 *                           the work, then svc_db_idem_store the response (in
 *                           the same closure: then "in progress" is never seen
 *                           by anyone else), or svc_db_idem_release it;
 *   SVC_DB_IDEM_REPLAY      the stored response is in *out: send it again;
 *   SVC_DB_IDEM_CONFLICT    same key, different request: answer 422;
 *   SVC_DB_IDEM_IN_PROGRESS another request with this key is being handled
 *                           (answer 409); a key held longer than
 *                           SVC_DB_IDEM_LEASE_S is taken over (NEW).
 * Negative: SVC_EINVAL (key empty, over SVC_DB_IDEM_KEY_MAX or not printable
 * ASCII 0x20-0x7e; scope empty or over SVC_DB_IDEM_SCOPE_MAX; no transaction),
 * SVC_EIO.
 */
enum { SVC_DB_IDEM_NEW = 0, SVC_DB_IDEM_REPLAY = 1, SVC_DB_IDEM_CONFLICT = 2, SVC_DB_IDEM_IN_PROGRESS = 3 };

typedef struct svc_db_idem_response {
    int status;              /* HTTP status */
    char *headers;           /* "Name: value\r\n..." or NULL; malloc'd */
    char *body;              /* malloc'd, NUL-terminated, len bytes */
    size_t len;
} svc_db_idem_response;

/* True for a valid Idempotency-Key (the check svc_db_idem_check applies). */
bool svc_db_idem_key_valid(const char *key);

int svc_db_idem_check(svc_db *db, const char *scope, const char *key, const char *method, const char *path,
                      const void *body, size_t len, svc_db_idem_response *out);

/* Read-only: what svc_db_idem_check would answer, without claiming the key
 * nor needing a transaction (this thread's connection; any thread, so a
 * handler can ask before doing expensive work such as calls to other
 * services): SVC_DB_IDEM_REPLAY with the stored response in *out (free it
 * with svc_db_idem_response_free), SVC_DB_IDEM_CONFLICT,
 * SVC_DB_IDEM_IN_PROGRESS, or SVC_DB_IDEM_NEW when the key is unused or its
 * hold is older than SVC_DB_IDEM_LEASE_S. NEW promises nothing: a concurrent
 * request may take the key meanwhile, so the write still calls
 * svc_db_idem_check. Negative: SVC_EINVAL (as svc_db_idem_check, but no
 * transaction is needed), SVC_EAGAIN (database busy), SVC_EIO, SVC_ENOMEM. */
int svc_db_idem_lookup(svc_db *db, const char *scope, const char *key, const char *method, const char *path,
                       const void *body, size_t len, svc_db_idem_response *out);

/* Stores the response of a key held by svc_db_idem_check (in a transaction);
 * SVC_ENOTFOUND if the key is not held, SVC_ERANGE for a body over
 * SVC_DB_IDEM_BODY_MAX. */
int svc_db_idem_store(svc_db *db, const char *scope, const char *key, int status, const char *headers,
                      const void *body, size_t len);

/* Forgets a key still in progress (the work failed; a retry may run it). */
int svc_db_idem_release(svc_db *db, const char *scope, const char *key);

/* Frees what svc_db_idem_check put in a response. */
void svc_db_idem_response_free(svc_db_idem_response *r);

/* ---- Retention ------------------------------------------------------------ */

/* Deletes inbox claims and idempotency keys created before `before` (unix
 * seconds; usually time(NULL) - SVC_DB_RETENTION_S), at most
 * SVC_DB_MAX_BATCH * 4 rows of each per call (call again while it returns a
 * positive count). Returns the rows deleted or an error. */
int svc_db_sweep(svc_db *db, int64_t before);

/* The writer thread sweeps by itself, at most every SVC_DB_SWEEP_INTERVAL_S
 * after a batch, what is older than the retention: SVC_DB_RETENTION_S unless
 * set here (seconds >= 1; SVC_EINVAL otherwise). Keep it longer than any
 * redelivery of a stream (inbox) and any client's retries (idempotency). */
#define SVC_DB_SWEEP_INTERVAL_S 60
int svc_db_set_retention(svc_db *db, int64_t seconds);

#ifdef __cplusplus
}
#endif
#endif
