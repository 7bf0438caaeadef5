/*
 * svc_stmt: one statement API over SQLite's sqlite3_stmt and PostgreSQL's
 * prepared statements (pg.c), so that store code runs on either backend.
 * svc_db_stmt (db.c) makes and caches them.
 */
#include <stdlib.h>

#include "store/internal.h"

static int bind(svc_stmt *s, int param, const db_value *v) {
    if (param < 1 || param > SVC_DB_MAX_PARAMS) return SVC_ERANGE;
    if (s->pg) return svc__pg.bind(s->pg, param, v);
    int rc;
    switch (v->type) {
    case DB_INT: rc = sqlite3_bind_int64(s->lite, param, v->i); break;
    case DB_FLOAT: rc = sqlite3_bind_double(s->lite, param, v->f); break;
    case DB_TEXT: rc = sqlite3_bind_text(s->lite, param, v->p, -1, SQLITE_STATIC); break;
    case DB_BLOB: rc = sqlite3_bind_blob64(s->lite, param, v->len ? v->p : "", v->len, SQLITE_STATIC); break;
    default: rc = sqlite3_bind_null(s->lite, param); break;
    }
    return svc__db_status(rc);
}

int svc_stmt_bind_i64(svc_stmt *s, int param, int64_t v) {
    return bind(s, param, &(db_value){.type = DB_INT, .i = v});
}

int svc_stmt_bind_f64(svc_stmt *s, int param, double v) {
    return bind(s, param, &(db_value){.type = DB_FLOAT, .f = v});
}

int svc_stmt_bind_text(svc_stmt *s, int param, const char *text) {
    return bind(s, param, &(db_value){.type = text ? DB_TEXT : DB_NULL, .p = text});
}

int svc_stmt_bind_blob(svc_stmt *s, int param, const void *p, size_t len) {
    return bind(s, param, &(db_value){.type = DB_BLOB, .p = p, .len = len});
}

int svc_stmt_bind_null(svc_stmt *s, int param) { return bind(s, param, &(db_value){.type = DB_NULL}); }

int svc_stmt_step(svc_stmt *s) {
    if (s->pg) {
        int rc = svc__pg.step(s->pg);
        /* An event-loop worker's lock_timeout (SVC_DB_LOOP_BUSY_TIMEOUT_MS)
         * ran out, as SQLite's loop_busy counts its own. */
        if (rc == SVC_EAGAIN && s->conn->m_loop_busy) svc_counter_add(s->conn->m_loop_busy, 1);
        return rc;
    }
    int rc = sqlite3_step(s->lite);
    if (rc == SQLITE_ROW) return SVC_DB_ROW;
    if (rc == SQLITE_DONE) {
        s->changes = sqlite3_stmt_readonly(s->lite) ? 0 : sqlite3_changes(sqlite3_db_handle(s->lite));
        return SVC_DB_DONE;
    }
    int st = svc__db_status(rc);
    if (st != SVC_EEXIST)
        svc_error("sqlite: %s: %s", sqlite3_errmsg(sqlite3_db_handle(s->lite)), sqlite3_sql(s->lite));
    return st;
}

/* PostgreSQL's column col, DB_NULL when there is none. */
static db_value pg_column(svc_stmt *s, int col) {
    db_value v;
    if (svc__pg.column(s->pg, col, &v) != SVC_OK) v.type = DB_NULL;
    return v;
}

/* A double as an integer as SQLite converts one: clamped to int64_t's
 * range, NaN as 0 (a cast of a double out of range is undefined). */
static int64_t f64_to_i64(double f) {
    if (f != f) return 0;
    if (f <= (double)INT64_MIN) return INT64_MIN;
    if (f >= (double)INT64_MAX) return INT64_MAX; /* 2^63: every smaller double fits */
    return (int64_t)f;
}

int64_t svc_stmt_i64(svc_stmt *s, int col) {
    if (!s->pg) return sqlite3_column_int64(s->lite, col);
    db_value v = pg_column(s, col);
    return v.type == DB_INT ? v.i : v.type == DB_FLOAT ? f64_to_i64(v.f) : v.type == DB_TEXT ? strtoll(v.p, NULL, 10) : 0;
}

double svc_stmt_f64(svc_stmt *s, int col) {
    if (!s->pg) return sqlite3_column_double(s->lite, col);
    db_value v = pg_column(s, col);
    return v.type == DB_FLOAT ? v.f : v.type == DB_INT ? (double)v.i : v.type == DB_TEXT ? strtod(v.p, NULL) : 0;
}

const char *svc_stmt_text(svc_stmt *s, int col) {
    if (!s->pg) return (const char *)sqlite3_column_text(s->lite, col);
    db_value v = pg_column(s, col);
    return v.type == DB_TEXT ? v.p : NULL;
}

const void *svc_stmt_blob(svc_stmt *s, int col, size_t *len) {
    if (!s->pg) {
        const void *p = sqlite3_column_blob(s->lite, col);
        *len = (size_t)sqlite3_column_bytes(s->lite, col);
        return p;
    }
    db_value v = pg_column(s, col);
    *len = v.type == DB_BLOB || v.type == DB_TEXT ? v.len : 0;
    return v.type == DB_BLOB || v.type == DB_TEXT ? v.p : NULL;
}

bool svc_stmt_is_null(svc_stmt *s, int col) {
    if (!s->pg) return sqlite3_column_type(s->lite, col) == SQLITE_NULL;
    return pg_column(s, col).type == DB_NULL;
}

int64_t svc_stmt_changes(svc_stmt *s) { return s->pg ? svc__pg.changes(s->pg) : s->changes; }

void svc_stmt_reset(svc_stmt *s) {
    if (s->pg) svc__pg.reset(s->pg);
    else sqlite3_reset(s->lite);
}

int64_t svc_stmt_steps(svc_stmt *s) {
    return s->pg ? -1 : sqlite3_stmt_status(s->lite, SQLITE_STMTSTATUS_VM_STEP, 1);
}
