/*
 * NATS NKEY and .creds credentials (src/net, used by the NATS client):
 * decoding a user seed, reading the decorated .creds format, and signing the
 * nonce a server sends in INFO (https://docs.nats.io/running-a-nats-service/
 * configuration/securing_nats/auth_intro/nkey_auth).
 *
 * An encoded key is base32 (RFC 4648, no padding) of its prefix byte(s), 32
 * key bytes and a CRC-16/XMODEM of those, little-endian. A seed ("S" then the
 * type: "SU..." for a user) is 58 characters, a public key ("U...") 56. The
 * key pair is Ed25519 from the 32 seed bytes (libsodium). Signatures go on
 * the wire as base64url without padding.
 *
 * All of it is pure (no I/O) but svc__nkey_load, and thread-safe on distinct
 * objects; a loaded svc_nkey_creds is read-only and may be shared by threads.
 */
#ifndef SVC_NET_NKEY_H
#define SVC_NET_NKEY_H

#include <stddef.h>

#define SVC_NKEY_SEED_LEN 58         /* "SU" + 56 characters */
#define SVC_NKEY_PUBLIC_LEN 56       /* "U" + 55 characters */
#define SVC_NKEY_SIG_LEN 86          /* an Ed25519 signature, base64url, no padding */
/* A user JWT longer than this is refused (real ones are under 2 KiB). */
#define SVC_NKEY_MAX_JWT 8192
/* A seed or .creds file larger than this is refused unread. */
#define SVC_NKEY_MAX_FILE (32 * 1024)

/* Key types (the first character of a public key). */
enum { SVC_NKEY_USER = 20 << 3, SVC_NKEY_ACCOUNT = 0, SVC_NKEY_OPERATOR = 14 << 3 };

/* What a client needs to authenticate: the user key pair and, from a .creds
 * file, the user JWT ("" for a bare seed). */
typedef struct svc_nkey_creds {
    unsigned char sk[64];            /* libsodium's Ed25519 secret key (seed + public key) */
    char pub[SVC_NKEY_PUBLIC_LEN + 1];
    char jwt[SVC_NKEY_MAX_JWT + 1];
} svc_nkey_creds;

/*
 * Encodes 32 key bytes as a key of the given type (SVC_NKEY_*): a seed when
 * seed is 1 ("S" + type), else a public key. out needs SVC_NKEY_SEED_LEN + 1
 * bytes (a seed) or SVC_NKEY_PUBLIC_LEN + 1; NUL-terminated.
 */
void svc__nkey_encode(int type, int seed, const unsigned char key[32], char *out);

/*
 * Decodes a user seed (surrounding whitespace ignored) into out (jwt "").
 * SVC_OK; SVC_EINVAL with err saying why: not base32, wrong length, bad
 * checksum, not a seed, a seed of another type than user. The decoded seed
 * bytes are wiped before it returns.
 */
int svc__nkey_parse_seed(const char *text, size_t len, svc_nkey_creds *out, char *err, size_t errlen);

/*
 * Parses a .creds file: the user JWT between "-----BEGIN NATS USER JWT-----"
 * and its end line, then the seed between "-----BEGIN USER NKEY SEED-----"
 * and its end line (any line of three or more dashes both sides counts as a
 * marker, as in the NATS clients; other lines are ignored). The JWT must be
 * three base64url parts whose claims name the seed's public key as "sub",
 * have "nats.type" "user" when given, and an "exp" not before now_s (0: not
 * checked). SVC_OK; SVC_EINVAL with err.
 */
int svc__nkey_parse_creds(const char *text, size_t len, long long now_s, svc_nkey_creds *out, char *err,
                          size_t errlen);

/*
 * Reads path (a seed file when creds is 0, else a .creds file) and parses it
 * as above. Refused: a file that is not a regular file, that group or others
 * may read, write or run (mode & 077, as ssh refuses a private key; but a
 * file of root's read by another user may be readable by its group, as
 * Kubernetes mounts a Secret in a pod with fsGroup), larger than
 * SVC_NKEY_MAX_FILE, or unreadable. The file's bytes are wiped after
 * use. SVC_OK; SVC_EINVAL or SVC_EIO with err.
 */
int svc__nkey_load(const char *path, int creds, svc_nkey_creds *out, char *err, size_t errlen);

/*
 * A new user key pair from libsodium's random source: seed gets the seed
 * ("SU...", SVC_NKEY_SEED_LEN characters and a NUL: a secret, the caller
 * wipes it), pub its public key ("U...", what nats-server's `nkey:` names).
 * SVC_EIO when libsodium cannot start.
 */
int svc__nkey_generate(char seed[SVC_NKEY_SEED_LEN + 1], char pub[SVC_NKEY_PUBLIC_LEN + 1]);

/* Signs msg (the server's nonce): sig gets SVC_NKEY_SIG_LEN characters and a NUL. */
void svc__nkey_sign(const svc_nkey_creds *c, const void *msg, size_t len, char sig[SVC_NKEY_SIG_LEN + 1]);

/* Zeroes c (sodium_memzero). NULL: no-op. */
void svc__nkey_wipe(svc_nkey_creds *c);

#endif
