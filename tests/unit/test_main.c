/* The unit-test runner; see test.h. */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define MAX_TESTS 512
#define TEST_TIMEOUT_S 120 /* a hang, not slowness: several TEST_WAIT_MS fit */

static struct {
    const char *name;
    test_fn fn;
} tests[MAX_TESTS];
static int ntests;
int test_failed;

void test_register(const char *name, test_fn fn) {
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        exit(2);
    }
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stdout, "#   %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    test_failed = 1;
}

static int run_one(int i) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        alarm(TEST_TIMEOUT_S);
        test_failed = 0;
        tests[i].fn();
        fflush(stdout);
        _exit(test_failed ? 1 : 0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
    }
    if (WIFSIGNALED(st)) {
        printf("#   killed by signal %d%s\n", WTERMSIG(st),
               WTERMSIG(st) == SIGALRM ? " (timeout)" : "");
        return 1;
    }
    return WEXITSTATUS(st) != 0;
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    const char *only = argc > 1 ? argv[1] : NULL;
    for (int i = 0; i < ntests; i++) {
        if (only && strcmp(only, tests[i].name) != 0) continue;
        int bad = run_one(i);
        printf("%s - %s\n", bad ? "not ok" : "ok", tests[i].name);
        if (bad) failed++; else passed++;
    }
    printf("# %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
