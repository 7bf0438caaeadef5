/*
 * svckit/test.h: the in-process test harness. A service's tests call its
 * routes without a socket, a port or NATS:
 *
 *     svc_app *app = make_app();                 // routes, hooks, on_start
 *     svc_test *t = svc_test_new(app);           // t owns app from here
 *     const char *hdrs[] = {"Accept", "application/json", NULL};
 *     svc_test_res *r = svc_test_request(t, "GET", "/hello?name=x", hdrs, NULL, 0);
 *     assert(svc_test_res_status(r) == 200);
 *     size_t len;
 *     const char *body = svc_test_res_body(r, &len);
 *     svc_test_res_free(r);
 *     svc_test_free(t);                          // on_stop, then frees app
 *
 * A request takes the path a real one takes after its bytes are parsed: the
 * runtime's dispatch (ids, target normalisation, routing, 404/405/OPTIONS,
 * head hooks, before-hooks such as svc_auth_install's, the handler on the
 * loop or, for SVC_OFFLOAD routes, on the thread pool, after-hooks, content
 * coding, metrics, the access log). svc_test_request runs the harness's loop
 * until the response is final, so SVC_ASYNC handlers (timers, the outbound
 * HTTP client, offloaded work) finish as they would in a worker.
 *
 * What differs from a running service: there is no connection (the peer is
 * "127.0.0.1"; streaming responses, svc_res_stream_*, return SVC_ECLOSED),
 * and messaging is off (svc_rpc_call & co return SVC_ECLOSED, no event is
 * delivered). The configuration comes from the environment as for
 * svc_app_run; the builtin routes (/healthz, /readyz, /metrics) answer.
 *
 * One harness per process at a time (metrics are process-wide), used from one
 * thread. Not for production: nothing here is hardened against hostile input
 * beyond what dispatch itself checks.
 */
#ifndef SVCKIT_TEST_HARNESS_H
#define SVCKIT_TEST_HARNESS_H

#include <stddef.h>

#include "svckit/app.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct svc_test svc_test;
typedef struct svc_test_res svc_test_res;

/* Longest a response may take while the loop still has work that could
 * finish it: svc_test_request then gives up (NULL, a line on stderr). */
#define SVC_TEST_TIMEOUT_MS 30000

/*
 * Starts app in-process: loads the configuration from the environment, sets
 * up logging, metrics, the builtin routes and token verification (as
 * svc_app_run does, without listening or connecting to NATS), then runs
 * on_start. Takes ownership of app whatever happens. NULL if the configuration
 * is bad or on_start fails (the reason on stderr or in the log).
 */
svc_test *svc_test_new(svc_app *app);

/* The app under test (for svc_app_data, svc_app_config). */
svc_app *svc_test_app(const svc_test *t);

/* Closes the loop (waiting for work still on the thread pool), runs
 * on_stop, frees the app. */
void svc_test_free(svc_test *t);

/*
 * Sends one request through dispatch and returns its final response.
 * method: an upper-case token ("GET"); target: origin-form ("/p?q=1");
 * headers: NULL, or a NULL-terminated list of name, value, name, value...;
 * body: len bytes (NULL if len is 0). Content-Length is implied by len.
 * Returns NULL for arguments dispatch cannot take (NULL method or target, an
 * odd header list), out of memory, or a response not final within
 * SVC_TEST_TIMEOUT_MS (the request is then abandoned, not freed: pending
 * work may still hold it). A handler that returned SVC_ASYNC and left nothing
 * on the loop that could finish it gets a 504 {"error":{"code":"timeout"}}
 * at once, and a log line.
 */
svc_test_res *svc_test_request(svc_test *t, const char *method, const char *target,
                               const char *const *headers, const void *body, size_t len);

/* The response: status, the first value of a header (any case; includes
 * Content-Type), the body (NUL-terminated; *len gets its length if len is
 * not NULL; gzip bytes when the request accepted gzip), the body parsed as
 * JSON (NULL if it is not; owned by res). */
int svc_test_res_status(const svc_test_res *res);
const char *svc_test_res_header(const svc_test_res *res, const char *name);
const char *svc_test_res_body(const svc_test_res *res, size_t *len);
json_t *svc_test_res_json(svc_test_res *res);
void svc_test_res_free(svc_test_res *res);

#ifdef __cplusplus
}
#endif

#endif
