/*
 * The retry budget: retries stay at or below ratio x requests over a sliding
 * window, so that when a service is failing, retries add at most that much
 * load instead of doubling it (the retry storm a per-request "retry once"
 * rule causes). Per-second buckets indexed by second modulo the window; a
 * bucket from an older second is stale and counts as empty.
 */
#include <string.h>

#include "gateway.h"

void gw_budget_init(gw_budget *b, double ratio, int window_s) {
    memset(b, 0, sizeof *b);
    b->ratio = ratio < 0 ? 0 : ratio;
    b->window_s = window_s < 1 ? 1 : window_s > GW_BUDGET_MAX_WINDOW_S ? GW_BUDGET_MAX_WINDOW_S : window_s;
    /* Second 0 is a real second: mark every bucket as never used. */
    for (int i = 0; i < GW_BUDGET_MAX_WINDOW_S; i++) b->second[i] = UINT64_MAX;
}

static int slot(gw_budget *b, uint64_t sec) {
    int i = (int)(sec % (uint64_t)b->window_s);
    if (b->second[i] != sec) {
        b->second[i] = sec;
        b->requests[i] = 0;
        b->retries[i] = 0;
    }
    return i;
}

void gw_budget_request(gw_budget *b, uint64_t now_ms) {
    int i = slot(b, now_ms / 1000);
    if (b->requests[i] < UINT32_MAX) b->requests[i]++;
}

int gw_budget_take(gw_budget *b, uint64_t now_ms) {
    uint64_t sec = now_ms / 1000;
    int cur = slot(b, sec);
    uint64_t req = 0, ret = 0;
    for (int i = 0; i < b->window_s; i++) {
        if (b->second[i] == UINT64_MAX || b->second[i] + (uint64_t)b->window_s <= sec) continue;
        req += b->requests[i];
        ret += b->retries[i];
    }
    if ((double)(ret + 1) > b->ratio * (double)req) return 0;
    b->retries[cur]++;
    return 1;
}
