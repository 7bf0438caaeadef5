/*
 * svckit/json.h: JSON in and out.
 *
 * Parsing is jansson (Debian's libjansson) behind limits that jansson lacks:
 * total size, nesting depth, string length, and one clear error message that
 * says where the input went wrong. Values are jansson's json_t, so handlers use
 * the jansson API (json_object_get, json_integer_value, ...) directly.
 *
 * Writing responses uses svc_jw, a streaming writer into an svc_buf that never
 * builds a tree: it is what makes a 6 KB list cheap to serve.
 */
#ifndef SVCKIT_JSON_H
#define SVCKIT_JSON_H

#include <jansson.h>
#include <stdint.h>

#include "svckit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default limits; a service may pass its own svc_json_limits. */
#define SVC_JSON_MAX_DEPTH 32
#define SVC_JSON_MAX_BYTES (1024 * 1024)
#define SVC_JSON_MAX_STRING (64 * 1024)

typedef struct svc_json_limits {
    size_t max_bytes;   /* whole document; 0 means SVC_JSON_MAX_BYTES */
    int max_depth;      /* arrays/objects nested; 0 means SVC_JSON_MAX_DEPTH */
    size_t max_string;  /* one string or key, in bytes; 0 means SVC_JSON_MAX_STRING */
} svc_json_limits;

/*
 * Parses exactly one JSON value from data[0..len) (UTF-8, no trailing bytes but
 * whitespace, duplicate keys rejected). On success returns SVC_OK and a new
 * reference in *out that the caller json_decref()s. On failure returns
 * SVC_EINVAL (syntax; err gets e.g. "invalid JSON at line 1, column 7: ...")
 * or SVC_ERANGE (a limit; err names it), and *out is NULL. limits may be NULL
 * for the defaults; err may be NULL; errlen is err's size.
 */
int svc_json_parse(const char *data, size_t len, const svc_json_limits *limits,
                   json_t **out, char *err, size_t errlen);

/* ---- streaming writer -----------------------------------------------------
 * Usage:
 *     svc_jw w; svc_jw_init(&w, &buf);
 *     svc_jw_obj_begin(&w);
 *       svc_jw_key(&w, "id"); svc_jw_i64(&w, 7);
 *       svc_jw_key(&w, "title"); svc_jw_str(&w, title);
 *     svc_jw_obj_end(&w);
 * Commas are inserted automatically. Strings are escaped per RFC 8259 (control
 * characters as \u00XX, "/" left alone); invalid UTF-8 is replaced by U+FFFD so
 * that the output is always valid JSON. Nesting deeper than SVC_JW_MAX_DEPTH
 * or a key in the wrong place sets w->err. Errors (and buffer OOM) are sticky:
 * check svc_jw_ok() once at the end. */

#define SVC_JW_MAX_DEPTH 64

typedef struct svc_jw {
    svc_buf *buf;
    int depth;
    int err;                            /* SVC_OK or the first error */
    unsigned char need_comma[SVC_JW_MAX_DEPTH + 1];
    unsigned char in_object[SVC_JW_MAX_DEPTH + 1];
    unsigned char after_key;
} svc_jw;

void svc_jw_init(svc_jw *w, svc_buf *buf);
void svc_jw_obj_begin(svc_jw *w);
void svc_jw_obj_end(svc_jw *w);
void svc_jw_arr_begin(svc_jw *w);
void svc_jw_arr_end(svc_jw *w);
void svc_jw_key(svc_jw *w, const char *key);
void svc_jw_keyn(svc_jw *w, const char *key, size_t len);
void svc_jw_str(svc_jw *w, const char *s);      /* NULL writes null */
void svc_jw_strn(svc_jw *w, const char *s, size_t len);
void svc_jw_i64(svc_jw *w, int64_t v);
/* Shortest representation that round-trips; NaN and infinities write null. */
void svc_jw_f64(svc_jw *w, double v);
void svc_jw_bool(svc_jw *w, int v);
void svc_jw_null(svc_jw *w);
/* Appends already-serialised JSON as one value (trusted input only). */
void svc_jw_raw(svc_jw *w, const char *json, size_t len);
/* Writes a jansson value (any type) as one value. */
void svc_jw_value(svc_jw *w, const json_t *v);
/* SVC_OK if every call succeeded and depth is back to 0. */
int svc_jw_ok(const svc_jw *w);

/* Escapes s[0..len) as a JSON string including the quotes into b. */
void svc_json_escape(svc_buf *b, const char *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif
