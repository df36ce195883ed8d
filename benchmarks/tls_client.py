"""TLS load client: blocking ``ssl`` sockets, one thing at a time.

    python benchmarks/tls_client.py --port P --cafile cert.pem --mode echo --size 1024 --seconds 1
    python benchmarks/tls_client.py --port P --cafile cert.pem --mode handshake --seconds 1

The same client for every server (tls_server.py on each loop). The server's
certificate is verified (against --cafile, for the name localhost) as any
real client would. Two modes, each op checked:

- ``echo``: one connection; an op is one round trip of --size bytes, sent and
  read back and compared, as echo_client.py does over plain TCP (each round
  trip sends a different slice of a random pattern).
- ``handshake``: an op is a whole connection: connect, TLS handshake (a full
  one: no session is resumed), one --size byte round trip, close.

Untimed warm-up ops first; the timed loop stops at --max-count ops or
--seconds, whichever comes first. Prints one JSON line: ops, seconds, the
bytes sent (= echoed), the connections made, and the scheduling policy and
CPUs it ran with (the harness checks those).
"""

import argparse
import json
import os
import socket
import ssl
import sys

from echo_client import PATTERN_SHIFT, recv_exactly, timed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--cafile', required=True)
    p.add_argument('--mode', choices=('echo', 'handshake'), required=True)
    p.add_argument('--size', type=int, default=16)
    p.add_argument('--seconds', type=float, default=1.0)
    p.add_argument('--max-count', type=int, default=1_000_000)
    p.add_argument('--warmup', type=int, default=20)
    p.add_argument('--io-timeout', type=float, default=10.0,
                   help='a stuck server fails the run instead of hanging it')
    args = p.parse_args(argv)

    ctx = ssl.create_default_context(cafile=args.cafile)
    pattern = memoryview(os.urandom(args.size + PATTERN_SHIFT))
    buf = bytearray(args.size)
    conns = 0

    def connect():
        nonlocal conns
        sock = socket.create_connection(('127.0.0.1', args.port), timeout=args.io_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns += 1
        return ctx.wrap_socket(sock, server_hostname='localhost')

    def round_trip(sock, i):
        k = i % PATTERN_SHIFT
        msg = pattern[k:k + args.size]
        sock.sendall(msg)
        recv_exactly(sock, buf)
        if buf != msg:
            raise SystemExit(f'tls_client: op {i}: echoed bytes differ from sent bytes')

    echo_sock = connect() if args.mode == 'echo' else None

    def op(i):
        if echo_sock is not None:
            round_trip(echo_sock, i)
        else:
            with connect() as sock:     # close() sends no close_notify, as most clients
                round_trip(sock, i)

    count, elapsed = timed(op, args.warmup, args.seconds, args.max_count)
    if echo_sock is not None:
        echo_sock.close()

    print(json.dumps({
        'ops': count,
        'seconds': elapsed,
        'bytes': (args.warmup + count) * args.size,
        'conns': conns,
        'sched_policy': os.sched_getscheduler(0),
        'cpus': sorted(os.sched_getaffinity(0)),
    }))
    return 0


if __name__ == '__main__':
    sys.exit(main())
