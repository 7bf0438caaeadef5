/*
 * GET /products/search: the one read whose cost a client chooses. Every
 * distinct query misses the response cache and scans the catalog (LIKE on
 * four columns: 25 times the loop time of a cached read), and crowds other
 * answers out of the cache, so one user sending varied searches on many
 * connections raised everyone's latency. Uncached searches are therefore
 * limited per user (the token's subject: searches need a token, and a user
 * behind a shared address, an office or a gateway, keeps a budget of its
 * own); a search answered from the cache costs nothing and is not counted.
 */
#include <stdio.h>
#include <string.h>

#include "products.h"

#define SEARCH_RATE_MAX 1000000

void search_declare(svc_app *app) {
    svc_app_env_declare(app, "SEARCH_RATE_PER_MIN", "60",
                        "searches that miss the cache, per user per minute (that many at once, refilled over a minute)");
}

int search_start(svc_app *app, svc_ratelimit **limit) {
    const char *v = svc_app_env(app, "SEARCH_RATE_PER_MIN");
    int64_t rate;
    if (svc_parse_i64(v, &rate) != SVC_OK || rate < 1 || rate > SEARCH_RATE_MAX) {
        svc_error("invalid configuration: SEARCH_RATE_PER_MIN=\"%s\": expected 1 to %d", v, SEARCH_RATE_MAX);
        return SVC_EINVAL;
    }
    *limit = svc_ratelimit_new((double)rate, (double)rate / 60.0);
    return *limit ? SVC_OK : SVC_ENOMEM;
}

int search_query(svc_req *req, svc_res *res, svc_ratelimit *limit, list_query *q) {
    const char *s = svc_req_query(req, "q");
    if (!s) s = "";
    if (strlen(s) > PRODUCTS_MAX_QUERY) {
        svc_res_error(res, 400, "bad_request", "q must be at most %d bytes", PRODUCTS_MAX_QUERY);
        return SVC_EINVAL;
    }
    int after;
    if (svc_ratelimit_take(limit, svc_req_claims(req)->sub, &after) != SVC_OK) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", after);
        svc_res_header(res, "Retry-After", ra);
        svc_res_error(res, 429, "too_many_requests", "too many searches; retry in %d s", after);
        return SVC_EAGAIN;
    }
    q->search = s;
    return SVC_OK;
}
