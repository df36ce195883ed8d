/*
 * epoll_echo.c -- the ceiling: the least a single-threaded epoll echo server
 * can do per round trip (epoll_wait, read, write), measured exactly as the
 * Python loops are, so the table can say how much of it each loop reaches.
 *
 * Same protocol as echo_server.py: listen on 127.0.0.1 (ephemeral port),
 * print {"port": N}, echo one connection (read up to 64 KiB, write it all
 * back before reading again) until the client closes, print
 * {"bytes": total_echoed}, exit 0.
 *
 *   cc -O2 -o epoll_echo epoll_echo.c && ./epoll_echo [timeout_seconds]
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

static void die(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    unsigned timeout = argc > 1 ? (unsigned)atoi(argv[1]) : 60;
    alarm(timeout);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 16) < 0) die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(lfd, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
    printf("{\"port\": %d}\n", ntohs(addr.sin_port));
    fflush(stdout);

    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
    if (fd < 0) die("accept4");
    close(lfd);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");

    static char buf[BUF_SIZE];
    size_t pending = 0, sent = 0; /* bytes of buf still to write back */
    long long total = 0;
    for (;;) {
        struct epoll_event out;
        int n = epoll_wait(ep, &out, 1, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        if (pending == 0) {
            ssize_t r = read(fd, buf, BUF_SIZE);
            if (r == 0) break; /* client closed: done */
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                die("read");
            }
            pending = (size_t)r;
            sent = 0;
        }
        /* Write at once (as sock_sendall does); wait for EPOLLOUT only if the
         * socket buffer is full, and read nothing meanwhile. */
        while (sent < pending) {
            ssize_t w = write(fd, buf + sent, pending - sent);
            if (w < 0) {
                if (errno == EAGAIN) break;
                if (errno == EINTR) continue;
                die("write");
            }
            sent += (size_t)w;
        }
        int want = sent < pending ? EPOLLOUT : EPOLLIN;
        if (sent == pending) {
            total += (long long)pending;
            pending = sent = 0;
        }
        if ((int)ev.events != want) {
            ev.events = (uint32_t)want;
            if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl");
        }
    }
    close(fd);
    printf("{\"bytes\": %lld}\n", total);
    return 0;
}
