/*
 * Idempotency keys for HTTP handlers: a client retries a POST with the same
 * Idempotency-Key and gets the first attempt's response, never a second
 * effect. A key is bound to its request by SHA-256(method, path, body), so a
 * reused key with another request is a conflict, not a replay.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/internal.h"

bool svc_db_idem_key_valid(const char *key) {
    if (!key) return false;
    size_t n = 0;
    for (; key[n] && n <= SVC_DB_IDEM_KEY_MAX; n++)
        if ((unsigned char)key[n] < 0x20 || (unsigned char)key[n] > 0x7e) return false;
    return n > 0 && n <= SVC_DB_IDEM_KEY_MAX;
}

static bool scope_valid(const char *scope) {
    if (!scope) return false;
    size_t n = strnlen(scope, SVC_DB_IDEM_SCOPE_MAX + 1);
    return n > 0 && n <= SVC_DB_IDEM_SCOPE_MAX;
}

static void request_hash(unsigned char out[crypto_hash_sha256_BYTES], const char *method, const char *path,
                         const void *body, size_t len) {
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    /* NUL separators: ("GET", "/ab") and ("GETa", "/b")... hash apart. */
    crypto_hash_sha256_update(&st, (const unsigned char *)method, strlen(method) + 1);
    crypto_hash_sha256_update(&st, (const unsigned char *)path, strlen(path) + 1);
    if (len) crypto_hash_sha256_update(&st, body, len);
    crypto_hash_sha256_final(&st, out);
}

static char *dup_column(svc_stmt *s, int col, size_t *len) {
    size_t n;
    const void *p = svc_stmt_blob(s, col, &n);
    if (len) *len = n;
    char *out = malloc(n + 1);
    if (!out) return NULL;
    if (n) memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

/*
 * Takes the key: a new row (expired false), or the row of a hold older than
 * the lease (expired). 1 when taken, 0 when another request took it first
 * (on PostgreSQL, instances' writers run at once: the loser's statement
 * waits for the winner's commit and then changes nothing), or an error.
 */
static int claim(svc_db *db, const char *scope, const char *key, const unsigned char *hash, int64_t now,
                 bool expired) {
    svc_stmt *s = svc_db_stmt(
        db, expired ? "UPDATE svc_idempotency SET request_hash = ?3, status = 0, headers = NULL, body = NULL,"
                      " created_at = ?4 WHERE scope = ?1 AND key = ?2 AND status = 0 AND created_at < ?5"
                    : "INSERT INTO svc_idempotency (scope, key, request_hash, status, headers, body, created_at)"
                      " VALUES (?1, ?2, ?3, 0, NULL, NULL, ?4) ON CONFLICT DO NOTHING");
    if (!s) return SVC_EIO;
    svc_stmt_bind_text(s, 1, scope);
    svc_stmt_bind_text(s, 2, key);
    svc_stmt_bind_blob(s, 3, hash, crypto_hash_sha256_BYTES);
    svc_stmt_bind_i64(s, 4, now);
    if (expired) svc_stmt_bind_i64(s, 5, now - SVC_DB_IDEM_LEASE_S);
    int rc = svc_stmt_step(s);
    int64_t n = svc_stmt_changes(s);
    svc_stmt_reset(s);
    return rc < 0 ? rc : n == 1;
}

/* What the key holds for this request: NEW (no row), REPLAY (*out filled),
 * CONFLICT, IN_PROGRESS, EXPIRED (held longer than the lease), or an error. */
enum { IDEM_EXPIRED = -100 };
static int read_key(svc_db *db, const char *scope, const char *key, const unsigned char *hash, int64_t now,
                    svc_db_idem_response *out) {
    svc_stmt *s = svc_db_stmt(db, "SELECT request_hash, status, headers, body, created_at "
                                  "FROM svc_idempotency WHERE scope = ?1 AND key = ?2");
    if (!s) return SVC_EIO;
    svc_stmt_bind_text(s, 1, scope);
    svc_stmt_bind_text(s, 2, key);
    int rc = svc_stmt_step(s);
    int result;
    int status = rc == SVC_DB_ROW ? (int)svc_stmt_i64(s, 1) : 0;
    size_t hlen = 0;
    const void *stored = rc == SVC_DB_ROW ? svc_stmt_blob(s, 0, &hlen) : NULL;
    if (rc != SVC_DB_ROW) {
        result = rc == SVC_DB_DONE ? SVC_DB_IDEM_NEW : rc;
    } else if (hlen != crypto_hash_sha256_BYTES || sodium_memcmp(stored, hash, crypto_hash_sha256_BYTES) != 0) {
        result = SVC_DB_IDEM_CONFLICT;
    } else if (status == 0) {
        result = svc_stmt_i64(s, 4) < now - SVC_DB_IDEM_LEASE_S ? IDEM_EXPIRED : SVC_DB_IDEM_IN_PROGRESS;
    } else {
        bool has_headers = !svc_stmt_is_null(s, 2);
        out->status = status;
        out->headers = has_headers ? dup_column(s, 2, NULL) : NULL;
        out->body = dup_column(s, 3, &out->len);
        result = !out->body || (has_headers && !out->headers) ? SVC_ENOMEM : SVC_DB_IDEM_REPLAY;
        if (result != SVC_DB_IDEM_REPLAY) svc_db_idem_response_free(out);
    }
    svc_stmt_reset(s);
    return result;
}

static bool request_valid(const char *scope, const char *key, const char *method, const char *path,
                          const void *body, size_t len) {
    return scope_valid(scope) && svc_db_idem_key_valid(key) && method && path && (body || !len);
}

int svc_db_idem_check(svc_db *db, const char *scope, const char *key, const char *method, const char *path,
                      const void *body, size_t len, svc_db_idem_response *out) {
    memset(out, 0, sizeof *out);
    if (!request_valid(scope, key, method, path, body, len) || !svc_db_in_transaction(db)) return SVC_EINVAL;
    unsigned char hash[crypto_hash_sha256_BYTES];
    request_hash(hash, method, path, body, len);
    int64_t now = (int64_t)time(NULL);
    int rc = read_key(db, scope, key, hash, now, out);
    if (rc != SVC_DB_IDEM_NEW && rc != IDEM_EXPIRED) return rc;
    int taken = claim(db, scope, key, hash, now, rc == IDEM_EXPIRED);
    if (taken < 0) return taken;
    if (taken) {
        if (rc == IDEM_EXPIRED)
            svc_warn("idempotency key %s/%s held longer than %d s: taken over", scope, key, SVC_DB_IDEM_LEASE_S);
        return SVC_DB_IDEM_NEW;
    }
    /* Taken meanwhile by another instance, now committed: answer as if it
     * had been there first (a key gone again is busy: retry later). */
    rc = read_key(db, scope, key, hash, now, out);
    return rc == SVC_DB_IDEM_NEW || rc == IDEM_EXPIRED ? SVC_EAGAIN : rc;
}

int svc_db_idem_lookup(svc_db *db, const char *scope, const char *key, const char *method, const char *path,
                       const void *body, size_t len, svc_db_idem_response *out) {
    memset(out, 0, sizeof *out);
    if (!db || !request_valid(scope, key, method, path, body, len)) return SVC_EINVAL;
    unsigned char hash[crypto_hash_sha256_BYTES];
    request_hash(hash, method, path, body, len);
    int rc = read_key(db, scope, key, hash, (int64_t)time(NULL), out);
    return rc == IDEM_EXPIRED ? SVC_DB_IDEM_NEW : rc;
}

/* Runs s (bound by the caller) and resets it: SVC_OK when it changed one
 * row, SVC_ENOTFOUND when none, or an error. */
static int change_one(svc_stmt *s) {
    int rc = svc_stmt_step(s);
    int64_t n = svc_stmt_changes(s);
    svc_stmt_reset(s);
    return rc < 0 ? rc : n == 1 ? SVC_OK : SVC_ENOTFOUND;
}

int svc_db_idem_store(svc_db *db, const char *scope, const char *key, int status, const char *headers,
                      const void *body, size_t len) {
    if (!scope_valid(scope) || !svc_db_idem_key_valid(key) || status < 100 || status > 599 || (len && !body))
        return SVC_EINVAL;
    if (len > SVC_DB_IDEM_BODY_MAX) return SVC_ERANGE;
    svc_stmt *s = svc_db_stmt(db, "UPDATE svc_idempotency SET status = ?3, headers = ?4, body = ?5 "
                                  "WHERE scope = ?1 AND key = ?2 AND status = 0");
    if (!s) return SVC_EIO;
    svc_stmt_bind_text(s, 1, scope);
    svc_stmt_bind_text(s, 2, key);
    svc_stmt_bind_i64(s, 3, status);
    svc_stmt_bind_text(s, 4, headers);
    svc_stmt_bind_blob(s, 5, body, len);
    return change_one(s);
}

int svc_db_idem_release(svc_db *db, const char *scope, const char *key) {
    if (!scope_valid(scope) || !svc_db_idem_key_valid(key)) return SVC_EINVAL;
    svc_stmt *s = svc_db_stmt(db, "DELETE FROM svc_idempotency WHERE scope = ?1 AND key = ?2 AND status = 0");
    if (!s) return SVC_EIO;
    svc_stmt_bind_text(s, 1, scope);
    svc_stmt_bind_text(s, 2, key);
    return change_one(s);
}

void svc_db_idem_response_free(svc_db_idem_response *r) {
    if (!r) return;
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}
