/*
 * svckit/schema.h: declared routes. A route may declare its path, query and
 * header parameters, its JSON body and its responses; the library then validates a
 * request before its handler runs and lists the route in GET /openapi.json
 * (OpenAPI 3.1), from the same declaration.
 *
 *     static const svc_schema title = SVC_TEXT(1, 200, .at = SVC_AT(product, title));
 *     static const svc_schema price = SVC_RANGE(SVC_NUMBER, 0, 1e9, .at = SVC_AT(product, price));
 *     static const svc_field fields[] = {{"title", &title}, {"price", &price}, {0}};
 *     static const char *const required[] = {"title", "price", NULL};
 *     static const svc_schema body = {.type = SVC_OBJECT, .properties = fields, .required = required};
 *     static const svc_route_spec create = {.summary = "Create a product", .body = &body,
 *         .responses = (const svc_response[]){{201, "the product", &product}, {0}}};
 *     svc_app_post(app, "/products", create_product, SVC_AUTH_ADMIN);
 *     svc_app_route_spec(app, "POST", "/products", &create);
 *     ... and in create_product, the checked body into a struct product:
 *     svc_json_read(&body, svc_req_json(req, res), &p);
 *
 * Why C static data and not a JSON file embedded at build time: the compiler
 * checks every field name and type, the declaration lives next to the handler
 * that relies on it, the validator walks it with no parsing nor allocation at
 * start, and the same structs serve validation and the OpenAPI document.
 *
 * The subset of JSON Schema (2020-12, as OpenAPI 3.1 uses it):
 *   type          svc_type; SVC_ANY accepts every value (and checks nothing);
 *   string        minLength/maxLength (characters, i.e. code points),
 *                 pattern (see below), enum (enum_values), and .text = 1: no
 *                 control character but tab and newline (C0, DEL, C1), which
 *                 the document states as an equivalent pattern;
 *   integer       a JSON integer; number: any JSON number. minimum/maximum
 *                 (inclusive) when has_min/has_max. Either refuses integers
 *                 beyond +-2^53 (SVC_SCHEMA_MAX_SAFE_INTEGER, I-JSON, RFC 7493):
 *                 clients in JavaScript could not hold them;
 *   object        properties (svc_field list), required, minProperties.
 *                 An object with properties refuses keys it does not declare
 *                 (additionalProperties: false) unless .open = 1. A property
 *                 whose schema is .read_only = 1 is refused in a request
 *                 ("is read-only") and documented as readOnly;
 *   array         items, minItems/maxItems;
 *   description   documentation only.
 * pattern is a POSIX extended regular expression (regcomp, REG_EXTENDED) that
 * must also read the same as an ECMA-262 one, since OpenAPI's is: keep to
 * anchors, bracket expressions, ".", "*", "+", "?", "{m,n}", "|" and groups.
 * It is matched against the string's bytes.
 *
 * Query parameters are strings, integers, numbers, booleans ("true",
 * "false") or arrays of those written comma-separated (form style, explode
 * false: select=title,price); a declared parameter repeated in the query is
 * refused, but for one whose array schema has .repeat = 1: its occurrences
 * add up (select=title&select=price, read with svc_req_query_all). Path parameters are strings or integers.
 * Header parameters are strings, integers, numbers or booleans; the name is
 * matched case-insensitively (as svc_req_header does), the first occurrence
 * checked. A parameter not declared is neither checked nor refused.
 *
 * Declarations are checked when the service starts: a schema that is itself
 * invalid (max below min, an unknown type, a pattern that does not compile,
 * a required name not among the properties, a path parameter the pattern
 * does not have, repeat on what is not a query parameter's array, too deep, a member (.at) that
 * may be too small, or a declaration for a route never added) stops it
 * with exit 2 and one line naming the route and the problem.
 */
#ifndef SVCKIT_SCHEMA_H
#define SVCKIT_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svckit/app.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Problems listed in one 400 at most; the message says how many more. */
#define SVC_SCHEMA_MAX_DETAILS 16
/* Schemas nested deeper than this are a declaration error. (A body deeper
 * than its schema is refused by the schema, and bodies deeper than
 * SVC_JSON_MAX_DEPTH by the parser, before any schema.) */
#define SVC_SCHEMA_MAX_DEPTH 16
/* 2^53: the integers every JSON implementation holds exactly. */
#define SVC_SCHEMA_MAX_SAFE_INTEGER 9007199254740992.0

typedef enum svc_type {
    SVC_ANY = 0,
    SVC_OBJECT,
    SVC_ARRAY,
    SVC_STRING,
    SVC_INTEGER,
    SVC_NUMBER,
    SVC_BOOLEAN,
} svc_type;

typedef struct svc_schema svc_schema;

/* A property of an object; lists end with {0}. */
typedef struct svc_field {
    const char *name;
    const svc_schema *schema;
} svc_field;

/* Where in a struct a value goes (svc_json_read); size 0: nowhere. */
typedef struct svc_member {
    size_t offset, size;
} svc_member;
/* A struct's member as a schema's .at: SVC_TEXT(1, 200, .at = SVC_AT(product, title)). */
#define SVC_AT(type, member) {offsetof(type, member), sizeof(((type *)0)->member)}
/* Schemas met everywhere, as initialisers, with more designators after:
 * text (.text = 1) of min to max characters; an integer or number (t) from
 * lo to hi. */
#define SVC_TEXT(min, max, ...) {.type = SVC_STRING, .min_length = (min), .max_length = (max), .text = 1, __VA_ARGS__}
#define SVC_RANGE(t, lo, hi, ...) \
    {.type = (t), .has_min = 1, .has_max = 1, .minimum = (lo), .maximum = (hi), __VA_ARGS__}

struct svc_schema {
    svc_type type;
    const char *description;
    /* string */
    int64_t min_length, max_length;   /* characters; max_length 0: no limit */
    const char *pattern;
    const char *const *enum_values;   /* NULL-terminated; strings only */
    unsigned text : 1;                /* no control characters but \t and \n */
    /* integer, number */
    unsigned has_min : 1, has_max : 1;
    double minimum, maximum;
    /* object */
    const svc_field *properties;
    const char *const *required;      /* NULL-terminated */
    int64_t min_properties;
    unsigned open : 1;                /* keys beyond properties allowed */
    unsigned read_only : 1;           /* as a property: never in a request */
    /* array */
    const svc_schema *items;
    int64_t min_items, max_items;     /* max_items 0: no limit */
    unsigned repeat : 1;              /* a query parameter's array: may repeat, the items adding up */
    /* as a property: the member of the caller's struct svc_json_read puts it in */
    svc_member at;
};

/* A path, query or header parameter; lists end with {0}. */
typedef struct svc_param {
    const char *name;
    const svc_schema *schema;
    int required;                     /* query and header; path parameters always are */
    const char *description;
} svc_param;

/* A documented response; lists end with {0}. schema NULL: no body described. */
typedef struct svc_response {
    int status;
    const char *description;
    const svc_schema *schema;
} svc_response;

typedef struct svc_route_spec {
    const char *summary;
    const svc_param *path;
    const svc_param *query;
    const svc_param *header;
    const svc_schema *body;           /* NULL: the body is not the library's */
    const svc_response *responses;
} svc_route_spec;

/*
 * Declares what the route (method, pattern), added before with
 * svc_app_route & co, takes and answers. spec and everything it points to
 * must outlive the app (static data). Before the handler runs, on its thread
 * (the thread pool for an SVC_OFFLOAD route), and after the head hooks and
 * before-hooks (so a 401 comes before a 400), the library
 * checks the path parameters, then the query, then the headers, then the body: a body needs a
 * JSON Content-Type (else 415) and must parse within the app's limits (else
 * 400 "invalid_json"); every problem then found is answered at once as
 *   400 {"error":{"code":"bad_request","message":"<the first problem>",
 *        "details":[{"in":"body","path":"/items/0/quantity","problem":"must be at least 1"}, ...]}}
 * with at most SVC_SCHEMA_MAX_DETAILS details ("in" is path, query, header or body;
 * "path" a JSON pointer, into the body or to the parameter). The handler
 * then reads the parsed body with svc_req_json, which cannot fail any more.
 * Returns SVC_OK, SVC_ENOTFOUND (no such route: add the route first; the
 * start then stops as for an invalid declaration), SVC_EINVAL (a NULL
 * argument, or the workers run). The schema itself is checked at start.
 */
int svc_app_route_spec(svc_app *app, const char *method, const char *pattern, const svc_route_spec *spec);

/*
 * Validates v against s outside a request (configuration, a message):
 * SVC_OK, or SVC_EINVAL with the first problem in err, as a 400's message
 * says it ("items/0/quantity must be at least 1"; "value must be ..." for v
 * itself), also for a schema that is itself invalid; SVC_ENOMEM. err may be
 * NULL. It checks and compiles s on every call: for start-up, not a hot path.
 * Thread-safe.
 */
int svc_schema_validate(const svc_schema *s, const json_t *v, char *err, size_t errlen);

/*
 * Reads the members of v, a JSON object valid for object (a declared body,
 * once the library checked it), into the struct at out, each property whose
 * schema has an .at (SVC_AT) into that member: a string's bytes and a NUL
 * into a char array; an integer into an int64_t, a number into a double, a
 * boolean into a bool; an array or an object as compact JSON text and a NUL
 * into a char array. Returns the properties v sets, read or not: bit i for
 * properties[i] (an object with members has at most 64 properties).
 * The members are checked at start for every schema a route declares (exit
 * 2, as any declaration error): the size of an int64_t, double or bool; for
 * a string 4 bytes a character + 1; for JSON text the longest the schema
 * admits + 1 (a string's character 4 bytes, 6 without .text, for escapes);
 * a string, array or object with nothing bounding its length has no member.
 * A value beyond its member (a schema no route declares) is not read and
 * not in the mask.
 */
uint64_t svc_json_read(const svc_schema *object, const json_t *v, void *out);

/* The index in fields (ended by {0}) of the field named name[0..len), or -1. */
int svc_field_index(const svc_field *fields, const char *name, size_t len);

#ifdef __cplusplus
}
#endif
#endif
