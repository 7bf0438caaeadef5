/*
 * Keys: key sets, JWK and JWKS (RFC 7517, RFC 8037), and key files.
 *
 * A key set is a fixed array behind a read-write lock. Verifiers copy the one
 * key they need out of it, so a JWKS refresh on another thread never changes a
 * key under a verification in progress.
 */
#define _GNU_SOURCE /* renameat2 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/internal.h"
#include "svckit/json.h"

struct svc_jwt_keyset {
    pthread_rwlock_t lock;
    size_t n;
    _Atomic uint64_t generation;
    svc_jwt_key keys[SVC_JWT_MAX_KEYS];
};

/* Depth enough for any real JWKS (x5c arrays, key_ops), far below the
 * default so a hostile document is rejected before jansson recurses. */
#define AUTH_JSON_DEPTH 8
#define HS256_MAX_JWK_SECRET 4096

int svc__auth_parse_object(const char *data, size_t len, size_t max_bytes, json_t **out) {
    *out = NULL;
    if (!data || len > max_bytes) return SVC_EINVAL;
    svc_json_limits lim = {.max_bytes = max_bytes, .max_depth = AUTH_JSON_DEPTH,
                           .max_string = max_bytes};
    json_t *v = NULL;
    if (svc_json_parse(data, len, &lim, &v, NULL, 0) != SVC_OK) return SVC_EINVAL;
    if (!json_is_object(v)) {
        json_decref(v);
        return SVC_EINVAL;
    }
    *out = v;
    return SVC_OK;
}

void svc_jwt_key_wipe(svc_jwt_key *key) {
    if (key) sodium_memzero(key, sizeof *key);
}

/* A kid is printable ASCII without spaces: it lands in logs and JSON. */
int svc__kid_ok(const char *kid, size_t len) {
    if (len == 0 || len > SVC_JWT_MAX_KID) return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)kid[i] <= 0x20 || (unsigned char)kid[i] >= 0x7f) return 0;
    return 1;
}

int svc__key_check(const svc_jwt_key *key) {
    if (!key) return SVC_EINVAL;
    size_t kl = strnlen(key->kid, sizeof key->kid);
    if (kl == sizeof key->kid || !svc__kid_ok(key->kid, kl)) return SVC_EINVAL;
    switch (key->alg) {
    case SVC_JWT_EDDSA:
        if (crypto_core_ed25519_is_valid_point(key->pub) != 1) return SVC_EINVAL;
        if (key->has_sec && sodium_memcmp(key->sec + 32, key->pub, 32) != 0)
            return SVC_EINVAL;
        return SVC_OK;
    case SVC_JWT_HS256:
        if (key->hmac_len < SVC_JWT_MIN_SECRET || key->hmac_len > sizeof key->hmac)
            return SVC_EINVAL;
        return SVC_OK;
    }
    return SVC_EINVAL;
}

svc_jwt_keyset *svc_jwt_keyset_new(void) {
    if (svc__auth_sodium_init() != SVC_OK) return NULL;
    svc_jwt_keyset *ks = calloc(1, sizeof *ks);
    if (!ks) return NULL;
    if (pthread_rwlock_init(&ks->lock, NULL) != 0) {
        free(ks);
        return NULL;
    }
    return ks;
}

void svc_jwt_keyset_free(svc_jwt_keyset *ks) {
    if (!ks) return;
    pthread_rwlock_destroy(&ks->lock);
    sodium_memzero(ks->keys, sizeof ks->keys);
    free(ks);
}

static ssize_t find_locked(const svc_jwt_keyset *ks, const char *kid) {
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->keys[i].kid, kid) == 0) return (ssize_t)i;
    return -1;
}

int svc_jwt_keyset_add(svc_jwt_keyset *ks, const svc_jwt_key *key) {
    if (!ks || svc__key_check(key) != SVC_OK) return SVC_EINVAL;
    pthread_rwlock_wrlock(&ks->lock);
    int rc = SVC_OK;
    if (find_locked(ks, key->kid) >= 0) {
        rc = SVC_EEXIST;
    } else if (ks->n == SVC_JWT_MAX_KEYS) {
        rc = SVC_ERANGE;
    } else {
        ks->keys[ks->n++] = *key;
        atomic_fetch_add(&ks->generation, 1);
    }
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}

size_t svc_jwt_keyset_count(const svc_jwt_keyset *ks) {
    if (!ks) return 0;
    svc_jwt_keyset *m = (svc_jwt_keyset *)ks; /* the lock is not part of the value */
    pthread_rwlock_rdlock(&m->lock);
    size_t n = m->n;
    pthread_rwlock_unlock(&m->lock);
    return n;
}

int svc_jwt_keyset_has(const svc_jwt_keyset *ks, const char *kid) {
    if (!ks || !kid) return 0;
    svc_jwt_keyset *m = (svc_jwt_keyset *)ks;
    pthread_rwlock_rdlock(&m->lock);
    int has = find_locked(m, kid) >= 0;
    pthread_rwlock_unlock(&m->lock);
    return has;
}

int svc__keyset_pick(const svc_jwt_keyset *ks, const char *kid, svc_jwt_key *out) {
    svc_jwt_keyset *m = (svc_jwt_keyset *)ks;
    int rc = SVC_ENOTFOUND;
    pthread_rwlock_rdlock(&m->lock);
    if (kid) {
        ssize_t i = find_locked(m, kid);
        if (i >= 0) {
            *out = m->keys[i];
            rc = SVC_OK;
        }
    } else if (m->n == 1) {
        *out = m->keys[0];
        rc = SVC_OK;
    } else if (m->n > 1) {
        rc = SVC_EINVAL;
    }
    pthread_rwlock_unlock(&m->lock);
    return rc;
}

uint64_t svc__keyset_generation(const svc_jwt_keyset *ks) {
    return atomic_load(&((svc_jwt_keyset *)ks)->generation);
}

/* ---- keys ------------------------------------------------------------------ */

int svc_jwt_key_generate(svc_jwt_key *key) {
    if (!key || svc__auth_sodium_init() != SVC_OK) return SVC_EINVAL;
    memset(key, 0, sizeof *key);
    key->alg = SVC_JWT_EDDSA;
    if (crypto_sign_ed25519_keypair(key->pub, key->sec) != 0) return SVC_ERR;
    key->has_sec = 1;
    unsigned char id[12];
    randombytes_buf(id, sizeof id);
    svc__b64url_encode_str(key->kid, id, sizeof id);
    return SVC_OK;
}

int svc_jwt_key_hs256(svc_jwt_key *key, const void *secret, size_t len) {
    if (!key || !secret || len < SVC_JWT_MIN_SECRET || svc__auth_sodium_init() != SVC_OK)
        return SVC_EINVAL;
    memset(key, 0, sizeof *key);
    key->alg = SVC_JWT_HS256;
    memcpy(key->kid, SVC_JWT_HS256_KID, sizeof SVC_JWT_HS256_KID);
    if (len > sizeof key->hmac) {
        crypto_hash_sha256(key->hmac, secret, len);
        key->hmac_len = crypto_hash_sha256_BYTES;
    } else {
        memcpy(key->hmac, secret, len);
        key->hmac_len = len;
    }
    return SVC_OK;
}

void svc__put_json_ascii(svc_buf *out, const char *s) {
    svc_buf_putc(out, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') svc_buf_putc(out, '\\');
        svc_buf_putc(out, *s);
    }
    svc_buf_putc(out, '"');
}

static void put_b64_member(svc_buf *out, const char *name, const void *data, size_t n) {
    svc_buf_printf(out, ",\"%s\":\"", name);
    svc__b64url_encode(out, data, n);
    svc_buf_putc(out, '"');
}

static void put_public_okp(svc_buf *out, const svc_jwt_key *key) {
    svc_buf_puts(out, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\"");
    put_b64_member(out, "x", key->pub, 32);
    svc_buf_puts(out, ",\"kid\":");
    svc__put_json_ascii(out, key->kid);
    svc_buf_puts(out, ",\"alg\":\"EdDSA\",\"use\":\"sig\"");
}

int svc_jwt_key_jwk(const svc_jwt_key *key, int with_private, svc_buf *out) {
    if (!out || svc__key_check(key) != SVC_OK) return SVC_EINVAL;
    if (key->alg == SVC_JWT_EDDSA) {
        if (with_private && !key->has_sec) return SVC_EINVAL;
        put_public_okp(out, key);
        if (with_private) put_b64_member(out, "d", key->sec, 32);
        svc_buf_putc(out, '}');
    } else {
        if (!with_private) return SVC_EINVAL;
        svc_buf_puts(out, "{\"kty\":\"oct\"");
        put_b64_member(out, "k", key->hmac, key->hmac_len);
        svc_buf_puts(out, ",\"kid\":");
        svc__put_json_ascii(out, key->kid);
        svc_buf_puts(out, ",\"alg\":\"HS256\"}");
    }
    return out->oom ? SVC_ENOMEM : SVC_OK;
}

int svc_jwt_keyset_jwks(const svc_jwt_keyset *ks, svc_buf *out) {
    if (!ks || !out) return SVC_EINVAL;
    svc_jwt_keyset *m = (svc_jwt_keyset *)ks;
    svc_buf_puts(out, "{\"keys\":[");
    int first = 1;
    pthread_rwlock_rdlock(&m->lock);
    for (size_t i = 0; i < m->n; i++) {
        if (m->keys[i].alg != SVC_JWT_EDDSA) continue;
        if (!first) svc_buf_putc(out, ',');
        first = 0;
        put_public_okp(out, &m->keys[i]);
        svc_buf_putc(out, '}');
    }
    pthread_rwlock_unlock(&m->lock);
    svc_buf_puts(out, "]}");
    return out->oom ? SVC_ENOMEM : SVC_OK;
}

/* Optional string member: 0 absent, 1 present (in *s), -1 present but not a
 * string. */
static int opt_str(json_t *obj, const char *name, const char **s) {
    json_t *v = json_object_get(obj, name);
    *s = NULL;
    if (!v) return 0;
    if (!json_is_string(v)) return -1;
    *s = json_string_value(v);
    return 1;
}

static int copy_kid(svc_jwt_key *key, json_t *kid) {
    if (!json_is_string(kid)) return SVC_EINVAL;
    size_t len = json_string_length(kid);
    if (!svc__kid_ok(json_string_value(kid), len)) return SVC_EINVAL;
    memcpy(key->kid, json_string_value(kid), len);
    key->kid[len] = '\0';
    return SVC_OK;
}

static int decode_fixed(json_t *v, unsigned char *out, size_t n) {
    size_t got;
    if (!json_is_string(v)) return SVC_EINVAL;
    if (svc__b64url_decode(json_string_value(v), json_string_length(v), out, n, &got) !=
            SVC_OK ||
        got != n)
        return SVC_EINVAL;
    return SVC_OK;
}

/* An OKP/Ed25519 JWK's public half, kid and (optionally) private half. */
static int okp_from_json(svc_jwt_key *key, json_t *o, int want_private) {
    memset(key, 0, sizeof *key);
    key->alg = SVC_JWT_EDDSA;
    if (copy_kid(key, json_object_get(o, "kid")) != SVC_OK) return SVC_EINVAL;
    if (decode_fixed(json_object_get(o, "x"), key->pub, 32) != SVC_OK) return SVC_EINVAL;
    if (crypto_core_ed25519_is_valid_point(key->pub) != 1) return SVC_EINVAL;
    json_t *d = json_object_get(o, "d");
    if (want_private && d) {
        unsigned char seed[32], pub[32];
        int rc = decode_fixed(d, seed, 32);
        if (rc == SVC_OK) {
            crypto_sign_ed25519_seed_keypair(pub, key->sec, seed);
            if (sodium_memcmp(pub, key->pub, 32) != 0) rc = SVC_EINVAL;
        }
        sodium_memzero(seed, sizeof seed);
        if (rc != SVC_OK) {
            svc_jwt_key_wipe(key);
            return SVC_EINVAL;
        }
        key->has_sec = 1;
    }
    return SVC_OK;
}

int svc_jwt_key_from_jwk(svc_jwt_key *key, const char *json, size_t len) {
    if (!key || svc__auth_sodium_init() != SVC_OK) return SVC_EINVAL;
    json_t *o;
    if (svc__auth_parse_object(json, len, SVC_JWT_MAX_JWKS, &o) != SVC_OK) return SVC_EINVAL;
    int rc = SVC_EINVAL;
    const char *kty, *crv, *alg;
    if (opt_str(o, "kty", &kty) != 1 || opt_str(o, "alg", &alg) < 0) goto out;
    if (strcmp(kty, "OKP") == 0) {
        if (opt_str(o, "crv", &crv) != 1 || strcmp(crv, "Ed25519") != 0) goto out;
        if (alg && strcmp(alg, "EdDSA") != 0) goto out;
        rc = okp_from_json(key, o, 1);
    } else if (strcmp(kty, "oct") == 0) {
        if (alg && strcmp(alg, "HS256") != 0) goto out;
        json_t *k = json_object_get(o, "k");
        if (!json_is_string(k)) goto out;
        unsigned char *secret = malloc(HS256_MAX_JWK_SECRET);
        size_t n = 0;
        if (!secret) {
            rc = SVC_ENOMEM;
            goto out;
        }
        if (svc__b64url_decode(json_string_value(k), json_string_length(k), secret,
                               HS256_MAX_JWK_SECRET, &n) == SVC_OK)
            rc = svc_jwt_key_hs256(key, secret, n);
        sodium_memzero(secret, HS256_MAX_JWK_SECRET);
        free(secret);
        json_t *kid = json_object_get(o, "kid");
        if (rc == SVC_OK && kid && copy_kid(key, kid) != SVC_OK) {
            svc_jwt_key_wipe(key);
            rc = SVC_EINVAL;
        }
    }
out:
    json_decref(o);
    return rc;
}

/* ---- JWKS ------------------------------------------------------------------ */

int svc_jwt_keyset_load_jwks(svc_jwt_keyset *ks, const char *json, size_t len) {
    if (!ks || svc__auth_sodium_init() != SVC_OK) return SVC_EINVAL;
    json_t *root;
    if (svc__auth_parse_object(json, len, SVC_JWT_MAX_JWKS, &root) != SVC_OK)
        return SVC_EINVAL;
    json_t *arr = json_object_get(root, "keys");
    svc_jwt_key *tmp = calloc(SVC_JWT_MAX_KEYS, sizeof *tmp);
    int rc = SVC_EINVAL;
    size_t n = 0;
    if (!tmp) {
        rc = SVC_ENOMEM;
        goto out;
    }
    if (!json_is_array(arr)) goto out;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *e = json_array_get(arr, i);
        const char *kty, *crv, *alg, *use;
        if (!json_is_object(e) || opt_str(e, "kty", &kty) != 1) goto out;
        if (strcmp(kty, "OKP") != 0) continue;
        if (opt_str(e, "crv", &crv) != 1) goto out;
        if (strcmp(crv, "Ed25519") != 0) continue; /* X25519, Ed448 */
        if (opt_str(e, "alg", &alg) < 0 || opt_str(e, "use", &use) < 0) goto out;
        if ((alg && strcmp(alg, "EdDSA") != 0) || (use && strcmp(use, "sig") != 0)) continue;
        if (n == SVC_JWT_MAX_KEYS) {
            rc = SVC_ERANGE;
            goto out;
        }
        /* A verifier has no business with a private key: never load "d". */
        if (okp_from_json(&tmp[n], e, 0) != SVC_OK) goto out;
        for (size_t j = 0; j < n; j++)
            if (strcmp(tmp[j].kid, tmp[n].kid) == 0) goto out;
        n++;
    }
    pthread_rwlock_wrlock(&ks->lock);
    sodium_memzero(ks->keys, sizeof ks->keys);
    memcpy(ks->keys, tmp, n * sizeof *tmp);
    ks->n = n;
    atomic_fetch_add(&ks->generation, 1);
    pthread_rwlock_unlock(&ks->lock);
    rc = SVC_OK;
out:
    if (tmp) {
        sodium_memzero(tmp, SVC_JWT_MAX_KEYS * sizeof *tmp);
        free(tmp);
    }
    json_decref(root);
    return rc;
}

/* ---- key files ------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void fsync_dir_of(const char *path) {
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int svc_jwt_key_save(const svc_jwt_key *key, const char *path) {
    if (!key || !path || key->alg != SVC_JWT_EDDSA || !key->has_sec) return SVC_EINVAL;
    svc_buf jwk = {0};
    int rc = svc_jwt_key_jwk(key, 1, &jwk);
    if (rc != SVC_OK) goto out;
    svc_buf_putc(&jwk, '\n');
    if (jwk.oom) {
        rc = SVC_ENOMEM;
        goto out;
    }
    char tmp[PATH_MAX];
    unsigned char rnd[6];
    char suffix[SVC__B64URL_LEN(sizeof rnd) + 1];
    randombytes_buf(rnd, sizeof rnd);
    svc__b64url_encode_str(suffix, rnd, sizeof rnd);
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-%s", path, suffix) >= sizeof tmp) {
        rc = SVC_EINVAL;
        goto out;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        svc_error("cannot create key file %s: %s", tmp, strerror(errno));
        rc = SVC_EIO;
        goto out;
    }
    if (write_all(fd, jwk.data, jwk.len) != 0 || fsync(fd) != 0) {
        svc_error("cannot write key file %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        rc = SVC_EIO;
        goto out;
    }
    close(fd);
    /* link(), unlike rename(), never replaces an existing key: two instances
     * starting at once keep the first key, and a key is never lost. */
    if (link(tmp, path) != 0) {
        int e = errno;
        if (e == EPERM || e == ENOTSUP || e == ENOSYS) {
            /* A file system without hard links: rename without replacing. */
            if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) goto synced;
            e = errno;
        }
        unlink(tmp);
        if (e == EEXIST) {
            rc = SVC_EEXIST;
        } else {
            svc_error("cannot create key file %s: %s", path, strerror(e));
            rc = SVC_EIO;
        }
        goto out;
    }
    unlink(tmp);
synced:
    fsync_dir_of(path);
    rc = SVC_OK;
out:
    if (jwk.data) sodium_memzero(jwk.data, jwk.cap);
    svc_buf_free(&jwk);
    return rc;
}

int svc_jwt_key_load(svc_jwt_key *key, const char *path) {
    if (!key || !path) return SVC_EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return SVC_ENOTFOUND;
        svc_error("cannot open key file %s: %s", path, strerror(errno));
        return SVC_EIO;
    }
    /* fstat on the open file, not stat on the name: what is checked is what
     * is read. */
    struct stat st;
    int rc = SVC_EINVAL;
    char *data = NULL;
    if (fstat(fd, &st) != 0) {
        svc_error("cannot stat key file %s: %s", path, strerror(errno));
        rc = SVC_EIO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        svc_error("key file %s is not a regular file", path);
        goto out;
    }
    if (st.st_mode & 077) {
        svc_error("refusing key file %s: mode %03o lets group or others read it "
                  "(chmod 600)", path, (unsigned)(st.st_mode & 0777));
        goto out;
    }
    if (st.st_size <= 0 || st.st_size > SVC_JWT_MAX_JWKS) {
        svc_error("key file %s has a bad size", path);
        goto out;
    }
    size_t size = (size_t)st.st_size, got = 0;
    data = malloc(size);
    if (!data) {
        rc = SVC_ENOMEM;
        goto out;
    }
    while (got < size) {
        ssize_t r = read(fd, data + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (got != size) {
        svc_error("cannot read key file %s", path);
        rc = SVC_EIO;
        goto out;
    }
    /* The file ends with a newline, which JSON allows as whitespace. */
    rc = svc_jwt_key_from_jwk(key, data, size);
    if (rc == SVC_OK && (key->alg != SVC_JWT_EDDSA || !key->has_sec)) {
        svc_jwt_key_wipe(key);
        rc = SVC_EINVAL;
    }
    if (rc != SVC_OK) svc_error("key file %s holds no private Ed25519 JWK", path);
out:
    if (data) {
        sodium_memzero(data, (size_t)st.st_size);
        free(data);
    }
    close(fd);
    return rc;
}

int svc_jwt_key_load_or_create(svc_jwt_key *key, const char *path) {
    int rc = svc_jwt_key_load(key, path);
    if (rc != SVC_ENOTFOUND) return rc;
    rc = svc_jwt_key_generate(key);
    if (rc != SVC_OK) return rc;
    rc = svc_jwt_key_save(key, path);
    if (rc == SVC_EEXIST) {
        svc_jwt_key_wipe(key);
        return svc_jwt_key_load(key, path);
    }
    if (rc != SVC_OK) svc_jwt_key_wipe(key);
    return rc;
}
