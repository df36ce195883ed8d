"""Echo load client: blocking sockets, one request/response round trip at a time.

    python benchmarks/echo_client.py --port P --size 1024 --seconds 1 [--max-count N]

The same client for every server, so the only thing that changes between
measurements is the loop. (c_echo/echo_client.c is the same client in C, the
harness's default: it costs less CPU per round trip, and client and server
share one CPU.) Sends a message, reads exactly as many bytes back and checks
they are the bytes sent -- each round trip sends a different slice of a random
pattern, so a stale or misplaced echo is caught -- then the next. Untimed
warm-up round trips first; the timed loop stops at --max-count round trips or
--seconds, whichever comes first. Prints one JSON line with the counts and the
scheduling policy and CPUs it ran with (the harness checks those).
"""

import argparse
import json
import os
import socket
import sys
import time

PATTERN_SHIFT = 251   # prime, so consecutive messages differ for any size


def recv_exactly(sock, buf):
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError(f'server closed after {got} of {len(buf)} bytes')
        got += n


def timed(op, warmup, seconds, max_count):
    """Runs op(0..warmup-1) untimed, then op(warmup, ...) until max_count
    calls or seconds, whichever comes first; returns (count, elapsed)."""
    for i in range(warmup):
        op(i)
    count = 0
    perf_counter = time.perf_counter
    t0 = perf_counter()
    deadline = t0 + seconds
    while count < max_count:
        op(warmup + count)
        count += 1
        if perf_counter() >= deadline:
            break
    return count, perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--size', type=int, required=True)
    p.add_argument('--seconds', type=float, default=1.0)
    p.add_argument('--max-count', type=int, default=1_000_000)
    p.add_argument('--warmup', type=int, default=200)
    p.add_argument('--io-timeout', type=float, default=10.0,
                   help='a stuck server fails the run instead of hanging it')
    args = p.parse_args(argv)

    pattern = memoryview(os.urandom(args.size + PATTERN_SHIFT))
    buf = bytearray(args.size)
    sock = socket.create_connection(('127.0.0.1', args.port), timeout=args.io_timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def round_trip(i):
        k = i % PATTERN_SHIFT
        msg = pattern[k:k + args.size]
        sock.sendall(msg)
        recv_exactly(sock, buf)
        if buf != msg:
            raise SystemExit(f'echo_client: round trip {i}: echoed bytes differ from sent bytes')

    count, elapsed = timed(round_trip, args.warmup, args.seconds, args.max_count)
    sock.close()

    print(json.dumps({
        'roundtrips': count,
        'seconds': elapsed,
        'bytes': (args.warmup + count) * args.size,
        'sched_policy': os.sched_getscheduler(0),
        'cpus': sorted(os.sched_getaffinity(0)),
    }))
    return 0


if __name__ == '__main__':
    sys.exit(main())
