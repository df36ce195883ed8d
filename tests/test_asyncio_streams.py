"""asyncio's streams (``StreamReaderProtocol`` / ``StreamReader``) over the
loop's stream transport: overrides and replaced methods run, and reading
pauses and resumes where asyncio's own code decides.

Each test runs on ferroloop and on the stdlib loop and checks what the
reader's methods saw; only loopback sockets are used, every wait is bounded.
"""

import asyncio
import socket

from support import run

LIMIT = 1024


async def connected(loop, protocol_factory):
    """A transport for ``protocol_factory()`` on one end of a TCP pair, and
    the other end as a plain blocking socket."""
    with socket.create_server(('127.0.0.1', 0)) as lsock:
        peer = socket.create_connection(lsock.getsockname())
        sock, _ = lsock.accept()
    peer.settimeout(5)
    sock.setblocking(False)
    transport, protocol = await loop.connect_accepted_socket(protocol_factory, sock)
    return transport, protocol, peer


async def read_exactly(reader, n):
    got = bytearray()
    while len(got) < n:
        chunk = await reader.read(65536)
        assert chunk, 'end of stream before all the data'
        got += chunk
    return bytes(got)


def test_a_reader_subclass_overriding_feed_data_gets_every_read(loop):
    class Counting(asyncio.StreamReader):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.fed = []

        def feed_data(self, data):
            self.fed.append(bytes(data))
            super().feed_data(data.upper())

    async def main():
        reader = Counting(loop=loop)
        transport, _, peer = await connected(loop, lambda: asyncio.StreamReaderProtocol(reader, loop=loop))
        peer.sendall(b'abc')
        assert await read_exactly(reader, 3) == b'ABC'
        peer.sendall(b'def')
        assert await read_exactly(reader, 3) == b'DEF'
        assert b''.join(reader.fed) == b'abcdef'
        transport.close()
        peer.close()
    run(loop, main())


def test_feed_data_replaced_on_the_class_runs_for_a_connection_already_open(loop, monkeypatch):
    seen = []
    original = asyncio.StreamReader.feed_data

    def feed_data(self, data):
        seen.append(bytes(data))
        original(self, data)

    async def main():
        reader = asyncio.StreamReader(loop=loop)
        transport, _, peer = await connected(loop, lambda: asyncio.StreamReaderProtocol(reader, loop=loop))
        peer.sendall(b'before')
        assert await read_exactly(reader, 6) == b'before'
        monkeypatch.setattr(asyncio.StreamReader, 'feed_data', feed_data)
        peer.sendall(b'after')
        assert await read_exactly(reader, 5) == b'after'
        assert b''.join(seen) == b'after'
        transport.close()
        peer.close()
    run(loop, main())


def test_a_protocol_subclass_overriding_data_received_sees_the_bytes_first(loop):
    class Filtering(asyncio.StreamReaderProtocol):
        def data_received(self, data):
            super().data_received(data.replace(b'-', b''))

    async def main():
        reader = asyncio.StreamReader(loop=loop)
        transport, _, peer = await connected(loop, lambda: Filtering(reader, loop=loop))
        peer.sendall(b'a-b-c')
        assert await read_exactly(reader, 3) == b'abc'
        transport.close()
        peer.close()
    run(loop, main())


def test_reading_pauses_past_twice_the_limit_and_resumes_when_drained(loop):
    """asyncio's feed_data pauses the transport in the call that takes the
    buffer past 2 * limit; no read arrives while paused; read() resumes it
    once at most limit bytes remain."""
    total = 64 * LIMIT
    events = []

    class Watching(asyncio.StreamReader):
        def feed_data(self, data):
            events.append(('feed', self._paused, len(self._buffer), len(data)))
            super().feed_data(data)
            events.append(('fed', self._paused, len(self._buffer)))

    async def main():
        reader = Watching(limit=LIMIT, loop=loop)
        transport, _, peer = await connected(loop, lambda: asyncio.StreamReaderProtocol(reader, loop=loop))
        pause, resume = transport.pause_reading, transport.resume_reading

        def pause_reading():
            events.append(('pause', len(reader._buffer)))
            pause()

        def resume_reading():
            events.append(('resume', len(reader._buffer)))
            resume()
        transport.pause_reading, transport.resume_reading = pause_reading, resume_reading
        peer.sendall(bytes(range(256)) * (total // 256))
        while not any(e[0] == 'pause' for e in events):
            await asyncio.sleep(0.001)
        assert not transport.is_reading()
        await asyncio.sleep(0.05)       # nothing is fed while paused
        fed_while_paused = events[-1]
        assert fed_while_paused[0] == 'fed' and fed_while_paused[1] is True
        got = bytearray()
        while len(got) < total:
            got += await reader.read(LIMIT // 2)
        assert bytes(got) == bytes(range(256)) * (total // 256)
        transport.close()
        peer.close()

    run(loop, main())
    assert any(e[0] == 'resume' for e in events)
    paused = False
    for event in events:
        if event[0] == 'feed':
            assert event[1] is False, 'data was fed while reading was paused'
            before = event[2] + event[3]
        elif event[0] == 'pause':
            assert not paused and event[1] == before > 2 * LIMIT
            paused = True
        elif event[0] == 'fed':
            # Reading is paused exactly when a call leaves more than 2 * limit.
            assert event[1] is paused
            assert paused or event[2] <= 2 * LIMIT
        elif event[0] == 'resume':
            assert paused and event[1] <= LIMIT
            paused = False
