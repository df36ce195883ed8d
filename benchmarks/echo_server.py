"""Echo server on ``loop.sock_recv`` / ``loop.sock_sendall``, for one connection.

    python benchmarks/echo_server.py --loop ferroloop [--timeout 60]

Listens on 127.0.0.1 (an ephemeral port; loopback only), prints
{"port": N} once it is listening, echoes everything the single client sends
until the client closes, then prints {"bytes": total_echoed} and exits 0.
The harness compares that total with the client's own count. --timeout bounds
the whole run: past it the server exits 2 rather than hang.

The same protocol as c_echo/epoll_echo.c, the C ceiling: read up to 64 KiB,
write it all back, repeat.
"""

import argparse
import asyncio
import json
import socket
import sys

from loops import new_loop

RECV_SIZE = 65536   # same buffer size as the C server


async def echo(loop, conn):
    total = 0
    while True:
        data = await loop.sock_recv(conn, RECV_SIZE)
        if not data:
            return total
        await loop.sock_sendall(conn, data)
        total += len(data)


async def serve(loop, listener):
    conn, _ = await loop.sock_accept(listener)
    with conn:
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await echo(loop, conn)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--loop', required=True)
    p.add_argument('--timeout', type=float, default=60.0)
    args = p.parse_args(argv)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(('127.0.0.1', 0))
    listener.listen(16)
    listener.setblocking(False)

    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    print(json.dumps({'port': listener.getsockname()[1]}), flush=True)
    try:
        total = loop.run_until_complete(asyncio.wait_for(serve(loop, listener), args.timeout))
    except asyncio.TimeoutError:
        print(f'echo_server ({args.loop}): no clean finish within {args.timeout}s', file=sys.stderr)
        return 2
    finally:
        listener.close()
        loop.close()
    print(json.dumps({'bytes': total}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
