/*
 * The default wiring, and the only file above every layer: an app made with
 * svc_app_new has the HTTP/1.1 transport (src/http), the NATS transport
 * (src/msg) and the auth module (src/auth). The runtime (src/runtime) knows
 * none of them by name; they plug in through runtime/module.h, and nothing
 * includes this file. A transport or module of one's own is registered the
 * same way, with svc__app_transport_add or svc__app_module_add.
 */
#include <stdio.h>
#include <stdlib.h>

#include "auth/internal.h"
#include "http/internal.h"
#include "msg/internal.h"

svc_app *svc_app_new(const char *name, int argc, char **argv) {
    svc_app *app = svc__app_new(name, argc, argv);
    if (svc__app_transport_add(app, &svc__http_transport) != SVC_OK ||
        svc__app_transport_add(app, &svc__nats_transport) != SVC_OK ||
        svc__app_module_add(app, &svc__auth_module) != SVC_OK) {
        /* Only memory can fail here: the registry is empty and large enough. */
        fprintf(stderr, "svckit: out of memory\n");
        exit(1);
    }
    return app;
}
