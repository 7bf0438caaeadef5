/* The registry of transports and modules (src/runtime/module.h): one state
 * per registration, a second registration refused, the hooks called in their
 * order, and the variables read by the module that declares them. */
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"
#include "svckit/test.h"
#include "../test.h"

typedef struct fake {
    int created, configured, routes, auth_routes, inited, freed;
    int fail_configure;
} fake;

static fake seen;

static void *fake_create(svc_app *app) {
    (void)app;
    seen.created++;
    return &seen;
}

static int fake_configure(svc_app *app, void *state, char *err, size_t errlen) {
    fake *f = state;
    f->configured++;
    if (f->fail_configure) return svc__config_fail(err, errlen, "FAKE_VAR", "x", "refused by the test");
    return SVC_OK;
}

static void fake_route(svc_app *app, void *state, const char *method, const char *pattern, unsigned flags) {
    fake *f = state;
    f->routes++;
    if (flags & SVC_AUTH_USER) f->auth_routes++;
}

static int fake_init(svc_app *app, void *state) {
    fake *f = state;
    /* The routes were shown first. */
    CHECK(f->routes > 0);
    f->inited++;
    return SVC_OK;
}

static void fake_free(svc_app *app, void *state) {
    fake *f = state;
    f->freed++;
}

static const svc_config_var fake_vars[] = {{"FAKE_VAR", NULL, "read by the fake module"}};

static const svc_module fake_module = {
    .name = "fake",
    .vars = fake_vars,
    .nvars = 1,
    .create = fake_create,
    .configure = fake_configure,
    .route = fake_route,
    .init = fake_init,
    .free = fake_free,
};

/* Another module that calls itself "fake". */
static const svc_module fake_twin = {.name = "fake"};

static const svc_transport fake_transport = {.name = "fake", .create = fake_create, .free = fake_free};

static svc_outcome ok(svc_req *req, svc_res *res) {
    (void)req;
    return svc_res_status(res, 204);
}

static void quiet_env(void) {
    setenv("LOG_LEVEL", "error", 1);
    setenv("NATS_URL", "none", 1);
    setenv("JWT_SECRET", "0123456789abcdef0123456789abcdef", 1);
    unsetenv("SECRET_KEY");
    unsetenv("AUTH_JWKS_URL");
}

TEST(a_module_registered_twice_is_refused) {
    memset(&seen, 0, sizeof seen);
    svc_app *app = svc__app_new("modules", 0, NULL);
    CHECK_EQ(svc__app_module_add(app, &fake_module), SVC_OK);
    CHECK(svc__app_module_state(app, &fake_module) == &seen);
    CHECK_EQ(svc__app_module_add(app, &fake_module), SVC_EEXIST);
    CHECK_EQ(svc__app_module_add(app, &fake_twin), SVC_EEXIST); /* the same name */
    CHECK_EQ(seen.created, 1);                                  /* never a second state */
    CHECK(svc__app_module_state(app, &fake_twin) == NULL);
    CHECK_EQ(svc__app_module_add(app, NULL), SVC_EINVAL);
    svc__app_free(app);
    CHECK_EQ(seen.freed, 1);
}

TEST(a_transport_registered_twice_is_refused) {
    memset(&seen, 0, sizeof seen);
    svc_app *app = svc__app_new("transports", 0, NULL);
    CHECK_EQ(svc__app_transport_add(app, &fake_transport), SVC_OK);
    CHECK_EQ(svc__app_transport_add(app, &fake_transport), SVC_EEXIST);
    CHECK_EQ(seen.created, 1);
    CHECK(svc__app_transport_state(app, &fake_transport) == &seen);
    svc__app_free(app);
    CHECK_EQ(seen.freed, 1);
}

TEST(registries_are_bounded) {
    svc_app *app = svc__app_new("bounded", 0, NULL);
    static svc_module many[SVC_MAX_MODULES + 1];
    static char names[SVC_MAX_MODULES + 1][16];
    for (int i = 0; i <= SVC_MAX_MODULES; i++) {
        snprintf(names[i], sizeof names[i], "m%d", i);
        many[i].name = names[i];
        CHECK_EQ(svc__app_module_add(app, &many[i]), i < SVC_MAX_MODULES ? SVC_OK : SVC_ERANGE);
    }
    svc__app_free(app);
}

/* svc_app_new's defaults are registered once: the auth module again is the
 * same programming error as any other. */
TEST(the_default_modules_cannot_be_registered_again) {
    svc_app *app = svc_app_new("defaults", 0, NULL);
    CHECK_EQ(app->ntransports, 2);
    CHECK_EQ(app->nmodules, 1);
    const svc_module *auth = app->modules[0].ops;
    void *state = app->modules[0].state;
    CHECK_EQ(svc__app_module_add(app, auth), SVC_EEXIST);
    CHECK(app->modules[0].state == state);
    CHECK_EQ(svc__app_transport_add(app, app->transports[0].ops), SVC_EEXIST);
    svc__app_free(app);
}

TEST(modules_see_the_routes_then_start_and_registration_closes) {
    quiet_env();
    memset(&seen, 0, sizeof seen);
    svc_app *app = svc_app_new("hooks", 0, NULL);
    CHECK_EQ(svc__app_module_add(app, &fake_module), SVC_OK);
    svc_app_get(app, "/open", ok, 0);
    svc_app_get(app, "/mine", ok, SVC_AUTH_USER);
    svc_test *t = svc_test_new(app);
    CHECK(t != NULL);
    CHECK_EQ(seen.configured, 1);
    CHECK(seen.routes >= 2); /* and the builtin routes */
    CHECK_EQ(seen.auth_routes, 1);
    CHECK_EQ(seen.inited, 1);
    /* Started: the registry is closed. */
    CHECK_EQ(svc__app_module_add(app, &fake_twin), SVC_EINVAL);
    svc_test_free(t);
    CHECK_EQ(seen.freed, 1);
}

TEST(a_module_refusing_its_variable_stops_the_start) {
    quiet_env();
    memset(&seen, 0, sizeof seen);
    seen.fail_configure = 1;
    svc_app *app = svc_app_new("refused", 0, NULL);
    CHECK_EQ(svc__app_module_add(app, &fake_module), SVC_OK);
    CHECK(svc_test_new(app) == NULL); /* and app is freed */
    CHECK_EQ(seen.inited, 0);
    CHECK_EQ(seen.freed, 1);
}

/* NATS_URL is read by the NATS transport, JWT_SECRET by the auth module,
 * HOST by the HTTP transport: the runtime's configuration knows none of
 * them, and each names its variable. */
TEST(transports_and_modules_check_their_own_variables) {
    quiet_env();
    char err[256];
    svc_app *app = svc_app_new("vars", 0, NULL);
    setenv("NATS_URL", "http://nope", 1);
    CHECK_EQ(svc__config_load(app, err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "NATS_URL") != NULL);
    setenv("NATS_URL", "none", 1);
    setenv("JWT_SECRET", "short", 1);
    CHECK_EQ(svc__config_load(app, err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "JWT_SECRET") != NULL);
    setenv("JWT_SECRET", "0123456789abcdef0123456789abcdef", 1);
    setenv("HOST", "not-an-address", 1); /* the HTTP transport's */
    CHECK_EQ(svc__config_load(app, err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "HOST") != NULL);
    unsetenv("HOST");
    CHECK_EQ(svc__config_load(app, err, sizeof err), SVC_OK);
    CHECK_STR(svc_app_config(app)->nats_url, "none");
    CHECK(svc_app_config(app)->jwt_secret != NULL);
    svc__app_free(app);
}
