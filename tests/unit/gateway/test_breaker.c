/* The circuit breaker's state machine. */
#include "../../../services/gateway/breaker.c"
#include "../test.h"

TEST(opens_after_consecutive_failures) {
    gw_breaker b;
    gw_breaker_init(&b, 3, 1000);
    int trial;
    for (int i = 0; i < 2; i++) {
        CHECK(gw_breaker_allow(&b, 10, &trial));
        CHECK_EQ(trial, 0);
        gw_breaker_record(&b, GW_OUTCOME_FAILURE, trial, 10);
    }
    /* A success resets the count. */
    gw_breaker_record(&b, GW_OUTCOME_SUCCESS, 0, 10);
    gw_breaker_record(&b, GW_OUTCOME_FAILURE, 0, 10);
    gw_breaker_record(&b, GW_OUTCOME_FAILURE, 0, 10);
    CHECK_EQ(gw_breaker_state(&b), GW_BREAKER_CLOSED);
    /* Neutral outcomes (our own NATS down) neither count nor reset. */
    gw_breaker_record(&b, GW_OUTCOME_NEUTRAL, 0, 10);
    CHECK_EQ(gw_breaker_state(&b), GW_BREAKER_CLOSED);
    gw_breaker_record(&b, GW_OUTCOME_FAILURE, 0, 20);
    CHECK_EQ(gw_breaker_state(&b), GW_BREAKER_OPEN);
    CHECK(!gw_breaker_allow(&b, 20, &trial));
    CHECK(!gw_breaker_allow(&b, 1019, &trial));
}

TEST(half_open_lets_one_trial_through_and_closes_on_success) {
    gw_breaker b;
    gw_breaker_init(&b, 1, 500);
    gw_breaker_record(&b, GW_OUTCOME_FAILURE, 0, 100);
    CHECK_EQ(gw_breaker_state(&b), GW_BREAKER_OPEN);
    int trial = 0, t2 = 0;
    CHECK(gw_breaker_allow(&b, 600, &trial));
    CHECK_EQ(trial, 1);
    CHECK_EQ(gw_breaker_state(&b), GW_BREAKER_HALF_OPEN);
    CHECK(!gw_breaker_allow(&b, 601, &t2)); /* only one trial */
    /* A late result of a request from before the opening changes nothing. */
    gw_breaker_record(&b, GW_OUTCOME_SUCCESS, 0, 602);
    CHECK_EQ(gw_breaker_state(&b), GW_BREAKER_HALF_OPEN);
    gw_breaker_record(&b, GW_OUTCOME_SUCCESS, 1, 650);
    CHECK_EQ(gw_breaker_state(&b), GW_BREAKER_CLOSED);
    CHECK(gw_breaker_allow(&b, 651, &t2));
    CHECK_EQ(t2, 0);
}

TEST(failed_trial_reopens_for_a_full_period) {
    gw_breaker b;
    gw_breaker_init(&b, 2, 500);
    gw_breaker_record(&b, GW_OUTCOME_FAILURE, 0, 0);
    gw_breaker_record(&b, GW_OUTCOME_FAILURE, 0, 0);
    int trial;
    CHECK(gw_breaker_allow(&b, 500, &trial) && trial);
    gw_breaker_record(&b, GW_OUTCOME_FAILURE, 1, 700);
    CHECK_EQ(gw_breaker_state(&b), GW_BREAKER_OPEN);
    CHECK(!gw_breaker_allow(&b, 1199, &trial));
    CHECK(gw_breaker_allow(&b, 1200, &trial) && trial);
}

TEST(neutral_trial_hands_over_to_the_next_request) {
    gw_breaker b;
    gw_breaker_init(&b, 1, 10);
    gw_breaker_record(&b, GW_OUTCOME_FAILURE, 0, 0);
    int trial;
    CHECK(gw_breaker_allow(&b, 10, &trial) && trial);
    gw_breaker_record(&b, GW_OUTCOME_NEUTRAL, 1, 11);
    CHECK_EQ(gw_breaker_state(&b), GW_BREAKER_HALF_OPEN);
    CHECK(gw_breaker_allow(&b, 12, &trial) && trial);
    gw_breaker_record(&b, GW_OUTCOME_SUCCESS, 1, 13);
    CHECK_EQ(gw_breaker_state(&b), GW_BREAKER_CLOSED);
}
