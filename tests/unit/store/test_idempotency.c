/* Idempotency keys: new, replay, conflict, in progress, lease, limits. */
#include "store_util.h"

typedef struct idem_arg {
    const char *scope, *key, *method, *path, *body;
    int result;                 /* svc_db_idem_check's */
    svc_db_idem_response resp;
    int store_status;           /* 0: do not store in the same closure */
    const char *store_body;
} idem_arg;

static int check_closure(svc_db *db, void *ud) {
    idem_arg *a = ud;
    a->result = svc_db_idem_check(db, a->scope, a->key, a->method, a->path, a->body, a->body ? strlen(a->body) : 0,
                                  &a->resp);
    if (a->result == SVC_DB_IDEM_NEW && a->store_status)
        return svc_db_idem_store(db, a->scope, a->key, a->store_status, "Location: /orders/7\r\n", a->store_body,
                                 strlen(a->store_body));
    return SVC_OK;
}

static int check(svc_db *db, idem_arg *a) {
    int rc = svc_db_write_wait(db, check_closure, a);
    return rc == SVC_OK ? a->result : rc;
}

TEST(first_use_then_replay_of_the_stored_response) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    idem_arg first = {"user:1", "k1", "POST", "/orders", "{\"items\":[]}", 0, {0}, 201, "{\"id\":7}"};
    CHECK_EQ(check(db, &first), SVC_DB_IDEM_NEW);
    idem_arg again = {"user:1", "k1", "POST", "/orders", "{\"items\":[]}", 0, {0}, 201, "{\"id\":8}"};
    CHECK_EQ(check(db, &again), SVC_DB_IDEM_REPLAY);
    CHECK_EQ(again.resp.status, 201);
    CHECK_STR(again.resp.body, "{\"id\":7}");
    CHECK_EQ(again.resp.len, 8);
    CHECK_STR(again.resp.headers, "Location: /orders/7\r\n");
    svc_db_idem_response_free(&again.resp);
    CHECK(again.resp.body == NULL);
    /* Another user's key of the same name is another key. */
    idem_arg other = {"user:2", "k1", "POST", "/orders", "{\"items\":[]}", 0, {0}, 201, "{\"id\":9}"};
    CHECK_EQ(check(db, &other), SVC_DB_IDEM_NEW);
    svc_db_close(db);
    test_remove_db(path);
}

TEST(same_key_with_another_request_is_a_conflict) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    idem_arg first = {"u", "k", "POST", "/orders", "a", 0, {0}, 201, "x"};
    CHECK_EQ(check(db, &first), SVC_DB_IDEM_NEW);
    idem_arg body = {"u", "k", "POST", "/orders", "b", 0, {0}, 0, NULL};
    CHECK_EQ(check(db, &body), SVC_DB_IDEM_CONFLICT);
    idem_arg no_body = {"u", "k", "POST", "/orders", NULL, 0, {0}, 0, NULL};
    CHECK_EQ(check(db, &no_body), SVC_DB_IDEM_CONFLICT);
    idem_arg method = {"u", "k", "PUT", "/orders", "a", 0, {0}, 0, NULL};
    CHECK_EQ(check(db, &method), SVC_DB_IDEM_CONFLICT);
    /* The separator keeps method and path apart: "POST /ordersa" is not "POST /orders" + "a". */
    idem_arg shifted = {"u", "k", "POST", "/ordersa", "", 0, {0}, 0, NULL};
    CHECK_EQ(check(db, &shifted), SVC_DB_IDEM_CONFLICT);
    svc_db_close(db);
    test_remove_db(path);
}

static int release_closure(svc_db *db, void *ud) {
    idem_arg *a = ud;
    return svc_db_idem_release(db, a->scope, a->key);
}

static int store_closure(svc_db *db, void *ud) {
    idem_arg *a = ud;
    return svc_db_idem_store(db, a->scope, a->key, a->store_status, NULL, a->store_body, strlen(a->store_body));
}

TEST(a_key_held_in_progress_then_released_or_taken_over) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    /* check and store in separate writes: "in progress" between them */
    idem_arg first = {"u", "k", "POST", "/p", "a", 0, {0}, 0, NULL};
    CHECK_EQ(check(db, &first), SVC_DB_IDEM_NEW);
    idem_arg second = {"u", "k", "POST", "/p", "a", 0, {0}, 0, NULL};
    CHECK_EQ(check(db, &second), SVC_DB_IDEM_IN_PROGRESS);
    CHECK_EQ(svc_db_write_wait(db, release_closure, &first), SVC_OK);
    CHECK_EQ(svc_db_write_wait(db, release_closure, &first), SVC_ENOTFOUND);
    CHECK_EQ(check(db, &second), SVC_DB_IDEM_NEW);
    /* A holder that died: after the lease, the key is taken over. */
    REQUIRE(svc_db_exec(db, "UPDATE svc_idempotency SET created_at = created_at - 3600") == SVC_OK);
    idem_arg third = {"u", "k", "POST", "/p", "a", 0, {0}, 200, "done"};
    CHECK_EQ(check(db, &third), SVC_DB_IDEM_NEW);
    idem_arg late = {"u", "k", "POST", "/p", "a", 0, {0}, 200, "late"};
    CHECK_EQ(svc_db_write_wait(db, store_closure, &late), SVC_ENOTFOUND); /* no longer held */
    CHECK_EQ(svc_db_write_wait(db, release_closure, &late), SVC_ENOTFOUND); /* a stored key stays */
    idem_arg replay = {"u", "k", "POST", "/p", "a", 0, {0}, 0, NULL};
    CHECK_EQ(check(db, &replay), SVC_DB_IDEM_REPLAY);
    CHECK_STR(replay.resp.body, "done");
    CHECK(replay.resp.headers != NULL);
    svc_db_idem_response_free(&replay.resp);
    svc_db_close(db);
    test_remove_db(path);
}

static int lookup(svc_db *db, idem_arg *a) {
    return svc_db_idem_lookup(db, a->scope, a->key, a->method, a->path, a->body, a->body ? strlen(a->body) : 0,
                              &a->resp);
}

/* The read-only lookup answers what a check would, outside any transaction,
 * and holds nothing: a NEW key is still free afterwards. */
TEST(lookup_answers_like_check_and_holds_nothing) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    idem_arg probe = {"u", "k", "POST", "/orders", "a", 0, {0}, 0, NULL};
    CHECK_EQ(lookup(db, &probe), SVC_DB_IDEM_NEW);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM svc_idempotency"), 0);
    idem_arg held = {"u", "k", "POST", "/orders", "a", 0, {0}, 0, NULL};
    CHECK_EQ(check(db, &held), SVC_DB_IDEM_NEW); /* taken: the lookup held nothing */
    CHECK_EQ(lookup(db, &probe), SVC_DB_IDEM_IN_PROGRESS);
    idem_arg other_body = {"u", "k", "POST", "/orders", "b", 0, {0}, 0, NULL};
    CHECK_EQ(lookup(db, &other_body), SVC_DB_IDEM_CONFLICT);
    /* A hold past its lease is NEW, as check would take it over; the row is untouched. */
    REQUIRE(svc_db_exec(db, "UPDATE svc_idempotency SET created_at = created_at - 3600") == SVC_OK);
    CHECK_EQ(lookup(db, &probe), SVC_DB_IDEM_NEW);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM svc_idempotency WHERE status = 0"), 1);
    idem_arg done = {"u", "k", "POST", "/orders", "a", 0, {0}, 201, "{\"id\":7}"};
    CHECK_EQ(check(db, &done), SVC_DB_IDEM_NEW);
    CHECK_EQ(lookup(db, &probe), SVC_DB_IDEM_REPLAY);
    CHECK_EQ(probe.resp.status, 201);
    CHECK_STR(probe.resp.body, "{\"id\":7}");
    CHECK_STR(probe.resp.headers, "Location: /orders/7\r\n");
    svc_db_idem_response_free(&probe.resp);
    CHECK_EQ(lookup(db, &other_body), SVC_DB_IDEM_CONFLICT);
    CHECK(other_body.resp.body == NULL);
    /* Another scope's key of that name is unused. */
    idem_arg other_user = {"v", "k", "POST", "/orders", "a", 0, {0}, 0, NULL};
    CHECK_EQ(lookup(db, &other_user), SVC_DB_IDEM_NEW);
    /* Bad input as check refuses it; no transaction needed. */
    idem_arg bad_key = {"u", "tab\tkey", "POST", "/orders", "a", 0, {0}, 0, NULL};
    CHECK_EQ(lookup(db, &bad_key), SVC_EINVAL);
    idem_arg no_scope = {"", "k", "POST", "/orders", "a", 0, {0}, 0, NULL};
    CHECK_EQ(lookup(db, &no_scope), SVC_EINVAL);
    CHECK_EQ(svc_db_idem_lookup(NULL, "u", "k", "POST", "/", "", 0, &probe.resp), SVC_EINVAL);
    svc_db_close(db);
    test_remove_db(path);
}

TEST(bad_keys_and_scopes_are_refused) {
    CHECK(svc_db_idem_key_valid("a"));
    CHECK(svc_db_idem_key_valid("0f8fad5b-d9cb-469f-a165-70867728950e"));
    CHECK(svc_db_idem_key_valid("with space ~"));
    CHECK(!svc_db_idem_key_valid(""));
    CHECK(!svc_db_idem_key_valid(NULL));
    CHECK(!svc_db_idem_key_valid("tab\there"));
    CHECK(!svc_db_idem_key_valid("nl\n"));
    CHECK(!svc_db_idem_key_valid("del\x7f"));
    CHECK(!svc_db_idem_key_valid("utf8\xc3\xa9"));
    char k[SVC_DB_IDEM_KEY_MAX + 2];
    memset(k, 'k', sizeof k - 1);
    k[sizeof k - 1] = '\0';
    CHECK(!svc_db_idem_key_valid(k));
    k[SVC_DB_IDEM_KEY_MAX] = '\0';
    CHECK(svc_db_idem_key_valid(k));
    static char huge[10 * 1024 + 1];
    memset(huge, 'h', sizeof huge - 1);
    CHECK(!svc_db_idem_key_valid(huge));

    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    svc_db_idem_response r;
    CHECK_EQ(svc_db_idem_check(db, "u", "k", "POST", "/", "", 0, &r), SVC_EINVAL); /* no transaction */
    idem_arg bad_key = {"u", huge, "POST", "/", "", 0, {0}, 0, NULL};
    CHECK_EQ(check(db, &bad_key), SVC_EINVAL);
    idem_arg no_scope = {"", "k", "POST", "/", "", 0, {0}, 0, NULL};
    CHECK_EQ(check(db, &no_scope), SVC_EINVAL);
    CHECK_EQ(test_db_count(db, "SELECT count(*) FROM svc_idempotency"), 0);
    svc_db_close(db);
    test_remove_db(path);
}

static int store_big(svc_db *db, void *ud) {
    (void)ud;
    svc_db_idem_response r;
    if (svc_db_idem_check(db, "u", "k", "POST", "/", NULL, 0, &r) != SVC_DB_IDEM_NEW) return SVC_ERR;
    static char body[SVC_DB_IDEM_BODY_MAX + 1];
    if (svc_db_idem_store(db, "u", "k", 201, NULL, body, sizeof body) != SVC_ERANGE) return SVC_ERR;
    if (svc_db_idem_store(db, "u", "k", 42, NULL, "x", 1) != SVC_EINVAL) return SVC_ERR;
    return svc_db_idem_store(db, "u", "k", 201, NULL, body, SVC_DB_IDEM_BODY_MAX);
}

TEST(stored_bodies_are_bounded) {
    const char *path = test_db_path();
    svc_db *db = test_db_open(path);
    REQUIRE(db);
    CHECK_EQ(svc_db_write_wait(db, store_big, NULL), SVC_OK);
    idem_arg replay = {"u", "k", "POST", "/", NULL, 0, {0}, 0, NULL};
    CHECK_EQ(check(db, &replay), SVC_DB_IDEM_REPLAY);
    CHECK_EQ(replay.resp.len, SVC_DB_IDEM_BODY_MAX);
    CHECK(replay.resp.headers == NULL);
    svc_db_idem_response_free(&replay.resp);
    svc_db_close(db);
    test_remove_db(path);
}

#include <pthread.h>

#define RACERS 8

static svc_db *race_db;
static int race_results[RACERS];

static void *racer(void *arg) {
    int i = (int)(intptr_t)arg;
    idem_arg a = {"u", "same-key", "POST", "/orders", "{}", 0, {0}, 201, "{\"id\":1}"};
    race_results[i] = check(race_db, &a);
    if (a.result == SVC_DB_IDEM_REPLAY && (a.resp.status != 201 || strcmp(a.resp.body, "{\"id\":1}") != 0))
        race_results[i] = -100;
    svc_db_idem_response_free(&a.resp);
    return NULL;
}

TEST(concurrent_retries_of_one_key_run_it_once) {
    const char *path = test_db_path();
    race_db = test_db_open(path);
    REQUIRE(race_db);
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++) REQUIRE(pthread_create(&t[i], NULL, racer, (void *)(intptr_t)i) == 0);
    int news = 0, replays = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(t[i], NULL);
        news += race_results[i] == SVC_DB_IDEM_NEW;
        replays += race_results[i] == SVC_DB_IDEM_REPLAY;
    }
    /* check and store in one closure: never "in progress" to anyone */
    CHECK_EQ(news, 1);
    CHECK_EQ(replays, RACERS - 1);
    svc_db_close(race_db);
    test_remove_db(path);
}
