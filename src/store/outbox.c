/*
 * The library's own tables, beside the service's: a transactional outbox, an
 * inbox for idempotent consumers (and idempotency keys, idempotency.c).
 *
 * Their schema has its own version in svc_meta, so a service's user_version
 * migrations never see them and the library can evolve them on its own.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "obs/internal.h"
#include "store/internal.h"

typedef struct library_step {
    int version;
    const char *sql;
} library_step;

static const library_step library_steps[] = {
    {1,
     "CREATE TABLE svc_outbox ("
     "  id INTEGER PRIMARY KEY AUTOINCREMENT," /* AUTOINCREMENT: ids never reused */
     "  subject TEXT NOT NULL,"
     "  msg_id TEXT NOT NULL UNIQUE,"
     "  payload BLOB NOT NULL,"
     "  headers TEXT,"
     "  created_at INTEGER NOT NULL);"
     "CREATE TABLE svc_inbox ("
     "  consumer TEXT NOT NULL,"
     "  msg_id TEXT NOT NULL,"
     "  seen_at INTEGER NOT NULL,"
     "  PRIMARY KEY (consumer, msg_id));"
     "CREATE INDEX svc_inbox_seen ON svc_inbox (seen_at);"
     "CREATE TABLE svc_idempotency ("
     "  scope TEXT NOT NULL,"
     "  key TEXT NOT NULL,"
     "  request_hash BLOB NOT NULL,"
     "  status INTEGER NOT NULL," /* 0: in progress */
     "  headers TEXT,"
     "  body BLOB,"
     "  created_at INTEGER NOT NULL,"
     "  PRIMARY KEY (scope, key));"
     "CREATE INDEX svc_idempotency_created ON svc_idempotency (created_at);"},
};

int svc__db_library_migrate(svc_db *db) {
    sqlite3 *c = svc_db_conn(db);
    if (!c) return SVC_EIO;
    if (svc__db_exec_logged(c, "CREATE TABLE IF NOT EXISTS svc_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID") !=
        SQLITE_OK)
        return SVC_EIO;
    sqlite3_stmt *s = svc_db_prepare(db, "SELECT value FROM svc_meta WHERE key = 'library_version'");
    if (!s) return SVC_EIO;
    int rc = sqlite3_step(s);
    int current = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SVC_EIO;
    int latest = library_steps[sizeof library_steps / sizeof library_steps[0] - 1].version;
    if (current > latest) {
        svc_error("database %s has library tables at version %d, newer than this build knows (%d)", db->path,
                  current, latest);
        return SVC_EIO;
    }
    for (size_t i = 0; i < sizeof library_steps / sizeof library_steps[0]; i++) {
        const library_step *st = &library_steps[i];
        if (st->version <= current) continue;
        char set[96];
        snprintf(set, sizeof set, "INSERT OR REPLACE INTO svc_meta (key, value) VALUES ('library_version', %d)",
                 st->version);
        if (svc_db_begin(db) != SVC_OK) return SVC_EIO;
        if (svc__db_exec_logged(c, st->sql) != SQLITE_OK || svc__db_exec_logged(c, set) != SQLITE_OK ||
            svc_db_commit(db) != SVC_OK) {
            svc_db_rollback(db);
            svc_error("database %s: library tables step %d failed", db->path, st->version);
            return SVC_EIO;
        }
    }
    return SVC_OK;
}

/* Steps a statement that returns no rows; the SQLite code mapped. */
static int step_done(svc_db *db, sqlite3_stmt *s) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) return SVC_OK;
    int st = svc_db_status(rc);
    if (st != SVC_EEXIST) svc_error("sqlite: %s", sqlite3_errmsg(svc_db_conn(db)));
    return st;
}

static bool text_ok(const char *s, size_t max) {
    if (!s) return false;
    size_t n = strnlen(s, max + 1);
    return n > 0 && n <= max;
}

int svc_db_outbox_add(svc_db *db, const char *subject, const void *payload, size_t len, int64_t *id_out) {
    if (!text_ok(subject, SVC_DB_SUBJECT_MAX) || len > SVC_DB_PAYLOAD_MAX || (len && !payload) ||
        !svc__db_in_transaction(db))
        return SVC_EINVAL;
    /* The next id is sqlite_sequence's + 1 (what AUTOINCREMENT would pick;
     * no one else can insert inside our write transaction), so the row and its
     * msg_id are written by one statement. */
    sqlite3_stmt *s = svc_db_prepare(
        db, "INSERT INTO svc_outbox (id, subject, msg_id, payload, created_at, headers) "
            "SELECT n, ?1, ?2 || '.' || n, ?3, ?4, ?5 FROM "
            "(SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'svc_outbox'), 0) + 1 AS n)");
    if (!s) return SVC_EIO;
    /* The span this runs for, sampled or not: the relay publishes the event
     * as its child, so the trace (and its sampling decision) goes on in the
     * consumers. */
    const svc_trace_ctx *ctx = svc__trace_current();
    char hdr[sizeof "traceparent: " + SVC_TRACEPARENT_LEN + 2];
    if (ctx) {
        memcpy(hdr, "traceparent: ", 13);
        svc__traceparent_format(hdr + 13, ctx);
        memcpy(hdr + 13 + SVC_TRACEPARENT_LEN, "\r\n", 3);
        sqlite3_bind_text(s, 5, hdr, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(s, 5);
    }
    sqlite3_bind_text(s, 1, subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, db->epoch, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, len ? payload : "", (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (int64_t)time(NULL));
    int rc = step_done(db, s);
    if (rc == SVC_OK && id_out) *id_out = sqlite3_last_insert_rowid(svc_db_conn(db));
    return rc;
}

int svc_db_outbox_next(svc_db *db, int64_t after_id, int max, svc_db_outbox_fn cb, void *ud) {
    if (max < 1 || max > SVC_DB_MAX_BATCH || !cb) return SVC_EINVAL;
    sqlite3_stmt *s = svc_db_prepare(db, "SELECT id, subject, msg_id, payload, headers, created_at FROM svc_outbox"
                                         " WHERE id > ?2 ORDER BY id LIMIT ?1");
    if (!s) return SVC_EIO;
    sqlite3_bind_int(s, 1, max);
    sqlite3_bind_int64(s, 2, after_id);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        svc_db_outbox_msg m = {
            .id = sqlite3_column_int64(s, 0),
            .subject = (const char *)sqlite3_column_text(s, 1),
            .msg_id = (const char *)sqlite3_column_text(s, 2),
            .payload = sqlite3_column_blob(s, 3),
            .len = (size_t)sqlite3_column_bytes(s, 3),
            .headers = (const char *)sqlite3_column_text(s, 4),
            .created_at = sqlite3_column_int64(s, 5),
        };
        n++;
        if (cb(&m, ud) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? n : svc_db_status(rc);
}

int svc_db_outbox_delete(svc_db *db, int64_t upto_id) {
    sqlite3_stmt *s = svc_db_prepare(db, "DELETE FROM svc_outbox WHERE id <= ?1");
    if (!s) return SVC_EIO;
    sqlite3_bind_int64(s, 1, upto_id);
    return step_done(db, s);
}

int svc_db_inbox_claim(svc_db *db, const char *consumer, const char *msg_id) {
    if (!text_ok(consumer, SVC_DB_CONSUMER_MAX) || !text_ok(msg_id, SVC_DB_MSG_ID_MAX) ||
        !svc__db_in_transaction(db))
        return SVC_EINVAL;
    sqlite3_stmt *s =
        svc_db_prepare(db, "INSERT OR IGNORE INTO svc_inbox (consumer, msg_id, seen_at) VALUES (?1, ?2, ?3)");
    if (!s) return SVC_EIO;
    sqlite3_bind_text(s, 1, consumer, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, msg_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (int64_t)time(NULL));
    int rc = step_done(db, s);
    if (rc != SVC_OK) return rc;
    return sqlite3_changes(svc_db_conn(db)) == 1 ? SVC_OK : SVC_EEXIST;
}

#define SWEEP_ROWS (SVC_DB_MAX_BATCH * 4)

static int sweep_one(svc_db *db, const char *sql, int64_t before) {
    sqlite3_stmt *s = svc_db_prepare(db, sql);
    if (!s) return SVC_EIO;
    sqlite3_bind_int64(s, 1, before);
    sqlite3_bind_int(s, 2, SWEEP_ROWS);
    int rc = step_done(db, s);
    return rc == SVC_OK ? sqlite3_changes(svc_db_conn(db)) : rc;
}

int svc_db_sweep(svc_db *db, int64_t before) {
    int a = sweep_one(db,
                      "DELETE FROM svc_inbox WHERE rowid IN "
                      "(SELECT rowid FROM svc_inbox WHERE seen_at < ?1 LIMIT ?2)",
                      before);
    if (a < 0) return a;
    int b = sweep_one(db,
                      "DELETE FROM svc_idempotency WHERE rowid IN "
                      "(SELECT rowid FROM svc_idempotency WHERE created_at < ?1 LIMIT ?2)",
                      before);
    return b < 0 ? b : a + b;
}
