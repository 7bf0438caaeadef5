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
    size_t max_string;  /* one string or key, in decoded UTF-8 bytes ("\u00e9" counts
                           2); 0 means SVC_JSON_MAX_STRING */
} svc_json_limits;

/*
 * Parses exactly one JSON value from data[0..len) (UTF-8, no trailing bytes but
 * whitespace, duplicate keys rejected). On success returns SVC_OK and a new
 * reference in *out that the caller json_decref()s. On failure returns
 * SVC_EINVAL (syntax; err gets e.g. "invalid JSON at line 1, column 7: ...")
 * or SVC_ERANGE (a limit; err names it: "JSON body larger than N bytes",
 * "JSON nested deeper than N levels", "JSON string longer than N bytes"), or
 * SVC_ENOMEM, and *out is NULL. Limits are checked by a pre-scan before
 * jansson allocates anything. NUL bytes are rejected, raw or as "\u0000", so
 * every string is a proper C string. Any value may be the top level. limits
 * may be NULL for the defaults (so may any of its fields be 0); err may be
 * NULL; errlen is err's size. Thread-safe.
 */
int svc_json_parse(const char *data, size_t len, const svc_json_limits *limits,
                   json_t **out, char *err, size_t errlen);

/*
 * The strict check behind "unknown field" errors: SVC_OK if every key of the
 * object obj is one of allowed (a NULL-terminated list of names; NULL counts
 * as an empty list). Otherwise SVC_EINVAL and, if unknown is not NULL,
 * *unknown is the first key not allowed, in obj's iteration order (the
 * document's order for what svc_json_parse returns), owned by obj; or NULL
 * when obj is not an object (or NULL). Reads only; thread-safe for an obj no
 * thread changes.
 */
int svc_json_only_keys(const json_t *obj, const char *const *allowed, const char **unknown);

/* ---- streaming writer -----------------------------------------------------
 * Usage:
 *     svc_jw w; svc_jw_init(&w, &buf);
 *     svc_jw_obj_begin(&w);
 *       svc_jw_key(&w, "id"); svc_jw_i64(&w, 7);
 *       svc_jw_key(&w, "title"); svc_jw_str(&w, title);
 *     svc_jw_obj_end(&w);
 * The writer appends one JSON document to buf (after whatever buf holds).
 * Commas are inserted automatically. Strings are escaped per RFC 8259 ('"',
 * '\\', control characters as \b \f \n \r \t or \u00XX; "/" and everything
 * else left alone); invalid UTF-8 (including overlong forms, surrogates and
 * code points above U+10FFFF) is replaced by U+FFFD so that the output is
 * always valid JSON. Errors are sticky in w->err, and after the first one
 * nothing more is written: SVC_ERANGE for nesting deeper than
 * SVC_JW_MAX_DEPTH; SVC_EINVAL for a value where a key is needed, a key
 * outside an object or twice in a row, an end without its begin, or a second
 * top-level value. Check svc_jw_ok() once at the end. */

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
/* Shortest representation that round-trips (0.1, 1e+300, 5e-324); integral
 * values keep a ".0" (12.0, -0.0) so that they read back as reals, as jansson
 * and Python print them. NaN and infinities write null. */
void svc_jw_f64(svc_jw *w, double v);
void svc_jw_bool(svc_jw *w, int v);
void svc_jw_null(svc_jw *w);
/* Appends already-serialised JSON as one value (trusted input only; not
 * checked). NULL or empty sets SVC_EINVAL. */
void svc_jw_raw(svc_jw *w, const char *json, size_t len);
/* Writes a jansson value (any type) as one value, object keys in jansson's
 * iteration (insertion) order. NULL writes null. A tree nested deeper than
 * SVC_JW_MAX_DEPTH sets SVC_ERANGE. */
void svc_jw_value(svc_jw *w, const json_t *v);
/* SVC_OK if every call succeeded and depth is back to 0 (an empty document
 * counts as OK); else w->err, SVC_ENOMEM if buf ran out of memory, or
 * SVC_EINVAL for an unfinished document. */
int svc_jw_ok(const svc_jw *w);

/* Appends s[0..len) to b as a JSON string, quotes included, escaped as the
 * writer escapes strings (invalid UTF-8 becomes U+FFFD). s NULL writes "".
 * Used by the logger; on b's OOM it appends nothing more. Thread-safe for
 * distinct buffers. */
void svc_json_escape(svc_buf *b, const char *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif
