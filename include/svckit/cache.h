/*
 * svckit/cache.h: a per-worker cache of rendered JSON GET responses, with
 * ETags.
 *
 * For reads whose answer depends only on the path, the query and a version
 * number the caller supplies (a database's svc_db_version, a catalog's
 * generation counter), not on who asks:
 *
 *     static svc_outcome list(svc_req *req, svc_res *res) {
 *         int64_t v = svc_db_version(db);
 *         if (svc_cache_serve(req, res, v)) return SVC_DONE;  // hit: 200 or 304
 *         render_the_list(svc_res_jw(res, 200));
 *         svc_cache_store(req, res, v);                      // adds the ETag
 *         return SVC_DONE;
 *     }
 *
 * Each worker thread has its own SVC_CACHE_SLOTS entries (direct-mapped by a
 * hash of path and query; a collision replaces), so lookups take no lock and
 * memory is bounded: at most SVC_CACHE_SLOTS * SVC_CACHE_MAX_BODY per worker
 * for the bodies, plus their gzip forms (smaller than the bodies), plus the
 * bodies of replaced entries that responses still being sent hold. A hit's
 * response takes the entry's body itself (immutable, reference-counted)
 * instead of a copy; the transport then writes it out once (HTTP: into the
 * connection's output buffer). The cache is freed when its worker exits. Requests running offloaded are never
 * cached. Responses carry `ETag` (a hash of the body, or the caller's) and
 * `Cache-Control: private, no-cache`, and their preconditions are evaluated
 * (svc_req_preconditions): `If-None-Match` with either form of the ETag gets
 * 304.
 *
 * Compression (app.h): a body of SVC_GZIP_MIN_BYTES or more is compressed
 * once, when it is stored, and kept in both forms; each hit then sends the
 * form the client takes, with `Vary: Accept-Encoding` and, for the gzip form,
 * `Content-Encoding: gzip` and the ETag's gzip form ("abc-gzip").
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
#define SVC_CACHE_MAX_ETAG 64        /* bytes of a caller's ETag, quotes included */

/* If this worker holds the response for the request's path and query at
 * version, writes it to res (200 with ETag, or 304) and returns 1; else 0. */
int svc_cache_serve(svc_req *req, svc_res *res, int64_t version);

/* After a handler rendered a 200 JSON body into res: keeps a copy under the
 * request's path and query at version, adds the ETag and turns the response
 * into a 304 when the client already has it. Other statuses are left alone. */
void svc_cache_store(svc_req *req, svc_res *res, int64_t version);

/*
 * As svc_cache_store, with the caller's validators: etag, the representation's
 * strong entity tag with its quotes ("\"7-v3\"", at most SVC_CACHE_MAX_ETAG
 * bytes; NULL or anything else: a hash of the body), and last_modified
 * (seconds since the epoch, sent as Last-Modified; -1: none). For a resource
 * whose writes check the same validators with svc_req_preconditions, so that
 * a client can GET, edit and write back with If-Match.
 */
void svc_cache_store_tagged(svc_req *req, svc_res *res, int64_t version, const char *etag,
                            int64_t last_modified);

#ifdef __cplusplus
}
#endif
#endif
