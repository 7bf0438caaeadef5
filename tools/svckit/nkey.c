/* `svckit nkey`: a new NKEY user (seed and public key) for nats-server's
 * `nkey:` users, or the public key of an existing seed file. The key
 * material and its encoding are the library's (src/net/nkey.h). */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "net/nkey.h"

static const char nkey_usage[] =
    "usage: svckit nkey [--out FILE | --public FILE]\n"
    "\n"
    "Makes a new NKEY user for NATS (a seed, SU..., and its public key, U...)\n"
    "and prints the seed, then the public key, one a line.\n"
    "\n"
    "options:\n"
    "  --out FILE      write the seed to FILE instead (a new file, mode 600:\n"
    "                  what NATS_NKEY_SEED_FILE takes) and print only the\n"
    "                  public key\n"
    "  --public FILE   print the public key of the seed in FILE (checked as a\n"
    "                  service checks NATS_NKEY_SEED_FILE)\n"
    "  -h, --help      this text\n"
    "\n"
    "The public key goes into nats-server's configuration (`nkey: U...`), the\n"
    "seed only to the one program that signs in with it (docs/messaging.md).\n"
    "Exit status: 0 done, 1 the file could not be written or read, 2 bad\n"
    "arguments.\n";

/* The seed into a new file of mode 600: never over an existing one. */
static int write_seed(const char *path, const char *seed) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "svckit nkey: cannot create %s: %s\n", path, strerror(errno));
        return SVC__EXIT_FAIL;
    }
    char line[SVC_NKEY_SEED_LEN + 2];
    int n = snprintf(line, sizeof line, "%s\n", seed);
    int ok = write(fd, line, (size_t)n) == n;
    sodium_memzero(line, sizeof line);
    if (close(fd) != 0) ok = 0;
    if (!ok) {
        fprintf(stderr, "svckit nkey: cannot write %s: %s\n", path, strerror(errno));
        unlink(path);
        return SVC__EXIT_FAIL;
    }
    return SVC__EXIT_OK;
}

int svc__cmd_nkey(int argc, char **argv) {
    const char *out = NULL, *public_of = NULL;
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(nkey_usage, stdout);
            return SVC__EXIT_OK;
        } else if ((v = svc__opt_value(argc, argv, &i, "--out", &missing))) {
            out = v;
        } else if ((v = svc__opt_value(argc, argv, &i, "--public", &missing))) {
            public_of = v;
        } else {
            fprintf(stderr, "svckit nkey: %s '%s'\n\n%s", missing ? "missing value of" : "unknown argument",
                    argv[i], nkey_usage);
            return SVC__EXIT_USAGE;
        }
    }
    if (out && public_of) {
        fprintf(stderr, "svckit nkey: --out or --public, not both\n");
        return SVC__EXIT_USAGE;
    }
    if (public_of) {
        svc_nkey_creds c;
        char err[160];
        if (svc__nkey_load(public_of, 0, &c, err, sizeof err) != SVC_OK) {
            fprintf(stderr, "svckit nkey: %s: %s\n", public_of, err);
            return SVC__EXIT_FAIL;
        }
        printf("%s\n", c.pub);
        svc__nkey_wipe(&c);
        return SVC__EXIT_OK;
    }
    char seed[SVC_NKEY_SEED_LEN + 1], pub[SVC_NKEY_PUBLIC_LEN + 1];
    if (svc__nkey_generate(seed, pub) != SVC_OK) {
        fprintf(stderr, "svckit nkey: libsodium cannot start\n");
        return SVC__EXIT_FAIL;
    }
    int rc = SVC__EXIT_OK;
    if (out) rc = write_seed(out, seed);
    else printf("%s\n", seed);
    sodium_memzero(seed, sizeof seed);
    if (rc == SVC__EXIT_OK) printf("%s\n", pub);
    return rc;
}
