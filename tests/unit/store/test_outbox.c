/* Library tables: the outbox, the inbox, the retention sweep. */
#include <time.h>

#include "store_util.h"

typedef struct add_arg {
    const char *subject;
    const char *payload;
    size_t len;
    int64_t id;
    int fail_after; /* return this after adding (0: keep) */
} add_arg;

static int add_event(svc_db *db, void *ud) {
    add_arg *a = ud;
    int rc = svc_db_outbox_add(db, a->subject, a->payload, a->len, &a->id);
    return rc == SVC_OK && a->fail_after ? a->fail_after : rc;
}

typedef struct seen {
    int n;
    int64_t ids[16];
    char msg_ids[16][64];
    char subjects[16][64];
    char payloads[16][64];
    int stop_after;
} seen;

static int collect(const svc_db_outbox_msg *m, void *ud) {
    seen *s = ud;
    s->ids[s->n] = m->id;
    snprintf(s->msg_ids[s->n], sizeof s->msg_ids[0], "%s", m->msg_id);
    snprintf(s->subjects[s->n], sizeof s->subjects[0], "%s", m->subject);
    snprintf(s->payloads[s->n], sizeof s->payloads[0], "%.*s", (int)m->len, (const char *)m->payload);
    CHECK(m->headers == NULL);
    CHECK(m->created_at > 0);
    s->n++;
    return s->stop_after && s->n == s->stop_after;
}

TEST(outbox_events_commit_with_their_write_and_come_back_in_order) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    add_arg a = {"orders.created", "{\"id\":1}", 8, 0, 0};
    add_arg b = {"orders.created", "{\"id\":2}", 8, 0, 0};
    add_arg failed = {"orders.created", "{\"id\":3}", 8, 0, SVC_ERANGE};
    CHECK_EQ(svc_db_write_wait(db, add_event, &a), SVC_OK);
    CHECK_EQ(svc_db_write_wait(db, add_event, &failed), SVC_ERANGE); /* rolled back with its closure */
    CHECK_EQ(svc_db_write_wait(db, add_event, &b), SVC_OK);
    CHECK(b.id > a.id);
    seen s = {0};
    CHECK_EQ(svc_db_outbox_next(db, 0, 10, collect, &s), 2);
    CHECK_EQ(s.ids[0], a.id);
    CHECK_EQ(s.ids[1], b.id);
    CHECK_STR(s.payloads[0], "{\"id\":1}");
    CHECK_STR(s.subjects[1], "orders.created");
    /* msg_id is "<16 hex digits>.<id>" */
    char expect[64];
    CHECK_EQ(strlen(s.msg_ids[0]), 16 + 1 + strlen("1"));
    snprintf(expect, sizeof expect, "%.16s.%lld", s.msg_ids[0], (long long)a.id);
    CHECK_STR(s.msg_ids[0], expect);
    /* stop early */
    seen one = {.stop_after = 1};
    CHECK_EQ(svc_db_outbox_next(db, 0, 10, collect, &one), 1);
    CHECK_EQ(svc_db_outbox_delete(db, a.id), SVC_OK);
    seen rest = {0};
    CHECK_EQ(svc_db_outbox_next(db, 0, 10, collect, &rest), 1);
    CHECK_EQ(rest.ids[0], b.id);
    /* after_id: from the event after it on (a relay that deletes later) */
    seen after = {0};
    CHECK_EQ(svc_db_outbox_next(db, b.id, 10, collect, &after), 0);
    CHECK_EQ(svc_db_outbox_next(db, b.id - 1, 10, collect, &after), 1);
    CHECK_EQ(after.ids[0], b.id);
    svc_db_close(db);
    test_remove_db(path);
}

TEST(outbox_msg_ids_are_never_reused) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    add_arg a = {"x", "1", 1, 0, 0};
    CHECK_EQ(svc_db_write_wait(db, add_event, &a), SVC_OK);
    seen s1 = {0};
    CHECK_EQ(svc_db_outbox_next(db, 0, 1, collect, &s1), 1);
    CHECK_EQ(svc_db_outbox_delete(db, a.id), SVC_OK);
    svc_db_close(db);
    /* Emptied and reopened: the id goes on, and the epoch is a new one. */
    db = test_db_open(path);
    REQUIRE(db);
    add_arg b = {"x", "2", 1, 0, 0};
    CHECK_EQ(svc_db_write_wait(db, add_event, &b), SVC_OK);
    CHECK(b.id > a.id);
    seen s2 = {0};
    CHECK_EQ(svc_db_outbox_next(db, 0, 1, collect, &s2), 1);
    CHECK(strncmp(s1.msg_ids[0], s2.msg_ids[0], 16) != 0);
    svc_db_close(db);
    test_remove_db(path);
}

static int add_bad(svc_db *db, void *ud) {
    (void)ud;
    static char big_subject[SVC_DB_SUBJECT_MAX + 2];
    memset(big_subject, 'a', sizeof big_subject - 1);
    static char big_payload[SVC_DB_PAYLOAD_MAX + 1];
    int bad = 0;
    bad += svc_db_outbox_add(db, "", "x", 1, NULL) == SVC_EINVAL;
    bad += svc_db_outbox_add(db, NULL, "x", 1, NULL) == SVC_EINVAL;
    bad += svc_db_outbox_add(db, big_subject, "x", 1, NULL) == SVC_EINVAL;
    bad += svc_db_outbox_add(db, "s", big_payload, sizeof big_payload, NULL) == SVC_EINVAL;
    bad += svc_db_outbox_add(db, "s", NULL, 5, NULL) == SVC_EINVAL;
    bad += svc_db_outbox_add(db, "s", NULL, 0, NULL) == SVC_OK; /* empty payload is fine */
    return bad == 6 ? SVC_OK : SVC_ERR;
}

TEST(outbox_refuses_bad_input) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    CHECK_EQ(svc_db_outbox_add(db, "s", "x", 1, NULL), SVC_EINVAL); /* no transaction */
    CHECK_EQ(svc_db_write_wait(db, add_bad, NULL), SVC_OK);
    seen s = {0};
    CHECK_EQ(svc_db_outbox_next(db, 0, 0, collect, &s), SVC_EINVAL);
    CHECK_EQ(svc_db_outbox_next(db, 0, SVC_DB_MAX_BATCH + 1, collect, &s), SVC_EINVAL);
    CHECK_EQ(svc_db_outbox_next(db, 0, 5, NULL, &s), SVC_EINVAL);
    CHECK_EQ(svc_db_outbox_next(db, 0, 5, collect, &s), 1);
    svc_db_close(db);
    test_remove_db(path);
}

typedef struct claim_arg {
    const char *consumer, *msg_id;
    int claimed;      /* what svc_db_inbox_claim said */
    int fail_effect;  /* the effect fails after the claim */
} claim_arg;

/* A consumer's closure: claim, then the effect (an item named consumer:msg_id). */
static int consume(svc_db *db, void *ud) {
    claim_arg *a = ud;
    a->claimed = svc_db_inbox_claim(db, a->consumer, a->msg_id);
    if (a->claimed != SVC_OK) return SVC_OK; /* seen: skip the effect, ack */
    if (a->fail_effect) return SVC_EIO;
    char name[64];
    snprintf(name, sizeof name, "%s:%s", a->consumer, a->msg_id);
    return test_insert_item(db, name);
}

TEST(inbox_claims_once_per_consumer_and_with_the_effect) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    claim_arg failing = {"payments", "m1", 0, 1};
    CHECK_EQ(svc_db_write_wait(db, consume, &failing), SVC_EIO);
    CHECK_EQ(failing.claimed, SVC_OK);
    /* The failed effect took its claim with it: the redelivery runs it. */
    claim_arg first = {"payments", "m1", 0, 0};
    CHECK_EQ(svc_db_write_wait(db, consume, &first), SVC_OK);
    CHECK_EQ(first.claimed, SVC_OK);
    claim_arg again = {"payments", "m1", 0, 0};
    CHECK_EQ(svc_db_write_wait(db, consume, &again), SVC_OK);
    CHECK_EQ(again.claimed, SVC_EEXIST);
    claim_arg other = {"shipping", "m1", 0, 0};
    CHECK_EQ(svc_db_write_wait(db, consume, &other), SVC_OK);
    CHECK_EQ(other.claimed, SVC_OK);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM items WHERE name = 'payments:m1'"), 1);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM items WHERE name = 'shipping:m1'"), 1);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM svc_inbox"), 2);
    svc_db_close(db);
    test_remove_db(path);
}

static int claim_bad(svc_db *db, void *ud) {
    (void)ud;
    char long_id[SVC_DB_MSG_ID_MAX + 2];
    memset(long_id, '7', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    char long_consumer[SVC_DB_CONSUMER_MAX + 2];
    memset(long_consumer, 'c', sizeof long_consumer - 1);
    long_consumer[sizeof long_consumer - 1] = '\0';
    int bad = 0;
    bad += svc_db_inbox_claim(db, "c", "") == SVC_EINVAL;
    bad += svc_db_inbox_claim(db, "c", NULL) == SVC_EINVAL;
    bad += svc_db_inbox_claim(db, "", "m") == SVC_EINVAL;
    bad += svc_db_inbox_claim(db, "c", long_id) == SVC_EINVAL;
    bad += svc_db_inbox_claim(db, long_consumer, "m") == SVC_EINVAL;
    long_id[SVC_DB_MSG_ID_MAX] = '\0';
    bad += svc_db_inbox_claim(db, "c", long_id) == SVC_OK; /* exactly the limit */
    return bad == 6 ? SVC_OK : SVC_ERR;
}

TEST(inbox_refuses_bad_input) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    CHECK_EQ(svc_db_inbox_claim(db, "c", "m"), SVC_EINVAL); /* no transaction */
    CHECK_EQ(svc_db_write_wait(db, claim_bad, NULL), SVC_OK);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM svc_inbox"), 1);
    svc_db_close(db);
    test_remove_db(path);
}

static int sweep_closure(svc_db *db, void *ud) {
    int64_t *arg = ud; /* in: before; out: rows */
    int rc = svc_db_sweep(db, *arg);
    if (rc < 0) return rc;
    *arg = rc;
    return SVC_OK;
}

TEST(sweep_removes_only_rows_older_than_the_cutoff) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    REQUIRE(svc_db_exec(db, "INSERT INTO svc_inbox VALUES ('c', 'old', 100), ('c', 'new', 5000000000)") == SVC_OK);
    REQUIRE(svc_db_exec(db, svc_db_is_pg(db) ? "INSERT INTO svc_idempotency VALUES"
                                               " ('u', 'old', '\\x00', 201, NULL, '', 100),"
                                               " ('u', 'new', '\\x00', 201, NULL, '', 5000000000)"
                                             : "INSERT INTO svc_idempotency VALUES"
                                               " ('u', 'old', x'00', 201, NULL, x'', 100),"
                                               " ('u', 'new', x'00', 201, NULL, x'', 5000000000)") == SVC_OK);
    int64_t arg = (int64_t)time(NULL) - SVC_DB_RETENTION_S;
    CHECK_EQ(svc_db_write_wait(db, sweep_closure, &arg), SVC_OK);
    CHECK_EQ(arg, 2);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM svc_inbox WHERE msg_id = 'new'"), 1);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM svc_idempotency WHERE key = 'new'"), 1);
    CHECK_EQ(svc_db_sweep(db, 0), 0); /* outside a write too */
    svc_db_close(db);
    test_remove_db(path);
}

TEST(library_tables_leave_the_service_schema_alone) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    CHECK_EQ(test_db_count(db, svc_db_is_pg(db) ? "SELECT value FROM svc_meta WHERE key = 'user_version'"
                                                : "PRAGMA user_version"),
             1);
    CHECK_EQ(test_db_count(db, "SELECT value FROM svc_meta WHERE key = 'library_version'"), 1);
    svc_db_close(db);
    /* Reopening applies nothing again; a newer library version is refused. */
    db = test_db_open(path);
    REQUIRE(db);
    REQUIRE(svc_db_exec(db, "UPDATE svc_meta SET value = 99 WHERE key = 'library_version'") == SVC_OK);
    svc_db_close(db);
    CHECK(test_db_open(path) == NULL);
    test_remove_db(path);
}

TEST(the_writer_sweeps_by_itself_with_the_retention_set) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    CHECK_EQ(svc_db_set_retention(db, 0), SVC_EINVAL);
    CHECK_EQ(svc_db_set_retention(db, 3600), SVC_OK);
    char sql[256];
    long long now = (long long)time(NULL);
    snprintf(sql, sizeof sql, "INSERT INTO svc_inbox VALUES ('c', 'old', %lld), ('c', 'new', %lld)", now - 7200,
             now);
    REQUIRE(svc_db_exec(db, sql) == SVC_OK);
    /* The writer's first batch is followed by a sweep; close waits for it. */
    CHECK_EQ(svc_db_write_wait(db, test_insert_item, "x"), SVC_OK);
    svc_db_close(db);
    db = test_db_open(path);
    REQUIRE(db);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM svc_inbox"), 1);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM svc_inbox WHERE msg_id = 'new'"), 1);
    svc_db_close(db);
    test_remove_db(path);
}
