/*
 * Fuzz target for src/net/nkey.c, the parsers of NATS_NKEY_SEED_FILE and
 * NATS_CREDS. Each input is tried as
 *   1. a seed file: what decodes must encode back to the same text;
 *   2. a .creds file, with a fixed clock;
 *   3. the claims of the user JWT of an otherwise valid .creds file, whose
 *      seed is made here from fixed bytes (1..32, as tests/unit/net/
 *      test_nkey.c; no key is stored in the corpus), so that the fuzzer
 *      reaches the JWT checks past the seed's checksum.
 */
#define _GNU_SOURCE /* memmem */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "net/nkey.h"
#include "svckit/core.h"

#define FUZZ_NOW 1700000000

static char seed[SVC_NKEY_SEED_LEN + 1];
static svc_nkey_creds c;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!seed[0]) {
        unsigned char raw[32];
        for (int i = 0; i < 32; i++) raw[i] = (unsigned char)(i + 1);
        svc__nkey_encode(SVC_NKEY_USER, 1, raw, seed);
    }
    const char *in = (const char *)data;
    char err[160];

    if (svc__nkey_parse_seed(in, size, &c, err, sizeof err) == SVC_OK) {
        char again[SVC_NKEY_SEED_LEN + 1];
        svc__nkey_encode(SVC_NKEY_USER, 1, c.sk, again);
        CHECK(strlen(c.pub) == SVC_NKEY_PUBLIC_LEN && c.pub[0] == 'U');
        CHECK(memmem(in, size, again, SVC_NKEY_SEED_LEN) != NULL);
    }

    if (svc__nkey_parse_creds(in, size, FUZZ_NOW, &c, err, sizeof err) == SVC_OK)
        CHECK(c.jwt[0] && strlen(c.jwt) <= SVC_NKEY_MAX_JWT && c.pub[0] == 'U');
    else
        CHECK(c.pub[0] == '\0'); /* nothing left behind on failure */

    if (size > 4096) return 0;
    char b64[4096 * 4 / 3 + 8];
    sodium_bin2base64(b64, sizeof b64, data, size, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    size_t cap = strlen(b64) + 512;
    char *text = malloc(cap);
    if (!text) return 0;
    int n = snprintf(text, cap,
                     "-----BEGIN NATS USER JWT-----\neyJhbGciOiJlZDI1NTE5LW5rZXkifQ.%s.c2ln\n"
                     "------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n%s\n"
                     "------END USER NKEY SEED------\n",
                     b64, seed);
    if (svc__nkey_parse_creds(text, (size_t)n, FUZZ_NOW, &c, err, sizeof err) == SVC_OK)
        CHECK(strstr(text, c.jwt) != NULL && memmem(in, size, c.pub, SVC_NKEY_PUBLIC_LEN) != NULL);
    free(text);
    svc__nkey_wipe(&c);
    return 0;
}
