/*
 * The store on PostgreSQL through libpq (docs/store-postgres.md): one PGconn
 * per thread (as SQLite's connections), statements prepared once per
 * connection at their first step, parameters sent as text (blobs as binary),
 * results read in binary format so that integers, doubles, text and bytea
 * need no parsing of escapes.
 *
 * Linked only into programs that ask for it (svc__pg is weak: internal.h).
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/internal.h"
#include "store/internal.h"

/* Type OIDs (pg_type.h is the server's header, not libpq's). */
enum { OID_BOOL = 16, OID_BYTEA = 17, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_TEXT = 25,
       OID_FLOAT4 = 700, OID_FLOAT8 = 701 };

/* Defaults for what libpq leaves unbounded (a URL's own values win): how
 * long a connection attempt may take; and, on TCP, how soon a peer that went
 * silent (a host cut off, not a clean close) is given up, idle (keepalive
 * probes after 5 s, 3 of them 2 s apart) or with data unacknowledged (10 s).
 * A statement on a lost server then fails within seconds, not never, and the
 * next one reconnects. The other way round, the server's options: a session
 * of ours idle in a transaction for SVC_DB_PG_IDLE_TX_TIMEOUT_MS (its client
 * cut off) is ended, its locks freed, whatever the server's keepalives. */
#define STR_(x) #x
#define STR(x) STR_(x)
static const char *const connect_keys[] = {"connect_timeout", "keepalives_idle", "keepalives_interval",
                                           "keepalives_count", "tcp_user_timeout", "options", "dbname", NULL};
static const char *const connect_defaults[] = {
    "5", "5", "2", "3", "10000", "-c idle_in_transaction_session_timeout=" STR(SVC_DB_PG_IDLE_TX_TIMEOUT_MS)};

struct pg_conn {
    PGconn *c;
    const char *url;        /* the db's; masked in messages */
    char setup[256];        /* the session's settings, again after a reconnect */
    unsigned nstmts;        /* names of prepared statements: s1, s2, ... */
    unsigned session;       /* moves at each reconnect: statements prepare again */
    _Atomic int64_t *commits; /* moved by each command that commits; may be NULL */
};

struct pg_stmt {
    pg_conn *conn;
    char *sql;              /* ?N rewritten to $N */
    char name[16];
    bool prepared;
    unsigned session;       /* conn->session it was prepared in */
    int nparams;
    db_value vals[SVC_DB_MAX_PARAMS];
    char nums[SVC_DB_MAX_PARAMS][32]; /* DB_INT and DB_FLOAT as text */
    PGresult *res;
    int row, nrows;         /* row: the current one; -1 before the first step */
    int64_t changes;
};

/* The password of a postgres:// URL, to mask it wherever the URL or a
 * message of libpq's may show it: [start, end) in url, or start == end. */
static void find_password(const char *url, const char **start, const char **end) {
    *start = *end = url;
    const char *p = strstr(url, "://");
    if (!p) return;
    p += 3;
    const char *at = strchr(p, '@');
    const char *slash = strchr(p, '/');
    if (!at || (slash && slash < at)) return;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon) *start = colon + 1, *end = at;
}

/* Copies msg into out with the URL's password (if any) shown as "***". */
static void mask(const char *url, const char *msg, char *out, size_t n) {
    const char *ps, *pe;
    find_password(url, &ps, &pe);
    size_t plen = (size_t)(pe - ps);
    size_t j = 0;
    for (const char *m = msg; *m && j + 1 < n;) {
        if (plen && strncmp(m, ps, plen) == 0) {
            for (const char *r = "***"; *r && j + 1 < n; r++) out[j++] = *r;
            m += plen;
        } else {
            out[j++] = *m == '\n' ? ' ' : *m;
            m++;
        }
    }
    while (j && out[j - 1] == ' ') j--;
    out[j] = '\0';
}

static int url_check(const char *url, char *err, size_t errlen) {
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &msg);
    if (!opts) {
        char m[256];
        mask(url, msg ? msg : "out of memory", m, sizeof m);
        snprintf(err, errlen, "not a PostgreSQL URL libpq accepts: %s", m);
        PQfreemem(msg);
        return SVC_EINVAL;
    }
    PQconninfoFree(opts);
    return SVC_OK;
}

/* Notices ("schema already exists, skipping") would go to stderr, outside
 * the log's format. */
static void drop_notice(void *ud, const char *message) {}

/* SQLSTATE to a status. */
static int state_status(const PGresult *r) {
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!st) return SVC_EIO;
    if (strncmp(st, "23", 2) == 0) return SVC_EEXIST;      /* integrity constraint violation */
    if (!strcmp(st, "40001") || !strcmp(st, "40P01") ||    /* serialization failure, deadlock */
        !strcmp(st, "55P03") || !strcmp(st, "57014") ||    /* lock not available, statement timeout */
        !strcmp(st, "53300"))                              /* too many connections */
        return SVC_EAGAIN;
    if (!strcmp(st, "53200")) return SVC_ENOMEM;
    if (!strcmp(st, "22003") || !strcmp(st, "22001")) return SVC_ERANGE;
    return SVC_EIO;
}

/* One line for a failed command, with the SQL (never a bound value). A lost
 * connection is SVC_EAGAIN: the next statement reconnects. */
static int fail(pg_conn *c, PGresult *r, const char *sql) {
    int st = PQstatus(c->c) == CONNECTION_BAD ? SVC_EAGAIN : state_status(r);
    if (st != SVC_EEXIST) {
        char m[512];
        mask("", r ? PQresultErrorMessage(r) : PQerrorMessage(c->c), m, sizeof m);
        svc_error("postgres: %s: %s", m, sql);
    }
    PQclear(r);
    return st;
}

/* After a command that succeeded: one that leaves no transaction open and
 * is no SELECT (an autocommit write, COMMIT) may have committed a change, so
 * the process's version moves at once, before the server's notification of
 * it comes back to the listener. */
static void note_commit(pg_conn *c, PGresult *r) {
    if (c->commits && PQtransactionStatus(c->c) == PQTRANS_IDLE && strncmp(PQcmdStatus(r), "SELECT", 6) != 0)
        atomic_fetch_add(c->commits, 1);
}

static int exec_now(pg_conn *c, const char *sql) {
    PGresult *r = PQexec(c->c, sql);
    ExecStatusType t = PQresultStatus(r);
    if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK) {
        note_commit(c, r);
        PQclear(r);
        return SVC_OK;
    }
    return fail(c, r, sql);
}

/* A connection lost (the server restarted, the network cut) is made again
 * before the next statement, with its settings; its prepared statements are
 * gone with the old session. SVC_EAGAIN while the server cannot be reached. */
static int ensure_connected(pg_conn *c) {
    if (PQstatus(c->c) == CONNECTION_OK) return SVC_OK;
    PQreset(c->c);
    if (PQstatus(c->c) != CONNECTION_OK) {
        char m[512];
        mask(c->url, PQerrorMessage(c->c), m, sizeof m);
        svc_error("postgres: cannot reconnect: %s", m);
        return SVC_EAGAIN;
    }
    c->session++;
    svc_warn("postgres: connection lost, reconnected");
    return exec_now(c, c->setup);
}

static int exec(pg_conn *c, const char *sql) {
    int rc = ensure_connected(c);
    return rc != SVC_OK ? rc : exec_now(c, sql);
}

static void disconnect(pg_conn *c) {
    if (!c) return;
    PQfinish(c->c);
    free(c);
}

static pg_conn *connect_db(const char *url, const char *schema, bool create, int lock_timeout_ms,
                           _Atomic int64_t *commits) {
    pg_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->url = url;
    c->commits = commits;
    /* dbname last, expanded from the URL: its parameters override ours. */
    const char *values[] = {connect_defaults[0], connect_defaults[1], connect_defaults[2], connect_defaults[3],
                            connect_defaults[4], connect_defaults[5], url, NULL};
    c->c = PQconnectdbParams(connect_keys, values, 1);
    if (PQstatus(c->c) != CONNECTION_OK) {
        char m[512];
        mask(url, PQerrorMessage(c->c), m, sizeof m);
        svc_error("postgres: cannot connect: %s", m);
        disconnect(c);
        return NULL;
    }
    PQsetNoticeProcessor(c->c, drop_notice, NULL);
    char *ident = PQescapeIdentifier(c->c, schema, strlen(schema));
    int n = ident ? snprintf(c->setup, sizeof c->setup, "SET search_path TO %s; SET lock_timeout = %d", ident,
                             lock_timeout_ms)
                  : -1;
    int ok = n > 0 && (size_t)n < sizeof c->setup;
    if (ok && create) {
        char mk[160];
        snprintf(mk, sizeof mk, "CREATE SCHEMA IF NOT EXISTS %s", ident);
        ok = exec_now(c, mk) == SVC_OK;
    }
    PQfreemem(ident);
    if (!ok || exec_now(c, c->setup) != SVC_OK) {
        disconnect(c);
        return NULL;
    }
    return c;
}

static bool in_transaction(pg_conn *c) {
    PGTransactionStatusType t = PQtransactionStatus(c->c);
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

/* ?N (and a bare ?, numbered as SQLite does: the largest so far + 1) to $N,
 * outside quoted strings, quoted identifiers and -- comments. nparams gets
 * the largest number; -1 for one over SVC_DB_MAX_PARAMS. */
static char *rewrite(const char *sql, int *nparams) {
    size_t n = strlen(sql);
    char *out = malloc(n * 3 + 1); /* a bare "?" becomes at most "$32" */
    if (!out) return NULL;
    int max = 0;
    size_t j = 0;
    char quote = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = sql[i];
        if (quote) {
            if (ch == quote) quote = 0;
            out[j++] = ch;
        } else if (ch == '\'' || ch == '"') {
            quote = ch;
            out[j++] = ch;
        } else if (ch == '-' && sql[i + 1] == '-') {
            while (i < n && sql[i] != '\n') out[j++] = sql[i++];
            if (i < n) out[j++] = '\n';
        } else if (ch == '?') {
            int num = 0;
            while (sql[i + 1] >= '0' && sql[i + 1] <= '9' && num <= SVC_DB_MAX_PARAMS) num = num * 10 + (sql[++i] - '0');
            if (!num) num = max + 1;
            if (num > SVC_DB_MAX_PARAMS) {
                free(out);
                *nparams = -1;
                return NULL;
            }
            if (num > max) max = num;
            j += (size_t)sprintf(out + j, "$%d", num);
        } else {
            out[j++] = ch;
        }
    }
    out[j] = '\0';
    *nparams = max;
    return out;
}

static pg_stmt *prepare(pg_conn *c, const char *sql) {
    pg_stmt *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->conn = c;
    s->row = -1;
    s->sql = rewrite(sql, &s->nparams);
    if (!s->sql) {
        if (s->nparams < 0) svc_error("postgres: more than %d parameters: %s", SVC_DB_MAX_PARAMS, sql);
        free(s);
        return NULL;
    }
    snprintf(s->name, sizeof s->name, "s%u", ++c->nstmts);
    return s;
}

static void reset(pg_stmt *s) {
    PQclear(s->res);
    s->res = NULL;
    s->row = -1;
    s->nrows = 0;
}

/* A statement prepared on the server lives there as long as the session.
 * One the cache drops (on_server) is closed there too: a thread cycling
 * through more statements than the cache holds would otherwise grow the
 * server's memory without bound. Not at close: the session ends anyway. An
 * aborted transaction refuses DEALLOCATE; that rare one is left. */
static void finalize(pg_stmt *s, bool on_server) {
    if (!s) return;
    reset(s);
    if (on_server && s->prepared && s->session == s->conn->session && PQstatus(s->conn->c) == CONNECTION_OK &&
        PQtransactionStatus(s->conn->c) != PQTRANS_INERROR) {
        char sql[32];
        snprintf(sql, sizeof sql, "DEALLOCATE %s", s->name);
        exec_now(s->conn, sql);
    }
    free(s->sql);
    free(s);
}

static int bind_param(pg_stmt *s, int param, const db_value *v) {
    if (param < 1 || param > SVC_DB_MAX_PARAMS) return SVC_ERANGE;
    s->vals[param - 1] = *v;
    if (v->type == DB_INT) snprintf(s->nums[param - 1], sizeof s->nums[0], "%" PRId64, v->i);
    if (v->type == DB_FLOAT) snprintf(s->nums[param - 1], sizeof s->nums[0], "%.17g", v->f);
    return SVC_OK;
}

static Oid type_of(const db_value *v) {
    switch (v->type) {
    case DB_INT: return OID_INT8;
    case DB_FLOAT: return OID_FLOAT8;
    case DB_TEXT: return OID_TEXT;
    case DB_BLOB: return OID_BYTEA;
    default: return 0; /* NULL: the server infers the type from the SQL */
    }
}

/* A span per statement run when this thread works for a sampled trace, as
 * SQLite's trace_statement (db.c) records: the SQL as prepared ($N), never
 * the values bound to it. */
static void record_span(const pg_stmt *s, uint64_t start_ns, int rc) {
    const svc_trace_ctx *ctx = svc__trace_current();
    if (!ctx || !(ctx->flags & SVC_TRACE_SAMPLED)) return;
    uint64_t ns = svc_now_ns() - start_ns;
    svc_span sp;
    svc_span_begin(&sp, ctx, SVC_SPAN_CLIENT, "postgres");
    sp.start_ns -= ns;
    sp.dur_ns = ns;
    sp.error = rc != SVC_OK;
    sp.detail_is = SVC_SPAN_DETAIL_SQL;
    svc_span_set(sp.detail, sizeof sp.detail, s->sql);
    svc_span_set(sp.peer, sizeof sp.peer, "postgres");
    svc__trace_record(&sp);
}

static int execute(pg_stmt *s);

static int run(pg_stmt *s) {
    uint64_t t0 = svc_now_ns();
    int rc = execute(s);
    record_span(s, t0, rc);
    return rc;
}

static int execute(pg_stmt *s) {
    int rc = ensure_connected(s->conn);
    if (rc != SVC_OK) return rc;
    if (s->session != s->conn->session) s->prepared = false, s->session = s->conn->session;
    const char *values[SVC_DB_MAX_PARAMS];
    int lengths[SVC_DB_MAX_PARAMS], formats[SVC_DB_MAX_PARAMS];
    for (int i = 0; i < s->nparams; i++) {
        const db_value *v = &s->vals[i];
        values[i] = v->type == DB_INT || v->type == DB_FLOAT ? s->nums[i] : v->type == DB_NULL ? NULL : v->p;
        lengths[i] = v->type == DB_BLOB ? (int)v->len : 0;
        formats[i] = v->type == DB_BLOB;
        if (v->type == DB_BLOB && !v->p) values[i] = ""; /* an empty blob is not NULL */
    }
    if (!s->prepared) {
        /* Types of the first bindings; a NULL leaves it to the server, and
         * if the SQL does not fix it either (?1 IS NULL: SQLSTATE 42P08 or
         * 42P18), text, the type such a parameter has in every statement
         * of ours. */
        Oid types[SVC_DB_MAX_PARAMS];
        for (int i = 0; i < s->nparams; i++) types[i] = type_of(&s->vals[i]);
        PGresult *r = PQprepare(s->conn->c, s->name, s->sql, s->nparams, types);
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (PQresultStatus(r) != PGRES_COMMAND_OK && st && (!strcmp(st, "42P18") || !strcmp(st, "42P08"))) {
            PQclear(r);
            for (int i = 0; i < s->nparams; i++)
                if (!types[i]) types[i] = OID_TEXT;
            r = PQprepare(s->conn->c, s->name, s->sql, s->nparams, types);
        }
        if (PQresultStatus(r) != PGRES_COMMAND_OK) return fail(s->conn, r, s->sql);
        PQclear(r);
        s->prepared = true;
    }
    PGresult *r = PQexecPrepared(s->conn->c, s->name, s->nparams, values, lengths, formats, 1);
    ExecStatusType t = PQresultStatus(r);
    if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) return fail(s->conn, r, s->sql);
    note_commit(s->conn, r);
    s->res = r;
    s->nrows = PQntuples(r);
    const char *ch = PQcmdTuples(r);
    s->changes = t == PGRES_COMMAND_OK && *ch ? strtoll(ch, NULL, 10) : 0;
    return SVC_OK;
}

static int step(pg_stmt *s) {
    if (!s->res) {
        int rc = run(s);
        if (rc != SVC_OK) return rc;
    }
    if (s->row + 1 >= s->nrows) {
        s->row = s->nrows;
        return SVC_DB_DONE;
    }
    s->row++;
    return SVC_DB_ROW;
}

static uint64_t be64(const char *p) {
    uint32_t hi, lo;
    memcpy(&hi, p, 4);
    memcpy(&lo, p + 4, 4);
    return (uint64_t)ntohl(hi) << 32 | ntohl(lo);
}

static int column(pg_stmt *s, int col, db_value *out) {
    *out = (db_value){.type = DB_NULL};
    if (!s->res || s->row < 0 || s->row >= s->nrows || col < 0 || col >= PQnfields(s->res)) return SVC_ERANGE;
    if (PQgetisnull(s->res, s->row, col)) return SVC_OK;
    const char *p = PQgetvalue(s->res, s->row, col);
    int len = PQgetlength(s->res, s->row, col);
    Oid type = PQftype(s->res, col);
    /* A fixed-size binary value is read by its size, not by its length: one
     * of another length (a server or proxy not speaking the protocol as it
     * should) would be read past its end. */
    int want = type == OID_BOOL ? 1 : type == OID_INT2 ? 2 : type == OID_INT4 || type == OID_FLOAT4 ? 4
             : type == OID_INT8 || type == OID_FLOAT8 ? 8 : len;
    if (len != want) {
        svc_error("postgres: column %d of type %u is %d bytes, not %d: read as NULL: %s", col, type, len, want,
                  s->sql);
        return SVC_EIO;
    }
    switch (type) {
    case OID_BOOL: *out = (db_value){.type = DB_INT, .i = *p != 0}; break;
    case OID_INT2: {
        uint16_t v;
        memcpy(&v, p, 2);
        *out = (db_value){.type = DB_INT, .i = (int16_t)ntohs(v)};
        break;
    }
    case OID_INT4: {
        uint32_t v;
        memcpy(&v, p, 4);
        *out = (db_value){.type = DB_INT, .i = (int32_t)ntohl(v)};
        break;
    }
    case OID_INT8: *out = (db_value){.type = DB_INT, .i = (int64_t)be64(p)}; break;
    case OID_FLOAT4: {
        uint32_t v;
        float f;
        memcpy(&v, p, 4);
        v = ntohl(v);
        memcpy(&f, &v, 4);
        *out = (db_value){.type = DB_FLOAT, .f = f};
        break;
    }
    case OID_FLOAT8: {
        uint64_t v = be64(p);
        double d;
        memcpy(&d, &v, 8);
        *out = (db_value){.type = DB_FLOAT, .f = d};
        break;
    }
    case OID_BYTEA: *out = (db_value){.type = DB_BLOB, .p = p, .len = (size_t)len}; break;
    /* text, varchar, name...: binary is the bytes, and libpq ends every
     * value with a NUL. Other types (numeric, timestamp) would be their wire
     * form: schemas use bigint, double precision, text, bytea, boolean. */
    default: *out = (db_value){.type = DB_TEXT, .p = p, .len = (size_t)len}; break;
    }
    return SVC_OK;
}

static int64_t changes(pg_stmt *s) { return s->changes; }

/* ---- The change listener ------------------------------------------------------
 *
 * A connection of its own that LISTENs on the schema's channel (the triggers
 * of svc__db_library_migrate notify it at each commit that changed a table),
 * on a thread that moves *version once per batch of notifications. While it
 * is not listening *up is false (svc_db_version asks the server then); once
 * it listens again it moves *version, for the notifications it missed, and
 * only then sets *up. */
struct pg_listener {
    pg_conn *conn;
    char listen[160];       /* LISTEN "schema" */
    _Atomic int64_t *version;
    atomic_bool *up;
    atomic_bool stop;
    pthread_t thread;
};

#define LISTEN_POLL_MS 100      /* how soon the thread sees stop */
#define LISTEN_RETRY_MS 500     /* between reconnection attempts */

static bool listen_again(pg_listener *l) {
    pg_conn *c = l->conn;
    PQreset(c->c);
    if (PQstatus(c->c) != CONNECTION_OK || exec_now(c, c->setup) != SVC_OK || exec_now(c, l->listen) != SVC_OK)
        return false;
    atomic_fetch_add(l->version, 1);
    atomic_store(l->up, true);
    svc_info("postgres: change listener connected again");
    return true;
}

static void *listen_loop(void *arg) {
    pg_listener *l = arg;
    PGconn *pc = l->conn->c;
    int waited = 0;
    while (!atomic_load(&l->stop)) {
        if (!atomic_load(l->up)) {
            if ((waited += LISTEN_POLL_MS) >= LISTEN_RETRY_MS && !listen_again(l)) waited = 0;
            if (!atomic_load(l->up)) poll(NULL, 0, LISTEN_POLL_MS);
            continue;
        }
        struct pollfd p = {.fd = PQsocket(pc), .events = POLLIN};
        if (poll(&p, 1, LISTEN_POLL_MS) == 0) continue;
        if (!PQconsumeInput(pc) || PQstatus(pc) != CONNECTION_OK) {
            atomic_store(l->up, false);
            waited = LISTEN_RETRY_MS;
            svc_warn("postgres: change listener lost its connection: svc_db_version asks the server until it is back");
            continue;
        }
        int n = 0;
        for (PGnotify *note; (note = PQnotifies(pc)); n++) PQfreemem(note);
        if (n) atomic_fetch_add(l->version, 1);
    }
    return NULL;
}

static pg_listener *listen_start(const char *url, const char *schema, _Atomic int64_t *version, atomic_bool *up) {
    pg_listener *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->version = version;
    l->up = up;
    l->conn = connect_db(url, schema, false, 0, NULL);
    char *ident = l->conn ? PQescapeIdentifier(l->conn->c, schema, strlen(schema)) : NULL;
    bool ok = ident && exec_now(l->conn, (snprintf(l->listen, sizeof l->listen, "LISTEN %s", ident), l->listen)) == SVC_OK;
    PQfreemem(ident);
    if (ok) {
        atomic_store(up, true);
        ok = pthread_create(&l->thread, NULL, listen_loop, l) == 0;
        if (!ok) atomic_store(up, false);
    }
    if (!ok) {
        disconnect(l->conn);
        free(l);
        return NULL;
    }
    return l;
}

static void listen_stop(pg_listener *l) {
    if (!l) return;
    atomic_store(&l->stop, true);
    pthread_join(l->thread, NULL);
    atomic_store(l->up, false);
    disconnect(l->conn);
    free(l);
}

const db_pg_ops svc__pg = {
    .url_check = url_check,
    .connect = connect_db,
    .disconnect = disconnect,
    .exec = exec,
    .in_transaction = in_transaction,
    .prepare = prepare,
    .finalize = finalize,
    .reset = reset,
    .bind = bind_param,
    .step = step,
    .column = column,
    .changes = changes,
    .listen_start = listen_start,
    .listen_stop = listen_stop,
};
