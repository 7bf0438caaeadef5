/*
 * auth: accounts and tokens.
 *
 *   POST /auth/register        {"username","password"} -> 201 {"id","username","role"}
 *   POST /auth/login           -> 200 {"access_token","token_type","expires_in"} + cookie
 *   GET  /auth/me              -> the caller's claims
 *   GET  /.well-known/jwks.json -> the public keys verifiers use
 *
 * Tokens are EdDSA, signed with a key generated on first start into
 * DATA_DIR/auth-signing-key.json (0600), or HS256 when JWT_SECRET is set.
 * Passwords are Argon2id; register and login hash on the thread pool. An
 * unknown user and a wrong password get the same answer after the same work.
 * Login attempts and registrations are rate limited per client address.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth_service.h"

#define RATE_PER_MIN_MAX 1000000

/* The routes limited per client address, each with its own bucket and its own
 * setting: both would otherwise start an Argon2id hash per request. */
typedef struct route_limit {
    const char *route; /* the route template it guards */
    const char *env;   /* its setting: requests per client address per minute */
    const char *def;   /* the setting's default */
    const char *help;  /* the setting's --help line */
    const char *what;  /* for the 429's message: "too many <what>" */
} route_limit;

static const route_limit limits[] = {
    {"/auth/login", "LOGIN_RATE_PER_MIN", "10", "login attempts per client address per minute", "login attempts"},
    {"/auth/register", "REGISTER_RATE_PER_MIN", "5", "registrations per client address per minute",
     "registrations"},
};
#define NLIMITS (sizeof limits / sizeof limits[0])

/* The service's state, the app's data (svc_app_set_data): no globals. */
typedef struct auth_app {
    svc_db *db;
    svc_jwt_key signing_key;
    svc_jwt_keyset *keyset;
    svc_buf jwks_doc;
    int64_t token_ttl;
    svc_ratelimit *rl[NLIMITS];      /* per entry of limits, made in on_start */
    cookie_config cookie;
} auth_app;

/* ---- handlers --------------------------------------------------------------- */

/* Reads {"username","password"} (declared: checked) and the password's
 * length in bytes; SVC_EINVAL after writing a 400. */
static int read_credentials(svc_req *req, svc_res *res, const char **name, const char **pass, size_t *plen,
                            int strict) {
    json_t *body = svc_req_json(req, res);
    if (!body) return SVC_EINVAL;
    char err[128];
    if (auth_read_credentials(body, name, pass, plen, strict, err, sizeof err) != SVC_OK) {
        svc_res_error(res, 400, "bad_request", "%s", err);
        return SVC_EINVAL;
    }
    return SVC_OK;
}

static svc_outcome register_user(svc_req *req, svc_res *res) {
    const char *username, *password;
    size_t plen;
    if (read_credentials(req, res, &username, &password, &plen, 1) != SVC_OK) return SVC_DONE;
    char hash[SVC_PASSWORD_HASH_MAX];
    if (svc_password_hash(password, plen, hash, sizeof hash) != SVC_OK)
        return svc_res_error(res, 503, "unavailable", "cannot hash the password now, retry");
    auth_app *a = svc_req_app_data(req);
    user u;
    int rc = users_create(a->db, username, hash, "user", &u);
    if (rc == SVC_EEXIST) return svc_res_error(res, 409, "conflict", "username is taken");
    if (rc != SVC_OK) return svc_res_error(res, 500, "internal", "account storage error");
    svc_jw *w = svc_res_jw(res, 201);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "id"), svc_jw_i64(w, u.id);
    svc_jw_key(w, "username"), svc_jw_str(w, u.username);
    svc_jw_key(w, "role"), svc_jw_str(w, u.role);
    svc_jw_obj_end(w);
    return SVC_DONE;
}

static svc_outcome login(svc_req *req, svc_res *res) {
    const char *username, *password;
    size_t plen;
    /* Login takes any syntactically present credentials: a malformed username
     * is simply an unknown user, answered like every other failure. */
    if (read_credentials(req, res, &username, &password, &plen, 0) != SVC_OK) return SVC_DONE;
    auth_app *a = svc_req_app_data(req);
    user u;
    int rc = users_find(a->db, username, &u);
    if (rc == SVC_ENOTFOUND) {
        svc_password_dummy_verify(password, plen);
    } else if (rc != SVC_OK) {
        return svc_res_error(res, 500, "internal", "account storage error");
    } else {
        rc = svc_password_verify(u.password_hash, password, plen);
        if (rc == SVC_OK && svc_password_needs_rehash(u.password_hash) == 1) {
            char hash[SVC_PASSWORD_HASH_MAX];
            if (svc_password_hash(password, plen, hash, sizeof hash) == SVC_OK) users_set_hash(a->db, u.id, hash);
        }
    }
    if (rc != SVC_OK) {
        svc_res_header(res, "WWW-Authenticate", "Bearer realm=\"svckit\"");
        return svc_res_error(res, 401, "unauthorized", "invalid username or password");
    }
    char sub[32];
    snprintf(sub, sizeof sub, "%lld", (long long)u.id);
    svc_buf token = {0};
    if (svc_jwt_sign(&a->signing_key, sub, u.username, u.role, a->token_ttl, &token) != SVC_OK || token.oom) {
        svc_buf_free(&token);
        return svc_res_error(res, 500, "internal", "cannot sign a token");
    }
    const char *cookie = cookie_for(req, &a->cookie, token.data, a->token_ttl);
    if (cookie) svc_res_header(res, "Set-Cookie", cookie);
    svc_res_header(res, "Cache-Control", "no-store");
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "access_token"), svc_jw_strn(w, token.data, token.len);
    svc_jw_key(w, "token_type"), svc_jw_str(w, "Bearer");
    svc_jw_key(w, "expires_in"), svc_jw_i64(w, a->token_ttl);
    svc_jw_obj_end(w);
    svc_buf_free(&token);
    return SVC_DONE;
}

/* Logins and registrations per client: checked on the loop before the
 * handler is offloaded, so a flood never reaches the (expensive) password
 * hashing, nor the body parsing before it. */
static svc_outcome limit_requests(svc_req *req, svc_res *res, void *ud) {
    auth_app *a = ud;
    const char *route = svc_req_route(req);
    if (!route) return SVC_NEXT;
    size_t i = 0;
    while (i < NLIMITS && strcmp(route, limits[i].route) != 0) i++;
    if (i == NLIMITS) return SVC_NEXT;
    const route_limit *l = &limits[i];
    int retry_after = 0;
    char key[SVC_RATELIMIT_PEER_KEY_MAX];
    if (svc_ratelimit_take(a->rl[i], svc_ratelimit_peer_key(svc_req_peer(req), key), &retry_after) == SVC_OK)
        return SVC_NEXT;
    char ra[16];
    snprintf(ra, sizeof ra, "%d", retry_after);
    svc_res_header(res, "Retry-After", ra);
    return svc_res_error(res, 429, "too_many_requests", "too many %s; retry in %d s", l->what, retry_after);
}

/* Every claim of the caller's token, which only this service's key can have
 * signed: those svc_jwt_sign writes. The audience is the one verification
 * required (auth signs it as that one string); nbf and iat only when the
 * token has them. */
static svc_outcome me(svc_req *req, svc_res *res) {
    const svc_claims *c = svc_req_claims(req);
    svc_jw *w = svc_res_jw(res, 200);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "iss"), svc_jw_str(w, c->iss);
    svc_jw_key(w, "sub"), svc_jw_str(w, c->sub);
    svc_jw_key(w, "aud"), svc_jw_str(w, SVC_JWT_AUDIENCE);
    if (c->iat) svc_jw_key(w, "iat"), svc_jw_i64(w, c->iat);
    if (c->nbf) svc_jw_key(w, "nbf"), svc_jw_i64(w, c->nbf);
    svc_jw_key(w, "exp"), svc_jw_i64(w, c->exp);
    if (*c->jti) svc_jw_key(w, "jti"), svc_jw_str(w, c->jti);
    if (*c->name) svc_jw_key(w, "name"), svc_jw_str(w, c->name);
    if (*c->role) svc_jw_key(w, "role"), svc_jw_str(w, c->role);
    svc_jw_obj_end(w);
    return SVC_DONE;
}

static svc_outcome jwks(svc_req *req, svc_res *res) {
    const auth_app *a = svc_req_app_data(req);
    svc_res_header(res, "Cache-Control", "public, max-age=60");
    return svc_res_body(res, 200, "application/json", a->jwks_doc.data, a->jwks_doc.len);
}

/* ---- start-up ------------------------------------------------------------- */

static void free_limits(auth_app *a) {
    for (size_t i = 0; i < NLIMITS; i++) {
        svc_ratelimit_free(a->rl[i]);
        a->rl[i] = NULL;
    }
}

static int load_keys(svc_app *app, auth_app *a) {
    const svc_config *cfg = svc_app_config(app);
    if (cfg->jwt_secret) {
        if (svc_jwt_key_hs256(&a->signing_key, cfg->jwt_secret, strlen(cfg->jwt_secret)) != SVC_OK)
            return SVC_ERR;
        svc_info("signing tokens with HS256 (JWT_SECRET); the JWKS is empty");
    } else {
        char path[4096];
        snprintf(path, sizeof path, "%s/auth-signing-key.json", cfg->data_dir);
        if (svc_jwt_key_load_or_create(&a->signing_key, path) != SVC_OK) return SVC_ERR;
        svc_info("signing tokens with EdDSA key %s (%s)", a->signing_key.kid, path);
    }
    if (svc_jwt_keyset_add(a->keyset, &a->signing_key) != SVC_OK) return SVC_ERR;
    return svc_jwt_keyset_jwks(a->keyset, &a->jwks_doc);
}

static int on_start(svc_app *app, void *ud) {
    auth_app *a = ud;
    const svc_config *cfg = svc_app_config(app);
    /* Configuration first: a bad value stops the service before it creates
     * a key or a database. JWT_TTL within AUTH_MAX_TOKEN_LIFETIME: auth
     * verifies its own tokens (/auth/me) with the bound every verifier has,
     * and a longer TTL would make tokens nobody accepts. */
    int64_t ttl;
    if (svc_parse_i64(svc_app_env(app, "JWT_TTL"), &ttl) != SVC_OK || ttl < 60 || ttl > cfg->jwt_max_lifetime_s) {
        svc_error("invalid configuration: JWT_TTL=\"%s\": expected seconds from 60 to %lld "
                  "(AUTH_MAX_TOKEN_LIFETIME)",
                  svc_app_env(app, "JWT_TTL"), (long long)cfg->jwt_max_lifetime_s);
        return SVC_EINVAL;
    }
    if (cookie_configure(app, &a->cookie) != SVC_OK) return SVC_EINVAL;
    a->token_ttl = ttl;
    int64_t rates[NLIMITS];
    for (size_t i = 0; i < NLIMITS; i++) {
        const char *v = svc_app_env(app, limits[i].env);
        if (svc_parse_i64(v, &rates[i]) != SVC_OK || rates[i] < 1 || rates[i] > RATE_PER_MIN_MAX) {
            svc_error("invalid configuration: %s=\"%s\": expected 1 to %d", limits[i].env, v, RATE_PER_MIN_MAX);
            return SVC_EINVAL;
        }
    }
    /* A bucket of `rate` requests at once, refilled over a minute. */
    for (size_t i = 0; i < NLIMITS; i++) {
        a->rl[i] = svc_ratelimit_new((double)rates[i], (double)rates[i] / 60.0);
        if (!a->rl[i]) {
            free_limits(a);
            return SVC_ERR;
        }
    }
    if (load_keys(app, a) != SVC_OK) {
        free_limits(a);
        return SVC_ERR;
    }
    if (users_open(cfg->data_dir, &a->db) != SVC_OK) return SVC_ERR;
    return users_ensure_admin(a->db, cfg->data_dir, svc_app_env(app, "ADMIN_USERNAME"),
                              svc_app_env(app, "ADMIN_PASSWORD"));
}

/* on_stop, and after svc_app_run whatever happened (a failed on_start has no
 * on_stop): every step may find its part released already. */
static void on_stop(svc_app *app, void *ud) {
    (void)app;
    auth_app *a = ud;
    svc_db_close(a->db);
    a->db = NULL;
    free_limits(a);
    svc_jwt_key_wipe(&a->signing_key);
    svc_buf_free(&a->jwks_doc);
}

static const svc_route_spec register_spec = {
    "Create an account (role user)", .body = &auth_register_body,
    .responses = (const svc_response[]){{201, "{\"id\",\"username\",\"role\"}", NULL},
                                        {409, "the username is taken", NULL}, {0}},
};
static const svc_route_spec login_spec = {
    "Log in: a token, and the same as an HttpOnly cookie", .body = &auth_login_body,
    .responses = (const svc_response[]){{200, "{\"access_token\",\"token_type\":\"Bearer\",\"expires_in\"}", NULL},
                                        {401, "invalid username or password", NULL}, {0}},
};

int main(int argc, char **argv) {
    svc_app *app = svc_app_new("auth", argc, argv);
    svc_app_default_port(app, 8081);
    svc_app_env_declare(app, "ADMIN_USERNAME", "admin", "the admin account created at first start");
    svc_app_env_declare(app, "ADMIN_PASSWORD", NULL,
                        "its password (unset: generated into DATA_DIR/admin-password, 0600)");
    svc_app_env_declare(app, "JWT_TTL", "3600", "lifetime of issued tokens, seconds");
    for (size_t i = 0; i < NLIMITS; i++) svc_app_env_declare(app, limits[i].env, limits[i].def, limits[i].help);
    cookie_declare(app);
    auth_app a = {.token_ttl = SVC_JWT_DEFAULT_TTL_S, .keyset = svc_jwt_keyset_new()};
    if (!a.keyset) return 1;
    svc_app_set_data(app, &a);
    svc_auth_use_keyset(app, a.keyset);
    svc_app_use(app, limit_requests, NULL, &a);
    svc_app_post(app, "/auth/register", register_user, SVC_OFFLOAD);
    svc_app_post(app, "/auth/login", login, SVC_OFFLOAD);
    svc_app_get(app, "/auth/me", me, SVC_AUTH_USER);
    svc_app_get(app, "/.well-known/jwks.json", jwks, 0);
    svc_app_route_spec(app, "POST", "/auth/register", &register_spec);
    svc_app_route_spec(app, "POST", "/auth/login", &login_spec);
    svc_app_on_start(app, on_start, &a);
    svc_app_on_stop(app, on_stop, &a);
    int rc = svc_app_run(app);
    on_stop(NULL, &a);
    svc_jwt_keyset_free(a.keyset);
    return rc;
}
