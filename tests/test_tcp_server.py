"""Servers: ``create_server``, ``create_unix_server``, the ``Server`` object,
the accept loop, and asyncio's ``start_server`` / ``start_unix_server`` on top.

Every test takes the ``loop`` fixture and runs once on ferroloop and once on
asyncio's own ``SelectorEventLoop``, so a pass proves both behave the same,
messages included. Clients are plain sockets driven by ``loop.sock_*`` (or
asyncio's streams), so these tests do not lean on ``create_connection``.
Only loopback addresses and Unix sockets in temporary directories are used;
every wait is bounded.
"""

import asyncio
import contextlib
import contextvars
import errno
import gc
import os
import resource
import socket
import stat
import sys
import uuid
import warnings

import pytest
import ferroloop
from support import TIMEOUT, asyncio_since, loops, needs_ipv6, recv_exactly, run

PY313 = sys.version_info >= (3, 13)
# wait_closed() waits for the connections from 3.12.1 on; ferroloop always does.
PY3121 = sys.version_info >= (3, 12, 1)


def spin(loop, seconds=0.02):
    loop.run_until_complete(asyncio.sleep(seconds))


def run_until(loop, predicate, timeout=TIMEOUT):
    async def wait():
        while not predicate():
            await asyncio.sleep(0.001)
    run(loop, wait(), timeout)


class Recorder(asyncio.Protocol):
    """Remembers the callbacks it got, in order; optionally echoes."""

    def __init__(self, loop, echo=False):
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.echo = echo
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append('made')

    def data_received(self, data):
        if not self.events or self.events[-1] != 'data':
            self.events.append('data')
        self.data += data
        if self.echo:
            self.transport.write(data)

    def eof_received(self):
        self.events.append('eof')

    def connection_lost(self, exc):
        self.events.append('lost')
        if not self.lost.done():
            self.lost.set_result(exc)


class Factory:
    """A protocol factory that keeps every protocol it made."""

    def __init__(self, loop, **kwargs):
        self.loop = loop
        self.kwargs = kwargs
        self.protocols = []

    def __call__(self):
        proto = Recorder(self.loop, **self.kwargs)
        self.protocols.append(proto)
        return proto


def client_socket(family=socket.AF_INET):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


async def recv_until_eof(loop, sock, limit=64 * 1024 * 1024):
    chunks, got = [], 0
    while got < limit:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b''.join(chunks)



async def made(factory, n=1):
    """Waits until ``n`` connections got ``connection_made``; returns the last transport."""
    while len(factory.protocols) < n or any(p.transport is None for p in factory.protocols):
        await asyncio.sleep(0.001)
    return factory.protocols[n - 1].transport


def port_of(server, index=0):
    return server.sockets[index].getsockname()[1]


@pytest.fixture
def unix_path(tmp_path):
    # Short: AF_UNIX paths are limited to ~107 bytes.
    path = tmp_path / 's.sock'
    yield str(path)


# -- create_server and the Server object -------------------------------------------


def test_echo_server_callbacks_in_order_and_bytes_come_back(loop, errors):
    factory = Factory(loop, echo=True)
    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))
    payload = os.urandom(300_000)

    async def client():
        with client_socket() as sock:
            await loop.sock_connect(sock, ('127.0.0.1', port_of(server)))
            await loop.sock_sendall(sock, payload)
            echoed = await recv_exactly(loop, sock, len(payload))
            sock.shutdown(socket.SHUT_WR)
            rest = await recv_until_eof(loop, sock)
            return echoed, rest

    echoed, rest = run(loop, client())
    assert echoed == payload
    assert rest == b''
    [proto] = factory.protocols
    assert run(loop, proto.lost) is None
    assert proto.events == ['made', 'data', 'eof', 'lost']
    assert bytes(proto.data) == payload
    server.close()
    run(loop, server.wait_closed())
    assert errors == []


def test_server_is_an_abstract_server_with_transport_sockets(loop):
    server = run(loop, loop.create_server(asyncio.Protocol, '127.0.0.1', 0))
    try:
        assert isinstance(server, asyncio.AbstractServer)
        assert server.get_loop() is loop
        assert server.is_serving()
        [sock] = server.sockets
        assert isinstance(sock, asyncio.trsock.TransportSocket)
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_STREAM
        host, port = sock.getsockname()
        assert host == '127.0.0.1' and port != 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        assert repr(server).startswith('<Server sockets=(<asyncio.TransportSocket fd=')
    finally:
        server.close()
    assert server.sockets == ()
    assert not server.is_serving()
    assert repr(server) == '<Server sockets=()>'
    run(loop, server.wait_closed())


def test_accepted_transport_is_an_asyncio_transport_with_peer_and_socket(loop):
    factory = Factory(loop)
    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))

    async def client():
        with client_socket() as sock:
            await loop.sock_connect(sock, ('127.0.0.1', port_of(server)))
            tr = await made(factory)
            assert isinstance(tr, asyncio.Transport)
            assert tr.get_extra_info('peername') == sock.getsockname()
            assert tr.get_extra_info('sockname') == sock.getpeername()
            tsock = tr.get_extra_info('socket')
            assert isinstance(tsock, asyncio.trsock.TransportSocket)
            assert tsock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            tr.close()
            assert await recv_until_eof(loop, sock) == b''

    run(loop, client())
    run(loop, factory.protocols[0].lost)
    server.close()
    run(loop, server.wait_closed())


@needs_ipv6
def test_several_hosts_get_one_socket_each_ipv6_only(loop, errors):
    server = run(loop, loop.create_server(Factory(loop, echo=True), ['127.0.0.1', '::1'], 0))
    try:
        families = sorted(s.family for s in server.sockets)
        assert families == [socket.AF_INET, socket.AF_INET6]
        v6 = next(s for s in server.sockets if s.family == socket.AF_INET6)
        assert v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1

        async def echo(family, host, port):
            with client_socket(family) as sock:
                await loop.sock_connect(sock, (host, port))
                await loop.sock_sendall(sock, host.encode())
                return await recv_exactly(loop, sock, len(host))

        for sock in server.sockets:
            host = '::1' if sock.family == socket.AF_INET6 else '127.0.0.1'
            assert run(loop, echo(sock.family, host, sock.getsockname()[1])) == host.encode()
    finally:
        server.close()
    run(loop, server.wait_closed())
    assert errors == []


def test_a_host_given_twice_is_bound_once(loop):
    server = run(loop, loop.create_server(asyncio.Protocol, ['127.0.0.1', '127.0.0.1'], 0))
    try:
        assert len(server.sockets) == 1
    finally:
        server.close()
    run(loop, server.wait_closed())


def test_create_server_on_a_given_socket(loop):
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    addr = sock.getsockname()
    server = run(loop, loop.create_server(Factory(loop, echo=True), sock=sock))
    try:
        assert server.sockets[0].getsockname() == addr
        assert sock.gettimeout() == 0  # made non-blocking

        async def echo():
            with client_socket() as c:
                await loop.sock_connect(c, addr)
                await loop.sock_sendall(c, b'ping')
                return await recv_exactly(loop, c, 4)

        assert run(loop, echo()) == b'ping'
    finally:
        server.close()
    run(loop, server.wait_closed())
    assert sock.fileno() == -1  # closing the server closed the socket


def test_create_server_argument_errors(loop):
    with socket.socket() as sock:
        with pytest.raises(ValueError, match='^host/port and sock can not be specified at the same time$'):
            run(loop, loop.create_server(asyncio.Protocol, '127.0.0.1', 0, sock=sock))
        with pytest.raises(TypeError, match='^ssl argument must be an SSLContext or None$'):
            run(loop, loop.create_server(asyncio.Protocol, sock=sock, ssl=True))
        with pytest.raises(ValueError, match='^ssl_handshake_timeout is only meaningful with ssl$'):
            run(loop, loop.create_server(asyncio.Protocol, sock=sock, ssl_handshake_timeout=1))
        with pytest.raises(ValueError, match='^ssl_shutdown_timeout is only meaningful with ssl$'):
            run(loop, loop.create_server(asyncio.Protocol, sock=sock, ssl_shutdown_timeout=1))
    with pytest.raises(ValueError, match='^Neither host/port nor sock were specified$'):
        run(loop, loop.create_server(asyncio.Protocol))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError, match='^A Stream Socket was expected, got <socket.socket'):
            run(loop, loop.create_server(asyncio.Protocol, sock=udp))


def test_bind_error_names_the_address(loop):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as info:
            run(loop, loop.create_server(asyncio.Protocol, '127.0.0.1', port))
    exc = info.value
    assert exc.errno == errno.EADDRINUSE
    detail = str(OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))).lower() \
        if PY313 else os.strerror(errno.EADDRINUSE).lower()
    assert exc.strerror == (f"error while attempting to bind on address "
                            f"('127.0.0.1', {port}): {detail}")


def test_reuse_port_lets_two_servers_share_a_port(loop):
    first = run(loop, loop.create_server(asyncio.Protocol, '127.0.0.1', 0, reuse_port=True))
    port = port_of(first)
    second = run(loop, loop.create_server(asyncio.Protocol, '127.0.0.1', port, reuse_port=True))
    try:
        for server in (first, second):
            sock = server.sockets[0]
            assert sock.getsockname() == ('127.0.0.1', port)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
    finally:
        first.close()
        second.close()
    run(loop, first.wait_closed())
    run(loop, second.wait_closed())


def test_reuse_address_false_leaves_so_reuseaddr_off(loop):
    server = run(loop, loop.create_server(asyncio.Protocol, '127.0.0.1', 0, reuse_address=False))
    try:
        assert server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
    finally:
        server.close()
    run(loop, server.wait_closed())


@asyncio_since((3, 13), 'keep_alive')
def test_keep_alive_sets_so_keepalive(loop):
    server = run(loop, loop.create_server(asyncio.Protocol, '127.0.0.1', 0, keep_alive=True))
    plain = run(loop, loop.create_server(asyncio.Protocol, '127.0.0.1', 0))
    try:
        assert server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        assert plain.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    finally:
        server.close()
        plain.close()
    run(loop, server.wait_closed())
    run(loop, plain.wait_closed())


def test_start_serving_false_listens_only_once_started(loop):
    server = run(loop, loop.create_server(Factory(loop, echo=True), '127.0.0.1', 0,
                                          start_serving=False))
    addr = server.sockets[0].getsockname()

    async def echo():
        with client_socket() as c:
            await loop.sock_connect(c, addr)
            await loop.sock_sendall(c, b'hi')
            return await recv_exactly(loop, c, 2)

    try:
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            run(loop, echo())  # not even listening yet
        run(loop, server.start_serving())
        assert server.is_serving()
        run(loop, server.start_serving())  # idempotent
        assert run(loop, echo()) == b'hi'
    finally:
        server.close()
    run(loop, server.wait_closed())


def test_burst_of_connections_all_served(loop, errors):
    factory = Factory(loop, echo=True)
    server = run(loop, loop.create_server(factory, '127.0.0.1', 0, backlog=64))
    addr = server.sockets[0].getsockname()

    async def one(i):
        with client_socket() as c:
            await loop.sock_connect(c, addr)
            msg = f'client {i}'.encode()
            await loop.sock_sendall(c, msg)
            return await recv_exactly(loop, c, len(msg))

    async def main():
        return await asyncio.gather(*(one(i) for i in range(50)))

    assert run(loop, main()) == [f'client {i}'.encode() for i in range(50)]
    run_until(loop, lambda: all(p.lost.done() for p in factory.protocols))
    assert len(factory.protocols) == 50
    server.close()
    run(loop, server.wait_closed())
    assert errors == []


def test_connections_queued_while_the_loop_was_busy_are_accepted_together(loop):
    # asyncio takes up to `backlog` connections per readiness of the
    # listener (and makes their protocols on the next turn); all 20 queued
    # here must have their protocols after two turns of the loop.
    factory = Factory(loop, echo=True)
    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))
    clients = [socket.create_connection(server.sockets[0].getsockname()) for _ in range(20)]
    try:
        for _ in range(2):
            loop.call_soon(loop.stop)
            loop.run_forever()
        assert len(factory.protocols) == 20
        for i, c in enumerate(clients):
            c.sendall(b'%d' % i)
        run_until(loop, lambda: all(p.data for p in factory.protocols))
        assert sorted(bytes(p.data) for p in factory.protocols) == sorted(b'%d' % i for i in range(20))
    finally:
        for c in clients:
            c.close()
        server.close()
        run(loop, server.wait_closed())


def test_closed_server_keeps_its_connections_and_refuses_new_ones(loop):
    factory = Factory(loop, echo=True)
    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))
    addr = server.sockets[0].getsockname()

    async def main():
        with client_socket() as c:
            await loop.sock_connect(c, addr)
            await loop.sock_sendall(c, b'one')
            assert await recv_exactly(loop, c, 3) == b'one'
            server.close()
            assert not server.is_serving()
            await loop.sock_sendall(c, b'two')
            assert await recv_exactly(loop, c, 3) == b'two'
            with client_socket() as late:
                with pytest.raises(ConnectionRefusedError):
                    await loop.sock_connect(late, addr)

    run(loop, main())
    run(loop, server.wait_closed())


def test_serve_forever_ends_with_cancelled_error_when_server_closes(loop):
    server = run(loop, loop.create_server(asyncio.Protocol, '127.0.0.1', 0, start_serving=False))

    async def main():
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0.01)
        assert server.is_serving()
        with pytest.raises(RuntimeError, match='is already being awaited on serve_forever'):
            await server.serve_forever()
        server.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert server.sockets == ()
        with pytest.raises(RuntimeError, match=r'^server <Server sockets=\(\)> is closed$'):
            await server.serve_forever()

    run(loop, main())
    assert server._sockets is None
    assert server._waiters is None


def test_cancelling_serve_forever_closes_the_server(loop):
    server = run(loop, loop.create_server(asyncio.Protocol, '127.0.0.1', 0))
    addr = server.sockets[0].getsockname()

    async def main():
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        with client_socket() as c:
            with pytest.raises(ConnectionRefusedError):
                await loop.sock_connect(c, addr)

    run(loop, main())


def test_async_with_closes_the_server(loop):
    async def main():
        async with await loop.create_server(asyncio.Protocol, '127.0.0.1', 0) as server:
            assert server.is_serving()
        return server

    server = run(loop, main())
    assert server.sockets == ()
    assert not server.is_serving()


@asyncio_since((3, 12, 1), "wait_closed() that waits for connections")
def test_wait_closed_waits_for_the_connections(loop):
    factory = Factory(loop)
    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))
    addr = server.sockets[0].getsockname()

    async def main():
        with client_socket() as c:
            await loop.sock_connect(c, addr)
            await made(factory)
            waiter = asyncio.ensure_future(server.wait_closed())
            await asyncio.sleep(0.02)
            assert not waiter.done()  # still open
            server.close()
            await asyncio.sleep(0.02)
            assert not waiter.done()  # closed, but a connection is still up
            factory.protocols[0].transport.close()
            await factory.protocols[0].lost
            await asyncio.wait_for(waiter, TIMEOUT)
        await server.wait_closed()  # returns at once from now on

    run(loop, main())


def test_wait_closed_returns_at_once_without_connections(loop):
    server = run(loop, loop.create_server(asyncio.Protocol, '127.0.0.1', 0))
    server.close()
    run(loop, server.wait_closed(), timeout=1)
    run(loop, server.wait_closed(), timeout=1)


@loops(
    asyncio_marks=pytest.mark.skipif(
        not PY313, reason='asyncio before 3.13 lacks close_clients() / abort_clients()'))
@pytest.mark.parametrize('how', ['close_clients', 'abort_clients'])
def test_close_and_abort_clients(loop, how):
    factory = Factory(loop)
    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))
    addr = server.sockets[0].getsockname()

    async def main():
        socks = [client_socket() for _ in range(3)]
        try:
            for s in socks:
                await loop.sock_connect(s, addr)
            await made(factory, 3)
            for p in factory.protocols:
                p.transport.write(b'pending')
            server.close()
            getattr(server, how)()
            excs = await asyncio.wait_for(
                asyncio.gather(*(p.lost for p in factory.protocols)), 2)
            assert excs == [None, None, None]
            await asyncio.wait_for(server.wait_closed(), TIMEOUT)
            got = []
            for s in socks:
                try:
                    got.append(await recv_until_eof(loop, s))
                except ConnectionResetError:
                    got.append('reset')
            return got
        finally:
            for s in socks:
                s.close()

    got = run(loop, main())
    if how == 'close_clients':
        assert got == [b'pending'] * 3  # buffered data still delivered, then FIN
    else:
        assert all(g in (b'', b'pending', 'reset') for g in got)


# -- the accept loop ----------------------------------------------------------------


@contextlib.contextmanager
def out_of_fds():
    """Until exit the process cannot open another fd: accept() fails with a
    real EMFILE. Sockets the test needs must exist before."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Sockets earlier tests left to the collector would free lower fds
    # mid-test, and accept() would then succeed.
    gc.collect()
    lowest_free = os.dup(0)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_accept_out_of_fds_pauses_then_resumes(loop, errors, monkeypatch):
    monkeypatch.setattr(asyncio.constants, 'ACCEPT_RETRY_DELAY', 0.05)
    factory = Factory(loop, echo=True)
    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))
    addr = server.sockets[0].getsockname()

    async def main():
        with client_socket() as c:
            with out_of_fds():
                await loop.sock_connect(c, addr)
                while not errors:
                    await asyncio.sleep(0.005)
            await loop.sock_sendall(c, b'late')
            return await recv_exactly(loop, c, 4)

    try:
        assert run(loop, main()) == b'late'
    finally:
        server.close()
    run(loop, server.wait_closed())
    # The stdlib loop reports once per accept() it tries in that readiness
    # event (up to the backlog); ferroloop stops at the first.
    assert errors
    for context in errors:
        assert context['message'] == 'socket.accept() out of system resource'
        assert isinstance(context['exception'], OSError)
        assert context['exception'].errno == errno.EMFILE
        assert isinstance(context['socket'], asyncio.trsock.TransportSocket)


def test_accept_retry_after_close_does_nothing(loop, errors, monkeypatch):
    monkeypatch.setattr(asyncio.constants, 'ACCEPT_RETRY_DELAY', 0.05)
    server = run(loop, loop.create_server(asyncio.Protocol, '127.0.0.1', 0))
    addr = server.sockets[0].getsockname()
    with socket.socket() as c:
        c.settimeout(5)
        with out_of_fds():
            c.connect(addr)
            run_until(loop, lambda: errors)
        server.close()
        spin(loop, 0.15)  # the retry comes and goes
    run(loop, server.wait_closed())
    assert errors[0]['message'] == 'socket.accept() out of system resource'
    assert server.sockets == ()
    if isinstance(loop, ferroloop.Loop):
        # (The stdlib loop's retry reports the closed socket as an error.)
        assert {c['message'] for c in errors} == {'socket.accept() out of system resource'}


def test_protocol_factory_error_drops_only_that_connection(loop, errors):
    loop.set_debug(False)  # (-X dev turns it on; debug mode reports the error)
    calls = []

    def factory():
        calls.append(None)
        if len(calls) == 1:
            raise ZeroDivisionError('no protocol')
        return Recorder(loop, echo=True)

    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))
    addr = server.sockets[0].getsockname()

    async def first():
        with client_socket() as c:
            await loop.sock_connect(c, addr)
            gc.collect()  # the stdlib loop leaves the socket to the collector
            try:
                return await recv_until_eof(loop, c)
            except ConnectionResetError:
                return b''

    async def second():
        with client_socket() as c:
            await loop.sock_connect(c, addr)
            await loop.sock_sendall(c, b'fine')
            return await recv_exactly(loop, c, 4)

    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        assert run(loop, first()) == b''
        assert run(loop, second()) == b'fine'
    server.close()
    run(loop, server.wait_closed())
    assert errors == []  # reported in debug mode only


def test_protocol_factory_error_is_reported_in_debug_mode(loop, errors):
    loop.set_debug(True)
    loop.slow_callback_duration = 10

    def factory():
        raise ZeroDivisionError('no protocol')

    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ResourceWarning)
        with socket.create_connection(server.sockets[0].getsockname(), timeout=5):
            run_until(loop, lambda: errors)
        server.close()
        run(loop, server.wait_closed())
        context = errors[0]
        errors.clear()
        context["exception"].__traceback__ = None  # (it holds the stdlib loop's socket)
        gc.collect()
    [context] = [context] + errors
    assert context['message'] == 'Error on transport creation for incoming connection'
    assert isinstance(context['exception'], ZeroDivisionError)


def test_pause_reading_in_connection_made_holds_back_data(loop):
    class Paused(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.pause_reading()

    protos = []

    def factory():
        protos.append(Paused(loop))
        return protos[-1]

    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))

    async def main():
        with client_socket() as c:
            await loop.sock_connect(c, server.sockets[0].getsockname())
            await loop.sock_sendall(c, b'early bytes')
            await asyncio.sleep(0.05)
            [proto] = protos
            assert proto.events == ['made']
            assert not proto.transport.is_reading()
            proto.transport.resume_reading()
            while bytes(proto.data) != b'early bytes':
                await asyncio.sleep(0.001)
            proto.transport.close()
            await proto.lost

    run(loop, main())
    server.close()
    run(loop, server.wait_closed())


def test_server_side_close_sends_buffered_data_then_fin(loop):
    class Greeter(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.write(b'hello and goodbye' * 1000)
            transport.close()

    protos = []

    def factory():
        protos.append(Greeter(loop))
        return protos[-1]

    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))

    async def main():
        with client_socket() as c:
            await loop.sock_connect(c, server.sockets[0].getsockname())
            return await recv_until_eof(loop, c)

    assert run(loop, main()) == b'hello and goodbye' * 1000
    assert run(loop, protos[0].lost) is None
    assert protos[0].events == ['made', 'lost']
    server.close()
    run(loop, server.wait_closed())


def test_peer_reset_reaches_connection_lost(loop, errors):
    factory = Factory(loop)
    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))

    async def main():
        c = client_socket()
        await loop.sock_connect(c, server.sockets[0].getsockname())
        await made(factory)
        await loop.sock_sendall(c, b'x')
        while not factory.protocols[0].data:
            await asyncio.sleep(0.001)
        # SO_LINGER 0: close() sends RST instead of FIN.
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
        c.close()
        return await factory.protocols[0].lost

    exc = run(loop, main())
    assert isinstance(exc, ConnectionResetError)
    assert factory.protocols[0].events == ['made', 'data', 'lost']
    server.close()
    run(loop, server.wait_closed())
    assert errors == []


def test_each_connection_runs_in_its_own_context(loop):
    import contextvars
    var = contextvars.ContextVar('var', default=None)
    seen = []

    class Tagger(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            seen.append(var.get())
            var.set(id(self))

    factory = Factory(loop)
    factory_cls = Tagger

    def make():
        p = factory_cls(loop)
        factory.protocols.append(p)
        return p

    server = run(loop, loop.create_server(make, '127.0.0.1', 0))

    async def main():
        for i in range(3):
            with client_socket() as c:
                await loop.sock_connect(c, server.sockets[0].getsockname())
                while len(seen) == i:
                    await asyncio.sleep(0.001)

    run(loop, main())
    assert seen == [None, None, None]  # nothing leaked from one connection to the next
    server.close()
    run(loop, server.wait_closed())


def test_accepted_connection_fd_is_refused_to_add_reader_until_lost(loop):
    factory = Factory(loop)
    server = run(loop, loop.create_server(factory, '127.0.0.1', 0))

    async def main():
        with client_socket() as c:
            await loop.sock_connect(c, server.sockets[0].getsockname())
            while not factory.protocols or factory.protocols[0].transport is None:
                await asyncio.sleep(0.001)
            transport = factory.protocols[0].transport
            fd = transport.get_extra_info('socket').fileno()
            with pytest.raises(RuntimeError, match=f'File descriptor {fd} is used by transport'):
                loop.add_reader(fd, lambda: None)
            transport.close()
            await factory.protocols[0].lost
            return fd

    fd = run(loop, main())
    server.close()
    run(loop, server.wait_closed())
    if isinstance(loop, ferroloop.Loop):
        # (The stdlib loop keeps the entry until the transport is collected.)
        assert fd not in loop._transports


def test_loop_subclass_making_its_own_transports_gets_accepted_sockets():
    made = []

    class OwnTransports(ferroloop.Loop):
        def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
            made.append((sock.getsockname(), extra['peername']))
            return super()._make_socket_transport(sock, protocol, waiter, extra=extra, server=server)

    loop = OwnTransports()
    try:
        factory = Factory(loop, echo=True)
        server = run(loop, loop.create_server(factory, '127.0.0.1', 0))
        addr = server.sockets[0].getsockname()

        async def main():
            with client_socket() as c:
                await loop.sock_connect(c, addr)
                await loop.sock_sendall(c, b'own')
                return await recv_exactly(loop, c, 3), c.getsockname()

        echoed, client_addr = run(loop, main())
        server.close()
        run(loop, server.wait_closed())
    finally:
        loop.close()
    assert echoed == b'own'
    assert made == [(addr, client_addr)]


# -- Unix servers ---------------------------------------------------------------------


def test_unix_server_echo_and_socket_file(loop, unix_path, errors):
    factory = Factory(loop, echo=True)
    server = run(loop, loop.create_unix_server(factory, unix_path))
    assert stat.S_ISSOCK(os.stat(unix_path).st_mode)
    assert server.sockets[0].getsockname() == unix_path
    assert server.sockets[0].family == socket.AF_UNIX

    async def main():
        with client_socket(socket.AF_UNIX) as c:
            await loop.sock_connect(c, unix_path)
            await loop.sock_sendall(c, b'unix echo')
            got = await recv_exactly(loop, c, 9)
            c.shutdown(socket.SHUT_WR)
            assert await recv_until_eof(loop, c) == b''
            return got

    assert run(loop, main()) == b'unix echo'
    run(loop, factory.protocols[0].lost)
    assert factory.protocols[0].events == ['made', 'data', 'eof', 'lost']
    server.close()
    run(loop, server.wait_closed())
    assert errors == []


@asyncio_since((3, 13), 'cleanup of the socket file on close')
def test_unix_server_close_removes_its_socket_file(loop, unix_path):
    server = run(loop, loop.create_unix_server(asyncio.Protocol, unix_path))
    assert os.path.exists(unix_path)
    server.close()
    run(loop, server.wait_closed())
    assert not os.path.exists(unix_path)


@asyncio_since((3, 13), 'cleanup_socket')
def test_unix_server_cleanup_socket_false_leaves_the_file(loop, unix_path):
    server = run(loop, loop.create_unix_server(asyncio.Protocol, unix_path, cleanup_socket=False))
    server.close()
    run(loop, server.wait_closed())
    assert stat.S_ISSOCK(os.stat(unix_path).st_mode)


@asyncio_since((3, 13), 'cleanup of the socket file on close')
def test_unix_server_close_leaves_a_replaced_file_alone(loop, unix_path):
    server = run(loop, loop.create_unix_server(asyncio.Protocol, unix_path))
    os.unlink(unix_path)
    with open(unix_path, 'w') as f:
        f.write('someone else')
    server.close()
    run(loop, server.wait_closed())
    with open(unix_path) as f:
        assert f.read() == 'someone else'


def test_unix_server_replaces_a_stale_socket_file(loop, unix_path):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(unix_path)
    stale.close()  # the file stays behind
    assert stat.S_ISSOCK(os.stat(unix_path).st_mode)
    server = run(loop, loop.create_unix_server(Factory(loop, echo=True), unix_path))

    async def main():
        with client_socket(socket.AF_UNIX) as c:
            await loop.sock_connect(c, unix_path)
            await loop.sock_sendall(c, b'fresh')
            return await recv_exactly(loop, c, 5)

    assert run(loop, main()) == b'fresh'
    server.close()
    run(loop, server.wait_closed())


def test_unix_server_refuses_a_path_that_is_not_a_socket(loop, unix_path):
    with open(unix_path, 'w') as f:
        f.write('data')
    with pytest.raises(OSError) as info:
        run(loop, loop.create_unix_server(asyncio.Protocol, unix_path))
    assert info.value.errno == errno.EADDRINUSE
    assert info.value.strerror == f'Address {unix_path!r} is already in use'
    with open(unix_path) as f:
        assert f.read() == 'data'


def test_unix_server_accepts_a_path_like(loop, tmp_path):
    path = tmp_path / 'p.sock'
    server = run(loop, loop.create_unix_server(asyncio.Protocol, path))
    try:
        assert server.sockets[0].getsockname() == str(path)
    finally:
        server.close()
    run(loop, server.wait_closed())


def test_unix_server_in_the_abstract_namespace(loop):
    name = '\0ferroloop-test-' + uuid.uuid4().hex
    server = run(loop, loop.create_unix_server(Factory(loop, echo=True), name))

    async def main():
        with client_socket(socket.AF_UNIX) as c:
            await loop.sock_connect(c, name)
            await loop.sock_sendall(c, b'abstract')
            return await recv_exactly(loop, c, 8)

    try:
        assert server.sockets[0].getsockname() == name.encode()
        assert run(loop, main()) == b'abstract'
    finally:
        server.close()
    run(loop, server.wait_closed())


def test_unix_server_on_a_given_socket(loop, unix_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(unix_path)
    server = run(loop, loop.create_unix_server(Factory(loop, echo=True), sock=sock))

    async def main():
        with client_socket(socket.AF_UNIX) as c:
            await loop.sock_connect(c, unix_path)
            await loop.sock_sendall(c, b'given')
            return await recv_exactly(loop, c, 5)

    try:
        assert run(loop, main()) == b'given'
    finally:
        server.close()
    run(loop, server.wait_closed())


def test_unix_server_argument_errors(loop, unix_path):
    with socket.socket(socket.AF_UNIX) as sock:
        with pytest.raises(ValueError, match='^path and sock can not be specified at the same time$'):
            run(loop, loop.create_unix_server(asyncio.Protocol, unix_path, sock=sock))
    with pytest.raises(ValueError, match='^path was not specified, and no sock specified$'):
        run(loop, loop.create_unix_server(asyncio.Protocol))
    with socket.socket() as tcp:
        with pytest.raises(ValueError, match='^A UNIX Domain Stream Socket was expected, got <socket'):
            run(loop, loop.create_unix_server(asyncio.Protocol, sock=tcp))
    with pytest.raises(TypeError, match='^ssl argument must be an SSLContext or None$'):
        run(loop, loop.create_unix_server(asyncio.Protocol, unix_path, ssl=False))
    with pytest.raises(ValueError, match='^ssl_handshake_timeout is only meaningful with ssl$'):
        run(loop, loop.create_unix_server(asyncio.Protocol, unix_path, ssl_handshake_timeout=1))
    with pytest.raises(ValueError, match='^ssl_shutdown_timeout is only meaningful with ssl$'):
        run(loop, loop.create_unix_server(asyncio.Protocol, unix_path, ssl_shutdown_timeout=1))


# -- asyncio streams on top -------------------------------------------------------------


async def _line_echo(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(line.upper())
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


def test_start_server_readline_echo(loop, errors):
    async def main():
        server = await asyncio.start_server(_line_echo, '127.0.0.1', 0)
        async with server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            replies = []
            for i in range(100):
                writer.write(f'line {i}\n'.encode())
                await writer.drain()
                replies.append(await reader.readline())
            writer.write_eof()
            assert await reader.read() == b''
            writer.close()
            await writer.wait_closed()
        return replies

    replies = run(loop, main())
    assert replies == [f'LINE {i}\n'.encode() for i in range(100)]
    assert errors == []


def test_start_server_large_lines_with_drain(loop):
    big = b'x' * (1024 * 1024) + b'\n'

    async def main():
        server = await asyncio.start_server(_line_echo, '127.0.0.1', 0, limit=4 * 1024 * 1024)
        async with server:
            reader, writer = await asyncio.open_connection(
                *server.sockets[0].getsockname(), limit=4 * 1024 * 1024)
            writer.write(big)
            await writer.drain()
            got = await reader.readline()
            writer.close()
            await writer.wait_closed()
        return got

    assert run(loop, main()) == big.upper()


def test_start_server_serve_forever_until_cancelled(loop):
    async def main():
        server = await asyncio.start_server(_line_echo, '127.0.0.1', 0, start_serving=False)
        addr = server.sockets[0].getsockname()
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)  # serve_forever() starts listening
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(b'ping\n')
        assert await reader.readline() == b'PING\n'
        writer.close()
        await writer.wait_closed()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()

    run(loop, main())


def test_start_unix_server_readline_echo(loop, unix_path):
    async def main():
        server = await asyncio.start_unix_server(_line_echo, unix_path)
        async with server:
            reader, writer = await asyncio.open_unix_connection(unix_path)
            writer.write(b'over unix\n')
            got = await reader.readline()
            writer.close()
            await writer.wait_closed()
        return got

    assert run(loop, main()) == b'OVER UNIX\n'


@asyncio_since((3, 14), 'serve_forever closing its clients when cancelled')
def test_cancelled_serve_forever_closes_a_client_that_never_hangs_up(loop):
    made = []
    protocols = []

    def factory():
        protocols.append(Recorder(loop))
        return protocols[-1]

    async def main():
        server = await loop.create_server(factory, '127.0.0.1', 0)
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        with socket.socket() as client:
            client.setblocking(False)
            await loop.sock_connect(client, server.sockets[0].getsockname())
            while not (protocols and protocols[0].transport):
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(server.wait_closed(), TIMEOUT)
            made.append(server.is_serving())
            # The server closed its end: the client reads EOF.
            assert await asyncio.wait_for(loop.sock_recv(client, 10), TIMEOUT) == b''

    run(loop, main())
    assert made == [False]


def test_each_connection_has_its_own_context_copied_from_where_serving_began(loop):
    var = contextvars.ContextVar('var', default='default')
    seen = []

    class Remember(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            # What this connection set before, else the server's value.
            seen.append((data, var.get()))
            var.set(data)
            self.transport.write(b'ok')

    async def client(addr, first, second):
        with socket.socket() as c:
            c.setblocking(False)
            await loop.sock_connect(c, addr)
            for data in (first, second):
                await loop.sock_sendall(c, data)
                assert await recv_exactly(loop, c, 2) == b'ok'

    async def main():
        var.set('when serving began')
        server = await loop.create_server(Remember, '127.0.0.1', 0)
        var.set('later')
        addr = server.sockets[0].getsockname()
        await client(addr, b'a1', b'a2')
        await client(addr, b'b1', b'b2')
        server.close()
        await server.wait_closed()
        return var.get()

    assert run(loop, main()) == 'later'
    assert seen == [(b'a1', 'when serving began'), (b'a2', b'a1'),
                    (b'b1', 'when serving began'), (b'b2', b'b1')]


def test_connections_start_from_the_servers_context_from_315_on(loop):
    # 3.15 copies the context when the server is made; before, asyncio's
    # reader of the listening socket copied it when serving began.
    var = contextvars.ContextVar('var', default='default')
    seen = []

    class Remember(asyncio.Protocol):
        def __init__(self):
            seen.append(('factory', var.get()))

        def connection_made(self, transport):
            seen.append(('made', var.get()))
            transport.close()

    async def main():
        var.set('server made')
        server = await loop.create_server(Remember, '127.0.0.1', 0, start_serving=False)
        var.set('serving began')
        await server.start_serving()
        var.set('later')
        with socket.socket() as c:
            c.setblocking(False)
            await loop.sock_connect(c, server.sockets[0].getsockname())
            assert await asyncio.wait_for(loop.sock_recv(c, 1), TIMEOUT) == b''
        server.close()
        await server.wait_closed()

    run(loop, main())
    expected = 'server made' if sys.version_info >= (3, 15) else 'serving began'
    assert seen == [('factory', expected), ('made', expected)]
