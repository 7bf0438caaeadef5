/* Unit tests for src/json: svc_json_parse, svc_jw, svc_json_escape. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "svckit/json.h"
#include "../test.h"

/* ---- helpers --------------------------------------------------------------- */

static int parse_str(const char *s, const svc_json_limits *lim, json_t **out, char *err,
                     size_t errlen) {
    return svc_json_parse(s, strlen(s), lim, out, err, errlen);
}

static int starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* n copies of c followed by tail, in a malloc'd string. */
static char *repeat(const char *head, int n, const char *unit, const char *tail) {
    size_t ul = strlen(unit), hl = strlen(head), tl = strlen(tail);
    char *s = malloc(hl + (size_t)n * ul + tl + 1);
    memcpy(s, head, hl);
    for (int i = 0; i < n; i++) memcpy(s + hl + (size_t)i * ul, unit, ul);
    memcpy(s + hl + (size_t)n * ul, tail, tl + 1);
    return s;
}

/* n opening brackets then n closing ones. */
static char *nested(int n, char open, char close) {
    char *s = malloc((size_t)n * 2 + 1);
    memset(s, open, (size_t)n);
    memset(s + n, close, (size_t)n);
    s[2 * n] = '\0';
    return s;
}

/* Escapes s[0..len) and decodes the result with jansson; returns the decoded
 * string (caller json_decref()s) or NULL if the output was not valid JSON. */
static json_t *escape_roundtrip(const char *s, size_t len, svc_buf *b) {
    svc_buf_reset(b);
    svc_json_escape(b, s, len);
    return json_loadb(b->data, b->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

static int str_is(const json_t *v, const char *bytes, size_t len) {
    return json_is_string(v) && json_string_length(v) == len &&
           memcmp(json_string_value(v), bytes, len) == 0;
}

/* ---- parsing --------------------------------------------------------------- */

TEST(parse_good_documents) {
    json_t *v;
    char err[256];
    CHECK_EQ(parse_str(" {\"id\": 7, \"title\": \"caf\\u00e9 \xe2\x98\x95\", \"tags\": [\"a\", "
                       "true, null, 1.5e2], \"n\": {}} \r\n\t",
                       NULL, &v, err, sizeof err),
             SVC_OK);
    REQUIRE(v != NULL);
    CHECK(json_is_object(v));
    CHECK_EQ(json_integer_value(json_object_get(v, "id")), 7);
    CHECK_STR(json_string_value(json_object_get(v, "title")), "caf\xc3\xa9 \xe2\x98\x95");
    json_t *tags = json_object_get(v, "tags");
    CHECK_EQ(json_array_size(tags), 4);
    CHECK(json_is_true(json_array_get(tags, 1)));
    CHECK(json_is_null(json_array_get(tags, 2)));
    CHECK(json_real_value(json_array_get(tags, 3)) == 150.0);
    CHECK_EQ(json_object_size(json_object_get(v, "n")), 0);
    json_decref(v);

    /* Any value at the top level, not only objects and arrays. */
    const char *scalars[] = {"42", "-1.25", "\"s\"", "true", "false", "null", "[]", "  0  "};
    for (size_t i = 0; i < sizeof scalars / sizeof *scalars; i++) {
        v = (json_t *)1;
        CHECK_EQ(parse_str(scalars[i], NULL, &v, err, sizeof err), SVC_OK);
        CHECK(v != NULL && v != (json_t *)1);
        json_decref(v);
    }
}

TEST(parse_size_limit) {
    json_t *v = (json_t *)1;
    char err[256];
    svc_json_limits lim = {.max_bytes = 16};
    CHECK_EQ(parse_str("[1,2,3,4,5,6,7,8]", &lim, &v, err, sizeof err), SVC_ERANGE); /* 17 */
    CHECK(v == NULL);
    CHECK_STR(err, "JSON body larger than 16 bytes");
    CHECK_EQ(parse_str("[1,2,3,4,5,6,78]", &lim, &v, err, sizeof err), SVC_OK); /* 16 */
    json_decref(v);

    /* The default: 1 MiB, checked before anything is read. */
    size_t big = SVC_JSON_MAX_BYTES + 1;
    char *s = malloc(big);
    memset(s, ' ', big);
    s[0] = '1';
    CHECK_EQ(svc_json_parse(s, big, NULL, &v, err, sizeof err), SVC_ERANGE);
    CHECK_STR(err, "JSON body larger than 1048576 bytes");
    CHECK_EQ(svc_json_parse(s, big - 1, NULL, &v, err, sizeof err), SVC_OK);
    json_decref(v);
    free(s);
}

TEST(parse_depth_limit_default) {
    json_t *v;
    char err[256];
    char *ok = nested(SVC_JSON_MAX_DEPTH, '[', ']');
    CHECK_EQ(parse_str(ok, NULL, &v, err, sizeof err), SVC_OK);
    json_decref(v);
    char *bad = nested(SVC_JSON_MAX_DEPTH + 1, '[', ']');
    v = (json_t *)1;
    CHECK_EQ(parse_str(bad, NULL, &v, err, sizeof err), SVC_ERANGE);
    CHECK(v == NULL);
    CHECK_STR(err, "JSON nested deeper than 32 levels");
    free(ok);
    free(bad);
}

TEST(parse_depth_limit_custom_and_mixed) {
    json_t *v;
    char err[256];
    svc_json_limits lim = {.max_depth = 3};
    CHECK_EQ(parse_str("{\"a\":[{\"b\":1}],\"c\":[[2]]}", &lim, &v, err, sizeof err), SVC_OK);
    json_decref(v);
    CHECK_EQ(parse_str("{\"a\":[{\"b\":[1]}]}", &lim, &v, err, sizeof err), SVC_ERANGE);
    CHECK_STR(err, "JSON nested deeper than 3 levels");
    /* Brackets inside strings (and after escaped quotes) are not nesting. */
    CHECK_EQ(parse_str("[\"[[[[{{{{\\\"[[[[\"]", &lim, &v, err, sizeof err), SVC_OK);
    json_decref(v);
    /* Closing brackets bring the depth back down. */
    CHECK_EQ(parse_str("[[[1]],[[2]],[[3]]]", &lim, &v, err, sizeof err), SVC_OK);
    json_decref(v);
}

TEST(parse_string_limit) {
    json_t *v;
    char err[256];
    svc_json_limits lim = {.max_string = 8};
    CHECK_EQ(parse_str("[\"12345678\"]", &lim, &v, err, sizeof err), SVC_OK);
    json_decref(v);
    CHECK_EQ(parse_str("[\"123456789\"]", &lim, &v, err, sizeof err), SVC_ERANGE);
    CHECK_STR(err, "JSON string longer than 8 bytes");
    /* Keys are strings too. */
    CHECK_EQ(parse_str("{\"12345678\":1}", &lim, &v, err, sizeof err), SVC_OK);
    json_decref(v);
    CHECK_EQ(parse_str("{\"123456789\":1}", &lim, &v, err, sizeof err), SVC_ERANGE);
    CHECK_STR(err, "JSON string longer than 8 bytes");
    /* Escapes count what they decode to: \u00e9 is 2 bytes, \n is 1, a
     * surrogate pair is 4. */
    CHECK_EQ(parse_str("\"\\u00e9\\u00e9\\u00e9\\u00e9\"", &lim, &v, err, sizeof err), SVC_OK);
    CHECK(str_is(v, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8));
    json_decref(v);
    CHECK_EQ(parse_str("\"\\u00e9\\u00e9\\u00e9\\u00e9x\"", &lim, &v, err, sizeof err),
             SVC_ERANGE);
    CHECK_EQ(parse_str("\"\\n\\n\\n\\n\\n\\n\\n\\n\"", &lim, &v, err, sizeof err), SVC_OK);
    json_decref(v);
    CHECK_EQ(parse_str("\"\\ud83d\\ude00\\ud83d\\ude00\"", &lim, &v, err, sizeof err), SVC_OK);
    json_decref(v);
    CHECK_EQ(parse_str("\"\\ud83d\\ude00\\ud83d\\ude00!\"", &lim, &v, err, sizeof err),
             SVC_ERANGE);
    CHECK_EQ(parse_str("\"\\u20ac\\u20ac\"", &lim, &v, err, sizeof err), SVC_OK);
    json_decref(v);
    CHECK_EQ(parse_str("\"\\u20ac\\u20ac\\u20ac\"", &lim, &v, err, sizeof err), SVC_ERANGE);

    /* The default limit, 64 KiB. */
    char *s = repeat("\"", SVC_JSON_MAX_STRING, "x", "\"");
    CHECK_EQ(parse_str(s, NULL, &v, err, sizeof err), SVC_OK);
    json_decref(v);
    free(s);
    s = repeat("\"", SVC_JSON_MAX_STRING + 1, "x", "\"");
    CHECK_EQ(parse_str(s, NULL, &v, err, sizeof err), SVC_ERANGE);
    CHECK_STR(err, "JSON string longer than 65536 bytes");
    free(s);
}

TEST(parse_syntax_errors_say_where) {
    json_t *v = (json_t *)1;
    char err[256];
    CHECK_EQ(parse_str("{\n  \"a\": 1,\n  \"b\": }", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK(v == NULL);
    CHECK(starts_with(err, "invalid JSON at line 3, column "));
    CHECK(strstr(err, "unexpected token") != NULL);

    CHECK_EQ(parse_str("[1, 2,, 3]", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK(starts_with(err, "invalid JSON at line 1, column 7: "));

    CHECK_EQ(parse_str("", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK(starts_with(err, "invalid JSON at line 1, column 0: "));
    CHECK_EQ(parse_str("   ", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(parse_str("{\"a\":1", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(parse_str("[\"abc", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(parse_str("{'a':1}", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(parse_str("[01]", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(parse_str("[NaN]", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(parse_str("\"tab\there\"", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(parse_str("\"\\x41\"", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(parse_str("\"\\ud800\"", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(parse_str("]", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK(v == NULL);
}

TEST(parse_rejects_duplicate_keys) {
    json_t *v = (json_t *)1;
    char err[256];
    CHECK_EQ(parse_str("{\"a\":1,\"b\":2,\"a\":3}", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK(v == NULL);
    CHECK(starts_with(err, "invalid JSON at line 1, column "));
    CHECK(strstr(err, "duplicate object key") != NULL);
    /* The same key in different objects is fine. */
    CHECK_EQ(parse_str("[{\"a\":1},{\"a\":2}]", NULL, &v, err, sizeof err), SVC_OK);
    json_decref(v);
}

TEST(parse_rejects_trailing_garbage) {
    json_t *v = (json_t *)1;
    char err[256];
    CHECK_EQ(parse_str("{} x", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK(v == NULL);
    CHECK(starts_with(err, "invalid JSON at line 1, column "));
    CHECK(strstr(err, "end of file expected") != NULL);
    CHECK_EQ(parse_str("{}{}", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(parse_str("1 2", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(parse_str("[1],", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(parse_str("\n\t {} \r\n ", NULL, &v, err, sizeof err), SVC_OK);
    json_decref(v);
}

TEST(parse_rejects_nul_bytes) {
    json_t *v = (json_t *)1;
    char err[256];
    CHECK_EQ(svc_json_parse("{\"a\":\n 1}\0", 10, NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK(v == NULL);
    CHECK_STR(err, "invalid JSON at line 2, column 4: NUL byte");
    CHECK_EQ(svc_json_parse("[\"a\0b\"]", 7, NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_STR(err, "invalid JSON at line 1, column 4: NUL byte");
    CHECK_EQ(svc_json_parse("[\"a\\\0\"]", 7, NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_STR(err, "invalid JSON at line 1, column 5: NUL byte");
    /* An escaped NUL would be cut short by every C string API downstream. */
    CHECK_EQ(parse_str("[\"a\\u0000b\"]", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK(starts_with(err, "invalid JSON at line 1, column 11: \\u0000 in a string is not allowed"));
}

/* Services rely on this to use json_string_value as a C string, without
 * checking json_string_length against strlen (auth, products, gateway). */
TEST(parse_rejects_nul_in_keys_and_values_everywhere) {
    static const struct {
        const char *doc;
        size_t len;
    } bad[] = {
        {"{\"a\0b\":1}", 9},
        {"{\"a\":\"x\0y\"}", 11},
        {"{\"o\":{\"k\0\":[]}}", 15},
        {"[{\"k\":[\"\0\"]}]", 13},
    };
    static const char *const escaped[] = {
        "{\"a\\u0000b\":1}",         "{\"\\u0000\":1}",          "{\"a\":\"x\\u0000\"}",
        "{\"o\":{\"k\\u0000\":true}}", "[{\"k\":[\"\\u0000\"]}]", "{\"a\":{\"b\":\"\\u0000tail\"}}",
    };
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *v = (json_t *)1;
        CHECK_EQ(svc_json_parse(bad[i].doc, bad[i].len, NULL, &v, err, sizeof err), SVC_EINVAL);
        CHECK(v == NULL);
        CHECK(strstr(err, "NUL byte") != NULL);
    }
    for (size_t i = 0; i < sizeof escaped / sizeof *escaped; i++) {
        json_t *v = (json_t *)1;
        if (parse_str(escaped[i], NULL, &v, err, sizeof err) != SVC_EINVAL || v != NULL)
            test_fail(__FILE__, __LINE__, "accepted: %s", escaped[i]);
    }
    /* The same keys and values without the NUL are fine. */
    json_t *v = NULL;
    CHECK_EQ(parse_str("{\"ab\":\"xy\",\"o\":{\"k\":[\"\\u0001\"]}}", NULL, &v, err, sizeof err), SVC_OK);
    json_decref(v);
}

TEST(only_keys_accepts_allowed_keys_in_any_order) {
    static const char *const allowed[] = {"username", "password", NULL};
    json_t *v = NULL;
    char err[256];
    const char *unknown = "stale";
    REQUIRE(parse_str("{\"password\":\"p\",\"username\":\"u\"}", NULL, &v, err, sizeof err) == SVC_OK);
    CHECK_EQ(svc_json_only_keys(v, allowed, &unknown), SVC_OK);
    CHECK(unknown == NULL);
    json_decref(v);
    /* Not every allowed key must be present; an empty object passes. */
    REQUIRE(parse_str("{}", NULL, &v, err, sizeof err) == SVC_OK);
    CHECK_EQ(svc_json_only_keys(v, allowed, &unknown), SVC_OK);
    CHECK_EQ(svc_json_only_keys(v, NULL, &unknown), SVC_OK);
    CHECK_EQ(svc_json_only_keys(v, allowed, NULL), SVC_OK);
    json_decref(v);
}

TEST(only_keys_names_the_first_unknown_key_in_document_order) {
    static const char *const allowed[] = {"a", "b", NULL};
    json_t *v = NULL;
    char err[256];
    const char *unknown = NULL;
    REQUIRE(parse_str("{\"a\":1,\"zz\":2,\"b\":3,\"yy\":4}", NULL, &v, err, sizeof err) == SVC_OK);
    CHECK_EQ(svc_json_only_keys(v, allowed, &unknown), SVC_EINVAL);
    CHECK_STR(unknown, "zz");
    CHECK_EQ(svc_json_only_keys(v, allowed, NULL), SVC_EINVAL);
    json_decref(v);
    /* Keys are compared whole and case-sensitively. */
    const char *near[] = {"{\"A\":1}", "{\"ab\":1}", "{\"\":1}", "{\"a \":1}", "{\"b\":{\"c\":1},\"a\":0,\"c\":2}"};
    const char *want[] = {"A", "ab", "", "a ", "c"};
    for (size_t i = 0; i < sizeof near / sizeof *near; i++) {
        REQUIRE(parse_str(near[i], NULL, &v, err, sizeof err) == SVC_OK);
        unknown = NULL;
        CHECK_EQ(svc_json_only_keys(v, allowed, &unknown), SVC_EINVAL);
        CHECK_STR(unknown, want[i]);
        json_decref(v);
    }
    /* With no list, any key is unknown. */
    REQUIRE(parse_str("{\"a\":1}", NULL, &v, err, sizeof err) == SVC_OK);
    CHECK_EQ(svc_json_only_keys(v, NULL, &unknown), SVC_EINVAL);
    CHECK_STR(unknown, "a");
    json_decref(v);
}

TEST(only_keys_refuses_what_is_not_an_object) {
    static const char *const allowed[] = {"a", NULL};
    const char *docs[] = {"[]", "[{\"a\":1}]", "\"a\"", "1", "null", "true"};
    char err[256];
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        json_t *v = NULL;
        REQUIRE(parse_str(docs[i], NULL, &v, err, sizeof err) == SVC_OK);
        const char *unknown = "stale";
        CHECK_EQ(svc_json_only_keys(v, allowed, &unknown), SVC_EINVAL);
        CHECK(unknown == NULL);
        json_decref(v);
    }
    const char *unknown = "stale";
    CHECK_EQ(svc_json_only_keys(NULL, allowed, &unknown), SVC_EINVAL);
    CHECK(unknown == NULL);
}

TEST(parse_rejects_invalid_utf8) {
    json_t *v = (json_t *)1;
    char err[256];
    const char *bad[] = {"\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
                         "\"\xe2\x82\"", "{\"\x80\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_EQ(parse_str(bad[i], NULL, &v, err, sizeof err), SVC_EINVAL);
        CHECK(v == NULL);
        CHECK(starts_with(err, "invalid JSON"));
    }
}

TEST(parse_arguments) {
    json_t *v = (json_t *)1;
    char err[16];
    /* err may be NULL; a short err is truncated, not overrun. */
    CHECK_EQ(parse_str("[", NULL, &v, NULL, 0), SVC_EINVAL);
    CHECK_EQ(parse_str("[", NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(strlen(err), sizeof err - 1);
    CHECK_EQ(parse_str("1", NULL, NULL, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(svc_json_parse(NULL, 0, NULL, &v, err, sizeof err), SVC_EINVAL);
    CHECK(v == NULL);
    CHECK_EQ(svc_json_parse(NULL, 5, NULL, &v, err, sizeof err), SVC_EINVAL);
    /* Negative or zero limits mean the defaults. */
    svc_json_limits lim = {.max_bytes = 0, .max_depth = -1, .max_string = 0};
    char *s = nested(SVC_JSON_MAX_DEPTH, '[', ']');
    CHECK_EQ(parse_str(s, &lim, &v, err, sizeof err), SVC_OK);
    json_decref(v);
    free(s);
}

/* ---- writer ----------------------------------------------------------------- */

TEST(writer_commas_in_nested_structures) {
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "a");
    svc_jw_arr_begin(&w);
    svc_jw_i64(&w, 1);
    svc_jw_i64(&w, -2);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "b");
    svc_jw_null(&w);
    svc_jw_key(&w, "c");
    svc_jw_arr_begin(&w);
    svc_jw_arr_end(&w);
    svc_jw_obj_end(&w);
    svc_jw_arr_begin(&w);
    svc_jw_arr_begin(&w);
    svc_jw_arr_end(&w);
    svc_jw_arr_begin(&w);
    svc_jw_bool(&w, 0);
    svc_jw_arr_end(&w);
    svc_jw_arr_end(&w);
    svc_jw_arr_end(&w);
    svc_jw_key(&w, "d");
    svc_jw_obj_begin(&w);
    svc_jw_obj_end(&w);
    svc_jw_keyn(&w, "e\"x", 3);
    svc_jw_bool(&w, 7);
    svc_jw_key(&w, "f");
    svc_jw_str(&w, "s");
    svc_jw_key(&w, "g");
    svc_jw_strn(&w, "xyz", 2);
    svc_jw_key(&w, "h");
    svc_jw_raw(&w, "{\"pre\":[1]}", 11);
    svc_jw_key(&w, "i");
    svc_jw_str(&w, NULL);
    svc_jw_key(&w, "j");
    svc_jw_f64(&w, 2.5);
    svc_jw_obj_end(&w);
    CHECK_EQ(svc_jw_ok(&w), SVC_OK);
    CHECK_STR(b.data, "{\"a\":[1,-2,{\"b\":null,\"c\":[]},[[],[false]]],\"d\":{},\"e\\\"x\":true,"
                      "\"f\":\"s\",\"g\":\"xy\",\"h\":{\"pre\":[1]},\"i\":null,\"j\":2.5}");
    svc_buf_free(&b);
}

TEST(writer_scalars_at_top_level) {
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    svc_jw_i64(&w, INT64_MIN);
    CHECK_EQ(svc_jw_ok(&w), SVC_OK);
    CHECK_STR(b.data, "-9223372036854775808");
    svc_buf_reset(&b);
    svc_jw_init(&w, &b);
    svc_jw_i64(&w, INT64_MAX);
    CHECK_STR(b.data, "9223372036854775807");
    svc_buf_reset(&b);
    svc_jw_init(&w, &b);
    svc_jw_str(&w, "x");
    CHECK_EQ(svc_jw_ok(&w), SVC_OK);
    CHECK_STR(b.data, "\"x\"");
    svc_buf_free(&b);
}

TEST(escape_every_control_char) {
    static const char *want[32] = {
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
        "\\b",     "\\t",     "\\n",     "\\u000b", "\\f",     "\\r",     "\\u000e", "\\u000f",
        "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
        "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    };
    svc_buf b = {0};
    char expect[16];
    for (int c = 0; c < 32; c++) {
        char in = (char)c;
        svc_buf_reset(&b);
        svc_json_escape(&b, &in, 1);
        snprintf(expect, sizeof expect, "\"%s\"", want[c]);
        CHECK_STR(b.data, expect);
    }
    /* All of them at once, with the other characters that need care. */
    char all[40];
    for (int c = 0; c < 32; c++) all[c] = (char)c;
    memcpy(all + 32, "\"\\/\x7f a~z", 8);
    json_t *v = escape_roundtrip(all, 40, &b);
    CHECK(str_is(v, all, 40));
    json_decref(v);
    CHECK(strstr(b.data, "\\\"\\\\/\x7f a~z\"") != NULL); /* '/' and DEL as they are */
    svc_buf_free(&b);
}

TEST(escape_keeps_valid_utf8) {
    /* Boundaries of every sequence length. */
    const char *ok[] = {
        "\xc2\x80",         "\xdf\xbf",         "\xe0\xa0\x80", "\xed\x9f\xbf",
        "\xee\x80\x80",     "\xef\xbf\xbf",     "\xef\xbf\xbd", "\xf0\x90\x80\x80",
        "\xf4\x8f\xbf\xbf", "\xf0\x9f\x98\x80", "caf\xc3\xa9",   "\xe2\x80\xa8",
    };
    svc_buf b = {0};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        svc_buf_reset(&b);
        svc_json_escape(&b, ok[i], strlen(ok[i]));
        CHECK_EQ(b.len, strlen(ok[i]) + 2);
        CHECK(memcmp(b.data + 1, ok[i], strlen(ok[i])) == 0);
    }
    svc_buf_free(&b);
}

TEST(escape_replaces_invalid_utf8) {
#define FFFD "\xef\xbf\xbd"
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"\xff", FFFD},
        {"\xfe\xfe", FFFD FFFD},
        {"\x80", FFFD},
        {"a\xbf" "b", "a" FFFD "b"},
        {"\xc0\xaf", FFFD FFFD},                 /* overlong '/' */
        {"\xc1\xbf", FFFD FFFD},                 /* overlong */
        {"\xe0\x80\xaf", FFFD FFFD FFFD},        /* overlong 3-byte */
        {"\xf0\x80\x80\xaf", FFFD FFFD FFFD FFFD}, /* overlong 4-byte */
        {"\xed\xa0\x80", FFFD FFFD FFFD},        /* surrogate U+D800 */
        {"\xed\xbf\xbf", FFFD FFFD FFFD},        /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD}, /* U+110000 */
        {"\xf5\x80\x80\x80", FFFD FFFD FFFD FFFD},
        {"\xe2\x82", FFFD},                      /* truncated at the end */
        {"\xe2\x82z", FFFD "z"},                 /* truncated in the middle */
        {"\xf0\x9f\x98", FFFD},
        {"\xf0\x9f\x98\"", FFFD "\\\""},
        {"\xc3", FFFD},
        {"x\xc3\xa9\xc3", "x\xc3\xa9" FFFD},
    };
    svc_buf b = {0};
    char expect[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *v = escape_roundtrip(cases[i].in, strlen(cases[i].in), &b);
        snprintf(expect, sizeof expect, "\"%s\"", cases[i].out);
        CHECK_STR(b.data, expect);
        CHECK(v != NULL); /* output is valid JSON */
        json_decref(v);
    }
    svc_buf_free(&b);
#undef FFFD
}

TEST(escape_finds_specials_at_every_offset) {
    /* The run scanner reads eight bytes at a time: put each special byte at
     * every position of a 40-byte string and check the decoded result. */
    const unsigned char specials[] = {'"', '\\', '\n', 0x01, 0x1f, 0x7f, 0x80, 0xff, 0xc3, 0x00};
    svc_buf b = {0};
    char s[40];
    for (size_t k = 0; k < sizeof specials; k++) {
        for (int pos = 0; pos < 40; pos++) {
            memset(s, 'a', sizeof s);
            s[pos] = (char)specials[k];
            json_t *v = escape_roundtrip(s, sizeof s, &b);
            REQUIRE(v != NULL);
            if (specials[k] < 0x80) {
                CHECK(str_is(v, s, sizeof s));
            } else {
                char want[48];
                memcpy(want, s, (size_t)pos);
                memcpy(want + pos, "\xef\xbf\xbd", 3);
                memcpy(want + pos + 3, s + pos + 1, sizeof s - (size_t)pos - 1);
                CHECK(str_is(v, want, sizeof s + 2));
            }
            json_decref(v);
        }
    }
    svc_buf_free(&b);
}

TEST(escape_appends_and_handles_null) {
    svc_buf b = {0};
    svc_buf_puts(&b, "x=");
    svc_json_escape(&b, "hi", 2);
    svc_json_escape(&b, NULL, 0);
    svc_json_escape(&b, "", 0);
    CHECK_STR(b.data, "x=\"hi\"\"\"\"\"");
    /* A long string grows the buffer and survives intact. */
    char *s = repeat("", 100000, "ab\xc3\xa9", "");
    svc_buf_reset(&b);
    svc_json_escape(&b, s, strlen(s));
    CHECK_EQ(b.len, strlen(s) + 2);
    CHECK(memcmp(b.data + 1, s, strlen(s)) == 0);
    free(s);
    /* After an allocation failure nothing more is appended. */
    b.oom = 1;
    size_t len = b.len;
    svc_json_escape(&b, "more", 4);
    CHECK_EQ(b.len, len);
    svc_buf_free(&b);
}

/* Significant digits of a number as printed: leading and trailing zeros and
 * the exponent do not count ("100000.0" and "1e+05" have one). */
static int sig_digits(const char *s) {
    char d[64];
    int n = 0;
    for (; *s && *s != 'e' && *s != 'E'; s++)
        if (*s >= '0' && *s <= '9' && n < 63) d[n++] = *s;
    int i = 0;
    while (i < n && d[i] == '0') i++;
    while (n > i && d[n - 1] == '0') n--;
    return n - i;
}

/* The fewest significant digits that read back as v, by brute force. */
static int shortest_digits(double v) {
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) return sig_digits(tmp);
    }
    return 17;
}

static void f64_str(double v, svc_buf *b) {
    svc_jw w;
    svc_buf_reset(b);
    svc_jw_init(&w, b);
    svc_jw_f64(&w, v);
}

TEST(writer_f64_round_trips) {
    static const struct {
        double v;
        const char *s;
    } cases[] = {
        {0.1, "0.1"},
        {1e300, "1e+300"},
        {-0.0, "-0.0"},
        {0.0, "0.0"},
        {5e-324, "5e-324"},
        {123456789012345678.0, "1.2345678901234568e+17"},
        {0.30000000000000004, "0.30000000000000004"},
        {12.0, "12.0"},
        {-1.5, "-1.5"},
        {19.99, "19.99"},
        {1e21, "1e+21"},
        {1e-7, "1e-07"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {DBL_MIN, "2.2250738585072014e-308"},
        {2.2250738585072009e-308, "2.225073858507201e-308"}, /* largest subnormal */
        {9007199254740993.0, "9007199254740992.0"},
        {1.0 / 3.0, "0.3333333333333333"},
    };
    svc_buf b = {0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        f64_str(cases[i].v, &b);
        CHECK_STR(b.data, cases[i].s);
        double back = strtod(b.data, NULL);
        CHECK(memcmp(&back, &cases[i].v, sizeof back) == 0); /* bit-exact, sign of zero too */
        /* And jansson reads it back as the same real. */
        json_t *j = json_loads(b.data, JSON_DECODE_ANY, NULL);
        CHECK(json_is_real(j) && json_real_value(j) == cases[i].v);
        json_decref(j);
    }
    /* A spread of values, and the prices and ratings a service prints: each
     * reads back exactly, with the fewest digits that can. */
    double vals[6000];
    int nv = 0;
    double x = 1e-310;
    for (int i = 0; i < 2000; i++) {
        vals[nv++] = x;
        x *= -1.7320508075688772;
        if (fabs(x) > 1e300) x = 3.3e-300;
    }
    for (int i = 0; i < 2000; i++) vals[nv++] = i / 100.0 + 1000 * (i % 7);
    for (int i = 0; i < 1000; i++) vals[nv++] = i / 1000.0 - 0.5;
    for (int i = 0; i < 1000; i++) vals[nv++] = (double)i * 0.1 * (i % 2 ? 1e-3 : 1e9);
    int bad = 0;
    for (int i = 0; i < nv; i++) {
        f64_str(vals[i], &b);
        double back = strtod(b.data, NULL);
        if (back != vals[i] || sig_digits(b.data) != shortest_digits(vals[i]) || b.len > 25) {
            if (bad++ < 5) printf("#   %.17g printed as %s\n", vals[i], b.data);
        }
    }
    CHECK_EQ(bad, 0);
    svc_buf_free(&b);
}

TEST(writer_f64_non_finite_is_null) {
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    svc_jw_arr_begin(&w);
    svc_jw_f64(&w, NAN);
    svc_jw_f64(&w, INFINITY);
    svc_jw_f64(&w, -INFINITY);
    svc_jw_arr_end(&w);
    CHECK_EQ(svc_jw_ok(&w), SVC_OK);
    CHECK_STR(b.data, "[null,null,null]");
    svc_buf_free(&b);
}

/* Runs one misuse after a valid prefix and checks that the error is recorded
 * and that nothing more is written afterwards. */
TEST(writer_errors_are_sticky) {
    svc_buf b = {0};
    svc_jw w;

    /* A value where a key is needed. */
    svc_jw_init(&w, &b);
    svc_jw_obj_begin(&w);
    svc_jw_i64(&w, 1);
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);
    size_t len = b.len;
    svc_jw_key(&w, "k");
    svc_jw_i64(&w, 2);
    svc_jw_obj_end(&w);
    CHECK_EQ(b.len, len);
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);

    /* A key outside an object: at the top level and in an array. */
    svc_buf_reset(&b);
    svc_jw_init(&w, &b);
    svc_jw_key(&w, "k");
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);
    CHECK_EQ(b.len, 0);
    svc_jw_init(&w, &b);
    svc_jw_arr_begin(&w);
    svc_jw_key(&w, "k");
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);

    /* Two keys in a row; a key with no value before the end. */
    svc_jw_init(&w, &b);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "a");
    svc_jw_key(&w, "b");
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);
    svc_jw_init(&w, &b);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "a");
    svc_jw_obj_end(&w);
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);

    /* End without begin, and the wrong kind of end. */
    svc_jw_init(&w, &b);
    svc_jw_arr_end(&w);
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);
    svc_jw_init(&w, &b);
    svc_jw_obj_end(&w);
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);
    svc_jw_init(&w, &b);
    svc_jw_obj_begin(&w);
    svc_jw_arr_end(&w);
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);

    /* A second top-level value would not be one JSON document. */
    svc_buf_reset(&b);
    svc_jw_init(&w, &b);
    svc_jw_obj_begin(&w);
    svc_jw_obj_end(&w);
    svc_jw_i64(&w, 1);
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);
    CHECK_STR(b.data, "{}");

    /* Unclosed containers, and a NULL key or raw value. */
    svc_jw_init(&w, &b);
    svc_jw_arr_begin(&w);
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);
    svc_jw_init(&w, &b);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, NULL);
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);
    svc_jw_init(&w, &b);
    svc_jw_raw(&w, NULL, 0);
    CHECK_EQ(svc_jw_ok(&w), SVC_EINVAL);

    /* A NULL buffer fails cleanly. */
    svc_jw_init(&w, NULL);
    svc_jw_obj_begin(&w);
    svc_jw_key(&w, "k");
    svc_jw_str(&w, "v");
    svc_jw_obj_end(&w);
    CHECK(svc_jw_ok(&w) != SVC_OK);
    svc_buf_free(&b);
}

TEST(writer_depth_limit) {
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    for (int i = 0; i < SVC_JW_MAX_DEPTH; i++) svc_jw_arr_begin(&w);
    for (int i = 0; i < SVC_JW_MAX_DEPTH; i++) svc_jw_arr_end(&w);
    CHECK_EQ(svc_jw_ok(&w), SVC_OK);
    CHECK_EQ(b.len, 2 * SVC_JW_MAX_DEPTH);

    svc_buf_reset(&b);
    svc_jw_init(&w, &b);
    for (int i = 0; i < SVC_JW_MAX_DEPTH; i++) svc_jw_obj_begin(&w), svc_jw_key(&w, "k");
    svc_jw_arr_begin(&w);
    CHECK_EQ(svc_jw_ok(&w), SVC_ERANGE);
    size_t len = b.len;
    for (int i = 0; i < SVC_JW_MAX_DEPTH + 1; i++) svc_jw_obj_end(&w);
    CHECK_EQ(b.len, len);
    CHECK_EQ(svc_jw_ok(&w), SVC_ERANGE);
    svc_buf_free(&b);
}

TEST(writer_reports_out_of_memory) {
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    svc_jw_arr_begin(&w);
    b.oom = 1; /* as if an append had failed */
    svc_jw_i64(&w, 1);
    svc_jw_arr_end(&w);
    CHECK_EQ(svc_jw_ok(&w), SVC_ENOMEM);
    svc_buf_free(&b);

    svc_jw_init(&w, &b);
    svc_jw_arr_begin(&w);
    svc_jw_arr_end(&w);
    b.oom = 1;
    CHECK_EQ(svc_jw_ok(&w), SVC_ENOMEM);
    svc_buf_free(&b);
}

TEST(writer_value_serialises_jansson) {
    svc_buf b = {0};
    svc_jw w;
    json_t *o = json_object();
    json_object_set_new(o, "z", json_integer(-3));
    json_object_set_new(o, "a", json_pack("[s, f, b, b, n, {}]", "x\ny", 0.5, 1, 0));
    json_object_set_new(o, "m", json_stringn("a\0b", 3));
    json_object_setn_new(o, "k\0ey", 4, json_real(100.0));
    svc_jw_init(&w, &b);
    svc_jw_value(&w, o);
    CHECK_EQ(svc_jw_ok(&w), SVC_OK);
    /* Keys in jansson's iteration order, which is insertion order. */
    CHECK_STR(b.data, "{\"z\":-3,\"a\":[\"x\\ny\",0.5,true,false,null,{}],\"m\":\"a\\u0000b\","
                      "\"k\\u0000ey\":100.0}");
    json_decref(o);

    /* NULL writes null; values nest inside what the writer already opened. */
    svc_buf_reset(&b);
    svc_jw_init(&w, &b);
    svc_jw_arr_begin(&w);
    svc_jw_value(&w, NULL);
    json_t *n = json_integer(5);
    svc_jw_value(&w, n);
    json_decref(n);
    svc_jw_arr_end(&w);
    CHECK_EQ(svc_jw_ok(&w), SVC_OK);
    CHECK_STR(b.data, "[null,5]");
    svc_buf_free(&b);
}

TEST(writer_value_depth_is_limited) {
    /* A tree deeper than the writer allows fails with ERANGE, no crash. */
    json_t *root = json_array(), *cur = root;
    for (int i = 0; i < 5000; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    svc_buf b = {0};
    svc_jw w;
    svc_jw_init(&w, &b);
    svc_jw_value(&w, root);
    CHECK_EQ(svc_jw_ok(&w), SVC_ERANGE);
    json_decref(root);
    svc_buf_free(&b);
}

TEST(round_trip_parse_write_parse) {
    static const char *docs[] = {
        "{}",
        "[]",
        "0",
        "-0",
        "-0.0",
        "1e5",
        "1E-400",
        "123456789012345678",
        "-9223372036854775808",
        "9223372036854775807",
        "0.1",
        "[1.7976931348623157e308, 5e-324, 2.5, 100.0, 1e21, 0.30000000000000004]",
        "\"\"",
        "\"\\u0000\"",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\"",
        "\"\\ud83d\\ude00 caf\\u00e9 \xe2\x82\xac \xf4\x8f\xbf\xbf \\u2028\"",
        "{\"a\":{\"b\":{\"c\":[1,[2,[3,{\"d\":null}]]]}},\"e\":[true,false]}",
        "{\"\":\"\",\" \":\" \",\"\\n\":[{}]}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "{\"products\":[{\"id\":1,\"title\":\"Essence Mascara\",\"price\":9.99,\"rating\":4.94,"
        "\"tags\":[\"beauty\",\"mascara\"],\"stock\":5}],\"total\":194,\"skip\":0,\"limit\":30}",
    };
    svc_buf b = {0};
    char err[256];
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        json_t *a = NULL, *c = NULL;
        /* \u0000 needs JSON_ALLOW_NUL, which svc_json_parse never sets. */
        if (strstr(docs[i], "\\u0000"))
            a = json_loads(docs[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        else
            CHECK_EQ(parse_str(docs[i], NULL, &a, err, sizeof err), SVC_OK);
        REQUIRE(a != NULL);
        svc_buf_reset(&b);
        svc_jw w;
        svc_jw_init(&w, &b);
        svc_jw_value(&w, a);
        CHECK_EQ(svc_jw_ok(&w), SVC_OK);
        if (strstr(docs[i], "\\u0000"))
            c = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        else
            CHECK_EQ(svc_json_parse(b.data, b.len, NULL, &c, err, sizeof err), SVC_OK);
        CHECK(c != NULL && json_equal(a, c));
        if (!c || !json_equal(a, c)) printf("#   doc %zu: %s -> %s\n", i, docs[i], b.data);
        json_decref(a);
        json_decref(c);
    }
    svc_buf_free(&b);
}
