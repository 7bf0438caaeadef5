/*
 * svckit/client.h: outbound HTTP/1.1 for service-to-service calls.
 *
 * A client belongs to one libuv loop and keeps a keep-alive pool per
 * host:port. Requests are asynchronous: the callback runs exactly once on that
 * loop, with the response or an error; if svc_http_client_request itself fails
 * the callback is never called. Plain http:// only (TLS is the mesh's job).
 *
 * Thread-safety: a client and its requests are used only on its loop's thread.
 * svc_http_fetch is safe from any thread (each call has its own loop).
 *
 * Connections: requests send HTTP/1.1 and so ask for keep-alive implicitly.
 * After a complete response on a connection both sides agree to keep, the
 * connection waits in the pool for its host:port (at most max_idle_per_host,
 * closed after idle_timeout_ms or as soon as the server closes it). Idle
 * connections do not keep the loop alive (they are uv_unref'd). If a request
 * sent on a pooled connection fails before any response byte arrives (the
 * server closed it at the same moment), it is sent once more on a new
 * connection, for GET, HEAD, PUT, DELETE and OPTIONS only. A host name is
 * resolved with uv_getaddrinfo and its addresses are tried in order.
 *
 * Creating a client sets SIGPIPE to SIG_IGN if it is at its default (SIG_DFL):
 * libuv cannot pass MSG_NOSIGNAL, and a write to a peer that has gone away
 * must be an error, not the end of the process.
 */
#ifndef SVCKIT_CLIENT_H
#define SVCKIT_CLIENT_H

#include <stddef.h>
#include <uv.h>

#include "svckit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_CLIENT_CONNECT_TIMEOUT_MS 2000
#define SVC_CLIENT_TOTAL_TIMEOUT_MS 10000
#define SVC_CLIENT_MAX_IDLE_PER_HOST 16
#define SVC_CLIENT_MAX_RESPONSE (8 * 1024 * 1024)
#define SVC_CLIENT_IDLE_TIMEOUT_MS 30000
#define SVC_CLIENT_MAX_HEADERS 100  /* response headers (and trailers) */

typedef struct svc_http_client svc_http_client;

typedef struct svc_http_response {
    int status;                 /* HTTP status */
    const char *body;           /* NUL-terminated; valid during the callback */
    size_t body_len;
    size_t nheaders;
    const char *const *header_names;   /* lower-case; valid during the callback */
    const char *const *header_values;  /* in the order received, repeats kept */
} svc_http_response;

/* Finds a response header by case-insensitive name: the value of its first
 * occurrence, or NULL if absent (or r or name is NULL). */
const char *svc_http_response_header(const svc_http_response *r, const char *name);

/* err is SVC_OK with resp set (any HTTP status, 4xx and 5xx included), or,
 * with resp NULL:
 *   SVC_ETIMEDOUT  the total timeout passed, or the connect timeout on the
 *                  last address tried;
 *   SVC_EIO        name not resolved, connection refused or lost, malformed
 *                  response (including a 101 Switching Protocols);
 *   SVC_ECLOSED    the client was freed first;
 *   SVC_ERANGE     headers plus body over max_response, or more than
 *                  SVC_CLIENT_MAX_HEADERS headers;
 *   SVC_ENOMEM     out of memory. */
typedef void (*svc_http_client_cb)(int err, const svc_http_response *resp, void *ud);

/* Zero-initialise; a 0 field takes the default. */
typedef struct svc_http_client_opts {
    int connect_timeout_ms;     /* 0: SVC_CLIENT_CONNECT_TIMEOUT_MS (per address) */
    int max_idle_per_host;      /* 0: SVC_CLIENT_MAX_IDLE_PER_HOST */
    size_t max_response;        /* 0: SVC_CLIENT_MAX_RESPONSE (headers + body bytes) */
    int idle_timeout_ms;        /* 0: SVC_CLIENT_IDLE_TIMEOUT_MS */
} svc_http_client_opts;

/* New client on loop; opts may be NULL. NULL if loop is NULL, an option is
 * negative, or out of memory. Free with svc_http_client_free, which fails
 * pending requests with SVC_ECLOSED (their callbacks run before it returns)
 * and closes every connection. It may be called with requests in flight and
 * from inside a request callback; NULL is a no-op. The loop must run again
 * afterwards so the handles can close; then uv_run returns and no handle of
 * the client is left. */
svc_http_client *svc_http_client_new(uv_loop_t *loop, const svc_http_client_opts *opts);
void svc_http_client_free(svc_http_client *c);

/*
 * Starts a request. url is "http://host[:port]/path?query" (host a name or an
 * IPv4/IPv6 literal). headers is NULL or a NULL-terminated array of "Name: value"
 * strings. body may be NULL. timeout_ms bounds the whole exchange (0: default).
 * Everything is copied. Returns SVC_OK, or SVC_EINVAL for a bad URL/header.
 *
 * Tracing (svckit/trace.h): from a thread that works for a span (a handler,
 * an event handler) the request is a client span, and a "traceparent" with
 * its id is added unless headers has one.
 *
 * The request carries "Host" (unless headers has one), then headers in order,
 * then "Content-Length" when body_len > 0 or the method is POST, PUT or PATCH.
 * Framing belongs to the client: a "Content-Length" or "Transfer-Encoding" in
 * headers is SVC_EINVAL. A header "Connection: close" is sent as given and
 * keeps the connection out of the pool. Header names must be tokens; values
 * must not contain CR, LF or other control bytes except tab. The URL may not
 * have user info; its target must be printable ASCII (percent-encode the rest);
 * a fragment is dropped.
 *
 * Other returns: SVC_EINVAL also for NULL c/method/url/cb, a method that is not
 * a token, timeout_ms < 0, or body NULL with body_len > 0; SVC_ENOMEM; and
 * SVC_ECLOSED when called on a client being freed (from a callback run by
 * svc_http_client_free). Errors met later (including DNS and connect) always
 * arrive through the callback, never before this function has returned.
 */
int svc_http_client_request(svc_http_client *c, const char *method, const char *url,
                            const char *const *headers, const void *body, size_t body_len,
                            int timeout_ms, svc_http_client_cb cb, void *ud);

/*
 * Blocking convenience for code that is not on a loop (start-up, thread pool):
 * runs a private loop until done. On SVC_OK, *status is set and *body_out (if
 * not NULL) receives a malloc'd NUL-terminated body the caller frees;
 * status and body_len_out may be NULL. Otherwise returns an error of
 * svc_http_client_request or of the callback above and sets nothing. After a
 * timeout it may still wait for a name lookup already running in libuv's
 * thread pool to end (getaddrinfo cannot be interrupted).
 */
int svc_http_fetch(const char *method, const char *url, const char *const *headers,
                   const void *body, size_t body_len, int timeout_ms,
                   int *status, char **body_out, size_t *body_len_out);

#ifdef __cplusplus
}
#endif
#endif
