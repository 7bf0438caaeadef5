/*
 * svckit/cache.h: a per-worker cache of rendered JSON GET responses, with
 * ETags.
 *
 * For reads whose answer depends only on the path, the query and a version
 * number the caller supplies (a database's svc_db_version, a catalog's
 * generation counter), not on who asks:
 *
 *     static int list(svc_req *req, svc_res *res) {
 *         int64_t v = svc_db_version(db);
 *         if (svc_cache_serve(req, res, v)) return SVC_OK;    // hit: 200 or 304
 *         render_the_list(svc_res_jw(res, 200));
 *         svc_cache_store(req, res, v);                      // adds the ETag
 *         return SVC_OK;
 *     }
 *
 * Each worker thread has its own SVC_CACHE_SLOTS entries (direct-mapped by a
 * hash of path and query; a collision replaces), so lookups take no lock and
 * memory is bounded: at most SVC_CACHE_SLOTS * SVC_CACHE_MAX_BODY per worker.
 * The cache is freed when its worker exits. Requests running offloaded are
 * never cached. Responses carry `ETag` (a hash of the body) and
 * `Cache-Control: private, no-cache`; `If-None-Match` gets 304.
 */
#ifndef SVCKIT_CACHE_H
#define SVCKIT_CACHE_H

#include <stdint.h>

#include "svckit/app.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_CACHE_SLOTS 64
#define SVC_CACHE_MAX_BODY (64 * 1024)

/* If this worker holds the response for the request's path and query at
 * version, writes it to res (200 with ETag, or 304) and returns 1; else 0. */
int svc_cache_serve(svc_req *req, svc_res *res, int64_t version);

/* After a handler rendered a 200 JSON body into res: keeps a copy under the
 * request's path and query at version, adds the ETag and turns the response
 * into a 304 when the client already has it. Other statuses are left alone. */
void svc_cache_store(svc_req *req, svc_res *res, int64_t version);

#ifdef __cplusplus
}
#endif
#endif
