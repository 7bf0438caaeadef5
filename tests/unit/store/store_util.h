/* Helpers shared by the store unit tests. */
#ifndef SVCKIT_TEST_STORE_UTIL_H
#define SVCKIT_TEST_STORE_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "svckit/store.h"
#include "../test.h"
#include "../../tmpdb.h"

static const svc_migration test_migrations[] = {
    {1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
     "CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL UNIQUE)"},
};

/* A fresh database path in a new temporary directory (each test is its own
 * process, so a static buffer is enough). Its base name carries the pid, so
 * that with DATABASE_URL set (the store's tests on PostgreSQL, tests/run.sh)
 * every test gets a schema of its own. */
static char test_db_path_buf[256];
static inline const char *test_db_path(void) {
    char dir[64];
    if (tmpdb_dir(dir, sizeof dir, "store") != 0) return NULL;
    snprintf(test_db_path_buf, sizeof test_db_path_buf, "%s/test_%d.db", dir, (int)getpid());
    return test_db_path_buf;
}

/* The db label of the store's metrics for the last test_db_path. */
static inline const char *test_db_label(void) { return strrchr(test_db_path_buf, '/') + 1; }

static inline svc_db *test_db_open(const char *path) {
    svc_db *db = NULL;
    if (svc_db_open(path, test_migrations, 1, &db) != SVC_OK) return NULL;
    return db;
}

/* The single integer a query returns, on this thread's connection; -1 on
 * error. sql: a string literal (statements are cached by pointer). */
static inline long long test_db_count(svc_db *db, const char *sql) {
    svc_stmt *s = svc_db_stmt(db, sql);
    if (!s) return -1;
    long long n = svc_stmt_step(s) == SVC_DB_ROW ? svc_stmt_i64(s, 0) : -1;
    svc_stmt_reset(s);
    return n;
}

/* A write closure that inserts the item named ud. */
static inline int test_insert_item(svc_db *db, void *ud) {
    svc_stmt *s = svc_db_stmt(db, "INSERT INTO items (name) VALUES (?1)");
    if (!s) return SVC_EIO;
    svc_stmt_bind_text(s, 1, ud);
    int rc = svc_stmt_step(s);
    svc_stmt_reset(s);
    return rc < 0 ? rc : SVC_OK;
}

/* Removes a database test_db_path made, and its directory. */
static inline void test_remove_db(const char *path) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) return;
    *slash = '\0';
    tmpdb_remove(dir, slash + 1);
}

#endif
