"""A TCP echo server written as an ``asyncio.Protocol``, served by ``loop.create_server``.

No coroutine touches the data: the loop calls the protocol's methods --
``connection_made`` once, ``data_received`` for every chunk that arrives,
``eof_received`` when the client shuts down its side, ``connection_lost`` at
the end -- and ``transport.write`` hands the bytes back. The loop creates one
protocol object per accepted connection.

    python examples/protocol_echo_server.py                 # any free port, until Ctrl-C
    python examples/protocol_echo_server.py --port 8888     # then: nc 127.0.0.1 8888
    python examples/protocol_echo_server.py --clients 2     # exit after two clients have left
    python examples/protocol_echo_server.py --demo 3        # also run three clients in this loop

It prints ``listening on 127.0.0.1:PORT`` first, then per client
``client connected: ADDR`` and ``client disconnected: ADDR (N bytes echoed)``,
and ``served K clients, N bytes echoed`` before exiting. The ``--demo``
clients are protocols too (``loop.create_connection``): each writes a line
and 256 KiB of random bytes, then ``write_eof()``, collects the echo until
the server closes, compares, and prints ``demo client K: echoed N bytes OK``
(a mismatch exits non-zero).
"""

import argparse
import asyncio
import os

import ferroloop


class EchoProtocol(asyncio.Protocol):
    """Server side: one instance per accepted connection."""

    def __init__(self, on_done):
        self.on_done = on_done
        self.transport = None
        self.peer = None
        self.echoed = 0

    def connection_made(self, transport):
        self.transport = transport
        self.peer = transport.get_extra_info('peername')
        print(f'client connected: {self.peer}', flush=True)

    def data_received(self, data):
        self.transport.write(data)
        self.echoed += len(data)

    def eof_received(self):
        # The client has sent everything. Returning a false value lets the
        # transport close itself -- after what is still buffered is written.
        return False

    def connection_lost(self, exc):
        reason = '' if exc is None else f', error: {exc!r}'
        print(f'client disconnected: {self.peer} ({self.echoed} bytes echoed{reason})', flush=True)
        self.on_done(self.echoed)


class DemoClient(asyncio.Protocol):
    """Client side: sends a payload, half-closes, collects the echo until the server closes."""

    def __init__(self, payload, finished):
        self.payload = payload
        self.finished = finished
        self.received = []

    def connection_made(self, transport):
        transport.write(self.payload)   # buffered by the transport as far as needed
        transport.write_eof()           # sent once the buffer has drained

    def data_received(self, data):
        self.received.append(data)

    def connection_lost(self, exc):
        if not self.finished.done():
            if exc is not None:
                self.finished.set_exception(exc)
            else:
                self.finished.set_result(b''.join(self.received))


async def demo_client(number, host, port):
    loop = asyncio.get_running_loop()
    payload = f'hello from demo client {number}\n'.encode() + os.urandom(256 * 1024)
    finished = loop.create_future()
    await loop.create_connection(lambda: DemoClient(payload, finished), host, port)
    echoed = await finished
    if echoed != payload:
        raise SystemExit(f'demo client {number}: echo mismatch '
                         f'({len(echoed)} bytes back for {len(payload)} sent)')
    print(f'demo client {number}: echoed {len(echoed)} bytes OK', flush=True)


async def main_async(port, max_clients, demo):
    loop = asyncio.get_running_loop()
    served = []
    all_done = loop.create_future()

    def on_done(echoed):
        served.append(echoed)
        if max_clients and len(served) >= max_clients and not all_done.done():
            all_done.set_result(None)

    server = await loop.create_server(lambda: EchoProtocol(on_done), '127.0.0.1', port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f'listening on {host}:{port}', flush=True)
    async with server:
        if demo:
            await asyncio.gather(*(demo_client(k, host, port) for k in range(1, demo + 1)))
        if max_clients:
            await all_done
        else:
            await server.serve_forever()
    print(f'served {len(served)} clients, {sum(served)} bytes echoed', flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--port', type=int, default=0, help='port on 127.0.0.1 (0: any free one)')
    parser.add_argument('--clients', type=int, default=0,
                        help='exit after this many clients have disconnected (0: serve forever)')
    parser.add_argument('--demo', type=int, default=0, metavar='N',
                        help='run N protocol clients in the same loop, then exit')
    args = parser.parse_args(argv)
    if args.clients and args.demo:
        parser.error('--demo N serves exactly its N clients; leave out --clients')
    try:
        ferroloop.run(main_async(args.port, args.clients or args.demo, args.demo))
    except KeyboardInterrupt:
        print('interrupted', flush=True)


if __name__ == '__main__':
    main()
