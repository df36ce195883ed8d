"""TLS on ferroloop: ssl= on servers and connections, start_tls, verification.

A throwaway CA and a server certificate for localhost / 127.0.0.1 are made
with the openssl command; every test runs on ferroloop and on the stdlib loop.
"""

import asyncio
import shutil
import ssl
import subprocess

import pytest

import ferroloop

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


def test_wrong_hostname_fails_verification(loop, server_ctx, client_ctx):
    async def main():
        server = await asyncio.start_server(echo_handler, '127.0.0.1', 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ssl.SSLCertVerificationError, match='Hostname mismatch|doesn.t match'):
                await asyncio.open_connection('127.0.0.1', port, ssl=client_ctx,
                                              server_hostname='not-localhost.example')
        finally:
            server.close()
            await server.wait_closed()
        return 'refused'

    assert run(loop, main()) == 'refused'


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
