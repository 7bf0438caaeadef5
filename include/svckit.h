/*
 * svckit.h: the whole public API of svckit, a toolkit for microservices in C.
 *
 *   svckit/core.h    status codes, arenas, buffers, logging
 *   svckit/json.h    JSON parsing with limits (jansson) and a streaming writer
 *   svckit/app.h     the service: routes, requests, responses, middleware, run
 *   svckit/obs.h     metrics (Prometheus text format)
 *   svckit/auth.h    JWT, JWKS, passwords, auth middleware
 *   svckit/client.h  outbound HTTP client
 *   svckit/limit.h   per-key rate limiting
 *   svckit/cache.h   per-worker cache of rendered responses, ETags
 *   svckit/msg.h     NATS: routes over request-reply, RPC, events, JetStream, discovery
 *   svckit/store.h   SQLite helpers
 *   svckit/outbox.h  outbox relay, idempotent JetStream consumers
 *
 * Not included here: svckit/test.h, the in-process harness for a service's
 * tests.
 */
#ifndef SVCKIT_H
#define SVCKIT_H

#include "svckit/core.h"
#include "svckit/json.h"
#include "svckit/app.h"
#include "svckit/schema.h"
#include "svckit/obs.h"
#include "svckit/auth.h"
#include "svckit/client.h"
#include "svckit/limit.h"
#include "svckit/cache.h"
#include "svckit/msg.h"
#include "svckit/trace.h"
#if __has_include("svckit/store.h")
#include "svckit/store.h"
#include "svckit/outbox.h"
#endif

#endif
