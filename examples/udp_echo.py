"""A UDP echo server and client on ``loop.create_datagram_endpoint``.

The server is an ``asyncio.DatagramProtocol``: the loop calls
``datagram_received(data, addr)`` for every datagram, and
``transport.sendto(data, addr)`` answers the sender. The client connects its
endpoint to the server (``remote_addr=``), so ``transport.sendto(data)`` needs
no address and the kernel reports an unreachable server to
``error_received`` (an ICMP "port unreachable" becomes ConnectionRefusedError).
UDP may drop datagrams, so the client waits a bounded time for each echo and
sends again a few times before giving up.

    python examples/udp_echo.py server                  # any free port, until Ctrl-C
    python examples/udp_echo.py server --port 9999 --count 10   # exit after 10 datagrams
    python examples/udp_echo.py client --port 9999 --count 10   # then, elsewhere
    python examples/udp_echo.py demo --count 100        # server and client in one loop

The server prints ``listening on 127.0.0.1:PORT`` first and, when it stops,
``echoed N datagrams (B bytes)``. The client prints
``client: N/N echoes OK`` (or exits non-zero naming what went wrong).
"""

import argparse
import asyncio
import os
import sys

import ferroloop

TIMEOUT = 2.0       # seconds to wait for one echo
ATTEMPTS = 3        # sends of one datagram before giving up


class EchoServer(asyncio.DatagramProtocol):
    def __init__(self, count, done):
        self.count = count
        self.done = done
        self.echoed = 0
        self.bytes = 0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)
        self.echoed += 1
        self.bytes += len(data)
        if self.count and self.echoed >= self.count and not self.done.done():
            self.done.set_result(None)

    def error_received(self, exc):
        # An ICMP error about an earlier answer (the client went away):
        # nothing to do for an echo server but carry on.
        print(f'server: error_received {exc!r}', flush=True)


class EchoClient(asyncio.DatagramProtocol):
    def __init__(self):
        self.transport = None
        self.waiting = None     # the future of the echo awaited now

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(data)

    def error_received(self, exc):
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_exception(exc)

    async def echo(self, payload):
        loop = asyncio.get_running_loop()
        for _ in range(ATTEMPTS):
            self.waiting = loop.create_future()
            self.transport.sendto(payload)
            try:
                data = await asyncio.wait_for(self.waiting, TIMEOUT)
            except asyncio.TimeoutError:
                continue            # lost on the way there or back: send again
            if data == payload:
                return
            # A late echo of an earlier datagram: send this one again.
        raise SystemExit(f'client: no echo of a {len(payload)}-byte datagram '
                         f'after {ATTEMPTS} tries')


async def serve(port, count):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, server = await loop.create_datagram_endpoint(
        lambda: EchoServer(count, done), local_addr=('127.0.0.1', port))
    host, port = transport.get_extra_info('sockname')
    print(f'listening on {host}:{port}', flush=True)
    try:
        await done
    finally:
        transport.close()
        print(f'echoed {server.echoed} datagrams ({server.bytes} bytes)', flush=True)


async def run_client(port, count):
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        EchoClient, remote_addr=('127.0.0.1', port))
    try:
        for i in range(count):
            # Different sizes and contents, up to 1400 bytes (fits any MTU).
            payload = b'%d:' % i + os.urandom(i * 37 % 1400)
            await client.echo(payload)
    except ConnectionRefusedError:
        raise SystemExit(f'client: nothing listens on 127.0.0.1:{port} (port unreachable)')
    finally:
        transport.close()
    print(f'client: {count}/{count} echoes OK', flush=True)


async def demo(count):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, server = await loop.create_datagram_endpoint(
        lambda: EchoServer(count, done), local_addr=('127.0.0.1', 0))
    host, port = transport.get_extra_info('sockname')
    print(f'listening on {host}:{port}', flush=True)
    try:
        await run_client(port, count)
        await asyncio.wait_for(done, TIMEOUT)
    finally:
        transport.close()
    print(f'echoed {server.echoed} datagrams ({server.bytes} bytes)', flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('mode', choices=('server', 'client', 'demo'))
    parser.add_argument('--port', type=int, default=0,
                        help='UDP port on 127.0.0.1 (server: 0 picks a free one)')
    parser.add_argument('--count', type=int, default=0,
                        help='server: exit after this many datagrams (0: serve forever); '
                             'client, demo: datagrams to send (default 10)')
    args = parser.parse_args(argv)
    try:
        if args.mode == 'server':
            ferroloop.run(serve(args.port, args.count))
        elif args.mode == 'client':
            if not args.port:
                parser.error('client needs --port')
            ferroloop.run(run_client(args.port, args.count or 10))
        else:
            ferroloop.run(demo(args.count or 10))
    except KeyboardInterrupt:
        print('interrupted', flush=True)
        sys.exit(130)


if __name__ == '__main__':
    main()
