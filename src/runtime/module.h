/*
 * What the runtime offers its modules (src/auth, src/msg) beyond the public
 * API: the identity of a request's caller. Only the auth module sets it, so
 * a handler that reads svc_req_claims knows a verified token put it there:
 * no hook or handler can (the public API has no setter).
 */
#ifndef SVC_HTTP_MODULE_H
#define SVC_HTTP_MODULE_H

#include "svckit/app.h"

/* The verified claims (owned by the request: its arena); any thread that
 * holds the request. */
void svc__req_set_claims(svc_req *req, const void *claims);
const void *svc__req_claims(const svc_req *req);

#endif
