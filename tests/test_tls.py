"""TLS on ferroloop: ssl= on servers and connections, start_tls, verification.

A throwaway CA and a server certificate for localhost / 127.0.0.1 are made
with the openssl command; every test runs on ferroloop and on the stdlib loop.
"""

import asyncio
import contextvars
import gc
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import weakref
import warnings

import pytest

import ferroloop
from support import Recorder, asyncio_since

pytestmark = pytest.mark.skipif(shutil.which('openssl') is None, reason='needs the openssl command')


@pytest.fixture(scope='module')
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp('certs')

    def openssl(*args):
        subprocess.run(['openssl', *args], cwd=d, check=True, capture_output=True)

    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
            '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=ferroloop test CA',
            '-addext', 'basicConstraints=critical,CA:TRUE',
            '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key',
            '-out', 'server.csr', '-subj', '/CN=localhost')
    # Python 3.13 verifies strictly (VERIFY_X509_STRICT): both certificates
    # carry the extensions it requires.
    (d / 'ext.cnf').write_text('subjectAltName=DNS:localhost,IP:127.0.0.1\n'
                               'basicConstraints=critical,CA:FALSE\n'
                               'keyUsage=critical,digitalSignature,keyEncipherment\n'
                               'extendedKeyUsage=serverAuth\n'
                               'subjectKeyIdentifier=hash\n'
                               'authorityKeyIdentifier=keyid,issuer\n')
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
            '-CAcreateserial', '-days', '2', '-out', 'server.pem', '-extfile', 'ext.cnf')
    return d


@pytest.fixture
def server_ctx(certs):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / 'server.pem', certs / 'server.key')
    return ctx


@pytest.fixture
def client_ctx(certs):
    ctx = ssl.create_default_context(cafile=str(certs / 'ca.pem'))
    return ctx


@pytest.fixture(params=['ferroloop', 'asyncio'])
def loop(request):
    lp = ferroloop.new_event_loop() if request.param == 'ferroloop' else asyncio.SelectorEventLoop()
    yield lp
    lp.run_until_complete(lp.shutdown_default_executor())
    lp.close()


def run(loop, coro, timeout=10):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def echo_handler(reader, writer):
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_streams_over_tls_echo_with_verified_certificate(loop, server_ctx, client_ctx):
    async def main():
        server = await asyncio.start_server(echo_handler, '127.0.0.1', 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port, ssl=client_ctx,
                                                       server_hostname='localhost')
        ssl_object = writer.get_extra_info('ssl_object')
        peercert = writer.get_extra_info('peercert')
        writer.write(b'hello over tls\n' + b'x' * 50_000 + b'\n')
        first = await reader.readline()
        second = await reader.readline()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return first, len(second), ssl_object.version(), dict(x[0] for x in peercert['subject'])

    first, second_len, version, subject = run(loop, main())
    assert first == b'HELLO OVER TLS\n'
    assert second_len == 50_001
    assert version.startswith('TLS')
    assert subject['commonName'] == 'localhost'


def test_unverifiable_server_certificate_fails_the_handshake(loop, server_ctx):
    async def main():
        server = await asyncio.start_server(echo_handler, '127.0.0.1', 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            # The default context trusts the system CAs only, not our test CA.
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection('127.0.0.1', port, ssl=ssl.create_default_context(),
                                              server_hostname='localhost')
        finally:
            server.close()
            await server.wait_closed()
        return 'refused'

    assert run(loop, main()) == 'refused'


@pytest.fixture
def expired_server_ctx(certs):
    # Signed by the test CA the client trusts, but valid until yesterday.
    subprocess.run(['openssl', 'x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem',
                    '-CAkey', 'ca.key', '-CAcreateserial', '-days', '-1',
                    '-out', 'expired.pem', '-extfile', 'ext.cnf'],
                   cwd=certs, check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / 'expired.pem', certs / 'server.key')
    return ctx


def assert_verification_refused(loop, server_ctx, client_ctx, server_hostname, match):
    """A client verifying the server's certificate refuses the connection."""
    async def main():
        server = await asyncio.start_server(echo_handler, '127.0.0.1', 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ssl.SSLCertVerificationError, match=match):
                await asyncio.open_connection('127.0.0.1', port, ssl=client_ctx,
                                              server_hostname=server_hostname)
        finally:
            server.close()
            await server.wait_closed()
        return 'refused'

    assert run(loop, main()) == 'refused'


def test_expired_certificate_fails_verification(loop, expired_server_ctx, client_ctx):
    assert_verification_refused(loop, expired_server_ctx, client_ctx, 'localhost',
                                'certificate has expired')


def test_wrong_hostname_fails_verification(loop, server_ctx, client_ctx):
    assert_verification_refused(loop, server_ctx, client_ctx, 'not-localhost.example',
                                'Hostname mismatch|doesn.t match')


def test_start_tls_upgrades_a_plain_connection(loop, server_ctx, client_ctx):
    async def handler(reader, writer):
        assert await reader.readline() == b'STARTTLS\n'
        writer.write(b'GO\n')
        await writer.drain()
        await writer.start_tls(server_ctx)
        line = await reader.readline()
        writer.write(b'secure:' + line)
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        writer.write(b'STARTTLS\n')
        assert await reader.readline() == b'GO\n'
        assert writer.get_extra_info('ssl_object') is None
        await writer.start_tls(client_ctx, server_hostname='localhost')
        assert writer.get_extra_info('ssl_object') is not None
        writer.write(b'ping\n')
        reply = await reader.readline()
        writer.close()
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b'secure:ping\n'


def test_start_tls_rejects_what_asyncio_rejects(loop):
    async def main():
        with pytest.raises(TypeError, match='sslcontext is expected to be an instance of ssl.SSLContext'):
            await loop.start_tls(object(), asyncio.Protocol(), 'not a context')
        return 'checked'

    assert run(loop, main()) == 'checked'


def test_plain_client_against_tls_server_gets_no_data(loop, server_ctx):
    async def main():
        server = await asyncio.start_server(echo_handler, '127.0.0.1', 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        writer.write(b'GET / HTTP/1.0\r\n\r\n')  # garbage instead of a ClientHello
        data = await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()
        return data

    # The server drops the connection; whatever came back is no echo.
    assert b'GET' not in run(loop, main())


# -- the TLS transport's own API ---------------------------------------------

async def tls_pair(server_ctx, client_ctx, server_protocol=Recorder, client_protocol=Recorder, **server_kw):
    """A TLS server and one connected client: (server, server_protocol, client_transport, client_protocol)."""
    loop = asyncio.get_running_loop()
    accepted = loop.create_future()

    def factory():
        p = server_protocol()
        accepted.set_result(p)
        return p

    server = await loop.create_server(factory, '127.0.0.1', 0, ssl=server_ctx, **server_kw)
    port = server.sockets[0].getsockname()[1]
    transport, protocol = await loop.create_connection(
        client_protocol, '127.0.0.1', port, ssl=client_ctx, server_hostname='localhost')
    peer = await accepted
    await asyncio.wait_for(peer.made, 10)
    return server, peer, transport, protocol


async def close_server(server):
    server.close()
    await server.wait_closed()


def test_tls_transport_is_an_asyncio_transport_with_tls_extra_info(loop, server_ctx, client_ctx):
    async def main():
        server, _, transport, _ = await tls_pair(server_ctx, client_ctx)
        info = {name: transport.get_extra_info(name)
                for name in ('ssl_object', 'peercert', 'cipher', 'compression', 'sslcontext',
                             'peername', 'sockname', 'socket')}
        kinds = (isinstance(transport, asyncio.Transport), transport.can_write_eof(),
                 transport.get_extra_info('no such key', 'fallback'))
        with pytest.raises(NotImplementedError):
            transport.write_eof()
        transport.close()
        await close_server(server)
        return info, kinds

    info, kinds = run(loop, main())
    assert kinds == (True, False, 'fallback')
    assert isinstance(info['ssl_object'], ssl.SSLObject)
    assert info['sslcontext'] is not None and info['ssl_object'].context is info['sslcontext']
    assert dict(x[0] for x in info['peercert']['subject'])['commonName'] == 'localhost'
    assert info['cipher'][1].startswith('TLS')
    assert info['compression'] is None
    assert info['peername'][0] == '127.0.0.1' and info['sockname'][0] == '127.0.0.1'
    assert info['socket'].family == 2


def test_tls_write_rejects_non_bytes_with_asyncios_message(loop, server_ctx, client_ctx):
    async def main():
        server, _, transport, _ = await tls_pair(server_ctx, client_ctx)
        with pytest.raises(TypeError, match='data: expecting a bytes-like instance, got str'):
            transport.write('text')
        transport.close()
        await close_server(server)
        return 'checked'

    assert run(loop, main()) == 'checked'


def test_close_delivers_everything_written_then_peer_sees_eof(loop, server_ctx, client_ctx):
    payload = bytes(range(256)) * 4096  # 1 MiB

    async def main():
        server, peer, transport, client = await tls_pair(server_ctx, client_ctx)
        transport.writelines([payload[:1000], payload[1000:]])
        transport.close()
        assert transport.is_closing()
        await asyncio.wait_for(peer.lost, 10)
        await asyncio.wait_for(client.lost, 10)
        await close_server(server)
        return bytes(peer.data), peer.events, client.events

    data, server_events, client_events = run(loop, main())
    assert data == payload
    # close_notify each way: both sides see EOF, then the loss.
    assert server_events == ['made', 'data', 'eof', 'lost']
    assert client_events == ['made', 'eof', 'lost']


def test_abort_drops_the_connection_without_close_notify(loop, server_ctx, client_ctx):
    async def main():
        server, peer, transport, client = await tls_pair(server_ctx, client_ctx)
        transport.write(b'before abort')
        await asyncio.sleep(0.05)
        transport.abort()
        client_exc = await asyncio.wait_for(client.lost, 10)
        await asyncio.wait_for(peer.lost, 10)
        await close_server(server)
        return bytes(peer.data), client_exc, client.events, peer.events

    data, client_exc, client_events, server_events = run(loop, main())
    assert data == b'before abort'
    assert client_exc is None
    assert client_events == ['made', 'lost']
    # No close_notify came: the server's TLS layer sees a plain EOF.
    assert server_events[:2] == ['made', 'data'] and server_events[-1] == 'lost'


class BufferedRecorder(asyncio.BufferedProtocol):
    def __init__(self):
        self.buf = bytearray(1000)   # smaller than a TLS record: many reads
        self.data = bytearray()
        self.made = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(None)

    def get_buffer(self, sizehint):
        # A memoryview: asyncio's TLS layer fills slices of it in place (a
        # bytearray's slices are copies there, and the stdlib loses data).
        return memoryview(self.buf)

    def buffer_updated(self, nbytes):
        self.data += self.buf[:nbytes]

    def eof_received(self):
        pass

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_buffered_protocol_over_tls_receives_every_byte(loop, server_ctx, client_ctx):
    payload = bytes(range(251)) * 1000

    async def main():
        server, peer, transport, _ = await tls_pair(server_ctx, client_ctx, server_protocol=BufferedRecorder)
        transport.write(payload)
        transport.close()
        await asyncio.wait_for(peer.lost, 10)
        await close_server(server)
        return bytes(peer.data)

    assert run(loop, main()) == payload


def test_pause_reading_holds_data_until_resume(loop, server_ctx, client_ctx):
    async def main():
        server, peer, transport, _ = await tls_pair(server_ctx, client_ctx)
        peer.transport.pause_reading()
        paused = peer.transport.is_reading()
        transport.write(b'held back')
        await asyncio.sleep(0.1)
        while_paused = bytes(peer.data)
        peer.transport.resume_reading()
        for _ in range(100):
            if peer.data:
                break
            await asyncio.sleep(0.01)
        transport.close()
        await asyncio.wait_for(peer.lost, 10)
        await close_server(server)
        return paused, while_paused, bytes(peer.data)

    assert run(loop, main()) == (False, b'', b'held back')


def test_write_flow_control_pauses_and_resumes_the_protocol(loop, server_ctx, client_ctx):
    chunk = b'z' * 65536

    async def main():
        server, peer, transport, client = await tls_pair(server_ctx, client_ctx)
        peer.transport.pause_reading()   # the peer stops reading: buffers fill
        transport.set_write_buffer_limits(high=100_000)
        limits = transport.get_write_buffer_limits()
        sent = 0
        while 'pause' not in client.events and sent < 64 << 20:
            transport.write(chunk)
            sent += len(chunk)
            await asyncio.sleep(0)
        buffered = transport.get_write_buffer_size()
        peer.transport.resume_reading()
        for _ in range(1000):
            if len(peer.data) == sent:
                break
            await asyncio.sleep(0.01)
        transport.close()
        await asyncio.wait_for(client.lost, 10)
        await close_server(server)
        return limits, buffered, client.events, len(peer.data), sent

    limits, buffered, events, received, sent = run(loop, main(), timeout=30)
    assert limits == (25_000, 100_000)
    assert buffered >= 100_000
    assert events == ['made', 'pause', 'resume', 'eof', 'lost']
    assert received == sent


def test_handshake_timeout_closes_a_silent_connection(loop, server_ctx):
    async def main():
        server = await asyncio.start_server(echo_handler, '127.0.0.1', 0, ssl=server_ctx,
                                            ssl_handshake_timeout=0.2)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        start = loop.time()
        # Nothing sent, no ClientHello: the server gives up after 0.2 s.
        data = await asyncio.wait_for(reader.read(), 5)
        elapsed = loop.time() - start
        writer.close()
        await close_server(server)
        return data, elapsed

    data, elapsed = run(loop, main())
    assert data == b''
    assert 0.15 <= elapsed < 4


def test_bad_handshake_timeouts_are_refused_as_asyncio_refuses_them(loop, server_ctx, client_ctx):
    class Closer(asyncio.Protocol):
        def connection_made(self, transport):
            transport.close()   # nothing to serve: the client fails first

    async def main():
        plain = await loop.create_server(Closer, '127.0.0.1', 0)
        port = plain.sockets[0].getsockname()[1]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', ResourceWarning)
            with pytest.raises(ValueError, match='ssl_handshake_timeout should be a positive number, got 0'):
                await loop.create_connection(asyncio.Protocol, '127.0.0.1', port, ssl=client_ctx,
                                             server_hostname='localhost', ssl_handshake_timeout=0)
            gc.collect()
        leaked = [str(w.message) for w in caught if 'unclosed <socket' in str(w.message)]
        with pytest.raises(ValueError, match='ssl_handshake_timeout is only meaningful with ssl'):
            await loop.create_server(asyncio.Protocol, '127.0.0.1', 0, ssl_handshake_timeout=1)
        await close_server(plain)
        return leaked

    leaked = run(loop, main())
    if isinstance(loop, ferroloop.Loop):
        # The connected socket is closed with the error (the stdlib loop
        # leaves it to the garbage collector, which warns).
        assert leaked == []


class _MemoryTransport(asyncio.Transport):
    """One end of an in-memory byte pipe: what is written reaches the other
    end's protocol through get_buffer() / buffer_updated() on a later turn."""

    def __init__(self, loop):
        super().__init__()
        self.loop, self.peer, self.protocol, self.closed = loop, None, None, False

    def write(self, data):
        self.loop.call_soon(self.peer._receive, bytes(data))

    def _receive(self, data):
        while data and not self.closed:
            buf = self.protocol.get_buffer(len(data))
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            self.protocol.buffer_updated(n)
            data = data[n:]

    def is_closing(self):
        return self.closed

    def close(self):
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    def _force_close(self, exc):
        self.close()

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


def test_tls_layer_over_a_foreign_transport_uses_get_buffer(server_ctx, client_ctx):
    from ferroloop import _tls as tls

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data.upper())

    async def main():
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        client_app = Recorder()
        server = tls.new_ssl_protocol(loop, Echo(), server_ctx, None, server_side=True)
        client = tls.new_ssl_protocol(loop, client_app, client_ctx, waiter, server_side=False,
                                      server_hostname='localhost')
        a, b = _MemoryTransport(loop), _MemoryTransport(loop)
        a.peer, b.peer, a.protocol, b.protocol = b, a, client, server
        server.connection_made(b)
        client.connection_made(a)
        await asyncio.wait_for(waiter, 10)
        client_app.transport.write(b'hello ' * 10_000)
        while len(client_app.data) < 60_000:
            await asyncio.sleep(0.01)
        version = client_app.transport.get_extra_info('ssl_object').version()
        client_app.transport.close()    # close_notify both ways, then the loss
        await asyncio.wait_for(client_app.lost, 10)
        return bytes(client_app.data), version, client_app.events

    data, version, events = ferroloop.run(asyncio.wait_for(main(), 10))
    assert data == b'HELLO ' * 10_000
    assert version.startswith('TLS')
    assert events == ['made', 'data', 'eof', 'lost']


@pytest.mark.parametrize('kwargs, message', [
    ({'ssl_handshake_timeout': 0}, 'ssl_handshake_timeout should be a positive number, got 0'),
    ({'ssl_shutdown_timeout': -1.5}, 'ssl_shutdown_timeout should be a positive number, got -1.5'),
])
def test_tls_layer_refuses_bad_timeouts_with_asyncios_message(server_ctx, kwargs, message):
    from asyncio import sslproto
    from ferroloop import _tls as tls
    loop = ferroloop.new_event_loop()
    try:
        for build in (sslproto.SSLProtocol, tls.new_ssl_protocol):
            with pytest.raises(ValueError) as caught:
                build(loop, asyncio.Protocol(), server_ctx, None, server_side=True, **kwargs)
            assert str(caught.value) == message
        for build in (sslproto.SSLProtocol, tls.new_ssl_protocol):
            with pytest.raises(ValueError, match='^Server side SSL needs a valid SSLContext$'):
                build(loop, asyncio.Protocol(), None, None, server_side=True)
    finally:
        loop.close()


def test_context_sslobject_class_and_hostname_reach_both_ends(loop, server_ctx, certs):
    class MySSLObject(ssl.SSLObject):
        pass

    class MyContext(ssl.SSLContext):
        sslobject_class = MySSLObject

    server_ctx2 = MyContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx2.load_cert_chain(certs / 'server.pem', certs / 'server.key')
    client_ctx = ssl.create_default_context(cafile=str(certs / 'ca.pem'))
    seen = loop.create_future()

    class Server(asyncio.Protocol):
        def connection_made(self, transport):
            seen.set_result(type(transport.get_extra_info('ssl_object')))
            transport.close()

    async def main():
        server = await loop.create_server(Server, '127.0.0.1', 0, ssl=server_ctx2)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port, ssl=client_ctx,
                                                       server_hostname='localhost')
        client_obj = writer.get_extra_info('ssl_object')
        server_class = await asyncio.wait_for(seen, 10)
        assert await reader.read() == b''
        writer.close()
        server.close()
        await server.wait_closed()
        return server_class, type(client_obj), client_obj.server_hostname, client_obj.server_side

    assert run(loop, main()) == (MySSLObject, ssl.SSLObject, 'localhost', False)


@asyncio_since((3, 14), "start_tls taking over what the server's stream reader buffered")
def test_start_tls_on_a_server_takes_the_hello_its_stream_reader_already_buffered(
        loop, server_ctx, client_ctx):
    async def handler(reader, writer):
        # The client's hello arrives before the server upgrades.
        while not reader._buffer:
            await asyncio.sleep(0.001)
        await writer.start_tls(server_ctx)
        line = await reader.readline()
        writer.write(b'secure:' + line)
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        await writer.start_tls(client_ctx, server_hostname='localhost')
        writer.write(b'ping\n')
        reply = await reader.readline()
        writer.close()
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b'secure:ping\n'


@asyncio_since((3, 14), 'the shutdown timeout after EOF from a peer that does not read')
@pytest.mark.parametrize('close_first', [True, False])
def test_shutdown_times_out_when_the_peer_sent_eof_and_reads_no_more(
        loop, server_ctx, client_ctx, close_first):
    listener = socket.create_server(('127.0.0.1', 0))
    filled, done = threading.Event(), threading.Event()

    def peer():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            filled.wait(10)
            tls.shutdown(socket.SHUT_WR)  # EOF, and never a read again
            done.wait(10)

    thread = threading.Thread(target=peer)
    thread.start()

    async def main():
        port = listener.getsockname()[1]
        tr, proto = await loop.create_connection(
            lambda: Recorder(loop), '127.0.0.1', port, ssl=client_ctx,
            server_hostname='localhost', ssl_shutdown_timeout=0.1)
        try:
            for _ in range(64):  # until nothing more gets through
                if 'pause' in proto.events:
                    break
                tr.write(bytes(1 << 20))
                await asyncio.sleep(0)
            if close_first:
                tr.close()
            filled.set()
            return await asyncio.wait_for(proto.lost, 10)
        finally:
            filled.set()
            done.set()
            tr.abort()

    try:
        exc = run(loop, main(), timeout=20)
    finally:
        done.set()
        thread.join(10)
        listener.close()
    assert isinstance(exc, TimeoutError)


@asyncio_since((3, 14), 'start_tls dropping its waiter when the handshake fails')
def test_failed_start_tls_leaves_the_transport_in_no_reference_cycle(loop, server_ctx, certs):
    strict = ssl.create_default_context(cafile=str(certs / 'ca.pem'))
    transports = []

    async def handler(reader, writer):
        try:
            await writer.start_tls(server_ctx)
        except (OSError, ssl.SSLError):
            pass
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await loop.create_connection(asyncio.Protocol, '127.0.0.1', port)
        transports.append(weakref.ref(tr))
        with pytest.raises(ssl.SSLCertVerificationError):
            await loop.start_tls(tr, proto, strict, server_hostname='wrong.name')
        del tr, proto
        server.close()
        await server.wait_closed()

    gc.collect()
    gc.disable()
    try:
        run(loop, main())
        assert [ref() for ref in transports] == [None]
    finally:
        gc.enable()


@asyncio_since((3, 14), 'no cycle after a failed TLS handshake in create_connection')
def test_failed_tls_create_connection_leaves_no_transport_in_a_cycle(loop, server_ctx, certs):
    strict = ssl.create_default_context(cafile=str(certs / 'ca.pem'))

    async def handler(reader, writer):
        writer.close()

    def transports():
        return [o for o in gc.get_objects() if isinstance(o, asyncio.BaseTransport)]

    async def main():
        server = await asyncio.start_server(handler, '127.0.0.1', 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        before = len(transports())
        with pytest.raises(ssl.SSLCertVerificationError):
            await loop.create_connection(asyncio.Protocol, '127.0.0.1', port,
                                         ssl=strict, server_hostname='wrong.name')
        await asyncio.sleep(0.05)  # the closing transport's last callbacks
        after = len(transports())
        server.close()
        await server.wait_closed()
        return before, after

    gc.collect()
    gc.disable()
    try:
        before, after = run(loop, main())
    finally:
        gc.enable()
    assert after <= before


def test_tls_protocol_callbacks_run_in_their_connections_own_context(loop, server_ctx, client_ctx):
    # What one connection's protocol sets stays with it: the next connection
    # starts from the server's context again.
    var = contextvars.ContextVar('var', default='default')
    seen = []

    class Mark(asyncio.Protocol):
        def connection_made(self, transport):
            seen.append(var.get())
            var.set('set by a connection')
            transport.write(b'x')
            transport.close()

    async def main():
        server = await loop.create_server(Mark, '127.0.0.1', 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        for _ in range(2):
            reader, writer = await asyncio.open_connection(
                '127.0.0.1', port, ssl=client_ctx, server_hostname='localhost')
            assert await reader.read() == b'x'
            writer.close()
        server.close()
        await server.wait_closed()
        return var.get()

    assert run(loop, main()) == 'default'
    assert seen == ['default', 'default']
