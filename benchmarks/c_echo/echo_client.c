/*
 * echo_client.c -- the echo load client in C: echo_client.py's protocol and
 * checks, at a fraction of its CPU cost. Client and server share one CPU, so
 * every microsecond the client spends is one the server cannot; a cheap
 * client lets differences between the servers show.
 *
 *   echo_client PORT SIZE SECONDS MAX_COUNT WARMUP
 *
 * Each round trip sends SIZE bytes (a different slice of a random pattern
 * each time), reads exactly SIZE bytes back and compares them with what it
 * sent; a mismatch exits 2. Socket send/receive timeouts of 10 s turn a stuck
 * server into a failure. Prints one JSON line like echo_client.py.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_SHIFT 251 /* prime, so consecutive messages differ */

static void die(const char *what) {
    perror(what);
    exit(1);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void io_failed(const char *what) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        fprintf(stderr, "echo_client: %s: no progress for 10 s (server stuck?)\n", what);
        exit(3);
    }
    die(what);
}

static void send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, 0);
        if (w < 0) io_failed("send");
        p += w;
        n -= (size_t)w;
    }
}

static void recv_all(int fd, char *p, size_t n) {
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0) io_failed("recv");
        if (r == 0) {
            fprintf(stderr, "echo_client: server closed mid-message\n");
            exit(2);
        }
        p += r;
        n -= (size_t)r;
    }
}

static void round_trip(int fd, const char *pattern, char *buf, size_t size, long i) {
    const char *msg = pattern + i % PATTERN_SHIFT;
    send_all(fd, msg, size);
    recv_all(fd, buf, size);
    if (memcmp(buf, msg, size) != 0) {
        fprintf(stderr, "echo_client: round trip %ld: echoed bytes differ from sent bytes\n", i);
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s PORT SIZE SECONDS MAX_COUNT WARMUP\n", argv[0]);
        return 64;
    }
    int port = atoi(argv[1]);
    size_t size = (size_t)atol(argv[2]);
    double seconds = atof(argv[3]);
    long max_count = atol(argv[4]);
    long warmup = atol(argv[5]);

    char *pattern = malloc(size + PATTERN_SHIFT);
    char *buf = malloc(size);
    if (!pattern || !buf) die("malloc");
    uint64_t x = 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid(); /* xorshift64 */
    for (size_t i = 0; i < size + PATTERN_SHIFT; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        pattern[i] = (char)x;
    }

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    for (long i = 0; i < warmup; i++)
        round_trip(fd, pattern, buf, size, i);
    long count = 0;
    double t0 = now(), elapsed;
    while (count < max_count) {
        round_trip(fd, pattern, buf, size, warmup + count);
        count++;
        if (now() - t0 >= seconds) break;
    }
    elapsed = now() - t0;
    close(fd);

    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    sched_getaffinity(0, sizeof cpus, &cpus);
    printf("{\"roundtrips\": %ld, \"seconds\": %.9f, \"bytes\": %lld, \"sched_policy\": %d, \"cpus\": [",
           count, elapsed, (long long)(warmup + count) * (long long)size, sched_getscheduler(0));
    const char *sep = "";
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &cpus)) { printf("%s%d", sep, c); sep = ", "; }
    printf("]}\n");
    return 0;
}
