/* The retry budget: retries <= ratio x requests over a sliding window. */
#include "../../../services/gateway/budget.c"
#include "../test.h"

TEST(never_more_than_the_ratio) {
    gw_budget b;
    gw_budget_init(&b, 0.2, 10);
    int granted = 0;
    /* Every request wants a retry, as when a service fails everything. */
    for (int i = 0; i < 1000; i++) {
        uint64_t now = 5000 + (uint64_t)i * 7;
        gw_budget_request(&b, now);
        granted += gw_budget_take(&b, now);
        CHECK(granted * 5 <= i + 1);
    }
    CHECK(granted >= 190); /* and it does allow close to the ratio */
}

TEST(first_request_alone_gets_no_retry) {
    gw_budget b;
    gw_budget_init(&b, 0.2, 10);
    gw_budget_request(&b, 0);
    CHECK_EQ(gw_budget_take(&b, 0), 0);
    for (int i = 0; i < 4; i++) gw_budget_request(&b, 0);
    CHECK_EQ(gw_budget_take(&b, 0), 1);
    CHECK_EQ(gw_budget_take(&b, 0), 0);
}

TEST(window_slides) {
    gw_budget b;
    gw_budget_init(&b, 0.5, 2);
    for (int i = 0; i < 10; i++) gw_budget_request(&b, 1000);
    for (int i = 0; i < 5; i++) CHECK_EQ(gw_budget_take(&b, 1000), 1);
    CHECK_EQ(gw_budget_take(&b, 1500), 0);
    /* Two seconds on, the old requests and retries are out of the window. */
    gw_budget_request(&b, 3000);
    gw_budget_request(&b, 3000);
    CHECK_EQ(gw_budget_take(&b, 3000), 1);
    CHECK_EQ(gw_budget_take(&b, 3000), 0);
}

TEST(zero_ratio_means_no_retries) {
    gw_budget b;
    gw_budget_init(&b, 0, 10);
    for (int i = 0; i < 100; i++) gw_budget_request(&b, 0);
    CHECK_EQ(gw_budget_take(&b, 0), 0);
}
