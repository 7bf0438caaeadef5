/*
 * GET /openapi.json: the OpenAPI 3.1 document of every route the router
 * has, made once at start from the declarations (svckit/schema.h). A route
 * without one is still listed, with its path parameters as strings and a
 * default response, so that the document and the router never disagree.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"
#include "runtime/schema.h"

#ifndef SVC_VERSION
#define SVC_VERSION "0.0.0"
#endif

/* The pattern text of JSON Schema for svc_schema.text (ECMA-262). */
#define TEXT_PATTERN "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$"

static void raw(svc_jw *w, const char *json) { svc_jw_raw(w, json, strlen(json)); }

static void write_number(svc_jw *w, double d) {
    if (d == floor(d) && fabs(d) <= SVC_SCHEMA_MAX_SAFE_INTEGER) svc_jw_i64(w, (int64_t)d);
    else svc_jw_f64(w, d);
}

static void write_schema(svc_jw *w, const svc_schema *s) {
    static const char *const types[] = {NULL, "object", "array", "string", "integer", "number", "boolean"};
    svc_jw_obj_begin(w);
    if (types[s->type]) svc_jw_key(w, "type"), svc_jw_str(w, types[s->type]);
    if (s->description) svc_jw_key(w, "description"), svc_jw_str(w, s->description);
    if (s->read_only) svc_jw_key(w, "readOnly"), svc_jw_bool(w, 1);
    if (s->min_length) svc_jw_key(w, "minLength"), svc_jw_i64(w, s->min_length);
    if (s->max_length) svc_jw_key(w, "maxLength"), svc_jw_i64(w, s->max_length);
    if (s->pattern) svc_jw_key(w, "pattern"), svc_jw_str(w, s->pattern);
    else if (s->text) svc_jw_key(w, "pattern"), svc_jw_str(w, TEXT_PATTERN);
    if (s->enum_values) {
        svc_jw_key(w, "enum");
        svc_jw_arr_begin(w);
        for (const char *const *e = s->enum_values; *e; e++) svc_jw_str(w, *e);
        svc_jw_arr_end(w);
    }
    if (s->has_min) svc_jw_key(w, "minimum"), write_number(w, s->minimum);
    if (s->has_max) svc_jw_key(w, "maximum"), write_number(w, s->maximum);
    if (s->properties) {
        svc_jw_key(w, "properties");
        svc_jw_obj_begin(w);
        for (const svc_field *f = s->properties; f->name; f++) {
            svc_jw_key(w, f->name);
            write_schema(w, f->schema);
        }
        svc_jw_obj_end(w);
        if (!s->open) svc_jw_key(w, "additionalProperties"), svc_jw_bool(w, 0);
    }
    if (s->required && s->required[0]) {
        svc_jw_key(w, "required");
        svc_jw_arr_begin(w);
        for (const char *const *r = s->required; *r; r++) svc_jw_str(w, *r);
        svc_jw_arr_end(w);
    }
    if (s->min_properties) svc_jw_key(w, "minProperties"), svc_jw_i64(w, s->min_properties);
    if (s->items) svc_jw_key(w, "items"), write_schema(w, s->items);
    if (s->min_items) svc_jw_key(w, "minItems"), svc_jw_i64(w, s->min_items);
    if (s->max_items) svc_jw_key(w, "maxItems"), svc_jw_i64(w, s->max_items);
    svc_jw_obj_end(w);
}

/* "/products/:id" -> "/products/{id}", "/files/" "*rest" -> "/files/{rest}". */
static void openapi_path(const char *pattern, char *out, size_t len) {
    size_t o = 0;
    for (const char *p = pattern; *p && o + 2 < len; p++) {
        if ((*p == ':' || *p == '*') && p > pattern && p[-1] == '/') {
            size_t n = strcspn(p + 1, "/");
            if (o + n + 3 >= len) break;
            out[o++] = '{';
            memcpy(out + o, p + 1, n);
            o += n;
            out[o++] = '}';
            p += n;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

static const svc_param *declared(const svc_param *list, const char *name, size_t n) {
    for (const svc_param *p = list; p && p->name; p++)
        if (strlen(p->name) == n && memcmp(p->name, name, n) == 0) return p;
    return NULL;
}

static void write_param(svc_jw *w, const char *name, size_t n, const char *in, const svc_param *d) {
    static const svc_schema text = {.type = SVC_STRING};
    svc_jw_obj_begin(w);
    svc_jw_key(w, "name"), svc_jw_strn(w, name, n);
    svc_jw_key(w, "in"), svc_jw_str(w, in);
    int path = strcmp(in, "path") == 0;
    svc_jw_key(w, "required"), svc_jw_bool(w, path || (d && d->required));
    if (d && d->description) svc_jw_key(w, "description"), svc_jw_str(w, d->description);
    const svc_schema *s = d ? d->schema : &text;
    if (s->type == SVC_ARRAY) {
        svc_jw_key(w, "style"), svc_jw_str(w, "form");
        svc_jw_key(w, "explode"), svc_jw_bool(w, s->repeat);
    }
    svc_jw_key(w, "schema"), write_schema(w, s);
    svc_jw_obj_end(w);
}

static void write_parameters(svc_jw *w, const svc_route_entry *e, const svc_route_spec *spec) {
    svc_jw_key(w, "parameters");
    svc_jw_arr_begin(w);
    for (const char *p = strchr(e->pattern, '/'); p; p = strchr(p + 1, '/')) {
        if (p[1] != ':' && p[1] != '*') continue;
        size_t n = strcspn(p + 2, "/");
        write_param(w, p + 2, n, "path", declared(spec ? spec->path : NULL, p + 2, n));
    }
    for (const svc_param *d = spec ? spec->query : NULL; d && d->name; d++)
        write_param(w, d->name, strlen(d->name), "query", d);
    for (const svc_param *d = spec ? spec->header : NULL; d && d->name; d++)
        write_param(w, d->name, strlen(d->name), "header", d);
    svc_jw_arr_end(w);
}

static void write_json_content(svc_jw *w, const svc_schema *s) {
    svc_jw_key(w, "content");
    svc_jw_obj_begin(w);
    svc_jw_key(w, "application/json");
    svc_jw_obj_begin(w);
    if (s) svc_jw_key(w, "schema"), write_schema(w, s);
    else svc_jw_key(w, "schema"), raw(w, "{\"$ref\":\"#/components/schemas/Error\"}");
    svc_jw_obj_end(w);
    svc_jw_obj_end(w);
}

static void write_error_response(svc_jw *w, const char *status, const char *description) {
    svc_jw_key(w, status);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "description"), svc_jw_str(w, description);
    write_json_content(w, NULL);
    svc_jw_obj_end(w);
}

static void write_operation(svc_jw *w, const svc_route_entry *e) {
    const svc_route_spec *spec = e->spec;
    char method[16];
    size_t i = 0;
    for (; e->method[i] && i + 1 < sizeof method; i++) method[i] = (char)(e->method[i] - 'A' + 'a');
    method[i] = '\0';
    svc_jw_key(w, method);
    svc_jw_obj_begin(w);
    if (spec && spec->summary) svc_jw_key(w, "summary"), svc_jw_str(w, spec->summary);
    write_parameters(w, e, spec);
    if (spec && spec->body) {
        svc_jw_key(w, "requestBody");
        svc_jw_obj_begin(w);
        svc_jw_key(w, "required"), svc_jw_bool(w, 1);
        write_json_content(w, spec->body);
        svc_jw_obj_end(w);
    }
    svc_jw_key(w, "responses");
    svc_jw_obj_begin(w);
    int any = 0;
    for (const svc_response *r = spec ? spec->responses : NULL; r && r->status; r++, any = 1) {
        char status[8];
        snprintf(status, sizeof status, "%d", r->status);
        svc_jw_key(w, status);
        svc_jw_obj_begin(w);
        svc_jw_key(w, "description"), svc_jw_str(w, r->description ? r->description : "");
        if (r->schema) write_json_content(w, r->schema);
        svc_jw_obj_end(w);
    }
    if (spec) write_error_response(w, "400", "the request is invalid: every problem is in details");
    if (e->flags & (SVC_AUTH_USER | SVC_AUTH_ADMIN)) write_error_response(w, "401", "no valid token");
    if (e->flags & SVC_AUTH_ADMIN) write_error_response(w, "403", "the token's role is not admin");
    if (!any) {
        svc_jw_key(w, "default");
        svc_jw_obj_begin(w);
        svc_jw_key(w, "description"), svc_jw_str(w, "the answer");
        svc_jw_obj_end(w);
    }
    svc_jw_obj_end(w);
    if (e->flags & (SVC_AUTH_USER | SVC_AUTH_ADMIN)) {
        svc_jw_key(w, "security");
        raw(w, "[{\"bearer\":[]}]");
    }
    svc_jw_obj_end(w);
}

static const char error_schema[] =
    "{\"type\":\"object\",\"required\":[\"error\"],\"properties\":{\"error\":{\"type\":\"object\","
    "\"required\":[\"code\",\"message\"],\"properties\":{\"code\":{\"type\":\"string\"},"
    "\"message\":{\"type\":\"string\"},\"details\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
    "\"properties\":{\"in\":{\"type\":\"string\",\"enum\":[\"path\",\"query\",\"header\",\"body\"]},"
    "\"path\":{\"type\":\"string\"},\"problem\":{\"type\":\"string\"}}}}}}}}";

int svc__openapi_build(svc_app *app) {
    /* The routes in registration order (the list is newest first). */
    size_t n = 0;
    for (const svc_route_entry *e = app->routes; e; e = e->next) n++;
    const svc_route_entry **order = calloc(n ? n : 1, sizeof *order);
    char(*paths)[256] = calloc(n ? n : 1, sizeof *paths);
    if (!order || !paths) {
        free(order);
        free(paths);
        return SVC_ENOMEM;
    }
    size_t i = n;
    for (const svc_route_entry *e = app->routes; e; e = e->next) order[--i] = e;
    for (i = 0; i < n; i++) openapi_path(order[i]->pattern, paths[i], sizeof paths[i]);

    svc_buf *b = &app->openapi;
    svc_jw w;
    svc_jw_init(&w, b);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "openapi"), svc_jw_str(&w, "3.1.0");
    svc_jw_key(&w, "info");
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "title"), svc_jw_str(&w, app->name);
    svc_jw_key(&w, "version"), svc_jw_str(&w, SVC_VERSION);
    svc_jw_obj_end(&w);
    svc_jw_key(&w, "paths");
    svc_jw_obj_begin(&w);
    for (i = 0; i < n; i++) {
        size_t first = 0;
        while (strcmp(paths[first], paths[i]) != 0) first++;
        if (first < i) continue; /* written with its first route */
        svc_jw_key(&w, paths[i]);
        svc_jw_obj_begin(&w);
        for (size_t j = i; j < n; j++)
            if (strcmp(paths[j], paths[i]) == 0) write_operation(&w, order[j]);
        svc_jw_obj_end(&w);
    }
    svc_jw_obj_end(&w);
    svc_jw_key(&w, "components");
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "securitySchemes");
    raw(&w, "{\"bearer\":{\"type\":\"http\",\"scheme\":\"bearer\",\"bearerFormat\":\"JWT\"}}");
    svc_jw_key(&w, "schemas");
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "Error"), raw(&w, error_schema);
    svc_jw_obj_end(&w);
    svc_jw_obj_end(&w);
    svc_jw_obj_end(&w);
    free(order);
    free(paths);
    return svc_jw_ok(&w);
}
