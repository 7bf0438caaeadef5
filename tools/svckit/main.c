/* svckit: the command-line tool: `svckit run` (the local supervisor),
 * `svckit status`, `svckit top`, `svckit call`, `svckit routes`, `svckit new`,
 * `svckit nkey`. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage[] =
    "usage: svckit <command> [options]\n"
    "\n"
    "commands:\n"
    "  run [name ...]   start the processes of a Procfile, prefix their output,\n"
    "                   restart them when they exit, stop them all on Ctrl-C\n"
    "  status           list the live svckit instances on NATS: version,\n"
    "                   health, request counts\n"
    "  top              the live picture in the terminal: services, instances,\n"
    "                   rates, errors, latencies (q quits)\n"
    "  call SERVICE METHOD PATH [BODY]\n"
    "                   send one request to a service over NATS, print the\n"
    "                   answer\n"
    "  routes           list every service's routes from NATS discovery\n"
    "  new NAME [DIR]   write the skeleton of a service built on the installed\n"
    "                   svckit (route, test, Makefile, Dockerfile, README)\n"
    "  nkey [--out FILE]\n"
    "                   make an NKEY user for NATS: print its seed (or write\n"
    "                   it to FILE, mode 600) and its public key\n"
    "  version          print the version\n"
    "  help             this text\n"
    "\n"
    "`svckit <command> --help` tells more. Documentation: docs/cli.md\n";

const char *svc__opt_value(int argc, char **argv, int *i, const char *opt, int *missing) {
    const char *a = argv[*i];
    size_t n = strlen(opt);
    if (strncmp(a, opt, n)) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n]) return NULL;
    if (*i + 1 < argc) return argv[++*i];
    *missing = 1;
    return NULL;
}

/* A child given our closed fd 0, 1 or 2 would see the first pipe we open
 * there; keep the three standard descriptors taken. */
static void ensure_std_fds(void) {
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0) {
            int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
            if (n >= 0 && n != fd) close(n);
        }
}

int main(int argc, char **argv) {
    ensure_std_fds();
    const char *cmd = argc > 1 ? argv[1] : NULL;
    if (!cmd || !strcmp(cmd, "help") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        fputs(usage, cmd ? stdout : stderr);
        return cmd ? SVC__EXIT_OK : SVC__EXIT_USAGE;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("svckit %s (%s)\n", SVC_VERSION, SVC_GIT_REV);
        return SVC__EXIT_OK;
    }
    if (!strcmp(cmd, "run")) return svc__cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "status")) return svc__cmd_status(argc - 1, argv + 1);
    if (!strcmp(cmd, "top")) return svc__cmd_top(argc - 1, argv + 1);
    if (!strcmp(cmd, "call")) return svc__cmd_call(argc - 1, argv + 1);
    if (!strcmp(cmd, "routes")) return svc__cmd_routes(argc - 1, argv + 1);
    if (!strcmp(cmd, "new")) return svc__cmd_new(argc - 1, argv + 1);
    if (!strcmp(cmd, "nkey")) return svc__cmd_nkey(argc - 1, argv + 1);
    fprintf(stderr, "svckit: unknown command '%s'\n\n%s", cmd, usage);
    return SVC__EXIT_USAGE;
}
