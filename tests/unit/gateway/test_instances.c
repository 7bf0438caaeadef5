/* The instance directory and the per-worker pools balanced over. */
#include "../../../services/gateway/instances.c"
#include "../test.h"

TEST(directory_keeps_instances_until_they_miss_rounds) {
    gw_directory d;
    gw_directory_init(&d, 2);
    const char *ab[] = {"a", "b"}, *b_only[] = {"b"};
    unsigned v0 = atomic_load(&d.version);
    CHECK_EQ(gw_directory_update(&d, 0, ab, 2), 2);
    unsigned v1 = atomic_load(&d.version);
    CHECK(v1 != v0);
    CHECK_EQ(gw_directory_update(&d, 0, ab, 2), 2);
    CHECK_EQ(atomic_load(&d.version), v1); /* nothing changed */
    for (int i = 0; i < GW_DISCOVERY_MISSES; i++) CHECK_EQ(gw_directory_update(&d, 0, b_only, 1), 2);
    CHECK_EQ(gw_directory_update(&d, 0, b_only, 1), 1);
    CHECK_EQ(gw_directory_count(&d, 1), 0);
    /* Out-of-range services and bad ids are ignored. */
    const char *bad[] = {"x.y", "*", "", NULL};
    CHECK_EQ(gw_directory_update(&d, 1, bad, 4), 0);
    CHECK_EQ(gw_directory_update(&d, 5, ab, 2), 0);
    gw_directory_forget(&d, 0, "b");
    CHECK_EQ(gw_directory_count(&d, 0), 0);
    gw_directory_destroy(&d);
}

TEST(silent_instance_is_picked_no_more_until_it_answers) {
    gw_directory d;
    gw_directory_init(&d, 1);
    const char *abc[] = {"a", "b", "c"}, *ac[] = {"a", "c"};
    gw_directory_update(&d, 0, abc, 3);
    static gw_pools p;
    memset(&p, 0, sizeof p);
    gw_pools_sync(&p, &d);
    /* b misses one round: every one of the next 30 requests goes elsewhere. */
    CHECK_EQ(gw_directory_update(&d, 0, ac, 2), 3);
    CHECK_EQ(gw_directory_count(&d, 0), 2);
    CHECK_EQ(gw_pools_sync(&p, &d), 1);
    for (int i = 0; i < 30; i++) CHECK(strcmp(gw_pool_pick(&p, 0, 0, NULL), "b") != 0);
    /* Still silent: nothing changes for the workers. */
    unsigned v = atomic_load(&d.version);
    CHECK_EQ(gw_directory_update(&d, 0, ac, 2), 3);
    CHECK_EQ(atomic_load(&d.version), v);
    /* It answers again: back in rotation. */
    CHECK_EQ(gw_directory_update(&d, 0, abc, 3), 3);
    CHECK_EQ(gw_directory_count(&d, 0), 3);
    CHECK_EQ(gw_pools_sync(&p, &d), 1);
    int b = 0;
    for (int i = 0; i < 30; i++) b += strcmp(gw_pool_pick(&p, 0, 0, NULL), "b") == 0;
    CHECK_EQ(b, 10);
    /* All silent: nothing to pick (the caller uses the queue subject). */
    gw_directory_update(&d, 0, NULL, 0);
    gw_pools_sync(&p, &d);
    CHECK(gw_pool_pick(&p, 0, 0, NULL) == NULL);
    gw_directory_destroy(&d);
}

TEST(round_robin_over_live_instances) {
    gw_directory d;
    gw_directory_init(&d, 1);
    const char *abc[] = {"a", "b", "c"};
    gw_directory_update(&d, 0, abc, 3);
    static gw_pools p;
    memset(&p, 0, sizeof p);
    gw_pools_sync(&p, &d);
    int seen[3] = {0};
    for (int i = 0; i < 30; i++) {
        const char *id = gw_pool_pick(&p, 0, 0, NULL);
        REQUIRE(id);
        seen[id[0] - 'a']++;
    }
    CHECK_EQ(seen[0], 10);
    CHECK_EQ(seen[1], 10);
    CHECK_EQ(seen[2], 10);
    gw_directory_destroy(&d);
}

TEST(skips_failed_and_excluded_instances) {
    gw_directory d;
    gw_directory_init(&d, 1);
    const char *ab[] = {"a", "b"};
    gw_directory_update(&d, 0, ab, 2);
    static gw_pools p;
    memset(&p, 0, sizeof p);
    gw_pools_sync(&p, &d);
    gw_pool_skip(&p, 0, "a", 1000);
    for (int i = 0; i < 5; i++) CHECK_STR(gw_pool_pick(&p, 0, 1000, NULL), "b");
    CHECK(gw_pool_pick(&p, 0, 1000, "b") == NULL);
    /* The mark expires. */
    CHECK_STR(gw_pool_pick(&p, 0, 1000 + GW_INSTANCE_SKIP_MS, "b"), "a");
    /* A sync keeps marks of instances still there. */
    gw_pool_skip(&p, 0, "b", 5000);
    const char *abc[] = {"a", "b", "c"};
    gw_directory_update(&d, 0, abc, 3);
    gw_pools_sync(&p, &d);
    for (int i = 0; i < 6; i++) CHECK(strcmp(gw_pool_pick(&p, 0, 5000, NULL), "b") != 0);
    gw_pool_remove(&p, 0, "a");
    for (int i = 0; i < 4; i++) CHECK_STR(gw_pool_pick(&p, 0, 5000, NULL), "c");
    CHECK(gw_pool_pick(&p, 1, 0, NULL) == NULL);
    gw_directory_destroy(&d);
}

TEST(empty_pool_picks_nothing) {
    gw_directory d;
    gw_directory_init(&d, 1);
    static gw_pools p;
    memset(&p, 0, sizeof p);
    gw_pools_sync(&p, &d);
    CHECK(gw_pool_pick(&p, 0, 0, NULL) == NULL);
    gw_directory_destroy(&d);
}

TEST(ping_answers_are_read_strictly) {
    char id[GW_INSTANCE_ID_MAX + 1], name[GW_MAX_SERVICE_NAME + 1];
    const char *ok = "{\"type\":\"io.nats.micro.v1.ping_response\",\"name\":\"products\",\"id\":\"abcDEF123_-x\","
                     "\"version\":\"0.1.0\",\"metadata\":{}}";
    CHECK_EQ(gw_ping_parse(ok, strlen(ok), name, sizeof name, id, sizeof id), 1);
    CHECK_STR(id, "abcDEF123_-x");
    CHECK_STR(name, "products");
    CHECK_EQ(gw_ping_parse(ok, strlen(ok) - 1, name, sizeof name, id, sizeof id), 0); /* truncated */
    char small[4];
    CHECK_EQ(gw_ping_parse(ok, strlen(ok), name, sizeof name, small, sizeof small), 0);
    CHECK_EQ(gw_ping_parse(ok, strlen(ok), small, sizeof small, id, sizeof id), 0);
    static const char *const bad[] = {
        "", "null", "[]", "{\"name\":\"products\"}", "{\"name\":\"products\",\"id\":7}",
        "{\"id\":\"abc\"}", "{\"name\":1,\"id\":\"abc\"}",
        "{\"name\":\"products\",\"id\":\"\"}", "{\"name\":\"products\",\"id\":\"a.b\"}",
        "{\"name\":\"products\",\"id\":\"*\"}", "{\"name\":\"products\",\"id\":\">\"}",
        "{\"name\":\"products\",\"id\":\"a b\"}", "{\"name\":\"products\",\"id\":\"a\\u0000b\"}",
        "{\"name\":\"products\",\"id\":\"a\",\"id\":\"b\"}", NULL,
    };
    for (const char *const *b = bad; *b; b++)
        if (gw_ping_parse(*b, strlen(*b), name, sizeof name, id, sizeof id) != 0)
            test_fail(__FILE__, __LINE__, "accepted %s", *b);
    CHECK_EQ(gw_ping_parse(NULL, 0, name, sizeof name, id, sizeof id), 0);
}

TEST(sync_reports_a_change_and_membership_follows_it) {
    gw_directory d;
    gw_directory_init(&d, 1);
    const char *ab[] = {"a", "b"};
    gw_directory_update(&d, 0, ab, 2);
    static gw_pools p;
    memset(&p, 0, sizeof p);
    CHECK_EQ(gw_pools_sync(&p, &d), 1);
    CHECK_EQ(gw_pools_sync(&p, &d), 0); /* nothing moved since */
    CHECK_EQ(gw_pool_has(&p, 0, "a"), 1);
    CHECK_EQ(gw_pool_has(&p, 0, "c"), 0);
    CHECK_EQ(gw_pool_has(&p, 3, "a"), 0); /* no such service */
    CHECK_EQ(gw_pool_has(&p, 0, NULL), 0);
    gw_directory_forget(&d, 0, "a");
    CHECK_EQ(gw_pools_sync(&p, &d), 1);
    CHECK_EQ(gw_pool_has(&p, 0, "a"), 0);
    CHECK_EQ(gw_pool_has(&p, 0, "b"), 1);
    gw_pool_remove(&p, 0, "b");
    CHECK_EQ(gw_pool_has(&p, 0, "b"), 0);
    gw_directory_destroy(&d);
}

TEST(leave_notices_are_read_strictly) {
    char id[GW_INSTANCE_ID_MAX + 1], name[GW_MAX_SERVICE_NAME + 1];
    CHECK_EQ(gw_leave_parse("$SRV.LEAVE.products.abcDEF123_-x", name, sizeof name, id, sizeof id), 1);
    CHECK_STR(name, "products");
    CHECK_STR(id, "abcDEF123_-x");
    static const char *const bad[] = {
        "", "$SRV.LEAVE", "$SRV.LEAVE.", "$SRV.LEAVE.products", "$SRV.LEAVE.products.", "$SRV.LEAVE..id",
        "$SRV.LEAVEX.products.id", "$SRV.PING.products.id", "$SRV.LEAVE.products.a.b", "$SRV.LEAVE.pro*.id",
        "$SRV.LEAVE.products.>", "x$SRV.LEAVE.products.id", NULL,
    };
    for (const char *const *b = bad; *b; b++)
        if (gw_leave_parse(*b, name, sizeof name, id, sizeof id) != 0) test_fail(__FILE__, __LINE__, "accepted %s", *b);
    char small[4];
    CHECK_EQ(gw_leave_parse("$SRV.LEAVE.products.abc", small, sizeof small, id, sizeof id), 0);
    CHECK_EQ(gw_leave_parse("$SRV.LEAVE.products.abcd", name, sizeof name, small, sizeof small), 0);
    CHECK_EQ(gw_leave_parse(NULL, name, sizeof name, id, sizeof id), 0);
}

TEST(a_leaving_instance_is_picked_no_more_but_stays_until_it_stops_answering) {
    gw_directory d;
    gw_directory_init(&d, 1);
    const char *ab[] = {"a", "b"};
    gw_directory_update(&d, 0, ab, 2);
    static gw_pools p;
    memset(&p, 0, sizeof p);
    gw_pools_sync(&p, &d);
    CHECK_EQ(gw_pool_live(&p, 0), 2);
    unsigned v = atomic_load(&d.version);
    gw_directory_leave(&d, 0, "a");
    CHECK(atomic_load(&d.version) != v);
    CHECK_EQ(gw_directory_count(&d, 0), 1);
    CHECK_EQ(gw_pools_sync(&p, &d), 1);
    for (int i = 0; i < 4; i++) CHECK_STR(gw_pool_pick(&p, 0, 0, NULL), "b");
    /* Still listed, so calls in flight on it are not moved: it answers them. */
    CHECK_EQ(gw_pool_has(&p, 0, "a"), 1);
    CHECK_EQ(gw_pool_live(&p, 0), 1);
    /* A second notice changes nothing; its PING answers do not bring it back. */
    v = atomic_load(&d.version);
    gw_directory_leave(&d, 0, "a");
    CHECK_EQ(atomic_load(&d.version), v);
    gw_directory_update(&d, 0, ab, 2);
    CHECK_EQ(gw_directory_count(&d, 0), 1);
    CHECK(gw_pool_pick(&p, 0, 0, "b") == NULL);
    /* Once it stops answering, it goes. */
    const char *b_only[] = {"b"};
    for (int i = 0; i <= GW_DISCOVERY_MISSES; i++) gw_directory_update(&d, 0, b_only, 1);
    gw_pools_sync(&p, &d);
    CHECK_EQ(gw_pool_has(&p, 0, "a"), 0);
    /* A notice for an instance not known yet: listed as leaving, so that a
     * round that saw it before it left cannot put it into rotation. */
    gw_directory_leave(&d, 0, "c");
    const char *bc[] = {"b", "c"};
    gw_directory_update(&d, 0, bc, 2);
    CHECK_EQ(gw_directory_count(&d, 0), 1);
    gw_pools_sync(&p, &d);
    for (int i = 0; i < 4; i++) CHECK_STR(gw_pool_pick(&p, 0, 0, NULL), "b");
    /* Bad ids and services are ignored. */
    gw_directory_leave(&d, 0, "x.y");
    gw_directory_leave(&d, 3, "a");
    gw_directory_leave(&d, 0, NULL);
    CHECK_EQ(gw_directory_count(&d, 0), 1);
    gw_directory_destroy(&d);
}
