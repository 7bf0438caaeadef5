/*
 * The auth middleware, end to end in one process: a real app (one worker, on
 * a free port) runs in a thread, a raw-socket client sends requests, and for
 * the JWKS mode a tiny JWKS server thread stands in for the auth service and
 * counts its fetches.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/internal.h"
#include "svckit/auth.h"
#include "../test.h"

/* ---- a raw HTTP client ------------------------------------------------------ */

static int app_port;

typedef struct reply {
    int status;
    char head[4096];
    char body[4096];
} reply;

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* GET path with extra header lines ("Name: value\r\n..." or ""). */
static reply get(const char *path, const char *extra) {
    reply r;
    memset(&r, 0, sizeof r);
    int fd = connect_to(app_port);
    if (fd < 0) return r;
    char req[12000];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n",
                     path, extra);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return r;
    }
    char buf[8192];
    size_t got = 0;
    ssize_t k;
    while (got < sizeof buf - 1 && (k = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)k;
    close(fd);
    buf[got] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (!end || sscanf(buf, "HTTP/1.1 %d", &r.status) != 1) return r;
    snprintf(r.head, sizeof r.head, "%.*s", (int)(end - buf), buf);
    snprintf(r.body, sizeof r.body, "%s", end + 4);
    return r;
}

static reply get_bearer(const char *path, const char *token) {
    char h[10000];
    snprintf(h, sizeof h, "Authorization: Bearer %s\r\n", token);
    return get(path, h);
}

static char *sign(const svc_jwt_key *k, const char *sub, const char *role) {
    svc_buf tok = {0};
    if (svc_jwt_sign(k, sub, "Name", role, 600, &tok) != SVC_OK) abort();
    return tok.data;
}

/* ---- the app under test ----------------------------------------------------- */

static svc_outcome who(svc_req *req, svc_res *res) {
    const svc_claims *c = svc_req_claims(req);
    return svc_res_printf(res, 200, "text/plain", "%s|%s", c ? c->sub : "-", c ? c->role : "-");
}

static svc_app *app;
static pthread_t app_thread;

static void *run_app(void *arg) {
    (void)arg;
    svc_app_run(app);
    return NULL;
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        abort();
    close(fd);
    return ntohs(a.sin_port);
}

static void start_app_with(svc_jwt_keyset *own_keys, svc_start_fn on_start) {
    char port[16];
    app_port = free_port();
    snprintf(port, sizeof port, "%d", app_port);
    setenv("PORT", port, 1);
    setenv("HOST", "127.0.0.1", 1);
    setenv("WORKERS", "1", 1);
    setenv("LOG_LEVEL", "error", 1);
    setenv("DRAIN_DELAY", "0", 1);
    setenv("SHUTDOWN_TIMEOUT", "1", 1);
    setenv("NATS_URL", "none", 1); /* readiness must not wait for a NATS server */
    app = svc_app_new("authtest", 0, NULL);
    svc_app_get(app, "/open", who, 0);
    svc_app_get(app, "/user", who, SVC_AUTH_USER);
    svc_app_get(app, "/admin", who, SVC_AUTH_ADMIN);
    svc_app_get(app, "/slow", who, SVC_AUTH_USER | SVC_OFFLOAD);
    if (own_keys) svc_auth_use_keyset(app, own_keys);
    if (on_start) svc_app_on_start(app, on_start, NULL);
    pthread_create(&app_thread, NULL, run_app, NULL);
    for (int i = 0; i < TEST_WAIT_MS / 10; i++) {
        if (get("/healthz", "").status == 200) return;
        usleep(10000);
    }
    abort();
}

static void start_app(svc_jwt_keyset *own_keys) { start_app_with(own_keys, NULL); }

static void stop_app(void) {
    svc_app_stop(app);
    pthread_join(app_thread, NULL);
}

/* ---- a JWKS server ------------------------------------------------------------ */

static struct {
    int fd, port;
    pthread_t thread;
    atomic_int stop;
    atomic_int fetches;
    pthread_mutex_t mu;
    int status;
    char doc[8192];
} jwks = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *serve_jwks(void *arg) {
    (void)arg;
    while (!atomic_load(&jwks.stop)) {
        struct pollfd p = {.fd = jwks.fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int c = accept(jwks.fd, NULL, NULL);
        if (c < 0) continue;
        char buf[4096];
        size_t got = 0;
        ssize_t k;
        while (got < sizeof buf - 1 && (k = read(c, buf + got, sizeof buf - 1 - got)) > 0) {
            got += (size_t)k;
            buf[got] = '\0';
            if (strstr(buf, "\r\n\r\n")) break;
        }
        atomic_fetch_add(&jwks.fetches, 1);
        pthread_mutex_lock(&jwks.mu);
        char out[9000];
        int n = snprintf(out, sizeof out,
                         "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         jwks.status, strlen(jwks.doc), jwks.doc);
        pthread_mutex_unlock(&jwks.mu);
        if (write(c, out, (size_t)n) != n) { /* the client went away */ }
        close(c);
    }
    return NULL;
}

static void jwks_set(int status, const svc_jwt_key *a, const svc_jwt_key *b) {
    svc_jwt_keyset *ks = svc_jwt_keyset_new();
    if (a) svc_jwt_keyset_add(ks, a);
    if (b) svc_jwt_keyset_add(ks, b);
    svc_buf doc = {0};
    svc_jwt_keyset_jwks(ks, &doc);
    pthread_mutex_lock(&jwks.mu);
    jwks.status = status;
    snprintf(jwks.doc, sizeof jwks.doc, "%s", doc.data);
    pthread_mutex_unlock(&jwks.mu);
    svc_buf_free(&doc);
    svc_jwt_keyset_free(ks);
}

static void start_jwks(void) {
    jwks.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(jwks.fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(jwks.fd, 16) != 0 ||
        getsockname(jwks.fd, (struct sockaddr *)&a, &len) != 0)
        abort();
    jwks.port = ntohs(a.sin_port);
    char url[100];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/.well-known/jwks.json", jwks.port);
    setenv("AUTH_JWKS_URL", url, 1);
    pthread_create(&jwks.thread, NULL, serve_jwks, NULL);
}

static void stop_jwks(void) {
    atomic_store(&jwks.stop, 1);
    pthread_join(jwks.thread, NULL);
    close(jwks.fd);
}

/* ---- tests ------------------------------------------------------------------ */

TEST(own_keys_user_and_admin_routes) {
    svc_jwt_key k, other;
    REQUIRE(svc_jwt_key_generate(&k) == SVC_OK && svc_jwt_key_generate(&other) == SVC_OK);
    svc_jwt_keyset *ks = svc_jwt_keyset_new();
    REQUIRE(svc_jwt_keyset_add(ks, &k) == SVC_OK);
    start_app(ks);
    char *user = sign(&k, "7", "user"), *admin = sign(&k, "1", "admin");
    char *forged = sign(&other, "1", "admin");

    reply r = get("/open", "");
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "-|-");

    r = get("/user", "");
    CHECK_EQ(r.status, 401);
    CHECK(strstr(r.head, "\r\nWWW-Authenticate: Bearer realm=\"svckit\"") != NULL);
    CHECK(strstr(r.head, "error=") == NULL);
    CHECK(strstr(r.body, "{\"error\":{\"code\":\"unauthorized\"") == r.body);

    r = get_bearer("/user", user);
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "7|user");
    r = get_bearer("/user", user); /* the cached verdict */
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "7|user");
    r = get_bearer("/slow", user); /* offloaded handlers see the claims too */
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "7|user");

    char h[4096];
    snprintf(h, sizeof h, "Cookie: theme=dark; token=%s\r\n", admin);
    r = get("/admin", h);
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "1|admin");
    snprintf(h, sizeof h, "Authorization: bearer   %s\r\n", admin); /* scheme is case-insensitive */
    r = get("/admin", h);
    CHECK_EQ(r.status, 200);

    r = get_bearer("/admin", user);
    CHECK_EQ(r.status, 403);
    CHECK(strstr(r.body, "\"code\":\"forbidden\"") != NULL);

    r = get_bearer("/admin", forged);
    CHECK_EQ(r.status, 401);
    CHECK(strstr(r.head, "WWW-Authenticate: Bearer realm=\"svckit\", error=\"invalid_token\"") != NULL);
    CHECK(strstr(r.body, "unknown signing key") != NULL);

    r = get_bearer("/user", "not.a.token");
    CHECK_EQ(r.status, 401);
    CHECK(strstr(r.head, "error=\"invalid_token\"") != NULL);

    /* Another scheme, or the Bearer scheme with nothing after it, carries no
     * bearer credentials: the challenge has no error code (RFC 6750 3.1). */
    const char *none[] = {"Authorization: Basic dXNlcjpwYXNz\r\n", "Authorization: Bearer\r\n",
                          "Authorization: Bearer   \r\n", "Authorization: Digest x\r\nCookie: token=\r\n"};
    for (size_t i = 0; i < sizeof none / sizeof *none; i++) {
        r = get("/user", none[i]);
        CHECK_EQ(r.status, 401);
        CHECK(strstr(r.head, "\r\nWWW-Authenticate: Bearer realm=\"svckit\"") != NULL);
        CHECK(strstr(r.head, "error=") == NULL);
    }
    /* An Authorization header wins over the cookie, even a bad one. */
    snprintf(h, sizeof h, "Authorization: Basic eA==\r\nCookie: token=%s\r\n", user);
    r = get("/user", h);
    CHECK_EQ(r.status, 401);

    /* A key added to the set later is used at once (and cached verdicts of
     * the old generation are dropped). */
    REQUIRE(svc_jwt_keyset_add(ks, &other) == SVC_OK);
    r = get_bearer("/admin", forged);
    CHECK_EQ(r.status, 200);
    r = get_bearer("/user", user);
    CHECK_EQ(r.status, 200);

    stop_app();
    free(user);
    free(admin);
    free(forged);
    svc_jwt_keyset_free(ks);
}

TEST(expired_token_is_refused) {
    svc_jwt_key k;
    REQUIRE(svc_jwt_key_generate(&k) == SVC_OK);
    svc_jwt_keyset *ks = svc_jwt_keyset_new();
    REQUIRE(svc_jwt_keyset_add(ks, &k) == SVC_OK);
    start_app(ks);
    char payload[200];
    long long now = (long long)time(NULL);
    snprintf(payload, sizeof payload,
             "{\"iss\":\"svckit-auth\",\"sub\":\"9\",\"aud\":\"svckit\",\"exp\":%lld}", now - 60);
    svc_buf tok = {0};
    REQUIRE(svc_jwt_sign_payload(&k, payload, strlen(payload), &tok) == SVC_OK);
    reply r = get_bearer("/user", tok.data);
    CHECK_EQ(r.status, 401);
    CHECK(strstr(r.body, "token expired") != NULL);
    stop_app();
    svc_buf_free(&tok);
    svc_jwt_keyset_free(ks);
}

TEST(jwt_secret_selects_hs256) {
    const char *secret = "middleware-test-secret-0123456789abcdef";
    setenv("JWT_SECRET", secret, 1);
    start_app(NULL);
    svc_jwt_key hs, ed;
    REQUIRE(svc_jwt_key_hs256(&hs, secret, strlen(secret)) == SVC_OK);
    REQUIRE(svc_jwt_key_generate(&ed) == SVC_OK);
    char *good = sign(&hs, "5", "admin"), *eddsa = sign(&ed, "5", "admin");
    reply r = get_bearer("/admin", good);
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "5|admin");
    r = get_bearer("/admin", eddsa);
    CHECK_EQ(r.status, 401);
    r = get("/readyz", "");
    CHECK_EQ(r.status, 200);
    stop_app();
    free(good);
    free(eddsa);
}

TEST(jwks_fetch_rotation_and_rate_limit) {
    svc_jwt_key a, b, c;
    REQUIRE(svc_jwt_key_generate(&a) == SVC_OK && svc_jwt_key_generate(&b) == SVC_OK &&
            svc_jwt_key_generate(&c) == SVC_OK);
    unsetenv("JWT_SECRET");
    start_jwks();
    jwks_set(200, &a, NULL);
    start_app(NULL);
    CHECK(atomic_load(&jwks.fetches) >= 1); /* fetched at start, before serving */
    char *ta = sign(&a, "a", "user"), *tb = sign(&b, "b", "user"), *tc = sign(&c, "c", "user");
    reply r = get_bearer("/user", ta);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(get("/readyz", "").status, 200);

    /* The signer rotates to b: the first request with b's kid is refused and
     * asks for a refresh; shortly after, b's tokens pass. */
    jwks_set(200, &a, &b);
    int before = atomic_load(&jwks.fetches);
    r = get_bearer("/user", tb);
    CHECK_EQ(r.status, 401);
    int ok = 0;
    for (int i = 0; i < TEST_WAIT_MS / 10 && !ok; i++) {
        usleep(10000);
        ok = get_bearer("/user", tb).status == 200;
    }
    CHECK(ok);
    CHECK_EQ(get_bearer("/user", ta).status, 200);
    int after = atomic_load(&jwks.fetches);
    CHECK_EQ(after, before + 1);

    /* Unknown kids right after a refresh do not cause another fetch. */
    for (int i = 0; i < 20; i++) CHECK_EQ(get_bearer("/user", tc).status, 401);
    usleep(200000); /* a fetch they caused would show by now; a late one is missed, never a false failure */
    CHECK_EQ(atomic_load(&jwks.fetches), after);
    stop_app();
    stop_jwks();
    free(ta);
    free(tb);
    free(tc);
}

TEST(jwks_unavailable_at_start_then_recovers) {
    svc_jwt_key a;
    REQUIRE(svc_jwt_key_generate(&a) == SVC_OK);
    unsetenv("JWT_SECRET");
    start_jwks();
    jwks_set(503, NULL, NULL);
    start_app(NULL);
    char *ta = sign(&a, "a", "user");
    reply r = get("/readyz", "");
    CHECK_EQ(r.status, 503);
    CHECK(strstr(r.body, "signing keys") != NULL);
    CHECK_EQ(get_bearer("/user", ta).status, 401);
    /* The auth service comes up: keys arrive without any request asking. */
    jwks_set(200, &a, NULL);
    int ready = 0;
    for (int i = 0; i < TEST_WAIT_MS / 10 && !ready; i++) {
        usleep(10000);
        ready = get("/readyz", "").status == 200;
    }
    CHECK(ready);
    CHECK_EQ(get_bearer("/user", ta).status, 200);
    stop_app();
    stop_jwks();
    free(ta);
}

static svc_jwt_keyset *late_ks;
static svc_jwt_key late_key;

static int add_key_on_start(svc_app *a, void *ud) {
    (void)a;
    (void)ud;
    return svc_jwt_keyset_add(late_ks, &late_key);
}

TEST(own_keys_filled_in_on_start) {
    /* The auth service's pattern: hand over an empty set before run, load
     * the key in on_start (when DATA_DIR is known). */
    REQUIRE(svc_jwt_key_generate(&late_key) == SVC_OK);
    late_ks = svc_jwt_keyset_new();
    unsetenv("JWT_SECRET");
    setenv("AUTH_JWKS_URL", "http://127.0.0.1:1/never-fetched", 1);
    start_app_with(late_ks, add_key_on_start);
    char *t = sign(&late_key, "late", "user");
    reply r = get_bearer("/user", t);
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "late|user");
    CHECK_EQ(get("/readyz", "").status, 200);
    stop_app();
    free(t);
    svc_jwt_keyset_free(late_ks);
}
