/* Environment vectors: the supervisor's own, plus what each child gets on top. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

extern char **environ;

static int grow(svc__env *e) {
    if (e->n + 1 < e->cap) return SVC_OK;
    size_t cap = e->cap ? e->cap * 2 : 64;
    char **v = realloc(e->vars, cap * sizeof *v);
    if (!v) return SVC_ENOMEM;
    e->vars = v;
    e->cap = cap;
    return SVC_OK;
}

static size_t name_len(const char *assignment) {
    const char *eq = strchr(assignment, '=');
    return eq ? (size_t)(eq - assignment) : strlen(assignment);
}

static int put_owned(svc__env *e, char *s) {
    size_t nl = name_len(s);
    for (size_t i = 0; i < e->n; i++) {
        if (name_len(e->vars[i]) == nl && memcmp(e->vars[i], s, nl) == 0) {
            free(e->vars[i]);
            e->vars[i] = s;
            return SVC_OK;
        }
    }
    if (grow(e) != SVC_OK) {
        free(s);
        return SVC_ENOMEM;
    }
    e->vars[e->n++] = s;
    e->vars[e->n] = NULL;
    return SVC_OK;
}

int svc__env_put(svc__env *e, const char *assignment) {
    if (!strchr(assignment, '=') || assignment[0] == '=') return SVC_EINVAL;
    char *s = strdup(assignment);
    if (!s) return SVC_ENOMEM;
    return put_owned(e, s);
}

int svc__env_set(svc__env *e, const char *name, const char *value) {
    size_t nl = strlen(name), vl = strlen(value);
    if (nl == 0 || strchr(name, '=')) return SVC_EINVAL;
    char *s = malloc(nl + vl + 2);
    if (!s) return SVC_ENOMEM;
    memcpy(s, name, nl);
    s[nl] = '=';
    memcpy(s + nl + 1, value, vl + 1);
    return put_owned(e, s);
}

int svc__env_from_environ(svc__env *e) {
    for (char **p = environ; p && *p; p++) {
        if (!strchr(*p, '=') || **p == '=') continue;
        int rc = svc__env_put(e, *p);
        if (rc != SVC_OK) return rc;
    }
    return SVC_OK;
}

const char *svc__env_get(const svc__env *e, const char *name, size_t len) {
    if (!e) return NULL;
    for (size_t i = 0; i < e->n; i++) {
        const char *v = e->vars[i];
        if (strncmp(v, name, len) == 0 && v[len] == '=') return v + len + 1;
    }
    return NULL;
}

void svc__env_free(svc__env *e) {
    if (!e) return;
    for (size_t i = 0; i < e->n; i++) free(e->vars[i]);
    free(e->vars);
    memset(e, 0, sizeof *e);
}
