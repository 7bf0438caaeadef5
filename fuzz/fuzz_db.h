/*
 * Shared by the fuzz targets that run a service's store code on a real
 * SQLite database (a header, as fuzz_util.h: each target is one .c file).
 * Include it after the service's .c files.
 *
 * fuzz_db_open(tag, open, file): logs errors only, makes a fresh directory
 * under /tmp, opens the service's database in it with open (the service's
 * own *_open, migrations included) into db, and removes the file and the
 * directory at exit (the corpus replayer runs on every test run).
 * one(sql): the single integer sql selects. no_header: an svc_event's
 * header lookup for events without headers.
 */
#ifndef SVC_FUZZ_DB_H
#define SVC_FUZZ_DB_H

#include <stdint.h>

#include "fuzz_util.h"
#include "../tests/tmpdb.h"

static svc_db *db;
static char dir[64];
static const char *db_file;

static void fuzz_db_cleanup(void) {
    svc_db_close(db);
    tmpdb_remove(dir, db_file);
}

static void fuzz_db_open(const char *tag, int (*open)(const char *data_dir, svc_db **out), const char *file) {
    svc_log_setup(tag, SVC_LOG_ERROR, 0);
    CHECK(tmpdb_dir(dir, sizeof dir, tag) == 0);
    CHECK(open(dir, &db) == SVC_OK);
    db_file = file;
    atexit(fuzz_db_cleanup);
}

static int64_t one(const char *sql) {
    svc_stmt *s = svc_db_stmt(db, sql);
    CHECK(s && svc_stmt_step(s) == SVC_DB_ROW);
    int64_t v = svc_stmt_i64(s, 0);
    svc_stmt_reset(s);
    return v;
}

static const char *no_header(const svc_event *e, const char *name) {
    (void)e, (void)name;
    return NULL;
}

#endif
