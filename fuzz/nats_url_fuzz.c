/*
 * Fuzzes the NATS server URLs of NATS_URL (src/net/nats.c): the scheme
 * (nats:// or tls://, which decides whether the connection must be TLS),
 * credentials, host and port; and the list of them (svc__nats_urls_parse)
 * that a service reads at start.
 *
 * The input is one URL (a NUL ends it early). Besides the sanitizers, it
 * checks that an accepted URL gives a non-empty host without control bytes,
 * spaces or '@', a port from 1 to 65535, and tls set exactly when the URL
 * starts with tls://. The list parser runs on every input too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/nats.h"

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *url = malloc(size + 1);
    if (!url) return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    svc_nats_server s;
    if (svc__nats_url_parse(url, &s) == SVC_OK) {
        size_t hl = strlen(s.host);
        CHECK(hl > 0 && hl < sizeof s.host);
        for (size_t i = 0; i < hl; i++)
            CHECK((unsigned char)s.host[i] >= 0x20 && s.host[i] != 0x7f && s.host[i] != ' ' && s.host[i] != '@');
        CHECK(s.port >= 1 && s.port <= 65535);
        CHECK(s.tls == (strncmp(url, "tls://", 6) == 0));
        CHECK(strlen(s.user) < sizeof s.user && strlen(s.pass) < sizeof s.pass);
    }
    /* The list parser on the same bytes (commas make several). */
    svc_nats_server list[4];
    int n;
    if (svc__nats_urls_parse(url, list, 4, &n) == SVC_OK) CHECK(n >= 1 && n <= 4);
    free(url);
    return 0;
}
