"""Memory ferroloop hands to Python code stays what it was, for as long as it is kept.

One test per place where ferroloop gives Python code a buffer or object it
made: an ``SSLContext.sslobject_class`` subclass's ``read()`` (the TLS
layer decrypts into a reused buffer; the ``MemoryBIO`` it writes received
bytes to is always ``_ssl``'s own, which keeps nothing), the
``bytes`` that ``data_received`` gets over TLS and pipes (refilled by the
next read when nothing kept them), and the views a ``BufferedProtocol``'s
buffers are filled through. Each keeps everything it was given, lets more
data flow, and checks that nothing it kept changed. The same code runs on
the stdlib loop. The stream transport's own case is
``test_stream_transport.py::test_bytes_given_to_data_received_stay_what_arrived``.
"""

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

import ferroloop
from support import run
from test_tls import certs, client_ctx, loop, server_ctx  # noqa: F401  (fixtures)

MESSAGES = [bytes([i % 251]) * (700 + 97 * i) for i in range(50)]


async def echo_each_message(loop, server_protocol, server_ctx=None, client_ctx=None):
    """A server with ``server_protocol`` (TLS with contexts); sends MESSAGES one at a time, each echoed."""
    server = await loop.create_server(server_protocol, '127.0.0.1', 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection('127.0.0.1', port, ssl=client_ctx,
                                                   server_hostname='localhost' if client_ctx else None)
    for message in MESSAGES:
        writer.write(message)
        assert await reader.readexactly(len(message)) == message
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


# An SSLObject subclass that keeps everything read() was given and returned,
# run where the loop runs in a thread that then ends (ferroloop's per-thread
# buffers are freed with it), in a process of its own: reading freed memory
# may crash.
SSLOBJECT_SCRIPT = textwrap.dedent('''
    import asyncio, ssl, sys, threading
    import ferroloop

    kind, certdir = sys.argv[1], sys.argv[2]
    sys.path.insert(0, {tests!r})
    from test_lent_memory import MESSAGES, Echo, echo_each_message

    kept = []

    class KeepingSSLObject(ssl.SSLObject):
        def read(self, len=1024, buffer=None):
            got = super().read(len, buffer)
            if buffer is None:
                kept.append((got, bytes(got)))
            else:
                kept.append((buffer[:got], bytes(buffer[:got])))
            return got

    class KeepingContext(ssl.SSLContext):
        sslobject_class = KeepingSSLObject

    server_ctx = KeepingContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certdir + '/server.pem', certdir + '/server.key')
    client_ctx = ssl.create_default_context(cafile=certdir + '/ca.pem')

    def serve():
        loop = ferroloop.new_event_loop() if kind == 'ferroloop' else asyncio.SelectorEventLoop()
        loop.run_until_complete(asyncio.wait_for(echo_each_message(loop, Echo, server_ctx, client_ctx), 20))
        loop.close()

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join()
    received = b''.join(bytes(view) for view, _ in kept)
    assert received == b''.join(MESSAGES), 'the server read other bytes than were sent'
    changed = sum(bytes(view) != copy for view, copy in kept)
    print(len(kept), changed)
''')


@pytest.mark.parametrize('kind', ['ferroloop', 'asyncio'])
def test_sslobject_subclass_keeps_what_read_gave_it_after_the_loop_thread_ends(kind, certs):
    script = SSLOBJECT_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, '-c', script, kind, str(certs)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    reads, changed = map(int, out.stdout.split())
    assert reads >= len(MESSAGES)
    assert changed == 0


class KeepsEverything(Echo):
    """Echoes, and keeps every bytes data_received got with a copy of it."""

    def __init__(self, kept):
        self.kept = kept

    def data_received(self, data):
        self.kept.append((data, bytes(bytearray(data)), hash(data)))
        super().data_received(data)


def assert_unchanged(kept):
    assert kept
    assert all(data == copy and hash(data) == h for data, copy, h in kept)
    assert b''.join(data for data, _, _ in kept) == b''.join(MESSAGES)


def test_bytes_kept_from_tls_data_received_stay_what_arrived(loop, server_ctx, client_ctx):
    kept = []
    run(loop, echo_each_message(loop, lambda: KeepsEverything(kept), server_ctx, client_ctx), 30)
    assert_unchanged(kept)


def test_bytes_kept_from_pipe_data_received_stay_what_arrived(loop):
    kept = []
    done = loop.create_future()

    class Keeper(asyncio.Protocol):
        def data_received(self, data):
            kept.append((data, bytes(bytearray(data)), hash(data)))

        def connection_lost(self, exc):
            done.set_result(exc)

    async def main():
        rfd, wfd = os.pipe()
        transport, _ = await loop.connect_read_pipe(Keeper, os.fdopen(rfd, 'rb', 0))
        for message in MESSAGES:
            os.write(wfd, message)
            # One message per read: wait until this one has arrived.
            while sum(len(d) for d, _, _ in kept) < sum(map(len, MESSAGES[:MESSAGES.index(message) + 1])):
                await asyncio.sleep(0.001)
        os.close(wfd)
        assert await done is None

    run(loop, main())
    assert_unchanged(kept)


class KeepsEveryBuffer(asyncio.BufferedProtocol):
    """Hands out a new buffer each time and keeps every view it was filled through."""

    def __init__(self, filled, echo):
        self.filled = filled
        self.echo = echo

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        self.buffer = memoryview(bytearray(4096))
        return self.buffer

    def buffer_updated(self, nbytes):
        data = self.buffer[:nbytes]
        self.filled.append((data, bytes(data), None))
        if self.echo:
            self.transport.write(bytes(data))


def test_buffered_protocol_buffers_over_tls_keep_what_was_written_into_them(loop, server_ctx, client_ctx):
    filled = []
    run(loop, echo_each_message(loop, lambda: KeepsEveryBuffer(filled, True), server_ctx, client_ctx), 30)
    assert all(data == copy for data, copy, _ in filled)
    assert b''.join(data for data, _, _ in filled) == b''.join(MESSAGES)


def test_buffered_protocol_buffers_over_tcp_keep_what_was_written_into_them(loop):
    filled = []
    run(loop, echo_each_message(loop, lambda: KeepsEveryBuffer(filled, True)), 30)
    assert all(data == copy for data, copy, _ in filled)
    assert b''.join(data for data, _, _ in filled) == b''.join(MESSAGES)
