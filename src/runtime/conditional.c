/*
 * Conditional requests (RFC 9110 13): lists of entity tags, HTTP-dates, and
 * the order in which the preconditions are evaluated (13.2.2).
 */
#include <string.h>
#include <strings.h>
#include <time.h>

#include "runtime/internal.h"

/* ---- entity tags (RFC 9110 8.8.3) --------------------------------------------- */

/* What the members of a list name, as bits. */
enum { TAG_PLAIN = 1, TAG_GZIP = 2, TAG_STAR = 4 };

/* The quoted opaque tag o[0..n) against etag (quoted, elen bytes) and its
 * gzip form. */
static int tag_cmp(const char *o, size_t n, const char *etag, size_t elen) {
    static const char sfx[] = SVC_ETAG_GZIP_SUFFIX;
    if (n == elen && memcmp(o, etag, n) == 0) return TAG_PLAIN;
    if (elen >= 2 && n == elen + sizeof sfx - 1 && memcmp(o, etag, elen - 1) == 0 &&
        memcmp(o + elen - 1, sfx, sizeof sfx - 1) == 0 && o[n - 1] == '"')
        return TAG_GZIP;
    return 0;
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/*
 * Every field `name` of the request, as one list: the bits of what its
 * members match. Strong comparison (If-Match): a weak tag on either side
 * never matches; weak (If-None-Match): "W/" is ignored on both. etag NULL
 * matches nothing but "*". *present: any such field was sent. A malformed
 * member matches nothing.
 */
static int list_match(const svc_req *req, const char *name, const char *etag, int weak, int *present) {
    int bits = 0, etag_weak = 0;
    size_t elen = 0;
    if (etag) {
        etag_weak = etag[0] == 'W' && etag[1] == '/';
        if (etag_weak) etag += 2;
        elen = strlen(etag);
    }
    *present = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (strcasecmp(req->headers[i].name, name) != 0) continue;
        *present = 1;
        const char *p = req->headers[i].value;
        for (;;) {
            while (*p == ',' || is_ows(*p)) p++;
            if (!*p) break;
            int w = p[0] == 'W' && p[1] == '/';
            const char *o = w ? p + 2 : p, *q = o + 1;
            if (*o == '"') {
                /* etagc: %x21 / %x23-7E / obs-text */
                while ((unsigned char)*q >= 0x21 && *q != '"' && *q != 0x7f) q++;
            }
            /* A member ends at OWS and a comma. Junk after a tag ("a"junk,
             * *x) leans towards refusing a write: for If-Match the member
             * matches nothing (412), for If-None-Match the tag counts. */
            const char *end = *p == '*' ? p + 1 : *o == '"' && *q == '"' ? q + 1 : p;
            const char *after = end;
            while (is_ows(*after)) after++;
            if (end == p || (!weak && *after && *after != ',')) {
                p += strcspn(p, ",");
                continue;
            }
            if (*p == '*') bits |= TAG_STAR;
            else if (etag && (weak || (!w && !etag_weak))) bits |= tag_cmp(o, (size_t)(q + 1 - o), etag, elen);
            p = after;
        }
    }
    return bits;
}

/* ---- HTTP-date (RFC 9110 5.6.7) ----------------------------------------------- */

static const char day_names[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const long_day_names[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                              "Thursday", "Friday", "Saturday"};
static const char month_names[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

size_t svc__http_date(int64_t secs, char out[SVC__HTTP_DATE_MAX]) {
    time_t t = (time_t)secs;
    struct tm tm;
    out[0] = '\0';
    if ((int64_t)t != secs || !gmtime_r(&t, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900) return 0;
    char *o = out;
    memcpy(o, day_names[tm.tm_wday], 3), o += 3;
    *o++ = ',';
    *o++ = ' ';
    int fields[] = {tm.tm_mday, -1, tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec};
    for (int i = 0; i < 6; i++) {
        if (i == 1) {
            memcpy(o, month_names[tm.tm_mon], 3), o += 3;
        } else if (i == 2) {
            int y = fields[i];
            *o++ = (char)('0' + y / 1000), *o++ = (char)('0' + y / 100 % 10);
            *o++ = (char)('0' + y / 10 % 10), *o++ = (char)('0' + y % 10);
        } else {
            *o++ = (char)('0' + fields[i] / 10), *o++ = (char)('0' + fields[i] % 10);
        }
        *o++ = i < 3 ? ' ' : i < 5 ? ':' : ' ';
    }
    memcpy(o, "GMT", 4);
    return (size_t)(o + 3 - out);
}

/* Exactly n digits at *p. */
static int digits(const char **p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return 0;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 1;
}

static int lit(const char **p, const char *s) {
    size_t n = strlen(s);
    if (strncmp(*p, s, n) != 0) return 0;
    *p += n;
    return 1;
}

static int month(const char **p, int *out) {
    for (int i = 0; i < 12; i++) {
        if (strncmp(*p, month_names[i], 3) == 0) {
            *p += 3;
            *out = i + 1;
            return 1;
        }
    }
    return 0;
}

/* "HH:MM:SS" */
static int time_of_day(const char **p, int *h, int *m, int *s) {
    return digits(p, 2, h) && lit(p, ":") && digits(p, 2, m) && lit(p, ":") && digits(p, 2, s);
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m) {
    static const int n[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) ? 29 : n[m - 1];
}

int svc__http_date_parse(const char *s, int64_t *out) {
    const char *p = s;
    int y = 0, mon = 1, d = 0, h = 0, mi = 0, sec = 0, wday = -1, ok = 0;
    for (int i = 0; i < 7 && wday < 0; i++) {
        if (strncmp(p, long_day_names[i], strlen(long_day_names[i])) == 0 && p[strlen(long_day_names[i])] == ',') {
            /* rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT". A two-digit year
             * more than 50 years ahead is the last such year in the past. */
            p += strlen(long_day_names[i]);
            int yy = 0;
            ok = lit(&p, ", ") && digits(&p, 2, &d) && lit(&p, "-") && month(&p, &mon) && lit(&p, "-") &&
                 digits(&p, 2, &yy) && lit(&p, " ") && time_of_day(&p, &h, &mi, &sec) && lit(&p, " GMT");
            time_t now = (time_t)(svc_wall_ms() / 1000);
            struct tm tm;
            int this_year = gmtime_r(&now, &tm) ? tm.tm_year + 1900 : 2000;
            y = this_year - this_year % 100 + yy;
            if (y > this_year + 50) y -= 100;
            wday = i;
        } else if (strncmp(p, day_names[i], 3) == 0) {
            p += 3;
            wday = i;
            if (*p == ',') {
                /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
                ok = lit(&p, ", ") && digits(&p, 2, &d) && lit(&p, " ") && month(&p, &mon) && lit(&p, " ") &&
                     digits(&p, 4, &y) && lit(&p, " ") && time_of_day(&p, &h, &mi, &sec) && lit(&p, " GMT");
            } else {
                /* asctime-date: "Sun Nov  6 08:49:37 1994" */
                ok = lit(&p, " ") && month(&p, &mon) && lit(&p, " ") &&
                     (*p == ' ' ? (p++, digits(&p, 1, &d)) : digits(&p, 2, &d)) && lit(&p, " ") &&
                     time_of_day(&p, &h, &mi, &sec) && lit(&p, " ") && digits(&p, 4, &y);
            }
        }
    }
    if (!ok || *p || d < 1 || d > days_in_month(y, mon) || h > 23 || mi > 59 || sec > 60) return SVC_EINVAL;
    *out = days_from_civil(y, mon, d) * 86400 + h * 3600 + mi * 60 + sec;
    return SVC_OK;
}

static int date_field(const svc_req *req, const char *name, int64_t *t) {
    const char *v = svc_req_header(req, name);
    return v && svc__http_date_parse(v, t) == SVC_OK;
}

/* ---- evaluation (RFC 9110 13.2.2) ---------------------------------------------- */

static int failed(svc_res *res, const char *why) {
    svc_res_error(res, 412, "precondition_failed", "%s", why);
    return 412;
}

static int not_modified(svc_req *req, svc_res *res, const char *etag, int64_t last_modified, int gz, int varies,
                        int matched) {
    svc_res_status(res, 304);
    int send_gz = (matched & (TAG_PLAIN | TAG_GZIP)) == TAG_GZIP ||
                  ((matched & (TAG_PLAIN | TAG_GZIP)) != TAG_PLAIN && gz == 1);
    const char *tag = send_gz ? svc__etag_gzip(req->arena, etag) : NULL;
    if (!tag) tag = etag;
    svc_res_validators(res, tag, last_modified);
    if (varies || send_gz) svc_res_header(res, "Vary", "Accept-Encoding");
    return 304;
}

/* Any If-* field: most requests (every cache hit asks) have none. */
static int has_conditions(const svc_req *req) {
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *n = req->headers[i].name;
        if ((n[0] | 0x20) == 'i' && (n[1] | 0x20) == 'f' && n[2] == '-') return 1;
    }
    return 0;
}

int svc__preconditions(svc_req *req, svc_res *res, const char *etag, int64_t last_modified, int gz, int varies) {
    if (!has_conditions(req)) return 0;
    int present;
    int64_t t;
    int m = list_match(req, "if-match", etag, 0, &present);
    if (present) {
        if (!etag || !m) return failed(res, "If-Match does not match the current ETag");
    } else if (last_modified >= 0 && date_field(req, "if-unmodified-since", &t) && last_modified > t) {
        return failed(res, "modified since If-Unmodified-Since");
    }
    int read = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    m = list_match(req, "if-none-match", etag, 1, &present);
    if (present) {
        if (etag && m) {
            if (read) return not_modified(req, res, etag, last_modified, gz, varies, m);
            return failed(res, "If-None-Match matches the current ETag");
        }
    } else if (read && last_modified >= 0 && date_field(req, "if-modified-since", &t) && last_modified <= t) {
        return not_modified(req, res, etag, last_modified, gz, varies, 0);
    }
    return 0;
}

int svc_req_preconditions(svc_req *req, svc_res *res, const char *etag, int64_t last_modified) {
    return svc__preconditions(req, res, etag, last_modified, -1, 0);
}

int svc_res_validators(svc_res *res, const char *etag, int64_t last_modified) {
    int rc = etag ? svc_res_header(res, "ETag", etag) : SVC_OK;
    char date[SVC__HTTP_DATE_MAX];
    if (rc == SVC_OK && last_modified >= 0 && svc__http_date(last_modified, date))
        rc = svc_res_header(res, "Last-Modified", date);
    return rc;
}
