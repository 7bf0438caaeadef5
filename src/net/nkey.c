/*
 * NKEY seeds and .creds files (nkey.h). The secrets pass through stack
 * buffers that are wiped (sodium_memzero) on every path out.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net/nkey.h"
#include "svckit/core.h"

#define PREFIX_SEED (18 << 3)        /* 'S' */
#define RAW_SEED_LEN 36              /* 2 prefix bytes, 32 seed bytes, CRC */
#define RAW_PUBLIC_LEN 35            /* 1 prefix byte, 32 key bytes, CRC */

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static int fail(char *err, size_t errlen, const char *why) {
    snprintf(err, errlen, "%s", why);
    return SVC_EINVAL;
}

/* CRC-16/XMODEM (polynomial 0x1021, initial 0), as the nkeys library. */
static unsigned crc16(const unsigned char *p, size_t n) {
    unsigned crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (unsigned)p[i] << 8;
        for (int b = 0; b < 8; b++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
        crc &= 0xffff;
    }
    return crc;
}

static void base32_encode(const unsigned char *in, size_t n, char *out) {
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            *out++ = b32[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits) *out++ = b32[(acc << (5 - bits)) & 31];
    *out = '\0';
}

/* Decodes exactly len characters into out (cap bytes); -1 on a character
 * outside the alphabet, more bytes than cap, or non-zero padding bits.
 * Returns the bytes written. */
static int base32_decode(const char *in, size_t len, unsigned char *out, size_t cap) {
    unsigned acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        const char *c = in[i] ? strchr(b32, in[i]) : NULL;
        if (!c) return -1;
        acc = (acc << 5) | (unsigned)(c - b32);
        bits += 5;
        if (bits >= 8) {
            if (n == cap) return -1;
            out[n++] = (unsigned char)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    /* The bits past the last byte must be zero: one encoding per key. */
    if (acc & ((1u << bits) - 1)) return -1;
    return (int)n;
}

void svc__nkey_encode(int type, int seed, const unsigned char key[32], char *out) {
    unsigned char raw[RAW_SEED_LEN];
    size_t n = 0;
    if (seed) {
        raw[n++] = (unsigned char)(PREFIX_SEED | (type >> 5));
        raw[n++] = (unsigned char)((type & 31) << 3);
    } else {
        raw[n++] = (unsigned char)type;
    }
    memcpy(raw + n, key, 32);
    n += 32;
    unsigned crc = crc16(raw, n);
    raw[n++] = (unsigned char)(crc & 0xff);
    raw[n++] = (unsigned char)(crc >> 8);
    base32_encode(raw, n, out);
    sodium_memzero(raw, sizeof raw);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int svc__nkey_parse_seed(const char *text, size_t len, svc_nkey_creds *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    while (len && is_space(*text)) text++, len--;
    while (len && is_space(text[len - 1])) len--;
    if (len != SVC_NKEY_SEED_LEN)
        return fail(err, errlen, "not an NKEY seed (expected 58 characters starting with SU)");
    unsigned char raw[RAW_SEED_LEN + 1];
    int rc = SVC_EINVAL;
    int n = base32_decode(text, len, raw, sizeof raw);
    if (n != RAW_SEED_LEN) {
        fail(err, errlen, "not an NKEY seed (not base32)");
    } else if (crc16(raw, RAW_SEED_LEN - 2) != (unsigned)(raw[34] | raw[35] << 8)) {
        fail(err, errlen, "NKEY seed checksum mismatch (a typo, or a truncated seed)");
    } else if ((raw[0] & 0xf8) != PREFIX_SEED) {
        fail(err, errlen, "not an NKEY seed (a public key or another kind of key; seeds start with S)");
    } else if ((((raw[0] & 7) << 5) | ((raw[1] & 0xf8) >> 3)) != SVC_NKEY_USER) {
        fail(err, errlen, "not a user seed (SU...): an operator or account seed cannot sign in");
    } else if (sodium_init() < 0) {
        fail(err, errlen, "libsodium cannot start");
    } else {
        unsigned char pk[32];
        crypto_sign_seed_keypair(pk, out->sk, raw + 2);
        svc__nkey_encode(SVC_NKEY_USER, 0, pk, out->pub);
        rc = SVC_OK;
    }
    sodium_memzero(raw, sizeof raw);
    return rc;
}

/* ---- .creds ------------------------------------------------------------------ */

/* A marker line: at least three dashes, something, at least three dashes. */
static int is_marker(const char *l, size_t n) {
    while (n && is_space(l[n - 1])) n--;
    return n >= 7 && strncmp(l, "---", 3) == 0 && strncmp(l + n - 3, "---", 3) == 0;
}

/* The line after the first begin marker at or after *pos, if an end marker
 * follows it; advances *pos past the end marker. */
static int next_block(const char *text, size_t len, size_t *pos, const char **body, size_t *body_len) {
    const char *lines[3];
    size_t lens[3];
    int have = 0;
    size_t p = *pos;
    while (p < len) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t n = nl ? (size_t)(nl - (text + p)) : len - p;
        const char *l = text + p;
        p += n + (nl ? 1 : 0);
        size_t t = n;
        while (t && is_space(l[t - 1])) t--;
        size_t lead = 0;
        while (lead < t && is_space(l[lead])) lead++;
        if (have == 0 && !is_marker(l + lead, t - lead)) continue;
        if (have > 0 && t == lead) continue; /* blank lines around the body */
        lines[have] = l + lead;
        lens[have] = t - lead;
        if (++have == 3) {
            if (!is_marker(lines[2], lens[2]) || is_marker(lines[1], lens[1])) return -1;
            *body = lines[1];
            *body_len = lens[1];
            *pos = p;
            return 0;
        }
    }
    return -1;
}

/* The claims of a compact JWT (header.payload.signature), decoded. */
static json_t *jwt_claims(const char *jwt, size_t len, char *err, size_t errlen) {
    const char *d1 = memchr(jwt, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - jwt)) : NULL;
    if (!d1 || !d2 || d1 == jwt || d2 == d1 + 1 || d2 + 1 == jwt + len ||
        memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - jwt))) {
        fail(err, errlen, "the user JWT is not three dot-separated parts");
        return NULL;
    }
    for (const char *c = jwt; c < jwt + len; c++)
        if (!(*c == '.' || *c == '-' || *c == '_' || (*c >= '0' && *c <= '9') || ((*c | 0x20) >= 'a' && (*c | 0x20) <= 'z'))) {
            fail(err, errlen, "the user JWT has characters outside base64url");
            return NULL;
        }
    unsigned char claims[SVC_NKEY_MAX_JWT];
    size_t n = 0;
    if (sodium_base642bin(claims, sizeof claims, d1 + 1, (size_t)(d2 - d1 - 1), NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
        fail(err, errlen, "the user JWT's claims are not base64url");
        return NULL;
    }
    json_error_t je;
    json_t *doc = json_loadb((const char *)claims, n, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(doc)) {
        json_decref(doc);
        fail(err, errlen, "the user JWT's claims are not a JSON object");
        return NULL;
    }
    return doc;
}

int svc__nkey_parse_creds(const char *text, size_t len, long long now_s, svc_nkey_creds *out, char *err,
                          size_t errlen) {
    memset(out, 0, sizeof *out);
    size_t pos = 0, jl = 0, sl = 0;
    const char *jwt = NULL, *seed = NULL;
    if (next_block(text, len, &pos, &jwt, &jl) != 0 || next_block(text, len, &pos, &seed, &sl) != 0)
        return fail(err, errlen, "not a .creds file (expected a NATS USER JWT block and a USER NKEY SEED block)");
    if (jl > SVC_NKEY_MAX_JWT) return fail(err, errlen, "the user JWT is too long");
    if (svc__nkey_parse_seed(seed, sl, out, err, errlen) != SVC_OK) return SVC_EINVAL;
    json_t *claims = jwt_claims(jwt, jl, err, errlen);
    int rc = SVC_EINVAL;
    if (claims) {
        const char *sub = json_string_value(json_object_get(claims, "sub"));
        json_t *type = json_object_get(json_object_get(claims, "nats"), "type");
        json_t *exp = json_object_get(claims, "exp");
        if (!sub || strcmp(sub, out->pub) != 0)
            fail(err, errlen, "the user JWT is not for this seed (its \"sub\" is not the seed's public key)");
        else if (type && !(json_is_string(type) && strcmp(json_string_value(type), "user") == 0))
            fail(err, errlen, "the JWT is not a user JWT");
        else if (exp && (!json_is_integer(exp) || (now_s && json_integer_value(exp) < now_s)))
            fail(err, errlen, "the user JWT has expired");
        else rc = SVC_OK;
        json_decref(claims);
    }
    if (rc != SVC_OK) {
        svc__nkey_wipe(out);
        return rc;
    }
    memcpy(out->jwt, jwt, jl);
    out->jwt[jl] = '\0';
    return SVC_OK;
}

int svc__nkey_load(const char *path, int creds, svc_nkey_creds *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return SVC_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, errlen, "not a regular file");
    }
    /* Only the owner may read it (as ssh wants a private key), except that
     * root's file may be read, not written, by its group when we are not
     * root: what Kubernetes makes of a Secret volume in a pod with fsGroup
     * (mode 0440, owner root, group the pod's), which only root can grant. */
    mode_t open_to = st.st_uid == 0 && geteuid() != 0 ? 037 : 077;
    if (st.st_mode & open_to) {
        close(fd);
        snprintf(err, errlen, "permissions %04o are too open: group and others must have no access (chmod 600)",
                 (unsigned)(st.st_mode & 07777));
        return SVC_EINVAL;
    }
    if (st.st_size > SVC_NKEY_MAX_FILE) {
        close(fd);
        snprintf(err, errlen, "larger than %d bytes", SVC_NKEY_MAX_FILE);
        return SVC_EINVAL;
    }
    char buf[SVC_NKEY_MAX_FILE + 1];
    size_t n = 0;
    int rc = SVC_OK;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            snprintf(err, errlen, "cannot read: %s", strerror(errno));
            rc = SVC_EIO;
            break;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n == sizeof buf) {
            snprintf(err, errlen, "larger than %d bytes", SVC_NKEY_MAX_FILE);
            rc = SVC_EINVAL;
            break;
        }
    }
    close(fd);
    if (rc == SVC_OK)
        rc = creds ? svc__nkey_parse_creds(buf, n, (long long)time(NULL), out, err, errlen)
                   : svc__nkey_parse_seed(buf, n, out, err, errlen);
    sodium_memzero(buf, sizeof buf);
    return rc;
}

int svc__nkey_generate(char seed[SVC_NKEY_SEED_LEN + 1], char pub[SVC_NKEY_PUBLIC_LEN + 1]) {
    if (sodium_init() < 0) return SVC_EIO;
    unsigned char raw[32], pk[32], sk[crypto_sign_SECRETKEYBYTES];
    randombytes_buf(raw, sizeof raw);
    crypto_sign_seed_keypair(pk, sk, raw);
    svc__nkey_encode(SVC_NKEY_USER, 1, raw, seed);
    svc__nkey_encode(SVC_NKEY_USER, 0, pk, pub);
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(sk, sizeof sk);
    return SVC_OK;
}

void svc__nkey_sign(const svc_nkey_creds *c, const void *msg, size_t len, char sig[SVC_NKEY_SIG_LEN + 1]) {
    unsigned char s[crypto_sign_BYTES];
    crypto_sign_detached(s, NULL, msg, len, c->sk);
    sodium_bin2base64(sig, SVC_NKEY_SIG_LEN + 1, s, sizeof s, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void svc__nkey_wipe(svc_nkey_creds *c) {
    if (c) sodium_memzero(c, sizeof *c);
}
