/*
 * svc_stmt, transactions, migrations and group commit on both backends:
 * each test runs on SQLite, then on PostgreSQL when DATABASE_URL is set
 * (tests/integration/pg_support.py start DIR prints one; tests/run.sh
 * starts a server for the unit tests). Without it the PostgreSQL half is
 * skipped with a line saying so.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "store_util.h"

static const svc_migration migrations[] = {
    {1, "things",
     "CREATE TABLE things (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER, f REAL, s TEXT UNIQUE, b BLOB)",
     "CREATE TABLE things (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n bigint, f double precision,"
     " s text UNIQUE, b bytea)"},
};

/* Opens a fresh database of the backend: SQLite in a temp dir, or a schema
 * of its own (named after the test and the pid) on PostgreSQL. */
static svc_db *open_fresh(const char *pg_url, const char *tag, const svc_migration *m, size_t n) {
    char path[256];
    if (pg_url) {
        setenv("DATABASE_URL", pg_url, 1);
        snprintf(path, sizeof path, "/nonexistent/t_%s_%d.db", tag, (int)getpid());
    } else {
        unsetenv("DATABASE_URL");
        snprintf(path, sizeof path, "%s", test_db_path());
    }
    svc_db *db = NULL;
    return svc_db_open(path, m, n, &db) == SVC_OK ? db : NULL;
}

/* fn on SQLite, then on PostgreSQL if DATABASE_URL was given. */
static void each_backend(const char *tag, void (*fn)(svc_db *db, const char *pg_url)) {
    static char *pg_url;
    if (!pg_url && getenv("DATABASE_URL")) pg_url = strdup(getenv("DATABASE_URL"));
    for (int pg = 0; pg < 2; pg++) {
        if (pg && !pg_url) {
            printf("# %s: PostgreSQL skipped (DATABASE_URL unset)\n", tag);
            break;
        }
        svc_db *db = open_fresh(pg ? pg_url : NULL, tag, migrations, 1);
        CHECK(db != NULL);
        if (!db) return;
        CHECK_EQ(svc_db_is_pg(db), pg);
        fn(db, pg ? pg_url : NULL);
        svc_db_close(db);
    }
}

static int64_t insert_thing(svc_db *db, int64_t n, double f, const char *s, const void *b, size_t blen) {
    svc_stmt *st = svc_db_stmt(db, "INSERT INTO things (n, f, s, b) VALUES (?1, ?2, ?3, ?4) RETURNING id");
    if (!st) return -1;
    svc_stmt_bind_i64(st, 1, n);
    svc_stmt_bind_f64(st, 2, f);
    svc_stmt_bind_text(st, 3, s);
    if (b) svc_stmt_bind_blob(st, 4, b, blen);
    int64_t id = svc_stmt_step(st) == SVC_DB_ROW ? svc_stmt_i64(st, 0) : -1;
    CHECK_EQ(svc_stmt_step(st), SVC_DB_DONE);
    svc_stmt_reset(st);
    return id;
}

static void types_round_trip(svc_db *db, const char *pg) {
    static const unsigned char blob[] = {0, 1, 0xff, '\\', 'x', 0};
    int64_t a = insert_thing(db, -5000000000LL, 2.5, "héllo ' ?1", blob, sizeof blob);
    int64_t b = insert_thing(db, 7, 0, NULL, NULL, 0);
    CHECK(a > 0);
    CHECK_EQ(b, a + 1);
    svc_stmt *s = svc_db_stmt(db, "SELECT n, f, s, b, id FROM things WHERE id >= ?1 ORDER BY id");
    CHECK(s != NULL);
    svc_stmt_bind_i64(s, 1, a);
    CHECK_EQ(svc_stmt_step(s), SVC_DB_ROW);
    CHECK_EQ(svc_stmt_i64(s, 0), -5000000000LL);
    CHECK(svc_stmt_f64(s, 1) == 2.5);
    CHECK_STR(svc_stmt_text(s, 2), "héllo ' ?1");
    size_t len = 0;
    const void *p = svc_stmt_blob(s, 3, &len);
    CHECK_EQ(len, sizeof blob);
    CHECK(p && memcmp(p, blob, sizeof blob) == 0);
    CHECK(!svc_stmt_is_null(s, 3));
    CHECK_EQ(svc_stmt_step(s), SVC_DB_ROW);
    CHECK_EQ(svc_stmt_i64(s, 4), b);
    CHECK(svc_stmt_is_null(s, 2));
    CHECK(svc_stmt_text(s, 2) == NULL);
    CHECK(svc_stmt_is_null(s, 3));
    CHECK_EQ(svc_stmt_step(s), SVC_DB_DONE);
    svc_stmt_reset(s);
    /* The cache hands back the same statement, its bindings cleared. */
    CHECK(svc_db_stmt(db, "SELECT n, f, s, b, id FROM things WHERE id >= ?1 ORDER BY id") == s);
    CHECK_EQ(svc_stmt_bind_i64(s, SVC_DB_MAX_PARAMS + 1, 1), SVC_ERANGE);
}

TEST(types_round_trip_on_both) { each_backend("types", types_round_trip); }

/* A double read as an integer: clamped to int64_t's range, NaN as 0, as
 * SQLite converts (the backend must not differ, nor cast out of range). */
static void double_as_integer(svc_db *db, const char *pg) {
    static const struct {
        double in;
        int64_t out;
    } cases[] = {{1e300, INT64_MAX}, {-1e300, INT64_MIN}, {NAN, 0}, {-2.75, -2}, {9007199254740992.0, 1LL << 53}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        svc_stmt *s = svc_db_stmt(db, "SELECT ?1");
        CHECK(s != NULL);
        if (!s) return;
        svc_stmt_bind_f64(s, 1, cases[i].in);
        CHECK_EQ(svc_stmt_step(s), SVC_DB_ROW);
        CHECK_EQ(svc_stmt_i64(s, 0), cases[i].out);
        svc_stmt_reset(s);
    }
}

TEST(a_double_reads_as_a_clamped_integer_on_both) { each_backend("f2i", double_as_integer); }

static void params_and_changes(svc_db *db, const char *pg) {
    insert_thing(db, 1, 0, "a", NULL, 0);
    insert_thing(db, 2, 0, "b", NULL, 0);
    /* ?1 used twice, typed by its second use; a '?' inside a literal stays. */
    svc_stmt *s = svc_db_stmt(db, "SELECT count(*), '?' || 'x' FROM things WHERE ?1 IS NULL OR s = ?1");
    CHECK(s != NULL);
    CHECK_EQ(svc_stmt_step(s), SVC_DB_ROW);
    CHECK_EQ(svc_stmt_i64(s, 0), 2);
    CHECK_STR(svc_stmt_text(s, 1), "?x");
    svc_stmt_reset(s);
    svc_stmt_bind_text(s, 1, "b");
    CHECK_EQ(svc_stmt_step(s), SVC_DB_ROW);
    CHECK_EQ(svc_stmt_i64(s, 0), 1);
    svc_stmt_reset(s);
    svc_stmt *u = svc_db_stmt(db, "UPDATE things SET n = n + ? WHERE n >= ?");
    svc_stmt_bind_i64(u, 1, 10);
    svc_stmt_bind_i64(u, 2, 1);
    CHECK_EQ(svc_stmt_step(u), SVC_DB_DONE);
    CHECK_EQ(svc_stmt_changes(u), 2);
    svc_stmt_reset(u);
    /* A unique violation is SVC_EEXIST. */
    svc_stmt *i = svc_db_stmt(db, "INSERT INTO things (s) VALUES (?1)");
    svc_stmt_bind_text(i, 1, "a");
    CHECK_EQ(svc_stmt_step(i), SVC_EEXIST);
    svc_stmt_reset(i);
    CHECK(svc_db_stmt(db, "SELECT nonsense FROM nowhere") == NULL || svc_db_is_pg(db));
}

TEST(parameters_changes_and_constraints_on_both) { each_backend("params", params_and_changes); }

static int64_t count_things(svc_db *db) {
    svc_stmt *s = svc_db_stmt(db, "SELECT count(*) FROM things");
    int64_t n = s && svc_stmt_step(s) == SVC_DB_ROW ? svc_stmt_i64(s, 0) : -1;
    if (s) svc_stmt_reset(s);
    return n;
}

static void transactions(svc_db *db, const char *pg) {
    CHECK(!svc_db_in_transaction(db));
    CHECK_EQ(svc_db_begin(db), SVC_OK);
    CHECK(svc_db_in_transaction(db));
    insert_thing(db, 1, 0, "kept", NULL, 0);
    CHECK_EQ(svc_db_exec(db, "SAVEPOINT sp"), SVC_OK);
    insert_thing(db, 2, 0, "undone", NULL, 0);
    /* A failed statement inside the savepoint: on PostgreSQL it aborts the
     * transaction until the savepoint is rolled back. */
    svc_stmt *i = svc_db_stmt(db, "INSERT INTO things (s) VALUES (?1)");
    svc_stmt_bind_text(i, 1, "kept");
    CHECK_EQ(svc_stmt_step(i), SVC_EEXIST);
    svc_stmt_reset(i);
    CHECK_EQ(svc_db_exec(db, "ROLLBACK TO sp"), SVC_OK);
    CHECK_EQ(svc_db_commit(db), SVC_OK);
    CHECK(!svc_db_in_transaction(db));
    CHECK_EQ(count_things(db), 1);
    CHECK_EQ(svc_db_begin(db), SVC_OK);
    insert_thing(db, 3, 0, "rolled back", NULL, 0);
    svc_db_rollback(db);
    CHECK_EQ(count_things(db), 1);
    CHECK_EQ(svc_db_integrity_check(db), SVC_OK);
}

TEST(transactions_and_savepoints_on_both) { each_backend("tx", transactions); }

static int insert_closure(svc_db *db, void *ud) {
    svc_stmt *s = svc_db_stmt(db, "INSERT INTO things (s) VALUES (?1)");
    if (!s) return SVC_EIO;
    svc_stmt_bind_text(s, 1, ud);
    int rc = svc_stmt_step(s);
    svc_stmt_reset(s);
    return rc < 0 ? rc : SVC_OK;
}

static void group_commit(svc_db *db, const char *pg) {
    /* One batch: the duplicate fails alone, the others commit. */
    void *names[] = {"one", "two", "one", "three"};
    int st[4];
    CHECK_EQ(svc_db_write_wait_all(db, insert_closure, names, NULL, 4, st), SVC_OK);
    CHECK_EQ(st[0], SVC_OK);
    CHECK_EQ(st[1], SVC_OK);
    CHECK_EQ(st[2], SVC_EEXIST);
    CHECK_EQ(st[3], SVC_OK);
    CHECK_EQ(count_things(db), 3);
}

TEST(group_commit_rolls_back_only_the_failed_closure_on_both) { each_backend("batch", group_commit); }

typedef struct other_thread {
    svc_db *db;
    int rc;
} other_thread;

static void *insert_elsewhere(void *arg) {
    other_thread *o = arg;
    o->rc = insert_closure(o->db, "from another connection");
    return NULL;
}

static void version_moves(svc_db *db, const char *pg) {
    int64_t v0 = svc_db_version(db);
    CHECK(v0 >= 0);
    CHECK_EQ(svc_db_version(db), v0);
    other_thread o = {db, -1};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, insert_elsewhere, &o), 0);
    pthread_join(t, NULL);
    CHECK_EQ(o.rc, SVC_OK);
    int64_t v1 = svc_db_version(db);
    CHECK(v1 >= 0 && v1 != v0);
}

TEST(version_moves_on_another_connections_commit_on_both) { each_backend("version", version_moves); }

/* Waits (bounded, generously) for db's version to leave v. */
static bool version_leaves(svc_db *db, int64_t v) {
    for (int i = 0; i < 3000; i++) {
        int64_t now = svc_db_version(db);
        if (now >= 0 && now != v) return true;
        usleep(10 * 1000);
    }
    return false;
}

/* Two instances on one PostgreSQL database (two svc_db: connections,
 * counters and listeners of their own, as two processes): a commit of one
 * moves the other's version, through the schema's triggers and the other's
 * listener. With the listeners' connections killed, a commit made meanwhile
 * still moves it: svc_db_version asks the server until the listener is
 * back, and moves once more when it is. */
TEST(version_moves_on_another_instances_commit_on_postgres) {
    const char *url = getenv("DATABASE_URL");
    if (!url) {
        printf("# PostgreSQL skipped (DATABASE_URL unset)\n");
        return;
    }
    svc_db *a = open_fresh(url, "instances", migrations, 1);
    svc_db *b = open_fresh(url, "instances", migrations, 1);
    CHECK(a && b);
    if (!a || !b) return;
    int64_t v0 = svc_db_version(a);
    CHECK(v0 >= 0);
    CHECK_EQ(svc_db_version(a), v0);
    CHECK_EQ(insert_closure(b, "from the other instance"), SVC_OK);
    CHECK(version_leaves(a, v0));

    int64_t v1 = svc_db_version(a);
    CHECK(test_db_count(b, "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE query LIKE 'LISTEN %') t") >= 2);
    CHECK_EQ(insert_closure(b, "while nobody listens"), SVC_OK);
    CHECK(version_leaves(a, v1));
    CHECK_EQ(test_db_count(a, "SELECT count(*) FROM things"), 2);
    svc_db_close(b);
    svc_db_close(a);
}

/* A session idle inside a transaction is ended by the server, its locks
 * freed: by default after SVC_DB_PG_IDLE_TX_TIMEOUT_MS; here a URL's own
 * options make it 200 ms, and another instance waiting for the advisory
 * lock the silent one holds gets it (within its lock_timeout). */
TEST(a_session_idle_in_a_transaction_is_ended_on_postgres) {
    const char *env = getenv("DATABASE_URL");
    if (!env) {
        printf("# PostgreSQL skipped (DATABASE_URL unset)\n");
        return;
    }
    char *url = strdup(env);
    svc_db *db = open_fresh(url, "idle", migrations, 1);
    CHECK(db != NULL);
    if (!db) goto out;
    svc_stmt *s = svc_db_stmt(db, "SELECT current_setting('idle_in_transaction_session_timeout')");
    CHECK_EQ(svc_stmt_step(s), SVC_DB_ROW);
    char want[32];
    snprintf(want, sizeof want, "%ds", SVC_DB_PG_IDLE_TX_TIMEOUT_MS / 1000);
    CHECK_STR(svc_stmt_text(s, 0), want);
    svc_stmt_reset(s);
    svc_db_close(db);

    char short_url[1024];
    snprintf(short_url, sizeof short_url, "%s%coptions=-c%%20idle_in_transaction_session_timeout%%3D200", url,
             strchr(url, '?') ? '&' : '?');
    svc_db *a = open_fresh(short_url, "idle", migrations, 1);
    svc_db *b = open_fresh(short_url, "idle", migrations, 1);
    CHECK(a && b);
    if (a && b) {
        CHECK_EQ(svc_db_begin(a), SVC_OK);
        CHECK_EQ(svc_db_exec(a, "SELECT pg_advisory_xact_lock(4242)"), SVC_OK);
        /* a goes silent, holding the lock; b waits for it. */
        CHECK_EQ(svc_db_begin(b), SVC_OK);
        CHECK_EQ(svc_db_exec(b, "SELECT pg_advisory_xact_lock(4242)"), SVC_OK);
        CHECK_EQ(svc_db_commit(b), SVC_OK);
        CHECK(svc_db_commit(a) != SVC_OK); /* its session was ended */
    }
    if (a) svc_db_close(a);
    if (b) svc_db_close(b);
out:
    setenv("DATABASE_URL", url, 1);
    free(url);
}

/* More statements than the cache holds, used round and round: each one
 * evicts another. The answers stay right, and on PostgreSQL the server
 * holds no more prepared statements than the cache (none leak). */
static void cache_cycles(svc_db *db, const char *pg) {
    enum { N = SVC_DB_MAX_STATEMENTS + 8 };
    static char sql[N][32]; /* one pointer per statement: the cache's key */
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < N; i++) {
            snprintf(sql[i], sizeof sql[i], "SELECT %d + ?1", i);
            svc_stmt *s = svc_db_stmt(db, sql[i]);
            CHECK(s != NULL);
            if (!s) return;
            svc_stmt_bind_i64(s, 1, round);
            CHECK_EQ(svc_stmt_step(s), SVC_DB_ROW);
            CHECK_EQ(svc_stmt_i64(s, 0), i + round);
            svc_stmt_reset(s);
        }
    if (!pg) return;
    svc_stmt *s = svc_db_stmt(db, "SELECT count(*) FROM pg_prepared_statements");
    CHECK_EQ(svc_stmt_step(s), SVC_DB_ROW);
    CHECK(svc_stmt_i64(s, 0) <= SVC_DB_MAX_STATEMENTS);
    svc_stmt_reset(s);
}

TEST(statements_the_cache_drops_are_closed_on_both) { each_backend("cache", cache_cycles); }

static int64_t count_named(svc_db *db, const char *name) {
    svc_stmt *s = svc_db_stmt(db, "SELECT count(*) FROM things WHERE s = ?1");
    svc_stmt_bind_text(s, 1, name);
    int64_t n = svc_stmt_step(s) == SVC_DB_ROW ? svc_stmt_i64(s, 0) : -1;
    svc_stmt_reset(s);
    return n;
}

/* svc_stmt_steps counts a statement's work, not its time: a scan of 200
 * rows costs more steps than a lookup by key, the count restarts after
 * each call; PostgreSQL does not count (-1). */
static int64_t run_counting(svc_db *db, const char *sql) {
    svc_stmt *st = svc_db_stmt(db, sql);
    CHECK(st != NULL);
    svc_stmt_bind_i64(st, 1, 7);
    while (svc_stmt_step(st) == SVC_DB_ROW) {}
    svc_stmt_reset(st);
    return svc_stmt_steps(st);
}

static void steps_count_work(svc_db *db, const char *pg) {
    for (int i = 0; i < 200; i++) CHECK(insert_thing(db, i, 0, NULL, NULL, 0) > 0);
    int64_t lookup = run_counting(db, "SELECT n FROM things WHERE id = ?1");
    int64_t scan = run_counting(db, "SELECT count(*) FROM things WHERE n + ?1 > 0");
    if (pg) {
        CHECK_EQ(lookup, -1);
        CHECK_EQ(scan, -1);
        return;
    }
    CHECK(lookup > 0);
    CHECK(scan > 200);
    CHECK(scan > 20 * lookup);
    svc_stmt *st = svc_db_stmt(db, "SELECT n FROM things WHERE id = ?1");
    CHECK_EQ(svc_stmt_steps(st), 0); /* read by run_counting: starts again */
}

TEST(steps_count_a_statements_work_on_both) { each_backend("steps", steps_count_work); }

TEST(migrations_run_once_and_refuse_a_newer_database_on_both) {
    static const svc_migration more[] = {
        migrations[0],
        {2, "more", "INSERT INTO things (s) VALUES ('v2')", NULL},
    };
    char *pg_url = getenv("DATABASE_URL") ? strdup(getenv("DATABASE_URL")) : NULL;
    for (int pg = 0; pg < 2; pg++) {
        if (pg && !pg_url) {
            printf("# migrations: PostgreSQL skipped (DATABASE_URL unset)\n");
            break;
        }
        char path[256];
        if (pg) {
            setenv("DATABASE_URL", pg_url, 1);
            snprintf(path, sizeof path, "t_mig_%d", (int)getpid());
        } else {
            unsetenv("DATABASE_URL");
            snprintf(path, sizeof path, "%s", test_db_path());
        }
        svc_db *db = NULL;
        CHECK_EQ(svc_db_open(path, migrations, 1, &db), SVC_OK);
        svc_db_close(db);
        for (int i = 0; i < 2; i++) {
            CHECK_EQ(svc_db_open(path, more, 2, &db), SVC_OK);
            if (!db) return;
            CHECK_EQ(count_named(db, "v2"), 1);
            svc_db_close(db);
        }
        db = NULL;
        CHECK_EQ(svc_db_open(path, migrations, 1, &db), SVC_EIO);
        CHECK(db == NULL);
    }
    free(pg_url);
}

TEST(url_check_refuses_and_masks_the_password) {
    char err[256] = "";
    CHECK_EQ(svc_db_url_check(NULL, err, sizeof err), SVC_OK);
    CHECK_EQ(svc_db_url_check("", err, sizeof err), SVC_OK);
    CHECK_EQ(svc_db_url_check("postgres://u:pw@127.0.0.1:5432/db", err, sizeof err), SVC_OK);
    CHECK_EQ(svc_db_url_check("mysql://u:pw@h/db", err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "postgres://") != NULL);
    CHECK_EQ(svc_db_url_check("postgres://u:s3cr3t@h/db?bogus=1", err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "bogus") != NULL);
    /* libpq quotes the bad token, here the password itself: masked. */
    CHECK_EQ(svc_db_url_check("postgresql://u:s3%zzcr3t@h/db", err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "percent") != NULL);
    CHECK(strstr(err, "zzcr3t") == NULL);
    CHECK(strstr(err, "***") != NULL);
}
