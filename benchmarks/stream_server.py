"""The servers of the stream benchmarks, on any loop: transports, protocols, streams.

    python benchmarks/stream_server.py --loop ferroloop --kind proto_echo [--conns 10]

Kinds (each the plain way an asyncio program would write it):

- ``proto_echo``: an ``asyncio.Protocol`` whose ``data_received`` writes the
  data back (``transport.write``).
- ``streams_echo``: ``asyncio.start_server``; per client ``await
  reader.read(65536)``, ``writer.write``, ``await writer.drain()``.
- ``http``: a minimal HTTP/1.1 keep-alive server as a ``Protocol``: every
  request head (up to the blank line; pipelined ones too) gets the same small
  200 response with a Content-Length.
- ``bulk_down``: a ``Protocol`` that, for each 8-byte big-endian count the
  client sends, writes that many bytes of a fixed pattern (byte k of the
  stream is ``(k % 251) * 7 + 3``), honouring ``pause_writing`` /
  ``resume_writing``.
- ``bulk_up``: a ``Protocol`` that reads an 8-byte count and then that many
  bytes, discarding them, and answers each batch with the 8-byte total so far.

Listens on 127.0.0.1 (ephemeral port; loopback only), prints {"port": N};
serves until ``--conns`` connections have been accepted and all of them have
closed, then prints {"bytes": B, "requests": R, "conns": C} (bytes echoed /
written / received; HTTP requests answered) and exits 0. The harness checks
those against the client's own counts. ``--timeout`` bounds the whole run:
past it the server exits 2 rather than hang.
"""

import argparse
import asyncio
import json
import sys

from loops import new_loop

READ_SIZE = 65536       # streams echo: same buffer size as the C server

HTTP_BODY = b'Hello, World!'
HTTP_RESPONSE = (b'HTTP/1.1 200 OK\r\n'
                 b'Content-Type: text/plain\r\n'
                 b'Content-Length: ' + str(len(HTTP_BODY)).encode() + b'\r\n'
                 b'\r\n' + HTTP_BODY)

PATTERN_PERIOD = 251
PATTERN = bytes((k * 7 + 3) & 0xFF for k in range(PATTERN_PERIOD))
CHUNK = PATTERN * 1024          # 257,024 bytes; a whole number of periods


class Stats:
    def __init__(self, loop, conns):
        self.bytes = 0
        self.requests = 0
        self.accepted = 0
        self.open = 0
        self.conns = conns
        self.done = loop.create_future()

    def opened(self):
        self.accepted += 1
        self.open += 1

    def closed(self):
        self.open -= 1
        if self.accepted >= self.conns and self.open == 0 and not self.done.done():
            self.done.set_result(None)


class EchoProtocol(asyncio.Protocol):
    def __init__(self, stats):
        self.stats = stats

    def connection_made(self, transport):
        self.transport = transport
        self.stats.opened()

    def data_received(self, data):
        self.transport.write(data)
        self.stats.bytes += len(data)

    def connection_lost(self, exc):
        self.stats.closed()


class HttpProtocol(asyncio.Protocol):
    def __init__(self, stats):
        self.stats = stats
        self.pending = b''

    def connection_made(self, transport):
        self.transport = transport
        self.stats.opened()

    def data_received(self, data):
        if self.pending:
            data = self.pending + data
        complete = data.count(b'\r\n\r\n')
        if complete:
            self.transport.write(HTTP_RESPONSE * complete if complete > 1 else HTTP_RESPONSE)
            self.stats.requests += complete
            self.pending = data[data.rindex(b'\r\n\r\n') + 4:]
        else:
            self.pending = data
            if len(data) > 65536:
                self.transport.close()      # no request head is this long

    def connection_lost(self, exc):
        self.stats.closed()


class BulkDownProtocol(asyncio.Protocol):
    def __init__(self, stats):
        self.stats = stats
        self.head = b''
        self.remaining = 0      # bytes asked for and not yet written
        self.offset = 0         # stream offset: where in the pattern the next byte is
        self.paused = False

    def connection_made(self, transport):
        self.transport = transport
        self.stats.opened()

    def data_received(self, data):
        self.head += data
        while len(self.head) >= 8:
            self.remaining += int.from_bytes(self.head[:8], 'big')
            self.head = self.head[8:]
        self.pump()

    def pump(self):
        while self.remaining and not self.paused:
            n = min(self.remaining, len(CHUNK))
            phase = self.offset % PATTERN_PERIOD
            if n == len(CHUNK) and phase == 0:
                self.transport.write(CHUNK)     # the usual case: no copy at all
            else:
                self.transport.write((CHUNK + PATTERN)[phase:phase + n])
            self.remaining -= n
            self.offset += n
            self.stats.bytes += n

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self.pump()

    def connection_lost(self, exc):
        self.paused = True
        self.stats.closed()


class BulkUpProtocol(asyncio.Protocol):
    def __init__(self, stats):
        self.stats = stats
        self.head = b''
        self.remaining = 0      # bytes of the current batch still to come
        self.total = 0

    def connection_made(self, transport):
        self.transport = transport
        self.stats.opened()

    def data_received(self, data):
        n = len(data)
        if n < self.remaining:              # the usual case: all of it is payload
            self.remaining -= n
            self.total += n
            return
        pos = 0
        while pos < n:
            if self.remaining == 0:
                need = 8 - len(self.head)
                self.head += data[pos:pos + need]
                pos += need
                if len(self.head) == 8:
                    self.remaining = int.from_bytes(self.head, 'big')
                    self.head = b''
                continue
            take = min(self.remaining, n - pos)
            self.remaining -= take
            self.total += take
            pos += take
            if self.remaining == 0:
                self.transport.write(self.total.to_bytes(8, 'big'))

    def connection_lost(self, exc):
        self.stats.bytes += self.total
        self.stats.closed()


PROTOCOLS = {'proto_echo': EchoProtocol, 'http': HttpProtocol,
             'bulk_down': BulkDownProtocol, 'bulk_up': BulkUpProtocol}
KINDS = tuple(PROTOCOLS) + ('streams_echo',)


async def serve(kind, conns):
    loop = asyncio.get_running_loop()
    stats = Stats(loop, conns)
    if kind == 'streams_echo':
        async def echo(reader, writer):
            stats.opened()
            try:
                while True:
                    data = await reader.read(READ_SIZE)
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
                    stats.bytes += len(data)
            finally:
                writer.close()
                stats.closed()
        server = await asyncio.start_server(echo, '127.0.0.1', 0, backlog=128)
    else:
        protocol = PROTOCOLS[kind]
        server = await loop.create_server(lambda: protocol(stats), '127.0.0.1', 0, backlog=128)
    return await announce_and_serve(server, stats)


async def announce_and_serve(server, stats):
    """Prints the port for the harness, serves until ``stats.done``, closes."""
    print(json.dumps({'port': server.sockets[0].getsockname()[1]}), flush=True)
    try:
        await stats.done
    finally:
        server.close()
        await server.wait_closed()
    return stats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--loop', required=True)
    p.add_argument('--kind', required=True, choices=KINDS)
    p.add_argument('--conns', type=int, default=1)
    p.add_argument('--timeout', type=float, default=60.0)
    args = p.parse_args(argv)

    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    try:
        stats = loop.run_until_complete(asyncio.wait_for(serve(args.kind, args.conns),
                                                         args.timeout))
    except asyncio.TimeoutError:
        print(f'stream_server ({args.loop}, {args.kind}): no clean finish within '
              f'{args.timeout}s', file=sys.stderr)
        return 2
    finally:
        loop.close()
    print(json.dumps({'bytes': stats.bytes, 'requests': stats.requests,
                      'conns': stats.accepted}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
