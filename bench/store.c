/*
 * bench/store.c: durable writes per second with group commit (svc_db_write)
 * against one transaction per write, WRITERS threads, synchronous=FULL, on the
 * disk under DIR. Each write is what a service's command does: one row of
 * state and one outbox event in the same transaction.
 *
 *     store DIR [WRITERS] [SECONDS]
 *
 * With DATABASE_URL=postgres://... (linked with -lpq, as run.sh does) the
 * same writes go to PostgreSQL, a schema per design; the disk line is then
 * DIR's, which may not be the server's.
 *
 * Prints a markdown table: the disk's own fdatasync rate first (the ceiling of
 * the one-transaction-per-write design), then each design's writes/s, fsyncs
 * (commits) per second, mean writes per commit, and the p50/p99 of one write
 * from call to durable.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "svckit/store.h"

#define MAX_WRITERS 64
#define MAX_SAMPLES 2000000

static const svc_migration migrations[] = {
    {1, "orders", "CREATE TABLE orders (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
     "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL)"},
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char body[] = "{\"items\":[{\"product_id\":1,\"quantity\":2}],\"total_cents\":1998}";

static int write_order(svc_db *db, void *ud) {
    (void)ud;
    svc_stmt *s = svc_db_stmt(db, "INSERT INTO orders (body) VALUES (?1)");
    if (!s) return SVC_EIO;
    svc_stmt_bind_text(s, 1, body);
    int rc = svc_stmt_step(s);
    svc_stmt_reset(s);
    if (rc < 0) return rc;
    return svc_db_outbox_add(db, "orders.created", body, sizeof body - 1, NULL);
}

typedef struct run {
    svc_db *db;
    int group;              /* 1: svc_db_write_wait; 0: own transaction each */
    double deadline;
    atomic_long commits;
    atomic_long nsamples;
    double *samples;        /* latency of each write, seconds */
    atomic_long failures;
} run;

static void count_commit(svc_db *db, void *ud) {
    (void)db;
    atomic_fetch_add(&((run *)ud)->commits, 1);
}

static void *writer(void *arg) {
    run *r = arg;
    while (now_s() < r->deadline) {
        double t0 = now_s();
        int rc;
        if (r->group) {
            rc = svc_db_write_wait(r->db, write_order, NULL);
        } else {
            rc = svc_db_begin(r->db);
            if (rc == SVC_OK) rc = write_order(r->db, NULL);
            if (rc == SVC_OK) rc = svc_db_commit(r->db);
            if (rc != SVC_OK) svc_db_rollback(r->db);
            else atomic_fetch_add(&r->commits, 1);
        }
        if (rc != SVC_OK) {
            atomic_fetch_add(&r->failures, 1);
            continue;
        }
        long i = atomic_fetch_add(&r->nsamples, 1);
        if (i < MAX_SAMPLES) r->samples[i] = now_s() - t0;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void measure(const char *dir, const char *name, int group, int writers, double seconds) {
    /* With DATABASE_URL, on PostgreSQL: the file name is the schema's, so
     * letters, digits and _ only. */
    char path[512];
    int n0 = snprintf(path, sizeof path, "%s/", dir);
    for (const char *c = name; *c && n0 < (int)sizeof path - 4; c++) path[n0++] = *c == '-' ? '_' : *c;
    snprintf(path + n0, sizeof path - (size_t)n0, ".db");
    unlink(path);
    run r = {.group = group};
    r.samples = malloc(sizeof(double) * MAX_SAMPLES);
    if (!r.samples || svc_db_open(path, migrations, 1, &r.db) != SVC_OK) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    if (group) svc_db_on_commit(r.db, count_commit, &r);
    pthread_t t[MAX_WRITERS];
    double t0 = now_s();
    r.deadline = t0 + seconds;
    for (int i = 0; i < writers; i++) pthread_create(&t[i], NULL, writer, &r);
    for (int i = 0; i < writers; i++) pthread_join(t[i], NULL);
    double elapsed = now_s() - t0;
    long n = atomic_load(&r.nsamples);
    long kept = n < MAX_SAMPLES ? n : MAX_SAMPLES;
    qsort(r.samples, (size_t)kept, sizeof(double), cmp_double);
    double p50 = kept ? r.samples[kept / 2] : 0, p99 = kept ? r.samples[kept * 99 / 100] : 0;
    long commits = atomic_load(&r.commits);
    printf("| %s | %d | %.0f | %.0f | %.1f | %.2f | %.2f | %ld |\n", name, writers, (double)n / elapsed,
           (double)commits / elapsed, commits ? (double)n / (double)commits : 0, p50 * 1e3, p99 * 1e3,
           atomic_load(&r.failures));
    svc_db_close(r.db);
    free(r.samples);
    unlink(path);
    char side[600];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

/* The disk's fdatasync rate: 4 KiB appended and synced, as a WAL commit does. */
static double fsync_rate(const char *dir, double seconds) {
    char path[512];
    snprintf(path, sizeof path, "%s/store-fsync.bin", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return 0;
    char block[4096];
    memset(block, 'x', sizeof block);
    long n = 0;
    double t0 = now_s(), end = t0 + seconds;
    while (now_s() < end) {
        if (write(fd, block, sizeof block) != (ssize_t)sizeof block || fdatasync(fd) != 0) break;
        n++;
    }
    double rate = (double)n / (now_s() - t0);
    close(fd);
    unlink(path);
    return rate;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: store DIR [WRITERS] [SECONDS]\n");
        return 2;
    }
    const char *dir = argv[1];
    int writers = argc > 2 ? atoi(argv[2]) : 8;
    double seconds = argc > 3 ? atof(argv[3]) : 5;
    if (writers < 1 || writers > MAX_WRITERS || seconds <= 0) {
        fprintf(stderr, "WRITERS 1..%d, SECONDS > 0\n", MAX_WRITERS);
        return 2;
    }
    svc_log_setup("store-bench", SVC_LOG_WARN, 0);
    printf("Disk: %.0f fdatasync/s (4 KiB appends)\n\n", fsync_rate(dir, 2));
    printf("| design | writers | writes/s | commits/s | writes/commit | p50 ms | p99 ms | failed |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    measure(dir, "one-txn-per-write", 0, writers, seconds);
    measure(dir, "group-commit", 1, writers, seconds);
    measure(dir, "group-commit-1-writer", 1, 1, seconds);
    return 0;
}
