/*
 * The circuit breaker. One word holds the state and the time it opened, so
 * every transition is one compare-and-swap and no request ever waits on a
 * lock. States in the word: CLOSED, OPEN, and two half-open ones, TRIAL (the
 * one trial request is out) and IDLE (the trial ended neutral: the next
 * request becomes the trial).
 */
#include "gateway.h"

enum { W_CLOSED = 0, W_OPEN = 1, W_TRIAL = 2, W_IDLE = 3 };

static uint64_t pack(uint64_t ms, unsigned st) { return ms << 3 | st; }
static unsigned st_of(uint64_t w) { return (unsigned)(w & 7); }
static uint64_t ms_of(uint64_t w) { return w >> 3; }

static int public_state(unsigned st) {
    return st == W_CLOSED ? GW_BREAKER_CLOSED : st == W_OPEN ? GW_BREAKER_OPEN : GW_BREAKER_HALF_OPEN;
}

void gw_breaker_init(gw_breaker *b, int threshold, int open_ms) {
    atomic_init(&b->word, pack(0, W_CLOSED));
    atomic_init(&b->failures, 0);
    b->threshold = threshold < 1 ? 1 : threshold;
    b->open_ms = open_ms < 1 ? 1 : open_ms;
}

int gw_breaker_allow(gw_breaker *b, uint64_t now_ms, int *trial) {
    *trial = 0;
    uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);
    switch (st_of(w)) {
    case W_CLOSED:
        return 1;
    case W_OPEN:
        if (now_ms < ms_of(w) + (uint64_t)b->open_ms) return 0;
        /* Time for a trial: whoever swaps first runs it. */
        __attribute__((fallthrough));
    case W_IDLE:
        if (!atomic_compare_exchange_strong(&b->word, &w, pack(ms_of(w), W_TRIAL))) return 0;
        *trial = 1;
        return 1;
    default:
        return 0; /* a trial is out */
    }
}

static void open_now(gw_breaker *b, uint64_t expected, uint64_t now_ms) {
    atomic_compare_exchange_strong(&b->word, &expected, pack(now_ms, W_OPEN));
}

void gw_breaker_record(gw_breaker *b, int outcome, int trial, uint64_t now_ms) {
    uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);
    if (trial) {
        /* Only the trial moves a half-open breaker; it holds W_TRIAL. */
        if (st_of(w) != W_TRIAL) return;
        if (outcome == GW_OUTCOME_SUCCESS) {
            atomic_store(&b->failures, 0);
            atomic_compare_exchange_strong(&b->word, &w, pack(0, W_CLOSED));
        } else if (outcome == GW_OUTCOME_FAILURE) {
            open_now(b, w, now_ms);
        } else {
            atomic_compare_exchange_strong(&b->word, &w, pack(ms_of(w), W_IDLE));
        }
        return;
    }
    /* Requests that started before the breaker opened end here too: they say
     * nothing new about an open or half-open service. */
    if (st_of(w) != W_CLOSED) return;
    if (outcome == GW_OUTCOME_SUCCESS) {
        if (atomic_load_explicit(&b->failures, memory_order_relaxed)) atomic_store(&b->failures, 0);
    } else if (outcome == GW_OUTCOME_FAILURE) {
        if (atomic_fetch_add(&b->failures, 1) + 1 >= b->threshold) {
            atomic_store(&b->failures, 0);
            open_now(b, w, now_ms);
        }
    }
}

int gw_breaker_state(const gw_breaker *b) {
    return public_state(st_of(atomic_load_explicit(&((gw_breaker *)b)->word, memory_order_acquire)));
}
