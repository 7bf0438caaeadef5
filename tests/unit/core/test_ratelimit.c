/* The rate limiter (src/core/ratelimit.c): token buckets, one per key. */
#include <limits.h>
#include <stdio.h>

#include "../test.h"
#include "core/internal.h"
#include "svckit/limit.h"

#define S 1000000000ll /* a second in nanoseconds */

static int take(svc_ratelimit *rl, const char *key, int64_t now) {
    int after = -1;
    int rc = svc__ratelimit_take_at(rl, key, now, &after);
    if (rc == SVC_EAGAIN) CHECK(after >= 1);
    return rc;
}

TEST(a_bucket_allows_its_burst_then_refills_at_its_rate) {
    svc_ratelimit *rl = svc__ratelimit_new_sized(3, 1, 16);
    REQUIRE(rl);
    for (int i = 0; i < 3; i++) CHECK_EQ(take(rl, "a", 100 * S), SVC_OK);
    int after = 0;
    CHECK_EQ(svc__ratelimit_take_at(rl, "a", 100 * S, &after), SVC_EAGAIN);
    CHECK_EQ(after, 1);
    CHECK_EQ(take(rl, "a", 100 * S + S / 2), SVC_EAGAIN);
    CHECK_EQ(take(rl, "a", 101 * S), SVC_OK);
    CHECK_EQ(take(rl, "a", 101 * S), SVC_EAGAIN);
    /* Left alone for long, it holds no more than its burst. */
    for (int i = 0; i < 3; i++) CHECK_EQ(take(rl, "a", 500 * S), SVC_OK);
    CHECK_EQ(take(rl, "a", 500 * S), SVC_EAGAIN);
    svc_ratelimit_free(rl);
}

TEST(retry_after_says_when_the_next_token_comes) {
    /* 2 per minute: a token every 30 s. */
    svc_ratelimit *rl = svc__ratelimit_new_sized(2, 2.0 / 60, 16);
    REQUIRE(rl);
    CHECK_EQ(take(rl, "a", 0), SVC_OK);
    CHECK_EQ(take(rl, "a", 0), SVC_OK);
    int after = 0;
    CHECK_EQ(svc__ratelimit_take_at(rl, "a", 0, &after), SVC_EAGAIN);
    CHECK_EQ(after, 30);
    CHECK_EQ(svc__ratelimit_take_at(rl, "a", 29 * S + 1, &after), SVC_EAGAIN);
    CHECK_EQ(after, 1);
    CHECK_EQ(take(rl, "a", 30 * S), SVC_OK);
    svc_ratelimit_free(rl);
}

TEST(colliding_keys_have_buckets_of_their_own) {
    svc_ratelimit *rl = svc__ratelimit_new_sized(1, 1.0 / 3600, 64);
    REQUIRE(rl);
    /* Find, under this limiter's own hash, addresses on the same chain as
     * the first: the keys that shared a slot in the old hashed table. */
    const char *first = "10.0.0.1";
    uint32_t chain = svc__ratelimit_chain(rl, first);
    char same[8][32];
    int found = 0;
    for (int i = 2; i < 1000000 && found < 8; i++) {
        snprintf(same[found], sizeof same[found], "10.%d.%d.%d", i >> 16 & 255, i >> 8 & 255, i & 255);
        if (svc__ratelimit_chain(rl, same[found]) == chain) found++;
    }
    REQUIRE(found == 8);
    CHECK_EQ(take(rl, first, S), SVC_OK);
    CHECK_EQ(take(rl, first, S), SVC_EAGAIN);
    for (int i = 0; i < found; i++) {
        CHECK_EQ(take(rl, same[i], S), SVC_OK); /* its first request */
        CHECK_EQ(take(rl, same[i], S), SVC_EAGAIN);
    }
    CHECK_EQ(take(rl, first, S), SVC_EAGAIN);
    uint32_t keys;
    uint64_t evicted;
    svc__ratelimit_stats(rl, &keys, &evicted);
    CHECK_EQ(keys, 9);
    CHECK_EQ(evicted, 0);
    svc_ratelimit_free(rl);
}

TEST(a_full_table_gives_up_the_fullest_bucket) {
    /* Burst 2, a token a second, room for three keys. */
    svc_ratelimit *rl = svc__ratelimit_new_sized(2, 1, 3);
    REQUIRE(rl);
    int64_t t = 1000 * S;
    CHECK_EQ(take(rl, "a", t), SVC_OK);
    CHECK_EQ(take(rl, "a", t), SVC_OK); /* empty */
    CHECK_EQ(take(rl, "b", t), SVC_OK); /* one token left: the fullest */
    CHECK_EQ(take(rl, "c", t), SVC_OK);
    CHECK_EQ(take(rl, "c", t), SVC_OK); /* empty */
    /* A new key, the table full of active keys: it gets a full bucket of its
     * own (never "a"'s or "c"'s empty one), in the place of "b". */
    CHECK_EQ(take(rl, "d", t), SVC_OK);
    CHECK_EQ(take(rl, "d", t), SVC_OK);
    CHECK_EQ(take(rl, "d", t), SVC_EAGAIN);
    /* The drained keys are still held to their limit. */
    CHECK_EQ(take(rl, "a", t), SVC_EAGAIN);
    CHECK_EQ(take(rl, "c", t), SVC_EAGAIN);
    uint32_t keys;
    uint64_t evicted;
    svc__ratelimit_stats(rl, &keys, &evicted);
    CHECK_EQ(keys, 3);
    CHECK_EQ(evicted, 1); /* "b", one token short of full */
    /* Half a second later, every bucket holds half a token: "b" comes back
     * with a full bucket again, in the place of one of them. */
    t += S / 2;
    CHECK_EQ(take(rl, "b", t), SVC_OK);
    svc__ratelimit_stats(rl, &keys, &evicted);
    CHECK_EQ(evicted, 2);
    svc_ratelimit_free(rl);
}

TEST(full_buckets_leave_before_drained_ones) {
    svc_ratelimit *rl = svc__ratelimit_new_sized(1, 1, 2);
    REQUIRE(rl);
    CHECK_EQ(take(rl, "idle", 0), SVC_OK);      /* full again a second later */
    CHECK_EQ(take(rl, "busy", 10 * S), SVC_OK); /* empty at 10 s */
    CHECK_EQ(take(rl, "new", 10 * S), SVC_OK);  /* takes idle's place */
    CHECK_EQ(take(rl, "busy", 10 * S), SVC_EAGAIN);
    uint32_t keys;
    uint64_t evicted;
    svc__ratelimit_stats(rl, &keys, &evicted);
    CHECK_EQ(evicted, 0);
    svc_ratelimit_free(rl);
}

TEST(many_drained_addresses_never_refuse_a_fresh_one) {
    /* The finding: with every slot drained by an attacker's addresses, a
     * fresh address got 429 on its very first request. Now with the real
     * table size, through the public API. */
    svc_ratelimit *rl = svc_ratelimit_new(1, 1.0 / 3600);
    REQUIRE(rl);
    char key[32];
    int after;
    for (int i = 0; i < SVC_RATELIMIT_KEYS + 500; i++) {
        snprintf(key, sizeof key, "10.1.%d.%d", i >> 8, i & 255);
        CHECK_EQ(svc_ratelimit_take(rl, key, &after), SVC_OK);
    }
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "192.168.%d.%d", i >> 8, i & 255);
        CHECK_EQ(svc_ratelimit_take(rl, key, &after), SVC_OK);
        CHECK_EQ(svc_ratelimit_take(rl, key, &after), SVC_EAGAIN);
    }
    /* The most recent of the attacker's addresses are still limited. */
    for (int i = SVC_RATELIMIT_KEYS + 400; i < SVC_RATELIMIT_KEYS + 500; i++) {
        snprintf(key, sizeof key, "10.1.%d.%d", i >> 8, i & 255);
        CHECK_EQ(svc_ratelimit_take(rl, key, &after), SVC_EAGAIN);
    }
    svc_ratelimit_free(rl);
}

TEST(keys_are_whole_up_to_the_maximum) {
    svc_ratelimit *rl = svc__ratelimit_new_sized(1, 1, 16);
    REQUIRE(rl);
    char a[100], b[100];
    memset(a, 'x', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy(b, a, sizeof b);
    b[SVC_RATELIMIT_KEY_MAX - 1] = 'y'; /* differs inside the kept bytes */
    CHECK_EQ(take(rl, a, 0), SVC_OK);
    CHECK_EQ(take(rl, b, 0), SVC_OK);
    b[SVC_RATELIMIT_KEY_MAX - 1] = 'x';
    b[SVC_RATELIMIT_KEY_MAX] = 'y'; /* differs only past them: the same key */
    CHECK_EQ(take(rl, b, 0), SVC_EAGAIN);
    CHECK_EQ(take(rl, "", 0), SVC_OK);
    CHECK_EQ(take(rl, "", 0), SVC_EAGAIN);
    svc_ratelimit_free(rl);
}

TEST(extreme_rates_stay_in_range) {
    /* A token every 30 years: Retry-After is a huge but valid int. */
    svc_ratelimit *rl = svc__ratelimit_new_sized(1, 1e-9, 4);
    REQUIRE(rl);
    int after = 0;
    CHECK_EQ(svc__ratelimit_take_at(rl, "a", 0, &after), SVC_OK);
    CHECK_EQ(svc__ratelimit_take_at(rl, "a", 0, &after), SVC_EAGAIN);
    CHECK(after > 900000000);
    svc_ratelimit_free(rl);
    /* Slower than the clamp, and a huge burst: no overflow either. */
    rl = svc__ratelimit_new_sized(1e12, 1e-12, 4);
    REQUIRE(rl);
    CHECK_EQ(svc__ratelimit_take_at(rl, "a", INT64_MAX / 2, &after), SVC_OK);
    svc_ratelimit_free(rl);
    /* Faster than a token per nanosecond: every request passes. */
    rl = svc__ratelimit_new_sized(1, 1e12, 4);
    REQUIRE(rl);
    for (int i = 0; i < 5; i++) CHECK_EQ(svc__ratelimit_take_at(rl, "a", 1000 + i, &after), SVC_OK);
    svc_ratelimit_free(rl);
}

TEST(bad_arguments_make_no_limiter) {
    CHECK(svc_ratelimit_new(0, 1) == NULL);
    CHECK(svc_ratelimit_new(0.5, 1) == NULL);
    CHECK(svc_ratelimit_new(1, 0) == NULL);
    CHECK(svc_ratelimit_new(1, -1) == NULL);
    CHECK(svc_ratelimit_new(0.0 / 0.0, 1) == NULL);
    CHECK(svc__ratelimit_new_sized(1, 1, 0) == NULL);
    svc_ratelimit_free(NULL);
}

/* Found by the review: keys were whole addresses, so an IPv6 client, which
 * holds a /64, got a fresh bucket per address: unlimited login attempts. */
static const char *peer_key(const char *peer) {
    static char out[SVC_RATELIMIT_PEER_KEY_MAX];
    return svc_ratelimit_peer_key(peer, out);
}

TEST(ipv6_clients_are_limited_by_their_64) {
    CHECK_STR(peer_key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
    CHECK_STR(peer_key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
    CHECK_STR(peer_key("2001:db8:1:3::1"), "2001:db8:1:3::/64");
    CHECK_STR(peer_key("::1"), "::/64");
    CHECK_STR(peer_key("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), "ffff:ffff:ffff:ffff::/64");
    CHECK_STR(peer_key("::ffff:192.0.2.7"), "192.0.2.7");
    CHECK_STR(peer_key("192.0.2.7"), "192.0.2.7");
    CHECK_STR(peer_key(""), "");
    CHECK_STR(peer_key("not an address"), "not an address");
    CHECK(svc_ratelimit_peer_key(NULL, (char[SVC_RATELIMIT_PEER_KEY_MAX]){0}) == NULL);
    /* One bucket for the whole /64: the second address finds it empty. */
    svc_ratelimit *rl = svc__ratelimit_new_sized(1, 1.0 / 60, 16);
    REQUIRE(rl);
    char a[SVC_RATELIMIT_PEER_KEY_MAX], b[SVC_RATELIMIT_PEER_KEY_MAX];
    CHECK_EQ(take(rl, svc_ratelimit_peer_key("2001:db8::1", a), 0), SVC_OK);
    CHECK_EQ(take(rl, svc_ratelimit_peer_key("2001:db8::2", b), 0), SVC_EAGAIN);
    CHECK_EQ(take(rl, svc_ratelimit_peer_key("2001:db8:0:1::2", b), 0), SVC_OK);
    svc_ratelimit_free(rl);
}
