/*
 * The NATS settings of the environment (natsenv.h). Below the runtime, so
 * that the svckit tool links them without it (and without the store that
 * the runtime's configuration brings).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/natsenv.h"
#include "net/nkey.h"
#include "net/tls.h"
#include "svckit/core.h"

/* NATS_URL for a log or error line: in each URL, all between "://" and the
 * last '@' before the next "://" (user:pass, or a token) becomes "***", so
 * no byte of a secret reaches one, even of a password holding '@', '/' or
 * ',' (svc__nats_url_parse takes the last '@'), nor of one cut short to
 * fit out. */
void svc__nats_url_shown(const char *url, char *out, size_t cap) {
    size_t o = 0;
    for (const char *p = url; *p && o + 1 < cap;) {
        const char *scheme = strstr(p, "://");
        const char *rest = scheme ? scheme + 3 : p + strlen(p);
        while (p < rest && o + 1 < cap) out[o++] = *p++;
        if (!scheme) break;
        const char *next = strstr(rest, "://"), *at = NULL;
        for (const char *c = rest; *c && c != next; c++)
            if (*c == '@') at = c;
        if (!at) continue;
        for (const char *r = "***"; *r && o + 1 < cap; r++) out[o++] = *r;
        p = at;
    }
    out[o] = '\0';
}

/* The line of svc__config_fail (runtime/config.c), a layer above this one. */
static int env_fail(char *err, size_t errlen, const char *var, const char *val, const char *why) {
    snprintf(err, errlen, "invalid configuration: %s=\"%.64s\": %s", var, val, why);
    return SVC_EINVAL;
}

/* The variable's value; NULL when unset or empty. */
static const char *env_set(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* "1", "true", "yes" or "0", "false", "no" (unset: 0). */
static int config_flag(const char *var, int *out, char *err, size_t errlen) {
    const char *v = env_set(var);
    *out = 0;
    if (!v || strcmp(v, "0") == 0 || strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0) return SVC_OK;
    if (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0) {
        *out = 1;
        return SVC_OK;
    }
    return env_fail(err, errlen, var, v, "expected 1, true, yes, 0, false or no");
}

/* NATS_NKEY_SEED_FILE or NATS_CREDS, read now: a bad file stops the start. */
static int load_creds(svc__nats_env *e, char *err, size_t errlen) {
    const char *seed = env_set("NATS_NKEY_SEED_FILE"), *creds = env_set("NATS_CREDS");
    if (seed && creds)
        return env_fail(err, errlen, "NATS_CREDS", creds, "set NATS_CREDS or NATS_NKEY_SEED_FILE, not both");
    if (!seed && !creds) return SVC_OK;
    const char *var = seed ? "NATS_NKEY_SEED_FILE" : "NATS_CREDS";
    e->creds = malloc(sizeof *e->creds);
    if (!e->creds) return env_fail(err, errlen, var, seed ? seed : creds, "out of memory");
    char why[160];
    if (svc__nkey_load(seed ? seed : creds, creds != NULL, e->creds, why, sizeof why) != SVC_OK) {
        free(e->creds);
        e->creds = NULL;
        return env_fail(err, errlen, var, seed ? seed : creds, why);
    }
    return SVC_OK;
}

/*
 * TLS to NATS: a tls:// URL asks for it for that server, any NATS_TLS_*
 * variable for every server (marked here). The TLS code is linked only
 * into programs built for it (src/net/tls.h); in another, asking for TLS
 * stops the service here, naming the remedy, rather than connecting in
 * plaintext. Runs after e->servers is parsed; url is NATS_URL as an error
 * line shows it (without credentials).
 */
static int tls_configure(svc__nats_env *e, const char *url, char *err, size_t errlen) {
    const char *ca = env_set("NATS_TLS_CA"), *cert = env_set("NATS_TLS_CERT"), *key = env_set("NATS_TLS_KEY");
    int all = ca || cert || key, any = all;
    for (int i = 0; i < e->nservers; i++) {
        if (all) e->servers[i].tls = 1;
        any |= e->servers[i].tls;
    }
    if (!any) return SVC_OK;
    const char *var = ca ? "NATS_TLS_CA" : cert ? "NATS_TLS_CERT" : key ? "NATS_TLS_KEY" : "NATS_URL";
    const char *val = all ? env_set(var) : url;
    if (!&svc__tls)
        return env_fail(err, errlen, var, val,
                                "TLS is not built into this program: build it with `make TLS=1` (or link it "
                                "with -Wl,--require-defined=svc__tls -lmbedtls -lmbedx509 -lmbedcrypto)");
    if (!cert != !key)
        return env_fail(err, errlen, cert ? "NATS_TLS_CERT" : "NATS_TLS_KEY", cert ? cert : key,
                                "NATS_TLS_CERT and NATS_TLS_KEY go together");
    char why[SVC_TLS_MAX_ERROR];
    e->tls = svc__tls.ctx_new(ca, cert, key, why, sizeof why);
    return e->tls ? SVC_OK : env_fail(err, errlen, var, val, why);
}

int svc__nats_env_load(svc__nats_env *e, const char *url, char *err, size_t errlen) {
    memset(e, 0, sizeof *e);
    char shown[256];   /* what an error line shows of NATS_URL (it shows 64 bytes) */
    svc__nats_url_shown(url, shown, sizeof shown);
    e->servers = calloc(SVC_NATS_MAX_SERVERS, sizeof *e->servers);
    if (!e->servers) return env_fail(err, errlen, "NATS_URL", shown, "out of memory");
    switch (svc__nats_urls_parse(url, e->servers, SVC_NATS_MAX_SERVERS, &e->nservers)) {
    case SVC_OK: break;
    case SVC_ERANGE: {
        char why[64];
        snprintf(why, sizeof why, "more than %d servers", SVC_NATS_MAX_SERVERS);
        return env_fail(err, errlen, "NATS_URL", shown, why);
    }
    default:
        return env_fail(err, errlen, "NATS_URL", shown,
                                "expected nats://[user[:pass]@]host[:port] or tls://..., comma-separated, or none");
    }
    int rc = config_flag("NATS_NO_ADVERTISED", &e->no_advertised, err, errlen);
    if (rc == SVC_OK) rc = load_creds(e, err, errlen);
    if (rc == SVC_OK) rc = tls_configure(e, shown, err, errlen);
    return rc;
}

void svc__nats_env_free(svc__nats_env *e) {
    if (e->tls) svc__tls.ctx_free(e->tls);
    free(e->servers);
    svc__nkey_wipe(e->creds);
    free(e->creds);
    memset(e, 0, sizeof *e);
}
