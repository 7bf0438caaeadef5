/*
 * svckit/client.h: outbound HTTP/1.1 for service-to-service calls.
 *
 * A client belongs to one libuv loop and keeps a keep-alive pool per
 * host:port. Requests are asynchronous: the callback runs exactly once on that
 * loop, with the response or an error; if svc_http_client_request itself fails
 * the callback is never called. Plain http:// only (TLS is the mesh's job).
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

typedef struct svc_http_client svc_http_client;

typedef struct svc_http_response {
    int status;                 /* HTTP status */
    const char *body;           /* NUL-terminated; valid during the callback */
    size_t body_len;
    size_t nheaders;
    const char *const *header_names;   /* lower-case */
    const char *const *header_values;
} svc_http_response;

/* Finds a response header by case-insensitive name; NULL if absent. */
const char *svc_http_response_header(const svc_http_response *r, const char *name);

/* err is SVC_OK with resp set, or SVC_ETIMEDOUT / SVC_EIO / SVC_ECLOSED /
 * SVC_ERANGE (response over SVC_CLIENT_MAX_RESPONSE) with resp NULL. */
typedef void (*svc_http_client_cb)(int err, const svc_http_response *resp, void *ud);

typedef struct svc_http_client_opts {
    int connect_timeout_ms;     /* 0: SVC_CLIENT_CONNECT_TIMEOUT_MS */
    int max_idle_per_host;      /* 0: SVC_CLIENT_MAX_IDLE_PER_HOST */
    size_t max_response;        /* 0: SVC_CLIENT_MAX_RESPONSE */
} svc_http_client_opts;

/* New client on loop; opts may be NULL. Free with svc_http_client_free, which
 * fails pending requests with SVC_ECLOSED (callbacks run before it returns
 * or on the next loop iteration) and closes pooled connections. */
svc_http_client *svc_http_client_new(uv_loop_t *loop, const svc_http_client_opts *opts);
void svc_http_client_free(svc_http_client *c);

/*
 * Starts a request. url is "http://host[:port]/path?query" (host a name or an
 * IPv4/IPv6 literal). headers is NULL or a NULL-terminated array of "Name: value"
 * strings. body may be NULL. timeout_ms bounds the whole exchange (0: default).
 * Everything is copied. Returns SVC_OK, or SVC_EINVAL for a bad URL/header.
 */
int svc_http_client_request(svc_http_client *c, const char *method, const char *url,
                            const char *const *headers, const void *body, size_t body_len,
                            int timeout_ms, svc_http_client_cb cb, void *ud);

/*
 * Blocking convenience for code that is not on a loop (start-up, thread pool):
 * runs a private loop until done. On SVC_OK, *status is set and *body (if not
 * NULL) receives a malloc'd NUL-terminated body the caller frees.
 */
int svc_http_fetch(const char *method, const char *url, const char *const *headers,
                   const void *body, size_t body_len, int timeout_ms,
                   int *status, char **body_out, size_t *body_len_out);

#ifdef __cplusplus
}
#endif
#endif
