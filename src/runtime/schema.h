/*
 * Internal: the validator behind declared routes (svckit/schema.h) and the
 * OpenAPI document made from the same declarations.
 *
 * A schema set holds what checking a declaration produced: its compiled
 * patterns, looked up by the schema that names them. Prepare every schema
 * once (at start, single-threaded); validation then only reads the set and
 * may run on any number of threads.
 */
#ifndef SVC_RUNTIME_SCHEMA_H
#define SVC_RUNTIME_SCHEMA_H

#include <jansson.h>
#include <regex.h>

#include "svckit/schema.h"

/* Bytes of a JSON pointer kept in a detail; a longer one is cut. */
#define SVC__POINTER_MAX 128
#define SVC__PROBLEM_MAX 160

/* A schema's compiled pattern. One that is a single bracket expression
 * ("^[a-z0-9-]+$", "^[...]*$") is also a byte set, matched by table
 * lookup: regexec costs some 200 instructions a byte. */
typedef struct svc__pattern {
    const svc_schema *schema;
    regex_t re;
    int bytes;                       /* 1: set and min say it all */
    int min;                         /* bytes at least (1 for '+', 0 for '*') */
    unsigned char set[32];           /* bit b: byte b allowed */
} svc__pattern;

typedef struct svc__schema_set {
    svc__pattern *patterns;
    int npatterns;
} svc__schema_set;

typedef struct svc__problem {
    const char *in;                  /* "path", "query" or "body" */
    char path[SVC__POINTER_MAX];
    char text[SVC__PROBLEM_MAX];
} svc__problem;

/* Problems found, the first SVC_SCHEMA_MAX_DETAILS of them kept; more is
 * set when there were others (the walk stops at the first one past). */
typedef struct svc__problems {
    int n;
    int more;
    svc__problem list[SVC_SCHEMA_MAX_DETAILS];
} svc__problems;

/* Checks schema s (recursively) and compiles its patterns into set: SVC_OK,
 * or SVC_EINVAL with err naming where ("/properties/title: max_length below
 * min_length"), or SVC_ENOMEM. */
int svc__schema_prepare(svc__schema_set *set, const svc_schema *s, char *err, size_t errlen);
/* Checks a route's whole declaration (its parameters against pattern). */
int svc__schema_prepare_route(svc__schema_set *set, const char *pattern, const svc_route_spec *spec, char *err,
                              size_t errlen);
void svc__schema_set_free(svc__schema_set *set);

/* Validates v against s (prepared in set), adding what is wrong to p under
 * "in" with pointers from "" (the root). */
void svc__schema_validate(const svc__schema_set *set, const svc_schema *s, const json_t *v, const char *in,
                          svc__problems *p);
/* Validates a parameter's text (a path segment or a query value) against s,
 * its pointer "/name": value[0..n) (which need not end there), or a C string. */
void svc__schema_validate_textn(const svc__schema_set *set, const svc_schema *s, const char *name,
                                const char *value, size_t n, const char *in, svc__problems *p);
void svc__schema_validate_text(const svc__schema_set *set, const svc_schema *s, const char *name,
                               const char *value, const char *in, svc__problems *p);

/* The first problem as a message ("title is required (and 2 more problems)"). */
void svc__problems_message(const svc__problems *p, char *out, size_t len);

#endif
