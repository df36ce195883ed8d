/*
 * stream_load.c -- the load client of the stream benchmarks, in C, identical
 * for every server (asyncio, uvloop, ferroloop, rloop, the C ceiling). It
 * shares one CPU with the server, so it must cost as little as possible.
 *
 *   stream_load echo PORT SIZE CONNS SECONDS MAX_COUNT WARMUP
 *       CONNS connections, each with one message of SIZE bytes in flight: send
 *       it, read exactly SIZE bytes back, compare with what was sent (every
 *       message is a different slice of a random pattern), send the next.
 *   stream_load http PORT CONNS SECONDS MAX_COUNT WARMUP BODY
 *       CONNS keep-alive connections, each with one "GET / HTTP/1.1" in flight;
 *       every response must be "HTTP/1.1 200", carry a Content-Length, not
 *       say "Connection: close", and have exactly BODY as its body.
 *   stream_load down PORT SECONDS MAX_BYTES BATCH
 *       one connection; the client asks for BATCH bytes (an 8-byte big-endian
 *       count), reads them and checks every byte against the pattern the
 *       server writes (byte k of the stream is (k % 251) * 7 + 3 mod 256);
 *       repeat. The first batch is an untimed warm-up.
 *   stream_load up PORT SECONDS MAX_BYTES BATCH
 *       one connection; the client sends an 8-byte big-endian count and that
 *       many bytes, the server answers with the 8-byte total it has received
 *       so far, which must equal the client's; repeat. First batch untimed.
 *
 * echo/http: WARMUP untimed responses first (over all connections), then the
 * timed part stops at MAX_COUNT responses or SECONDS, whichever comes first;
 * requests still in flight then are completed (and checked) but not counted.
 * down/up: timed until SECONDS or MAX_BYTES; bytes/s is the figure.
 *
 * Every wait is bounded: 10 s without progress is a failure (exit 3); a wrong
 * byte or response exits 2. Prints one JSON line: {"ops": timed operations
 * (round trips, requests, or bytes), "seconds": timed seconds, "bytes": every
 * byte echoed / received / sent (the harness compares it with the server's
 * count), "requests": every response (echo/http), "sched_policy": N,
 * "cpus": [...]} -- the harness refuses a run without SCHED_BATCH on its CPU.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_SHIFT 251 /* prime, so consecutive messages differ */
#define IO_TIMEOUT_MS 10000
#define BULK_CHUNK (256 * 1024)

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void fail(const char *fmt, const char *detail) {
    fprintf(stderr, "stream_load: ");
    fprintf(stderr, fmt, detail);
    fprintf(stderr, "\n");
    exit(2);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int connect_to(int port, int nonblocking) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct timeval tv = {.tv_sec = IO_TIMEOUT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nonblocking && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
    return fd;
}

static void print_result(long long ops, double seconds, long long bytes, long long requests) {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    sched_getaffinity(0, sizeof cpus, &cpus);
    printf("{\"ops\": %lld, \"seconds\": %.9f, \"bytes\": %lld, \"requests\": %lld, "
           "\"sched_policy\": %d, \"cpus\": [",
           ops, seconds, bytes, requests, sched_getscheduler(0));
    const char *sep = "";
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &cpus)) { printf("%s%d", sep, c); sep = ", "; }
    printf("]}\n");
}

/* ---- request/response over CONNS connections (echo, http) ------------------ */

enum { MODE_ECHO, MODE_HTTP };

struct conn {
    int fd;
    uint32_t events;
    const char *req;
    size_t req_len, req_sent;
    char *rbuf;
    size_t rlen, rcap;
    int active;
};

struct rr {
    int mode, ep;
    size_t size;            /* echo: message size */
    const char *pattern;    /* echo: size + PATTERN_SHIFT random bytes */
    long next_msg;
    const char *body;       /* http: expected body */
    size_t body_len;
    long long bytes, responses;
};

static const char HTTP_REQUEST[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

static void want(struct rr *rr, struct conn *c, uint32_t events) {
    if (c->events == events) return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(rr->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->events = events;
}

static void send_some(struct conn *c) {
    while (c->req_sent < c->req_len) {
        ssize_t w = send(c->fd, c->req + c->req_sent, c->req_len - c->req_sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR) continue;
            die("send");
        }
        c->req_sent += (size_t)w;
    }
}

static void begin_request(struct rr *rr, struct conn *c) {
    if (rr->mode == MODE_ECHO) {
        c->req = rr->pattern + rr->next_msg % PATTERN_SHIFT;
        c->req_len = rr->size;
    } else {
        c->req = HTTP_REQUEST;
        c->req_len = sizeof HTTP_REQUEST - 1;
    }
    rr->next_msg++;
    c->req_sent = 0;
    c->rlen = 0;
    send_some(c);
    want(rr, c, c->req_sent < c->req_len ? (EPOLLIN | EPOLLOUT) : EPOLLIN);
}

/* echo: 1 when the whole message is back (and matches). */
static int echo_complete(struct rr *rr, struct conn *c) {
    if (c->rlen < rr->size) return 0;
    if (memcmp(c->rbuf, c->req, rr->size) != 0)
        fail("%s", "echoed bytes differ from sent bytes");
    rr->bytes += (long long)rr->size;
    return 1;
}

static const char *find_header(const char *head, size_t head_len, const char *name) {
    size_t n = strlen(name);
    for (const char *p = head; p + n < head + head_len; p++)
        if ((p == head || p[-1] == '\n') && strncasecmp(p, name, n) == 0 && p[n] == ':')
            return p + n + 1;
    return NULL;
}

/* http: 1 when a whole response is in (and is the expected one). */
static int http_complete(struct rr *rr, struct conn *c) {
    char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) {
        if (c->rlen > 16384) fail("%s", "response head over 16 KiB");
        return 0;
    }
    size_t head_len = (size_t)(end - c->rbuf) + 4;
    if (c->rlen < 13 || memcmp(c->rbuf, "HTTP/1.1 200 ", 13) != 0)
        fail("response is not 'HTTP/1.1 200': %.40s", c->rbuf);
    const char *cl = find_header(c->rbuf, head_len, "Content-Length");
    if (!cl) fail("%s", "response without Content-Length");
    const char *conn = find_header(c->rbuf, head_len, "Connection");
    if (conn && strncasecmp(conn + strspn(conn, " "), "close", 5) == 0)
        fail("%s", "server says Connection: close on a keep-alive benchmark");
    size_t body_len = (size_t)strtoul(cl, NULL, 10);
    if (c->rlen < head_len + body_len) return 0;
    if (c->rlen > head_len + body_len) fail("%s", "more bytes than one response");
    if (body_len != rr->body_len || memcmp(c->rbuf + head_len, rr->body, body_len) != 0)
        fail("%s", "response body differs from the expected body");
    rr->bytes += (long long)c->rlen;
    return 1;
}

static void request_response(int mode, int port, size_t size, int nconns, double seconds,
                             long long max_count, long long warmup, const char *body) {
    struct rr rr = {.mode = mode, .size = size, .body = body, .body_len = body ? strlen(body) : 0};
    char *pattern = NULL;
    if (mode == MODE_ECHO) {
        pattern = malloc(size + PATTERN_SHIFT);
        if (!pattern) die("malloc");
        uint64_t x = 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid(); /* xorshift64 */
        for (size_t i = 0; i < size + PATTERN_SHIFT; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            pattern[i] = (char)x;
        }
        rr.pattern = pattern;
    }
    rr.ep = epoll_create1(0);
    if (rr.ep < 0) die("epoll_create1");

    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) die("calloc");
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->fd = connect_to(port, 1);
        c->rcap = mode == MODE_ECHO ? size : 32768;
        c->rbuf = malloc(c->rcap);
        if (!c->rbuf) die("malloc");
        c->active = 1;
    }
    for (int i = 0; i < nconns; i++) begin_request(&rr, &conns[i]);

    int active = nconns, timing = 0, stopping = 0;
    long long timed = 0;
    double t0 = now(), elapsed = 0;
    if (warmup <= 0) timing = 1;
    struct epoll_event events[64];
    while (active > 0) {
        int n = epoll_wait(rr.ep, events, 64, IO_TIMEOUT_MS);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        if (n == 0) {
            fprintf(stderr, "stream_load: no progress for 10 s (server stuck?) after %lld "
                    "responses\n", rr.responses);
            exit(3);
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if ((events[i].events & EPOLLOUT) && c->req_sent < c->req_len) {
                send_some(c);
                if (c->req_sent == c->req_len) want(&rr, c, EPOLLIN);
            }
            if (!(events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
            ssize_t r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
                die("recv");
            }
            if (r == 0) fail("%s", "server closed the connection mid-benchmark");
            c->rlen += (size_t)r;
            int done = mode == MODE_ECHO ? echo_complete(&rr, c) : http_complete(&rr, c);
            if (!done) {
                if (c->rlen == c->rcap) fail("%s", "response larger than expected");
                continue;
            }
            rr.responses++;
            if (!timing && rr.responses >= warmup) {
                timing = 1;
                t0 = now();
            } else if (timing && !stopping) {
                timed++;
                double t = now();
                if (timed >= max_count || t - t0 >= seconds) {
                    stopping = 1;
                    elapsed = t - t0;
                }
            }
            if (stopping) {
                c->active = 0;
                active--;
                close(c->fd);
            } else {
                begin_request(&rr, c);
            }
        }
    }
    print_result(timed, elapsed, rr.bytes, rr.responses);
}

/* ---- bulk over one connection (down, up) ---------------------------------- */

static void put_be64(unsigned char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) { p[i] = (unsigned char)v; v >>= 8; }
}

static uint64_t get_be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static void io_failed(const char *what) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        fprintf(stderr, "stream_load: %s: no progress for 10 s (server stuck?)\n", what);
        exit(3);
    }
    die(what);
}

static void send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            io_failed("send");
        }
        p += w;
        n -= (size_t)w;
    }
}

static void recv_all(int fd, char *p, size_t n) {
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            io_failed("recv");
        }
        if (r == 0) fail("%s", "server closed the connection mid-batch");
        p += r;
        n -= (size_t)r;
    }
}

static void bulk(int down, int port, double seconds, long long max_bytes, long long batch) {
    /* big[i] = pattern byte i (period 251), long enough for any window of a chunk */
    size_t big_len = BULK_CHUNK + PATTERN_SHIFT;
    char *big = malloc(big_len), *buf = malloc(BULK_CHUNK);
    if (!big || !buf) die("malloc");
    for (size_t i = 0; i < big_len; i++) big[i] = (char)(((i % PATTERN_SHIFT) * 7 + 3) & 0xff);

    int fd = connect_to(port, 0);
    long long total = 0, timed = 0;
    double t0 = 0, elapsed = 0;
    for (long long round = 0;; round++) {
        if (round == 1) t0 = now();
        unsigned char head[8];
        put_be64(head, (uint64_t)batch);
        if (down) {
            send_all(fd, (char *)head, 8);
            long long left = batch;
            while (left > 0) {
                size_t want_n = left < BULK_CHUNK ? (size_t)left : BULK_CHUNK;
                ssize_t r = recv(fd, buf, want_n, 0);
                if (r < 0) {
                    if (errno == EINTR) continue;
                    io_failed("recv");
                }
                if (r == 0) fail("%s", "server closed the connection mid-batch");
                if (memcmp(buf, big + total % PATTERN_SHIFT, (size_t)r) != 0)
                    fail("%s", "received bytes differ from the pattern the server must send");
                total += r;
                left -= r;
            }
        } else {
            send_all(fd, (char *)head, 8);
            long long left = batch;
            while (left > 0) {
                size_t n = left < BULK_CHUNK ? (size_t)left : BULK_CHUNK;
                send_all(fd, big + total % PATTERN_SHIFT, n);
                total += (long long)n;
                left -= (long long)n;
            }
            unsigned char ack[8];
            recv_all(fd, (char *)ack, 8);
            if ((long long)get_be64(ack) != total) {
                char msg[96];
                snprintf(msg, sizeof msg, "server acknowledged %llu bytes, client sent %lld",
                         (unsigned long long)get_be64(ack), total);
                fail("%s", msg);
            }
        }
        if (round >= 1) {
            timed += batch;
            double t = now();
            if (timed >= max_bytes || t - t0 >= seconds) {
                elapsed = t - t0;
                break;
            }
        }
    }
    close(fd);
    print_result(timed, elapsed, total, 0);
}

int main(int argc, char **argv) {
    const char *usage =
        "usage: %s echo PORT SIZE CONNS SECONDS MAX_COUNT WARMUP\n"
        "       %s http PORT CONNS SECONDS MAX_COUNT WARMUP BODY\n"
        "       %s down|up PORT SECONDS MAX_BYTES BATCH\n";
    if (argc >= 8 && strcmp(argv[1], "echo") == 0) {
        request_response(MODE_ECHO, atoi(argv[2]), (size_t)atol(argv[3]), atoi(argv[4]),
                         atof(argv[5]), atoll(argv[6]), atoll(argv[7]), NULL);
    } else if (argc >= 8 && strcmp(argv[1], "http") == 0) {
        request_response(MODE_HTTP, atoi(argv[2]), 0, atoi(argv[3]), atof(argv[4]),
                         atoll(argv[5]), atoll(argv[6]), argv[7]);
    } else if (argc >= 6 && (strcmp(argv[1], "down") == 0 || strcmp(argv[1], "up") == 0)) {
        bulk(strcmp(argv[1], "down") == 0, atoi(argv[2]), atof(argv[3]), atoll(argv[4]),
             atoll(argv[5]));
    } else {
        fprintf(stderr, usage, argv[0], argv[0], argv[0]);
        return 64;
    }
    return 0;
}
