/* Arena block reuse (src/core/arena.c). */
#include "../test.h"
#include "svckit/core.h"

TEST(a_large_first_allocation_still_leaves_a_default_block_to_keep) {
    /* A pooled request arena: the request itself (over a quarter of a block)
     * comes first. Reset must keep a default-size block, so the next request
     * and its small allocations need no new block. */
    svc_arena *a = svc_arena_new(8192);
    REQUIRE(a);
    REQUIRE(svc_arena_alloc(a, 2700));
    REQUIRE(svc_arena_alloc(a, 100));
    CHECK_EQ(svc_arena_bytes(a), 8192);
    svc_arena_reset(a);
    CHECK_EQ(svc_arena_bytes(a), 8192);
    REQUIRE(svc_arena_alloc(a, 2700));
    REQUIRE(svc_arena_alloc(a, 3000));
    CHECK_EQ(svc_arena_bytes(a), 8192);
    svc_arena_free(a);
}

TEST(allocations_larger_than_a_block_get_their_own) {
    svc_arena *a = svc_arena_new(4096);
    REQUIRE(a);
    char *big = svc_arena_alloc(a, 10000);
    REQUIRE(big);
    memset(big, 1, 10000);
    CHECK_EQ(svc_arena_bytes(a), 10000);
    char *small = svc_arena_alloc(a, 32);
    REQUIRE(small);
    CHECK_EQ(svc_arena_bytes(a), 10000 + 4096);
    /* A big one that does not fit the current block's room goes behind it,
     * without wasting that room. */
    char *big2 = svc_arena_alloc(a, 4080);
    REQUIRE(big2);
    CHECK_EQ(svc_arena_bytes(a), 10000 + 4096 + 4080);
    char *small2 = svc_arena_alloc(a, 16);
    CHECK(small2 == small + 32);
    svc_arena_free(a);
}
