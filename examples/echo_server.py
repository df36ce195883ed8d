"""A TCP echo server on raw non-blocking sockets: ``sock_accept``, ``sock_recv``, ``sock_sendall``.

The blocking version of this server handles one client at a time; a thread per
client costs a stack each. Here one thread serves every client: the accept
loop and each client are tasks, and every ``await loop.sock_*(...)`` lets the
loop run the others until the socket is ready.

    python examples/echo_server.py                  # port chosen by the OS, runs until Ctrl-C
    python examples/echo_server.py --port 8888
    python examples/echo_server.py --clients 2      # exit after serving two clients
    python examples/echo_server.py --demo 3         # also run three clients in the same loop

It prints ``listening on 127.0.0.1:PORT`` first, then per client
``client connected: ADDR`` and ``client disconnected: ADDR (N bytes echoed)``.
The ``--demo`` clients send a short line and a larger random payload at once,
read the echo while still sending (so neither side blocks on a full buffer),
and print ``demo client K: echoed N bytes OK`` or exit non-zero on a mismatch.
"""

import argparse
import asyncio
import os
import socket

import ferroloop


async def handle_client(conn, addr):
    loop = asyncio.get_running_loop()
    echoed = 0
    with conn:
        while True:
            data = await loop.sock_recv(conn, 65536)
            if not data:  # the client shut down its side
                break
            await loop.sock_sendall(conn, data)
            echoed += len(data)
    print(f'client disconnected: {addr} ({echoed} bytes echoed)', flush=True)
    return echoed


async def serve(server, max_clients):
    """Accepts clients until ``max_clients`` have come (0: forever); returns once all are done."""
    loop = asyncio.get_running_loop()
    clients = []
    while not max_clients or len(clients) < max_clients:
        conn, addr = await loop.sock_accept(server)
        print(f'client connected: {addr}', flush=True)
        clients.append(asyncio.ensure_future(handle_client(conn, addr)))
    return await asyncio.gather(*clients)


async def recv_exactly(loop, sock, n):
    chunks, got = [], 0
    while got < n:
        chunk = await loop.sock_recv(sock, min(65536, n - got))
        if not chunk:
            raise ConnectionError(f'server closed after {got} of {n} bytes')
        chunks.append(chunk)
        got += len(chunk)
    return b''.join(chunks)


async def demo_client(number, address):
    loop = asyncio.get_running_loop()
    payload = f'hello from demo client {number}\n'.encode() + os.urandom(256 * 1024)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        # Send and receive at once: the echo comes back while we are still sending.
        _, echoed = await asyncio.gather(loop.sock_sendall(sock, payload),
                                         recv_exactly(loop, sock, len(payload)))
        sock.shutdown(socket.SHUT_WR)
        rest = await loop.sock_recv(sock, 1)
    if echoed != payload or rest != b'':
        raise SystemExit(f'demo client {number}: echo mismatch')
    print(f'demo client {number}: echoed {len(payload)} bytes OK', flush=True)


async def main_async(port, max_clients, demo):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(('127.0.0.1', port))
        server.listen(128)
        server.setblocking(False)
        host, port = server.getsockname()
        print(f'listening on {host}:{port}', flush=True)
        serving = asyncio.ensure_future(serve(server, max_clients))
        if demo:
            await asyncio.gather(*(demo_client(k, (host, port)) for k in range(1, demo + 1)))
        echoed = await serving
    print(f'served {len(echoed)} clients, {sum(echoed)} bytes echoed', flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--port', type=int, default=0, help='port on 127.0.0.1 (0: any free one)')
    parser.add_argument('--clients', type=int, default=0,
                        help='exit after serving this many clients (0: serve forever)')
    parser.add_argument('--demo', type=int, default=0, metavar='N',
                        help='run N echo clients in the same loop, then exit')
    args = parser.parse_args(argv)
    if args.clients and args.demo:
        parser.error('--demo N serves exactly its N clients; leave out --clients')
    max_clients = args.clients or args.demo
    try:
        ferroloop.run(main_async(args.port, max_clients, args.demo))
    except KeyboardInterrupt:
        print('interrupted', flush=True)


if __name__ == '__main__':
    main()
