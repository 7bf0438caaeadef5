/*
 * wakeup: what one hand-off between two processes costs on this machine. Two
 * processes ping-pong one byte over a loopback TCP connection (TCP_NODELAY,
 * blocking reads: each side sleeps until the other writes), N round trips,
 * first with both pinned to the same CPU, then to two different CPUs, and
 * prints the median and p99 round trip of each:
 *
 *   WAKEUP same_cpu_p50_us=.. same_cpu_p99_us=.. cross_cpu_p50_us=.. cross_cpu_p99_us=..
 *
 * A request through the gateway is handed from process to process four more
 * times than one straight to products (gateway -> nats-server -> products ->
 * nats-server -> gateway), so this is the unit the gateway's hop is made of:
 * on a VM whose idle vCPUs halt, a hand-off to another CPU wakes a halted vCPU.
 *
 * usage: wakeup [-n ROUNDS] [-p PORT] CPU_A CPU_B     (CPU_A != CPU_B)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 1000000

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        perror("wakeup: sched_setaffinity");
        exit(1);
    }
}

/* n round trips between this process on cpu_a and a child on cpu_b: p50 and
 * p99 in microseconds. */
static void measure(int port, int n, int cpu_a, int cpu_b, double *p50, double *p99) {
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0) {
        perror("wakeup: listen");
        exit(1);
    }
    pid_t child = fork();
    if (child == 0) {
        pin(cpu_b);
        int c = accept(l, NULL, NULL);
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char b;
        while (read(c, &b, 1) == 1)
            if (write(c, &b, 1) != 1) break;
        _exit(0);
    }
    pin(cpu_a);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("wakeup: connect");
        exit(1);
    }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int64_t *rtt = malloc(sizeof *rtt * (size_t)n);
    if (!rtt) exit(1);
    char b = 'x';
    for (int i = 0; i < n; i++) {
        int64_t t = now_ns();
        if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1) {
            perror("wakeup: ping");
            exit(1);
        }
        rtt[i] = now_ns() - t;
    }
    close(s);
    close(l);
    waitpid(child, NULL, 0);
    qsort(rtt, (size_t)n, sizeof *rtt, cmp_i64);
    *p50 = (double)rtt[n / 2] / 1000.0;
    *p99 = (double)rtt[(size_t)n * 99 / 100] / 1000.0;
    free(rtt);
}

int main(int argc, char **argv) {
    int n = 20000, port = 18599, opt;
    while ((opt = getopt(argc, argv, "n:p:")) != -1) {
        if (opt == 'n') n = atoi(optarg);
        else if (opt == 'p') port = atoi(optarg);
        else goto usage;
    }
    if (argc - optind != 2 || n < 100 || n > MAX_ROUNDS || port < 1 || port > 65535) goto usage;
    int cpu_a = atoi(argv[optind]), cpu_b = atoi(argv[optind + 1]);
    if (cpu_a == cpu_b || cpu_a < 0 || cpu_b < 0) goto usage;
    double s50, s99, c50, c99;
    measure(port, n, cpu_a, cpu_a, &s50, &s99);
    measure(port, n, cpu_a, cpu_b, &c50, &c99);
    printf("WAKEUP same_cpu_p50_us=%.1f same_cpu_p99_us=%.1f cross_cpu_p50_us=%.1f cross_cpu_p99_us=%.1f\n", s50,
           s99, c50, c99);
    return 0;
usage:
    fprintf(stderr, "usage: wakeup [-n ROUNDS] [-p PORT] CPU_A CPU_B\n");
    return 2;
}
