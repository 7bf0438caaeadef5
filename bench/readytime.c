/*
 * readytime: time from exec of a server to its first 200 on a readiness path.
 *
 * For each run: fork; the child pins itself to a CPU if asked, redirects stdout
 * to the log file, stamps CLOCK_MONOTONIC into a shared page and execs the server
 * (with the environment readytime got). The parent connects to HOST:PORT, sends
 * "GET PATH", and repeats every 0.2 ms until the status line says 200; the time
 * from the child's stamp to that moment is one sample. The server then gets
 * SIGTERM (SIGKILL after 5 s) and is reaped before the next run.
 *
 * usage: readytime [-n RUNS] [-c CPU] [-o LOGFILE] [-t TIMEOUT_MS] HOST PORT PATH -- PROG [ARGS...]
 * output: one line  "READY runs=N median_us=M samples_us=a,b,c"  (exit 1 on failure)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS      101
#define POLL_SLEEP_NS 200000L  /* 0.2 ms between attempts */
#define IO_TIMEOUT_MS 1000     /* one attempt's send/recv limit */
#define KILL_GRACE_MS 5000

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One attempt: 1 if the server answered 200, 0 otherwise. */
static int probe(const struct sockaddr_in *sa, const char *req, size_t req_len) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct timeval tv = {.tv_sec = IO_TIMEOUT_MS / 1000, .tv_usec = (IO_TIMEOUT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int ok = 0;
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 &&
        send(fd, req, req_len, MSG_NOSIGNAL) == (ssize_t)req_len) {
        char buf[64];
        size_t got = 0;
        while (got < 12) {
            ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        buf[got] = 0;
        ok = got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0 && strncmp(buf + 8, " 200", 4) == 0;
    }
    close(fd);
    return ok;
}

static void stop_child(pid_t pid) {
    kill(pid, SIGTERM);
    for (int waited = 0; waited < KILL_GRACE_MS; waited++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void usage(const char *me) {
    fprintf(stderr,
            "usage: %s [-n RUNS] [-c CPU] [-o LOGFILE] [-t TIMEOUT_MS] HOST PORT PATH -- PROG [ARGS...]\n",
            me);
    exit(2);
}

int main(int argc, char **argv) {
    int runs = 5, cpu = -1;
    long timeout_ms = 10000;
    const char *logfile = "/dev/null";
    int opt;
    while ((opt = getopt(argc, argv, "+n:c:o:t:")) != -1) {
        switch (opt) {
        case 'n': runs = atoi(optarg); break;
        case 'c': cpu = atoi(optarg); break;
        case 'o': logfile = optarg; break;
        case 't': timeout_ms = atol(optarg); break;
        default: usage(argv[0]);
        }
    }
    if (runs < 1 || runs > MAX_RUNS || timeout_ms < 1 || argc - optind < 5 ||
        strcmp(argv[optind + 3], "--") != 0)
        usage(argv[0]);
    const char *host = argv[optind], *path = argv[optind + 2];
    char **prog = &argv[optind + 4];
    struct sockaddr_in sa = {.sin_family = AF_INET};
    long port = atol(argv[optind + 1]);
    if (port < 1 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        usage(argv[0]);
    sa.sin_port = htons((uint16_t)port);

    char req[512];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%ld\r\nConnection: close\r\n\r\n",
                      path, host, port);
    if (rl < 0 || (size_t)rl >= sizeof req)
        usage(argv[0]);

    /* The port must be free, or we would time someone else's server. */
    if (probe(&sa, req, (size_t)rl)) {
        fprintf(stderr, "readytime: something already answers on %s:%ld\n", host, port);
        return 1;
    }

    int64_t *stamp = mmap(NULL, sizeof(int64_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (stamp == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    int64_t samples[MAX_RUNS];
    for (int r = 0; r < runs; r++) {
        *stamp = 0;
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            if (cpu >= 0) {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(cpu, &set);
                if (sched_setaffinity(0, sizeof set, &set) != 0)
                    _exit(126);
            }
            int lfd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (lfd < 0 || dup2(lfd, STDOUT_FILENO) < 0)
                _exit(126);
            *stamp = now_us();
            execvp(prog[0], prog);
            _exit(127);
        }
        int64_t deadline = now_us() + timeout_ms * 1000;
        int64_t t = -1;
        for (;;) {
            if (probe(&sa, req, (size_t)rl)) {
                t = now_us();
                break;
            }
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                fprintf(stderr, "readytime: %s exited before ready (status %d)\n", prog[0], st);
                return 1;
            }
            if (now_us() > deadline) {
                fprintf(stderr, "readytime: %s not ready after %ld ms\n", prog[0], timeout_ms);
                stop_child(pid);
                return 1;
            }
            struct timespec ts = {0, POLL_SLEEP_NS};
            nanosleep(&ts, NULL);
        }
        samples[r] = t - *stamp;
        stop_child(pid);
    }
    int64_t sorted[MAX_RUNS];
    memcpy(sorted, samples, sizeof(int64_t) * (size_t)runs);
    qsort(sorted, (size_t)runs, sizeof(int64_t), cmp_i64);
    printf("READY runs=%d median_us=%lld samples_us=", runs, (long long)sorted[runs / 2]);
    for (int r = 0; r < runs; r++)
        printf("%s%lld", r ? "," : "", (long long)samples[r]);
    printf("\n");
    return 0;
}
