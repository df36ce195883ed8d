"""Loop metrics of the transports: bytes read and written per transport kind
(`stream`, `tls`, `datagram`, `pipe`) and connections accepted, counted
exactly against payloads of known sizes. `sock_*` calls are no transport's:
peers built on them are not counted, which makes one side's figures exact."""

import asyncio
import shutil
import socket
import os

import pytest

import ferroloop
from support import run
from test_tls import certs, client_ctx, server_ctx  # noqa: F401  (fixtures)

PAYLOADS = [b'a' * 10, b'b' * 1000, b'c' * 70_000]
TOTAL = sum(map(len, PAYLOADS))
KINDS = ('stream', 'tls', 'datagram', 'pipe')


@pytest.fixture
def floop():
    loop = ferroloop.new_event_loop()
    loop.enable_metrics()
    yield loop
    loop.close()


def bytes_of(loop):
    m = loop.metrics()
    return {k: (m.bytes_read[k], m.bytes_written[k]) for k in KINDS}


def only(kind, read, written):
    """Every kind at zero but `kind`."""
    return {k: (read, written) if k == kind else (0, 0) for k in KINDS}


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def echo_through(reader, writer, payloads):
    for p in payloads:
        writer.write(p)
        assert await reader.readexactly(len(p)) == p
    writer.close()
    await writer.wait_closed()


def test_tcp_echo_counts_each_byte_once_each_way(floop):
    async def main():
        server = await floop.create_server(Echo, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        await echo_through(*await asyncio.open_connection('127.0.0.1', port), PAYLOADS)
        server.close()
        await server.wait_closed()

    run(floop, main())
    # The client wrote and read TOTAL, and so did the server.
    assert bytes_of(floop) == only('stream', 2 * TOTAL, 2 * TOTAL)
    assert floop.metrics().connections_accepted == 1


def test_unix_echo_counts_each_byte_once_each_way(floop, tmp_path):
    async def main():
        path = str(tmp_path / 'echo.sock')
        server = await floop.create_unix_server(Echo, path)
        await echo_through(*await asyncio.open_unix_connection(path), PAYLOADS)
        server.close()
        await server.wait_closed()

    run(floop, main())
    assert bytes_of(floop) == only('stream', 2 * TOTAL, 2 * TOTAL)
    assert floop.metrics().connections_accepted == 1


def test_a_transport_against_a_sock_peer_counts_exactly_its_own_bytes(floop):
    # The peer uses sock_sendall / sock_recv, which no transport counts.
    async def main():
        server = await floop.create_server(Echo, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        with socket.create_connection(('127.0.0.1', port)) as peer:
            peer.setblocking(False)
            for p in PAYLOADS:
                await floop.sock_sendall(peer, p)
                got = b''
                while len(got) < len(p):
                    got += await floop.sock_recv(peer, 65536)
                assert got == p
        server.close()
        await server.wait_closed()

    run(floop, main())
    assert bytes_of(floop) == only('stream', TOTAL, TOTAL)


def test_writes_buffered_until_the_socket_drains_are_counted_when_sent(floop):
    size = 8 * 1024 * 1024
    seen = {}

    class Sink(asyncio.Protocol):
        def __init__(self):
            self.got = 0
            self.done = floop.create_future()

        def data_received(self, data):
            self.got += len(data)
            if self.got == size:
                self.done.set_result(None)

    async def main():
        sink = Sink()
        server = await floop.create_server(lambda: sink, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await floop.create_connection(asyncio.Protocol, '127.0.0.1', port)
        transport.write(b'x' * size)
        # What the socket could not take at once waits in the transport.
        seen['buffered'] = transport.get_write_buffer_size()
        await sink.done
        transport.close()
        server.close()
        await server.wait_closed()

    run(floop, main())
    assert seen['buffered'] > 0
    assert bytes_of(floop) == only('stream', size, size)


class Into(asyncio.BufferedProtocol):
    """Reads into a buffer of its own until TOTAL bytes came."""

    def __init__(self, loop, size):
        self.buf = bytearray(size)
        self.got = 0
        self.done = loop.create_future()

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.got += nbytes
        if self.got == TOTAL:
            self.done.set_result(None)


def test_a_buffered_protocol_read_is_counted(floop):
    async def main():
        into = Into(floop, 4096)
        server = await floop.create_server(lambda: into, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        with socket.create_connection(('127.0.0.1', port)) as peer:
            peer.setblocking(False)
            for p in PAYLOADS:
                await floop.sock_sendall(peer, p)
            await into.done
        server.close()
        await server.wait_closed()

    run(floop, main())
    assert bytes_of(floop) == only('stream', TOTAL, 0)


def test_loop_sendfile_counts_what_it_sent_on_the_socket(floop, tmp_path):
    data = bytes(range(256)) * 1000
    (tmp_path / 'f').write_bytes(data)

    async def main():
        got = bytearray()
        done = floop.create_future()

        class Sink(asyncio.Protocol):
            def data_received(self, chunk):
                got.extend(chunk)
                if len(got) == len(data):
                    done.set_result(None)

        server = await floop.create_server(Sink, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await floop.create_connection(asyncio.Protocol, '127.0.0.1', port)
        with open(tmp_path / 'f', 'rb') as f:
            assert await floop.sendfile(transport, f) == len(data)
        await done
        transport.close()
        server.close()
        await server.wait_closed()
        return bytes(got)

    assert run(floop, main()) == data
    assert bytes_of(floop) == only('stream', len(data), len(data))


async def relay(loop, listener, target, counts):
    """Forwards one connection to `target` with sock_* calls (counted here,
    not by the loop), bytes each way in counts['up'] / counts['down']."""
    conn, _ = await loop.sock_accept(listener)
    upstream = socket.socket()
    upstream.setblocking(False)
    await loop.sock_connect(upstream, target)

    async def pump(src, dst, key):
        while data := await loop.sock_recv(src, 65536):
            counts[key] += len(data)
            await loop.sock_sendall(dst, data)

    return conn, upstream, [loop.create_task(pump(conn, upstream, 'up')),
                            loop.create_task(pump(upstream, conn, 'down'))]


def test_tls_counts_plaintext_as_tls_and_records_as_stream(floop, server_ctx, client_ctx):
    counts = {'up': 0, 'down': 0}

    async def main():
        server = await floop.create_server(Echo, '127.0.0.1', 0, ssl=server_ctx)
        target = server.sockets[0].getsockname()
        with socket.create_server(('127.0.0.1', 0)) as listener:
            listener.setblocking(False)
            relaying = floop.create_task(relay(floop, listener, target, counts))
            reader, writer = await asyncio.open_connection(
                '127.0.0.1', listener.getsockname()[1], ssl=client_ctx, server_hostname='localhost')
            conn, upstream, pumps = await relaying
            for p in PAYLOADS:
                writer.write(p)
                assert await reader.readexactly(len(p)) == p
            # The echo came last: every record either way was read by now.
            snapshot = bytes_of(floop), counts['up'] + counts['down']
            writer.close()
            await writer.wait_closed()
            for t in pumps:
                t.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            conn.close()
            upstream.close()
        server.close()
        await server.wait_closed()
        return snapshot

    snapshot, on_the_wire = run(floop, main())
    assert snapshot['tls'] == (2 * TOTAL, 2 * TOTAL)
    # Handshake, record headers and tags: more than the plaintext.
    assert on_the_wire > 2 * TOTAL
    assert snapshot['stream'] == (on_the_wire, on_the_wire)
    assert snapshot['datagram'] == snapshot['pipe'] == (0, 0)


def test_tls_into_a_buffered_protocol_counts_the_plaintext(floop, server_ctx, client_ctx):
    async def main():
        into = Into(floop, 1000)
        server = await floop.create_server(lambda: into, '127.0.0.1', 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection('127.0.0.1', port, ssl=client_ctx,
                                                  server_hostname='localhost')
        for p in PAYLOADS:
            writer.write(p)
        await into.done
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(floop, main())
    assert bytes_of(floop)['tls'] == (TOTAL, TOTAL)


class DatagramEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class Collect(asyncio.DatagramProtocol):
    def __init__(self, want):
        self.want = want
        self.got = []
        self.done = asyncio.get_running_loop().create_future()

    def datagram_received(self, data, addr):
        self.got.append(data)
        if len(self.got) == self.want:
            self.done.set_result(None)


DATAGRAMS = [b'x' * 1, b'y' * 100, b'z' * 1400]


@pytest.mark.parametrize('to', ['the peer it is connected to', 'a host name'])
def test_udp_echo_counts_each_datagram_once_each_way(floop, to):
    async def main():
        server, _ = await floop.create_datagram_endpoint(DatagramEcho, local_addr=('127.0.0.1', 0))
        port = server.get_extra_info('sockname')[1]
        if to == 'a host name':
            # Not converted natively: sent through the socket's own sendto.
            client, collect = await floop.create_datagram_endpoint(
                lambda: Collect(len(DATAGRAMS)), local_addr=('127.0.0.1', 0))
            for d in DATAGRAMS:
                client.sendto(d, ('localhost', port))
        else:
            client, collect = await floop.create_datagram_endpoint(
                lambda: Collect(len(DATAGRAMS)), remote_addr=('127.0.0.1', port))
            for d in DATAGRAMS:
                client.sendto(d)
        await collect.done
        assert sorted(collect.got) == sorted(DATAGRAMS)
        client.close()
        server.close()

    run(floop, main())
    total = sum(map(len, DATAGRAMS))
    assert bytes_of(floop) == only('datagram', 2 * total, 2 * total)


@pytest.mark.skipif(shutil.which('cat') is None, reason='needs cat')
def test_a_subprocess_pipes_count_what_went_in_and_came_out(floop):
    # Larger than a pipe holds: writes wait for the pipe to drain.
    data = b'p' * (1024 * 1024 + 7)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            'cat', stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate(data)
        return out

    assert run(floop, main()) == data
    assert bytes_of(floop) == only('pipe', len(data), len(data))


def test_connect_read_and_write_pipe_count_exactly(floop):
    async def main():
        r, w = os.pipe()
        reader = asyncio.StreamReader()
        await floop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), open(r, 'rb', 0))
        transport, _ = await floop.connect_write_pipe(asyncio.Protocol, open(w, 'wb', 0))
        for p in PAYLOADS:
            transport.write(p)
        transport.close()
        return await reader.read()

    assert run(floop, main()) == b''.join(PAYLOADS)
    assert bytes_of(floop) == only('pipe', TOTAL, TOTAL)


@pytest.mark.parametrize('debug', [False, True], ids=['native', 'debug-mode path'])
def test_connections_accepted_counts_each_connection(floop, debug):
    floop.set_debug(debug)
    n = 7

    async def main():
        made = []
        server = await floop.create_server(lambda: Echo(), '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        for _ in range(n):
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            writer.write(b'.')
            assert await reader.readexactly(1) == b'.'
            made.append(writer)
        for writer in made:
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(floop, main())
    m = floop.metrics()
    assert m.connections_accepted == n
    assert (m.bytes_read['stream'], m.bytes_written['stream']) == (2 * n, 2 * n)


def test_a_tls_servers_connections_are_counted(floop, server_ctx, client_ctx):
    async def main():
        server = await floop.create_server(Echo, '127.0.0.1', 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        for _ in range(3):
            await echo_through(*await asyncio.open_connection(
                '127.0.0.1', port, ssl=client_ctx, server_hostname='localhost'), [b'hi'])
        server.close()
        await server.wait_closed()

    run(floop, main())
    m = floop.metrics()
    assert m.connections_accepted == 3
    assert (m.bytes_read['tls'], m.bytes_written['tls']) == (12, 12)


def test_nothing_is_counted_while_metrics_are_off():
    loop = ferroloop.new_event_loop()
    try:
        async def echo_once():
            server = await loop.create_server(Echo, '127.0.0.1', 0)
            port = server.sockets[0].getsockname()[1]
            await echo_through(*await asyncio.open_connection('127.0.0.1', port), PAYLOADS)
            server.close()
            await server.wait_closed()

        run(loop, echo_once())
        with pytest.raises(RuntimeError, match='metrics are not enabled'):
            loop.metrics()
        # Enabled afterwards: what came before was never counted.
        loop.enable_metrics()
        m = loop.metrics()
        assert m.connections_accepted == 0
        assert set(m.bytes_read.values()) == set(m.bytes_written.values()) == {0}
        run(loop, echo_once())
        assert bytes_of(loop) == only('stream', 2 * TOTAL, 2 * TOTAL)
        loop.disable_metrics()
        run(loop, echo_once())
        with pytest.raises(RuntimeError, match='metrics are not enabled'):
            loop.metrics()
    finally:
        loop.close()
