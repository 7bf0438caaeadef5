/*
 * Declared routes: the schema validator, the check of declarations at start,
 * and the step of dispatch that validates a request before its handler.
 */
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"
#include "runtime/schema.h"

/* ---- declarations ------------------------------------------------------------ */

static int decl_error(char *err, size_t len, const char *at, const char *fmt, ...) SVC_PRINTF(4, 5);
static int decl_error(char *err, size_t len, const char *at, const char *fmt, ...) {
    int n = snprintf(err, len, "%s%s", at, *at ? ": " : "");
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < len) vsnprintf(err + n, len - (size_t)n, fmt, ap);
    va_end(ap);
    return SVC_EINVAL;
}

/* "^[...]+$" or "^[...]*$" whose bracket is plain printable ASCII (no
 * negation, no '[', '\\' or ']' inside): its bytes into p->set. 0 for any
 * other pattern, which regexec matches. */
static int byte_class(const char *pat, svc__pattern *p) {
    size_t n = strlen(pat);
    if (n < 6 || strncmp(pat, "^[", 2) != 0 || strcmp(pat + n - 3, "]+$") * strcmp(pat + n - 3, "]*$") != 0)
        return 0;
    const char *c = pat + 2, *end = pat + n - 3;
    if (*c == '^') return 0;
    memset(p->set, 0, sizeof p->set);
    for (; c < end; c++) {
        unsigned char lo = (unsigned char)*c, hi = lo;
        if (c + 2 < end && c[1] == '-') hi = (unsigned char)c[2], c += 2;
        if (lo < 0x20 || lo > 0x7E || hi < lo || hi > 0x7E || strchr("[\\]", lo) || strchr("[\\]", hi)) return 0;
        for (unsigned b = lo; b <= hi; b++) p->set[b >> 3] |= (unsigned char)(1u << (b & 7));
    }
    p->min = pat[n - 2] == '+';
    return 1;
}

static const svc__pattern *pattern_of(const svc__schema_set *set, const svc_schema *s) {
    for (int i = 0; i < set->npatterns; i++)
        if (set->patterns[i].schema == s) return &set->patterns[i];
    return NULL;
}

/* The longest compact JSON text (jansson's) of a value s admits, in bytes,
 * or SIZE_MAX when nothing bounds it. A character of a string takes at most
 * 4 bytes (UTF-8, or an escape \" \\ \t \n), 6 when control characters
 * may come (\u0001); an integer 20, any number 25 (%.17g with sign and
 * exponent). */
static size_t json_bound(const svc_schema *s) {
    size_t n = 2, item;
    switch (s->type) {
    case SVC_STRING:
        return s->max_length ? (s->text ? 4 : 6) * (size_t)s->max_length + 2 : SIZE_MAX;
    case SVC_INTEGER: return 20;
    case SVC_NUMBER: return 25;
    case SVC_BOOLEAN: return 5;
    case SVC_ARRAY:
        if (!s->items || !s->max_items || (item = json_bound(s->items)) == SIZE_MAX) return SIZE_MAX;
        return 2 + (size_t)s->max_items * (item + 1);
    case SVC_OBJECT:
        if (!s->properties || s->open) return SIZE_MAX;
        for (const svc_field *f = s->properties; f->name; f++) {
            if ((item = json_bound(f->schema)) == SIZE_MAX) return SIZE_MAX;
            n += 2 * strlen(f->name) + 2 + 1 + item + 1; /* "name":value, */
        }
        return n;
    default: return SIZE_MAX;
    }
}

/* A property with a member (.at): the member fits every value. */
static int member_ok(const svc_schema *s, const char *at, char *err, size_t len) {
    size_t need = s->type == SVC_INTEGER ? sizeof(int64_t)
                  : s->type == SVC_NUMBER ? sizeof(double)
                  : s->type == SVC_BOOLEAN ? sizeof(bool)
                  : s->type == SVC_STRING ? (s->max_length ? 4 * (size_t)s->max_length + 1 : SIZE_MAX) /* UTF-8, NUL */
                  : s->type == SVC_ANY ? SIZE_MAX
                  : json_bound(s);
    if (need != SIZE_MAX && (s->type == SVC_ARRAY || s->type == SVC_OBJECT)) need += 1; /* the NUL */
    if (need == SIZE_MAX)
        return decl_error(err, len, at, "has a member, but nothing limits its length (max_length, max_items, properties)");
    int exact = s->type == SVC_INTEGER || s->type == SVC_NUMBER || s->type == SVC_BOOLEAN;
    if (exact ? s->at.size != need : s->at.size < need)
        return decl_error(err, len, at, "has a member of %zu bytes; it takes %s%zu", s->at.size,
                          exact ? "" : "up to ", need);
    return SVC_OK;
}

static int prepare_at(svc__schema_set *set, const svc_schema *s, char *at, int depth, char *err, size_t len) {
    if (!s) return decl_error(err, len, at, "no schema");
    if (depth > SVC_SCHEMA_MAX_DEPTH) return decl_error(err, len, at, "nested deeper than %d", SVC_SCHEMA_MAX_DEPTH);
    if (s->type < SVC_ANY || s->type > SVC_BOOLEAN) return decl_error(err, len, at, "unknown type %d", (int)s->type);
    if (s->min_length < 0 || s->max_length < 0 || (s->max_length && s->max_length < s->min_length))
        return decl_error(err, len, at, "bad min_length/max_length");
    if (s->min_items < 0 || s->max_items < 0 || (s->max_items && s->max_items < s->min_items))
        return decl_error(err, len, at, "bad min_items/max_items");
    if (s->min_properties < 0) return decl_error(err, len, at, "negative min_properties");
    if (s->has_min && s->has_max && !(s->minimum <= s->maximum))
        return decl_error(err, len, at, "maximum below minimum");
    if ((s->has_min && !isfinite(s->minimum)) || (s->has_max && !isfinite(s->maximum)))
        return decl_error(err, len, at, "minimum and maximum must be finite");
    if ((s->pattern || s->enum_values || s->text) && s->type != SVC_STRING)
        return decl_error(err, len, at, "pattern, enum_values and text are for strings");
    /* A schema met again (a field shared by the bodies and answers of
     * several routes) keeps the pattern compiled the first time. */
    if (s->pattern && !pattern_of(set, s)) {
        svc__pattern *p = realloc(set->patterns, (size_t)(set->npatterns + 1) * sizeof *p);
        if (!p) return SVC_ENOMEM;
        set->patterns = p;
        p += set->npatterns;
        p->schema = s;
        int rc = regcomp(&p->re, s->pattern, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char why[128];
            regerror(rc, &p->re, why, sizeof why);
            return decl_error(err, len, at, "pattern %s: %s", s->pattern, why);
        }
        p->bytes = byte_class(s->pattern, p);
        set->npatterns++;
    }
    size_t n = strlen(at);
    if (s->properties) {
        if (s->type != SVC_OBJECT) return decl_error(err, len, at, "properties are for objects");
        int i = 0;
        for (const svc_field *f = s->properties; f->name; f++, i++) {
            snprintf(at + n, SVC__POINTER_MAX - n, "/properties/%s", f->name);
            int rc = prepare_at(set, f->schema, at, depth + 1, err, len);
            if (rc == SVC_OK && f->schema->at.size)
                rc = i < 64 ? member_ok(f->schema, at, err, len) : decl_error(err, len, at, "a member past the 64th property");
            at[n] = '\0';
            if (rc != SVC_OK) return rc;
        }
    }
    for (const char *const *r = s->required; r && *r; r++) {
        const svc_field *f = s->properties;
        while (f && f->name && strcmp(f->name, *r) != 0) f++;
        if (!f || !f->name) return decl_error(err, len, at, "required \"%s\" is not among the properties", *r);
    }
    if (s->items) {
        if (s->type != SVC_ARRAY) return decl_error(err, len, at, "items are for arrays");
        snprintf(at + n, SVC__POINTER_MAX - n, "/items");
        int rc = prepare_at(set, s->items, at, depth + 1, err, len);
        at[n] = '\0';
        if (rc != SVC_OK) return rc;
    }
    return SVC_OK;
}

int svc__schema_prepare(svc__schema_set *set, const svc_schema *s, char *err, size_t errlen) {
    char at[SVC__POINTER_MAX] = "";
    return prepare_at(set, s, at, 0, err, errlen);
}

/* A parameter's schema: a scalar (a path one: a string or an integer), or
 * (query only) an array of scalars. */
static int param_ok(const svc_param *p, const char *in, char *err, size_t len) {
    svc_type t = p->schema ? p->schema->type : SVC_ANY;
    int query = strcmp(in, "query") == 0, path = strcmp(in, "path") == 0;
    if (p->schema && p->schema->repeat && !(query && t == SVC_ARRAY)) {
        snprintf(err, len, "parameter \"%s\": only a query array may repeat", p->name);
        return SVC_EINVAL;
    }
    if (t == SVC_ARRAY && query && p->schema->items && p->schema->items->type >= SVC_STRING) return SVC_OK;
    if (t == SVC_STRING || t == SVC_INTEGER) return SVC_OK;
    if (!path && (t == SVC_NUMBER || t == SVC_BOOLEAN)) return SVC_OK;
    snprintf(err, len, "parameter \"%s\": a %s parameter must be %s", p->name, in,
             path    ? "a string or an integer"
             : query ? "a string, integer, number, boolean or an array of those"
                     : "a string, integer, number or boolean");
    return SVC_EINVAL;
}

static int pattern_has_param(const char *pattern, const char *name) {
    size_t n = strlen(name);
    for (const char *s = strchr(pattern, '/'); s; s = strchr(s + 1, '/'))
        if ((s[1] == ':' || s[1] == '*') && strncmp(s + 2, name, n) == 0 && (s[2 + n] == '/' || !s[2 + n]))
            return 1;
    return 0;
}

int svc__schema_prepare_route(svc__schema_set *set, const char *pattern, const svc_route_spec *spec, char *err,
                              size_t errlen) {
    char at[SVC__POINTER_MAX];
    static const char *const ins[] = {"path", "query", "header"};
    for (int k = 0; k < 3; k++) {
        const svc_param *list = k == 0 ? spec->path : k == 1 ? spec->query : spec->header;
        for (const svc_param *p = list; p && p->name; p++) {
            if (k == 0 && !pattern_has_param(pattern, p->name)) {
                snprintf(err, errlen, "path parameter \"%s\" is not in the pattern", p->name);
                return SVC_EINVAL;
            }
            if (param_ok(p, ins[k], err, errlen) != SVC_OK) return SVC_EINVAL;
            snprintf(at, sizeof at, "%s parameter %s", ins[k], p->name);
            int rc = prepare_at(set, p->schema, at, 0, err, errlen);
            if (rc != SVC_OK) return rc;
        }
    }
    if (spec->body) {
        snprintf(at, sizeof at, "body");
        int rc = prepare_at(set, spec->body, at, 0, err, errlen);
        if (rc != SVC_OK) return rc;
    }
    for (const svc_response *r = spec->responses; r && r->status; r++) {
        if (r->status < 100 || r->status > 599) {
            snprintf(err, errlen, "response status %d", r->status);
            return SVC_EINVAL;
        }
        if (!r->schema) continue;
        snprintf(at, sizeof at, "response %d", r->status);
        int rc = prepare_at(set, r->schema, at, 0, err, errlen);
        if (rc != SVC_OK) return rc;
    }
    return SVC_OK;
}

void svc__schema_set_free(svc__schema_set *set) {
    for (int i = 0; i < set->npatterns; i++) regfree(&set->patterns[i].re);
    free(set->patterns);
    set->patterns = NULL;
    set->npatterns = 0;
}

/* ---- validation --------------------------------------------------------------- */

/* Where the walk is: a stack of keys and indexes, rendered as a JSON
 * pointer only when a problem is found (most values have none). */
#define WALK_DEPTH (SVC_SCHEMA_MAX_DEPTH + 2) /* the schema's levels, a parameter's name */
typedef struct walk {
    const svc__schema_set *set;
    const char *in;
    svc__problems *p;
    int depth;
    struct {
        const char *key;             /* NULL: an index */
        size_t len;                  /* of key, or the index */
    } at[WALK_DEPTH];
} walk;

static int full(const walk *w) { return w->p->more; }

static void push(walk *w, const char *key, size_t len) {
    if (w->depth < WALK_DEPTH) w->at[w->depth].key = key, w->at[w->depth].len = len;
    w->depth++;
}

static void push_index(walk *w, size_t i) { push(w, NULL, i); }

static void pop(walk *w) { w->depth--; }

/* The pointer (RFC 6901: ~ as ~0, / as ~1) into out; one too long for it
 * ends in "...". */
static void pointer(const walk *w, char out[SVC__POINTER_MAX]) {
    size_t o = 0, cap = SVC__POINTER_MAX - 4;
    int cut = 0;
    for (int d = 0; d < w->depth && d < WALK_DEPTH && !cut; d++) {
        char index[24];
        const char *tok = w->at[d].key;
        size_t n = w->at[d].len;
        if (!tok) n = (size_t)snprintf(index, sizeof index, "%zu", n), tok = index;
        if (o + 1 >= cap) break;
        out[o++] = '/';
        size_t i = 0;
        for (; i < n && o + 2 < cap; i++) {
            if (tok[i] == '~' || tok[i] == '/') {
                out[o++] = '~';
                out[o++] = tok[i] == '~' ? '0' : '1';
            } else {
                out[o++] = tok[i];
            }
        }
        cut = i < n;
    }
    if (cut) memcpy(out + o, "...", 3), o += 3;
    out[o] = '\0';
}

static void problem(walk *w, const char *fmt, ...) SVC_PRINTF(2, 3);
static void problem(walk *w, const char *fmt, ...) {
    svc__problems *p = w->p;
    if (p->n == SVC_SCHEMA_MAX_DETAILS) {
        p->more = 1;
        return;
    }
    svc__problem *d = &p->list[p->n++];
    d->in = w->in;
    pointer(w, d->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->text, sizeof d->text, fmt, ap);
    va_end(ap);
}

/* Characters of valid UTF-8 s[0..n), or -1 if it is not valid UTF-8
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static long utf8_chars(const unsigned char *s, size_t n) {
    long chars = 0;
    for (size_t i = 0; i < n; chars++) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!k || i + k > n) return -1;
        unsigned long cp = k == 1 ? c : c & (0x7F >> k);
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return -1;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        static const unsigned long least[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < least[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
        i += k;
    }
    return chars;
}

/* The first control character but tab and newline (C0, DEL, C1): its code
 * point and its position in characters from 1 in *at; -1 if none. */
static long first_control(const unsigned char *s, size_t n, size_t *at) {
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) {
        if ((s[i] & 0xC0) == 0x80) continue;
        chars++;
        long cp = -1;
        if ((s[i] < 0x20 && s[i] != '\n' && s[i] != '\t') || s[i] == 0x7F) cp = s[i];
        else if (s[i] == 0xC2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9F) cp = s[i + 1];
        if (cp >= 0) {
            *at = chars;
            return cp;
        }
    }
    return -1;
}

static int unsafe_integer(int64_t i) { return i > (INT64_C(1) << 53) || i < -(INT64_C(1) << 53); }

/* v[0..n) (which need not end there) matches the pattern. */
static int pattern_match(const svc__pattern *p, const char *v, size_t n) {
    if (!p->bytes) {
        regmatch_t range = {.rm_so = 0, .rm_eo = (regoff_t)n};
        return regexec(&p->re, v, 1, &range, REG_STARTEND) == 0;
    }
    if (n < (size_t)p->min) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(p->set[(unsigned char)v[i] >> 3] & (1u << ((unsigned char)v[i] & 7)))) return 0;
    return 1;
}

static void check_string(walk *w, const svc_schema *s, const char *v, size_t n) {
    long chars = utf8_chars((const unsigned char *)v, n);
    if (chars < 0 || memchr(v, '\0', n)) {
        problem(w, "must be valid UTF-8 text without NUL");
        return;
    }
    if (chars < s->min_length || (s->max_length && chars > s->max_length)) {
        if (!s->max_length) problem(w, "must be at least %lld characters long", (long long)s->min_length);
        else problem(w, "must be %lld to %lld characters long", (long long)s->min_length, (long long)s->max_length);
        return;
    }
    size_t at;
    long cp = s->text ? first_control((const unsigned char *)v, n, &at) : -1;
    if (cp >= 0) {
        problem(w, "must not contain control characters but tab and newline: U+%04lX at character %zu", cp, at);
        return;
    }
    if (s->enum_values) {
        const char *const *e = s->enum_values;
        while (*e && !(strlen(*e) == n && memcmp(*e, v, n) == 0)) e++;
        if (!*e) {
            char list[SVC__PROBLEM_MAX - 20] = "";
            size_t len = 0;
            for (e = s->enum_values; *e && len < sizeof list; e++) {
                int k = snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", *e);
                len += k > 0 ? (size_t)k : 0;
            }
            problem(w, "must be one of %s", list);
            return;
        }
    }
    const svc__pattern *re = s->pattern ? pattern_of(w->set, s) : NULL;
    if (re && !pattern_match(re, v, n)) {
        if (s->description) problem(w, "must be %s", s->description);
        else problem(w, "must match %s", s->pattern);
    }
}

/* A bound as a person writes it: 1000000000, not 1e+09. */
static void number_text(double d, char out[32]) {
    if (d == floor(d) && fabs(d) <= SVC_SCHEMA_MAX_SAFE_INTEGER) snprintf(out, 32, "%lld", (long long)d);
    else snprintf(out, 32, "%.15g", d);
}

/* unsafe: an integer beyond +-2^53 (which d may have rounded to 2^53). */
static void check_number(walk *w, const svc_schema *s, double d, int unsafe) {
    const char *what = s->type == SVC_INTEGER ? "an integer" : "a number";
    if (unsafe) {
        problem(w, "must be %s from -2^53 to 2^53", what);
        return;
    }
    int low = s->has_min && d < s->minimum, high = s->has_max && d > s->maximum;
    if (!low && !high) return;
    char lo[32], hi[32];
    number_text(s->minimum, lo);
    number_text(s->maximum, hi);
    if (s->has_min && s->has_max) problem(w, "must be %s from %s to %s", what, lo, hi);
    else if (low) problem(w, "must be at least %s", lo);
    else problem(w, "must be at most %s", hi);
}

static const char *type_name(svc_type t) {
    switch (t) {
    case SVC_OBJECT: return "an object";
    case SVC_ARRAY: return "an array";
    case SVC_STRING: return "a string";
    case SVC_INTEGER: return "an integer";
    case SVC_NUMBER: return "a number";
    case SVC_BOOLEAN: return "a boolean";
    default: return "a value";
    }
}

static void check_value(walk *w, const svc_schema *s, const json_t *v);

static void check_object(walk *w, const svc_schema *s, const json_t *v) {
    if (s->properties) {
        const char *key;
        json_t *m;
        json_object_foreach((json_t *)v, key, m) {
            const svc_field *f = s->properties;
            while (f->name && (f->name[0] != key[0] || strcmp(f->name, key) != 0)) f++;
            if (!f->name && s->open) continue;
            push(w, key, strlen(key));
            if (!f->name) problem(w, "is an unknown field");
            else if (f->schema->read_only) problem(w, "is read-only");
            else check_value(w, f->schema, m);
            pop(w);
            if (full(w)) return;
        }
    }
    for (const char *const *r = s->required; r && *r; r++) {
        if (json_object_get(v, *r)) continue;
        push(w, *r, strlen(*r));
        problem(w, "is required");
        pop(w);
    }
    if ((int64_t)json_object_size(v) < s->min_properties)
        problem(w, "must set at least %lld field%s", (long long)s->min_properties, s->min_properties == 1 ? "" : "s");
}

static void check_array(walk *w, const svc_schema *s, const json_t *v) {
    int64_t n = (int64_t)json_array_size(v);
    if (n < s->min_items || (s->max_items && n > s->max_items)) {
        if (!s->max_items) problem(w, "must have at least %lld items", (long long)s->min_items);
        else problem(w, "must have %lld to %lld items", (long long)s->min_items, (long long)s->max_items);
        return;
    }
    if (!s->items) return;
    for (size_t i = 0; i < (size_t)n && !full(w); i++) {
        push_index(w, i);
        check_value(w, s->items, json_array_get(v, i));
        pop(w);
    }
}

static void check_value(walk *w, const svc_schema *s, const json_t *v) {
    switch (s->type) {
    case SVC_ANY: return;
    case SVC_OBJECT:
        if (!json_is_object(v)) break;
        check_object(w, s, v);
        return;
    case SVC_ARRAY:
        if (!json_is_array(v)) break;
        check_array(w, s, v);
        return;
    case SVC_STRING:
        if (!json_is_string(v)) break;
        check_string(w, s, json_string_value(v), json_string_length(v));
        return;
    case SVC_INTEGER:
        if (!json_is_integer(v)) break;
        check_number(w, s, (double)json_integer_value(v), unsafe_integer(json_integer_value(v)));
        return;
    case SVC_NUMBER:
        if (!json_is_number(v)) break;
        check_number(w, s, json_number_value(v), json_is_integer(v) && unsafe_integer(json_integer_value(v)));
        return;
    case SVC_BOOLEAN:
        if (!json_is_boolean(v)) break;
        return;
    }
    problem(w, "must be %s", type_name(s->type));
}

void svc__schema_validate(const svc__schema_set *set, const svc_schema *s, const json_t *v, const char *in,
                          svc__problems *p) {
    walk w = {.set = set, .in = in, .p = p};
    check_value(&w, s, v);
}

/* m into s's member at to, if it is of s's type and fits: 1, else 0. */
static int read_member(const svc_schema *s, const json_t *m, char *to) {
    size_t n;
    switch (s->type) {
    case SVC_STRING:
        if (!json_is_string(m) || (n = json_string_length(m)) >= s->at.size) return 0;
        memcpy(to, json_string_value(m), n + 1);
        return 1;
    case SVC_INTEGER:
        if (!json_is_integer(m)) return 0;
        *(int64_t *)(void *)to = json_integer_value(m);
        return 1;
    case SVC_NUMBER:
        if (!json_is_number(m)) return 0;
        *(double *)(void *)to = json_number_value(m);
        return 1;
    case SVC_BOOLEAN:
        if (!json_is_boolean(m)) return 0;
        *(bool *)(void *)to = json_is_true(m);
        return 1;
    case SVC_ARRAY:
    case SVC_OBJECT:
        if ((n = json_dumpb(m, to, s->at.size - 1, JSON_COMPACT)) == 0 || n >= s->at.size) return 0;
        to[n] = '\0';
        return 1;
    default: return 0;
    }
}

uint64_t svc_json_read(const svc_schema *object, const json_t *v, void *out) {
    uint64_t set = 0;
    const char *key;
    json_t *m;
    json_object_foreach((json_t *)v, key, m) {
        int i = svc_field_index(object->properties, key, strlen(key));
        if (i < 0 || i >= 64) continue;
        const svc_schema *s = object->properties[i].schema;
        if (!s->at.size || read_member(s, m, (char *)out + s->at.offset)) set |= UINT64_C(1) << i;
    }
    return set;
}

int svc_field_index(const svc_field *fields, const char *name, size_t len) {
    for (int i = 0; fields && fields[i].name; i++)
        if (strncmp(fields[i].name, name, len) == 0 && fields[i].name[len] == '\0') return i;
    return -1;
}

/* A parameter's text as its scalar type. */
static void check_scalar_text(walk *w, const svc_schema *s, const char *v, size_t n) {
    char buf[64];
    if (s->type == SVC_STRING) {
        check_string(w, s, v, n);
        return;
    }
    if (s->type == SVC_BOOLEAN) {
        if (!((n == 4 && memcmp(v, "true", 4) == 0) || (n == 5 && memcmp(v, "false", 5) == 0)))
            problem(w, "must be true or false");
        return;
    }
    /* Numbers: the whole text, at most 63 bytes. */
    int ok = n > 0 && n < sizeof buf;
    if (ok) {
        memcpy(buf, v, n);
        buf[n] = '\0';
    }
    if (s->type == SVC_INTEGER) {
        int64_t i;
        if (!ok || svc_parse_i64(buf, &i) != SVC_OK) {
            char lo[32], hi[32];
            number_text(s->minimum, lo);
            number_text(s->maximum, hi);
            if (s->has_min && s->has_max) problem(w, "must be an integer from %s to %s", lo, hi);
            else problem(w, "must be an integer");
            return;
        }
        check_number(w, s, (double)i, unsafe_integer(i));
        return;
    }
    /* strtod skips leading white space (a decoded %09 too) and reads hex,
     * inf and nan: none is a JSON number. */
    char *end = NULL;
    double d = ok ? strtod(buf, &end) : 0;
    if (!ok || *end || !isfinite(d) || isspace((unsigned char)buf[0]) || strpbrk(buf, "xXnN")) {
        problem(w, "must be a number");
        return;
    }
    check_number(w, s, d, 0);
}

void svc__schema_validate_textn(const svc__schema_set *set, const svc_schema *s, const char *name,
                                const char *value, size_t n, const char *in, svc__problems *p) {
    walk w = {.set = set, .in = in, .p = p};
    push(&w, name, strlen(name));
    if (s->type != SVC_ARRAY) {
        check_scalar_text(&w, s, value, n);
        return;
    }
    /* form style, explode false: "a,b,c" */
    size_t count = 0;
    for (const char *e = value, *end = value + n;; count++) {
        const char *comma = memchr(e, ',', (size_t)(end - e));
        size_t k = comma ? (size_t)(comma - e) : (size_t)(end - e);
        if (s->max_items && (int64_t)count >= s->max_items) {
            problem(&w, "must have at most %lld items", (long long)s->max_items);
            return;
        }
        push_index(&w, count);
        check_scalar_text(&w, s->items, e, k);
        pop(&w);
        if (full(&w) || !comma) break;
        e = comma + 1;
    }
    if ((int64_t)count + 1 < s->min_items) problem(&w, "must have at least %lld items", (long long)s->min_items);
}

void svc__schema_validate_text(const svc__schema_set *set, const svc_schema *s, const char *name,
                               const char *value, const char *in, svc__problems *p) {
    svc__schema_validate_textn(set, s, name, value, strlen(value), in, p);
}

void svc__problems_message(const svc__problems *p, char *out, size_t len) {
    if (!p->n) {
        snprintf(out, len, "invalid request");
        return;
    }
    const svc__problem *d = &p->list[0];
    const char *name = d->path[0] ? d->path + 1 : strcmp(d->in, "body") == 0 ? "request body" : d->in;
    if (!out || !len) return;
    int k = snprintf(out, len, "%s %s", name, d->text);
    if (k < 0 || (size_t)k >= len || (p->n == 1 && !p->more)) return;
    if (p->more) snprintf(out + k, len - (size_t)k, " (and more problems)");
    else snprintf(out + k, len - (size_t)k, " (and %d more problem%s)", p->n - 1, p->n == 2 ? "" : "s");
}

int svc_schema_validate(const svc_schema *s, const json_t *v, char *err, size_t errlen) {
    char why[256];
    svc__schema_set set = {0};
    int rc = svc__schema_prepare(&set, s, why, sizeof why);
    if (rc == SVC_EINVAL && err && errlen) snprintf(err, errlen, "invalid schema: %s", why);
    if (rc == SVC_OK) {
        svc__problems p;
        p.n = p.more = 0;
        svc__schema_validate(&set, s, v, "value", &p);
        if (p.n) {
            rc = SVC_EINVAL;
            if (err && errlen) svc__problems_message(&p, err, errlen);
        }
    }
    svc__schema_set_free(&set);
    return rc;
}

/* ---- the request ---------------------------------------------------------------- */

int svc_app_route_spec(svc_app *app, const char *method, const char *pattern, const svc_route_spec *spec) {
    if (!app || !method || !pattern || !spec || app->started) return SVC_EINVAL;
    for (svc_route_entry *e = app->routes; e; e = e->next) {
        if (strcmp(e->method, method) == 0 && strcmp(e->pattern, pattern) == 0) {
            e->spec = spec;
            return SVC_OK;
        }
    }
    /* Remembered for the start: the handler of the route meant may rely on
     * the checks, and services do not look at what this returns. */
    if (!app->spec_orphan[0])
        snprintf(app->spec_orphan, sizeof app->spec_orphan, "route %.16s %.100s: declared, but no such route",
                 method, pattern);
    return SVC_ENOTFOUND;
}

int svc__schema_prepare_app(svc_app *app, char *err, size_t errlen) {
    if (app->spec_orphan[0]) {
        snprintf(err, errlen, "%s", app->spec_orphan);
        return SVC_EINVAL;
    }
    for (const svc_route_entry *e = app->routes; e; e = e->next) {
        if (!e->spec) continue;
        char why[256];
        int rc = svc__schema_prepare_route(&app->schemas, e->pattern, e->spec, why, sizeof why);
        if (rc != SVC_OK) {
            snprintf(err, errlen, "route %s %s: %s", e->method, e->pattern, why);
            return rc;
        }
    }
    return SVC_OK;
}

/* Occurrences of name among the query's keys, up to 2, in one pass. Keys
 * are compared percent-decoded, as svc__query_get does; a key with no escape
 * (the usual case) is compared as it is. *value and *len get the first
 * one's value when neither it nor its key has an escape ('%' or '+'), else
 * *value is NULL (svc_req_query decodes it). */
static int query_find(const char *query, const char *name, size_t len, svc_arena *a, const char **value,
                      size_t *vlen) {
    int count = 0;
    *value = NULL;
    for (const char *q = query; *q && count < 2;) {
        const char *k = q;
        int escaped = 0;
        for (; *k && *k != '=' && *k != '&'; k++) escaped |= *k == '%' || *k == '+';
        size_t klen = (size_t)(k - q);
        int match;
        if (!escaped) {
            match = klen == len && memcmp(q, name, len) == 0;
        } else if (klen < SVC__POINTER_MAX) {
            char key[SVC__POINTER_MAX];
            memcpy(key, q, klen);
            key[klen] = '\0';
            match = svc__query_get(key, name, a) != NULL;
        } else {
            match = 0;
        }
        const char *v = *k == '=' ? k + 1 : k;
        for (k = v; *k && *k != '&'; k++) escaped |= *k == '%' || *k == '+';
        if (match && count++ == 0 && !escaped) {
            *value = v;
            *vlen = (size_t)(k - v);
        }
        q = *k ? k + 1 : k;
    }
    return count;
}

/* A problem with a parameter as a whole: "/name". */
static void param_problem(svc__problems *p, const char *in, const char *name, const char *text) {
    walk w = {.in = in, .p = p};
    push(&w, name, strlen(name));
    problem(&w, "%s", text);
}

static void write_problems(svc_res *res, const svc__problems *p) {
    char msg[SVC__PROBLEM_MAX + SVC__POINTER_MAX + 32];
    svc__problems_message(p, msg, sizeof msg);
    svc_jw *w = svc_res_jw(res, 400);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "error");
    svc_jw_obj_begin(w);
    svc_jw_key(w, "code"), svc_jw_str(w, "bad_request");
    svc_jw_key(w, "message"), svc_jw_str(w, msg);
    svc_jw_key(w, "details");
    svc_jw_arr_begin(w);
    for (int i = 0; i < p->n; i++) {
        svc_jw_obj_begin(w);
        svc_jw_key(w, "in"), svc_jw_str(w, p->list[i].in);
        svc_jw_key(w, "path"), svc_jw_str(w, p->list[i].path);
        svc_jw_key(w, "problem"), svc_jw_str(w, p->list[i].text);
        svc_jw_obj_end(w);
    }
    svc_jw_arr_end(w);
    svc_jw_obj_end(w);
    svc_jw_obj_end(w);
}

int svc__schema_request(svc_req *req) {
    const svc_route_spec *spec = req->route->spec;
    const svc__schema_set *set = &req->app->schemas;
    svc__problems p;
    p.n = p.more = 0;
    for (const svc_param *d = spec->path; d && d->name; d++) {
        const char *v = svc_req_param(req, d->name);
        if (v) svc__schema_validate_text(set, d->schema, d->name, v, "path", &p);
    }
    const char *query = svc_req_query_string(req);
    for (const svc_param *d = spec->query; d && d->name; d++) {
        const char *v;
        size_t vlen = 0;
        int n = *query ? query_find(query, d->name, strlen(d->name), req->arena, &v, &vlen) : 0;
        if (n > 1 && d->schema->repeat) { /* the occurrences add up to one list: select=a&select=b */
            if ((v = svc_req_query_all(req, d->name)) != NULL)
                svc__schema_validate_text(set, d->schema, d->name, v, "query", &p);
            else
                param_problem(&p, "query", d->name, "has a bad percent-escape or %00");
        } else if (n > 1) param_problem(&p, "query", d->name, "must not be repeated");
        else if (n == 1 && v) svc__schema_validate_textn(set, d->schema, d->name, v, vlen, "query", &p);
        else if (n == 1 && (v = svc_req_query(req, d->name)) != NULL)
            svc__schema_validate_text(set, d->schema, d->name, v, "query", &p);
        else if (n == 1) param_problem(&p, "query", d->name, "has a bad percent-escape or %00"); /* did not decode */
        else if (d->required) param_problem(&p, "query", d->name, "is required");
    }
    for (const svc_param *d = spec->header; d && d->name; d++) {
        const char *v = svc_req_header(req, d->name);
        if (v) svc__schema_validate_text(set, d->schema, d->name, v, "header", &p);
        else if (d->required) param_problem(&p, "header", d->name, "is required");
    }
    if (spec->body && !p.n) {
        json_t *body = svc_req_json(req, &req->res);
        if (!body) return SVC_EINVAL; /* answered: 400 or 415 */
        svc__schema_validate(set, spec->body, body, "body", &p);
    }
    if (!p.n) return SVC_OK;
    write_problems(&req->res, &p);
    return SVC_EINVAL;
}
