"""Helpers shared by the test modules (the fixtures are in conftest.py)."""

import asyncio
import socket
import sys

import pytest

TIMEOUT = 10


def loops(ferroloop_marks=(), asyncio_marks=()):
    """Parametrizes ``loop`` with marks for one side only."""
    return pytest.mark.parametrize('loop', [
        pytest.param('ferroloop', marks=ferroloop_marks),
        pytest.param('asyncio', marks=asyncio_marks),
    ], indirect=True)


def asyncio_since(version, what):
    """The stdlib loop has ``what`` only from ``version`` on; ferroloop on every Python."""
    return loops(asyncio_marks=pytest.mark.skipif(
        sys.version_info < version,
        reason=f'asyncio {sys.version_info[0]}.{sys.version_info[1]} lacks {what}'))


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(('::1', 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason='no IPv6 loopback')


def run(loop, coro, timeout=TIMEOUT):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


class Recorder(asyncio.Protocol):
    """Remembers the callbacks it got, in order, and the bytes received.

    ``events``: 'made', 'data' (once per run of data_received calls), 'eof',
    'pause' / 'resume' (writing), then 'lost' -- or ('lost', the exception's
    type name or None) with ``lost_with_type``. ``made`` and ``lost`` are
    futures; ``lost`` gets connection_lost's argument.
    """

    lost_with_type = False

    def __init__(self, loop=None, eof_keep_open=False):
        loop = loop or asyncio.get_running_loop()
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.eof_keep_open = eof_keep_open
        self.made = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append('made')
        self.made.set_result(None)

    def data_received(self, data):
        if not self.events or self.events[-1] != 'data':
            self.events.append('data')
        self.data += data

    def eof_received(self):
        self.events.append('eof')
        return self.eof_keep_open

    def pause_writing(self):
        self.events.append('pause')

    def resume_writing(self):
        self.events.append('resume')

    def connection_lost(self, exc):
        if self.lost_with_type:
            self.events.append(('lost', type(exc).__name__ if exc else None))
        else:
            self.events.append('lost')
        if not self.lost.done():
            self.lost.set_result(exc)


async def recv_exactly(loop, sock, n):
    """Exactly ``n`` bytes from ``sock`` through ``loop.sock_recv``."""
    chunks, got = [], 0
    while got < n:
        chunk = await loop.sock_recv(sock, min(n - got, 256 * 1024))
        assert chunk, f'peer closed after {got} of {n} bytes'
        chunks.append(chunk)
        got += len(chunk)
    return b''.join(chunks)


def run_known_workload(loop):
    """100 call_soon callbacks, 5 timers of which 2 are cancelled, and a
    stop timer: 104 callbacks run, 6 timers scheduled, 2 cancelled, 4 fired."""
    for _ in range(100):
        loop.call_soon(lambda: None)
    later = [loop.call_later(0.001, lambda: None) for _ in range(5)]
    later[0].cancel()
    later[1].cancel()
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
