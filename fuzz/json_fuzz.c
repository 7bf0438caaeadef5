/*
 * Fuzzes src/json with three properties, each checked on every input:
 *
 *  1. svc_json_parse (small limits) never crashes; what it accepts, svc_jw_value
 *     writes back as JSON that re-parses, under the same depth and string
 *     limits, to an equal value (json_equal).
 *  2. svc_json_escape of any bytes is a JSON string that decodes to those bytes
 *     when they are valid UTF-8 (jansson decides), and is valid JSON always.
 *  3. The input read as a program of svc_jw calls: whenever svc_jw_ok says
 *     SVC_OK, the output is exactly one valid JSON document.
 *  4. svc_jw_f64 of the input's first bytes reads back as the same double.
 *  5. No key or string of what svc_json_parse accepts holds a NUL byte (the
 *     services use them as C strings without checking), and
 *     svc_json_only_keys agrees with a plain search of the object's keys.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "svckit/json.h"

#define FUZZ_MAX_BYTES 4096
#define FUZZ_MAX_DEPTH 8
#define FUZZ_MAX_STRING 64

static void check(int cond) {
    if (!cond) abort();
}

/* Property 5 over the whole tree. */
static void check_no_nul_and_only_keys(json_t *v) {
    if (json_is_string(v)) {
        check(strlen(json_string_value(v)) == json_string_length(v));
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) check_no_nul_and_only_keys(json_array_get(v, i));
    } else if (json_is_object(v)) {
        /* The allowed list: every other key of the object, in order. */
        const char *allowed[FUZZ_MAX_BYTES / 4 + 1];
        size_t n = 0, i = 0;
        const char *key, *first_skipped = NULL;
        size_t key_len;
        json_t *m;
        json_object_keylen_foreach(v, key, key_len, m) {
            check(strlen(key) == key_len);
            if (i++ % 2 == 0) allowed[n++] = key;
            else if (!first_skipped) first_skipped = key;
            check_no_nul_and_only_keys(m);
        }
        allowed[n] = NULL;
        const char *unknown = "stale";
        int rc = svc_json_only_keys(v, allowed, &unknown);
        check(first_skipped ? rc == SVC_EINVAL && unknown == first_skipped : rc == SVC_OK && unknown == NULL);
    }
}

static void fuzz_parse_roundtrip(const uint8_t *data, size_t size) {
    svc_json_limits lim = {FUZZ_MAX_BYTES, FUZZ_MAX_DEPTH, FUZZ_MAX_STRING};
    json_t *v = NULL;
    char err[160];
    int rc = svc_json_parse((const char *)data, size, &lim, &v, err, sizeof err);
    if (rc != SVC_OK) {
        check(v == NULL);
        check(rc == SVC_EINVAL || rc == SVC_ERANGE);
        check(strlen(err) > 0);
        return;
    }
    check(v != NULL);
    check_no_nul_and_only_keys(v);
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    svc_jw_value(&w, v);
    check(svc_jw_ok(&w) == SVC_OK);
    /* Numbers may print longer than they came in ("1e5" is "100000.0"), so
     * only the size limit is relaxed. */
    svc_json_limits lim2 = {0, FUZZ_MAX_DEPTH, FUZZ_MAX_STRING};
    json_t *again = NULL;
    rc = svc_json_parse(b.data, b.len, &lim2, &again, err, sizeof err);
    check(rc == SVC_OK);
    check(json_equal(v, again));
    json_decref(again);
    json_decref(v);
    svc_buf_free(&b);
}

static void fuzz_escape(const uint8_t *data, size_t size) {
    svc_buf b = {0};
    svc_json_escape(&b, (const char *)data, size);
    check(!b.oom);
    json_t *s = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    check(json_is_string(s));
    /* jansson's json_stringn validates UTF-8: it is the independent oracle. */
    json_t *want = json_stringn((const char *)data, size);
    if (want) {
        check(json_equal(s, want));
    } else {
        /* Each invalid subpart became U+FFFD, so the bytes cannot match. */
        check(json_string_length(s) != size || memcmp(json_string_value(s), data, size) != 0);
    }
    json_decref(want);
    json_decref(s);
    svc_buf_free(&b);
}

/* Reads the input as writer calls: one byte picks the call, following bytes
 * are its argument. */
static void fuzz_writer(const uint8_t *data, size_t size) {
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    size_t i = 0;
    while (i < size) {
        uint8_t op = data[i++];
        size_t n = (op >> 4) % 8; /* argument length for strings and keys */
        if (n > size - i) n = size - i;
        switch (op & 15) {
        case 0: svc_jw_obj_begin(&w); break;
        case 1: svc_jw_obj_end(&w); break;
        case 2: svc_jw_arr_begin(&w); break;
        case 3: svc_jw_arr_end(&w); break;
        case 4: svc_jw_keyn(&w, (const char *)data + i, n); i += n; break;
        case 5: svc_jw_strn(&w, (const char *)data + i, n); i += n; break;
        case 6: {
            int64_t v = 0;
            size_t k = size - i < 8 ? size - i : 8;
            memcpy(&v, data + i, k);
            i += k;
            svc_jw_i64(&w, v);
            break;
        }
        case 7: {
            double v = 0;
            size_t k = size - i < 8 ? size - i : 8;
            memcpy(&v, data + i, k);
            i += k;
            svc_jw_f64(&w, v);
            break;
        }
        case 8: svc_jw_bool(&w, op & 16); break;
        case 9: svc_jw_null(&w); break;
        case 10: svc_jw_str(&w, NULL); break;
        case 11: svc_jw_raw(&w, "[1,{}]", 6); break;
        case 12: svc_jw_key(&w, "k"); break;
        default: break;
        }
    }
    if (svc_jw_ok(&w) == SVC_OK && b.len > 0) {
        json_error_t e;
        json_t *v = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        /* "\u0000" in a key is valid JSON that jansson declines to load. */
        check(v != NULL || json_error_code(&e) == json_error_null_byte_in_key);
        json_decref(v);
    }
    svc_buf_free(&b);
}

/* svc_jw_f64 on the first bytes read as a double, and as a decimal with a
 * few digits (the shape of prices): it must read back bit for bit (any zero
 * as a zero) and as a jansson real. */
static void check_f64(double v) {
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    svc_jw_f64(&w, v);
    check(svc_jw_ok(&w) == SVC_OK);
    if (v != v || v - v != 0) {
        check(strcmp(b.data, "null") == 0);
    } else {
        check(strtod(b.data, NULL) == v);
        json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL);
        check(json_is_real(j) && json_real_value(j) == v);
        json_decref(j);
    }
    svc_buf_free(&b);
}

static void fuzz_f64(const uint8_t *data, size_t size) {
    if (size < 9) return;
    double v;
    memcpy(&v, data, 8);
    check_f64(v);
    int64_t m;
    memcpy(&m, data, 8);
    static const double p10[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10};
    check_f64((double)(m % 100000000000000LL) / p10[data[8] % 11]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_f64(data, size);
    fuzz_parse_roundtrip(data, size);
    fuzz_escape(data, size);
    fuzz_writer(data, size);
    return 0;
}
