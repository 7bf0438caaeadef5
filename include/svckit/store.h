/*
 * svckit/store.h: SQLite for services — one file per service under DATA_DIR,
 * WAL mode, migrations at start, one connection per thread, cached statements.
 *
 * Threading: an svc_db is shared by every thread of the service. Each thread
 * (an event-loop worker or a thread-pool thread running an SVC_OFFLOAD
 * handler) gets its own sqlite3 connection on first use, so no connection is
 * ever shared and no lock is taken on the read path. WAL lets readers run while
 * one writer commits; writers wait up to SVC_DB_BUSY_TIMEOUT_MS for each other.
 *
 * Durability: synchronous=FULL, so a write that was acknowledged survives a
 * crash of the process (and of the machine).
 */
#ifndef SVCKIT_STORE_H
#define SVCKIT_STORE_H

#include <sqlite3.h>
#include <stdint.h>

#include "svckit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_DB_BUSY_TIMEOUT_MS 5000
#define SVC_DB_MAX_STATEMENTS 64     /* cached prepared statements per thread */
#define SVC_DB_MAX_CONNECTIONS 128   /* threads that may use one svc_db */

typedef struct svc_db svc_db;

/* One schema step. Versions start at 1 and increase by 1; each step runs in
 * its own transaction and sets PRAGMA user_version, so a crash mid-migration
 * leaves the previous version intact. */
typedef struct svc_migration {
    int version;
    const char *name;
    const char *sql;    /* one or more statements */
} svc_migration;

/*
 * Opens (creating, mode 0600) the database at path, switches it to WAL, and
 * applies the migrations newer than its user_version. Returns SVC_OK and *out,
 * or SVC_EIO (log says why; e.g. a database newer than the migrations). The
 * caller frees with svc_db_close.
 */
int svc_db_open(const char *path, const svc_migration *migrations, size_t n, svc_db **out);

/* Closes every thread's connection. No thread may use db during or after. */
void svc_db_close(svc_db *db);

/* This thread's connection, opened on first use; NULL on failure (logged). */
sqlite3 *svc_db_conn(svc_db *db);

/*
 * A prepared statement for sql on this thread's connection, cached by the
 * pointer and text of sql (pass string literals). It is reset and its bindings
 * cleared; the caller steps it and must not finalize it. NULL on error (logged
 * with the SQL).
 */
sqlite3_stmt *svc_db_prepare(svc_db *db, const char *sql);

/* Runs SQL without results. SVC_OK, SVC_EEXIST (unique constraint),
 * SVC_EAGAIN (busy), or SVC_EIO. */
int svc_db_exec(svc_db *db, const char *sql);

/* Maps an SQLite result code to a status code. */
int svc_db_status(int sqlite_rc);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK on this thread's connection. */
int svc_db_begin(svc_db *db);
int svc_db_commit(svc_db *db);
void svc_db_rollback(svc_db *db);

/*
 * A number that changes whenever any connection (any thread, any process)
 * commits a change to the database. Cheap: use it to validate caches.
 */
int64_t svc_db_version(svc_db *db);

/* PRAGMA integrity_check: SVC_OK if "ok". */
int svc_db_integrity_check(svc_db *db);

#ifdef __cplusplus
}
#endif
#endif
