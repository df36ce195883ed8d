"""Socket-like objects (not ``socket.socket``, attributes through
``__getattr__``, as gunicorn's ``gunicorn.sock.TCPSocket``) where asyncio
takes a socket: servers, connections, datagram endpoints, ``sock_*``."""

import asyncio
import socket

import pytest

from support import run


class SocketWrapper:
    """What gunicorn hands a worker: the socket's attributes through __getattr__."""

    def __init__(self, sock):
        self.sock = sock

    def __getattr__(self, name):
        return getattr(self.sock, name)


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def listening_wrapper():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    sock.listen()
    return SocketWrapper(sock)


async def echo_once(port, payload):
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    writer.write(payload)
    got = await reader.readexactly(len(payload))
    writer.close()
    await writer.wait_closed()
    return got


def test_create_server_serves_on_a_wrapped_socket(loop):
    listener = listening_wrapper()

    async def main():
        server = await loop.create_server(Echo, sock=listener)
        async with server:
            port = server.sockets[0].getsockname()[1]
            return await echo_once(port, b'through the wrapper')

    assert run(loop, main()) == b'through the wrapper'


@pytest.mark.parametrize('call', ['create_server', 'create_unix_server'])
def test_a_wrapped_unix_socket_serves(loop, tmp_path, call):
    """gunicorn's UnixSocket wrapper (``-b unix:PATH``) reaches create_server too."""
    path = str(tmp_path / 'sock')
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()

    async def main():
        server = await getattr(loop, call)(Echo, sock=SocketWrapper(listener))
        async with server:
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b'over unix')
            got = await reader.readexactly(9)
            writer.close()
            await writer.wait_closed()
            return got

    assert run(loop, main()) == b'over unix'


def test_create_connection_uses_a_wrapped_socket(loop):
    async def main():
        server = await loop.create_server(Echo, '127.0.0.1', 0)
        async with server:
            sock = socket.create_connection(server.sockets[0].getsockname())
            sock.setblocking(False)
            reader = asyncio.StreamReader()
            transport, _ = await loop.create_connection(
                lambda: asyncio.StreamReaderProtocol(reader), sock=SocketWrapper(sock))
            transport.write(b'ping')
            got = await reader.readexactly(4)
            transport.close()
            return got

    assert run(loop, main()) == b'ping'


def test_connect_accepted_socket_takes_a_wrapped_socket(loop):
    listener = socket.create_server(('127.0.0.1', 0))

    async def main():
        with listener:
            client = socket.create_connection(listener.getsockname())
            conn, _ = listener.accept()
            conn.setblocking(False)
            transport, _ = await loop.connect_accepted_socket(Echo, SocketWrapper(conn))
            with client:
                client.setblocking(False)
                await loop.sock_sendall(client, b'echo me')
                got = await loop.sock_recv(client, 100)
            transport.close()
            return got

    assert run(loop, main()) == b'echo me'


def test_create_datagram_endpoint_on_a_wrapped_socket(loop):
    async def main():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(('127.0.0.1', 0))
        got = loop.create_future()

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                got.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Receiver, sock=SocketWrapper(sock))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b'datagram', sock.getsockname())
            data = await got
        transport.close()
        return data

    assert run(loop, main()) == b'datagram'


def test_sock_methods_take_wrapped_sockets(loop):
    listener = socket.create_server(('127.0.0.1', 0))
    listener.setblocking(False)

    async def main():
        with listener:
            client = socket.socket()
            client.setblocking(False)
            with client:
                await loop.sock_connect(SocketWrapper(client), listener.getsockname())
                conn, _ = await loop.sock_accept(SocketWrapper(listener))
                with conn:
                    conn.setblocking(False)
                    await loop.sock_sendall(SocketWrapper(client), b'abc')
                    first = await loop.sock_recv(SocketWrapper(conn), 1)
                    buf = bytearray(2)
                    n = await loop.sock_recv_into(SocketWrapper(conn), buf)
                    return first + bytes(buf[:n])

    assert run(loop, main()) == b'abc'


def test_datagram_sock_methods_take_wrapped_sockets(loop):
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
            for s in (a, b):
                s.bind(('127.0.0.1', 0))
                s.setblocking(False)
            await loop.sock_sendto(SocketWrapper(a), b'one', b.getsockname())
            first, sender = await loop.sock_recvfrom(SocketWrapper(b), 100)
            await loop.sock_sendto(SocketWrapper(a), b'two', b.getsockname())
            buf = bytearray(100)
            n, _ = await loop.sock_recvfrom_into(SocketWrapper(b), buf)
            return first, sender == a.getsockname(), bytes(buf[:n])

    assert run(loop, main()) == (b'one', True, b'two')


def _refusal(loop, coro_fn):
    async def main():
        with pytest.raises(BaseException) as info:
            await coro_fn()
        return type(info.value), str(info.value)
    return run(loop, main())


@pytest.mark.parametrize('call', [
    'create_server', 'create_connection', 'connect_accepted_socket',
])
def test_a_datagram_wrapper_is_refused_as_asyncio_refuses_it(call):
    """Same exception and message as the stdlib loop for a wrapped UDP socket."""
    import ferroloop

    outcomes = []
    for loop in (asyncio.SelectorEventLoop(), ferroloop.new_event_loop()):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            wrapper = SocketWrapper(udp)
            if call == 'connect_accepted_socket':
                fn = lambda: loop.connect_accepted_socket(Echo, wrapper)  # noqa: E731
            else:
                fn = lambda: getattr(loop, call)(Echo, sock=wrapper)  # noqa: E731
            try:
                kind, message = _refusal(loop, fn)
            finally:
                loop.close()
        # The repr names the wrapper object, whose address differs per loop.
        outcomes.append((kind, message.replace(repr(wrapper), '<wrapper>')))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] is ValueError


@pytest.mark.parametrize('call', [
    'create_server', 'create_connection', 'create_datagram_endpoint',
])
def test_an_object_without_socket_attributes_is_refused_as_asyncio_refuses_it(call):
    import ferroloop

    outcomes = []
    for loop in (asyncio.SelectorEventLoop(), ferroloop.new_event_loop()):
        try:
            outcomes.append(_refusal(loop, lambda: getattr(loop, call)(Echo, sock=object())))
        finally:
            loop.close()
    assert outcomes[0] == outcomes[1]
