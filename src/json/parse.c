/*
 * JSON parsing: jansson behind the limits it lacks.
 *
 * jansson caps nesting at 2048 levels and has no cap on size or string length,
 * and it allocates as it goes, so a hostile body could make it build a large
 * tree before failing. One linear pre-scan, far cheaper than the parse, rejects
 * such bodies first: it tracks whether it is inside a string exactly as a JSON
 * lexer does, so for every document jansson would accept, the limits it checks
 * are the real ones. Documents it misreads are malformed and jansson rejects
 * them anyway.
 */
#include <stdio.h>
#include <string.h>

#include "svckit/json.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...) SVC_PRINTF(3, 4);

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Line and column of data[pos], counted as jansson counts them (1-based line,
 * column in characters, i.e. UTF-8 lead bytes), so our own syntax errors read
 * like jansson's. Only called on the error path. */
static void locate(const char *data, size_t pos, int *line, int *col) {
    int l = 1, c = 0;
    for (size_t i = 0; i <= pos; i++) {
        unsigned char ch = (unsigned char)data[i];
        if (ch == '\n' && i < pos) {
            l++;
            c = 0;
        } else if ((ch & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Bytes that "\uXXXX" at p (p[0] == 'u') adds to the decoded UTF-8 string. A
 * surrogate is half of a 4-byte pair, so it counts 2. Malformed escapes count 1
 * (jansson rejects them). Sets *skip to the escape's length after the 'u'. */
static size_t u_escape_bytes(const unsigned char *p, size_t avail, size_t *skip) {
    *skip = 0;
    if (avail < 5) return 1;
    unsigned cp = 0;
    for (int k = 1; k <= 4; k++) {
        int h = hexval(p[k]);
        if (h < 0) return 1;
        cp = cp << 4 | (unsigned)h;
    }
    *skip = 4;
    if (cp < 0x80) return 1;
    if (cp < 0x800) return 2;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 2;
    return 3;
}

enum { SCAN_OK, SCAN_DEPTH, SCAN_STRING, SCAN_NUL };

/* The pre-scan. String length is counted in decoded bytes (escapes count what
 * they decode to), so a client that \u-escapes all non-ASCII text, as Python's
 * json.dumps does by default, gets the same limit as one that sends UTF-8. */
static int prescan(const char *data, size_t len, int max_depth, size_t max_string,
                   size_t *where) {
    const unsigned char *p = (const unsigned char *)data;
    int depth = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        switch (c) {
        case '[':
        case '{':
            if (++depth > max_depth) {
                *where = i;
                return SCAN_DEPTH;
            }
            i++;
            break;
        case ']':
        case '}':
            if (depth > 0) depth--;
            i++;
            break;
        case '\0':
            *where = i;
            return SCAN_NUL;
        case '"': {
            size_t start = i++;
            size_t n = 0;
            while (i < len && p[i] != '"') {
                if (p[i] == '\0') {
                    *where = i;
                    return SCAN_NUL;
                }
                if (p[i] == '\\' && i + 1 < len) {
                    if (p[i + 1] == 'u') {
                        size_t skip;
                        n += u_escape_bytes(p + i + 1, len - i - 1, &skip);
                        i += 2 + skip;
                    } else {
                        if (p[i + 1] == '\0') {
                            *where = i + 1;
                            return SCAN_NUL;
                        }
                        n++;
                        i += 2;
                    }
                } else {
                    n++;
                    i++;
                }
                if (n > max_string) {
                    *where = start;
                    return SCAN_STRING;
                }
            }
            i++; /* the closing quote, or past the end of an unterminated string */
            break;
        }
        default:
            i++;
            break;
        }
    }
    return SCAN_OK;
}

int svc_json_parse(const char *data, size_t len, const svc_json_limits *limits,
                   json_t **out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!out) {
        set_err(err, errlen, "svc_json_parse: out is NULL");
        return SVC_EINVAL;
    }
    *out = NULL;
    if (!data) {
        if (len) {
            set_err(err, errlen, "svc_json_parse: data is NULL");
            return SVC_EINVAL;
        }
        data = "";
    }

    size_t max_bytes = SVC_JSON_MAX_BYTES, max_string = SVC_JSON_MAX_STRING;
    int max_depth = SVC_JSON_MAX_DEPTH;
    if (limits) {
        if (limits->max_bytes) max_bytes = limits->max_bytes;
        if (limits->max_depth > 0) max_depth = limits->max_depth;
        if (limits->max_string) max_string = limits->max_string;
    }

    if (len > max_bytes) {
        set_err(err, errlen, "JSON body larger than %zu bytes", max_bytes);
        return SVC_ERANGE;
    }
    size_t where = 0;
    int line, col;
    switch (prescan(data, len, max_depth, max_string, &where)) {
    case SCAN_DEPTH:
        set_err(err, errlen, "JSON nested deeper than %d levels", max_depth);
        return SVC_ERANGE;
    case SCAN_STRING:
        set_err(err, errlen, "JSON string longer than %zu bytes", max_string);
        return SVC_ERANGE;
    case SCAN_NUL:
        locate(data, where, &line, &col);
        set_err(err, errlen, "invalid JSON at line %d, column %d: NUL byte", line, col);
        return SVC_EINVAL;
    default:
        break;
    }

    json_error_t jerr;
    json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!v) {
        if (json_error_code(&jerr) == json_error_out_of_memory) {
            set_err(err, errlen, "out of memory parsing JSON");
            return SVC_ENOMEM;
        }
        /* jansson's own wording names a flag of its API; say what is wrong. */
        const char *why = json_error_code(&jerr) == json_error_null_character
                              ? "\\u0000 in a string is not allowed"
                              : jerr.text;
        if (jerr.line > 0)
            set_err(err, errlen, "invalid JSON at line %d, column %d: %s", jerr.line,
                    jerr.column, why);
        else
            set_err(err, errlen, "invalid JSON: %s", why);
        return SVC_EINVAL;
    }
    *out = v;
    return SVC_OK;
}
