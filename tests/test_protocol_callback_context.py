"""Protocol callbacks run in a copy of the context that was current where
the transport was made, as asyncio's do: the caller of create_server (for
each connection), create_connection, connect_accepted_socket,
create_datagram_endpoint, subprocess_exec, with or without TLS. A context
variable set before the call is seen by connection_made and by what data
arrives later (uvicorn's test_contextvars_preserved_by_default)."""

import asyncio
import contextvars
import socket
import sys

import pytest

from support import run
from test_tls import certs, client_ctx, server_ctx  # noqa: F401

VAR = contextvars.ContextVar('VAR')


class Seeing(asyncio.Protocol):
    """Records VAR's value in each callback, by callback name."""

    def __init__(self):
        self.seen = {}
        self.got_data = asyncio.get_running_loop().create_future()
        self.exited = asyncio.get_running_loop().create_future()

    def _see(self, name):
        self.seen.setdefault(name, VAR.get('MISSING'))

    def connection_made(self, transport):
        self.transport = transport
        self._see('connection_made')

    def data_received(self, data):
        self._see('data_received')
        if not self.got_data.done():
            self.got_data.set_result(data)

    def datagram_received(self, data, addr):
        self._see('datagram_received')
        if not self.got_data.done():
            self.got_data.set_result(data)

    def pipe_data_received(self, fd, data):
        self._see('pipe_data_received')
        if not self.got_data.done():
            self.got_data.set_result(data)

    def connection_lost(self, exc):
        pass

    def process_exited(self):
        self.exited.set_result(None)


EXPECTED = {'connection_made': 'set by the caller', 'data_received': 'set by the caller'}


@pytest.mark.parametrize('tls', [False, True], ids=['plain', 'tls'])
def test_server_connections_see_the_context_of_create_servers_caller(loop, tls, server_ctx, client_ctx):
    async def main():
        VAR.set('set by the caller')
        accepted = []

        def factory():
            accepted.append(Seeing())
            return accepted[-1]

        server = await loop.create_server(factory, '127.0.0.1', 0,
                                          ssl=server_ctx if tls else None)
        port = server.sockets[0].getsockname()[1]

        async def client():
            # Another task, with the variable set otherwise.
            VAR.set('set by the client')
            _, writer = await asyncio.open_connection(
                '127.0.0.1', port, ssl=client_ctx if tls else None,
                server_hostname='localhost' if tls else None)
            writer.write(b'hello')
            await writer.drain()
            return writer

        writer = await asyncio.create_task(client(), context=contextvars.Context()) \
            if sys.version_info >= (3, 11) else await client()
        while not accepted:
            await asyncio.sleep(0.01)
        await accepted[0].got_data
        writer.close()
        server.close()
        await server.wait_closed()
        return accepted[0].seen

    assert run(loop, main()) == EXPECTED


@pytest.mark.parametrize('tls', [False, True], ids=['plain', 'tls'])
def test_client_connection_sees_the_context_of_create_connections_caller(loop, tls, server_ctx, client_ctx):
    async def main():
        async def handler(reader, writer):
            writer.write(b'hello')
            await writer.drain()
            await reader.read()
            writer.close()

        server = await asyncio.start_server(handler, '127.0.0.1', 0,
                                            ssl=server_ctx if tls else None)
        port = server.sockets[0].getsockname()[1]
        VAR.set('set by the caller')
        transport, protocol = await loop.create_connection(
            Seeing, '127.0.0.1', port, ssl=client_ctx if tls else None,
            server_hostname='localhost' if tls else None)
        VAR.set('changed after the call')
        await protocol.got_data
        transport.close()
        server.close()
        await server.wait_closed()
        return protocol.seen

    assert run(loop, main()) == EXPECTED


def test_accepted_socket_sees_the_context_of_connect_accepted_sockets_caller(loop):
    async def main():
        a, b = socket.socketpair()
        with b:
            VAR.set('set by the caller')
            transport, protocol = await loop.connect_accepted_socket(Seeing, a)
            VAR.set('changed after the call')
            b.sendall(b'hello')
            await protocol.got_data
            transport.close()
        return protocol.seen

    assert run(loop, main()) == EXPECTED


def test_datagram_endpoint_sees_the_context_of_its_caller(loop):
    async def main():
        VAR.set('set by the caller')
        transport, protocol = await loop.create_datagram_endpoint(
            Seeing, local_addr=('127.0.0.1', 0))
        VAR.set('changed after the call')
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b'hello', transport.get_extra_info('sockname'))
            await protocol.got_data
        transport.close()
        return protocol.seen

    assert run(loop, main()) == {'connection_made': 'set by the caller',
                                 'datagram_received': 'set by the caller'}


def test_subprocess_protocol_sees_the_context_of_subprocess_execs_caller(loop):
    async def main():
        VAR.set('set by the caller')
        transport, protocol = await loop.subprocess_exec(
            Seeing, sys.executable, '-c', 'print("hello")',
            stdin=None, stderr=None)
        VAR.set('changed after the call')
        await protocol.got_data
        await protocol.exited   # reaped: no child left running
        transport.close()
        return protocol.seen

    assert run(loop, main()) == {'connection_made': 'set by the caller',
                                 'pipe_data_received': 'set by the caller'}
