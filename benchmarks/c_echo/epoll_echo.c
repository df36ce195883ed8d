/*
 * epoll_echo.c -- the ceiling: the least a single-threaded epoll echo server
 * can do per round trip (epoll_wait, read, write), measured exactly as the
 * Python loops are, so the table can say how much of it each loop reaches.
 *
 * Same protocol as echo_server.py / stream_server.py's echo: listen on
 * 127.0.0.1 (ephemeral port), print {"port": N}, accept CONNS connections
 * (default 1) and echo each (read up to 64 KiB, write it all back before
 * reading from that connection again) until the client closes it; once all
 * CONNS have come and gone print {"bytes": total_echoed} and exit 0.
 *
 *   cc -O2 -o epoll_echo epoll_echo.c && ./epoll_echo [timeout_seconds [conns]]
 *
 * The timeout (default 60 s) is an alarm(): a stuck run dies with SIGALRM,
 * which the harness reports as a failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 65536 /* same as echo_server.py's RECV_SIZE */
#define MAX_EVENTS 64

struct conn {
    int fd;
    uint32_t events;       /* what epoll watches for it now */
    size_t pending, sent;  /* bytes of buf still to write back */
    char buf[BUF_SIZE];
};

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* One readiness event on c: returns 1 when the connection is finished. */
static int serve(int ep, struct conn *c, long long *total) {
    if (c->pending == 0) {
        ssize_t r = read(c->fd, c->buf, BUF_SIZE);
        if (r == 0) return 1; /* client closed: done */
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) return 0;
            if (errno == ECONNRESET) return 1;
            die("read");
        }
        c->pending = (size_t)r;
        c->sent = 0;
    }
    /* Write at once (as sock_sendall and transports do); wait for EPOLLOUT
     * only if the socket buffer is full, and read nothing meanwhile. */
    while (c->sent < c->pending) {
        ssize_t w = write(c->fd, c->buf + c->sent, c->pending - c->sent);
        if (w < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            if (errno == ECONNRESET || errno == EPIPE) return 1;
            die("write");
        }
        c->sent += (size_t)w;
    }
    uint32_t want = c->sent < c->pending ? EPOLLOUT : EPOLLIN;
    if (c->sent == c->pending) {
        *total += (long long)c->pending;
        c->pending = c->sent = 0;
    }
    if (c->events != want) {
        struct epoll_event ev = {.events = want, .data.ptr = c};
        c->events = want;
        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    }
    return 0;
}

int main(int argc, char **argv) {
    unsigned timeout = argc > 1 ? (unsigned)atoi(argv[1]) : 60;
    int conns = argc > 2 ? atoi(argv[2]) : 1;
    if (conns < 1) conns = 1;
    alarm(timeout);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 128) < 0) die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(lfd, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
    printf("{\"port\": %d}\n", ntohs(addr.sin_port));
    fflush(stdout);

    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL}; /* NULL: the listener */
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) die("epoll_ctl");

    int accepted = 0, open_conns = 0;
    long long total = 0;
    struct epoll_event events[MAX_EVENTS];
    while (accepted < conns || open_conns > 0) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                while (accepted < conns) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) {
                        if (errno == EAGAIN || errno == EINTR) break;
                        die("accept4");
                    }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    if (!c) die("calloc");
                    c->fd = fd;
                    c->events = EPOLLIN;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
                    accepted++;
                    open_conns++;
                }
                if (accepted == conns) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, lfd, NULL);
                    close(lfd);
                    lfd = -1;
                }
                continue;
            }
            if (serve(ep, c, &total)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                free(c);
                open_conns--;
            }
        }
    }
    printf("{\"bytes\": %lld}\n", total);
    return 0;
}
