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
    {1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)", NULL},
};

/* A fresh database path in a new temporary directory (each test is its own
 * process, so a static buffer is enough). */
static inline const char *test_db_path(void) {
    static char path[256];
    char dir[64];
    if (tmpdb_dir(dir, sizeof dir, "store") != 0) return NULL;
    snprintf(path, sizeof path, "%s/test.db", dir);
    return path;
}

static inline svc_db *test_db_open(const char *path) {
    svc_db *db = NULL;
    if (svc_db_open(path, test_migrations, 1, &db) != SVC_OK) return NULL;
    return db;
}

/* Counts the rows of a query's single integer result, on this thread's connection. */
static inline long long test_db_count(svc_db *db, const char *sql) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(svc_db_conn(db), sql, -1, &s, NULL) != SQLITE_OK) return -1;
    long long n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return n;
}

/* A write closure that inserts the item named ud. */
static inline int test_insert_item(svc_db *db, void *ud) {
    sqlite3_stmt *s = svc_db_prepare(db, "INSERT INTO items (name) VALUES (?1)");
    if (!s) return SVC_EIO;
    sqlite3_bind_text(s, 1, ud, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SVC_OK : svc_db_status(rc);
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
