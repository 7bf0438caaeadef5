/*
 * CORS for the configured origins. Credentials (the token cookie) are
 * allowed, which is exactly why there is no "*": the browser sends cookies
 * only to origins the gateway names one by one.
 */
#include <string.h>
#include <strings.h>

#include "gateway.h"

/* Scheme and host compare case-insensitively (RFC 6454 origins are
 * lower-cased by browsers anyway); nothing else about an origin varies. */
int gw_cors_allowed(const gw_config *c, const char *origin) {
    if (!origin || !*origin) return 0;
    for (int i = 0; i < c->norigins; i++)
        if (strcasecmp(c->origins[i], origin) == 0) return 1;
    return 0;
}

int gw_cors_is_preflight(const char *method, const char *origin, const char *request_method) {
    return method && strcmp(method, "OPTIONS") == 0 && origin && *origin && request_method && *request_method;
}
