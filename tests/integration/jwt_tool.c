/*
 * jwt_tool: svckit's JWT code on the command line, for the interop tests
 * (tests/integration/test_jwt_interop.py) and for people.
 *
 *   jwt_tool gen [KID]                       private Ed25519 JWK on stdout
 *   jwt_tool pub KEY.json                    the JWKS of a private JWK's public half
 *   jwt_tool sign (--jwk KEY.json | --secret S) (--claims JSON |
 *                 --sub SUB [--name N] [--role R] [--ttl SECONDS])
 *                                            a compact token on stdout
 *   jwt_tool verify (--jwks KEYS.json | --jwk KEY.json | --secret S)
 *                   [--iss ISS] [--aud AUD] [--now T] TOKEN
 *                                            the verified claims as JSON on stdout
 *
 * Exit status: 0 on success; 1 when verification fails (reason on stderr);
 * 3 for an unknown kid; 2 for bad usage or unreadable input.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svckit/auth.h"

static int usage(void) {
    fprintf(stderr,
            "usage: jwt_tool gen [KID]\n"
            "       jwt_tool pub KEY.json\n"
            "       jwt_tool sign (--jwk KEY.json | --secret S) (--claims JSON | --sub SUB "
            "[--name N] [--role R] [--ttl S])\n"
            "       jwt_tool verify (--jwks KEYS.json | --jwk KEY.json | --secret S) "
            "[--iss ISS] [--aud AUD] [--now T] TOKEN\n");
    return 2;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    svc_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) svc_buf_append(&b, chunk, n);
    fclose(f);
    if (b.oom) {
        svc_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return b.data ? b.data : calloc(1, 1);
}

static int load_jwk(const char *path, svc_jwt_key *key) {
    size_t len;
    char *doc = read_file(path, &len);
    if (!doc) return SVC_EIO;
    int rc = svc_jwt_key_from_jwk(key, doc, len);
    if (rc != SVC_OK) fprintf(stderr, "%s: not a usable JWK\n", path);
    free(doc);
    return rc;
}

static int cmd_gen(int argc, char **argv) {
    svc_jwt_key k;
    if (svc_jwt_key_generate(&k) != SVC_OK) return 2;
    if (argc > 0) {
        if (strlen(argv[0]) > SVC_JWT_MAX_KID) return usage();
        strcpy(k.kid, argv[0]);
    }
    svc_buf out = {0};
    if (svc_jwt_key_jwk(&k, 1, &out) != SVC_OK) return 2;
    puts(out.data);
    svc_buf_free(&out);
    svc_jwt_key_wipe(&k);
    return 0;
}

static int cmd_pub(int argc, char **argv) {
    svc_jwt_key k;
    if (argc != 1 || load_jwk(argv[0], &k) != SVC_OK) return argc != 1 ? usage() : 2;
    svc_jwt_keyset *ks = svc_jwt_keyset_new();
    svc_buf out = {0};
    if (!ks || svc_jwt_keyset_add(ks, &k) != SVC_OK || svc_jwt_keyset_jwks(ks, &out) != SVC_OK)
        return 2;
    puts(out.data);
    svc_buf_free(&out);
    svc_jwt_keyset_free(ks);
    return 0;
}

static const char *opt(int argc, char **argv, const char *name) {
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return NULL;
}

static int key_from_opts(int argc, char **argv, svc_jwt_key *k) {
    const char *jwk = opt(argc, argv, "--jwk"), *secret = opt(argc, argv, "--secret");
    if (jwk) return load_jwk(jwk, k);
    if (secret) {
        int rc = svc_jwt_key_hs256(k, secret, strlen(secret));
        if (rc != SVC_OK) fprintf(stderr, "secret: at least %d bytes\n", SVC_JWT_MIN_SECRET);
        return rc;
    }
    return SVC_EINVAL;
}

static int cmd_sign(int argc, char **argv) {
    svc_jwt_key k;
    if (key_from_opts(argc, argv, &k) != SVC_OK) return usage();
    const char *claims = opt(argc, argv, "--claims"), *sub = opt(argc, argv, "--sub");
    const char *ttl = opt(argc, argv, "--ttl");
    svc_buf tok = {0};
    int rc;
    if (claims) {
        rc = svc_jwt_sign_payload(&k, claims, strlen(claims), &tok);
    } else if (sub) {
        rc = svc_jwt_sign(&k, sub, opt(argc, argv, "--name"), opt(argc, argv, "--role"),
                          ttl ? atoll(ttl) : SVC_JWT_DEFAULT_TTL_S, &tok);
    } else {
        return usage();
    }
    svc_jwt_key_wipe(&k);
    if (rc != SVC_OK) {
        fprintf(stderr, "sign: %s\n", svc_status_str(rc));
        return 2;
    }
    puts(tok.data);
    svc_buf_free(&tok);
    return 0;
}

static int cmd_verify(int argc, char **argv) {
    if (argc < 1) return usage();
    const char *token = argv[argc - 1];
    svc_jwt_keyset *ks = svc_jwt_keyset_new();
    if (!ks) return 2;
    const char *jwks = opt(argc - 1, argv, "--jwks");
    svc_jwt_key k;
    if (jwks) {
        size_t len;
        char *doc = read_file(jwks, &len);
        int rc = doc ? svc_jwt_keyset_load_jwks(ks, doc, len) : SVC_EIO;
        free(doc);
        if (rc != SVC_OK) {
            fprintf(stderr, "%s: not a usable JWKS (%s)\n", jwks, svc_status_str(rc));
            return 2;
        }
    } else if (key_from_opts(argc - 1, argv, &k) != SVC_OK || svc_jwt_keyset_add(ks, &k) != SVC_OK) {
        return usage();
    }
    const char *now = opt(argc - 1, argv, "--now");
    svc_jwt_policy pol = {.issuer = opt(argc - 1, argv, "--iss"),
                          .audience = opt(argc - 1, argv, "--aud"),
                          .leeway_s = -1,
                          .now = now ? atoll(now) : 0};
    svc_claims c;
    char why[128];
    int rc = svc_jwt_verify(ks, token, strlen(token), &pol, &c, why, sizeof why);
    svc_jwt_keyset_free(ks);
    if (rc != SVC_OK) {
        fprintf(stderr, "verify: %s\n", why);
        return rc == SVC_ENOTFOUND ? 3 : 1;
    }
    json_t *o = json_pack("{s:s, s:s, s:I, s:I}", "sub", c.sub, "iss", c.iss, "exp",
                          (json_int_t)c.exp, "iat", (json_int_t)c.iat);
    if (!o) return 2;
    if (c.nbf) json_object_set_new(o, "nbf", json_integer(c.nbf));
    if (c.name[0]) json_object_set_new(o, "name", json_string(c.name));
    if (c.role[0]) json_object_set_new(o, "role", json_string(c.role));
    if (c.jti[0]) json_object_set_new(o, "jti", json_string(c.jti));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return 2;
    puts(s);
    free(s);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    const char *cmd = argv[1];
    argc -= 2;
    argv += 2;
    if (strcmp(cmd, "gen") == 0) return cmd_gen(argc, argv);
    if (strcmp(cmd, "pub") == 0) return cmd_pub(argc, argv);
    if (strcmp(cmd, "sign") == 0) return cmd_sign(argc, argv);
    if (strcmp(cmd, "verify") == 0) return cmd_verify(argc, argv);
    return usage();
}
