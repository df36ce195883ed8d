"""Clients: ``create_connection`` (resolution, happy eyeballs, errors),
``create_unix_connection``, ``connect_accepted_socket``, ``loop.sendfile``,
and asyncio's ``open_connection`` / ``open_unix_connection`` on top.

Every test takes the ``loop`` fixture and runs once on ferroloop and once on
asyncio's own ``SelectorEventLoop``, so a pass proves both behave the same,
messages included. The peers are plain listening sockets driven by
``loop.sock_*``, so these tests do not lean on ``create_server``. Only
loopback addresses and Unix sockets in temporary directories; every wait is
bounded.
"""

import asyncio
import errno
import gc
import os
import socket
import ssl
import sys
import time

import pytest
from support import TIMEOUT, Recorder, asyncio_since, needs_ipv6, recv_exactly, run

import ferroloop

PY313 = sys.version_info >= (3, 13)


def open_fds():
    return set(os.listdir('/proc/self/fd'))


def listener(family=socket.AF_INET, host='127.0.0.1', backlog=16):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


@pytest.fixture
def server_sock():
    sock = listener()
    with sock:
        yield sock


def unused_port(family=socket.AF_INET, host='127.0.0.1'):
    """A port nothing listens on (connects to it are refused)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class HangingListener:
    """A listener whose accept queue is full: connects to it neither succeed nor fail."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(0)
        self.fillers = []
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(self.sock.getsockname())
            self.fillers.append(s)
        time.sleep(0.05)

    def address(self):
        return self.sock.getsockname()

    def close(self):
        for s in self.fillers:
            s.close()
        self.sock.close()


@pytest.fixture
def hanging():
    h = HangingListener()
    try:
        yield h
    finally:
        h.close()


def fake_resolver(loop, infos):
    """Makes the loop resolve every name to ``infos``; returns the list of lookups."""
    calls = []

    async def getaddrinfo(host, port, *, family=0, type=0, proto=0, flags=0):
        calls.append((host, port, family, type, proto, flags))
        return list(infos)

    loop.getaddrinfo = getaddrinfo
    return calls


def v4(port, host='127.0.0.1'):
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, '', (host, port))


def v6(port, host='::1'):
    return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, '', (host, port, 0, 0))


def refused(addr):
    return f'[Errno {errno.ECONNREFUSED}] Connect call failed {addr!r}'


async def recv_until_eof(loop, sock, limit=256 * 1024 * 1024):
    chunks, got = [], 0
    while got < limit:
        try:
            chunk = await loop.sock_recv(sock, 262144)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b''.join(chunks)



# -- create_connection -------------------------------------------------------------------


def test_create_connection_round_trip_in_callback_order(loop, server_sock, errors):
    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(server_sock))
        tr, proto = await loop.create_connection(
            lambda: Recorder(loop), *server_sock.getsockname())
        # connection_made() ran before create_connection() returned.
        assert proto.events == ['made'] and proto.transport is tr
        peer, _ = await accept
        with peer:
            tr.write(b'ping')
            assert await recv_exactly(loop, peer, 4) == b'ping'
            await loop.sock_sendall(peer, b'pong')
            peer.shutdown(socket.SHUT_WR)
            exc = await proto.lost
            assert await recv_until_eof(loop, peer) == b''
        return proto, exc

    proto, exc = run(loop, main())
    assert exc is None
    assert proto.events == ['made', 'data', 'eof', 'lost']
    assert bytes(proto.data) == b'pong'
    assert errors == []


def test_create_connection_transport_extra_info(loop, server_sock):
    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(server_sock))
        tr, _ = await loop.create_connection(asyncio.Protocol, *server_sock.getsockname())
        peer, peer_addr = await accept
        with peer:
            assert isinstance(tr, asyncio.Transport)
            assert tr.get_extra_info('peername') == server_sock.getsockname()
            assert tr.get_extra_info('sockname') == peer_addr
            sock = tr.get_extra_info('socket')
            assert isinstance(sock, asyncio.trsock.TransportSocket)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert tr.get_extra_info('no such key', 'dflt') == 'dflt'
            tr.close()
            assert await recv_until_eof(loop, peer) == b''

    run(loop, main())


@needs_ipv6
def test_create_connection_over_ipv6(loop):
    with listener(socket.AF_INET6, '::1') as srv:
        async def main():
            accept = asyncio.ensure_future(loop.sock_accept(srv))
            tr, _ = await loop.create_connection(asyncio.Protocol, '::1', srv.getsockname()[1])
            peer, _ = await accept
            with peer:
                assert tr.get_extra_info('peername')[:2] == ('::1', srv.getsockname()[1])
                assert tr.get_extra_info('socket').family == socket.AF_INET6
                tr.write(b'six')
                got = await recv_exactly(loop, peer, 3)
                tr.close()
            return got

        assert run(loop, main()) == b'six'


@pytest.mark.parametrize('host', ['localhost', b'127.0.0.1'])
def test_create_connection_resolves_names_and_str_ports(loop, server_sock, host):
    port = str(server_sock.getsockname()[1])

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(server_sock))
        tr, _ = await loop.create_connection(asyncio.Protocol, host, port,
                                             family=socket.AF_INET)
        peer, _ = await accept
        peer.close()
        peername = tr.get_extra_info('peername')
        tr.close()
        return peername

    assert run(loop, main()) == server_sock.getsockname()


def test_create_connection_refused_single_address(loop):
    port = unused_port()
    with pytest.raises(ConnectionRefusedError) as info:
        run(loop, loop.create_connection(asyncio.Protocol, '127.0.0.1', port))
    assert info.value.errno == errno.ECONNREFUSED
    assert str(info.value) == refused(('127.0.0.1', port))


def test_create_connection_tries_every_address_then_uses_the_first_that_works(loop, server_sock):
    dead = unused_port()
    good = server_sock.getsockname()[1]
    calls = fake_resolver(loop, [v4(dead), v4(good)])

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(server_sock))
        tr, _ = await loop.create_connection(asyncio.Protocol, 'ferroloop.test', 80)
        peer, _ = await accept
        peer.close()
        peername = tr.get_extra_info('peername')
        tr.close()
        return peername

    assert run(loop, main()) == ('127.0.0.1', good)
    assert calls == [('ferroloop.test', 80, 0, socket.SOCK_STREAM, 0, 0)]


def test_create_connection_all_addresses_fail_with_different_errors(loop):
    a, b = unused_port(), unused_port()
    while b == a:
        b = unused_port()
    fake_resolver(loop, [v4(a), v4(b)])
    with pytest.raises(OSError) as info:
        run(loop, loop.create_connection(asyncio.Protocol, 'ferroloop.test', 80))
    assert type(info.value) is OSError
    assert str(info.value) == ('Multiple exceptions: '
                               f"{refused(('127.0.0.1', a))}, {refused(('127.0.0.1', b))}")


def test_create_connection_all_addresses_fail_alike_raises_the_first(loop):
    port = unused_port()
    fake_resolver(loop, [v4(port), v4(port)])
    with pytest.raises(ConnectionRefusedError) as info:
        run(loop, loop.create_connection(asyncio.Protocol, 'ferroloop.test', 80))
    assert str(info.value) == refused(('127.0.0.1', port))


@asyncio_since((3, 12), 'all_errors')
def test_create_connection_all_errors_raises_an_exception_group(loop):
    a, b = unused_port(), unused_port()
    fake_resolver(loop, [v4(a), v4(b)])
    with pytest.raises(ExceptionGroup) as info:
        run(loop, loop.create_connection(asyncio.Protocol, 'ferroloop.test', 80,
                                         all_errors=True))
    group = info.value
    assert group.message == 'create_connection failed'
    assert [str(e) for e in group.exceptions] == [refused(('127.0.0.1', a)),
                                                  refused(('127.0.0.1', b))]
    assert all(isinstance(e, ConnectionRefusedError) for e in group.exceptions)


def test_create_connection_empty_resolution(loop):
    fake_resolver(loop, [])
    with pytest.raises(OSError, match=r'^getaddrinfo\(\) returned empty list$'):
        run(loop, loop.create_connection(asyncio.Protocol, 'ferroloop.test', 80))


@needs_ipv6
def test_create_connection_interleave_alternates_families(loop):
    p1, p2 = unused_port(), unused_port()
    infos = [v6(p1), v6(p2), v4(p1), v4(p2)]
    fake_resolver(loop, infos)
    with pytest.raises(OSError) as info:
        run(loop, loop.create_connection(asyncio.Protocol, 'ferroloop.test', 80, interleave=1))
    order = [v6(p1), v4(p1), v6(p2), v4(p2)]
    assert str(info.value) == 'Multiple exceptions: ' + ', '.join(
        refused(i[4]) for i in order)
    # interleave=2: two of the first family before alternating.
    with pytest.raises(OSError) as info:
        run(loop, loop.create_connection(asyncio.Protocol, 'ferroloop.test', 80, interleave=2))
    order = [v6(p1), v6(p2), v4(p1), v4(p2)]
    assert str(info.value) == 'Multiple exceptions: ' + ', '.join(
        refused(i[4]) for i in order)


def test_happy_eyeballs_starts_the_next_address_when_one_hangs(loop, hanging, server_sock):
    good = server_sock.getsockname()
    fake_resolver(loop, [v4(hanging.address()[1]), v4(good[1])])
    before = open_fds()

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(server_sock))
        t0 = loop.time()
        tr, _ = await loop.create_connection(asyncio.Protocol, 'ferroloop.test', 80,
                                             happy_eyeballs_delay=0.05)
        elapsed = loop.time() - t0
        peer, _ = await accept
        peer.close()
        peername = tr.get_extra_info('peername')
        tr.close()
        await asyncio.sleep(0.01)
        return peername, elapsed

    peername, elapsed = run(loop, main())
    assert peername == good
    assert elapsed < 1.0  # well before the hanging connect's SYN retry
    assert open_fds() <= before  # the losing attempt's socket was closed


def test_happy_eyeballs_all_fail(loop):
    a, b = unused_port(), unused_port()
    fake_resolver(loop, [v4(a), v4(b)])
    with pytest.raises(OSError) as info:
        run(loop, loop.create_connection(asyncio.Protocol, 'ferroloop.test', 80,
                                         happy_eyeballs_delay=0.01))
    assert str(info.value) == ('Multiple exceptions: '
                               f"{refused(('127.0.0.1', a))}, {refused(('127.0.0.1', b))}")


def test_cancelled_connect_leaks_no_socket(loop, hanging):
    before = open_fds()

    async def main():
        task = asyncio.ensure_future(
            loop.create_connection(asyncio.Protocol, *hanging.address()))
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())
    assert open_fds() <= before


def test_create_connection_local_addr(loop, server_sock):
    local_port = unused_port()

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(server_sock))
        tr, _ = await loop.create_connection(asyncio.Protocol, *server_sock.getsockname(),
                                             local_addr=('127.0.0.1', local_port))
        peer, addr = await accept
        peer.close()
        sockname = tr.get_extra_info('sockname')
        tr.close()
        return sockname, addr

    sockname, addr = run(loop, main())
    assert sockname == addr == ('127.0.0.1', local_port)


def test_create_connection_local_addr_in_use(loop, server_sock):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen(1)
        laddr = taken.getsockname()
        with pytest.raises(OSError) as info:
            run(loop, loop.create_connection(asyncio.Protocol, *server_sock.getsockname(),
                                             local_addr=laddr))
    assert info.value.errno == errno.EADDRINUSE
    detail = (str(OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))).lower()
              if PY313 else os.strerror(errno.EADDRINUSE).lower())
    assert info.value.strerror == (f'error while attempting to bind on address '
                                   f'{laddr!r}: {detail}')


@needs_ipv6
def test_create_connection_local_addr_of_another_family(loop):
    with listener(socket.AF_INET6, '::1') as srv:
        with pytest.raises(OSError) as info:
            run(loop, loop.create_connection(asyncio.Protocol, '::1', srv.getsockname()[1],
                                             local_addr=('127.0.0.1', 0)))
    assert str(info.value) == (
        f'no matching local address with family={socket.AF_INET6!r} found')


def test_create_connection_on_a_connected_socket(loop, server_sock):
    async def main():
        sock = socket.socket()
        sock.setblocking(False)
        accept = asyncio.ensure_future(loop.sock_accept(server_sock))
        await loop.sock_connect(sock, server_sock.getsockname())
        peer, _ = await accept
        with peer:
            tr, proto = await loop.create_connection(lambda: Recorder(loop), sock=sock)
            assert tr.get_extra_info('socket').fileno() == sock.fileno()
            await loop.sock_sendall(peer, b'via sock=')
            while len(proto.data) < 9:
                await asyncio.sleep(0.001)
            tr.close()
            await proto.lost
        return bytes(proto.data)

    assert run(loop, main()) == b'via sock='


def test_create_connection_argument_errors(loop):
    with socket.socket() as sock:
        with pytest.raises(ValueError, match='^host/port and sock can not be specified at the same time$'):
            run(loop, loop.create_connection(asyncio.Protocol, '127.0.0.1', 1, sock=sock))
        with pytest.raises(ValueError, match='^server_hostname is only meaningful with ssl$'):
            run(loop, loop.create_connection(asyncio.Protocol, sock=sock, server_hostname='x'))
        with pytest.raises(ValueError, match='^You must set server_hostname when using ssl without a host$'):
            run(loop, loop.create_connection(asyncio.Protocol, sock=sock, ssl=True))
        with pytest.raises(ValueError, match='^ssl_handshake_timeout is only meaningful with ssl$'):
            run(loop, loop.create_connection(asyncio.Protocol, sock=sock, ssl_handshake_timeout=1))
        with pytest.raises(ValueError, match='^ssl_shutdown_timeout is only meaningful with ssl$'):
            run(loop, loop.create_connection(asyncio.Protocol, sock=sock, ssl_shutdown_timeout=1))
    with pytest.raises(ValueError, match='^host and port was not specified and no sock specified$'):
        run(loop, loop.create_connection(asyncio.Protocol))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError, match='^A Stream Socket was expected, got <socket.socket'):
            run(loop, loop.create_connection(asyncio.Protocol, sock=udp))
    ctx = ssl.create_default_context()
    with ctx.wrap_socket(socket.socket(), server_hostname='x',
                         do_handshake_on_connect=False) as tls_sock:
        with pytest.raises(TypeError, match='^Socket cannot be of type SSLSocket$'):
            run(loop, loop.create_connection(asyncio.Protocol, sock=tls_sock))


def test_create_connection_in_debug_mode(loop, server_sock):
    loop.set_debug(True)
    loop.slow_callback_duration = 10

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(server_sock))
        tr, _ = await loop.create_connection(asyncio.Protocol, *server_sock.getsockname())
        peer, _ = await accept
        peer.close()
        tr.close()
        await asyncio.sleep(0)

    run(loop, main())


def test_protocol_factory_error_closes_the_socket(loop, server_sock):
    before = open_fds()

    def factory():
        raise ZeroDivisionError('no protocol')

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(server_sock))
        with pytest.raises(ZeroDivisionError):
            await loop.create_connection(factory, *server_sock.getsockname())
        peer, _ = await accept
        with peer:
            return await recv_until_eof(loop, peer)

    import gc
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', ResourceWarning)
        assert run(loop, main()) == b''
        gc.collect()
    assert open_fds() <= before
    if isinstance(loop, ferroloop.Loop):
        # ferroloop closes it at once; the stdlib loop leaves it to the collector.
        assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# -- Unix connections ------------------------------------------------------------------


@pytest.fixture
def unix_server(tmp_path):
    path = str(tmp_path / 'c.sock')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(8)
    sock.setblocking(False)
    with sock:
        yield path, sock


def test_create_unix_connection_round_trip(loop, unix_server, errors):
    path, srv = unix_server

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(srv))
        tr, proto = await loop.create_unix_connection(lambda: Recorder(loop), path)
        assert tr.get_extra_info('peername') == path
        assert tr.get_extra_info('socket').family == socket.AF_UNIX
        peer, _ = await accept
        with peer:
            tr.write(b'over unix')
            assert await recv_exactly(loop, peer, 9) == b'over unix'
            await loop.sock_sendall(peer, b'back')
            peer.shutdown(socket.SHUT_WR)
            await proto.lost
        return proto

    proto = run(loop, main())
    assert proto.events == ['made', 'data', 'eof', 'lost']
    assert bytes(proto.data) == b'back'
    assert errors == []


def test_create_unix_connection_path_like_and_sock(loop, unix_server):
    path, srv = unix_server
    import pathlib

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(srv))
        tr, _ = await loop.create_unix_connection(asyncio.Protocol, pathlib.Path(path))
        (await accept)[0].close()
        tr.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        accept = asyncio.ensure_future(loop.sock_accept(srv))
        tr2, _ = await loop.create_unix_connection(asyncio.Protocol, sock=sock)
        (await accept)[0].close()
        assert sock.gettimeout() == 0
        tr2.close()
        await asyncio.sleep(0)

    run(loop, main())


def test_create_unix_connection_errors(loop, unix_server, tmp_path):
    path, _ = unix_server
    with pytest.raises(FileNotFoundError):
        run(loop, loop.create_unix_connection(asyncio.Protocol, str(tmp_path / 'missing')))
    stale = str(tmp_path / 'stale.sock')
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()
    with pytest.raises(ConnectionRefusedError):
        run(loop, loop.create_unix_connection(asyncio.Protocol, stale))
    with socket.socket(socket.AF_UNIX) as sock:
        with pytest.raises(ValueError, match='^path and sock can not be specified at the same time$'):
            run(loop, loop.create_unix_connection(asyncio.Protocol, path, sock=sock))
    with pytest.raises(ValueError, match='^no path and sock were specified$'):
        run(loop, loop.create_unix_connection(asyncio.Protocol))
    with socket.socket() as tcp:
        with pytest.raises(ValueError, match='^A UNIX Domain Stream Socket was expected, got <socket'):
            run(loop, loop.create_unix_connection(asyncio.Protocol, sock=tcp))
    with pytest.raises(ValueError, match='^server_hostname is only meaningful with ssl$'):
        run(loop, loop.create_unix_connection(asyncio.Protocol, path, server_hostname='x'))
    with pytest.raises(ValueError, match='^ssl_handshake_timeout is only meaningful with ssl$'):
        run(loop, loop.create_unix_connection(asyncio.Protocol, path, ssl_handshake_timeout=1))
    with pytest.raises(ValueError, match='^ssl_shutdown_timeout is only meaningful with ssl$'):
        run(loop, loop.create_unix_connection(asyncio.Protocol, path, ssl_shutdown_timeout=1))
    with pytest.raises(ValueError, match='^you have to pass server_hostname when using ssl$'):
        run(loop, loop.create_unix_connection(asyncio.Protocol, path,
                                              ssl=ssl.create_default_context()))


# -- connect_accepted_socket -------------------------------------------------------------


def test_connect_accepted_socket(loop, server_sock, errors):
    async def main():
        client = socket.socket()
        client.setblocking(False)
        with client:
            accept = asyncio.ensure_future(loop.sock_accept(server_sock))
            await loop.sock_connect(client, server_sock.getsockname())
            conn, addr = await accept
            tr, proto = await loop.connect_accepted_socket(lambda: Recorder(loop), conn)
            assert tr.get_extra_info('peername') == addr
            await loop.sock_sendall(client, b'accepted elsewhere')
            client.shutdown(socket.SHUT_WR)
            await proto.lost
            assert await recv_until_eof(loop, client) == b''
        return proto

    proto = run(loop, main())
    assert proto.events == ['made', 'data', 'eof', 'lost']
    assert bytes(proto.data) == b'accepted elsewhere'
    assert errors == []


def test_connect_accepted_socket_errors(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError, match='^A Stream Socket was expected, got <socket'):
            run(loop, loop.connect_accepted_socket(asyncio.Protocol, udp))
    with socket.socket() as sock:
        with pytest.raises(ValueError, match='^ssl_handshake_timeout is only meaningful with ssl$'):
            run(loop, loop.connect_accepted_socket(asyncio.Protocol, sock,
                                                   ssl_handshake_timeout=1))
        with pytest.raises(ValueError, match='^ssl_shutdown_timeout is only meaningful with ssl$'):
            run(loop, loop.connect_accepted_socket(asyncio.Protocol, sock,
                                                   ssl_shutdown_timeout=1))


# -- loop.sendfile ---------------------------------------------------------------------------


DATA = bytes(range(256)) * 4096 * 4  # 4 MiB


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / 'data.bin'
    path.write_bytes(DATA)
    with open(path, 'rb') as f:
        yield f


class SendfilePeer:
    """A connected (transport, protocol) and the raw peer socket that reads it all."""

    def __init__(self, loop, server_sock, *, small_buffers=False, read_after=0):
        self.loop = loop
        self.server_sock = server_sock
        self.small_buffers = small_buffers
        self.read_after = read_after

    async def __aenter__(self):
        accept = asyncio.ensure_future(self.loop.sock_accept(self.server_sock))
        self.tr, self.proto = await self.loop.create_connection(
            lambda: Recorder(self.loop), *self.server_sock.getsockname())
        self.peer, _ = await accept
        if self.small_buffers:
            # So that the transport's own buffer fills and flow control acts.
            self.tr.get_extra_info('socket').setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
            self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.received = asyncio.ensure_future(self._receive())
        return self

    async def _receive(self):
        await asyncio.sleep(self.read_after)
        return await recv_until_eof(self.loop, self.peer)

    async def finish(self):
        """Closes the client side and returns everything the peer got."""
        self.tr.close()
        return await self.received

    async def __aexit__(self, *exc):
        self.tr.close()
        self.received.cancel()
        self.peer.close()


def fail_native(loop):
    async def native(transp, file, offset, count):
        raise asyncio.SendfileNotAvailableError('sendfile syscall is not supported')
    loop._sendfile_native = native


@pytest.mark.parametrize('slow_peer', [False, True])
def test_sendfile_sends_the_whole_file(loop, server_sock, data_file, errors, slow_peer):
    async def main():
        async with SendfilePeer(loop, server_sock, small_buffers=slow_peer,
                                read_after=0.1 if slow_peer else 0) as p:
            sent = await loop.sendfile(p.tr, data_file)
            assert p.tr.is_reading()  # restored
            return sent, await p.finish()

    sent, got = run(loop, main())
    assert sent == len(DATA)
    assert got == DATA
    assert data_file.tell() == len(DATA)
    assert errors == []


def test_sendfile_offset_and_count(loop, server_sock, data_file):
    async def main():
        async with SendfilePeer(loop, server_sock) as p:
            sent = await loop.sendfile(p.tr, data_file, 1000, 123_456)
            return sent, await p.finish()

    sent, got = run(loop, main())
    assert sent == 123_456
    assert got == DATA[1000:1000 + 123_456]
    assert data_file.tell() == 1000 + 123_456


@pytest.mark.parametrize('fallback', [False, True])
def test_sendfile_offset_counts_from_the_start_of_the_file_not_its_position(
        loop, server_sock, data_file, fallback):
    if fallback and sys.version_info < (3, 14):
        pytest.skip('before 3.14 the fallback reads offset 0 from where the file is')
    data_file.seek(123)
    if fallback:
        fail_native(loop)

    async def main():
        async with SendfilePeer(loop, server_sock) as p:
            sent = await loop.sendfile(p.tr, data_file, 0)
            return sent, await p.finish()

    sent, got = run(loop, main())
    assert sent == len(DATA)
    assert got == DATA
    assert data_file.tell() == len(DATA)


def test_sendfile_keeps_order_with_writes_before_and_after(loop, server_sock, data_file):
    async def main():
        async with SendfilePeer(loop, server_sock) as p:
            p.tr.write(b'PRE' * 100_000)  # more than the socket takes at once
            sent = await loop.sendfile(p.tr, data_file)
            p.tr.write(b'POST')
            return sent, await p.finish()

    sent, got = run(loop, main())
    assert sent == len(DATA)
    assert got == b'PRE' * 100_000 + DATA + b'POST'


def test_write_during_sendfile_is_refused(loop, server_sock, data_file):
    async def main():
        async with SendfilePeer(loop, server_sock) as p:
            task = asyncio.ensure_future(loop.sendfile(p.tr, data_file))
            await asyncio.sleep(0)
            with pytest.raises(RuntimeError, match='^unable to write; sendfile is in progress$'):
                p.tr.write(b'data')
            sent = await task
            return sent, await p.finish()

    sent, got = run(loop, main())
    assert sent == len(DATA)
    assert got == DATA


@pytest.mark.parametrize('slow_peer', [False, True])
def test_sendfile_fallback_when_native_is_unavailable(loop, server_sock, data_file, slow_peer):
    fail_native(loop)

    async def main():
        async with SendfilePeer(loop, server_sock, small_buffers=slow_peer,
                                read_after=0.1 if slow_peer else 0) as p:
            if slow_peer:
                p.tr.set_write_buffer_limits(high=4096)
            p.tr.write(b'PRE')
            sent = await loop.sendfile(p.tr, data_file, 10, len(DATA) - 20)
            assert p.tr.get_protocol() is p.proto
            assert p.tr.is_reading()
            # The stand-in protocol took the flow-control calls, not ours.
            assert 'pause' not in p.proto.events
            p.tr.write(b'POST')
            return sent, await p.finish()

    sent, got = run(loop, main())
    assert sent == len(DATA) - 20
    assert got == b'PRE' + DATA[10:-10] + b'POST'
    assert data_file.tell() == len(DATA) - 10


def test_sendfile_without_fallback_reports_unavailable(loop, server_sock, data_file):
    fail_native(loop)

    async def main():
        async with SendfilePeer(loop, server_sock) as p:
            with pytest.raises(asyncio.SendfileNotAvailableError, match='not supported'):
                await loop.sendfile(p.tr, data_file, fallback=False)
            return await p.finish()

    assert run(loop, main()) == b''
    assert data_file.tell() == 0


def test_sendfile_argument_errors(loop, server_sock, data_file, tmp_path):
    text = tmp_path / 'text.txt'
    text.write_text('text')

    async def main():
        async with SendfilePeer(loop, server_sock) as p:
            with open(text) as f:
                with pytest.raises(ValueError, match='^file should be opened in binary mode$'):
                    await loop.sendfile(p.tr, f)
            with pytest.raises(ValueError, match=r'^count must be a positive integer \(got 0\)$'):
                await loop.sendfile(p.tr, data_file, 0, 0)
            with pytest.raises(ValueError, match=r'^offset must be a non-negative integer \(got -1\)$'):
                await loop.sendfile(p.tr, data_file, -1)
            with pytest.raises(TypeError, match=r"^count must be a positive integer \(got '1'\)$"):
                await loop.sendfile(p.tr, data_file, 0, '1')
            assert p.tr.is_reading()  # restored after each refusal
            # The transport still works.
            p.tr.write(b'after')
            got = await p.finish()
            with pytest.raises(RuntimeError, match='^Transport is closing$'):
                await loop.sendfile(p.tr, data_file)
            return got

    assert run(loop, main()) == b'after'


class _NotForSendfile(asyncio.Transport):
    def is_closing(self):
        return False

    def __repr__(self):
        return '<NotForSendfile>'


class _FallbackOnly(_NotForSendfile):
    _sendfile_compatible = asyncio.constants._SendfileMode.FALLBACK


def test_sendfile_on_transports_that_cannot(loop, data_file):
    with pytest.raises(RuntimeError, match='^sendfile is not supported for transport <NotForSendfile>$'):
        run(loop, loop.sendfile(_NotForSendfile(), data_file))
    with pytest.raises(RuntimeError, match='^fallback is disabled and native sendfile is not '
                                           'supported for transport <NotForSendfile>$'):
        run(loop, loop.sendfile(_FallbackOnly(), data_file, fallback=False))


@pytest.mark.parametrize('native', [True, False])
def test_sendfile_peer_closes_in_the_middle(loop, server_sock, tmp_path, native):
    path = tmp_path / 'big.bin'
    path.write_bytes(DATA * 8)  # 32 MiB: far more than the socket buffers hold
    if not native:
        fail_native(loop)

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(server_sock))
        tr, proto = await loop.create_connection(lambda: Recorder(loop),
                                                 *server_sock.getsockname())
        tr.get_extra_info('socket').setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        peer, _ = await accept
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)

        async def read_some_then_close():
            await recv_exactly(loop, peer, 100_000)
            peer.close()  # unread data: the kernel answers with RST

        closer = asyncio.ensure_future(read_some_then_close())
        with open(path, 'rb') as f:
            with pytest.raises(ConnectionError):
                await loop.sendfile(tr, f)
            pos = f.tell()
        await closer
        await asyncio.wait_for(proto.lost, TIMEOUT)
        assert tr.is_closing()
        return pos

    pos = run(loop, main())
    assert 100_000 <= pos < len(DATA) * 8


# -- asyncio streams on top ----------------------------------------------------------------


def test_open_connection_readline_and_drain(loop, server_sock, errors):
    async def serve():
        peer, _ = await loop.sock_accept(server_sock)
        with peer:
            buf = b''
            while not buf.endswith(b'QUIT\n'):
                chunk = await loop.sock_recv(peer, 65536)
                if not chunk:
                    break
                buf += chunk
                while b'\n' in buf and not buf.endswith(b'QUIT\n'):
                    line, buf = buf.split(b'\n', 1)
                    await loop.sock_sendall(peer, line[::-1] + b'\n')

    async def main():
        server = asyncio.ensure_future(serve())
        reader, writer = await asyncio.open_connection(*server_sock.getsockname())
        replies = []
        for i in range(50):
            writer.write(f'abc{i}\n'.encode())
            await writer.drain()
            replies.append(await reader.readline())
        writer.write(b'QUIT\n')
        await writer.drain()
        await server
        assert await reader.read() == b''
        assert reader.at_eof()
        writer.close()
        await writer.wait_closed()
        return replies

    replies = run(loop, main())
    assert replies == [f'abc{i}'[::-1].encode() + b'\n' for i in range(50)]
    assert errors == []


def test_open_connection_drain_waits_for_a_slow_reader(loop, server_sock):
    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(server_sock))
        reader, writer = await asyncio.open_connection(*server_sock.getsockname())
        peer, _ = await accept
        with peer:
            chunk = b'z' * (1024 * 1024)
            written = 0
            reading = None
            for _ in range(64):  # the kernel buffers fill up long before
                writer.write(chunk)
                written += len(chunk)
                drain = asyncio.ensure_future(writer.drain())
                await asyncio.sleep(0)
                if not drain.done():
                    # Paused: it stays so while the peer reads nothing...
                    await asyncio.sleep(0.05)
                    assert not drain.done()
                    # ...and resumes once it reads.
                    reading = asyncio.ensure_future(recv_until_eof(loop, peer))
                    await drain
                    break
                await drain
            assert reading is not None, 'drain() never waited'
            writer.write_eof()
            got = await reading
        writer.close()
        await writer.wait_closed()
        return len(got), written

    got, written = run(loop, main())
    assert got == written


def test_open_unix_connection(loop, unix_server):
    path, srv = unix_server

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(srv))
        reader, writer = await asyncio.open_unix_connection(path)
        peer, _ = await accept
        with peer:
            await loop.sock_sendall(peer, b'line one\nline two\n')
            peer.shutdown(socket.SHUT_WR)
            lines = [await reader.readline(), await reader.readline(), await reader.readline()]
        writer.close()
        await writer.wait_closed()
        return lines

    assert run(loop, main()) == [b'line one\n', b'line two\n', b'']


@pytest.mark.skipif(sys.version_info < (3, 14), reason='asyncio.staggered keeps such a cycle before 3.14')
def test_failed_happy_eyeballs_connect_leaves_its_error_in_no_reference_cycle(loop):
    # The error's traceback holds the frames that failed; nothing those
    # frames hold may lead back to the error, or every attempt's frames
    # (and sockets, futures, ...) live on until the collector runs.
    port = unused_port()

    async def main():
        try:
            await loop.create_connection(asyncio.Protocol, '127.0.0.1', port,
                                         happy_eyeballs_delay=0.25)
        except OSError as e:
            exc = e
        assert isinstance(exc, ConnectionRefusedError)
        assert gc.get_referrers(exc) == [coro]

    coro = main()
    run(loop, coro)
