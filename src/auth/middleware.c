/*
 * The auth middleware: a head hook (run before the body is read) that
 * verifies the caller's token on routes declared SVC_AUTH_USER or
 * SVC_AUTH_ADMIN.
 *
 * It is a module of the runtime (runtime/module.h: svc__auth_module, which
 * svc_app_new registers): its state lives in the app's registry, it reads
 * its own variables (JWT_SECRET, AUTH_JWKS_URL, AUTH_MAX_TOKEN_LIFETIME),
 * notes which routes ask for a token, and installs its hook at start-up.
 * Beyond that it uses the public API only (app.h, client.h), and module.h
 * for the one thing only it may do: set a request's claims.
 *
 * Keys come from one of three places (see auth.h): a key set the service owns
 * (the auth service), JWT_SECRET (HS256), or AUTH_JWKS_URL. For the last, a
 * refresher thread per app fetches the JWKS with the blocking client, so no
 * loop ever waits on the network and no request holds a lock while a fetch
 * runs; verifiers keep using the old keys until a new document has been
 * parsed whole (svc_jwt_keyset_load_jwks is all or nothing).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/internal.h"
#include "runtime/module.h"
#include "svckit/client.h"

/* While the key set is empty (the auth service not up yet), retry this often. */
#define JWKS_RETRY_EMPTY_S 1

enum { MODE_NONE, MODE_KEYSET, MODE_HS256, MODE_JWKS };

typedef struct auth_state {
    svc_app *app;
    int needed;                    /* a route asks for a token (the route hook) */
    pthread_mutex_t mu;            /* configuration and the refresher's wishes */
    pthread_cond_t cond;
    atomic_int configured;
    int installed;
    int mode;
    svc_jwt_keyset *ks;            /* what verifies: borrowed or owned */
    svc_jwt_keyset *owned;
    svc_jwt_keyset *borrowed;      /* from svc_auth_use_keyset */
    svc__jwt_cache *cache;
    svc_jwt_policy policy;         /* the defaults, but AUTH_MAX_TOKEN_LIFETIME */
    char *jwks_url;
    /* Refresher (MODE_JWKS). Times are CLOCK_MONOTONIC seconds. */
    pthread_t thread;
    int have_thread;
    int stop;                      /* under mu */
    int wanted;                    /* under mu: a request asked for a refresh */
    atomic_llong last_attempt;     /* any fetch */
    atomic_llong last_success;
    atomic_llong last_wanted;      /* a fetch asked for by an unknown kid */
    int failing;                   /* log the first failure loudly, the rest quietly */
} auth_state;

static int64_t mono_s(void) { return (int64_t)(svc_now_ns() / 1000000000u); }

static auth_state *state_of(const svc_app *app) { return svc__app_module_state(app, &svc__auth_module); }

/* ---- JWKS fetching --------------------------------------------------------- */

static int fetch_jwks(auth_state *s) {
    atomic_store(&s->last_attempt, mono_s());
    static const char *const headers[] = {"Accept: application/json", NULL};
    int status = 0;
    char *body = NULL;
    size_t len = 0;
    int rc = svc_http_fetch("GET", s->jwks_url, headers, NULL, 0, SVC_AUTH_JWKS_TIMEOUT_MS,
                            &status, &body, &len);
    const char *why = NULL;
    char buf[48];
    if (rc != SVC_OK) {
        why = svc_status_str(rc);
    } else if (status != 200) {
        snprintf(buf, sizeof buf, "HTTP status %d", status);
        why = buf;
        rc = SVC_EIO;
    } else if ((rc = svc_jwt_keyset_load_jwks(s->ks, body, len)) != SVC_OK) {
        why = "not a usable JWKS document";
    }
    free(body);
    if (rc == SVC_OK) {
        atomic_store(&s->last_success, mono_s());
        svc_log(s->failing ? SVC_LOG_INFO : SVC_LOG_DEBUG, "loaded %zu signing key%s from %s",
                svc_jwt_keyset_count(s->ks), svc_jwt_keyset_count(s->ks) == 1 ? "" : "s",
                s->jwks_url);
        s->failing = 0;
    } else {
        svc_log(s->failing ? SVC_LOG_DEBUG : SVC_LOG_WARN, "cannot load JWKS from %s: %s",
                s->jwks_url, why);
        s->failing = 1;
    }
    return rc;
}

/* When the refresher should fetch next, in monotonic seconds. */
static int64_t next_due(auth_state *s) {
    if (svc_jwt_keyset_count(s->ks) == 0)
        return atomic_load(&s->last_attempt) + JWKS_RETRY_EMPTY_S;
    return atomic_load(&s->last_success) + SVC_AUTH_JWKS_MAX_AGE_S;
}

static void *refresher(void *arg) {
    auth_state *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !s->wanted && mono_s() < next_due(s)) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait = next_due(s) - mono_s();
            ts.tv_sec += wait < 1 ? 1 : wait > 60 ? 60 : (time_t)wait;
            pthread_cond_timedwait(&s->cond, &s->mu, &ts);
        }
        if (s->stop) break;
        s->wanted = 0;
        pthread_mutex_unlock(&s->mu);
        (void)fetch_jwks(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* A token named a kid we do not have: the signer may have rotated its key.
 * Ask for a refresh, at most once per SVC_AUTH_JWKS_REFRESH_S, so a stream of
 * tokens with made-up kids costs the JWKS server next to nothing. (Other
 * fetches do not count: a key rotated just after our start-up fetch must
 * still be picked up at once.) */
static void want_refresh(auth_state *s) {
    if (s->mode != MODE_JWKS) return;
    int64_t now = mono_s(), last = atomic_load(&s->last_wanted);
    if (now - last < SVC_AUTH_JWKS_REFRESH_S) return;
    /* One request per window wins; the others return here. */
    if (!atomic_compare_exchange_strong(&s->last_wanted, &last, now)) return;
    pthread_mutex_lock(&s->mu);
    s->wanted = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

/* ---- configuration --------------------------------------------------------- */

/* Under s->mu. may_block: not on a loop (start-up), so the first JWKS fetch
 * can be done right here. */
static int configure_locked(auth_state *s, int may_block) {
    if (atomic_load(&s->configured)) return SVC_OK;
    const svc_config *cfg = svc_app_config(s->app);
    if (!cfg || !cfg->service) return SVC_EAGAIN; /* not loaded yet */
    if (!s->cache && !(s->cache = svc__jwt_cache_new(SVC_AUTH_CACHE_ENTRIES))) return SVC_ENOMEM;
    s->policy = (svc_jwt_policy){.leeway_s = -1, .max_lifetime_s = cfg->jwt_max_lifetime_s};
    if (s->borrowed) {
        s->mode = MODE_KEYSET;
        s->ks = s->borrowed;
        svc_info("verifying tokens with the service's own keys");
    } else if (cfg->jwt_secret && *cfg->jwt_secret) {
        svc_jwt_key k;
        if (!(s->owned = svc_jwt_keyset_new())) return SVC_ENOMEM;
        int rc = svc_jwt_key_hs256(&k, cfg->jwt_secret, strlen(cfg->jwt_secret));
        if (rc == SVC_OK) rc = svc_jwt_keyset_add(s->owned, &k);
        svc_jwt_key_wipe(&k);
        if (rc != SVC_OK) {
            svc_error("JWT_SECRET: unusable as an HS256 key (at least %d bytes)",
                      SVC_JWT_MIN_SECRET);
            return rc;
        }
        s->mode = MODE_HS256;
        s->ks = s->owned;
        svc_info("verifying HS256 tokens with JWT_SECRET");
    } else if (!cfg->jwks_url || !*cfg->jwks_url) {
        /* The library knows no auth service: where the keys are is the
         * deployment's to say (the Procfile's run, the deploy files). */
        svc_error("invalid configuration: AUTH_JWKS_URL is not set: set it (where verifiers get the public "
                  "keys) or JWT_SECRET");
        return SVC_EINVAL;
    } else {
        const char *url = cfg->jwks_url;
        if (!(s->owned = svc_jwt_keyset_new()) || !(s->jwks_url = strdup(url)))
            return SVC_ENOMEM;
        s->mode = MODE_JWKS;
        s->ks = s->owned;
        if (may_block) (void)fetch_jwks(s);
        if (pthread_create(&s->thread, NULL, refresher, s) != 0) {
            svc_error("cannot start the JWKS refresher thread");
            return SVC_ERR;
        }
        s->have_thread = 1;
        svc_info("verifying EdDSA tokens with keys from %s", url);
    }
    atomic_store(&s->configured, 1);
    return SVC_OK;
}

static int ensure_configured(auth_state *s, int may_block) {
    if (atomic_load(&s->configured)) return SVC_OK;
    pthread_mutex_lock(&s->mu);
    int rc = configure_locked(s, may_block);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- the hook -------------------------------------------------------------- */

static svc_outcome unauthorized(svc_res *res, int token_sent, const char *msg) {
    /* RFC 6750 section 3.1: no error code when the request had no token. */
    svc_res_header(res, "WWW-Authenticate",
                   token_sent ? "Bearer realm=\"svckit\", error=\"invalid_token\""
                              : "Bearer realm=\"svckit\"");
    return svc_res_error(res, 401, "unauthorized", "%s", msg);
}

/* The token from "Authorization: Bearer <token>", or else the "token" cookie.
 * *len is 0 and the result NULL when there is none; *bad is set for an
 * Authorization header of another scheme. */
static const char *token_of(svc_req *req, size_t *len, int *bad) {
    *len = 0;
    *bad = 0;
    const char *h = svc_req_header(req, "Authorization");
    const char *t = NULL;
    if (h) {
        if (strncasecmp(h, "Bearer ", 7) != 0) {
            *bad = 1;
            return NULL;
        }
        t = h + 7;
        while (*t == ' ') t++;
    } else {
        t = svc_req_cookie(req, "token");
    }
    if (!t) return NULL;
    size_t n = strlen(t);
    while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t')) n--;
    *len = n;
    return n ? t : NULL;
}

/* The verification itself, for a route that needs `flags` (SVC_AUTH_USER
 * and/or SVC_AUTH_ADMIN): SVC_NEXT with the claims on the request, or
 * SVC_DONE after writing the 401/403/500. */
static svc_outcome check(auth_state *s, svc_req *req, svc_res *res, unsigned flags) {
    if (ensure_configured(s, 0) != SVC_OK) {
        return svc_res_error(res, 500, "internal", "token verification is not configured");
    }
    size_t len;
    int bad;
    const char *token = token_of(req, &len, &bad);
    /* Another scheme carries no bearer credentials: no error code either. */
    if (bad) return unauthorized(res, 0, "expected a Bearer token");
    if (!token) return unauthorized(res, 0, "missing bearer token");

    svc_claims c;
    int64_t now = (int64_t)time(NULL);
    uint64_t gen = svc__keyset_generation(s->ks);
    if (svc__jwt_cache_get(s->cache, token, len, gen, now, &c) != SVC_OK) {
        char why[64];
        int rc = svc_jwt_verify(s->ks, token, len, &s->policy, &c, why, sizeof why);
        if (rc == SVC_ENOTFOUND) {
            want_refresh(s);
            return unauthorized(res, 1, "invalid token: unknown signing key");
        }
        if (rc != SVC_OK) {
            char msg[96];
            snprintf(msg, sizeof msg, "invalid token: %s", why);
            return unauthorized(res, 1, msg);
        }
        /* Cached under the generation read before verifying: if the keys
         * changed meanwhile, the entry is simply never hit. */
        svc__jwt_cache_put(s->cache, token, len, gen, c.exp + SVC_JWT_LEEWAY_S, &c);
    }
    if ((flags & SVC_AUTH_ADMIN) && strcmp(c.role, "admin") != 0) {
        return svc_res_error(res, 403, "forbidden", "this needs the admin role");
    }
    svc_claims *kept = svc_arena_alloc(svc_req_arena(req), sizeof *kept);
    if (!kept) return svc_res_error(res, 500, "internal", "out of memory");
    *kept = c;
    svc__req_set_claims(req, kept);
    return SVC_NEXT;
}

static svc_outcome before(svc_req *req, svc_res *res, void *ud) {
    unsigned flags = svc_req_route_flags(req);
    if (!(flags & (SVC_AUTH_USER | SVC_AUTH_ADMIN))) return SVC_NEXT;
    return check(ud, req, res, flags);
}

static int ready(void *ud, char *reason, size_t reason_len) {
    auth_state *s = ud;
    if (!atomic_load(&s->configured) || s->mode != MODE_JWKS) return SVC_OK;
    if (svc_jwt_keyset_count(s->ks) > 0) return SVC_OK;
    snprintf(reason, reason_len, "no signing keys from %s yet", s->jwks_url);
    return SVC_EAGAIN;
}

/* ---- public ---------------------------------------------------------------- */

int svc_auth_install(svc_app *app) {
    if (!app) return SVC_EINVAL;
    if (svc__auth_sodium_init() != SVC_OK) return SVC_ERR;
    auth_state *s = state_of(app);
    if (!s) {
        svc_error("svc_auth_install: the app has no auth module (made without svc_app_new?)");
        return SVC_EINVAL;
    }
    pthread_mutex_lock(&s->mu);
    int rc = SVC_OK;
    if (!s->installed) {
        rc = svc_app_use_head(app, before, s);
        if (rc == SVC_OK) rc = svc_app_ready_check(app, "auth", ready, s);
        if (rc == SVC_OK) s->installed = 1;
    }
    /* Not loaded yet (a service calling this before svc_app_run) is fine:
     * the module's init calls again, or the first request configures. */
    if (rc == SVC_OK) {
        rc = configure_locked(s, 1);
        if (rc == SVC_EAGAIN) rc = SVC_OK;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

svc_outcome svc_auth_check(svc_req *req, svc_res *res, unsigned need) {
    need &= SVC_AUTH_USER | SVC_AUTH_ADMIN;
    if (!need) return SVC_NEXT;
    auth_state *s = state_of(svc_req_app(req));
    if (!s) return svc_res_error(res, 500, "internal", "token verification is not configured");
    return check(s, req, res, need);
}

const svc_claims *svc_req_claims(const svc_req *req) {
    return (const svc_claims *)svc__req_claims(req);
}

void svc_auth_use_keyset(svc_app *app, svc_jwt_keyset *ks) {
    auth_state *s = app ? state_of(app) : NULL;
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->configured))
        svc_warn("svc_auth_use_keyset called after start-up: ignored");
    else
        s->borrowed = ks;
    pthread_mutex_unlock(&s->mu);
}

/* ---- the module (runtime/module.h) ------------------------------------------ */

#define AUTH_MAX_TOKEN_LIFETIME_MAX (366L * 86400) /* a year: tokens are not credentials for ever */

static const svc_config_var auth_vars[] = {
    {"JWT_SECRET", NULL, "HS256 secret, >= 32 bytes; replaces EdDSA (alias SECRET_KEY)"},
    {"AUTH_JWKS_URL", NULL, "where verifiers get public keys (needed to verify tokens without JWT_SECRET)"},
    {"AUTH_MAX_TOKEN_LIFETIME", "86400", "longest token lifetime verifiers accept, seconds"},
};

static void *auth_create(svc_app *app) {
    auth_state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->app = app;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&s->last_attempt, INT64_MIN / 2);
    atomic_init(&s->last_success, INT64_MIN / 2);
    atomic_init(&s->last_wanted, INT64_MIN / 2);
    return s;
}

/* The variables, checked at start whether or not a route asks for a token:
 * a bad secret stops the service before it issues or trusts anything. */
static int auth_configure(svc_app *app, void *state, char *err, size_t errlen) {
    svc_config *c = svc__app_config_edit(app);
    const char *secret = getenv("JWT_SECRET");
    const char *alias = getenv("SECRET_KEY");
    if (secret && *secret && alias && *alias && strcmp(secret, alias) != 0)
        return svc__config_fail(err, errlen, "SECRET_KEY", "(hidden)", "differs from JWT_SECRET; set only one");
    if (!secret || !*secret) secret = alias;
    if (secret && *secret) {
        if (strlen(secret) < SVC_JWT_MIN_SECRET) {
            snprintf(err, errlen, "invalid configuration: JWT_SECRET: %zu bytes, at least %d required",
                     strlen(secret), SVC_JWT_MIN_SECRET);
            return SVC_EINVAL;
        }
        c->jwt_secret = secret;
    }
    const char *url = getenv("AUTH_JWKS_URL");
    c->jwks_url = url && *url ? url : NULL;
    if (c->jwks_url && strncmp(c->jwks_url, "http://", 7) != 0)
        return svc__config_fail(err, errlen, "AUTH_JWKS_URL", c->jwks_url, "expected an http:// URL");
    long v;
    int rc = svc__config_int("AUTH_MAX_TOKEN_LIFETIME", 60, AUTH_MAX_TOKEN_LIFETIME_MAX, SVC_JWT_MAX_LIFETIME_S,
                             &v, err, errlen);
    if (rc != SVC_OK) return rc;
    c->jwt_max_lifetime_s = v;
    return SVC_OK;
}

static void auth_route(svc_app *app, void *state, const char *method, const char *pattern, unsigned flags) {
    auth_state *s = state;
    if (flags & (SVC_AUTH_USER | SVC_AUTH_ADMIN)) s->needed = 1;
}

/* Installed only when a route asks for a token (or the service calls
 * svc_auth_install itself, as the gateway does). */
static int auth_init(svc_app *app, void *state) {
    auth_state *s = state;
    if (!s->needed) return SVC_OK;
    int rc = svc_auth_install(app);
    if (rc != SVC_OK && rc != SVC_EINVAL) svc_error("cannot set up token verification");
    return rc;
}

/* Joins a background JWKS refresh, then frees the state. */
static void auth_free(svc_app *app, void *state) {
    auth_state *s = state;
    if (!s) return;
    if (s->have_thread) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    svc_jwt_keyset_free(s->owned);
    svc__jwt_cache_free(s->cache);
    free(s->jwks_url);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const svc_module svc__auth_module = {
    .name = "auth",
    .vars = auth_vars,
    .nvars = sizeof auth_vars / sizeof auth_vars[0],
    .create = auth_create,
    .configure = auth_configure,
    .route = auth_route,
    .init = auth_init,
    .free = auth_free,
};
