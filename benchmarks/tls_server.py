"""The TLS benchmarks' server, on any loop: an echo Protocol behind ``ssl=``.

    python benchmarks/tls_server.py --loop ferroloop --cert cert.pem --key key.pem

stream_server.py's ``proto_echo`` protocol (``data_received`` writes the data
back), served by ``loop.create_server(..., ssl=ctx)``: the loop's TLS layer
does the handshake and turns records into ``data_received`` calls and
``transport.write`` into records. The context is the plain server one
(``ssl.create_default_context(Purpose.CLIENT_AUTH)`` and the certificate).

Listens on 127.0.0.1 (ephemeral port; loopback only) and prints {"port": N}.
How many connections the client makes is its own affair (the handshake
benchmark runs until its time is up), so the server serves until its stdin
closes -- the harness closes it once the client has exited -- and every
connection has ended; then it prints {"bytes": B, "conns": C} (bytes echoed,
connections whose handshake completed) and exits 0. ``--timeout`` bounds the
whole run: past it the server exits 2 rather than hang.
"""

import argparse
import asyncio
import json
import math
import os
import ssl
import sys

from loops import new_loop
import stream_server


class Stats(stream_server.Stats):
    """stream_server's counters, with the number of connections told at the end."""

    def __init__(self, loop):
        super().__init__(loop, conns=math.inf)

    def all_connected(self):
        self.conns = self.accepted
        if self.open == 0 and not self.done.done():
            self.done.set_result(None)


async def serve(ctx):
    loop = asyncio.get_running_loop()
    stats = Stats(loop)
    server = await loop.create_server(lambda: stream_server.EchoProtocol(stats),
                                      '127.0.0.1', 0, ssl=ctx, backlog=128)

    def stdin_readable():
        if not os.read(0, 4096):        # EOF: the client is done
            loop.remove_reader(0)
            stats.all_connected()
    loop.add_reader(0, stdin_readable)
    return await stream_server.announce_and_serve(server, stats)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--loop', required=True)
    p.add_argument('--cert', required=True)
    p.add_argument('--key', required=True)
    p.add_argument('--timeout', type=float, default=60.0)
    args = p.parse_args(argv)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    try:
        stats = loop.run_until_complete(asyncio.wait_for(serve(ctx), args.timeout))
    except asyncio.TimeoutError:
        print(f'tls_server ({args.loop}): no clean finish within {args.timeout}s', file=sys.stderr)
        return 2
    finally:
        loop.close()
    print(json.dumps({'bytes': stats.bytes, 'conns': stats.accepted}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
