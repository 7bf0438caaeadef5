/*
 * GET /openapi.json at the gateway: the merged OpenAPI 3.1 document of the
 * routes it exposes. Each service of the route table is asked for its own
 * document over NATS (svc_req_call, up to SVC_MAX_CALLS at a time); of each,
 * the paths the route table sends to that service are kept, those behind a
 * route that checks tokens at the edge with the bearer scheme, each
 * operation tagged with its service's name (the explorer at /docs groups by
 * it). A service that does not answer leaves its paths out (and says so in
 * x-svckit-unavailable) rather than failing the whole document; the schemas
 * their paths refer to come along.
 */
#include <string.h>

#include "gateway.h"

static const svc_key merge_key = {"gateway openapi"};

typedef struct merge {
    gw_state *g;
    json_t *doc;                     /* the document being merged */
    int next;                        /* the first service not asked yet */
} merge;

static void merge_free(void *p) {
    merge *m = p;
    json_decref(m->doc);
    free(m);
}

/* The paths of service s's document that the route table sends to s. */
static void take_paths(merge *m, int s, json_t *theirs) {
    const gw_config *c = &m->g->cfg;
    json_t *paths = json_object_get(m->doc, "paths");
    const char *path;
    json_t *item;
    int taken = 0;
    json_object_foreach(json_object_get(theirs, "paths"), path, item) {
        const gw_route *r = gw_route_find(c, path);
        if (!r || r->service != s || !json_is_object(item)) continue;
        json_t *copy = json_deep_copy(item);
        const char *method;
        json_t *op;
        json_object_foreach(copy, method, op) {
            if (!json_is_object(op)) continue;
            json_object_set_new(op, "tags", json_pack("[s]", c->services[s]));
            if (r->auth != GW_AUTH_NONE) json_object_set_new(op, "security", json_pack("[{s:[]}]", "bearer"));
        }
        json_object_set_new(paths, path, copy);
        taken = 1;
    }
    if (taken)
        json_array_append_new(json_object_get(m->doc, "tags"),
                              json_pack("{s:s, s:s+}", "name", c->services[s], "description", "routed to ",
                                        c->services[s]));
    /* What their paths refer to (#/components/schemas/Error). */
    json_t *schemas = json_object_get(json_object_get(m->doc, "components"), "schemas");
    json_object_update_missing(schemas, json_object_get(json_object_get(theirs, "components"), "schemas"));
}

static svc_outcome asked(svc_req *req, svc_res *res, void *ud);

static svc_outcome ask(svc_req *req, svc_res *res, merge *m) {
    (void)res;
    svc_call_opts opts = {.timeout_ms = 2000};
    for (int s = m->next; s < m->g->cfg.nservices && s < m->next + SVC_MAX_CALLS; s++)
        svc_req_call(req, m->g->cfg.services[s], "GET", "/openapi.json", NULL, 0, &opts);
    return svc_req_then(req, asked, m);
}

static svc_outcome asked(svc_req *req, svc_res *res, void *ud) {
    merge *m = ud;
    int count = m->g->cfg.nservices - m->next < SVC_MAX_CALLS ? m->g->cfg.nservices - m->next : SVC_MAX_CALLS;
    for (int i = 0; i < count; i++) {
        int s = m->next + i;
        json_t *theirs = svc_call_status(req, i) == 200 ? svc_call_json(req, i) : NULL;
        if (theirs) take_paths(m, s, theirs);
        else json_array_append_new(json_object_get(m->doc, "x-svckit-unavailable"), json_string(m->g->cfg.services[s]));
    }
    m->next += count;
    if (m->next < m->g->cfg.nservices) return ask(req, res, m);
    return svc_res_json(res, 200, m->doc);
}

static svc_outcome openapi(svc_req *req, svc_res *res) {
    merge *m = calloc(1, sizeof *m);
    if (!m || svc_req_set(req, &merge_key, m, merge_free) != SVC_OK) {
        free(m);
        return svc_res_error(res, 503, "unavailable", "out of memory");
    }
    m->g = svc_req_app_data(req);
    m->doc = json_pack("{s:s, s:{s:s, s:s}, s:[], s:{}, s:{s:{s:{s:s, s:s, s:s}}, s:{}}, s:[]}", "openapi",
                       "3.1.0", "info", "title", "svckit gateway: every service's routes", "version", SVC_VERSION,
                       "tags", "paths", "components", "securitySchemes", "bearer", "type", "http", "scheme", "bearer",
                       "bearerFormat", "JWT", "schemas", "x-svckit-unavailable");
    if (!m->doc) return svc_res_error(res, 503, "unavailable", "out of memory");
    return ask(req, res, m);
}

void gw_openapi_route(svc_app *app) { svc_app_get(app, "/openapi.json", openapi, 0); }
